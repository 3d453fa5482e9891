import { describe, expect, it } from 'vitest';
import { constants } from 'node:os';
import { FsError } from '../../src/shared/errors.js';
import { highLevelOptions } from '../../src/fuse/libfuse-args.js';
import { fusermountWords, kernelMount, MS } from '../../src/fuse/kernel/mount.js';
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
  it('default server, as root: suid, nodev, noatime, allow_other, default_permissions; source and type; no libfuse words', () => {
    expect(kernelMount(cfg('lowerdir=/a,upperdir=/u,workdir=/w'))).toEqual({
      source: 'stratafs', fstype: 'fuse.stratafs', flags: MS.NODEV | MS.NOATIME, data: ['allow_other', 'default_permissions'],
      maxWrite: 131072, maxMinor: undefined, off: [], stackDepth: 1, requestTimeout: 0, debug: false,
    });
    expect(kernelMount(cfg('lowerdir=/a,noallow_other')).data).toEqual(['default_permissions']);
  });
  it('default server as a user: nosuid,nodev, read-only without an upper, default_permissions, no allow_other, escaped fsname', () => {
    const m = kernelMount(cfg('lowerdir=/a,fsname=a\\,b', 1000));
    expect([m.flags, m.data, m.source]).toEqual([MS.NOSUID | MS.NODEV | MS.RDONLY | MS.NOATIME, ['default_permissions'], 'a,b']);
    expect(fusermountWords(m)).toContain('fsname=a\\,b');
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
  it('both APIs get the same mount words; the high-level one adds only libfuse\'s own', () => {
    const highOnly = /^(use_ino|entry_timeout|attr_timeout|negative_timeout)(=|$)/;
    const libfuseOnly = /^(big_writes|max_write=|nonempty$)/;
    for (const [o, uid] of [['lowerdir=/a,upperdir=/u,workdir=/w', 0], ['lowerdir=/a,ro,dev,noexec,sync,dirsync,atime,fsname=x\\,y', 1000]] as const) {
      const low = fusermountWords(kernelMount(cfg(o, uid)));
      const high = highLevelOptionWords(highLevelOptions(cfg(`${o},fuse_api=highlevel`, uid), () => {}));
      expect(high.filter((w) => !highOnly.test(w) && !libfuseOnly.test(w)).sort()).toEqual([...low].sort());
      expect(high.filter((w) => highOnly.test(w))).toHaveLength(4);
    }
  });
  it('as a user: nosuid,nodev, default_permissions, no allow_other unless asked', () => {
    const words = highLevelOptionWords(highLevelOptions(cfg('lowerdir=/a', 1000), () => {}));
    expect(words).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'default_permissions']));
    expect(words).not.toContain('allow_other');
  });
});
