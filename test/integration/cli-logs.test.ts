/**
 * Issue 10, defect 6: daemon logs no longer pile up (one was kept per mount
 * forever): a clean session removes its log at unmount, a crash is kept under
 * its own name, kept logs are bounded; an unknown command is named; `stratafs
 * umount` refuses a FUSE mount that is not stratafs's (fuse-overlayfs here)
 * unless --force. The runtime directory is the test's scratch
 * (STRATAFS_RUNTIME_DIR).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { mount, type MountHandle } from '../harness/mounts.js';
import { withTimeout } from '../harness/proc.js';
import { cli, cliScratch, daemonMount, isMounted, layerOptions, Leftovers, pidAlive, waitFor } from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
let mnt: string;
let run: string;
let handles: MountHandle[];
const p = (rel: string): string => join(t, rel);
const idOf = (m: string): string => createHash('sha256').update(m).digest('hex').slice(0, 16);

beforeEach(async () => {
  ({ t, left, mnt, run } = await cliScratch('cli-logs', ['l', 'u', 'w'], { runtimeDir: true }));
  await writeFile(p('l/a'), 'a\n');
  handles = [];
});

afterEach(async () => {
  for (const h of handles) await h.unmount();
  expect(await left.cleanup()).toEqual([]);
});

async function mountDaemon(extra: string[] = []): Promise<number> {
  return (await daemonMount(left, [...extra, '-o', layerOptions({ lowers: [p('l')], upper: p('u'), work: p('w') })], mnt)).pid;
}

/** make the daemon write something into its log (its stats, on SIGUSR1) */
async function logSomething(pid: number): Promise<void> {
  const log = join(run, `${idOf(mnt)}.log`);
  process.kill(pid, 'SIGUSR1');
  expect(await waitFor(async () => /stratafs: stats /.test(await readFile(log, 'utf8').catch(() => '')), 5000)).toBe(true);
}

describe('daemon logs', () => {
  it('a clean session leaves nothing in the runtime directory, though its log was not empty', async () => {
    const pid = await mountDaemon();
    await logSomething(pid);
    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
    expect(await pidAlive(pid)).toBe(false);
    expect(await readdir(run)).toEqual([]);
  });

  it('the log of a daemon that died is kept as a crash log by the next start, and outlives the clean session after it', async () => {
    const pid = await mountDaemon();
    await logSomething(pid);
    process.kill(pid, 'SIGKILL');
    expect(await waitFor(async () => !(await pidAlive(pid)), 5000)).toBe(true);
    const f = await cli(['umount', '--force', mnt]);
    expect(f.code, f.stderr).toBe(0);
    const pid2 = await mountDaemon();
    expect(pid2).not.toBe(pid);
    const crash = (await readdir(run)).filter((n) => n.endsWith('.crash.log'));
    expect(crash).toHaveLength(1);
    expect(crash[0]).toMatch(new RegExp(`^${idOf(mnt)}\\.\\d{8}T\\d{6}Z\\.crash\\.log$`));
    expect(await readFile(join(run, crash[0]!), 'utf8')).toMatch(/stratafs: stats /);
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('a\n');
    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
    expect(await readdir(run)).toEqual(crash);
  });

  it('kept logs are bounded (20, oldest removed first); a dead mount\'s leftover log becomes a crash log', async () => {
    const old = Date.now() / 1000 - 86400;
    const fake: string[] = [];
    for (let i = 0; i < 25; i++) {
      const name = `${'0'.repeat(15)}${(i % 10).toString(16)}.20260101T0000${String(i).padStart(2, '0')}Z.crash.log`;
      fake.push(name);
      await writeFile(join(run, name), `crash ${i}\n`);
      await utimes(join(run, name), old + i, old + i);
    }
    // another mountpoint's live log, its daemon long gone (no record)
    const other = `${'f'.repeat(16)}.log`;
    await writeFile(join(run, other), 'last words\n');
    await utimes(join(run, other), old + 100, old + 100);
    await mountDaemon();
    const names = (await readdir(run)).filter((n) => n.endsWith('.log') && n !== `${idOf(mnt)}.log`).sort();
    expect(names).toHaveLength(20);
    // the 6 oldest fakes went (25 + the adopted one = 26)
    expect(names.filter((n) => fake.includes(n))).toEqual(fake.slice(6).sort());
    const adopted = names.filter((n) => n.startsWith('f'.repeat(16)));
    expect(adopted).toHaveLength(1);
    expect(adopted[0]).toMatch(/\.crash\.log$/);
    expect(await readFile(join(run, adopted[0]!), 'utf8')).toBe('last words\n');
    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
  });
});

describe('command line', () => {
  it('an unknown command is named', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("stratafs: unknown command 'frobnicate' (see stratafs --help)\n");
  });

  it('stratafs umount refuses a fuse-overlayfs mount unless --force', async () => {
    const fo = await mount('fuse-overlayfs', { lowers: [p('l')], upper: p('u'), work: p('w') }, mnt);
    handles.push(fo);
    const r = await cli(['umount', mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`stratafs: not a stratafs mount (fuse.fuse-overlayfs; --force unmounts it anyway): ${mnt}\n`);
    expect(await isMounted(mnt)).toBe(true);
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('a\n');
    const f = await cli(['umount', '--force', mnt]);
    expect(f.code, f.stderr).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
  });
});
