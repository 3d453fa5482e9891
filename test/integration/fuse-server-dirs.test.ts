/**
 * Directory listings on stratafs's own FUSE server (-o fuse_server=kernel;
 * src/fuse/kernel/readdir.ts, the adapter's opendir/readdir/readdirplus): each feature
 * on and switched off with fuse_off= on this kernel, counted with `stratafs stats`.
 *
 * - cache_dir: a listing the core still has is answered from the kernel's page cache
 *   (no READDIR); one that changed (through the mount, or in the layers where the core
 *   sees it) is asked again; `..` follows a renamed directory.
 * - readdirplus(_auto): `ls -l` costs no LOOKUP per entry; the node table counts a lookup
 *   only for entries the kernel received with a node, and returns to its baseline after
 *   `rm -rf` and after the kernel drops its dentries (drop_caches).
 * - a directory read as a stream while it changes (telldir/seekdir/rewinddir) gives what
 *   kernel overlayfs gives.
 * - notifications that take the parent's lock (INVAL_ENTRY) go out from the server's
 *   helper thread: a READDIR that finds names changed behind the mount drops their
 *   dentries while its caller still holds the directory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll, type Layers } from '../harness/mounts.js';
import { run, withTimeout } from '../harness/proc.js';
import { waitFor, serverStats, opCount, type ServerStats } from '../harness/cli-mount.js';

// the features under test need 7.28 (cache_dir): CI's fuse_minor=19 pass must not cap them
const SERVER = 'fuse_minor=45';
const DIRSTREAM = fileURLToPath(new URL('../harness/dirstream.py', import.meta.url));


/** requests of each kind between two snapshots */
const delta = (a: ServerStats, b: ServerStats, op: string): number => opCount(b, op) - opCount(a, op);

async function layers(prefix: string, fill: (lower: string) => Promise<void>): Promise<{ l: Layers; mnt: string; upper: string }> {
  const t = await tempDir(prefix);
  for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
  await fill(join(t, 'l'));
  return { l: { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, mnt: join(t, 'mnt'), upper: join(t, 'u') };
}

async function files(dir: string, n: number, prefix = 'f'): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => writeFile(join(dir, `${prefix}${i + k}`), 'x')));
  }
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  expect(r.code, r.stderr.toString()).toBe(0);
  return r.stdout.toString();
}

async function dropCaches(): Promise<void> {
  await writeFile('/proc/sys/vm/drop_caches', '2');
}

/**
 * Pins every entry of `dir` (an O_PATH fd each: no OPEN request, the dentry and inode stay)
 * until release(), so that node counts do not depend on what the kernel drops meanwhile.
 */
