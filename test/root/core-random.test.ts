/**
 * Randomized differential test of the core against kernel overlayfs: the same
 * operation sequence on two copies of one layer set, one through the core
 * (called directly, no FUSE) and one through `mount -t overlay`; every
 * operation must give the same result (errno), the merged trees must match,
 * and each side's upper must read the same through the other implementation.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { code, makeLayers, open, root, type Layers, type Node } from './core-helpers.js';
import type { Overlay } from '../../src/core/overlay.js';
import { StatIdx } from '../../src/native/sys.js';

const SPEC: Record<string, Record<string, Node>> = {
  l0: { 'd/x': 'dx0', 'd/sub/z': 'z0', 'e': { dir: true }, 'f': 'f0', 'n/top': 't' },
  l1: { 'd/y': 'dy1', 'd/sub/w': 'w1', 'g': 'g1', 'e/q': 'q1', 'n/old': 'o1', 'm/deep/k': 'k1' },
  upper: { 'd/u': 'du', 'g': { wh: true }, 'n': { opaque: true }, 'n/k': 'nk' },
};
const POOL = ['d', 'd/x', 'd/y', 'd/u', 'd/sub', 'd/sub/z', 'd/sub/w', 'd/v', 'e', 'e/q', 'e/r', 'f', 'g', 'h',
  'n', 'n/old', 'n/top', 'n/k', 'm', 'm/deep', 'm/deep/k', 'p'];

type Op =
  | { op: 'create'; path: string; data: string }
  | { op: 'write'; path: string; offset: number; data: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number }
  | { op: 'utimens'; path: string; sec: number }
  | { op: 'mkdir'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'symlink'; path: string }
  | { op: 'setxattr'; path: string; value: string }
  | { op: 'readdir'; path: string }
  | { op: 'read'; path: string }
  | { op: 'mkfifo'; path: string }
  | { op: 'same'; a: string; b: string };

const p = fc.constantFrom(...POOL);
const data = fc.constantFrom('a', 'hello', 'Z'.repeat(100));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('create' as const), path: p, data }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('write' as const), path: p, offset: fc.constantFrom(0, 2, 50), data }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), path: p, size: fc.constantFrom(0, 1, 300) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('chmod' as const), path: p, mode: fc.constantFrom(0o600, 0o755, 0o4755, 0o1777) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('chown' as const), path: p, uid: fc.constantFrom(0, 7) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('utimens' as const), path: p, sec: fc.constantFrom(1000, 2000000) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: p }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rmdir' as const), path: p }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('unlink' as const), path: p }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('rename' as const), from: p, to: p }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), from: p, to: p }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('symlink' as const), path: p }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('setxattr' as const), path: p, value: fc.constantFrom('1', 'two') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: p }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('read' as const), path: p }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mkfifo' as const), path: p }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('same' as const), a: p, b: p }) },
);

const { O_WRONLY, O_CREAT, O_EXCL, O_RDONLY } = fs.constants;

function kernelOp(mnt: string, o: Op): string {
  const at = (q: string): string => path.join(mnt, q);
  // Opening a FIFO would block: both runners skip data ops on one.
  if ((o.op === 'read' || o.op === 'write') && fs.statSync(at(o.path), { throwIfNoEntry: false })?.isFIFO()) return 'SKIP';
  try {
    switch (o.op) {
      case 'create': { const fd = fs.openSync(at(o.path), O_WRONLY | O_CREAT | O_EXCL, 0o644); fs.writeSync(fd, o.data); fs.closeSync(fd); break; }
      case 'write': { const fd = fs.openSync(at(o.path), O_WRONLY); fs.writeSync(fd, o.data, o.offset); fs.closeSync(fd); break; }
      case 'truncate': fs.truncateSync(at(o.path), o.size); break;
      case 'chmod': fs.chmodSync(at(o.path), o.mode); break;
      case 'chown': fs.chownSync(at(o.path), o.uid, o.uid); break;
      case 'utimens': fs.utimesSync(at(o.path), o.sec, o.sec); break;
      case 'mkdir': fs.mkdirSync(at(o.path), 0o755); break;
      case 'rmdir': fs.rmdirSync(at(o.path)); break;
      case 'unlink': fs.unlinkSync(at(o.path)); break;
      case 'rename': fs.renameSync(at(o.from), at(o.to)); break;
      case 'link': fs.linkSync(at(o.from), at(o.to)); break;
      case 'symlink': fs.symlinkSync('nowhere', at(o.path)); break;
      case 'setxattr': execFileSync('setfattr', ['-n', 'user.t', '-v', o.value, at(o.path)], { stdio: 'pipe' }); break;
      case 'readdir': return 'OK ' + fs.readdirSync(at(o.path)).sort().join(',');
      case 'read': return 'OK ' + fs.readFileSync(at(o.path), 'latin1');
      case 'mkfifo': execFileSync('mkfifo', ['-m', '640', at(o.path)], { stdio: 'pipe' }); break;
      case 'same': return 'OK ' + String(fs.lstatSync(at(o.a)).ino === fs.lstatSync(at(o.b)).ino);
    }
    return 'OK';
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (o.op === 'mkfifo') {
      const msg = (err.stderr?.toString() ?? '').trim().split(': ').pop() ?? '';
      const map: Record<string, string> = { 'No such file or directory': 'ENOENT', 'Not a directory': 'ENOTDIR', 'File exists': 'EEXIST' };
      return map[msg] ?? `mkfifo: ${msg}`;
    }
    if (o.op === 'setxattr') {
      const msg = (err.stderr?.toString() ?? '').trim().split(': ').pop() ?? '';
      const map: Record<string, string> = { 'No such file or directory': 'ENOENT', 'Not a directory': 'ENOTDIR', 'Operation not permitted': 'EPERM' };
      return map[msg] ?? `setfattr: ${msg}`;
    }
    return err.code ?? String(e);
  }
}

/** The kernel resolves symlinks before a FUSE filesystem sees a path; emulate that (targets here dangle). */
async function vfsCheck(O: Overlay, q: string, followLast: boolean): Promise<string | undefined> {
  const parts = q.split('/');
  for (let i = 1; i <= parts.length; i++) {
    if (i === parts.length && !followLast) break;
    const pre = '/' + parts.slice(0, i).join('/');
    let st: Float64Array;
    try { st = await O.getattr(pre); } catch (e) { return i === parts.length ? undefined : (e as { code: string }).code; }
    const t = st[StatIdx.mode]! & 0o170000;
    if (t === 0o120000) return 'ENOENT';
    if (i < parts.length && t !== 0o040000) return 'ENOTDIR';
  }
  return undefined;
}

