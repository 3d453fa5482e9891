/**
 * The kernel FUSE server's wire codec (src/fuse/kernel/wire.ts) and its mount words
 * (src/fuse/kernel/mount.ts, from the MountConfig): no mount needed.
 */
import { describe, expect, it } from 'vitest';
import { cstr, direntSize, i64, offsetAt, putAttr, putDirent, putI64, putTimeout, putU64, u64, ATTR_SIZE } from '../../src/fuse/kernel/wire.js';
import { fusermountWords, kernelMount } from '../../src/fuse/kernel/mount.js';
import { parseMountArgs } from '../../src/cli/mount-options.js';
import { StatIdx, STAT_LEN } from '../../src/native/sys-api.js';
import { FEATURES, settle } from '../../src/fuse/kernel/features.js';
import { BIG_WRITE, initSizes, maxPagesPossible, nextRequest, readRoom } from '../../src/fuse/kernel/sizes.js';
import { direntPlusSize, encodeDir, encodeDirPlus, fopenFlags } from '../../src/fuse/kernel/readdir.js';
import { STATX_OUT, fileRequest, putCount, putOffset, putStatx } from '../../src/fuse/kernel/file-requests.js';
import { Op } from '../../src/fuse/kernel/wire.js';
import type { LowLevelHandlers } from '../../src/fuse/lowlevel/contract.js';

describe('wire codec', () => {
  it('64-bit offsets: a number below 2^53, an exact bigint from there', () => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(2n ** 53n + 1n);
    expect(offsetAt(b, 0)).toBe(2n ** 53n + 1n);
    b.writeBigUInt64LE(2n ** 53n - 1n);
    expect(offsetAt(b, 0)).toBe(2 ** 53 - 1);
    b.writeBigUInt64LE(0xffffffffffffffffn);
    expect(offsetAt(b, 0)).toBe(0xffffffffffffffffn);
  });
  it('u64 and signed times round-trip through two halves', () => {
    const b = Buffer.alloc(8);
    putU64(b, 0, 2 ** 40 + 5);
    expect(b.readBigUInt64LE(0)).toBe(2n ** 40n + 5n);
    expect(u64(b, 0)).toBe(2 ** 40 + 5);
    putI64(b, 0, -1);
    expect(b.readBigInt64LE(0)).toBe(-1n);
    putI64(b, 0, -(2 ** 33) - 7);
    expect(i64(b, 0)).toBe(-(2 ** 33) - 7);
  });
  it('timeouts: seconds and nanoseconds, negative is 0', () => {
    const b = Buffer.alloc(12);
    putTimeout(b, 0, 8, 1.25);
    expect([b.readBigUInt64LE(0), b.readUInt32LE(8)]).toEqual([1n, 250000000]);
    putTimeout(b, 0, 8, -3);
    expect([b.readBigUInt64LE(0), b.readUInt32LE(8)]).toEqual([0n, 0]);
  });
  it('fuse_attr: st_ino and st_size exact from their halves, times signed', () => {
    const d = new Float64Array(STAT_LEN);
    d[StatIdx.inoHi] = 0x12345; d[StatIdx.inoLo] = 0x6789abcd;
    d[StatIdx.sizeHi] = 1; d[StatIdx.sizeLo] = 2;
    d[StatIdx.mtimeSec] = -5; d[StatIdx.mtimeNsec] = 7;
    d[StatIdx.mode] = 0o100644; d[StatIdx.nlink] = 3; d[StatIdx.blksize] = 4096;
    const b = Buffer.alloc(ATTR_SIZE);
    putAttr(b, 0, d);
    expect(b.readBigUInt64LE(0)).toBe(0x123456789abcdn);
    expect(b.readBigUInt64LE(8)).toBe(2n ** 32n + 2n);
    expect(b.readBigInt64LE(32)).toBe(-5n);
    expect(b.readUInt32LE(52)).toBe(7);
    expect([b.readUInt32LE(60), b.readUInt32LE(64), b.readUInt32LE(80)]).toEqual([0o100644, 3, 4096]);
  });
  it('dirents: 24-byte head, name, zero padding to 8; d_type from the mode', () => {
    expect([direntSize(1), direntSize(8), direntSize(9)]).toEqual([32, 32, 40]);
    const b = Buffer.alloc(64, 0xee);
    const next = putDirent(b, 0, 'caf\xe9', 0o40755, 0, 42, 3);
    expect(next).toBe(32);
    expect([b.readBigUInt64LE(0), b.readBigUInt64LE(8), b.readUInt32LE(16), b.readUInt32LE(20)]).toEqual([42n, 3n, 4, 4]);
    expect(b.subarray(24, 28).toString('latin1')).toBe('caf\xe9');
    expect([...b.subarray(28, 32)]).toEqual([0, 0, 0, 0]);
    expect(cstr(Buffer.from('ab\0cd\0', 'latin1'), 0, 6)).toEqual(['ab', 3]);
  });
});

