/**
 * Files unlinked while open, served under libfuse's `.fuse_hidden` names
 * without ever writing those names anywhere.
 *
 * libfuse 2.9's high-level API keeps a path for every kernel inode. When a
 * file that is open is unlinked (or renamed over), and the mount does not use
 * `hard_remove`, libfuse does not call unlink: it probes names
 * `<dir>/.fuse_hidden%08x%08x` (node id, a per-mount counter) with getattr
 * until one answers ENOENT, calls our rename(path, thatName), and from then on
 * addresses the node by that name: getattr (the kernel's GETATTR carries no
 * file handle), chmod/chown/utimens for fchmod/fchown/futimens, open through
 * /proc/PID/fd/N, getxattr... When the last handle is released it calls
 * unlink(thatName). (With `hard_remove` the node has no path at all and
 * libfuse answers that GETATTR with ENOENT before asking us: fstat fails.)
 *
 * Here such a rename performs the real unlink of the source (whiteout if a
 * lower layer has the name, upper entry removed; the open fds keep the data
 * alive, as on kernel overlayfs) and records the hidden name as a *virtual*
 * name standing for the open handles of that object. Calls on a virtual name
 * act on one of those fds. Virtual names exist only in this table: never on
 * disk, never in readdir.
 *
 * Keyed by the name alone, not the path: libfuse rebuilds the path from its
 * node tree, so the directory part changes when a parent is renamed, while the
 * name (node id + counter) is unique for the life of the mount. Consequences,
 * accepted: anyone who looks up a virtual name in any directory (it can only be
 * guessed) reaches the unlinked file; and renaming a file that is open onto a
 * name of exactly this form (`.fuse_hidden` + 16 hex digits) that does not
 * exist is taken as libfuse's hide, so that file is gone once it is closed.
 * A rename onto such a name of a file with no open handle is an ordinary
 * rename: that keeps a user's file safe, and leaves a real `.fuse_hidden`
 * file only in libfuse's own race (an unlink on one thread while the last
 * release runs on another, where libfuse hides a node whose last handle is
 * already closed and never unlinks it).
 */
import * as fs from 'node:fs';
import { StatIdx, setIno, type Ino, type Offset } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { fail, sys, type Ctx, type OpenFile } from './ctx.js';
import { codeOf, FsError, nodeErrnoCode } from '../shared/errors.js';
import { lookup } from './namei.js';
import { escapeXattr, unescapeXattr } from './xattr.js';
import type { AttrArray, TimeSet } from './types.js';
import { S_IFDIR, O_ACCMODE } from '../shared/constants.js';
import { changeMode, changeOwner, overrideOpenStat } from './override-stat.js';

/** libfuse 2.9.9 hidden_name(): ".fuse_hidden%08x%08x" (node id, hidectr). */
export const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;

/** One object unlinked while open. */
export interface HiddenFile {
  /** overlay inode number of the object */
  ino: Ino;
  /** its open handles (released ones leave the set) */
  files: Set<OpenFile>;
}

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOCTTY } = fs.constants;

const nameOf = (path: Bstr): Bstr => path.slice(path.lastIndexOf('/') + 1);

/** The virtual object a path names, if any. Costs one size test while nothing is hidden. */
export function hiddenAt(ctx: Ctx, path: Bstr | null): HiddenFile | undefined {
  if (ctx.hidden.size === 0 || path === null) return undefined;
  return ctx.hidden.get(nameOf(path));
}

/**
 * Is rename(from, to) libfuse hiding an open file? `to` has the hidden form,
 * does not exist (libfuse probed it), and `from` is a non-directory with open
 * handles, or is itself a virtual name (an open file renamed over twice).
 */
export function isHide(ctx: Ctx, from: Bstr, to: Bstr): boolean {
  if (!HIDDEN_NAME.test(nameOf(to)) || hiddenAt(ctx, to) !== undefined) return false;
  if (hiddenAt(ctx, from) !== undefined) return true;
  const e = lookup(ctx, from);
  if (e === undefined || e.type === S_IFDIR || lookup(ctx, to) !== undefined) return false;
  return (ctx.filesByIno.get(e.ino)?.size ?? 0) > 0;
}

