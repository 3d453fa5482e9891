/**
 * `stratafs layer import`: one layer blob (tar, tar+gzip, tar+zstd) into the
 * store as a snapshot named by its diff-id.
 *
 * Two passes over the blob: the first hashes it (cheap, no decompression) to
 * verify the digest before anything is unpacked and to find an existing
 * snapshot of the same blob; the second decompresses, hashes the tar (diff-id)
 * and extracts into a temp dir of the store, re-hashing the blob in case the
 * file changed in between. The temp dir is renamed into place only when all
 * checks pass; any failure removes it and names the cause.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, openSync, readSync, closeSync, statSync, statfsSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Transform, type TransformCallback, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import { FsError, isFsError } from '../shared/errors.js';
import { extractTar, defaultExtractOptions, type ExtractOptions, type ExtractStats } from './extract.js';
import { Store, checkDigest, removeTree, DIGEST_RE, type LayerRecord } from './store.js';
import { treeSize } from './size.js';

export type Compression = 'gzip' | 'zstd' | 'none';

export interface LayerImportOptions {
  /** expected blob digest; when absent and the file is named by a digest (blobs/sha256/<hex>), that one */
  digest?: string | undefined;
  /** expected diff-id (from an image config): checked after unpacking */
  diffId?: string | undefined;
  extract?: ExtractOptions;
  /**
   * bound on the layer's expanded (decompressed tar) bytes: passing it refuses the layer
   * before the disk fills (see expandBound); Infinity: no bound but the free space
   */
  maxExpanded?: number | undefined;
  /** called with bytes of the blob read so far (second pass) */
  progress?: ((done: number, total: number) => void) | undefined;
}

export interface LayerImportResult {
  diffId: string;
  blobDigest: string;
  compression: Compression;
  /** the snapshot existed already: nothing was unpacked */
  reused: boolean;
  /** the lowerdir */
  snapshot: string;
  blobSize: number;
  /** bytes of the uncompressed tar (0 when reused) */
  tarSize: number;
  stats: ExtractStats | undefined;
  seconds: number;
}

