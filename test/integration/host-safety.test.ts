/**
 * The suite's guard of the host (test/harness/host-check.ts, sentinel.ts and the
 * teardown in setup.ts), proven on scratch copies of what it guards:
 *  - the checker reports exactly the entries a test changed (content, mode, new,
 *    removed), also a write that kept size and mtime, and nothing in excluded trees;
 *  - the run's sentinels are read-only, and links in case data that leave a mount
 *    (absolute, and `../d` from the mount's top) reach them and nothing else: writes
 *    through them fail alike on kernel overlayfs and stratafs and change nothing;
 *  - the teardown's leftover finders see a process that carries the run's marker and
 *    its child that cleared its environment, a loop device, a process in a new
 *    namespace, and a mount added anywhere.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, chmod, mkdir, open, readFile, rm, stat, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BASE } from '../harness/cases.js';
import { formatReport, runCase } from '../harness/differential.js';
import { divergencesFor } from '../harness/divergences.js';
import {
  allowFromEnv, captureFiles, diffFiles, diffMounts, hostWatches, inNewNamespaces, loopDevices, markedProcesses,
  mountKeys, namespaceIds, processes, type Watch,
} from '../harness/host-check.js';
import { killPids, kernelOverlayProblem, REPO_ROOT, requireKernel, tempDir, testRoot, unmountAll } from '../harness/mounts.js';
import { run } from '../harness/proc.js';
import { OUTSIDE, SENTINEL_FILES, sentinelDir } from '../harness/sentinel.js';

const started: ChildProcess[] = [];
afterEach(async () => {
  await killPids(started.splice(0).map((c) => c.pid!).filter(Boolean));
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

const paths = (cs: { what: string }[]) => cs.map((c) => c.what.replace(/^(\w+): ([^:(]*?)( \(|: ).*$/, '$1 $2'));

describe('the checker', () => {
  it('reports each changed sentinel entry, by path, and nothing in excluded trees', async () => {
    const dir = await tempDir('checker');
    const s = join(dir, 'sentinel');
    const files = ['same-size', 'mode', 'gone', 'appended', 'truncated', 'excluded/x', 'untouched'];
    for (const f of files) {
      await mkdir(join(s, f, '..'), { recursive: true });
      await writeFile(join(s, f), `content of ${f}\n`);
    }
    const w: Watch[] = [{ path: s, hash: true, exclude: [{ path: join(s, 'excluded'), why: 'test' }] }];
    const before = await captureFiles(w);
    expect(before.size).toBe(files.length); // the root, 5 files, no excluded entries
    // a write that keeps size and mtime: only ctime and the hash tell
    const st = await stat(join(s, 'same-size'));
    const fh = await open(join(s, 'same-size'), 'r+');
    await fh.write('C', 0);
    await fh.close();
    await utimes(join(s, 'same-size'), st.atime, st.mtime);
    await chmod(join(s, 'mode'), 0o1777);
    await unlink(join(s, 'gone'));
    await appendFile(join(s, 'appended'), '\0'.repeat(1000));
    await truncate(join(s, 'truncated'), 0);
    await writeFile(join(s, 'new'), '');
    await writeFile(join(s, 'excluded', 'x'), 'changed where nobody looks');
    const changes = diffFiles(before, await captureFiles(w));
    expect(paths(changes)).toEqual([
      `changed ${s}`, // the directory: entries were added and removed
      `changed ${s}/appended`,
      `removed ${s}/gone`,
      `changed ${s}/mode`,
      `created ${s}/new`,
      `changed ${s}/same-size`,
      `changed ${s}/truncated`,
    ]);
    expect(changes.find((c) => c.what.includes('same-size'))!.what).toMatch(/sha256:(\w+) -> .*sha256:(?!\1)\w+$/);
    expect(changes.find((c) => c.what.includes('/mode'))!.what).toMatch(/f 644 .* -> f 1777 /);
    // STRATAFS_HOST_CHECK_ALLOW marks, never hides
    const allowed = diffFiles(before, await captureFiles(w), allowFromEnv({ STRATAFS_HOST_CHECK_ALLOW: `${s}/mode:relative/ignored` }));
    expect(allowed.filter((c) => c.allowedBy).map((c) => c.what)).toEqual([expect.stringContaining(`${s}/mode`)]);
    expect(allowed.length).toBe(changes.length);
  });

  it('a names-only watch (/tmp) reports entries made or removed next to the root, not their times', async () => {
    const dir = await tempDir('names');
    await mkdir(join(dir, 'neighbour'));
    const w: Watch[] = [{ path: dir, depth: 1, namesOnly: true, exclude: [{ path: join(dir, 'root'), why: 'the run' }] }];
    const before = await captureFiles(w);
    await writeFile(join(dir, 'neighbour', 'f'), 'x'); // times of an existing entry: not recorded
    await mkdir(join(dir, 'root'));
    await writeFile(join(dir, 'stray'), 'a test wrote next to its root');
    expect(paths(diffFiles(before, await captureFiles(w)))).toEqual([`created ${dir}/stray`]);
  });

  it('watches the host paths the suite must not touch (the list CI checks)', () => {
    const w = hostWatches(testRoot(), REPO_ROOT);
    const tops = w.map((x) => x.path);
    for (const p of ['/etc', '/root', '/home', '/usr/local', '/opt', '/srv', '/var', '/run', '/tmp', '/dev/shm']) expect(tops).toContain(p);
    const varEx = w.find((x) => x.path === '/var')!.exclude!.map((e) => e.path);
    expect(varEx).toContain('/var/lib/dpkg');
    expect(varEx).not.toContain('/var/tmp');
    expect(varEx).not.toContain('/var/lib/containers');
    for (const x of w.filter((y) => y.depth !== 0)) expect(x.exclude?.map((e) => e.path)).toContain(testRoot());
  });
});

describe('links that leave a mount', () => {
  it('the run\'s sentinels are in place and read-only', async () => {
    const s = sentinelDir();
    for (const [rel, content] of Object.entries(SENTINEL_FILES)) expect(await readFile(join(s, rel), 'utf8')).toBe(content);
    await expect(writeFile(join(s, 'hostname'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(chmod(join(s, 'd'), 0o777)).rejects.toMatchObject({ code: 'EROFS' });
  });

  it('writes through them fail alike on kernel overlayfs and stratafs, and no sentinel changes', async (ctx) => {
    requireKernel(await kernelOverlayProblem(), ctx);
    const before = await captureFiles([{ path: sentinelDir(), hash: true }]);
    const ops = [
      { op: 'write', path: 'abs', offset: 0, data: 'Z'.repeat(300) },
      { op: 'truncate', path: 'abs', size: 1000 },
      { op: 'chmod', path: 'abs', mode: 0o1777 },
      { op: 'append', path: 'abs', data: 'x' },
      { op: 'symlink', target: '../d', path: 'n1' },
      { op: 'create', path: 'n1', mode: 0o644, trunc: true },
      { op: 'write', path: 'n1/f', offset: 0, data: 'x' },
      { op: 'create', path: 'n1/new', mode: 0o644 },
      { op: 'symlink', target: OUTSIDE + 'd', path: 'n2' },
      { op: 'mkdir', path: 'n2/sub', mode: 0o755 },
      { op: 'read', path: 'abs' },
      { op: 'readdir', path: 'n1' },
    ] as const;
    const r = await runCase({ name: 'escape', layers: BASE, ops: [...ops] }, { candidate: 'stratafs', divergences: divergencesFor('stratafs') });
    expect(r.unexplained, formatReport(r, [...ops])).toEqual([]);
    expect(r.results.reference.map((x) => (x.ok ? 'ok' : x.errno))).toEqual(['EROFS', 'EROFS', 'EROFS', 'EROFS', 'ok', 'EISDIR', 'EROFS', 'EROFS', 'ok', 'EROFS', 'ok', 'ok']);
    expect(diffFiles(before, await captureFiles([{ path: sentinelDir(), hash: true }]))).toEqual([]);
  }, 120_000);
});

describe("the teardown's leftover finders", () => {
  it('find a process carrying the run marker, and its child that cleared its environment', async () => {
    const fakeRoot = join(await tempDir('marker'), 'root');
    const c = spawn('sh', ['-c', 'env -i sleep 60 & wait'], { env: { ...process.env, STRATAFS_TEST_ROOT: fakeRoot }, stdio: 'ignore' });
    started.push(c);
    let found: number[] = [];
    for (let i = 0; i < 50 && found.length < 2; i++) {
      await new Promise((res) => setTimeout(res, 50));
      found = (await markedProcesses(fakeRoot, await processes(), process.pid)).map((p) => p.pid);
    }
    expect(found).toContain(c.pid);
    expect(found.length).toBe(2);
    const child = (await processes()).find((p) => p.ppid === c.pid)!;
    expect(child.cmdline).toBe('sleep 60');
    expect(await readFile(`/proc/${child.pid}/environ`, 'latin1')).not.toContain('STRATAFS_TEST_ROOT');
    started.push({ pid: child.pid } as ChildProcess);
  });

  it('find a process in a namespace made after the baseline', async () => {
    const before = await namespaceIds();
    const c = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '60'], { stdio: 'ignore' });
    started.push(c);
    let hits: string[] = [];
    for (let i = 0; i < 50 && hits.length === 0; i++) {
      await new Promise((res) => setTimeout(res, 50));
      hits = inNewNamespaces(before, await processes(), []).map((x) => x.what).filter((w) => w.includes(`pid ${c.pid} `));
    }
    expect(hits).toEqual([expect.stringMatching(/namespace made during the run \(mnt:\[\d+\]\).*sleep 60/)]);
  });

  it('find a loop device and a mount added anywhere', async () => {
    const dir = await tempDir('loop');
    const img = join(dir, 'img');
    await writeFile(img, Buffer.alloc(1 << 20));
    const mountsBefore = await mountKeys();
    const a = await run('losetup', ['-f', '--show', img]);
    expect(a.code, a.stderr.toString()).toBe(0);
    const dev = a.stdout.toString().trim();
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      expect((await loopDevices()).get(dev)).toBe(img);
      expect((await run('mount', ['-t', 'tmpfs', 'tmpfs', mnt])).code).toBe(0);
      expect(diffMounts(mountsBefore, await mountKeys(), []).map((c) => c.what)).toEqual([`mount added: ${mnt} tmpfs tmpfs`]);
    } finally {
      await run('umount', [mnt]);
      await run('losetup', ['-d', dev]);
    }
    expect((await loopDevices()).has(dev) && (await loopDevices()).get(dev) === img).toBe(false);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('runtime files', () => {
  it('tests point STRATAFS_RUNTIME_DIR, TMPDIR and npm\'s cache and logs into the run\'s root', () => {
    expect(process.env.STRATAFS_RUNTIME_DIR).toBe(join(testRoot(), 'run'));
    expect(process.env.TMPDIR).toBe(join(testRoot(), 'tmp'));
    expect(process.env.npm_config_cache).toBe(join(testRoot(), 'npm-cache'));
    expect(process.env.npm_config_logs_dir).toBe(join(testRoot(), 'npm-logs'));
  });
});
