#!/usr/bin/env bash
# Person names and street addresses: Portcullis's entity head (`gateway check`, models/guard)
# against Presidio's AnalyzerEngine with spaCy's small English pipeline, on the same held-out
# texts (models/build/entity_data.py: template families, locales and public entities the head
# never saw). N texts per split (default 300).
#   bash benches/entities/run.sh        (GATEWAY=path/to/gateway to use another build)
# Prints the markdown table and the time per text; writes target/entities/.
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${N:-300}
.venv/bin/python benches/entities/corpus.py "$N" > "$OUT/corpus.jsonl"
texts=$(wc -l < "$OUT/corpus.jsonl")
# Portcullis: one process for all texts (the bundle loads once); its findings are UTF-8 byte
# offsets, converted to characters for the scorer. `check` runs the injection head in a second
# encoder pass per text, so its time per text is an upper bound on the entity head's.
start=$(date +%s.%N)
PORTCULLIS_PSEUDONYM_KEY=bench "$GATEWAY" check --policy benches/entities/policy.yaml --models models --jsonl \
  < "$OUT/corpus.jsonl" 2>/dev/null > "$OUT/portcullis.raw.jsonl"
end=$(date +%s.%N)
to_chars "$OUT/corpus.jsonl" "$OUT/portcullis.raw.jsonl" "$OUT/portcullis.jsonl" person address
"$PV/bin/python" benches/entities/presidio_ner.py < "$OUT/corpus.jsonl" > "$OUT/presidio.jsonl"
.venv/bin/python benches/entities/score.py "$OUT/corpus.jsonl" portcullis="$OUT/portcullis.jsonl" presidio="$OUT/presidio.jsonl"
per_text "one process each, 2-core machine" "$texts" "$start" "$end" "$OUT/presidio.jsonl"
