/**
 * Image commands over a stack whose redirects sit below the top: a kernel
 * upper (renames of lower directories, redirect_dir=on) used as a lower layer
 * of a second kernel stack. `which`, `diff` and `commit` read the layers
 * directly; they must find what the mount shows, following the lower layer's
 * redirects as lookup does (kernel ovl_lookup, core/namei.ts). The kernel
 * mounts are the reference: the merged tree, the tree without the new upper
 * (what diff judges against) and the committed layer mounted on the lowers.
 */
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { diff } from '../../src/image/diff.js';
import { which } from '../../src/image/which.js';
import { commit } from '../../src/image/commit.js';
import { Store } from '../../src/image/store.js';
import { importLayer } from '../../src/image/import-layer.js';
import { kernelOverlayProblem, mount, requireKernel, tempDir, type Impl, type Layers, type MountHandle } from '../harness/mounts.js';
import { compareTrees, snapshot, type Tree } from '../harness/tree.js';

let kernelProblem: string | undefined;
let base: string;
let l1: string, u1: string, u2: string;
/** the kernel's merged view of u2 over u1 over l1, and of u1 over l1 alone */
let live: Tree, before: Tree;
const handles: MountHandle[] = [];

const bash = (cmd: string, cwd: string): string => execFileSync('bash', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString('latin1');

/** Mount, run `fn` on the mountpoint, unmount (also when fn throws). */
async function withMount<T>(impl: Impl, layers: Layers, fn: (mnt: string) => Promise<T> | T): Promise<T> {
  const mnt = await tempDir(`mnt-${impl}`);
  const h = await mount(impl, layers, mnt);
  handles.push(h);
  try {
    return await fn(mnt);
  } finally {
    await h.unmount();
    handles.splice(handles.indexOf(h), 1);
  }
}

const sameTree = (a: Tree, b: Tree): string[] => compareTrees(a, b, { mtimeCutoffNs: 0n }).map((d) => `${d.path} ${d.field}: ${d.a} vs ${d.b}`);

beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  if (kernelProblem) return;
  base = await tempDir('lower-redirect');
  [l1, u1, u2] = ['l1', 'u1', 'u2'].map((d) => join(base, d)) as [string, string, string];
  const [w1, w2] = ['w1', 'w2'].map((d) => join(base, d)) as [string, string];
  for (const d of [l1, u1, u2, w1, w2]) mkdirSync(d);
  bash('mkdir -p app/old/sub app/old2 && echo 1 > app/old/f1 && echo g > app/old/gone && echo 2 > app/old/sub/f2 && echo g > app/old2/g && echo k > keep', l1);
  // u1: a relative redirect (app/new -> old) and an absolute one (moved -> /app/old2)
  await withMount('kernel', { lowers: [l1], upper: u1, work: w1 }, (m) => bash('mv app/old app/new && mv app/old2 moved', m));
  expect(bash('getfattr --absolute-names -n trusted.overlay.redirect --only-values app/new; echo; getfattr --absolute-names -n trusted.overlay.redirect --only-values moved', u1))
    .toBe('old\n/app/old2');
  // u2 changes things that are only reachable through u1's redirects, and renames one of them again
  await withMount('kernel', { lowers: [u1, l1], upper: u2, work: w2 }, async (m) => {
    bash('echo x > app/new/added && echo more >> app/new/f1 && rm app/new/gone && mv app/new/sub app/new/sub2 && echo h > moved/h && mkdir moved/d', m);
    live = await snapshot(m);
  });
  before = await withMount('kernel', { lowers: [u1, l1] }, (m) => snapshot(m));
}, 120_000);

afterAll(async () => {
  for (const h of [...handles].reverse()) await h.unmount();
});

