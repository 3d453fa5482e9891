/**
 * Typed wrappers over the project's syscall addon (sys.c, contract in sys-api.ts).
 *
 * Two flavours:
 * - the plain names (`lstatat`, `mkdirat`, ...) throw FsError carrying the errno
 *   code and the path (`rel` for *at calls) and return the useful value;
 * - the `try*` names and `raw` never throw on an errno: they return the value or
 *   a negative errno, for hot paths where failure is normal (a lookup probing
 *   each layer mostly gets ENOENT, and an exception costs ~10 µs).
 *
 * Every path/name is a Bstr (latin1 byte string). `rel` is resolved beneath
 * `dirfd` with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS and its last component is
 * never followed; `rel === ''` means dirfd itself. See native-notes/syscalls.md.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { codeOf, FsError } from '../shared/errors.js';
import type { Bstr } from '../shared/bstr.js';
import { DT, EACCES, EISDIR, ENAMETOOLONG } from '../shared/constants.js';
import { STAT_LEN, STATVFS_LEN, inoOf, type CopyResult, type Ino, type Offset, type SysAddon } from './sys-api.js';

export { STAT_LEN, StatIdx, STATVFS_LEN, StatvfsIdx, inoOf, setIno, canonicalIno } from './sys-api.js';
export type { CopyResult, Ino, Offset, SysAddon } from './sys-api.js';

/** Where the built addon may live: beside this file (src/native) or, from dist/native, back in src/native. */
const CANDIDATES = [
  './build/Release/stratafs_sys.node',
  '../../src/native/build/Release/stratafs_sys.node',
  './build/Debug/stratafs_sys.node',
];

function load(): SysAddon {
  const req = createRequire(import.meta.url);
  const override = process.env.STRATAFS_SYS_ADDON;
  if (override) return req(override) as SysAddon;
  for (const c of CANDIDATES) {
    if (existsSync(fileURLToPath(new URL(c, import.meta.url)))) return checked(req(c) as SysAddon, c);
  }
  throw new Error('stratafs: syscall addon not built (src/native/build/Release/stratafs_sys.node); run `node src/native/build.mjs`');
}

/** An addon built from older sources would read and write stat arrays in another layout. */
function checked(a: SysAddon, where: string): SysAddon {
  if (a.constants.STAT_LEN !== STAT_LEN) {
    throw new Error(`stratafs: the syscall addon ${where} was built from older sources (stat layout ${a.constants.STAT_LEN ?? 16}, these sources ${STAT_LEN}); rebuild it: node src/native/build.mjs`);
  }
  return a;
}

/**
 * A missing addon must not break importing modules that merely reference these
 * wrappers (type checks, unit tests of pure code); it fails on first use instead.
 */
function loadOrDeferError(): SysAddon {
  try {
    return load();
  } catch (e) {
    return new Proxy({} as SysAddon, { get() { throw e; } });
  }
}

/**
 * The longest `rel` handed to one system call. The kernel refuses a path of
 * PATH_MAX (4096) bytes or more with ENAMETOOLONG, but a tree can be deeper
 * than that below a layer root (the kernel overlay reads it), so a longer `rel`
 * is walked in pieces: see `deep`.
 */
export const REL_CHUNK = 2048;

/**
 * Runs `call(fd, rest)` with `rel` split so that no piece exceeds REL_CHUNK:
 * each leading piece (whole components) is opened O_PATH|O_DIRECTORY beneath the
 * fd before it by the addon's openat (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
 * so every component is still resolved beneath the layer root, no symlink is
 * followed, and a '..' that would step above a piece is refused (EXDEV; the
 * core never passes '..'). Intermediate fds are closed before returning.
 */
function deep<T>(a: SysAddon, dirfd: number, rel: Bstr, call: (fd: number, rel: Bstr) => T | number): T | number {
  let fd = dirfd;
  let rest = rel;
  try {
    while (rest.length > REL_CHUNK) {
      const cut = rest.lastIndexOf('/', REL_CHUNK);
      if (cut <= 0) return -ENAMETOOLONG;
      const next = a.openat(fd, rest.slice(0, cut), a.constants.O_PATH | a.constants.O_DIRECTORY, 0);
      if (next < 0) return next;
      if (fd !== dirfd) a.close(fd);
      fd = next;
      rest = rest.slice(cut + 1);
    }
    return call(fd, rest);
  } finally {
    if (fd !== dirfd) a.close(fd);
  }
}

