/**
 * close_to_open (fuse/kernel/features.ts): a layer file changed behind the mount shows its new
 * data and size at the next open through the mount, as an NFS client's close-to-open; the
 * unchanged file keeps the kernel's page cache (FOPEN_KEEP_CACHE: a second read costs no READ).
 * Each change is made to the layer directly while the mount has the old data and attributes
 * cached; the same script runs on kernel overlayfs, which reads the layer file at every
 * access but keeps the object a cached dentry names (a file replaced by a rename in its lower
 * layer, lower or upper, stays the old one there).
 *
 * READs are counted with passthrough off (a passed-through read sends none) and without the
 * writeback cache, under which the kernel keeps its own size of a file (fuse_get_cache_mask):
 * that case is its own test below.
 */
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll, type Impl, type MountHandle } from '../harness/mounts.js';
import { opCount, serverStats } from '../harness/cli-mount.js';

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

// close_to_open needs 7.12; the minor named so that STRATAFS_TEST_FUSE_MINOR=19 runs keep the
// features meant here. timeout=30: the kernel deletes a FUSE dentry whose entry timed out when
// its last user lets go (fuse_dentry_delete), and the inode with its pages goes with it: with a
// short timeout a slow `stratafs stats` between two reads would make every read a first one.
const ON = ['fuse_minor=45', 'timeout=30', 'fuse_off=passthrough:writeback_cache'];
const OFF = ['fuse_minor=45', 'timeout=30', 'fuse_off=passthrough:writeback_cache:close_to_open'];
/** as root without passthrough the writeback cache is on (a plain user's mount has it by default) */
const WRITEBACK = ['fuse_minor=45', 'timeout=30', 'fuse_off=passthrough'];

const reads = async (mnt: string): Promise<number> => opCount(await serverStats(mnt), 'read');

interface Setup { l: string; u: string; mnt: string; handle: MountHandle }
async function setup(name: string, impl: Impl, extra: string[]): Promise<Setup> {
  const t = await tempDir(name);
  const [l, u, w, mnt] = ['l', 'u', 'w', 'mnt'].map((d) => join(t, d)) as [string, string, string, string];
  for (const d of [l, u, w, mnt]) await mkdir(d, { recursive: true });
  for (const f of ['same', 'grow', 'shrink', 'ren', 'fd', 'fdren', 'still']) await writeFile(join(l, f), 'old-data\n');
  for (const f of ['up', 'upren']) await writeFile(join(u, f), 'old-data\n');
  const handle = await mount(impl, { lowers: [l], upper: u, work: w }, mnt, { extra: impl === 'stratafs' ? extra : [] });
  return { l, u, mnt, handle };
}

/** what reading `file` from offset 0 through `fh` gives */
async function pread(fh: Awaited<ReturnType<typeof open>>): Promise<string> {
  const b = Buffer.alloc(256);
  const { bytesRead } = await fh.read(b, 0, b.length, 0);
  return b.subarray(0, bytesRead).toString();
}

interface Outcome { data: Record<string, string>; size: Record<string, number>; fdInPlace: string; fdRenamedOver: string }

/**
 * Read and stat every file through the mount (the caches fill), change the layers behind it,
 * then open and read each file anew and stat it. Two descriptors opened (and read) before the
 * change are read again afterwards from offset 0.
 */