/** The digest a file's name implies: `.../sha256/<hex>` (OCI blob layout) or `sha256:<hex>[.ext]`. */
export function digestFromFileName(file: string): string | undefined {
  const b = basename(file);
  if (/^[0-9a-f]{64}$/.test(b) && basename(dirname(file)) === 'sha256') return 'sha256:' + b;
  const m = /^(sha256)[:_-]([0-9a-f]{64})(\..*)?$/.exec(b);
  return m ? `sha256:${m[2]}` : undefined;
}

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export function readHead(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    const n = readSync(fd, b, 0, 8, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Passes data through, hashing and counting it. */
class HashCount extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
  private done: string | undefined;
  digest(): string {
    this.done ??= 'sha256:' + this.hash.digest('hex');
    return this.done;
  }
}

/**
 * The default bound on a layer's expanded size: 100 times its compressed size, and never
 * less than 1 GiB. Real layers expand 2 to 10 times (text and binaries); 100 leaves room for
 * the odd image with a large zero-filled file, while a gzip bomb (3 GiB of zeros in 3 MB,
 * about 1000:1) is refused after 1 GiB. `--max-expanded` changes it.
 */
export const EXPAND_RATIO = 100;
export const EXPAND_FLOOR = 1 << 30;
export function defaultExpandBound(compressedBytes: number): number {
  return Math.max(EXPAND_FLOOR, EXPAND_RATIO * compressedBytes);
}

/**
 * What an import may write on the filesystem of `dir`: the space free when it starts, less
 * a reserve of 5% of the filesystem (at most 1 GiB), so that a layer that would fill the disk
 * is refused while the disk still has room for everything else. Tar bytes are a fair
 * measure of what lands on disk for the large files a bomb carries.
 */
export function spaceBound(dir: string): { bytes: number; free: number } {
  const s = statfsSync(dir);
  const free = s.bavail * s.bsize;
  const reserve = Math.min(Math.floor(s.blocks * s.bsize * 0.05), 1 << 30);
  return { bytes: Math.max(0, free - reserve), free };
}

/** 1073741824 -> "1 GiB", 3145728 -> "3 MiB", 1536 -> "1.5 KiB" */
export function binSize(n: number): string {
  if (!Number.isFinite(n)) return 'no bound';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} bytes` : `${Number(v.toFixed(v < 10 ? 1 : 0))} ${units[i]}`;
}

/** Parses a size for --max-expanded: bytes, or with K/M/G/T (binary); `none` for no bound. */
export function parseSize(text: string): number {
  if (/^(none|unlimited)$/i.test(text)) return Infinity;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new FsError('EINVAL', text, 'size', 'expected a size such as 4G, 512M or 1073741824, or none');
  const mult = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.floor(Number(m[1]) * mult);
}

/**
 * Counts the expanded stream and stops it, with one line naming the bound, once it passes
 * `limit` (placed right after the decompressor: the bomb is stopped before its bytes reach
 * the extractor).
 */
export class ExpandGuard extends Transform {
  bytes = 0;
  constructor(private readonly limit: number, private readonly refuse: (bytes: number) => FsError) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) cb(this.refuse(this.bytes));
    else cb(null, chunk);
  }
}

/** The guard for a compressed file of `compressedBytes` unpacked into `dir`'s filesystem. */
export function expandGuard(file: string, what: string, compressedBytes: number, dir: string, maxExpanded: number | undefined): ExpandGuard {
  const bound = maxExpanded ?? defaultExpandBound(compressedBytes);
  const space = spaceBound(dir);
  if (space.bytes < bound) {
    return new ExpandGuard(space.bytes, () => new FsError('ENOSPC', file, what,
      `expands past ${binSize(space.bytes)}: ${binSize(space.free)} is free where it is unpacked, and an import leaves 5% of the filesystem (at most 1 GiB); refused before the disk fills`));
  }
  return new ExpandGuard(bound, () => new FsError('EFBIG', file, what,
    `expands past ${binSize(bound)} from ${binSize(compressedBytes)} compressed${maxExpanded === undefined ? ` (the default bound: ${EXPAND_RATIO}x, at least ${binSize(EXPAND_FLOOR)})` : ''}; refused as a decompression bomb, --max-expanded SIZE changes the bound`));
}

/** fzstd (pure JS, no native build) as a stream. */
class ZstdStream extends Transform {
  private readonly d = new ZstdDecompress((chunk) => { this.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)); });
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try { this.d.push(chunk); cb(); } catch (e) { cb(e as Error); }
  }
  override _flush(cb: TransformCallback): void {
    try { this.d.push(new Uint8Array(0), true); cb(); } catch (e) { cb(e as Error); }
  }
}

function decompressor(c: Compression): Transform | undefined {
  if (c === 'gzip') return createGunzip({ chunkSize: 1 << 20 }); // 16 KiB default chunks cost 3x in the tar parser
  if (c === 'zstd') return new ZstdStream();
  return undefined;
}

export async function hashFile(file: string): Promise<string> {
  const h = new HashCount();
  await pipeline(createReadStream(file), h, async (src: AsyncIterable<Buffer>) => { for await (const _ of src) { /* drain */ } });
  return h.digest();
}

/** Translate a decompression/tar error into an FsError that says which file and why. */
function explain(e: unknown, file: string, c: Compression): FsError {
  if (isFsError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  const msg = err?.message ?? String(e);
  if (err?.code && /^E[A-Z]+$/.test(err.code) && err.code in { ENOSPC: 1, EDQUOT: 1, EIO: 1, EACCES: 1, EROFS: 1 }) {
    return new FsError(err.code as 'ENOSPC', file, 'import', msg);
  }
  if (c === 'gzip' && (err?.code?.startsWith('Z_') || /unexpected end of file|incorrect header|invalid/.test(msg))) {
    return new FsError('EIO', file, 'gunzip', `truncated or corrupt gzip: ${msg}`);
  }
  if (c === 'zstd') return new FsError('EIO', file, 'zstd', `truncated or corrupt zstd: ${msg}`);
  return new FsError('EIO', file, 'tar', `truncated or corrupt tar: ${msg}`);
}

export async function importLayer(store: Store, file: string, opts: LayerImportOptions = {}): Promise<LayerImportResult> {
  const t0 = performance.now();
  const st = statSync(file);
  if (!st.isFile()) throw new FsError('EINVAL', file, 'layer import', 'not a regular file');
  const expected = opts.digest !== undefined ? checkDigest(opts.digest, '--digest') : digestFromFileName(file);
  if (opts.diffId !== undefined) checkDigest(opts.diffId, 'diff-id');
  const compression = detectCompression(readHead(file));

  // Pass 1: verify the blob before unpacking a byte of it.
  const blobDigest = await hashFile(file);
  if (expected !== undefined && blobDigest !== expected) {
    throw new FsError('EBADMSG', file, 'layer import', `digest mismatch: expected ${expected}, file has ${blobDigest}`);
  }
  const known = store.diffIdOfBlob(blobDigest) ?? (compression === 'none' ? blobDigest : undefined);
  if (known !== undefined && store.hasSnapshot(known)) {
    if (opts.diffId !== undefined && opts.diffId !== known) {
      throw new FsError('EBADMSG', file, 'layer import', `diff-id mismatch: expected ${opts.diffId}, layer has ${known}`);
    }
    store.addBlobDigest(known, blobDigest);
    return {
      diffId: known, blobDigest, compression, reused: true, snapshot: store.snapshotFs(known),
      blobSize: st.size, tarSize: 0, stats: undefined, seconds: (performance.now() - t0) / 1000,
    };
  }

  // Pass 2: decompress, hash the tar, extract into a temp dir of the store.
  const temp = store.makeTemp('import');
  const cleanup = (): void => { try { removeTree(temp); } catch { /* already reporting the first error */ } };
  const onSignal = (sig: NodeJS.Signals): void => { cleanup(); process.kill(process.pid, sig); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const fsDir = join(temp, 'fs');
    mkdirSync(fsDir, { mode: 0o755 });
    const blobHash = new HashCount(opts.progress ? (n) => opts.progress!(n, st.size) : undefined);
    const src = createReadStream(file, { highWaterMark: 1 << 20 });
    const dec = decompressor(compression);
    // uncompressed: the blob is the tar, one hash serves both
    const tarHash = dec ? new HashCount() : blobHash;
    // unpacked only up to a bound (an uncompressed tar cannot expand: only the free space bounds it)
    const guard = expandGuard(file, 'layer import', st.size, temp, dec ? opts.maxExpanded : Infinity);
    const stages: (Readable | Transform)[] = dec ? [src, blobHash, dec, guard, tarHash] : [src, blobHash, guard];
    for (let i = 0; i + 1 < stages.length; i++) {
      const from = stages[i]!;
      const to = stages[i + 1] as Transform;
      from.on('error', (e: Error) => to.destroy(e));
      from.pipe(to);
    }
    let stats: ExtractStats;
    try {
      stats = await extractTar(dec ? tarHash : guard, fsDir, opts.extract ?? defaultExtractOptions());
    } catch (e) {
      throw explain(e, file, compression);
    }
    const diffId = tarHash.digest();
    const blobAgain = blobHash.digest();
    if (blobAgain !== blobDigest) throw new FsError('EBADMSG', file, 'layer import', 'file changed while being imported');
    if (opts.diffId !== undefined && diffId !== opts.diffId) {
      throw new FsError('EBADMSG', file, 'layer import', `diff-id mismatch: expected ${opts.diffId}, layer has ${diffId}`);
    }
    if (!DIGEST_RE.test(diffId)) throw new FsError('EIO', file, 'layer import', 'internal: bad diff-id');
    const rec: LayerRecord = {
      diffId, blobDigests: [blobDigest], tarSize: tarHash.bytes, size: treeSize(fsDir).bytes,
      entries: stats.entries, created: new Date().toISOString(),
    };
    const fresh = store.commitSnapshot(temp, rec);
    if (!fresh) store.addBlobDigest(diffId, blobDigest);
    else store.rememberBlob(blobDigest, diffId);
    return {
      diffId, blobDigest, compression, reused: !fresh, snapshot: store.snapshotFs(diffId),
      blobSize: st.size, tarSize: tarHash.bytes, stats, seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}
