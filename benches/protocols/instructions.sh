#!/usr/bin/env bash
# Instructions per guarded request, before and after API families, counted by callgrind
# (repeatable on a shared machine, where times are not): each shape runs N and 2N times, and
# the difference over N is one request's count (the set-up, policy compilation included,
# cancels out). Usage: instructions.sh NEW_BENCH_BINARY BASE_BENCH_BINARY [N]
set -euo pipefail
NEW=$1 BASE=$2 N=${3:-100}
count() { # binary shape iterations
  GUARD_ITERS=$3 GUARD_SHAPE=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '| shape | before (instructions) | after (instructions) | after / before |\n|---|---:|---:|---:|\n'
for shape in generate_1kb chat_short chat_system_user_1kb chat_parts_1kb chat_8_turns completions_1kb; do
  b=$(( ($(count "$BASE" $shape $((2 * N))) - $(count "$BASE" $shape $N)) / N ))
  a=$(( ($(count "$NEW" $shape $((2 * N))) - $(count "$NEW" $shape $N)) / N ))
  printf '| %s | %d | %d | %s |\n' "$shape" "$b" "$a" "$(python3 -c "print(f'{$a/$b:.2f}')")"
done
