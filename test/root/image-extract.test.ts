/**
 * Safe extraction and layer import, on tarballs made by real tools (GNU tar,
 * python's tarfile, gzip), hostile ones included. Each hostile case must fail
 * with an error naming the offending entry, leave no snapshot and no temp dir
 * in the store, and write nothing outside it.
 */
import { describe, test, expect, beforeEach, afterEach } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, lstatSync, statSync, truncateSync, rmSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { Store } from '../../src/image/store.js';
import { importLayer } from '../../src/image/import-layer.js';
import { FsError } from '../../src/shared/errors.js';

let base: string;
let outside: string;
let store: Store;

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'stratafs-img-'));
  outside = join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'canary'), 'original\n');
  store = Store.open(join(base, 'store'));
});
afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

/** Build a tarball with python's tarfile. `body` gets `t` (an open TarFile) and `ti(name, type)` helpers. */
function pyTar(out: string, body: string, fmt = 'PAX_FORMAT'): string {
  const script = `
import tarfile, io, sys
def ti(name, typ=tarfile.REGTYPE, **kw):
    i = tarfile.TarInfo(name); i.type = typ
    for k, v in kw.items(): setattr(i, k, v)
    return i
def add(t, name, data=b'', typ=tarfile.REGTYPE, **kw):
    i = ti(name, typ, **kw); i.size = len(data) if typ == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
with tarfile.open(sys.argv[1], 'w', format=tarfile.${fmt}) as t:
${body.split('\n').map((l) => '    ' + l).join('\n')}
`;
  execFileSync('python3', ['-c', script, out]);
  return out;
}

function snapshots(): string[] {
  return readdirSync(join(store.dir, 'snapshots'));
}

function expectUntouched(): void {
  expect(snapshots()).toEqual([]);
  expect(readdirSync(join(store.dir, 'tmp'))).toEqual([]);
  expect(readdirSync(outside)).toEqual(['canary']);
  expect(readFileSync(join(outside, 'canary'), 'utf8')).toBe('original\n');
}

async function expectRefused(file: string, entry: string | RegExp, code?: string): Promise<FsError> {
  let err: unknown;
  try {
    await importLayer(store, file);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FsError);
  const fe = err as FsError;
  if (typeof entry === 'string') expect(fe.path).toBe(entry);
  else expect(fe.path).toMatch(entry);
  if (code) expect(fe.code).toBe(code);
  expectUntouched();
  return fe;
}

