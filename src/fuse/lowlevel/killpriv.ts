/**
 * Which of S_ISUID/S_ISGID a write, truncate or chown takes away, as the VFS decides it
 * for kernel overlayfs and every local filesystem (fs/attr.c, setattr_should_drop_suidgid
 * and setattr_should_drop_sgid):
 * - write and truncate by a caller without CAP_FSETID (in the initial namespace): S_ISUID,
 *   and S_ISGID when the file is group-executable or the caller is neither in the file's
 *   group nor has CAP_FSETID over it;
 * - chown of a non-directory, whoever does it: S_ISUID, and S_ISGID on the same rule.
 *
 * The daemon writes its backing files with CAP_FSETID (root) or as their owner, so the
 * backing filesystem keeps the bits: the server drops them itself.
 *
 * With HANDLE_KILLPRIV_V2 (7.33, feature `killpriv_v2`) the kernel says when: it marks a
 * WRITE (FUSE_WRITE_KILL_SUIDGID), a truncating SETATTR (FATTR_KILL_SUIDGID) or OPEN
 * (FUSE_OPEN_KILL_SUIDGID) of a caller without CAP_FSETID, and every chown of a
 * non-directory; it keeps sending the mode it computes itself on chown and write, which
 * drops S_ISUID and group-executable S_ISGID only (fs/fuse/dir.c, fuse_setattr: "S_ISGID
 * only together with S_IXGRP", the rule from before Linux 6.2). The setgid bit of a file
 * without group execute (a "quiet" S_ISGID) therefore always needs the caller's groups,
 * which FUSE does not carry: read from /proc/PID/status.
 *
 * Without it (fuse_off=killpriv_v2, fuse_minor=32 or lower, a kernel below 7.33) the kernel
 * drops everything but the quiet S_ISGID on its own and tells nothing: the adapter takes
 * every non-root caller's write, truncate and chown as marked, and only that bit is left
 * to drop.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { S_IFMT, S_IFREG, S_ISGID, S_ISUID, S_IXGRP } from '../../shared/constants.js';

const CAP_FSETID = 4n;

/** A regular file with a bit a marked change may take away. */
export const privileged = (mode: number): boolean => (mode & S_IFMT) === S_IFREG && (mode & (S_ISUID | S_ISGID)) !== 0;

let ownUserNs: string | undefined;
function userNsOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/user`);
  } catch {
    return undefined;
  }
}

/** fsgid, supplementary groups and effective capabilities of a process; undefined when it is gone */
function statusOf(pid: number): { fsgid: number | undefined; groups: number[]; capEff: bigint } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const fields = new Map<string, string>();
  for (const line of status.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const field = (name: string): string => fields.get(name) ?? '';
  const fsgid = field('Gid').split(/\s+/)[3];
  return {
    fsgid: fsgid === undefined ? undefined : Number(fsgid),
    groups: field('Groups').split(/\s+/).filter(Boolean).map(Number),
    capEff: BigInt('0x' + (field('CapEff') || '0')),
  };
}

/**
 * Whether the process keeps a quiet S_ISGID of a file of group `fileGid` (as the kernel
 * sees the file: shown ids): it is in that group (fs gid or a supplementary group), or
 * has CAP_FSETID in the daemon's user namespace (capabilities count only in the namespace
 * that owns the mount). A process that is gone by now is judged by the request's gid alone.
 */
export function callerKeepsSetgid(pid: number, reqGid: number, fileGid: number): boolean {
  const st = statusOf(pid);
  if (st === undefined) return reqGid === fileGid;
  if ((st.fsgid ?? reqGid) === fileGid || st.groups.includes(fileGid)) return true;
  if ((st.capEff >> CAP_FSETID) & 1n) {
    ownUserNs ??= userNsOf('self');
    return ownUserNs !== undefined && userNsOf(pid) === ownUserNs;
  }
  return false;
}

/**
 * The mode after a marked change of a file of group `fileGid` (the group before a chown):
 * without S_ISUID, and without S_ISGID where the file is group-executable or the caller
 * keeps no quiet S_ISGID. The same mode back when nothing is dropped.
 */
export function modeAfterKill(mode: number, keepsQuietSetgid: () => boolean): number {
  if (!privileged(mode)) return mode;
  let m = mode & ~S_ISUID;
  if ((m & S_ISGID) !== 0 && ((m & S_IXGRP) !== 0 || !keepsQuietSetgid())) m &= ~S_ISGID;
  return m;
}
