// One client of the load test (test/integration/load.test.ts): random name-space
// operations on a mount for a while, from a seed, as a separate process (the
// kernel sees several callers at once, as with real clients).
//
//   node load-worker.mjs ROOT SEED MILLISECONDS
//
// Two more modes drive one race on purpose (a create in a directory while an
// ancestor of it is renamed; the kernel locks only the directory created in):
//   node load-worker.mjs --create-in DIR COUNT [create|mkdir|symlink|link|OP-lower]
//                                                 chdir(DIR), print "ready", then make
//                                                 f0..fCOUNT-1 relative to it (link: of DIR/target;
//                                                 OP-lower: in xI/a/b/c for I < COUNT, directories of a lower:
//                                                 create or mkdir f; append (open), chmod, unlink or rename
//                                                 (to h) the lower file g)
//   node load-worker.mjs --swap ROOT COUNT        rename ROOT/p <-> ROOT/q COUNT times
// each printing {ok, errors: {code: count}} at the end.
//   node load-worker.mjs --hold ROOT COUNT        hold COUNT files open at once: ROOT/dK/fI
//       (I % 10 = K) opened read-only, every tenth one (K = 9) created new and written;
//       then read each through its descriptor and print {opened, errors, sha256 of
//       all contents in order, fds}; close them all when stdin ends
//
// Paths come from a three-level name space: /A/B/C with each component one of
// NAMES, so renames, creates and removals of the same names collide across the
// workers all the time. Every call may fail (ENOENT, EEXIST, ENOTEMPTY, ...):
// that is the point. xattrs go through stratafs's own addon (Node has no xattr
// calls); it is a plain syscall on the mount, nothing of the daemon.
// Prints one JSON line at the end: operations done and failed, by kind.
import fs from 'node:fs';
import { createRequire } from 'node:module';

