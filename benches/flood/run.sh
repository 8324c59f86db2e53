#!/usr/bin/env bash
# Unauthenticated flood: DURATION (60s) of wrk at the box's capacity with a bad key (401s) and
# unknown paths (404s), while an authenticated client sends one request every 50 ms. After it:
# every authenticated request has its audit record (none dropped), the audit folder's size,
# records and log lines written for the flood, and the gateway's RSS before, at the end of and
# 10 s after the flood. Target (issue 15): no dropped records of authenticated traffic,
# bounded audit size, RSS back to its baseline.
#
#   bash benches/flood/run.sh          # DURATION=60s CONNECTIONS=64
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-60s}; CONNECTIONS=${CONNECTIONS:-64}
OUT=$ROOT/benches/out/flood-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cargo build -q --release --bins -p gateway -p benches
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
MOCK=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >/dev/null 2>&1 &
pids+=($!)
KEY=$(./target/release/gateway keys add --file "$OUT/keys.yaml" --id client --tenant t --quiet)
cat >"$OUT/gateway.yaml" <<YAML
server: {listen: 127.0.0.1:$PORT, threads: 2}
admin: {listen: 127.0.0.1:$ADMIN}
log: {level: info, format: json}
auth: {keys_file: $OUT/keys.yaml}
audit: {dir: $OUT/audit, key_file: $OUT/audit.key, on_full: drop}
upstreams: {tgi: {backends: [127.0.0.1:$MOCK]}}
YAML
./target/release/gateway serve --config "$OUT/gateway.yaml" 2> >(head -c 200000000 >"$OUT/gateway.log") &
GW=$!; pids+=($GW)
until curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; do sleep 0.2; done
rss() { awk '/VmRSS/{print $2}' "/proc/$GW/status"; }
BODY='{"inputs":"hello","parameters":{"max_new_tokens":4}}'
for _ in $(seq 200); do curl -fsS -o /dev/null -H "authorization: Bearer $KEY" -H 'content-type: application/json' -d "$BODY" "http://127.0.0.1:$PORT/generate"; done
sleep 6
RSS0=$(rss); LOG0=$(wc -l <"$OUT/gateway.log")
cat >"$OUT/flood.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local path = (n % 2 == 0) and "/generate" or "/no/such/path"
  return wrk.format("POST", path, {["authorization"] = "Bearer pk-not-a-key", ["content-type"] = "application/json"}, "{}")
end
LUA
# the authenticated client, one request every 50 ms, counting what it sent
python3 - "$PORT" "$KEY" "$OUT/sent" <<'PY' &
import http.client, sys, time
port, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = '{"inputs":"hello","parameters":{"max_new_tokens":4}}'
sent = ok = 0
t_end = time.time() + 1e9
open(out, "w").write("0 0")
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/generate", body, {"authorization": "Bearer " + key, "content-type": "application/json"})
        r = c.getresponse(); r.read(); c.close()
        sent += 1; ok += r.status == 200
    except Exception:
        sent += 1
    open(out, "w").write(f"{sent} {ok}")
    time.sleep(0.05)
PY
CLIENT=$!
wrk -t 1 -c "$CONNECTIONS" -d "$DURATION" -s "$OUT/flood.lua" "http://127.0.0.1:$PORT/" >"$OUT/wrk.txt" 2>&1
RSS1=$(rss)
kill "$CLIENT"; wait "$CLIENT" 2>/dev/null || true
sleep 10
RSS2=$(rss); LOG1=$(wc -l <"$OUT/gateway.log")
read -r SENT OK <"$OUT/sent" || true  # no newline at its end
REQS=$(awk '/requests in/{print $1}' "$OUT/wrk.txt")
METRICS=$(curl -fsS "http://127.0.0.1:$ADMIN/metrics")
DROPPED=$(echo "$METRICS" | awk '/^portcullis_audit_dropped_total/{print $2}')
AUTHED=$(cat "$OUT"/audit/audit-*.jsonl | grep -c '"key_id":"client"' || true)
REFUSALS=$(cat "$OUT"/audit/audit-*.jsonl | python3 -c 'import sys,json; print(sum(json.loads(l).get("count") or 0 for l in sys.stdin if "\"event\":\"refusals\"" in l))')
RECORDS=$(cat "$OUT"/audit/audit-*.jsonl | wc -l)
SIZE=$(du -sk "$OUT/audit" | cut -f1)
VERIFY=$(./target/release/gateway audit verify "$OUT/audit" --key-file "$OUT/audit.key" | python3 -c 'import sys,json; v=json.load(sys.stdin); print("ok" if v["ok"] else v["first_error"])')
cat <<MD | tee "$OUT/report.md"
## Unauthenticated flood (issue 15) ($(date +%F))

- Command: \`bash benches/flood/run.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS); commit \`$(git rev-parse --short HEAD)\`
- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux; gateway 2 threads, audit with a key, \`on_full: drop\`, wrk 1 thread on the same cores

| measure | value |
|---|---:|
| flood requests (401 and 404), wrk | $REQS |
| authenticated requests sent / answered 200 | $SENT / $OK |
| their audit records (200 warm-up requests before) | $AUTHED |
| audit records dropped (portcullis_audit_dropped_total) | $DROPPED |
| refusals counted in \`refusals\` records | $REFUSALS |
| audit records in all / folder size | $RECORDS / ${SIZE} KB |
| gateway log lines during the flood | $((LOG1 - LOG0)) |
| RSS before / at the end / 10 s after (KB) | $RSS0 / $RSS1 / $RSS2 |
| \`gateway audit verify --key-file\` | $VERIFY |
MD