async function pin(dir: string): Promise<{ count: number; release(): Promise<void> }> {
  const py = 'import os,sys\nd=sys.argv[1]\nfds=[os.open(os.path.join(d,n),os.O_PATH|os.O_NOFOLLOW) for n in os.listdir(d)]\nprint(len(fds),flush=True)\nsys.stdin.read()\n';
  const p = spawn('python3', ['-c', py, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((res) => p.on('exit', () => res()));
  const count = await withTimeout(new Promise<number>((res, rej) => {
    p.stdout.once('data', (b: Buffer) => res(Number(b.toString().trim())));
    p.once('exit', (code) => rej(new Error(`pin exited ${code}`)));
  }), 30_000, 'pinning the entries');
  return { count, release: async () => { p.stdin.end(); await exited; } };
}

afterEach(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe('cache_dir: listings kept in the kernel while the core has the same one', () => {
  for (const on of [true, false]) {
    it(on ? 'on: a second ls is answered by the kernel; a change through the mount is listed' : 'off (fuse_off=cache_dir): every ls asks', async () => {
      const { l, mnt } = await layers(`kdirs-cache-${on}`, (lo) => files(join(lo, 'd'), 300));
      const h = await mount('stratafs', l, mnt, { extra: [SERVER, ...(on ? [] : ['fuse_off=cache_dir'])] });
      const D = join(mnt, 'd');
      const s0 = await serverStats(mnt);
      expect(s0.fuse!.features.includes('cache_dir')).toBe(on);
      expect((await sh('ls', ['-f', D])).split('\n').filter(Boolean).length).toBe(302);
      const s1 = await serverStats(mnt);
      const asked = (a: ServerStats, b: ServerStats): number => delta(a, b, 'readdir') + delta(a, b, 'readdirplus');
      expect(asked(s0, s1)).toBeGreaterThan(0);
      await sh('ls', ['-f', D]);
      const s2 = await serverStats(mnt);
      expect(delta(s1, s2, 'opendir')).toBe(1);
      expect(asked(s1, s2)).toBe(on ? 0 : asked(s0, s1));
      // through the mount: created, removed, renamed
      await writeFile(join(D, 'new'), '');
      await run('rm', [join(D, 'f0')]);
      await rename(join(D, 'f1'), join(D, 'g1'));
      const names = (await readdir(D)).sort();
      expect(names.length).toBe(300);
      expect(names).toContain('new');
      expect(names).toContain('g1');
      expect(names).not.toContain('f0');
      expect(names).not.toContain('f1');
      const s3 = await serverStats(mnt);
      expect(asked(s2, s3)).toBeGreaterThan(0);
      // unchanged again: kept again
      expect((await readdir(D)).sort()).toEqual(names);
      expect(asked(s3, await serverStats(mnt))).toBe(on ? 0 : asked(s2, s3));
      await h.unmount();
    }, 60_000);
  }

  it('`..` follows a renamed directory (the kernel does not count the move as a change of its listing)', async (ctx) => {
    const kp = await kernelOverlayProblem();
    requireKernel(kp, ctx);
    const out: Record<string, string> = {};
    for (const impl of ['kernel', 'stratafs'] as const) {
      const { l, mnt } = await layers(`kdirs-dotdot-${impl}`, async (lo) => { await mkdir(join(lo, 'a', 'x'), { recursive: true }); await mkdir(join(lo, 'b')); });
      const h = await mount(impl, l, mnt, { extra: impl === 'stratafs' ? [SERVER] : [] });
      await mkdir(join(mnt, 'c', 'y'), { recursive: true });
      const before = await sh('ls', ['-ai', join(mnt, 'c', 'y')]);
      await sh('ls', ['-ai', join(mnt, 'c', 'y')]);
      await rename(join(mnt, 'c', 'y'), join(mnt, 'b', 'y'));
      const after = await sh('ls', ['-ai', join(mnt, 'b', 'y')]);
      const dotdot = (s: string): string => s.split('\n').find((x) => x.trim().endsWith(' ..'))!.trim().split(' ')[0]!;
      expect(dotdot(after)).toBe(String((await stat(join(mnt, 'b'))).ino));
      expect(dotdot(before)).toBe(String((await stat(join(mnt, 'c'))).ino));
      out[impl] = 'ok';
      await h.unmount();
    }
    expect(out).toEqual({ kernel: 'ok', stratafs: 'ok' });
  }, 60_000);

  it('a change in the layers the core sees (a listing above the core\'s bound is read afresh) is listed, and a READDIR drops the dentries of names it finds changed behind the mount', async () => {
    // lookup_cache=1: listings above 64 KiB are not kept by the core (1000 entries: ~110 KiB)
    const { l, mnt, upper } = await layers('kdirs-behind', (lo) => files(join(lo, 'd'), 1000));
    const h = await mount('stratafs', l, mnt, { extra: [SERVER, 'lookup_cache=1'] });
    const D = join(mnt, 'd');
    expect((await readdir(D)).length).toBe(1000);
    // a negative dentry, kept for negative_timeout (a day)
    await expect(stat(join(D, 'late'))).rejects.toMatchObject({ code: 'ENOENT' });
    await mkdir(join(upper, 'd'), { recursive: true });
    await writeFile(join(upper, 'd', 'late'), 'behind\n');
    // The READDIR that lists it drops the negative dentry (INVAL_ENTRY from the helper
    // thread: this READDIR's caller holds the directory, a write from the JS thread would
    // wait for it forever). Bounded: a hang fails here.
    const names = await withTimeout(readdir(D), 10_000, 'readdir after a change behind the mount');
    expect(names).toContain('late');
    // the notification is written once the READDIR's caller let go of the directory
    expect(await waitFor(async () => (await stat(join(D, 'late')).then(() => true, () => false)), 5000, 50)).toBe(true);
    await h.unmount();
  }, 60_000);
});

describe('readdirplus: ls -l without a LOOKUP per entry; lookup counts stay exact', () => {
  const N = 1500;
  for (const mode of ['auto', 'always', 'off'] as const) {
    const off = mode === 'auto' ? [] : mode === 'always' ? ['fuse_off=readdirplus_auto'] : ['fuse_off=readdirplus'];
    it(`${mode}: ls -l of ${N} entries cold, warm; nodes back to the baseline after drop_caches and after rm -rf`, async () => {
      const { l, mnt } = await layers(`kdirs-plus-${mode}`, (lo) => files(join(lo, 'd'), N));
      const h = await mount('stratafs', l, mnt, { extra: [SERVER, ...off] });
      const D = join(mnt, 'd');
      const s0 = await serverStats(mnt);
      expect(s0.fuse!.features.includes('readdirplus')).toBe(mode !== 'off');
      expect(s0.fuse!.features.includes('readdirplus_auto')).toBe(mode === 'auto');
      const base = s0.nodes!;
      expect((await sh('ls', ['-l', D])).split('\n').filter((x) => x.startsWith('-')).length).toBe(N);
      const s1 = await serverStats(mnt);
      if (mode === 'off') {
        expect(delta(s0, s1, 'readdirplus')).toBe(0);
        expect(delta(s0, s1, 'lookup')).toBeGreaterThanOrEqual(N);
      } else {
        expect(delta(s0, s1, 'readdirplus')).toBeGreaterThan(0);
        // auto: the kernel asks READDIRPLUS for the start and, once ls stats, plain READDIR may
        // have been used for entries it then looks up; always: every entry came with its node
        if (mode === 'always') expect(delta(s0, s1, 'lookup')).toBeLessThanOrEqual(1);
        else expect(delta(s0, s1, 'lookup')).toBeLessThan(N);
      }
      // one node per entry and d, with every entry pinned: each was handed out and counted
      // once (READDIRPLUS or LOOKUP), none for an entry the kernel did not get
      const held = await pin(D);
      expect(held.count).toBe(N);
      const s2 = await serverStats(mnt);
      expect(s2.nodes).toBe(base + 1 + N);
      await sh('ls', ['-l', D]);
      const s3 = await serverStats(mnt);
      expect(delta(s2, s3, 'lookup')).toBe(0);
      expect(delta(s2, s3, 'readdirplus') + delta(s2, s3, 'readdir')).toBe(0);
      expect(s3.nodes).toBe(base + 1 + N);
      await held.release();
      // the kernel forgets what it dropped: every count given back, the table at its baseline
      expect(await waitFor(async () => { await dropCaches(); return (await serverStats(mnt)).nodes === base; }, 8000, 200)).toBe(true);
      // and again, then rm -rf through the mount
      await sh('ls', ['-l', D]);
      await sh('rm', ['-rf', D]);
      expect(await waitFor(async () => { await dropCaches(); return (await serverStats(mnt)).nodes === base; }, 8000, 200)).toBe(true);
      await h.unmount();
    }, 120_000);
  }

  it('auto: a plain listing (ls -f, find -type) takes READDIRPLUS only for its start', async () => {
    const { l, mnt } = await layers('kdirs-plus-plain', (lo) => files(join(lo, 'd'), N));
    for (const off of [[], ['fuse_off=readdirplus_auto']]) {
      const h = await mount('stratafs', l, mnt, { extra: [SERVER, ...off] });
      const s0 = await serverStats(mnt);
      expect((await sh('ls', ['-f', join(mnt, 'd')])).split('\n').filter(Boolean).length).toBe(N + 2);
      const s1 = await serverStats(mnt);
      if (off.length === 0) {
        expect(delta(s0, s1, 'readdirplus')).toBe(1);
        expect(delta(s0, s1, 'readdir')).toBeGreaterThan(0);
      } else {
        expect(delta(s0, s1, 'readdir')).toBe(0);
      }
      await h.unmount();
    }
  }, 60_000);

  it('parallel_dirops on and off: four walks at once see the whole tree', async () => {
    const { l, mnt } = await layers('kdirs-par', async (lo) => {
      for (let d = 0; d < 8; d++) await files(join(lo, `d${d}`), 100);
    });
    for (const off of [[], ['fuse_off=parallel_dirops']]) {
      const h = await mount('stratafs', l, mnt, { extra: [SERVER, ...off] });
      expect((await serverStats(mnt)).fuse!.features.includes('parallel_dirops')).toBe(off.length === 0);
      const outs = await Promise.all(Array.from({ length: 4 }, () => sh('find', [mnt, '-printf', '%y %s %P\n'])));
      for (const o of outs) expect(o.split('\n').filter(Boolean).sort()).toEqual(outs[0]!.split('\n').filter(Boolean).sort());
      expect(outs[0]!.split('\n').filter((x) => x.startsWith('f ')).length).toBe(800);
      await h.unmount();
    }
  }, 60_000);
});

describe('a directory read as a stream while it changes, as on kernel overlayfs', () => {
  // a lower directory (merged once changed): kernel overlayfs reads it from its own snapshot until rewinddir
  for (const off of [[], ['fuse_off=cache_dir'], ['fuse_off=readdirplus']]) {
    it(`telldir/seekdir/rewinddir over several READDIRs while names are added and removed${off.length ? ` (${off[0]})` : ''}`, async (ctx) => {
      const kp = await kernelOverlayProblem();
      requireKernel(kp, ctx);
      const got: Record<string, unknown> = {};
      for (const impl of ['kernel', 'stratafs'] as const) {
        const { l, mnt } = await layers(`kdirs-stream-${impl}`, (lo) => files(join(lo, 'd'), 2000, 'entry-with-a-longer-name-'));
        const h = await mount(impl, l, mnt, { extra: impl === 'stratafs' ? [SERVER, ...off] : [] });
        // a first listing, so that stratafs's is cached in the kernel where it can be
        await readdir(join(mnt, 'd'));
        const r = await run('python3', [DIRSTREAM, join(mnt, 'd'), '700', '20', '20'], { timeoutMs: 60_000 });
        expect(r.code, r.stderr.toString()).toBe(0);
        const o = JSON.parse(r.stdout.toString()) as Record<string, string[]>;
        const names = (xs: string[]): string[] => xs.map((x) => x.split(':')[0]!).sort();
        got[impl] = { head: names(o.head!), tail: names(o.tail!), again: names(o.again!), whole: names(o.whole!), removed: o.removed };
        await h.unmount();
      }
      expect(got.stratafs).toEqual(got.kernel);
    }, 120_000);
  }
});
