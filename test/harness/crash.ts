/**
 * Crash probes (issue 11): a client process works on a stratafs mount made by
 * the real CLI while the test kills the daemon (SIGKILL), stops it (SIGSTOP),
 * or kills the client, at a point drawn from a seed. Then the recovery every
 * probe shares: `stratafs umount --force` frees the mountpoint, a new mount on
 * the same upper/workdir starts with workdir/work emptied, and kernel
 * overlayfs on the same lower/upper shows the tree stratafs shows. The
 * client's op log (crash-client.mjs) says what was acknowledged: that must all
 * be there; only the operation in flight may be missing or partial.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  cli, daemonMount, isMounted, layerOptions, pidAlive, runText, sleep, waitFor, type Leftovers,
} from './cli-mount.js';
import { fuseOffWords, fuseServerWords, mount, REPO_ROOT } from './mounts.js';
import { run, withTimeout } from './proc.js';
import { compareTrees, showPath, snapshot, type Tree, type TreeDiff } from './tree.js';

export const CRASH_CLIENT = join(REPO_ROOT, 'test', 'harness', 'crash-client.mjs');

/** One probe's directories: the lower is shared by the iterations, the rest is fresh for each. */
export interface CrashDirs {
  lower: string;
  upper: string;
  work: string;
  mnt: string;
  /** kernel overlayfs's own workdir (same filesystem as the upper) and mountpoint */
  kwork: string;
  kmnt: string;
  /** the client's op log */
  log: string;
}

/** Fresh upper, workdirs and log for an iteration (the previous iteration's removed). */
export async function freshIteration(t: string, lower: string, left: Leftovers): Promise<CrashDirs> {
  const d: CrashDirs = {
    lower, upper: join(t, 'u'), work: join(t, 'w'), mnt: left.mount(join(t, 'mnt')), kwork: join(t, 'kw'), kmnt: left.mount(join(t, 'kmnt')), log: join(t, 'oplog'),
  };
  for (const p of [d.upper, d.work, d.kwork, d.log]) await rm(p, { recursive: true, force: true });
  for (const p of [d.upper, d.work, d.mnt, d.kwork, d.kmnt]) await mkdir(p, { recursive: true });
  return d;
}

/**
 * The daemon's -o: its layers, the minor STRATAFS_TEST_FUSE_MINOR caps, and no writeback
 * cache -- every write that returned must be in the upper after a kill; what writeback loses
 * is shown by fuse-writeback.test.ts (divergences.ts: writeback-crash).
 */
export const mountOptions = (d: CrashDirs): string =>
  [layerOptions({ lowers: [d.lower], upper: d.upper, work: d.work }), ...fuseServerWords([]), ...fuseOffWords(['writeback_cache'])].join(',');

// ---------------------------------------------------------------- the client and its log

export interface Client {
  pid: number;
  /** exit code, or the signal's name */
  exited: Promise<number | string>;
  stderr(): string;
  /** signal it while it runs; false when it had already exited */
  signal(sig: NodeJS.Signals): Promise<boolean>;
}

/** `node crash-client.mjs ARGS` (see there), registered in left. */
export function startClient(left: Leftovers, args: string[]): Client {
  const child = spawn(process.execPath, [CRASH_CLIENT, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  left.child(child);
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => { err += s; });
  let done = false;
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => { done = true; resolve(code ?? sig ?? -1); }));
  // Through the ChildProcess: it knows whether the pid is still ours (not reaped and reused).
  const signal = async (sig: NodeJS.Signals): Promise<boolean> => !done && child.kill(sig);
  return { pid: child.pid!, exited, stderr: () => err, signal };
}

export type LoggedOp =
  | { seq: number; op: 'open' | 'append' }
  | { seq: number; op: 'create'; path: string; data: string }
  | { seq: number; op: 'rename'; from: string; to: string }
  | { seq: number; op: 'unlink'; path: string }
  | { seq: number; op: 'write'; offset: number; length: number };

