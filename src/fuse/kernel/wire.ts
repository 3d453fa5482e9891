/**
 * The FUSE kernel protocol's wire format (include/uapi/linux/fuse.h), as far as
 * stratafs's own server uses it: opcodes, INIT flags, request field offsets and
 * the reply encoders. Little-endian, as the kernel writes it on every
 * architecture stratafs runs on. 64-bit fields are read and written as two 32-bit
 * halves: node ids and file handles are ours (small), offsets cross as Offset
 * (a number below 2^53, a bigint from there), never through a rounding double.
 */
import type { Offset } from '../../native/sys-api.js';
import { StatIdx, StatvfsIdx } from '../../native/sys-api.js';

export const FUSE_KERNEL_VERSION = 7;
/** the newest minor this server knows (kernel 6.18 offers it) */
export const FUSE_MAX_MINOR = 45;
/** below it the reply layouts differ (fuse_init_out of 24 bytes before 7.23, ...): not served */
export const FUSE_MIN_MINOR = 19;

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32, SETLKW: 33,
  ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40, NOTIFY_REPLY: 41,
  BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52, COPY_FILE_RANGE_64: 53,
} as const;

/** names by opcode, for -d and statistics */
export const opName = (op: number): string => {
  for (const [k, v] of Object.entries(Op)) if (v === op) return k;
  return `OP${op}`;
};

/** INIT flags (fuse_init_in/out.flags) */
export const InitFlag = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, FILE_OPS: 1 << 2, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5, DONT_MASK: 1 << 6, SPLICE_WRITE: 1 << 7, SPLICE_MOVE: 1 << 8, SPLICE_READ: 1 << 9,
  FLOCK_LOCKS: 1 << 10, HAS_IOCTL_DIR: 1 << 11, AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14, ASYNC_DIO: 1 << 15, WRITEBACK_CACHE: 1 << 16, NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18, HANDLE_KILLPRIV: 1 << 19, POSIX_ACL: 1 << 20, ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22, CACHE_SYMLINKS: 1 << 23, NO_OPENDIR_SUPPORT: 1 << 24, EXPLICIT_INVAL_DATA: 1 << 25,
  MAP_ALIGNMENT: 1 << 26, SUBMOUNTS: 1 << 27, HANDLE_KILLPRIV_V2: 1 << 28, SETXATTR_EXT: 1 << 29,
  INIT_EXT: 1 << 30,
} as const;

/** fuse_init_out.flags2 bits (the protocol's bits 32..63) */
export const InitFlag2 = {
  /** 7.40: reads, writes and mmap of a file opened with FOPEN_PASSTHROUGH go to its backing file */
  PASSTHROUGH: 1 << (37 - 32),
  /** 7.43: fuse_init_out.request_timeout is read */
  REQUEST_TIMEOUT: 1 << (42 - 32),
  /**
   * 7.42: requests may come through io_uring commands on /dev/fuse (offered only while the fuse
   * module's enable_uring is set: fs/fuse/inode.c fuse_send_init)
   */
  OVER_IO_URING: 1 << (41 - 32),
} as const;

/** fuse_open_out.open_flags */
export const FOpen = { DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, CACHE_DIR: 1 << 3, PASSTHROUGH: 1 << 7 } as const;

/** notification codes (fuse_out_header.error with unique 0) */
export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const;

/** setattr valid bits libfuse 2.9 passes on (fuse_lowlevel.h); FATTR_FH says the fh field is set */
export const SETATTR_PASSED = 1 | 2 | 4 | 8 | 16 | 32 | 128 | 256;
export const FATTR_FH = 64;
/** setattr valid: the server drops setuid/setgid (killpriv_v2; fuse/lowlevel/killpriv.ts) */
export const FATTR_KILL_SUIDGID = 1 << 11;
/** fuse_write_in.write_flags: the same for a WRITE */
export const WRITE_KILL_SUIDGID = 1 << 2;
export const GETATTR_FH = 1;
export const FSYNC_FDATASYNC = 1;

export const IN_HEADER = 40;
export const OUT_HEADER = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT = 40 + ATTR_SIZE;
export const ATTR_OUT = 16 + ATTR_SIZE;
export const OPEN_OUT = 16;
export const INIT_OUT = 64;
export const KSTATFS = 80;
/** fuse_write_in and fuse_read_in */
export const RW_IN = 40;
export const DIRENT_HEAD = 24;

const TWO32 = 4294967296;

export const u64 = (b: Buffer, p: number): number => b.readUInt32LE(p + 4) * TWO32 + b.readUInt32LE(p);

/** an unsigned 64-bit offset as Offset: exact above 2^53 too */
export function offsetAt(b: Buffer, p: number): Offset {
  const hi = b.readUInt32LE(p + 4);
  const lo = b.readUInt32LE(p);
  return hi < 0x200000 ? hi * TWO32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
}

/** a signed 64-bit time in seconds (|t| < 2^53) */
export const i64 = (b: Buffer, p: number): number => b.readInt32LE(p + 4) * TWO32 + b.readUInt32LE(p);

