import { describe, expect, it } from 'vitest';
import { ReadBuffers } from '../../src/fuse/lowlevel/read-buffers.js';

describe('READ reply buffers (fuse/lowlevel/read-buffers.ts)', () => {
  it('hands a buffer given back to the next request, never one still out', () => {
    const p = new ReadBuffers(2, 1 << 20, 4096);
    const a = p.take(4096);
    const b = p.take(4096);
    expect(b).not.toBe(a);
    p.give(a);
    expect(p.take(100)).toBe(a);
    p.give(a);
    p.give(b);
    expect(p.kept).toBe(2);
    const c = p.take(4096);
    const d = p.take(4096);
    expect(new Set([c, d])).toEqual(new Set([a, b]));
    expect(p.out).toBe(2);
  });

  it('grows for a larger request and keeps no more than it may', () => {
    const p = new ReadBuffers(1, 256 * 1024, 4096);
    const small = p.take(4096);
    p.give(small);
    const big = p.take(128 * 1024);
    expect(big).not.toBe(small);
    expect(big.length).toBeGreaterThanOrEqual(128 * 1024);
    const other = p.take(4096);
    p.give(big);
    p.give(other);
    // one kept: the first given back
    expect(p.kept).toBe(1);
    expect(p.take(4096)).toBe(big);
    // larger than maxBytes: served, never kept
    const huge = p.take(512 * 1024);
    p.give(huge);
    expect(p.kept).toBe(0);
  });
});
