/**
 * Image import bounds (issue 11): a layer that expands without limit (a gzip bomb, zeros
 * streamed through zlib here) is refused with one line once its expanded size passes a bound
 * (--max-expanded; default 100x the compressed size, at least 1 GiB), or before it would take
 * the store's disk down to its last 5%; nothing of it stays in the store. Through the real CLI
 * in child processes. CI keeps the bombs small with a low bound and a small tmpfs store;
 * STRATAFS_LONG=1 adds the bomb (3 GiB of zeros in about 3 MB) against the default bound.
 */
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { createWriteStream, mkdirSync, readdirSync, existsSync, statSync, statfsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { createGzip, constants as zc } from 'node:zlib';
import { cli } from '../harness/cli-mount.js';
import { scratchTmpfs, tempDir } from '../harness/mounts.js';

const LONG = process.env.STRATAFS_LONG === '1';
const MIB = 1 << 20;

/** A ustar header for a regular file `name` of `size` bytes. */
function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (off: number, len: number, s: string): void => { h.write(s, off, len, 'latin1'); };
  const oct = (off: number, len: number, n: number): void => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
  put(0, 100, name);
  oct(100, 8, 0o644);
  oct(108, 8, 0);
  oct(116, 8, 0);
  oct(124, 12, size);
  oct(136, 12, 1_000_000_000);
  put(148, 8, '        ');
  put(156, 1, '0');
  put(257, 6, 'ustar\0');
  put(263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** A gzip'd tar holding one file of `size` zero bytes, streamed through zlib (never held whole). */
async function gzipBomb(out: string, size: number): Promise<number> {
  const chunk = Buffer.alloc(4 * MIB);
  async function* tar(): AsyncGenerator<Buffer> {
    yield tarHeader('zeros', size);
    for (let left = size; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    yield Buffer.alloc((512 - (size % 512)) % 512 + 1024);
  }
  await pipeline(Readable.from(tar()), createGzip({ level: zc.Z_BEST_COMPRESSION }), createWriteStream(out));
  return statSync(out).size;
}

/** The store holds no snapshot and no temp dir: nothing of a refused layer stayed. */
function expectEmptyStore(store: string): void {
  for (const d of ['snapshots', 'tmp']) {
    const p = join(store, d);
    expect(existsSync(p) ? readdirSync(p) : []).toEqual([]);
  }
}

let base: string;
beforeAll(async () => { base = await tempDir('image-bounds'); });
afterAll(async () => { await rm(base, { recursive: true, force: true }); });

describe('a layer that expands without limit is refused before the disk fills', () => {
  test('past --max-expanded: one line (EFBIG, the bound, the compressed size), nothing kept; under it, imported', async () => {
    const bomb = join(base, 'bomb.tar.gz');
    const compressed = await gzipBomb(bomb, 64 * MIB);
    expect(compressed).toBeLessThan(MIB / 4);
    const store = join(base, 'store');
    const r = await cli(['layer', 'import', bomb, '--store', store, '--max-expanded', '8M']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^stratafs: EFBIG: layer import \S+bomb\.tar\.gz \(expands past 8 MiB from \d+(\.\d)? KiB compressed; refused as a decompression bomb, --max-expanded SIZE changes the bound\)\n$/);
    expectEmptyStore(store);
    // the same layer under a bound it fits: imported whole
    const ok = await cli(['layer', 'import', bomb, '--store', store, '--max-expanded', '65M', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const j = JSON.parse(ok.stdout) as { snapshot: string; tarSize: number };
    expect(statSync(join(j.snapshot, 'zeros')).size).toBe(64 * MIB);
    // and a bound that is not a size: one line, nothing done
    const bad = await cli(['layer', 'import', bomb, '--store', join(base, 'store-bad'), '--max-expanded', 'lots']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('stratafs: EINVAL: size lots (expected a size such as 4G, 512M or 1073741824, or none)\n');
  });

  test('a store on a small disk: refused with one line (ENOSPC, what is free) while 5% of it is still free, not at the write that fails', async () => {
    const fs = scratchTmpfs('image-bounds-small', 64);
    try {
      const bomb = join(base, 'bomb256.tar.gz');
      await gzipBomb(bomb, 256 * MIB);
      const store = join(fs.dir, 'store');
      mkdirSync(store);
      const r = await cli(['layer', 'import', bomb, '--store', store, '--max-expanded', 'none']);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^stratafs: ENOSPC: layer import \S+bomb256\.tar\.gz \(expands past [\d.]+ MiB: [\d.]+ MiB is free where it is unpacked, and an import leaves 5% of the filesystem \(at most 1 GiB\); refused before the disk fills\)\n$/);
      expectEmptyStore(store);
      // the same as an image: a docker-save archive whose gzip is the bomb is refused the same way
      const img = await cli(['image', 'import', bomb, '--store', store]);
      expect(img.code, img.stderr).toBe(1);
      expect(img.stderr).toMatch(/^stratafs: ENOSPC: image import \S+bomb256\.tar\.gz \(expands past [\d.]+ MiB: .*refused before the disk fills\)\n$/);
      expectEmptyStore(store);
      const s = statfsSync(fs.dir);
      expect(s.bfree).toBeGreaterThan(s.blocks * 0.9);
    } finally {
      fs.dispose();
    }
  });

  test.runIf(LONG)('the issue\'s bomb: 3 GiB of zeros in a few MB, refused by the default bound after 1 GiB', async () => {
    const bomb = join(base, 'bomb3g.tar.gz');
    const compressed = await gzipBomb(bomb, 3 * 1024 * MIB);
    const store = join(base, 'store-3g');
    const r = await cli(['layer', 'import', bomb, '--store', store], { timeoutMs: 600_000 });
    console.log(`3 GiB of zeros: ${compressed} bytes of gzip; ${r.stderr.trim()}`);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^stratafs: EFBIG: layer import \S+ \(expands past 1 GiB from [\d.]+ MiB compressed \(the default bound: 100x, at least 1 GiB\); refused as a decompression bomb/);
    expectEmptyStore(store);
  }, 900_000);
});
