/**
 * Issue 11, crashes: a client works on a mount made by the real CLI while the
 * test kills the daemon (kill -9), stops it (SIGSTOP), or kills the client, at
 * a point drawn from a seed. After each hit (harness/crash.ts):
 * `stratafs umount --force` recovers the mountpoint, a new mount on the same
 * upper/workdir starts with workdir/work emptied, kernel overlayfs on the
 * same lower/upper shows the same tree, and the probe's invariant holds: a
 * copy-up is absent or complete in the upper; every operation the client's op
 * log acknowledged is there; only the one in flight may be missing or partial.
 *
 * Seeds: half of each probe's iterations use fixed seeds, half the run's seed
 * (printed); STRATAFS_CRASH_SEED=S replays from S (every iteration S, S+1, ...).
 * Kill points are positions in the work (bytes copied, operations
 * acknowledged), so a seed replays the same point up to the machine's timing.
 * CI: 256 MiB copy-ups × 5 daemon kills, 3 client kills and 2 stops (not the
 * issue's 20: each costs 5-9 s on a loaded 2-core machine, mostly the remount
 * and the two tree walks that hash the file), about 30 hits in all, 2-3 min.
 * STRATAFS_LONG=1: 1 GiB copy-ups × 15 and more of everything else (~12 min).
 */
import { randomInt } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Prng } from '../../src/bench/prng.js';
import { cli, daemonMount, Leftovers, pidAlive, waitFor } from '../harness/cli-mount.js';
import {
  checkCopyUp, checkOpLog, clientGone, describePoint, freshIteration, judgeOpLog, modelOf, mountOptions, readOpLog, recoverAndCompare, sleep,
  startClient, verifyWritePattern, waitAcked, waitCopyUpPoint, type Client, type CopyUpPoint, type CrashDirs, type Model,
} from '../harness/crash.js';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll } from '../harness/mounts.js';
import { mustBash, shq } from '../harness/proc.js';
import { snapshot } from '../harness/tree.js';

const LONG = process.env.STRATAFS_LONG === '1';
const MiB = 1024 * 1024;
const COPYUP_SIZE = (LONG ? 1024 : 256) * MiB;
const WRITE_CHUNK = (LONG ? 4 : 1) * MiB;
const WRITE_COUNT = LONG ? 256 : 48;
const RUNS = LONG
  ? { copyUp: 15, ops: 15, writes: 12, dirs: 15, over: 10, client: 10, stop: 10 }
  : { copyUp: 5, ops: 5, writes: 4, dirs: 5, over: 3, client: 3, stop: 4 };
/** lower entries of the directory a rename replaces once they are all deleted (one whiteout each) */
const OVER_ENTRIES = LONG ? 100_000 : 20_000;

const ENV_SEED = process.env.STRATAFS_CRASH_SEED;
const RUN_SEED = ENV_SEED !== undefined ? Number(ENV_SEED) : randomInt(1, 2 ** 31);

/** Half fixed (the same every run), half from the run's seed; all from STRATAFS_CRASH_SEED when set. */
function seeds(probe: number, n: number): number[] {
  if (ENV_SEED !== undefined) return Array.from({ length: n }, (_, i) => RUN_SEED + i);
  const fixed = Math.ceil(n / 2);
  return Array.from({ length: n }, (_, i) => (i < fixed ? 20_261_203 + probe * 1000 + i : RUN_SEED + probe * 1000 + i));
}
const replay = (seed: number): string => `seed ${seed} (replay: STRATAFS_CRASH_SEED=${seed})`;

