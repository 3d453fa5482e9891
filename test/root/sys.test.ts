/**
 * The syscall addon against real directories in a temp dir (ext4 /tmp here).
 * Runs as root (trusted.* xattrs, chown, mount for umount2), like the daemon.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as sys from '../../src/native/sys.js';
import { constants as C, DT, StatIdx as S } from '../../src/native/sys.js';
import { FsError } from '../../src/shared/errors.js';
import { scratchTmpfs } from '../harness/mounts.js';

const { S_IFMT, S_IFCHR, S_IFIFO, S_IFLNK, S_IFDIR, S_IFREG, O_RDWR, O_CREAT, O_EXCL, O_RDONLY, O_WRONLY } = fs.constants;

let dir: string;
let root: number;
const fds: number[] = [];
const track = (fd: number): number => (fds.push(fd), fd);

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-sys-'));
  root = track(sys.openRoot(dir));
});
afterEach(() => {
  for (const fd of fds.splice(0)) sys.raw.close(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

const p = (...parts: string[]): string => path.join(dir, ...parts);
const type = (st: Float64Array): number => st[S.mode]! & S_IFMT;
/** The thrown FsError's code, so a wrong errno shows up in the assertion message. */
function codeOf(fn: () => unknown): string {
  try { fn(); } catch (e) { if (e instanceof FsError) return e.code; throw e; }
  return 'no error';
}

describe('resolution beneath a dirfd', () => {
  beforeEach(() => {
    fs.mkdirSync(p('a/b/c'), { recursive: true });
    fs.writeFileSync(p('a/b/c/f'), 'x');
    fs.symlinkSync('/etc', p('etc'));
    fs.symlinkSync('/etc', p('a/b/etc'));
  });

  it('stats 1- and 4-component names, and "" as the dirfd itself', () => {
    expect(type(sys.lstatat(root, 'a'))).toBe(S_IFDIR);
    expect(type(sys.lstatat(root, 'a/b/c/f'))).toBe(S_IFREG);
    expect(sys.lstatat(root, '')[S.ino]).toBe(fs.statSync(dir).ino);
    expect(sys.lstatat(root, 'a/b/..')[S.ino]).toBe(fs.statSync(p('a')).ino);
    expect(sys.lstatat(root, 'a/b/c/')[S.ino]).toBe(fs.statSync(p('a/b/c')).ino);
  });

  it('never follows the final symlink', () => {
    expect(type(sys.lstatat(root, 'etc'))).toBe(S_IFLNK);
    expect(type(sys.lstatat(root, 'a/b/etc'))).toBe(S_IFLNK);
    expect(sys.readlinkat(root, 'a/b/etc')).toBe('/etc');
  });

  it('a layer holding etc -> /etc cannot reach the host file', () => {
    expect(fs.existsSync('/etc/passwd')).toBe(true);
    expect(codeOf(() => sys.lstatat(root, 'etc/passwd'))).toBe('ELOOP');
    expect(codeOf(() => sys.lstatat(root, 'a/b/etc/passwd'))).toBe('ELOOP');
    expect(codeOf(() => sys.openat(root, 'etc/passwd', O_RDONLY))).toBe('ELOOP');
    expect(codeOf(() => sys.readdirat(root, 'etc'))).toBe('ELOOP');
    expect(codeOf(() => sys.mkdirat(root, 'etc/stratafs-test', 0o755))).toBe('ELOOP');
    expect(codeOf(() => sys.lgetxattrat(root, 'etc/passwd', 'user.x'))).toBe('ELOOP');
    expect(fs.existsSync('/etc/stratafs-test')).toBe(false);
  });

  it("'..' and absolute names fail with EXDEV", () => {
    expect(codeOf(() => sys.lstatat(root, '..'))).toBe('EXDEV');
    expect(codeOf(() => sys.lstatat(root, '../x'))).toBe('EXDEV');
    expect(codeOf(() => sys.lstatat(root, 'a/../../etc'))).toBe('EXDEV');
    expect(codeOf(() => sys.lstatat(root, '/etc/passwd'))).toBe('EXDEV');
    expect(codeOf(() => sys.openat(root, '..', O_RDONLY))).toBe('EXDEV');
    expect(codeOf(() => sys.unlinkat(root, '..'))).toBe('EXDEV');
    const sub = track(sys.openat(root, 'a', C.O_PATH | C.O_DIRECTORY));
    expect(codeOf(() => sys.lstatat(sub, '../etc'))).toBe('EXDEV');
    expect(codeOf(() => sys.lstatat(sub, 'b/../..'))).toBe('EXDEV');
  });

  it('reports ENOENT / ENOTDIR and tryLstatat returns -errno without throwing', () => {
    const out = sys.newStatArray();
    expect(sys.tryLstatat(root, 'nope', out)).toBe(-os.constants.errno.ENOENT);
    expect(sys.tryLstatat(root, 'a/nope/x', out)).toBe(-os.constants.errno.ENOENT);
    expect(sys.tryLstatat(root, 'a/b/c/f/x', out)).toBe(-os.constants.errno.ENOTDIR);
    expect(sys.tryLstatat(root, 'a/b/c/f', out)).toBe(0);
    expect(out[S.size]).toBe(1);
    const e = (() => { try { sys.lstatat(root, 'a/nope'); } catch (x) { return x; } })();
    expect(e).toBeInstanceOf(FsError);
    expect((e as FsError).path).toBe('a/nope');
    expect((e as FsError).errno).toBe(os.constants.errno.ENOENT);
  });

  it('refuses embedded NUL and over-long names instead of truncating them', () => {
    expect(sys.raw.lstatat(root, 'a\0/etc', sys.newStatArray())).toBe(-os.constants.errno.EINVAL);
    expect(sys.raw.lstatat(root, 'x'.repeat(5000), sys.newStatArray())).toBe(-os.constants.errno.ENAMETOOLONG);
    expect(() => sys.raw.lstatat(root, 'a', new Float64Array(3))).toThrow(TypeError);
  });
});

