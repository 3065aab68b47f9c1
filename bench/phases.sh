#!/usr/bin/env bash
# The phases of one job as the API's step-by-step calls make it, timed: a
# daemon's job of N files of SIZE from an nginx on loopback, driven with curl
# on the daemon's socket (create, add the files, set parallel 8, resume, wait
# for TRANSFERRED with `ferry watch`, Complete). `ferry get` itself now
# creates its job with its files, parallelism and resume in one request; the
# steps here show what each costs. Prints each round's times and the
# medians, in seconds.
#
#   bench/phases.sh ROUNDS [FERRY_BIN]      (default: a release build of this checkout)
#
# FERRY_AB_FILES (2000), FERRY_AB_SIZE (65536), FERRY_COMPARE_DIR,
# FERRY_COMPARE_DEST and FERRY_COMPARE_BEFORE_EACH mean what they mean for
# bench/ab.sh. One daemon serves all rounds (a new job each).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:?usage: bench/phases.sh ROUNDS [FERRY_BIN]}"
FILES="${FERRY_AB_FILES:-2000}"
SIZE="${FERRY_AB_SIZE:-65536}"
# shellcheck source=bench/ferry-bin.sh
source bench/ferry-bin.sh
ferry_bin "${2:-}"
# shellcheck source=bench/nginx.sh
source bench/nginx.sh
serve_random_files phases

"$FERRY" serve --data-dir "$WORK/ferry" --socket "$WORK/ferry.sock" --max-transfers 8 "${FERRY_TLS[@]}" 2>"$WORK/ferry.log" &
DAEMON=$!
for _ in $(seq 1 200); do [[ -S "$WORK/ferry.sock" ]] && break; sleep 0.05; done
export FERRY_ADDR="unix:$WORK/ferry.sock"
api() { curl -s --fail --unix-socket "$WORK/ferry.sock" -H 'content-type: application/json' "$@"; }
# Seconds one API call took (curl's own clock); its body goes to $WORK/body.
timed() { api -o "$WORK/body" -w '%{time_total}' "$@"; }
now() { date +%s.%N; }

declare -A times
for round in $(seq 1 "$ROUNDS"); do
  dest="${FERRY_COMPARE_DEST:-$WORK}/dl"
  if [[ -n "${FERRY_COMPARE_BEFORE_EACH:-}" ]]; then bash -c "$FERRY_COMPARE_BEFORE_EACH" >&2; fi
  rm -rf "$dest" && mkdir -p "$dest" && sync
  for i in $(seq 0 $((FILES - 1))); do
    printf '{"remote":"%s/d/f%s","local":"%s/f%s"}\n' "$BASE" "$i" "$dest" "$i"
  done | paste -sd, | sed 's/^/[/; s/$/]/' >"$WORK/files.json"
  create=$(timed -X POST -d '{"name":"phases"}' http://ferry/v1/jobs)
  id=$(sed 's/.*"id":"\([^"]*\)".*/\1/' "$WORK/body")
  add=$(timed -X POST --data-binary @"$WORK/files.json" "http://ferry/v1/jobs/$id/files")
  patch=$(timed -X PATCH -d '{"parallel_files":8}' "http://ferry/v1/jobs/$id")
  t0=$(now)
  resume=$(timed -X POST "http://ferry/v1/jobs/$id/resume")
  "$FERRY" watch "$id" >/dev/null 2>&1
  transfer=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')
  complete=$(timed -X POST "http://ferry/v1/jobs/$id/complete")
  got=$(find "$dest" -type f ! -name '.*' | wc -l)
  [[ "$got" == "$FILES" ]] || { echo "$got files of $FILES" >&2; exit 1; }
  echo "round $round: create $create add $add patch $patch resume $resume transfer $transfer complete $complete" >&2
  for phase in create add patch resume transfer complete; do times[$phase]+="${!phase}"$'\n'; done
done

median() { sort -n | awk 'NF {a[++n]=$1} END {m=(n%2)?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2; printf "%.3f", m}'; }
echo "| create | add files | set parallel | resume | resume to TRANSFERRED | Complete |"
echo "|---|---|---|---|---|---|"
row=""
for phase in create add patch resume transfer complete; do row+="| $(printf '%s' "${times[$phase]}" | median) s "; done
echo "$row|"
