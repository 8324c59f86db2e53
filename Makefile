# Portcullis task runner. Every target runs the (idempotent, fast when done) setup first.
#   make run    build in release mode, start mock-tgi + the gateway (:8080, admin :9090)
#   make test   every test of the workspace (unit, integration, end-to-end with real clients)
#   make bench  proxy overhead benchmark (mock-tgi direct / gateway / nginx), see benches/README.md
#   make lint   rustfmt check + clippy with warnings as errors
#   make fmt    format the code
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help setup run test bench lint fmt schema clean

help:
	@sed -n '2,7p' Makefile | sed 's/^#//'

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

test: setup
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

bench: setup
	@bash benches/proxy/run.sh

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Regenerate the checked-in JSON Schema of the gateway config (a test fails when it drifts).
schema: setup
	$(CARGO) run -q -p gateway -- schema > deploy/gateway-config.schema.json
	$(CARGO) run -q -p gateway -- policy-schema > policies/schema.json

clean:
	$(CARGO) clean
