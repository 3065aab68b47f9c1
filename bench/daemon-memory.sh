#!/usr/bin/env bash
# The daemon's memory with a queued backlog, and its restart with it: a
# `ferry serve` gets JOBS jobs of FILES files each through the API (created,
# never resumed: the URLs point at a closed port), then is stopped and
# started again. Prints VmHWM after the creations and after the restart,
# and the restart's time until the socket answers.
#
#   bench/daemon-memory.sh [FERRY_BIN] [JOBS] [FILES]     (default: a release
#   build of this checkout, 1,000 jobs of 100 files)
#
# The harness's in-process figure for the same backlog is `targets.sh`'s
# (ferry-bench --no-resume --restarts 1); this one is the daemon binary's,
# with its own allocator.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/ferry-bin.sh
source bench/ferry-bin.sh
ferry_bin "${1:-}"
JOBS="${2:-1000}"
FILES="${3:-100}"
WORK="$(mktemp -d "${FERRY_COMPARE_DIR:-/var/tmp}/ferry-memory.XXXXXX")"
DAEMON=
cleanup() {
  if [[ -n "$DAEMON" ]]; then kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

start() {
  rm -f "$WORK/ferry.sock"
  "$FERRY" serve --data-dir "$WORK/ferry" --socket "$WORK/ferry.sock" 2>>"$WORK/ferry.log" &
  DAEMON=$!
  for _ in $(seq 1 1000); do
    [[ -S "$WORK/ferry.sock" ]] && return
    kill -0 "$DAEMON" 2>/dev/null || { cat "$WORK/ferry.log" >&2; exit 1; }
    sleep 0.01
  done
  echo "the daemon did not start" >&2
  exit 1
}
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' /proc/"$DAEMON"/status; }

start
for j in $(seq 0 $((JOBS - 1))); do
  mkdir -p "$WORK/dl/j$j"
  awk -v j="$j" -v n="$FILES" -v dir="$WORK/dl/j$j" 'BEGIN {
    printf "{\"name\":\"j%d\",\"files\":[", j
    for (i = 0; i < n; i++) printf "%s{\"remote\":\"http://127.0.0.1:9/j%d/f%d\",\"local\":\"%s/f%d\"}", (i ? "," : ""), j, i, dir, i
    printf "]}"
  }' | curl -sf --unix-socket "$WORK/ferry.sock" -H 'content-type: application/json' \
    --data-binary @- "http://ferry/v1/jobs?files=false" >/dev/null
done
echo "after creating $JOBS jobs of $FILES files: VmHWM $(hwm)"
kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=
t0=$(date +%s.%N)
start
t1=$(date +%s.%N)
restarted=$(hwm)
listed=$(curl -sf --unix-socket "$WORK/ferry.sock" "http://ferry/v1/jobs" | grep -o '"id"' | wc -l)
echo "restart: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s to the socket, VmHWM $restarted, $listed jobs listed"