/** One line per probe for the issue's table, printed at the end. */
const table: string[] = [];
function tally(xs: string[]): string {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k} ×${v}`).join(', ');
}

let kernelProblem: string | undefined;
let t: string;
/** the copy-up probes' lower: `big` (random data) and a few small files */
let lowerBig: string;
/** the name-space probes' lower: f/, g/ (files), D/, E/ (directories with lower content) */
let lowerNs: string;
let initialNs: Model;
const NS_ROOTS = ['f', 'g', 'D', 'E'];
let left: Leftovers;

beforeAll(async () => {
  console.log(`crash probes: run seed ${RUN_SEED}${ENV_SEED !== undefined ? ' (from STRATAFS_CRASH_SEED)' : ''}; copy-ups of ${COPYUP_SIZE / MiB} MiB${LONG ? ' (STRATAFS_LONG)' : ''}`);
  kernelProblem = await kernelOverlayProblem();
  t = await tempDir('crash');
  lowerBig = join(t, 'lower-big');
  lowerNs = join(t, 'lower-ns');
  await mkdir(lowerBig);
  await mustBash(`head -c ${COPYUP_SIZE} /dev/urandom > ${shq(join(lowerBig, 'big'))} && echo small > ${shq(join(lowerBig, 'small'))}`, 300_000);
  const files: [string, string][] = [];
  for (let i = 0; i < 12; i++) files.push([`f/l${i}`, `lower f ${i}\n`.repeat(i + 1)]);
  for (let i = 0; i < 6; i++) files.push([`g/m${i}`, `lower g ${i}\n`]);
  for (const [p, n] of [['D', 4], ['E', 2]] as const) {
    for (let i = 0; i < n; i++) {
      const dir = `${p}/${p.toLowerCase()}${i}`;
      for (let j = 0; j < 3; j++) files.push([`${dir}/x${j}`, `${dir} x${j}\n`]);
      files.push([`${dir}/sub/y0`, `${dir} y0\n`], [`${dir}/sub/deep/z`, `${dir} z\n`]);
    }
  }
  for (const [p, data] of files) {
    await mkdir(join(lowerNs, p, '..'), { recursive: true });
    await writeFile(join(lowerNs, p), data);
  }
  initialNs = modelOf(await snapshot(lowerNs), NS_ROOTS);
}, 600_000);

afterAll(async () => {
  if (table.length) console.log(`crash probes (run seed ${RUN_SEED}):\n${table.join('\n')}`);
  expect(await unmountAll()).toEqual([]);
  // the lowers hold a 256 MiB (1 GiB) file and 20,000 names: not kept until the run's end
  if (t) await rm(t, { recursive: true, force: true });
});

beforeEach(() => { left = new Leftovers(); });
afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

/** Every third iteration once the copy-up returned (the append in flight or done); else mostly mid-copy, sometimes at the open. */
function copyUpPoint(rng: Prng, i: number): CopyUpPoint {
  if (i % 3 === 2) return { at: 'done' };
  if (rng.int(6) === 0) return { at: 'open' };
  return { at: 'mid', fraction: rng.int(1000) / 1000 };
}

/** Mount through the CLI as a daemon; its pid. */
async function mountDaemon(d: CrashDirs): Promise<number> {
  return (await daemonMount(left, ['-o', mountOptions(d)], d.mnt)).pid;
}

async function iteration(probe: string): Promise<CrashDirs> {
  return freshIteration(join(t, probe), probe === 'copyup' || probe === 'client' ? lowerBig : lowerNs, left);
}

describe('kill -9 of the daemon', () => {
  it(`during ${COPYUP_SIZE / MiB} MiB copy-ups (${RUNS.copyUp} kills): the upper holds nothing or the whole file`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const seen: string[] = [];
    for (const [i, seed] of seeds(1, RUNS.copyUp).entries()) {
      const rng = new Prng(seed);
      const point = copyUpPoint(rng, i);
      const what = `copy-up, kill at ${describePoint(point)}, ${replay(seed)}`;
      const d = await iteration('copyup');
      const pid = await mountDaemon(d);
      const c = startClient(left, ['copyup', d.log, join(d.mnt, 'big')]);
      const where = await waitCopyUpPoint(d, COPYUP_SIZE, point, c);
      process.kill(pid, 'SIGKILL');
      // at 'done' the client may have finished its append before the kill landed
      const code = await clientGone(c, what);
      if (point.at !== 'done') expect(code, `${what}: the client ended before the kill: ${c.stderr()}`).not.toBe(0);
      const rec = await recoverAndCompare(d, left, pid, what);
      const state = await checkCopyUp(d, 'big', COPYUP_SIZE, what);
      seen.push(`${state}${rec.strays ? ' (stray copy in work/)' : ''}`);
      console.log(`${what}: ${where}; upper: ${state}; ${rec.strays} stray entries in work/work before the new mount`);
    }
    table.push(`kill -9 daemon during ${COPYUP_SIZE / MiB} MiB copy-up | ${RUNS.copyUp} | ${RUNS.copyUp}/${RUNS.copyUp} clean (${tally(seen)})`);
  }, 900_000);

  for (const [kind, probe, runs, maxK] of [['files', 2, RUNS.ops, 150], ['dirs', 4, RUNS.dirs, 60]] as const) {
    const title = kind === 'files'
      ? `during create/rename/unlink loops (${runs} kills): every acknowledged operation is there`
      : `during renames of directories with lower content (${runs} kills): every acknowledged rename is there, the kernel follows the redirects`;
    it(title, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const seen: string[] = [];
      let acked = 0;
      for (const seed of seeds(probe, runs)) {
        const rng = new Prng(seed);
        const k = 1 + rng.int(maxK);
        const what = `${kind} op loop, kill after ${k} acknowledged ops, ${replay(seed)}`;
        const d = await iteration(kind);
        const pid = await mountDaemon(d);
        const c = startClient(left, ['ops', d.log, d.mnt, String(seed), kind, '100000']);
        await waitAcked(d.log, k, c);
        await sleep(rng.int(4));
        process.kill(pid, 'SIGKILL');
        expect(await clientGone(c, what), `${what}: the client ended before the kill: ${c.stderr()}`).not.toBe(0);
        const rec = await recoverAndCompare(d, left, pid, what);
        const log = await readOpLog(d.log);
        const state = checkOpLog(initialNs, log, modelOf(rec.tree, NS_ROOTS), what);
        acked += log.acked.length;
        seen.push(log.inflight ? state.replace('in-flight op', `in-flight ${log.inflight.op}`) : state);
        console.log(`${what}: ${log.acked.length} acknowledged, ${seen.at(-1)}`);
      }
      table.push(`kill -9 daemon during ${kind === 'files' ? 'create/rename/unlink loop' : 'directory renames (lower content)'} | ${runs} | ${runs}/${runs}: all ${acked} acknowledged ops present (${tally(seen)})`);
    }, 600_000);
  }

  it(`during large writes (${RUNS.writes} kills): every write that returned is there, only the one in flight may be partial`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const seen: string[] = [];
    for (const seed of seeds(3, RUNS.writes)) {
      const rng = new Prng(seed);
      const k = 1 + rng.int(WRITE_COUNT);
      const what = `writes of ${WRITE_CHUNK / MiB} MiB, kill after ${k - 1} returned, ${replay(seed)}`;
      const d = await iteration('writes');
      const pid = await mountDaemon(d);
      const file = join('f', 'written');
      const c = startClient(left, ['write', d.log, join(d.mnt, file), String(seed), String(WRITE_CHUNK), String(WRITE_COUNT)]);
      await waitAcked(d.log, k, c);
      await sleep(rng.int(3));
      process.kill(pid, 'SIGKILL');
      expect(await clientGone(c, what), `${what}: the client ended before the kill: ${c.stderr()}`).not.toBe(0);
      const rec = await recoverAndCompare(d, left, pid, what);
      const log = await readOpLog(d.log);
      const returned = log.acked.filter((o) => o.op === 'write').length * WRITE_CHUNK;
      const inflight = log.inflight?.op === 'write' ? WRITE_CHUNK : 0;
      const st = await stat(join(d.upper, file)).catch(() => undefined);
      expect(st, `${what}: the create returned but the file is not in the upper`).toBeDefined();
      expect(st!.size, `${what}: size against the ${returned} bytes whose writes returned`).toBeGreaterThanOrEqual(returned);
      expect(st!.size, `${what}: size against what was written or in flight`).toBeLessThanOrEqual(returned + inflight);
      expect(await verifyWritePattern(join(d.upper, file), seed), `${what}: content`).toBe('ok');
      expect(rec.tree.get(file)?.size).toBe(st!.size);
      const partial = st!.size - returned;
      seen.push(partial === 0 ? 'in-flight write absent' : partial === inflight ? 'in-flight write done' : 'in-flight write partial');
      console.log(`${what}: ${returned} bytes returned, ${st!.size} in the upper`);
    }
    table.push(`kill -9 daemon during large writes (${WRITE_CHUNK / MiB} MiB × up to ${WRITE_COUNT}) | ${RUNS.writes} | ${RUNS.writes}/${RUNS.writes}: every returned write present (${tally(seen)})`);
  }, 600_000);
});

describe('kill -9 of the daemon during a rename over a directory whose lower entries were all deleted', () => {
  it(`(${RUNS.over} kills while the target's ${OVER_ENTRIES} whiteouts go): the deleted entries stay deleted`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const lowerT = join(t, 'lower-over');
    await mkdir(join(lowerT, 'T'), { recursive: true });
    await mustBash(`cd ${shq(join(lowerT, 'T'))} && seq -f 'e%g' 1 ${OVER_ENTRIES} | xargs touch`, 120_000);
    const seen: string[] = [];
    for (const seed of seeds(8, RUNS.over)) {
      const rng = new Prng(seed);
      const fraction = (1 + rng.int(8)) / 10;
      const what = `rename S over the emptied T, kill with ${fraction * 100}% of its markers left, ${replay(seed)}`;
      const d = await freshIteration(join(t, 'over'), lowerT, left);
      // Kernel overlayfs deletes T's entries (a whiteout each) and makes S: the state a user leaves.
      const k = await mount('kernel', { lowers: [lowerT], upper: d.upper, work: d.kwork }, d.kmnt);
      try {
        await mustBash(`find ${shq(join(d.kmnt, 'T'))} -mindepth 1 -delete && mkdir ${shq(join(d.kmnt, 'S'))} && echo moved > ${shq(join(d.kmnt, 'S', 'x'))}`, 120_000);
      } finally {
        await k.unmount();
      }
      const pid = await mountDaemon(d);
      const initial = modelOf(await snapshot(d.mnt), ['']);
      expect([...initial.keys()].sort()).toEqual(['S', 'S/x', 'T']);
      const c = startClient(left, ['rename', d.log, d.mnt, 'S', 'T']);
      const where = await waitMarkersCleared(d, fraction * OVER_ENTRIES, c);
      process.kill(pid, 'SIGKILL');
      await clientGone(c, what);
      const rec = await recoverAndCompare(d, left, pid, what);
      const state = checkOpLog(initial, await readOpLog(d.log), modelOf(rec.tree, ['']), what);
      seen.push(state.replace('in-flight op', 'rename'));
      console.log(`${what}: ${where}; ${state}`);
    }
    table.push(`kill -9 daemon during rename over a directory emptied of ${OVER_ENTRIES} lower entries | ${RUNS.over} | ${RUNS.over}/${RUNS.over}: no deleted entry back (${tally(seen)})`);
  }, 600_000);
});

