import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  code, coreTree, createFile, getx, kernelView, ls, makeLayers, open, readFile, root, tree, type Layers, type Node,
} from './core-helpers.js';
import type { Overlay } from '../../src/core/overlay.js';
import { StatIdx } from '../../src/native/sys.js';
import { WhiteoutWriter } from '../../src/core/whiteout.js';

let L: Layers | undefined;
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  L?.cleanup(); L = undefined;
});

const base: Record<string, Record<string, Node>> = {
  l0: { 'd/a': 'A', 'd/sub/x': 'X', 'e/': { dir: true }, 'f': 'F', 'g': 'G', 'm/k': 'K', 'ed': { dir: true } },
  l1: { 'd/b': 'B', 'd/sub/y': 'Y', 'h': 'H', 'm/j': 'J' },
};

describe('core namespace changes', () => {
  it('a renamed dir under a lower-redirected dir gets the redirect the kernel writes (ancestors by name)', async () => {
    L = makeLayers({
      l0: { 'moved': { dir: true, xattr: { 'trusted.overlay.redirect': '/orig' } }, 'orig': { wh: true } },
      l1: { 'orig/sub/b': 'b', 'orig/a': 'a' },
    });
    O = await open(L);
    await O.rename('/moved/sub', '/sub2', 0, root);
    // kernel 6.18, same rename: trusted.overlay.redirect="/moved/sub"
    expect(getx(path.join(L.upper, 'sub2'), 'trusted.overlay.redirect')).toBe('/moved/sub');
    expect(await ls(O, '/sub2')).toEqual(['b']);
    await O.mkdir('/n', 0o755, root);
    await O.rename('/moved', '/n/m2', 0, root);
    expect(getx(path.join(L.upper, 'n/m2'), 'trusted.overlay.redirect')).toBe('/moved');
    const mine = await coreTree(O);
    expect(mine).toEqual(['n/', 'n/m2/', 'n/m2/a = a', 'sub2/', 'sub2/b = b']);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(mine);
    O = await open(L);
    expect(await coreTree(O)).toEqual(mine);
  });

  it('rename between two names of a lower hard link renames (two objects to the kernel); between upper hard links does nothing', async () => {
    L = makeLayers({ l0: { 'hl1': 'h' } }, 1);
    fs.linkSync(path.join(L.lowers[0]!, 'hl1'), path.join(L.lowers[0]!, 'hl2'));
    O = await open(L);
    await O.rename('/hl1', '/hl2', 0, root);
    expect(await ls(O, '/')).toEqual(['hl2']);
    expect((await O.getattr('/hl2'))[StatIdx.nlink]).toBe(1);
    await O.link('/hl2', '/x', root);
    await O.rename('/hl2', '/x', 0, root);
    expect(await ls(O, '/')).toEqual(['hl2', 'x']);
    expect((await O.getattr('/x'))[StatIdx.nlink]).toBe(2);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(mine);
  });

  it('a redirect longer than the kernel redirect_max (256) is EXDEV, as the kernel', async () => {
    const long = Array.from({ length: 5 }, () => 'd'.repeat(60)).join('/');
    L = makeLayers({ l0: { [`${long}/x`]: 'x' } }, 1);
    O = await open(L);
    expect(await code(O.rename('/' + long, '/top', 0, root))).toBe('EXDEV'); // "/" + 304 bytes
    const four = long.split('/').slice(0, 4).join('/');
    await O.rename('/' + four, '/top', 0, root); // 244 bytes
    expect(getx(path.join(L.upper, 'top'), 'trusted.overlay.redirect')).toBe('/' + four);
    expect(await readFile(O, `/top/${'d'.repeat(60)}/x`)).toBe('x');
  });

  it('rename onto a non-empty directory: merged targets fail first (after EXDEV), pure upper ones after the copy-up, as the kernel', async () => {
    L = makeLayers({ l0: { 'src/x': 'x', 'tgt/y': 'y' }, upper: { 'pu/z': 'z' } }, 1);
    O = await open(L, { redirectDir: false });
    expect(await code(O.rename('/src', '/tgt', 0, root))).toBe('EXDEV');
    expect(await code(O.rename('/src', '/pu', 0, root))).toBe('EXDEV');
    await O.close(); O = undefined;
    O = await open(L);
    expect(await code(O.rename('/src', '/tgt', 0, root))).toBe('ENOTEMPTY');
    expect(fs.existsSync(path.join(L.upper, 'src'))).toBe(false);
    expect(await code(O.rename('/src', '/pu', 0, root))).toBe('ENOTEMPTY');
    // The kernel (6.18) has copied the source up and given it a redirect to its own name by then.
    expect(getx(path.join(L.upper, 'src'), 'trusted.overlay.redirect')).toBe('src');
    expect(await readFile(O, '/pu/z')).toBe('z');
    expect(await ls(O, '/src')).toEqual(['x']);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(mine);
  });

  it('unlink/rmdir leave kernel whiteouts sharing one inode; mkdir over a whiteout is opaque', async () => {
    L = makeLayers(base);
    O = await open(L);
    await O.unlink('/f', root);
    await O.unlink('/h', root);
    await O.unlink('/d/sub/x', root);
    await O.unlink('/d/sub/y', root);
    await O.rmdir('/d/sub', root);
    expect(await code(O.rmdir('/m', root))).toBe('ENOTEMPTY');
    expect(await code(O.rmdir('/f', root))).toBe('ENOENT');
    expect(await code(O.rmdir('/g', root))).toBe('ENOTDIR');
    expect(await code(O.unlink('/d', root))).toBe('EISDIR');
    await O.mkdir('/d/sub', 0o750, root);
    expect(await ls(O, '/d/sub')).toEqual([]);
    await createFile(O, '/f', 'newF');
    const wf = fs.lstatSync(path.join(L.upper, 'h'));
    expect(wf.isCharacterDevice() && wf.rdev === 0).toBe(true);
    expect(wf.mode & 0o7777).toBe(0);
    expect(wf.nlink).toBeGreaterThan(1);
    expect(getx(path.join(L.upper, 'd/sub'), 'trusted.overlay.opaque')).toBe('y');
    expect(fs.statSync(path.join(L.upper, 'd/sub')).mode & 0o777).toBe(0o750);
    expect(O.stats().whiteoutsWritten).toBe(5);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(mine);
    expect(mine).toContain('f = newF');
    expect(mine).not.toContain('h = H');
  });

  it('new directories in a merged parent are opaque, like the kernel', async () => {
    L = makeLayers(base);
    O = await open(L);
    await O.mkdir('/d/new', 0o755, root);
    await O.mkdir('/newtop', 0o755, root);
    expect(getx(path.join(L.upper, 'd/new'), 'trusted.overlay.opaque')).toBe('y');
    await O.mkdir('/newtop/in', 0o755, root);
    expect(getx(path.join(L.upper, 'newtop/in'), 'trusted.overlay.opaque')).toBeUndefined();
  });

  it('renames directories with lower content through kernel redirects', async () => {
    L = makeLayers(base);
    O = await open(L);
    await O.rename('/d', '/d2', 0, root);
    await O.mkdir('/n', 0o755, root);
    await O.rename('/d2/sub', '/n/s2', 0, root);
    await O.rename('/m', '/n/m2', 0, root);
    await O.rename('/n/m2', '/n/m3', 0, root);
    expect(await ls(O, '/n/s2')).toEqual(['x', 'y']);
    expect(await readFile(O, '/n/m3/j')).toBe('J');
    expect(getx(path.join(L.upper, 'd2'), 'trusted.overlay.redirect')).toBe('d');
    expect(getx(path.join(L.upper, 'n/s2'), 'trusted.overlay.redirect')).toBe('/d/sub');
    expect(getx(path.join(L.upper, 'n/m3'), 'trusted.overlay.redirect')).toBe('/m');
    expect(fs.lstatSync(path.join(L.upper, 'd')).isCharacterDevice()).toBe(true);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(mine);
    // And stratafs reads its own upper back the same after a remount.
    O = await open(L);
    expect(await coreTree(O)).toEqual(mine);
  });

  it('userxattr: user.overlay.* markers; lower directories rename by a full opaque copy the kernel reads', async () => {
    L = makeLayers(base);
    O = await open(L, { userxattr: true });
    await O.unlink('/d/sub/x', root);
    await O.rename('/d', '/n', 0, root);
    await O.rmdir('/e', root);
    await O.mkdir('/e', 0o755, root);
    expect(getx(path.join(L.upper, 'e'), 'user.overlay.opaque')).toBe('y');
    expect(getx(path.join(L.upper, 'n'), 'user.overlay.opaque')).toBe('y');
    expect(getx(path.join(L.upper, 'n/sub'), 'user.overlay.opaque')).toBe('y');
    expect(getx(path.join(L.upper, 'n'), 'user.overlay.redirect')).toBeUndefined();
    expect(await ls(O, '/n/sub')).toEqual(['y']);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L, 'userxattr')).toEqual(mine);
  });

  it('without mknod: .wh. whiteout files that fuse-overlayfs reads back the same', async () => {
    L = makeLayers(base);
    O = await open(L);
    // What openOverlay picks when the mknod probe fails (an unprivileged upper).
    O.ctx.wh = new WhiteoutWriter(O.ctx.workfd, false);
    await O.unlink('/f', root);
    await O.unlink('/d/b', root);
    await O.unlink('/d/sub/x', root);
    await O.unlink('/d/sub/y', root);
    await O.rmdir('/d/sub', root);
    await O.rename('/m/k', '/m/k2', 0, root);
    await O.rename('/h', '/h2', 0, root);
    await createFile(O, '/f', 'again');
    expect(fs.existsSync(path.join(L.upper, '.wh.h'))).toBe(true);
    expect(fs.existsSync(path.join(L.upper, 'd/.wh.sub'))).toBe(true);
    expect(fs.existsSync(path.join(L.upper, '.wh.f'))).toBe(false);
    const mine = await coreTree(O);
    await O.close(); O = undefined;
    expect(mine).not.toContain('h = H');
    expect(mine).toContain('f = again');
    O = await open(L);
    expect(await coreTree(O)).toEqual(mine);
    await O.close(); O = undefined;
    // fuse-overlayfs reads .wh. files: same view.
    const fw = path.join(L.dir, 'fw'); fs.mkdirSync(fw);
    execFileSync('fuse-overlayfs', ['-o', `lowerdir=${L.lowers.join(':')},upperdir=${L.upper},workdir=${fw}`, L.mnt]);
    try {
      expect(tree(L.mnt)).toEqual(mine);
    } finally {
      execFileSync('umount', [L.mnt]);
    }
  });

  it('redirect_dir off: EXDEV for directories with lower content only', async () => {
    L = makeLayers(base);
    O = await open(L, { redirectDir: false });
    expect(await code(O.rename('/d', '/d2', 0, root))).toBe('EXDEV');
    await O.mkdir('/up', 0o755, root);
    await createFile(O, '/up/f', '1');
    expect(await code(O.rename('/up', '/up2', 0, root))).toBe('OK');
    expect(await code(O.rename('/f', '/d/f', 0, root))).toBe('OK');
  });

  it('rename(2) errors and replacement semantics match the kernel', async () => {
    const cases: [string, string][] = [
      ['/f', '/g'], ['/f', '/d'], ['/d', '/f'], ['/d', '/m'], ['/e', '/ed'], ['/ed', '/e'], ['/d', '/d/sub/z'],
      ['/d/sub', '/d'], ['/nope', '/x'], ['/f', '/nope/x'], ['/f', '/g/x'], ['/h', '/d/sub/x'], ['/d/a', '/d/a'],
      ['/m/k', '/newname'], ['/e', '/d/sub/e2'],
    ];
    for (const [from, to] of cases) {
      L = makeLayers(base);
      // The kernel's result
      const kw = path.join(L.dir, 'kw'); fs.mkdirSync(kw);
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${L.lowers.join(':')},upperdir=${L.upper},workdir=${kw},redirect_dir=on`, L.mnt]);
      let kcode = 'OK';
      let ktree: string[];
      try {
        try { fs.renameSync(L.mnt + from, L.mnt + to); } catch (e) { kcode = (e as NodeJS.ErrnoException).code!; }
        ktree = tree(L.mnt);
      } finally { execFileSync('umount', [L.mnt]); }
      L.cleanup();
      L = makeLayers(base);
      O = await open(L);
      const mcode = await code(O.rename(from, to, 0, root));
      const mtree = await coreTree(O);
      await O.close(); O = undefined;
      if (process.env.SHOWCODES) console.log(`${from} -> ${to}: ${mcode} kernel ${kcode}`);
      expect(`${from} -> ${to}: ${mcode}`).toBe(`${from} -> ${to}: ${kcode}`);
      expect(mtree).toEqual(ktree);
      expect(kernelView(L)).toEqual(ktree);
      L.cleanup(); L = undefined;
    }
  }, 120_000);

  it('names: .wh. prefix EINVAL, 255 bytes ok, 256 ENAMETOOLONG, non-UTF-8 bytes kept', async () => {
    L = makeLayers(base);
    O = await open(L);
    expect(await code(O.mkdir('/.wh.x', 0o755, root))).toBe('EINVAL');
    expect(await code(createFile(O, '/d/.wh.y', ''))).toBe('EINVAL');
    expect(await code(O.rename('/f', '/.wh.f', 0, root))).toBe('EINVAL');
    expect(await code(O.mkdir('/' + 'n'.repeat(255), 0o755, root))).toBe('OK');
    expect(await code(O.mkdir('/' + 'n'.repeat(256), 0o755, root))).toBe('ENAMETOOLONG');
    expect(await code(O.getattr('/' + 'n'.repeat(256)))).toBe('ENAMETOOLONG');
    const bytes = '/caf\xe9';
    await createFile(O, bytes, 'latin');
    expect(fs.readdirSync(L.upper, { encoding: 'buffer' }).some((b) => b.equals(Buffer.from('caf\xe9', 'latin1')))).toBe(true);
    expect(await readFile(O, bytes)).toBe('latin');
  });

  it('new objects belong to the caller; setgid directories pass their group on', async () => {
    L = makeLayers(base);
    const sg = path.join(L.lowers[0]!, 'sg');
    fs.mkdirSync(sg); fs.chownSync(sg, 0, 4242); fs.chmodSync(sg, 0o2775);
    O = await open(L);
    const alice = { uid: 1001, gid: 1002, pid: 1, umask: 0o022 };
    await createFile(O, '/d/af', 'a', 0o640, alice);
    await O.mkdir('/sg/sub', 0o755, alice);
    await O.symlink('target', '/sg/ln', alice);
    await O.mknod('/d/fifo', 0o010644, 0, alice);
    const a = await O.getattr('/d/af');
    expect([a[StatIdx.uid], a[StatIdx.gid], a[StatIdx.mode]! & 0o7777]).toEqual([1001, 1002, 0o640]);
    const s = await O.getattr('/sg/sub');
    expect([s[StatIdx.uid], s[StatIdx.gid], s[StatIdx.mode]! & 0o7777]).toEqual([1001, 4242, 0o2755]);
    const l = await O.getattr('/sg/ln');
    expect([l[StatIdx.uid], l[StatIdx.gid]]).toEqual([1001, 4242]);
    expect((await O.getattr('/d/fifo'))[StatIdx.mode]! & 0o170000).toBe(0o010000);
  });

  it('mknod of a whiteout (char 0/0) is refused with EPERM before the parent is copied up, as ovl_mknod refuses it', async () => {
    // found by npm run fuzz: stratafs made it, copied d up, and the new whiteout hid its own name (ENOENT)
    L = makeLayers(base);
    O = await open(L);
    await expect(O.mknod('/d/wh', 0o020644, 0, root)).rejects.toMatchObject({ code: 'EPERM', path: '/d/wh' });
    expect(fs.existsSync(path.join(L.upper, 'd'))).toBe(false);
    await expect(O.mknod('/d/a', 0o020644, 0, root)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(O.mknod('/nodir/wh', 0o020644, 0, root)).rejects.toMatchObject({ code: 'ENOENT' });
    // any other device number is a device like any other
    await O.mknod('/d/null', 0o020644, (1 << 8) | 3, root);
    expect((await O.getattr('/d/null'))[StatIdx.rdev]).toBe((1 << 8) | 3);
    expect(await ls(O, '/d')).toEqual(['a', 'b', 'null', 'sub']);
  });

  it('copies of lower hard links are separate files with their own numbers, as in the kernel', async () => {
    L = makeLayers({ l0: { 'h1': 'x' } }, 1);
    fs.linkSync(path.join(L.lowers[0]!, 'h1'), path.join(L.lowers[0]!, 'h2'));
    O = await open(L);
    expect((await O.getattr('/h1'))[StatIdx.ino]).toBe((await O.getattr('/h2'))[StatIdx.ino]);
    await O.chmod('/h1', 0o600, root);
    expect((await O.getattr('/h1'))[StatIdx.ino]).not.toBe((await O.getattr('/h2'))[StatIdx.ino]);
  });

  it('link: both names report one st_ino, also over a whiteout', async () => {
    L = makeLayers(base);
    O = await open(L);
    await O.unlink('/g', root);
    await O.link('/f', '/g', root);
    await O.link('/f', '/d/f3', root);
    const i = (await O.getattr('/f'))[StatIdx.ino];
    expect((await O.getattr('/g'))[StatIdx.ino]).toBe(i);
    expect((await O.getattr('/d/f3'))[StatIdx.ino]).toBe(i);
    expect((await O.getattr('/g'))[StatIdx.nlink]).toBe(3);
    expect(await code(O.link('/d', '/d9', root))).toBe('EPERM');
    expect(await code(O.link('/f', '/h', root))).toBe('EEXIST');
  });

  it('xattrs: overlay names hidden, trusted.overlay.* stored escaped like kernel 6.7+', async () => {
    L = makeLayers({ l0: { 'o': { opaque: true }, 'o/f': '1', 'uo': { xattr: { 'user.overlay.opaque': 'y', 'user.x': '1' }, dir: true } } }, 1);
    O = await open(L);
    expect(await O.listxattr('/o')).toEqual([]);
    expect(await O.listxattr('/uo')).toEqual(['user.x']);
    expect(await code(O.setxattr('/uo', 'user.overlay.opaque', Buffer.from('y'), 0, root))).toBe('EPERM');
    expect(await code(O.getxattr('/o', 'trusted.overlay.opaque'))).toBe('ENODATA');
    await O.setxattr('/o', 'trusted.overlay.foo', Buffer.from('bar'), 0, root);
    await O.setxattr('/o', 'user.plain', Buffer.from('p'), 0, root);
    expect(getx(path.join(L.upper, 'o'), 'trusted.overlay.overlay.foo')).toBe('bar');
    expect((await O.listxattr('/o')).sort()).toEqual(['trusted.overlay.foo', 'user.plain']);
    expect((await O.getxattr('/o', 'trusted.overlay.foo')).toString()).toBe('bar');
    expect(await code(O.setxattr('/o', 'user.fuseoverlayfs.opaque', Buffer.from('y'), 0, root))).toBe('EPERM');
    await O.removexattr('/o', 'trusted.overlay.foo', root);
    expect(await O.listxattr('/o')).toEqual(['user.plain']);
  });

  it('refuses an upper made by the kernel with index=on, naming the feature', async () => {
    L = makeLayers(base);
    const kw = path.join(L.dir, 'kwi'); fs.mkdirSync(kw);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${L.lowers.join(':')},upperdir=${L.upper},workdir=${kw},index=on`, L.mnt]);
    try { fs.appendFileSync(path.join(L.mnt, 'f'), 'x'); } finally { execFileSync('umount', [L.mnt]); }
    const e = await open(L, { workdir: kw }).then(() => 'opened', (err: Error) => err.message);
    expect(e).toMatch(/index feature/);
  });

  it('locks the workdir, empties work/, refuses unknown features', async () => {
    L = makeLayers(base);
    fs.mkdirSync(path.join(L.work, 'work/stale'), { recursive: true });
    O = await open(L);
    expect(fs.readdirSync(path.join(L.work, 'work'))).toEqual([]);
    expect(await code(open(L))).toBe('EBUSY');
    await O.close(); O = undefined;
    fs.mkdirSync(path.join(L.work, 'index/x'), { recursive: true });
    const e = await open(L).then(() => 'opened', (err: Error) => err.message);
    expect(e).toMatch(/index/);
    fs.rmSync(path.join(L.work, 'index'), { recursive: true });
    fs.writeFileSync(path.join(L.upper, 'f'), 'meta');
    execFileSync('setfattr', ['-n', 'trusted.overlay.metacopy', '-v', '', path.join(L.upper, 'f')]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0x00fb', path.join(L.upper, 'f')]);
    O = await open(L);
    expect(await code(O.getattr('/f'))).toBe('EIO');
    expect(L.log.join('\n')).toMatch(/metacopy/);
  });
});
