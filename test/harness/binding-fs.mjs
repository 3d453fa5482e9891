#!/usr/bin/env node
// A small in-memory filesystem served through src/native/fuse.ts, for the
// binding-level tests. It records what every handler receives as JSON lines
// in a log file (never on the mount), so the test process can check exactly
// what crossed the binding.
//
//   node test/harness/binding-fs.mjs '{"mnt": "...", "log": "...", "options": {...}}'
//
// stdout: "READY" once mounted, "EXIT" when the FUSE session has ended.
// Exits by itself when the session ends (our SIGTERM unmount or an outside
// umount): nothing may keep the process alive after that.
import { appendFileSync } from 'node:fs';
import { constants as os } from 'node:os';
import { Fuse, UTIME_NOW, UTIME_OMIT, OpenFlags } from '../../dist/native/fuse.js';

const cfg = JSON.parse(process.argv[2]);
const { ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, ENODATA, EIO } = os.errno;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

const writeSizes = new Map();
let writeCount = 0;
let writeBytes = 0;
const quiet = new Set(cfg.quiet ?? []);

function log(entry) {
  if (quiet.has(entry.op)) return;
  appendFileSync(cfg.log, JSON.stringify(entry) + '\n');
}

const now = () => {
  const ms = Date.now();
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6];
};

let nextIno = 2;
const nodes = new Map(); // path (Bstr) -> node
const handles = new Map(); // fh -> node
let nextFh = 10;

function mk(mode, extra = {}) {
  const t = now();
  return {
    ino: nextIno++, mode, nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1, uid: 0, gid: 0, rdev: 0,
    size: 0, data: Buffer.alloc(0), atime: [...t], mtime: [...t], ctime: [...t],
    xattrs: new Map(), target: '', ...extra,
  };
}

nodes.set('/', mk(S_IFDIR | 0o777, { ino: 1 }));
// 64-bit wide values the old binding cut to 32 bits or milliseconds
nodes.set('/big', mk(S_IFREG | 0o644, {
  ino: 2 ** 40 + 7, size: 6 * 2 ** 30, nlink: 1, blksize: 65536,
  atime: [981173106, 123456789], mtime: [4102444800, 987654321], ctime: [1234567890, 1],
}));
nodes.get('/big').xattrs.set('user.big', Buffer.alloc(100, 0x61));
nodes.get('/big').xattrs.set('user.small', Buffer.from('x'));
nodes.set('/slow', mk(S_IFREG | 0o644, { data: Buffer.from('slow\n'), size: 5 }));
nodes.set('/dio', mk(S_IFREG | 0o644, { data: Buffer.alloc(8192, 0x62), size: 8192 }));

function stat(n) {
  const a = new Float64Array(16);
  a[0] = 0; a[1] = n.ino; a[2] = n.mode; a[3] = n.nlink; a[4] = n.uid; a[5] = n.gid; a[6] = n.rdev;
  a[7] = n.size; a[8] = n.blksize ?? 4096; a[9] = Math.ceil(n.data.length / 512);
  a[10] = n.atime[0]; a[11] = n.atime[1]; a[12] = n.mtime[0]; a[13] = n.mtime[1];
  a[14] = n.ctime[0]; a[15] = n.ctime[1];
  return a;
}

const parentOf = (p) => p.slice(0, p.lastIndexOf('/')) || '/';
const baseOf = (p) => p.slice(p.lastIndexOf('/') + 1);
const children = (dir) => [...nodes.keys()].filter((p) => p !== '/' && parentOf(p) === dir);

function ensureSize(n, size) {
  if (n.data.length < size) {
    const d = Buffer.alloc(size);
    n.data.copy(d);
    n.data = d;
  }
}

function setTime(cur, sec, nsec) {
  if (nsec === UTIME_OMIT) return cur;
  if (nsec === UTIME_NOW) return now();
  return [sec, nsec];
}

function newNode(path, mode, extra) {
  if (nodes.has(path)) return -EEXIST;
  const parent = nodes.get(parentOf(path));
  if (!parent) return -ENOENT;
  if ((parent.mode & S_IFMT) !== S_IFDIR) return -ENOTDIR;
  const ctx = fuse.context();
  const n = mk(mode, { uid: ctx.uid, gid: ctx.gid, ...extra });
  nodes.set(path, n);
  return n;
}

