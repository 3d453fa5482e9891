/**
 * The fuzz language and its runner, shared by the CI test (a fixed seed and one
 * fresh seed per run) and `npm run fuzz` (fresh seeds until time is up).
 *
 * The language is random.ts's (every op of opArb, so what other helpers add
 * there is fuzzed too) plus:
 * - non-root callers (callers.ts, random.ts withCallerArb) for about a fifth of all ops;
 * - descriptors held across operations: `open` keeps one under A or B, and
 *   later fdread/fdwrite/fdstat/fdattrs/fdtruncate/fdchmod/close use it, after
 *   renames, unlinks and copy-ups of its name that happen in between;
 * - device nodes: mknod of chr/blk/fifo/sock (rdev compared), and lower device
 *   nodes to copy up; both mounts are nodev (stratafs's default; the kernel is
 *   given it), so an open of a device fails with EACCES on both and never reaches
 *   a driver, and the numbers name no device but /dev/null anyway;
 * - deep paths: a lower chain of 250-byte names about 3.5 KiB deep, with
 *   directories to make below it up to about 4 KiB (PATH_MAX counting the
 *   mount's own path), a 60-level chain of short names, and names of 254..256 bytes.
 *   Not beyond PATH_MAX: the harness names every path from the mount's root
 *   (OpRunner, snapshot), which would need dir-fd-relative walks first.
 *
 * A failure message carries the seed, fast-check's path of the shrunk case and
 * the command that replays it.
 */
import fc from 'fast-check';
import { randomInt } from 'node:crypto';
import { BASE, NAME255, NAME256 } from './cases.js';
import { formatReport, runCase } from './differential.js';
import { divergencesFor } from './divergences.js';
import type { Entry, LayerSetSpec } from './layers.js';
import type { Op } from './ops.js';
import { opArb, PATH_POOL, withCallerArb, withSpecial, type PathPool } from './random.js';
import { MEMBER, OWNER, STRANGER } from './callers.js';

/** deep/aaa…/bbb…/…: 14 levels of 250-byte names, 3518 bytes below the root */
export const DEEP_CHAIN: readonly string[] = ['deep', ...Array.from({ length: 14 }, (_, i) => String.fromCharCode(97 + i).repeat(250))];
const deepDir = (levels: number) => DEEP_CHAIN.slice(0, levels + 1).join('/');
const D7 = deepDir(7);
const D14 = deepDir(14);
/** below the lower chain, for the sequence to make: 3769 and 4020 bytes below the root */
const Y = `${D14}/${'y'.repeat(250)}`;
const Z = `${Y}/${'z'.repeat(250)}`;
/** nest/1/2/…/60 */
const nest = (levels: number) => ['nest', ...Array.from({ length: levels }, (_, i) => String(i + 1))].join('/');
const NAME254 = 'm'.repeat(254);

const lowerExtra: Entry[] = [
  { kind: 'file', path: `${D14}/f`, content: 'at the bottom of the deep chain\n' },
  { kind: 'file', path: `${D7}/g`, content: 'half way down\n', xattrs: { 'user.deep': 'y' } },
  { kind: 'file', path: `${nest(60)}/f`, content: 'sixty levels down\n' },
  { kind: 'file', path: `${nest(30)}/h`, content: 'thirty levels down\n' },
  { kind: 'file', path: NAME254, content: '254\n' },
  // /dev/null's number and numbers no driver has: opened nowhere (nodev), copied up by chmod and the like
  { kind: 'device', path: 'devc', type: 'c', major: 1, minor: 3 },
  { kind: 'device', path: 'devb', type: 'b', major: 0, minor: 9, mode: 0o600, uid: 5, gid: 6 },
  { kind: 'device', path: 'd/devc2', type: 'c', major: 0, minor: 7 },
];

const upperExtra: Entry[] = [
  // the deep chain merged half way down: an upper part over the lower
  { kind: 'dir', path: D7 },
  { kind: 'file', path: `${D7}/u`, content: 'upper, half way down\n' },
];

/** BASE with the deep chains and device nodes. */
export const FUZZ_LAYERS: LayerSetSpec = {
  lowers: [BASE.lowers[0]!, [...BASE.lowers[1]!, ...lowerExtra]],
  upper: [...(BASE.upper ?? []), ...upperExtra],
};

