/**
 * Open files (the kernel's fs/overlayfs/file.c): open/create, read/write on
 * the real fd, flush, fsync, release, ftruncate, fsyncdir.
 *
 * Opening a lower file for writing (or with O_TRUNC) copies it up first; an
 * O_TRUNC open copies no data. Read-only handles of a lower file are
 * re-pointed to the upper copy when something copies it up (copy-up.ts), as
 * kernel >= 4.19 does.
 *
 * read/write use node's readSync/writeSync on the real fd, on the JS thread.
 * Measured on this machine (node 20, page-cached file, load ~6 on 2 cores):
 * 4 KiB readSync 2.5 µs, the async fs.read through libuv's pool 29 µs, a
 * 128 KiB readSync 12 µs. Every FUSE handler runs on the
 * JS thread anyway, and a sync call cannot race with the fd swap of a
 * copy-up. A read that has to go to the disk blocks the loop for that time.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import type { Bstr } from '../shared/bstr.js';
import { copyUp } from './copy-up.js';
import { closeWhenIdle, fail, relOf, requireUpper, sys, type Ctx, type Entry, type OpenFile } from './ctx.js';
import { codeOf, FsError, isFsError, nodeErrnoCode } from '../shared/errors.js';
import { linkFd, prepareCreate, placeNew } from './dir-ops.js';
import { overrideStat, placeMode, placeOwner } from './override-stat.js';
import { ACL_ACCESS, ACL_DEFAULT, inherit } from './acl.js';
import { isUpperEntry, lookup, resolve } from './namei.js';
import type { Caller, FileVersion, OpenResult } from './types.js';
import { S_IFDIR, S_IFREG, S_ISGID, S_ISUID, EPERM, O_ACCMODE } from '../shared/constants.js';
import { StatIdx, inoOf, type Offset } from '../native/sys.js';

const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);

const { O_RDONLY, O_TRUNC, O_CREAT, O_EXCL, O_DIRECTORY, O_APPEND, O_NONBLOCK, O_SYNC, O_DSYNC, O_DIRECT, O_NOATIME } = fs.constants;

/**
 * The flags of a FUSE OPEN/CREATE are the kernel's f_flags of the caller's
 * file, internal bits included: __FMODE_EXEC (0x20) on every execve,
 * O_LARGEFILE (forced on 64-bit), __FMODE_NONOTIFY on kernels before 6.14,
 * FASYNC, O_CLOEXEC. openat2 (sys.c) refuses any bit it does not know with
 * EINVAL, so the backing open gets only what changes how its fd behaves:
 * - the access mode, O_APPEND (writes land at the real end, as through the
 *   kernel overlay's real file), O_NONBLOCK, O_DIRECT (EINVAL from a backing
 *   file system without it, as on kernel overlayfs);
 * - O_SYNC/O_DSYNC, unless the mount skips syncs (volatile, fsync=0: the
 *   kernel overlay drops IOCB_SYNC/DSYNC then too);
 * - O_NOATIME, which the kernel allowed on the FUSE inode; the backing open
 *   drops it where the daemon may not use it (openBacking), as ovl_open_realfile does;
 * - O_TRUNC for open only (a lower file was copied up without data first).
 * Everything else is resolution (O_CREAT, O_EXCL, O_NOCTTY, O_DIRECTORY,
 * O_NOFOLLOW -- the kernel has resolved the path, sys.c adds O_NOFOLLOW),
 * fd-table state (O_CLOEXEC, added by sys.c), per-arch (O_LARGEFILE, added by
 * sys.c) or meaningless at open (FASYNC: only fcntl arms it; O_PATH and
 * O_TMPFILE never reach a FUSE open).
 */
const KEEP = O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_DIRECT | O_NOATIME;
const SYNC = O_SYNC | O_DSYNC;

export function backingOpenFlags(flags: number, opts: { fsync: boolean; truncate: boolean }): number {
  let f = flags & (opts.truncate ? KEEP | O_TRUNC : KEEP);
  if (!opts.fsync) f &= ~SYNC;
  return f;
}


/**
 * openat beneath dirfd; O_NOATIME is dropped where the daemon may not use it
 * on that file (EPERM: neither its owner nor CAP_FOWNER, e.g. a plain user's
 * mount reading a root-owned lower file). A file the daemon creates is its own.
 */