describe('a rel longer than PATH_MAX', () => {
  // 30 names of 200 bytes: 6 KiB below the root, more than one system call takes.
  const name = (i: number): string => 'd'.repeat(199) + String.fromCharCode(97 + (i % 26));
  const chain = (n: number): string => Array.from({ length: n }, (_, i) => name(i)).join('/');
  const deep = chain(30);
  // fs.rmSync gives up at PATH_MAX: empty the chain through the addon first.
  const rmTree = (rel: string): void => {
    const { names, types } = sys.readdirat(root, rel);
    names.forEach((n, i) => {
      if (types[i] === DT.DIR) { rmTree(`${rel}/${n}`); sys.unlinkat(root, `${rel}/${n}`, C.AT_REMOVEDIR); } else sys.unlinkat(root, `${rel}/${n}`);
    });
  };
  afterEach(() => { if (sys.tryLstatat(root, name(0), sys.newStatArray()) === 0) rmTree(name(0)); });

  it('is resolved in pieces: mkdir, create, stat, list, xattr, link, rename, unlink at the bottom', () => {
    for (let i = 1; i <= 30; i++) sys.mkdirat(root, chain(i), 0o755);
    expect(deep.length).toBeGreaterThan(4096);
    const fd = sys.openat(root, `${deep}/f`, O_WRONLY | O_CREAT | O_EXCL, 0o644);
    fs.writeSync(fd, 'bottom');
    fs.closeSync(fd);
    expect(sys.lstatat(root, `${deep}/f`)[S.size]).toBe(6);
    expect(sys.readdirat(root, deep).names).toEqual(['f']);
    sys.lsetxattrat(root, `${deep}/f`, 'user.k', Buffer.from('v'));
    expect(sys.lgetxattrat(root, `${deep}/f`, 'user.k').toString()).toBe('v');
    sys.linkat(root, `${deep}/f`, root, `${deep}/g`);
    sys.renameat2(root, `${deep}/g`, root, 'top');
    expect(sys.lstatat(root, 'top')[S.nlink]).toBe(2);
    sys.renameat2(root, 'top', root, `${deep}/h`);
    sys.symlinkat('f', root, `${deep}/s`);
    expect(sys.readlinkat(root, `${deep}/s`)).toBe('f');
    sys.unlinkat(root, `${deep}/f`);
    expect(sys.readdirat(root, deep).names.sort()).toEqual(['h', 's']);
    // A directory fd of the bottom, reached the way a process must (one name at a time).
    let d = sys.openat(root, name(0), C.O_PATH | C.O_DIRECTORY);
    for (let i = 1; i < 30; i++) { const n = sys.openat(d, name(i), C.O_PATH | C.O_DIRECTORY); sys.close(d); d = n; }
    expect(sys.lstatat(d, 'h')[S.ino]).toBe(sys.lstatat(root, `${deep}/h`)[S.ino]);
    sys.close(d);
  });

  it('keeps the guarantees past the first piece: no symlink followed, nothing above the root, no fd left open', () => {
    for (let i = 1; i <= 30; i++) sys.mkdirat(root, chain(i), 0o755);
    sys.symlinkat('/etc', root, `${chain(25)}/etc`);
    const open = fs.readdirSync('/proc/self/fd').length;
    expect(codeOf(() => sys.lstatat(root, `${chain(25)}/etc/passwd`))).toBe('ELOOP');
    expect(codeOf(() => sys.mkdirat(root, `${chain(25)}/etc/x/${chain(20)}`, 0o755))).toBe('ELOOP');
    expect(codeOf(() => sys.lstatat(root, `${deep}/${'../'.repeat(40)}etc`))).toBe('EXDEV');
    expect(codeOf(() => sys.lstatat(root, `${deep}/nope/${chain(20)}`))).toBe('ENOENT');
    expect(fs.readdirSync('/proc/self/fd').length).toBe(open);
    expect(fs.existsSync('/etc/x')).toBe(false);
  });
});

