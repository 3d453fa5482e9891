/**
 * FUSE passthrough on stratafs's own server (-o fuse_server=kernel, src/fuse/kernel/passthrough.ts,
 * native-notes/fuse-server.md "Passthrough"), judged against kernel overlayfs on this machine:
 * - on (root): upper files are read, written and mmapped without READ/WRITE requests, and a
 *   probe of handles across a copy-up, sizes and times after writes, mmap + msync, truncate and
 *   append gives what kernel overlayfs gives; off (fuse_off=passthrough): the same, through
 *   READ/WRITE;
 * - stacking: max_stack_depth 1 keeps a stratafs mount usable as a lower of kernel overlayfs;
 *   passthrough_lower on a layer on kernel overlayfs asks for 2; a backing file too deep
 *   (a stratafs mount as the layer of another) and a mount in `unshare -Urm` (no CAP_SYS_ADMIN
 *   in the initial user namespace) fall back to READ/WRITE with no error to the caller;
 * - passthrough_lower with an upper layer: its documented divergence, and the differential
 *   harness's scripted cases with it (divergences.ts lists what the option changes).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCRIPTED } from '../harness/cases.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import { kernelOverlayProblem, mount, requireKernel, tempDir, unmountAll, type Layers, type MountHandle } from '../harness/mounts.js';
import { serverStats, opCount } from '../harness/cli-mount.js';
import { run } from '../harness/proc.js';
import { STRATAFS_BIN } from '../harness/mounts.js';

// the minor named: CI runs the harness again with STRATAFS_TEST_FUSE_MINOR=19, where passthrough (7.40) is off
const SERVER = ['fuse_server=kernel', 'fuse_minor=45'];

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});



/** lower `f`, `h`, `big`; upper `g` (8 KiB) */
async function layers(t: string): Promise<Layers> {
  for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(t, d), { recursive: true });
  await writeFile(join(t, 'l', 'f'), 'lowerdata\n');
  await writeFile(join(t, 'l', 'h'), 'hdata\n');
  await writeFile(join(t, 'u', 'g'), Buffer.alloc(8192, 0x61));
  return { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') };
}

/**
 * What a client sees: a read-only handle of a lower file across a copy-up by another open,
 * sizes and mtimes through the mount (stat and fstat) against the upper file after pwrite,
 * after a write through a shared mapping + msync, and after truncate and append; the mapped
 * data read back through another descriptor.
 */
const PROBE = String.raw`
import os, sys, mmap, time
m, u = sys.argv[1], sys.argv[2]
out = []
fd = os.open(m + "/f", os.O_RDONLY)
a = os.pread(fd, 100, 0)
w = os.open(m + "/f", os.O_WRONLY | os.O_TRUNC); os.write(w, b"NEWDATA\n"); os.close(w)
out.append("ro handle across copy-up: %r -> %r" % (a, os.pread(fd, 100, 0)))
os.close(fd)
p = m + "/g"
fd = os.open(p, os.O_RDWR)
os.stat(p)
time.sleep(0.02)
os.pwrite(fd, b"x" * 5000, 6000)
st, fst, ust = os.stat(p), os.fstat(fd), os.stat(u + "/g")
out.append("pwrite: size %d fsize %d; mtime as the upper's: %s %s" % (st.st_size, fst.st_size, st.st_mtime_ns == ust.st_mtime_ns, fst.st_mtime_ns == ust.st_mtime_ns))
time.sleep(0.02)
mm = mmap.mmap(fd, 4096); mm[0:5] = b"MMAP!"; mm.flush(); mm.close()
fd2 = os.open(p, os.O_RDONLY)
out.append("mmap+msync read back: %r; mtime as the upper's: %s" % (os.pread(fd2, 5, 0), os.stat(p).st_mtime_ns == os.stat(u + "/g").st_mtime_ns))
os.close(fd2); os.close(fd)
os.truncate(p, 20000)
out.append("truncate: %d" % os.stat(p).st_size)
with open(p, "ab") as f: f.write(b"tail")
out.append("append: %d %r" % (os.stat(p).st_size, open(p, "rb").read()[-6:]))
print("\n".join(out))
`;

async function probe(mnt: string, upper: string): Promise<string> {
  const r = await run('python3', ['-c', PROBE, mnt, upper], { timeoutMs: 30_000 });
  expect(r.code, r.stderr.toString()).toBe(0);
  return r.stdout.toString();
}

