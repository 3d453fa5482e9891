/**
 * The setgid bit the kernel's FUSE module fails to drop.
 *
 * When a process without CAP_FSETID writes, truncates or chowns a regular
 * file, the VFS drops S_ISUID, and S_ISGID when the file is group-executable
 * or when the process is not in the file's group (setattr_should_drop_sgid):
 * kernel overlayfs and every local filesystem behave so. A FUSE filesystem
 * that does not handle killpriv itself (libfuse 2.9 cannot: that is protocol
 * 7.33) gets the kernel's FUSE module instead, which throws that decision
 * away and recomputes it with the old rule, "S_ISGID only together with
 * S_IXGRP" (fs/fuse/dir.c, fuse_setattr). A stranger's write to a 02766 file
 * then leaves it setgid, where the kernel's overlay clears it. The daemon
 * sees the request and its caller (pid, uid, gid) and finishes the job: this
 * file answers whether that caller keeps the bit.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { S_IFMT, S_IFREG, S_ISGID, S_IXGRP } from '../../shared/constants.js';

const CAP_FSETID = 4n;

/** A regular file with S_ISGID and no S_IXGRP: the only case the FUSE module leaves to us. */
export const quietSetgid = (mode: number): boolean => (mode & S_IFMT) === S_IFREG && (mode & (S_ISGID | S_IXGRP)) === S_ISGID;

let ownUserNs: string | undefined;
function userNsOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/user`);
  } catch {
    return undefined;
  }
}

/**
 * Whether the process keeps S_ISGID of a file of group `fileGid` (as the
 * kernel sees the file: shown ids): it is in that group (fs gid or a
 * supplementary group), or has CAP_FSETID in the daemon's user namespace.
 * A process that is gone by now is judged by the request's gid alone.
 */
export function callerKeepsSetgid(pid: number, reqGid: number, fileGid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return reqGid === fileGid;
  }
  const fields = new Map<string, string>();
  for (const line of status.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const field = (name: string): string => fields.get(name) ?? '';
  const gids = field('Gid').split(/\s+/);
  const fsgid = Number(gids[3] ?? reqGid);
  if (fsgid === fileGid) return true;
  if (field('Groups').split(/\s+/).filter(Boolean).map(Number).includes(fileGid)) return true;
  const capEff = BigInt('0x' + (field('CapEff') || '0'));
  if ((capEff >> CAP_FSETID) & 1n) {
    // capabilities count only in the namespace that owns the mount (the daemon's)
    ownUserNs ??= userNsOf('self');
    return ownUserNs !== undefined && userNsOf(pid) === ownUserNs;
  }
  return false;
}
