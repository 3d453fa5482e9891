import { describe, expect, it } from 'vitest';
import { constants } from 'node:os';
import { FsError } from '../../src/shared/errors.js';
import { highLevelOptions, lowLevelArgs } from '../../src/fuse/libfuse-args.js';
import { toErrno } from '../../src/fuse/requests.js';
import { highLevelOptionWords } from '../../src/native/fuse-mount.js';
import { parseMountArgs } from '../../src/cli/mount-options.js';

describe('toErrno: the one place failures become -errno', () => {
  it('an FsError gives its own errno, silently', () => {
    const logged: string[] = [];
    expect(toErrno(new FsError('ENOENT', '/x', 'lookup'), 'getattr', '/x', (s) => logged.push(s))).toBe(-constants.errno.ENOENT);
    expect(toErrno(new FsError('EXDEV', '/d', 'rename'), 'rename', '/d', (s) => logged.push(s))).toBe(-constants.errno.EXDEV);
    expect(logged).toEqual([]);
  });
  it('a Node system error keeps its errno but is logged (the core should have wrapped it)', () => {
    const logged: string[] = [];
    const e = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    expect(toErrno(e, 'write', '/f', (s) => logged.push(s))).toBe(-constants.errno.ENOSPC);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/write \/f: unwrapped ENOSPC/);
  });
  it('a Node error whose errno libuv has no name for keeps it (EDQUOT comes as "Unknown system error -122"), logged', () => {
    const logged: string[] = [];
    const e = Object.assign(new Error('Unknown system error -122: write'), { code: 'Unknown system error -122', errno: -constants.errno.EDQUOT });
    expect(toErrno(e, 'write', '/f', (s) => logged.push(s))).toBe(-constants.errno.EDQUOT);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/write \/f: unwrapped EDQUOT/);
  });
  it('anything else is a bug: EIO, logged with the stack', () => {
    const logged: string[] = [];
    expect(toErrno(new TypeError('x is undefined'), 'open', null, (s) => logged.push(s))).toBe(-constants.errno.EIO);
    expect(toErrno('a string', 'open', '/caf\u00c3\u00a9', (s) => logged.push(s))).toBe(-constants.errno.EIO);
    expect(logged[0]).toMatch(/open \(unlinked\): internal error, answered EIO: TypeError: x is undefined\n/);
    expect(logged[1]).toMatch(/open \/café: internal error/);
  });
});

describe('libfuse options of a mount', () => {
  const cfg = (o: string, uid = 0) => parseMountArgs({
    options: [o], mountpoint: '/m', source: undefined, foreground: false, debug: false, cwd: '/', uid,
  });
  it('low-level API, defaults as root: big writes, nonempty, suid,nodev, allow_other, default_permissions, noatime; no high-level words', () => {
    const words = lowLevelArgs(cfg('lowerdir=/a,upperdir=/u,workdir=/w'));
    expect(words.slice(0, 2)).toEqual(['stratafs', '-o']);
    const o = words[2]!.split(',');
    expect(o).toEqual(expect.arrayContaining([
      'big_writes', 'max_write=131072', 'nonempty', 'suid', 'nodev', 'exec', 'rw', 'allow_other', 'default_permissions', 'noatime',
      'fsname=stratafs', 'subtype=stratafs',
    ]));
    expect(lowLevelArgs(cfg('lowerdir=/a,noallow_other'))[2]!.split(',')).not.toContain('allow_other');
    // fuse_lowlevel_new refuses the high-level API's options; timeouts travel with each reply
    for (const w of o) expect(w).not.toMatch(/^(use_ino|hard_remove|entry_timeout|attr_timeout|negative_timeout|kernel_cache|auto_cache)/);
  });
  it('low-level API as a user: nosuid,nodev, default_permissions, no allow_other, escaped fsname', () => {
    const o = lowLevelArgs(cfg('lowerdir=/a,fsname=a\\,b', 1000))[2]!.split(/(?<!\\),/);
    expect(o).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'ro', 'default_permissions', 'noatime', 'fsname=a\\,b']));
    expect(o).not.toContain('allow_other');
  });
  it('cache timeouts: a day by default; attr_timeout 0 by default only with the high-level API', () => {
    const d = cfg('lowerdir=/a');
    expect([d.timeout, d.attrTimeout, d.negativeTimeout]).toEqual([86400, 86400, 86400]);
    const h = cfg('lowerdir=/a,fuse_api=highlevel');
    expect([h.timeout, h.attrTimeout, h.negativeTimeout, h.fuseApi]).toEqual([86400, 0, 86400, 'highlevel']);
    const t = cfg('lowerdir=/a,timeout=2');
    expect([t.timeout, t.attrTimeout, t.negativeTimeout, t.fuseApi]).toEqual([2, 2, 2, 'lowlevel']);
  });
  it('high-level API, defaults as root: big writes, use_ino, nonempty, no hard_remove, timeouts, suid,nodev, allow_other, default_permissions, noatime', () => {
    const words = highLevelOptionWords(highLevelOptions(cfg('lowerdir=/a,upperdir=/u,workdir=/w,fuse_api=highlevel'), () => {}));
    expect(words).toEqual(expect.arrayContaining([
      'use_ino', 'big_writes', 'max_write=131072', 'nonempty', 'entry_timeout=86400', 'attr_timeout=0',
      'negative_timeout=86400', 'suid', 'nodev', 'exec', 'rw', 'allow_other', 'default_permissions', 'noatime', 'fsname=stratafs', 'subtype=stratafs',
    ]));
    expect(highLevelOptionWords(highLevelOptions(cfg('lowerdir=/a,fuse_api=highlevel,noallow_other'), () => {}))).not.toContain('allow_other');
    // files unlinked while open go through libfuse's .fuse_hidden rename (fuse/highlevel/hidden-names.ts)
    expect(words).not.toContain('hard_remove');
  });
  it('options carry through', () => {
    const words = highLevelOptionWords(highLevelOptions(cfg('lowerdir=/a,timeout=0.5,attr_timeout=0.25,negative_timeout=0,allow_other,nosuid,nodev,noexec,noatime,fsname=a\\,b'), () => {}));
    expect(words).toEqual(expect.arrayContaining([
      'entry_timeout=0.5', 'attr_timeout=0.25', 'negative_timeout=0', 'allow_other', 'nosuid', 'nodev', 'noexec', 'noatime', 'ro', 'fsname=a\\,b',
    ]));
  });
  it('both APIs get the same mount words; the high-level one adds only its own', () => {
    const highOnly = /^(use_ino|entry_timeout|attr_timeout|negative_timeout)(=|$)/;
    for (const [o, uid] of [['lowerdir=/a,upperdir=/u,workdir=/w', 0], ['lowerdir=/a,ro,dev,noexec,sync,dirsync,atime,fsname=x\\,y', 1000]] as const) {
      const low = lowLevelArgs(cfg(o, uid))[2]!.split(/(?<!\\),/);
      const high = highLevelOptionWords(highLevelOptions(cfg(`${o},fuse_api=highlevel`, uid), () => {}));
      expect(high.filter((w) => !highOnly.test(w)).sort()).toEqual([...low].sort());
      expect(high.filter((w) => highOnly.test(w))).toHaveLength(4);
    }
  });
  it('as a user: nosuid,nodev, default_permissions, no allow_other unless asked', () => {
    const words = highLevelOptionWords(highLevelOptions(cfg('lowerdir=/a', 1000), () => {}));
    expect(words).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'default_permissions']));
    expect(words).not.toContain('allow_other');
  });
});
