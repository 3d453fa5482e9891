/**
 * The operation language of the differential harness. Operations are applied
 * to a mounted tree from the test process (async fs calls with a timeout, or
 * coreutils/attr tools in child processes for what Node's fs lacks: xattrs,
 * mkfifo, nanosecond utimensat) and each yields ok+value or an errno code.
 * Paths are latin1 byte strings relative to the mount root.
 */
import { open, truncate, chmod, lchown, mkdir, rmdir, unlink, rename, link, symlink, readdir, lstat, readlink, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { constants as fsc, type BigIntStats } from 'node:fs';
import { bash, errnoFromMessage, shq, withTimeout, TimeoutError } from './proc.js';
import { execFile } from 'node:child_process';
import { showPath, typeOf } from './tree.js';
import { expandTarget } from './sentinel.js';
import { CallerPool, showCaller, type Caller } from './callers.js';

export type Time = { sec: number; nsec: number } | 'now' | 'omit';

/** An operation, by the test process (root) or, with `as`, by another user (callers.ts). */
export type Op = PlainOp & { as?: Caller };

export type PlainOp =
  /** execve of the file (no arguments); the value is its exit code and output */
  | { op: 'exec'; path: string }
  | { op: 'create'; path: string; mode: number; excl?: boolean; trunc?: boolean }
  | { op: 'write'; path: string; offset: number; data: string }
  | { op: 'append'; path: string; data: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  | { op: 'utimens'; path: string; atime: Time; mtime: Time }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string }
  /** renameat2(2) with flags (Node has no renameat2: python3's ctypes calls glibc's) */
  | { op: 'rename2'; from: string; to: string; flags: Rename2Flag[] }
  | { op: 'link'; from: string; to: string }
  /** a target starting with OUTSIDE (sentinel.ts) points at the run's sentinels */
  | { op: 'symlink'; target: string; path: string }
  | { op: 'mkfifo'; path: string; mode: number }
  /** mknod(2) of any non-regular node; rdev [major, minor] for chr/blk */
  | { op: 'mknod'; path: string; type: 'chr' | 'blk' | 'fifo' | 'sock'; mode: number; rdev?: [number, number] }
  | { op: 'setxattr'; path: string; name: string; value: string }
  | { op: 'removexattr'; path: string; name: string }
  | { op: 'getxattr'; path: string; name: string }
  /** setfacl -m SPEC (with `default`, -d: the directory's default ACL); `remove`: setfacl -b */
  | { op: 'setfacl'; path: string; spec: string; default?: boolean }
  /** getfacl -n: the ACL with numeric ids, without the header (owner, group, flags are in the tree) */
  | { op: 'getfacl'; path: string }
  | { op: 'listxattr'; path: string }
  | { op: 'read'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'stat'; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'sameInode'; a: string; b: string }
  /** open and keep a descriptor under `fd` */
  | { op: 'open'; fd: string; path: string; flags: 'r' | 'r+' | 'a' | 'w' }
  | { op: 'fdread'; fd: string }
  | { op: 'fdwrite'; fd: string; offset: number; data: string }
  | { op: 'fdstat'; fd: string }
  | { op: 'close'; fd: string }
  /**
   * lstat with every attribute a kernel attribute cache holds (see attrsValue), for
   * cache-coherence cases: `mark` remembers this stat under a name, `since` adds how
   * ino, mtime and ctime compare with an earlier mark (of this or another name).
   */
  | { op: 'attrs'; path: string; mark?: string; since?: string }
  /** the same through an open descriptor (fstat), e.g. of an unlinked file */
  | { op: 'fdattrs'; fd: string; mark?: string; since?: string }
  /** lseek(2) with SEEK_DATA or SEEK_HOLE on a fresh read-only descriptor; the value is the offset */
  | { op: 'seek'; path: string; whence: 'data' | 'hole'; offset: number }
  /** one copy_file_range(2) from `from` into the existing file `to`; the value is the bytes copied */
  | { op: 'copyrange'; from: string; to: string; fromOffset: number; toOffset: number; len: number }
  /**
   * open(2) with O_TMPFILE|O_RDWR in the directory `path`, write `data`, then (with `link`)
   * linkat(2) through /proc/self/fd with AT_SYMLINK_FOLLOW; the value is nlink before and after
   */
  | { op: 'tmpfile'; path: string; mode: number; data: string; link?: string }
  /** whether statx(2) reports a birth time (stat -c %W, lstat's view); the times themselves differ between mounts */
  | { op: 'btime'; path: string }
  /** syncfs(2) of the file system holding `path` (sync -f) */
  | { op: 'syncfs'; path: string }
  | { op: 'fdtruncate'; fd: string; size: number }
  | { op: 'fdchmod'; fd: string; mode: number };

export type OpKind = Op['op'];

/** renameat2 flags by name; `bad` is a bit the kernel does not know (EINVAL) */
export type Rename2Flag = 'noreplace' | 'exchange' | 'whiteout' | 'bad';
const RENAME2_BITS: Record<Rename2Flag, number> = { noreplace: 1, exchange: 2, whiteout: 4, bad: 8 };

export type OpResult = { ok: true; value?: unknown } | { ok: false; errno: string };

/** The paths an operation names (for divergence matchers and reports). */
export function opPaths(o: Op): string[] {
  switch (o.op) {
    case 'rename':
    case 'rename2':
    case 'link':
      return [o.from, o.to];
    case 'sameInode':
      return [o.a, o.b];
    case 'copyrange':
      return [o.from, o.to];
    case 'tmpfile':
      return o.link === undefined ? [o.path] : [o.path, o.link];
    case 'fdread':
    case 'fdwrite':
    case 'fdstat':
    case 'close':
    case 'fdattrs':
    case 'fdtruncate':
    case 'fdchmod':
      return [];
    default:
      return [o.path];
  }
}

export function showOp(o: Op): string {
  const parts: string[] = [o.op];
  for (const [k, v] of Object.entries(o)) {
    if (k === 'op') continue;
    if (typeof v === 'string') parts.push(`${k}=${k === 'data' || k === 'value' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : '"' + showPath(v) + '"'}`);
    else if (k === 'as') parts.push(`as=${showCaller(v as Caller)}`);
    else if (typeof v === 'number' && k === 'mode') parts.push(`${k}=0${v.toString(8)}`);
    else parts.push(`${k}=${JSON.stringify(v)}`);
  }
  return parts.join(' ');
}

export function showResult(r: OpResult): string {
  return r.ok ? (r.value === undefined ? 'ok' : `ok ${JSON.stringify(r.value)}`) : r.errno;
}

function statValue(st: { mode: number; uid: number; gid: number; size: number; nlink: number; rdev: number; isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }) {
  const dir = st.isDirectory();
  const dev = st.isCharacterDevice() || st.isBlockDevice();
  return { mode: '0' + st.mode.toString(8), uid: st.uid, gid: st.gid, ...(dir ? {} : { size: st.size, nlink: st.nlink }), ...(dev ? { rdev: showRdev(st.rdev) } : {}) };
}

/** major:minor of a Linux dev_t (the glibc encoding: 12 bits of major, 20 of minor, split) */
function showRdev(rdev: number): string {
  const d = BigInt(rdev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * mknod(2) for the types coreutils' mknod cannot make (sockets) and the others alike:
 * python3's os.mknod, which prints the errno's name itself (no strerror text to map back).
 */
/** renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) through glibc; prints the errno's name on failure */
const RENAME2_PY = [
  'import ctypes, errno, os, sys',
  'libc = ctypes.CDLL(None, use_errno=True)',
  'if libc.renameat2(-100, os.fsencode(sys.argv[1]), -100, os.fsencode(sys.argv[2]), int(sys.argv[3])) != 0:',
  '    sys.stderr.write(errno.errorcode[ctypes.get_errno()])',
  '    sys.exit(1)',
].join('\n');

const MKNOD_PY = [
  'import errno, os, stat, sys',
  't = {"chr": stat.S_IFCHR, "blk": stat.S_IFBLK, "fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK}[sys.argv[2]]',
  'try:',
  '    os.umask(0)',
  '    os.mknod(os.fsencode(sys.argv[1]), t | int(sys.argv[3], 8), os.makedev(int(sys.argv[4]), int(sys.argv[5])))',
  'except OSError as e:',
  '    sys.stderr.write(errno.errorcode[e.errno])',
  '    sys.exit(1)',
].join('\n');

/**
 * The calls Node's fs lacks (lseek SEEK_DATA/SEEK_HOLE, copy_file_range, O_TMPFILE and
 * linkat), by python3, which prints the errno's name on failure and the value on success.
 */
const FILE_PY = [
  'import ctypes, errno, os, sys',
  'a = sys.argv[1:]',
  'NB = os.O_NONBLOCK',
  'try:',
  '    if a[0] == "seek":',
  '        fd = os.open(os.fsencode(a[1]), os.O_RDONLY | NB)',
  '        print(os.lseek(fd, int(a[3]), os.SEEK_DATA if a[2] == "data" else os.SEEK_HOLE))',
  '    elif a[0] == "copyrange":',
  '        s = os.open(os.fsencode(a[1]), os.O_RDONLY | NB)',
  '        d = os.open(os.fsencode(a[2]), os.O_WRONLY | NB)',
  '        print(os.copy_file_range(s, d, int(a[5]), int(a[3]), int(a[4])))',
  '    elif a[0] == "tmpfile":',
  '        fd = os.open(os.fsencode(a[1]), os.O_TMPFILE | os.O_RDWR, int(a[2], 8))',
  '        os.write(fd, os.fsencode(a[3]))',
  '        n0 = os.fstat(fd).st_nlink',
  '        if len(a) > 4:',
  '            libc = ctypes.CDLL(None, use_errno=True)',
  // AT_FDCWD -100, AT_SYMLINK_FOLLOW 0x400: os.link() would link the /proc symlink itself
  '            if libc.linkat(-100, b"/proc/self/fd/%d" % fd, -100, os.fsencode(a[4]), 0x400) != 0:',
  '                raise OSError(ctypes.get_errno(), "linkat")',
  '        print(n0, os.fstat(fd).st_nlink)',
  'except OSError as e:',
  '    sys.stderr.write(errno.errorcode[e.errno])',
  '    sys.exit(1)',
].join('\n');

/**
 * Times from the clock differ between two mounts by nature; times older than this were
 * set on purpose (layer build, utimensat to a past time) and are compared exactly.
 */
const CLOCK_CUTOFF_NS = 1_577_836_800n * 1_000_000_000n; // 2020-01-01

function nsText(ns: bigint): string {
  if (ns >= CLOCK_CUTOFF_NS) return 'recent';
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}


function order(a: bigint, b: bigint): 'same' | 'later' | 'earlier' {
  return a === b ? 'same' : a > b ? 'later' : 'earlier';
}

/**
 * Unlike statValue, directories keep nlink and size too: a stale cached attribute of a
 * directory is as wrong as one of a file. ino is never shown as a number (each
 * implementation numbers its own), only as same/other against a mark.
 */
function attrsValue(st: BigIntStats, marks: Map<string, BigIntStats>, mark: string | undefined, since: string | undefined): OpResult {
  const v: Record<string, unknown> = {
    type: typeOf(st),
    mode: '0' + st.mode.toString(8),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    nlink: Number(st.nlink),
    mtime: nsText(st.mtimeNs),
  };
  if (since !== undefined) {
    const m = marks.get(since);
    if (!m) throw new Error(`attrs: no mark named ${since}`);
    // Times of two different objects compare by the clock's grain, not by anything the
    // filesystem decides: only one object's times are compared with its own earlier ones.
    v.since = st.ino === m.ino && st.dev === m.dev
      ? { ino: 'same', mtime: order(st.mtimeNs, m.mtimeNs), ctime: order(st.ctimeNs, m.ctimeNs) }
      : { ino: 'other' };
  }
  if (mark !== undefined) marks.set(mark, st);
  return { ok: true, value: v };
}

const hash = (buf: Buffer) => createHash('sha256').update(buf).digest('hex').slice(0, 16);

function timeArg(t: { sec: number; nsec: number }): string {
  return `@${t.sec}.${String(t.nsec).padStart(9, '0')}`;
}

/**
 * Every open is non-blocking: opening a FIFO would otherwise wait for a peer
 * forever (FIFO opens are served by the VFS on every implementation alike, so
 * O_NONBLOCK answers the same everywhere: ENXIO for a writer, EOF for a reader).
 */
const NB = fsc.O_NONBLOCK;

/** Runs a tool script and turns its failure into an errno code read from its message. */
async function tool(script: string, timeoutMs: number): Promise<OpResult & { stdout?: string }> {
  const r = await bash(script, timeoutMs);
  if (r.timedOut) throw new TimeoutError(`tool timed out: ${script}`);
  if (r.code === 0) return { ok: true, stdout: r.stdout.toString('latin1') };
  const msg = r.stderr.toString('latin1');
  // attr's tools print their own text for ENODATA
  const errno = /No such attribute\s*$/.test(msg) ? 'ENODATA' : errnoFromMessage(msg);
  if (!errno) throw new Error(`cannot read an errno from: ${msg.trim()} (script: ${script})`);
  return { ok: false, errno };
}

/** A python3 script that prints an errno's name and exits 1 on failure (MKNOD_PY, RENAME2_PY). */
async function pyErrno(script: string, timeoutMs: number, o: Op): Promise<OpResult> {
  const r = await bash(script, timeoutMs);
  if (r.timedOut) throw new TimeoutError(`${o.op} timed out: ${showOp(o)}`);
  if (r.code === 0) return { ok: true };
  const errno = r.stderr.toString('latin1').trim();
  if (!/^E[A-Z0-9]+$/.test(errno)) throw new Error(`${o.op}: ${errno}`);
  return { ok: false, errno };
}

/** execve of `file`: its exit code and output, or execve's own errno (EACCES, ENOEXEC...). */
function execOnce(file: string, timeoutMs: number): Promise<OpResult> {
  return new Promise((resolve, reject) => {
    execFile(file, [], { encoding: 'latin1', timeout: timeoutMs, killSignal: 'SIGKILL', env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' } }, (err, stdout) => {
      const e = err as (NodeJS.ErrnoException & { killed?: boolean }) | null;
      if (e?.killed) return reject(new TimeoutError(`exec timed out: ${file}`));
      // a failed spawn carries the errno name; a program that ran and failed carries its exit code
      if (e && typeof e.code === 'string') return resolve({ ok: false, errno: e.code });
      resolve({ ok: true, value: { code: e ? e.code : 0, out: stdout } });
    });
  });
}

/** One mounted tree under test, with the descriptors its sequence opened. */
export class OpRunner {
  private fds = new Map<string, FileHandle>();
  /** stats remembered by `attrs`/`fdattrs` with `mark` */
  private marks = new Map<string, BigIntStats>();
  /** the processes of the callers this sequence named (started on first use) */
  private callers: CallerPool;
  /** `enter`: see CallerPool (callers in another namespace; every op then needs a caller) */
  constructor(readonly root: string, readonly timeoutMs = 10_000, enter?: readonly string[]) {
    this.callers = new CallerPool(root, timeoutMs, enter);
  }

  private p(rel: string): Buffer {
    return Buffer.from(rel === '' ? this.root : `${this.root}/${rel}`, 'latin1');
  }

  async apply(o: Op): Promise<OpResult> {
    // the caller's process bounds each op by timeoutMs itself; this bound covers its start too
    if (o.as) return withTimeout(this.callers.apply(o, o.as), this.timeoutMs * 2, showOp(o));
    try {
      return await withTimeout(this.exec(o), this.timeoutMs, showOp(o));
    } catch (e) {
      if (e instanceof TimeoutError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return { ok: false, errno: code };
      throw e;
    }
  }

  /** Closes every descriptor the sequence left open (before unmounting). */
  async closeAll(): Promise<void> {
    await this.callers.closeAll();
    for (const [k, fh] of this.fds) {
      this.fds.delete(k);
      await withTimeout(fh.close(), this.timeoutMs, `close ${k}`).catch(() => undefined);
    }
  }

  /** FILE_PY with these arguments: its errno, or its output read by `value` */
  private async filePy(args: (string | Buffer)[], value: (out: string) => unknown): Promise<OpResult> {
    const r = await bash(`python3 -c ${shq(FILE_PY)} ${args.map((x) => shq(x)).join(' ')}`, this.timeoutMs);
    if (r.timedOut) throw new TimeoutError(`python3 timed out: ${args[0] as string}`);
    if (r.code === 0) return { ok: true, value: value(r.stdout.toString('latin1').trim()) };
    const errno = r.stderr.toString('latin1').trim();
    if (!/^E[A-Z0-9]+$/.test(errno)) throw new Error(`${args[0] as string}: ${errno}`);
    return { ok: false, errno };
  }

  private async exec(o: Op): Promise<OpResult> {
    const t = this.timeoutMs;
    switch (o.op) {
      case 'exec': {
        return await execOnce(this.p(o.path).toString('latin1'), t);
      }
      case 'create': {
        const f = NB | fsc.O_CREAT | fsc.O_WRONLY | (o.excl ? fsc.O_EXCL : 0) | (o.trunc ? fsc.O_TRUNC : 0);
        const fh = await open(this.p(o.path), f, o.mode);
        await fh.close();
        return { ok: true };
      }
      case 'write': {
        const fh = await open(this.p(o.path), NB | fsc.O_RDWR);
        try {
          await fh.write(Buffer.from(o.data, 'latin1'), 0, o.data.length, o.offset);
        } finally {
          await fh.close();
        }
        return { ok: true };
      }
      case 'append': {
        const fh = await open(this.p(o.path), NB | fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o666);
        try {
          await fh.write(Buffer.from(o.data, 'latin1'));
        } finally {
          await fh.close();
        }
        return { ok: true };
      }
      case 'truncate':
        await truncate(this.p(o.path), o.size);
        return { ok: true };
      case 'chmod':
        await chmod(this.p(o.path), o.mode);
        return { ok: true };
      case 'chown':
        await lchown(this.p(o.path), o.uid, o.gid);
        return { ok: true };
      case 'utimens': {
        // touch -h: utimensat(AT_SYMLINK_NOFOLLOW); -a/-m alone leave the other time UTIME_OMIT.
        const cmds: string[] = [];
        const one = (flag: string, tm: Time) => {
          if (tm === 'omit') return;
          cmds.push(`touch -h ${flag} ${tm === 'now' ? '' : '-d ' + timeArg(tm)} ${shq(this.p(o.path))}`);
        };
        if (o.atime !== 'omit' && o.mtime !== 'omit' && JSON.stringify(o.atime) === JSON.stringify(o.mtime)) one('', o.atime);
        else {
          one('-a', o.atime);
          one('-m', o.mtime);
        }
        if (cmds.length === 0) return { ok: true };
        // touch -h never creates: a missing file fails as utimensat does.
        const r = await tool(`set -e\n${cmds.join('\n')}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'mkdir':
        await mkdir(this.p(o.path), o.mode);
        return { ok: true };
      case 'rmdir':
        await rmdir(this.p(o.path));
        return { ok: true };
      case 'unlink':
        await unlink(this.p(o.path));
        return { ok: true };
      case 'rename':
        await rename(this.p(o.from), this.p(o.to));
        return { ok: true };
      case 'rename2': {
        const bits = o.flags.reduce((a, f) => a | RENAME2_BITS[f], 0);
        return await pyErrno(`python3 -c ${shq(RENAME2_PY)} ${shq(this.p(o.from))} ${shq(this.p(o.to))} ${bits}`, t, o);
      }
      case 'link':
        await link(this.p(o.from), this.p(o.to));
        return { ok: true };
      case 'symlink':
        await symlink(Buffer.from(expandTarget(o.target), 'latin1'), this.p(o.path));
        return { ok: true };
      case 'mkfifo': {
        const r = await tool(`mkfifo -m ${o.mode.toString(8)} ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'mknod': {
        const [maj, min] = o.rdev ?? [0, 0];
        return await pyErrno(`python3 -c ${shq(MKNOD_PY)} ${shq(this.p(o.path))} ${o.type} ${o.mode.toString(8)} ${maj} ${min}`, t, o);
      }
      case 'setxattr': {
        const v = o.value === '' ? '""' : '0x' + Buffer.from(o.value, 'latin1').toString('hex');
        const r = await tool(`setfattr -h -n ${shq(o.name)} -v ${v} ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'removexattr': {
        const r = await tool(`setfattr -h -x ${shq(o.name)} ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'getxattr': {
        const r = await tool(`getfattr -h -n ${shq(o.name)} -e hex --absolute-names ${shq(this.p(o.path))}`, t);
        if (!r.ok) return r;
        const line = (r.stdout ?? '').split('\n').find((l) => l && !l.startsWith('#')) ?? '';
        const eq = line.indexOf('=');
        return { ok: true, value: eq < 0 ? '' : line.slice(eq + 1).replace(/^0x/, '') };
      }
      case 'setfacl': {
        const r = await tool(`setfacl ${o.default ? '-d ' : ''}-m ${shq(o.spec)} ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'getfacl': {
        const r = await tool(`getfacl -n -p --omit-header ${shq(this.p(o.path))}`, t);
        if (!r.ok) return r;
        return { ok: true, value: (r.stdout ?? '').split('\n').filter((l) => l !== '') };
      }
      case 'listxattr': {
        const r = await tool(`getfattr -h -d -m - -e hex --absolute-names ${shq(this.p(o.path))}`, t);
        if (!r.ok) return r;
        const names = (r.stdout ?? '').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!).sort();
        return { ok: true, value: names };
      }
      case 'read': {
        const fh = await open(this.p(o.path), NB | fsc.O_RDONLY);
        let buf: Buffer;
        try {
          buf = await fh.readFile();
        } finally {
          await fh.close();
        }
        return { ok: true, value: { size: buf.length, hash: hash(buf) } };
      }
      case 'readdir': {
        const ents = await readdir(this.p(o.path), { encoding: 'buffer', withFileTypes: true });
        const v = ents
          .map((d) => `${showPath(d.name.toString('latin1'))}:${d.isDirectory() ? 'd' : d.isFile() ? 'f' : d.isSymbolicLink() ? 'l' : d.isFIFO() ? 'p' : d.isCharacterDevice() ? 'c' : d.isBlockDevice() ? 'b' : d.isSocket() ? 's' : '?'}`)
          .sort();
        return { ok: true, value: v };
      }
      case 'stat':
        return { ok: true, value: statValue(await lstat(this.p(o.path))) };
      case 'readlink':
        return { ok: true, value: showPath((await readlink(this.p(o.path), { encoding: 'buffer' })).toString('latin1')) };
      case 'sameInode': {
        // One after the other: in parallel, which of two failures is reported would be a race.
        const x = await lstat(this.p(o.a));
        const y = await lstat(this.p(o.b));
        return { ok: true, value: x.ino === y.ino && x.dev === y.dev };
      }
      case 'open': {
        const old = this.fds.get(o.fd);
        if (old) await old.close();
        this.fds.delete(o.fd);
        const fl = { r: fsc.O_RDONLY, 'r+': fsc.O_RDWR, a: fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, w: fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC }[o.flags];
        this.fds.set(o.fd, await open(this.p(o.path), NB | fl, 0o666));
        return { ok: true };
      }
      case 'fdread': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        const st = await fh.stat();
        const buf = Buffer.alloc(Math.max(st.size, 0) + 16);
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        return { ok: true, value: { size: bytesRead, hash: hash(buf.subarray(0, bytesRead)) } };
      }
      case 'fdwrite': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        await fh.write(Buffer.from(o.data, 'latin1'), 0, o.data.length, o.offset);
        return { ok: true };
      }
      case 'fdstat': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        return { ok: true, value: statValue(await fh.stat()) };
      }
      case 'close': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        this.fds.delete(o.fd);
        await fh.close();
        return { ok: true };
      }
      case 'attrs':
        return attrsValue(await lstat(this.p(o.path), { bigint: true }), this.marks, o.mark, o.since);
      case 'fdattrs': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        return attrsValue(await fh.stat({ bigint: true }), this.marks, o.mark, o.since);
      }
      case 'seek':
        return this.filePy(['seek', this.p(o.path), o.whence, String(o.offset)], (out) => Number(out));
      case 'copyrange':
        return this.filePy(['copyrange', this.p(o.from), this.p(o.to), String(o.fromOffset), String(o.toOffset), String(o.len)], (out) => Number(out));
      case 'tmpfile':
        return this.filePy(['tmpfile', this.p(o.path), o.mode.toString(8), o.data, ...(o.link === undefined ? [] : [this.p(o.link)])],
          (out) => { const [before, after] = out.split(' ').map(Number); return { nlink: before, linked: after }; });
      case 'btime': {
        const r = await tool(`stat -c %W ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true, value: { known: Number((r.stdout ?? '').trim()) > 0 } } : r;
      }
      case 'syncfs': {
        const r = await tool(`sync -f ${shq(this.p(o.path))}`, t);
        return r.ok ? { ok: true } : r;
      }
      case 'fdtruncate': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        await fh.truncate(o.size);
        return { ok: true };
      }
      case 'fdchmod': {
        const fh = this.fds.get(o.fd);
        if (!fh) return { ok: false, errno: 'EBADF' };
        await fh.chmod(o.mode);
        return { ok: true };
      }
    }
  }
}
