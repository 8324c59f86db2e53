#!/usr/bin/env bash
# `make run`: build in release mode, start the bundled mock TGI backend, the gateway with
# deploy/portcullis.yaml (policies/default.yaml) and the trainer sidecar's job API, print how to
# use them, stop all three on Ctrl-C.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CONFIG=${PORTCULLIS_CONFIG:-deploy/portcullis.yaml}
GATEWAY_URL=http://localhost:8080
ADMIN_URL=http://127.0.0.1:9090
BACKEND=127.0.0.1:3000
SIDECAR=127.0.0.1:7070

say() { printf '\033[1;34m[run]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[run] error:\033[0m %s\n' "$*" >&2; exit 1; }

say "building (release)…"
cargo build --release --bins -p gateway -p benches -p trainer-sidecar

for port in 8080 9090 3000 7070; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use (another \`make run\`?); stop that process first"
  fi
done

# A fresh demo key (only its hash is stored) and admin token for this run.
mkdir -p target/demo
rm -f target/demo/keys.yaml
API_KEY=$(./target/release/gateway keys add --file target/demo/keys.yaml --id demo --tenant demo --quiet) \
  || die "could not create the demo API key"
export PORTCULLIS_ADMIN_TOKEN=${PORTCULLIS_ADMIN_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export PORTCULLIS_SIDECAR_TOKEN=${PORTCULLIS_SIDECAR_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
# ONNX Runtime for the model classifiers (the gateway also has this path built in).
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/.deps/libonnxruntime.so}

./target/release/gateway validate --config "$CONFIG" >/dev/null || die "$CONFIG is invalid (see above)"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  say "stopped"
}
trap cleanup EXIT INT TERM

# Echo mode with model-like pacing: 40 tokens/s after 150 ms to the first token.
./target/release/mock-tgi --listen "$BACKEND" --tokens-per-second 40 --ttft-ms 150 --quiet >/dev/null &
pids+=($!)
./target/release/gateway serve --config "$CONFIG" &
pids+=($!)
# Jobs and the privacy ledger survive restarts in target/demo/sidecar. Every adapter or bundle a
# job makes is signed (OpenSSF model_signing) with this machine's model key, the one the gateway
# trusts (scripts/setup.sh made it); adapters are published into models/adapters and the gateway
# is told at once.
./target/release/trainer-sidecar serve --listen "$SIDECAR" --dir target/demo/sidecar \
  --signing-key .deps/model-signing/private.pem --adapters-dir models/adapters \
  --gateway-admin "$ADMIN_URL" 2>/dev/null &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "$ADMIN_URL/readyz" >/dev/null 2>&1; then break; fi
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || die "a process exited during start-up (see above)"; done
  sleep 0.1
done
curl -fsS "$ADMIN_URL/readyz" >/dev/null 2>&1 || die "the gateway did not become ready within 10 s"
for _ in $(seq 1 100); do
  if curl -fsS "http://$SIDECAR/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://$SIDECAR/healthz" >/dev/null 2>&1 || die "the trainer sidecar did not start within 10 s"

cat <<BANNER

  Portcullis gateway is running.

  Gateway:  $GATEWAY_URL         (OpenAI routes under /v1, TGI routes at /)
  Admin:    $ADMIN_URL/metrics   (/healthz, /readyz)
  Backend:  mock-tgi on $BACKEND (echo mode: answers with your prompt)
  Config:   $CONFIG  (policy: policies/default.yaml)
  API key: $API_KEY
  Admin token: $PORTCULLIS_ADMIN_TOKEN  (for /admin/*: reload, keys, limits)
  Audit trail: target/demo/audit  (check it: ./target/release/gateway audit verify target/demo/audit --key-file target/demo/audit.key)

  Try it:
    curl -s $GATEWAY_URL/v1/chat/completions -H "Authorization: Bearer $API_KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"model":"tgi","messages":[{"role":"user","content":"Hello, Portcullis!"}]}'

    curl -sN $GATEWAY_URL/generate_stream -H "Authorization: Bearer $API_KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"inputs":"Streaming through the gateway","parameters":{"max_new_tokens":20}}'

  MCP: $GATEWAY_URL/mcp/demo  (an example MCP server over stdio, behind the default policy)
    the official SDK as the client: list, call, a poisoned tool, a rug-pull, an injection in a result
    .venv/bin/python gateway/tests/clients/mcp_client.py $GATEWAY_URL/mcp/demo --key $API_KEY
    tool pins: curl -s $ADMIN_URL/admin/mcp/pins -H "Authorization: Bearer $PORTCULLIS_ADMIN_TOKEN"
    approve a changed tool: curl -s -X POST "$ADMIN_URL/admin/mcp/approve?server=demo&tool=weather" \
      -H "Authorization: Bearer $PORTCULLIS_ADMIN_TOKEN"

  Trainer sidecar: http://$SIDECAR  (token: $PORTCULLIS_SIDECAR_TOKEN)
    outputs signed with .deps/model-signing/private.pem (the key the gateway trusts); check one
    with target/release/trainer-sidecar verify <dir> --public-key .deps/model-signing/public.pem
    Fine-tune SmolLM2-135M-Instruct with DP LoRA on the demo support chats (about a minute):
    curl -s http://$SIDECAR/v1/jobs -H "Authorization: Bearer $PORTCULLIS_SIDECAR_TOKEN" \
      -H 'Content-Type: application/yaml' --data-binary @deploy/demo/lora-job.yaml
    curl -sN http://$SIDECAR/v1/jobs/JOB_ID/events -H "Authorization: Bearer $PORTCULLIS_SIDECAR_TOKEN"
    # then: GET /v1/jobs/JOB_ID (state, epsilon_spent, outputs.adapter, outputs.published),
    # .../artifacts/report.json; the signed adapter is live in the gateway as support-demo
    # (use it with "model":"support-demo" or "parameters":{"adapter_id":"support-demo"}):
    curl -s $ADMIN_URL/admin/models -H "Authorization: Bearer $PORTCULLIS_ADMIN_TOKEN"
    target/release/gateway models list    # (PORTCULLIS_ADMIN_TOKEN=$PORTCULLIS_ADMIN_TOKEN)

  Ctrl-C stops everything.

BANNER

# Stop all when one exits.
wait -n "${pids[@]}" || true
