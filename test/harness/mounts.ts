/**
 * One way to mount a layer set with any of the three implementations, and a
 * cleanup that works when a daemon hangs or died: umount -> fusectl abort ->
 * umount -l -> kill the daemon by the PID we recorded (never by name).
 */
import { mkdtemp, mkdir, readFile, readdir, writeFile, stat, appendFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'vitest';
import { run, withTimeout } from './proc.js';

export type Impl = 'kernel' | 'fuse-overlayfs' | 'stratafs';
export const IMPLS: readonly Impl[] = ['kernel', 'fuse-overlayfs', 'stratafs'];

export interface Layers {
  /** top first, as in lowerdir= */
  lowers: string[];
  upper?: string;
  work?: string;
}

export interface UnmountResult {
  /** what it took: 'umount' when the plain unmount worked */
  steps: string[];
  /** daemon PIDs that had to be killed */
  killed: number[];
}

export interface MountHandle {
  impl: Impl;
  mnt: string;
  layers: Layers;
  /** PIDs of the daemon serving a FUSE mount (empty for kernel) */
  pids: number[];
  /** Unmounts and makes sure nothing is left; resolves with what was needed. Idempotent. */
  unmount(): Promise<UnmountResult>;
}

/** the checkout, as a real path: the namespace harnesses bind it back by that path (ns-keep.sh) */
export const REPO_ROOT = realpathSync(fileURLToPath(new URL('../..', import.meta.url)));
/** The Node entry: `node dist/cli/main.js` (what bin/stratafs falls back to, and what cli-launcher compares with). */
export const STRATAFS_CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js');
/** The package's bin, what users put on PATH: the C launcher built by npm ci (native-notes/launcher.md). */
export const STRATAFS_BIN = join(REPO_ROOT, 'bin', 'stratafs');
const TEST_ROOT_PREFIX = 'stratafs-test-';

let ownRoot: string | undefined;
/**
 * The run's temp root. globalSetup (test/integration/setup.ts) creates it and
 * exports STRATAFS_TEST_ROOT so its teardown can find leaks under it; a file
 * run without it gets a root of its own.
 */
export function testRoot(): string {
  const env = process.env.STRATAFS_TEST_ROOT;
  if (env) return env;
  ownRoot ??= mkdtempSync(join(tmpdir(), TEST_ROOT_PREFIX));
  process.env.STRATAFS_TEST_ROOT = ownRoot;
  return ownRoot;
}

export async function tempDir(prefix: string): Promise<string> {
  const root = testRoot();
  await mkdir(root, { recursive: true });
  return mkdtemp(join(root, prefix.replace(/[^A-Za-z0-9_.-]/g, '_') + '-'));
}

/**
 * A small tmpfs of the caller's own under the run's root: a second filesystem for tests
 * that need one (cross-filesystem copies, distinct st_dev), where /dev/shm would be the
 * host's. dispose() unmounts and removes it; the run's teardown reports one left mounted.
 */
export function scratchTmpfs(prefix: string, sizeMiB = 64): { dir: string; dispose(): void } {
  const root = testRoot();
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, prefix.replace(/[^A-Za-z0-9_.-]/g, '_') + '-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  return {
    dir,
    dispose() {
      execFileSync('umount', [dir], { stdio: 'pipe' });
      rmdirSync(dir);
    },
  };
}

// ---------------------------------------------------------------- mountinfo

export interface MountInfo {
  mountId: number;
  major: number;
  minor: number;
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'latin1');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const [maj, min] = (f[2] ?? '0:0').split(':').map(Number);
    out.push({
      mountId: Number(f[0]),
      major: maj ?? 0,
      minor: min ?? 0,
      mountPoint: unescapeMountinfo(f[4] ?? ''),
      options: f[5] ?? '',
      fsType: f[sep + 1] ?? '',
      source: unescapeMountinfo(f[sep + 2] ?? ''),
    });
  }
  return out;
}

export async function mountsAt(mnt: string): Promise<MountInfo[]> {
  return (await readMountInfo()).filter((m) => m.mountPoint === mnt);
}

/** Mounts (any fs type) at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<MountInfo[]> {
  const all = await readMountInfo();
  return all
    .filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

// ---------------------------------------------------------------- processes

/** PIDs (not ours) whose command line contains `needle` as part of an argument. */
export async function pidsWithArg(needle: string): Promise<number[]> {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1');
      if (cmd.split('\0').some((a) => a.includes(needle))) out.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); it no longer holds the mount.
    return !isZombie(pid);
  } catch {
    return false;
  }
}