describe('hostile tarballs', () => {
  test('.. component (python tarfile)', async () => {
    const t = pyTar(join(base, 'dotdot.tar'), `add(t, 'ok.txt', b'fine')\nadd(t, '../outside/canary', b'pwned')`);
    const e = await expectRefused(t, '../outside/canary', 'EINVAL');
    expect(e.message).toMatch(/\.\./);
  });

  test('.. in the middle of a name (GNU tar --transform)', async () => {
    const src = join(base, 'src');
    mkdirSync(join(src, 'a'), { recursive: true });
    writeFileSync(join(src, 'a', 'x'), 'pwned');
    const t = join(base, 'gnu-dotdot.tar');
    execFileSync('tar', ['-C', src, '--transform', 's,^a/x$,a/../../outside/x,', '-cf', t, 'a/x']);
    await expectRefused(t, 'a/../../outside/x', 'EINVAL');
  });

  test('absolute path (GNU tar -P)', async () => {
    const t = join(base, 'abs.tar');
    execFileSync('tar', ['-P', '-cf', t, join(outside, 'canary')]);
    await expectRefused(t, join(outside, 'canary'), 'EINVAL');
  });

  test('write through a symlink the archive created', async () => {
    const t = pyTar(join(base, 'symlink-escape.tar'), `add(t, 'esc', typ=tarfile.SYMTYPE, linkname='${outside}')\nadd(t, 'esc/canary', b'pwned')`);
    const e = await expectRefused(t, 'esc/canary', 'ELOOP');
    expect(e.message).toMatch(/symlink/);
  });

  test('relative symlink escape then write beneath it', async () => {
    const t = pyTar(join(base, 'symlink-rel.tar'), `add(t, 'd', typ=tarfile.DIRTYPE)\nadd(t, 'd/up', typ=tarfile.SYMTYPE, linkname='../../outside')\nadd(t, 'd/up/new', b'pwned')`);
    await expectRefused(t, 'd/up/new', 'ELOOP');
  });

  test('directory entry through a symlink', async () => {
    const t = pyTar(join(base, 'symlink-dir.tar'), `add(t, 'l', typ=tarfile.SYMTYPE, linkname='${outside}')\nadd(t, 'l/sub', typ=tarfile.DIRTYPE)`);
    await expectRefused(t, 'l/sub/', 'ELOOP');
  });

  test('hard link pointing outside (absolute)', async () => {
    const t = pyTar(join(base, 'hl-abs.tar'), `add(t, 'h', typ=tarfile.LNKTYPE, linkname='${join(outside, 'canary')}')\nadd(t, 'h', b'pwned')`);
    await expectRefused(t, 'h', 'EINVAL');
  });

  test('hard link pointing outside (..)', async () => {
    const t = pyTar(join(base, 'hl-dotdot.tar'), `add(t, 'h', typ=tarfile.LNKTYPE, linkname='../outside/canary')`);
    const e = await expectRefused(t, 'h', 'EINVAL');
    expect(e.message).toMatch(/hard link target/);
  });

  test('hard link through a symlink the archive created', async () => {
    const t = pyTar(join(base, 'hl-via-symlink.tar'), `add(t, 's', typ=tarfile.SYMTYPE, linkname='${outside}')\nadd(t, 'h', typ=tarfile.LNKTYPE, linkname='s/canary')`);
    await expectRefused(t, 'h', 'ENOENT');
  });

  test('device node when not permitted', async () => {
    const t = pyTar(join(base, 'dev.tar'), `add(t, 'null', typ=tarfile.CHRTYPE, devmajor=1, devminor=3)`);
    let err: unknown;
    try {
      await importLayer(store, t, { extract: { devices: false, owners: false, xattrs: true } });
    } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FsError);
    expect((err as FsError).path).toBe('null');
    expect((err as FsError).code).toBe('EPERM');
    expectUntouched();
  });

  test('name component over 255 bytes', async () => {
    const long = 'n'.repeat(300);
    const t = pyTar(join(base, 'long.tar'), `add(t, 'd/${long}', b'x')`);
    await expectRefused(t, `d/${long}`, 'ENAMETOOLONG');
  });

  test('path over 4095 bytes', async () => {
    const name = Array.from({ length: 20 }, () => 'p'.repeat(250)).join('/');
    const t = pyTar(join(base, 'longpath.tar'), `add(t, '${name}', b'x')`);
    await expectRefused(t, name, 'ENAMETOOLONG');
  });

  test('wrong digest: refused before unpacking', async () => {
    const t = pyTar(join(base, 'ok.tar'), `add(t, 'a', b'x')`);
    let err: unknown;
    try {
      await importLayer(store, t, { digest: 'sha256:' + '0'.repeat(64) });
    } catch (e) { err = e; }
    expect((err as FsError).code).toBe('EBADMSG');
    expect((err as Error).message).toMatch(/digest mismatch/);
    expectUntouched();
  });

  test('file named by a digest it does not have (OCI blob layout)', async () => {
    const dir = join(base, 'blobs', 'sha256');
    mkdirSync(dir, { recursive: true });
    const t = pyTar(join(dir, 'f'.repeat(64)), `add(t, 'a', b'x')`);
    await expect(importLayer(store, t)).rejects.toThrow(/digest mismatch: expected sha256:f{64}/);
    expectUntouched();
  });

  test('truncated gzip', async () => {
    const src = join(base, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'big'), Buffer.alloc(200_000, 7));
    writeFileSync(join(src, 'rand'), createHash('sha512').update('x').digest().toString('hex').repeat(500));
    const t = join(base, 'trunc.tar.gz');
    execFileSync('sh', ['-c', `tar -C ${src} -cf - . | gzip > ${t}`]);
    truncateSync(t, Math.floor(statSync(t).size / 2));
    const e = await expectRefused(t, t, 'EIO');
    expect(e.message).toMatch(/gzip/);
  });

  test('corrupt tar (bad header checksum)', async () => {
    const t = pyTar(join(base, 'corrupt.tar'), `add(t, 'a', b'x' * 600)\nadd(t, 'b', b'y')`);
    const buf = readFileSync(t);
    buf[1536 + 10]! ^= 0xff; // name field of the second header
    writeFileSync(t, buf);
    const e = await expectRefused(t, t, 'EIO');
    expect(e.message).toMatch(/tar/);
  });

  test('truncated plain tar', async () => {
    const t = pyTar(join(base, 'short.tar'), `add(t, 'a', b'x' * 5000)`);
    truncateSync(t, 2048);
    await expectRefused(t, t, 'EIO');
  });

  test('disk full: ENOSPC, nothing left behind', async () => {
    // a 1 MiB tmpfs as the store; a 4 MiB file cannot fit
    const small = join(base, 'small');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    try {
      const s = Store.open(join(small, 'store'));
      const src = join(base, 'src');
      mkdirSync(src);
      writeFileSync(join(src, 'big'), Buffer.alloc(4 << 20, 1));
      const t = join(base, 'big.tar.gz');
      execFileSync('sh', ['-c', `tar -C ${src} -cf - . | gzip > ${t}`]);
      let err: unknown;
      try { await importLayer(s, t); } catch (e) { err = e; }
      expect((err as FsError).code).toBe('ENOSPC');
      expect(readdirSync(join(s.dir, 'snapshots'))).toEqual([]);
      expect(readdirSync(join(s.dir, 'tmp'))).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });
});

