#!/usr/bin/env bash
# Another program writing to the disk under test, for as long as a
# measurement runs: 64 MiB written and fsynced, again and again, into DIR
# (default: FERRY_COMPARE_DIR, else /var/tmp; put it on the disk that holds
# the downloads, or the loop image of bench/freshfs.sh).
#
#   bench/busy-disk.sh start [DIR]
#   FERRY_COMPARE_DEST=/mnt/ferry-bench FERRY_COMPARE_BEFORE_EACH=bench/freshfs.sh \
#     FERRY_COMPARE_DIR=/var/tmp bench/ab.sh 5 /tmp/ferry-old /tmp/ferry-new
#   bench/busy-disk.sh stop [DIR]
#
# On ext4 (data=ordered) every fsync on that filesystem then also waits for
# the writer's data: a tool that makes its files durable in many small
# commits pays that many times, one that syncs once at the end pays once.
set -euo pipefail

DIR="${2:-${FERRY_COMPARE_DIR:-/var/tmp}}"
PIDFILE="$DIR/ferry-busy-disk.pid"
case "${1:-}" in
  start)
    [[ -f "$PIDFILE" ]] && { echo "already running ($PIDFILE)" >&2; exit 1; }
    mkdir -p "$DIR"
    # Its own session, so that stop ends the loop and its dd together.
    setsid bash -c "while true; do dd if=/dev/zero of='$DIR/ferry-busy-disk.data' bs=1M count=64 conv=fsync status=none; done" \
      </dev/null >/dev/null 2>&1 &
    echo $! >"$PIDFILE"
    ;;
  stop)
    if [[ -f "$PIDFILE" ]]; then
      kill -- "-$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE"
    fi
    # The last dd may still be closing its file.
    for _ in $(seq 1 50); do
      pgrep -f "of=$DIR/ferry-busy-disk.data" >/dev/null || break
      sleep 0.1
    done
    rm -f "$DIR/ferry-busy-disk.data"
    ;;
  *)
    echo "usage: bench/busy-disk.sh start|stop [DIR]" >&2
    exit 2
    ;;
esac
