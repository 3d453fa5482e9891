/**
 * Cache coherence, stratafs against kernel overlayfs (redirect_dir=on): after a change
 * made through one name or descriptor, every other name, descriptor and cached
 * directory entry must show what the kernel shows (cases: test/harness/cases-cache.ts).
 *
 * Two stratafs mounts per case set:
 * - the defaults: the low-level binding with kernel caches of a day (entries, attributes,
 *   negative entries), one FUSE node per overlay object;
 * - fuse_api=highlevel: fuse-native's high-level binding, where each name is its own kernel
 *   inode and attributes are therefore not cached (its default attr_timeout=0). With
 *   attr_timeout>0 there, 12 of these cases fail (hard links show stale nlink/size/mode).
 *
 * `attrs ... since` tells whether ctime/mtime moved across one operation; that needs the
 * layers' filesystem to give a changed inode a newer time than a stat just saw, even
 * within one clock tick (multigrain timestamps, Linux >= 6.13 on ext4/xfs/btrfs/tmpfs).
 * beforeAll checks it, and the cases fail with that reason where it does not hold.
 *
 * The second variant skips the cross-read of each upper (a fresh mount reading the other's
 * upper checks the on-disk form, which the default variant already covers, not caching).
 */
import { chmod, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CACHE_CASES } from '../harness/cases-cache.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, unmountAll, requireKernel, tempDir } from '../harness/mounts.js';

const DIVERGENCES = divergencesFor('stratafs');

/** Why ctime comparisons would be a race here, or undefined (see the header). */
async function coarseTimestamps(): Promise<string | undefined> {
  const dir = await tempDir('ctime-grain');
  const f = join(dir, 'f');
  try {
    await writeFile(f, '');
    for (let i = 0; i < 50; i++) {
      const a = await stat(f, { bigint: true });
      await chmod(f, i % 2 ? 0o644 : 0o600);
      const b = await stat(f, { bigint: true });
      if (b.ctimeNs <= a.ctimeNs) {
        return `the filesystem under ${dir} gave a chmod right after a stat the same ctime (coarse timestamps, no multigrain): the cases' ctime/mtime comparisons would be a race`;
      }
    }
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

let kernelProblem: string | undefined;
let timeProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  timeProblem = await coarseTimestamps();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

const variants: { title: string; options: string[]; crossRead: boolean }[] = [
  { title: 'defaults (low-level API, day-long kernel caches)', options: [], crossRead: true },
  { title: 'fuse_api=highlevel (attr_timeout=0)', options: ['fuse_api=highlevel'], crossRead: false },
];

for (const v of variants) {
  describe(`stratafs vs kernel overlayfs, cache coherence: ${v.title}`, () => {
    for (const c of CACHE_CASES) {
      it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
        requireKernel(kernelProblem, ctx);
        if (timeProblem) throw new Error(timeProblem);
        const r = await runCase(c, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: v.options, crossRead: v.crossRead });
        const text = formatReport(r, c.ops);
        if (r.allowed.length) console.log(text);
        expect(r.unexplained, text).toEqual([]);
      }, 60_000);
    }
  });
}
