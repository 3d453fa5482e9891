// Issue 11, depth and scale: trees deeper than PATH_MAX below a layer root, 500 real
// layers, and 64-bit inode numbers (a kernel overlay with xino=on as the lower), each
// judged by kernel overlayfs on the same data in the same run.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  kernelOverlayProblem, mount, requireKernel, scratchTmpfs, tempDir, type MountHandle,
} from '../harness/mounts.js';
import { run } from '../harness/proc.js';
import { compareTrees, snapshot } from '../harness/tree.js';

const LONG = process.env.STRATAFS_LONG === '1';
const DEEP_TREE = fileURLToPath(new URL('../harness/deep-tree.py', import.meta.url));
let kernelProblem: string | undefined;
let dir: string;
const handles: MountHandle[] = [];
const tmpfses: { dispose(): void }[] = [];

beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  dir = await tempDir('depth-scale');
});

afterAll(async () => {
  for (const h of handles.splice(0).reverse()) await h.unmount();
  for (const t of tmpfses.splice(0).reverse()) t.dispose();
  // Not fs.rm: it gives up on a tree deeper than PATH_MAX that a failed test left.
  await py(['rm', dir]);
});

async function py(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run('python3', [DEEP_TREE, ...args], { timeoutMs });
  if (r.code !== 0) throw new Error(`deep-tree.py ${args[0]} failed (${r.code}): ${r.stderr.toString()}`);
  return r.stdout.toString('latin1');
}

async function mounted(h: Promise<MountHandle>): Promise<MountHandle> {
  const m = await h;
  handles.push(m);
  return m;
}

async function unmount(h: MountHandle): Promise<void> {
  handles.splice(handles.indexOf(h), 1);
  await h.unmount();
}

describe('a tree deeper than PATH_MAX below the layer roots', () => {
  // 40 levels of 200-byte names: the bottom is 8 KiB below the root (PATH_MAX is 4 KiB).
  const depth = LONG ? 400 : 40;

  it(`${depth} levels of 200-byte names (${depth * 201} bytes): read, stat, create, rename, link, unlink at the bottom, as the kernel`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const out: Record<string, { ops: string; dump: string; upper: string }> = {};
    for (const impl of ['stratafs', 'kernel'] as const) {
      const d = join(dir, `deep-${impl}`);
      for (const s of ['lower', 'upper', 'work', 'mnt']) await fsp.mkdir(join(d, s), { recursive: true });
      await py(['build', join(d, 'lower'), String(depth), 'bottom', 'lower data\n']);
      // Half the chain also in the upper: the bottom directory is merged from both layers.
      await py(['build', join(d, 'upper'), String(depth), 'upfile', 'upper data\n']);
      const h = await mounted(mount(impl, { lowers: [join(d, 'lower')], upper: join(d, 'upper'), work: join(d, 'work') }, join(d, 'mnt')));
      const ops = await py(['ops', join(d, 'mnt'), String(depth)]);
      const dump = await py(['dump', join(d, 'mnt')]);
      await unmount(h);
      out[impl] = { ops, dump, upper: await py(['dump', join(d, 'upper')]) };
    }
    const s = out.stratafs!;
    const k = out.kernel!;
    expect(s.ops).toContain("read lower 'lower data\\n'");
    expect(s.ops).toContain('list sub sym upfile');
    expect(s.ops).toBe(k.ops);
    expect(s.dump).toBe(k.dump);
    // The kernel, reading the upper stratafs wrote, sees what stratafs showed.
    const again = join(dir, 'deep-stratafs');
    await fsp.mkdir(join(again, 'kmnt'));
    const h = await mounted(mount('kernel', { lowers: [join(again, 'lower')], upper: join(again, 'upper'), work: join(again, 'work') }, join(again, 'kmnt')));
    expect(await py(['dump', join(again, 'kmnt')])).toBe(s.dump);
    await unmount(h);
    // rm -r and Node's fs.rm give up at PATH_MAX: the scratch goes one directory fd at a time.
    for (const impl of ['stratafs', 'kernel']) await py(['rm', join(dir, `deep-${impl}`)]);
  }, LONG ? 600_000 : 120_000);
});