async function withMount<T>(h: MountHandle, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await h.unmount();
  }
}

describe('fuse_server=kernel: passthrough on and off against kernel overlayfs', () => {
  it('on: upper files without READ/WRITE, backing ids released with the last handle; off: the same answers through READ/WRITE', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const t = await tempDir('pt-onoff');
    const kl = await layers(join(t, 'k'));
    const expected = await withMount(await mount('kernel', kl, join(t, 'k', 'm')), () => probe(join(t, 'k', 'm'), kl.upper!));
    expect(expected).toContain("ro handle across copy-up: b'lowerdata\\n' -> b'NEWDATA\\n'");

    const sl = await layers(join(t, 's'));
    const mnt = join(t, 's', 'm');
    await withMount(await mount('stratafs', sl, mnt, { extra: SERVER }), async () => {
      expect(await probe(mnt, sl.upper!)).toBe(expected);
      const s = await serverStats(mnt);
      expect(s.fuse.features).toContain('passthrough');
      const p = s.fuse.passthrough;
      expect(p !== undefined && 'passed' in p ? [p.maxStackDepth, p.passed > 0, p.ids] : p).toEqual([1, true, 0]);
      // g never reached the daemon; f was copied up while its read-only handle was open in cached mode
      // (the kernel keeps an inode in one mode), so its writer went through WRITE: one
      expect(opCount(s, 'write')).toBe(1);
      expect(opCount(s, 'read')).toBe(2);
      // a handle open holds one backing id; closing it releases the id
      const r = await run('python3', ['-c', `import os,subprocess,sys
fd = os.open(sys.argv[1] + "/g", os.O_RDONLY)
os.read(fd, 10)
print(subprocess.run([sys.argv[2], "stats", sys.argv[1]], capture_output=True, text=True).stdout)
os.close(fd)`, mnt, STRATAFS_BIN], { timeoutMs: 30_000 });
      expect(r.stdout.toString()).toMatch(/FUSE passthrough: \d+ opens passed through, fallbacks .*, 1 backing ids held/);
      const after = await serverStats(mnt);
      expect(after.fuse.passthrough).toMatchObject({ ids: 0 });
    });
    expect(await readFile(join(sl.upper!, 'f'), 'utf8')).toBe('NEWDATA\n');

    const ol = await layers(join(t, 'o'));
    const omnt = join(t, 'o', 'm');
    // the writeback cache is on wherever passthrough is not; it stamps mtime in the kernel and writes the
    // upper at writeback (until then the upper file keeps its old data and mtime: writeback-crash in fuse-writeback.test.ts), so READ/WRITE alone here
    await withMount(await mount('stratafs', ol, omnt, { extra: [...SERVER, 'fuse_off=passthrough:writeback_cache'] }), async () => {
      expect(await probe(omnt, ol.upper!)).toBe(expected);
      const s = await serverStats(omnt);
      expect(s.fuse.features).not.toContain('passthrough');
      expect(s.fuse.passthrough).toBeUndefined();
      expect(opCount(s, 'write')).toBeGreaterThan(1);
      expect(opCount(s, 'read')).toBeGreaterThan(2);
    });
  }, 120_000);
});

describe('fuse_server=kernel passthrough: the table of open files', () => {
  it('directory listings between opens (OPENDIR answers through the same reply) leave the files passed through', async () => {
    const t = await tempDir('pt-dirs');
    const sl = await layers(t);
    const mnt = join(t, 'm');
    await withMount(await mount('stratafs', sl, mnt, { extra: SERVER }), async () => {
      const r = await run('sh', ['-c', `for i in 1 2 3; do cat ${mnt}/g > /dev/null; ls ${mnt} > /dev/null; done; cat ${mnt}/g > /dev/null`], { timeoutMs: 30_000 });
      expect(r.code, r.stderr.toString()).toBe(0);
      const s = await serverStats(mnt);
      expect([opCount(s, 'opendir') > 0, opCount(s, 'read')]).toEqual([true, 0]);
      expect(s.fuse.passthrough).toMatchObject({ ids: 0, fallbacks: {} });
    });
  }, 60_000);
});

