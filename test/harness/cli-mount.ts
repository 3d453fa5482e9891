/**
 * Helpers for the CLI tests (test/integration/cli-*.test.ts), on top of the
 * shared harness (mounts.ts, proc.ts): run the real CLI in a child process,
 * start it in the foreground, find the daemon serving a mount, snapshot
 * directories to prove that nothing changed, and clean up whatever a test
 * left (mounts by path, processes by the PIDs it started), also on failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { awaitExit, forceCleanup, killPids, mountsAt, pidsWithArg, STRATAFS_BIN, STRATAFS_CLI, tempDir } from './mounts.js';
import { run, type RunResult } from './proc.js';
import type { DaemonStats } from '../../src/cli/stats.js';

export { STRATAFS_BIN, STRATAFS_CLI };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const text = (r: RunResult): CliResult => ({
  code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), timedOut: r.timedOut,
});

/**
 * Run `stratafs ARGS` to completion as users do: bin/stratafs, the C launcher
 * (a daemonizing mount returns once ready). The launcher runs `node` from PATH:
 * the tests' node comes first.
 */
export async function cli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const env = { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, ...opts.env };
  return text(await run(STRATAFS_BIN, args, { timeoutMs: opts.timeoutMs ?? 30_000, env }));
}

/** the stats of a mount on stratafs's own server: with what INIT settled and the kernel's nodes */
export type ServerStats = DaemonStats & { fuse: NonNullable<DaemonStats['fuse']>; nodes: number };

/** `stratafs stats --json MNT`: the daemon's counters and memory, as the CLI prints them. */
export async function daemonStats(mnt: string): Promise<DaemonStats> {
  const r = await cli(['stats', '--json', mnt], { timeoutMs: 10_000 });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as DaemonStats;
}

/** daemonStats of a mount on the own server, with the negotiated FUSE features and node count it must have. */
export async function serverStats(mnt: string): Promise<ServerStats> {
  const s = await daemonStats(mnt);
  if (s.fuse === undefined || s.nodes === undefined) throw new Error(`${mnt}: not served by stratafs's own FUSE server (no "fuse" in its stats)`);
  return s as ServerStats;
}

/** how many requests of one op (adapter name: 'read', 'getxattr', ...) the daemon has answered */
export const opCount = (s: DaemonStats, op: string): number => s.ops[op]?.count ?? 0;

/** The Node entry, `node dist/cli/main.js ARGS` (what bin/stratafs falls back to; cli-launcher compares the two). */
export async function cliNode(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return text(await run(process.execPath, [STRATAFS_CLI, ...args], { timeoutMs: opts.timeoutMs ?? 30_000, env: opts.env }));
}

export async function runText(file: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return text(await run(file, args, opts));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until cond() holds or ms pass; returns whether it held. */
export async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, stepMs = 20): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(stepMs);
  }
}

export async function isMounted(mnt: string): Promise<boolean> {
  return (await mountsAt(mnt)).length > 0;
}

/** A process that has exited counts as gone even while it waits (as a zombie) to be reaped. */
export async function pidAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => undefined);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...] */
export async function procStat(pid: number): Promise<string[]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** PIDs of live processes with mnt as one of their arguments (a daemon names its mountpoint), the test process excluded. */
export async function daemonPids(mnt: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await pidsWithArg(mnt)) {
    const args = (await readFile(`/proc/${p}/cmdline`, 'latin1').catch(() => '')).split('\0');
    if (args.includes(mnt) && (await pidAlive(p))) out.push(p);
  }
  return out;
}

/**
 * Everything a test made that must not outlive it: mountpoints and PIDs.
 * cleanup() removes every mount at the registered paths (umount, else fusectl
 * abort + lazy umount) and kills registered PIDs and any process naming a
 * registered mountpoint. Call it in afterEach.
 */
export class Leftovers {
  private readonly mnts = new Set<string>();
  private readonly pids = new Set<number>();
  private readonly children = new Set<ChildProcess>();
  mount(mnt: string): string { this.mnts.add(mnt); return mnt; }
  pid(pid: number): void { this.pids.add(pid); }
  child(c: ChildProcess): void { this.children.add(c); if (c.pid !== undefined) this.pids.add(c.pid); }
  async cleanup(): Promise<string[]> {
    const errors: string[] = [];
    // deepest first: a mount inside another goes first
    // The registered PIDs are waited for once every mount is gone: each serves one of them, and
    // one still serving the next mount would not exit while an earlier mount is cleaned.
    for (const mnt of [...this.mnts].sort((a, b) => b.length - a.length)) {
      try {
        await forceCleanup(mnt);
      } catch (e) {
        errors.push(String(e));
      }
    }
    await killPids(await awaitExit([...this.pids]));
    this.mnts.clear();
    this.pids.clear();
    this.children.clear();
    return errors;
  }
}

