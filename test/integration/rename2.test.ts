/**
 * renameat2's flags through stratafs's FUSE server (RENAME2, FUSE 7.23;
 * the feature `rename2` of src/fuse/kernel/features.ts) against kernel
 * overlayfs: the scripted cases of test/harness/cases-rename2.ts (with
 * redirect_dir on and off) and random sequences that use them. Then the
 * fallbacks: where RENAME2 is not spoken (fuse_off=rename2: the server answers
 * ENOSYS and the kernel EINVAL from then on; fuse_minor=19: the kernel never
 * sends it; fuse_api=highlevel: libfuse 2.9 at 7.19) every flagged rename is
 * EINVAL and changes nothing, while a plain rename works.
 */
import fc from 'fast-check';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE } from '../harness/cases.js';
import { RENAME2_CASES, RENAME2_REDIRECT_OFF } from '../harness/cases-rename2.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { buildLayerSet } from '../harness/layers.js';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll } from '../harness/mounts.js';
import { OpRunner, showResult, type Op } from '../harness/ops.js';
import { PATH_POOL, sequenceArb, withSpecial } from '../harness/random.js';
import { cli } from '../harness/cli-mount.js';

const DIVERGENCES = divergencesFor('stratafs');
/** the feature needs 7.23: named, so that a run capped by STRATAFS_TEST_FUSE_MINOR=19 still tests it on */
const SERVER = ['fuse_minor=45'];
const RUNS = Number(process.env.STRATAFS_RENAME2_RUNS ?? 8);
const LENGTH = Number(process.env.STRATAFS_DIFF_LENGTH ?? 30);
const SEED = Number(process.env.STRATAFS_DIFF_SEED ?? 20261204);

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe('stratafs vs kernel overlayfs: renameat2 flags', () => {
  for (const c of RENAME2_CASES) {
    it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: SERVER });
      const text = formatReport(r, c.ops);
      expect(r.unexplained, text).toEqual([]);
      expect(r.stoppedAt, text).toBeUndefined();
    }, 120_000);
  }
  it(`${RENAME2_REDIRECT_OFF.name}: ${RENAME2_REDIRECT_OFF.about ?? ''}`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const c = RENAME2_REDIRECT_OFF;
    const r = await runCase(c, {
      candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: [...SERVER, 'redirect_dir=off'], referenceOptions: ['redirect_dir=off'],
    });
    const text = formatReport(r, c.ops);
    expect(r.unexplained, text).toEqual([]);
    // the kernel's own answer, so that the case cannot pass with redirect_dir left on
    expect(r.results.reference.slice(0, 3).map(showResult), text).toEqual(['EXDEV', 'EXDEV', 'EXDEV']);
  }, 120_000);

  it(`${RUNS} random sequences of up to ${LENGTH} ops with renameat2 flags, seed ${SEED}`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    let flagged = 0;
    await fc.assert(
      fc.asyncProperty(sequenceArb(LENGTH, withSpecial(PATH_POOL), { rename2: true }), async (ops) => {
        const r = await runCase({ name: 'random-rename2', layers: BASE, ops }, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: SERVER });
        if (r.unexplained.length) throw new Error(formatReport(r, ops));
        flagged += r.results.candidate.filter((x, i) => ops[i]!.op === 'rename2' && x.ok).length;
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 300_000, markInterruptAsFailure: true },
    );
    // the sequences reached renames that succeeded with flags, not only refusals
    expect(flagged).toBeGreaterThan(0);
  }, 400_000);
});

/** Flagged renames where RENAME2 is not spoken: the kernel's EINVAL, nothing moved; a plain rename still works. */
const FALLBACK_OPS: Op[] = [
  { op: 'rename2', from: 'uf2', to: 'n1', flags: ['noreplace'] },
  { op: 'rename2', from: 'uf2', to: 'f1', flags: ['exchange'] },
  { op: 'rename2', from: 'f1', to: 'n2', flags: ['whiteout'] },
  { op: 'rename2', from: 'u', to: 'dirl', flags: ['exchange'] },
  { op: 'rename2', from: 'uf2', to: 'f1', flags: ['exchange'] },
  { op: 'readdir', path: '' },
  { op: 'read', path: 'f1' },
  { op: 'rename2', from: 'uf2', to: 'n3', flags: [] },
  { op: 'stat', path: 'n3' },
];

describe('without RENAME2: renameat2 with flags is EINVAL, as on a 7.19 server', () => {
  const variants: { name: string; options: string[]; features?: (f: string[]) => void }[] = [
    { name: 'fuse_off=rename2 (the server answers ENOSYS, the kernel EINVAL)', options: [...SERVER, 'fuse_off=rename2'], features: (f) => expect(f).not.toContain('rename2') },
    { name: 'fuse_minor=19 (the kernel never sends RENAME2)', options: ['fuse_minor=19'], features: (f) => expect(f).not.toContain('rename2') },
    { name: 'fuse_api=highlevel (libfuse 2.9, 7.19)', options: ['fuse_api=highlevel'] },
    { name: 'fuse_minor=45 (on: the same ops succeed)', options: SERVER, features: (f) => expect(f).toContain('rename2') },
  ];
  for (const v of variants) {
    it(v.name, async () => {
      const t = await tempDir('rename2-off');
      const layers = await buildLayerSet(BASE, t, 'native');
      await mkdir(join(t, 'mnt'));
      const h = await mount('stratafs', layers, join(t, 'mnt'), { extra: v.options });
      const runner = new OpRunner(h.mnt);
      try {
        const got: string[] = [];
        for (const o of FALLBACK_OPS) got.push(showResult(await runner.apply(o)));
        const rd = got[5]!;
        if (v.options === SERVER) {
          // noreplace moved uf2 to n1, so the exchanges with uf2 find nothing; u and dirl swap; whiteout stays EINVAL
          expect(got.slice(0, 5), got.join('\n')).toEqual(['ok', 'ENOENT', 'EINVAL', 'ok', 'ENOENT']);
          expect(rd).toContain('"n1:f"');
        } else {
          expect(got.slice(0, 5), got.join('\n')).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL']);
          expect(rd).toContain('"uf2:f"');
          expect(rd).not.toContain('"n1:');
          // f1 is still the lower file ("top f1\n"), not uf2's content
          expect(got[6]).toMatch(/"size":7,/);
          expect(got.slice(7), got.join('\n')).toEqual(['ok', expect.stringMatching(/^ok /)]);
        }
        if (v.features) {
          const info = await cli(['stats', '--json', h.mnt], { timeoutMs: 10_000 });
          expect(info.code, info.stderr).toBe(0);
          v.features((JSON.parse(info.stdout) as { fuse: { features: string[] } }).fuse.features);
        }
      } finally {
        await runner.closeAll();
        await h.unmount();
      }
    }, 60_000);
  }
});
