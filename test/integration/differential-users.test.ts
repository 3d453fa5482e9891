/**
 * Other users (issue 11): the owner, a member of its group and a stranger act
 * on a mount made by root (stratafs adds allow_other and default_permissions as
 * root), each as a process of its own ids without capabilities, and every
 * result, mode, owner and xattr must equal kernel overlayfs's on the same
 * layers (test/harness/cases-users.ts). STRATAFS_USERS_IMPL=fuse-overlayfs runs
 * the same matrix against fuse-overlayfs (by hand: it differs, see the report).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerOps, USER_CASES } from '../harness/cases-users.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, requireKernel, unmountAll, type Impl } from '../harness/mounts.js';

const IMPL = (process.env.STRATAFS_USERS_IMPL ?? 'stratafs') as Exclude<Impl, 'kernel'>;
const DIVERGENCES = divergencesFor(IMPL);

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe(`${IMPL} vs kernel overlayfs: other users on a root mount (${callerOps(USER_CASES)} operations by callers)`, () => {
  for (const c of USER_CASES.filter((x) => !process.env.STRATAFS_USERS_ONLY || x.name.includes(process.env.STRATAFS_USERS_ONLY))) {
    it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: IMPL, divergences: DIVERGENCES });
      const text = formatReport(r, c.ops);
      if (r.allowed.length || process.env.STRATAFS_USERS_SHOW === '1') console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }
});
