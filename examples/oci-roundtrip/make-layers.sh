#!/usr/bin/env bash
# Rebuild layers/*.tar.gz from examples/container-story/layers (the same story as OCI layer tarballs).
# GNU tar with fixed owners, times and order, and gzip -n, so the blobs (and their digests) are reproducible.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../container-story/layers"
for l in 1-base 2-app 3-update; do
  tar -C "$src/$l" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
      --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      -cf - . | gzip -n -9 > "$here/layers/$l.tar.gz"
done
ls -l "$here/layers"
