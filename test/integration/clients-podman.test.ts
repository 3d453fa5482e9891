/**
 * podman and buildah, rootful, with each overlay driver: the kernel's, and
 * containers/storage's `mount_program` = fuse-overlayfs or stratafs. Each
 * driver gets its own container sandbox (test/harness/containers.ts): private
 * mount and cgroup namespaces, tmpfs and scratch overlays over every host path
 * the clients write, configuration in scratch. The image is built offline:
 * busybox-static in a rootfs tar, `podman import`.
 *
 * For every driver the same steps run in order: import, run as root (exec of
 * a lower program, of a copied-up one and of one created in the upper), run
 * as --user 1000:1000, `podman build` of a Containerfile whose RUN steps
 * create, delete and rename (directories with lower content) across layers and
 * switch USER, a run of the built image that lists every change, a container
 * that changes the built image and its `podman diff` / `commit` / `export`,
 * `podman save` of the built and committed images (their layer tarballs), and
 * buildah from / run / run --user / copy / commit with a podman run of the
 * result. stratafs must give exactly what the kernel driver gives (files,
 * types, modes, owners, sizes, contents; layer tarballs entry by entry);
 * fuse-overlayfs runs the same steps for the pass/fail and time matrix.
 *
 * Afterwards nothing may be left: no container, no mount, no process in the
 * sandbox's cgroups (conmon, runc, mount daemons), and the host paths container
 * clients write (/var/lib/containers, /etc/containers, /run/libpod, /dev/shm,
 * cgroups...) as they were. The matrix (pass/fail and wall time of each step)
 * is printed, and appended as JSON lines to $STRATAFS_CLIENT_MATRIX if set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { appendFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildBaseTar, clientConfig, ContainerSandbox, DRIVERS, hostSnapshot, missingTools, snapshotDiff, tarListing,
  type ClientConfig, type Driver, type Timed,
} from '../harness/containers.js';
import { REPO_ROOT, STRATAFS_BIN, tempDir } from '../harness/mounts.js';
import { run } from '../harness/proc.js';

const missing = process.getuid?.() === 0
  ? missingTools(['podman', 'buildah', 'runc', 'conmon', 'busybox', 'fuse-overlayfs', 'nsenter'])
  : ['(not root)'];
const why = missing.length > 0 ? `missing: ${missing.join(' ')}` : '';

interface Cell { ok: boolean; ms: number }
const matrix = new Map<string, Map<Driver, Cell>>();

interface DriverState {
  sb?: ContainerSandbox;
  cfg?: ClientConfig;
  out: Map<string, string>;
  layers: Map<string, string[][]>;
}
const state = new Map<Driver, DriverState>(DRIVERS.map((d) => [d, { out: new Map(), layers: new Map() }]));
let work = '';
let baseTar = '';
let hostBefore: string[] = [];

/** Runs a client command in the driver's sandbox, records it in the matrix under `step`, and fails with its stderr unless it exited 0. */
async function client(d: Driver, step: string, argv: string[], opts: { input?: Buffer; expectFail?: boolean } = {}): Promise<Timed> {
  const st = state.get(d)!;
  if (!st.sb || !st.cfg) throw new Error(`${d}: no sandbox`);
  const r = await st.sb.exec(argv, { env: st.cfg.env, input: opts.input });
  const ok = r.code === 0;
  const row = matrix.get(step) ?? new Map<Driver, Cell>();
  const prev = row.get(d);
  // a step made of several commands: times add up, one failure fails it
  row.set(d, { ok: ok && (prev?.ok ?? true), ms: r.ms + (prev?.ms ?? 0) });
  matrix.set(step, row);
  if (!ok) throw new Error(`${d}: ${argv.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${r.err.trim().slice(-2000)}\n${r.out.slice(-1000)}`);
  return r;
}

/** Lists a directory tree in the container: path, mode, owner, size, link target or content. */
const MANIFEST = `for p in $(find "$@" 2>/dev/null | sort); do
  stat -c '%n %A %u:%g %s' "$p"
  if [ -L "$p" ]; then echo "  -> $(readlink "$p")"; elif [ -f "$p" ]; then sed 's/^/  | /' "$p"; fi
done`;