/** Both sides of a two-name call, each walked by `deep`. */
function deep2(a: SysAddon, od: number, orel: Bstr, nd: number, nrel: Bstr, call: (od: number, orel: Bstr, nd: number, nrel: Bstr) => number): number {
  return deep(a, od, orel, (ofd, o) => deep(a, nd, nrel, (nfd, n) => call(ofd, o, nfd, n)));
}

/**
 * The addon with every `(dirfd, rel)` call able to take a `rel` of any length
 * (see `deep`). A short `rel`, the common case, costs one length test.
 */
function deepPaths(a: SysAddon): SysAddon {
  const long = (rel: Bstr): boolean => rel.length > REL_CHUNK;
  return Object.freeze({
    ...a,
    constants: a.constants,
    openat: (d, rel, flags, mode) => long(rel) ? deep(a, d, rel, (f, r) => a.openat(f, r, flags, mode)) : a.openat(d, rel, flags, mode),
    lstatat: (d, rel, out) => long(rel) ? deep(a, d, rel, (f, r) => a.lstatat(f, r, out)) : a.lstatat(d, rel, out),
    mkdirat: (d, rel, mode) => long(rel) ? deep(a, d, rel, (f, r) => a.mkdirat(f, r, mode)) : a.mkdirat(d, rel, mode),
    mknodat: (d, rel, mode, dev) => long(rel) ? deep(a, d, rel, (f, r) => a.mknodat(f, r, mode, dev)) : a.mknodat(d, rel, mode, dev),
    unlinkat: (d, rel, flags) => long(rel) ? deep(a, d, rel, (f, r) => a.unlinkat(f, r, flags)) : a.unlinkat(d, rel, flags),
    symlinkat: (target, d, rel) => long(rel) ? deep(a, d, rel, (f, r) => a.symlinkat(target, f, r)) : a.symlinkat(target, d, rel),
    renameat2: (od, orel, nd, nrel, flags) => long(orel) || long(nrel)
      ? deep2(a, od, orel, nd, nrel, (o, or, n, nr) => a.renameat2(o, or, n, nr, flags)) : a.renameat2(od, orel, nd, nrel, flags),
    linkat: (od, orel, nd, nrel) => long(orel) || long(nrel)
      ? deep2(a, od, orel, nd, nrel, (o, or, n, nr) => a.linkat(o, or, n, nr)) : a.linkat(od, orel, nd, nrel),
    readlinkat: (d, rel) => long(rel) ? deep(a, d, rel, (f, r) => a.readlinkat(f, r)) : a.readlinkat(d, rel),
    fchownat: (d, rel, uid, gid) => long(rel) ? deep(a, d, rel, (f, r) => a.fchownat(f, r, uid, gid)) : a.fchownat(d, rel, uid, gid),
    fchmodat: (d, rel, mode) => long(rel) ? deep(a, d, rel, (f, r) => a.fchmodat(f, r, mode)) : a.fchmodat(d, rel, mode),
    utimensat: (d, rel, as, an, ms, mn) => long(rel) ? deep(a, d, rel, (f, r) => a.utimensat(f, r, as, an, ms, mn)) : a.utimensat(d, rel, as, an, ms, mn),
    readdirat: (d, rel) => long(rel) ? deep(a, d, rel, (f, r) => a.readdirat(f, r)) : a.readdirat(d, rel),
    lgetxattrat: (d, rel, name) => long(rel) ? deep(a, d, rel, (f, r) => a.lgetxattrat(f, r, name)) : a.lgetxattrat(d, rel, name),
    lsetxattrat: (d, rel, name, value, flags) => long(rel)
      ? deep(a, d, rel, (f, r) => a.lsetxattrat(f, r, name, value, flags)) : a.lsetxattrat(d, rel, name, value, flags),
    llistxattrat: (d, rel) => long(rel) ? deep(a, d, rel, (f, r) => a.llistxattrat(f, r)) : a.llistxattrat(d, rel),
    lremovexattrat: (d, rel, name) => long(rel) ? deep(a, d, rel, (f, r) => a.lremovexattrat(f, r, name)) : a.lremovexattrat(d, rel, name),
    nameToHandle: (d, rel) => long(rel) ? deep(a, d, rel, (f, r) => a.nameToHandle(f, r)) : a.nameToHandle(d, rel),
  } satisfies SysAddon);
}

/** The addon (with `rel` of any length, see `deep`): every call returns a value or -errno, never throws on an errno. */
export const raw: SysAddon = ((): SysAddon => {
  const a = loadOrDeferError();
  try { void a.openat; } catch { return a; }
  return deepPaths(a);
})();

