/**
 * Running a host tool so that it cannot write the host. Some tools write outside the
 * directories they are given (skopeo: /var/lib/containers/cache/blob-info-cache-v1.boltdb
 * and temporary files in /var/tmp; npm: ~/.npm). In a private mount namespace every
 * mount is remounted read-only except the given scratch directories (bind-mounted onto
 * themselves first) and /proc, /sys, /dev: a write elsewhere fails with EROFS instead
 * of changing the machine. Nothing leaves the namespace.
 */

/** Bash that, run inside `unshare -m --propagation private`, leaves only `writable` writable. */
export function readOnlyHostPrelude(writable: readonly string[]): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = writable.map((w) => `mount --bind ${q(w)} ${q(w)} || exit 97`);
  const keep = writable.flatMap((w) => [q(w), `${q(w)}/*`]).join('|');
  lines.push(
    // mountinfo escapes blanks as \\040: printf %b turns them back
    `awk '{print $5}' /proc/self/mountinfo | while read -r m; do m=$(printf '%b' "$m"); case "$m" in ${keep}|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac; mount -o remount,bind,ro "$m" 2>/dev/null; done`,
    // access(W_OK) answers EROFS on a read-only mount, also to root
    '{ [ -w /etc ] || [ -w /var/tmp ] || [ -w /root ]; } && { echo "readOnlyHostPrelude: the host is still writable" >&2; exit 98; }',
  );
  return lines.join('\n') + '\n';
}

/** file and args that run bash `script` with the host read-only but `writable`. */
export function inReadOnlyHost(script: string, writable: readonly string[]): [string, string[]] {
  return ['unshare', ['-m', '--propagation', 'private', 'bash', '-c', readOnlyHostPrelude(writable) + script]];
}