describe('fuse_server=, fuse_minor=, fuse_off=', () => {
  const cfg = (o: string, uid = 0) => parseMountArgs({ options: [o], mountpoint: '/m', source: undefined, foreground: false, debug: false, cwd: '/', uid });
  it('the default is stratafs\'s own server; fuse_server=kernel names it; a minor cap reaches its mount description', () => {
    expect(cfg('lowerdir=/a').fuseApi).toBe('lowlevel');
    expect(kernelMount(cfg('lowerdir=/a')).maxMinor).toBeUndefined();
    const c = cfg('lowerdir=/a,upperdir=/u,workdir=/w,fuse_server=kernel,fuse_minor=19');
    expect([c.fuseApi, c.fuseMinor]).toEqual(['lowlevel', 19]);
    expect(kernelMount(c).maxMinor).toBe(19);
    expect(kernelMount(cfg('lowerdir=/a,fuse_minor=30')).maxMinor).toBe(30);
  });
  it('fuse_api=highlevel picks fuse-native\'s binding without a word about the server', () => {
    expect(cfg('lowerdir=/a,fuse_api=highlevel').fuseApi).toBe('highlevel');
  });
  it('refuses what cannot work, naming the option', () => {
    expect(() => cfg('lowerdir=/a,fuse_server=fuse')).toThrow(/fuse_server/);
    expect(() => cfg('lowerdir=/a,fuse_server=libfuse')).toThrow(/^fuse_server=libfuse was removed.*: fuse_server=libfuse$/);
    expect(() => cfg('lowerdir=/a,fuse_minor=18')).toThrow(/19 to 45/);
    expect(() => cfg('lowerdir=/a,fuse_minor=46')).toThrow(/19 to 45/);
    expect(() => cfg('lowerdir=/a,fuse_api=highlevel,fuse_minor=19')).toThrow(/fuse_minor= is not for fuse_api=highlevel/);
    expect(() => cfg('lowerdir=/a,fuse_server=kernel,fuse_api=highlevel')).toThrow(/low-level API only/);
  });
  it('fuse_off= names known features (or all) and reaches the mount description', () => {
    const c = cfg('lowerdir=/a,fuse_off=big_writes:async_read');
    expect(c.fuseOff).toEqual(['big_writes', 'async_read']);
    expect(kernelMount(c).off).toEqual(['big_writes', 'async_read']);
    expect(kernelMount(cfg('lowerdir=/a')).off).toEqual([]);
    expect(() => cfg('lowerdir=/a,fuse_off=warp_drive')).toThrow(/unknown FUSE feature in fuse_off.*: warp_drive/);
    expect(() => cfg('lowerdir=/a,fuse_api=highlevel,fuse_off=all')).toThrow(/fuse_off= is not for fuse_api=highlevel/);
  });
  it('io_uring: asked for only with -o io_uring, not beside fuse_api=highlevel; settled only where the kernel offers OVER_IO_URING (flags2 bit 9, 7.42)', () => {
    expect(kernelMount(cfg('lowerdir=/a')).ioUring).toBeUndefined();
    expect(kernelMount(cfg('lowerdir=/a,io_uring')).ioUring).toBe(true);
    expect(kernelMount(cfg('lowerdir=/a,io_uring=off')).ioUring).toBeUndefined();
    expect(() => cfg('lowerdir=/a,fuse_api=highlevel,io_uring')).toThrow(/io_uring is not for fuse_api=highlevel/);
    const INIT_EXT = 1 << 30;
    // 6.18 with enable_uring=N offers flags2 0x5fd; with Y bit 9 (0x200) too
    expect(settle(45, 0x73fffffb, 0x5fd, new Set()).on).not.toContain('io_uring');
    const on = settle(45, 0x73fffffb, 0x5fd | 0x200, new Set());
    expect(on.on).toContain('io_uring');
    expect(on.flags2 & 0x200).toBe(0x200);
    expect(on.flags & INIT_EXT).toBe(INIT_EXT);
    expect(settle(41, 0x73fffffb, 0x5fd | 0x200, new Set()).on).not.toContain('io_uring');
    expect(settle(45, 0x73fffffb, 0x5fd | 0x200, new Set(['io_uring'])).on).not.toContain('io_uring');
    // flags2 counts only with INIT_EXT in the kernel's flags
    expect(settle(45, 0x73fffffb & ~INIT_EXT, 0x5fd | 0x200, new Set()).on).not.toContain('io_uring');
  });
  it('posix_acl is off where the mount rules it out: noxattrs, and ids shown mapped (an ACL holds on-disk ids)', () => {
    expect(kernelMount(cfg('lowerdir=/a,noxattrs=1')).off).toEqual(['posix_acl']);
    expect(kernelMount(cfg('lowerdir=/a,uidmapping=0:1000:1')).off).toEqual(['posix_acl']);
    expect(kernelMount(cfg('lowerdir=/a,squash_to_root,fuse_off=big_writes')).off).toEqual(['big_writes', 'posix_acl']);
  });
  it('passthrough_lower: not with fuse_api=highlevel; without an upper layer lower files pass through anyway; max_stack_depth 1 on plain layers', () => {
    expect(cfg('lowerdir=/a,upperdir=/u,workdir=/w').passthroughLower).toBe(false);
    expect(cfg('lowerdir=/a,upperdir=/u,workdir=/w,passthrough_lower').passthroughLower).toBe(true);
    expect(cfg('lowerdir=/a').passthroughLower).toBe(true);
    expect(() => cfg('lowerdir=/a,upperdir=/u,workdir=/w,passthrough_lower,fuse_api=highlevel')).toThrow(/passthrough_lower is not for fuse_api=highlevel/);
    // / is no overlay mount here: depth 1 (a layer on kernel overlayfs: fuse-passthrough.test.ts)
    expect(kernelMount(cfg('lowerdir=/,passthrough_lower')).stackDepth).toBe(1);
  });
  it('request_timeout= takes 0 to 65535 seconds and reaches the mount description (0: the feature is not asked for)', () => {
    const c = cfg('lowerdir=/a,request_timeout=30');
    expect(c.requestTimeout).toBe(30);
    expect(kernelMount(c).requestTimeout).toBe(30);
    expect(kernelMount(cfg('lowerdir=/a')).requestTimeout).toBe(0);
    expect(() => cfg('lowerdir=/a,request_timeout=65536')).toThrow(/request_timeout/);
    expect(() => cfg('lowerdir=/a,request_timeout=1.5')).toThrow(/request_timeout/);
    expect(() => cfg('lowerdir=/a,fuse_api=highlevel,request_timeout=30')).toThrow(/request_timeout= is not for fuse_api=highlevel/);
  });
  it('fusermount3 gets the generic flags and the kernel words, never libfuse-only ones', () => {
    const w = fusermountWords(kernelMount(cfg('lowerdir=/a,upperdir=/u,workdir=/w', 1000)));
    expect(w).toEqual(['rw', 'nosuid', 'nodev', 'exec', 'noatime', 'default_permissions', 'fsname=stratafs', 'subtype=stratafs']);
  });
});