export interface OpLog {
  /** operations that returned, in order */
  acked: LoggedOp[];
  /** the one begun and not acknowledged */
  inflight?: LoggedOp;
}

export async function readOpLog(path: string): Promise<OpLog> {
  const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return ''; throw e; });
  const begun = new Map<number, LoggedOp>();
  const acked: LoggedOp[] = [];
  // a line cut by a kill of the client is not an entry yet
  for (const line of text.split('\n').filter((l) => l.endsWith('}') || /^A \d+$/.test(l))) {
    if (line.startsWith('B ')) {
      const op = JSON.parse(line.slice(2)) as LoggedOp;
      begun.set(op.seq, op);
    } else {
      const seq = Number(line.slice(2));
      acked.push(begun.get(seq)!);
      begun.delete(seq);
    }
  }
  if (begun.size > 1) throw new Error(`op log ${path}: ${begun.size} operations begun and not acknowledged`);
  const inflight = [...begun.values()][0];
  return inflight ? { acked, inflight } : { acked };
}

/** Wait until the log has at least n acknowledged operations, or the client has exited. */
export async function waitAcked(log: string, n: number, client: Client, ms = 60_000): Promise<void> {
  let gone = false;
  void client.exited.then(() => { gone = true; });
  const ok = await waitFor(async () => gone || (await readOpLog(log)).acked.length >= n, ms, 2);
  if (!ok) throw new Error(`the client acknowledged fewer than ${n} operations in ${ms} ms`);
}

/** The log's last lines, for failure messages. */
export async function logTail(log: string, lines = 6): Promise<string> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------- kill points

/**
 * Where a copy-up is when the victim is hit: 'open' as soon as the client
 * starts its open, 'mid' once the copy in workdir/work holds `fraction` of the
 * file, 'done' once the copy-up returned (the append in flight or done).
 */
export type CopyUpPoint = { at: 'open' } | { at: 'mid'; fraction: number } | { at: 'done' };

export function describePoint(p: CopyUpPoint): string {
  return p.at === 'mid' ? `mid ${(p.fraction * 100).toFixed(0)}%` : p.at;
}

/** Resolves when the copy-up of `size` bytes has reached the point (or the client exited). */
export async function waitCopyUpPoint(d: CrashDirs, size: number, p: CopyUpPoint, client: Client): Promise<string> {
  let gone = false;
  void client.exited.then(() => { gone = true; });
  const work = join(d.work, 'work');
  let seen = 'not reached';
  const reached = async (): Promise<boolean> => {
    if (gone) { seen = 'client exited first'; return true; }
    const log = await readOpLog(d.log);
    if (p.at === 'open') { if (log.inflight || log.acked.length) { seen = 'open begun'; return true; } return false; }
    if (p.at === 'done') { if (log.acked.some((o) => o.op === 'open')) { seen = 'copy-up returned'; return true; } return false; }
    for (const n of await readdir(work).catch(() => [] as string[])) {
      const st = await stat(join(work, n)).catch(() => undefined);
      if (st?.isFile() && st.size >= p.fraction * size) { seen = `work copy at ${st.size} bytes`; return true; }
    }
    if (log.acked.some((o) => o.op === 'open')) { seen = 'copy-up returned before the fraction was seen'; return true; }
    return false;
  };
  if (!(await waitFor(reached, 120_000, 1))) throw new Error(`copy-up point ${describePoint(p)} not reached in 120 s`);
  return seen;
}

// ---------------------------------------------------------------- recovery, shared by every probe

export interface Recovered {
  /** stratafs's merged tree after the new mount */
  tree: Tree;
  /** entries the crash left in workdir/work (the new mount empties it) */
  strays: number;
}

/**
 * After the victim was hit: `stratafs umount --force`, the mountpoint usable,
 * the daemon gone, afterForce (e.g. the client's end), a new mount on the same upper/workdir, workdir/work empty,
 * stratafs's tree, then kernel overlayfs on the same lower/upper (a workdir
 * of its own) showing the same tree: names, types, modes, sizes, content
 * hashes, links, xattrs, mtimes.
 */
