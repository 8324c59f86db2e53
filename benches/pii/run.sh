#!/usr/bin/env bash
# PII/secrets quality, side by side with Presidio's pattern recognizers, on one seeded corpus.
#   bash benches/pii/run.sh            (GATEWAY=path/to/gateway to use another build)
#   SEED=1234 bash benches/pii/run.sh  (a held-out corpus: the detectors were tuned on seed 42)
# Prints the markdown table; writes target/pii[-SEED]/{corpus.jsonl,portcullis.jsonl,presidio.jsonl,summary.json}.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
SEED=${SEED:-42}
OUT=target/pii
if [ "$SEED" != 42 ]; then OUT=target/pii-$SEED; fi
mkdir -p "$OUT"
GATEWAY=${GATEWAY:-target/release/gateway}
if [ ! -x "$GATEWAY" ]; then cargo build --release -p gateway --bin gateway; fi
.venv/bin/pip install -q -r benches/pii/requirements.txt
$PY benches/pii/generate_corpus.py --seed "$SEED" --n 4000 --out "$OUT/corpus.jsonl"
start=$(date +%s.%N)
"$GATEWAY" check --policy benches/pii/eval-policy.yaml --jsonl < "$OUT/corpus.jsonl" 2>/dev/null \
  | $PY -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"id": r["id"], "findings": [{"type": f["type"], "start": f["start"], "end": f["end"]} for f in r["findings"]]}))
' > "$OUT/portcullis.jsonl"
end=$(date +%s.%N)
$PY - "$OUT" "$start" "$end" <<'PYEOF'
import json, os, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
texts = sum(1 for _ in open(f"{out}/corpus.jsonl"))
size = os.path.getsize(f"{out}/corpus.jsonl")
types = ["email","phone","card","iban","ssn","ip_address","date_of_birth","postal_code","aws_key","github_token","gitlab_token","slack_token","stripe_key","openai_key","jwt","private_key","url_password","generic_secret"]
json.dump({"texts": texts, "bytes": size, "seconds": end - start, "supported_types": types}, open(f"{out}/portcullis.jsonl.timing.json", "w"))
PYEOF
$PY benches/pii/presidio_baseline.py --corpus "$OUT/corpus.jsonl" --out "$OUT/presidio.jsonl"
$PY benches/pii/score.py --corpus "$OUT/corpus.jsonl" --pred portcullis="$OUT/portcullis.jsonl" --pred presidio="$OUT/presidio.jsonl" --markdown --json-out "$OUT/summary.json"