async function coreOp(O: Overlay, o: Op): Promise<string> {
  const P = (q: string): string => '/' + q;
  const follow = ['write', 'truncate', 'chmod', 'chown', 'utimens', 'setxattr', 'readdir', 'read'].includes(o.op);
  const paths = o.op === 'rename' || o.op === 'link' ? [o.from, o.to] : o.op === 'same' ? [o.a, o.b] : [o.path];
  for (const q of paths) {
    const v = await vfsCheck(O, q, follow);
    if (v) return v;
  }
  if (o.op === 'read' || o.op === 'write') {
    const st = await O.getattr(P(o.path)).catch(() => undefined);
    if (st && (st[StatIdx.mode]! & 0o170000) === 0o010000) return 'SKIP';
  }
  switch (o.op) {
    case 'create': return code((async () => {
      const r = await O.create(P(o.path), 0o100644, O_WRONLY | O_CREAT | O_EXCL, root);
      await O.write(P(o.path), r.fh, Buffer.from(o.data), o.data.length, 0);
      await O.release(P(o.path), r.fh);
    })());
    case 'write': return code((async () => {
      const st = await O.getattr(P(o.path));
      if ((st[StatIdx.mode]! & 0o170000) === 0o040000) throw Object.assign(new Error(), { code: 'EISDIR' });
      const r = await O.open(P(o.path), O_WRONLY, root);
      await O.write(P(o.path), r.fh, Buffer.from(o.data), o.data.length, o.offset);
      await O.release(P(o.path), r.fh);
    })());
    case 'truncate': return code(O.truncate(P(o.path), o.size, root));
    case 'chmod': return code(O.chmod(P(o.path), o.mode, root));
    case 'chown': return code(O.chown(P(o.path), o.uid, o.uid, root));
    case 'utimens': return code(O.utimens(P(o.path), { sec: o.sec, nsec: 0 }, { sec: o.sec, nsec: 0 }, root));
    case 'mkdir': return code(O.mkdir(P(o.path), 0o755, root));
    case 'rmdir': return code(O.rmdir(P(o.path), root));
    case 'unlink': return code(O.unlink(P(o.path), root));
    case 'rename': return code(O.rename(P(o.from), P(o.to), 0, root));
    case 'link': return code(O.link(P(o.from), P(o.to), root));
    case 'symlink': return code(O.symlink('nowhere', P(o.path), root));
    case 'mkfifo': return code(O.mknod(P(o.path), 0o010640, 0, root));
    case 'same': {
      try {
        return 'OK ' + String((await O.getattr(P(o.a)))[StatIdx.ino] === (await O.getattr(P(o.b)))[StatIdx.ino]);
      } catch (e) { return (e as { code: string }).code; }
    }
    case 'setxattr': return code(O.setxattr(P(o.path), 'user.t', Buffer.from(o.value), 0, root));
    case 'readdir': {
      try {
        const st = await O.getattr(P(o.path));
        if ((st[StatIdx.mode]! & 0o170000) !== 0o040000) return 'ENOTDIR';
        const fh = await O.opendir(P(o.path), root);
        const names = (await O.readdir(P(o.path), fh)).map((e) => e.name).sort();
        await O.releasedir(P(o.path), fh);
        return 'OK ' + names.join(',');
      } catch (e) { return (e as { code: string }).code; }
    }
    case 'read': {
      try {
        const st = await O.getattr(P(o.path));
        if ((st[StatIdx.mode]! & 0o170000) === 0o040000) return 'EISDIR';
        const r = await O.open(P(o.path), O_RDONLY, root);
        const buf = Buffer.alloc(4096);
        const n = await O.read(P(o.path), r.fh, buf, buf.length, 0);
        await O.release(P(o.path), r.fh);
        return 'OK ' + buf.subarray(0, n).toString('latin1');
      } catch (e) { return (e as { code: string }).code; }
    }
  }
}

