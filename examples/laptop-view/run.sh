#!/usr/bin/env bash
# A read-only merged view of several directories (the developer-laptop case):
# my-overrides on top of team-defaults, no upper, so nothing can be written.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stratafs=(node "$root/dist/cli/main.js")
mnt=$(mktemp -d /tmp/stratafs-laptop.XXXXXX)
trap '"${stratafs[@]}" umount "$mnt" 2>/dev/null || true; rmdir "$mnt"' EXIT
"${stratafs[@]}" -o "lowerdir=$here/my-overrides:$here/team-defaults" "$mnt"
echo "== merged tree"; (cd "$mnt" && find . -mindepth 1 | sort)
echo "== config/settings.ini comes from my-overrides:"; cat "$mnt/config/settings.ini"
echo "== config/network.ini comes from team-defaults:"; cat "$mnt/config/network.ini"
echo "== writes fail (read-only mount):"
touch "$mnt/config/x" 2>&1 || true
