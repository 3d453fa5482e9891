/**
 * Seeded PRNG for the benchmark data set. Math.random cannot be seeded, and the data set must be
 * byte-for-byte identical between runs and machines so that results stay comparable.
 * Mulberry32: 32-bit state, good enough statistically for picking names and sizes.
 */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 2^32). */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Prng.int: bad bound ${n}`);
    return Math.floor((this.nextU32() / 0x1_0000_0000) * n);
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  pick<T>(items: readonly T[]): T {
    const v = items[this.int(items.length)];
    if (v === undefined) throw new RangeError('Prng.pick: empty list');
    return v;
  }

  /** k distinct items, order given by the generator (partial Fisher-Yates on a copy). */
  sample<T>(items: readonly T[], k: number): T[] {
    if (k > items.length) throw new RangeError(`Prng.sample: ${k} > ${items.length}`);
    const a = items.slice();
    for (let i = 0; i < k; i++) {
      const j = i + this.int(a.length - i);
      const tmp = a[i] as T;
      a[i] = a[j] as T;
      a[j] = tmp;
    }
    return a.slice(0, k);
  }

  /** Bytes drawn from the generator; `printable` keeps them in a text alphabet (git diffs stay readable). */
  bytes(n: number, printable: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n';
    for (let i = 0; i < n; i++) {
      const r = this.nextU32();
      out[i] = printable ? alphabet.charCodeAt(r % alphabet.length) : r & 0xff;
    }
    return out;
  }
}