function openBacking(dirfd: number, rel: Bstr, flags: number, mode: number): number {
  if ((flags & O_NOATIME) === 0 || (flags & O_CREAT) !== 0) return sys.openat(dirfd, rel, flags, mode);
  const fd = sys.tryOpenat(dirfd, rel, flags, mode);
  if (fd >= 0) return fd;
  if (fd !== -EPERM) fail(codeOf(-fd), rel, 'openat');
  return sys.openat(dirfd, rel, flags & ~O_NOATIME, mode);
}

function nodeErr(e: unknown, path: Bstr | null, syscall: string): FsError {
  if (isFsError(e)) return e;
  return new FsError(nodeErrnoCode(e) ?? 'EIO', path ?? '', syscall);
}

/**
 * keep_cache only for a file with one name: under fuse_api=highlevel each path
 * is its own kernel inode, so a write through another hard link would not
 * invalidate this name's page cache; without keep_cache the kernel drops it at
 * open. The low-level front-end gives an upper file's hard links one node
 * (fuse/lowlevel/nodes.ts), but the core does not know which front-end calls it.
 *
 * The fstat that decides it also gives the layer file's version (FileVersion): the
 * front-end compares it with what it told the kernel (close-to-open), and `e`, the entry
 * opened, is checked here against it. A lower entry keeps its attributes after the first
 * getattr (namei's premise: lower layers do not change under a mount); a layer file changed
 * behind the mount shows its new size, times or inode number in this fstat, and the entry
 * goes (its attributes, and its inode number if the file was replaced by a rename): the next
 * lookup or getattr reads the layer again.
 */
export function register(ctx: Ctx, f: OpenFile, e?: Entry): OpenResult {
  const st = ctx.st;
  const stated = sys.raw.fstat(f.fd, st) === 0;
  const keepCache = stated && st[StatIdx.nlink]! <= 1;
  // A set-id file is not offered for passthrough: the kernel's passthrough write drops no
  // setuid/setgid bit (it writes the layer file with the daemon's CAP_FSETID and sends no
  // WRITE with FUSE_WRITE_KILL_SUIDGID), where kernel overlayfs drops them for a caller
  // without CAP_FSETID (fuse-killpriv.test.ts). Served through WRITE, the server drops them.
  const setId = !stated || (st[StatIdx.mode]! & (S_ISUID | S_ISGID)) !== 0;
  const version = stated ? versionOf(st) : undefined;
  const stale = e?.attrs !== undefined && version !== undefined && !attrsAre(ctx, e, version, st[StatIdx.dev]!);
  if (stale) ctx.cache.drop(e.path);
  const fh = ctx.nextFh++;
  ctx.files.set(fh, f);
  let set = ctx.filesByIno.get(f.ino);
  if (!set) { set = new Set(); ctx.filesByIno.set(f.ino, set); }
  set.add(f);
  const r: OpenResult = { fh, keepCache, directIo: false, version, stale };
  if (!setId) r.backing = { fd: f.fd, lower: f.lower };
  return r;
}

const versionOf = (st: Float64Array): FileVersion => ({
  mtimeSec: st[StatIdx.mtimeSec]!, mtimeNsec: st[StatIdx.mtimeNsec]!, ctimeSec: st[StatIdx.ctimeSec]!,
  ctimeNsec: st[StatIdx.ctimeNsec]!, size: st[StatIdx.size]!, ino: inoOf(st),
});

/** Whether a lower entry's cached attributes are those of the layer file now at `v` (on device `dev`). */
function attrsAre(ctx: Ctx, e: Entry, v: FileVersion, dev: number): boolean {
  const a = e.attrs!;
  return a[StatIdx.mtimeNsec] === v.mtimeNsec && a[StatIdx.ctimeNsec] === v.ctimeNsec && a[StatIdx.mtimeSec] === v.mtimeSec &&
    a[StatIdx.ctimeSec] === v.ctimeSec && a[StatIdx.size] === v.size && e.ino === ctx.inodes.real(dev, v.ino);
}

/** The version of the layer file behind handle `fh` now (undefined: no such handle, or fstat failed). */
export function handleVersion(ctx: Ctx, fh: number): FileVersion | undefined {
  const f = ctx.files.get(fh);
  if (f === undefined || sys.raw.fstat(f.fd, ctx.st) !== 0) return undefined;
  return versionOf(ctx.st);
}