describe('listings on the wire (readdir.ts)', () => {
  it('READDIRPLUS hands out (calls entry for) only the names that fit whole, with the dirent after each entry', () => {
    const names = ['.', '..', 'a', 'bbbbbbbbbbbbbbbbb', 'c'];
    const modeIno = new Float64Array([0o40000, 0, 1, 0o40000, 0, 1, 0o100000, 0, 5, 0o100000, 0, 6, 0o100000, 0, 7]);
    const b = Buffer.alloc(4096);
    const called: number[] = [];
    // 3 x 160 (`.`, `..`, `a`) + 128 + 48 for the long name: 656; 500 bytes hold three
    const [len, n] = encodeDirPlus(b, 0, 500, 10, names, modeIno, (p, i) => { called.push(i); b.writeUInt32LE(100 + i, p); });
    expect([len, n, called]).toEqual([480, 3, [0, 1, 2]]);
    expect(direntPlusSize(1)).toBe(160);
    // each record: entry (node at 0), then the dirent: ino, off = firstOffset + i + 1, namelen, type
    expect([b.readUInt32LE(320), b.readUInt32LE(320 + 128), b.readUInt32LE(320 + 136), b.readUInt32LE(320 + 144), b.readUInt32LE(320 + 148)]).toEqual([102, 5, 13, 1, 8]);
    expect(encodeDir(b, 0, 500, 0, names, modeIno)).toEqual([32 * 4 + 48, 5]);
  });
  it('open flags: keep_cache, direct_io, cache_dir as FOPEN_*', () => {
    expect([fopenFlags(1), fopenFlags(2), fopenFlags(4), fopenFlags(5)]).toEqual([2, 1, 8, 10]);
  });
});

