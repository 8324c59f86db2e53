#!/usr/bin/env bash
# A 50-turn conversation's per-turn gateway CPU (issue 19: "the 50th turn costs ≤ 1.5× the
# first turn's gateway CPU"). Chat clients resend the whole conversation every turn; the
# scan-once cache (guard.scan_cache_bytes_per_tenant) scans and classifies only what is new.
#
# Four gateways in one run, the same build: the shipped default rules with the classifiers
# *blocking* (so every request waits for its scores and nothing is sampled away), and the rules
# alone, each with the cache and without it (`scan_cache_bytes_per_tenant: 0`). For each turn
# t = 1..TURNS, CONVERSATIONS distinct conversations send their turn t in turn to each gateway;
# the gateway's CPU time (all its threads, /proc/<pid>/task/*/schedstat, ns) over those
# requests, divided by their number, is turn t's cost.
#
#   bash benches/conversation/run.sh      # TURNS=50 CONVERSATIONS=12; NO_RECORD=1 to print only
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TURNS=${TURNS:-50}; CONVERSATIONS=${CONVERSATIONS:-12}
OUT=$ROOT/benches/out/conversation-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cargo build -q --release --bins -p gateway -p benches
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

MOCK=$(free_port)
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >"$OUT/mock.log" 2>&1 &
pids+=($!)
# the default policy with its injection classifier blocking (at the bundle's threshold)
sed -e 's#^settings:#settings:\n  lexicon_dir: '"$ROOT"'/policies/lexicons/toxicity#' \
    -e 's#^  injection_classifier: monitor#  injection_classifier: block#' \
    -e 's#^  timeout: 100ms#  timeout: 10s#' policies/default.yaml >"$OUT/policy.yaml"
grep -q 'injection_classifier: block' "$OUT/policy.yaml"
# at a threshold benign chat does not reach (the bundle's own one refuses some of it, issue 16):
# the cost is the same, and the requests reach the backend like real ones
echo '  thresholds: {injection: 0.9999}' >>"$OUT/policy.yaml"
# the rules alone (no classifiers)
sed -e 's#^  lexicon_dir: .*#  lexicon_dir: '"$ROOT"'/policies/lexicons/toxicity#' \
    benches/proxy/rules-only.yaml >"$OUT/rules.yaml"
start() { # name cache-bytes policy
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$OUT/$1.yaml" <<YAML
server: {listen: 127.0.0.1:$port, threads: 1}
admin: {listen: 127.0.0.1:$admin}
policy: $3
guard: {scan_cache_bytes_per_tenant: $2}
models:
  dir: $ROOT/models
  workers: 1
  trust: {keys: [$ROOT/.deps/model-signing/public.pem]}
log: {level: warn}
upstreams:
  tgi: {backends: [127.0.0.1:$MOCK]}
YAML
  ./target/release/gateway serve --config "$OUT/$1.yaml" 2> >(head -c 10000000 >"$OUT/$1.log") &
  local pid=$!
  pids+=($pid)
  until curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 $pid $port"
}
{
  start cached 16777216 "$OUT/policy.yaml"; start uncached 0 "$OUT/policy.yaml"
  start rules-cached 16777216 "$OUT/rules.yaml"; start rules-uncached 0 "$OUT/rules.yaml"
} >"$OUT/targets"
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
python3 benches/conversation/drive.py --targets "$OUT/targets" --turns "$TURNS" \
  --conversations "$CONVERSATIONS" --out "$OUT" \
  --machine "$(nproc) cores, $CPU, $(free -g | awk '/Mem:/{print $2}') GiB" \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')" \
  --command "bash benches/conversation/run.sh (TURNS=$TURNS CONVERSATIONS=$CONVERSATIONS)" >"$OUT/report.md"
cat "$OUT/report.md"
if [ -z "${NO_RECORD:-}" ]; then
  { echo; cat "$OUT/report.md"; } >>benches/RESULTS.md
  echo "appended to benches/RESULTS.md (raw: $OUT)" >&2
fi
