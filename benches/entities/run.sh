#!/usr/bin/env bash
# Person names and street addresses: Portcullis's entity head (`gateway check`, models/guard)
# against Presidio's AnalyzerEngine with spaCy's small English pipeline, on the same held-out
# texts (models/build/entity_data.py: template families, locales and public entities the head
# never saw). N texts per split (default 300).
#   bash benches/entities/run.sh        (GATEWAY=path/to/gateway to use another build)
# Prints the markdown table and the time per text; writes target/entities/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/entities
N=${N:-300}
mkdir -p "$OUT"
GATEWAY=${GATEWAY:-target/release/gateway}
if [ ! -x "$GATEWAY" ]; then cargo build --release -p gateway --bin gateway; fi
PV=.deps/presidio-venv
if [ ! -x "$PV/bin/python" ] || ! cmp -s benches/entities/requirements.txt "$PV/.requirements"; then
  python3 -m venv "$PV"
  "$PV/bin/pip" install -q --disable-pip-version-check -r benches/entities/requirements.txt
  cp benches/entities/requirements.txt "$PV/.requirements"
fi
.venv/bin/python benches/entities/corpus.py "$N" > "$OUT/corpus.jsonl"
texts=$(wc -l < "$OUT/corpus.jsonl")
# Portcullis: one process for all texts (the bundle loads once); its findings are UTF-8 byte
# offsets, converted to characters for the scorer. `check` runs the injection head in a second
# encoder pass per text, so its time per text is an upper bound on the entity head's.
start=$(date +%s.%N)
PORTCULLIS_PSEUDONYM_KEY=bench "$GATEWAY" check --policy benches/entities/policy.yaml --models models --jsonl \
  < "$OUT/corpus.jsonl" 2>/dev/null > "$OUT/portcullis.raw.jsonl"
end=$(date +%s.%N)
.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
texts = {json.loads(l)["id"]: json.loads(l)["text"] for l in open(f"{out}/corpus.jsonl", encoding="utf-8")}
with open(f"{out}/portcullis.jsonl", "w") as w:
    for line in open(f"{out}/portcullis.raw.jsonl"):
        r = json.loads(line)
        raw = texts[r["id"]].encode("utf-8")
        ch = lambda b: len(raw[:b].decode("utf-8", "ignore"))
        spans = [[ch(f["start"]), ch(f["end"]), f["type"]] for f in r["findings"] if f["type"] in ("person", "address")]
        w.write(json.dumps({"id": r["id"], "spans": spans}) + "\n")
PY
"$PV/bin/python" benches/entities/presidio_ner.py < "$OUT/corpus.jsonl" > "$OUT/presidio.jsonl"
.venv/bin/python benches/entities/score.py "$OUT/corpus.jsonl" portcullis="$OUT/portcullis.jsonl" presidio="$OUT/presidio.jsonl"
presidio_s=$(tail -n1 "$OUT/presidio.jsonl" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["total_seconds"])')
.venv/bin/python -c "
t=$texts
print(f'\ntime per text ({t} texts, one process each, 2-core machine): portcullis {($end-$start)/t*1e3:.2f} ms (gateway check --jsonl, bundle load included), presidio {$presidio_s/t*1e3:.2f} ms (analyze only)')"
