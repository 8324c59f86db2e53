#!/usr/bin/env bash
# CPU per request of the gateway (no policy, or POL="policy: FILE") and of nginx, same mock-tgi,
# wrk at concurrency C (1): the proxy process's utime+stime from /proc over 6 s, two rounds.
#   C=8 bash benches/proxy/cpu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build -q --release --bins -p gateway -p benches
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(fp); P=$(fp); A=$(fp); NP=$(fp)
OUT=$(mktemp -d); mkdir -p $OUT/nginx-{body,proxy,fastcgi,uwsgi,scgi}
./target/release/mock-tgi --listen 127.0.0.1:$MOCK --threads 1 --record 0 --quiet >/dev/null 2>&1 & MP=$!
POL=${POL:-}
cat > $OUT/g.yaml <<YAML
server: {listen: 127.0.0.1:$P, threads: 1}
admin: {listen: 127.0.0.1:$A}
$POL
log: {level: warn}
upstreams:
  tgi: {backends: [127.0.0.1:$MOCK]}
YAML
./target/release/gateway serve --config $OUT/g.yaml 2>$OUT/g.log & GP=$!
sed -e "s#@OUT@#$OUT#g" -e "s#@LISTEN@#127.0.0.1:$NP#" -e "s#@BACKEND@#127.0.0.1:$MOCK#" benches/proxy/nginx.conf.tmpl > $OUT/n.conf
/usr/sbin/nginx -c $OUT/n.conf -e $OUT/ne.log 2>/dev/null & NGP=$!
until curl -fsS localhost:$A/readyz >/dev/null 2>&1 && curl -fsS localhost:$NP/health >/dev/null 2>&1; do sleep 0.1; done
NW=$(pgrep -P $NGP | head -1); [ -n "$NW" ] || NW=$NGP
t() { awk '{print $14+$15}' /proc/$1/stat; }
for round in 1 2; do
for tgt in gw ng; do
  if [ $tgt = gw ]; then pid=$GP; port=$P; else pid=$NW; port=$NP; fi
  wrk -t1 -c${C:-1} -d1s -s benches/proxy/generate.lua http://127.0.0.1:$port/generate >/dev/null
  b=$(t $pid)
  n=$(wrk -t1 -c${C:-1} -d6s -s benches/proxy/generate.lua http://127.0.0.1:$port/generate | grep RESULT | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()[7:])["requests"])')
  e=$(t $pid)
  echo "$tgt round $round: $n requests, $((e-b)) ticks, $(python3 -c "print(round(($e-$b)*10000/$n,1))") us CPU/request"
done; done
kill $GP $MP $NGP; wait 2>/dev/null; rm -rf $OUT