function fail(r: number, path: Bstr, syscall: string, detail?: string): never {
  throw new FsError(codeOf(-r), path, syscall, detail);
}

/** Returns r when >= 0, else throws FsError(errno, path). */
function chk(r: number, path: Bstr, syscall: string, detail?: string): number {
  if (r < 0) fail(r, path, syscall, detail);
  return r;
}

function chkv<T>(r: T | number, path: Bstr, syscall: string): T {
  if (typeof r === 'number') fail(r, path, syscall);
  return r;
}

// ---- constants -------------------------------------------------------------

/** Linux ABI constants read from the C headers at build time (O_* differ between architectures). */
export const constants: SysAddon['constants'] = (() => {
  try { return raw.constants; } catch { return new Proxy({} as SysAddon['constants'], { get() { return raw.constants; } }); }
})();

/** d_type values of readdirat, here too for callers that hold `sys` (defined in shared/constants.ts). */
export { DT };

/** glibc's makedev for 64-bit dev_t; exact while the result stays below 2^53. */
export function makedev(major: number, minor: number): number {
  return (major % 4096) * 256 + Math.floor(major / 4096) * 2 ** 44
    + (minor % 256) + Math.floor(minor / 256) * 2 ** 20;
}
export function major(dev: number): number {
  return (Math.floor(dev / 256) % 4096) + Math.floor(dev / 2 ** 44) * 4096;
}
export function minor(dev: number): number {
  return (dev % 256) + (Math.floor(dev / 2 ** 20) % 2 ** 24) * 256;
}

// ---- stat ------------------------------------------------------------------

/** A stat result as an object, for code that is not on a hot path. */
export interface Stat {
  dev: number; ino: Ino; mode: number; nlink: number; uid: number; gid: number;
  rdev: number; size: number; blksize: number; blocks: number;
  atimeSec: number; atimeNsec: number; mtimeSec: number; mtimeNsec: number;
  ctimeSec: number; ctimeNsec: number;
}

export function statObject(a: Float64Array): Stat {
  return {
    dev: a[0]!, ino: inoOf(a), mode: a[2]!, nlink: a[3]!, uid: a[4]!, gid: a[5]!, rdev: a[6]!,
    size: a[7]!, blksize: a[8]!, blocks: a[9]!, atimeSec: a[10]!, atimeNsec: a[11]!,
    mtimeSec: a[12]!, mtimeNsec: a[13]!, ctimeSec: a[14]!, ctimeNsec: a[15]!,
  };
}

export const newStatArray = (): Float64Array => new Float64Array(STAT_LEN);

// ---- open / close ----------------------------------------------------------

/** Open a layer root given by the user (symlinks in it ARE followed: it is trusted input). O_PATH dir fd. */
export function openRoot(path: Bstr): number {
  return chk(raw.openRoot(path), path, 'open');
}

/** openat2 beneath dirfd, never following a symlink (O_NOFOLLOW is always added; with O_PATH a symlink itself opens). */
export function openat(dirfd: number, rel: Bstr, flags: number, mode = 0): number {
  return chk(raw.openat(dirfd, rel, flags, mode), rel, 'openat');
}
/** fd or -errno */
export function tryOpenat(dirfd: number, rel: Bstr, flags: number, mode = 0): number {
  return raw.openat(dirfd, rel, flags, mode);
}

export function close(fd: number): void {
  chk(raw.close(fd), '', 'close', `fd ${fd}`);
}

// ---- stat ------------------------------------------------------------------

/** lstat of rel beneath dirfd, into out (allocated when omitted). */
export function lstatat(dirfd: number, rel: Bstr, out: Float64Array = newStatArray()): Float64Array {
  chk(raw.lstatat(dirfd, rel, out), rel, 'lstatat');
  return out;
}
/** 0 or -errno; out filled on success. The hot-path lookup call. */
export function tryLstatat(dirfd: number, rel: Bstr, out: Float64Array): number {
  return raw.lstatat(dirfd, rel, out);
}

export function fstat(fd: number, out: Float64Array = newStatArray(), path: Bstr = ''): Float64Array {
  chk(raw.fstat(fd, out), path, 'fstat');
  return out;
}

export function fstatvfs(fd: number, out: Float64Array = new Float64Array(STATVFS_LEN), path: Bstr = ''): Float64Array {
  chk(raw.fstatvfs(fd, out), path, 'fstatvfs');
  return out;
}

// ---- namespace mutations -------------------------------------------------------