describe('what a layer carries is kept', () => {
  test('GNU tar posix: modes, setuid, ns times, xattrs, links, fifo, device, non-UTF-8 name, .wh. kept', async () => {
    const src = join(base, 'src');
    mkdirSync(join(src, 'd'), { recursive: true });
    const sh = (cmd: string): string => execFileSync('sh', ['-c', cmd], { cwd: src }).toString();
    sh(`echo hello > d/f && ln d/f d/hl && ln -s ../d/f d/sl && mkfifo d/p && mknod d/c c 1 3`);
    sh(`chown 1234:5678 d/f && chmod 4755 d/f && touch -h -d '2020-01-02 03:04:05.123456789' d/f d/sl`);
    sh(`setfattr -n user.note -v hi d/f && setfattr -n trusted.x -v t d/f && setfattr -n user.dirnote -v dd d`);
    sh(`printf data > "$(printf 'caf\\351')" && : > .wh.gone && mkdir opq && : > opq/.wh..wh..opq`);
    sh(`mkdir ro && echo r > ro/x && chmod 0555 ro && touch -d '2001-02-03 04:05:06.5' ro d`);
    const t = join(base, 'layer.tar');
    sh(`tar --format=posix --xattrs --xattrs-include='*' -cf ${t} .`);
    sh(`gzip -k ${t}`);
    const r = await importLayer(store, t + '.gz');
    const diffId = 'sha256:' + createHash('sha256').update(readFileSync(t)).digest('hex');
    expect(r.diffId).toBe(diffId);
    expect(r.compression).toBe('gzip');
    expect(r.reused).toBe(false);
    const fs = r.snapshot;
    const stat = (p: string): string => execFileSync('stat', ['-c', '%A %u:%g %h %y %t,%T', p], { cwd: fs }).toString().trim();
    expect(stat('d/f')).toBe('-rwsr-xr-x 1234:5678 2 2020-01-02 03:04:05.123456789 +0000 0,0');
    expect(stat('d/hl')).toBe(stat('d/f'));
    expect(stat('d/sl')).toMatch(/^lrwxrwxrwx 0:0 1 2020-01-02 03:04:05.123456789/);
    expect(readlinkSync(join(fs, 'd/sl'))).toBe('../d/f');
    expect(stat('d/p')).toMatch(/^prw-r--r--/);
    expect(stat('d/c')).toMatch(/^crw-r--r-- .* 1,3$/);
    expect(stat('ro')).toMatch(/^dr-xr-xr-x .* 2001-02-03 04:05:06.500000000/);
    expect(stat('d')).toMatch(/2001-02-03 04:05:06.500000000/);
    const getf = (p: string): string => execFileSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', join(fs, p)]).toString();
    expect(getf('d/f')).toMatch(/user.note="hi"/);
    expect(getf('d/f')).toMatch(/trusted.x="t"/);
    expect(getf('d')).toMatch(/user.dirnote="dd"/);
    const names = readdirSync(Buffer.from(fs), { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
    expect(names).toEqual(['.wh.gone', 'caf\xe9', 'd', 'opq', 'ro']);
    expect(existsSync(join(fs, 'opq/.wh..wh..opq'))).toBe(true);
    expect(r.stats?.whiteouts).toBe(2);

    // the same blob again: reused, not unpacked
    const again = await importLayer(store, t + '.gz');
    expect(again.reused).toBe(true);
    expect(again.stats).toBeUndefined();
    // the uncompressed form of the same layer: the same snapshot
    const plain = await importLayer(store, t);
    expect(plain.reused).toBe(true);
    expect(plain.diffId).toBe(diffId);
    expect(snapshots()).toEqual([diffId.slice(7)]);
    expect(store.layer(diffId).blobDigests).toEqual([r.blobDigest, diffId]);
  });

  test('zstd layer (zstd CLI) and the digest given explicitly', async () => {
    const src = join(base, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'zstd content\n'.repeat(1000));
    const t = join(base, 'layer.tar');
    execFileSync('tar', ['-C', src, '-cf', t, '.']);
    execFileSync('zstd', ['-q', '-k', t]);
    const blob = 'sha256:' + createHash('sha256').update(readFileSync(t + '.zst')).digest('hex');
    const r = await importLayer(store, t + '.zst', { digest: blob });
    expect(r.compression).toBe('zstd');
    expect(r.diffId).toBe('sha256:' + createHash('sha256').update(readFileSync(t)).digest('hex'));
    expect(readFileSync(join(r.snapshot, 'a.txt'), 'utf8')).toBe('zstd content\n'.repeat(1000));
  });

  test('later entries replace earlier ones without writing through them', async () => {
    const t = pyTar(join(base, 'replace.tar'), [
      `add(t, 'f', b'first')`,
      `add(t, 'h', typ=tarfile.LNKTYPE, linkname='f')`,
      `add(t, 'h', b'second')`, // must not change f
      `add(t, 's', typ=tarfile.SYMTYPE, linkname='${join(outside, 'canary')}')`,
      `add(t, 's', b'plain file now')`, // replaces the symlink, does not follow it
      `add(t, 'dir', typ=tarfile.DIRTYPE)`,
      `add(t, 'dir/x', b'x')`,
      `add(t, 'dir', b'dir became a file')`,
    ].join('\n'));
    const r = await importLayer(store, t);
    expect(readFileSync(join(r.snapshot, 'f'), 'utf8')).toBe('first');
    expect(readFileSync(join(r.snapshot, 'h'), 'utf8')).toBe('second');
    expect(lstatSync(join(r.snapshot, 's')).isFile()).toBe(true);
    expect(readFileSync(join(r.snapshot, 'dir'), 'utf8')).toBe('dir became a file');
    expect(readFileSync(join(outside, 'canary'), 'utf8')).toBe('original\n');
  });

  test('non-UTF-8 names in PAX path records survive', async () => {
    const src = join(base, 'src');
    mkdirSync(src);
    // a name longer than 100 bytes forces a PAX path record; \xff is not UTF-8
    const name = Buffer.concat([Buffer.from('x'.repeat(120)), Buffer.from([0xff, 0xfe])]);
    writeFileSync(Buffer.concat([Buffer.from(src + '/'), name]), 'bin');
    const t = join(base, 'binname.tar');
    execFileSync('tar', ['--format=posix', '-C', src, '-cf', t, '.']);
    // GNU tar puts the raw bytes into the PAX path record
    expect(readFileSync(t).includes(Buffer.concat([Buffer.from('path=./'), name]))).toBe(true);
    const r = await importLayer(store, t);
    const names = readdirSync(Buffer.from(r.snapshot), { encoding: 'buffer' });
    expect(names.map((b) => b.toString('hex'))).toEqual([name.toString('hex')]);
  });
});
