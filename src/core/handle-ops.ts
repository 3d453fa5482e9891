/**
 * Calls through an open handle (fstat, fchmod, fchown, futimens, truncate of
 * /proc/PID/fd/N, open of /proc/PID/fd/N, f*xattr), for an object that has no
 * name left to call it by: a file unlinked, or renamed over, while open. On
 * kernel overlayfs such a file lives on through its open fds; here it lives
 * on through the real fds of its handles, and each call acts on one of them.
 *
 * The front-ends choose the handle: the low-level one addresses such a node
 * by its open handles (FUSE 7.19's SETATTR and xattr requests carry none);
 * fuse_api=highlevel by the names libfuse 2.9 gives such files, which its
 * adapter maps to handles (fuse/highlevel/hidden-names.ts).
 *
 * A change through a handle on a lower file fails EEXIST: kernel overlayfs
 * cannot copy up an unlinked lower file (the copy-up finds the whiteout at its
 * name) and answers EEXIST; checked on this machine's 6.18 with fchmod,
 * futimens, fchown, fsetxattr, truncate and a write-open of /proc/self/fd/N.
 * The core has no name to copy such a file up to anyway: an object that still
 * has one is changed by name (inode-ops.ts).
 */
import * as fs from 'node:fs';
import type { Ino, Offset } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { fail, sys, type Ctx, type OpenFile } from './ctx.js';
import { codeOf, FsError, nodeErrnoCode } from '../shared/errors.js';
import { escapeXattr, unescapeXattr } from './xattr.js';
import type { OpenResult, TimeSet } from './types.js';
import { O_ACCMODE } from '../shared/constants.js';
import { changeMode, changeOwner } from './override-stat.js';
import { backingOpenFlags, register } from './file-ops.js';

const { O_RDONLY, O_WRONLY, O_TRUNC, O_CREAT, O_EXCL, O_NOCTTY } = fs.constants;

/** The open file behind `fh`; messages name the path it was opened by. */
function handle(ctx: Ctx, fh: number, syscall: string): OpenFile {
  const f = ctx.files.get(fh);
  if (!f) fail('EBADF', '', syscall);
  return f;
}

const nameOf = (f: OpenFile): Bstr => f.path ?? '';

/** A handle the object may be changed through (see the header: not one on a lower file). */
function changeable(ctx: Ctx, fh: number, syscall: string): OpenFile {
  const f = handle(ctx, fh, syscall);
  if (f.lower) fail('EEXIST', nameOf(f), syscall, 'unlinked lower file cannot be copied up');
  return f;
}

/** The handles open on the object that getattr numbers `ino`, oldest first. */
export function handlesOf(ctx: Ctx, ino: Ino): number[] {
  const out: number[] = [];
  if (!ctx.filesByIno.has(ino)) return out;
  for (const [fh, f] of ctx.files) if (f.ino === ino) out.push(fh);
  return out;
}

export function fchmod(ctx: Ctx, fh: number, mode: number): void {
  const f = changeable(ctx, fh, 'fchmod');
  if (ctx.upper?.override !== undefined) { changeMode(ctx, f.fd, '', mode, nameOf(f)); return; }
  try { fs.fchmodSync(f.fd, mode & 0o7777); } catch (e) { throw sysErr(e, nameOf(f), 'fchmod'); }
}

/** -1 (or its unsigned form from the binding) leaves an id unchanged. */
export function fchown(ctx: Ctx, fh: number, uid: number, gid: number): void {
  const f = changeable(ctx, fh, 'fchown');
  const u = uid === 0xffffffff ? -1 : uid;
  const g = gid === 0xffffffff ? -1 : gid;
  if (ctx.upper?.override !== undefined || ctx.config.ignoreChownErrors) { changeOwner(ctx, f.fd, '', u, g, nameOf(f)); return; }
  try { fs.fchownSync(f.fd, u, g); } catch (e) { throw sysErr(e, nameOf(f), 'fchown'); }
}

