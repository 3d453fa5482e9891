/**
 * Overlay inode numbers (the kernel's ovl_map_ino / xino).
 *
 * - All layers on one filesystem: st_ino is the real inode number of the
 *   object's origin, so it is unique without translation.
 * - Layers on several filesystems: like xino, the filesystem's index goes into
 *   high bits (fsIndex * 2^XINO_SHIFT + ino). Real numbers too big for that
 *   (a kernel overlay with xino=on as a lower gives 2^62 + n and 2^63 + n)
 *   get a number from a private pool above 2^52, remembered for the mount's life.
 * - Numbers are exact 64-bit values (Ino: a bigint from 2^53 on), never doubles:
 *   two objects whose numbers differ in the low bits must not share a number.
 * - A copied-up object keeps the number of its lower origin (kernel: the
 *   origin xattr): copy-up records upper ino -> overlay ino here, for the
 *   mount's life. A directory reports its topmost lower directory's number, so
 *   its number does not change when it is copied up or renamed with a redirect.
 * - Objects copied up by an earlier mount report the upper's number (stable
 *   for the life of this mount; the kernel would decode the origin handle).
 */
import type { Ino } from '../native/sys-api.js';

export const XINO_SHIFT = 40;
const XINO_LIMIT = 2 ** XINO_SHIFT;
const POOL_BASE = 2 ** 52;

export class InodeNumbers {
  /** dev of each layer -> its filesystem index (upper's fs is 0) */
  private readonly fsIndexByDev = new Map<number, number>();
  private readonly single: boolean;
  private readonly pool = new Map<string, number>();
  private nextPool = POOL_BASE;
  /** upper real ino -> overlay ino, for objects copied up during this mount */
  private readonly copiedUp = new Map<Ino, Ino>();

  constructor(layerDevs: readonly number[]) {
    for (const d of layerDevs) if (!this.fsIndexByDev.has(d)) this.fsIndexByDev.set(d, this.fsIndexByDev.size);
    this.single = this.fsIndexByDev.size <= 1;
  }

  get filesystems(): number { return this.fsIndexByDev.size; }

  /** The overlay number of a real object (dev, ino) before any copy-up mapping. */
  real(dev: number, ino: Ino): Ino {
    if (this.single) return ino;
    const fs = this.fsIndexByDev.get(dev) ?? 0;
    if (typeof ino === 'number' && ino < XINO_LIMIT) return fs * XINO_LIMIT + ino;
    const key = `${dev}:${ino}`;
    let n = this.pool.get(key);
    if (n === undefined) { n = this.nextPool++; this.pool.set(key, n); }
    return n;
  }

  /** Number of an object whose top real object is in the upper (dev, ino). */
  upper(dev: number, ino: Ino): Ino {
    return this.copiedUp.get(ino) ?? this.real(dev, ino);
  }

  /** Record that upper object `upperIno` continues overlay object `ovlIno`. */
  recordCopyUp(upperIno: Ino, ovlIno: Ino): void {
    this.copiedUp.set(upperIno, ovlIno);
  }

  /** The upper object is gone for good (its last link removed). */
  forgetUpper(upperIno: Ino): void {
    this.copiedUp.delete(upperIno);
  }
}
