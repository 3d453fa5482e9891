#!/usr/bin/env bash
# Build an OCI image layout (what `skopeo copy` or `umoci` would write) from layers/*.tar.gz,
# with nothing but sha256sum and a shell: blobs named by digest, a config listing the diff-ids
# (digests of the uncompressed tars), a manifest listing the blobs, and index.json naming it.
# Usage: make-image.sh OUTDIR [REF]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: make-image.sh OUTDIR [REF]}
ref=${2:-story}
mkdir -p "$out/blobs/sha256"
digest() { sha256sum | cut -d' ' -f1; }
put() { local d; d=$(digest < "$1"); cp "$1" "$out/blobs/sha256/$d"; echo "$d"; }

layers_json="" diffids_json=""
for l in "$here"/layers/1-base.tar.gz "$here"/layers/2-app.tar.gz "$here"/layers/3-update.tar.gz; do
  d=$(put "$l"); size=$(stat -c %s "$l"); diffid=$(zcat "$l" | digest)
  layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}"
  diffids_json+="${diffids_json:+,}\"sha256:$diffid\""
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/hello"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffids_json" > "$tmp/config"
cd_=$(put "$tmp/config"); cs=$(stat -c %s "$tmp/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cd_" "$cs" "$layers_json" > "$tmp/manifest"
md=$(put "$tmp/manifest"); ms=$(stat -c %s "$tmp/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$md" "$ms" "$ref" > "$out/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
echo "$out: OCI layout, ref $ref, manifest sha256:$md"
