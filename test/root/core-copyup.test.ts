import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { code, getx, kernelView, makeLayers, open, readFile, root, setx, coreTree, type Layers } from './core-helpers.js';
import type { Overlay } from '../../src/core/overlay.js';
import { StatIdx } from '../../src/native/sys.js';

let L: Layers | undefined;
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  L?.cleanup(); L = undefined;
});

const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_APPEND } = fs.constants;

describe('core copy-up', () => {
  it('removexattr of a name the lower object lacks fails ENODATA without a copy-up (kernel 6.18); set with XATTR_REPLACE copies up', async () => {
    L = makeLayers({ l0: { 'f': { xattr: { 'user.a': '1' } } } }, 1);
    O = await open(L);
    expect(await code(O.removexattr('/f', 'user.nope', root))).toBe('ENODATA');
    expect(fs.existsSync(path.join(L.upper, 'f'))).toBe(false);
    expect(await code(O.setxattr('/f', 'user.zz', Buffer.from('1'), 2 /* XATTR_REPLACE */, root))).toBe('ENODATA');
    expect(fs.existsSync(path.join(L.upper, 'f'))).toBe(true);
    await O.removexattr('/f', 'user.a', root);
    expect(getx(path.join(L.upper, 'f'), 'user.a')).toBeUndefined();
  });

  it('copies no opaque marker up: the upper copy of a lower opaque dir (any format) keeps showing its entries', async () => {
    L = makeLayers({
      l0: {
        'uo': { xattr: { 'user.overlay.opaque': 'y', 'user.keep': 'k' }, dir: true }, 'uo/new': 'n',
        'fo': { xattr: { 'user.fuseoverlayfs.opaque': 'y' }, dir: true }, 'fo/new': 'n',
      },
      l1: { 'uo/old': 'hidden', 'fo/old': 'hidden' },
    });
    O = await open(L);
    for (const d of ['/uo', '/fo']) {
      const { fh } = await O.create(`${d}/made`, 0o644, O_WRONLY, root);
      await O.release(`${d}/made`, fh);
      expect((await coreTree(O, d)).sort()).toEqual(['made = ', 'new = n']);
    }
    expect(getx(path.join(L.upper, 'uo'), 'user.overlay.opaque')).toBeUndefined();
    expect(getx(path.join(L.upper, 'fo'), 'user.fuseoverlayfs.opaque')).toBeUndefined();
    expect(getx(path.join(L.upper, 'uo'), 'user.keep')).toBe('k');
  });

  it('keeps mode bits, owner, ns times and xattrs; writes origin; restores parent times', async () => {
    L = makeLayers({ l0: { 'd/f': 'data', 'd/l': { link: 'f' } } }, 1);
    const f = path.join(L.lowers[0]!, 'd/f');
    fs.chownSync(f, 1234, 5678);
    fs.chmodSync(f, 0o6755);
    fs.chownSync(path.join(L.lowers[0]!, 'd'), 1234, 5678);
    fs.chmodSync(path.join(L.lowers[0]!, 'd'), 0o1777);
    setx(f, 'user.keep', 'v');
    setx(f, 'trusted.overlay.opaque', 'y');
    execFileSync('touch', ['-h', '-d', '2001-02-03 04:05:06.123456789', f, path.join(L.lowers[0]!, 'd/l'), path.join(L.lowers[0]!, 'd')]);
    O = await open(L);
    const before = await O.getattr('/d/f');
    const dBefore = await O.getattr('/d');
    await O.setxattr('/d/f', 'user.new', Buffer.from('1'), 0, root);
    await O.utimens('/d/l', 'omit', { sec: 5, nsec: 7 }, root);
    const u = path.join(L.upper, 'd/f');
    const st = fs.lstatSync(u, { bigint: true });
    expect(Number(st.mode) & 0o7777).toBe(0o6755);
    expect([Number(st.uid), Number(st.gid)]).toEqual([1234, 5678]);
    expect(st.mtimeNs % 1_000_000_000n).toBe(123456789n);
    const ud = fs.lstatSync(path.join(L.upper, 'd'), { bigint: true });
    expect(Number(ud.mode) & 0o7777).toBe(0o1777);
    expect([Number(ud.uid), Number(ud.gid)]).toEqual([1234, 5678]);
    expect(ud.mtimeNs % 1_000_000_000n).toBe(123456789n);
    expect(getx(u, 'user.keep')).toBe('v');
    expect(getx(u, 'user.new')).toBe('1');
    expect(getx(u, 'trusted.overlay.opaque')).toBeUndefined();
    expect(getx(u, 'trusted.overlay.origin')?.charCodeAt(1)).toBe(0xfb);
    expect(getx(path.join(L.upper, 'd'), 'trusted.overlay.impure')).toBe('y');
    expect(fs.readFileSync(u, 'latin1')).toBe('data');
    const after = await O.getattr('/d/f');
    expect(after[StatIdx.ino]).toBe(before[StatIdx.ino]);
    const dAfter = await O.getattr('/d');
    expect(dAfter[StatIdx.mtimeNsec]).toBe(dBefore[StatIdx.mtimeNsec]);
    expect(dAfter[StatIdx.mtimeSec]).toBe(dBefore[StatIdx.mtimeSec]);
    const ls = fs.lstatSync(path.join(L.upper, 'd/l'), { bigint: true });
    expect(ls.isSymbolicLink()).toBe(true);
    expect(ls.mtimeNs).toBe(5_000_000_007n);
    expect(fs.readdirSync(path.join(L.work, 'work')).filter((n) => !n.startsWith('#wh'))).toEqual([]);
    expect(O.stats().copyUps.count).toBe(3);
    await O.close(); O = undefined;
    // The kernel reads the copy as the lower's continuation (origin): same tree.
    expect(kernelView(L)).toEqual(['d/', 'd/f = data', 'd/l -> f']);
  });

  it('keeps holes of sparse files', async () => {
    L = makeLayers({}, 1);
    const f = path.join(L.lowers[0]!, 'sparse');
    const fd = fs.openSync(f, 'w');
    fs.writeSync(fd, 'head', 0);
    fs.writeSync(fd, 'tail', 64 * 1024 * 1024);
    fs.closeSync(fd);
    O = await open(L);
    await O.chmod('/sparse', 0o600, root);
    const st = fs.statSync(path.join(L.upper, 'sparse'));
    expect(st.size).toBe(64 * 1024 * 1024 + 4);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024);
    expect(O.stats().copyUps.bytes).toBeLessThan(1024 * 1024);
  });

  it('O_TRUNC copies no data; two racing opens make one copy', async () => {
    L = makeLayers({ l0: { 'a': 'x'.repeat(100000), 'b': 'yyyy' } }, 1);
    O = await open(L);
    const { fh } = await O.open('/a', O_WRONLY | O_TRUNC, root);
    await O.release('/a', fh);
    expect(O.stats().copyUps).toEqual({ count: 1, bytes: 0 });
    expect(fs.statSync(path.join(L.upper, 'a')).size).toBe(0);
    const [r1, r2] = await Promise.all([O.open('/b', O_RDWR, root), O.open('/b', O_RDWR | O_APPEND, root)]);
    expect(O.stats().copyUps.count).toBe(2);
    await O.write('/b', r2.fh, Buffer.from('zz'), 2, 0);
    const buf = Buffer.alloc(10);
    const n = await O.read('/b', r1.fh, buf, 10, 0);
    expect(buf.subarray(0, n).toString()).toBe('yyyyzz');
    await O.release('/b', r1.fh);
    await O.release('/b', r2.fh);
  });

  it('a read-only handle opened before a copy-up reads the new data', async () => {
    L = makeLayers({ l0: { 'f': 'old' } }, 1);
    O = await open(L);
    const ro = await O.open('/f', O_RDONLY, root);
    const rw = await O.open('/f', O_WRONLY, root);
    await O.write('/f', rw.fh, Buffer.from('NEW'), 3, 0);
    const buf = Buffer.alloc(10);
    const n = await O.read('/f', ro.fh, buf, 10, 0);
    expect(buf.subarray(0, n).toString()).toBe('NEW');
    await O.release('/f', ro.fh);
    await O.release('/f', rw.fh);
  });

  it('copies a file over 4 GiB sparse, and writes beyond 4 GiB', async () => {
    L = makeLayers({}, 1);
    const f = path.join(L.lowers[0]!, 'big');
    const fd = fs.openSync(f, 'w');
    fs.writeSync(fd, 'end', 5 * 2 ** 30);
    fs.closeSync(fd);
    O = await open(L);
    const h = await O.open('/big', O_RDWR, root);
    await O.write('/big', h.fh, Buffer.from('X'), 1, 5 * 2 ** 30 + 3);
    const buf = Buffer.alloc(8);
    expect(await O.read('/big', h.fh, buf, 8, 5 * 2 ** 30)).toBe(4);
    expect(buf.subarray(0, 4).toString()).toBe('endX');
    expect((await O.fgetattr('/big', h.fh))[StatIdx.size]).toBe(5 * 2 ** 30 + 4);
    await O.fallocate('/big', h.fh, 0, 6 * 2 ** 30, 4096);
    expect((await O.fgetattr('/big', h.fh))[StatIdx.size]).toBe(6 * 2 ** 30 + 4096);
    await O.release('/big', h.fh);
  });

  it('a long copy-up does not stall other operations', async () => {
    L = makeLayers({ l0: { 'other/f': 'o' } }, 1);
    const size = 96 * 1024 * 1024;
    fs.writeFileSync(path.join(L.lowers[0]!, 'big'), Buffer.alloc(size, 0x61));
    O = await open(L);
    const o = O;
    let copyDone = 0;
    const t0 = performance.now();
    const pending = o.open('/big', O_RDWR, root).then((r) => { copyDone = performance.now(); return r; });
    // While the data moves on the addon's thread, the loop serves other requests.
    let served = 0;
    let lastServed = 0;
    while (copyDone === 0) {
      await o.getattr('/other/f');
      const dh = await o.opendir('/', root);
      await o.readdir('/', dh);
      await o.releasedir('/', dh);
      served++;
      lastServed = performance.now();
      await new Promise((r) => setImmediate(r));
    }
    const h = await pending;
    expect(served).toBeGreaterThan(1);
    expect(lastServed - t0).toBeGreaterThan(0);
    expect(O.stats().copyUps).toEqual({ count: 1, bytes: size });
    expect(fs.statSync(path.join(L.upper, 'big')).size).toBe(size);
    await O.release('/big', h.fh);
  }, 60_000);

  it('ENOSPC during a copy-up leaves no partial file in the upper', async () => {
    L = makeLayers({ l0: { 'd/small': 's' } }, 1);
    fs.writeFileSync(path.join(L.lowers[0]!, 'd/big'), Buffer.alloc(3 * 1024 * 1024, 0x62));
    const small = path.join(L.dir, 'small');
    fs.mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    try {
      fs.mkdirSync(path.join(small, 'u')); fs.mkdirSync(path.join(small, 'w'));
      O = await open(L, { upperdir: path.join(small, 'u'), workdir: path.join(small, 'w') });
      expect(await code(O.open('/d/big', O_RDWR, root))).toBe('ENOSPC');
      expect(fs.existsSync(path.join(small, 'u/d/big'))).toBe(false);
      expect(fs.readdirSync(path.join(small, 'w/work')).filter((n) => !n.startsWith('#wh'))).toEqual([]);
      expect((await O.getattr('/d/big'))[StatIdx.size]).toBe(3 * 1024 * 1024);
      await O.chmod('/d/small', 0o600, root);
      expect(await readFile(O, '/d/small')).toBe('s');
    } finally {
      await O?.close(); O = undefined;
      execFileSync('umount', [small]);
    }
  });

  it('read-only mounts refuse every change with EROFS', async () => {
    L = makeLayers({ l0: { 'f': 'x', 'd/g': 'y' } }, 1);
    O = await open(L, { upperdir: undefined, workdir: undefined });
    expect(await readFile(O, '/f')).toBe('x');
    expect(await code(O.open('/f', O_WRONLY, root))).toBe('EROFS');
    expect(await code(O.chmod('/f', 0o600, root))).toBe('EROFS');
    expect(await code(O.unlink('/f', root))).toBe('EROFS');
    expect(await code(O.mkdir('/n', 0o755, root))).toBe('EROFS');
    expect(await code(O.rename('/f', '/h', 0, root))).toBe('EROFS');
    expect(await code(O.setxattr('/f', 'user.a', Buffer.from('1'), 0, root))).toBe('EROFS');
    expect(await code(O.truncate('/f', 0, root))).toBe('EROFS');
    expect((await O.statfs('/')).bsize).toBeGreaterThan(0);
    expect(await coreTree(O)).toEqual(['d/', 'd/g = y', 'f = x']);
  });
});
