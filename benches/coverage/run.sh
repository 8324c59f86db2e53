#!/usr/bin/env bash
# One gateway, one policy, one load: what share of requests the classifiers scored and what it
# cost (issue 19). Prints req/s, latency, the gateway's CPU ticks and the classifier outcome
# counters (`ok` = classified; `over_budget`, `skipped` = not monitored; `cached` = known).
#
#   bash benches/coverage/run.sh POLICY [wrk CONCURRENCY | rate REQS_PER_S]
#   POLICY: a policy file, or `default-blocking`: policies/default.yaml as shipped with the
#   injection classifier *blocking* (every request waits for its scores) at a threshold benign
#   prompts do not reach (made from the shipped file at each run, so it cannot drift from it).
#   env: SHARE (models.monitor_share, 0.5), CACHE (guard.scan_cache_bytes_per_tenant, 16 MiB),
#        PROMPTS (distinct | same; distinct by default), SECONDS_ (8), WORKERS (models.workers:
#        encoder sessions; the gateway's default, one per core, when unset), BATCH_WAIT
#        (models.batch_wait, e.g. 0s; the gateway's default when unset), GATEWAY (another
#        gateway binary, e.g. an older build, against the same harness)
# e.g. bash benches/coverage/run.sh policies/default.yaml rate 500
#      CACHE=0 PROMPTS=same bash benches/coverage/run.sh default-blocking wrk 1
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=${2:-wrk}; N=${3:-1}
SHARE=${SHARE:-0.5}; CACHE=${CACHE:-16777216}; SECS=${SECONDS_:-8}
export PROMPTS=${PROMPTS:-distinct}
cargo build -q --release --bins -p gateway -p benches
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(fp); P=$(fp); A=$(fp)
OUT=$(mktemp -d)
if [ "$1" = default-blocking ]; then
  POLICY="$OUT/default-blocking.yaml"
  sed -e 's/^name: default$/name: default-blocking/' \
      -e 's/^  injection_classifier: monitor$/  injection_classifier: block/' \
      -e "/^settings:$/a\\  lexicon_dir: $ROOT/policies/lexicons/toxicity" policies/default.yaml > "$POLICY"
  grep -q '^  injection_classifier: block$' "$POLICY" && tail -1 "$POLICY" | grep -q '^  on_timeout:' \
    || { echo "policies/default.yaml changed shape: update default-blocking in $0" >&2; exit 1; }
  echo "  thresholds: {injection: 0.9999}" >> "$POLICY"
else
  POLICY=$(realpath "$1")
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT INT TERM
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >/dev/null 2>&1 &
pids+=($!)
cat >"$OUT/gateway.yaml" <<YAML
server: {listen: 127.0.0.1:$P, threads: 1}
admin: {listen: 127.0.0.1:$A}
policy: $POLICY
guard: {scan_cache_bytes_per_tenant: $CACHE}
models:
  dir: $ROOT/models
  monitor_share: $SHARE
${WORKERS:+  workers: $WORKERS}
${BATCH_WAIT:+  batch_wait: $BATCH_WAIT}
  trust: {keys: [$ROOT/.deps/model-signing/public.pem]}
log: {level: warn}
upstreams:
  tgi: {backends: [127.0.0.1:$MOCK]}
YAML
${GATEWAY:-./target/release/gateway} serve --config "$OUT/gateway.yaml" 2>"$OUT/gateway.log" &
GP=$!; pids+=($GP)
until curl -fsS "localhost:$A/readyz" >/dev/null 2>&1; do
  kill -0 "$GP" 2>/dev/null || { cat "$OUT/gateway.log" >&2; exit 1; }
  sleep 0.1
done
ticks() { awk '{print $14+$15}' "/proc/$GP/stat"; }
if [ "$MODE" = rate ]; then
  b=$(ticks)
  python3 - "$P" "$N" "$SECS" <<'PY'
import http.client, json, random, sys, time
port, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
tag, n, t0 = random.randrange(10**9), 0, time.perf_counter()
while time.perf_counter() - t0 < secs:
    wait = t0 + n / rate - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    prompt = f"What is Deep Learning? Answer in one sentence. ({tag}-{n})"
    c.request("POST", "/generate", body=json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": 8}}),
              headers={"Content-Type": "application/json"})
    c.getresponse().read()
    n += 1
print(f"rate {rate:g}/s: {n} requests in {time.perf_counter() - t0:.1f} s")
PY
  echo "gateway CPU ticks (1/100 s): $(( $(ticks) - b ))"
else
  wrk -t1 -c"$N" -d2s -s benches/proxy/generate.lua "http://127.0.0.1:$P/generate" >/dev/null
  b=$(ticks)
  wrk -t1 -c"$N" -d"${SECS}s" -s benches/proxy/generate.lua "http://127.0.0.1:$P/generate" | grep '^RESULT '
  echo "gateway CPU ticks (1/100 s): $(( $(ticks) - b ))"
fi
curl -s "localhost:$A/metrics" | grep -E '^portcullis_(classifier_requests|scan_cache)_total'
