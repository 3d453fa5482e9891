/**
 * A differential test without kernel overlayfs fails, or with STRATAFS_SKIP_KERNEL_DIFF=1
 * is skipped through the runner (ctx.skip, with the reason): it never returns early as passed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { kernelSkipReason, requireKernel } from '../harness/mounts.js';

const saved = process.env.STRATAFS_SKIP_KERNEL_DIFF;
afterEach(() => {
  if (saved === undefined) delete process.env.STRATAFS_SKIP_KERNEL_DIFF;
  else process.env.STRATAFS_SKIP_KERNEL_DIFF = saved;
});

class Skipped extends Error {}
const fakeCtx = () => {
  const notes: (string | undefined)[] = [];
  const skip = ((note?: string): never => {
    notes.push(note);
    throw new Skipped(note);
  }) as never;
  return { ctx: { skip }, notes };
};

describe('requireKernel', () => {
  it('lets the test run when kernel overlayfs mounts', () => {
    const { ctx, notes } = fakeCtx();
    requireKernel(undefined, ctx);
    expect(notes).toEqual([]);
  });

  it('fails without kernel overlayfs unless the run opted out', () => {
    delete process.env.STRATAFS_SKIP_KERNEL_DIFF;
    const { ctx, notes } = fakeCtx();
    expect(() => requireKernel('not root', ctx)).toThrow(/not root.*STRATAFS_SKIP_KERNEL_DIFF=1 to opt out/);
    expect(notes).toEqual([]);
  });

  it('skips through the runner, with the reason, when the run opted out', () => {
    process.env.STRATAFS_SKIP_KERNEL_DIFF = '1';
    const { ctx, notes } = fakeCtx();
    expect(() => requireKernel('not root', ctx)).toThrow(Skipped);
    expect(notes).toEqual([expect.stringMatching(/skipped on request \(STRATAFS_SKIP_KERNEL_DIFF=1\): not root/)]);
    expect(kernelSkipReason('not root')).toBe(notes[0]);
  });
});
