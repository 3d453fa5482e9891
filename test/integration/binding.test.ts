/**
 * The patched fuse-native binding, on a real mount served by a child process
 * (test/harness/binding-fs.mjs, an in-memory filesystem that logs what each
 * handler receives). Each test targets one fix of native-notes/fuse-binding.md
 * and fails on the unpatched binding.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error plain .mjs harness module without type declarations
import { ensureBuilt, failingFixture, mountinfoAt, startFixture } from '../harness/binding-fixture.mjs';

interface LogEntry {
  op: string;
  path?: string | null;
  [k: string]: unknown;
}
interface Fixture {
  base: string;
  mnt: string;
  alive: boolean;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: string | null }>;
  child: { pid: number };
  entries(): Promise<LogEntry[]>;
  mark(): Promise<void>;
  stop(): Promise<void>;
}
const start = startFixture as (options?: object, extra?: object, where?: { mnt?: string }) => Promise<Fixture>;
const mountsAt = mountinfoAt as (mnt: string) => Promise<string[]>;
const startFailing = failingFixture as (options: object) => Promise<{ code: number | string; stdout: string; stderr: string; ms: number; mountsLeft: number }>;

const UTIME_NOW = (1 << 30) - 1;
const UTIME_OMIT = (1 << 30) - 2;

/** Runs a program; resolves with exit code, stdout and stderr (never throws). */
function runCmd(cmd: string, args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr, pid: c.pid ?? -1 }); });
  });
}

const ops = (entries: LogEntry[], op: string, path?: string | null): LogEntry[] =>
  entries.filter((e) => e.op === op && (path === undefined || e.path === path));