if (process.argv[2] === '--hold') {
  const { createHash } = await import('node:crypto');
  const [, dir, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const fds = [];
  const errors = {};
  for (let i = 0; i < count; i++) {
    const k = i % 10;
    try {
      if (k === 9) {
        const fd = fs.openSync(`${dir}/d${k}/new${i}`, 'wx+', 0o644);
        fs.writeSync(fd, `new ${i}\n`);
        fds.push(fd);
      } else {
        fds.push(fs.openSync(`${dir}/d${k}/f${i}`, 'r'));
      }
    } catch (e) { errors[e.code] = (errors[e.code] ?? 0) + 1; }
  }
  const h = createHash('sha256');
  const buf = Buffer.alloc(4096);
  for (const fd of fds) h.update(buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)));
  const own = fs.readdirSync('/proc/self/fd').length;
  process.stdout.write(JSON.stringify({ opened: fds.length, errors, sha256: h.digest('hex'), fds: own }) + '\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  for (const fd of fds) fs.closeSync(fd);
  process.exit(0);
} else if (process.argv[2] === '--create-in' || process.argv[2] === '--swap') {
  const [mode, dir, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  let ok = 0;
  const errors = {};
  const make = {
    create: (i) => fs.closeSync(fs.openSync('f' + i, 'wx', 0o644)),
    mkdir: (i) => fs.mkdirSync('f' + i),
    symlink: (i) => fs.symlinkSync('t', 'f' + i),
    link: (i) => fs.linkSync('target', 'f' + i),
    // in DIR/xI/a/b/c, a lower directory: its parents are copied up first
    'create-lower': (i) => fs.closeSync(fs.openSync(`x${i}/a/b/c/f`, 'wx', 0o644)),
    'mkdir-lower': (i) => fs.mkdirSync(`x${i}/a/b/c/f`),
    // a lower file opened for writing: copied up first
    'append-lower': (i) => fs.closeSync(fs.openSync(`x${i}/a/b/c/g`, 'a')),
    'chmod-lower': (i) => fs.chmodSync(`x${i}/a/b/c/g`, 0o600),
    'unlink-lower': (i) => fs.unlinkSync(`x${i}/a/b/c/g`),
    'rename-lower': (i) => fs.renameSync(`x${i}/a/b/c/g`, `x${i}/a/b/c/h`),
  }[process.argv[5] ?? 'create'];
  if (mode === '--create-in' && process.argv[5] === 'link') fs.closeSync(fs.openSync(dir + '/target', 'w'));
  const step = mode === '--create-in' ? make : (i) => fs.renameSync(dir + (i % 2 ? '/q' : '/p'), dir + (i % 2 ? '/p' : '/q'));
  if (mode === '--create-in') { process.chdir(dir); process.stdout.write('ready\n'); }
  for (let i = 0; i < count; i++) {
    try { step(i); ok++; } catch (e) { errors[e.code] = (errors[e.code] ?? 0) + 1; }
  }
  process.stdout.write(JSON.stringify({ ok, errors }) + '\n');
  process.exit(0);
}
const [root, seedArg, msArg] = process.argv.slice(2);
if (!root || !seedArg || !msArg) { console.error('usage: load-worker.mjs ROOT SEED MS'); process.exit(2); }
const require = createRequire(import.meta.url);
const sys = require('../../src/native/build/Release/stratafs_sys.node');

const NAMES = ['a', 'b', 'c', 'd'];
const DEPTH = 3;

// mulberry32: small, seedable, the same sequence for the same seed everywhere
let s = Number(seedArg) >>> 0;
const rnd = () => {
  s = (s + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const rel = () => {
  const n = 1 + Math.floor(rnd() * DEPTH);
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(pick(NAMES));
  return parts.join('/');
};
const abs = (r) => root + '/' + r;

const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
const chk = (r) => { if (typeof r === 'number' && r < 0) throw Object.assign(new Error('errno ' + -r), { errno: r }); };

const OPS = {
  create: () => fs.closeSync(fs.openSync(abs(rel()), 'w', 0o644)),
  append: () => fs.appendFileSync(abs(rel()), 'x'.repeat(1 + Math.floor(rnd() * 3000))),
  truncate: () => fs.truncateSync(abs(rel()), Math.floor(rnd() * 2000)),
  unlink: () => fs.unlinkSync(abs(rel())),
  rename: () => fs.renameSync(abs(rel()), abs(rel())),
  mkdir: () => fs.mkdirSync(abs(rel()), 0o755),
  rmdir: () => fs.rmdirSync(abs(rel())),
  symlink: () => fs.symlinkSync(pick(NAMES), abs(rel())),
  link: () => fs.linkSync(abs(rel()), abs(rel())),
  chmod: () => fs.chmodSync(abs(rel()), pick([0o600, 0o644, 0o755, 0o700])),
  xattr: () => chk(sys.lsetxattrat(rootFd, rel(), 'user.load', Buffer.from(String(Math.floor(rnd() * 1000))), 0)),
  // readers keep the kernel's dentries and the daemon's nodes busy, as `find` does
  list: () => { const r = rel(); for (const n of fs.readdirSync(abs(r))) fs.lstatSync(abs(r) + '/' + n); },
  stat: () => fs.lstatSync(abs(rel())),
};
const KINDS = Object.keys(OPS);

const end = Date.now() + Number(msArg);
const done = {};
const failed = {};
let n = 0;
while (Date.now() < end) {
  // the clock is read once per 64 operations: the sequence depends on the seed, not on the timing
  for (let i = 0; i < 64; i++) {
    const k = pick(KINDS);
    try { OPS[k](); done[k] = (done[k] ?? 0) + 1; } catch { failed[k] = (failed[k] ?? 0) + 1; }
    n++;
  }
}
fs.closeSync(rootFd);
process.stdout.write(JSON.stringify({ seed: Number(seedArg), ops: n, done, failed }) + '\n');
