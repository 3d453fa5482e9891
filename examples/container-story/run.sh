#!/usr/bin/env bash
# The container-image story on three example layers (OCI form: .wh. whiteout, .wh..wh..opq opaque dir).
# Mounts them under a fresh writable upper, reads and writes through the mount, unmounts,
# then shows what appeared in the upper: a copied-up file, a whiteout, an opaque directory.
# Usage: examples/container-story/run.sh [WORKDIR]   (WORKDIR defaults to a new temp dir; kept for inspection)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stratafs=(node "$root/dist/cli/main.js")
L="$here/layers"
run=${1:-$(mktemp -d /tmp/stratafs-story.XXXXXX)}
mkdir -p "$run/upper" "$run/work" "$run/merged"
mnt="$run/merged"

cleanup() { if mountpoint -q "$mnt" 2>/dev/null; then "${stratafs[@]}" umount "$mnt" || true; fi; }
trap cleanup EXIT

echo "== mount: lowerdir=3-update:2-app:1-base (top first), upper=$run/upper"
"${stratafs[@]}" -o "lowerdir=$L/3-update:$L/2-app:$L/1-base,upperdir=$run/upper,workdir=$run/work" "$mnt"

echo "== merged view"
(cd "$mnt" && find . -mindepth 1 | sort)
echo "== /work/message.txt is gone (whited out by 3-update):"
ls "$mnt/work/message.txt" 2>&1 || true
echo "== /app/config is opaque in 3-update: only new.conf, not the base layer's files:"
ls "$mnt/app/config"
echo "== reading through the mount:"
cat "$mnt/work/content.txt"
"$mnt/bin/hello" 2>/dev/null || sh "$mnt/bin/hello"

echo "== writing: append to hello.txt (copy-up), delete delete-me.txt (whiteout), replace /var/log (opaque dir), add a file"
echo "appended through stratafs" >> "$mnt/work/hello.txt"
rm "$mnt/work/delete-me.txt"
rm -r "$mnt/var/log"
mkdir "$mnt/var/log"
echo "fresh log" > "$mnt/var/log/new.log"
echo "new file" > "$mnt/work/new.txt"
cat "$mnt/work/hello.txt"

echo "== unmount"
"${stratafs[@]}" umount "$mnt"

echo "== the upper layer now holds only the changes (kernel overlayfs format):"
(cd "$run/upper" && find . -mindepth 1 -printf '%M %u:%g %p\n' | sort -k3)
echo "-- whiteout: character device 0/0:"
stat -c '%n: %F %t,%T' "$run/upper/work/delete-me.txt"
echo "-- opaque directory xattr:"
getfattr -n trusted.overlay.opaque --only-values "$run/upper/var/log" 2>/dev/null && echo || echo "(getfattr not installed: apt-get install attr)"
echo "-- the lower layers are unchanged:"
cat "$L/2-app/work/hello.txt"
echo "== done; inspect $run, or mount it again with the same command"