/**
 * Resolves once at most `remaining` whiteouts remain of those under upper/T and in
 * directories of workdir/work (where the rename may clear them), or the client exited.
 */
async function waitMarkersCleared(d: CrashDirs, remaining: number, c: Client): Promise<string> {
  let gone = false;
  void c.exited.then(() => { gone = true; });
  const count = async (dir: string): Promise<number> => (await readdir(dir).catch(() => [] as string[])).length;
  let seen = '';
  const reached = async (): Promise<boolean> => {
    if (gone) { seen = 'the rename returned first'; return true; }
    let n = await count(join(d.upper, 'T'));
    for (const w of await readdir(join(d.work, 'work')).catch(() => [] as string[])) n += await count(join(d.work, 'work', w));
    if (n > remaining) return false;
    seen = `${n} markers left`;
    return true;
  };
  if (!(await waitFor(reached, 120_000, 1))) throw new Error('the rename did not start clearing the markers in 120 s');
  return seen;
}

describe('kill -9 of the client', () => {
  it(`during ${COPYUP_SIZE / MiB} MiB copy-ups (${RUNS.client} kills): the daemon serves on, finishes or never starts the copy, and leaks no handle`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const seen: string[] = [];
    for (const [i, seed] of seeds(5, RUNS.client).entries()) {
      const rng = new Prng(seed);
      const point = copyUpPoint(rng, i);
      const what = `copy-up, client killed at ${describePoint(point)}, ${replay(seed)}`;
      const d = await iteration('client');
      const pid = await mountDaemon(d);
      const c = startClient(left, ['copyup', d.log, join(d.mnt, 'big')]);
      await waitCopyUpPoint(d, COPYUP_SIZE, point, c);
      // at 'done' the client may have finished before the kill landed: then it is a run without a kill
      const killed = await c.signal('SIGKILL');
      await clientGone(c, what);
      expect(await pidAlive(pid), `${what}: the daemon died with its client`).toBe(true);
      // The copy-up the client asked for runs to its end in the daemon: wait until nothing is pending.
      const stats = await settledStats(d.mnt, what);
      expect(stats.opened, `${what}: files opened against released (a leaked handle)`).toBe(stats.released);
      const rec = await recoverAndCompare(d, left, pid, what);
      const state = await checkCopyUp(d, 'big', COPYUP_SIZE, what);
      expect(rec.tree.get('big')?.size).toBe(state === 'complete+append' ? COPYUP_SIZE + 1 : COPYUP_SIZE);
      seen.push(killed ? state : `${state}, client finished before the kill`);
      console.log(`${what}: upper ${seen.at(-1)}; ${stats.opened} opened, ${stats.released} released`);
    }
    table.push(`kill -9 client during ${COPYUP_SIZE / MiB} MiB copy-up | ${RUNS.client} | ${RUNS.client}/${RUNS.client}: daemon alive, no leaked handle, upper ${tally(seen)}`);
  }, 900_000);
});

