/**
 * Random sequences of the fuzz language (harness/fuzz.ts) on kernel overlayfs and
 * stratafs until the time asked for is up; stops at the first divergence with the
 * shrunk sequence and the command that replays it. Run through `npm run fuzz`
 * (test/fuzz/run.mjs), which passes its arguments in the environment:
 *   STRATAFS_FUZZ_MINUTES  time to fuzz (default 5)
 *   STRATAFS_FUZZ_SEED     run this seed only (else fresh seeds, one per batch)
 *   STRATAFS_FUZZ_PATH     with a seed: replay fast-check's path of a shrunk case
 *   STRATAFS_FUZZ_RUNS     sequences per seed (default 50)
 *   STRATAFS_FUZZ_LENGTH   maximum operations per sequence (default 40)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshSeed, fuzzBatch } from '../harness/fuzz.js';
import { kernelOverlayProblem, unmountAll } from '../harness/mounts.js';

const num = (v: string | undefined, d: number) => (v === undefined || v === '' ? d : Number(v));
const MINUTES = num(process.env.STRATAFS_FUZZ_MINUTES, 5);
const RUNS = num(process.env.STRATAFS_FUZZ_RUNS, 50);
const LENGTH = num(process.env.STRATAFS_FUZZ_LENGTH, 40);
const SEED = process.env.STRATAFS_FUZZ_SEED ? Number(process.env.STRATAFS_FUZZ_SEED) : undefined;
const PATH = process.env.STRATAFS_FUZZ_PATH || undefined;

const replay = (seed: number, path?: string) =>
  `npm run fuzz -- --seed ${seed} --runs ${RUNS} --length ${LENGTH}${path ? ` --path ${path}` : ''}`;

beforeAll(async () => {
  // Unlike the suite, fuzzing without the judge is pointless: fail, never skip.
  const problem = await kernelOverlayProblem();
  if (problem) throw new Error(`npm run fuzz needs kernel overlayfs: ${problem}`);
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

it(`random sequences against kernel overlayfs for ${MINUTES} minute(s)`, async () => {
  const deadline = Date.now() + MINUTES * 60_000;
  const total = { batches: 0, sequences: 0, ops: 0, stopped: 0 };
  const seeds: number[] = [];
  do {
    const seed = SEED ?? freshSeed();
    seeds.push(seed);
    console.log(`fuzz: seed ${seed} (${RUNS} sequences of up to ${LENGTH} ops${PATH ? `, path ${PATH}` : ''}); replay: ${replay(seed, PATH)}`);
    const o = await fuzzBatch({ seed, runs: RUNS, length: LENGTH, ...(PATH ? { path: PATH } : {}), deadline, replay });
    total.batches++;
    total.sequences += o.sequences;
    total.ops += o.ops;
    total.stopped += o.stopped;
    console.log(`fuzz: seed ${seed}: ${o.sequences} sequences, ${o.ops} operations, ${o.stopped} stopped on an allowed divergence${o.failure ? ', FAILED' : ''}`);
    if (o.failure) throw new Error(o.failure);
  } while (SEED === undefined && Date.now() < deadline);
  console.log(`fuzz: done: ${total.batches} seed(s) (${seeds.join(' ')}), ${total.sequences} sequences, ${total.ops} operations, ${total.stopped} stopped on an allowed divergence, no unexplained divergence`);
});
