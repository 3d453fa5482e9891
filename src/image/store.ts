/**
 * The snapshot store: a directory holding unpacked layers named by content and
 * the images that list them.
 *
 *   DIR/snapshots/<hex>/fs          the layer's tree (a lowerdir), hex = diff-id (sha256 of the uncompressed tar)
 *   DIR/snapshots/<hex>/layer.json  what we know about it (LayerRecord)
 *   DIR/blobs/sha256/<hex>          blob digest -> diff-id ("sha256:..."), so a known blob is never unpacked twice
 *   DIR/images/<name>.json          ImageRecord (name percent-encoded)
 *   DIR/tmp/<op>-<pid>-<rand>/      work in progress; renamed into place when complete
 *
 * Atomicity comes from rename(2) inside one filesystem: a snapshot or image
 * record either exists complete or not at all. Temp dirs of a process that is
 * gone (crash, kill -9) are removed the next time the store is opened.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, renameSync, existsSync, readdirSync, lstatSync, chmodSync, fsyncSync, openSync, closeSync } from 'node:fs';
import { join, resolve, dirname, basename } from 'node:path';
import * as sys from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { FsError } from '../shared/errors.js';
import { S_IFDIR, S_IFMT } from '../shared/constants.js';

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function checkDigest(d: string, what: string): string {
  if (!DIGEST_RE.test(d)) throw new FsError('EINVAL', d, 'digest', `${what} must look like sha256:<64 hex digits>`);
  return d;
}
export const hexOf = (digest: string): string => digest.slice('sha256:'.length);

export interface LayerRecord {
  diffId: string;
  /** digests of compressed blobs known to unpack to this snapshot */
  blobDigests: string[];
  /** bytes of the uncompressed tar */
  tarSize: number;
  /** sum of apparent sizes of the unpacked tree (files and symlinks, hard links once) */
  size: number;
  entries: number;
  created: string;
}

export interface ImageLayerRef {
  diffId: string;
  blobDigest: string;
  mediaType: string;
  /** compressed size from the manifest */
  size: number;
}

export interface ImageRecord {
  name: string;
  /** base layer first, as in the manifest */
  layers: ImageLayerRef[];
  config: { digest: string; mediaType: string };
  manifestDigest: string | undefined;
  /** where it came from: oci-layout, oci-archive, docker-archive */
  source: string;
  imported: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove a tree whatever its names (non-UTF-8 too) and modes; node's fs.rm would mangle non-UTF-8 names. */
export function removeTree(path: string): void {
  if (lstatSync(path, { throwIfNoEntry: false }) === undefined) return;
  const parent = dirname(resolve(path));
  const pfd = sys.openRoot(Buffer.from(parent, 'utf8').toString('latin1'));
  try {
    removeBeneath(pfd, Buffer.from(basename(path), 'utf8').toString('latin1'));
  } finally {
    sys.close(pfd);
  }
}

function removeBeneath(dirfd: number, rel: Bstr): void {
  const st = sys.newStatArray();
  if (sys.tryLstatat(dirfd, rel, st) < 0) return;
  if ((st[sys.StatIdx.mode]! & S_IFMT) !== S_IFDIR) sys.unlinkat(dirfd, rel, 0);
  else sys.removeTree(dirfd, rel);
}

/** Write a small file atomically (temp + fsync + rename). */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
}

export class Store {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Open (creating if needed) the store at dir, and sweep temp dirs of dead processes. */
  static open(dir: string): Store {
    const s = new Store(resolve(dir));
    for (const d of ['snapshots', 'blobs/sha256', 'images', 'tmp']) mkdirSync(join(s.dir, d), { recursive: true });
    s.sweepTemp();
    return s;
  }

  private sweepTemp(): void {
    for (const n of readdirSync(join(this.dir, 'tmp'))) {
      const m = /^[a-z]+-(\d+)-/.exec(n);
      if (m && pidAlive(Number(m[1]))) continue;
      removeTree(join(this.dir, 'tmp', n));
    }
  }

  /** A fresh temp dir inside the store (same filesystem, so rename is atomic). */
  makeTemp(op: string): string {
    return mkdtempSync(join(this.dir, 'tmp', `${op}-${process.pid}-`));
  }

  snapshotDir(diffId: string): string {
    return join(this.dir, 'snapshots', hexOf(checkDigest(diffId, 'diff-id')));
  }

  /** The directory to use as a lowerdir. */
  snapshotFs(diffId: string): string {
    return join(this.snapshotDir(diffId), 'fs');
  }