/**
 * Perform the hide: `unlink` is the core's unlink of `from` (passed in so that
 * this module does not depend on dir-ops). A virtual source only changes name.
 */
export async function hide(ctx: Ctx, from: Bstr, to: Bstr, unlink: (path: Bstr) => Promise<void>): Promise<void> {
  const prev = hiddenAt(ctx, from);
  if (prev !== undefined) {
    ctx.hidden.delete(nameOf(from));
    ctx.hidden.set(nameOf(to), prev);
    return;
  }
  const e = lookup(ctx, from);
  if (e === undefined) fail('ENOENT', from, 'rename');
  await unlink(from);
  // Taken after the unlink: handles opened while it awaited a copy-up count too.
  ctx.hidden.set(nameOf(to), { ino: e.ino, files: new Set(ctx.filesByIno.get(e.ino)) });
}

/** libfuse's unlink of the hidden name after the last release (or anyone's unlink of it). */
export function drop(ctx: Ctx, path: Bstr): void {
  ctx.hidden.delete(nameOf(path));
}

/** A handle was released: it no longer stands for any virtual name. */
export function forgetHandle(ctx: Ctx, f: OpenFile): void {
  if (ctx.hidden.size === 0) return;
  for (const h of ctx.hidden.values()) h.files.delete(f);
}

function anyHandle(h: HiddenFile, path: Bstr, syscall: string): OpenFile {
  for (const f of h.files) return f;
  // All released, libfuse's unlink of the name not yet arrived: the object is gone.
  fail('ENOENT', path, syscall);
}

/**
 * A change to an object whose fds are on a lower layer: kernel overlayfs
 * cannot copy up an unlinked lower file (the copy-up finds the whiteout at its
 * name) and answers EEXIST; checked on this machine's 6.18 with fchmod,
 * futimens, fchown, fsetxattr, truncate and a write-open of /proc/self/fd/N.
 */
function changeable(h: HiddenFile, path: Bstr, syscall: string): OpenFile {
  const f = anyHandle(h, path, syscall);
  if (f.lower) fail('EEXIST', path, syscall, 'unlinked lower file cannot be copied up');
  return f;
}

/**
 * Attributes through a handle. nlink: libfuse subtracts one from the nlink of
 * a hidden node in its GETATTR reply (it expects the hidden name to be a real
 * link), so a count above 0 is reported one higher: fstat then shows 0 for an
 * upper file with no name left, the other names' count for a hard-linked one,
 * and the lower file's own count for an unlinked lower file, as the kernel
 * does. (Replies to chmod/utimens are not decremented by libfuse: there the
 * extra link shows until the kernel's attribute cache expires; only for
 * objects with names left.)
 */
export function attrs(ctx: Ctx, h: HiddenFile, path: Bstr, fh?: number): AttrArray {
  const f = (fh !== undefined ? ctx.files.get(fh) : undefined) ?? anyHandle(h, path, 'getattr');
  const out = sys.fstat(f.fd, undefined, path);
  overrideOpenStat(ctx, f, out);
  setIno(out, h.ino);
  const n = out[StatIdx.nlink]!;
  if (n > 0) out[StatIdx.nlink] = n + 1;
  return out;
}

export function chmod(ctx: Ctx, h: HiddenFile, path: Bstr, mode: number): void {
  const f = changeable(h, path, 'chmod');
  if (ctx.upper?.override !== undefined) { changeMode(ctx, f.fd, '', mode, path); return; }
  try { fs.fchmodSync(f.fd, mode & 0o7777); } catch (e) { throw sysErr(e, path, 'fchmod'); }
}