/** Poll `stratafs stats` until no request is pending; opens (open+create) and releases then. */
async function settledStats(mnt: string, what: string): Promise<{ opened: number; released: number }> {
  const end = Date.now() + 120_000;
  for (;;) {
    const r = await cli(['stats', '--json', mnt]);
    expect(r.code, `${what}: stratafs stats: ${r.stderr}`).toBe(0);
    const s = JSON.parse(r.stdout) as { pending?: number; ops: Record<string, { count: number }> };
    const n = (op: string): number => s.ops[op]?.count ?? 0;
    if (s.pending === 0) return { opened: n('open') + n('create'), released: n('release') };
    if (Date.now() > end) throw new Error(`${what}: requests still pending after 120 s`);
    await sleep(50);
  }
}

describe('a SIGSTOPped daemon', () => {
  it(`recovered by stratafs umount --force (${RUNS.stop} stops, copy-ups and op loops): the client's request fails instead of hanging`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const seen: string[] = [];
    for (const [i, seed] of seeds(6, RUNS.stop).entries()) {
      const rng = new Prng(seed);
      const copyUp = i % 2 === 0;
      const point = copyUpPoint(rng, (i >> 1) + 2);
      const k = 1 + rng.int(150);
      const what = `${copyUp ? `copy-up, stop at ${describePoint(point)}` : `files op loop, stop after ${k} acknowledged`}, ${replay(seed)}`;
      const d = await iteration(copyUp ? 'client' : 'files');
      const pid = await mountDaemon(d);
      let c: Client;
      if (copyUp) {
        c = startClient(left, ['copyup', d.log, join(d.mnt, 'big')]);
        await waitCopyUpPoint(d, COPYUP_SIZE, point, c);
      } else {
        c = startClient(left, ['ops', d.log, d.mnt, String(seed), 'files', '100000']);
        await waitAcked(d.log, k, c);
      }
      process.kill(pid, 'SIGSTOP');
      let rec;
      try {
        rec = await recoverAndCompare(d, left, pid, what, async () => {
          const code = await clientGone(c, what);
          if (!copyUp || point.at !== 'done') expect(code, `${what}: the client ended before the stop: ${c.stderr()}`).not.toBe(0);
        });
      } finally {
        try { process.kill(pid, 'SIGCONT'); } catch { /* ended by umount --force */ }
      }
      if (copyUp) seen.push(`copy-up: upper ${await checkCopyUp(d, 'big', COPYUP_SIZE, what)}`);
      else {
        const log = await readOpLog(d.log);
        const state = checkOpLog(initialNs, log, modelOf(rec.tree, NS_ROOTS), what);
        seen.push(`op loop: ${log.inflight ? state.replace('in-flight op', `in-flight ${log.inflight.op}`) : state}`);
      }
      console.log(`${what}: ${seen.at(-1)}`);
    }
    table.push(`SIGSTOP daemon + stratafs umount --force (copy-ups, op loops) | ${RUNS.stop} | ${RUNS.stop}/${RUNS.stop} recovered, client failed instead of hanging (${tally(seen)})`);
  }, 900_000);
});

