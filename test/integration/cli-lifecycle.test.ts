/**
 * The life of a mount made by the real CLI: daemonizing and readiness, -f,
 * `stratafs umount`, SIGTERM/SIGINT, an outside umount ending the daemon, and
 * recovery of a mount whose daemon died or hangs (`umount --force`, `-o force`).
 * Every test removes its mounts and processes in afterEach, also on failure.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTimeout } from '../harness/proc.js';
import {
  cli, cliScratch, daemonMount, daemonPids, isMounted, layerOptions, Leftovers, pidAlive, procStat, runText, startForeground, waitFor,
} from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
let opts: string;
let mnt: string;

beforeEach(async () => {
  ({ t, left, mnt } = await cliScratch('cli-life', ['l1', 'l2', 'u', 'w']));
  await writeFile(join(t, 'l1', 'a'), 'from l1\n');
  await writeFile(join(t, 'l2', 'a'), 'hidden by l1\n');
  await writeFile(join(t, 'l2', 'b'), 'from l2\n');
  opts = layerOptions({ lowers: [join(t, 'l1'), join(t, 'l2')], upper: join(t, 'u'), work: join(t, 'w') });
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

/** mount through the CLI as a daemon; returns the daemon's pid */
async function mountDaemon(extra: string[] = [], m = mnt): Promise<number> {
  return (await daemonMount(left, [...extra, '-o', opts], m)).pid;
}

/**
 * List a directory from a child process, so a dead or hung mount cannot block
 * the test (a stat could be answered from the kernel's attribute cache).
 */
async function lsErrno(path: string): Promise<string> {
  const r = await runText('ls', [path], { timeoutMs: 5000 });
  return r.code === 0 ? 'ok' : r.stderr.trim();
}

describe('daemon mode', () => {
  it('exits 0 only once the mount answers, leaving a detached daemon in its own session', async () => {
    const pid = await mountDaemon();
    // No polling: the mount must answer the moment the CLI has returned.
    expect(await isMounted(mnt)).toBe(true);
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('from l1\n');
    expect((await readdir(mnt)).sort()).toEqual(['a', 'b']);
    const [, ppid, , session] = await procStat(pid);
    expect(Number(session)).toBe(pid); // setsid: the daemon leads its own session
    expect(Number(ppid)).not.toBe(process.pid);
    // the mount table names it
    const info = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes(` ${mnt} `))!;
    expect(info).toMatch(/ - fuse\.stratafs stratafs /);
  });

  it('stratafs umount unmounts and returns once the daemon has exited', async () => {
    const pid = await mountDaemon();
    const r = await cli(['umount', mnt]);
    expect(r.code, r.stderr).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
    expect(await pidAlive(pid)).toBe(false);
    // the lock is free again: the same upper/workdir mount at once
    await mountDaemon();
    expect(await withTimeout(readFile(join(mnt, 'b'), 'utf8'), 5000, 'read')).toBe('from l2\n');
  });

  it('stratafs umount of something that is not mounted fails with one line', async () => {
    const r = await cli(['umount', mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`stratafs: not mounted: ${mnt}`);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('%s to the daemon unmounts cleanly and ends it', async (sig) => {
    const pid = await mountDaemon();
    await writeFile(join(mnt, 'new'), 'x');
    process.kill(pid, sig);
    expect(await waitFor(async () => !(await pidAlive(pid)), 10_000)).toBe(true);
    expect(await isMounted(mnt)).toBe(false);
    expect(await readFile(join(t, 'u', 'new'), 'utf8')).toBe('x');
  });

  it.each([['umount', []], ['fusermount', ['-u']]] as const)('an outside %s ends the daemon', async (prog, args) => {
    const pid = await mountDaemon();
    const r = await runText(prog, [...args, mnt], { timeoutMs: 10_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(await waitFor(async () => !(await pidAlive(pid)), 10_000)).toBe(true);
    expect(await isMounted(mnt)).toBe(false);
  });
});

describe('foreground (-f)', () => {
  it('serves from the foreground process; SIGTERM unmounts and exits 0', async () => {
    const fg = startForeground(['-o', opts, mnt], left);
    expect(await waitFor(() => isMounted(mnt), 15_000)).toBe(true);
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('from l1\n');
    // the foreground process itself serves: no second process names the mountpoint
    expect(await daemonPids(mnt)).toEqual([fg.child.pid]);
    fg.child.kill('SIGTERM');
    expect(await withTimeout(fg.exited, 10_000, 'exit after SIGTERM')).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
  });

  it('SIGINT (Ctrl-C) does the same', async () => {
    const fg = startForeground(['-o', opts, mnt], left);
    expect(await waitFor(() => isMounted(mnt), 15_000)).toBe(true);
    fg.child.kill('SIGINT');
    expect(await withTimeout(fg.exited, 10_000, 'exit after SIGINT')).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
  });

  it('a bad mount in the foreground reports one line and exits 1', async () => {
    const fg = startForeground(['-o', `lowerdir=${join(t, 'missing')}`, mnt], left);
    expect(await withTimeout(fg.exited, 10_000, 'exit')).toBe(1);
    expect(fg.stderr().trim()).toBe(`stratafs: lowerdir does not exist: ${join(t, 'missing')}`);
  });
});

describe('recovery of dead and hung mounts', () => {
  it('umount --force cleans a mount whose daemon was killed (ENOTCONN), and the layers mount again', async () => {
    const pid = await mountDaemon();
    process.kill(pid, 'SIGKILL');
    expect(await waitFor(async () => !(await pidAlive(pid)), 5000)).toBe(true);
    // ENOTCONN, or ECONNABORTED when a request was in flight as the connection died (both dead-mount codes to the CLI)
    expect(await lsErrno(mnt)).toMatch(/Transport endpoint is not connected|Software caused connection abort/);
    // a plain mount over it is refused with the way out named
    const again = await cli(['-o', opts, mnt]);
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`stratafs: mountpoint is a dead FUSE mount (its daemon is gone); clean it with \`stratafs umount --force\` or mount with -o force: ${mnt}`);
    const r = await cli(['umount', '--force', mnt]);
    expect(r.code, r.stderr).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
    expect(await lsErrno(mnt)).toBe('ok');
    await mountDaemon();
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('from l1\n');
  });

  it('-o force mounts again over a dead mount', async () => {
    const pid = await mountDaemon();
    process.kill(pid, 'SIGKILL');
    expect(await waitFor(async () => !(await pidAlive(pid)), 5000)).toBe(true);
    const pid2 = await mountDaemon(['-o', 'force']);
    expect(pid2).not.toBe(pid);
    expect(await withTimeout(readFile(join(mnt, 'b'), 'utf8'), 5000, 'read')).toBe('from l2\n');
    // exactly one mount is left at the mountpoint: the dead one was detached
    const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(` ${mnt} `));
    expect(lines).toHaveLength(1);
  });

  it('umount --force cleans a mount whose daemon hangs, and ends the daemon', async () => {
    const pid = await mountDaemon();
    process.kill(pid, 'SIGSTOP'); // the daemon stops answering
    try {
      const r = await cli(['umount', '--force', mnt], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(await isMounted(mnt)).toBe(false);
      expect(await waitFor(async () => !(await pidAlive(pid)), 5000)).toBe(true);
    } finally {
      try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
    }
    expect(await withTimeout(stat(mnt), 5000, 'stat of the cleaned mountpoint')).toBeTruthy();
  });
});