export async function recoverAndCompare(
  d: CrashDirs, left: Leftovers, daemonPid: number, what: string, afterForce?: () => Promise<void>,
): Promise<Recovered> {
  const strays = (await readdir(join(d.work, 'work')).catch(() => [] as string[])).length;
  const f = await cli(['umount', '--force', d.mnt], { timeoutMs: 30_000 });
  expect(f.code, `${what}: umount --force: ${f.stderr}`).toBe(0);
  expect(await isMounted(d.mnt), `${what}: still mounted after umount --force`).toBe(false);
  expect(await waitFor(async () => !(await pidAlive(daemonPid)), 10_000), `${what}: daemon ${daemonPid} still alive after umount --force`).toBe(true);
  // usable: a plain directory again, listed by another process without hanging
  const ls = await runText('ls', ['-a', d.mnt], { timeoutMs: 10_000 });
  expect(ls.code, `${what}: ls of the recovered mountpoint: ${ls.stderr}`).toBe(0);
  await afterForce?.();

  const again = await daemonMount(left, ['-o', mountOptions(d)], d.mnt);
  let tree: Tree;
  try {
    expect(await readdir(join(d.work, 'work')), `${what}: workdir/work after the new mount`).toEqual([]);
    tree = await snapshot(d.mnt, { timeoutMs: 120_000 });
  } finally {
    const u = await cli(['umount', d.mnt], { timeoutMs: 30_000 });
    expect(u.code, `${what}: umount of the new mount: ${u.stderr}`).toBe(0);
  }
  expect(await pidAlive(again.pid)).toBe(false);

  const k = await mount('kernel', { lowers: [d.lower], upper: d.upper, work: d.kwork }, d.kmnt);
  let ktree: Tree;
  try {
    ktree = await snapshot(d.kmnt, { timeoutMs: 120_000 });
  } finally {
    await k.unmount();
  }
  // Both read the same upper: every mtime must agree, not only those set on purpose.
  const diffs = compareTrees(tree, ktree, { mtimeCutoffNs: BigInt(Date.now() + 86_400_000) * 1_000_000n });
  expect(diffs.map(showDiff), `${what}: stratafs's tree (a) against kernel overlayfs's (b) on the same upper`).toEqual([]);
  return { tree, strays };
}

const showDiff = (x: TreeDiff): string => `${showPath(x.path)} ${x.field}: ${x.a} | ${x.b}`;

// ---------------------------------------------------------------- invariants

/**
 * The copy-up probe's file in the upper: absent, or the whole lower content
 * (plus the appended "x" once it was written). What the log acknowledged must
 * be there: the open (copy-up done) and the append.
 */
export async function checkCopyUp(d: CrashDirs, name: string, size: number, what: string): Promise<'absent' | 'complete' | 'complete+append'> {
  const log = await readOpLog(d.log);
  const opened = log.acked.some((o) => o.op === 'open');
  const appended = log.acked.some((o) => o.op === 'append');
  const up = join(d.upper, name);
  const st = await stat(up).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
  if (!st) {
    expect(opened, `${what}: the open returned (copy-up acknowledged) but ${name} is not in the upper`).toBe(false);
    return 'absent';
  }
  expect([size, size + 1], `${what}: size of ${name} in the upper`).toContain(st.size);
  const c = await run('cmp', ['-n', String(size), join(d.lower, name), up], { timeoutMs: 120_000 });
  expect(c.code, `${what}: ${name} in the upper differs from the lower: ${c.stdout.toString()}${c.stderr.toString()}`).toBe(0);
  if (appended) expect(st.size, `${what}: the append returned but is not in the upper`).toBe(size + 1);
  if (st.size === size + 1) {
    const r = await run('tail', ['-c', '1', up]);
    expect(r.stdout.toString('latin1')).toBe('x');
    return 'complete+append';
  }
  return 'complete';
}

