/**
 * Attribute operations (the kernel's fs/overlayfs/inode.c): getattr, chmod,
 * chown, utimens, truncate, readlink, statfs. Changes copy the object up
 * first; reads go to the top real object.
 */
import * as fs from 'node:fs';
import { STAT_LEN, StatIdx, StatvfsIdx, inoOf, setIno, type Ino, type Offset } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { copyUp } from './copy-up.js';
import { fail, relOf, requireUpper, sys, type Ctx, type Entry } from './ctx.js';
import { isUpperEntry, resolve } from './namei.js';
import type { AttrArray, Caller, StatFs, TimeSet, Timespec } from './types.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, ENOENT } from '../shared/constants.js';
import { changeMode, changeOwner, overrideOpenStat, overrideStat } from './override-stat.js';

/**
 * Attributes of a resolved entry: the top real object's, with the overlay's
 * st_ino. `real`, if given, receives the top real object's own inode number
 * (lower-only entries with cached attributes leave it unchanged).
 */
/** out as a plain array of doubles (Array.from goes through the iterator: ~15x slower) */
function plainCopy(out: AttrArray): number[] {
  const a = new Array<number>(out.length);
  for (let i = 0; i < out.length; i++) a[i] = out[i]!;
  return a;
}

export function attrsOf(ctx: Ctx, e: Entry, real?: { ino: Ino }): AttrArray {
  if (e.attrs !== undefined) return new Float64Array(e.attrs);
  const out = new Float64Array(STAT_LEN);
  const ref = e.stack[0]!;
  const L = ctx.layers[ref.layer]!;
  const r = sys.tryLstatat(L.fd, ref.rel, out);
  if (r < 0) {
    // Vanished behind the cache's back (only through changes outside the mount).
    ctx.cache.drop(e.path);
    fail(r === -ENOENT ? 'ENOENT' : 'EIO', e.path, 'lstat');
  }
  overrideStat(L, L.fd, ref.rel, out);
  if (real) real.ino = inoOf(out);
  setIno(out, e.ino);
  // As the kernel: counting subdirectories of a merged directory is not worth it; find(1) accepts 1.
  if (e.type === S_IFDIR && e.stack.length > 1) out[StatIdx.nlink] = 1;
  if (!L.upper) e.attrs = plainCopy(out);
  return out;
}

export function getattr(ctx: Ctx, path: Bstr): AttrArray {
  return attrsOf(ctx, resolve(ctx, path));
}

export function fgetattr(ctx: Ctx, path: Bstr | null, fh: number): AttrArray {
  const f = ctx.files.get(fh);
  if (!f) {
    if (path !== null) return getattr(ctx, path);
    fail('EBADF', '', 'fgetattr');
  }
  const out = new Float64Array(STAT_LEN);
  sys.fstat(f.fd, out, path ?? '');
  overrideOpenStat(ctx, f, out);
  setIno(out, f.ino);
  return out;
}

export function readlink(ctx: Ctx, path: Bstr): Bstr {
  const e = resolve(ctx, path);
  if (e.type !== S_IFLNK) fail('EINVAL', path, 'readlink');
  const ref = e.stack[0]!;
  return sys.readlinkat(ctx.layers[ref.layer]!.fd, ref.rel);
}

/** Resolve and copy up: the common start of every attribute change. */
async function upperFor(ctx: Ctx, path: Bstr, noData = false): Promise<Entry> {
  requireUpper(ctx, path);
  const e = resolve(ctx, path);
  return isUpperEntry(ctx, e) ? e : copyUp(ctx, path, { noData });
}

export async function chmod(ctx: Ctx, path: Bstr, mode: number, _caller: Caller): Promise<void> {
  const e = await upperFor(ctx, path);
  if (e.type === S_IFLNK) fail('EOPNOTSUPP', path, 'chmod');
  changeMode(ctx, ctx.upper!.fd, relOf(path), mode, path);
}

export async function chown(ctx: Ctx, path: Bstr, uid: number, gid: number, _caller: Caller): Promise<void> {
  await upperFor(ctx, path);
  // -1 (or its unsigned form from the binding) leaves an id unchanged.
  const u = uid === 0xffffffff ? -1 : uid;
  const g = gid === 0xffffffff ? -1 : gid;
  changeOwner(ctx, ctx.upper!.fd, relOf(path), u, g, path);
}

function timeArgs(t: TimeSet): [number, number] {
  if (t === 'now') return [0, sys.constants.UTIME_NOW];
  if (t === 'omit') return [0, sys.constants.UTIME_OMIT];
  return [t.sec, t.nsec];
}

export async function utimens(ctx: Ctx, path: Bstr, atime: TimeSet, mtime: TimeSet, _caller: Caller): Promise<void> {
  await upperFor(ctx, path);
  const [as, an] = timeArgs(atime);
  const [ms, mn] = timeArgs(mtime);
  sys.utimensat(ctx.upper!.fd, relOf(path), as, an, ms, mn);
}

export async function truncate(ctx: Ctx, path: Bstr, size: Offset, _caller: Caller): Promise<void> {
  requireUpper(ctx, path);
  const e0 = resolve(ctx, path);
  if (e0.type === S_IFDIR) fail('EISDIR', path, 'truncate');
  if (e0.type !== S_IFREG) fail('EINVAL', path, 'truncate');
  if (size < 0) fail('EINVAL', path, 'truncate');
  await upperFor(ctx, path, size === 0);
  const fd = sys.openat(ctx.upper!.fd, relOf(path), fs.constants.O_WRONLY, 0);
  try {
    sys.ftruncate(fd, size, path);
  } finally {
    sys.raw.close(fd);
  }
}

export function statfs(ctx: Ctx, path: Bstr): StatFs {
  const L = ctx.upper ?? ctx.layers[0]!;
  const a = sys.fstatvfs(L.fd, undefined, path);
  return {
    bsize: a[StatvfsIdx.bsize]!, frsize: a[StatvfsIdx.frsize]!, blocks: a[StatvfsIdx.blocks]!,
    bfree: a[StatvfsIdx.bfree]!, bavail: a[StatvfsIdx.bavail]!, files: a[StatvfsIdx.files]!,
    ffree: a[StatvfsIdx.ffree]!, favail: a[StatvfsIdx.favail]!, fsid: a[StatvfsIdx.fsid]!,
    flag: a[StatvfsIdx.flag]!, namemax: a[StatvfsIdx.namemax]!,
  };
}

export { S_IFMT };

/**
 * The birth time of the merged object, for a statx(2) that asks for it: that of its top real
 * object, as kernel overlayfs reports it (ovl_getattr passes the real statx on), so a copy-up
 * gives a file the upper copy's. Through the handle `fh` when the front-end names one (or the
 * object has no name left); undefined where the layer's file system keeps none.
 */
export function btime(ctx: Ctx, path: Bstr | null, fh: number): Timespec | undefined {
  const f = fh >= 0 ? ctx.files.get(fh) : undefined;
  if (f !== undefined) return sys.btimeat(f.fd, '', path ?? '');
  if (path === null) fail('EBADF', '', 'statx');
  const ref = resolve(ctx, path).stack[0]!;
  return sys.btimeat(ctx.layers[ref.layer]!.fd, ref.rel, path);
}
