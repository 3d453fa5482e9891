/**
 * stratafs against the judge, kernel overlayfs (redirect_dir=on): the same
 * scripted and randomized sequences must give the same results, errnos and
 * merged trees; the kernel must read stratafs's upper as stratafs showed it,
 * and stratafs the kernel's. Only the entries of test/harness/divergences.ts
 * may differ.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE, SCRIPTED } from '../harness/cases.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, unmountAll, requireKernel } from '../harness/mounts.js';
import { PATH_POOL, sequenceArb, withSpecial } from '../harness/random.js';
import { freshSeed, fuzzBatch, FUZZ_LAYERS, FUZZ_REFERENCE_OPTIONS, FUZZ_SCRIPTED } from '../harness/fuzz.js';

const DIVERGENCES = divergencesFor('stratafs');
/** Randomized workload: RUNS sequences of up to LENGTH operations, fixed seed (override with STRATAFS_DIFF_SEED). */
const RUNS = Number(process.env.STRATAFS_DIFF_RUNS ?? 50);
const LENGTH = Number(process.env.STRATAFS_DIFF_LENGTH ?? 30);
const SEED = Number(process.env.STRATAFS_DIFF_SEED ?? 20261126);
/**
 * The fuzz language (harness/fuzz.ts: held descriptors, device nodes, deep paths) on a
 * fixed seed and on one fresh seed per run, printed first; a failure names the command
 * that replays it. Longer: `npm run fuzz -- --minutes N`.
 */
const FUZZ_RUNS = Number(process.env.STRATAFS_DIFF_FUZZ_RUNS ?? 10);
const FUZZ_SEED = Number(process.env.STRATAFS_DIFF_FUZZ_SEED ?? 20261203);
const FRESH_SEED = process.env.STRATAFS_DIFF_FRESH_SEED ? Number(process.env.STRATAFS_DIFF_FRESH_SEED) : freshSeed();
const THIS_FILE = 'test/integration/differential-stratafs.test.ts';

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});


describe('stratafs vs kernel overlayfs: scripted cases', () => {
  for (const c of SCRIPTED) {
    it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'stratafs', divergences: DIVERGENCES });
      const text = formatReport(r, c.ops);
      if (r.allowed.length) console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }
});

describe('stratafs vs kernel overlayfs: randomized sequences', () => {
  it(`${RUNS} sequences of up to ${LENGTH} ops, seed ${SEED}`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    let stopped = 0;
    await fc.assert(
      fc.asyncProperty(sequenceArb(LENGTH, withSpecial(PATH_POOL)), async (ops) => {
        const r = await runCase({ name: 'random', layers: BASE, ops }, { candidate: 'stratafs', divergences: DIVERGENCES });
        if (r.stoppedAt !== undefined) stopped++;
        if (r.unexplained.length) throw new Error(formatReport(r, ops));
      }),
      // On failure fast-check prints the seed, the path and the shrunk sequence (the report above lists it op by op).
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 400_000, markInterruptAsFailure: true },
    );
    console.log(`random stratafs: ${RUNS} sequences, ${stopped} stopped early on an allowed divergence`);
  }, 600_000);
});

describe('stratafs vs kernel overlayfs: the fuzz language', () => {
  for (const c of FUZZ_SCRIPTED) {
    it(`${c.name}: ${c.about}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase({ ...c, layers: FUZZ_LAYERS }, { candidate: 'stratafs', divergences: DIVERGENCES, referenceOptions: FUZZ_REFERENCE_OPTIONS });
      const text = formatReport(r, c.ops);
      if (r.allowed.length) console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }
  const cases: { name: string; seed: number; env: string }[] = [
    { name: 'fixed seed', seed: FUZZ_SEED, env: 'STRATAFS_DIFF_FUZZ_SEED' },
    { name: 'fresh seed', seed: FRESH_SEED, env: 'STRATAFS_DIFF_FRESH_SEED' },
  ];
  for (const c of cases) {
    it(`${c.name} ${c.seed}: ${FUZZ_RUNS} sequences of up to ${LENGTH} ops with held descriptors, device nodes and deep paths`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const replay = (seed: number, path?: string) =>
        `${c.env}=${seed} STRATAFS_DIFF_FUZZ_RUNS=${FUZZ_RUNS} STRATAFS_DIFF_LENGTH=${LENGTH} npx vitest run --config test/vitest.config.ts ${THIS_FILE} -t '${c.name}'` +
        ` (or the shrunk case alone: npm run fuzz -- --seed ${seed} --runs ${FUZZ_RUNS} --length ${LENGTH}${path ? ` --path ${path}` : ''})`;
      console.log(`fuzz language, ${c.name}: seed ${c.seed}; replay: ${replay(c.seed)}`);
      const o = await fuzzBatch({ seed: c.seed, runs: FUZZ_RUNS, length: LENGTH, replay });
      console.log(`fuzz language, ${c.name} ${c.seed}: ${o.sequences} sequences, ${o.ops} operations, ${o.stopped} stopped early on an allowed divergence`);
      expect(o.failure, o.failure).toBeUndefined();
    }, 600_000);
  }
});
