#!/usr/bin/env bash
# Noisy neighbour: a quiet tenant's p50/p99 through the gateway's classifiers, alone and while
# another tenant floods them (LOUD_CONCURRENCY chats of LOUD_MESSAGES messages, one classifier
# window each), rounds interleaved. BASE_GATEWAY=path adds an earlier build in the same run.
# Target (issue 15): the quiet tenant's p99 under the flood within 2x of its p99 alone.
#
#   bash benches/noisy/run.sh      # ROUNDS=3 SAMPLES=100 LOUD_CONCURRENCY=8 LOUD_MESSAGES=200
#   SESSIONS_PER_TENANT=2 ...      # models.sessions_per_tenant (default: the gateway's, workers - 1)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null
ROUNDS=${ROUNDS:-3}; SAMPLES=${SAMPLES:-100}
LOUD_CONCURRENCY=${LOUD_CONCURRENCY:-8}; LOUD_MESSAGES=${LOUD_MESSAGES:-200}
OUT=$ROOT/benches/out/noisy-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cargo build -q --release --bins -p gateway -p benches
cargo bench -q -p benches --bench noisy --no-run 2>/dev/null
BENCH=$(ls -t target/release/deps/noisy-* | grep -v '\.d$' | head -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

MOCK=$(free_port)
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >"$OUT/mock.log" 2>&1 &
pids+=($!)
QUIET=$(./target/release/gateway keys add --file "$OUT/keys.yaml" --id quiet --tenant quiet --quiet)
LOUD=$(./target/release/gateway keys add --file "$OUT/keys.yaml" --id loud --tenant loud --quiet)

start_gw() { # name binary
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$OUT/$1.yaml" <<YAML
server: {listen: 127.0.0.1:$port, threads: 2}
admin: {listen: 127.0.0.1:$admin}
log: {level: warn}
policy: $ROOT/policies/default.yaml
models: {dir: $ROOT/models, trust: {keys: [$ROOT/.deps/model-signing/public.pem]}${SESSIONS_PER_TENANT:+, sessions_per_tenant: $SESSIONS_PER_TENANT}}
auth: {keys_file: $OUT/keys.yaml}
upstreams:
  tgi: {backends: [127.0.0.1:$MOCK]}
YAML
  # logs capped: a flood must not fill the disk with warnings
  "$2" serve --config "$OUT/$1.yaml" 2> >(head -c 20000000 >"$OUT/$1.log") &
  pids+=($!)
  until curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do sleep 0.2; done
  TARGETS+=(--target "$1=http://127.0.0.1:$port")
}
TARGETS=()
start_gw new ./target/release/gateway
[ -n "${BASE_GATEWAY:-}" ] && start_gw base "$BASE_GATEWAY"

"$BENCH" "${TARGETS[@]}" --quiet-key "$QUIET" --loud-key "$LOUD" --samples "$SAMPLES" \
  --loud-concurrency "$LOUD_CONCURRENCY" --loud-messages "$LOUD_MESSAGES" --rounds "$ROUNDS" \
  | tee "$OUT/results.jsonl"

python3 - "$OUT/results.jsonl" "$ROUNDS" "$SAMPLES" "$LOUD_CONCURRENCY" "$LOUD_MESSAGES" "${BASE_GATEWAY:-}" >"$OUT/report.md" <<'PY'
import json, statistics, sys, datetime, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, samples, lc, lm, base = sys.argv[2:7]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
print(f"## Noisy neighbour: a quiet tenant while another floods the classifiers ({datetime.date.today()})\n")
import os
spt = os.environ.get("SESSIONS_PER_TENANT", "")
print(f"- Command: `bash benches/noisy/run.sh` (ROUNDS={rounds} SAMPLES={samples} LOUD_CONCURRENCY={lc} LOUD_MESSAGES={lm}{' SESSIONS_PER_TENANT=' + spt if spt else ''}{' BASE_GATEWAY=' + base if base else ''})")
print(f"- Machine: 2 cores, {cpu}, Linux; gateway with 2 threads and 2 encoder sessions, default policy (guard classifiers), mock-tgi")
print(f"- Build: commit `{commit}`" + (f"; `base` is {base}" if base else ""))
print("- Quiet tenant: sequential one-message chats; loud tenant: concurrent chats of many messages (one window each)\n")
print("| target | round | alone p50 ms | alone p99 ms | flooded p50 ms | flooded p99 ms | p99 flooded/alone | quiet errors flooded | loud requests |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = {}
for r in sorted({(x["target"], x["round"]) for x in rows}):
    a = next(x for x in rows if (x["target"], x["round"], x["phase"]) == (*r, "alone"))
    f = next(x for x in rows if (x["target"], x["round"], x["phase"]) == (*r, "flooded"))
    ratio = f["p99_ms"] / a["p99_ms"] if f["ok"] else float("inf")
    ratios.setdefault(r[0], []).append(ratio)
    print(f"| {r[0]} | {r[1]} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {ratio:.2f} | {f['errors']} | {f['loud_requests']} |")
print()
for t, v in ratios.items():
    print(f"- {t}: median p99 flooded/alone {statistics.median(v):.2f}x over {len(v)} rounds (target <= 2x)")
PY
cat "$OUT/report.md"