export function chown(ctx: Ctx, h: HiddenFile, path: Bstr, uid: number, gid: number): void {
  const f = changeable(h, path, 'chown');
  const u = uid === 0xffffffff ? -1 : uid;
  const g = gid === 0xffffffff ? -1 : gid;
  if (ctx.upper?.override !== undefined || ctx.config.ignoreChownErrors) { changeOwner(ctx, f.fd, '', u, g, path); return; }
  try { fs.fchownSync(f.fd, u, g); } catch (e) { throw sysErr(e, path, 'fchown'); }
}

export function utimens(h: HiddenFile, path: Bstr, atime: TimeSet, mtime: TimeSet): void {
  const f = changeable(h, path, 'utimens');
  const t = (v: TimeSet): [number, number] =>
    v === 'now' ? [0, sys.constants.UTIME_NOW] : v === 'omit' ? [0, sys.constants.UTIME_OMIT] : [v.sec, v.nsec];
  const [as, an] = t(atime);
  const [ms, mn] = t(mtime);
  sys.futimens(f.fd, as, an, ms, mn, path);
}

/** truncate(2) by name (the kernel sends ftruncate(2) with the handle, which file-ops serves). */
export function truncate(h: HiddenFile, path: Bstr, size: Offset): void {
  const f = changeable(h, path, 'truncate');
  if (size < 0) fail('EINVAL', path, 'truncate');
  if ((f.flags & O_ACCMODE) !== O_RDONLY) {
    sys.ftruncate(f.fd, size, path);
    return;
  }
  const fd = reopen(f, O_WRONLY, path);
  try {
    sys.ftruncate(fd, size, path);
  } finally {
    sys.raw.close(fd);
  }
}

/**
 * open(2) of the hidden node (someone opened /proc/PID/fd/N): a new fd on the
 * same object through our own /proc/self/fd link. The caller registers it.
 */
export function reopenForOpen(h: HiddenFile, path: Bstr, flags: number): { fd: number; like: OpenFile } {
  const writing = (flags & O_ACCMODE) !== O_RDONLY || (flags & fs.constants.O_TRUNC) !== 0;
  const f = writing ? changeable(h, path, 'open') : anyHandle(h, path, 'open');
  return { fd: reopen(f, flags & ~(O_CREAT | O_EXCL | O_NOCTTY), path), like: f };
}

function reopen(f: OpenFile, flags: number, path: Bstr): number {
  try {
    return fs.openSync(`/proc/self/fd/${f.fd}`, flags);
  } catch (e) {
    throw sysErr(e, path, 'open');
  }
}

export function getxattr(ctx: Ctx, h: HiddenFile, path: Bstr, name: Bstr): Buffer {
  const f = anyHandle(h, path, 'getxattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', path, 'getxattr', name);
  const v = sys.tryFgetxattr(f.fd, real);
  if (typeof v === 'number') fail(codeOf(-v), path, 'getxattr', name);
  return v;
}

export function listxattr(ctx: Ctx, h: HiddenFile, path: Bstr): Bstr[] {
  const f = anyHandle(h, path, 'listxattr');
  const out: Bstr[] = [];
  for (const n of sys.flistxattr(f.fd, path)) {
    const shown = unescapeXattr(ctx, n);
    if (shown !== undefined) out.push(shown);
  }
  return out;
}

export function setxattr(ctx: Ctx, h: HiddenFile, path: Bstr, name: Bstr, value: Buffer, flags: number): void {
  const f = changeable(h, path, 'setxattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('EPERM', path, 'setxattr', name);
  sys.fsetxattr(f.fd, real, value, flags, path);
}

export function removexattr(ctx: Ctx, h: HiddenFile, path: Bstr, name: Bstr): void {
  const f = changeable(h, path, 'removexattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', path, 'removexattr', name);
  sys.fremovexattr(f.fd, real, path);
}

function sysErr(e: unknown, path: Bstr, syscall: string): FsError {
  return new FsError(nodeErrnoCode(e) ?? 'EIO', path, syscall);
}