export const FUZZ_POOL: PathPool = withSpecial({
  files: [
    ...PATH_POOL.files,
    `${D14}/f`, `${D14}/new`, `${D7}/g`, `${D7}/u`, `${Y}/f`, `${Y}/${NAME255}`, `${Z}/f`, `${Z}/${NAME255}`,
    `${nest(60)}/f`, `${nest(30)}/h`, `${nest(59)}/new`, NAME254, NAME256, `d/${NAME255}`,
    'devc', 'devb', 'd/devc2', 'dev1',
  ],
  dirs: [...PATH_POOL.dirs, 'deep', deepDir(1), D7, D14, Y, Z, `${Z}/${'w'.repeat(60)}`, nest(1), nest(30), nest(60), `d/${NAME254}`],
});

const data = fc.constantFrom('x', 'hello', 'Z'.repeat(300), '\x00\xff\n');
/** two names: a use finds its descriptor open more often than with more */
const fd = fc.constantFrom('A', 'B');
const fmode = fc.constantFrom(0o600, 0o644, 0o755, 0o4755, 0o2750, 0o000);
const rec = <T>(a: fc.Arbitrary<T>, weight: number) => ({ weight, arbitrary: a });

/** Descriptor and device-node operations: what random.ts's language lacks. */
function extraOpArb(pool: PathPool): fc.Arbitrary<Op> {
  const f = fc.constantFrom(...pool.files);
  const d = fc.constantFrom(...pool.dirs);
  const file = fc.oneof({ weight: 6, arbitrary: f }, { weight: 1, arbitrary: d });
  const device = fc.oneof(
    fc.record({ type: fc.constant('chr' as const), rdev: fc.constantFrom<[number, number]>([1, 3], [0, 7], [0, 0]) }),
    fc.record({ type: fc.constant('blk' as const), rdev: fc.constant<[number, number]>([0, 9]) }),
    fc.record({ type: fc.constantFrom('fifo' as const, 'sock' as const) }),
  );
  return fc.oneof(
    rec(fc.record({ op: fc.constant('open' as const), fd, path: file, flags: fc.constantFrom('r' as const, 'r+' as const, 'r+' as const, 'a' as const, 'w' as const) }), 6),
    rec(fc.record({ op: fc.constant('fdread' as const), fd }), 2),
    rec(fc.record({ op: fc.constant('fdwrite' as const), fd, offset: fc.constantFrom(0, 3, 5000), data }), 2),
    rec(fc.record({ op: fc.constant('fdstat' as const), fd }), 1),
    rec(fc.record({ op: fc.constant('fdattrs' as const), fd }), 1),
    rec(fc.record({ op: fc.constant('fdtruncate' as const), fd, size: fc.constantFrom(0, 2, 5000) }), 1),
    rec(fc.record({ op: fc.constant('fdchmod' as const), fd, mode: fmode }), 1),
    rec(fc.record({ op: fc.constant('close' as const), fd }), 2),
    rec(
      fc.tuple(file, device, fc.constantFrom(0o644, 0o600, 0o000)).map(([path, dev, mode]): Op => ({ op: 'mknod', path, mode, ...dev })),
      1,
    ),
  );
}

/**
 * random.ts's operations and the extra ones, about half each; about a fifth of them by
 * a non-root caller (callers.ts: the owner of FUZZ_LAYERS' uid-1000 objects, a member
 * of its group, a stranger), with a random umask.
 */
export function fuzzOpArb(pool: PathPool = FUZZ_POOL): fc.Arbitrary<Op> {
  const plain = fc.oneof(rec(opArb(pool), 18), rec(extraOpArb(pool), 17));
  return fc.oneof(rec(plain, 2), rec(withCallerArb(plain, [OWNER, MEMBER, STRANGER]), 1));
}

export function fuzzSequenceArb(length: number, pool: PathPool = FUZZ_POOL): fc.Arbitrary<Op[]> {
  return fc.array(fuzzOpArb(pool), { minLength: 1, maxLength: length, size: 'max' });
}

/** A seed for this run: printed before use, so any failure can be replayed. */
export function freshSeed(): number {
  return randomInt(1, 2 ** 31 - 1);
}

