#!/usr/bin/env bash
# National identifiers: Portcullis's checksum detectors (`gateway check`) against Presidio's
# national-identifier recognizers (AnalyzerEngine + spaCy en_core_web_sm), on N valid
# identifiers per type in context and N decoys (failed check digit, or no context word for the
# types without one). Presidio has no Dutch BSN or French NIR recognizer (those rows are ours
# alone).   N=200 bash benches/entities/run_ids.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${N:-200}
.venv/bin/python benches/entities/national_ids.py "$N" > "$OUT/ids.jsonl"
texts=$(wc -l < "$OUT/ids.jsonl")
start=$(date +%s.%N)
"$GATEWAY" check --policy benches/entities/ids-policy.yaml --jsonl < "$OUT/ids.jsonl" 2>/dev/null > "$OUT/ids-portcullis.raw.jsonl"
end=$(date +%s.%N)
to_chars "$OUT/ids.jsonl" "$OUT/ids-portcullis.raw.jsonl" "$OUT/ids-portcullis.jsonl"
"$PV/bin/python" benches/entities/presidio_ids.py < "$OUT/ids.jsonl" > "$OUT/ids-presidio.jsonl"
.venv/bin/python benches/entities/score_ids.py "$OUT/ids.jsonl" portcullis="$OUT/ids-portcullis.jsonl" presidio="$OUT/ids-presidio.jsonl"
per_text "2-core machine" "$texts" "$start" "$end" "$OUT/ids-presidio.jsonl"
