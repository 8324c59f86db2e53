#!/usr/bin/env bash
# Publish → serving (issue 17): a signed bundle version renamed into the registry, then served by
# the gateway, while 4 clients send requests through it (none may fail). Notified (POST
# /admin/models/refresh, what the trainer sidecar does) and by the folder watcher. Then a
# tampered, an unsigned and an untrusted copy, each refused while the current version serves.
# Target: publish → first request served by the new version < 1 s; 0 failed requests.
#
#   bash benches/publish/run.sh        # ROUNDS=5 CONCURRENCY=4
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null
ROUNDS=${ROUNDS:-5}; CONCURRENCY=${CONCURRENCY:-4}
OUT=$ROOT/benches/out/publish-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/models/guard/1"
cargo build -q --release --bins -p gateway -p benches
cargo bench -q -p benches --bench publish --no-run 2>/dev/null
BENCH=$(ls -t target/release/deps/publish-* | grep -v '\.d$' | head -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# the registry: version 1 is setup's signed bundle (hard links, nothing copied)
for f in models/guard/1/*; do ln "$f" "$OUT/models/guard/1/" 2>/dev/null || cp "$f" "$OUT/models/guard/1/"; done
MOCK=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >"$OUT/mock.log" 2>&1 &
pids+=($!)
cat >"$OUT/policy.yaml" <<YAML
name: publish-bench
version: 1
input:
  injection_classifier: block
classifiers:
  model: guard
  timeout: 5s
YAML
cat >"$OUT/gateway.yaml" <<YAML
server: {listen: 127.0.0.1:$PORT, threads: 2}
admin: {listen: 127.0.0.1:$ADMIN}
log: {level: warn}
policy: $OUT/policy.yaml
models: {dir: $OUT/models, trust: {keys: [$ROOT/.deps/model-signing/public.pem]}}
upstreams:
  tgi: {backends: [127.0.0.1:$MOCK]}
YAML
PORTCULLIS_ADMIN_TOKEN=$TOKEN ./target/release/gateway serve --config "$OUT/gateway.yaml" \
  2> >(head -c 20000000 >"$OUT/gateway.log") &
pids+=($!)
until curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; do sleep 0.2; done

"$BENCH" --gateway "http://127.0.0.1:$PORT" --admin "http://127.0.0.1:$ADMIN" --token "$TOKEN" \
  --registry "$OUT/models" --key "$ROOT/.deps/model-signing/private.pem" \
  --rounds "$ROUNDS" --concurrency "$CONCURRENCY" | tee "$OUT/results.jsonl"

python3 - "$OUT/results.jsonl" "$ROUNDS" "$CONCURRENCY" >"$OUT/report.md" <<'PY'
import json, sys, datetime, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
s = next(r for r in rows if r.get("summary"))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"### Publish → serving, {datetime.date.today()} ({cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores)\n")
print(f"`bash benches/publish/run.sh` (ROUNDS={sys.argv[2]}, CONCURRENCY={sys.argv[3]}); bundle `models/guard` (INT8 encoder, 28 MB), release build.\n")
print("| path | publications | median publish → serving | max |")
print("|---|---|---|---|")
for m in ("notify", "watch"):
    x = s[m]
    print(f"| {m} | {x['n']} | {x['median_ms']:.0f} ms | {x['max_ms']:.0f} ms |")
print(f"\nRequests during the run: {s['requests_served']} served, **{s['requests_failed']} failed**. "
      f"Bad copies refused while the current version served: {s['bad_copies_refused']} of {s['bad_copies']} "
      "(tampered, unsigned, signed by an untrusted key).")
PY
cat "$OUT/report.md"
