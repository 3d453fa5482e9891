/**
 * vitest globalSetup: one test root for the run, everything a test makes inside it,
 * and at the end a check that the run left the machine as it found it.
 *
 * setup():
 *  - the test root (STRATAFS_TEST_ROOT) under /tmp; TMPDIR points into it (so every
 *    mkdtemp(tmpdir()) of a test or a child lands there), STRATAFS_RUNTIME_DIR too
 *    (the CLI's runtime files; never /run/stratafs), and npm's logs and cache
 *    (npm_config_logs_dir, npm_config_cache, for tests that run npm);
 *  - the read-only sentinel tree that links leaving a mount point at (harness/sentinel.ts);
 *  - fusectl mounted if it was not (abort of a hung FUSE daemon needs it; the CLI's
 *    `umount --force` and the harness would otherwise mount it on the host and leave it);
 *  - a baseline of the host (harness/host-check.ts): watched trees, mount table, loop
 *    devices, /dev/fuse, namespaces, installed packages. It costs about 2 s at each end
 *    (a find over ~270k entries on this machine's kind, most of them under /root).
 * teardown() fails the run (exit code 1, with the list) on:
 *  - leftovers of the run, removed now: mounts under the root; loop devices backed by
 *    files under it; processes that a test recorded, that name the root in their
 *    arguments (every daemon does, through its mountpoint), that carry the run's
 *    marker in their environment (STRATAFS_TEST_ROOT=<root>, inherited by everything
 *    a test starts, in any namespace), and their descendants;
 *  - a changed sentinel;
 *  - any change of the host outside the root: files, mounts, loop devices, /dev/fuse,
 *    processes in namespaces made during the run, installed packages, /run/stratafs
 *    created or grown. On a shared machine STRATAFS_HOST_CHECK_ALLOW lets known noise
 *    of other people pass (listed as such); CI never sets it.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { TestProject } from 'vitest/node';
import { join } from 'node:path';
import { forceCleanup, killPids, mountsUnder, pidsWithArg, readMountInfo, REPO_ROOT } from '../harness/mounts.js';
import { run } from '../harness/proc.js';
import {
  allowFromEnv, captureFiles, devFuse, diffFiles, diffMounts, diffPackages, hostWatches, inNewNamespaces, installedPackages, loopDevices,
  markedProcesses, mountKeys, namespaceIds, processes, showChanges, type Change, type FileState, type Watch,
} from '../harness/host-check.js';
import { makeSentinels, sentinelDir, unmountSentinels } from '../harness/sentinel.js';

const FUSECTL = '/sys/fs/fuse/connections';

interface Baseline {
  watches: Watch[];
  files: FileState;
  sentinelWatch: Watch;
  sentinel: FileState;
  mounts: Set<string>;
  loops: Map<string, string>;
  fuse: string;
  namespaces: Set<string>;
  packages: Map<string, string>;
  /** we mounted fusectl and unmount it at the end */
  mountedFusectl: boolean;
}

let root: string | undefined;
let base: Baseline | undefined;

const secs = (t0: number): string => ((Date.now() - t0) / 1000).toFixed(1);

