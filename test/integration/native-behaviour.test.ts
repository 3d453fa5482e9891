// Issue 2's "done when" list, checked on a real stratafs mount driven from this process
// (the daemon is the CLI in its own process; this process only talks to the mount).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import { join } from 'node:path';
import { mount, tempDir, type MountHandle } from '../harness/mounts.js';

const run = promisify(execFile);
const sh = async (cmd: string, opts: { uid?: number } = {}): Promise<string> => {
  const argv = opts.uid === undefined ? ['-c', cmd]
    : ['--reuid', String(opts.uid), '--regid', String(opts.uid), '--clear-groups', 'sh', '-c', cmd];
  const { stdout } = await run(opts.uid === undefined ? 'sh' : 'setpriv', argv, { timeout: 60_000 });
  return stdout;
};

let dir: string;
let m: MountHandle | undefined;
let lower: string;

beforeAll(async () => {
  dir = await tempDir('native');
  lower = join(dir, 'lower');
  await fsp.mkdir(lower);
  await fsp.writeFile(join(lower, 'lower-file'), 'from the lower layer\n');
  await fsp.mkdir(join(dir, 'upper'));
  await fsp.mkdir(join(dir, 'work'));
  await fsp.mkdir(join(dir, 'mnt'));
  // uid 1000 must be able to reach the mountpoint: the run's root is traversable (0711,
  // setup.ts); only our own dir is ours to open up (never a parent: they are not ours).
  await fsp.chmod(dir, 0o755);
  m = await mount('stratafs', { lowers: [lower], upper: join(dir, 'upper'), work: join(dir, 'work') },
    join(dir, 'mnt'), { extra: ['allow_other'] });
});

afterAll(async () => {
  await m?.unmount();
  await fsp.rm(dir, { recursive: true, force: true });
});

const p = (...names: string[]): string => join(dir, 'mnt', ...names);