describe('patched fuse-native on a real mount', () => {
  let fx: Fixture;
  const p = (name: string): string => join(fx.mnt, name);

  beforeAll(async () => {
    ensureBuilt();
    // attr/entry timeouts 0: every stat reaches the handlers, so the log shows it
    fx = await start({ allowOther: true, attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 });
  });
  afterAll(async () => {
    await fx?.stop();
  });

  it('utimens receives atime and mtime separately with nanoseconds (touch -d)', async () => {
    await writeFile(p('t1'), 'x');
    await fx.mark();
    const r = await runCmd('touch', ['-d', '2001-02-03 04:05:06.123456789', p('t1')]);
    expect(r.code).toBe(0);
    const [u] = ops(await fx.entries(), 'utimens', '/t1');
    expect(u).toMatchObject({ atimeSec: 981173106, atimeNsec: 123456789, mtimeSec: 981173106, mtimeNsec: 123456789 });
    const st = await stat(p('t1'), { bigint: true });
    expect(st.mtimeNs).toBe(981173106123456789n);
    expect(st.atimeNs).toBe(981173106123456789n);
  });

  it('touch -m and touch -a reach utimens with UTIME_OMIT for the other time', async () => {
    await writeFile(p('t2'), 'x');
    await runCmd('touch', ['-d', '2001-02-03 04:05:06.5', p('t2')]);
    await fx.mark();
    expect((await runCmd('touch', ['-m', '-d', '2010-01-01 00:00:00.25', p('t2')])).code).toBe(0);
    expect((await runCmd('touch', ['-a', p('t2')])).code).toBe(0);
    const u = ops(await fx.entries(), 'utimens', '/t2');
    expect(u).toHaveLength(2);
    expect(u[0]).toMatchObject({ atimeNsec: UTIME_OMIT, mtimeSec: 1262304000, mtimeNsec: 250000000 });
    expect(u[1]).toMatchObject({ atimeNsec: UTIME_NOW, mtimeNsec: UTIME_OMIT });
    const st = await stat(p('t2'), { bigint: true });
    expect(st.mtimeNs).toBe(1262304000250000000n); // touch -a kept it
    expect(st.atimeNs > 981173106500000000n).toBe(true); // touch -a set it to now
  });

  it('create receives the open flags (O_EXCL, O_TRUNC, O_APPEND)', async () => {
    await fx.mark();
    await (await open(p('c-excl'), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY)).close();
    await (await open(p('c-trunc'), fsc.O_CREAT | fsc.O_TRUNC | fsc.O_WRONLY)).close();
    await (await open(p('c-append'), fsc.O_CREAT | fsc.O_APPEND | fsc.O_WRONLY)).close();
    const e = await fx.entries();
    const flags = (path: string): number => Number(ops(e, 'create', path)[0]?.flags);
    expect(flags('/c-excl') & fsc.O_EXCL).toBe(fsc.O_EXCL);
    expect(flags('/c-excl') & (fsc.O_TRUNC | fsc.O_APPEND)).toBe(0);
    expect(flags('/c-trunc') & fsc.O_TRUNC).toBe(fsc.O_TRUNC);
    expect(flags('/c-append') & fsc.O_APPEND).toBe(fsc.O_APPEND);
  });

  // the unpatched binding answered fgetattr by calling the getattr handler
  it('fgetattr is called with the file handle (not getattr)', async () => {
    await writeFile(p('fg'), 'abc');
    await fx.mark();
    const fh = await open(p('fg'), 'r');
    try {
      // reading past the cached size makes the kernel refresh attributes through the open file
      const { bytesRead } = await fh.read(Buffer.alloc(10), 0, 10, 100);
      expect(bytesRead).toBe(0);
    } finally {
      await fh.close();
    }
    const e = await fx.entries();
    const fg = ops(e, 'fgetattr', '/fg');
    expect(fg.length).toBeGreaterThan(0);
    const [opened] = ops(e, 'open', '/fg');
    expect(typeof opened?.fh).toBe('number');
    expect(fg.every((x) => x.fh === opened!.fh)).toBe(true);
  });

  it('64-bit st_ino and st_size, st_blksize and nanosecond times round-trip through stat', async () => {
    const st = await stat(p('big'), { bigint: true });
    expect(st.ino).toBe(2n ** 40n + 7n);
    expect(st.size).toBe(6n * 2n ** 30n);
    expect(st.blksize).toBe(65536n);
    expect(st.atimeNs).toBe(981173106123456789n);
    expect(st.mtimeNs).toBe(4102444800987654321n);
    expect(st.ctimeNs).toBe(1234567890000000001n);
  });

  it('statvfs fields cross in full width', async () => {
    const sf = await statfs(fx.mnt, { bigint: true });
    expect(sf.blocks).toBe(2n ** 33n + 11n);
    expect(sf.bfree).toBe(2n ** 33n + 5n);
    expect(sf.bavail).toBe(2n ** 33n + 3n);
    expect(sf.files).toBe(2n ** 34n + 1n);
  });

  it('readdir passes d_type and the 64-bit d_ino without a stat per entry', async () => {
    await fx.mark();
    const r = await runCmd('python3', ['-c', `
import os, json
print(json.dumps({e.name: [e.inode(), e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)] for e in os.scandir(${JSON.stringify(fx.mnt)})}))`]);
    expect(r.stderr).toBe('');
    const seen = JSON.parse(r.stdout) as Record<string, [number, boolean, boolean]>;
    expect(seen.big).toEqual([2 ** 40 + 7, false, true]);
    // d_type came with the entries: python never had to stat them
    expect(ops(await fx.entries(), 'getattr', '/big')).toHaveLength(0);
  });

  it('readdir gets the directory handle that opendir answered', async () => {
    await fx.mark();
    await readdir(fx.mnt);
    const e = await fx.entries();
    const opened = ops(e, 'opendir', '/');
    const listed = ops(e, 'readdir', '/');
    expect(opened).toHaveLength(1);
    expect(listed.length).toBeGreaterThan(0);
    expect(opened[0]!.fh).toBeGreaterThan(0);
    for (const r of listed) expect(r.fh).toBe(opened[0]!.fh);
  });

  it('a name that is not UTF-8 round-trips through create, readdir, stat and unlink', async () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9"
    const file = Buffer.concat([Buffer.from(fx.mnt + '/'), name]);
    await fx.mark();
    await writeFile(file, 'latin1');
    const names = await readdir(Buffer.from(fx.mnt), { encoding: 'buffer' });
    expect(names.some((n) => n.equals(name))).toBe(true);
    expect((await stat(file)).size).toBe(6);
    await unlink(file);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
    const e = await fx.entries();
    expect(ops(e, 'create', '/caf\xe9')).toHaveLength(1);
    expect(ops(e, 'unlink', '/caf\xe9')).toHaveLength(1);
  });

  it('an unlinked open file stays usable, handlers get a null path, no .fuse_hidden appears', async () => {
    await writeFile(p('gone'), 'still here');
    const fh = await open(p('gone'), 'r+');
    try {
      await fx.mark();
      await unlink(p('gone'));
      const names = await readdir(fx.mnt);
      expect(names.filter((n) => n.startsWith('.fuse_hidden'))).toEqual([]);
      expect(names).not.toContain('gone');
      const buf = Buffer.alloc(32);
      const { bytesRead } = await fh.read(buf, 0, 32, 0);
      expect(buf.subarray(0, bytesRead).toString()).toBe('still here');
      await fh.write('S', 0);
      await fh.truncate(5);
    } finally {
      await fh.close();
    }
    // The kernel sends RELEASE asynchronously after close() returns: wait for it to reach the fixture.
    // Waited for as an outcome; the deadline only guards a hang (a loaded machine may take seconds).
    let e = await fx.entries();
    for (const until = Date.now() + 30_000; Date.now() < until && ops(e, 'release', null).length === 0;) {
      await new Promise((r) => setTimeout(r, 100));
      e = await fx.entries();
    }
    expect(ops(e, 'rename')).toEqual([]);
    expect(ops(e, 'read', null).length).toBeGreaterThan(0);
    expect(ops(e, 'write', null).length).toBeGreaterThan(0);
    expect(ops(e, 'ftruncate', null).length).toBeGreaterThan(0);
    expect(ops(e, 'release', null).length).toBe(1);
  });

  it('handlers learn the caller: a file created by uid 1000 (allow_other) is owned by uid 1000', async () => {
    await fx.mark();
    const r = await runCmd('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'touch', p('by-1000')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [c] = ops(await fx.entries(), 'create', '/by-1000');
    expect(c?.ctx).toMatchObject({ uid: 1000, gid: 1000, pid: r.pid });
    const st = await stat(p('by-1000'));
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
  });

  it('getxattr / listxattr answer ERANGE for a too small buffer and the exact size for a probe; names are bytes', async () => {
    await writeFile(p('xa'), '');
    const r = await runCmd('python3', ['-c', `
import ctypes, os, json
libc = ctypes.CDLL(None, use_errno=True)
f = ${JSON.stringify(fx.mnt + '/big')}.encode()
out = {}
buf = ctypes.create_string_buffer(256)
out['get_small'] = [libc.getxattr(f, b'user.big', buf, 4), ctypes.get_errno()]
out['get_probe'] = libc.getxattr(f, b'user.big', None, 0)
out['get_full'] = libc.getxattr(f, b'user.big', buf, 256)
out['list_probe'] = libc.listxattr(f, None, 0)
ctypes.set_errno(0)
out['list_small'] = [libc.listxattr(f, buf, 4), ctypes.get_errno()]
n = libc.listxattr(f, buf, 256)
out['list'] = buf.raw[:n].hex()
g = ${JSON.stringify(fx.mnt + '/xa')}.encode()
out['set_latin1'] = libc.setxattr(g, b'user.caf\\xe9', b'v', 1, 0)
n = libc.listxattr(g, buf, 256)
out['list_latin1'] = buf.raw[:n].hex()
print(json.dumps(out))`]);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out.get_small).toEqual([-1, 34]);
    expect(out.get_probe).toBe(100);
    expect(out.get_full).toBe(100);
    expect(out.list_probe).toBe('user.big\0user.small\0'.length);
    expect(out.list_small).toEqual([-1, 34]);
    expect(Buffer.from(out.list as string, 'hex').toString('latin1')).toBe('user.big\0user.small\0');
    expect(out.set_latin1).toBe(0);
    expect(Buffer.from(out.list_latin1 as string, 'hex').toString('latin1')).toBe('user.caf\xe9\0');
  });

  it('open can ask for direct_io: reads reach the handler with the caller\'s size', async () => {
    await fx.mark();
    const fh = await open(p('dio'), 'r');
    try {
      const { bytesRead } = await fh.read(Buffer.alloc(3), 0, 3, 0);
      expect(bytesRead).toBe(3);
    } finally {
      await fh.close();
    }
    const reads = ops(await fx.entries(), 'read', '/dio');
    expect(reads.map((e) => e.len)).toEqual([3]);
  });

  it('read/write offsets beyond 4 GiB, mknod dev and fallocate reach the handlers', async () => {
    await fx.mark();
    const fh = await open(p('off'), 'w');
    try {
      await fh.write(Buffer.from('z'), 0, 1, 2 ** 32 + 10);
    } finally {
      await fh.close();
    }
    expect((await runCmd('mknod', [p('cdev'), 'c', '300', '70000'])).code).toBe(0);
    expect((await runCmd('fallocate', ['-l', '1M', p('falloc')])).code).toBe(0);
    const e = await fx.entries();
    expect(ops(e, 'write', '/off')[0]).toMatchObject({ offset: 2 ** 32 + 10, len: 1 });
    // glibc makedev(300, 70000), as the kernel encodes it
    expect(ops(e, 'mknod', '/cdev')[0]).toMatchObject({ dev: 286338160 });
    const st = await stat(p('cdev'));
    expect(st.rdev).toBe(286338160);
    expect(ops(e, 'fallocate', '/falloc')[0]).toMatchObject({ mode: 0, offset: 0, length: 1048576 });
    expect((await stat(p('falloc'))).size).toBe(1048576);
  });

  it('writes arrive in 128 KiB requests (big_writes, max_write=131072)', async () => {
    await fx.mark();
    const r = await runCmd('dd', ['if=/dev/zero', `of=${p('dd')}`, 'bs=1M', 'count=4', 'conv=fsync']);
    expect(r.code).toBe(0);
    const sizes = ops(await fx.entries(), 'write', '/dd').map((e) => e.len);
    expect(sizes).toHaveLength(32);
    expect(new Set(sizes)).toEqual(new Set([131072]));
  });
});

