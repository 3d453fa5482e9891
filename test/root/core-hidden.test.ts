/**
 * Files unlinked while open (core/hidden.ts), driven the way libfuse 2.9
 * without hard_remove drives the core: getattr probes of a `.fuse_hidden`
 * name, rename(path, hidden), calls on the hidden name, release, unlink(hidden).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { code, kernelView, ls, makeLayers, open, root, tree, type Layers } from './core-helpers.js';
import type { Overlay } from '../../src/core/overlay.js';
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
async function hide(o: Overlay, p: string, hidden: string): Promise<void> {
  expect(await code(o.getattr(hidden))).toBe('ENOENT');
  await o.rename(p, hidden, 0, root);
}

const noHiddenOnDisk = (l: Layers): void => {
  for (const d of [l.upper, l.work]) expect(tree(d).filter((n) => n.includes('.fuse_hidden'))).toEqual([]);
};

describe('core: files unlinked while open', () => {
  it('a copied-up file: real unlink (whiteout), the hidden name serves the fd, nothing hidden on disk', async () => {
    L = makeLayers({ l0: { 'd/f': 'lower', 'd/keep': 'k' } }, 1);
    O = await open(L);
    const h = await O.open('/d/f', O_RDWR, root);
    const ino = (await O.getattr('/d/f'))[StatIdx.ino];
    await hide(O, '/d/f', `/d/${H1}`);
    const hp = `/d/${H1}`;
    expect(await code(O.getattr('/d/f'))).toBe('ENOENT');
    expect(await ls(O, '/d')).toEqual(['keep']);
    expect(fs.lstatSync(path.join(L.upper, 'd/f')).isCharacterDevice()).toBe(true);
    noHiddenOnDisk(L);

    await O.write(hp, h.fh, Buffer.from('UP'), 2, 0);
    const buf = Buffer.alloc(10);
    expect(buf.subarray(0, await O.read(hp, h.fh, buf, 10, 0)).toString()).toBe('UPwer');
    const st = await O.getattr(hp);
    expect(st[StatIdx.nlink]).toBe(0);
    expect(st[StatIdx.ino]).toBe(ino);
    expect((await O.fgetattr(hp, h.fh))[StatIdx.nlink]).toBe(0);

    await O.chmod(hp, 0o100600, root);
    await O.chown(hp, 1000, 0xffffffff, root);
    await O.utimens(hp, { sec: 1000, nsec: 5 }, 'omit', root);
    await O.truncate(hp, 3, root);
    await O.setxattr(hp, 'user.k', Buffer.from('v'), 0, root);
    const a = await O.getattr(hp);
    expect(a[StatIdx.mode]! & 0o7777).toBe(0o600);
    expect(a[StatIdx.uid]).toBe(1000);
    expect(a[StatIdx.gid]).toBe(0);
    expect([a[StatIdx.atimeSec], a[StatIdx.atimeNsec]]).toEqual([1000, 5]);
    expect(a[StatIdx.size]).toBe(3);
    expect((await O.getxattr(hp, 'user.k')).toString()).toBe('v');
    expect(await O.listxattr(hp)).toContain('user.k');
    await O.removexattr(hp, 'user.k', root);
    expect(await code(O.getxattr(hp, 'user.k'))).toBe('ENODATA');

    // open of /proc/PID/fd/N reaches the hidden node: a second handle on the same object
    const h2 = await O.open(hp, O_RDONLY, root);
    expect(buf.subarray(0, await O.read(hp, h2.fh, buf, 10, 0)).toString()).toBe('UPw');
    await O.release(hp, h2.fh);
    await O.release(hp, h.fh);
    // released, libfuse's unlink of the name not yet there: gone already
    expect(await code(O.getattr(hp))).toBe('ENOENT');
    await O.unlink(hp, root);
    expect(await code(O.getattr(hp))).toBe('ENOENT');
    noHiddenOnDisk(L);
    expect(kernelView(L)).toEqual(['d/', 'd/keep = k']);
  });

  it('an upper-only file is removed for good; a lower file opened read-only keeps its link count and cannot change', async () => {
    L = makeLayers({ l0: { 'ro': 'lower' } }, 1);
    fs.writeFileSync(path.join(L.upper, 'new'), 'upper');
    O = await open(L);
    const hn = await O.open('/new', O_RDONLY, root);
    const hr = await O.open('/ro', O_RDONLY, root);
    await hide(O, '/new', `/${H1}`);
    await hide(O, '/ro', `/${H2}`);
    expect(fs.existsSync(path.join(L.upper, 'new'))).toBe(false);
    expect(fs.lstatSync(path.join(L.upper, 'ro')).isCharacterDevice()).toBe(true);
    // libfuse subtracts one from a hidden node's nlink: 2 here is the kernel's 1 (checked on 6.18)
    expect((await O.getattr(`/${H2}`))[StatIdx.nlink]).toBe(2);
    expect((await O.getattr(`/${H1}`))[StatIdx.nlink]).toBe(0);
    expect(await code(O.chmod(`/${H2}`, 0o600, root))).toBe('EEXIST');
    expect(await code(O.open(`/${H2}`, O_WRONLY, root))).toBe('EEXIST');
    const buf = Buffer.alloc(10);
    expect(buf.subarray(0, await O.read(`/${H2}`, hr.fh, buf, 10, 0)).toString()).toBe('lower');
    expect(fs.readFileSync(path.join(L.lowers[0]!, 'ro'), 'latin1')).toBe('lower');
    for (const [p, fh] of [[`/${H1}`, hn.fh], [`/${H2}`, hr.fh]] as const) {
      await O.release(p, fh);
      await O.unlink(p, root);
    }
    expect(await ls(O, '/')).toEqual([]);
    noHiddenOnDisk(L);
  });

  it('rename over an open file (libfuse hides the target first); hidden names follow renames of their directory', async () => {
    L = makeLayers({ l0: { 'd/t': 'old target', 'd/s': 'source' } }, 1);
    O = await open(L);
    const ht = await O.open('/d/t', O_RDONLY, root);
    await hide(O, '/d/t', `/d/${H1}`);
    await O.rename('/d/s', '/d/t', 0, root);
    expect(await ls(O, '/d')).toEqual(['t']);
    // the open target is hidden twice (something renamed over its hidden name): a new hidden name
    await O.rename(`/d/${H1}`, `/d/${H2}`, 0, root);
    expect(await code(O.getattr(`/d/${H1}`))).toBe('ENOENT');
    // libfuse builds the path from its node tree: after a directory rename the hidden node is under the new name
    await O.rename('/d', '/e', 0, root);
    const buf = Buffer.alloc(20);
    expect(buf.subarray(0, await O.read(`/e/${H2}`, ht.fh, buf, 20, 0)).toString()).toBe('old target');
    expect((await O.getattr(`/e/${H2}`))[StatIdx.size]).toBe(10);
    // a virtual name cannot be renamed to an ordinary name (it has no directory entry)
    expect(await code(O.rename(`/e/${H2}`, '/e/back', 0, root))).toBe('ENOENT');
    await O.release(`/e/${H2}`, ht.fh);
    await O.unlink(`/e/${H2}`, root);
    expect(await ls(O, '/e')).toEqual(['t']);
    noHiddenOnDisk(L);
  });

  it('a file that is not open renamed to a name of the hidden form is an ordinary rename', async () => {
    L = makeLayers({ l0: { 'f': 'data' } }, 1);
    O = await open(L);
    await O.rename('/f', `/${H1}`, 0, root);
    expect(await ls(O, '/')).toEqual([H1]);
    expect((await O.getattr(`/${H1}`))[StatIdx.nlink]).toBe(1);
    await O.unlink(`/${H1}`, root);
    expect(await ls(O, '/')).toEqual([]);
  });
});
