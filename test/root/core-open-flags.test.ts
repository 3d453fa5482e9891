/**
 * The open flags a FUSE OPEN/CREATE carries are the kernel's f_flags, with
 * internal bits (issue 10, defect 1: __FMODE_EXEC on every execve made
 * openat2 fail with EINVAL). The backing open keeps what shapes its fd and
 * drops the rest; the flags of the backing fd are read from /proc/self/fdinfo.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { backingOpenFlags } from '../../src/core/file-ops.js';
import type { Overlay } from '../../src/core/overlay.js';
import { code, makeLayers, open, root, type Layers } from './core-helpers.js';

let L: Layers | undefined;
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  L?.cleanup(); L = undefined;
});

const { O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_CREAT, O_EXCL, O_TRUNC, O_SYNC, O_DSYNC, O_NONBLOCK, O_NOATIME, O_DIRECTORY, O_NOFOLLOW, O_NOCTTY } = fs.constants;
const FMODE_EXEC = 0x20;
const O_LARGEFILE = 0o100000; // the kernel's value on x86 and most others (not in fs.constants)
const FASYNC = 0o20000;
const FMODE_NONOTIFY_OLD = 0x4000000; // __FMODE_NONOTIFY in f_flags before Linux 6.14

/** the flags of the fd behind a core handle, as the kernel shows them (octal in fdinfo) */
function fdFlags(o: Overlay, fh: number): number {
  const fd = o.ctx.files.get(fh)!.fd;
  const line = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n').find((l) => l.startsWith('flags:'))!;
  return parseInt(line.split(/\s+/)[1]!, 8);
}

describe('backingOpenFlags', () => {
  it('keeps access mode, append, nonblock, sync, noatime; drops kernel-internal and resolution bits', () => {
    const noisy = O_RDWR | O_APPEND | O_NONBLOCK | O_SYNC | O_NOATIME | FMODE_EXEC | O_LARGEFILE | FASYNC | FMODE_NONOTIFY_OLD
      | O_CREAT | O_EXCL | O_NOCTTY | O_DIRECTORY | O_NOFOLLOW | O_TRUNC;
    expect(backingOpenFlags(noisy, { fsync: true, truncate: true })).toBe(O_RDWR | O_APPEND | O_NONBLOCK | O_SYNC | O_NOATIME | O_TRUNC);
    expect(backingOpenFlags(noisy, { fsync: true, truncate: false })).toBe(O_RDWR | O_APPEND | O_NONBLOCK | O_SYNC | O_NOATIME);
    // volatile / fsync=0 skips syncs, as the kernel overlay drops IOCB_SYNC/DSYNC then
    expect(backingOpenFlags(O_WRONLY | O_SYNC, { fsync: false, truncate: true })).toBe(O_WRONLY);
    expect(backingOpenFlags(O_WRONLY | O_DSYNC, { fsync: false, truncate: true })).toBe(O_WRONLY);
  });
});

describe('core open and create with the flags of a FUSE request', () => {
  it('opens a lower file for exec (0x20 | O_LARGEFILE) and reads it', async () => {
    L = makeLayers({ l0: { prog: 'binary' } }, 1);
    O = await open(L);
    const { fh } = await O.open('/prog', O_RDONLY | FMODE_EXEC | O_LARGEFILE, root);
    const buf = Buffer.alloc(16);
    expect(await O.read('/prog', fh, buf, 16, 0)).toBe(6);
    expect(fdFlags(O, fh) & (FMODE_EXEC | 3)).toBe(O_RDONLY);
    await O.release('/prog', fh);
  });

  it('a write-open with internal bits copies up and keeps O_APPEND on the upper fd', async () => {
    L = makeLayers({ l0: { f: 'abc' } }, 1);
    O = await open(L, { fsync: true });
    const { fh } = await O.open('/f', O_WRONLY | O_APPEND | O_SYNC | O_LARGEFILE | FASYNC, root);
    const fl = fdFlags(O, fh);
    expect(fl & (O_APPEND | O_SYNC | 3)).toBe(O_APPEND | O_SYNC | O_WRONLY);
    expect(fl & FASYNC).toBe(0);
    // O_APPEND on the backing fd: a write lands at the real end whatever offset it names
    await O.write('/f', fh, Buffer.from('d'), 1, 0);
    await O.release('/f', fh);
    expect(fs.readFileSync(`${L.upper}/f`, 'latin1')).toBe('abcd');
  });

  it('create with internal bits succeeds; O_NOATIME stays on the fd', async () => {
    L = makeLayers({ l0: {} }, 1);
    O = await open(L);
    const { fh } = await O.create('/n', 0o644, O_RDWR | O_CREAT | O_EXCL | O_NOATIME | O_LARGEFILE | FMODE_NONOTIFY_OLD, root);
    expect(fdFlags(O, fh) & O_NOATIME).toBe(O_NOATIME);
    await O.release('/n', fh);
    expect(await code(O.create('/n', 0o644, O_RDWR | O_CREAT | O_EXCL | FMODE_EXEC, root))).toBe('EEXIST');
  });
});
