#!/usr/bin/env bash
# The container-image round trip with OCI layer tarballs:
#   build an OCI image from layers/*.tar.gz -> stratafs image import (verified, unpacked once per layer)
#   -> mount the image under a writable upper -> change things -> stratafs diff (live mount)
#   -> stratafs commit (the upper as a new OCI layer) -> stratafs layer import
#   -> mount image + new layer read-only -> the same tree as the live mount had.
# Usage: examples/oci-roundtrip/run.sh [WORKDIR]   (default: a new temp dir, kept for inspection)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stratafs() { node "$root/dist/cli/main.js" "$@"; }
run=${1:-$(mktemp -d /tmp/stratafs-oci.XXXXXX)}
store="$run/store"
mnt="$run/merged" ro="$run/readonly"
mkdir -p "$run/upper" "$run/work" "$mnt" "$ro"

cleanup() {
  for m in "$mnt" "$ro"; do if mountpoint -q "$m" 2>/dev/null; then stratafs umount "$m" || true; fi; done
}
trap cleanup EXIT

# name, type, mode, size and content hash of every object: the tree to compare
tree() { (cd "$1" && find . -mindepth 1 -printf '%p %y %m %s ' -a \( -type f -exec sh -c 'md5sum < "$1" | cut -c1-32' _ {} \; -o -printf '\n' \) | LC_ALL=C sort); }

echo "== build an OCI image layout from the three story layers"
"$here/make-image.sh" "$run/image" story:1
echo "== stratafs image import"
stratafs image import "$run/image" --store "$store" --name story:1

echo "== mount it with a writable upper"
lowers=$(stratafs image lowers story:1 --store "$store")   # for commit and the re-import below
stratafs mount --image story:1 --store "$store" --upper "$run/upper" --work "$run/work" "$mnt"
stratafs inspect "$mnt" | head -8
echo "merged: $(cd "$mnt" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')"

echo "== change it: append (copy-up), delete (whiteout), replace a directory (opaque), add files"
echo "appended in the container" >> "$mnt/work/hello.txt"
rm "$mnt/work/delete-me.txt"
rm -r "$mnt/var/log" && mkdir "$mnt/var/log" && echo "fresh log" > "$mnt/var/log/new.log"
mkdir -p "$mnt/srv/data" && echo "new data" > "$mnt/srv/data/1.txt"
chmod 600 "$mnt/etc/os-release"
tree "$mnt" > "$run/live.tree"

echo "== stratafs diff (of the live mount)"
stratafs diff "$mnt"
echo "== stratafs size"
stratafs size "$mnt"
echo "== stratafs which"
stratafs which "$mnt/work/hello.txt"
stratafs which "$mnt/work/delete-me.txt" || true
stratafs which "$mnt/app/config"

stratafs umount "$mnt"

echo "== stratafs commit: the upper as an OCI layer"
stratafs commit -o "lowerdir=$lowers,upperdir=$run/upper" --output "$run/4-changes.tar.gz"
tar --quoting-style=literal -tzf "$run/4-changes.tar.gz" | sed 's/^/  /'

echo "== stratafs layer import of the new layer"
new=$(stratafs layer import "$run/4-changes.tar.gz" --store "$store" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).snapshot))')
echo "  snapshot $new"

echo "== mount image + new layer read-only and compare with the live mount"
stratafs -o "lowerdir=$new:$lowers" "$mnt"
tree "$mnt" > "$run/reimported.tree"
stratafs umount "$mnt"
if diff -u "$run/live.tree" "$run/reimported.tree"; then
  echo "round trip: same tree ($(wc -l < "$run/live.tree") objects)"
else
  echo "round trip: trees differ" >&2
  exit 1
fi
echo "== store"
stratafs layer ls --store "$store"
stratafs size --store "$store"
echo "== done; inspect $run"