/** Stopped by a signal (SIGSTOP) or a tracer: it will not exit by itself. */
function isStopped(pid: number): boolean {
  return /^[Tt]$/.test(procState(pid));
}

function procState(pid: number): string {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
  } catch {
    return 'X';
  }
}

function isZombie(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM, then SIGKILL after graceMs; only the given PIDs. Returns those that needed a signal. */
export async function killPids(pids: number[], graceMs = 2000): Promise<number[]> {
  const hit = pids.filter(alive);
  for (const p of hit) {
    try { process.kill(p, 'SIGTERM'); } catch { /* gone */ }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && hit.some(alive)) await sleep(50);
  for (const p of hit.filter(alive)) {
    try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }
  const d2 = Date.now() + 2000;
  while (Date.now() < d2 && hit.some(alive)) await sleep(50);
  return hit;
}

/** Records a PID we started, so the suite-level teardown can check it is gone. */
async function recordPids(pids: number[], what: string): Promise<void> {
  if (pids.length === 0) return;
  const dir = join(testRoot(), '.pids');
  await mkdir(dir, { recursive: true });
  await appendFile(join(dir, `${process.pid}`), pids.map((p) => `${p}\t${what}\n`).join(''));
}

// ---------------------------------------------------------------- fusectl

const FUSECTL = '/sys/fs/fuse/connections';

/**
 * Aborts the FUSE connection behind `mnt` (the daemon is then cut off; the mount answers ENOTCONN).
 * Where fusectl is not mounted, it is mounted in a private mount namespace for the abort
 * only: a test never leaves a fusectl mount on the host.
 */
export async function abortFuse(mnt: string): Promise<boolean> {
  const mi = await readMountInfo();
  const ms = mi.filter((m) => m.mountPoint === mnt && (m.fsType === 'fuse' || m.fsType.startsWith('fuse.')));
  if (ms.length === 0) return false;
  // The connection directory is named after the superblock's dev_t; FUSE's
  // anonymous devices have major 0, so this is the minor number.
  const conns = ms.map((m) => String((m.major << 20) | m.minor));
  if (mi.some((m) => m.fsType === 'fusectl')) {
    let done = false;
    for (const conn of conns) {
      const abortFile = join(FUSECTL, conn, 'abort');
      if (existsSync(abortFile)) {
        await writeFile(abortFile, '1');
        done = true;
      }
    }
    return done;
  }
  const script = `mount -t fusectl fusectl ${FUSECTL} || exit 1\nok=1\nfor c in ${conns.join(' ')}; do [ -e ${FUSECTL}/$c/abort ] && echo 1 > ${FUSECTL}/$c/abort && ok=0; done\nexit $ok\n`;
  const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { timeoutMs: 10_000 });
  return r.code === 0;
}

/**
 * Removes every mount at mnt, whatever state its daemon is in, then kills the
 * given PIDs (and any process still naming mnt in its arguments).
 */
/**
 * Wait until the processes exit by themselves; returns those still alive (for the caller to kill).
 * A FUSE daemon exits once its mount is gone, but on a loaded machine that can take seconds (a
 * 3 s grace killed healthy daemons, reported as a difference); the deadline only guards one that
 * never exits. A stopped one never will: no waiting for it. Pass only processes whose mounts are
 * gone: a daemon still serving another mount would be waited for until the deadline.
 */
export async function awaitExit(pids: readonly number[], ms = 30_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = [...new Set(pids)].filter(alive);
  while (left.some((p) => !isStopped(p)) && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(alive);
  }
  return left;
}

export async function forceCleanup(mnt: string, pids: number[] = []): Promise<UnmountResult> {
  const steps: string[] = [];
  for (let i = 0; i < 8 && (await mountsAt(mnt)).length > 0; i++) {
    const r = await run('umount', [mnt], { timeoutMs: 5000 });
    if (r.code === 0) { steps.push('umount'); continue; }
    steps.push(`umount failed (${r.timedOut ? 'timeout' : r.stderr.toString().trim()})`);
    if (await abortFuse(mnt)) steps.push('fusectl abort');
    const l = await run('umount', ['-l', mnt], { timeoutMs: 5000 });
    steps.push(l.code === 0 ? 'umount -l' : `umount -l failed (${l.stderr.toString().trim()})`);
  }
  const stillMounted = (await mountsAt(mnt)).length > 0;
  const killed = await killPids(await awaitExit([...pids, ...(await pidsWithArg(mnt))]));
  if (stillMounted) throw new Error(`could not remove the mount at ${mnt}: ${steps.join(' -> ')}`);
  return { steps, killed };
}

