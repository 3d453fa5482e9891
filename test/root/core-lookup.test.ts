import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { code, coreTree, createFile, getx, ino, kernelView, ls, makeLayers, open, readFile, root, tree, type Layers } from './core-helpers.js';
import { openOverlay, type Overlay } from '../../src/core/overlay.js';
import type { Entry } from '../../src/core/ctx.js';
import { LookupCache } from '../../src/core/lookup-cache.js';
import { cacheBounds } from '../../src/core/config.js';
import { configFor } from './core-helpers.js';
import { scratchTmpfs } from '../harness/mounts.js';

const openOverlayOn = (l: Layers, lowers: string[]): Promise<Overlay> => openOverlay(configFor(l, { lowerdirs: lowers }), () => undefined);

let L: Layers | undefined;
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  L?.cleanup(); L = undefined;
});

describe('core lookup and merge', () => {
  it('merges directories top down; non-directories and markers stop the merge', async () => {
    L = makeLayers({
      l0: { 'd/a': 'l0a', 'd/f': { dir: true }, 'x': 'l0x', 'd/.wh.gone': '', 'op': { opaque: true }, 'op/o0': '0', 'oci/.wh..wh..opq': '', 'oci/n': 'new' },
      l1: { 'd/a': 'l1a', 'd/b': 'l1b', 'd/f/deep': 'hidden', 'd/gone': 'g', 'x/inner': 'no', 'op/o1': '1', 'oci/old': 'o' },
      upper: { 'd/c': 'uc', 'd/b': { wh: true } },
    });
    O = await open(L);
    expect(await ls(O, '/')).toEqual(['d', 'oci', 'op', 'x']);
    expect(await ls(O, '/d')).toEqual(['a', 'c', 'f']);
    expect(await readFile(O, '/d/a')).toBe('l0a');
    expect(await ls(O, '/d/f')).toEqual(['deep']);
    expect(await ls(O, '/op')).toEqual(['o0']);
    expect(await ls(O, '/oci')).toEqual(['n']);
    expect(await code(O.getattr('/d/b'))).toBe('ENOENT');
    expect(await code(O.getattr('/d/gone'))).toBe('ENOENT');
    expect(await code(O.getattr('/d/.wh.gone'))).toBe('ENOENT');
    expect(await code(O.getattr('/x/inner'))).toBe('ENOTDIR');
    // The kernel does not read OCI .wh. files (an intended difference): compare the rest.
    const k = kernelView(L).filter((x) => !x.startsWith('oci/') && !x.startsWith('d/.wh.') && !x.startsWith('d/gone'));
    expect((await coreTree(O)).filter((x) => !x.startsWith('oci/'))).toEqual(k);
  });

  it('reads user.overlay.opaque, user.fuseoverlayfs.opaque and .wh. whiteouts of fuse-overlayfs uppers', async () => {
    L = makeLayers({
      l0: { 'a': { xattr: { 'user.overlay.opaque': 'y' }, dir: true }, 'b': { xattr: { 'user.fuseoverlayfs.opaque': 'y' }, dir: true }, 'c': { xattr: { 'trusted.overlay.opaque': 'n' }, dir: true } },
      l1: { 'a/x': '1', 'b/y': '2', 'c/z': '3', 'w': 'w' },
      upper: { '.wh.w': '' },
    });
    O = await open(L);
    expect(await ls(O, '/')).toEqual(['a', 'b', 'c']);
    expect(await ls(O, '/a')).toEqual([]);
    expect(await ls(O, '/b')).toEqual([]);
    expect(await ls(O, '/c')).toEqual(['z']);
  });

  it('follows kernel redirects (relative and absolute)', async () => {
    L = makeLayers({ l0: { 'a/sub/f': 'F', 'b/g': 'G' } }, 1);
    // Let the kernel write the redirects.
    const kw = path.join(L.dir, 'kw0'); fs.mkdirSync(kw);
    const { execFileSync } = await import('node:child_process');
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${L.lowers[0]},upperdir=${L.upper},workdir=${kw},redirect_dir=on`, L.mnt]);
    try {
      fs.renameSync(path.join(L.mnt, 'a'), path.join(L.mnt, 'a2'));
      fs.mkdirSync(path.join(L.mnt, 'n'));
      fs.renameSync(path.join(L.mnt, 'b'), path.join(L.mnt, 'n/b2'));
    } finally { execFileSync('umount', [L.mnt]); }
    O = await open(L);
    expect(await coreTree(O)).toEqual(['a2/', 'a2/sub/', 'a2/sub/f = F', 'n/', 'n/b2/', 'n/b2/g = G']);
  });

  it('follows a relative redirect met on an absolute one; renaming such a dir writes what the kernel writes', async () => {
    // l0 p/rel carries a kernel relative redirect to p/relorig (whited out in l0, content below).
    L = makeLayers({
      l0: { 'p/rel': { dir: true, xattr: { 'trusted.overlay.redirect': 'relorig' } }, 'p/relorig': { wh: true } },
      l1: { 'p/relorig/r1': 'r1' },
      l2: { 'p/relorig/r2': 'r2' },
    }, 3);
    O = await open(L);
    expect(await ls(O, '/p/rel')).toEqual(['r1', 'r2']);
    await O.rename('/p/rel', '/rel2', 0, root);
    // The kernel (6.18, redirect_dir=on) writes the path of the lower dir's own name: "/p/rel".
    expect(getx(path.join(L.upper, 'rel2'), 'trusted.overlay.redirect')).toBe('/p/rel');
    expect(await ls(O, '/rel2')).toEqual(['r1', 'r2']);
    await O.rename('/rel2', '/rel3', 0, root);
    expect(getx(path.join(L.upper, 'rel3'), 'trusted.overlay.redirect')).toBe('/p/rel');
    await O.mkdir('/q', 0o755, root);
    await O.rename('/rel3', '/q/rel4', 0, root);
    expect(await readFile(O, '/q/rel4/r2')).toBe('r2');
    await O.close(); O = undefined;
    O = await open(L);
    const mine = await coreTree(O);
    expect(mine).toEqual(['p/', 'q/', 'q/rel4/', 'q/rel4/r1 = r1', 'q/rel4/r2 = r2']);
    expect(kernelView(L)).toEqual(mine);
  });

  it('walks an absolute redirect component by component like the kernel: opaque, whiteout, redirect on the way', async () => {
    const rd = (v: string) => ({ dir: true as const, xattr: { 'trusted.overlay.redirect': v } });
    L = makeLayers({
      l0: {
        'a': { opaque: true }, 'a/b/c0': 'c0', // opaque on the way: nothing below l0
        'q': rd('z'), 'q/b/q0': 'q0', // relative redirect on the way: layers below are searched at z/b
        'w': { wh: true }, // whiteout on the way: nothing below
      },
      l1: { 'a/b/c1': 'c1', 'z/b/z1': 'z1', 'z/k/b/k1': 'k1', 'w/b/w1': 'w1', 'm/b/m1': 'm1' },
      l2: { 'a/b/c2': 'c2', 'm/b/m2': 'm2' },
      upper: { 'X': rd('/a/b'), 'Y': rd('/q/b'), 'Z': rd('/w/b'), 'V': rd('/m/b'), 'W': rd('/q/k/b'), 'a': { wh: true }, 'q': { wh: true }, 'm': { wh: true }, 'z': { wh: true } },
    }, 3);
    O = await open(L);
    expect(await ls(O, '/X')).toEqual(['c0']);
    expect(await ls(O, '/Y')).toEqual(['q0', 'z1']);
    expect(await ls(O, '/Z')).toEqual([]);
    expect(await ls(O, '/V')).toEqual(['m1', 'm2']);
    expect(await ls(O, '/W')).toEqual(['k1']);
    expect(await coreTree(O)).toEqual(kernelView(L));
  });

  it('reads a kernel upper: copied-up files keep the origin number, hard links made by the kernel share one', async () => {
    L = makeLayers({ l0: { 'd/low': 'x', 'd/solo': 'y' } }, 1);
    const lowIno = fs.statSync(path.join(L.lowers[0]!, 'd/solo')).ino;
    const kw = path.join(L.dir, 'kw0'); fs.mkdirSync(kw);
    const { execFileSync } = await import('node:child_process');
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${L.lowers[0]},upperdir=${L.upper},workdir=${kw}`, L.mnt]);
    try {
      fs.linkSync(path.join(L.mnt, 'd/low'), path.join(L.mnt, 'd/low.ln'));
      fs.chmodSync(path.join(L.mnt, 'd/solo'), 0o600);
    } finally { execFileSync('umount', [L.mnt]); }
    O = await open(L);
    expect(ino(await O.getattr('/d/low'))).toBe(ino(await O.getattr('/d/low.ln')));
    expect(ino(await O.getattr('/d/solo'))).toBe(lowIno);
  });

  it('never resolves through a symlink inside a layer', async () => {
    L = makeLayers({ l0: { 'etc': { link: '/etc' } }, l1: { 'etc/x': 'x' } });
    O = await open(L);
    expect(await code(O.getattr('/etc/passwd'))).toBe('ENOTDIR');
    expect(await O.readlink('/etc')).toBe('/etc');
  });

  it('keeps positive and negative results and drops exactly what changes', async () => {
    L = makeLayers({ l0: { 'd/s/f': 'f', 'd/s/t/u': 'u' } });
    O = await open(L);
    await O.getattr('/d/s/f');
    expect(await code(O.getattr('/d/s/nope'))).toBe('ENOENT');
    const before = O.stats().lookupCache;
    await O.getattr('/d/s/f');
    expect(await code(O.getattr('/d/s/nope'))).toBe('ENOENT');
    const after = O.stats().lookupCache;
    expect(after.hits - before.hits).toBe(2);
    expect(after.misses - before.misses).toBe(0);
    await createFile(O, '/d/s/nope', 'now');
    expect(await readFile(O, '/d/s/nope')).toBe('now');
    // Directory rename drops descendants.
    await O.rename('/d/s', '/d/r', 0, root);
    expect(await code(O.getattr('/d/s/f'))).toBe('ENOENT');
    expect(await code(O.getattr('/d/s'))).toBe('ENOENT');
    expect(await readFile(O, '/d/r/t/u')).toBe('u');
    expect(await readFile(O, '/d/r/nope')).toBe('now');
    // rmdir of a subtree drops it too.
    await O.unlink('/d/r/t/u', root);
    await O.rmdir('/d/r/t', root);
    expect(await code(O.getattr('/d/r/t/u'))).toBe('ENOENT');
    expect(await code(O.getattr('/d/r/t'))).toBe('ENOENT');
    await O.mkdir('/d/r/t', 0o755, root);
    expect(await ls(O, '/d/r/t')).toEqual([]);
    const t = await coreTree(O);
    await O.close(); O = undefined;
    expect(kernelView(L)).toEqual(t);
  });

  it('an OCI whiteout carried by a directory rename still hides (upper .wh. scan cache is dropped)', async () => {
    L = makeLayers({ l0: { 'src/foo': 'hidden', 'src/bar': 'shown' }, upper: { 'src/.wh.foo': '' } }, 1);
    O = await open(L);
    await O.mkdir('/dst', 0o755, root);
    expect(await code(O.getattr('/dst/zzz'))).toBe('ENOENT');
    await O.rmdir('/dst', root);
    await O.mkdir('/dst', 0o755, root);
    expect(await code(O.getattr('/dst/foo'))).toBe('ENOENT');
    await O.rmdir('/dst', root);
    await O.rename('/src', '/dst', 0, root);
    expect(await ls(O, '/dst')).toEqual(['bar']);
    expect(await code(O.getattr('/dst/foo'))).toBe('ENOENT');
  });

  it('st_ino is stable across copy-up and unique', async () => {
    L = makeLayers({ l0: { 'f': 'a', 'd/g': 'b' }, l1: { 'd/h': 'c' } });
    O = await open(L);
    const i1 = ino(await O.getattr('/f'));
    const id = ino(await O.getattr('/d'));
    await O.chmod('/f', 0o600, root);
    await O.chmod('/d', 0o700, root);
    expect(ino(await O.getattr('/f'))).toBe(i1);
    expect(ino(await O.getattr('/d'))).toBe(id);
    await O.link('/f', '/d/f2', root);
    expect(ino(await O.getattr('/d/f2'))).toBe(i1);
    const fh = await O.opendir('/d', root);
    const ents = await O.readdir('/d', fh);
    await O.releasedir('/d', fh);
    for (const e of ents) expect(e.ino).toBe(ino(await O.getattr('/d/' + e.name)));
    expect(new Set(ents.map((e) => e.ino)).size).toBe(ents.length);
  });

  it('layers on different filesystems get distinct inode number ranges (xino-like)', async () => {
    L = makeLayers({ l0: { 'a': 'ext' } }, 1);
    // a tmpfs of our own under the run's root, not the host's /dev/shm
    const tmpfs = scratchTmpfs('core-tmpfs');
    const shm = tmpfs.dir;
    try {
      fs.writeFileSync(path.join(shm, 'b'), 'tmpfs');
      O = await openOverlayOn(L, [L.lowers[0]!, shm]);
      const a = ino(await O.getattr('/a'));
      const b = ino(await O.getattr('/b'));
      expect(Math.floor(a / 2 ** 40)).not.toBe(Math.floor(b / 2 ** 40));
      expect(b % 2 ** 40).toBe(fs.statSync(path.join(shm, 'b')).ino);
      expect(O.describe().filesystems).toBe(2);
    } finally {
      await O?.close(); O = undefined;
      tmpfs.dispose();
    }
  });

  it('lists 100,000 entries completely', async () => {
    L = makeLayers({}, 1);
    const d = path.join(L.lowers[0]!, 'big');
    fs.mkdirSync(d);
    for (let i = 0; i < 100_000; i++) fs.writeFileSync(path.join(d, `f${i}`), '');
    O = await open(L, { lookupCacheSize: 1000 });
    const fh = await O.opendir('/big', root);
    const ents = await O.readdir('/big', fh);
    await O.releasedir('/big', fh);
    expect(ents.length).toBe(100_000);
    expect(new Set(ents.map((e) => e.name)).size).toBe(100_000);
  }, 120_000);

  it('tree helper sanity', () => {
    L = makeLayers({ l0: { a: 'x' } }, 1);
    expect(tree(L.lowers[0]!)).toEqual(['a = x']);
  });
});

describe('lookup cache bounds', () => {
  const entry = (path: string): Entry => ({ path, type: 0o100000, stack: [{ layer: 1, rel: path.slice(1) }], ino: 1, redirect: undefined, opaque: false });

  it('holds at most N entries of short paths, and at most its byte bound of long ones (fewer entries, not more memory)', () => {
    const c = new LookupCache(100);
    expect(c.maxBytes).toBe(cacheBounds(100).lookup);
    for (let i = 0; i < 1000; i++) c.setNegative(`/n${i}`);
    for (let i = 0; i < 1000; i++) c.setPositive(entry(`/s${i}`));
    expect(c.size).toBe(100);
    expect(c.bytes).toBeLessThanOrEqual(c.maxBytes);
    expect(c.get('/s999')).toBeDefined();
    const deep = '/' + Array.from({ length: 30 }, (_, i) => String(i).padEnd(100, 'x')).join('/');
    for (let i = 0; i < 1000; i++) c.setPositive(entry(`${deep}/${i}`));
    expect(c.bytes).toBeLessThanOrEqual(c.maxBytes);
    expect(c.size).toBeLessThan(20);
    expect(c.get(`${deep}/999`)).toBeDefined();
  });
});
