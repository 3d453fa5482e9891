import * as fs from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as path from 'node:path';
import { run, describeFailure, findMount, findDaemonPid, fusectlAbort, sleep, type RunResult } from './proc.js';
import type { Manifest } from './dataset.js';

/** What is mounted: kernel overlayfs, fuse-overlayfs, or stratafs (with the options of its variant). */
export type ImplKind = 'kernel' | 'fuse-overlayfs' | 'stratafs';
export const IMPL_NAMES: readonly ImplKind[] = ['kernel', 'fuse-overlayfs', 'stratafs'];
/** A column of the results: one of IMPL_NAMES, or a stratafs variant's name (--stratafs-variant NAME=OPTS). */
export type ImplName = string;

/** A stratafs run with extra mount options, e.g. stratafs-kernel = fuse_server=kernel. */
export interface StratafsVariant {
  name: string;
  /** comma-separated mount words appended to the bench's own -o */
  options: string;
  /** another build's CLI script (--stratafs-build), in place of this checkout's */
  cli?: string;
}

export interface MountDirs {
  upper: string;
  work: string;
  mnt: string;
}

export interface MountHandle {
  mnt: string;
  /** The FUSE daemon; null for the kernel. */
  pid: number | null;
  /**
   * Mount latency: seconds from spawning the mount command to the first stat through the mount
   * that succeeds, polled from the moment the command exits (podman waits for that exit).
   */
  answeredSeconds: number;
  /** Seconds from spawning the mount command to its exit. */
  exitSeconds: number;
  unmount(): Promise<void>;
}

/** A name at the root of every data set's merged view (dataset.ts), stat'ed to see a mount answer. */
const PROBE = 'tree';

/**
 * Times `cmd args` as a mount: from spawn to its exit, then to the first successful stat of
 * mnt/PROBE (ENOENT until the mount is there: the mountpoint itself is an empty directory).
 */
async function timedMount(cmd: string, args: readonly string[], mnt: string): Promise<{ r: RunResult; exitSeconds: number; answeredSeconds: number }> {
  const t0 = process.hrtime.bigint();
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  const exitSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) return { r, exitSeconds, answeredSeconds: NaN };
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      await fs.promises.stat(path.join(mnt, PROBE));
      break;
    } catch (e) {
      if (Date.now() > until) throw new MountError(`${cmd} exited 0 but ${mnt}/${PROBE} did not appear within 10 s: ${String(e)}`);
      await sleep(1);
    }
  }
  return { r, exitSeconds, answeredSeconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

export interface Impl {
  name: ImplName;
  kind: ImplKind;
  fuse: boolean;
  /** null when the implementation can be run, else why not (reported, never silently skipped). */
  prepare(): Promise<string | null>;
  mount(m: Pick<Manifest, 'lowerdir'>, d: MountDirs): Promise<MountHandle>;
  /** One line saying which build this is (recorded in the results, so --compare can tell). */
  version(): Promise<string>;
  /** Implementation's own counters (stratafs `stats --json`), or null when it has none. */
  stats(mnt: string): Promise<unknown>;
}

export class MountError extends Error {}

async function waitForMount(mnt: string, fstypePrefix: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const m = findMount(mnt);
    if (m !== null && m.fstype.startsWith(fstypePrefix)) return;
    await sleep(50);
  }
  throw new MountError(`no ${fstypePrefix} mount appeared on ${mnt} within ${ms} ms`);
}

/** Unmount a FUSE mount and wait for its daemon; escalate to a fusectl abort and then to signalling that PID. */
async function unmountFuse(mnt: string, pid: number | null, first: () => Promise<boolean>): Promise<void> {
  // umount's own status is not needed: whether the mount is still there decides the next step.
  if (!(await first()) && findMount(mnt) !== null) await run('umount', [mnt], { timeoutMs: 20_000 });
  if (findMount(mnt) !== null) {
    process.stderr.write(`bench: ${mnt} did not unmount cleanly; aborting its FUSE connection\n`);
    await fusectlAbort(mnt);
  }
  if (pid === null) return;
  // fuse-overlayfs takes ~2 s to exit after its mount is gone; waiting for it inline would add that to
  // every cell, so the wait runs in the background and reapDaemons() collects it before the bench exits.
  const start = procStartTime(pid);
  if (start !== null) pendingExits.set(pid, start);
  // Forget daemons that are gone already, so the set stays small and a reused PID is never mistaken for one.
  for (const [p, st] of pendingExits) if (procStartTime(p) !== st) pendingExits.delete(p);
}

/** pid -> start time (/proc/PID/stat field 22): a PID alone could be reused by an unrelated process. */
const pendingExits = new Map<number, string>();

