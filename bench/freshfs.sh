#!/usr/bin/env bash
# Makes a fresh ext4 (with a journal, the distribution's defaults) on a
# loop file and mounts it at $1 (default /mnt/ferry-bench): for
# `FERRY_COMPARE_BEFORE_EACH`, so that every download starts on a new
# filesystem. Needs root. The image lives in /var/tmp (FERRY_FRESHFS_IMAGE).
# FERRY_FRESHFS_DIRECT_IO=1 attaches it with direct I/O: its writeback then
# goes to the disk without a second copy through the page cache of the
# image's own filesystem (closer to a real disk; CPU the tools share).
#
#   FERRY_COMPARE_DEST=/mnt/ferry-bench FERRY_COMPARE_BEFORE_EACH=bench/freshfs.sh bench/compare.sh
set -euo pipefail
MNT="${1:-${FERRY_COMPARE_DEST:-/mnt/ferry-bench}}"
IMG="${FERRY_FRESHFS_IMAGE:-/var/tmp/ferry-bench-fs.img}"
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
  dev="$(findmnt -n -o SOURCE "$MNT")"
  umount "$MNT"
  # A loop device attached here (not by `mount -o loop`) is not freed by
  # the umount.
  if [[ "$dev" == /dev/loop* ]]; then losetup -d "$dev" 2>/dev/null || true; fi
fi
rm -f "$IMG"
truncate -s 8G "$IMG"
mkfs.ext4 -q -F "$IMG"
if [[ "${FERRY_FRESHFS_DIRECT_IO:-0}" == 1 ]]; then
  mount "$(losetup --direct-io=on -f --show "$IMG")" "$MNT"
else
  mount -o loop "$IMG" "$MNT"
fi
sync
