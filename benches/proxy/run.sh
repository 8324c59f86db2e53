#!/usr/bin/env bash
# Proxy overhead benchmark: requests/s and latency percentiles, in one run, of
#   (a) wrk -> mock-tgi                (baseline: no proxy)
#   (b) wrk -> portcullis gateway -> mock-tgi
#   (c) wrk -> nginx (plain proxy) -> mock-tgi
# at fixed concurrencies, rounds interleaved (a, b, c, a, b, c, ...) so that machine noise hits
# all three alike; the median round is reported. Appends a section to benches/RESULTS.md.
#
# Environment: ROUNDS (3), DURATION (10s), CONCURRENCY ("1 32"), PROXY_THREADS (1),
# WRK_THREADS (1), NO_RECORD=1 to print without appending to RESULTS.md.
# BASE_GATEWAY=path/to/gateway adds (d) the same config on another gateway build (an earlier
# commit's), interleaved like the others, to measure a change of the request path's cost;
# RULES=off runs both gateways without a policy (default: the shipped default policy).
# BASE_POLICY=path gives (d) another policy file (e.g. BASE_GATEWAY=target/release/gateway
# BASE_POLICY=rules-only.yaml: one build, two policies, in the same run).
# BACKEND=asyncio puts benches/proxy/asyncio_backend.py (Python asyncio, like vLLM's server)
# behind every target instead of mock-tgi.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-"1 32"}
PROXY_THREADS=${PROXY_THREADS:-1}
WRK_THREADS=${WRK_THREADS:-1}
OUT=$ROOT/benches/out/proxy-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

say() { printf '\033[1;34m[bench]\033[0m %s\n' "$*" >&2; }
command -v wrk >/dev/null || { echo "wrk missing: run scripts/setup.sh" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx missing: run scripts/setup.sh" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say "building release binaries"
cargo build --release --bins -p gateway -p benches >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); GW_PORT=$(free_port); GW_ADMIN=$(free_port); NGINX_PORT=$(free_port)
BASE_PORT=$(free_port); BASE_ADMIN=$(free_port)
RULES=${RULES:-on}
export PROMPTS=${PROMPTS:-same}
ROUTE=${ROUTE:-generate}
case "$ROUTE" in
  generate) LUA=benches/proxy/generate.lua; PATH_=/generate ;;
  chat) LUA=benches/proxy/chat.lua; PATH_=/v1/chat/completions ;;
  *) echo "ROUTE is generate or chat" >&2; exit 1 ;;
esac

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

BACKEND=${BACKEND:-mock-tgi}
if [ "$BACKEND" = asyncio ]; then
  python3 benches/proxy/asyncio_backend.py --listen "127.0.0.1:$MOCK_PORT" >"$OUT/mock.log" 2>&1 &
else
  ./target/release/mock-tgi --listen "127.0.0.1:$MOCK_PORT" --threads 1 --record 0 --quiet >"$OUT/mock.log" 2>&1 &
fi
pids+=($!)
until curl -fsS "http://127.0.0.1:$MOCK_PORT/health" >/dev/null 2>&1; do sleep 0.1; done

sed -e "s#@LISTEN@#127.0.0.1:$GW_PORT#" -e "s#@ADMIN@#127.0.0.1:$GW_ADMIN#" -e "s#@THREADS@#$PROXY_THREADS#" \
    -e "s#@BACKEND@#127.0.0.1:$MOCK_PORT#" -e "s#@ROOT@#$ROOT#" benches/proxy/gateway.yaml.tmpl >"$OUT/gateway.yaml"