async function changeBehind(s: Setup): Promise<Outcome> {
  const { l, u, mnt } = s;
  const names = ['same', 'grow', 'shrink', 'ren', 'up', 'upren'];
  for (const f of [...names, 'fd', 'fdren']) {
    expect(await readFile(join(mnt, f), 'utf8')).toBe('old-data\n');
    expect((await stat(join(mnt, f))).size).toBe(9);
  }
  const fd = await open(join(mnt, 'fd'));
  const fdren = await open(join(mnt, 'fdren'));
  try {
    expect(await pread(fd)).toBe('old-data\n');
    expect(await pread(fdren)).toBe('old-data\n');
    // same size, same inode; other sizes, same inode; a new inode renamed over the name
    await writeFile(join(l, 'same'), 'new-data\n');
    await writeFile(join(l, 'grow'), 'new-data, longer\n');
    await writeFile(join(l, 'shrink'), 'new\n');
    await writeFile(join(l, 'ren.tmp'), 'new-data by rename\n');
    await rename(join(l, 'ren.tmp'), join(l, 'ren'));
    await writeFile(join(u, 'up'), 'new-data upper\n');
    await writeFile(join(u, 'upren.tmp'), 'new-data upper by rename\n');
    await rename(join(u, 'upren.tmp'), join(u, 'upren'));
    await writeFile(join(l, 'fd'), 'new-data\n');
    await writeFile(join(l, 'fdren.tmp'), 'new-data by rename\n');
    await rename(join(l, 'fdren.tmp'), join(l, 'fdren'));
    const data: Record<string, string> = {};
    const size: Record<string, number> = {};
    for (const f of names) {
      data[f] = await readFile(join(mnt, f), 'utf8');
      size[f] = (await stat(join(mnt, f))).size;
    }
    // a new open of each name first (close-to-open), then the old descriptors
    for (const f of ['fd', 'fdren']) data[f] = await readFile(join(mnt, f), 'utf8');
    return { data, size, fdInPlace: await pread(fd), fdRenamedOver: await pread(fdren) };
  } finally {
    await fd.close();
    await fdren.close();
  }
}

const NEW: Record<string, string> = {
  same: 'new-data\n', grow: 'new-data, longer\n', shrink: 'new\n', ren: 'new-data by rename\n',
  up: 'new-data upper\n', upren: 'new-data upper by rename\n', fd: 'new-data\n', fdren: 'new-data by rename\n',
};
const sizes = (d: Record<string, string>): Record<string, number> =>
  Object.fromEntries(['same', 'grow', 'shrink', 'ren', 'up', 'upren'].map((f) => [f, Buffer.byteLength(d[f]!)]));