/** a NUL-terminated name from p (bytes 1:1 as latin1) and where the next field starts */
export function cstr(b: Buffer, p: number, end: number): [string, number] {
  let z = b.indexOf(0, p);
  if (z < 0 || z > end) z = end;
  return [b.toString('latin1', p, z), z + 1];
}

export function putU64(b: Buffer, p: number, v: number): void {
  const hi = Math.floor(v / TWO32);
  b.writeUInt32LE(v - hi * TWO32, p);
  b.writeUInt32LE(hi >>> 0, p + 4);
}

/** two's complement of a signed value with |v| < 2^53 */
export function putI64(b: Buffer, p: number, v: number): void {
  const hi = Math.floor(v / TWO32);
  b.writeUInt32LE(v - hi * TWO32, p);
  b.writeInt32LE(hi, p + 4);
}

export function putHeader(b: Buffer, len: number, error: number, uniqueLo: number, uniqueHi: number): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeUInt32LE(uniqueLo, 8);
  b.writeUInt32LE(uniqueHi, 12);
}

/** a cache lifetime in seconds as (seconds, nanoseconds): negative is 0, as libfuse */
export function putTimeout(b: Buffer, pSec: number, pNsec: number, t: number): void {
  const s = t > 0 && Number.isFinite(t) ? Math.floor(t) : (t === Infinity ? 2 ** 52 : 0);
  putU64(b, pSec, s);
  b.writeUInt32LE(t > 0 && Number.isFinite(t) ? Math.min(999999999, Math.floor((t - s) * 1e9)) : 0, pNsec);
}

/** fuse_attr from a Float64Array in StatIdx order (st_ino and st_size as exact halves) */
export function putAttr(b: Buffer, p: number, d: Float64Array): void {
  b.writeUInt32LE(d[StatIdx.inoLo]! >>> 0, p);
  b.writeUInt32LE(d[StatIdx.inoHi]! >>> 0, p + 4);
  b.writeUInt32LE(d[StatIdx.sizeLo]! >>> 0, p + 8);
  b.writeUInt32LE(d[StatIdx.sizeHi]! >>> 0, p + 12);
  putU64(b, p + 16, d[StatIdx.blocks]!);
  putI64(b, p + 24, d[StatIdx.atimeSec]!);
  putI64(b, p + 32, d[StatIdx.mtimeSec]!);
  putI64(b, p + 40, d[StatIdx.ctimeSec]!);
  b.writeUInt32LE(d[StatIdx.atimeNsec]!, p + 48);
  b.writeUInt32LE(d[StatIdx.mtimeNsec]!, p + 52);
  b.writeUInt32LE(d[StatIdx.ctimeNsec]!, p + 56);
  b.writeUInt32LE(d[StatIdx.mode]! >>> 0, p + 60);
  b.writeUInt32LE(d[StatIdx.nlink]! >>> 0, p + 64);
  b.writeUInt32LE(d[StatIdx.uid]! >>> 0, p + 68);
  b.writeUInt32LE(d[StatIdx.gid]! >>> 0, p + 72);
  // glibc's dev_t and the kernel's new_encode_dev agree in the low 32 bits (majors and minors below 4096 and 2^20)
  b.writeUInt32LE(d[StatIdx.rdev]! % TWO32, p + 76);
  b.writeUInt32LE(d[StatIdx.blksize]! >>> 0, p + 80);
  b.writeUInt32LE(0, p + 84);
}

/** fuse_kstatfs from a Float64Array in StatvfsIdx order */
export function putStatfs(b: Buffer, p: number, v: Float64Array): void {
  putU64(b, p, v[StatvfsIdx.blocks]!);
  putU64(b, p + 8, v[StatvfsIdx.bfree]!);
  putU64(b, p + 16, v[StatvfsIdx.bavail]!);
  putU64(b, p + 24, v[StatvfsIdx.files]!);
  putU64(b, p + 32, v[StatvfsIdx.ffree]!);
  b.writeUInt32LE(v[StatvfsIdx.bsize]! >>> 0, p + 40);
  b.writeUInt32LE(v[StatvfsIdx.namemax]! >>> 0, p + 44);
  b.writeUInt32LE(v[StatvfsIdx.frsize]! >>> 0, p + 48);
  b.fill(0, p + 52, p + KSTATFS);
}

/** the size of one fuse_dirent: header and name, aligned to 8 */
export const direntSize = (nameLen: number): number => (DIRENT_HEAD + nameLen + 7) & ~7;

/** one fuse_dirent at p; returns the next position */
export function putDirent(b: Buffer, p: number, name: string, mode: number, inoHi: number, inoLo: number, off: number): number {
  const n = name.length;
  b.writeUInt32LE(inoLo >>> 0, p);
  b.writeUInt32LE(inoHi >>> 0, p + 4);
  putU64(b, p + 8, off);
  b.writeUInt32LE(n, p + 16);
  b.writeUInt32LE((mode & 0o170000) >>> 12, p + 20);
  b.write(name, p + DIRENT_HEAD, n, 'latin1');
  const end = p + direntSize(n);
  b.fill(0, p + DIRENT_HEAD + n, end);
  return end;
}