export function mkdirat(dirfd: number, rel: Bstr, mode: number): void {
  chk(raw.mkdirat(dirfd, rel, mode), rel, 'mkdirat');
}

/** mode includes the S_IF* type; a whiteout is mknodat(d, name, S_IFCHR, 0). */
export function mknodat(dirfd: number, rel: Bstr, mode: number, dev = 0): void {
  chk(raw.mknodat(dirfd, rel, mode, dev), rel, 'mknodat');
}

/** flags: 0 or constants.AT_REMOVEDIR */
export function unlinkat(dirfd: number, rel: Bstr, flags = 0): void {
  chk(raw.unlinkat(dirfd, rel, flags), rel, flags ? 'rmdir' : 'unlinkat');
}
export function tryUnlinkat(dirfd: number, rel: Bstr, flags = 0): number {
  return raw.unlinkat(dirfd, rel, flags);
}

/** flags: RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT (constants). */
export function renameat2(olddirfd: number, oldrel: Bstr, newdirfd: number, newrel: Bstr, flags = 0): void {
  chk(raw.renameat2(olddirfd, oldrel, newdirfd, newrel, flags), oldrel, 'renameat2', `-> ${newrel}`);
}
export function tryRenameat2(olddirfd: number, oldrel: Bstr, newdirfd: number, newrel: Bstr, flags = 0): number {
  return raw.renameat2(olddirfd, oldrel, newdirfd, newrel, flags);
}

/** Hard link; oldrel is not followed if it is a symlink (the link names the symlink). */
export function linkat(olddirfd: number, oldrel: Bstr, newdirfd: number, newrel: Bstr): void {
  chk(raw.linkat(olddirfd, oldrel, newdirfd, newrel), oldrel, 'linkat', `-> ${newrel}`);
}

export function symlinkat(target: Bstr, dirfd: number, rel: Bstr): void {
  chk(raw.symlinkat(target, dirfd, rel), rel, 'symlinkat');
}

export function readlinkat(dirfd: number, rel: Bstr): Bstr {
  return chkv(raw.readlinkat(dirfd, rel), rel, 'readlinkat');
}

// ---- attributes ------------------------------------------------------------

/** Never follows; -1 leaves an id unchanged. Works on symlinks. */
export function fchownat(dirfd: number, rel: Bstr, uid: number, gid: number): void {
  chk(raw.fchownat(dirfd, rel, uid, gid), rel, 'fchownat');
}

/** Never follows: a symlink gives EOPNOTSUPP (Linux symlinks have no mode of their own). */
export function fchmodat(dirfd: number, rel: Bstr, mode: number): void {
  chk(raw.fchmodat(dirfd, rel, mode), rel, 'fchmodat');
}

/** Nanosecond times; nsec may be constants.UTIME_NOW / UTIME_OMIT. Never follows (sets a symlink's own times). */
export function utimensat(dirfd: number, rel: Bstr, aSec: number, aNsec: number, mSec: number, mNsec: number): void {
  chk(raw.utimensat(dirfd, rel, aSec, aNsec, mSec, mNsec), rel, 'utimensat');
}

export function futimens(fd: number, aSec: number, aNsec: number, mSec: number, mNsec: number, path: Bstr = ''): void {
  chk(raw.futimens(fd, aSec, aNsec, mSec, mNsec), path, 'futimens');
}

// ---- file descriptors --------------------------------------------------------

export function ftruncate(fd: number, size: Offset, path: Bstr = ''): void {
  chk(raw.ftruncate(fd, size), path, 'ftruncate');
}

/** Synchronous on the calling thread: prefer node's fs.fsync(fd) (libuv pool) on the event loop. */
export function fsync(fd: number, datasync = false, path: Bstr = ''): void {
  chk(raw.fsync(fd, datasync), path, datasync ? 'fdatasync' : 'fsync');
}

/** mode: 0 or FALLOC_FL_* flags. */
export function fallocate(fd: number, mode: number, offset: number, len: number, path: Bstr = ''): void {
  chk(raw.fallocate(fd, mode, offset, len), path, 'fallocate');
}

