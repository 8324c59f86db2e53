#!/usr/bin/env bash
# Signature verification cost for a model of SIZE_MB (default 100) in a few files: `trainer-sidecar
# verify` (reads and hashes every file, checks the ECDSA signature) against `sha256sum` over the
# same files and the reference `model_signing verify key`, ROUNDS rounds interleaved, page cache
# warm (each tool reads the files once before timing). Target (issue 17): hashing throughput
# reported against sha256sum in the same run.
#
#   bash benches/signing/run.sh        # SIZE_MB=100 ROUNDS=5
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SIZE_MB=${SIZE_MB:-100}; ROUNDS=${ROUNDS:-5}
OUT=$ROOT/benches/out/signing-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/model"
cargo build -q --release -p trainer-sidecar --bin trainer-sidecar
BIN=./target/release/trainer-sidecar
# a model: one large weights file and a few small ones, random bytes
python3 - "$OUT/model" "$SIZE_MB" <<'PY'
import os, sys
d, mb = sys.argv[1], int(sys.argv[2])
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    for _ in range(mb):
        f.write(os.urandom(1 << 20))
for name in ("config.json", "tokenizer.json", "README.md"):
    with open(os.path.join(d, name), "wb") as f:
        f.write(os.urandom(4096))
PY
"$BIN" keygen --out "$OUT/keys" >/dev/null
"$BIN" sign "$OUT/model" --private-key "$OUT/keys/private.pem" >/dev/null
python3 - "$ROOT" "$OUT" "$ROUNDS" "$SIZE_MB" <<'PY' | tee "$OUT/report.md"
import statistics, subprocess, sys, time, datetime
root, out, rounds, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = [f"{out}/model/{n}" for n in ("model.safetensors", "config.json", "tokenizer.json", "README.md")]
tools = {
    "trainer-sidecar verify": [f"{root}/target/release/trainer-sidecar", "verify", f"{out}/model", "--public-key", f"{out}/keys/public.pem"],
    "sha256sum": ["sha256sum", *files],
    "model_signing verify key": [f"{root}/.venv/bin/model_signing", "verify", "key", f"{out}/model", "--signature", f"{out}/model/model.sig", "--public_key", f"{out}/keys/public.pem"],
}
times = {k: [] for k in tools}
for cmd in tools.values():  # warm the page cache, and check each passes
    subprocess.run(cmd, check=True, capture_output=True)
for _ in range(rounds):
    for k, cmd in tools.items():
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times[k].append(time.perf_counter() - t)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
print(f"## Model signature verification, {mb} MB ({datetime.date.today()})\n")
print(f"- Command: `bash benches/signing/run.sh` (SIZE_MB={mb} ROUNDS={rounds}); commit `{commit}`")
print(f"- Machine: 2 cores, {cpu}, Linux; files in the page cache; each time is a whole process (start, read, hash, verify)\n")
print("| tool | median s | MB/s | vs sha256sum |")
print("|---|---:|---:|---:|")
base = statistics.median(times["sha256sum"])
for k, v in times.items():
    m = statistics.median(v)
    print(f"| {k} | {m:.3f} | {mb / m:.0f} | {m / base:.2f}x |")
PY
