/**
 * The requests of the newer protocol minors that act on open files and the file system
 * (LSEEK 7.24, COPY_FILE_RANGE 7.28 and _64 7.45, SYNCFS 7.34, TMPFILE 7.37, STATX 7.39): their
 * decoding, and the encoders of their replies. Each is a feature of features.ts without
 * an INIT flag: switched off (`fuse_off=`, `fuse_minor=`), or without a handler in the
 * adapter, the server answers ENOSYS and the kernel takes its own fallback (generic
 * llseek, a copy through the page cache, no SYNCFS at all, EOPNOTSUPP for O_TMPFILE, GETATTR
 * and no birth time for STATX).
 */
import type { LowLevelHandlers, NodeId, ReqId } from '../lowlevel/contract.js';
import type { Offset } from '../../native/sys-api.js';
import { GETATTR_FH, Op, offsetAt, putI64, putTimeout, putU64, u64 } from './wire.js';
import { StatIdx } from '../../native/sys-api.js';

/** fuse_lseek_out, fuse_copy_file_range_out (and fuse_write_out: see putCount) */
export const OFFSET_OUT = 8;
export const COUNT_OUT = 8;

/** a signed 64-bit file offset (loff_t) as Offset: a negative one stays negative */
function soffsetAt(b: Buffer, p: number): Offset {
  const o = offsetAt(b, p);
  if (typeof o === 'number' || o < 1n << 63n) return o;
  const v = o - (1n << 64n);
  return v > -(1n << 53n) ? Number(v) : v;
}

/**
 * Decodes and hands on one of these requests. False when the server should answer
 * ENOSYS: not one of them, its feature is off, or the adapter has no handler.
 * `setUmask` stores the caller's umask for TMPFILE (fuse_create_in carries it, as CREATE).
 */
export function fileRequest(
  op: number, req: ReqId, node: NodeId, b: Buffer, a: number,
  H: LowLevelHandlers, on: (feature: string) => boolean, setUmask: (umask: number) => void,
): boolean {
  switch (op) {
    case Op.LSEEK:
      // fuse_lseek_in: fh 0, offset 8, whence 16
      if (H.lseek === undefined || !on('lseek')) return false;
      H.lseek(req, node, u64(b, a), soffsetAt(b, a + 8), b.readUInt32LE(a + 16));
      return true;
    case Op.COPY_FILE_RANGE:
    case Op.COPY_FILE_RANGE_64:
      // fuse_copy_file_range_in: fh_in 0, off_in 8, nodeid_out 16, fh_out 24, off_out 32, len 40, flags 48
      if (H.copyFileRange === undefined || !on(op === Op.COPY_FILE_RANGE ? 'copy_file_range' : 'copy_file_range_64')) return false;
      H.copyFileRange(req, node, u64(b, a), soffsetAt(b, a + 8), u64(b, a + 16), u64(b, a + 24), soffsetAt(b, a + 32), offsetAt(b, a + 40), u64(b, a + 48));
      return true;
    case Op.SYNCFS:
      if (H.syncfs === undefined || !on('syncfs')) return false;
      H.syncfs(req, node);
      return true;
    case Op.TMPFILE:
      // fuse_create_in: flags 0, mode 4, umask 8, open_flags 12, then a name the kernel makes up
      if (H.tmpfile === undefined || !on('tmpfile')) return false;
      setUmask(b.readUInt32LE(a + 8));
      H.tmpfile(req, node, b.readUInt32LE(a + 4), b.readUInt32LE(a));
      return true;
    case Op.STATX:
      // fuse_statx_in: getattr_flags 0, reserved 4, fh 8, sx_flags 16, sx_mask 20. Sent only for a
      // statx that wants the birth time; the kernel applies sx_flags (sync) itself.
      if (H.statx === undefined || !on('statx')) return false;
      H.statx(req, node, (b.readUInt32LE(a) & GETATTR_FH) !== 0 ? u64(b, a + 8) : -1);
      return true;
    default:
      return false;
  }
}

/** fuse_statx_out: attr_valid, attr_valid_nsec, flags, spare[2], then fuse_statx (256 bytes) */
export const STATX_OUT = 32 + 256;
const STATX_BASIC_STATS = 0x7ff;
const STATX_BTIME = 0x800;

function putSxTime(o: Buffer, p: number, sec: number, nsec: number): void {
  putI64(o, p, sec);
  o.writeUInt32LE(nsec >>> 0, p + 8);
  o.writeInt32LE(0, p + 12);
}

/** fuse_statx_out at p from attributes in StatIdx order and the birth time, if known */
export function putStatx(o: Buffer, p: number, d: Float64Array, btime: { sec: number; nsec: number } | undefined, timeout: number): void {
  o.fill(0, p, p + STATX_OUT);
  putTimeout(o, p, p + 8, timeout);
  const x = p + 32;
  o.writeUInt32LE(STATX_BASIC_STATS | (btime !== undefined ? STATX_BTIME : 0), x);
  o.writeUInt32LE(d[StatIdx.blksize]! >>> 0, x + 4);
  o.writeUInt32LE(d[StatIdx.nlink]! >>> 0, x + 16);
  o.writeUInt32LE(d[StatIdx.uid]! >>> 0, x + 20);
  o.writeUInt32LE(d[StatIdx.gid]! >>> 0, x + 24);
  o.writeUInt16LE(d[StatIdx.mode]! & 0xffff, x + 28);
  o.writeUInt32LE(d[StatIdx.inoLo]! >>> 0, x + 32);
  o.writeUInt32LE(d[StatIdx.inoHi]! >>> 0, x + 36);
  o.writeUInt32LE(d[StatIdx.sizeLo]! >>> 0, x + 40);
  o.writeUInt32LE(d[StatIdx.sizeHi]! >>> 0, x + 44);
  putU64(o, x + 48, d[StatIdx.blocks]!);
  putSxTime(o, x + 64, d[StatIdx.atimeSec]!, d[StatIdx.atimeNsec]!);
  if (btime !== undefined) putSxTime(o, x + 80, btime.sec, btime.nsec);
  putSxTime(o, x + 96, d[StatIdx.ctimeSec]!, d[StatIdx.ctimeNsec]!);
  putSxTime(o, x + 112, d[StatIdx.mtimeSec]!, d[StatIdx.mtimeNsec]!);
  // glibc's dev_t: 12 bits of major and 8 of minor low, the rest above bit 32
  const rdev = BigInt(d[StatIdx.rdev]!);
  o.writeUInt32LE(Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)) >>> 0, x + 128);
  o.writeUInt32LE(Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) >>> 0, x + 132);
}

/** fuse_lseek_out at p */
export function putOffset(o: Buffer, p: number, offset: Offset): void {
  if (typeof offset === 'bigint') o.writeBigInt64LE(offset, p);
  else putU64(o, p, offset);
}

/**
 * The bytes a COPY_FILE_RANGE or COPY_FILE_RANGE_64 copied, at p: fuse_copy_file_range_out
 * is one u64; the older fuse_write_out is a u32 and a zero padding, the same 8 bytes on
 * little-endian for any count below 4 GiB, which the kernel asks the older opcode for at most.
 */
export function putCount(o: Buffer, p: number, count: number): void {
  putU64(o, p, count);
}