export async function setup(project: TestProject): Promise<void> {
  const t0 = Date.now();
  root = await mkdtemp(join(tmpdir(), 'stratafs-test-'));
  // traversable by the other users some tests run as (their own dirs set their own modes)
  await chmod(root, 0o711);
  // vitest named its module cache under /tmp before we could point TMPDIR elsewhere; it removes it when it closes
  const watches = hostWatches(root, REPO_ROOT, [{ path: project.tmpDir, why: 'vitest\'s own module cache' }]);
  // the baseline comes first: nothing of ours outside the root exists yet
  const [files, mounts, loops, fuse, namespaces, packages] = await Promise.all([captureFiles(watches), mountKeys(), loopDevices(), devFuse(), namespaceIds(), installedPackages()]);

  process.env.STRATAFS_TEST_ROOT = root;
  const tmp = join(root, 'tmp');
  await mkdir(tmp);
  await chmod(tmp, 0o1777); // like /tmp: a test's child running as another user may make its temp files here
  process.env.TMPDIR = tmp;
  process.env.STRATAFS_RUNTIME_DIR = join(root, 'run');
  // npm writes its cache (also on a cache hit: npm ci rewrites index entries) and logs under ~/.npm
  process.env.npm_config_logs_dir = join(root, 'npm-logs');
  process.env.npm_config_cache = join(root, 'npm-cache');
  // mount(8)/umount(8) (libmount) record bind and remount options in /run/mount/utab, creating
  // /run/mount on the host (the sentinels' read-only bind did); every child keeps its own here
  process.env.LIBMOUNT_UTAB = join(root, 'utab');

  const roProblem = await makeSentinels(root);
  if (roProblem) console.warn(`sentinels are not read-only (${roProblem}): a write through a link that leaves its mount would be found only at the end`);
  const sentinelWatch: Watch = { path: sentinelDir(root), hash: true };
  const sentinel = await captureFiles([sentinelWatch]);

  let mountedFusectl = false;
  if (!(await readMountInfo()).some((m) => m.fsType === 'fusectl')) {
    const r = await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { timeoutMs: 10_000 });
    mountedFusectl = r.code === 0;
  }
  base = { watches, files, sentinelWatch, sentinel, mounts, loops, fuse, namespaces, packages, mountedFusectl };
  console.log(`test root ${root}; host baseline: ${files.size} entries watched, setup took ${secs(t0)} s`);
}

async function recordedPids(dir: string): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const files = await readdir(join(dir, '.pids')).catch(() => [] as string[]);
  for (const f of files) {
    const text = await readFile(join(dir, '.pids', f), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const [pid, what] = line.split('\t');
      if (pid) out.set(Number(pid), what ?? '');
    }
  }
  return out;
}

async function stillOurs(pid: number, dir: string): Promise<boolean> {
  // A recorded PID counts only while its command line still names our root (PIDs get reused).
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => undefined);
  if (cmd === undefined) return false;
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => '');
  if (/\) [ZX] /.test(stat)) return false;
  return cmd.includes(dir);
}

async function runLeftovers(dir: string, sentinel: string): Promise<string[]> {
  const leaks: string[] = [];
  for (const m of await mountsUnder(dir)) {
    if (m.mountPoint === sentinel) continue; // ours, removed below
    leaks.push(`mount left behind: ${m.fsType} at ${m.mountPoint}`);
    try {
      await forceCleanup(m.mountPoint);
    } catch (e) {
      leaks.push(`  and it could not be removed: ${String(e)}`);
    }
  }
  const pids = new Set<number>();
  for (const [pid, what] of await recordedPids(dir)) {
    if (await stillOurs(pid, dir)) {
      pids.add(pid);
      leaks.push(`process left behind: pid ${pid} (${what})`);
    }
  }
  const describe = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '')).split('\0').join(' ').slice(0, 300);
  for (const pid of await pidsWithArg(dir)) {
    if (!pids.has(pid)) {
      pids.add(pid);
      leaks.push(`process left behind: pid ${pid}: ${await describe(pid)}`);
    }
  }
  for (const p of await markedProcesses(dir, await processes(), process.pid)) {
    if (!pids.has(p.pid)) {
      pids.add(p.pid);
      leaks.push(`process left behind (started by the run, in namespaces ${p.ns.join(' ')}): pid ${p.pid}: ${p.cmdline.slice(0, 300)}`);
    }
  }
  await killPids([...pids]);
  for (const [dev, backing] of await loopDevices()) {
    if (backing === dir || backing.startsWith(dir + '/')) {
      const r = await run('losetup', ['-d', dev], { timeoutMs: 10_000 });
      leaks.push(`loop device left behind: ${dev} on ${backing}${r.code === 0 ? '' : ` (and losetup -d failed: ${r.stderr.toString().trim()})`}`);
    }
  }
  return leaks;
}