describe('fuse_server=kernel passthrough and file system stacking', () => {
  it('max_stack_depth 1: a stratafs mount with passthrough is a lowerdir of kernel overlayfs, read through it', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const t = await tempDir('pt-stack1');
    const sl = await layers(t);
    const mnt = join(t, 'm');
    await withMount(await mount('stratafs', sl, mnt, { extra: SERVER }), async () => {
      for (const d of ['ou', 'ow', 'om']) await mkdir(join(t, d));
      const k = await mount('kernel', { lowers: [mnt], upper: join(t, 'ou'), work: join(t, 'ow') }, join(t, 'om'));
      await withMount(k, async () => {
        expect((await readFile(join(t, 'om', 'g'))).equals(Buffer.alloc(8192, 0x61))).toBe(true);
        expect(await readFile(join(t, 'om', 'f'), 'utf8')).toBe('lowerdata\n');
      });
      const s = await serverStats(mnt);
      expect(s.fuse.passthrough).toMatchObject({ maxStackDepth: 1 });
      expect((s.fuse.passthrough as { passed: number }).passed).toBeGreaterThan(0);
      // g passed through (no READ); f is a lower file: cached
      expect(opCount(s, 'read')).toBe(1);
    });
  }, 60_000);

  it('a layer on kernel overlayfs: upper files still pass through at depth 1 (the mount stays stackable); passthrough_lower asks for depth 2', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const t = await tempDir('pt-stack2');
    for (const d of ['kl', 'ku', 'kw', 'km', 'u', 'w', 'm', 'm2']) await mkdir(join(t, d));
    await writeFile(join(t, 'kl', 'kf'), 'on overlay\n');
    const k = await mount('kernel', { lowers: [join(t, 'kl')], upper: join(t, 'ku'), work: join(t, 'kw') }, join(t, 'km'));
    await withMount(k, async () => {
      const h = await mount('stratafs', { lowers: [join(t, 'km')], upper: join(t, 'u'), work: join(t, 'w') }, join(t, 'm'), { extra: SERVER });
      await withMount(h, async () => {
        await writeFile(join(t, 'm', 'new'), 'new\n');
        expect(await readFile(join(t, 'm', 'new'), 'utf8')).toBe('new\n');
        expect(await readFile(join(t, 'm', 'kf'), 'utf8')).toBe('on overlay\n');
        const s = await serverStats(join(t, 'm'));
        expect(s.fuse.passthrough).toMatchObject({ maxStackDepth: 1, fallbacks: {} });
        expect([opCount(s, 'write'), opCount(s, 'read')]).toEqual([0, 1]);
      });
      const h2 = await mount('stratafs', { lowers: [join(t, 'km')] }, join(t, 'm2'), { extra: SERVER });
      await withMount(h2, async () => {
        expect(await readFile(join(t, 'm2', 'kf'), 'utf8')).toBe('on overlay\n');
        const s = await serverStats(join(t, 'm2'));
        expect(s.fuse.passthrough).toMatchObject({ maxStackDepth: 2, fallbacks: {} });
        expect(opCount(s, 'read')).toBe(0);
      });
    });
  }, 60_000);

  it('a backing file stacked too deep (a stratafs mount with passthrough as the layer of another) falls back to READ', async () => {
    const t = await tempDir('pt-eloop');
    const sl = await layers(t);
    await mkdir(join(t, 'm2'));
    await withMount(await mount('stratafs', sl, join(t, 'm'), { extra: SERVER }), async () => {
      await withMount(await mount('stratafs', { lowers: [join(t, 'm')] }, join(t, 'm2'), { extra: SERVER }), async () => {
        expect(await readFile(join(t, 'm2', 'f'), 'utf8')).toBe('lowerdata\n');
        expect((await readFile(join(t, 'm2', 'g'))).length).toBe(8192);
        const s = await serverStats(join(t, 'm2'));
        expect(s.fuse.passthrough).toMatchObject({ passed: 0, fallbacks: { 'stack-depth': 2 } });
        expect(opCount(s, 'read')).toBe(2);
      });
    });
  }, 60_000);

  it('in `unshare -Urm` (no CAP_SYS_ADMIN in the initial user namespace): not asked for, reads and writes through the daemon', async () => {
    const t = await tempDir('pt-userns');
    const sl = await layers(t);
    const m = join(t, 'm');
    const script = `set -e
"$STRATAFS" -o lowerdir=${sl.lowers[0]},upperdir=${sl.upper},workdir=${sl.work},fuse_server=kernel ${m}
trap '"$STRATAFS" umount ${m}' EXIT
cat ${m}/f; echo more >> ${m}/g; tail -c 5 ${m}/g
"$STRATAFS" stats ${m} | grep -E '^FUSE passthrough'
"$STRATAFS" stats ${m} | grep -E '^FUSE features' | grep -c passthrough || true
"$STRATAFS" stats ${m} | grep -cE '^(read|write) '
`;
    const r = await run('unshare', ['-Urm', 'sh', '-c', script], {
      timeoutMs: 60_000,
      env: { PATH: `${process.execPath.replace(/\/[^/]*$/, '')}:${process.env.PATH ?? ''}`, STRATAFS: STRATAFS_BIN, STRATAFS_RUNTIME_DIR: join(t, 'run') },
    });
    expect(r.code, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toBe('lowerdata\nmore\n' +
      'FUSE passthrough: off (in a user namespace (CAP_SYS_ADMIN there is not enough))\n0\n2\n');
  }, 90_000);
});