const CONTAINERFILE = `FROM localhost/base:1
RUN mkdir -p /data/sub/deep && echo one > /data/sub/f1 && echo deep > /data/sub/deep/f \\
 && echo gone > /data/gone.txt && mkdir /data/gonedir && echo y > /data/gonedir/y \\
 && chown -R 1000:1000 /data/sub && chmod 0640 /data/sub/f1 && ln -s sub/f1 /data/link \\
 && rm /opt/del && rm -rf /opt/dir-del && mv /opt/old /opt/renamed && echo more >> /opt/keep/file
RUN mv /data/sub /data/moved && rm /data/gone.txt && rm -rf /data/gonedir && echo again >> /data/moved/f1 \\
 && mkdir /opt/dir-del && echo fresh > /opt/dir-del/new && chmod 0700 /opt/renamed && mv /opt/renamed/sub /opt/renamed/sub2
USER 1000:1000
RUN id -u > /home/user/whoami && echo user > /tmp/userfile && mkdir /home/user/made
USER root
RUN chown 1000:1000 /opt/keep/file && touch /data/moved/deep/f2 && ln /opt/keep/file /opt/keep/hard
USER 1000
`;

/** What every driver must show after the build: the change of each RUN step. */
const BUILT_MANIFEST = `/data drwxr-xr-x 0:0 SIZE
/data/gonedir MISSING
/data/link lrwxrwxrwx 0:0 6
  -> sub/f1
/data/moved drwxr-xr-x 1000:1000 SIZE
/data/moved/deep drwxr-xr-x 1000:1000 SIZE
/data/moved/deep/f -rw-r--r-- 1000:1000 5
  | deep
/data/moved/deep/f2 -rw-r--r-- 0:0 0
/data/moved/f1 -rw-r----- 1000:1000 10
  | one
  | again
/data/sub MISSING
/opt drwxr-xr-x 0:0 SIZE
/opt/del MISSING
/opt/dir-del drwxr-xr-x 0:0 SIZE
/opt/dir-del/new -rw-r--r-- 0:0 6
  | fresh
/opt/keep drwxr-xr-x 0:0 SIZE
/opt/keep/file -rw-r--r-- 1000:1000 10
  | keep
  | more
/opt/keep/hard -rw-r--r-- 1000:1000 10
  | keep
  | more
/opt/old MISSING
/opt/renamed drwx------ 0:0 SIZE
/opt/renamed/a -rw-r--r-- 0:0 2
  | a
/opt/renamed/sub2 drwxr-xr-x 0:0 SIZE
/opt/renamed/sub2/b -rw-r--r-- 0:0 2
  | b
/tmp/userfile -rw-r--r-- 1000:1000 5
  | user
/home/user/made drwxr-xr-x 1000:1000 SIZE
/home/user/whoami -rw-r--r-- 1000:1000 5
  | 1000`;

/** Directory sizes differ between filesystems (tmpfs, FUSE, ext4); everything else must not. */
const normDirSizes = (s: string): string => s.replace(/^(\/\S+ d\S+ \d+:\d+) \d+$/gm, '$1 SIZE');