function xattrsOf(full: string): string {
  const r = execFileSync('getfattr', ['-h', '-d', '-m', '^user\\.', '--absolute-names', full], { encoding: 'latin1' });
  return r.split('\n').filter((l) => l.startsWith('user.')).map((l) => l.replace(/"/g, '')).sort().join(';');
}

/** Everything comparable about a tree, read with lstat through a mount (or the core). */
function describeTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, r);
      const st = fs.lstatSync(full);
      const base = `${r} ${(st.mode & 0o177777).toString(8)} ${st.uid}:${st.gid} n${st.nlink} ${xattrsOf(full)}`;
      if (st.isDirectory()) { out.push(base); walk(r); }
      else if (st.isSymbolicLink()) out.push(`${base} -> ${fs.readlinkSync(full)}`);
      else if (st.isFIFO()) out.push(`${base} fifo`);
      else out.push(`${base} = ${fs.readFileSync(full, 'latin1')}`);
    }
  };
  walk('');
  return out.sort();
}

async function describeCore(O: Overlay): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const fh = await O.opendir(dir, root);
    const entries = await O.readdir(dir, fh);
    await O.releasedir(dir, fh);
    for (const e of entries) {
      const mp = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      const st = await O.getattr(mp);
      const m = st[StatIdx.mode]!;
      const xs = (await O.listxattr(mp)).filter((x) => x.startsWith('user.')).sort();
      const xv: string[] = [];
      for (const x of xs) xv.push(`${x}=${(await O.getxattr(mp, x)).toString('latin1')}`);
      const base = `${mp.slice(1)} ${(m & 0o177777).toString(8)} ${st[StatIdx.uid]}:${st[StatIdx.gid]} n${st[StatIdx.nlink]} ${xv.join(';')}`;
      if ((m & 0o170000) === 0o040000) { out.push(base); await walk(mp); }
      else if ((m & 0o170000) === 0o120000) out.push(`${base} -> ${await O.readlink(mp)}`);
      else if ((m & 0o170000) === 0o010000) out.push(`${base} fifo`);
      else {
        const r = await O.open(mp, O_RDONLY, root);
        const buf = Buffer.alloc(65536);
        const n = await O.read(mp, r.fh, buf, buf.length, 0);
        await O.release(mp, r.fh);
        out.push(`${base} = ${buf.subarray(0, n).toString('latin1')}`);
      }
    }
  };
  await walk('/');
  return out.sort();
}

