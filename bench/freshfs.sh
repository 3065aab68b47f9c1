#!/usr/bin/env bash
# Makes a fresh ext4 (with a journal, the distribution's defaults) on a
# loop file and mounts it at $1 (default /mnt/ferry-bench): for
# `FERRY_COMPARE_BEFORE_EACH`, so that every download starts on a new
# filesystem. Needs root. The image lives in /var/tmp (FERRY_FRESHFS_IMAGE).
#
#   FERRY_COMPARE_DEST=/mnt/ferry-bench FERRY_COMPARE_BEFORE_EACH=bench/freshfs.sh bench/compare.sh
set -euo pipefail
MNT="${1:-${FERRY_COMPARE_DEST:-/mnt/ferry-bench}}"
IMG="${FERRY_FRESHFS_IMAGE:-/var/tmp/ferry-bench-fs.img}"
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then umount "$MNT"; fi
rm -f "$IMG"
truncate -s 8G "$IMG"
mkfs.ext4 -q -F "$IMG"
mount -o loop "$IMG" "$MNT"
sync