function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

async function waitExit(pid: number, start: string): Promise<void> {
  const same = (): boolean => procStartTime(pid) === start;
  for (let i = 0; i < 100 && same(); i++) await sleep(100);
  if (same()) {
    process.stderr.write(`bench: daemon ${pid} still running 10 s after unmount; sending SIGTERM\n`);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && same(); i++) await sleep(100);
    if (same()) process.kill(pid, 'SIGKILL');
  }
}

/** Waits for (and if need be terminates, by PID) every daemon whose mount this process removed. */
export async function reapDaemons(): Promise<void> {
  const all = [...pendingExits];
  pendingExits.clear();
  await Promise.all(all.map(([pid, start]) => waitExit(pid, start)));
}

function overlayOpts(m: Pick<Manifest, 'lowerdir'>, d: MountDirs): string {
  return `lowerdir=${m.lowerdir},upperdir=${d.upper},workdir=${d.work}`;
}

export const kernelImpl: Impl = {
  name: 'kernel',
  kind: 'kernel',
  fuse: false,
  async version() {
    return `overlayfs in Linux ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, redirect_dir=on`;
  },
  async prepare() {
    const fsList = fs.readFileSync('/proc/filesystems', 'utf8');
    if (!/\boverlay\b/.test(fsList)) {
      await run('modprobe', ['overlay'], { timeoutMs: 10_000 });
      if (!/\boverlay\b/.test(fs.readFileSync('/proc/filesystems', 'utf8'))) return 'overlay filesystem not available in this kernel';
    }
    return null;
  },
  async mount(m, d) {
    // redirect_dir=on: otherwise renaming a lower directory gives EXDEV here (module default is off).
    const { r, exitSeconds, answeredSeconds } = await timedMount('mount', ['-t', 'overlay', 'overlay', '-o', `${overlayOpts(m, d)},redirect_dir=on`, d.mnt], d.mnt);
    if (r.code !== 0) throw new MountError(`mount -t overlay: ${describeFailure(r)}`);
    return {
      mnt: d.mnt,
      pid: null,
      exitSeconds,
      answeredSeconds,
      async unmount() {
        const u = await run('umount', [d.mnt], { timeoutMs: 60_000 });
        if (u.code !== 0 && findMount(d.mnt) !== null) await run('umount', ['-l', d.mnt], { timeoutMs: 10_000 });
      },
    };
  },
  async stats() {
    return null;
  },
};