describe('file requests (file-requests.ts): decoding and replies', () => {
  const calls: unknown[][] = [];
  const H = {
    lseek: (...a: unknown[]) => calls.push(['lseek', ...a]),
    copyFileRange: (...a: unknown[]) => calls.push(['cfr', ...a]),
    syncfs: (...a: unknown[]) => calls.push(['syncfs', ...a]),
    tmpfile: (...a: unknown[]) => calls.push(['tmpfile', ...a]),
  } as unknown as LowLevelHandlers;
  it('STATX: the handle only with GETATTR_FH; fuse_statx with the basic mask, and the birth time when known', () => {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(1, 0); b.writeBigUInt64LE(42n, 8);
    const withStatx = { ...H, statx: (...a: unknown[]) => calls.push(['statx', ...a]) } as unknown as LowLevelHandlers;
    expect(fileRequest(Op.STATX, 7, 3, b, 0, withStatx, () => true, () => undefined)).toBe(true);
    expect(calls.pop()).toEqual(['statx', 7, 3, 42]);
    b.writeUInt32LE(0, 0);
    expect(fileRequest(Op.STATX, 7, 3, b, 0, withStatx, () => true, () => undefined)).toBe(true);
    expect(calls.pop()).toEqual(['statx', 7, 3, -1]);
    expect(fileRequest(Op.STATX, 7, 3, b, 0, withStatx, (f) => f !== 'statx', () => undefined)).toBe(false);
    const d = new Float64Array(STAT_LEN);
    d[StatIdx.mode] = 0o20644; d[StatIdx.rdev] = Number((0x123n << 8n) | 0x45n | (0xabn << 12n) << 8n); d[StatIdx.nlink] = 2;
    d[StatIdx.inoLo] = 9; d[StatIdx.sizeLo] = 5; d[StatIdx.mtimeSec] = -3; d[StatIdx.mtimeNsec] = 11;
    const o = Buffer.alloc(STATX_OUT);
    putStatx(o, 0, d, { sec: 1_700_000_000, nsec: 5 }, 1.5);
    expect([o.readBigUInt64LE(0), o.readUInt32LE(8)]).toEqual([1n, 500000000]);
    expect(o.readUInt32LE(32)).toBe(0xfff);
    expect([o.readUInt32LE(48), o.readUInt16LE(60), o.readBigUInt64LE(64), o.readBigUInt64LE(72)]).toEqual([2, 0o20644, 9n, 5n]);
    expect([o.readBigInt64LE(32 + 80), o.readUInt32LE(32 + 88)]).toEqual([1_700_000_000n, 5]);
    expect([o.readBigInt64LE(32 + 112), o.readUInt32LE(32 + 120)]).toEqual([-3n, 11]);
    putStatx(o, 0, d, undefined, 0);
    expect([o.readUInt32LE(32), o.readBigInt64LE(32 + 80)]).toEqual([0x7ff, 0n]);
  });
  it('LSEEK, COPY_FILE_RANGE(_64), SYNCFS, TMPFILE reach their handler only with their feature on', () => {
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(7n, 0); b.writeBigUInt64LE(2n ** 53n + 3n, 8); b.writeUInt32LE(3, 16);
    let umask = -1;
    expect(fileRequest(Op.LSEEK, 1, 5, b, 0, H, () => true, (u) => { umask = u; })).toBe(true);
    expect(calls.pop()).toEqual(['lseek', 1, 5, 7, 2n ** 53n + 3n, 3]);
    expect(fileRequest(Op.LSEEK, 1, 5, b, 0, H, (f) => f !== 'lseek', () => undefined)).toBe(false);
    b.fill(0);
    // fh_in 0, off_in 8, nodeid_out 16, fh_out 24, off_out 32, len 40, flags 48
    [9n, 10n, 11n, 12n, 13n, 2n ** 33n, 0n].forEach((v, i) => b.writeBigUInt64LE(v, 8 * i));
    expect(fileRequest(Op.COPY_FILE_RANGE_64, 2, 6, b, 0, H, (f) => f === 'copy_file_range_64', () => undefined)).toBe(true);
    expect(calls.pop()).toEqual(['cfr', 2, 6, 9, 10, 11, 12, 13, 2 ** 33, 0]);
    expect(fileRequest(Op.COPY_FILE_RANGE, 2, 6, b, 0, H, (f) => f === 'copy_file_range_64', () => undefined)).toBe(false);
    b.writeBigInt64LE(-1n, 8);
    expect(fileRequest(Op.COPY_FILE_RANGE, 2, 6, b, 0, H, () => true, () => undefined)).toBe(true);
    expect(calls.pop()![4]).toBe(-1);
    b.fill(0);
    b.writeUInt32LE(0o102, 0); b.writeUInt32LE(0o100640, 4); b.writeUInt32LE(0o22, 8);
    expect(fileRequest(Op.TMPFILE, 3, 1, b, 0, H, () => true, (u) => { umask = u; })).toBe(true);
    expect([calls.pop(), umask]).toEqual([['tmpfile', 3, 1, 0o100640, 0o102], 0o22]);
    expect(fileRequest(Op.SYNCFS, 4, 1, b, 0, H, () => true, () => undefined)).toBe(true);
    expect(calls.pop()).toEqual(['syncfs', 4, 1]);
    expect(fileRequest(Op.STATX, 4, 1, b, 0, H, () => true, () => undefined)).toBe(false);
    expect(fileRequest(Op.BMAP, 4, 1, b, 0, H, () => true, () => undefined)).toBe(false);
  });
  it('replies: lseek_out is one signed u64; the copy count fits fuse_write_out and fuse_copy_file_range_out alike', () => {
    const b = Buffer.alloc(8);
    putOffset(b, 0, 2n ** 60n);
    expect(b.readBigInt64LE(0)).toBe(2n ** 60n);
    putOffset(b, 0, 1048576);
    expect(b.readBigInt64LE(0)).toBe(1048576n);
    putCount(b, 0, 2 ** 33 + 1);
    expect(b.readBigUInt64LE(0)).toBe(2n ** 33n + 1n);
    putCount(b, 0, 4096);
    // fuse_write_out: size, then a zero padding
    expect([b.readUInt32LE(0), b.readUInt32LE(4)]).toEqual([4096, 0]);
  });
});

