# Sourced by run.sh and run_ids.sh: the release gateway, Presidio's venv, the output folder,
# and `to_chars`, which turns `gateway check --jsonl` findings (UTF-8 byte offsets) into the
# scorers' {"id", "spans": [[start, end, type]]} with character offsets.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=target/entities
mkdir -p "$OUT"
GATEWAY=${GATEWAY:-target/release/gateway}
if [ ! -x "$GATEWAY" ]; then cargo build --release -p gateway --bin gateway; fi
PV=.deps/presidio-venv
if [ ! -x "$PV/bin/python" ] || ! cmp -s benches/entities/requirements.txt "$PV/.requirements"; then
  python3 -m venv "$PV"
  "$PV/bin/pip" install -q --disable-pip-version-check -r benches/entities/requirements.txt
  cp benches/entities/requirements.txt "$PV/.requirements"
fi

# to_chars CORPUS RAW OUT [TYPE...]: only findings of the TYPEs when given.
to_chars() {
  .venv/bin/python - "$@" <<'PY'
import json, sys
corpus, raw, out, *types = sys.argv[1:]
texts = {json.loads(l)["id"]: json.loads(l)["text"] for l in open(corpus, encoding="utf-8")}
with open(out, "w") as w:
    for line in open(raw):
        r = json.loads(line)
        b = texts[r["id"]].encode("utf-8")
        ch = lambda i: len(b[:i].decode("utf-8", "ignore"))
        spans = [[ch(f["start"]), ch(f["end"]), f["type"]] for f in r["findings"] if not types or f["type"] in types]
        w.write(json.dumps({"id": r["id"], "spans": spans}) + "\n")
PY
}

# per_text LABEL TEXTS START END PRESIDIO_JSONL: the time per text of both sides.
per_text() {
  local presidio_s
  presidio_s=$(tail -n1 "$5" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["total_seconds"])')
  .venv/bin/python -c "
t=$2
print(f'\ntime per text ({t} texts, $1): portcullis {($4-$3)/t*1e3:.3f} ms (gateway check --jsonl, one process, start-up included), presidio {$presidio_s/t*1e3:.2f} ms (analyze only)')"
}
