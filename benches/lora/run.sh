#!/usr/bin/env bash
# DP LoRA step time, tokens/s and memory on SmolLM2-135M-Instruct: the Portcullis trainer
# (DP with per-example clipping and noise; non-private) against Opacus 1.6 + PEFT (hooks, ghost;
# plain PyTorch + PEFT), same model (f32), batch, sequence, rank, targets (all seven projections),
# clipping norm and noise, one configuration per process, rounds interleaved.
#
#   bash benches/lora/run.sh                  # THREADS=2 ROUNDS=3 BATCH=4 SEQ=64 RANK=16
#
# Writes benches/out/lora-<timestamp>/{results.jsonl,report.md} and prints the report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/setup.sh >/dev/null
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
BATCH="${BATCH:-4}"
SEQ="${SEQ:-64}"
RANK="${RANK:-16}"
BASE=models/base/smollm2-135m-instruct
OUT="benches/out/lora-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
CARGO_PROFILE_BENCH_LTO=off cargo bench -q -p trainer-sidecar --bench lora_step --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/lora_step-* | grep -v '\.d$' | head -1)
PY=.venv/bin/python
ARGS=(--base "$BASE" --batch "$BATCH" --seq "$SEQ" --rank "$RANK" --steps 3 --warmup 1 --threads "$THREADS")
run() { "$@" 2>/dev/null >>"$OUT/results.jsonl"; }
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for mode in nonprivate dp; do run "$BIN" --mode "$mode" "${ARGS[@]}"; done
  for mode in nonprivate hooks ghost; do run "$PY" benches/lora/opacus_lora.py --mode "$mode" "${ARGS[@]}"; done
done
"$PY" benches/lora/report.py "$OUT/results.jsonl" | tee "$OUT/report.md"