/**
 * Not part of CI: the op-log probe against fuse-overlayfs 1.10, for the issue's table
 * (STRATAFS_CRASH_FUSE_OVERLAYFS=1). It measures and prints what fuse-overlayfs lost;
 * losses there are that program's, so they are counted, not asserted. The tree is read
 * by kernel overlayfs (the upper as it lies on disk) and by a new fuse-overlayfs mount.
 */
describe.runIf(process.env.STRATAFS_CRASH_FUSE_OVERLAYFS === '1')('measurement: fuse-overlayfs under the same probe', () => {
  const runs = Number(process.env.STRATAFS_CRASH_RUNS ?? 6);
  it(`kill -9 of fuse-overlayfs during create/rename/unlink loops (${runs} kills)`, async () => {
    let lostRuns = 0;
    let lostOps = 0;
    for (const seed of seeds(7, runs)) {
      const rng = new Prng(seed);
      const k = 1 + rng.int(150);
      const what = `fuse-overlayfs files op loop, kill after ${k} acknowledged ops, ${replay(seed)}`;
      const d = await iteration('fov');
      const layers = { lowers: [d.lower], upper: d.upper, work: d.work };
      const h = await mount('fuse-overlayfs', layers, d.mnt);
      h.pids.forEach((p) => left.pid(p));
      const c = startClient(left, ['ops', d.log, d.mnt, String(seed), 'files', '100000']);
      await waitAcked(d.log, k, c);
      await sleep(rng.int(4));
      h.pids.forEach((p) => process.kill(p, 'SIGKILL'));
      expect(await clientGone(c, what)).not.toBe(0);
      await h.unmount();
      const log = await readOpLog(d.log);
      const kh = await mount('kernel', { lowers: [d.lower], upper: d.upper, work: d.kwork }, d.kmnt);
      let kernelView: Model;
      try { kernelView = modelOf(await snapshot(d.kmnt), NS_ROOTS); } finally { await kh.unmount(); }
      const h2 = await mount('fuse-overlayfs', layers, d.mnt);
      let fovView: Model;
      try { fovView = modelOf(await snapshot(d.mnt), NS_ROOTS); } finally { await h2.unmount(); }
      const byKernel = judgeOpLog(initialNs, log, kernelView);
      const byFov = judgeOpLog(initialNs, log, fovView);
      if (byKernel.lost.length || byFov.lost.length) lostRuns++;
      lostOps += Math.max(byKernel.lost.length, byFov.lost.length);
      console.log(`${what}: ${log.acked.length} acknowledged; kernel view: ${byKernel.state}, ${byKernel.lost.length} paths differ${byKernel.lost.length ? ` (${byKernel.lost.slice(0, 4).join('; ')})` : ''}; new fuse-overlayfs mount: ${byFov.lost.length} paths differ`);
    }
    table.push(`kill -9 fuse-overlayfs during create/rename/unlink loop | ${runs} | acknowledged operations lost in ${lostRuns}/${runs} (${lostOps} paths)`);
  }, 900_000);
});
