#!/usr/bin/env bash
# ferry vs curl --parallel and aria2c -j 8, downloading from the same nginx
# on loopback: wall time until every file is durable at its final name
# (curl and aria2 get a `sync` at the end; `ferry get` fsyncs before it
# answers), and the peers' times without that sync.
#
#   bench/compare.sh [ROUNDS]        (default 5; medians are printed)
#
# FERRY_COMPARE_SETS="big mid small" picks datasets; FERRY_COMPARE_DIR picks
# where the served files, ferry's store and (by default) the downloads go
# (default: target/ of the checkout); FERRY_COMPARE_DEST puts the downloads
# on another filesystem, and FERRY_COMPARE_BEFORE_EACH is a command run before
# every download (e.g. one that makes a fresh filesystem at FERRY_COMPARE_DEST,
# so that no tool pays for the deletions of the one before it).
# FERRY_COMPARE_TLS=1 serves https instead (nginx.sh: a CA made for the
# run, given to each tool). FERRY_COMPARE_PEERS="curl" leaves aria2 out
# (default "curl aria2"; its column then shows "-"): with a busy disk
# (bench/busy-disk.sh) aria2 takes minutes for the small set.
#
# Installs aria2 (if a peer) and nginx-light from Debian's packages if missing, builds
# `ferry` in release, serves three datasets from a temp dir (1 x 1 GiB,
# 64 x 16 MiB, 2,000 x 64 KiB), and alternates the tools round by round.
# Prints a Markdown table for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-5}"
SETS="${FERRY_COMPARE_SETS:-big mid small}"
read -r -a PEERS <<<"${FERRY_COMPARE_PEERS:-curl aria2}"
for peer in "${PEERS[@]}"; do
  [[ $peer == curl || $peer == aria2 ]] || { echo "FERRY_COMPARE_PEERS: curl and aria2 only, not $peer" >&2; exit 2; }
done
PARALLEL=8

need=()
if [[ " ${PEERS[*]} " == *" aria2 "* ]]; then command -v aria2c >/dev/null || need+=(aria2); fi
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=bench/ferry-bin.sh
source bench/ferry-bin.sh
ferry_bin ""

