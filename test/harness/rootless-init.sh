#!/bin/bash
# PID 1 of a rootless test namespace (test/harness/rootless.ts runs it as root
# under `unshare -m --propagation private --pid --fork --kill-child --mount-proc`).
# Sets the namespace up, runs the test's script as the plain user, then reports
# and ends by PID whatever the script left. Inputs: RL_* variables (see
# runAsUser); its messages go to $RL_REPORT, never to the script's stdout.
set -u
umask 022
mapfile -d '' -t RL_ENV < "$RL_ENVFILE"
report=$RL_REPORT
say() { printf '%s\n' "$*" >> "$report"; }
die() { printf 'rootless-init: %s\n' "$*" >&2; say "setup-failed $*"; exit 125; }

# Writable places outside the scratch tree (/tmp, /var/tmp, /dev/shm, /run/lock)
# get a tmpfs of their own (same mode); then the scratch tree, the checkout and
# node are made reachable again at their own paths (ns-keep.sh: bound back
# through fds opened before, any ancestor the user cannot search covered): the
# user reaches them without any chmod and can write nothing of the host's.
. "${BASH_SOURCE[0]%/*}/ns-keep.sh" || die "source ns-keep.sh"
mapfile -d '' -t keep < "$RL_KEEPFILE"
keep_open "${keep[@]}" || die "open ${keep[*]}"
IFS=: read -r -a hide <<< "$RL_HIDE"
for h in "${hide[@]}"; do
  [ -z "$h" ] && continue
  mode=$(stat -c %a "$h") || die "stat $h"
  mount -t tmpfs -o "mode=$mode" rootless-hide "$h" || die "tmpfs over $h"
done
keep_bind --others || die "bind back ${keep[*]}"
keep_close
: > "$report" || die "report"
say "ns $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/pid)"

mount -t tmpfs -o mode=0755,size=64k rootless-dev "$RL_DIR/dev" || die "tmpfs on $RL_DIR/dev"
mknod -m 666 "$RL_DIR/dev/fuse" c 10 229 || die "mknod fuse"
mount --bind "$RL_DIR/dev/fuse" /dev/fuse || die "bind /dev/fuse"
for f in "$RL_NS"/etc/*; do
  mount --bind "$f" "/etc/${f##*/}" || die "bind /etc/${f##*/}"
done

# As on a systemd host, / is shared (rootless podman warns otherwise). The peer
# groups are new ones of this namespace: the host's mounts were made private
# by unshare and never hear of them.
mount --make-rshared / || die "make / shared"

mountkey() { # the mounts of this namespace as "fstype mountpoint" lines
  local a
  while read -r -a a; do
    local i=6; while [ "${a[$i]}" != "-" ]; do i=$((i+1)); done
    printf '%s %s\n' "${a[$((i+1))]}" "${a[4]}"
  done < /proc/self/mountinfo
}
mountkey > "$RL_NS/mounts-before.$RL_SEQ"

cd "$RL_HOME" || die "cd $RL_HOME"
say "start"
as_user=(setpriv --reuid="$RL_UID" --regid="$RL_GID" --clear-groups --)
if [ "$RL_AS_ROOT" = 1 ]; then
  # a script that needs a party besides the user (another uid): it stays root and
  # runs the user's side with $AS_USER
  env -i "${RL_ENV[@]}" AS_USER="${as_user[*]}" /bin/bash "$RL_SCRIPT" < "$RL_INPUT"
else
  "${as_user[@]}" env -i "${RL_ENV[@]}" /bin/bash "$RL_SCRIPT" < "$RL_INPUT"
fi
code=$?
say "exit $code"

# Processes of the namespace other than this init; empty cmdline: a zombie.
others() {
  local d p
  left=()
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    local cmd=()
    mapfile -d '' -t cmd < "$d/cmdline" 2>/dev/null || continue
    [ ${#cmd[@]} -eq 0 ] && continue
    left+=("$p")
  done
}
deadline=$((SECONDS + RL_GRACE))
others
while [ ${#left[@]} -gt 0 ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; others; done

mountkey > "$RL_NS/mounts-after.$RL_SEQ"
grep -vxF -f "$RL_NS/mounts-before.$RL_SEQ" "$RL_NS/mounts-after.$RL_SEQ" > "$RL_NS/mounts-left.$RL_SEQ"
while read -r line; do say "mount $line"; done < "$RL_NS/mounts-left.$RL_SEQ"
others
for p in "${left[@]}"; do
  cmd=()
  mapfile -d '' -t cmd < "/proc/$p/cmdline" 2>/dev/null
  say "process $p ${cmd[*]}"
done
if [ ${#left[@]} -gt 0 ]; then
  kill -TERM "${left[@]}" 2>/dev/null
  for _ in $(seq 30); do others; [ ${#left[@]} -eq 0 ] && break; sleep 0.1; done
  others
  [ ${#left[@]} -gt 0 ] && kill -KILL "${left[@]}" 2>/dev/null
fi
exit $code
