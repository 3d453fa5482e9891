import * as fs from 'node:fs';
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Keep at most this many bytes of stdout (the tail is dropped); workloads report through small outputs. */
  maxStdout?: number;
}

/**
 * Runs a command in a child process and times it from spawn to exit. Workloads always run in children:
 * a hung mount then costs a killed child and a timeout, not a hung benchmark.
 */
/** Stop functions of the running children, so an interrupt can stop them all at once. */
const running = new Map<number, () => void>();

export function killRunningChildren(): void {
  for (const stop of [...running.values()]) stop();
}

export function run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const max = opts.maxStdout ?? 1 << 20;
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    // detached: the child leads its own process group, so a timeout can kill the whole pipeline.
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const pgid = child.pid;
    child.stdout.setEncoding('latin1');
    child.stderr.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < max) stdout += d;
    });
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 65536) stderr += d;
    });
    let settled = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, extra = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      if (pgid !== undefined) running.delete(pgid);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      resolve({ code, signal, stdout, stderr: stderr + extra, seconds, timedOut });
    };
    let grace: NodeJS.Timeout | undefined;
    const stop = (): void => {
      if (grace !== undefined) return;
      if (pgid !== undefined) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      // A process waiting on a FUSE request the daemon never answers sits in D state, immune to SIGKILL,
      // and keeps the pipes open: 'close' would never come. Give up on it after a grace period.
      grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(null, 'SIGKILL', '\n(a process of this command is stuck in the kernel, probably on an unanswered FUSE request)');
      }, 5000);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, opts.timeoutMs);
    if (pgid !== undefined) running.set(pgid, stop);
    child.on('error', (err) => finish(127, null, String(err)));
    child.on('close', (code, signal) => finish(code, signal));
  });
}

export function bash(script: string, opts: RunOptions): Promise<RunResult> {
  return run('bash', ['-c', `set -o pipefail; ${script}`], opts);
}

export function describeFailure(r: RunResult): string {
  const why = r.timedOut ? 'timed out' : r.signal !== null ? `killed by ${r.signal}` : `exit code ${String(r.code)}`;
  const err = r.stderr.trim().split('\n').slice(-3).join(' | ');
  return err ? `${why}: ${err}` : why;
}

/**
 * sync (+ drop page, dentry and inode caches, so the next workload starts cold; needs root).
 * In children with a timeout: sync(2) waits for write-back to every mount, a hung FUSE daemon's included,
 * and a synchronous call would freeze the whole benchmark with it.
 */
export async function syncAndDrop(drop: boolean): Promise<void> {
  const r = await run('sh', ['-c', drop ? 'sync && echo 3 > /proc/sys/vm/drop_caches' : 'sync'], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${drop ? 'sync + drop_caches' : 'sync'}: ${describeFailure(r)}`);
}

/** Quote for bash single-quoted context. */
export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * PID of the FUSE daemon serving `mnt`: a process whose command line names the (unique) mountpoint and
 * which holds /dev/fuse open. Never matches by program name, so other agents' daemons are never touched.
 */
export function findDaemonPid(mnt: string): number | null {
  const needle = Buffer.from(mnt);
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    const pid = Number(ent);
    if (pid === process.pid) continue;
    let cmdline: Buffer;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`);
    } catch {
      continue;
    }
    const args = cmdline.toString('latin1').split('\0');
    if (!args.some((a) => a === mnt || a === `${mnt}/` || (a.length > 0 && Buffer.from(a).equals(needle)))) continue;
    try {
      const fds = fs.readdirSync(`/proc/${pid}/fd`);
      if (fds.some((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`) === '/dev/fuse')) return pid;
    } catch {
      continue;
    }
  }
  return null;
}

function safeReadlink(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

export interface ProcSample {
  /** Peak resident set (VmHWM) in bytes. */
  hwmBytes: number;
  rssBytes: number;
  /** utime + stime in seconds. */
  cpuSeconds: number;
}

const CLK_TCK = 100;

export function sampleProc(pid: number): ProcSample | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m?.[1] !== undefined ? Number(m[1]) * 1024 : 0;
    };
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return { hwmBytes: kb('VmHWM'), rssBytes: kb('VmRSS'), cpuSeconds: (utime + stime) / CLK_TCK };
  } catch {
    return null;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface MountInfo {
  mountpoint: string;
  fstype: string;
  minor: number;
}

export function findMount(mnt: string): MountInfo | null {
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  let found: MountInfo | null = null;
  for (const line of lines) {
    const f = line.split(' ');
    const point = f[4];
    const dev = f[2];
    const sep = f.indexOf('-');
    if (point === undefined || dev === undefined || sep < 0) continue;
    const decoded = point.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (decoded !== mnt) continue;
    // Last one wins: stacked mounts on the same point are listed in mount order.
    found = { mountpoint: decoded, fstype: f[sep + 1] ?? '', minor: Number(dev.split(':')[1]) };
  }
  return found;
}

/**
 * Stuck-FUSE recovery: abort the connection through fusectl, then detach the mount.
 * The connection is found by the mount's minor device number, never by name.
 */
export async function fusectlAbort(mnt: string): Promise<void> {
  const m = findMount(mnt);
  if (m === null) return;
  if (!fs.existsSync('/sys/fs/fuse/connections') || fs.readdirSync('/sys/fs/fuse/connections').length === 0) {
    await run('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections'], { timeoutMs: 5000 });
  }
  const abort = `/sys/fs/fuse/connections/${m.minor}/abort`;
  if (fs.existsSync(abort)) fs.writeFileSync(abort, '1');
  await run('umount', ['-l', mnt], { timeoutMs: 10_000 });
}
