/**
 * FUSE over io_uring (features.ts `io_uring`, native-notes/fuse-server.md "io_uring"). The
 * kernel offers FUSE_OVER_IO_URING only while the fuse module's `enable_uring` is set, a
 * host-wide parameter these tests never change: where it is N they show the feature stays
 * absent and the mount unchanged, and the ring transport's tests are skipped through the
 * runner with that reason (never passed). Only `stratafs bench --enable-uring` sets it, for
 * its run; where root has set it, they run the mount through the ring.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCRIPTED } from '../harness/cases.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll } from '../harness/mounts.js';
import { cli, serverStats } from '../harness/cli-mount.js';

const PARAM = '/sys/module/fuse/parameters/enable_uring';
// FUSE_OVER_IO_URING: bit 41, flags2 bit 9 (include/uapi/linux/fuse.h)
const OVER_IO_URING2 = 1 << 9;

/** 'Y', 'N', or undefined where the kernel has no FUSE over io_uring (CONFIG_FUSE_IO_URING) */
function enableUring(): string | undefined {
  try {
    return readFileSync(PARAM, 'latin1').trim();
  } catch {
    return undefined;
  }
}

const statsOf = serverStats;

let kernelProblem: string | undefined;
const before = enableUring();
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
  // host-wide: no test may change it
  expect(enableUring()).toBe(before);
});

describe('io_uring: negotiated only where the kernel offers it', () => {
  it('-o io_uring asks for it; without enable_uring the kernel does not offer it and nothing changes', async () => {
    const t = await tempDir('uring-neg');
    for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
    await writeFile(join(t, 'l', 'f'), 'lower\n');
    const offered = enableUring() === 'Y';
    for (const extra of [['io_uring'], []]) {
      const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, join(t, 'mnt'), { extra: ['fuse_minor=45', ...extra] });
      try {
        expect(await readFile(join(t, 'mnt', 'f'), 'utf8')).toBe('lower\n');
        await writeFile(join(t, 'mnt', 'g'), 'upper\n');
        expect(await readFile(join(t, 'u', 'g'), 'utf8')).toBe('upper\n');
        const s = await statsOf(join(t, 'mnt'));
        expect((s.fuse.kernelFlags2 & OVER_IO_URING2) !== 0, 'the kernel offers OVER_IO_URING exactly while enable_uring is Y').toBe(offered);
        const asked = extra.length > 0 && offered;
        expect(s.fuse.features.includes('io_uring')).toBe(asked);
        expect((s.fuse.flags2 & OVER_IO_URING2) !== 0).toBe(asked);
      } finally {
        await h.unmount();
      }
    }
  }, 60_000);

  it('io_uring is refused beside fuse_api=highlevel and is a fuse_off= name', async () => {
    const t = await tempDir('uring-opt');
    for (const d of ['l', 'mnt']) await mkdir(join(t, d));
    const r = await cli(['-o', `lowerdir=${join(t, 'l')},fuse_api=highlevel,io_uring`, join(t, 'mnt')], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('io_uring is not for fuse_api=highlevel');
    const h = await mount('stratafs', { lowers: [join(t, 'l')] }, join(t, 'mnt'), { extra: ['io_uring', 'fuse_off=io_uring'] });
    try {
      expect((await statsOf(join(t, 'mnt'))).fuse.features).not.toContain('io_uring');
    } finally {
      await h.unmount();
    }
  }, 60_000);
});

describe('io_uring: requests through the ring (only where enable_uring is already Y)', () => {
  const skipWhy = (): string | undefined => {
    const v = enableUring();
    if (v === undefined) return `this kernel has no FUSE over io_uring (${PARAM} missing: CONFIG_FUSE_IO_URING)`;
    if (v !== 'Y') return `the fuse module parameter enable_uring is ${v} on this host (${PARAM}); tests never set it (stratafs bench --enable-uring does, for its run)`;
    return undefined;
  };

  it('a mount served through the ring: files, listings and large WRITEs/READs, counted by the ring', async (ctx) => {
    const why = skipWhy();
    if (why !== undefined) ctx.skip(why);
    const t = await tempDir('uring-ring');
    for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
    for (let i = 0; i < 300; i++) await writeFile(join(t, 'l', `f${i}`), `lower ${i}\n`);
    const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, join(t, 'mnt'), { extra: ['fuse_minor=45', 'io_uring', 'fuse_off=passthrough'] });
    try {
      expect((await readdir(join(t, 'mnt'))).length).toBe(300);
      for (let i = 0; i < 300; i += 37) expect(await readFile(join(t, 'mnt', `f${i}`), 'utf8')).toBe(`lower ${i}\n`);
      const big = Buffer.alloc(3 << 20);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
      await writeFile(join(t, 'mnt', 'big'), big);
      expect((await stat(join(t, 'mnt', 'big'))).size).toBe(big.length);
      expect((await readFile(join(t, 'mnt', 'big'))).equals(big)).toBe(true);
      expect((await readFile(join(t, 'u', 'big'))).equals(big)).toBe(true);
      const s = await statsOf(join(t, 'mnt'));
      expect(s.fuse.features).toContain('io_uring');
      expect(s.fuse.uring, 'the ring was set up').toBeDefined();
      expect(s.fuse.uring!.failed).toBeUndefined();
      expect(s.fuse.uring!.requests).toBeGreaterThan(300);
      expect(s.fuse.uring!.commits).toBeGreaterThan(300);
    } finally {
      await h.unmount();
    }
  }, 120_000);

  for (const c of SCRIPTED.slice(0, 12)) {
    it(`scripted case through the ring vs kernel overlayfs: ${c.name}`, async (ctx) => {
      const why = skipWhy();
      if (why !== undefined) ctx.skip(why);
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'stratafs', divergences: divergencesFor('stratafs'), candidateOptions: ['fuse_minor=45', 'io_uring'] });
      expect(r.unexplained, formatReport(r, c.ops)).toEqual([]);
    }, 120_000);
  }
});
