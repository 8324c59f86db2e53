#!/usr/bin/env bash
# DP-SGD step time and memory: the Portcullis engine (ghost / materialised / auto clipping)
# against a non-private step of the same model, and Opacus ("hooks", "ghost") against plain
# PyTorch, on the same architectures, batch, clipping norm and optimizer, in one run.
#
#   bash benches/dp/run.sh                 # THREADS=1 ROUNDS=3
#   THREADS=2 ROUNDS=2 bash benches/dp/run.sh
#
# The trainer sets glibc's mmap/trim thresholds (trainer-sidecar/src/runtime.rs); the rows marked
# "default malloc" run our engine without that, and the rows marked "tuned malloc" run Opacus with
# the same thresholds through glibc's environment variables, so both sides are seen both ways.
#
# Each configuration runs in its own process (peak RSS is per process); rounds interleave the
# configurations so that drift on a noisy machine hits all of them alike. Writes
# benches/out/dp-<timestamp>/{results.jsonl,report.md} and prints the report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/setup.sh >/dev/null
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-3}"
LAYERS="${LAYERS:-2}"
MLP_BATCH="${MLP_BATCH:-256}"
TF_BATCH="${TF_BATCH:-16}"
OUT="benches/out/dp-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
CARGO_PROFILE_BENCH_LTO=off cargo bench -q -p trainer-sidecar --bench dp_step --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/dp_step-* | grep -v '\.d$' | head -1)
PY=.venv/bin/python
TUNED=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824)
run() { "$@" >>"$OUT/results.jsonl"; }
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for mode in nonprivate ghost materialize auto; do
    run "$BIN" --model mlp --mode "$mode" --batch "$MLP_BATCH" --steps 20 --warmup 3 --threads "$THREADS"
  done
  for mode in nonprivate hooks ghost; do
    run "$PY" benches/dp/opacus_step.py --model mlp --mode "$mode" --batch "$MLP_BATCH" --steps 20 --warmup 3 --threads "$THREADS"
  done
  for mode in nonprivate ghost materialize auto; do
    run "$BIN" --model transformer --mode "$mode" --batch "$TF_BATCH" --layers "$LAYERS" --steps 6 --warmup 2 --threads "$THREADS"
  done
  for mode in nonprivate auto; do
    run "$BIN" --model transformer --mode "$mode" --batch "$TF_BATCH" --layers "$LAYERS" --steps 6 --warmup 2 --threads "$THREADS" --malloc default
  done
  for mode in nonprivate hooks ghost; do
    run "$PY" benches/dp/opacus_step.py --model transformer --mode "$mode" --batch "$TF_BATCH" --layers "$LAYERS" --steps 6 --warmup 2 --threads "$THREADS"
  done
  for mode in nonprivate hooks; do
    run "${TUNED[@]}" "$PY" benches/dp/opacus_step.py --model transformer --mode "$mode" --batch "$TF_BATCH" --layers "$LAYERS" --steps 6 --warmup 2 --threads "$THREADS"
  done
done
"$PY" benches/dp/report.py "$OUT/results.jsonl" | tee "$OUT/report.md"
