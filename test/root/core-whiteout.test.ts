import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeLayers, put, setx, type Layers } from './core-helpers.js';
import * as sys from '../../src/native/sys.js';
import {
  canMknodWhiteout, canWriteTrustedXattr, classifyEntry, encodeRedirect, isOpaqueDir, isPrivateXattr, isWhiteoutStat, isWhitedOut,
  parseRedirect, readRedirect, setOpaque, setRedirect, whiteoutTargetOf, WhiteoutWriter,
} from '../../src/core/whiteout.js';
import { encodeOrigin } from '../../src/core/copy-up.js';

let L: Layers | undefined;
const fds: number[] = [];
afterEach(() => {
  for (const fd of fds.splice(0)) sys.raw.close(fd);
  L?.cleanup(); L = undefined;
});

describe('whiteout codec', () => {
  it('classifies names and char 0/0 devices', () => {
    expect(classifyEntry('.wh.foo', false)).toEqual({ kind: 'whiteout', target: 'foo' });
    expect(classifyEntry('.wh..wh..opq', false)).toEqual({ kind: 'opaque-marker' });
    expect(classifyEntry('foo', true)).toEqual({ kind: 'whiteout', target: 'foo' });
    expect(classifyEntry('foo', false)).toEqual({ kind: 'entry' });
    expect(whiteoutTargetOf('.wh.')).toBeUndefined();
    expect(whiteoutTargetOf('.wh.caf\xe9')).toBe('caf\xe9');
  });

  it('recognises every whiteout and opaque format on disk', () => {
    L = makeLayers({ l0: {
      'cw': { wh: true }, '.wh.fw': '', 'null': { dir: true },
      'k': { opaque: true }, 'u': { xattr: { 'user.overlay.opaque': 'y' }, dir: true },
      'fo': { xattr: { 'user.fuseoverlayfs.opaque': 'y' }, dir: true }, 'oci/.wh..wh..opq': '',
      'no': { xattr: { 'trusted.overlay.opaque': 'x' }, dir: true }, 'plain': { dir: true },
    } }, 1);
    const fd = sys.openRoot(L.lowers[0]!); fds.push(fd);
    const st = sys.newStatArray();
    expect(isWhitedOut(fd, 'cw', st)).toBe(true);
    expect(isWhitedOut(fd, 'fw', st)).toBe(true);
    expect(isWhitedOut(fd, 'null', st)).toBe(false);
    expect(isWhitedOut(fd, 'absent', st)).toBe(false);
    sys.lstatat(fd, 'cw', st);
    expect(isWhiteoutStat(st)).toBe(true);
    for (const d of ['k', 'u', 'fo', 'oci']) expect(isOpaqueDir(fd, d, st)).toBe(true);
    for (const d of ['no', 'plain']) expect(isOpaqueDir(fd, d, st)).toBe(false);
  });

  it('parses and encodes redirects like the kernel', () => {
    // the errnos kernel 6.18 gives a lookup of a directory with such a value (hostile-markers.test.ts)
    expect(parseRedirect(Buffer.from('/a/b'), 'x')).toEqual({ absolute: true, path: 'a/b' });
    expect(parseRedirect(Buffer.from('name'), 'x')).toEqual({ absolute: false, name: 'name' });
    expect(parseRedirect(Buffer.from('zz\0b'), 'x')).toEqual({ absolute: false, name: 'zz' });
    for (const bad of ['a/b', '../etc', '/', '//a', '/a/', '/a//b', '']) {
      expect(() => parseRedirect(Buffer.from(bad), 'x'), bad).toThrow(/EINVAL/);
    }
    for (const bad of ['/a/../b', '/../../etc', '.', '..', '/./a', '\0abc']) {
      expect(() => parseRedirect(Buffer.from(bad), 'x'), bad).toThrow(/EACCES/);
    }
    expect(encodeRedirect({ absolute: true, path: 'a/b' }).toString()).toBe('/a/b');
    expect(encodeRedirect({ absolute: false, name: 'n' }).toString()).toBe('n');
    L = makeLayers({ l0: { 'd': { dir: true } } }, 1);
    const fd = sys.openRoot(L.lowers[0]!); fds.push(fd);
    setRedirect(fd, 'd', { absolute: true, path: 'x/y' }, false);
    expect(readRedirect(fd, 'd', false)).toEqual({ absolute: true, path: 'x/y' });
    expect(readRedirect(fd, 'd', true)).toBeUndefined();
    setOpaque(fd, 'd', true);
    expect(isOpaqueDir(fd, 'd', sys.newStatArray())).toBe(true);
  });

  it('writes shared char 0/0 whiteouts, or .wh. files without mknod', () => {
    L = makeLayers({}, 1);
    const up = sys.openRoot(L.upper); fds.push(up);
    fs.mkdirSync(path.join(L.work, 'work'));
    const work = sys.openRoot(path.join(L.work, 'work')); fds.push(work);
    expect(canMknodWhiteout(work)).toBe(true);
    expect(canWriteTrustedXattr(work)).toBe(true);
    expect(fs.readdirSync(path.join(L.work, 'work'))).toEqual([]);
    const w = new WhiteoutWriter(work, true);
    w.create(up, 'a');
    w.create(up, 'b');
    const a = fs.lstatSync(path.join(L.upper, 'a'));
    const b = fs.lstatSync(path.join(L.upper, 'b'));
    expect(a.isCharacterDevice() && a.rdev === 0 && (a.mode & 0o7777) === 0).toBe(true);
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(3);
    w.dispose();
    const f = new WhiteoutWriter(work, false);
    f.create(up, 'c');
    expect(fs.existsSync(path.join(L.upper, '.wh.c'))).toBe(true);
    expect(f.written).toBe(1);
  });

  it('starts a new shared whiteout inode when the link count is exhausted (EMLINK)', () => {
    L = makeLayers({}, 1);
    const up = sys.openRoot(L.upper); fds.push(up);
    fs.mkdirSync(path.join(L.work, 'work'));
    const work = sys.openRoot(path.join(L.work, 'work')); fds.push(work);
    const w = new WhiteoutWriter(work, true);
    // ext4 allows 65000 links per inode.
    for (let i = 0; i < 65_001; i++) w.create(up, `w${i}`);
    const inos = new Set([0, 64_998, 64_999, 65_000].map((i) => fs.lstatSync(path.join(L!.upper, `w${i}`)).ino));
    expect(inos.size).toBe(2);
    expect(w.written).toBe(65_001);
  }, 120_000);

  it('encodes origin handles in the kernel layout and knows private xattrs', () => {
    const b = encodeOrigin(1, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(b.length).toBe(29);
    expect([...b.subarray(0, 5)]).toEqual([0, 0xfb, 29, 0, 1]);
    expect([...b.subarray(21)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(isPrivateXattr('trusted.overlay.opaque', false)).toBe(true);
    expect(isPrivateXattr('trusted.overlay.overlay.x', false)).toBe(false);
    expect(isPrivateXattr('user.fuseoverlayfs.opaque', false)).toBe(true);
    expect(isPrivateXattr('user.overlay.opaque', false)).toBe(true); // read as a marker: never copied up
    expect(isPrivateXattr('user.overlay.opaque', true)).toBe(true);
    expect(isPrivateXattr('user.x', true)).toBe(false);
    // a layer file may sit under a mount of either namespace, or a nested one
    expect(isPrivateXattr('trusted.overlay.overlay.x', 'layer')).toBe(true);
    expect(isPrivateXattr('user.overlay.redirect', 'layer')).toBe(true);
    expect(isPrivateXattr('user.fuseoverlayfs.opaque', 'layer')).toBe(true);
    expect(isPrivateXattr('user.x', 'layer')).toBe(false);
  });

  it('put helper makes what it says', () => {
    L = makeLayers({}, 1);
    put(path.join(L.dir, 'q/w'), { wh: true });
    setx(path.join(L.dir, 'q'), 'user.t', '1');
    expect(fs.lstatSync(path.join(L.dir, 'q/w')).isCharacterDevice()).toBe(true);
  });
});
