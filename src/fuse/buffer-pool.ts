/**
 * Reusable buffers for the data of large WRITEs (up to 1 MiB with the kernel server's
 * max_pages; READ replies have theirs, lowlevel/read-buffers.ts). A fresh Buffer per request
 * is external memory V8 accounts for (more GCs) and fresh pages the kernel must fault in.
 *
 * Only requests above SMALL come from here; a buffer goes back once its request is answered
 * (the reply is written synchronously), and at most KEEP stay pooled, so the pool holds a few
 * MiB only while large requests come.
 */
const SMALL = 64 * 1024;
const KEEP = 4;

export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(private readonly size: number) {}

  /** a buffer of `n` bytes (uninitialized): a pooled one's first n bytes when n is large */
  take(n: number): Buffer {
    if (n <= SMALL || n > this.size) return Buffer.allocUnsafe(n);
    const b = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    return b.subarray(0, n);
  }

  /** hands back what take() gave, once nothing reads it any more */
  give(b: Buffer): void {
    if (b.length <= SMALL || b.buffer.byteLength !== this.size || this.free.length >= KEEP) return;
    this.free.push(Buffer.from(b.buffer, b.byteOffset, this.size));
  }
}

/** the largest WRITE the server takes (sizes.ts BIG_WRITE) */
export const dataBuffers = new BufferPool(1 << 20);
