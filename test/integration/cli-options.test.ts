/**
 * Mount options and invocation forms of the real CLI: the mount-helper form
 * through mount.fuse3, mount(8) and an fstab line; unknown options warned by
 * name; read-only mounts (EROFS); generic mount flags; mounting over a
 * non-empty directory and over the top lower layer.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTimeout } from '../harness/proc.js';
import {
  cli, cliScratch, daemonPids, dirSnapshot, layerOptions, Leftovers, runText, STRATAFS_BIN,
} from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
let mnt: string;
const p = (rel: string): string => join(t, rel);

beforeEach(async () => {
  ({ t, left, mnt } = await cliScratch('cli-opt', ['l1', 'l2', 'u', 'w', 'bin']));
  await writeFile(p('l1/a'), 'from l1\n');
  await writeFile(p('l2/b'), 'from l2\n');
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

const rw = (): string => layerOptions({ lowers: [p('l1'), p('l2')], upper: p('u'), work: p('w') });

async function mountLine(m: string): Promise<string> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.split(' ')[4] === m);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

async function expectMerged(m: string): Promise<void> {
  expect((await withTimeout(readdir(m), 5000, 'readdir')).sort()).toEqual(['a', 'b']);
  expect(await withTimeout(readFile(join(m, 'b'), 'utf8'), 5000, 'read')).toBe('from l2\n');
}

async function trackDaemon(m: string): Promise<void> {
  for (const pid of await daemonPids(m)) left.pid(pid);
}

/** `stratafs` as a mount helper finds it on PATH: a symlink to the package's bin/stratafs, as the README says */
async function helperBin(): Promise<string> {
  const f = p('bin/stratafs');
  await symlink(STRATAFS_BIN, f);
  return f;
}

describe('mount helper form: stratafs SOURCE MOUNTPOINT -o OPTIONS', () => {
  it('through mount.fuse3 -t fuse.stratafs (stratafs found on PATH)', async () => {
    await helperBin();
    const r = await runText('mount.fuse3', ['stratafs', mnt, '-t', 'fuse.stratafs', '-o', rw()], {
      env: { PATH: `${p('bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` }, timeoutMs: 30_000,
    });
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    expect(await mountLine(mnt)).toMatch(/ - fuse\.stratafs stratafs /);
    await expectMerged(mnt);
    expect((await cli(['umount', mnt])).code).toBe(0);
  });

  it('through mount(8): mount -t fuse "/path/to/stratafs#SOURCE" MOUNTPOINT -o OPTIONS', async () => {
    const bin = await helperBin();
    const r = await runText('mount', ['-t', 'fuse', `${bin}#myimage`, mnt, '-o', rw()], { timeoutMs: 30_000 });
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    // the source becomes the mount's fsname
    expect(await mountLine(mnt)).toMatch(/ - fuse\.stratafs myimage /);
    await expectMerged(mnt);
    const u = await runText('umount', [mnt]);
    expect(u.code, u.stderr).toBe(0);
  });

  it('from an fstab line (mount --fstab FILE MOUNTPOINT)', async () => {
    const bin = await helperBin();
    // noatime is a default: nosuid shows that the line's options arrive
    await writeFile(p('fstab'), `${bin}#stratafs ${mnt} fuse ${rw()},nosuid 0 0\n`);
    const r = await runText('mount', ['--fstab', p('fstab'), mnt], { timeoutMs: 30_000 });
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    expect((await mountLine(mnt)).split(' ')[5]!.split(',')).toContain('nosuid');
    await expectMerged(mnt);
  });
});

