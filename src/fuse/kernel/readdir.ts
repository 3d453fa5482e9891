/**
 * Directory listings on the wire (native-notes/fuse-server.md, "Listings"): READDIR's
 * fuse_dirent records and READDIRPLUS's fuse_direntplus (a fuse_entry_out before each
 * dirent), and the OPENDIR flag that lets the kernel keep a listing in the directory's
 * page cache.
 *
 * Offsets are the adapter's: entry i of the handle's listing carries firstOffset + i + 1,
 * the position to continue from, so telldir/seekdir and a listing read in several
 * READDIRs name the same entries.
 */
import type { Bstr } from '../../shared/bstr.js';
import { ENTRY_OUT, FOpen, direntSize, putDirent } from './wire.js';

/** The contract's open flags (bit 1 keep_cache, bit 2 direct_io, bit 3 cache_dir: 7.28) as fuse_open_out.open_flags. */
export const fopenFlags = (f: number): number =>
  ((f & 1) !== 0 ? FOpen.KEEP_CACHE : 0) | ((f & 2) !== 0 ? FOpen.DIRECT_IO : 0) | ((f & 4) !== 0 ? FOpen.CACHE_DIR : 0);

/** the size of one fuse_direntplus: the entry and the dirent (entry_out is 8-aligned) */
export const direntPlusSize = (nameLen: number): number => ENTRY_OUT + direntSize(nameLen);

/**
 * fuse_dirents of names[i] from b[p0, p0 + size): as many as fit whole.
 * Returns [bytes written, names written].
 */
export function encodeDir(b: Buffer, p0: number, size: number, firstOffset: number, names: readonly Bstr[], modeIno: Float64Array): [number, number] {
  let p = p0;
  let i = 0;
  for (; i < names.length; i++) {
    const name = names[i]!;
    if (p - p0 + direntSize(name.length) > size) break;
    p = putDirent(b, p, name, modeIno[3 * i]!, modeIno[3 * i + 1]!, modeIno[3 * i + 2]!, firstOffset + i + 1);
  }
  return [p - p0, i];
}

/**
 * fuse_direntplus records: for each name that fits whole, `entry(p, i)` writes its
 * fuse_entry_out at p (and decides its node), then the dirent follows. A name that does
 * not fit is never passed to `entry`: the kernel links (counts) every record it receives,
 * so only those sent may be counted. Returns [bytes written, names written].
 */
export function encodeDirPlus(
  b: Buffer, p0: number, size: number, firstOffset: number, names: readonly Bstr[], modeIno: Float64Array,
  entry: (p: number, i: number) => void,
): [number, number] {
  let p = p0;
  let i = 0;
  for (; i < names.length; i++) {
    const name = names[i]!;
    if (p - p0 + direntPlusSize(name.length) > size) break;
    entry(p, i);
    p = putDirent(b, p + ENTRY_OUT, name, modeIno[3 * i]!, modeIno[3 * i + 1]!, modeIno[3 * i + 2]!, firstOffset + i + 1);
  }
  return [p - p0, i];
}

/** `.` and `..`: the kernel never counts a lookup for them (fuse_direntplus_link); they go out with node 0 */
export const isDotOrDotDot = (name: Bstr): boolean => name === '.' || name === '..';