describe('mount options and the session lifecycle', () => {
  const started: Fixture[] = [];
  const begin = async (options: object = {}, extra: object = {}, where: { mnt?: string } = {}): Promise<Fixture> => {
    const f = await start(options, extra, where);
    started.push(f);
    return f;
  };
  beforeAll(() => { ensureBuilt(); });
  afterAll(async () => {
    for (const f of started) await f.stop();
  });

  it('an outside umount ends the daemon, and nothing keeps its process alive', async () => {
    const f = await begin();
    const r = await runCmd('umount', [f.mnt]);
    expect(r.code).toBe(0);
    const res = await Promise.race([f.exited, new Promise((r2) => setTimeout(() => r2('timeout'), 10_000))]);
    expect(res).toEqual({ code: 0, signal: null });
    expect(f.stdout).toContain('EXIT');
  });

  it('SIGTERM unmounts and exits cleanly', async () => {
    const f = await begin();
    process.kill(f.child.pid, 'SIGTERM');
    const res = await Promise.race([f.exited, new Promise((r2) => setTimeout(() => r2('timeout'), 10_000))]);
    expect(res).toEqual({ code: 0, signal: null });
    expect(await mountsAt(f.mnt)).toEqual([]);
  });

  it('generic mount flags, nonempty and long option strings / mountpoints reach the kernel', async () => {
    // a comma must be escaped for libfuse's option parser (native/fuse-mount.ts's libfuseOptionWords does it)
    const longFsname = 'strata,fs-' + 'n'.repeat(1500);
    // over 1024 bytes: the old binding cut the mountpoint and option string there
    const deepBase = await mkdtemp(join(tmpdir(), 'stratafs-binding-deep-'));
    const deep = join(deepBase, ...Array.from({ length: 12 }, (_, i) => `${i}`.padStart(100, 'd')));
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'not-empty'), 'x');
    const f = await begin({ suid: true, dev: true, exec: false, fsname: longFsname, subtype: 'stratafs' }, {}, { mnt: deep });
    const [line] = await mountsAt(deep);
    expect(deep.length).toBeGreaterThan(1024);
    expect(line).toBeDefined();
    const [opts, rest] = line!.split(' - ');
    expect(opts!.split(' ')[5]!.split(',')).toEqual(expect.arrayContaining(['noexec']));
    expect(opts!.split(' ')[5]!.split(',')).not.toContain('nosuid');
    expect(opts!.split(' ')[5]!.split(',')).not.toContain('nodev');
    expect(rest!.split(' ')[0]).toBe('fuse.stratafs');
    expect(rest!.split(' ')[1]).toBe(longFsname);
    await f.stop();
    expect(await mountsAt(deep)).toEqual([]);
    await rm(deepBase, { recursive: true, force: true });
  });

  // the unpatched binding left the kernel mount of fuse_mount behind when fuse_new failed
  it('an option libfuse rejects fails the mount at once and leaves no mount behind', async () => {
    const r = await startFailing({ extra: ['no_such_option'] });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option `no_such_option'");
    expect(r.stderr).toContain('fuse_new failed');
    expect(r.mountsLeft).toBe(0);
    expect(r.stdout).not.toContain('READY');
  });

  it('the 15 s per-operation timeout is off by default: a 16 s read completes', async () => {
    const f = await begin({}, { slowMs: 16_000 });
    const t0 = Date.now();
    const fh = await open(join(f.mnt, 'slow'), 'r');
    try {
      const buf = Buffer.alloc(16);
      const { bytesRead } = await fh.read(buf, 0, 16, 0);
      expect(buf.subarray(0, bytesRead).toString()).toBe('slow\n');
    } finally {
      await fh.close();
    }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(16_000);
  }, 60_000);
});