describe('INIT settles features (features.ts)', () => {
  const INIT_EXT = 1 << 30;
  it('asks for a feature only when offered, in the minor, and not switched off', () => {
    // the listing features (and close_to_open, an OPEN answer) are switched off here, so each line sees the others alone
    const MINE = ['cache_dir', 'readdirplus', 'readdirplus_auto', 'parallel_dirops', 'close_to_open'];
    const ops = ['lseek', 'copy_file_range', 'copy_file_range_64', 'syncfs', 'tmpfile', 'statx'];
    const later = ['max_pages', 'cache_symlinks', 'posix_acl', 'killpriv_v2', 'passthrough', 'rename2', ...MINE];
    // this machine's 6.18: 7.45, flags 0x73fffffb with INIT_EXT, flags2 0x5fd (REQUEST_TIMEOUT is bit 10)
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(later))).toEqual({ flags: 0x21 | INIT_EXT, flags2: 1 << 10, on: ['async_read', 'big_writes', ...ops, 'request_timeout'] });
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['big_writes', ...later, 'request_timeout']))).toEqual({ flags: 0x1, flags2: 0, on: ['async_read', ...ops] });
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['posix_acl'])).flags & (1 << 22)).toBe(1 << 22);
    expect(settle(27, 0x73fffffb, 0, new Set()).on).not.toContain('max_pages');
    // POSIX_ACL comes with DONT_MASK (the server applies a default ACL or the umask: core/acl.ts), from 7.26
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(MINE)).on).toContain('posix_acl');
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(MINE)).flags & 0x100040).toBe(0x100040);
    expect(settle(25, 0x73fffffb, 0, new Set(MINE)).on).not.toContain('posix_acl');
    expect(settle(45, 0x73fffffb & ~0x40, 0x5fd, new Set(MINE)).on).not.toContain('posix_acl');
    // HANDLE_KILLPRIV_V2 is 7.33's
    const mine = ['max_pages', 'cache_symlinks', ...MINE, ...ops, 'request_timeout'];
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['posix_acl', 'passthrough', 'rename2', 'writeback_cache', ...mine]))).toEqual({ flags: 0x10000021, flags2: 0, on: ['async_read', 'big_writes', 'killpriv_v2'] });
    expect(settle(32, 0x73fffffb, 0, new Set(['posix_acl', 'passthrough', 'rename2', ...mine]))).toEqual({ flags: 0x21, flags2: 0, on: ['async_read', 'big_writes'] });
    // WRITEBACK_CACHE (7.23) only together with killpriv_v2 (a cached write carries no caller), and not with passthrough
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['posix_acl', 'passthrough', 'rename2', ...mine]))).toEqual({ flags: 0x10010021, flags2: 0, on: ['async_read', 'big_writes', 'killpriv_v2', 'writeback_cache'] });
    expect(settle(45, 0x73fffffb & ~0x10000000, 0x5fd, new Set(['posix_acl', 'passthrough', 'rename2', ...mine])).on).not.toContain('writeback_cache');
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['posix_acl', 'rename2', ...mine])).on).toEqual(['async_read', 'big_writes', 'killpriv_v2', 'passthrough']);
    // kernel 6.18 offers flags2 0x5fd: PASSTHROUGH (bit 37 of the protocol, 0x20 of flags2) among them
    const OLD = new Set(['posix_acl', 'killpriv_v2', 'rename2', ...mine]);
    expect(settle(45, 0x73fffffb, 0x5fd, OLD)).toEqual({ flags: 0x21 | INIT_EXT, flags2: 0x20, on: ['async_read', 'big_writes', 'passthrough'] });
    // passthrough is 7.40: not at 7.39, nor without INIT_EXT (flags2 is not read then)
    expect(settle(39, 0x73fffffb, 0x5fd, OLD)).toEqual({ flags: 0x21, flags2: 0, on: ['async_read', 'big_writes'] });
    expect(settle(45, 0x33fffffb, 0x5fd, OLD)).toEqual({ flags: 0x21, flags2: 0, on: ['async_read', 'big_writes'] });
    // rename2 is an opcode of 7.23, asking for no INIT flag: on from that minor, whatever the kernel's flags
    expect(settle(23, 0, 0, new Set(MINE))).toEqual({ flags: 0, flags2: 0, on: ['rename2'] });
    expect(settle(22, 0x21, 0, new Set(MINE))).toEqual({ flags: 0x21, flags2: 0, on: ['async_read', 'big_writes'] });
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(MINE)).on).toContain('rename2');
    expect(settle(45, 0x73fffffb, 0x5fd, new Set([...MINE, 'all']))).toEqual({ flags: 0, flags2: 0, on: [] });
    expect(settle(45, 0x1, 0, new Set([...MINE, ...ops]))).toEqual({ flags: 0x1, flags2: 0, on: ['async_read', 'rename2'] });
    expect(settle(8, 0x21, 0, new Set(MINE))).toEqual({ flags: 0x1, flags2: 0, on: ['async_read'] });
    // only the features of this file (other helpers add theirs): compare the listing features' part
    const on = (minor: number, kflags: number, off: string[]): [number, string[]] => {
      const r = settle(minor, kflags, 0x5fd, new Set(off));
      const mine = ['async_read', 'big_writes', 'cache_dir', 'readdirplus', 'readdirplus_auto', 'parallel_dirops'];
      return [r.flags & 0x46021, r.on.filter((n) => mine.includes(n))];
    };
    const ALL = ['async_read', 'big_writes', 'cache_dir', 'readdirplus', 'readdirplus_auto', 'parallel_dirops'];
    expect(on(45, 0x73fffffb, [])).toEqual([0x46021, ALL]);
    expect(on(45, 0x73fffffb, ['big_writes'])).toEqual([0x46001, ALL.filter((n) => n !== 'big_writes')]);
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['all']))).toEqual({ flags: 0, flags2: 0, on: [] });
    expect(on(45, 0x1, [])).toEqual([0x1, ['async_read', 'cache_dir']]);
    expect(on(8, 0x21, [])).toEqual([0x1, ['async_read']]);
    // cache_dir is an OPENDIR answer (7.28), no flag; readdirplus_auto needs readdirplus
    expect(on(27, 0x73fffffb, [])).toEqual([0x46021, ['async_read', 'big_writes', 'readdirplus', 'readdirplus_auto', 'parallel_dirops']]);
    expect(on(45, 0x73fffffb, ['readdirplus'])).toEqual([0x40021, ['async_read', 'big_writes', 'cache_dir', 'parallel_dirops']]);
    expect(on(45, 0x73fffffb & ~0x2000, [])).toEqual([0x40021, ['async_read', 'big_writes', 'cache_dir', 'parallel_dirops']]);
    // an opcode feature needs no flag, only its minor: LSEEK 7.24, COPY_FILE_RANGE 7.28, SYNCFS 7.34, TMPFILE 7.37, STATX 7.39, _64 7.45
    expect(settle(45, 0x1, 0, new Set(MINE))).toEqual({ flags: 0x1, flags2: 0, on: ['async_read', 'rename2', ...ops] });
    expect(settle(37, 0x1, 0, new Set(MINE)).on).toEqual(['async_read', 'rename2', 'lseek', 'copy_file_range', 'syncfs', 'tmpfile']);
    expect(settle(39, 0x1, 0, new Set(MINE)).on).toContain('statx');
    expect(settle(27, 0x1, 0, new Set(MINE)).on).toEqual(['async_read', 'rename2', 'lseek']);
    // flags2 counts only when the kernel set INIT_EXT
    expect(settle(45, 0x33fffffb, 0x5fd, new Set()).on).not.toContain('request_timeout');
    // close_to_open is an OPEN answer and NOTIFY_INVAL_INODE (7.12): no flag, on at every minor the server speaks
    expect(settle(19, 0, 0, new Set()).on).toContain('close_to_open');
    expect(settle(19, 0, 0, new Set()).flags).toBe(0);
    expect(settle(45, 0x73fffffb, 0x5fd, new Set(['close_to_open'])).on).not.toContain('close_to_open');
  });
  it('a feature that excludes another keeps it off (the kernel drops PASSTHROUGH answered with WRITEBACK_CACHE)', () => {
    const pt = FEATURES.find((f) => f.name === 'passthrough');
    expect(pt?.excludes).toEqual(['writeback_cache']);
    const wb = FEATURES.findIndex((f) => f.name === 'writeback_cache');
    // listed after passthrough, so settle() has seen the exclusion when it gets there
    if (wb >= 0) {
      expect(wb).toBeGreaterThan(FEATURES.indexOf(pt!));
      expect(settle(45, 0x73fffffb, 0x5fd, new Set()).on).not.toContain('writeback_cache');
    }
  });
  it('every feature has a distinct name and asks for INIT_EXT only through flags2', () => {
    const names = FEATURES.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of FEATURES) expect(f.flags & INIT_EXT).toBe(0);
  });
});