  hasSnapshot(diffId: string): boolean {
    return existsSync(join(this.snapshotDir(diffId), 'layer.json'));
  }

  layer(diffId: string): LayerRecord {
    const p = join(this.snapshotDir(diffId), 'layer.json');
    if (!existsSync(p)) throw new FsError('ENOENT', diffId, 'layer', `no snapshot ${diffId} in store ${this.dir}`);
    return JSON.parse(readFileSync(p, 'utf8')) as LayerRecord;
  }

  listLayers(): LayerRecord[] {
    return readdirSync(join(this.dir, 'snapshots'))
      .filter((h) => /^[0-9a-f]{64}$/.test(h) && existsSync(join(this.dir, 'snapshots', h, 'layer.json')))
      .map((h) => this.layer('sha256:' + h));
  }

  /** diff-id a blob is known to unpack to, if this store has seen it. */
  diffIdOfBlob(blobDigest: string): string | undefined {
    const p = join(this.dir, 'blobs', 'sha256', hexOf(checkDigest(blobDigest, 'blob digest')));
    if (!existsSync(p)) return undefined;
    const d = readFileSync(p, 'utf8').trim();
    return DIGEST_RE.test(d) ? d : undefined;
  }

  rememberBlob(blobDigest: string, diffId: string): void {
    writeFileAtomic(join(this.dir, 'blobs', 'sha256', hexOf(blobDigest)), diffId + '\n');
  }

  /**
   * Move a finished temp snapshot (containing fs/ and layer.json) into place.
   * Returns false (and deletes the temp dir) when that snapshot exists already:
   * another import won the race, and its content is the same by construction.
   */
  commitSnapshot(tempDir: string, rec: LayerRecord): boolean {
    writeFileSync(join(tempDir, 'layer.json'), JSON.stringify(rec, null, 2) + '\n');
    // mkdtemp made it 0700; a snapshot must be readable by whoever mounts it
    chmodSync(tempDir, 0o755);
    const dst = this.snapshotDir(rec.diffId);
    if (existsSync(dst)) {
      if (this.hasSnapshot(rec.diffId)) {
        removeTree(tempDir);
        return false;
      }
      // a half-made snapshot from an older version or manual meddling: replace it
      removeTree(dst);
    }
    try {
      renameSync(tempDir, dst);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        removeTree(tempDir);
        return false;
      }
      throw e;
    }
    return true;
  }

  /** Add a blob digest to a snapshot's record (a second compression of the same layer). */
  addBlobDigest(diffId: string, blobDigest: string): void {
    const rec = this.layer(diffId);
    if (!rec.blobDigests.includes(blobDigest)) {
      rec.blobDigests.push(blobDigest);
      writeFileAtomic(join(this.snapshotDir(diffId), 'layer.json'), JSON.stringify(rec, null, 2) + '\n');
    }
    this.rememberBlob(blobDigest, diffId);
  }

  private imagePath(name: string): string {
    if (name === '' || name.length > 200) throw new FsError('EINVAL', name, 'image', 'image name must be 1..200 characters');
    return join(this.dir, 'images', encodeURIComponent(name) + '.json');
  }

  writeImage(rec: ImageRecord): void {
    writeFileAtomic(this.imagePath(rec.name), JSON.stringify(rec, null, 2) + '\n');
  }

  hasImage(name: string): boolean {
    return existsSync(this.imagePath(name));
  }

  image(name: string): ImageRecord {
    const p = this.imagePath(name);
    if (!existsSync(p)) throw new FsError('ENOENT', name, 'image', `no image "${name}" in store ${this.dir}`);
    return JSON.parse(readFileSync(p, 'utf8')) as ImageRecord;
  }

  listImages(): ImageRecord[] {
    return readdirSync(join(this.dir, 'images'))
      .filter((n) => n.endsWith('.json'))
      .map((n) => JSON.parse(readFileSync(join(this.dir, 'images', n), 'utf8')) as ImageRecord)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

/**
 * The lowerdirs of an imported image, top layer first (the order of
 * `-o lowerdir=`), for `stratafs mount --image NAME --store DIR`.
 */
export function resolveImageLowers(store: string | Store, name: string): string[] {
  const s = typeof store === 'string' ? Store.open(store) : store;
  const img = s.image(name);
  const dirs = img.layers.map((l) => {
    if (!s.hasSnapshot(l.diffId)) throw new FsError('ENOENT', l.diffId, 'image', `image "${name}" needs layer ${l.diffId}, missing from the store`);
    return s.snapshotFs(l.diffId);
  });
  return dirs.reverse();
}