describe('times', () => {
  it('touch -d keeps nanoseconds', async () => {
    await sh(`touch -d '2001-02-03 04:05:06.123456789' '${p('t1')}'`);
    const out = await sh(`stat -c '%y' '${p('t1')}'`);
    expect(out.trim()).toMatch(/^2001-02-03 04:05:06\.123456789/);
  });

  it('touch -m changes only mtime, touch -a only atime', async () => {
    await sh(`touch -d '2001-01-01 00:00:00.5' '${p('t2')}'`);
    await sh(`touch -m -d '2002-02-02 00:00:00.25' '${p('t2')}'`);
    let st = await fsp.stat(p('t2'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(Date.UTC(2002, 1, 2)) * 1_000_000n + 250_000_000n - tzOffsetNs('2002-02-02'));
    expect(st.atimeNs).toBe(BigInt(Date.UTC(2001, 0, 1)) * 1_000_000n + 500_000_000n - tzOffsetNs('2001-01-01'));
    await sh(`touch -a -d '2003-03-03 00:00:00' '${p('t2')}'`);
    st = await fsp.stat(p('t2'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(Date.UTC(2002, 1, 2)) * 1_000_000n + 250_000_000n - tzOffsetNs('2002-02-02'));
    expect(st.atimeNs).toBe(BigInt(Date.UTC(2003, 2, 3)) * 1_000_000n - tzOffsetNs('2003-03-03'));
  });

  it('cp -p and tar x keep mtimes', async () => {
    const src = join(dir, 'src-file');
    await fsp.writeFile(src, 'x');
    await sh(`touch -d '2005-05-05 05:05:05.987654321' '${src}'`);
    await sh(`cp -p '${src}' '${p('cp-p')}'`);
    const a = await fsp.stat(src, { bigint: true });
    const b = await fsp.stat(p('cp-p'), { bigint: true });
    expect(b.mtimeNs).toBe(a.mtimeNs);
    await sh(`cd '${dir}' && tar --format=posix -cf t.tar src-file && mkdir -p '${p('tarx')}' && tar -xf t.tar -C '${p('tarx')}'`);
    const c = await fsp.stat(p('tarx', 'src-file'), { bigint: true });
    expect(c.mtimeNs).toBe(a.mtimeNs);
  });
});

function tzOffsetNs(day: string): bigint {
  // `touch -d` without a zone uses local time; the test machine runs in UTC, but be exact anyway.
  const local = new Date(`${day}T00:00:00`);
  return BigInt(-local.getTimezoneOffset()) * 60_000_000_000n;
}

describe('identity and sizes', () => {
  it('two hard links report one st_ino', async () => {
    await fsp.writeFile(p('h1'), 'x');
    await fsp.link(p('h1'), p('h2'));
    const [a, b] = await Promise.all([fsp.stat(p('h1')), fsp.stat(p('h2'))]);
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2);
  });

  it('a 6 GiB sparse file reports its size and allocates only the data written', async () => {
    const fh = await fsp.open(p('sparse'), 'w');
    try {
      await fh.write(Buffer.alloc(4096, 1), 0, 4096, 6 * 1024 ** 3 - 4096);
    } finally {
      await fh.close();
    }
    const st = await fsp.stat(p('sparse'));
    expect(st.size).toBe(6 * 1024 ** 3);
    expect(st.blocks * 512).toBeLessThanOrEqual(1024 * 1024);
  });
});

describe('open flags', () => {
  it('O_EXCL, O_TRUNC and O_APPEND behave', async () => {
    await fsp.writeFile(p('flags'), 'abcdef');
    await expect(fsp.open(p('flags'), C.O_CREAT | C.O_EXCL | C.O_WRONLY)).rejects.toMatchObject({ code: 'EEXIST' });
    const t = await fsp.open(p('flags'), C.O_WRONLY | C.O_TRUNC);
    await t.close();
    expect((await fsp.stat(p('flags'))).size).toBe(0);
    await fsp.writeFile(p('flags'), 'abc');
    const ap = await fsp.open(p('flags'), C.O_WRONLY | C.O_APPEND);
    await ap.write('def', 0);
    await ap.close();
    expect(await fsp.readFile(p('flags'), 'utf8')).toBe('abcdef');
    // O_TRUNC|O_CREAT on a fresh name through create()
    const n = await fsp.open(p('fresh'), C.O_CREAT | C.O_TRUNC | C.O_WRONLY | C.O_EXCL, 0o640);
    await n.close();
    expect((await fsp.stat(p('fresh'))).mode & 0o777).toBe(0o640 & ~process.umask());
  });
});

describe('callers and names', () => {
  it('a file created by uid 1000 through an allow_other mount is owned by uid 1000', async () => {
    await fsp.mkdir(p('shared'), { mode: 0o777 });
    await fsp.chmod(p('shared'), 0o777);
    await sh(`echo hi > '${p('shared', 'by-1000')}'`, { uid: 1000 });
    const st = await fsp.stat(p('shared', 'by-1000'));
    expect(st.uid).toBe(1000);
    expect(st.gid).toBe(1000);
    const up = await fsp.stat(join(dir, 'upper', 'shared', 'by-1000'));
    expect(up.uid).toBe(1000);
  });

  it('a non-UTF-8 name round-trips through create, readdir, stat and unlink', async () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // caf\xe9
    const full = Buffer.concat([Buffer.from(p() + '/'), name]);
    await fsp.writeFile(full, 'latin1 name');
    const names = await fsp.readdir(p(), { encoding: 'buffer' });
    expect(names.some((n) => n.equals(name))).toBe(true);
    expect((await fsp.stat(full)).size).toBe(11);
    await fsp.unlink(full);
    const after = await fsp.readdir(p(), { encoding: 'buffer' });
    expect(after.some((n) => n.equals(name))).toBe(false);
  });
});

describe('directory handles', () => {
  it('rewinddir on an open directory shows entries created since (as kernel overlayfs)', async () => {
    await fsp.mkdir(p('rw'));
    await fsp.writeFile(p('rw', 'a'), '');
    // python's listdir(fd) rewinds the one open directory handle each time
    const out = await sh(`cd '${p('rw')}' && python3 -c "
import os
fd = os.open('.', os.O_RDONLY)
print(sorted(os.listdir(fd)))
open('b', 'w').close()
print(sorted(os.listdir(fd)))
os.unlink('a')
print(sorted(os.listdir(fd)))
"`);
    expect(out.trim().split('\n')).toEqual([`['a']`, `['a', 'b']`, `['b']`]);
  });
});