async function hostChanges(b: Baseline, dir: string): Promise<Change[]> {
  const allow = allowFromEnv();
  const changes: Change[] = [];
  const [files, mounts, loops, fuse, procs, packages] = await Promise.all([captureFiles(b.watches), mountKeys(), loopDevices(), devFuse(), processes(), installedPackages()]);
  changes.push(...diffPackages(b.packages, packages));
  changes.push(...diffFiles(b.files, files, allow));
  // mounts under the root are the run's own (reported and removed as leftovers above)
  const outside = (s: Set<string>) => new Set([...s].filter((k) => !(k.startsWith(dir + '/') || k.startsWith(dir + ' '))));
  changes.push(...diffMounts(outside(b.mounts), outside(mounts), allow));
  for (const [dev, backing] of loops) {
    if (b.loops.get(dev) !== backing) {
      const a = allow.find((p) => backing.startsWith(p));
      changes.push({ what: `loop device attached during the run: ${dev} on ${backing}`, ...(a ? { allowedBy: a } : {}) });
    }
  }
  for (const [dev, backing] of b.loops) if (!loops.has(dev)) changes.push({ what: `loop device detached during the run: ${dev} (was on ${backing})` });
  if (fuse !== b.fuse) changes.push({ what: `/dev/fuse changed: ${b.fuse} -> ${fuse}` });
  changes.push(...inNewNamespaces(b.namespaces, procs.filter((p) => p.pid !== process.pid), allow));
  return changes;
}

export async function teardown(): Promise<void> {
  if (!root || !base) return;
  const t0 = Date.now();
  const sentinel = sentinelDir(root);
  const leaks = await runLeftovers(root, sentinel);

  const problems: string[] = [];
  const sentinelChanges = diffFiles(base.sentinel, await captureFiles([base.sentinelWatch]));
  if (sentinelChanges.length) {
    problems.push('a client operation wrote through a link that left its mount: the sentinels changed', ...sentinelChanges.map((c) => `  ${c.what}`));
  }
  problems.push(...(await unmountSentinels(root)));
  if (base.mountedFusectl) {
    const r = await run('umount', [FUSECTL], { timeoutMs: 10_000 });
    if (r.code !== 0) problems.push(`umount ${FUSECTL} (mounted by setup): ${r.stderr.toString().trim()}`);
  }

  const { failing, allowed } = showChanges(await hostChanges(base, root));
  if (failing.length) {
    problems.push(`the run changed the host outside its test root (${failing.length}):`, ...failing.map((l) => `  ${l}`));
    if (failing.some((l) => l.includes('/run/stratafs'))) {
      problems.push('  (/run/stratafs: a CLI ran without STRATAFS_RUNTIME_DIR; tests set it to the run\'s root, and any test that builds its own environment for a child must keep it)');
    }
  }
  if (allowed.length) console.log(`host check: let pass by STRATAFS_HOST_CHECK_ALLOW:\n${allowed.map((l) => `  ${l}`).join('\n')}`);
  console.log(`host check: ${base.files.size} entries, mounts, loop devices, /dev/fuse and namespaces compared in ${secs(t0)} s`);

  const all = [...leaks, ...problems];
  if (all.length === 0) {
    // STRATAFS_KEEP_TMP=1 keeps the layer sets and uppers of the run for a post-mortem.
    if (process.env.STRATAFS_KEEP_TMP) console.log(`test files kept in ${root}`);
    else await rm(root, { recursive: true, force: true });
    return;
  }
  // vitest only logs a teardown error ("error during close"); the exit code is what fails CI.
  process.exitCode = 1;
  throw new Error(`the test run left things behind or changed the host (leftovers were cleaned up; files kept in ${root}):\n${all.join('\n')}`);
}
