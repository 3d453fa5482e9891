/**
 * stratafs's own FUSE server (the default; -o fuse_server=kernel names it: src/native/fuse-dev.c,
 * src/fuse/kernel/) against kernel overlayfs: the differential harness's scripted cases and a
 * batch of random sequences, its mounting and unmounting as root and as a plain user. CI runs
 * this file again with STRATAFS_TEST_FUSE_MINOR=19 (test/harness/mounts.ts): a test that
 * asserts what the newest protocol brings names fuse_minor=45.
 */
import fc from 'fast-check';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE, SCRIPTED } from '../harness/cases.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, mount, REPO_ROOT, requireKernel, tempDir, unmountAll } from '../harness/mounts.js';
import { PATH_POOL, sequenceArb, withSpecial } from '../harness/random.js';
import { cli } from '../harness/cli-mount.js';
import { chownToUser, makeRootlessEnv, rootlessProblem, runAsUser } from '../harness/rootless.js';

const plainUserProblem = await rootlessProblem();

const DIVERGENCES = divergencesFor('stratafs');
const SERVER = ['fuse_server=kernel'];
const RUNS = Number(process.env.STRATAFS_DIFF_RUNS ?? 15);
const LENGTH = Number(process.env.STRATAFS_DIFF_LENGTH ?? 30);
const SEED = Number(process.env.STRATAFS_DIFF_SEED ?? 20261203);

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

describe('fuse_server=kernel: the mount is served without libfuse', () => {
  it('the daemon never maps libfuse, describes its server, and answers through the adapter', async () => {
    const t = await tempDir('kserver');
    for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
    await writeFile(join(t, 'l', 'f'), 'lower\n');
    const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, join(t, 'mnt'), { extra: [...SERVER, 'fuse_minor=45'] });
    try {
      expect(await readFile(join(t, 'mnt', 'f'), 'utf8')).toBe('lower\n');
      await writeFile(join(t, 'mnt', 'f'), 'upper\n');
      expect(await readFile(join(t, 'u', 'f'), 'utf8')).toBe('upper\n');
      expect(h.pids.length).toBe(1);
      const maps = await readFile(`/proc/${h.pids[0]}/maps`, 'utf8');
      expect(maps).toContain('stratafs_fusedev.node');
      expect(maps).not.toMatch(/libfuse|stratafs_fuse\.node/);
      const info = await cli(['stats', '--json', join(t, 'mnt')], { timeoutMs: 10_000 });
      expect(info.code, info.stderr).toBe(0);
      const s = JSON.parse(info.stdout) as {
        ops: Record<string, { count: number }>;
        fuse?: { minor: number; flags: number; kernelMinor: number; kernelFlags: number; passthrough?: { passed?: number } };
      };
      expect(s.ops.lookup?.count ?? 0).toBeGreaterThan(0);
      // the write reached the upper file through WRITE, or (as root) through passthrough
      expect((s.ops.write?.count ?? 0) + (s.fuse?.passthrough?.passed ?? 0)).toBeGreaterThan(0);
      // INIT: the newest minor both know; of the flags asked for (features.ts) only those offered
      expect(s.fuse).toBeDefined();
      expect(s.fuse!.minor).toBe(Math.min(s.fuse!.kernelMinor, 45));
      expect(s.fuse!.flags & 0x21).toBe(s.fuse!.kernelFlags & 0x21);
      expect(s.fuse!.flags & ~s.fuse!.kernelFlags).toBe(0);
    } finally {
      await h.unmount();
    }
  }, 60_000);

  it('fuse_off= switches a feature off where the kernel offers it: without big_writes a 64 KiB write arrives as 16 WRITEs', async () => {
    const t = await tempDir('kserver-off');
    for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
    const writesOf = async (off: string[]): Promise<{ writes: number; flags: number; features: string[] }> => {
      const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, join(t, 'mnt'), { extra: [...SERVER, ...off] });
      try {
        await writeFile(join(t, 'mnt', 'big'), Buffer.alloc(65536, 7));
        const info = await cli(['stats', '--json', join(t, 'mnt')], { timeoutMs: 10_000 });
        expect(info.code, info.stderr).toBe(0);
        const s = JSON.parse(info.stdout) as { ops: Record<string, { count: number }>; fuse: { flags: number; features: string[] } };
        return { writes: s.ops.write?.count ?? 0, flags: s.fuse.flags, features: s.fuse.features };
      } finally {
        await h.unmount();
      }
    };
    // passthrough and the writeback cache off: with either, the write would not arrive as WRITEs of its own size
    const on = await writesOf(['fuse_off=passthrough:writeback_cache']);
    expect(on.features).toContain('big_writes');
    expect(on.writes).toBe(1);
    const off = await writesOf(['fuse_off=big_writes:passthrough:writeback_cache']);
    expect(off.features).not.toContain('big_writes');
    expect(off.flags & 0x20).toBe(0);
    expect(off.writes).toBe(16);
    const none = await writesOf(['fuse_off=all']);
    expect([none.flags, none.features]).toEqual([0, []]);
    expect((await readFile(join(t, 'u', 'big'))).equals(Buffer.alloc(65536, 7))).toBe(true);
  }, 60_000);
});