// ---------------------------------------------------------------- mounting

const registry = new Set<MountHandle>();

/** Every handle mounted by this process and not yet unmounted. */
export function liveHandles(): MountHandle[] {
  return [...registry];
}

/** Unmounts everything this process mounted (for afterAll/afterEach). Collects errors. */
export async function unmountAll(): Promise<string[]> {
  const errors: string[] = [];
  for (const h of [...registry]) {
    try {
      await h.unmount();
    } catch (e) {
      errors.push(String(e));
    }
  }
  return errors;
}

export class KernelOverlayUnavailable extends Error {
  override name = 'KernelOverlayUnavailable';
}

function optionString(layers: Layers): string {
  const esc = (p: string) => p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,');
  const parts = [`lowerdir=${layers.lowers.map(esc).join(':')}`];
  if (layers.upper) parts.push(`upperdir=${esc(layers.upper)}`);
  if (layers.work) parts.push(`workdir=${esc(layers.work)}`);
  return parts.join(',');
}

/**
 * STRATAFS_TEST_FUSE_MINOR=N: every stratafs mount of the harness on the default server caps
 * the FUSE protocol at 7.N (-o fuse_minor=N), unless the test names a minor or the high-level
 * API itself. How CI runs the differential harness and the server's tests again on the 7.19
 * fallback (package.json "test"): `STRATAFS_TEST_FUSE_MINOR=19 vitest run ...`. A test that
 * asserts a feature ON names the minor it needs (fuse_minor=45). STRATAFS_TEST_FUSE_SERVER=kernel,
 * the old way to reach that server, is still accepted and now changes nothing.
 */
export function fuseServerWords(
  extra: readonly string[], minor = process.env.STRATAFS_TEST_FUSE_MINOR, server = process.env.STRATAFS_TEST_FUSE_SERVER,
): string[] {
  if (server !== undefined && server !== '' && server !== 'kernel') throw new Error(`STRATAFS_TEST_FUSE_SERVER=${server}: only kernel is left (fuse_server=libfuse was removed)`);
  if (minor === undefined || minor === '') return [];
  if (!/^\d+$/.test(minor)) throw new Error(`STRATAFS_TEST_FUSE_MINOR=${minor}: a protocol minor (19 to 45) expected`);
  return extra.some((w) => w.startsWith('fuse_minor=') || w === 'fuse_api=highlevel') ? [] : [`fuse_minor=${minor}`];
}

/**
 * fuse_off=NAMES for a stratafs mount (not the high-level API, which has no such word). Tests
 * that assert what a feature changes on purpose -- the crash and full-disk tests, against
 * writeback_cache -- pin it off here and leave that difference to the test that shows it
 * (divergences.ts). One fuse_off= word wins over another: extra must not carry one.
 */
export function fuseOffWords(names: readonly string[], extra: readonly string[] = []): string[] {
  return extra.includes('fuse_api=highlevel') ? [] : [`fuse_off=${names.join(':')}`];
}

export interface MountOptions {
  /** extra -o words */
  extra?: string[];
  timeoutMs?: number;
  /**
   * The mounting process's working directory, for relative layer paths (the kernel's
   * mount data is one page: 500 layers fit only with short relative names).
   */
  cwd?: string;
}

