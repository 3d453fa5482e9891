/**
 * The image commands through the real CLI (node dist/cli/main.js) in child
 * processes: output, --json, exit codes and messages, sizes.
 */
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync, existsSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { cli, runText, STRATAFS_CLI, waitFor } from '../harness/cli-mount.js';

let base: string;
const sh = (cmd: string, cwd?: string): string => execFileSync('bash', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const sha = (f: string): string => 'sha256:' + createHash('sha256').update(readFileSync(f)).digest('hex');

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'stratafs-imgcli-'));
});
afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

describe('stratafs layer / image / diff / commit / size', () => {
  test('layer import: text and --json, reuse, and no progress bar when not a TTY', async () => {
    const src = join(base, 'l1');
    mkdirSync(join(src, 'etc'), { recursive: true });
    writeFileSync(join(src, 'etc', 'os-release'), 'ID=demo\n');
    writeFileSync(join(src, 'big'), Buffer.alloc(6 << 20, 3)); // above the progress bar threshold
    sh(`tar -C ${src} -czf ${base}/l1.tar.gz .`);
    const store = join(base, 'store');
    const r = await cli(['layer', 'import', join(base, 'l1.tar.gz'), '--store', store]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^imported sha256:[0-9a-f]{64}\n/);
    expect(r.stdout).toContain(`blob ${sha(join(base, 'l1.tar.gz'))} (gzip`);
    expect(r.stderr).toBe('');
    const j = await cli(['layer', 'import', join(base, 'l1.tar.gz'), '--store', store, '--json']);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout);
    expect(parsed.reused).toBe(true);
    expect(readFileSync(join(parsed.snapshot, 'etc/os-release'), 'utf8')).toBe('ID=demo\n');
    const ls = JSON.parse((await cli(['layer', 'ls', '--store', store, '--json'])).stdout);
    expect(ls).toHaveLength(1);
    expect(ls[0].diffId).toBe(parsed.diffId);
  });

  test('layer import failures: exit 1, one line naming the cause, store unchanged', async () => {
    const store = join(base, 'store-bad');
    const evil = join(base, 'evil.tar');
    execFileSync('python3', ['-c', `
import tarfile, io
with tarfile.open('${evil}', 'w') as t:
    i = tarfile.TarInfo('../../escape'); i.size = 5
    t.addfile(i, io.BytesIO(b'pwned'))`]);
    const r = await cli(['layer', 'import', evil, '--store', store]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('stratafs: EINVAL: extract ../../escape (name has a ".." component)\n');
    const d = await cli(['layer', 'import', evil, '--store', store, '--digest', 'sha256:' + 'a'.repeat(64)]);
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/^stratafs: EBADMSG: layer import .*evil\.tar \(digest mismatch: expected sha256:a{64}, file has sha256:[0-9a-f]{64}\)\n$/);
    expect(readdirSync(join(store, 'snapshots'))).toEqual([]);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    expect(existsSync(join(base, '..', 'escape'))).toBe(false);
  });

  test('image import, ls, lowers; diff, commit and size of an upper over the image', async () => {
    const store = join(base, 'store-img');
    // an OCI layout with two layers, made with umoci
    const layout = join(base, 'layout');
    const b = join(base, 'bundle');
    sh(`umoci init --layout ${layout} && umoci new --image ${layout}:t && umoci unpack --image ${layout}:t ${b}`);
    sh(`mkdir -p ${b}/rootfs/app ${b}/rootfs/etc && echo 1 > ${b}/rootfs/app/one && echo cfg > ${b}/rootfs/etc/app.conf && umoci repack --image ${layout}:t ${b} && rm -rf ${b}`);
    sh(`umoci unpack --image ${layout}:t ${b} && echo 2 > ${b}/rootfs/app/two && umoci repack --image ${layout}:t ${b} && rm -rf ${b}`);
    const imp = await cli(['image', 'import', layout, '--store', store, '--name', 'demo:1']);
    expect(imp.code).toBe(0);
    expect(imp.stdout).toMatch(/^image demo:1: 2 layers, config sha256:/);
    const ls = await cli(['image', 'ls', '--store', store]);
    expect(ls.stdout).toMatch(/^demo:1 {2}2 layers {2}sha256:/);
    const lowersJson = JSON.parse((await cli(['image', 'lowers', 'demo:1', '--store', store, '--json'])).stdout) as string[];
    expect(lowersJson).toHaveLength(2);
    const lowersText = (await cli(['image', 'lowers', 'demo:1', '--store', store])).stdout.trim();
    expect(lowersText).toBe(lowersJson.join(':'));

    // an upper as a container would leave it: a new file, a changed file, a whiteout
    const up = join(base, 'upper');
    mkdirSync(join(up, 'app'), { recursive: true });
    mkdirSync(join(up, 'etc'));
    writeFileSync(join(up, 'app', 'new'), 'new\n');
    writeFileSync(join(up, 'etc', 'app.conf'), 'changed config\n');
    sh(`mknod ${up}/app/one c 0 0`);
    const d = await cli(['diff', '--image', 'demo:1', '--store', store, '--upper', up]);
    expect(d.code).toBe(0);
    expect(d.stdout).toBe('C /app\nA /app/new\nD /app/one\nC /etc\nC /etc/app.conf\n');
    const dj = JSON.parse((await cli(['diff', '-o', `lowerdir=${lowersText},upperdir=${up}`, '--json'])).stdout);
    expect(dj).toContainEqual({ kind: 'D', path: '/app/one' });

    const out = join(base, 'c.tar.gz');
    const c = await cli(['commit', '--image', 'demo:1', '--store', store, '--upper', up, '--output', out, '--json']);
    expect(c.code).toBe(0);
    const cr = JSON.parse(c.stdout);
    expect(cr.blobDigest).toBe(sha(out));
    expect(cr.whiteouts).toBe(1);
    const c2 = await cli(['commit', '-o', `lowerdir=${lowersText},upperdir=${up}`, '--output', join(base, 'c2.tar.gz')]);
    expect(c2.stdout).toContain(`blob digest ${cr.blobDigest}`);
    expect(c2.stdout).toContain(`diff-id     ${cr.diffId}`);
    // the committed layer goes back into the store on top of the image
    const back = JSON.parse((await cli(['layer', 'import', out, '--store', store, '--json'])).stdout);
    expect(back.diffId).toBe(cr.diffId);
    expect(readdirSync(join(back.snapshot, 'app')).sort()).toEqual(['.wh.one', 'new']);

    const sz = JSON.parse((await cli(['size', '--image', 'demo:1', '--store', store, '--upper', up, '--json'])).stdout);
    expect(sz.writable.bytes).toBe(4 + 15); // "new\n" + "changed config\n"
    expect(sz.virtual).toBe(sz.writable.bytes + 2 + 4 + 2); // one, app.conf, two
    const szText = await cli(['size', '-o', `lowerdir=${lowersText},upperdir=${up}`]);
    expect(szText.stdout).toBe('19 B (virtual 27 B)\n');
  });

  test('size of a store: per image, shared layers counted once', async () => {
    const store = join(base, 'store-size');
    const mk = (name: string, files: Record<string, number>): string => {
      const d = join(base, name);
      mkdirSync(d);
      for (const [f, n] of Object.entries(files)) writeFileSync(join(d, f), Buffer.alloc(n, 1));
      sh(`tar -C ${d} -cf ${base}/${name}.tar .`);
      return `${base}/${name}.tar`;
    };
    const shared = mk('s-base', { a: 1000 });
    const x = mk('s-x', { x: 200 });
    const y = mk('s-y', { y: 30 });
    const layoutOf = (name: string, layers: string[]): string => {
      const l = join(base, name);
      sh(`umoci init --layout ${l} && umoci new --image ${l}:t`);
      for (const t of layers) sh(`umoci raw add-layer --image ${l}:t ${t}`);
      return l;
    };
    expect((await cli(['image', 'import', layoutOf('lx', [shared, x]), '--store', store, '--name', 'x'])).code).toBe(0);
    expect((await cli(['image', 'import', layoutOf('ly', [shared, y]), '--store', store, '--name', 'y'])).code).toBe(0);
    const s = JSON.parse((await cli(['size', '--store', store, '--json'])).stdout);
    expect(s.images).toEqual([
      { name: 'x', layers: 2, size: 1200, unique: 200, shared: 1000 },
      { name: 'y', layers: 2, size: 1030, unique: 30, shared: 1000 },
    ]);
    expect(s.shared).toBe(1000);
    expect(s.total).toBe(1230);
    const text = (await cli(['size', '--store', store])).stdout;
    expect(text).toContain('shared between images (counted once): 1.00 kB; store total: 1.23 kB');
  });

  test('bad stack arguments are one-line errors', async () => {
    const r = await cli(['diff']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^stratafs: name the layers one way/);
    const r2 = await cli(['commit', '-o', `lowerdir=${base}`, '--output', join(base, 'x.tgz')]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/no upper dir/);
    const r3 = await cli(['diff', base]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/not a stratafs or overlay mount/);
  });

  test('as an unprivileged user: setuid bits and owners not kept, trusted.* xattrs reported, devices refused', async () => {
    const src = join(base, 'nr-src');
    mkdirSync(src);
    sh(`echo x > suid && chown 1234:1234 suid && chmod 4755 suid && setfattr -n user.note -v kept suid && setfattr -n trusted.secret -v no suid && mkfifo pipe`, src);
    sh(`tar --format=posix --xattrs --xattrs-include='*' -C ${src} -cf ${base}/nr.tar .`);
    const dir = join(base, 'nr');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    chmodSync(base, 0o755); // mkdtemp made it 0700: nobody could not reach the tarball or the store
    const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, STRATAFS_CLI];
    const r = await runText('setpriv', [...asNobody, 'layer', 'import', `${base}/nr.tar`, '--store', join(dir, 'store')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('xattr trusted.secret not kept (EPERM)');
    const snap = r.stdout.match(/lowerdir (\S+)/)![1]!;
    const st = statSync(join(snap, 'suid'));
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(65534);
    expect(sh(`getfattr --only-values -n user.note ${join(snap, 'suid')}`)).toBe('kept');
    expect(statSync(join(snap, 'pipe')).isFIFO()).toBe(true);
    const dev = join(base, 'dev.tar');
    sh(`mknod ${src}/null c 1 3 && tar -C ${src} -cf ${dev} null`);
    const d = await runText('setpriv', [...asNobody, 'layer', 'import', dev, '--store', join(dir, 'store')]);
    expect(d.code).toBe(1);
    expect(d.stderr).toBe('stratafs: EPERM: extract null (device nodes are not permitted (not root, or --no-devices))\n');
  });

  test('an interrupted import leaves nothing: SIGINT cleans up, a killed one is swept on the next open', async () => {
    const src = join(base, 'int-src');
    mkdirSync(src);
    for (let i = 0; i < 64; i++) writeFileSync(join(src, `f${i}`), Buffer.alloc(4 << 20, i));
    sh(`tar -C ${src} -cf ${base}/int.tar .`);
    for (const sig of ['SIGINT', 'SIGKILL'] as const) {
      const store = join(base, `store-${sig}`);
      const child = spawn(process.execPath, [STRATAFS_CLI, 'layer', 'import', `${base}/int.tar`, '--store', store], { stdio: 'ignore' });
      const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      // wait until it is unpacking (its temp dir has files), then interrupt it
      const started = await waitFor(() => {
        try {
          const t = readdirSync(join(store, 'tmp'));
          return t.length > 0 && existsSync(join(store, 'tmp', t[0]!, 'fs', 'f1'));
        } catch { return false; }
      }, 20_000, 5);
      expect(started).toBe(true);
      child.kill(sig);
      await exited;
      expect(readdirSync(join(store, 'snapshots'))).toEqual([]);
      if (sig === 'SIGINT') expect(readdirSync(join(store, 'tmp'))).toEqual([]);
      // the next command on the store sweeps what a dead import left
      const ls = await cli(['layer', 'ls', '--store', store]);
      expect(ls.code).toBe(0);
      expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    }
  });

  test('a progress bar on a terminal (script(1) gives the CLI a TTY), none with --json', () => {
    const src = join(base, 'tty-src');
    mkdirSync(src);
    writeFileSync(join(src, 'big'), Buffer.alloc(8 << 20, 5));
    sh(`tar -C ${src} -cf ${base}/tty.tar .`);
    const onTty = (extra: string): string =>
      sh(`script -qec "${process.execPath} ${STRATAFS_CLI} layer import ${base}/tty.tar --store ${base}/store-tty-$RANDOM ${extra}" /dev/null`);
    expect(onTty('')).toMatch(/tty\.tar \[█+\] 100% 9\/9 MiB/); // 8 MiB of data + tar headers, rounded up
    const j = onTty('--json');
    expect(j).not.toContain('█');
    expect(j).toContain('"reused": false');
  });
});
