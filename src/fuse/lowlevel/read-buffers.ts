/**
 * Buffers for READ replies, reused. Both servers write a reply before the reply
 * function returns (fuse_reply_buf, or one writev of the kernel server), so a
 * buffer is free again the moment its request is answered. A fresh Buffer per
 * READ (128 KiB each of a sequential read) is garbage V8 only collects once
 * tens of MiB of it have piled up outside the heap: a 64 MiB `dd` raised the
 * daemon's peak RSS from 82 to 113 MiB. Kept: at most `keep` buffers of at
 * most `maxBytes` each; a request beyond them gets a buffer of its own.
 */
export class ReadBuffers {
  private readonly free: Buffer[] = [];
  /** buffers handed out and not given back yet (the tests' and stats' view) */
  out = 0;

  constructor(private readonly keep = 4, private readonly maxBytes = 1 << 20, private readonly minBytes = 128 * 1024) {}

  /** a buffer of at least `size` bytes, owned by the caller until give() */
  take(size: number): Buffer {
    this.out++;
    const b = this.free.pop();
    if (b !== undefined && b.length >= size) return b;
    // too small (a larger request than any before): dropped, one that fits this one replaces it
    return Buffer.allocUnsafeSlow(Math.max(size, this.minBytes, b?.length ?? 0));
  }

  /** back once the reply is written (or the request failed); never touched by the giver again */
  give(b: Buffer): void {
    this.out--;
    if (this.free.length < this.keep && b.length <= this.maxBytes && !this.free.includes(b)) this.free.push(b);
  }

  /** buffers kept for reuse */
  get kept(): number {
    return this.free.length;
  }
}