function openHandle(n) {
  const fh = nextFh++;
  handles.set(fh, n);
  return fh;
}

const handlers = {
  init(cb) { cb(0); },
  statfs(path, cb) {
    log({ op: 'statfs', path });
    const a = new Float64Array(11);
    a.set([4096, 4096, 2 ** 33 + 11, 2 ** 33 + 5, 2 ** 33 + 3, 2 ** 34 + 1, 2 ** 34, 2 ** 34, 0, 0, 255]);
    cb(0, a);
  },
  getattr(path, cb) {
    log({ op: 'getattr', path });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    cb(0, stat(n));
  },
  fgetattr(path, fh, cb) {
    log({ op: 'fgetattr', path, fh });
    const n = handles.get(fh);
    if (!n) return cb(-EIO);
    cb(0, stat(n));
  },
  access(path, mode, cb) { log({ op: 'access', path, mode }); cb(0); },
  readdir(path, fh, cb) {
    log({ op: 'readdir', path, fh });
    const names = children(path);
    const types = new Float64Array(names.length * 2 + 4);
    const self = nodes.get(path);
    const out = ['.', '..'];
    types[0] = S_IFDIR; types[1] = self.ino; types[2] = S_IFDIR; types[3] = 1;
    names.forEach((p, i) => {
      out.push(baseOf(p));
      types[4 + 2 * i] = nodes.get(p).mode;
      types[5 + 2 * i] = nodes.get(p).ino;
    });
    cb(0, out, types);
  },
  opendir(path, flags, cb) {
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    const fh = openHandle(n);
    log({ op: 'opendir', path, fh });
    cb(0, fh);
  },
  releasedir(path, fh, cb) { handles.delete(fh); cb(0); },
  create(path, mode, flags, cb) {
    const ctx = fuse.context();
    const n = newNode(path, mode);
    if (typeof n === 'number') {
      log({ op: 'create', path, mode, flags, ctx });
      return cb(n);
    }
    const fh = openHandle(n);
    log({ op: 'create', path, mode, flags, ctx, fh });
    cb(0, fh);
  },
  open(path, flags, cb) {
    const n = nodes.get(path);
    if (!n) {
      log({ op: 'open', path, flags });
      return cb(-ENOENT);
    }
    const fh = openHandle(n);
    log({ op: 'open', path, flags, fh });
    cb(0, fh, path === '/dio' ? OpenFlags.DIRECT_IO : 0);
  },
  read(path, fh, buf, len, offset, cb) {
    log({ op: 'read', path, fh, len, offset });
    const n = handles.get(fh);
    if (!n) return cb(-EIO);
    const answer = () => {
      const end = Math.min(n.size, offset + len);
      if (end <= offset) return cb(0);
      buf.fill(0, 0, end - offset);
      if (offset < n.data.length) n.data.copy(buf, 0, offset, Math.min(end, n.data.length));
      cb(end - offset);
    };
    if (n === nodes.get('/slow')) setTimeout(answer, cfg.slowMs ?? 16_000);
    else answer();
  },
  write(path, fh, buf, len, offset, cb) {
    writeCount++;
    writeBytes += len;
    writeSizes.set(len, (writeSizes.get(len) ?? 0) + 1);
    log({ op: 'write', path, fh, len, offset });
    const n = handles.get(fh);
    if (!n) return cb(-EIO);
    // far offsets only move the size (a sparse file without stored data)
    if (!cfg.discardData && offset + len <= 64 * 2 ** 20) {
      ensureSize(n, offset + len);
      buf.copy(n.data, offset, 0, len);
    }
    n.size = Math.max(n.size, offset + len);
    cb(len);
  },
  flush(path, fh, cb) { cb(0); },
  fsync(path, datasync, fh, cb) { cb(0); },
  release(path, fh, cb) {
    log({ op: 'release', path, fh });
    handles.delete(fh);
    cb(0);
  },
  truncate(path, size, cb) {
    log({ op: 'truncate', path, size });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    n.size = size;
    if (n.data.length > size) n.data = n.data.subarray(0, size);
    cb(0);
  },
  ftruncate(path, fh, size, cb) {
    log({ op: 'ftruncate', path, fh, size });
    const n = handles.get(fh);
    if (!n) return cb(-EIO);
    n.size = size;
    if (n.data.length > size) n.data = n.data.subarray(0, size);
    cb(0);
  },
  fallocate(path, fh, mode, offset, length, cb) {
    log({ op: 'fallocate', path, fh, mode, offset, length });
    const n = handles.get(fh);
    if (!n) return cb(-EIO);
    if (mode === 0) n.size = Math.max(n.size, offset + length);
    cb(0);
  },
  utimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, cb) {
    log({ op: 'utimens', path, atimeSec, atimeNsec, mtimeSec, mtimeNsec });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    n.atime = setTime(n.atime, atimeSec, atimeNsec);
    n.mtime = setTime(n.mtime, mtimeSec, mtimeNsec);
    cb(0);
  },
  chmod(path, mode, cb) {
    log({ op: 'chmod', path, mode });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
    cb(0);
  },
  chown(path, uid, gid, cb) {
    log({ op: 'chown', path, uid, gid });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    if (uid !== 0xffffffff) n.uid = uid;
    if (gid !== 0xffffffff) n.gid = gid;
    cb(0);
  },
  mknod(path, mode, dev, cb) {
    log({ op: 'mknod', path, mode, dev });
    const n = newNode(path, mode, { rdev: dev });
    cb(typeof n === 'number' ? n : 0);
  },
  mkdir(path, mode, cb) {
    log({ op: 'mkdir', path, mode });
    const n = newNode(path, S_IFDIR | mode);
    cb(typeof n === 'number' ? n : 0);
  },
  rmdir(path, cb) {
    log({ op: 'rmdir', path });
    if (!nodes.has(path)) return cb(-ENOENT);
    if (children(path).length) return cb(-ENOTEMPTY);
    nodes.delete(path);
    cb(0);
  },
  unlink(path, cb) {
    log({ op: 'unlink', path });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    n.nlink--;
    nodes.delete(path);
    cb(0);
  },
  rename(src, dest, cb) {
    log({ op: 'rename', path: src, dest });
    const n = nodes.get(src);
    if (!n) return cb(-ENOENT);
    nodes.delete(src);
    nodes.set(dest, n);
    cb(0);
  },
  link(src, dest, cb) {
    log({ op: 'link', path: src, dest });
    const n = nodes.get(src);
    if (!n) return cb(-ENOENT);
    if (nodes.has(dest)) return cb(-EEXIST);
    n.nlink++;
    nodes.set(dest, n);
    cb(0);
  },
  symlink(target, path, cb) {
    log({ op: 'symlink', path, target });
    const n = newNode(path, S_IFLNK | 0o777, { target });
    if (typeof n !== 'number') n.size = Buffer.byteLength(target, 'latin1');
    cb(typeof n === 'number' ? n : 0);
  },
  readlink(path, cb) {
    log({ op: 'readlink', path });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    cb(0, n.target);
  },
  setxattr(path, name, value, position, flags, cb) {
    log({ op: 'setxattr', path, name, size: value.length, flags });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    n.xattrs.set(name, Buffer.from(value));
    cb(0);
  },
  getxattr(path, name, position, cb) {
    log({ op: 'getxattr', path, name });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    const v = n.xattrs.get(name);
    if (!v) return cb(-ENODATA);
    cb(0, v);
  },
  listxattr(path, cb) {
    log({ op: 'listxattr', path });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    cb(0, [...n.xattrs.keys()]);
  },
  removexattr(path, name, cb) {
    log({ op: 'removexattr', path, name });
    const n = nodes.get(path);
    if (!n) return cb(-ENOENT);
    if (!n.xattrs.delete(name)) return cb(-ENODATA);
    cb(0);
  },
};

const fuse = new Fuse(cfg.mnt, handlers, {
  ...cfg.options,
  onExit() {
    const sizes = Object.fromEntries([...writeSizes].sort((a, b) => b[1] - a[1]));
    log({ op: 'exit', writeCount, writeBytes, writeSizes: sizes });
    process.stdout.write('EXIT\n');
  },
});

process.on('SIGTERM', () => {
  fuse.unmount().catch((err) => {
    process.stderr.write(`unmount failed: ${err.message}\n`);
    process.exitCode = 1;
  });
});

fuse.mount().then(
  () => process.stdout.write('READY\n'),
  (err) => {
    process.stderr.write(`mount failed: ${err.message}\n`);
    process.exit(2);
  },
);
