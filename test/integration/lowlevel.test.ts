/**
 * The low-level FUSE server (src/fuse/kernel/server.ts, src/fuse/lowlevel/adapter.ts,
 * src/fuse/lowlevel/nodes.ts) on real mounts made by the CLI in a child process:
 * the kernel's FORGETs reach the node table, the kernel's caches really spare
 * requests, the mount's life (outside umount, busy umount), files unlinked
 * while open, hard links across dropped dentries (compared with kernel
 * overlayfs), and the high-level engine kept behind -o fuse_api=highlevel.
 *
 * `echo 2 > /proc/sys/vm/drop_caches` is how these tests make the kernel drop
 * dentries and evict inodes (FORGET), as memory pressure would.
 */
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { spawn } from 'node:child_process';
import { chmod, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kernelOverlayProblem, kernelSkipReason, mount, tempDir, unmountAll, type Impl, type Layers, type MountHandle } from '../harness/mounts.js';
import { run, withTimeout } from '../harness/proc.js';
import { cli, daemonStats, isMounted, pidAlive, waitFor, serverStats, opCount, type ServerStats } from '../harness/cli-mount.js';



async function dropCaches(): Promise<void> {
  await writeFile('/proc/sys/vm/drop_caches', '2');
}

/** Fresh lower/upper/work/mnt under one temp dir; `fill` writes the lower layer. */
async function layers(prefix: string, fill: (lower: string) => Promise<void> = async () => undefined, upper?: (u: string) => Promise<void>): Promise<{ l: Layers; mnt: string }> {
  const t = await tempDir(prefix);
  for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
  await fill(join(t, 'l'));
  if (upper) await upper(join(t, 'u'));
  return { l: { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, mnt: join(t, 'mnt') };
}

const T = <X>(p: Promise<X>, what: string): Promise<X> => withTimeout(p, 10_000, what);

afterEach(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe('node table and kernel caches', () => {
  it('the kernel\'s FORGETs reach the node table: thousands of nodes after a walk, back near 1 after drop_caches', async () => {
    const { l, mnt } = await layers('ll-forget', async (lower) => {
      for (let d = 0; d < 30; d++) {
        await mkdir(join(lower, `d${d}`));
        await Promise.all(Array.from({ length: 100 }, (_, i) => writeFile(join(lower, `d${d}`, `f${i}`), '')));
      }
    });
    const h = await mount('stratafs', l, mnt);
    const before = await serverStats(mnt);
    expect(before.nodes).toBeLessThan(5);
    // ls -lR stats every entry: one lookup each, each handing the kernel a node
    const r = await run('ls', ['-lR', mnt], { timeoutMs: 30_000 });
    expect(r.code, r.stderr.toString()).toBe(0);
    const walked = await serverStats(mnt);
    expect(walked.nodes).toBeGreaterThanOrEqual(3030);
    expect(walked.nodes).toBeLessThan(3100);
    let last = walked.nodes!;
    const fell = await waitFor(async () => {
      await dropCaches();
      last = (await serverStats(mnt)).nodes!;
      return last <= 2;
    }, 8000, 200);
    expect(fell, `nodes still ${last} after drop_caches`).toBe(true);
    // the table is coherent afterwards: the same walk works and hands out nodes again
    const again = await run('ls', ['-lR', mnt], { timeoutMs: 30_000 });
    expect(again.stdout.toString().split('\n').filter((x) => x.startsWith('-')).length).toBe(3000);
    expect((await serverStats(mnt)).nodes).toBeGreaterThanOrEqual(3030);
    await h.unmount();
  });

  it('kernel caching works: a second stat pass over the same files sends (almost) no lookup or getattr', async () => {
    const N = 300;
    const { l, mnt } = await layers('ll-cache', async (lower) => {
      await Promise.all(Array.from({ length: N }, (_, i) => writeFile(join(lower, `f${i}`), 'x'.repeat(i))));
    });
    await mount('stratafs', l, mnt);
    const files = Array.from({ length: N }, (_, i) => join(mnt, `f${i}`));
    const pass = async (): Promise<string> => {
      const r = await run('stat', ['-c', '%i %s %a', ...files], { timeoutMs: 20_000 });
      expect(r.code, r.stderr.toString()).toBe(0);
      return r.stdout.toString();
    };
    const s0 = await serverStats(mnt);
    const first = await pass();
    const s1 = await serverStats(mnt);
    const second = await pass();
    const s2 = await serverStats(mnt);
    expect(second).toBe(first);
    // the first pass had to ask: one lookup per file
    expect(opCount(s1, 'lookup') - opCount(s0, 'lookup')).toBeGreaterThanOrEqual(N);
    // the second is answered by the kernel's dentry and attribute caches
    const asked = opCount(s2, 'lookup') - opCount(s1, 'lookup') + opCount(s2, 'getattr') - opCount(s1, 'getattr');
    expect(asked).toBeLessThanOrEqual(3);
    // negative entries are cached too
    const missing = Array.from({ length: 50 }, (_, i) => join(mnt, `none${i}`));
    await run('stat', missing, { timeoutMs: 10_000 });
    const s3 = await serverStats(mnt);
    await run('stat', missing, { timeoutMs: 10_000 });
    const s4 = await serverStats(mnt);
    expect(opCount(s4, 'lookup') - opCount(s3, 'lookup')).toBeLessThanOrEqual(3);
  });
});

describe('the life of a low-level mount', () => {
  it('an outside umount ends the daemon; stratafs umount unmounts cleanly', async () => {
    const { l, mnt } = await layers('ll-umount', async (lower) => { await writeFile(join(lower, 'f'), 'lower\n'); });
    const h1 = await mount('stratafs', l, mnt);
    const [pid1] = h1.pids;
    expect(pid1).toBeDefined();
    const r = await run('umount', [mnt], { timeoutMs: 10_000 });
    expect(r.code, r.stderr.toString()).toBe(0);
    expect(await waitFor(async () => !(await pidAlive(pid1!)), 10_000)).toBe(true);
    expect(await isMounted(mnt)).toBe(false);
    await h1.unmount();

    const h2 = await mount('stratafs', l, mnt);
    const [pid2] = h2.pids;
    expect(await T(readFile(join(mnt, 'f'), 'utf8'), 'read')).toBe('lower\n');
    const u = await cli(['umount', mnt], { timeoutMs: 15_000 });
    expect(u.code, u.stderr).toBe(0);
    expect(await isMounted(mnt)).toBe(false);
    expect(await pidAlive(pid2!)).toBe(false);
    await h2.unmount();
  });

  it('unmounting while a file is open and being read fails with EBUSY and the mount keeps serving', async () => {
    const { l, mnt } = await layers('ll-busy', async (lower) => { await writeFile(join(lower, 'big'), Buffer.alloc(4 << 20, 7)); });
    // the WRITE counted below must reach the daemon: no passthrough, no writeback cache
    const h = await mount('stratafs', l, mnt, { extra: ['fuse_off=passthrough:writeback_cache'] });
    const [pid] = h.pids;
    // a reader in its own process: the file stays open and read while we try to unmount
    const reader = spawn('sh', ['-c', 'exec 3<"$1"; while :; do dd bs=4096 count=1 <&3 >/dev/null 2>&1 || exit 3; sleep 0.02; done', 'sh', join(mnt, 'big')], { stdio: 'ignore' });
    try {
      const readerGone = new Promise<number | string>((res) => reader.on('exit', (c, s) => res(c ?? s ?? -1)));
      // the unmount must come after the reader holds the file open: wait for that, not for a while
      // (the shell's `exec 3<` opens it in the shell itself; 30 s only guards a hang)
      const holds = await waitFor(async () => (await readlink(`/proc/${reader.pid}/fd/3`).catch(() => '')) === join(mnt, 'big'), 30_000);
      expect(holds).toBe(true);
      const r = await run('umount', [mnt], { timeoutMs: 10_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr.toString()).toMatch(/busy/i);
      const u = await cli(['umount', mnt], { timeoutMs: 15_000 });
      expect(u.code).toBe(1);
      expect(u.stderr).toMatch(/busy/);
      // still serving: the reader reads on, others read, the daemon answers stats
      expect(await isMounted(mnt)).toBe(true);
      expect(await pidAlive(pid!)).toBe(true);
      expect((await T(readFile(join(mnt, 'big')), 'read')).length).toBe(4 << 20);
      await T(writeFile(join(mnt, 'after-busy'), 'still here\n'), 'write');
      expect(await T(readFile(join(mnt, 'after-busy'), 'utf8'), 'read back')).toBe('still here\n');
      // the daemon counted the new file's CREATE (its data goes to the upper file by passthrough as root, no WRITE)
      expect(opCount(await serverStats(mnt), 'create')).toBeGreaterThanOrEqual(1);
      expect(reader.exitCode).toBeNull();
      reader.kill('SIGKILL');
      await T(readerGone, 'reader exit');
      const ok = await cli(['umount', mnt], { timeoutMs: 15_000 });
      expect(ok.code, ok.stderr).toBe(0);
      expect(await isMounted(mnt)).toBe(false);
      expect(await pidAlive(pid!)).toBe(false);
    } finally {
      if (reader.exitCode === null && reader.signalCode === null) reader.kill('SIGKILL');
      await h.unmount();
    }
  });
});

interface Both<R> {
  stratafs: R;
  /** absent only when the run opted out of kernel comparisons (STRATAFS_SKIP_KERNEL_DIFF=1): see kernelSkipped */
  kernel?: R;
  kernelSkipped?: string;
}

/**
 * Runs `scenario` on kernel overlayfs and on stratafs over two copies of the same layers.
 * Without kernel overlayfs it fails, unless the run opted out: then only stratafs runs
 * and sameAsKernel reports the test as skipped, after its stratafs checks.
 */
async function both<R>(prefix: string, fill: (lower: string) => Promise<void>, scenario: (mnt: string, impl: Impl) => Promise<R>, upper?: (u: string) => Promise<void>): Promise<Both<R>> {
  const kernelSkipped = kernelSkipReason(await kernelOverlayProblem());
  const impls: Impl[] = kernelSkipped === undefined ? ['kernel', 'stratafs'] : ['stratafs'];
  const out: Partial<Record<Impl, R>> = {};
  for (const impl of impls) {
    const { l, mnt } = await layers(`${prefix}-${impl}`, fill, upper);
    const h: MountHandle = await mount(impl, l, mnt);
    try {
      out[impl] = await scenario(mnt, impl);
    } finally {
      await h.unmount();
    }
  }
  return { stratafs: out.stratafs as R, ...(kernelSkipped === undefined ? { kernel: out.kernel as R } : { kernelSkipped }) };
}

/** The kernel's result must equal stratafs's; a comparison that did not run is a skip, never a pass. */
function sameAsKernel<R>(res: Both<R>, ctx: TestContext): void {
  if (res.kernelSkipped !== undefined) ctx.skip(`stratafs's results were checked, the comparison with kernel overlayfs was not: ${res.kernelSkipped}`);
  expect(res.stratafs).toEqual(res.kernel);
}

/** Waits until the stratafs daemon has answered `n` more RELEASEs than in `s` (close() returns before the RELEASE is handled). */
async function released(mnt: string, s: ServerStats, n = 1): Promise<void> {
  expect(await waitFor(async () => opCount(await serverStats(mnt), 'release') >= opCount(s, 'release') + n, 5000, 50)).toBe(true);
}

describe('open files, unlinked names and hard links (same as kernel overlayfs)', () => {
  it('a file unlinked while open: fstat, fchmod, write and read through the fd; it is not listed', async (ctx) => {
    const res = await both('ll-unlinked', async (lower) => { await writeFile(join(lower, 'f'), 'lower data\n'); await writeFile(join(lower, 'g'), 'g\n'); }, async (mnt) => {
      const fh = await T(open(join(mnt, 'f'), 'r+'), 'open');
      try {
        await T(unlink(join(mnt, 'f')), 'unlink');
        const st1 = await T(fh.stat(), 'fstat');
        await T(fh.chmod(0o600), 'fchmod');
        const st2 = await T(fh.stat(), 'fstat 2');
        await T(fh.write('NEW', 0), 'write');
        await T(fh.write('+tail', 11), 'write at end');
        const buf = Buffer.alloc(64);
        const { bytesRead } = await T(fh.read(buf, 0, 64, 0), 'read');
        const st3 = await T(fh.stat(), 'fstat 3');
        const listed = (await T(readdir(mnt), 'readdir')).sort();
        // a new file of the same name is another object
        await writeFile(join(mnt, 'f'), 'new file\n');
        await T(fh.chmod(0o640), 'fchmod after the name was reused');
        const newer = await stat(join(mnt, 'f'));
        return {
          nlink: st1.nlink, size1: st1.size, mode2: (st2.mode & 0o7777).toString(8),
          data: buf.subarray(0, bytesRead).toString(), size3: st3.size, listed,
          reused: { mode: (newer.mode & 0o7777).toString(8), data: await readFile(join(mnt, 'f'), 'utf8'), fdMode: ((await fh.stat()).mode & 0o7777).toString(8) },
        };
      } finally {
        await fh.close();
      }
    });
    expect(res.stratafs).toEqual({
      nlink: 0, size1: 11, mode2: '600', data: 'NEWer data\n+tail', size3: 16, listed: ['g'],
      reused: { mode: '644', data: 'new file\n', fdMode: '640' },
    });
    sameAsKernel(res, ctx);
  });

  it('a hard link whose link count fell back to 1 is one inode with its open unlinked name (write through the fd, stat the name)', async (ctx) => {
    const res = await both('ll-nlink1', async () => undefined, async (mnt, impl) => {
      await writeFile(join(mnt, 'f'), 'abc');
      await link(join(mnt, 'f'), join(mnt, 'g'));
      const fh = await T(open(join(mnt, 'g'), 'r+'), 'open');
      try {
        await unlink(join(mnt, 'g'));
        // the dentry of f goes (the node lives on: the open g holds it); the next stat looks f up again
        await dropCaches();
        const s0 = impl === 'stratafs' ? await serverStats(mnt) : undefined;
        const before = await stat(join(mnt, 'f'));
        if (s0) expect(opCount(await serverStats(mnt), 'lookup')).toBeGreaterThan(opCount(s0, 'lookup'));
        await T(fh.write('12345', 0), 'write');
        await T(fh.chmod(0o600), 'fchmod');
        const after = await stat(join(mnt, 'f'));
        return { before: [before.size, before.nlink], after: [after.size, after.nlink, (after.mode & 0o777).toString(8)], same: after.ino === (await fh.stat()).ino };
      } finally {
        await fh.close();
      }
    });
    expect(res.stratafs).toEqual({ before: [3, 1], after: [5, 1, '600'], same: true });
    sameAsKernel(res, ctx);
  });

  it('a hard link renamed stays one inode with its other name (chmod one, stat the other)', async (ctx) => {
    const res = await both('ll-mvlink', async () => undefined, async (mnt) => {
      await rename(join(mnt, 'a'), join(mnt, 'c'));
      const b0 = await stat(join(mnt, 'b')); // first lookup of b, after the rename
      await chmod(join(mnt, 'c'), 0o600);
      const b = await stat(join(mnt, 'b'));
      const c = await stat(join(mnt, 'c'));
      return { b0: (b0.mode & 0o777).toString(8), b: (b.mode & 0o777).toString(8), c: (c.mode & 0o777).toString(8), sameIno: b.ino === c.ino, nlink: b.nlink };
    }, async (u) => {
      // an upper dir that already holds two names of one file
      await writeFile(join(u, 'a'), 'linked\n', { mode: 0o644 });
      await link(join(u, 'a'), join(u, 'b'));
    });
    expect(res.stratafs).toEqual({ b0: '644', b: '600', c: '600', sameIno: true, nlink: 2 });
    sameAsKernel(res, ctx);
  });

  it('a hard link open and unlinked is one inode with a link the kernel had not looked up yet', async (ctx) => {
    const res = await both('ll-openlink', async () => undefined, async (mnt) => {
      const fh = await T(open(join(mnt, 'a'), 'r+'), 'open');
      try {
        await unlink(join(mnt, 'a'));
        const b0 = await stat(join(mnt, 'b')); // first lookup of b
        await T(fh.write('12345', 0), 'write');
        await T(fh.chmod(0o600), 'fchmod');
        const b1 = await stat(join(mnt, 'b'));
        return { before: [b0.size, b0.nlink], after: [b1.size, b1.nlink, (b1.mode & 0o777).toString(8)], same: b1.ino === (await fh.stat()).ino };
      } finally {
        await fh.close();
      }
    }, async (u) => {
      // an upper dir that already holds three names of one file
      await writeFile(join(u, 'a'), 'abc', { mode: 0o644 });
      await link(join(u, 'a'), join(u, 'b'));
      await link(join(u, 'a'), join(u, 'c'));
    });
    expect(res.stratafs).toEqual({ before: [3, 2], after: [5, 2, '600'], same: true });
    sameAsKernel(res, ctx);
  });

  it('a hard link stays usable by its cached name after the kernel forgot the directory of its other name', async (ctx) => {
    const res = await both('ll-forgetdir', async () => undefined, async (mnt, impl) => {
      await mkdir(join(mnt, 'D'));
      await mkdir(join(mnt, 'E'));
      await writeFile(join(mnt, 'E', 'x'), 'x-data\n');
      await link(join(mnt, 'E', 'x'), join(mnt, 'D', 'y'));
      // the open file pins E/x; D/y and then D are dropped (FORGET of D)
      const fh = await T(open(join(mnt, 'E', 'x'), 'r'), 'open');
      const s0 = impl === 'stratafs' ? await serverStats(mnt) : undefined;
      try {
        const nodes0 = s0?.nodes ?? 0;
        await dropCaches();
        if (s0) expect(await waitFor(async () => ((await serverStats(mnt)).nodes ?? 0) < nodes0, 5000, 50)).toBe(true);
        // any rmdir: the daemon's cached paths are rebuilt
        await mkdir(join(mnt, 'Z'));
        await rmdir(join(mnt, 'Z'));
      } finally {
        await fh.close();
      }
      // the kernel has no daemon to wait for
      if (s0) await released(mnt, s0);
      // E/x is still a cached dentry: it must open, chmod and stat by that name
      const data = await T(readFile(join(mnt, 'E', 'x'), 'utf8'), 'read');
      await T(chmod(join(mnt, 'E', 'x'), 0o640), 'chmod');
      const st = await lstat(join(mnt, 'E', 'x'));
      return { data, mode: (st.mode & 0o777).toString(8), nlink: st.nlink, y: await readFile(join(mnt, 'D', 'y'), 'utf8') };
    });
    expect(res.stratafs).toEqual({ data: 'x-data\n', mode: '640', nlink: 2, y: 'x-data\n' });
    sameAsKernel(res, ctx);
  });
});

describe('-o fuse_api=highlevel', () => {
  it('mounts through fuse-native and serves a read and a write', async () => {
    const { l, mnt } = await layers('ll-high', async (lower) => { await writeFile(join(lower, 'f'), 'lower\n'); });
    await mount('stratafs', l, mnt, { extra: ['fuse_api=highlevel'] });
    expect(await T(readFile(join(mnt, 'f'), 'utf8'), 'read')).toBe('lower\n');
    await T(writeFile(join(mnt, 'new'), 'written\n'), 'write');
    await T(writeFile(join(mnt, 'f'), 'changed\n'), 'write over a lower file');
    expect(await readFile(join(l.upper!, 'new'), 'utf8')).toBe('written\n');
    expect(await readFile(join(l.upper!, 'f'), 'utf8')).toBe('changed\n');
    expect(await readFile(join(l.lowers[0]!, 'f'), 'utf8')).toBe('lower\n');
    const s = await daemonStats(mnt);
    // the high-level engine has no node table
    expect(s.nodes).toBeUndefined();
    expect(opCount(s, 'write')).toBeGreaterThanOrEqual(2);
    const info = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((x) => x.includes(` ${mnt} `));
    expect(info).toMatch(/fuse\.stratafs/);
  });

  /** Shared objects under a fuse-native package the daemon has mapped: its addon is loaded with its index.js. */
  const fuseNativeMapped = async (h: MountHandle): Promise<string[]> => {
    expect(h.pids.length).toBeGreaterThan(0);
    const out = new Set<string>();
    for (const pid of h.pids) {
      for (const line of (await readFile(`/proc/${pid}/maps`, 'latin1')).split('\n')) {
        const file = line.split(/\s+/)[5];
        if (file !== undefined && file.includes('/fuse-native/')) out.add(file);
      }
    }
    return [...out];
  };

  it('the default mount never loads fuse-native; fuse_api=highlevel does', async () => {
    const a = await layers('ll-nofn', async (lower) => { await writeFile(join(lower, 'f'), 'x'); });
    const low = await mount('stratafs', a.l, a.mnt);
    // a few requests first: nothing loads it lazily later either
    expect(await readFile(join(a.mnt, 'f'), 'utf8')).toBe('x');
    await writeFile(join(a.mnt, 'g'), 'y');
    expect(await fuseNativeMapped(low)).toEqual([]);
    await low.unmount();
    const b = await layers('ll-fn', async (lower) => { await writeFile(join(lower, 'f'), 'x'); });
    const high = await mount('stratafs', b.l, b.mnt, { extra: ['fuse_api=highlevel'] });
    expect(await readFile(join(b.mnt, 'f'), 'utf8')).toBe('x');
    // its addon, and the libfuse beside it: the low-level servers are loaded only when chosen, so none
    // brought a libfuse.so.2 in first
    expect(await fuseNativeMapped(high)).toContainEqual(expect.stringMatching(/\/fuse-native\/.*\.node$/));
    await high.unmount();
  });

  it('a file unlinked or renamed over while open: libfuse\'s .fuse_hidden name is served virtually, never written', async () => {
    const { l, mnt } = await layers('ll-hidden', async (lower) => {
      await writeFile(join(lower, 'low'), 'lower data');
      await writeFile(join(lower, 'victim'), 'old content');
    });
    const h = await mount('stratafs', l, mnt, { extra: ['fuse_api=highlevel'] });
    const hiddenNames = async (): Promise<string[]> => {
      const names: string[] = [];
      for (const d of [mnt, l.upper!, l.work!]) names.push(...(await readdir(d, { recursive: true })).map(String));
      return names.filter((n) => n.includes('.fuse_hidden'));
    };
    await writeFile(join(mnt, 'doomed'), 'still here');
    const fh = await T(open(join(mnt, 'doomed'), 'r+'), 'open');
    const lowFh = await T(open(join(mnt, 'low'), 'r'), 'open lower');
    const victim = await T(open(join(mnt, 'victim'), 'r'), 'open victim');
    try {
      await T(unlink(join(mnt, 'doomed')), 'unlink');
      await T(unlink(join(mnt, 'low')), 'unlink lower');
      await writeFile(join(mnt, 'newer'), 'new content');
      await T(rename(join(mnt, 'newer'), join(mnt, 'victim')), 'rename over');
      expect((await readdir(mnt)).sort()).toEqual(['victim']);
      expect(await hiddenNames()).toEqual([]);
      await T(fh.write('STILL', 0), 'write');
      const buf = Buffer.alloc(16);
      expect(buf.subarray(0, (await fh.read(buf, 0, 16, 0)).bytesRead).toString()).toBe('STILL here');
      // GETATTR without a handle reaches the daemon under the hidden name; libfuse's nlink - 1 is made up for
      expect((await fh.stat()).nlink).toBe(0);
      await T(fh.chmod(0o600), 'fchmod');
      await T(fh.chown(1000, 1001), 'fchown');
      const t = new Date('2001-02-03T04:05:06.789Z');
      await T(fh.utimes(t, t), 'futimens');
      expect(await fh.stat()).toMatchObject({ nlink: 0, uid: 1000, gid: 1001, mode: 0o100600, mtimeMs: t.getTime() });
      await T(fh.truncate(5), 'ftruncate');
      expect((await fh.stat()).size).toBe(5);
      // open(2) of /proc/self/fd/N reaches the hidden node by its name
      expect(await readFile(`/proc/self/fd/${fh.fd}`, 'utf8')).toBe('STILL');
      expect(await readFile(`/proc/self/fd/${victim.fd}`, 'utf8')).toBe('old content');
      // an unlinked lower file cannot be copied up: kernel overlayfs answers EEXIST too
      expect((await lowFh.stat()).nlink).toBe(1);
      await expect(lowFh.chmod(0o600)).rejects.toMatchObject({ code: 'EEXIST' });
      expect(await readFile(join(mnt, 'victim'), 'utf8')).toBe('new content');
      expect(await hiddenNames()).toEqual([]);
    } finally {
      await fh.close();
      await lowFh.close();
      await victim.close();
    }
    expect((await readdir(mnt)).sort()).toEqual(['victim']);
    expect(await hiddenNames()).toEqual([]);
    await h.unmount();
  });
});