describe('500 real layers', () => {
  const layers = 500;

  it('mounted from short relative names, every layer read, the merged tree equal to the kernel\'s', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const d = join(dir, 'many');
    await fsp.mkdir(join(d, 'L'), { recursive: true });
    // Layer i: its own file, a name every layer has (the top one wins), a merged directory
    // with a file per layer, a whiteout of layer i+1's own file in every tenth layer, and an
    // opaque directory in layer 250.
    await run('sh', ['-c', `cd '${join(d, 'L')}' && for i in $(seq 1 ${layers}); do mkdir -p $i/d $i/o; echo "layer $i" > $i/f$i; echo "top $i" > $i/shared; echo $i > $i/d/x$i; echo $i > $i/o/y$i; done`], { timeoutMs: 120_000 });
    for (let i = 10; i < layers; i += 10) execFileSync('mknod', [join(d, 'L', String(i), `f${i + 1}`), 'c', '0', '0']);
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(d, 'L', '250', 'o')]);
    const lowers = Array.from({ length: layers }, (_, i) => String(i + 1));
    const trees = [];
    const ms: Record<string, number> = {};
    for (const impl of ['stratafs', 'kernel'] as const) {
      const mnt = join(d, `mnt-${impl}`);
      await fsp.mkdir(mnt);
      const t0 = process.hrtime.bigint();
      const h = await mounted(mount(impl, { lowers }, mnt, { cwd: join(d, 'L'), timeoutMs: 60_000 }));
      ms[impl] = Number(process.hrtime.bigint() - t0) / 1e6;
      trees.push(await snapshot(mnt, { timeoutMs: 120_000 }));
      await unmount(h);
    }
    console.log(`500 layers: mount took ${ms.stratafs!.toFixed(0)} ms (stratafs) and ${ms.kernel!.toFixed(0)} ms (kernel), the harness's mount wait included`);
    const [s, k] = trees;
    // Every layer contributed: its own file (or the whiteout above hid it), its file in d.
    expect([...s!.keys()].filter((p) => /^f\d+$/.test(p))).toHaveLength(layers - 49);
    expect([...s!.keys()].filter((p) => p.startsWith('d/'))).toHaveLength(layers);
    expect([...s!.keys()].filter((p) => p.startsWith('o/'))).toHaveLength(250);
    expect(compareTrees(s!, k!, { mtimeCutoffNs: 0n })).toEqual([]);
  }, 300_000);
});