/** op: LOCK_SH | LOCK_EX | LOCK_UN, plus LOCK_NB. Without LOCK_NB it blocks the calling (JS) thread. */
export function flock(fd: number, op: number, path: Bstr = ''): void {
  chk(raw.flock(fd, op), path, 'flock');
}
/** pwrite(2) at an exact offset (Node's fs.writeSync writes at the current offset for positions of 2^53 and more). */
export function pwrite(fd: number, buf: Buffer, len: number, pos: Offset, path: Bstr = ''): number {
  return chk(raw.pwrite(fd, buf, len, pos), path, 'pwrite');
}
/** dup2(2): makes newfd a copy of oldfd (the daemon's stdout/stderr onto its log). */
export function dup2(oldfd: number, newfd: number, path: Bstr = ''): void {
  chk(raw.dup2(oldfd, newfd), path, 'dup2');
}
/** 0 or -errno (-EWOULDBLOCK when LOCK_NB and held elsewhere). */
export function tryFlock(fd: number, op: number): number {
  return raw.flock(fd, op);
}

// ---- directories -------------------------------------------------------------

export interface DirEntries {
  /** names without . and .., as Bstr */
  names: Bstr[];
  /** d_type of each name (DT.*); DT.UNKNOWN on filesystems that do not fill it */
  types: Uint8Array;
}

/** All entries of the directory rel beneath dirfd (rel '' = dirfd itself). */
export function readdirat(dirfd: number, rel: Bstr): DirEntries {
  return chkv(raw.readdirat(dirfd, rel), rel, 'readdirat');
}

/**
 * Remove the tree at rel beneath dirfd, whatever its names and modes (rel not
 * followed; rel '' empties dirfd and keeps it). The one implementation for the
 * mount's work/ and markers and the image store and extractor. A directory the
 * caller may not list or empty (the kernel leaves work/ directories mode 0, a
 * layer may restrict one; without CAP_DAC_OVERRIDE both refuse) is made 0700,
 * only once refused, so a tree that stays after a failure keeps its modes.
 * Entries of DT_UNKNOWN type are told apart by unlinkat's EISDIR.
 */
export function removeTree(dirfd: number, rel: Bstr): void {
  emptyDir(dirfd, rel);
  if (rel !== '') unlinkat(dirfd, rel, constants.AT_REMOVEDIR);
}

function emptyDir(dirfd: number, rel: Bstr): void {
  let widened = false;
  const widen = (): boolean => !widened && (widened = raw.fchmodat(dirfd, rel, 0o700) === 0);
  let r = raw.readdirat(dirfd, rel);
  if (r === -EACCES && widen()) r = raw.readdirat(dirfd, rel);
  const { names, types } = chkv(r, rel, 'readdirat');
  for (let i = 0; i < names.length; i++) {
    const c = rel === '' ? names[i]! : rel + '/' + names[i]!;
    let flags = 0;
    if (types[i] === DT.DIR) { emptyDir(dirfd, c); flags = constants.AT_REMOVEDIR; }
    let e = raw.unlinkat(dirfd, c, flags);
    if (e === -EACCES && widen()) e = raw.unlinkat(dirfd, c, flags);
    if (e === -EISDIR && flags === 0) {
      emptyDir(dirfd, c);
      flags = constants.AT_REMOVEDIR;
      e = raw.unlinkat(dirfd, c, flags);
    }
    chk(e, c, flags ? 'rmdir' : 'unlinkat');
  }
}

// ---- xattrs ------------------------------------------------------------------

/** Value of xattr `name` of rel (never followed: a symlink's own xattrs). Throws ENODATA when absent. */
export function lgetxattrat(dirfd: number, rel: Bstr, name: Bstr): Buffer {
  return chkv(raw.lgetxattrat(dirfd, rel, name), rel, 'lgetxattr');
}
/** Buffer, or -errno (-ENODATA when absent). */
export function tryLgetxattrat(dirfd: number, rel: Bstr, name: Bstr): Buffer | number {
  return raw.lgetxattrat(dirfd, rel, name);
}
/** flags: 0, XATTR_CREATE or XATTR_REPLACE. */
export function lsetxattrat(dirfd: number, rel: Bstr, name: Bstr, value: Buffer, flags = 0): void {
  chk(raw.lsetxattrat(dirfd, rel, name, value, flags), rel, 'lsetxattr', name);
}
export function llistxattrat(dirfd: number, rel: Bstr): Bstr[] {
  return chkv(raw.llistxattrat(dirfd, rel), rel, 'llistxattr');
}
export function lremovexattrat(dirfd: number, rel: Bstr, name: Bstr): void {
  chk(raw.lremovexattrat(dirfd, rel, name), rel, 'lremovexattr', name);
}
export function tryLremovexattrat(dirfd: number, rel: Bstr, name: Bstr): number {
  return raw.lremovexattrat(dirfd, rel, name);
}