describe('passthrough_lower with an upper layer: the documented divergence', () => {
  const PROBE_LOWER = String.raw`
import os, sys
m = sys.argv[1]
fd = os.open(m + "/f", os.O_RDONLY)
os.pread(fd, 100, 0)
try:
    w = os.open(m + "/f", os.O_WRONLY); os.write(w, b"NEW"); os.close(w); wr = "ok"
except OSError as e: wr = os.strerror(e.errno)
print("write-open while a lower handle is open: %s; that handle reads %r" % (wr, os.pread(fd, 100, 0)))
os.close(fd)
print("after closing it: %r" % open(m + "/f", "rb").read())
fd = os.open(m + "/h", os.O_RDONLY)
os.pread(fd, 100, 0)
os.truncate(m + "/h", 2)
def fresh():
    try: return repr(open(m + "/h", "rb").read())
    except OSError as e: return os.strerror(e.errno)
print("truncate(2) by path (no open): that handle reads %r, a new one %s" % (os.pread(fd, 100, 0), fresh()))
os.close(fd)
`;
  it('a handle opened on a lower file keeps reading it after a copy-up, and opens of the copy fail EIO until it is closed', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const t = await tempDir('pt-lower');
    const out: Record<string, string> = {};
    for (const [name, impl, extra] of [['kernel', 'kernel', []], ['stratafs', 'stratafs', [...SERVER, 'passthrough_lower']]] as const) {
      const l = await layers(join(t, name));
      await withMount(await mount(impl, l, join(t, name, 'm'), { extra: [...extra] }), async () => {
        const r = await run('python3', ['-c', PROBE_LOWER, join(t, name, 'm')], { timeoutMs: 30_000 });
        expect(r.code, r.stderr.toString()).toBe(0);
        out[name] = r.stdout.toString();
      });
    }
    expect(out.kernel).toBe("write-open while a lower handle is open: ok; that handle reads b'NEWerdata\\n'\nafter closing it: b'NEWerdata\\n'\n" +
      "truncate(2) by path (no open): that handle reads b'hd', a new one b'hd'\n");
    // the copy-up happened (the write-open copied f up before the kernel refused the open), nothing was written
    // truncate(2) copies up without an open: the old handle stays on the lower data
    // (passthrough-lower-stale-handle), a new open of the copy fails (passthrough-lower-busy-inode)
    expect(out.stratafs).toBe("write-open while a lower handle is open: Input/output error; that handle reads b'lowerdata\\n'\nafter closing it: b'lowerdata\\n'\n" +
      "truncate(2) by path (no open): that handle reads b'hdata\\n', a new one Input/output error\n");
  }, 60_000);

  const allowedBy = (r: { allowed: readonly object[] }): string[] => [...new Set(r.allowed.map((d) => ('allowedBy' in d ? String(d.allowedBy) : '')))];

  // the cases that hold descriptors open across changes (the rest never meets a lower handle)
  for (const c of SCRIPTED.filter((x) => x.ops.some((o) => o.op === 'open'))) {
    it(`scripted case ${c.name} with passthrough_lower, divergences of the option allowed`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const opts = [...SERVER, 'passthrough_lower'];
      const r = await runCase(c, { candidate: 'stratafs', divergences: divergencesFor('stratafs', opts), candidateOptions: opts });
      expect(r.unexplained, formatReport(r, c.ops)).toEqual([]);
      // the case made for it meets the entry (its run stops at the first divergent tree)
      if (c.name === 'fd-before-copy-up') expect(allowedBy(r)).toEqual(['passthrough-lower-busy-inode']);
    }, 120_000);
  }
});
