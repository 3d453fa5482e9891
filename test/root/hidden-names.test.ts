/**
 * Files unlinked while open under fuse_api=highlevel (fuse/highlevel/hidden-names.ts
 * over the core's handle-based calls), driven the way libfuse 2.9 without
 * hard_remove drives the adapter: getattr probes of a `.fuse_hidden` name,
 * rename(path, hidden), calls on the hidden name, release, unlink(hidden).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { code, kernelView, ls, makeLayers, open, root, tree, type Layers } from './core-helpers.js';
import type { Overlay } from '../../src/core/overlay.js';
import { HiddenNames } from '../../src/fuse/highlevel/hidden-names.js';
import { StatIdx } from '../../src/native/sys.js';

let L: Layers | undefined;
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  L?.cleanup(); L = undefined;
});

const { O_RDONLY, O_RDWR, O_WRONLY } = fs.constants;
const H1 = '.fuse_hidden0000000500000001';
const H2 = '.fuse_hidden0000000500000002';

/** What libfuse's hide_node does: probe the name (must be ENOENT), then rename onto it. */
async function hide(o: HiddenNames, p: string, hidden: string): Promise<void> {
  expect(await code(o.getattr(hidden))).toBe('ENOENT');
  await o.rename(p, hidden, 0, root);
}

const noHiddenOnDisk = (l: Layers): void => {
  for (const d of [l.upper, l.work]) expect(tree(d).filter((n) => n.includes('.fuse_hidden'))).toEqual([]);
};