describe('64-bit inode numbers: a lower that is a kernel overlay with xino=on over two tmpfs', () => {
  it('st_ino exact above 2^63, equal to the kernel\'s, and files whose numbers differ in low bits stay apart', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const d = join(dir, 'xino');
    const a = scratchTmpfs('xino-a', 8);
    tmpfses.push(a);
    const b = scratchTmpfs('xino-b', 8);
    tmpfses.push(b);
    for (const s of ['inner', 'smnt', 'kmnt', 'rwmnt', 'upper', 'work']) await fsp.mkdir(join(d, s), { recursive: true });
    // Two hard-linked pairs side by side: their numbers differ by one, far above 2^53.
    await run('sh', ['-c', `cd '${a.dir}' && echo one > f1 && ln f1 f1b && echo two-two > f2 && ln f2 f2b && mkdir dir && echo a > dir/a && echo e > dir/e`]);
    await run('sh', ['-c', `cd '${b.dir}' && echo b > g && mkdir dir && echo c > dir/c`]);
    const inner = await mounted(mount('kernel', { lowers: [a.dir, b.dir] }, join(d, 'inner'), { extra: ['xino=on'] }));
    // Node's BigIntStats holds st_ino signed (BigInt64Array): 2^63 + 2 reads as -(2^63 - 2).
    const ino = async (p: string): Promise<bigint> => BigInt.asUintN(64, (await fsp.lstat(p, { bigint: true })).ino);
    const inos = await Promise.all(['f1', 'f2', 'g', 'dir/a'].map((p) => ino(join(d, 'inner', p))));
    // What the issue says the kernel gives: numbers with the layer in the top bits, some above 2^63.
    expect(inos.every((i) => i > 2n ** 62n)).toBe(true);
    expect(inos.some((i) => i > 2n ** 63n)).toBe(true);
    expect(Number(inos[0]!) === Number(inos[1]!)).toBe(true); // as doubles, f1 and f2 are one number

    // A single lower: stratafs reports its numbers unchanged, as the kernel does for layers on
    // one filesystem. The kernel mounts no single lower without an upper, and refuses a second
    // lower inside the first (ELOOP): its second lower is an empty directory elsewhere, which
    // makes two filesystems, so only its tree (types, data, link counts, which names are one
    // file) is compared, and the numbers with the lower's own.
    await fsp.mkdir(join(d, 'empty'));
    const s = await mounted(mount('stratafs', { lowers: [join(d, 'inner')] }, join(d, 'smnt')));
    const k = await mounted(mount('kernel', { lowers: [join(d, 'inner'), join(d, 'empty')] }, join(d, 'kmnt')));
    const read = async (m: string): Promise<string[]> => {
      const r = await run('sh', ['-c', `cd '${m}' && cat f1 && cat f2 && cat f1b && cat f1 && cat f2b`]);
      return r.stdout.toString().trim().split('\n');
    };
    // Reads through one name after the other's lookup: a shared node would answer f1 with f2's data.
    expect(await read(join(d, 'smnt'))).toEqual(['one', 'two-two', 'one', 'one', 'two-two']);
    expect(await read(join(d, 'kmnt'))).toEqual(['one', 'two-two', 'one', 'one', 'two-two']);
    const st = await snapshot(join(d, 'smnt'));
    const kt = await snapshot(join(d, 'kmnt'));
    expect(compareTrees(st, kt, { mtimeCutoffNs: 0n })).toEqual([]);
    const it = await snapshot(join(d, 'inner'));
    for (const [p, n] of st) expect([p, n.ino]).toEqual([p, it.get(p)!.ino]);
    expect(await ino(join(d, 'smnt', 'g'))).toBe(inos[2]);
    // readdir's d_ino too.
    const lsI = async (m: string): Promise<string> => (await run('ls', ['-ai', join(m, 'dir')])).stdout.toString();
    expect(await lsI(join(d, 'smnt'))).toBe(await lsI(join(d, 'inner')));
    await unmount(k);
    await unmount(s);

    // With an upper on another filesystem the numbers come from stratafs's own pool: still
    // one per object, shared by hard links only, and kept across a copy-up.
    const rw = await mounted(mount('stratafs', { lowers: [join(d, 'inner')], upper: join(d, 'upper'), work: join(d, 'work') }, join(d, 'rwmnt')));
    const rt = await snapshot(join(d, 'rwmnt'));
    const byIno = new Map<bigint, string[]>();
    for (const [p, n] of rt) if (n.type !== 'dir') byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), p]);
    expect([...byIno.values()].map((ps) => ps.sort().join(' ')).sort()).toEqual(['dir/a', 'dir/c', 'dir/e', 'f1 f1b', 'f2 f2b', 'g']);
    const before = await ino(join(d, 'rwmnt', 'dir', 'e'));
    await fsp.appendFile(join(d, 'rwmnt', 'dir', 'e'), 'more\n');
    expect(await ino(join(d, 'rwmnt', 'dir', 'e'))).toBe(before);
    expect(await ino(join(d, 'rwmnt', 'dir', 'a'))).not.toBe(before);
    await unmount(rw);
    await unmount(inner);
  }, 120_000);

  it('file sizes and offsets above 2^53 (a sparse tmpfs file of 2^62 bytes): stat, read, write, truncate as the kernel', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const t = scratchTmpfs('bigsize', 8);
    tmpfses.push(t);
    const script = (root: string, m: string): string => `
import os
f = os.open('${root}/l/b', os.O_CREAT | os.O_WRONLY, 0o644)
os.pwrite(f, b'head', 0); os.pwrite(f, b'tail!', 2**62); os.close(f)
out = []
f = os.open('${m}/b', os.O_RDONLY)
out += [os.fstat(f).st_size, os.pread(f, 5, 2**62)]; os.close(f)
f = os.open('${m}/b', os.O_WRONLY)
os.pwrite(f, b'W', 2**62 + 4097); os.pwrite(f, b'V', 2**53 + 1); os.close(f)
f = os.open('${m}/b', os.O_RDONLY)
out += [os.fstat(f).st_size, os.pread(f, 4, 0), os.pread(f, 2, 2**62 + 4096), os.pread(f, 2, 2**53)]; os.close(f)
os.truncate('${m}/b', 2**62 + 3)
f = os.open('${m}/b', os.O_WRONLY); os.ftruncate(f, 2**60 + 7); os.close(f)
out.append(os.stat('${m}/b').st_size)
print(out)
`;
    const results: string[] = [];
    for (const impl of ['stratafs', 'kernel'] as const) {
      const root = join(t.dir, impl);
      for (const s of ['l', 'u', 'w', 'm']) await fsp.mkdir(join(root, s), { recursive: true });
      const h = await mounted(mount(impl, { lowers: [join(root, 'l')], upper: join(root, 'u'), work: join(root, 'w') }, join(root, 'm')));
      const r = await run('python3', ['-c', script(root, join(root, 'm'))]);
      await unmount(h);
      results.push(r.stdout.toString().trim() + r.stderr.toString().trim());
    }
    expect(results[0]).toBe(`[${2n ** 62n + 5n}, b'tail!', ${2n ** 62n + 4098n}, b'head', b'\\x00W', b'\\x00V', ${2n ** 60n + 7n}]`);
    expect(results[0]).toBe(results[1]);
  }, 60_000);
});