/** The scratch of one CLI test: see cliScratch. */
export interface CliScratch {
  /** the test's directory */
  t: string;
  /** t/mnt, registered in left */
  mnt: string;
  /** what the test must clean up: `expect(await left.cleanup()).toEqual([])` in afterEach */
  left: Leftovers;
  /** t/run, the CLI's runtime directory (STRATAFS_RUNTIME_DIR), when asked for */
  run: string;
}

/**
 * A fresh scratch directory for one CLI test (call it in beforeEach) with the
 * subdirectories `dirs` and `mnt`, the mountpoint; with `runtimeDir`, also
 * `run`, where STRATAFS_RUNTIME_DIR then points (tests that look at the
 * runtime files; the others use the run's).
 */
export async function cliScratch(prefix: string, dirs: string[], opts: { runtimeDir?: boolean } = {}): Promise<CliScratch> {
  const t = await tempDir(prefix);
  for (const d of [...dirs, 'mnt', ...(opts.runtimeDir ? ['run'] : [])]) await mkdir(join(t, d), { recursive: true });
  if (opts.runtimeDir) process.env.STRATAFS_RUNTIME_DIR = join(t, 'run');
  const left = new Leftovers();
  return { t, mnt: left.mount(join(t, 'mnt')), left, run: join(t, 'run') };
}

/**
 * `stratafs ARGS MNT` as a daemon that must succeed: its PID is registered in
 * `left`, and exactly one daemon serves the mount.
 */
export async function daemonMount(left: Leftovers, args: string[], mnt: string): Promise<{ pid: number; stderr: string }> {
  const r = await cli([...args, mnt]);
  const pids = await daemonPids(mnt);
  pids.forEach((pid) => left.pid(pid));
  expect(r.code, r.stderr).toBe(0);
  expect(pids).toHaveLength(1);
  return { pid: pids[0]!, stderr: r.stderr };
}

/** A CLI started in the foreground (-f): the test process is its parent. */
export interface Foreground {
  child: ChildProcess;
  stderr(): string;
  /** resolves with the exit code (or signal name) */
  exited: Promise<number | string>;
}

/** `node dist/cli/main.js -f ARGS` (the launcher would exec the same: -f is not its fast path). */
export function startForeground(args: string[], left: Leftovers): Foreground {
  const child = spawn(process.execPath, [STRATAFS_CLI, '-f', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  left.child(child);
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => { err += d; });
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  return { child, stderr: () => err, exited };
}

/** Mount options for a layer set, escaped as the -o parser wants. */
export function layerOptions(l: { lowers: string[]; upper?: string; work?: string }): string {
  const esc = (p: string): string => p.replace(/[\\,:]/g, (c) => '\\' + c);
  const parts = [`lowerdir=${l.lowers.map(esc).join(':')}`];
  if (l.upper !== undefined) parts.push(`upperdir=${esc(l.upper)}`);
  if (l.work !== undefined) parts.push(`workdir=${esc(l.work)}`);
  return parts.join(',');
}

/**
 * Every entry below root (root included) with type, mode, owner, size, mtime,
 * ctime (ns), a content hash for small files, link targets: two equal
 * snapshots mean nothing was created, removed or changed. Directories in
 * `skip` (live mounts) are listed but not entered.
 */
export async function dirSnapshot(root: string, skip: string[] = []): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (p: string, rel: string): Promise<void> => {
    const st = await lstat(p, { bigint: true });
    let extra = '';
    if (st.isFile() && st.size < 1_000_000n) extra = createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 16);
    if (st.isSymbolicLink()) extra = await readlink(p);
    out.set(rel, `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} m${st.mtimeNs} c${st.ctimeNs} ${extra}`);
    if (st.isDirectory() && !skip.includes(p)) {
      for (const name of (await readdir(p)).sort()) await walk(join(p, name), rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk(root, '');
  return out;
}