export interface FuzzBatch {
  seed: number;
  /** sequences to run (an upper bound when timeLimitMs is given) */
  runs: number;
  length: number;
  /** fast-check's path of a counterexample: replays that one case */
  path?: string;
  /** no new sequence starts after this time (epoch ms; not a failure), but a failure found before is shrunk */
  deadline?: number;
  /** how long shrinking a failure may take (default 5 minutes); then the smallest case so far is reported */
  shrinkBudgetMs?: number;
  /** how a reader replays this batch; gets seed and path */
  replay: (seed: number, path?: string) => string;
}

export interface FuzzOutcome {
  seed: number;
  sequences: number;
  /** operations applied to both mounts */
  ops: number;
  /** sequences stopped early on an allowed divergence */
  stopped: number;
  /** the failure's message (report of the shrunk case and how to replay it), when one was found */
  failure?: string;
}

/** Kernel mount options for fuzzing: nodev like stratafs's default, so device opens agree (EACCES) and none reaches a driver. */
export const FUZZ_REFERENCE_OPTIONS = ['nodev'];

/** Runs one batch of random sequences against the kernel; resolves with counts, or the failure found. */
export async function fuzzBatch(b: FuzzBatch): Promise<FuzzOutcome> {
  const divergences = divergencesFor('stratafs');
  const out: FuzzOutcome = { seed: b.seed, sequences: 0, ops: 0, stopped: 0 };
  // fast-check's own time limit would also cut shrinking short: past the deadline (or the
  // shrink budget) a run passes without mounting anything, and the remaining ones go by at once.
  let failedAt: number | undefined;
  const shrinkBudget = b.shrinkBudgetMs ?? 300_000;
  const result = await fc.check(
    fc.asyncProperty(fuzzSequenceArb(b.length), async (ops) => {
      const now = Date.now();
      if (failedAt === undefined ? b.deadline !== undefined && now > b.deadline : now > failedAt + shrinkBudget) return;
      const r = await runCase({ name: 'fuzz', layers: FUZZ_LAYERS, ops }, { candidate: 'stratafs', divergences, referenceOptions: FUZZ_REFERENCE_OPTIONS });
      out.sequences++;
      out.ops += r.results.candidate.length;
      if (r.stoppedAt !== undefined) out.stopped++;
      if (r.unexplained.length) {
        failedAt ??= Date.now();
        throw new Error(formatReport(r, ops));
      }
    }),
    {
      seed: b.seed,
      numRuns: b.runs,
      ...(b.path !== undefined ? { path: b.path } : {}),
    },
  );
  if (result.failed) {
    const path = result.counterexamplePath ?? undefined;
    // the error thrown by the shrunk case carries its report (formatReport)
    const report = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance);
    const cut = failedAt !== undefined && Date.now() > failedAt + shrinkBudget;
    out.failure = [
      `fuzz: seed ${b.seed} found a divergence from kernel overlayfs after ${result.numRuns} sequence(s), shrunk ${result.numShrinks} time(s)${cut ? ` (shrinking stopped after ${shrinkBudget / 1000} s)` : ''}:`,
      report,
      `replay the shrunk case: ${b.replay(b.seed, path)}`,
      `replay the whole batch: ${b.replay(b.seed)}`,
    ].join('\n');
  }
  return out;
}

/**
 * One scripted case per addition to the language, on FUZZ_LAYERS: what random
 * sequences reach only now and then, every run.
 */
