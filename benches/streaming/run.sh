#!/usr/bin/env bash
# Streaming latency the gateway adds (issue 19): time to first token and inter-token gaps of
# TGI `/generate_stream` answers, as a client sees them, for
#   direct (mock-tgi) · nginx (plain proxy, proxy_buffering off) · gateway without a policy ·
#   gateway with the shipped `default` policy (output rules on: the stream guard)
# against mock-tgi paced at 50 tokens/s and unpaced. Requests interleaved across targets.
# Targets: added TTFT ≤ 0.5 ms, added inter-token p99 ≤ 0.2 ms (with output rules).
#
#   bash benches/streaming/run.sh     # REQUESTS=30 TOKENS=64; NO_RECORD=1 to print only
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
REQUESTS=${REQUESTS:-30}; TOKENS=${TOKENS:-64}
OUT=$ROOT/benches/out/streaming-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"/nginx-{body,proxy,fastcgi,uwsgi,scgi}
cargo build -q --release --bins -p gateway -p benches
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
ready() { # url pid log
  until curl -fsS "$1" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.1
  done
}
gateway() { # name backend-port policy-line -> sets GW_PORT
  local port admin
  port=$(fp); admin=$(fp)
  cat >"$OUT/$1.yaml" <<YAML
server: {listen: 127.0.0.1:$port, threads: 1}
admin: {listen: 127.0.0.1:$admin}
$3
models:
  dir: $ROOT/models
  trust: {keys: [$ROOT/.deps/model-signing/public.pem]}
log: {level: warn}
upstreams:
  tgi: {backends: [127.0.0.1:$2]}
YAML
  ./target/release/gateway serve --config "$OUT/$1.yaml" >"$OUT/$1.log" 2>&1 &
  pids+=($!)
  ready "http://127.0.0.1:$admin/readyz" $! "$OUT/$1.log"
  GW_PORT=$port
}
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
{
  echo "## Streaming: time to first token and inter-token gaps through the gateway ($(date +%Y-%m-%d))"
  echo
  echo "- Command: \`bash benches/streaming/run.sh\` (REQUESTS=$REQUESTS TOKENS=$TOKENS); commit \`$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')\`"
  echo "- Machine: $(nproc) cores, $CPU; release build; 1 proxy thread / 1 nginx worker; client: Python, one connection per request, times at each SSE event's arrival"
  echo "- Request: TGI \`POST /generate_stream\`, $TOKENS new tokens (mock-tgi echoes the prompt word by word); $REQUESTS measured requests per target after 2 warm-up ones"
} >"$OUT/report.md"
for tps in 50 0; do
  MOCK=$(fp)
  ./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet --tokens-per-second "$tps" >"$OUT/mock-$tps.log" 2>&1 &
  pids+=($!)
  ready "http://127.0.0.1:$MOCK/health" $! "$OUT/mock-$tps.log"
  NP=$(fp)
  sed -e "s#@OUT@#$OUT#g" -e "s#@LISTEN@#127.0.0.1:$NP#" -e "s#@BACKEND@#127.0.0.1:$MOCK#" \
      -e "s#nginx.pid#nginx-$tps.pid#" benches/proxy/nginx.conf.tmpl >"$OUT/nginx-$tps.conf"
  "$NGINX" -c "$OUT/nginx-$tps.conf" -e "$OUT/nginx-error.log" 2>>"$OUT/nginx-error.log" &
  pids+=($!)
  ready "http://127.0.0.1:$NP/health" $! "$OUT/nginx-error.log"
  gateway "off-$tps" "$MOCK" ""; G0=$GW_PORT
  gateway "default-$tps" "$MOCK" "policy: $ROOT/policies/default.yaml"; G1=$GW_PORT
  label=$([ "$tps" = 0 ] && echo "unpaced" || echo "$tps tok/s")
  { echo; echo "### mock-tgi $label"; echo; } >>"$OUT/report.md"
  python3 benches/streaming/drive.py --requests "$REQUESTS" --tokens "$TOKENS" \
    --target "direct=$MOCK" --target "nginx=$NP" --target "gateway, no policy=$G0" \
    --target "gateway, default (output rules)=$G1" >>"$OUT/report.md"
done
cat "$OUT/report.md"
if [ -z "${NO_RECORD:-}" ]; then
  { echo; cat "$OUT/report.md"; } >>benches/RESULTS.md
  echo "appended to benches/RESULTS.md (raw: $OUT)" >&2
fi