export function fgetxattr(fd: number, name: Bstr, path: Bstr = ''): Buffer {
  return chkv(raw.fgetxattr(fd, name), path, 'fgetxattr');
}
export function tryFgetxattr(fd: number, name: Bstr): Buffer | number {
  return raw.fgetxattr(fd, name);
}
export function fsetxattr(fd: number, name: Bstr, value: Buffer, flags = 0, path: Bstr = ''): void {
  chk(raw.fsetxattr(fd, name, value, flags), path, 'fsetxattr', name);
}
export function flistxattr(fd: number, path: Bstr = ''): Bstr[] {
  return chkv(raw.flistxattr(fd), path, 'flistxattr');
}
export function fremovexattr(fd: number, name: Bstr, path: Bstr = ''): void {
  chk(raw.fremovexattr(fd, name), path, 'fremovexattr', name);
}

// ---- handles, copy, umount ---------------------------------------------------

export interface FileHandle {
  /** handle_type of struct file_handle */
  type: number;
  /** f_handle bytes */
  handle: Buffer;
  /** mount id name_to_handle_at reported (compare with /proc/self/mountinfo) */
  mountId: number;
}

/** name_to_handle_at of rel (not followed): what kernel overlayfs encodes into trusted.overlay.origin. */
export function nameToHandle(dirfd: number, rel: Bstr): FileHandle {
  return chkv(raw.nameToHandle(dirfd, rel), rel, 'name_to_handle_at');
}

/**
 * Copy every data byte of srcfd into dstfd (regular files; dst should be empty)
 * on a thread of the addon's own: reflink (FICLONE) first, else copy_file_range
 * over the SEEK_DATA/SEEK_HOLE data segments, holes kept, dst truncated to the
 * source size. Neither libuv's pool nor JS buffers are used. Rejects with FsError.
 */
export async function copyData(srcfd: number, dstfd: number, path: Bstr = ''): Promise<CopyResult> {
  try {
    return await raw.copyData(srcfd, dstfd);
  } catch (e) {
    throw asFsError(e, path, 'copyData');
  }
}

/** lseek(2) of a layer file's fd (SEEK_DATA/SEEK_HOLE): the new offset; ENXIO past the data or the end. */
export function lseek(fd: number, offset: Offset, whence: number, path: Bstr = ''): Offset {
  const r = raw.lseek(fd, offset, whence);
  if (typeof r === 'number' && r < 0) throw new FsError(codeOf(-r), path, 'lseek');
  return r;
}

/** One copy_file_range between two layer files' fds (raw.copyRange); the bytes copied. Rejects with FsError. */
export async function copyRange(srcfd: number, offIn: Offset, dstfd: number, offOut: Offset, len: Offset, path: Bstr = ''): Promise<number> {
  try {
    return (await raw.copyRange(srcfd, offIn, dstfd, offOut, len)).bytes;
  } catch (e) {
    throw asFsError(e, path, 'copy_file_range');
  }
}

/** The birth time of rel beneath dirfd (rel '': dirfd itself), undefined where the file system keeps none. */
export function btimeat(dirfd: number, rel: Bstr, path: Bstr = rel): { sec: number; nsec: number } | undefined {
  const r = raw.btimeat(dirfd, rel);
  if (typeof r === 'number') throw new FsError(codeOf(-r), path, 'statx');
  return r.length === 2 ? { sec: r[0], nsec: r[1] } : undefined;
}

/** syncfs(2) of the file system holding fd, on a thread of its own. */
export async function syncfs(fd: number, path: Bstr = ''): Promise<void> {
  try {
    await raw.syncfs(fd);
  } catch (e) {
    throw asFsError(e, path, 'syncfs');
  }
}

/** umount2(2) on a thread of its own, so the daemon serving `path` can unmount itself. flags: MNT_DETACH | MNT_FORCE. */
export async function umount2(path: Bstr, flags = 0): Promise<void> {
  try {
    await raw.umount2(path, flags);
  } catch (e) {
    throw asFsError(e, path, 'umount2');
  }
}

function asFsError(e: unknown, path: Bstr, syscall: string): unknown {
  const errno = (e as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' ? new FsError(codeOf(errno), path, syscall) : e;
}

/**
 * Unmaps the pages of the node executable this process mapped and never wrote (sys.c
 * dropExePages): what startup touched leaves the resident set, the page cache keeps it, and
 * what runs later faults back in. Bytes unmapped; 0 where it failed (nothing changed then).
 */
export function dropExePages(): number {
  const r = raw.dropExePages();
  return r > 0 ? r : 0;
}
