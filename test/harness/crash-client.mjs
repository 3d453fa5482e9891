// The client of the crash probes (test/harness/crash.ts): a process of its own
// working on a mount while the test kills or stops the daemon (or this
// process). Every operation is written to an op log outside the mount before
// it starts ("B <json>") and once it returned ("A <seq>"), with write(2) on an
// O_APPEND descriptor: what the log says was acknowledged survives the kill of
// either process. Synchronous calls are right here: this process only uses
// the mount, it never serves it.
//
//   node crash-client.mjs copyup LOG FILE
//       open FILE O_WRONLY|O_APPEND (the copy-up), then append one byte "x"
//   node crash-client.mjs ops LOG MNT SEED files|dirs COUNT
//       COUNT random operations (files: create/rename/unlink of files in f/ and
//       g/; dirs: renames of directories with lower content in D/ and E/ and
//       their subdirectories, and file creates inside them)
//   node crash-client.mjs write LOG FILE SEED CHUNK COUNT
//       create FILE and write COUNT chunks of CHUNK bytes of pattern(SEED, offset)
//   node crash-client.mjs rename LOG MNT FROM TO
//       one rename(2) of MNT/FROM to MNT/TO (logged as FROM -> TO)
//   node crash-client.mjs verify-write FILE SEED
//       exit 0 when every byte of FILE is pattern(SEED, offset), else print the first bad offset
import * as fs from 'node:fs';

const [mode, ...args] = process.argv.slice(2);

/** mulberry32, as src/bench/prng.ts */
function prng(seed) {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000) * n);
  };
}

/** The bytes at [off, off+len) of the write probe's file: a function of the seed and the 4-byte word's offset. */
function pattern(seed, off, len) {
  const b = Buffer.alloc(len);
  let w = -1;
  let x = 0;
  for (let i = 0; i < len; i++) {
    const o = off + i;
    if (Math.floor(o / 4) !== w) {
      w = Math.floor(o / 4);
      x = Math.imul((w ^ seed) >>> 0, 0x9e3779b1) >>> 0;
      x ^= x >>> 15;
      x = Math.imul(x, 0x85ebca6b) >>> 0;
    }
    b[i] = (x >>> ((o % 4) * 8)) & 0xff;
  }
  return b;
}

function openLog(path) {
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
  let seq = 0;
  return {
    begin(op) { seq++; fs.writeSync(fd, `B ${JSON.stringify({ seq, ...op })}\n`); return seq; },
    ack(s) { fs.writeSync(fd, `A ${s}\n`); },
  };
}

function copyup([logPath, file]) {
  const log = openLog(logPath);
  let s = log.begin({ op: 'open' });
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND);
  log.ack(s);
  s = log.begin({ op: 'append' });
  fs.writeSync(fd, 'x');
  log.ack(s);
  fs.closeSync(fd);
}