describe.skipIf(plainUserProblem !== undefined)('fuse_server=kernel as a plain user: mounted through fusermount3', () => {
  it('the device fd comes back over the socket: the mount serves, reports its INIT and unmounts; nothing is left', async () => {
    const env = await makeRootlessEnv('kserver-rootless');
    const B = join(env.home, 'k');
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(B, d), { recursive: true });
    await writeFile(join(B, 'l', 'f'), 'lower\n');
    await chownToUser(env, B);
    const r = await runAsUser(env, `
"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr,fuse_server=kernel ${B}/m || exit 3
trap '"$STRATAFS" umount ${B}/m' EXIT
grep " ${B}/m " /proc/self/mountinfo | grep -o 'user_id=[0-9]*'
cat ${B}/m/f && echo more >> ${B}/m/f && cat ${B}/m/f
"$STRATAFS" stats ${B}/m | grep -o 'FUSE protocol: 7\\.[0-9]*, flags 0x[0-9a-f]*'
`, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^user_id=${env.user.uid}\nlower\nlower\nmore\nFUSE protocol: 7\\.\\d+, flags 0x[0-9a-f]+\n$`));
    expect(await readFile(join(B, 'u', 'f'), 'utf8')).toBe('lower\nmore\n');
    expect(r.leftovers).toEqual([]);
    expect(r.survivors).toEqual([]);
  }, 90_000);
});

describe.skipIf(plainUserProblem !== undefined)('a plain user\'s mountpoint is bytes: fusermount3 gets them exactly, and the session unmounts through it', () => {
  it('mounts at a non-ASCII name through the CLI and at a name with byte 0xff through the server; close(unmount) detaches with fusermount3 -uz; nothing is left', async () => {
    const env = await makeRootlessEnv('kserver-bytes');
    const B = join(env.home, 'k');
    for (const d of ['l', 'u', 'w']) await mkdir(join(B, d), { recursive: true });
    await writeFile(join(B, 'l', 'f'), 'lower\n');
    await chownToUser(env, B);
    // the server on its own: mount at $mp (given as hex: argv is UTF-8), answer INIT, close with unmount
    const js = `
import { readFileSync } from 'node:fs';
const { kernelServer } = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'fuse', 'kernel', 'server.js'))});
const mp = Buffer.from(process.argv[2], 'hex').toString('latin1');
const mounted = () => readFileSync('/proc/self/mountinfo').includes(Buffer.from(' ' + mp + ' ', 'latin1'));
let session;
const handlers = new Proxy({}, { get: (_, k) => k === 'init' ? () => setTimeout(() => { console.log('init', mounted()); kernelServer.close(session, true); }, 0)
  : k === 'forget' ? () => {} : (req) => kernelServer.replyErr(req, 38) });
session = kernelServer.mount(mp, { source: 'stratafs', fstype: 'fuse.stratafs', flags: 6, data: ['default_permissions'], maxWrite: 131072, maxMinor: undefined, off: [], debug: false },
  handlers, new Int32Array(4), () => console.log('session ended'));
const t = Date.now();
const poll = () => { if (!mounted() || Date.now() - t > 10000) console.log('unmounted', !mounted()); else setTimeout(poll, 50); };
setTimeout(poll, 50);
`;
    await writeFile(join(env.home, 'bytes.mjs'), js);
    const r = await runAsUser(env, `
mp="${B}/m-caf\u00e9"
mkdir "$mp" || exit 2
"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr "$mp" || exit 3
cat "$mp/f"
grep -c " $mp " /proc/self/mountinfo
"$STRATAFS" umount "$mp" || exit 4
grep -c " $mp " /proc/self/mountinfo
# the daemon's own unmount on SIGTERM (unmountPath as a plain user)
"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr "$mp" || exit 7
pid=$("$STRATAFS" stats --json "$mp" | grep -o '"pid": *[0-9]*' | head -1 | tr -dc 0-9)
[ -n "$pid" ] || exit 8
kill -TERM "$pid"
for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
grep -c " $mp " /proc/self/mountinfo
ff="${B}/m"$'\\xff'
mkdir "$ff" || exit 5
node ${join(env.home, 'bytes.mjs')} "$(printf %s "$ff" | od -An -tx1 | tr -d ' \n')" || exit 6
grep -ac " $ff " /proc/self/mountinfo
`, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1); // the last grep -c counts 0 mounts and exits 1
    expect(r.stdout).toBe('lower\n1\n0\n0\ninit true\nsession ended\nunmounted true\n0\n');
    expect(r.leftovers).toEqual([]);
    expect(r.survivors).toEqual([]);
  }, 90_000);
});

describe('fuse_server=kernel vs kernel overlayfs: scripted cases', () => {
  for (const c of SCRIPTED) {
    it(`${c.name}: ${c.about ?? ''}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: SERVER });
      const text = formatReport(r, c.ops);
      if (r.allowed.length) console.log(text);
      expect(r.unexplained, text).toEqual([]);
    }, 120_000);
  }
});

describe('fuse_server=kernel,fuse_minor=19 (the protocol libfuse 2.9 spoke) vs kernel overlayfs: scripted cases', () => {
  for (const c of SCRIPTED) {
    it(`${c.name}`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: [...SERVER, 'fuse_minor=19'] });
      expect(r.unexplained, formatReport(r, c.ops)).toEqual([]);
    }, 120_000);
  }
});

describe('fuse_server=kernel vs kernel overlayfs: randomized sequences', () => {
  it(`${RUNS} sequences of up to ${LENGTH} ops, seed ${SEED}`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    await fc.assert(
      fc.asyncProperty(sequenceArb(LENGTH, withSpecial(PATH_POOL)), async (ops) => {
        const r = await runCase({ name: 'random', layers: BASE, ops }, { candidate: 'stratafs', divergences: DIVERGENCES, candidateOptions: SERVER });
        if (r.unexplained.length) throw new Error(formatReport(r, ops));
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 300_000, markInterruptAsFailure: true },
    );
  }, 400_000);
});
