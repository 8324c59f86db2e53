#!/usr/bin/env bash
# The rule chain per request, before and after API families, in one run; and the stream
# filter per delta. See benches/README.md, "API families".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BASE=${BASE:-af1cca0}
ROUNDS=${ROUNDS:-2}
OUT="$ROOT/benches/out/protocols-$(date +%F)"
mkdir -p "$OUT"
WT=${WT:-"$ROOT/target/bench-base-$BASE"}   # an existing worktree of BASE may be named
BT=${BT:-"$ROOT/target/bench-base-target"}

# the baseline: the same bench over the old request path, in a worktree of BASE
if [ ! -d "$WT" ]; then
  git worktree add -q --detach "$WT" "$BASE"
fi
ln -sfn "$ROOT/.deps" "$WT/.deps"
mkdir -p "$WT/gateway/benches/common"
cp gateway/benches/common/guard_shapes.rs "$WT/gateway/benches/common/"
cp benches/protocols/base_guard_request.rs "$WT/gateway/benches/guard_request.rs"
grep -q 'name = "guard_request"' "$WT/gateway/Cargo.toml" ||
  printf '\n[[bench]]\nname = "guard_request"\nharness = false\n' >> "$WT/gateway/Cargo.toml"

exe() { # the bench executable cargo built (run in the tree to ask about)
  cargo bench -p gateway --bench guard_request --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "guard_request"][-1])'
}
NEW_EXE=$(exe)
BASE_EXE=$(cd "$WT" && CARGO_TARGET_DIR="$BT" exe)
# instructions per request (callgrind): repeatable where times are noisy
rm -f "$OUT/instructions.md"
if command -v valgrind >/dev/null; then
  bash benches/protocols/instructions.sh "$NEW_EXE" "$BASE_EXE" > "$OUT/instructions.md"
fi
for r in $(seq 1 "$ROUNDS"); do
  (cd "$WT" && CARGO_TARGET_DIR="$BT" cargo bench -p gateway --bench guard_request -- --noplot 2>/dev/null) > "$OUT/base-$r.txt"
  cargo bench -p gateway --bench guard_request -- --noplot 2>/dev/null > "$OUT/new-$r.txt"
done
cargo bench -p filters --bench protocol -- --noplot 2>/dev/null > "$OUT/deltas.txt"
python3 benches/protocols/report.py "$OUT" "$BASE" "$ROUNDS" | tee "$OUT/report.md"
if [ -z "${NO_RECORD:-}" ]; then
  cat "$OUT/report.md" >> benches/RESULTS.md
fi