export const FUZZ_SCRIPTED: { name: string; about: string; ops: Op[] }[] = [
  {
    name: 'fuzz-held-descriptors',
    about: 'descriptors opened before a copy-up, rename, unlink and chmod of their names, used after them',
    ops: [
      { op: 'open', fd: 'A', path: 'd/low', flags: 'r' },
      { op: 'open', fd: 'B', path: 'f2', flags: 'r+' },
      { op: 'write', path: 'd/low', offset: 0, data: 'hello' },
      { op: 'fdread', fd: 'A' },
      { op: 'rename', from: 'd/low', to: 'moved' },
      { op: 'fdattrs', fd: 'A' },
      { op: 'fdwrite', fd: 'B', offset: 3, data: 'Z'.repeat(300) },
      { op: 'unlink', path: 'f2' },
      { op: 'fdattrs', fd: 'B' },
      { op: 'fdtruncate', fd: 'B', size: 2 },
      { op: 'fdchmod', fd: 'B', mode: 0o600 },
      { op: 'fdread', fd: 'B' },
      { op: 'stat', path: 'f2' },
      { op: 'close', fd: 'B' },
      { op: 'fdread', fd: 'B' },
      { op: 'open', fd: 'B', path: 'uf2', flags: 'a' },
      { op: 'rename', from: 'f1', to: 'uf2' },
      { op: 'fdwrite', fd: 'B', offset: 0, data: 'x' },
      { op: 'fdstat', fd: 'B' },
      { op: 'read', path: 'uf2' },
      { op: 'fdchmod', fd: 'A', mode: 0o640 },
      { op: 'stat', path: 'moved' },
      { op: 'close', fd: 'A' },
    ],
  },
  {
    name: 'fuzz-device-nodes',
    about: 'mknod of each type, over names that exist, copy-up of lower device nodes, renames and links of them',
    ops: [
      { op: 'mknod', path: 'dev1', type: 'chr', mode: 0o644, rdev: [1, 3] },
      { op: 'mknod', path: 'dev2', type: 'blk', mode: 0o600, rdev: [0, 9] },
      { op: 'mknod', path: 'd/fifo', type: 'fifo', mode: 0o644 },
      { op: 'mknod', path: 'd/sock', type: 'sock', mode: 0o600 },
      { op: 'mknod', path: 'zero', type: 'chr', mode: 0o644, rdev: [0, 0] },
      { op: 'mknod', path: 'f1', type: 'chr', mode: 0o644, rdev: [1, 3] },
      { op: 'mknod', path: 'gone', type: 'blk', mode: 0o644, rdev: [0, 9] },
      { op: 'readdir', path: '' },
      { op: 'readdir', path: 'd' },
      { op: 'stat', path: 'devb' },
      { op: 'chmod', path: 'devb', mode: 0o640 },
      { op: 'chown', path: 'devc', uid: 5, gid: 1000 },
      { op: 'rename', from: 'd/devc2', to: 'moved' },
      { op: 'link', from: 'dev1', to: 'dev1b' },
      { op: 'sameInode', a: 'dev1', b: 'dev1b' },
      { op: 'read', path: 'dev1' },
      { op: 'open', fd: 'A', path: 'devb', flags: 'r' },
      { op: 'setxattr', path: 'devc', name: 'user.a', value: 'v' },
      { op: 'unlink', path: 'zero' },
      { op: 'stat', path: 'moved' },
    ],
  },
  {
    name: 'fuzz-deep-paths',
    about: 'a lower file 3.5 KiB down copied up, directories made towards PATH_MAX, a renamed deep directory, names of 254..256 bytes',
    ops: [
      { op: 'read', path: `${D14}/f` },
      { op: 'append', path: `${D14}/f`, data: 'x' },
      { op: 'mkdir', path: Y, mode: 0o755 },
      { op: 'mkdir', path: Z, mode: 0o755 },
      { op: 'create', path: `${Z}/f`, mode: 0o644 },
      { op: 'create', path: `${Z}/${NAME255}`, mode: 0o644 },
      { op: 'create', path: `${Y}/${NAME255}`, mode: 0o644 },
      { op: 'readdir', path: D7 },
      { op: 'chmod', path: `${D7}/g`, mode: 0o600 },
      { op: 'rename', from: deepDir(1), to: 'd/nd' },
      { op: 'readdir', path: 'deep' },
      { op: 'stat', path: `d/nd/${DEEP_CHAIN.slice(2, 8).join('/')}/g` },
      { op: 'unlink', path: `${nest(60)}/f` },
      { op: 'rename', from: nest(30), to: 'nd2' },
      { op: 'read', path: 'nd2/h' },
      { op: 'create', path: `d/${NAME255}`, mode: 0o644 },
      { op: 'create', path: NAME256, mode: 0o644 },
      { op: 'rename', from: NAME254, to: `d/${NAME254}` },
    ],
  },
];