function handle(ctx: Ctx, fh: number, path: Bstr | null, syscall: string): OpenFile {
  const f = ctx.files.get(fh);
  if (!f) fail('EBADF', path ?? '', syscall);
  return f;
}

export async function open(ctx: Ctx, path: Bstr, flags: number, _caller: Caller): Promise<OpenResult> {
  let e = resolve(ctx, path);
  if (e.type === S_IFDIR && (flags & O_ACCMODE) !== O_RDONLY) fail('EISDIR', path, 'open');
  const writing = (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
  if (writing) {
    requireUpper(ctx, path);
    if (!isUpperEntry(ctx, e)) e = await copyUp(ctx, path, { noData: (flags & O_TRUNC) !== 0 && e.type === S_IFREG });
  }
  const ref = e.stack[0]!;
  const L = ctx.layers[ref.layer]!;
  const fd = openBacking(L.fd, ref.rel, backingOpenFlags(flags, { fsync: ctx.config.fsync, truncate: true }), 0);
  return register(ctx, L.upper ? { fd, path, flags, ino: e.ino, lower: false } : { fd, path, flags, ino: e.ino, lower: true, lowerRef: ref }, e);
}

export async function create(ctx: Ctx, path: Bstr, mode: number, flags: number, caller: Caller): Promise<OpenResult> {
  requireUpper(ctx, path);
  const existing = lookup(ctx, path);
  if (existing !== undefined) {
    if (flags & O_EXCL) fail('EEXIST', path, 'create');
    return open(ctx, path, flags & ~O_CREAT, caller);
  }
  const p = await prepareCreate(ctx, path, caller);
  const openFlags = backingOpenFlags(flags, { fsync: ctx.config.fsync, truncate: false }) | O_CREAT | O_EXCL;
  const fd = placeNew(ctx, p, caller, S_IFREG, mode, (dfd, rel) => openBacking(dfd, rel, openFlags, 0o600), path);
  const e = resolve(ctx, path);
  return register(ctx, { fd, path, flags, ino: e.ino, lower: false });
}

/**
 * Reads this large go to libuv's pool: a cold sequential read arrives as
 * several readahead requests at once, and only threads let their disk reads
 * overlap. Small reads stay synchronous (a pool round trip costs more than
 * they do, and they are usually page-cache hits on the layer).
 */
const ASYNC_READ_MIN = 64 * 1024;

/**
 * I/O on an O_DIRECT backing fd needs an aligned buffer, which Node's are not (every
 * direct read and write of a client failed EINVAL): it goes through the addon's aligned
 * bounce buffer, on the loop (direct I/O is rare, and waits on the disk anyway).
 */
function directIo(f: OpenFile, path: Bstr | null, buf: Buffer, len: number, pos: Offset, write: boolean): number {
  const n = sys.raw.pioAligned(f.fd, buf, len, pos, write);
  if (n < 0) fail(codeOf(-n), path ?? '', write ? 'pwrite' : 'pread');
  return n;
}

export function read(ctx: Ctx, path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): number | Promise<number> {
  const f = handle(ctx, fh, path, 'read');
  if (f.flags & O_DIRECT) return directIo(f, path, buf, len, pos, false);
  if (len < ASYNC_READ_MIN) {
    try {
      return fs.readSync(f.fd, buf, 0, len, pos);
    } catch (e) {
      throw nodeErr(e, path, 'read');
    }
  }
  f.reads = (f.reads ?? 0) + 1;
  return new Promise<number>((resolve, reject) => {
    fs.read(f.fd, buf, 0, len, pos, (err, n) => {
      if (--f.reads! === 0 && f.retired) {
        for (const fd of f.retired) sys.raw.close(fd);
        f.retired = undefined;
      }
      if (err) reject(nodeErr(err, path, 'read'));
      else resolve(n);
    });
  });
}

export function write(ctx: Ctx, path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): number {
  const f = handle(ctx, fh, path, 'write');
  if (f.flags & O_DIRECT) return directIo(f, path, buf, len, pos, true);
  // fs.writeSync would write a position of 2^53 or more at the current offset (Node 20).
  if (typeof pos === 'bigint') return sys.pwrite(f.fd, buf, len, pos, path ?? '');
  try {
    return fs.writeSync(f.fd, buf, 0, len, pos);
  } catch (e) {
    throw nodeErr(e, path, 'write');
  }
}

export function flush(ctx: Ctx, path: Bstr | null, fh: number): void {
  handle(ctx, fh, path, 'flush');
}

export async function fsync(ctx: Ctx, path: Bstr | null, fh: number, datasync: boolean): Promise<void> {
  const f = handle(ctx, fh, path, 'fsync');
  if (!ctx.config.fsync) return;
  try {
    await (datasync ? fdatasyncAsync(f.fd) : fsyncAsync(f.fd));
  } catch (e) {
    throw nodeErr(e, path, 'fsync');
  }
}

export function release(ctx: Ctx, _path: Bstr | null, fh: number): void {
  const f = ctx.files.get(fh);
  if (!f) return;
  ctx.files.delete(fh);
  const set = ctx.filesByIno.get(f.ino);
  if (set) { set.delete(f); if (set.size === 0) ctx.filesByIno.delete(f.ino); }
  closeWhenIdle(f, f.fd);
}

export function ftruncate(ctx: Ctx, path: Bstr | null, fh: number, size: Offset): void {
  const f = handle(ctx, fh, path, 'ftruncate');
  if (f.lower) fail('EBADF', path ?? '', 'ftruncate');
  sys.ftruncate(f.fd, size, path ?? '');
}

/** fallocate(2) on the real fd (the handle must be writable: a lower fd is read-only). */
export function fallocate(ctx: Ctx, path: Bstr | null, fh: number, mode: number, offset: number, length: number): void {
  const f = handle(ctx, fh, path, 'fallocate');
  if (f.lower) fail('EBADF', path ?? '', 'fallocate');
  sys.fallocate(f.fd, mode, offset, length, path ?? '');
}

export async function fsyncdir(ctx: Ctx, path: Bstr | null, fh: number, datasync: boolean): Promise<void> {
  const d = ctx.dirs.get(fh);
  if (!d) fail('EBADF', path ?? '', 'fsyncdir');
  if (!ctx.config.fsync || !ctx.upper) return;
  const e = lookup(ctx, d.path);
  if (!e || !isUpperEntry(ctx, e)) return;
  const fd = sys.tryOpenat(ctx.upper.fd, e.stack[0]!.rel, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return;
  try {
    await (datasync ? fdatasyncAsync(fd) : fsyncAsync(fd));
  } catch (err) {
    throw nodeErr(err, path, 'fsyncdir');
  } finally {
    sys.raw.close(fd);
  }
}

/**
 * lseek(2) with SEEK_DATA or SEEK_HOLE on the handle's real file, as kernel overlayfs
 * (ovl_llseek on the real file): holes are those of the layer file the handle reads,
 * ENXIO at or past the end. The real fd's own position is never used (I/O is positional).
 */
export function lseek(ctx: Ctx, path: Bstr | null, fh: number, offset: Offset, whence: number): Offset {
  const f = handle(ctx, fh, path, 'lseek');
  return sys.lseek(f.fd, offset, whence, path ?? '');
}

/**
 * copy_file_range(2) between two handles of the mount, as kernel overlayfs
 * (ovl_copy_file_range: vfs_copy_file_range on the real files): the source may be a
 * lower file; the destination was opened for writing, so it is in the upper already
 * (the open copied it up). The VFS has refused flags, read-only destinations, O_APPEND
 * and overlapping ranges of one file before the request reaches us; flags are checked
 * once more for a client of another kind. Both real fds stay open while the copy runs
 * on the addon's thread (a copy-up may swap the source's fd meanwhile: closeWhenIdle).
 */
export async function copyFileRange(
  ctx: Ctx, pathIn: Bstr | null, fhIn: number, offIn: Offset, pathOut: Bstr | null, fhOut: number, offOut: Offset, len: Offset, flags: number,
): Promise<number> {
  const src = handle(ctx, fhIn, pathIn, 'copy_file_range');
  const dst = handle(ctx, fhOut, pathOut, 'copy_file_range');
  if (flags !== 0) fail('EINVAL', pathOut ?? '', 'copy_file_range', 'flags must be 0');
  if (dst.lower || (dst.flags & O_ACCMODE) === O_RDONLY) fail('EBADF', pathOut ?? '', 'copy_file_range');
  const held = [src, dst];
  for (const f of held) f.reads = (f.reads ?? 0) + 1;
  try {
    return await sys.copyRange(src.fd, offIn, dst.fd, offOut, len, pathOut ?? '');
  } finally {
    for (const f of held) {
      if (--f.reads! === 0 && f.retired) {
        for (const fd of f.retired) sys.raw.close(fd);
        f.retired = undefined;
      }
    }
  }
}

/**
 * syncfs(2) of the mount: the upper layer's file system, as kernel overlayfs
 * (ovl_sync_fs syncs the upper's super block only). Nothing on a read-only mount, and
 * nothing where the mount skips syncs (volatile, fsync=0), as the kernel's volatile.
 */
export async function syncfs(ctx: Ctx): Promise<void> {
  if (!ctx.upper || !ctx.config.fsync) return;
  // the layer root is an O_PATH fd, which syncfs refuses (EBADF)
  const fd = sys.openat(ctx.upper.fd, '', O_RDONLY | O_DIRECTORY, 0);
  try {
    await sys.syncfs(fd, ctx.upper.root);
  } finally {
    sys.raw.close(fd);
  }
}

/**
 * open(2) with O_TMPFILE in the merged directory `dir`: an unnamed file in the directory's
 * upper copy (copied up first, as a create's parent is), as kernel overlayfs since 6.6
 * (ovl_tmpfile). Owner and mode as a create's: the caller, the directory's group when it is
 * set-group-ID; the kernel applied the umask. The handle is the file's only reference until
 * linkat names it (linkFd, dir-ops.ts); closed unnamed, the upper's file system frees it.
 */
export async function tmpfile(ctx: Ctx, dir: Bstr, mode: number, flags: number, caller: Caller): Promise<OpenResult> {
  const upper = requireUpper(ctx, dir);
  const d = resolve(ctx, dir);
  if (d.type !== S_IFDIR) fail('ENOTDIR', dir, 'open');
  await copyUp(ctx, dir);
  const urel = relOf(dir);
  const pst = sys.lstatat(upper.fd, urel, new Float64Array(ctx.st.length));
  overrideStat(upper, upper.fd, urel, pst);
  const gid = (pst[StatIdx.mode]! & S_ISGID) !== 0 ? pst[StatIdx.gid]! : caller.gid;
  // the directory's default ACL, not the umask, decides when it has one (as placeNew, acl.ts)
  const dflt = sys.raw.lgetxattrat(upper.fd, urel, ACL_DEFAULT);
  const got = ctx.overrides.length > 0 ? { mode } : inherit(S_IFREG, mode, caller.umask, typeof dflt === 'number' ? undefined : dflt);
  // O_TMPFILE needs write access (the VFS refused O_RDONLY); O_EXCL is the VFS's (no linkat), not the real file's
  const fd = sys.openat(upper.fd, urel, backingOpenFlags(flags, { fsync: ctx.config.fsync, truncate: false }) | sys.constants.O_TMPFILE, 0o600);
  try {
    placeOwner(ctx, fd, '', S_IFREG, caller.uid, gid);
    placeMode(ctx, fd, '', S_IFREG, caller.uid, gid, got.mode & 0o7777, dir);
    // after the mode: the access ACL's mask sets the group bits (the upper gave the file its own default ACL's, replaced)
    if (got.access !== undefined) sys.fsetxattr(fd, ACL_ACCESS, got.access, 0, dir);
    const st = sys.fstat(fd, new Float64Array(ctx.st.length), dir);
    return register(ctx, { fd, path: null, flags, ino: ctx.inodes.upper(upper.dev, inoOf(st)), lower: false });
  } catch (e) {
    sys.raw.close(fd);
    throw e;
  }
}

/** A name for the unnamed upper file open as `fh` (linkat of an O_TMPFILE): dir-ops.ts linkFd. */
export async function linkHandle(ctx: Ctx, fh: number, path: Bstr, caller: Caller): Promise<void> {
  const f = handle(ctx, fh, path, 'link');
  // an unlinked lower file has no upper object to name (kernel overlayfs: the copy-up meets its whiteout)
  if (f.lower) fail('EEXIST', path, 'link', 'unlinked lower file cannot be copied up');
  await linkFd(ctx, f.fd, path, caller);
}
