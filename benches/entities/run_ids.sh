#!/usr/bin/env bash
# National identifiers: Portcullis's checksum detectors (`gateway check`) against Presidio's
# national-identifier recognizers (AnalyzerEngine + spaCy en_core_web_sm), on N valid
# identifiers per type in context and N decoys (failed check digit, or no context word for the
# types without one). Presidio has no Dutch BSN or French NIR recognizer (those rows are ours
# alone).   N=200 bash benches/entities/run_ids.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/entities
N=${N:-200}
mkdir -p "$OUT"
GATEWAY=${GATEWAY:-target/release/gateway}
if [ ! -x "$GATEWAY" ]; then cargo build --release -p gateway --bin gateway; fi
PV=.deps/presidio-venv
if [ ! -x "$PV/bin/python" ] || ! cmp -s benches/entities/requirements.txt "$PV/.requirements"; then
  python3 -m venv "$PV"
  "$PV/bin/pip" install -q --disable-pip-version-check -r benches/entities/requirements.txt
  cp benches/entities/requirements.txt "$PV/.requirements"
fi
.venv/bin/python benches/entities/national_ids.py "$N" > "$OUT/ids.jsonl"
texts=$(wc -l < "$OUT/ids.jsonl")
start=$(date +%s.%N)
"$GATEWAY" check --policy benches/entities/ids-policy.yaml --jsonl < "$OUT/ids.jsonl" 2>/dev/null > "$OUT/ids-portcullis.raw.jsonl"
end=$(date +%s.%N)
.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
texts = {json.loads(l)["id"]: json.loads(l)["text"] for l in open(f"{out}/ids.jsonl", encoding="utf-8")}
with open(f"{out}/ids-portcullis.jsonl", "w") as w:
    for line in open(f"{out}/ids-portcullis.raw.jsonl"):
        r = json.loads(line)
        raw = texts[r["id"]].encode("utf-8")
        ch = lambda b: len(raw[:b].decode("utf-8", "ignore"))
        w.write(json.dumps({"id": r["id"], "spans": [[ch(f["start"]), ch(f["end"]), f["type"]] for f in r["findings"]]}) + "\n")
PY
"$PV/bin/python" benches/entities/presidio_ids.py < "$OUT/ids.jsonl" > "$OUT/ids-presidio.jsonl"
.venv/bin/python benches/entities/score_ids.py "$OUT/ids.jsonl" portcullis="$OUT/ids-portcullis.jsonl" presidio="$OUT/ids-presidio.jsonl"
presidio_s=$(tail -n1 "$OUT/ids-presidio.jsonl" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["total_seconds"])')
.venv/bin/python -c "
t=$texts
print(f'\ntime per text ({t} texts): portcullis {($end-$start)/t*1e3:.3f} ms (gateway check --jsonl, one process, start-up included), presidio {$presidio_s/t*1e3:.2f} ms (analyze only)')"