function withKernel<T>(l: Layers, upper: string, f: (mnt: string) => T): T {
  const kw = fs.mkdtempSync(path.join(l.dir, 'kw'));
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l.lowers.join(':')},upperdir=${upper},workdir=${kw},redirect_dir=on`, l.mnt]);
  try { return f(l.mnt); } finally { execFileSync('umount', [l.mnt]); fs.rmSync(kw, { recursive: true, force: true }); }
}

let Ls: Layers[] = [];
let O: Overlay | undefined;
afterEach(async () => {
  await O?.close(); O = undefined;
  for (const l of Ls) l.cleanup();
  Ls = [];
});

describe('core vs kernel overlayfs, random operation sequences', () => {
  it('agree on every result, the merged tree and each other\'s upper', async () => {
    // Cache sizes: off, tiny (constant eviction) and ample: results must not depend on it.
    const cacheSize = fc.constantFrom(0, 3, 1000);
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: Number(process.env.CORE_RANDOM_LEN ?? 25) }), cacheSize, async (ops, lookupCacheSize) => {
      const K = makeLayers(SPEC); const C = makeLayers(SPEC); Ls.push(K, C);
      try {
        const kres = withKernel(K, K.upper, (mnt) => {
          const r = ops.map((o) => kernelOp(mnt, o));
          return { r, tree: describeTree(mnt) };
        });
        O = await open(C, { lookupCacheSize });
        const cres: string[] = [];
        for (const o of ops) cres.push(await coreOp(O, o));
        const ctree = await describeCore(O);
        await O.close(); O = undefined;
        const show = ops.map((o, i) => `${JSON.stringify(o)} kernel=${kres.r[i]} core=${cres[i]}`).join('\n');
        expect(cres, show).toEqual(kres.r);
        expect(ctree, show).toEqual(kres.tree);
        // The kernel reads the core's upper as the core showed it, and the core reads the kernel's.
        expect(withKernel(C, C.upper, (mnt) => describeTree(mnt)), show).toEqual(ctree);
        O = await open(K);
        expect(await describeCore(O), show).toEqual(kres.tree);
        await O.close(); O = undefined;
      } finally {
        await O?.close(); O = undefined;
        K.cleanup(); C.cleanup(); Ls = [];
      }
    }), { numRuns: Number(process.env.CORE_RANDOM_RUNS ?? 30), seed: Number(process.env.CORE_RANDOM_SEED ?? 20261126), endOnFailure: true });
  }, 600_000);
});
