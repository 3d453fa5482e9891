# Sourced (bash) by the harnesses that cover host directories inside a private
# mount namespace: rootless-init.sh (tmpfs over /tmp, /var/tmp, /dev/shm,
# /run/lock) and the container sandbox's holder in containers.ts (tmpfs over
# /run, /dev/shm, /var/tmp, overlays over /etc/containers and /var/lib). A
# covering mount hides everything below it: the test's scratch tree, and the
# checkout and node themselves when they live there (CI clones to any path,
# /tmp/ci for one). These functions put such paths back at their own path.
#
#   keep_open PATH...     an fd on every PATH, opened before anything is covered
#                         (outer paths first: give them sorted by length)
#   keep_bind [--others]  every kept PATH that is no longer the same file at its
#                         path is bound back there from its fd (the missing
#                         directories, or an empty file to bind a file over, are
#                         made in the covering tmpfs). With --others, an ancestor
#                         that others cannot search is first covered by a 0755
#                         tmpfs, so that a bare uid reaches PATH without a chmod.
#                         Idempotent: run it again after more covering mounts.
#   keep_close            closes the fds (before exec'ing a long-lived process)
#
# Nothing here writes the host: whatever is made lands in a tmpfs of the
# namespace, and the bind mounts go with it.

KEEP_PATHS=()
KEEP_FDS=()

keep_open() {
  local p fd
  for p in "$@"; do
    exec {fd}<"$p" || { printf 'ns-keep: cannot open %s\n' "$p" >&2; return 1; }
    KEEP_PATHS+=("$p")
    KEEP_FDS+=("$fd")
  done
}

# The first strict ancestor of $1 that others may not search, if any; a path
# that does not exist (yet) in this view stops the walk.
keep_unsearchable_ancestor() {
  local rest=${1#/} cur='' m
  while [[ $rest == */* ]]; do
    cur+=/${rest%%/*}
    rest=${rest#*/}
    m=$(stat -L -c %a -- "$cur" 2>/dev/null) || return 0
    if (( (8#$m & 1) == 0 )); then printf '%s\n' "$cur"; return 0; fi
  done
}

keep_bind() {
  local others=0 i p fd b
  [ "${1-}" = --others ] && others=1
  for i in "${!KEEP_PATHS[@]}"; do
    p=${KEEP_PATHS[$i]}
    fd=/proc/self/fd/${KEEP_FDS[$i]}
    b=''
    [ $others = 1 ] && b=$(keep_unsearchable_ancestor "$p")
    if [ -n "$b" ]; then
      mount -t tmpfs -o mode=0755 ns-keep "$b" || { printf 'ns-keep: tmpfs over %s\n' "$b" >&2; return 1; }
    elif [ "$p" -ef "$fd" ]; then
      continue
    fi
    if [ -d "$fd" ]; then
      mkdir -p -- "$p"
    else
      mkdir -p -- "${p%/*}" && { [ -e "$p" ] || : > "$p"; }
    fi || { printf 'ns-keep: cannot make %s to bind over\n' "$p" >&2; return 1; }
    # --no-canonicalize: mount(8) would resolve the fd's link to the (now hidden) path
    mount --no-canonicalize --bind "$fd" "$p" || { printf 'ns-keep: bind %s\n' "$p" >&2; return 1; }
  done
}

keep_close() {
  local fd
  for fd in "${KEEP_FDS[@]}"; do exec {fd}<&-; done
  KEEP_FDS=()
  KEEP_PATHS=()
}