describe('options', () => {
  it('unknown options are named in a warning and ignored; an SELinux label (as podman passes it) is without effect', async () => {
    const r = await cli(['-o', `${rw()},context="system_u:object_r:container_file_t:s0:c1,c2",frobnicate,,`, mnt]);
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([
      'stratafs: warning: unknown options ignored: frobnicate',
      'stratafs: warning: options without effect here: context="system_u:object_r:container_file_t:s0:c1,c2"',
    ]);
    await expectMerged(mnt);
  });

  it('without upperdir the mount is read-only: writes fail with EROFS', async () => {
    const r = await cli(['-o', layerOptions({ lowers: [p('l1'), p('l2')] }), mnt]);
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    await expectMerged(mnt);
    const before = await dirSnapshot(t, [mnt]);
    for (const args of [['touch', join(mnt, 'new')], ['rm', join(mnt, 'a')], ['mkdir', join(mnt, 'd')], ['touch', join(mnt, 'a')]]) {
      const w = await runText(args[0]!, args.slice(1), { timeoutMs: 5000 });
      expect(w.code).not.toBe(0);
      expect(w.stderr).toMatch(/Read-only file system/);
    }
    expect(await mountLine(mnt)).toMatch(/ ro[, ]/);
    expect(await dirSnapshot(t, [mnt])).toEqual(before);
  });

  it('ro with an upper shows the upper read-only and writes nothing', async () => {
    await writeFile(p('u/c'), 'from upper\n');
    const r = await cli(['-o', `${rw()},ro`, mnt]);
    await trackDaemon(mnt);
    expect(r.code, r.stderr).toBe(0);
    expect((await withTimeout(readdir(mnt), 5000, 'readdir')).sort()).toEqual(['a', 'b', 'c']);
    const before = await dirSnapshot(t, [mnt]);
    const w = await runText('sh', ['-c', `echo x >> ${join(mnt, 'a')}`], { timeoutMs: 5000 });
    expect(w.stderr).toMatch(/Read-only file system/);
    expect(await dirSnapshot(t, [mnt])).toEqual(before);
  });

  it('as root the mount is suid,nodev,noatime by default (as fuse-overlayfs); nosuid,dev,noexec are applied', async () => {
    expect((await cli(['-o', rw(), mnt])).code).toBe(0);
    await trackDaemon(mnt);
    const def = (await mountLine(mnt)).split(' ')[5]!.split(',');
    expect(def).not.toContain('nosuid');
    expect(def).toContain('nodev'); // as fuse-overlayfs: a device node in a layer reaches no other user
    expect(def).not.toContain('noexec');
    expect(def).toContain('noatime'); // as fuse-overlayfs
    expect((await cli(['umount', mnt])).code).toBe(0);

    expect((await cli(['-o', `${rw()},nosuid,dev,noexec,noatime`, mnt])).code).toBe(0);
    await trackDaemon(mnt);
    const opts = (await mountLine(mnt)).split(' ')[5]!.split(',');
    expect(opts).toEqual(expect.arrayContaining(['nosuid', 'noexec', 'noatime']));
    expect(opts).not.toContain('nodev');
  });

  it('mounts over a non-empty directory (its files are hidden while mounted)', async () => {
    await writeFile(join(mnt, 'under'), 'x');
    expect((await cli(['-o', rw(), mnt])).code).toBe(0);
    await trackDaemon(mnt);
    await expectMerged(mnt);
  });

  it('mounts over the top lower directory itself', async () => {
    const top = left.mount(p('l1'));
    const r = await cli(['-o', rw(), top]);
    await trackDaemon(top);
    expect(r.code, r.stderr).toBe(0);
    await expectMerged(top);
    await writeFile(join(top, 'n'), 'new');
    expect(await readFile(p('u/n'), 'utf8')).toBe('new');
  });

  it('redirect_dir=off makes a rename of a lower directory fail with EXDEV; the default (on) renames it', async () => {
    await mkdir(p('l2/dir'));
    await writeFile(p('l2/dir/f'), 'in dir\n');
    const rename = (from: string, to: string) => runText('perl', ['-e', 'rename($ARGV[0], $ARGV[1]) or die "$!\n"', from, to], { timeoutMs: 10_000 });
    expect((await cli(['-o', `${rw()},redirect_dir=off`, mnt])).code).toBe(0);
    await trackDaemon(mnt);
    const off = await rename(join(mnt, 'dir'), join(mnt, 'moved'));
    expect(off.code).not.toBe(0);
    expect(off.stderr.trim()).toBe('Invalid cross-device link');
    expect((await cli(['umount', mnt])).code).toBe(0);

    expect((await cli(['-o', rw(), mnt])).code).toBe(0);
    await trackDaemon(mnt);
    const on = await rename(join(mnt, 'dir'), join(mnt, 'moved'));
    expect(on.code, on.stderr).toBe(0);
    expect(await withTimeout(readFile(join(mnt, 'moved/f'), 'utf8'), 5000, 'read')).toBe('in dir\n');
  });

  it('lookup_cache=N sizes the lookup cache (seen in stats)', async () => {
    expect((await cli(['-o', `${rw()},lookup_cache=5`, mnt])).code).toBe(0);
    await trackDaemon(mnt);
    await expectMerged(mnt);
    const s = await cli(['stats', '--json', mnt]);
    expect((JSON.parse(s.stdout) as { overlay: { lookupCache: { max: number; size: number } } }).overlay.lookupCache.max).toBe(5);
  });
});