describe('unlinked open files', () => {
  /** every name under a directory on disk, recursively */
  const allNames = async (d: string): Promise<string[]> =>
    (await fsp.readdir(d, { recursive: true })).map((n) => String(n));
  const hiddenIn = (names: string[]): string[] => names.filter((n) => n.includes('.fuse_hidden'));

  it('stay readable and writable, report nlink 0, take fchmod/fchown/futimens/ftruncate, and leave no .fuse_hidden file', async () => {
    await fsp.mkdir(p('ul'));
    await fsp.writeFile(p('ul', 'doomed'), 'still here');
    const fh = await fsp.open(p('ul', 'doomed'), 'r+');
    try {
      await fsp.unlink(p('ul', 'doomed'));
      expect(await fsp.readdir(p('ul'))).toEqual([]);
      expect(hiddenIn(await allNames(p()))).toEqual([]);
      // libfuse's .fuse_hidden name is virtual: nothing in the upper or the workdir either, while open
      expect(hiddenIn([...await allNames(join(dir, 'upper')), ...await allNames(join(dir, 'work'))])).toEqual([]);
      await expect(fsp.stat(p('ul', 'doomed'))).rejects.toMatchObject({ code: 'ENOENT' });
      const buf = Buffer.alloc(10);
      const { bytesRead } = await fh.read(buf, 0, 10, 0);
      expect(buf.subarray(0, bytesRead).toString()).toBe('still here');
      await fh.write('STILL', 0);
      const again = Buffer.alloc(10);
      await fh.read(again, 0, 10, 0);
      expect(again.toString()).toBe('STILL here');
      // fstat reaches the daemon (the unlink invalidated the kernel's attributes) as GETATTR without a handle
      expect((await fh.stat()).nlink).toBe(0);
      await fh.chmod(0o600);
      expect((await fh.stat()).mode & 0o7777).toBe(0o600);
      await fh.chown(1000, 1001);
      expect(await fh.stat()).toMatchObject({ uid: 1000, gid: 1001 });
      const t = new Date('2001-02-03T04:05:06.789Z');
      await fh.utimes(t, t);
      expect((await fh.stat()).mtimeMs).toBe(t.getTime());
      await fh.truncate(5);
      const st = await fh.stat();
      expect(st.size).toBe(5);
      expect(st.nlink).toBe(0);
      // the directory it was in can go: the unlinked file does not keep it non-empty
      await fsp.rmdir(p('ul'));
    } finally {
      await fh.close();
    }
    expect(hiddenIn([...await allNames(join(dir, 'upper')), ...await allNames(join(dir, 'work')), ...await allNames(p())])).toEqual([]);
  });

  it('a file renamed over while open keeps its data through the fd; reopening it through /proc works', async () => {
    await fsp.writeFile(p('victim'), 'old content');
    await fsp.writeFile(p('newer'), 'new content');
    const fh = await fsp.open(p('victim'), 'r');
    try {
      await fsp.rename(p('newer'), p('victim'));
      expect(await fsp.readFile(p('victim'), 'utf8')).toBe('new content');
      const buf = Buffer.alloc(32);
      const { bytesRead } = await fh.read(buf, 0, 32, 0);
      expect(buf.subarray(0, bytesRead).toString()).toBe('old content');
      expect((await fh.stat()).nlink).toBe(0);
      // open(2) of /proc/PID/fd/N reaches the hidden node by its name
      expect(await fsp.readFile(`/proc/self/fd/${fh.fd}`, 'utf8')).toBe('old content');
      expect(hiddenIn(await allNames(p()))).toEqual([]);
      expect(hiddenIn(await allNames(join(dir, 'upper')))).toEqual([]);
    } finally {
      await fh.close();
    }
    expect(await fsp.readFile(p('victim'), 'utf8')).toBe('new content');
  });

  it('an unlinked lower file opened read-only stays readable', async () => {
    const fh = await fsp.open(p('lower-file'), 'r');
    try {
      await fsp.unlink(p('lower-file'));
      const buf = Buffer.alloc(64);
      const { bytesRead } = await fh.read(buf, 0, 64, 0);
      expect(buf.subarray(0, bytesRead).toString()).toBe('from the lower layer\n');
      // as kernel overlayfs (checked on 6.18): the lower file keeps its link count, and it
      // cannot be changed (the copy-up finds the whiteout: EEXIST)
      expect((await fh.stat()).nlink).toBe(1);
      await expect(fh.chmod(0o600)).rejects.toMatchObject({ code: 'EEXIST' });
      expect(hiddenIn(await allNames(p()))).toEqual([]);
    } finally {
      await fh.close();
    }
  });
});