describe('fuse_api=highlevel: files unlinked while open, under .fuse_hidden names', () => {
  it('a copied-up file: real unlink (whiteout), the hidden name serves the fd, nothing hidden on disk', async () => {
    L = makeLayers({ l0: { 'd/f': 'lower', 'd/keep': 'k' } }, 1);
    O = await open(L);
    const H = new HiddenNames(O);
    const h = await H.open('/d/f', O_RDWR, root);
    const ino = (await H.getattr('/d/f'))[StatIdx.ino];
    await hide(H, '/d/f', `/d/${H1}`);
    const hp = `/d/${H1}`;
    expect(await code(H.getattr('/d/f'))).toBe('ENOENT');
    expect(await ls(O, '/d')).toEqual(['keep']);
    expect(fs.lstatSync(path.join(L.upper, 'd/f')).isCharacterDevice()).toBe(true);
    noHiddenOnDisk(L);

    await H.write(hp, h.fh, Buffer.from('UP'), 2, 0);
    const buf = Buffer.alloc(10);
    expect(buf.subarray(0, await H.read(hp, h.fh, buf, 10, 0)).toString()).toBe('UPwer');
    const st = await H.getattr(hp);
    expect(st[StatIdx.nlink]).toBe(0);
    expect(st[StatIdx.ino]).toBe(ino);
    expect((await H.fgetattr(hp, h.fh))[StatIdx.nlink]).toBe(0);

    await H.chmod(hp, 0o100600, root);
    await H.chown(hp, 1000, 0xffffffff, root);
    await H.utimens(hp, { sec: 1000, nsec: 5 }, 'omit', root);
    await H.truncate(hp, 3, root);
    await H.setxattr(hp, 'user.k', Buffer.from('v'), 0, root);
    const a = await H.getattr(hp);
    expect(a[StatIdx.mode]! & 0o7777).toBe(0o600);
    expect(a[StatIdx.uid]).toBe(1000);
    expect(a[StatIdx.gid]).toBe(0);
    expect([a[StatIdx.atimeSec], a[StatIdx.atimeNsec]]).toEqual([1000, 5]);
    expect(a[StatIdx.size]).toBe(3);
    expect((await H.getxattr(hp, 'user.k')).toString()).toBe('v');
    expect(await H.listxattr(hp)).toContain('user.k');
    await H.removexattr(hp, 'user.k', root);
    expect(await code(H.getxattr(hp, 'user.k'))).toBe('ENODATA');

    // open of /proc/PID/fd/N reaches the hidden node: a second handle on the same object
    const h2 = await H.open(hp, O_RDONLY, root);
    expect(buf.subarray(0, await H.read(hp, h2.fh, buf, 10, 0)).toString()).toBe('UPw');
    await H.release(hp, h2.fh);
    await H.release(hp, h.fh);
    // released, libfuse's unlink of the name not yet there: gone already
    expect(await code(H.getattr(hp))).toBe('ENOENT');
    await H.unlink(hp, root);
    expect(await code(H.getattr(hp))).toBe('ENOENT');
    noHiddenOnDisk(L);
    expect(kernelView(L)).toEqual(['d/', 'd/keep = k']);
  });

  it('an upper-only file is removed for good; a lower file opened read-only keeps its link count and cannot change', async () => {
    L = makeLayers({ l0: { 'ro': 'lower' } }, 1);
    fs.writeFileSync(path.join(L.upper, 'new'), 'upper');
    O = await open(L);
    const H = new HiddenNames(O);
    const hn = await H.open('/new', O_RDONLY, root);
    const hr = await H.open('/ro', O_RDONLY, root);
    await hide(H, '/new', `/${H1}`);
    await hide(H, '/ro', `/${H2}`);
    expect(fs.existsSync(path.join(L.upper, 'new'))).toBe(false);
    expect(fs.lstatSync(path.join(L.upper, 'ro')).isCharacterDevice()).toBe(true);
    // libfuse subtracts one from a hidden node's nlink: 2 here is the kernel's 1 (checked on 6.18)
    expect((await H.getattr(`/${H2}`))[StatIdx.nlink]).toBe(2);
    expect((await H.getattr(`/${H1}`))[StatIdx.nlink]).toBe(0);
    expect(await code(H.chmod(`/${H2}`, 0o600, root))).toBe('EEXIST');
    expect(await code(H.open(`/${H2}`, O_WRONLY, root))).toBe('EEXIST');
    const buf = Buffer.alloc(10);
    expect(buf.subarray(0, await H.read(`/${H2}`, hr.fh, buf, 10, 0)).toString()).toBe('lower');
    expect(fs.readFileSync(path.join(L.lowers[0]!, 'ro'), 'latin1')).toBe('lower');
    for (const [p, fh] of [[`/${H1}`, hn.fh], [`/${H2}`, hr.fh]] as const) {
      await H.release(p, fh);
      await H.unlink(p, root);
    }
    expect(await ls(O, '/')).toEqual([]);
    noHiddenOnDisk(L);
  });

  it('rename over an open file (libfuse hides the target first); hidden names follow renames of their directory', async () => {
    L = makeLayers({ l0: { 'd/t': 'old target', 'd/s': 'source' } }, 1);
    O = await open(L);
    const H = new HiddenNames(O);
    const ht = await H.open('/d/t', O_RDONLY, root);
    await hide(H, '/d/t', `/d/${H1}`);
    await H.rename('/d/s', '/d/t', 0, root);
    expect(await ls(O, '/d')).toEqual(['t']);
    // the open target is hidden twice (something renamed over its hidden name): a new hidden name
    await H.rename(`/d/${H1}`, `/d/${H2}`, 0, root);
    expect(await code(H.getattr(`/d/${H1}`))).toBe('ENOENT');
    // libfuse builds the path from its node tree: after a directory rename the hidden node is under the new name
    await H.rename('/d', '/e', 0, root);
    const buf = Buffer.alloc(20);
    expect(buf.subarray(0, await H.read(`/e/${H2}`, ht.fh, buf, 20, 0)).toString()).toBe('old target');
    expect((await H.getattr(`/e/${H2}`))[StatIdx.size]).toBe(10);
    // a virtual name cannot be renamed to an ordinary name (it has no directory entry)
    expect(await code(H.rename(`/e/${H2}`, '/e/back', 0, root))).toBe('ENOENT');
    await H.release(`/e/${H2}`, ht.fh);
    await H.unlink(`/e/${H2}`, root);
    expect(await ls(O, '/e')).toEqual(['t']);
    noHiddenOnDisk(L);
  });

  it('a file that is not open renamed to a name of the hidden form is an ordinary rename', async () => {
    L = makeLayers({ l0: { 'f': 'data' } }, 1);
    O = await open(L);
    const H = new HiddenNames(O);
    await H.rename('/f', `/${H1}`, 0, root);
    expect(await ls(O, '/')).toEqual([H1]);
    expect((await H.getattr(`/${H1}`))[StatIdx.nlink]).toBe(1);
    await H.unlink(`/${H1}`, root);
    expect(await ls(O, '/')).toEqual([]);
  });
});

describe('the core gives .fuse_hidden names no meaning (the low-level front-end, kernel overlayfs)', () => {
  it('an open file renamed onto a name of the hidden form is an ordinary rename: the name shows, the data stays', async () => {
    L = makeLayers({ l0: { 'f': 'data' } }, 1);
    O = await open(L);
    const h = await O.open('/f', O_RDONLY, root);
    await O.rename('/f', `/${H1}`, 0, root);
    expect(await ls(O, '/')).toEqual([H1]);
    expect((await O.getattr(`/${H1}`))[StatIdx.nlink]).toBe(1);
    const buf = Buffer.alloc(10);
    expect(buf.subarray(0, await O.read(`/${H1}`, h.fh, buf, 10, 0)).toString()).toBe('data');
    await O.release(`/${H1}`, h.fh);
    expect(kernelView(L)).toEqual([`${H1} = data`]);
  });
});