/** directories of the model below the roots (the roots themselves excluded) */
function listDirs(mnt, roots) {
  const out = [];
  const walk = (rel) => {
    for (const e of fs.readdirSync(`${mnt}/${rel}`, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      out.push(`${rel}/${e.name}`);
      walk(`${rel}/${e.name}`);
    }
  };
  roots.forEach(walk);
  return out;
}

function ops([logPath, mnt, seedArg, kind, countArg]) {
  const rnd = prng(Number(seedArg));
  const log = openLog(logPath);
  const count = Number(countArg);
  const pick = (a) => a[rnd(a.length)];
  let fresh = 0;
  const newName = (prefix) => `${prefix}${process.pid}_${fresh++}`;
  const content = (seq) => `${seq}:`.repeat(1 + rnd(600)).slice(0, 1 + rnd(4000));
  if (kind === 'files') {
    const roots = ['f', 'g'];
    const files = roots.flatMap((r) => fs.readdirSync(`${mnt}/${r}`).map((n) => `${r}/${n}`));
    for (let i = 0; i < count; i++) {
      const k = files.length < 4 ? 0 : rnd(10);
      if (k < 4) {
        const path = `${pick(roots)}/${newName('n')}`;
        const data = content(i);
        const s = log.begin({ op: 'create', path, data });
        const fd = fs.openSync(`${mnt}/${path}`, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
        fs.writeSync(fd, data);
        fs.closeSync(fd);
        log.ack(s);
        files.push(path);
      } else if (k < 8) {
        const idx = rnd(files.length);
        const from = files[idx];
        // a new name, or over another existing file (the rename replaces it)
        let to = `${pick(roots)}/${newName('r')}`;
        let over = -1;
        if (rnd(3) === 0) { over = rnd(files.length); if (over === idx) over = -1; else to = files[over]; }
        const s = log.begin({ op: 'rename', from, to });
        fs.renameSync(`${mnt}/${from}`, `${mnt}/${to}`);
        log.ack(s);
        files[idx] = to;
        if (over >= 0) files.splice(over, 1);
      } else {
        const idx = rnd(files.length);
        const path = files[idx];
        const s = log.begin({ op: 'unlink', path });
        fs.unlinkSync(`${mnt}/${path}`);
        log.ack(s);
        files.splice(idx, 1);
      }
    }
  } else if (kind === 'dirs') {
    const roots = ['D', 'E'];
    // the directories below the roots, kept up to date here: reading them back through the
    // mount at each step would put most kills into those reads instead of the renames
    let dirs = listDirs(mnt, roots);
    for (let i = 0; i < count; i++) {
      if (rnd(10) < 7) {
        const from = pick(dirs);
        const to = `${pick(roots)}/${newName('d')}`;
        const s = log.begin({ op: 'rename', from, to });
        fs.renameSync(`${mnt}/${from}`, `${mnt}/${to}`);
        log.ack(s);
        dirs = dirs.map((p) => (p === from || p.startsWith(`${from}/`) ? to + p.slice(from.length) : p));
      } else {
        const path = `${pick(dirs)}/${newName('n')}`;
        const data = content(i);
        const s = log.begin({ op: 'create', path, data });
        fs.writeFileSync(`${mnt}/${path}`, data, { flag: 'wx' });
        log.ack(s);
      }
    }
  } else {
    throw new Error(`unknown ops kind ${kind}`);
  }
}

function write([logPath, file, seedArg, chunkArg, countArg]) {
  const seed = Number(seedArg);
  const chunk = Number(chunkArg);
  const log = openLog(logPath);
  let s = log.begin({ op: 'open' });
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
  log.ack(s);
  // The pattern of one chunk depends on its offset: computed ahead, so the writes follow each other closely.
  const bufs = [];
  for (let i = 0; i < Math.min(Number(countArg), 4); i++) bufs.push(pattern(seed, i * chunk, chunk));
  for (let i = 0; i < Number(countArg); i++) {
    const buf = i < bufs.length ? bufs[i] : pattern(seed, i * chunk, chunk);
    s = log.begin({ op: 'write', offset: i * chunk, length: chunk });
    let done = 0;
    while (done < chunk) done += fs.writeSync(fd, buf, done, chunk - done, i * chunk + done);
    log.ack(s);
  }
  fs.closeSync(fd);
}

function rename([logPath, mnt, from, to]) {
  const log = openLog(logPath);
  const s = log.begin({ op: 'rename', from, to });
  fs.renameSync(`${mnt}/${from}`, `${mnt}/${to}`);
  log.ack(s);
}

function verifyWrite([file, seedArg]) {
  const seed = Number(seedArg);
  const fd = fs.openSync(file, 'r');
  const step = 1 << 20;
  const buf = Buffer.alloc(step);
  for (let off = 0; ; off += step) {
    const n = fs.readSync(fd, buf, 0, step, off);
    if (n === 0) break;
    const want = pattern(seed, off, n);
    if (!buf.subarray(0, n).equals(want)) {
      let i = 0;
      while (buf[i] === want[i]) i++;
      process.stdout.write(`byte ${off + i} differs from the pattern\n`);
      process.exit(1);
    }
  }
}

switch (mode) {
  case 'copyup': copyup(args); break;
  case 'ops': ops(args); break;
  case 'write': write(args); break;
  case 'rename': rename(args); break;
  case 'verify-write': verifyWrite(args); break;
  default: throw new Error(`unknown mode ${mode}`);
}
