#!/usr/bin/env bash
# Instructions per request of the whole gateway process (valgrind callgrind: repeatable where
# times on this 2-core machine are not), for this build and BASE_GATEWAY, rules off (no
# policy) and on (the default policy's rules, classifiers left out: ONNX under valgrind would
# time out and take another path). Each configuration runs N1 then N2 sequential keep-alive
# `POST /generate` requests in two gateway processes; (Ir(N2) - Ir(N1)) / (N2 - N1) removes
# start-up and shutdown. Two counts: the whole process, and its spawned threads only (inclusive
# Ir of `start_thread`: the proxy, admin and background services, where requests are served).
# The main thread only starts and stops the server, but its shutdown waits vary with wall time
# (a few million instructions between runs), which lands in the whole-process difference as
# +-5-10k per request; the threads' count is the one to compare.
#
#   BASE_GATEWAY=/path/to/old/gateway bash benches/proxy/instructions.sh   # RULES="off on"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
N1=${N1:-200}; N2=${N2:-1200}
OUT=$ROOT/benches/out/proxy-instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cargo build -q --release --bins -p gateway -p benches
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(free_port)
./target/release/mock-tgi --listen "127.0.0.1:$MOCK" --threads 1 --record 0 --quiet >/dev/null 2>&1 &
MOCK_PID=$!
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
# the default policy without its classifiers section
python3 - "$ROOT/policies/default.yaml" "$OUT/rules.yaml" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
p.pop("classifiers", None)
for side in ("input", "output"):
    for k in [k for k in p.get(side, {}) if k.endswith("_classifier")]:
        p[side].pop(k)
yaml.safe_dump(p, open(sys.argv[2], "w"))
PY
ln -sfn "$ROOT/policies/lexicons" "$OUT/lexicons" # word lists, relative to the policy

requests() { # port n: n sequential keep-alive requests, exactly
  python3 - "$1" "$2" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
body = '{"inputs":"What is Deep Learning? Answer in one sentence.","parameters":{"max_new_tokens":8}}'
for _ in range(int(sys.argv[2])):
    c.request("POST", "/generate", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}

ir() { # binary rules n -> total instructions
  local port admin cfg out
  port=$(free_port); admin=$(free_port); cfg="$OUT/gw-$port.yaml"; out="$OUT/cg-$port.out"
  {
    echo "server: {listen: 127.0.0.1:$port, threads: 1}"
    echo "admin: {listen: 127.0.0.1:$admin}"
    echo "log: {level: warn}"
    [ "$2" = on ] && echo "policy: $OUT/rules.yaml"
    # no health checks: their runs would fall in the N2 - N1 difference, as time passes
    echo "upstreams: {tgi: {backends: [127.0.0.1:$MOCK], health_check: {enabled: false}}}"
  } >"$cfg"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" serve --config "$cfg" 2> >(head -c 1000000 >"$out.log") &
  local pid=$!
  until curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "the gateway did not start: $out.log" >&2; exit 1; }
    sleep 0.5
  done
  requests "$port" "$3"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  sleep 0.5
  local total threads
  total=$(grep -m1 '^summary:' "$out" | awk '{print $2}')
  threads=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
    grep -m1 -E ':start_thread \[' | awk '{gsub(",", "", $1); print $1}')
  echo "$total ${threads:-0}"
}

echo "| build | rules | instructions per request (threads) | (whole process) | N1 | N2 |"
echo "|---|---|---:|---:|---:|---:|"
for rules in ${RULES:-off on}; do
  for build in new ${BASE_GATEWAY:+base}; do
    bin=./target/release/gateway; [ "$build" = base ] && bin=$BASE_GATEWAY
    read -r a at < <(ir "$bin" "$rules" "$N1"); read -r b bt < <(ir "$bin" "$rules" "$N2")
    echo "| $build | $rules | $(( (bt - at) / (N2 - N1) )) | $(( (b - a) / (N2 - N1) )) | $N1 | $N2 |"
  done
done | tee "$OUT/report.md"
