/**
 * The contract of the project's syscall addon (src/native/sys.c), as seen from
 * TypeScript. Node's fs lacks *at calls, mknod, renameat2 flags, nanosecond
 * utimensat, xattrs, fallocate, flock and a sparse/reflink copy; the addon
 * provides exactly those, and src/native/sys.ts wraps them with FsError.
 *
 * Conventions
 * - Every path or name argument is a Bstr (latin1 byte string, see shared/bstr.ts);
 *   the C side reads it with napi_get_value_string_latin1, so bytes pass unchanged.
 * - `rel` is relative to `dirfd`. It may contain slashes; it is resolved with
 *   openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): no symlink inside a layer is
 *   ever followed and nothing outside `dirfd` is reached. The final component is
 *   never followed either (lstat semantics). `rel === ''` means dirfd itself.
 * - Sync calls return a value, or a negative errno (never throw on an errno:
 *   exceptions cost ~10 µs and negative lookups are the common case).
 * - Stat results are written into a caller-owned Float64Array of STAT_LEN
 *   (see StatIdx) to avoid an object per call.
 * - st_ino is 64 bits wide and really uses them (a kernel overlay with xino=on
 *   puts its layer index in the top bits: 2^63 + 3), so it crosses exactly as
 *   two 32-bit halves, `inoHi` and `inoLo`; slot `ino` holds the nearest double
 *   (exact below 2^53) for display and the high-level binding. Read and write
 *   it with inoOf/setIno below (an Ino). st_size likewise (`sizeHi`, `sizeLo`:
 *   a sparse file on tmpfs may be 2^63 - 1 bytes); the core only reads `size`,
 *   so the halves go from the addon's stat to the FUSE reply unchanged.
 */

export const STAT_LEN = 20;
export const StatIdx = {
  dev: 0, ino: 1, mode: 2, nlink: 3, uid: 4, gid: 5, rdev: 6, size: 7,
  blksize: 8, blocks: 9, atimeSec: 10, atimeNsec: 11, mtimeSec: 12, mtimeNsec: 13,
  ctimeSec: 14, ctimeNsec: 15, inoHi: 16, inoLo: 17, sizeHi: 18, sizeLo: 19,
} as const;

/**
 * An exact inode number: a number below 2^53, a bigint from 2^53 on. Each value
 * has exactly one form, so `===`, Map keys and string keys compare values.
 */
export type Ino = number | bigint;

/** A file offset: a number below 2^53, a bigint from there (FUSE read/write offsets). */
export type Offset = number | bigint;

const TWO32 = 4294967296;
/** Below this high half the whole number is exact as a double (2^53 / 2^32). */
const HI_SAFE = 2 ** 21;