/** A model of a name space: path -> 'dir' or `size hash` of a file. */
export type Model = Map<string, string>;

export const fileKey = (data: Buffer | string): string => {
  const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  return `${b.length} ${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
};

/** The part of a tree below the roots ('' for all of it), as a model. */
export function modelOf(tree: Tree, roots: string[]): Model {
  const m: Model = new Map();
  for (const [p, n] of tree) {
    if (p === '' || !roots.some((r) => r === '' || p.startsWith(r + '/'))) continue;
    m.set(p, n.type === 'dir' ? 'dir' : n.type === 'file' ? `${n.size} ${n.hash}` : n.type);
  }
  return m;
}

export function applyOp(m: Model, op: LoggedOp): Model {
  const out = new Map(m);
  switch (op.op) {
    case 'create': out.set(op.path, fileKey(op.data)); break;
    case 'unlink': out.delete(op.path); break;
    case 'rename': {
      out.delete(op.to);
      for (const [p, v] of m) {
        if (p === op.from || p.startsWith(op.from + '/')) {
          out.delete(p);
          out.set(op.to + p.slice(op.from.length), v);
        }
      }
      break;
    }
    default: break;
  }
  return out;
}

function modelDiff(want: Model, got: Model): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...want.keys(), ...got.keys()])].sort()) {
    if (want.get(p) !== got.get(p)) out.push(`${p}: want ${want.get(p) ?? 'absent'}, got ${got.get(p) ?? 'absent'}`);
  }
  return out;
}

export type OpLogState = 'no op in flight' | 'in-flight op absent' | 'in-flight op done' | 'in-flight op partial';

/**
 * Whether the tree holds every acknowledged operation of the log applied to
 * the initial model; the one in flight may have happened or not (a create may
 * have left a prefix of its data). `lost`: the paths that differ from the
 * acknowledged state when neither explains the tree.
 */
export function judgeOpLog(initial: Model, log: OpLog, got: Model): { state: OpLogState; lost: string[] } {
  let want = initial;
  for (const op of log.acked) want = applyOp(want, op);
  const before = modelDiff(want, got);
  if (before.length === 0) return { state: log.inflight ? 'in-flight op absent' : 'no op in flight', lost: [] };
  const fl = log.inflight;
  if (fl) {
    if (modelDiff(applyOp(want, fl), got).length === 0) return { state: 'in-flight op done', lost: [] };
    if (fl.op === 'create') {
      const v = got.get(fl.path);
      const rest = new Map(got);
      rest.delete(fl.path);
      const size = v === undefined ? -1 : Number(v.split(' ')[0]);
      if (size >= 0 && size <= fl.data.length && v === fileKey(fl.data.slice(0, size)) && modelDiff(want, rest).length === 0) {
        return { state: 'in-flight op partial', lost: [] };
      }
    }
  }
  return { state: fl ? 'in-flight op absent' : 'no op in flight', lost: before };
}

/** judgeOpLog, asserting that nothing acknowledged was lost. */
export function checkOpLog(initial: Model, log: OpLog, got: Model, what: string): OpLogState {
  const j = judgeOpLog(initial, log, got);
  expect(j.lost, `${what}: ${log.acked.length} acknowledged operations against the tree${log.inflight ? ` (in flight: ${JSON.stringify(log.inflight)})` : ''}`).toEqual([]);
  return j.state;
}

/** Run `crash-client.mjs verify-write FILE SEED`: every byte of FILE is the probe's pattern. */
export async function verifyWritePattern(file: string, seed: number): Promise<string> {
  const r = await run(process.execPath, [CRASH_CLIENT, 'verify-write', file, String(seed)], { timeoutMs: 300_000 });
  return r.code === 0 ? 'ok' : `${r.stdout.toString()}${r.stderr.toString()}`.trim();
}

/** The client has exited (not hung in the dead mount); its exit code or signal. */
export async function clientGone(c: Client, what: string): Promise<number | string> {
  return withTimeout(c.exited, 30_000, `${what}: the client's exit`);
}

export { sleep };
