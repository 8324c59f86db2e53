#!/usr/bin/env bash
# MCP tools/call latency (issue 18): the official SDK's server (gateway/tests/clients/mcp_server.py,
# Streamable HTTP, SSE answers) direct, and through the gateway with the rules only
# (benches/mcp/rules.yaml) and with the injection classifiers blocking (benches/mcp/classifier.yaml),
# at each concurrency, rounds interleaved. Prints a markdown table of medians over rounds.
#
#   bash benches/mcp/run.sh     # ROUNDS=3 CALLS=400 CONCURRENCY=1,16 THREADS=1
#   BASELINE_BIN=/path/to/older/gateway bash benches/mcp/run.sh
#                               # adds `rules_base`: the rules through that binary, in the same run
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null
ROUNDS=${ROUNDS:-3}; CALLS=${CALLS:-400}; CONCURRENCY=${CONCURRENCY:-1,16}; THREADS=${THREADS:-1}
OUT=$ROOT/benches/out/mcp-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cargo build -q --release --bins -p gateway
cargo bench -q -p benches --bench mcp --no-run 2>/dev/null
BENCH=$(ls -t target/release/deps/mcp-* | grep -v '\.d$' | head -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

SERVER=$(free_port)
.venv/bin/python gateway/tests/clients/mcp_server.py --port "$SERVER" >"$OUT/server.log" 2>&1 &
pids+=($!)
wait_port "$SERVER"
KEY=$(./target/release/gateway keys add --file "$OUT/keys.yaml" --id bench --tenant bench --quiet)

start_gw() { # name policy [binary]
  local port admin bin=${3:-./target/release/gateway}
  port=$(free_port); admin=$(free_port)
  cat >"$OUT/$1.yaml" <<YAML
server: {listen: 127.0.0.1:$port, threads: $THREADS}
admin: {listen: 127.0.0.1:$admin}
log: {level: warn}
policy: $ROOT/$2
models: {dir: $ROOT/models, trust: {keys: [$ROOT/.deps/model-signing/public.pem]}}
auth: {keys_file: $OUT/keys.yaml}
upstreams: {tgi: {backends: [127.0.0.1:9], health_check: {enabled: false}}}
mcp:
  servers:
    demo: {url: http://127.0.0.1:$SERVER/mcp}
YAML
  "$bin" serve --config "$OUT/$1.yaml" >"$OUT/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  echo "$1=http://127.0.0.1:$port/mcp/demo"
}
T_RULES=$(start_gw rules benches/mcp/rules.yaml)
T_CLS=$(start_gw classifier benches/mcp/classifier.yaml)
BASE=()
if [ -n "${BASELINE_BIN:-}" ]; then
  BASE=(--target "$(start_gw rules_base benches/mcp/rules.yaml "$BASELINE_BIN")")
fi

"$BENCH" --target "direct=http://127.0.0.1:$SERVER/mcp" --target "$T_RULES" "${BASE[@]}" --target "$T_CLS" \
  --key "$KEY" --calls "$CALLS" --concurrency "$CONCURRENCY" --rounds "$ROUNDS" | tee "$OUT/results.jsonl"

python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["concurrency"], r["target"]), []).append(r)
med = lambda xs: statistics.median(xs)
print("\n| concurrency | target | calls/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for conc in sorted({c for c, _ in by}):
    base = by.get((conc, "direct"))
    b50 = med([r["p50_ms"] for r in base]) if base else None
    b99 = med([r["p99_ms"] for r in base]) if base else None
    for name in ["direct", "rules", "rules_base", "classifier"]:
        rs = by.get((conc, name))
        if not rs:
            continue
        p50, p90, p99 = (med([r[k] for r in rs]) for k in ("p50_ms", "p90_ms", "p99_ms"))
        add50 = "" if name == "direct" else f"+{p50 - b50:.3f}"
        add99 = "" if name == "direct" else f"+{p99 - b99:.3f}"
        print(f"| {conc} | {name} | {med([r['calls_per_s'] for r in rs]):.0f} | {p50:.3f} | {p90:.3f} | {p99:.3f} | {add50} | {add99} | {sum(r['errors'] for r in rs)} |")
PY
echo "raw: $OUT/results.jsonl"