/** The layer tarballs of an image, each as a sorted listing (podman save, docker-archive: uncompressed layers in order). */
async function imageLayers(d: Driver, image: string, name: string): Promise<string[][]> {
  const dir = join(work, d);
  const archive = join(dir, `${name}.tar`);
  await client(d, 'podman save', ['podman', 'save', '--format', 'docker-archive', '-o', archive, image]);
  const x = join(dir, `${name}-x`);
  await mkdir(x, { recursive: true });
  const r = await run('tar', ['-xf', archive, '-C', x], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`unpacking ${archive}: ${r.stderr.toString()}`);
  const manifest = JSON.parse(await readFile(join(x, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
  const out: string[][] = [];
  for (const l of manifest[0]!.Layers) out.push(await tarListing(join(x, l)));
  return out;
}

/** Keeps a result for the comparison, and in a file for a post-mortem (STRATAFS_KEEP_TMP=1). */
function record(d: Driver, key: string, value: string): void {
  state.get(d)!.out.set(key, value);
  writeFileSync(join(work, d, `${key}.txt`), value);
}
/** stratafs must equal the kernel driver; fuse-overlayfs is recorded only (the matrix). */
function expectLikeKernel(d: Driver, key: string): void {
  if (d !== 'stratafs') return;
  const k = state.get('kernel')!.out.get(key);
  expect(k, `kernel driver result for ${key}`).toBeDefined();
  expect(state.get(d)!.out.get(key), key).toEqual(k);
}

/** The storage.conf blocks of the README's "Use with podman and buildah" section, rootful first. */
function readmeStorageConfs(): string[] {
  const text = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = text.indexOf('\n## Use with podman and buildah');
  if (start < 0) return [];
  const end = text.indexOf('\n## ', start + 1);
  const section = text.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/**
 * Layer tarballs of `podman build`: with a mount_program containers/storage
 * makes each layer by comparing two mounted views ("naive diff"); with the
 * kernel driver it reads the upper directory ("native diff"), and then also
 * lists a directory whose mtime a RUN step touched (buildah's /run mount
 * point) although nothing in it changed. So: every entry other than a
 * directory as the kernel driver has it, directories a subset of the kernel
 * driver's, and the whole layer exactly as fuse-overlayfs (the same naive diff).
 */
function expectLayersLikeKernel(d: Driver, key: string): void {
  if (d !== 'stratafs') return;
  const mine = state.get(d)!.layers.get(key)!;
  const kernel = state.get('kernel')!.layers.get(key);
  const fo = state.get('fuse-overlayfs')!.layers.get(key);
  expect(kernel, `kernel driver layers of ${key}`).toBeDefined();
  expect(mine.length, `${key}: number of layers`).toBe(kernel!.length);
  const isDir = (l: string): boolean => / d[rwxsStT-]{9} /.test(l);
  mine.forEach((layer, i) => {
    expect(layer.filter((l) => !isDir(l)), `${key} layer ${i}: files, links, whiteouts`).toEqual(kernel![i]!.filter((l) => !isDir(l)));
    const kDirs = new Set(kernel![i]!.filter(isDir));
    expect(layer.filter(isDir).filter((l) => !kDirs.has(l)), `${key} layer ${i}: directories the kernel driver's layer lacks`).toEqual([]);
  });
  if (fo) expect(mine, `${key}: layers as fuse-overlayfs makes them`).toEqual(fo);
}

describe.skipIf(missing.length > 0)(`podman and buildah on each overlay driver ${why}`, () => {
  beforeAll(async () => {
    hostBefore = await hostSnapshot();
    work = await tempDir('clients-podman');
    baseTar = await buildBaseTar(work);
    await mkdir(join(work, 'ctx'));
    await writeFile(join(work, 'ctx', 'Containerfile'), CONTAINERFILE);
    await mkdir(join(work, 'copy-src', 'sub'), { recursive: true });
    await writeFile(join(work, 'copy-src', 'f'), 'copied\n', { mode: 0o640 });
    await writeFile(join(work, 'copy-src', 'sub', 'g'), 'deeper\n', { mode: 0o755 });
  }, 60_000);

  afterAll(async () => {
    const problems: string[] = [];
    for (const [d, st] of state) {
      if (st.sb) problems.push(...(await st.sb.close()).map((l) => `${d}: left behind: ${l}`));
    }
    const diff = snapshotDiff(hostBefore, await hostSnapshot());
    problems.push(...diff.map((l) => `host changed: ${l}`));
    const lines = ['step'.padEnd(28) + DRIVERS.map((d) => d.padStart(16)).join('')];
    for (const [step, row] of matrix) {
      lines.push(step.padEnd(28) + DRIVERS.map((d) => {
        const c = row.get(d);
        return (c ? `${c.ok ? 'ok' : 'FAIL'} ${(c.ms / 1000).toFixed(2)}s` : '-').padStart(16);
      }).join(''));
    }
    console.log(`podman/buildah matrix (rootful; wall time per step):\n${lines.join('\n')}`);
    // fuse-overlayfs is not judged, but where it differs from the kernel driver is worth knowing
    const k = state.get('kernel')!.out;
    for (const [key, v] of state.get('fuse-overlayfs')!.out) {
      if (k.has(key) && k.get(key) !== v) {
        const a = new Set(k.get(key)!.split('\n'));
        const b = new Set(v.split('\n'));
        const delta = [...[...a].filter((l) => !b.has(l)).map((l) => `  kernel only: ${l}`), ...[...b].filter((l) => !a.has(l)).map((l) => `  fuse-overlayfs only: ${l}`)];
        console.log(`fuse-overlayfs differs from the kernel driver in ${key}:\n${delta.slice(0, 40).join('\n')}`);
      }
    }
    if (process.env.STRATAFS_CLIENT_MATRIX) {
      const rows = [...matrix].flatMap(([step, row]) => [...row].map(([driver, c]) => JSON.stringify({ mode: 'rootful', step, driver, ...c })));
      await appendFile(process.env.STRATAFS_CLIENT_MATRIX, rows.map((r) => r + '\n').join(''));
    }
    expect(problems).toEqual([]);
  }, 120_000);

  describe.each(DRIVERS)('%s', (d) => {
    const st = state.get(d)!;

    it('sandbox, configuration and `podman import` of the busybox image', async () => {
      st.sb = await ContainerSandbox.open(`podman-${d}`);
      st.cfg = await clientConfig(join(work, d), d);
      await client(d, 'podman import', ['podman', 'import', baseTar, 'localhost/base:1']);
      const info = await client(d, 'podman info', ['podman', 'info', '--format', '{{.Store.GraphDriverName}} {{index .Store.GraphOptions "overlay.mount_program"}}']);
      expect(info.out).toMatch(/^overlay /);
      if (d !== 'kernel') expect(info.out).toContain(`mount-${d}`);
    });

    it('podman run as root: exec of lower, copied-up and upper programs', async () => {
      const r = await client(d, 'podman run (root)', ['podman', 'run', '--rm', '--pull=never', '--network=none', 'localhost/base:1', 'sh', '-c',
        'id; stat -c "%n %A %u:%g %s" /etc/passwd; chmod 0755 /bin/busybox && /bin/busybox true && echo copied-up-exec; ' +
        'mkdir /tmp/u && cp /bin/busybox /tmp/u/ && /tmp/u/busybox echo upper-exec; echo hi > /tmp/x && cat /tmp/x; rm /opt/del; ls /opt'], {});
      expect(r.out).toContain('uid=0(root) gid=0(root)');
      expect(r.out).toContain('copied-up-exec');
      expect(r.out).toContain('upper-exec');
      record(d, 'run-root', r.out);
      expectLikeKernel(d, 'run-root');
    });

    it('podman run --user 1000:1000 reaches the root filesystem and is refused where it should be', async () => {
      const r = await client(d, 'podman run --user 1000', ['podman', 'run', '--rm', '--pull=never', '--network=none', '--user', '1000:1000', 'localhost/base:1', 'sh', '-c',
        'id; echo u > /tmp/u && stat -c "%n %A %u:%g %s" /tmp/u; touch /home/user/h && stat -c "%n %A %u:%g %s" /home/user/*; ' +
        'touch /etc/nope 2>&1; cat /root/x 2>&1; echo more >> /opt/keep/file 2>&1; true']);
      expect(r.out).toContain('uid=1000(user) gid=1000(user)');
      expect(r.out).toMatch(/touch: \/etc\/nope: Permission denied/);
      record(d, 'run-user', r.out);
      expectLikeKernel(d, 'run-user');
    });

    it('podman build: create, delete, rename across layers, USER switches', async () => {
      await client(d, 'podman build', ['podman', 'build', '--network=none', '--pull=never', '-t', 'localhost/built:1', join(work, 'ctx')]);
      // the image's USER is 1000: the uid check runs as that, the listing as root (/opt/renamed is 0700)
      const r = await client(d, 'podman run (built image)', ['podman', 'run', '--rm', '--pull=never', '--network=none', 'localhost/built:1', 'sh', '-c',
        'echo "uid $(id -u)"']);
      expect(r.out).toBe('uid 1000\n');
      const m = await client(d, 'podman run (built image)', ['podman', 'run', '--rm', '--pull=never', '--network=none', '--user', '0', 'localhost/built:1', 'sh', '-c',
        `${MANIFEST}; for p in /data/gonedir /data/sub /opt/del /opt/old; do [ -e $p ] || echo "$p MISSING"; done`, 'manifest',
        '/data', '/opt', '/tmp/userfile', '/home/user/made', '/home/user/whoami']);
      const got = normDirSizes(m.out.trim()).split('\n');
      // lines of BUILT_MANIFEST are in sorted-path order per block; compare as sets of entries
      const entries = (lines: string[]): string[] => {
        const out: string[] = [];
        for (const l of lines) {
          if (l.startsWith('  ') && out.length > 0) out[out.length - 1] += '\n' + l;
          else out.push(l);
        }
        return out.sort();
      };
      expect(entries(got)).toEqual(entries(BUILT_MANIFEST.split('\n')));
      record(d, 'built-manifest', m.out);
      expectLikeKernel(d, 'built-manifest');
    });

    it('podman diff, commit and export of a container that changes the built image', async () => {
      await client(d, 'podman create+start', ['podman', 'create', '--pull=never', '--name', 'changer', '--network=none', '--user', '0', 'localhost/built:1', 'sh', '-c',
        'rm /opt/keep/file && mv /data/moved /data/moved2 && echo new > /new && chmod 600 /etc/passwd && mkdir /opt/renamed/sub2/n ' +
        '&& rm -rf /opt/dir-del && echo x >> /data/moved2/deep/f && chown 1000 /opt/renamed/a']);
      await client(d, 'podman create+start', ['podman', 'start', '-a', 'changer']);
      const diff = await client(d, 'podman diff', ['podman', 'diff', 'changer']);
      record(d, 'diff', diff.out.split('\n').filter(Boolean).sort().join('\n'));
      expect(state.get(d)!.out.get('diff')).toContain('A /new');
      await client(d, 'podman commit', ['podman', 'commit', 'changer', 'localhost/committed:1']);
      const exp = join(work, d, 'changer-export.tar');
      await client(d, 'podman export', ['podman', 'export', '-o', exp, 'changer']);
      record(d, 'export', (await tarListing(exp)).join('\n'));
      const layers = await imageLayers(d, 'localhost/committed:1', 'committed');
      record(d, 'committed-top-layer', layers[layers.length - 1]!.join('\n'));
      const built = await imageLayers(d, 'localhost/built:1', 'built');
      st.layers.set('built', built);
      record(d, 'built-layers', built.map((l) => l.join('\n')).join('\n=====\n'));
      await client(d, 'podman rm', ['podman', 'rm', 'changer']);
      const rc = await client(d, 'podman run (committed)', ['podman', 'run', '--rm', '--pull=never', '--network=none', 'localhost/committed:1', 'sh', '-c',
        `${MANIFEST}`, 'manifest', '/new', '/data', '/opt/keep', '/opt/renamed', '/opt/dir-del']);
      record(d, 'committed-manifest', normDirSizes(rc.out));
      for (const key of ['diff', 'export', 'committed-top-layer', 'committed-manifest']) expectLikeKernel(d, key);
      expectLayersLikeKernel(d, 'built');
    });

    it('buildah from, run, run --user 1000, copy, commit; podman run of the result', async () => {
      const from = await client(d, 'buildah from', ['buildah', 'from', '--pull=never', 'localhost/base:1']);
      const c = from.out.trim().split('\n').pop()!;
      await client(d, 'buildah run', ['buildah', 'run', '--network', 'none', c, '--', 'sh', '-c',
        'echo built > /opt/b && rm /opt/del && mv /opt/old /opt/moved && echo again >> /opt/moved/a && id -u > /opt/id']);
      await client(d, 'buildah run --user 1000', ['buildah', 'run', '--network', 'none', '--user', '1000:1000', c, '--', 'sh', '-c',
        'id -u > /tmp/uid && echo hi > /home/user/f && (touch /opt/nope 2>/tmp/denied || true)']);
      await client(d, 'buildah copy', ['buildah', 'copy', c, join(work, 'copy-src'), '/copied']);
      await client(d, 'buildah commit', ['buildah', 'commit', c, 'localhost/bimg:1']);
      await client(d, 'buildah rm', ['buildah', 'rm', c]);
      const r = await client(d, 'podman run (buildah image)', ['podman', 'run', '--rm', '--pull=never', '--network=none', 'localhost/bimg:1', 'sh', '-c',
        `${MANIFEST}`, 'manifest', '/opt', '/tmp/uid', '/tmp/denied', '/home/user/f', '/copied']);
      const m = normDirSizes(r.out);
      expect(m).toContain('/opt/moved/a -rw-r--r-- 0:0 8\n  | a\n  | again');
      expect(m).toContain('/tmp/uid -rw-r--r-- 1000:1000 5\n  | 1000');
      expect(m).toContain('/copied/f -rw-r----- 0:0 7\n  | copied');
      expect(m).toContain('/copied/sub/g -rwxr-xr-x 0:0 7');
      expect(m).toMatch(/\/tmp\/denied .*\n {2}\| touch: \/opt\/nope: Permission denied/);
      expect(m).not.toContain('/opt/del ');
      expect(m).not.toContain('/opt/old');
      record(d, 'buildah-manifest', m);
      record(d, 'buildah-layers', (await imageLayers(d, 'localhost/bimg:1', 'bimg')).map((l) => l.join('\n')).join('\n=====\n'));
      expectLikeKernel(d, 'buildah-manifest');
      expectLikeKernel(d, 'buildah-layers');
    });

    it('nothing is left: containers, mounts, processes', async () => {
      await client(d, 'cleanup', ['podman', 'rm', '-af']);
      await client(d, 'cleanup', ['buildah', 'rm', '-a']);
      await client(d, 'cleanup', ['podman', 'rmi', '-af']);
      const ps = await client(d, 'cleanup', ['podman', 'ps', '-aq']);
      expect(ps.out.trim()).toBe('');
      const mounts = (await readFile(`/proc/${st.sb!.holderPid}/mountinfo`, 'latin1')).split('\n')
        .filter((l) => / - (fuse|overlay)/.test(l) && l.includes('/var/lib/containers/'));
      expect(mounts).toEqual([]);
      // nothing written to /etc/containers or /var/lib outside the sandbox's tmpfs there
      expect(await st.sb!.strayWrites()).toEqual([]);
      const left = await st.sb!.close();
      expect(left).toEqual([]);
    });
  });

  describe('the README\'s rootful storage.conf, on a store fuse-overlayfs made', () => {
    let sb: ContainerSandbox | undefined;
    afterAll(async () => {
      if (sb) expect(await sb.close()).toEqual([]);
    });

    it('switches an existing store to stratafs and runs containers as root and as --user 1000', async () => {
      const snippets = readmeStorageConfs();
      expect(snippets.length, 'toml blocks in the README section').toBe(2);
      sb = await ContainerSandbox.open('podman-readme');
      const dir = join(work, 'readme');
      // what `npm install -g` makes: a link named stratafs to the package's bin/stratafs (which finds node on PATH)
      await mkdir(join(dir, 'bin'), { recursive: true });
      await symlink(STRATAFS_BIN, join(dir, 'bin', 'stratafs'));
      const conf = snippets[0]!.replaceAll('/usr/local/bin/stratafs', join(dir, 'bin', 'stratafs'));
      expect(conf).toContain(join(dir, 'bin', 'stratafs'));
      const fo = await clientConfig(join(dir, 'fo'), 'fuse-overlayfs');
      const rd = await clientConfig(join(dir, 'stratafs'), 'stratafs', { storageConf: conf });
      const x = async (env: NodeJS.ProcessEnv, argv: string[]): Promise<string> => {
        const r = await sb!.exec(argv, { env });
        if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.err.trim()}`);
        return r.out;
      };
      await x(fo.env, ['podman', 'import', baseTar, 'localhost/base:1']);
      await x(fo.env, ['podman', 'create', '--pull=never', '--name', 'old', '--network=none', 'localhost/base:1', 'sh', '-c',
        'echo run >> /old-file && grep " / " /proc/mounts | cut -d" " -f3']);
      expect(await x(fo.env, ['podman', 'start', '-a', 'old'])).toBe('fuse.fuse-overlayfs\n');
      // the same container, started again on stratafs: its upper is read and written by stratafs
      expect(await x(rd.env, ['podman', 'start', '-a', 'old'])).toBe('fuse.stratafs\n');
      expect(await x(rd.env, ['podman', 'diff', 'old'])).toContain('A /old-file');
      expect(await x(rd.env, ['podman', 'run', '--rm', '--pull=never', '--network=none', '--user', '1000:1000', 'localhost/base:1', 'sh', '-c',
        'id -u; cat /etc/group | wc -l; echo x > /tmp/f && ls -n /tmp/f | cut -c1-30'])).toMatch(/^1000\n2\n-rw-r--r-- +1 1000 +1000 /);
      const back = await x(fo.env, ['podman', 'commit', 'old', 'localhost/old:1']);
      expect(back).toMatch(/[0-9a-f]{64}/);
      expect(await x(rd.env, ['podman', 'run', '--rm', '--pull=never', '--network=none', 'localhost/old:1', 'cat', '/old-file'])).toBe('run\nrun\n');
      await x(rd.env, ['podman', 'rm', '-af']);
      await x(rd.env, ['podman', 'rmi', '-af']);
      expect(await sb.close()).toEqual([]);
    });
  });
});