describe('open, stat, close', () => {
  it('creates with openat(O_CREAT|O_EXCL), opens a symlink itself only with O_PATH', () => {
    fs.mkdirSync(p('d'));
    const fd = track(sys.openat(root, 'd/new', O_RDWR | O_CREAT | O_EXCL, 0o640));
    fs.writeSync(fd, 'hello');
    const st = sys.fstat(fd);
    expect(st[S.mode]! & 0o7777).toBe(0o640 & ~process.umask());
    expect(st[S.size]).toBe(5);
    expect(codeOf(() => sys.openat(root, 'd/new', O_RDWR | O_CREAT | O_EXCL, 0o600))).toBe('EEXIST');
    fs.symlinkSync('new', p('d/ln'));
    expect(codeOf(() => sys.openat(root, 'd/ln', O_RDONLY))).toBe('ELOOP');
    const lfd = track(sys.openat(root, 'd/ln', C.O_PATH));
    expect(type(sys.fstat(lfd))).toBe(S_IFLNK);
    expect(sys.readlinkat(lfd, '')).toBe('new');
    sys.close(fds.pop()!);
    expect(codeOf(() => sys.close(lfd))).toBe('EBADF');
  });

  it('fstat carries full-width fields and ns times; fstatvfs fills statvfs', () => {
    fs.writeFileSync(p('f'), 'x');
    fs.linkSync(p('f'), p('g'));
    const st = sys.lstatat(root, 'f');
    const ref = fs.lstatSync(p('f'), { bigint: true });
    expect(BigInt(st[S.ino]!)).toBe(ref.ino);
    expect(BigInt(st[S.dev]!)).toBe(ref.dev);
    expect(st[S.nlink]).toBe(2);
    expect(BigInt(st[S.mtimeSec]!) * 1_000_000_000n + BigInt(st[S.mtimeNsec]!)).toBe(ref.mtimeNs);
    const vfs = sys.fstatvfs(root);
    const ref2 = fs.statfsSync(dir);
    expect(vfs[sys.StatvfsIdx.namemax]).toBe(255);
    expect(vfs[sys.StatvfsIdx.blocks]).toBe(ref2.blocks);
    expect(vfs[sys.StatvfsIdx.bsize]).toBe(ref2.bsize);
  });
});

