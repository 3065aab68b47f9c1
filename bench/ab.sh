#!/usr/bin/env bash
# A/B of ferry builds on one dataset: `ferry get` of N files of SIZE from an
# nginx on loopback, each round and each binary with a fresh daemon (and,
# with FERRY_COMPARE_BEFORE_EACH, a fresh filesystem), binaries alternated
# round by round. Prints, per binary, the median wall time, the daemon's
# CPU seconds and its context switches per file (summed over its threads,
# from /proc, for the download only).
#
#   bench/ab.sh ROUNDS FERRY_BIN [FERRY_BIN ...]
#
# FERRY_AB_FILES (2000) and FERRY_AB_SIZE (65536 bytes) pick the dataset;
# FERRY_COMPARE_DIR, FERRY_COMPARE_DEST and FERRY_COMPARE_BEFORE_EACH mean
# what they mean for compare.sh (and FERRY_COMPARE_TLS=1 serves https), e.g.
#
#   FERRY_COMPARE_DEST=/mnt/ferry-bench FERRY_COMPARE_BEFORE_EACH=bench/freshfs.sh \
#     FERRY_COMPARE_DIR=/var/tmp bench/ab.sh 6 /tmp/ferry-old /tmp/ferry-new
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:?usage: bench/ab.sh ROUNDS FERRY_BIN [FERRY_BIN ...]}"
shift
(($# >= 1)) || { echo "usage: bench/ab.sh ROUNDS FERRY_BIN [FERRY_BIN ...]" >&2; exit 2; }
FILES="${FERRY_AB_FILES:-2000}"
SIZE="${FERRY_AB_SIZE:-65536}"
PARALLEL=8
# shellcheck source=bench/nginx.sh
source bench/nginx.sh
serve_random_files ab
mapfile -t list < <(for i in $(seq 0 $((FILES - 1))); do echo "$BASE/d/f$i"; done)

# Context switches and CPU ticks of every live thread of process $1.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
# Busy ticks of the whole machine (user, nice, system, irq, softirq, steal).
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

declare -A walls cpus csws machines
for round in $(seq 1 "$ROUNDS"); do
  bins=("$@")
  # Alternate the order from round to round.
  if ((round % 2 == 0)); then mapfile -t bins < <(printf '%s\n' "$@" | tac); fi
  for bin in "${bins[@]}"; do
    rm -rf "$WORK/ferry" "$WORK/ferry.sock" "$WORK/state"
    export XDG_STATE_HOME="$WORK/state" FERRY_ADDR="unix:$WORK/ferry.sock"
    "$bin" serve --data-dir "$WORK/ferry" --socket "$WORK/ferry.sock" \
      --max-transfers "$PARALLEL" "${FERRY_TLS[@]}" 2>"$WORK/ferry.log" &
    DAEMON=$!
    for _ in $(seq 1 200); do [[ -S "$WORK/ferry.sock" ]] && break; sleep 0.05; done
    dest="${FERRY_COMPARE_DEST:-$WORK}/dl"
    if [[ -n "${FERRY_COMPARE_BEFORE_EACH:-}" ]]; then bash -c "$FERRY_COMPARE_BEFORE_EACH" >&2; fi
    rm -rf "$dest" && mkdir -p "$dest" && sync
    c0=$(switches "$DAEMON") s0=$(ticks "$DAEMON") m0=$(busy) t0=$(date +%s.%N)
    "$bin" get --parallel "$PARALLEL" -o "$dest" "${list[@]}" >/dev/null
    t1=$(date +%s.%N) m1=$(busy) s1=$(ticks "$DAEMON") c1=$(switches "$DAEMON")
    got=$(find "$dest" -type f ! -name '.*' | wc -l)
    [[ "$got" == "$FILES" ]] || { echo "$bin: $got files of $FILES" >&2; exit 1; }
    kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    cpu=$(awk -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz}')
    machine=$(awk -v a="$m0" -v b="$m1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz}')
    csw=$(awk -v a="$c0" -v b="$c1" -v n="$FILES" 'BEGIN {printf "%.1f", (b - a) / n}')
    echo "round $round $bin: ${wall}s, daemon CPU ${cpu}s, ${csw} context switches per file, machine CPU ${machine}s" >&2
    walls[$bin]+="$wall"$'\n' cpus[$bin]+="$cpu"$'\n' csws[$bin]+="$csw"$'\n' machines[$bin]+="$machine"$'\n'
  done
done

median() { sort -n | awk 'NF {a[++n]=$1} END {m=(n%2)?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2; printf "%.2f", m}'; }
echo "| ferry build | wall (median) | daemon CPU | context switches per file | machine CPU |"
echo "|---|---|---|---|---|"
for bin in "$@"; do
  echo "| $bin | $(printf '%s' "${walls[$bin]}" | median) s | $(printf '%s' "${cpus[$bin]}" | median) s | $(printf '%s' "${csws[$bin]}" | median) | $(printf '%s' "${machines[$bin]}" | median) s |"
done
