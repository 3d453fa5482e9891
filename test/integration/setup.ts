/**
 * vitest globalSetup: one temp root for the run, and a leak check at the end.
 * The teardown fails the run if any mount under the root, or any process that
 * names the root in its arguments (every daemon a test starts does, through
 * its mountpoint) or that a test recorded, is still there; it removes them too.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forceCleanup, killPids, mountsUnder, pidsWithArg } from '../harness/mounts.js';

let root: string | undefined;

export async function setup(): Promise<void> {
  root = await mkdtemp(join(tmpdir(), 'stratafs-test-'));
  process.env.STRATAFS_TEST_ROOT = root;
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

export async function teardown(): Promise<void> {
  if (!root) return;
  const leaks: string[] = [];
  for (const m of await mountsUnder(root)) {
    leaks.push(`mount left behind: ${m.fsType} at ${m.mountPoint}`);
    try {
      await forceCleanup(m.mountPoint);
    } catch (e) {
      leaks.push(`  and it could not be removed: ${String(e)}`);
    }
  }
  const recorded = await recordedPids(root);
  const pids = new Set<number>();
  for (const [pid, what] of recorded) {
    if (await stillOurs(pid, root)) {
      pids.add(pid);
      leaks.push(`process left behind: pid ${pid} (${what})`);
    }
  }
  for (const pid of await pidsWithArg(root)) {
    if (!pids.has(pid)) {
      pids.add(pid);
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '')).split('\0').join(' ');
      leaks.push(`process left behind: pid ${pid}: ${cmd}`);
    }
  }
  await killPids([...pids]);
  if (leaks.length === 0) {
    // STRATAFS_KEEP_TMP=1 keeps the layer sets and uppers of the run for a post-mortem.
    if (process.env.STRATAFS_KEEP_TMP) console.log(`test files kept in ${root}`);
    else await rm(root, { recursive: true, force: true });
    return;
  }
  // vitest only logs a teardown error ("error during close"); the exit code is what fails CI.
  process.exitCode = 1;
  throw new Error(`test run left mounts or processes behind (cleaned up now; files kept in ${root}):\n${leaks.join('\n')}`);
}