async function which(cmd: string): Promise<string | null> {
  const r = await run('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5000 });
  return r.code === 0 ? r.stdout.trim() : null;
}

export const fuseOverlayfsImpl: Impl = {
  name: 'fuse-overlayfs',
  kind: 'fuse-overlayfs',
  fuse: true,
  async version() {
    const r = await run('fuse-overlayfs', ['--version'], { timeoutMs: 5000 });
    return (r.stdout + r.stderr).split('\n').filter((l) => /version/i.test(l)).join('; ') || 'unknown version';
  },
  async prepare() {
    if ((await which('fuse-overlayfs')) !== null) return null;
    process.stderr.write('bench: fuse-overlayfs missing; trying apt-get install -y fuse-overlayfs\n');
    const r = await run('apt-get', ['install', '-y', 'fuse-overlayfs'], {
      timeoutMs: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if ((await which('fuse-overlayfs')) !== null) return null;
    return `not installed and apt-get install failed (${describeFailure(r)})`;
  },
  async mount(m, d) {
    const { r, exitSeconds, answeredSeconds } = await timedMount('fuse-overlayfs', ['-o', overlayOpts(m, d), d.mnt], d.mnt);
    if (r.code !== 0) throw new MountError(`fuse-overlayfs: ${describeFailure(r)}`);
    await waitForMount(d.mnt, 'fuse', 10_000);
    const pid = findDaemonPid(d.mnt);
    return {
      mnt: d.mnt,
      pid,
      exitSeconds,
      answeredSeconds,
      async unmount() {
        await unmountFuse(d.mnt, pid, async () => (await run('fusermount3', ['-u', d.mnt], { timeoutMs: 30_000 })).code === 0);
      },
    };
  },
  async stats() {
    return null;
  },
};

/** The stratafs CLI: dist/cli/main.js next to this file's dist/bench/, unless overridden. */
export function stratafsCli(override?: string): string {
  if (override !== undefined) return path.resolve(override);
  return fileURLToPath(new URL('../cli/main.js', import.meta.url));
}

/**
 * How the bench runs the stratafs command: the `stratafs` command users and podman run
 * (bin/stratafs: the native launcher when built) beside a dist/cli/main.js, else node CLI.
 */
export function stratafsCommand(cli: string): [string, ...string[]] {
  const bin = path.resolve(path.dirname(cli), '..', '..', 'bin', 'stratafs');
  return fs.existsSync(bin) ? [bin] : [process.execPath, cli];
}

function logTail(file: string): string {
  try {
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-5);
    return lines.length > 0 && lines[0] !== '' ? ` [daemon log: ${lines.join(' | ')}]` : '';
  } catch {
    return '';
  }
}

async function statsInProcess(cli: string, mnt: string): Promise<unknown> {
  const modPath = path.join(path.dirname(cli), 'stats.js');
  if (!fs.existsSync(modPath)) return undefined;
  try {
    const mod = (await import(pathToFileURL(modPath).href)) as Record<string, unknown>;
    const fetchStats = mod.fetchStats;
    if (typeof fetchStats !== 'function') return undefined;
    const timeout = sleep(15_000).then(() => undefined);
    return await Promise.race([(fetchStats as (m: string) => Promise<unknown>)(mnt), timeout]);
  } catch {
    return undefined;
  }
}

/** stratafs mounted by `cli`; a variant names the column and adds its mount options. */
export function makeStratafsImpl(cli: string, variant?: StratafsVariant): Impl {
  const extra = variant !== undefined && variant.options.length > 0 ? `,${variant.options}` : '';
  return {
    name: variant?.name ?? 'stratafs',
    kind: 'stratafs',
    fuse: true,
    async version() {
      const cwd = path.dirname(cli);
      const head = await run('git', ['log', '-1', '--format=%h %cI'], { cwd, timeoutMs: 5000 });
      const dirty = await run('git', ['status', '--porcelain', '--untracked-files=no', '--', ':(top)src'], { cwd, timeoutMs: 10_000 });
      const how = stratafsCommand(cli).join(' ');
      const opts = extra.length > 0 ? ` -o ${extra.slice(1)}` : '';
      if (head.code !== 0) return `${how}${opts}`;
      return `${how}${opts} at commit ${head.stdout.trim()}${dirty.stdout.trim().length > 0 ? ' + uncommitted changes in src/' : ''}`;
    },
    async prepare() {
      if (!fs.existsSync(cli)) return `${cli} not found (stratafs CLI not built yet)`;
      return null;
    },
    async mount(m, d) {
      // The daemon log goes next to the mount's upper dir: removed with it, quoted when something fails.
      const logFile = path.join(path.dirname(d.mnt), 'stratafs.log');
      const command = stratafsCommand(cli);
      const { r, exitSeconds, answeredSeconds } = await timedMount(command[0], [...command.slice(1), '-o', `${overlayOpts(m, d)},log=${logFile}${extra}`, d.mnt], d.mnt);
      if (r.code !== 0) {
        // A daemon that half-started may still hold the mountpoint.
        if (findMount(d.mnt) !== null) await fusectlAbort(d.mnt);
        throw new MountError(`${describeFailure(r)}${logTail(logFile)}`);
      }
      try {
        await waitForMount(d.mnt, 'fuse', 10_000);
      } catch (err) {
        const pid = findDaemonPid(d.mnt);
        if (pid !== null) process.kill(pid, 'SIGTERM');
        throw err;
      }
      const pid = findDaemonPid(d.mnt);
      return {
        mnt: d.mnt,
        pid,
        exitSeconds,
        answeredSeconds,
        async unmount() {
          // Plain umount (what users and container engines do; the daemon must exit on it), then the CLI's own.
          await unmountFuse(d.mnt, pid, async () => {
            if ((await run('umount', [d.mnt], { timeoutMs: 30_000 })).code === 0) return true;
            return (await run(process.execPath, [cli, 'umount', '--force', d.mnt], { timeoutMs: 30_000 })).code === 0;
          });
        },
      };
    },
    async stats(mnt) {
      // In-process first: `stats --json` costs a Node start (~0.3 s, more under load) twice per cell.
      // The module is the one the CLI itself runs, looked up at run time so the bench builds without it.
      const direct = await statsInProcess(cli, mnt);
      if (direct !== undefined) return direct;
      const r = await run(process.execPath, [cli, 'stats', mnt, '--json'], { timeoutMs: 15_000 });
      if (r.code !== 0) return { unavailable: describeFailure(r) };
      try {
        return JSON.parse(r.stdout) as unknown;
      } catch {
        return { unavailable: `stats --json printed no JSON: ${r.stdout.slice(0, 200)}` };
      }
    },
  };
}