describe('namespace mutations', () => {
  it('mkdirat, EEXIST, rmdir ENOTEMPTY, unlinkat', () => {
    sys.mkdirat(root, 'd', 0o755);
    sys.mkdirat(root, 'd/e', 0o700);
    expect(type(sys.lstatat(root, 'd/e'))).toBe(S_IFDIR);
    expect(codeOf(() => sys.mkdirat(root, 'd', 0o755))).toBe('EEXIST');
    expect(codeOf(() => sys.mkdirat(root, 'nope/e', 0o755))).toBe('ENOENT');
    expect(codeOf(() => sys.unlinkat(root, 'd', C.AT_REMOVEDIR))).toBe('ENOTEMPTY');
    expect(codeOf(() => sys.unlinkat(root, 'd/e'))).toBe('EISDIR');
    sys.unlinkat(root, 'd/e', C.AT_REMOVEDIR);
    fs.writeFileSync(p('d/f'), '');
    sys.unlinkat(root, 'd/f');
    expect(fs.readdirSync(p('d'))).toEqual([]);
    expect(codeOf(() => sys.unlinkat(root, 'd/f'))).toBe('ENOENT');
  });

  it('mknodat makes a kernel-style whiteout (char 0/0) and a fifo', () => {
    sys.mknodat(root, 'wh', S_IFCHR, sys.makedev(0, 0));
    const st = sys.lstatat(root, 'wh');
    expect(type(st)).toBe(S_IFCHR);
    expect(st[S.rdev]).toBe(0);
    const ls = fs.lstatSync(p('wh'));
    expect(ls.isCharacterDevice() && ls.rdev === 0).toBe(true);
    fs.mkdirSync(p('d'));
    sys.mknodat(root, 'd/fifo', S_IFIFO | 0o644, 0);
    expect(fs.lstatSync(p('d/fifo')).isFIFO()).toBe(true);
    sys.mknodat(root, 'null2', S_IFCHR | 0o666, sys.makedev(1, 3));
    expect(fs.lstatSync(p('null2')).rdev).toBe(fs.statSync('/dev/null').rdev);
    expect(sys.major(sys.makedev(259, 70000))).toBe(259);
    expect(sys.minor(sys.makedev(4100, 70000))).toBe(70000);
    expect(sys.major(sys.makedev(4100, 70000))).toBe(4100);
  });

  it('renameat2: plain across dirfds, NOREPLACE, EXCHANGE, WHITEOUT', () => {
    fs.mkdirSync(p('x'));
    fs.mkdirSync(p('y'));
    fs.writeFileSync(p('x/a'), 'A');
    fs.writeFileSync(p('y/b'), 'B');
    const xfd = track(sys.openat(root, 'x', C.O_PATH | C.O_DIRECTORY));
    sys.renameat2(xfd, 'a', root, 'y/a');
    expect(fs.readFileSync(p('y/a'), 'utf8')).toBe('A');
    expect(codeOf(() => sys.renameat2(root, 'y/a', root, 'y/b', C.RENAME_NOREPLACE))).toBe('EEXIST');
    sys.renameat2(root, 'y/a', root, 'y/b', C.RENAME_EXCHANGE);
    expect(fs.readFileSync(p('y/a'), 'utf8')).toBe('B');
    expect(fs.readFileSync(p('y/b'), 'utf8')).toBe('A');
    expect(codeOf(() => sys.renameat2(root, 'y/a', root, 'y/zz', C.RENAME_EXCHANGE))).toBe('ENOENT');
    sys.renameat2(root, 'y/a', root, 'x/moved', C.RENAME_WHITEOUT);
    const wh = fs.lstatSync(p('y/a'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(fs.readFileSync(p('x/moved'), 'utf8')).toBe('B');
    expect(codeOf(() => sys.renameat2(root, 'y/b', root, '../escape'))).toBe('EXDEV');
  });

  it('linkat links the name itself (a symlink stays a symlink) and an O_TMPFILE fd by ""', () => {
    fs.writeFileSync(p('f'), 'x');
    fs.symlinkSync('f', p('ln'));
    fs.mkdirSync(p('d'));
    sys.linkat(root, 'f', root, 'd/f2');
    expect(sys.lstatat(root, 'd/f2')[S.ino]).toBe(sys.lstatat(root, 'f')[S.ino]);
    sys.linkat(root, 'ln', root, 'd/ln2');
    expect(type(sys.lstatat(root, 'd/ln2'))).toBe(S_IFLNK);
    expect(codeOf(() => sys.linkat(root, 'f', root, 'd/f2'))).toBe('EEXIST');
    const tmp = track(sys.openat(root, 'd', C.O_TMPFILE | O_RDWR, 0o600));
    fs.writeSync(tmp, 'tmpdata');
    sys.linkat(tmp, '', root, 'd/fromtmp');
    expect(fs.readFileSync(p('d/fromtmp'), 'utf8')).toBe('tmpdata');
  });

  it('names and symlink targets are bytes: 0xE9 round-trips', () => {
    const name = 'caf\xe9';
    sys.mkdirat(root, name, 0o755);
    sys.symlinkat('tar\xe9get/\xff', root, `${name}/l\xe9`);
    expect(sys.readlinkat(root, `${name}/l\xe9`)).toBe('tar\xe9get/\xff');
    const onDisk = fs.readdirSync(dir, { encoding: 'buffer' }).map((b) => b.toString('hex'));
    expect(onDisk).toContain('636166e9');
    expect(sys.readdirat(root, name).names).toEqual(['l\xe9']);
    expect(sys.readdirat(root, '').names).toContain(name);
    expect(codeOf(() => sys.readlinkat(root, name))).toBe('EINVAL');
  });
});

describe('attributes', () => {
  it('fchownat changes a symlink itself; fchmodat refuses symlinks (EOPNOTSUPP)', () => {
    fs.writeFileSync(p('f'), '');
    fs.mkdirSync(p('d'));
    fs.symlinkSync('../f', p('d/ln'));
    sys.fchownat(root, 'd/ln', 1234, 5678);
    expect(fs.lstatSync(p('d/ln')).uid).toBe(1234);
    expect(fs.lstatSync(p('d/ln')).gid).toBe(5678);
    expect(fs.statSync(p('f')).uid).toBe(0);
    sys.fchownat(root, 'd/ln', -1, 42);
    expect(fs.lstatSync(p('d/ln')).uid).toBe(1234);
    expect(fs.lstatSync(p('d/ln')).gid).toBe(42);
    sys.fchmodat(root, 'f', 0o4751);
    expect(fs.statSync(p('f')).mode & 0o7777).toBe(0o4751);
    expect(codeOf(() => sys.fchmodat(root, 'd/ln', 0o600))).toMatch(/^E(OP)?NOTSUPP?$/);
    sys.fchmodat(root, '', 0o711);
    expect(fs.statSync(dir).mode & 0o7777).toBe(0o711);
  });

  it('utimensat/futimens keep nanoseconds, honour UTIME_OMIT / UTIME_NOW, never follow', () => {
    fs.writeFileSync(p('f'), '');
    fs.symlinkSync('f', p('ln'));
    sys.utimensat(root, 'f', 981173106, 123456789, 1000000000, 987654321);
    let st = sys.lstatat(root, 'f');
    expect([st[S.atimeSec], st[S.atimeNsec], st[S.mtimeSec], st[S.mtimeNsec]])
      .toEqual([981173106, 123456789, 1000000000, 987654321]);
    sys.utimensat(root, 'f', 0, C.UTIME_OMIT, 5, 1);
    st = sys.lstatat(root, 'f');
    expect([st[S.atimeSec], st[S.atimeNsec], st[S.mtimeSec], st[S.mtimeNsec]]).toEqual([981173106, 123456789, 5, 1]);
    const before = Date.now() / 1000 - 2;
    sys.utimensat(root, 'f', 0, C.UTIME_NOW, 0, C.UTIME_OMIT);
    st = sys.lstatat(root, 'f');
    expect(st[S.atimeSec]).toBeGreaterThan(before);
    expect(st[S.mtimeSec]).toBe(5);
    sys.utimensat(root, 'ln', 7, 7, 8, 8);
    expect(sys.lstatat(root, 'ln')[S.mtimeNsec]).toBe(8);
    expect(sys.lstatat(root, 'f')[S.mtimeSec]).toBe(5);
    const fd = track(sys.openat(root, 'f', O_RDWR));
    sys.futimens(fd, 1, 2, 3, 999999999);
    st = sys.fstat(fd);
    expect([st[S.atimeNsec], st[S.mtimeSec], st[S.mtimeNsec]]).toEqual([2, 3, 999999999]);
    expect(codeOf(() => sys.futimens(fd, 1, 2_000_000_000, 3, 4))).toBe('EINVAL');
  });
});

describe('file descriptor calls', () => {
  it('ftruncate, fsync, fallocate (KEEP_SIZE, PUNCH_HOLE)', () => {
    const fd = track(sys.openat(root, 'f', O_RDWR | O_CREAT, 0o600));
    sys.ftruncate(fd, 1 << 20);
    expect(sys.fstat(fd)[S.size]).toBe(1 << 20);
    expect(sys.fstat(fd)[S.blocks]).toBe(0);
    sys.fsync(fd);
    sys.fsync(fd, true);
    sys.fallocate(fd, 0, 0, 1 << 20);
    expect(sys.fstat(fd)[S.blocks]).toBeGreaterThanOrEqual(2048);
    sys.fallocate(fd, C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, 0, 1 << 19);
    expect(sys.fstat(fd)[S.blocks]).toBeLessThan(2048);
    sys.fallocate(fd, C.FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);
    expect(sys.fstat(fd)[S.size]).toBe(1 << 20);
    expect(codeOf(() => sys.ftruncate(root, 0))).toBe('EBADF');
  });

  it('flock excludes a second open file description', () => {
    fs.writeFileSync(p('lock'), '');
    const a = track(sys.openat(root, 'lock', O_RDONLY));
    const b = track(sys.openat(root, 'lock', O_RDONLY));
    sys.flock(a, C.LOCK_EX | C.LOCK_NB);
    expect(codeOf(() => sys.flock(b, C.LOCK_SH | C.LOCK_NB))).toBe('EAGAIN');
    expect(sys.tryFlock(b, C.LOCK_EX | C.LOCK_NB)).toBe(-os.constants.errno.EWOULDBLOCK);
    sys.flock(a, C.LOCK_UN);
    sys.flock(b, C.LOCK_SH | C.LOCK_NB);
  });
});

describe('readdirat', () => {
  it('lists names with d_type, without . and ..', () => {
    fs.mkdirSync(p('d/sub'), { recursive: true });
    fs.writeFileSync(p('d/f'), '');
    fs.symlinkSync('f', p('d/ln'));
    sys.mknodat(root, 'd/fifo', S_IFIFO | 0o600, 0);
    sys.mknodat(root, 'd/wh', S_IFCHR, 0);
    const { names, types } = sys.readdirat(root, 'd');
    const got = Object.fromEntries(names.map((n, i) => [n, types[i]]));
    expect(got).toEqual({ sub: DT.DIR, f: DT.REG, ln: DT.LNK, fifo: DT.FIFO, wh: DT.CHR });
    expect(sys.readdirat(root, 'd/sub')).toEqual({ names: [], types: new Uint8Array(0) });
    expect(codeOf(() => sys.readdirat(root, 'd/f'))).toBe('ENOTDIR');
    fs.symlinkSync('sub', p('d/lnsub'));
    expect(codeOf(() => sys.readdirat(root, 'd/lnsub'))).toBe('ELOOP');
  });

  it('lists a directory larger than one getdents batch', () => {
    fs.mkdirSync(p('big'));
    const want: string[] = [];
    for (let i = 0; i < 3000; i++) want.push(`entry-with-a-longish-name-${i}`);
    for (const n of want) fs.writeFileSync(p('big', n), '');
    const { names, types } = sys.readdirat(root, 'big');
    expect(names.slice().sort()).toEqual(want.slice().sort());
    expect(types.length).toBe(3000);
    expect(types.every((t) => t === DT.REG)).toBe(true);
  });
});

describe.each([
  ['*xattrat syscalls (Linux 6.13+)', false],
  ['/proc/self/fd route', true],
])('xattrs via %s', (_route, viaProc) => {
  beforeEach(() => { sys.raw.xattrViaProc(viaProc); });
  afterEach(() => { sys.raw.xattrViaProc(false); });

  it('trusted.* on a symlink beneath the dirfd, not on its target', () => {
    fs.mkdirSync(p('d/e'), { recursive: true });
    fs.writeFileSync(p('target'), '');
    fs.symlinkSync('../../target', p('d/e/ln'));
    sys.lsetxattrat(root, 'd/e/ln', 'trusted.overlay.origin', Buffer.from([0, 0xfb, 1]));
    expect(sys.lgetxattrat(root, 'd/e/ln', 'trusted.overlay.origin')).toEqual(Buffer.from([0, 0xfb, 1]));
    expect(sys.llistxattrat(root, 'd/e/ln')).toContain('trusted.overlay.origin');
    const onLink = execFileSync('getfattr', ['-h', '-d', '-m', 'trusted.', p('d/e/ln')], { encoding: 'utf8' });
    expect(onLink).toContain('trusted.overlay.origin');
    expect(sys.llistxattrat(root, 'target')).toEqual([]);
    expect(codeOf(() => sys.lsetxattrat(root, 'd/e/ln', 'trusted.overlay.origin', Buffer.alloc(1), C.XATTR_CREATE))).toBe('EEXIST');
    expect(codeOf(() => sys.lsetxattrat(root, 'd/e/ln', 'trusted.nope', Buffer.alloc(1), C.XATTR_REPLACE))).toBe('ENODATA');
    // user.* is not allowed on symlinks by the kernel: the call really acts on the symlink
    expect(codeOf(() => sys.lsetxattrat(root, 'd/e/ln', 'user.x', Buffer.alloc(1)))).toBe('EPERM');
    sys.lremovexattrat(root, 'd/e/ln', 'trusted.overlay.origin');
    expect(sys.tryLgetxattrat(root, 'd/e/ln', 'trusted.overlay.origin')).toBe(-os.constants.errno.ENODATA);
    expect(codeOf(() => sys.lremovexattrat(root, 'd/e/ln', 'trusted.overlay.origin'))).toBe('ENODATA');
  });

  it('on directories by 1-component name and by "" (the dirfd itself), with byte names and empty values', () => {
    fs.mkdirSync(p('d'));
    sys.lsetxattrat(root, 'd', 'trusted.overlay.opaque', Buffer.from('y'));
    expect(execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', p('d')], { encoding: 'utf8' })).toBe('y');
    const dfd = track(sys.openat(root, 'd', C.O_PATH | C.O_DIRECTORY));
    expect(sys.lgetxattrat(dfd, '', 'trusted.overlay.opaque').toString()).toBe('y');
    sys.lsetxattrat(dfd, '', 'user.caf\xe9', Buffer.alloc(0));
    expect(sys.llistxattrat(root, 'd').sort()).toEqual(['trusted.overlay.opaque', 'user.caf\xe9']);
    expect(sys.lgetxattrat(root, 'd', 'user.caf\xe9').length).toBe(0);
    const big = Buffer.alloc(4000, 7);
    sys.lsetxattrat(root, 'd', 'trusted.big', big);
    expect(sys.lgetxattrat(root, 'd', 'trusted.big')).toEqual(big);
    const many = Array.from({ length: 40 }, (_, i) => `trusted.a-rather-long-attribute-name-${i}`);
    // ext4 keeps all xattrs of an inode in one 4 KiB block: a list longer than 256 bytes on another dir
    fs.mkdirSync(p('d2'));
    for (const n of many) sys.lsetxattrat(root, 'd2', n, Buffer.from('1'));
    expect(sys.llistxattrat(root, 'd2').sort()).toEqual(many.slice().sort());
  });

  it('f* variants on an open fd', () => {
    const fd = track(sys.openat(root, 'f', O_RDWR | O_CREAT, 0o600));
    sys.fsetxattr(fd, 'user.big', Buffer.alloc(1000, 3));
    expect(sys.fgetxattr(fd, 'user.big')).toEqual(Buffer.alloc(1000, 3));
    sys.fremovexattr(fd, 'user.big');
    sys.fsetxattr(fd, 'user.k', Buffer.from('v'));
    expect(sys.fgetxattr(fd, 'user.k').toString()).toBe('v');
    expect(sys.flistxattr(fd)).toEqual(['user.k']);
    expect(sys.tryFgetxattr(fd, 'user.none')).toBe(-os.constants.errno.ENODATA);
    sys.fremovexattr(fd, 'user.k');
    expect(sys.flistxattr(fd)).toEqual([]);
    expect(codeOf(() => sys.fgetxattr(fd, 'user.k'))).toBe('ENODATA');
  });
});

describe('nameToHandle', () => {
  it('gives one handle per inode, for a symlink itself too', () => {
    fs.writeFileSync(p('f'), '');
    fs.mkdirSync(p('d'));
    fs.linkSync(p('f'), p('d/hard'));
    fs.symlinkSync('f', p('ln'));
    const a = sys.nameToHandle(root, 'f');
    const b = sys.nameToHandle(root, 'd/hard');
    const l = sys.nameToHandle(root, 'ln');
    expect(a.handle.length).toBeGreaterThan(0);
    expect(a.type).toBe(b.type);
    expect(a.handle.equals(b.handle)).toBe(true);
    expect(a.handle.equals(l.handle)).toBe(false);
    expect(a.mountId).toBeGreaterThan(0);
    expect(codeOf(() => sys.nameToHandle(root, 'nope'))).toBe('ENOENT');
  });
});

async function fileHash(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('copyData', () => {
  it('copies a small file by copy_file_range (ext4 has no reflink)', async () => {
    fs.writeFileSync(p('src'), 'hello world');
    const s = track(sys.openat(root, 'src', O_RDONLY));
    const d = track(sys.openat(root, 'dst', O_WRONLY | O_CREAT | O_EXCL, 0o600));
    const r = await sys.copyData(s, d);
    expect(r).toEqual({ bytes: 11, method: 'range' });
    expect(fs.readFileSync(p('dst'), 'utf8')).toBe('hello world');
  });

  it('keeps holes: 200 MiB sparse with 1 MiB of data at two offsets', async () => {
    const MiB = 1 << 20;
    const fd = fs.openSync(p('sparse'), 'w');
    const data = Buffer.alloc(MiB);
    for (let i = 0; i < MiB; i++) data[i] = (i * 7 + 3) & 0xff;
    fs.writeSync(fd, data, 0, MiB, 10 * MiB);
    fs.writeSync(fd, data, 0, MiB, 150 * MiB);
    fs.ftruncateSync(fd, 200 * MiB);
    fs.closeSync(fd);
    const s = track(sys.openat(root, 'sparse', O_RDONLY));
    const d = track(sys.openat(root, 'copy', O_WRONLY | O_CREAT | O_EXCL, 0o600));
    const r = await sys.copyData(s, d);
    expect(r).toEqual({ bytes: 2 * MiB, method: 'range' });
    const src = fs.statSync(p('sparse'));
    const dst = fs.statSync(p('copy'));
    expect(dst.size).toBe(200 * MiB);
    expect(dst.blocks).toBeLessThanOrEqual(src.blocks + 64);
    expect(dst.blocks).toBeGreaterThanOrEqual(4096);
    console.log(`sparse 200 MiB copy: st_blocks source ${src.blocks}, copy ${dst.blocks}`);
    expect(await fileHash(p('copy'))).toBe(await fileHash(p('sparse')));
  });

  it('falls back to pread/pwrite in C across filesystems (tmpfs -> ext4), still keeping holes', async () => {
    // a tmpfs of our own under the run's root, not the host's /dev/shm
    const tmpfs = scratchTmpfs('sys-tmpfs');
    const shm = tmpfs.dir;
    try {
      const fd = fs.openSync(path.join(shm, 'src'), 'w');
      fs.writeSync(fd, Buffer.alloc(64 << 10, 0xab), 0, 64 << 10, 8 << 20);
      fs.ftruncateSync(fd, 32 << 20);
      fs.closeSync(fd);
      const shmfd = track(sys.openRoot(shm));
      const s = track(sys.openat(shmfd, 'src', O_RDONLY));
      const d = track(sys.openat(root, 'dst', O_WRONLY | O_CREAT | O_EXCL, 0o600));
      expect(await sys.copyData(s, d)).toEqual({ bytes: 64 << 10, method: 'readwrite' });
      expect(fs.statSync(p('dst')).size).toBe(32 << 20);
      expect(fs.statSync(p('dst')).blocks).toBeLessThanOrEqual(128 + 8);
      expect(await fileHash(p('dst'))).toBe(await fileHash(path.join(shm, 'src')));
    } finally {
      // descriptors on the tmpfs would keep it busy
      for (const fd of fds.splice(0)) sys.raw.close(fd);
      tmpfs.dispose();
    }
  });

  it('keeps a trailing hole and an empty file empty', async () => {
    fs.writeFileSync(p('empty'), '');
    const fd = fs.openSync(p('tail'), 'w');
    fs.writeSync(fd, 'head');
    fs.ftruncateSync(fd, 50 << 20);
    fs.closeSync(fd);
    for (const name of ['empty', 'tail']) {
      const s = track(sys.openat(root, name, O_RDONLY));
      const d = track(sys.openat(root, `${name}.copy`, O_WRONLY | O_CREAT, 0o600));
      await sys.copyData(s, d);
      expect(fs.statSync(p(`${name}.copy`)).size).toBe(fs.statSync(p(name)).size);
      expect(fs.statSync(p(`${name}.copy`)).blocks).toBeLessThanOrEqual(8);
    }
  });

  it('settles 100 concurrent copies exactly once each (bounded pool, promises from another thread)', async () => {
    const jobs: Promise<sys.CopyResult>[] = [];
    for (let i = 0; i < 100; i++) {
      fs.writeFileSync(p(`s${i}`), `data-${i}`.repeat(i + 1));
      const s = track(sys.openat(root, `s${i}`, O_RDONLY));
      const d = track(sys.openat(root, `d${i}`, O_WRONLY | O_CREAT | O_EXCL, 0o600));
      jobs.push(sys.copyData(s, d));
    }
    const results = await Promise.all(jobs);
    results.forEach((r, i) => expect(r.bytes).toBe(`data-${i}`.length * (i + 1)));
    for (let i = 0; i < 100; i++) expect(fs.readFileSync(p(`d${i}`), 'utf8')).toBe(`data-${i}`.repeat(i + 1));
    // Many tiny jobs make completions race their own threads' last steps (a use-after-free here once crashed the process).
    const s = track(sys.openat(root, 's0', O_RDONLY));
    const d = track(sys.openat(root, 'many', O_WRONLY | O_CREAT, 0o600));
    let total = 0;
    for (let round = 0; round < 20; round++) {
      const rs = await Promise.all(Array.from({ length: 200 }, () => sys.copyData(s, d)));
      total += rs.reduce((n, r) => n + r.bytes, 0);
    }
    expect(total).toBe(20 * 200 * 'data-0'.length);
  });

  it('rejects with FsError carrying errno and path', async () => {
    fs.writeFileSync(p('src'), 'x');
    const s = track(sys.openat(root, 'src', O_RDONLY));
    const ro = track(sys.openat(root, 'src', O_RDONLY));
    await expect(sys.copyData(s, ro, 'src')).rejects.toMatchObject({ code: 'EBADF', path: 'src' });
    await expect(sys.copyData(9999, ro)).rejects.toBeInstanceOf(FsError);
    await expect(sys.raw.copyData(9999, ro)).rejects.toMatchObject({ code: 'EBADF', errno: os.constants.errno.EBADF });
  });

  it('runs off the event loop and off libuv\'s pool: 1 GiB copy while timers and fs calls keep going', async () => {
    const MiB = 1 << 20;
    const chunk = Buffer.alloc(16 * MiB);
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
    const fd = fs.openSync(p('big'), 'w');
    for (let i = 0; i < 64; i++) { chunk.writeUInt32LE(i, 0); fs.writeSync(fd, chunk); }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const s = track(sys.openat(root, 'big', O_RDONLY));
    const d = track(sys.openat(root, 'big.copy', O_WRONLY | O_CREAT | O_EXCL, 0o600));
    // Counted only while the copy is in flight (before its promise settles): a copy that held the
    // event loop or took libuv's pool would let neither a tick nor a pool call through meanwhile.
    // Order, not rates or gaps: a loaded machine may schedule this process rarely.
    let ticks = 0;
    let done = false;
    const timer = setInterval(() => { if (!done) ticks++; }, 5);
    // Fill libuv's 4 threads with work that must still get through: a copy on the pool would starve it.
    let poolCalls = 0;
    const t0 = performance.now();
    const copying = sys.copyData(s, d);
    const poolLoop = (async () => {
      while (!done) { await fs.promises.stat(p('big')); if (!done) poolCalls++; }
    })();
    const r = await copying;
    done = true;
    const secs = (performance.now() - t0) / 1000;
    await poolLoop;
    clearInterval(timer);
    expect(r.bytes).toBe(1024 * MiB);
    console.log(`copyData 1 GiB: ${secs.toFixed(2)} s, ${(1024 / secs).toFixed(0)} MiB/s, method ${r.method}; ` +
      `meanwhile ${ticks} timer ticks and ${poolCalls} fs.stat calls`);
    expect(ticks).toBeGreaterThanOrEqual(2);
    expect(poolCalls).toBeGreaterThanOrEqual(2);
    expect(fs.statSync(p('big.copy')).size).toBe(1024 * MiB);
    expect(await fileHash(p('big.copy'))).toBe(await fileHash(p('big')));
  }, 180_000);
});

describe('umount2', () => {
  const mounted = (mnt: string): boolean => fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `);

  it('unmounts on its own thread, and rejects with the errno', async () => {
    const mnt = p('mnt');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', mnt]);
    try {
      const busy = fs.openSync(path.join(mnt, 'x'), 'w');
      await expect(sys.umount2(mnt, 0)).rejects.toMatchObject({ code: 'EBUSY', path: mnt });
      fs.closeSync(busy);
      expect(mounted(mnt)).toBe(true);
      await sys.umount2(mnt, 0);
      expect(mounted(mnt)).toBe(false);
      await expect(sys.umount2(mnt, 0)).rejects.toMatchObject({ code: 'EINVAL', path: mnt });
      await expect(sys.umount2(p('nope'), C.MNT_DETACH)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      if (mounted(mnt)) execFileSync('umount', ['-l', mnt]);
    }
  });
});

describe('removeTree', () => {
  /** a/ (0500) holding b/ (mode 0) with files, a fifo, a non-UTF-8 name, and symlinks to a directory kept outside the tree */
  function build(): void {
    fs.mkdirSync(p('keep'));
    fs.writeFileSync(p('keep', 'f'), 'kept');
    fs.mkdirSync(p('a', 'b', 'c'), { recursive: true });
    fs.writeFileSync(p('a', 'b', 'c', 'f'), 'x');
    fs.writeFileSync(Buffer.from(p('a', 'b') + '/caf\xe9', 'latin1'), 'y');
    execFileSync('mkfifo', [p('a', 'b', 'fifo')]);
    fs.symlinkSync(p('keep'), p('a', 'b', 'link'));
    fs.symlinkSync(p('keep'), p('a', 'dirlink'));
    fs.chmodSync(p('a', 'b', 'c'), 0);
    fs.chmodSync(p('a', 'b'), 0);
    fs.chmodSync(p('a'), 0o500);
  }

  it('removes a tree whatever its modes and names, following no symlink', () => {
    build();
    sys.removeTree(root, 'a');
    expect(fs.existsSync(p('a'))).toBe(false);
    expect(fs.readFileSync(p('keep', 'f'), 'utf8')).toBe('kept');
  });

  it("with rel '' empties dirfd and keeps it with its mode", () => {
    build();
    const a = track(sys.openat(root, 'a', C.O_PATH | C.O_DIRECTORY));
    sys.removeTree(a, '');
    expect(fs.readdirSync(p('a'))).toEqual([]);
    expect(fs.statSync(p('a')).mode & 0o7777).toBe(0o500);
    expect(fs.readdirSync(p('keep'))).toEqual(['f']);
  });

  it('reports what it could not remove with its path', () => {
    expect(codeOf(() => sys.removeTree(root, 'nope'))).toBe('ENOENT');
    fs.writeFileSync(p('file'), '');
    expect(codeOf(() => sys.removeTree(root, 'file'))).toBe('ENOTDIR');
    expect(fs.existsSync(p('file'))).toBe(true);
  });
});