export async function mount(impl: Impl, layers: Layers, mnt: string, opts: MountOptions = {}): Promise<MountHandle> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  if ((layers.upper === undefined) !== (layers.work === undefined)) {
    throw new Error('upper and work go together');
  }
  if ((await mountsAt(mnt)).length > 0) throw new Error(`${mnt} is already a mount point`);
  let o = optionString(layers);
  const extra = opts.extra ?? [];
  let cmd: string;
  let args: string[];
  switch (impl) {
    case 'kernel':
      // This kernel's module default is redirect_dir=off: lower dir renames would be EXDEV.
      o += ',redirect_dir=on';
      cmd = 'mount';
      args = ['-t', 'overlay', 'overlay', '-o', [o, ...extra].join(','), mnt];
      break;
    case 'fuse-overlayfs':
      cmd = 'fuse-overlayfs';
      args = ['-o', [o, ...extra].join(','), mnt];
      break;
    case 'stratafs':
      if (!existsSync(STRATAFS_CLI)) {
        throw new Error(`stratafs is not built: ${STRATAFS_CLI} is missing (run npm run build)`);
      }
      // the command users run: bin/stratafs (the launcher, which runs `node` from PATH)
      cmd = STRATAFS_BIN;
      args = ['-o', [o, ...extra, ...fuseServerWords(extra)].join(','), mnt];
      break;
  }
  const r = await run(cmd, args, { timeoutMs, env: { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` }, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) });
  const mounted = (await mountsAt(mnt)).length > 0;
  const pids = impl === 'kernel' ? [] : await pidsWithArg(mnt);
  await recordPids(pids, `${impl} ${mnt}`);
  if (r.code !== 0 || !mounted) {
    if (mounted || pids.length) await forceCleanup(mnt, pids).catch(() => undefined);
    const msg = `${impl} mount of ${mnt} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}${mounted ? '' : ', not mounted'}): ${r.stderr.toString('latin1').trim()} ${r.stdout.toString('latin1').trim()}`;
    if (impl === 'kernel' && (process.getuid?.() !== 0 || /permission denied|must be superuser|not permitted/i.test(msg))) {
      throw new KernelOverlayUnavailable(`kernel overlayfs cannot be mounted here (${process.getuid?.() === 0 ? 'root, but refused' : 'not root'}): ${msg}`);
    }
    throw new Error(msg);
  }
  let done = false;
  const handle: MountHandle = {
    impl,
    mnt,
    layers,
    pids,
    async unmount() {
      if (done) return { steps: [], killed: [] };
      done = true;
      registry.delete(handle);
      const res = await forceCleanup(mnt, pids);
      // A FUSE daemon should exit by itself once its mount is gone; give it a moment.
      return res;
    },
  };
  registry.add(handle);
  // The mount must answer before anyone uses it.
  try {
    await withTimeout(stat(mnt), 10_000, `stat of fresh ${impl} mount ${mnt}`);
  } catch (e) {
    await handle.unmount().catch(() => undefined);
    throw e;
  }
  return handle;
}

/** Whether this process may mount kernel overlayfs, and if not, why. */
export async function kernelOverlayProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the tests do not run as root: kernel overlayfs cannot be mounted';
  const fsList = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!/\boverlay\b/.test(fsList)) {
    const r = await run('modprobe', ['overlay'], { timeoutMs: 10_000 });
    const again = await readFile('/proc/filesystems', 'utf8').catch(() => '');
    if (!/\boverlay\b/.test(again)) return `overlay is not in /proc/filesystems and modprobe overlay failed: ${r.stderr.toString().trim()}`;
  }
  return undefined;
}

/**
 * Whether the kernel comparison may be left out: undefined when kernel overlayfs mounts
 * here; the reason when it does not and the run opted out with STRATAFS_SKIP_KERNEL_DIFF=1
 * (never in CI); otherwise it throws with the reason.
 */
export function kernelSkipReason(kernelProblem: string | undefined): string | undefined {
  if (!kernelProblem) return undefined;
  if (process.env.STRATAFS_SKIP_KERNEL_DIFF === '1') return `kernel overlayfs comparison skipped on request (STRATAFS_SKIP_KERNEL_DIFF=1): ${kernelProblem}`;
  throw new Error(`${kernelProblem}. The differential tests need root and kernel overlayfs; set STRATAFS_SKIP_KERNEL_DIFF=1 to opt out (never in CI).`);
}

/**
 * A differential test that cannot compare with the kernel must not pass: it fails with
 * the reason, or, when the run opted out (STRATAFS_SKIP_KERNEL_DIFF=1), it is reported
 * as skipped by the runner with the reason (ctx.skip ends the test).
 */
export function requireKernel(kernelProblem: string | undefined, ctx: Pick<TestContext, 'skip'>): void {
  const reason = kernelSkipReason(kernelProblem);
  if (reason !== undefined) ctx.skip(reason);
}
