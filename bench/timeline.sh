#!/usr/bin/env bash
# Where the time of one download goes, ferry against curl: each round,
# `ferry get` and then `curl --parallel` fetch N files of SIZE from an
# nginx on loopback that logs when it finished serving each request.
# Printed per tool and round, in seconds from the command's start: the
# first and the last request served, the command's exit, and (curl) the
# end of its final `sync`; then each tool's medians as a Markdown table.
# For ferry, what follows the last request is its durable end: the last
# files' sync, TRANSFERRED, and Complete.
#
#   bench/timeline.sh ROUNDS [FERRY_BIN]    (default: a release build of this checkout)
#
# FERRY_AB_FILES (2000), FERRY_AB_SIZE (65536), FERRY_COMPARE_DIR,
# FERRY_COMPARE_DEST and FERRY_COMPARE_BEFORE_EACH mean what they mean for
# bench/ab.sh. One daemon serves all rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:?usage: bench/timeline.sh ROUNDS [FERRY_BIN]}"
FILES="${FERRY_AB_FILES:-2000}"
SIZE="${FERRY_AB_SIZE:-65536}"
PARALLEL=8
# shellcheck source=bench/ferry-bin.sh
source bench/ferry-bin.sh
ferry_bin "${2:-}"
# shellcheck source=bench/nginx.sh
source bench/nginx.sh
serve_random_files timeline
# Each request logged with the time nginx finished it (ms resolution).
sed -i "s|  access_log off;|  log_format done \"\$msec\"; access_log $WORK/access.log done;|" "$WORK/nginx.conf"
kill -HUP "$(cat "$WORK/nginx.pid")"
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$BASE/d/f0" && [[ -s "$WORK/access.log" ]] && break
  sleep 0.05
done
mapfile -t list < <(for i in $(seq 0 $((FILES - 1))); do echo "$BASE/d/f$i"; done)
export XDG_STATE_HOME="$WORK/state" FERRY_ADDR="unix:$WORK/ferry.sock"
"$FERRY" serve --data-dir "$WORK/ferry" --socket "$WORK/ferry.sock" \
  --max-transfers "$PARALLEL" "${FERRY_TLS[@]}" 2>"$WORK/ferry.log" &
DAEMON=$!
for _ in $(seq 1 200); do [[ -S "$WORK/ferry.sock" ]] && break; sleep 0.05; done

now() { date +%s.%N; }
declare -A rows
# report TOOL T0 EXIT END: the log's first and last times against T0.
report() {
  awk -v tool="$1" -v t0="$2" -v quit="$3" -v end="$4" '
    NR == 1 {first = $1} {last = $1}
    END {printf "%s: first request %.3f, last %.3f, exit %.3f, durable %.3f\n",
      tool, first - t0, last - t0, quit - t0, end - t0}' "$WORK/access.log"
}
for round in $(seq 1 "$ROUNDS"); do
  for tool in ferry curl; do
    rm -rf "$XDG_STATE_HOME"
    if [[ -n "${FERRY_COMPARE_BEFORE_EACH:-}" ]]; then bash -c "$FERRY_COMPARE_BEFORE_EACH" >&2; fi
    dest="${FERRY_COMPARE_DEST:-$WORK}/dl"
    rm -rf "$dest" && mkdir -p "$dest" && sync
    : >"$WORK/access.log"
    t0=$(now)
    if [[ $tool == ferry ]]; then
      "$FERRY" get --parallel "$PARALLEL" -o "$dest" "${list[@]}" >/dev/null
      t1=$(now) t2=$t1
    else
      (cd "$dest" && curl -s --fail "${CURL_TLS[@]}" --parallel --parallel-max "$PARALLEL" --remote-name-all "${list[@]}")
      t1=$(now)
      sync
      t2=$(now)
    fi
    # nginx writes its log line as it finishes a request: give it a moment.
    sleep 0.2
    line=$(report "$tool" "$t0" "$t1" "$t2")
    echo "round $round $line" >&2
    rows[$tool]+="$line"$'\n'
  done
done

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
echo "| tool | first request served | last request served | exit | durable |"
echo "|---|---|---|---|---|"
for tool in ferry curl; do
  row="| $tool"
  # Fields of a line: "TOOL: first request F, last L, exit X, durable D".
  for field in 4 6 8 10; do
    row+=" | $(printf '%s' "${rows[$tool]}" | awk -v f="$field" 'NF {gsub(",", "", $f); print $f}' | median)"
  done
  echo "$row |"
done