describe('a redirect in a lower layer', () => {
  test('the mount shows what the kernel shows', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const mine = await withMount('stratafs', { lowers: [u2, u1, l1] }, (m) => snapshot(m));
    expect(sameTree(mine, live)).toEqual([]);
    expect(live.has('app/new/sub2/f2')).toBe(true);
  });

  test('which finds every path the mount shows, in the layer the redirect leads to', (ctx) => {
    requireKernel(kernelProblem, ctx);
    for (const [p, n] of live) {
      const r = which(u2, [u1, l1], '/' + p);
      expect({ p, found: r.found, dir: r.type === 'directory' }).toEqual({ p, found: true, dir: n.type === 'dir' });
    }
    const f2 = which(u2, [u1, l1], '/app/new/sub2/f2');
    expect(f2.from).toMatchObject({ layer: 1, path: '/app/old/sub/f2' });
    const sub2 = which(u2, [u1, l1], '/app/new/sub2');
    expect(sub2.mergedFrom?.map((r) => [r.layer, r.path])).toEqual([['upper', '/app/new/sub2'], [1, '/app/old/sub']]);
    const g = which(u2, [u1, l1], '/moved/g');
    expect(g.from).toMatchObject({ layer: 1, path: '/app/old2/g' });
    for (const p of ['/app/new/gone', '/app/new/sub', '/app/old', '/app/new/sub2/nothing']) expect(which(u2, [u1, l1], p).found).toBe(false);
  });

  test('diff lists what differs between the kernel views with and without the upper', (ctx) => {
    requireKernel(kernelProblem, ctx);
    const changes = diff(u2, [u1, l1]).map((c) => `${c.kind} ${c.path}`);
    expect([...changes].sort()).toEqual([
      'A /app/new/added', 'A /app/new/sub2', 'A /app/new/sub2/f2', 'A /moved/d', 'A /moved/h',
      'C /app', 'C /app/new', 'C /app/new/f1', 'C /moved',
      'D /app/new/gone', 'D /app/new/sub',
    ]);
    // each one as the two kernel views have it, and every file whose content changed is named
    for (const c of changes) {
      const p = c.slice(3);
      const [inBefore, inLive] = [before.has(p), live.has(p)];
      expect({ c, inBefore, inLive }).toEqual({ c, inBefore: c[0] !== 'A', inLive: c[0] !== 'D' });
    }
    for (const [p, n] of live) if (before.get(p)?.hash !== n.hash) expect(changes).toContain(`${before.has(p) ? 'C' : 'A'} /${p}`);
    // a deletion is named at its top: the first missing path below a directory that is still there
    const parentOf = (p: string): string => (p.includes('/') ? p.replace(/\/[^/]*$/, '') : '');
    for (const p of before.keys()) if (!live.has(p) && live.has(parentOf(p))) expect(changes).toContain(`D /${p}`);
  });

  test('commit: the layer on the lowers gives the live tree, to the kernel and to the mount', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const out = join(base, 'layer.tar');
    const result = await commit({ upper: u2, lowers: [u1, l1], output: out });
    expect(result.redirects).toBe(1);
    const imp = await importLayer(Store.open(join(base, 'store')), out);
    // stratafs reads the OCI markers of the snapshot as they are
    const mine = await withMount('stratafs', { lowers: [imp.snapshot, u1, l1] }, (m) => snapshot(m));
    expect(sameTree(mine, live)).toEqual([]);
    // the kernel does not: convert a copy to its form
    const conv = join(base, 'converted');
    bash(`cp -a ${imp.snapshot} ${conv}`, base);
    bash(`find . -name '.wh..wh..opq' -print0 | while IFS= read -r -d '' f; do setfattr -n trusted.overlay.opaque -v y "$(dirname "$f")"; rm "$f"; done`, conv);
    bash(`find . -name '.wh.*' -print0 | while IFS= read -r -d '' f; do d=$(dirname "$f"); b=$(basename "$f"); rm "$f"; mknod "$d/\${b#.wh.}" c 0 0; done`, conv);
    const kernel = await withMount('kernel', { lowers: [conv, u1, l1] }, (m) => snapshot(m));
    expect(sameTree(kernel, live)).toEqual([]);
  });
});