describe('request sizes (sizes.ts)', () => {
  it('max_pages: max_write 1 MiB in 256 pages, never beyond the read room; without it the mount word, no max_pages', () => {
    const big = readRoom(BIG_WRITE);
    expect(big.slot).toBe(BIG_WRITE + 4096);
    expect(initSizes(['max_pages'], 131072, big.slot)).toEqual({ maxWrite: BIG_WRITE, maxPages: 256 });
    expect(initSizes([], 131072, big.slot)).toEqual({ maxWrite: 131072, maxPages: 0 });
    // a room made for 128 KiB (max_pages ruled out by the options) caps what INIT may say
    expect(initSizes(['max_pages'], 131072, readRoom(131072).slot)).toEqual({ maxWrite: 131072, maxPages: 32 });
    expect(readRoom(4096).slot).toBe(8192);
  });
  it('max_pages is possible unless switched off or the minor is capped below 7.28', () => {
    expect(maxPagesPossible(new Set(), undefined)).toBe(true);
    expect(maxPagesPossible(new Set(['max_pages']), undefined)).toBe(false);
    expect(maxPagesPossible(new Set(['all']), undefined)).toBe(false);
    expect(maxPagesPossible(new Set(), 27)).toBe(false);
  });
  it('requests lie packed, each at the previous end rounded up to 8', () => {
    expect(nextRequest(0, 41)).toBe(48);
    expect(nextRequest(48, 48)).toBe(96);
    expect(nextRequest(96, BIG_WRITE + 80)).toBe(96 + BIG_WRITE + 80);
  });
});