if [ "$RULES" = off ]; then sed -i -e '/^policy:/d' -e '/^models:/,/^    keys:/d' "$OUT/gateway.yaml"; fi
# logs capped: a misbehaving build must not fill the disk
./target/release/gateway serve --config "$OUT/gateway.yaml" 2> >(head -c 50000000 >"$OUT/gateway.log") &
pids+=($!)
if [ -n "${BASE_GATEWAY:-}" ]; then
  sed -e "s#127.0.0.1:$GW_PORT#127.0.0.1:$BASE_PORT#" -e "s#127.0.0.1:$GW_ADMIN#127.0.0.1:$BASE_ADMIN#" \
    "$OUT/gateway.yaml" >"$OUT/base.yaml"
  if [ -n "${BASE_POLICY:-}" ]; then sed -i "s#^policy: .*#policy: $(realpath "$BASE_POLICY")#" "$OUT/base.yaml"; fi
  "$BASE_GATEWAY" serve --config "$OUT/base.yaml" 2> >(head -c 50000000 >"$OUT/base.log") &
  pids+=($!)
  until curl -fsS "http://127.0.0.1:$BASE_ADMIN/readyz" >/dev/null 2>&1; do sleep 0.1; done
fi

mkdir -p "$OUT"/nginx-{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s#@OUT@#$OUT#g" -e "s#@LISTEN@#127.0.0.1:$NGINX_PORT#" -e "s#@BACKEND@#127.0.0.1:$MOCK_PORT#" \
    benches/proxy/nginx.conf.tmpl >"$OUT/nginx.conf"
sed -i "s#^worker_processes 1;#worker_processes $PROXY_THREADS;#" "$OUT/nginx.conf"
"$NGINX" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" 2>>"$OUT/nginx-error.log" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$GW_ADMIN/readyz" >/dev/null 2>&1 && \
  curl -fsS "http://127.0.0.1:$NGINX_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
for t in "127.0.0.1:$MOCK_PORT" "127.0.0.1:$GW_PORT" "127.0.0.1:$NGINX_PORT"; do
  body=$(curl -fsS "http://$t/generate" -H 'Content-Type: application/json' \
    -d '{"inputs":"What is Deep Learning? Answer in one sentence.","parameters":{"max_new_tokens":8}}')
  [ -n "$body" ] || { echo "target $t does not answer" >&2; exit 1; }
done

run_wrk() { # target-name url concurrency round
  local name=$1 url=$2 c=$3 round=$4
  local line
  # warm-up, then the measured run
  wrk -t "$WRK_THREADS" -c "$c" -d 2s -s "$LUA" "$url$PATH_" >/dev/null 2>&1 || true
  line=$(wrk -t "$WRK_THREADS" -c "$c" -d "$DURATION" --latency -s "$LUA" "$url$PATH_" | grep '^RESULT ' | sed 's/^RESULT //')
  echo "{\"target\":\"$name\",\"concurrency\":$c,\"round\":$round,${line#\{}" >>"$OUT/results.jsonl"
  say "$name c=$c round $round: $line"
}

# PEERS=litellm: the LiteLLM proxy (PyPI `litellm[proxy]`, in .deps/litellm-venv) in front of
# the same backend, one worker, without guardrails and with its Presidio guardrail (ROUTE=chat:
# it has no TGI route)
LITELLM_PORT=""
if [ "${PEERS:-}" = litellm ]; then
  [ "$ROUTE" = chat ] || { echo "PEERS=litellm needs ROUTE=chat" >&2; exit 1; }
  LV=.deps/litellm-venv
  [ -x "$LV/bin/litellm" ] || { python3 -m venv "$LV" && "$LV/bin/pip" install -q 'litellm[proxy]'; }
  LITELLM_PORT=$(free_port)
  # it refuses to start without a master key; every target gets the same header (wrk sends
  # it everywhere; the gateway without a keys file and nginx pass it on, the backends ignore it)
  export BENCH_KEY="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat >"$OUT/litellm.yaml" <<YAML
general_settings: {master_key: "$BENCH_KEY"}
model_list:
  - model_name: tgi
    litellm_params: {model: openai/tgi, api_base: "http://127.0.0.1:$MOCK_PORT/v1", api_key: none}
YAML
  "$LV/bin/litellm" --config "$OUT/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 1 >"$OUT/litellm.log" 2>&1 &
  pids+=($!)
  # and a second one with its Presidio guardrail (pre_call, masking) against Presidio's REST API
  # served by benches/proxy/presidio_service.py (pattern recognizers: a lower bound on its cost)
  "$LV/bin/python" -c 'import presidio_analyzer' 2>/dev/null || "$LV/bin/pip" install -q presidio-analyzer==2.2.366
  PRESIDIO_PORT=$(free_port); LITELLM_P_PORT=$(free_port)
  "$LV/bin/python" benches/proxy/presidio_service.py --listen "127.0.0.1:$PRESIDIO_PORT" >"$OUT/presidio.log" 2>&1 &
  pids+=($!)
  cp "$OUT/litellm.yaml" "$OUT/litellm-presidio.yaml"
  cat >>"$OUT/litellm-presidio.yaml" <<YAML
guardrails:
  - guardrail_name: presidio-pii
    litellm_params:
      guardrail: presidio
      mode: pre_call
      default_on: true
      presidio_analyzer_api_base: "http://127.0.0.1:$PRESIDIO_PORT"
      presidio_anonymizer_api_base: "http://127.0.0.1:$PRESIDIO_PORT"
YAML
  "$LV/bin/litellm" --config "$OUT/litellm-presidio.yaml" --host 127.0.0.1 --port "$LITELLM_P_PORT" --num_workers 1 >"$OUT/litellm-presidio.log" 2>&1 &
  pids+=($!)
  for port in "$LITELLM_PORT" "$LITELLM_P_PORT"; do
    for _ in $(seq 1 600); do
      curl -fsS "http://127.0.0.1:$port/health/liveliness" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # the guardrail really runs: an e-mail address reaches the backend masked
  echo=$(curl -fsS "http://127.0.0.1:$LITELLM_P_PORT/v1/chat/completions" -H "Authorization: Bearer $BENCH_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"model":"tgi","max_tokens":16,"messages":[{"role":"user","content":"write to jane.doe@example.com today"}]}')
  case "$echo" in *jane.doe@example.com*) echo "LiteLLM's Presidio guardrail did not mask: $echo" >&2; exit 1 ;; esac
fi

for c in $CONCURRENCY; do
  for r in $(seq 1 "$ROUNDS"); do
    run_wrk direct "http://127.0.0.1:$MOCK_PORT" "$c" "$r"
    run_wrk gateway "http://127.0.0.1:$GW_PORT" "$c" "$r"
    [ -n "${BASE_GATEWAY:-}" ] && run_wrk base "http://127.0.0.1:$BASE_PORT" "$c" "$r"
    run_wrk nginx "http://127.0.0.1:$NGINX_PORT" "$c" "$r"
    [ -n "$LITELLM_PORT" ] && run_wrk litellm "http://127.0.0.1:$LITELLM_PORT" "$c" "$r"
    [ -n "$LITELLM_PORT" ] && run_wrk litellm-presidio "http://127.0.0.1:$LITELLM_P_PORT" "$c" "$r"
  done
done

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
python3 benches/proxy/report.py "$OUT/results.jsonl" \
  --machine "$(nproc) cores, $CPU, $(free -g | awk '/Mem:/{print $2}') GiB" \
  --backend "$BACKEND" --route "$ROUTE" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')" \
  --command "make bench (ROUNDS=$ROUNDS DURATION=$DURATION CONCURRENCY=\"$CONCURRENCY\" PROXY_THREADS=$PROXY_THREADS WRK_THREADS=$WRK_THREADS RULES=$RULES PROMPTS=$PROMPTS BACKEND=$BACKEND ROUTE=$ROUTE${PEERS:+ PEERS=$PEERS}${BASE_GATEWAY:+ BASE_GATEWAY=$BASE_GATEWAY}${BASE_POLICY:+ BASE_POLICY=$BASE_POLICY})" \
  >"$OUT/report.md"
cat "$OUT/report.md"
if [ -z "${NO_RECORD:-}" ]; then
  { echo; cat "$OUT/report.md"; } >>benches/RESULTS.md
  say "appended to benches/RESULTS.md (raw results: $OUT)"
fi
