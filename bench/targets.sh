#!/usr/bin/env bash
# The harness figures of bench/RESULTS.md: each scenario run ROUNDS times
# (default 5) with the release `ferry-bench`, medians printed as Markdown.
#
#   bench/targets.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-5}"
export CARGO_TARGET_DIR="${FERRY_RELEASE_TARGET_DIR:-$HOME/.cache/ferry/target-release}"
cargo build --release --locked -p ferry-bench --bin ferry-bench >&2
BENCH="$CARGO_TARGET_DIR/release/ferry-bench"
# Runs go on the disk under test, not a tmpfs.
export TMPDIR="${FERRY_BENCH_DIR:-$PWD/target/bench-tmp}"
mkdir -p "$TMPDIR"

# median KEY SCENARIO-FLAGS...: runs the scenario ROUNDS times, prints the
# median of the JSON field KEY (a dotted path).
median() {
  local key=$1
  shift
  for _ in $(seq 1 "$ROUNDS"); do
    "$BENCH" --json "$@" | python3 -c '
import json, sys
v = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    v = v[int(part)] if isinstance(v, list) else v[part]
print(v)' "$key"
  done | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'
}

row() { echo "| $1 | $2 | \`ferry-bench $3\` |"; }

echo "| figure | median of $ROUNDS | scenario |"
echo "|---|---|---|"
for spec in "1 1GiB" "64 16MiB" "2000 64KiB"; do
  read -r n size <<<"$spec"
  flags="--jobs 1 --files $n --size $size --parallel 8"
  # shellcheck disable=SC2086
  row "$n x $size, Resume to last Complete (s)" "$(median wall_seconds $flags)" "$flags"
done
# The cost of checkpoints: with and without, alternated round by round (run
# one after the other, the second set meets another page-cache and
# writeback state), which goes first too; 4 x 256 MiB so that checkpoints
# happen (every 16 MiB).
flags="--jobs 1 --files 4 --size 256MiB --parallel 8"
on=() off=()
# shellcheck disable=SC2086
wall() { "$BENCH" --json $flags "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_seconds"])'; }
for round in $(seq 1 "$ROUNDS"); do
  if ((round % 2)); then
    on+=("$(wall)")
    off+=("$(wall --no-checkpoints)")
  else
    off+=("$(wall --no-checkpoints)")
    on+=("$(wall)")
  fi
done
mid() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
row "4 x 256MiB with checkpoints (s)" "$(mid "${on[@]}")" "$flags"
row "4 x 256MiB without checkpoints (s)" "$(mid "${off[@]}")" "$flags --no-checkpoints"
for n in 2500 5000 10000; do
  flags="--jobs 1 --files $n --size 1KiB --parallel 8"
  # shellcheck disable=SC2086
  row "Complete of one job of $n files (ms)" "$(median complete_latency.max_ms $flags)" "$flags"
done
flags="--jobs 5000 --files 1 --size 1KiB --creators 64"
# shellcheck disable=SC2086
row "durable job creations per second, 64 callers" "$(median jobs_created_per_second $flags)" "$flags"
flags="--jobs 1000 --files 100 --size 1KiB --no-resume --restarts 1"
# shellcheck disable=SC2086
row "peak RSS, 100,000 files in 1,000 jobs (MiB)" "$(median peak_rss_bytes $flags | awk '{printf "%.0f", $1/1048576}')" "$flags"
# shellcheck disable=SC2086
row "engine start with them queued (s)" "$(median engine_start_seconds.1 $flags)" "$flags"