describe('close_to_open: layer files changed behind the mount', () => {
  it('on: each new open reads the new data, stat shows the new size; descriptors opened before keep reading', async () => {
    const s = await setup('c2o-on', 'stratafs', ON);
    try {
      expect((await serverStats(s.mnt)).fuse.features).toContain('close_to_open');
      const o = await changeBehind(s);
      expect(o.data).toEqual(NEW);
      expect(o.size).toEqual(sizes(NEW));
      // the node's pages were dropped at the new open and filled from the layer file now there:
      // the descriptor of the file changed in place reads the new data, as on kernel overlayfs;
      // the one of the file renamed over reads the new file's pages (kernel overlayfs: the old file)
      expect(o.fdInPlace).toBe('new-data\n');
      expect(o.fdRenamedOver).toBe('new-data by rename\n');
    } finally {
      await s.handle.unmount();
    }
  }, 60_000);

  it('on, with the defaults (as root: upper files passed through): the same new data and sizes', async () => {
    const s = await setup('c2o-default', 'stratafs', ['fuse_minor=45', 'timeout=30']);
    try {
      const o = await changeBehind(s);
      expect(o.data).toEqual(NEW);
      expect(o.size).toEqual(sizes(NEW));
    } finally {
      await s.handle.unmount();
    }
  }, 60_000);

  it('off (fuse_off=close_to_open): the kernel keeps the old pages and size of every lower file', async () => {
    const s = await setup('c2o-off', 'stratafs', OFF);
    try {
      expect((await serverStats(s.mnt)).fuse.features).not.toContain('close_to_open');
      const o = await changeBehind(s);
      for (const f of ['same', 'grow', 'shrink', 'ren', 'up', 'upren']) expect(o.data[f], f).toBe('old-data\n');
      expect(o.size).toEqual({ same: 9, grow: 9, shrink: 9, ren: 9, up: 9, upren: 9 });
    } finally {
      await s.handle.unmount();
    }
  }, 60_000);

  it('kernel overlayfs: new data at once for files changed in place; a file renamed over in its layer stays the old one', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const s = await setup('c2o-kernel', 'kernel', []);
    try {
      const o = await changeBehind(s);
      expect(o.data).toEqual({ ...NEW, ren: 'old-data\n', upren: 'old-data\n', fdren: 'old-data\n' });
      expect(o.size).toEqual({ ...sizes(NEW), ren: 9, upren: 9 });
      expect(o.fdInPlace).toBe('new-data\n');
      expect(o.fdRenamedOver).toBe('old-data\n');
    } finally {
      await s.handle.unmount();
    }
  }, 60_000);

  it('an unchanged file keeps the cache: its second open and read cost no READ; a changed one costs READs again', async () => {
    for (const [extra, keepsAfterChange] of [[ON, false], [OFF, true]] as const) {
      const s = await setup('c2o-reads', 'stratafs', [...extra]);
      try {
        for (const f of ['still', 'up']) expect(await readFile(join(s.mnt, f), 'utf8')).toBe('old-data\n');
        const r0 = await reads(s.mnt);
        for (const f of ['still', 'up']) expect(await readFile(join(s.mnt, f), 'utf8')).toBe('old-data\n');
        expect(await reads(s.mnt) - r0, `${extra.join(',')}: unchanged files`).toBe(0);
        await writeFile(join(s.l, 'still'), 'new-data\n');
        await writeFile(join(s.u, 'up'), 'new-data\n');
        const r1 = await reads(s.mnt);
        const want = keepsAfterChange ? 'old-data\n' : 'new-data\n';
        for (const f of ['still', 'up']) expect(await readFile(join(s.mnt, f), 'utf8')).toBe(want);
        expect(await reads(s.mnt) - r1 > 0, `${extra.join(',')}: changed files`).toBe(!keepsAfterChange);
        // and kept again from there
        const r2 = await reads(s.mnt);
        for (const f of ['still', 'up']) expect(await readFile(join(s.mnt, f), 'utf8')).toBe(want);
        expect(await reads(s.mnt) - r2).toBe(0);
      } finally {
        await s.handle.unmount();
      }
    }
  }, 60_000);

  it('changes through the mount keep the cache: a file written in whole pages and closed reopens without a READ', async () => {
    for (const extra of [ON, WRITEBACK]) {
      const s = await setup('c2o-own', 'stratafs', extra);
      try {
        const f = join(s.mnt, 'up');
        expect(await readFile(f, 'utf8')).toBe('old-data\n');
        // whole pages: the kernel keeps what was written as up to date (a partial page is read again anyway)
        const data = Buffer.alloc(8192, 'w');
        await writeFile(f, data);
        const r0 = await reads(s.mnt);
        expect((await readFile(f)).equals(data)).toBe(true);
        expect(await reads(s.mnt) - r0, extra.join(',')).toBe(0);
      } finally {
        await s.handle.unmount();
      }
    }
  }, 60_000);

  it('writeback cache: a change of the same size shows at the next open; the kernel keeps its own size of the file', async () => {
    const s = await setup('c2o-wb', 'stratafs', WRITEBACK);
    try {
      for (const f of ['same', 'grow']) expect(await readFile(join(s.mnt, f), 'utf8')).toBe('old-data\n');
      await writeFile(join(s.l, 'same'), 'new-data\n');
      await writeFile(join(s.l, 'grow'), 'new-data, longer\n');
      expect(await readFile(join(s.mnt, 'same'), 'utf8')).toBe('new-data\n');
      // with WRITEBACK_CACHE the kernel takes no size or mtime of a regular file from the server
      // (fuse_get_cache_mask): the new data, cut at the size it had
      expect(await readFile(join(s.mnt, 'grow'), 'utf8')).toBe('new-data,');
      expect((await stat(join(s.mnt, 'grow'))).size).toBe(9);
    } finally {
      await s.handle.unmount();
    }
  }, 60_000);
});
