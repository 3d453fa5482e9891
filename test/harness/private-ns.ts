/**
 * Running a plain user's side of a test without changing the host: a bash
 * script in a private mount namespace (`unshare -m --propagation private`)
 * where
 *   - the scratch directory is bound at /mnt/t (a tmpfs over /mnt), so a bare
 *     uid reaches it although the run's temp root above it is 0700;
 *   - /dev/fuse is a 0666 node (a tmpfs in the scratch tree, bind-mounted over
 *     the host's 0600 node, which is never chmod'ed);
 *   - /tmp is an empty tmpfs, so nothing a fallback writes there reaches the host;
 *   - optionally /etc/fuse.conf says user_allow_other.
 * Everything mounted there disappears with the namespace. A FUSE daemon
 * started inside keeps the namespace alive: scripts unmount what they mount,
 * and tests kill what is left in the namespace afterwards (processesInNs),
 * since a daemon's arguments name /mnt/t paths, not the host's.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { shq } from './proc.js';

/** where the scratch directory appears inside the namespace */
export const NS_SCRATCH = '/mnt/t';

export interface PrivateNsResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function privateNsPreamble(scratch: string, opts: { userAllowOther?: boolean } = {}): string {
  return `
set -u
mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir ${NS_SCRATCH} && mount --bind ${shq(scratch)} ${NS_SCRATCH} || exit 90
mkdir -p ${NS_SCRATCH}/.ns && mount -t tmpfs -o mode=755 tmpfs ${NS_SCRATCH}/.ns && mknod -m 666 ${NS_SCRATCH}/.ns/fuse c 10 229 && mount --bind ${NS_SCRATCH}/.ns/fuse /dev/fuse || exit 91
${opts.userAllowOther ? `printf 'user_allow_other\\n' > ${NS_SCRATCH}/.ns/fuse.conf && mount --bind ${NS_SCRATCH}/.ns/fuse.conf /etc/fuse.conf || exit 92` : ''}
mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 93
`;
}

/** Run preamble + body as root in a private mount namespace. */
export function runPrivateNs(scratch: string, body: string, opts: { userAllowOther?: boolean; timeoutMs?: number } = {}): Promise<PrivateNsResult> {
  const script = privateNsPreamble(scratch, opts) + body;
  return new Promise((resolve) => {
    execFile('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], { timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      });
  });
}

/**
 * Processes still living in a private namespace made for this scratch
 * directory (their mount table shows it bound at NS_SCRATCH): a daemon left
 * by a failed or killed script. Only processes of that namespace match, so
 * killing them touches nobody else's.
 */
export async function processesInNs(scratch: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const info = await readFile(`/proc/${name}/mountinfo`, 'utf8').catch(() => '');
    // fields: id parent major:minor root mountpoint ...; a bind mount's root is the bound directory
    if (info.split('\n').some((l) => { const f = l.split(' '); return f[4] === NS_SCRATCH && f[3] === scratch; })) out.push(Number(name));
  }
  return out;
}

/** `setpriv` words that make the rest of a command line run as a bare uid (no user in /etc/passwd needed) */
export const asUid = (uid: number, gid = uid): string => `setpriv --reuid=${uid} --regid=${gid} --clear-groups`;
