/**
 * Other users (issue 11): the owner, a member of its group and a stranger act
 * on a mount made by root (stratafs adds allow_other and default_permissions as
 * root), each as a process of its own ids without capabilities, and every
 * result, mode, owner and xattr must equal kernel overlayfs's on the same
 * layers (test/harness/cases-users.ts). STRATAFS_USERS_IMPL=fuse-overlayfs runs
 * the same matrix against fuse-overlayfs (by hand: it differs, see the report).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerOps, USER_CALLERS, USER_CASES, USERS_LAYERS, USERS_POOL } from '../harness/cases-users.js';
import { callerSequenceArb } from '../harness/random.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, requireKernel, unmountAll, type Impl } from '../harness/mounts.js';
import { formatNsReport, runNsCase, usernsProblem } from '../harness/userns.js';

const LONG = process.env.STRATAFS_LONG === '1';
/** random sequences with callers: RUNS of up to LENGTH ops; the seed is printed (replay: STRATAFS_USERS_SEED) */
const RUNS = Number(process.env.STRATAFS_USERS_RUNS ?? (LONG ? 60 : 3));
const LENGTH = Number(process.env.STRATAFS_USERS_LENGTH ?? 25);
const SEED = Number(process.env.STRATAFS_USERS_SEED ?? 20261203);
const IMPL = (process.env.STRATAFS_USERS_IMPL ?? 'stratafs') as Exclude<Impl, 'kernel'>;
const DIVERGENCES = divergencesFor(IMPL);

let kernelProblem: string | undefined;
let nsProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  nsProblem = await usernsProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe.skipIf(process.env.STRATAFS_USERS_NS_ONLY === '1')(`${IMPL} vs kernel overlayfs: other users on a root mount (${callerOps(USER_CASES)} operations by callers)`, () => {
  for (const c of USER_CASES.filter((x) => !process.env.STRATAFS_USERS_ONLY || x.name.includes(process.env.STRATAFS_USERS_ONLY))) {
    it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: IMPL, divergences: DIVERGENCES });
      const text = formatReport(r, c.ops);
      if (r.allowed.length || process.env.STRATAFS_USERS_SHOW === '1') console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }

  it(`random sequences by callers: ${RUNS} of up to ${LENGTH} ops, seed ${SEED}`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    console.log(`users random: seed ${SEED} (replay with STRATAFS_USERS_SEED=${SEED})`);
    await fc.assert(
      fc.asyncProperty(callerSequenceArb(LENGTH, USERS_POOL, USER_CALLERS), async (ops) => {
        const r = await runCase({ name: 'users-random', layers: USERS_LAYERS, ops }, { candidate: IMPL, divergences: DIVERGENCES });
        if (r.unexplained.length) throw new Error(formatReport(r, ops));
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: LONG ? 3_000_000 : 200_000, markInterruptAsFailure: true },
    );
  }, LONG ? 3_600_000 : 300_000);
});

/**
 * The non-root mounter: both mounted by the root of a user namespace that is a plain uid
 * outside, with userxattr; the callers are other ids mapped there (test/harness/userns.ts).
 * security.capability and trusted.* do not apply there: the layers carry neither (userns.ts forMounter).
 */
describe('stratafs vs kernel overlayfs: other users on a mount made in a user namespace (userxattr)', () => {
  const cases = USER_CASES.filter((c) => (!process.env.STRATAFS_USERS_ONLY || c.name.includes(process.env.STRATAFS_USERS_ONLY)));
  for (const c of cases) {
    it(`${c.name} (userns)`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      if (nsProblem) ctx.skip(nsProblem);
      const r = await runNsCase(c, divergencesFor('stratafs'));
      const text = formatNsReport(r);
      if (r.allowed.length || process.env.STRATAFS_USERS_SHOW === '1') console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }
});