export function futimens(ctx: Ctx, fh: number, atime: TimeSet, mtime: TimeSet): void {
  const f = changeable(ctx, fh, 'futimens');
  const t = (v: TimeSet): [number, number] =>
    v === 'now' ? [0, sys.constants.UTIME_NOW] : v === 'omit' ? [0, sys.constants.UTIME_OMIT] : [v.sec, v.nsec];
  const [as, an] = t(atime);
  const [ms, mn] = t(mtime);
  sys.futimens(f.fd, as, an, ms, mn, nameOf(f));
}

/**
 * truncate(2) of the object open as `fh`, whatever the handle's access mode
 * (truncate of /proc/PID/fd/N): a read-only handle's file is opened again for
 * writing. ftruncate(2), which needs a writable handle, is file-ops.ts's.
 */
export function truncateByHandle(ctx: Ctx, fh: number, size: Offset): void {
  const f = changeable(ctx, fh, 'truncate');
  if (size < 0) fail('EINVAL', nameOf(f), 'truncate');
  if ((f.flags & O_ACCMODE) !== O_RDONLY) {
    sys.ftruncate(f.fd, size, nameOf(f));
    return;
  }
  const fd = reopenFd(f, O_WRONLY);
  try {
    sys.ftruncate(fd, size, nameOf(f));
  } finally {
    sys.raw.close(fd);
  }
}

/**
 * open(2) of the object open as `fh` (someone opened /proc/PID/fd/N): a new
 * handle on the same object, through our own /proc/self/fd link.
 */
export function reopen(ctx: Ctx, fh: number, flags: number): OpenResult {
  const writing = (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
  const like = writing ? changeable(ctx, fh, 'open') : handle(ctx, fh, 'open');
  const fd = reopenFd(like, backingOpenFlags(flags, { fsync: ctx.config.fsync, truncate: true }) & ~(O_CREAT | O_EXCL | O_NOCTTY));
  const f: OpenFile = like.lowerRef
    ? { fd, path: like.path, flags, ino: like.ino, lower: like.lower, lowerRef: like.lowerRef }
    : { fd, path: like.path, flags, ino: like.ino, lower: like.lower };
  return register(ctx, f);
}

function reopenFd(f: OpenFile, flags: number): number {
  try {
    return fs.openSync(`/proc/self/fd/${f.fd}`, flags);
  } catch (e) {
    throw sysErr(e, nameOf(f), 'open');
  }
}

export function fgetxattr(ctx: Ctx, fh: number, name: Bstr): Buffer {
  const f = handle(ctx, fh, 'fgetxattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', nameOf(f), 'fgetxattr', name);
  const v = sys.tryFgetxattr(f.fd, real);
  if (typeof v === 'number') fail(codeOf(-v), nameOf(f), 'fgetxattr', name);
  return v;
}

export function flistxattr(ctx: Ctx, fh: number): Bstr[] {
  const f = handle(ctx, fh, 'flistxattr');
  const out: Bstr[] = [];
  for (const n of sys.flistxattr(f.fd, nameOf(f))) {
    const shown = unescapeXattr(ctx, n);
    if (shown !== undefined) out.push(shown);
  }
  return out;
}

export function fsetxattr(ctx: Ctx, fh: number, name: Bstr, value: Buffer, flags: number): void {
  const f = changeable(ctx, fh, 'fsetxattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('EPERM', nameOf(f), 'fsetxattr', name);
  sys.fsetxattr(f.fd, real, value, flags, nameOf(f));
}

export function fremovexattr(ctx: Ctx, fh: number, name: Bstr): void {
  const f = changeable(ctx, fh, 'fremovexattr');
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', nameOf(f), 'fremovexattr', name);
  sys.fremovexattr(f.fd, real, nameOf(f));
}

function sysErr(e: unknown, path: Bstr, syscall: string): FsError {
  return new FsError(nodeErrnoCode(e) ?? 'EIO', path, syscall);
}