# On the disk under test (not a tmpfs: `sync` must mean something).
WORK="$(mktemp -d "${FERRY_COMPARE_DIR:-$PWD/target}/ferry-compare.XXXXXX" 2>/dev/null || mktemp -d /var/tmp/ferry-compare.XXXXXX)"
# nginx's workers (nobody, when started as root) must read the files.
chmod 755 "$WORK"
# `ferry get` finds earlier runs by their tags in the state dir: each
# round starts without them.
export XDG_STATE_HOME="$WORK/state"
cleanup() {
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  if [[ -n "${DAEMON:-}" ]]; then kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The datasets, random bytes on disk (nginx serves them from the page cache).
mkdir -p "$WORK/www/big" "$WORK/www/mid" "$WORK/www/small"
[[ " $SETS " == *" big "* ]] && head -c $((1 << 30)) /dev/urandom >"$WORK/www/big/f0"
[[ " $SETS " == *" mid "* ]] && for i in $(seq 0 63); do head -c $((16 << 20)) /dev/urandom >"$WORK/www/mid/f$i"; done
[[ " $SETS " == *" small "* ]] && for i in $(seq 0 1999); do head -c $((64 << 10)) /dev/urandom >"$WORK/www/small/f$i"; done

# shellcheck source=bench/nginx.sh
source bench/nginx.sh
start_nginx

# ferry's daemon, user mode, its own data dir and socket.
"$FERRY" serve --data-dir "$WORK/ferry" --socket "$WORK/ferry.sock" \
  --max-transfers "$PARALLEL" "${FERRY_TLS[@]}" 2>"$WORK/ferry.log" &
DAEMON=$!
export FERRY_ADDR="unix:$WORK/ferry.sock"
for _ in $(seq 1 100); do
  [[ -S "$WORK/ferry.sock" ]] && break
  kill -0 "$DAEMON" 2>/dev/null || { cat "$WORK/ferry.log" >&2; exit 1; }
  sleep 0.1
done

urls() { for f in "$WORK/www/$1"/*; do echo "$BASE/$1/$(basename "$f")"; done; }

now() { date +%s.%N; }

# One download of dataset $2 by tool $1 into a fresh dir; prints
# "<seconds without sync> <seconds with sync>". For ferry, the first is its
# time to TRANSFERRED (every byte durable in its temp files, as `ferry get
# --timings` saw it), the second its time to durable final names.
run() {
  local tool=$1 set=$2 root="${FERRY_COMPARE_DEST:-$WORK}/dl"
  local dest="$root/$tool-$set-$3"
  rm -rf "$root" "$XDG_STATE_HOME"
  if [[ -n "${FERRY_COMPARE_BEFORE_EACH:-}" ]]; then bash -c "$FERRY_COMPARE_BEFORE_EACH" >&2; fi
  mkdir -p "$dest" && sync
  mapfile -t list < <(urls "$set")
  local t0 t1 t2
  t0=$(now)
  case $tool in
    curl)
      printf 'url = "%s"\n' "${list[@]}" >"$WORK/curl.cfg"
      (cd "$dest" && curl -s --fail "${CURL_TLS[@]}" --parallel --parallel-max "$PARALLEL" --remote-name-all -K "$WORK/curl.cfg")
      ;;
    aria2)
      printf '%s\n' "${list[@]}" >"$WORK/aria2.txt"
      aria2c -q "${ARIA2_TLS[@]}" -j "$PARALLEL" -x 1 -d "$dest" -i "$WORK/aria2.txt" \
        --allow-overwrite=true --auto-file-renaming=false --file-allocation=none
      ;;
    ferry)
      "$FERRY" get --timings --parallel "$PARALLEL" -o "$dest" "${list[@]}" >/dev/null 2>"$WORK/get.err" ||
        { cat "$WORK/get.err" >&2; kill $$; }
      ;;
  esac
  t1=$(now)
  sync
  t2=$(now)
  if [[ $tool == ferry ]]; then
    # "ferry: transferred after X s, complete after Y s": the transfer
    # ended Y - X before the command did (so the process's own start
    # counts, as it does for the others).
    local after
    after=$(awk '/transferred after/ {print $8 - $4}' "$WORK/get.err")
    [[ -n "$after" ]] || { cat "$WORK/get.err" >&2; kill $$; }
    # Its files are durable at their names when it answers: no sync of
    # its own is counted.
    t2=$t1
    t1=$(awk -v b="$t1" -v x="$after" 'BEGIN { printf "%.6f", b - x }')
  fi
  # Every file must be there, whole (same count and bytes as served).
  local got want
  got=$(find "$dest" -type f ! -name '.*' -printf '%s\n' | awk '{n++; s+=$1} END {print n+0, s+0}')
  want=$(find "$WORK/www/$set" -type f -printf '%s\n' | awk '{n++; s+=$1} END {print n+0, s+0}')
  [[ "$got" == "$want" ]] || { echo "$tool on $set: got (files bytes) $got, want $want" >&2; kill $$; }
  awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.3f %.3f\n", b - a, c - a }'
}

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

declare -A nosync withsync
for set in $SETS; do
  for round in $(seq 1 "$ROUNDS"); do
    # Alternate the order from round to round.
    order=(ferry "${PEERS[@]}")
    if ((round % 2 == 0)); then mapfile -t order < <(printf '%s\n' "${order[@]}" | tac); fi
    for tool in "${order[@]}"; do
      read -r a b < <(run "$tool" "$set" "$round")
      nosync[$tool,$set]+="$a"$'\n'
      withsync[$tool,$set]+="$b"$'\n'
      echo "round $round $set $tool: ${a}s (${b}s with sync)" >&2
    done
  done
done

# ferry's time to durable final names stands against the peers with their
# final sync; its time to TRANSFERRED (bytes durable in temp files, not yet
# at their names) against the peers without it.
echo "| dataset | ferry get (durable) | curl + sync | aria2 + sync | ferry to TRANSFERRED | curl (no sync) | aria2 (no sync) |"
echo "|---|---|---|---|---|---|---|"
for set in $SETS; do
  case $set in big) name="1 x 1 GiB" ;; mid) name="64 x 16 MiB" ;; small) name="2,000 x 64 KiB" ;; esac
  row="| $name"
  cell() { if [[ -n "${2:-}" ]]; then echo "$(printf '%s' "$2" | median) s"; else echo "-"; fi; }
  for tool in ferry curl aria2; do row+=" | $(cell "$tool" "${withsync[$tool,$set]:-}")"; done
  for tool in ferry curl aria2; do row+=" | $(cell "$tool" "${nosync[$tool,$set]:-}")"; done
  echo "$row |"
done