/** The exact st_ino of a stat array (number below 2^53, else bigint). */
export function inoOf(a: Float64Array): Ino {
  const hi = a[StatIdx.inoHi]!;
  const lo = a[StatIdx.inoLo]!;
  return hi < HI_SAFE ? hi * TWO32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Writes an exact inode number into a stat array (both halves and the display double). */
export function setIno(a: Float64Array, ino: Ino): void {
  if (typeof ino === 'number') {
    a[StatIdx.ino] = ino;
    a[StatIdx.inoHi] = Math.floor(ino / TWO32);
    a[StatIdx.inoLo] = ino % TWO32;
  } else {
    a[StatIdx.ino] = Number(ino);
    a[StatIdx.inoHi] = Number(ino >> 32n);
    a[StatIdx.inoLo] = Number(ino & 0xffffffffn);
  }
}

/** The one form of an inode number (see Ino): a bigint below 2^53 becomes a number. */
export function canonicalIno(ino: bigint): Ino {
  return ino < 2n ** 53n ? Number(ino) : ino;
}

export const STATVFS_LEN = 11;
export const StatvfsIdx = {
  bsize: 0, frsize: 1, blocks: 2, bfree: 3, bavail: 4, files: 5, ffree: 6,
  favail: 7, fsid: 8, flag: 9, namemax: 10,
} as const;

export interface CopyResult {
  /** bytes of data copied (holes not counted) */
  bytes: number;
  /**
   * how the data moved: 'clone' (FICLONE reflink), 'range' (copy_file_range over data segments),
   * 'readwrite' (pread/pwrite over data segments inside the addon, when copy_file_range refuses, e.g. EXDEV)
   */
  method: 'clone' | 'range' | 'readwrite';
}

export interface SysAddon {
  /** open(path, O_PATH|O_DIRECTORY|O_CLOEXEC), following symlinks: used once per layer root given by the user. */
  openRoot(path: string): number;
  /** openat2(dirfd, rel, flags|O_CLOEXEC|O_NOFOLLOW, mode, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) */
  openat(dirfd: number, rel: string, flags: number, mode: number): number;
  close(fd: number): number;
  /** lstat of rel beneath dirfd into out; 0 or -errno */
  lstatat(dirfd: number, rel: string, out: Float64Array): number;
  fstat(fd: number, out: Float64Array): number;
  mkdirat(dirfd: number, rel: string, mode: number): number;
  mknodat(dirfd: number, rel: string, mode: number, dev: number): number;
  /** flags: 0 or AT_REMOVEDIR */
  unlinkat(dirfd: number, rel: string, flags: number): number;
  /** flags: RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT */
  renameat2(olddirfd: number, oldrel: string, newdirfd: number, newrel: string, flags: number): number;
  linkat(olddirfd: number, oldrel: string, newdirfd: number, newrel: string): number;
  symlinkat(target: string, dirfd: number, rel: string): number;
  /** the target as a Bstr, or -errno */
  readlinkat(dirfd: number, rel: string): string | number;
  /** never follows; uid/gid -1 leaves that id unchanged */
  fchownat(dirfd: number, rel: string, uid: number, gid: number): number;
  /** mode of a non-symlink */
  fchmodat(dirfd: number, rel: string, mode: number): number;
  /** nsec may be UTIME_NOW or UTIME_OMIT; never follows */
  utimensat(dirfd: number, rel: string, aSec: number, aNsec: number, mSec: number, mNsec: number): number;
  futimens(fd: number, aSec: number, aNsec: number, mSec: number, mNsec: number): number;
  ftruncate(fd: number, size: Offset): number;
  fsync(fd: number, datasync: boolean): number;
  /** names (without . and ..) and their d_type values, or -errno */
  readdirat(dirfd: number, rel: string): { names: string[]; types: Uint8Array } | number;
  /** value, or -errno (-ENODATA when absent) */
  lgetxattrat(dirfd: number, rel: string, name: string): Buffer | number;
  lsetxattrat(dirfd: number, rel: string, name: string, value: Buffer, flags: number): number;
  /** attribute names as Bstrs, or -errno */
  llistxattrat(dirfd: number, rel: string): string[] | number;
  lremovexattrat(dirfd: number, rel: string, name: string): number;
  fgetxattr(fd: number, name: string): Buffer | number;
  fsetxattr(fd: number, name: string, value: Buffer, flags: number): number;
  flistxattr(fd: number): string[] | number;
  fremovexattr(fd: number, name: string): number;
  /**
   * Test hook: true makes the l*xattrat calls use the /proc/self/fd route even
   * where the kernel has *xattrat (Linux 6.13+), so both routes stay tested. Returns 0.
   */
  xattrViaProc(on: boolean): number;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  flock(fd: number, op: number): number;
  /** pwrite(2) of len bytes of buf at pos (Node's fs.write misplaces positions of 2^53 and more); bytes or -errno */
  pwrite(fd: number, buf: Buffer, len: number, pos: Offset): number;
  /** dup2(2): newfd becomes a copy of oldfd; newfd or -errno */
  dup2(oldfd: number, newfd: number): number;
  /** pread (write false) or pwrite of len bytes of buf at pos through a page-aligned bounce buffer (O_DIRECT fds); bytes or -errno */
  pioAligned(fd: number, buf: Buffer, len: number, pos: Offset, write: boolean): number;
  fstatvfs(fd: number, out: Float64Array): number;
  /**
   * Copy all data of srcfd into dstfd (both regular files, dst empty) on a thread
   * of the addon's own, never on libuv's pool and never through JS buffers:
   * FICLONE first, else copy_file_range over the segments SEEK_DATA/SEEK_HOLE
   * find, then ftruncate to the source size so trailing holes stay holes.
   * Rejects with an Error carrying `errno` (positive) and `code`.
   */
  copyData(srcfd: number, dstfd: number): Promise<CopyResult>;
  /** lseek(2) (SEEK_DATA/SEEK_HOLE of a client's lseek on the mount): the new offset or -errno */
  lseek(fd: number, offset: Offset, whence: number): Offset;
  /**
   * One copy_file_range(2) of up to len bytes (at most 1 GiB) from srcfd at offIn to dstfd at
   * offOut, on the addon's copy threads; where the kernel refuses the pair (EXDEV: layers on
   * two file systems) pread/pwrite inside the addon. Resolves with the bytes copied (fewer
   * than asked is a valid answer, 0 at the source's end); rejects with an Error carrying errno.
   */
  copyRange(srcfd: number, offIn: Offset, dstfd: number, offOut: Offset, len: Offset): Promise<CopyResult>;
  /** statx(2) STATX_BTIME of rel beneath dirfd (rel '': dirfd itself): [sec, nsec], [] where the file system keeps none, or -errno */
  btimeat(dirfd: number, rel: string): [number, number] | [] | number;
  /** unmaps the clean pages of the node executable (bytes unmapped, or -errno): sys.ts dropExePages */
  dropExePages(): number;
  /** syncfs(2) of the file system holding fd, on a thread of its own */
  syncfs(fd: number): Promise<void>;
  /** umount2 on a thread of its own: the caller may be the daemon serving that mount. */
  umount2(path: string, flags: number): Promise<void>;
  /** name_to_handle_at for the kernel-style origin xattr; -errno on failure */
  nameToHandle(dirfd: number, rel: string): { type: number; handle: Buffer; mountId: number } | number;

  readonly constants: {
    UTIME_NOW: number; UTIME_OMIT: number;
    AT_REMOVEDIR: number;
    RENAME_NOREPLACE: number; RENAME_EXCHANGE: number; RENAME_WHITEOUT: number;
    O_PATH: number; O_DIRECTORY: number; O_NOFOLLOW: number; O_TMPFILE: number;
    XATTR_CREATE: number; XATTR_REPLACE: number;
    MNT_DETACH: number; MNT_FORCE: number;
    FALLOC_FL_KEEP_SIZE: number; FALLOC_FL_PUNCH_HOLE: number;
    LOCK_SH: number; LOCK_EX: number; LOCK_UN: number; LOCK_NB: number;
    SEEK_DATA: number; SEEK_HOLE: number;
    /** the stat layout the addon was built for (STAT_LEN of its sources) */
    STAT_LEN: number;
  };
}
