/**
 * `stratafs image import`: an OCI image layout directory, an OCI archive (a
 * tar of a layout) or a `docker save` / `podman save` tarball (manifest.json)
 * into the store: every layer verified and unpacked once, the image recorded.
 *
 * Archives are first unpacked with the same safe extractor as layers (into a
 * temp dir of the store, no devices, no owners); files the manifests name are
 * then opened only after their real path is checked to be inside that dir (a
 * hostile archive could ship `layer.tar -> /etc/shadow`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { FsError } from '../shared/errors.js';
import { extractTar } from './extract.js';
import { importLayer, detectCompression, expandGuard, readHead, type LayerImportResult } from './import-layer.js';
import { Store, checkDigest, hexOf, removeTree, type ImageRecord, type ImageLayerRef } from './store.js';

export interface ImageImportOptions {
  /** record the image under this name; also picks the manifest of that ref from a multi-image layout */
  name?: string | undefined;
  /** called per layer as it starts: (index, count, blob size) and for bytes within a layer */
  onLayer?: ((i: number, n: number, size: number) => void) | undefined;
  progress?: ((done: number, total: number) => void) | undefined;
  /** bound on each layer's and the archive's expanded bytes (import-layer.ts: expandGuard) */
  maxExpanded?: number | undefined;
}

export interface ImageImportResult {
  image: ImageRecord;
  layers: LayerImportResult[];
  seconds: number;
}

interface Descriptor { mediaType?: string; digest: string; size?: number; annotations?: Record<string, string>; platform?: { os?: string; architecture?: string } }
interface OciIndex { manifests?: Descriptor[] }
interface OciManifest { mediaType?: string; config: Descriptor; layers: Descriptor[]; manifests?: Descriptor[] }
interface ImageConfig { rootfs?: { type?: string; diff_ids?: string[] } }
interface DockerManifestEntry { Config: string; RepoTags?: string[] | null; Layers: string[] }

const REF_NAME = 'org.opencontainers.image.ref.name';
/** docker save (25+) and containerd put the full name here; ref.name then holds only the tag */
const FULL_NAME = 'io.containerd.image.name';
const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** A file inside `root` named by an archive: refused if it (or a symlink on the way) leads outside. */
function inside(root: string, rel: string, what: string): string {
  if (rel.includes('\0')) throw new FsError('EINVAL', rel, 'image import', `${what}: bad path`);
  const p = resolve(root, rel);
  if (!existsSync(p)) throw new FsError('ENOENT', rel, 'image import', `${what} is missing`);
  const real = realpathSync(p);
  const rootReal = realpathSync(root);
  if (real !== rootReal && !real.startsWith(rootReal + sep)) throw new FsError('EINVAL', rel, 'image import', `${what} points outside the image`);
  return real;
}

function sha256File(p: string): string {
  return 'sha256:' + createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** Read a small JSON blob of a layout, verifying its digest. */
function readBlobJson<T>(layout: string, d: Descriptor, what: string): T {
  checkDigest(d.digest, `${what} digest`);
  const p = inside(layout, join('blobs', 'sha256', hexOf(d.digest)), `${what} blob ${d.digest}`);
  const got = sha256File(p);
  if (got !== d.digest) throw new FsError('EBADMSG', p, 'image import', `${what} digest mismatch: expected ${d.digest}, blob has ${got}`);
  return JSON.parse(readFileSync(p, 'utf8')) as T;
}

function pickManifest(layout: string, index: OciIndex, name: string | undefined, where: string): Descriptor {
  let ms = index.manifests ?? [];
  if (ms.length === 0) throw new FsError('EINVAL', where, 'image import', 'index.json lists no manifests');
  if (name !== undefined && ms.length > 1) {
    const tag = name.includes(':') ? name.slice(name.lastIndexOf(':') + 1) : name;
    const hit = ms.filter((m) => m.annotations?.[FULL_NAME] === name || m.annotations?.[REF_NAME] === name || m.annotations?.[REF_NAME] === tag);
    if (hit.length > 0) ms = hit;
  }
  const distinct = [...new Set(ms.map((m) => m.digest))];
  if (distinct.length > 1) {
    const refs = ms.map((m) => m.annotations?.[REF_NAME] ?? m.digest).join(', ');
    throw new FsError('EINVAL', where, 'image import', `several images in this layout (${refs}): choose one with --name REF`);
  }
  let d = ms[0]!;
  // an image index (multi-platform): take this machine's platform
  for (let depth = 0; d.mediaType && INDEX_TYPES.has(d.mediaType) && depth < 4; depth++) {
    const sub = readBlobJson<OciIndex>(layout, d, 'image index');
    const arch = GOARCH[process.arch] ?? process.arch;
    const m = (sub.manifests ?? []).find((x) => (x.platform?.os ?? 'linux') === 'linux' && x.platform?.architecture === arch);
    if (!m) throw new FsError('ENOENT', where, 'image import', `no linux/${arch} image in the index ${d.digest}`);
    d = m;
  }
  return d;
}

async function importLayers(store: Store, files: { file: string; digest: string | undefined; diffId: string | undefined; size: number }[], opts: ImageImportOptions): Promise<LayerImportResult[]> {
  const out: LayerImportResult[] = [];
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    opts.onLayer?.(i, files.length, f.size);
    out.push(await importLayer(store, f.file, { digest: f.digest, diffId: f.diffId, progress: opts.progress, maxExpanded: opts.maxExpanded }));
  }
  return out;
}

function checkDiffIds(config: ImageConfig, n: number, where: string): string[] {
  const ids = config.rootfs?.diff_ids ?? [];
  if (ids.length !== n) throw new FsError('EINVAL', where, 'image import', `config lists ${ids.length} diff-ids for ${n} layers`);
  ids.forEach((d) => checkDigest(d, 'config diff-id'));
  return ids;
}

async function importOciLayout(store: Store, layout: string, opts: ImageImportOptions, source: string): Promise<ImageImportResult> {
  const t0 = performance.now();
  const idxPath = inside(layout, 'index.json', 'index.json');
  const index = JSON.parse(readFileSync(idxPath, 'utf8')) as OciIndex;
  const md = pickManifest(layout, index, opts.name, layout);
  const manifest = readBlobJson<OciManifest>(layout, md, 'manifest');
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new FsError('EINVAL', md.digest, 'image import', 'not an image manifest');
  const config = readBlobJson<ImageConfig>(layout, manifest.config, 'config');
  const diffIds = checkDiffIds(config, manifest.layers.length, md.digest);
  const files = manifest.layers.map((l, i) => {
    checkDigest(l.digest, 'layer digest');
    return { file: inside(layout, join('blobs', 'sha256', hexOf(l.digest)), `layer blob ${l.digest}`), digest: l.digest, diffId: diffIds[i], size: l.size ?? 0 };
  });
  const results = await importLayers(store, files, opts);
  const name = opts.name ?? md.annotations?.[FULL_NAME] ?? md.annotations?.[REF_NAME] ?? md.digest;
  const layers: ImageLayerRef[] = manifest.layers.map((l, i) => ({
    diffId: results[i]!.diffId, blobDigest: l.digest, mediaType: l.mediaType ?? '', size: l.size ?? results[i]!.blobSize,
  }));
  const image: ImageRecord = {
    name, layers, config: { digest: manifest.config.digest, mediaType: manifest.config.mediaType ?? '' },
    manifestDigest: md.digest, source, imported: new Date().toISOString(),
  };
  store.writeImage(image);
  return { image, layers: results, seconds: (performance.now() - t0) / 1000 };
}

async function importDockerArchive(store: Store, dir: string, opts: ImageImportOptions, source: string): Promise<ImageImportResult> {
  const t0 = performance.now();
  const entries = JSON.parse(readFileSync(inside(dir, 'manifest.json', 'manifest.json'), 'utf8')) as DockerManifestEntry[];
  if (!Array.isArray(entries) || entries.length === 0) throw new FsError('EINVAL', 'manifest.json', 'image import', 'no images in manifest.json');
  let entry = entries[0]!;
  if (entries.length > 1) {
    const hit = opts.name !== undefined ? entries.find((e) => (e.RepoTags ?? []).some((t) => t === opts.name || t.endsWith('/' + opts.name))) : undefined;
    if (!hit) throw new FsError('EINVAL', 'manifest.json', 'image import', `several images (${entries.map((e) => (e.RepoTags ?? []).join('|')).join(', ')}): choose one with --name`);
    entry = hit;
  }
  const configPath = inside(dir, entry.Config, 'config');
  const configDigest = sha256File(configPath);
  // the config's file name, when it is a digest, must be that digest
  const named = /([0-9a-f]{64})(\.json)?$/.exec(entry.Config);
  if (named && `sha256:${named[1]}` !== configDigest) {
    throw new FsError('EBADMSG', entry.Config, 'image import', `config digest mismatch: named ${named[1]}, content ${configDigest}`);
  }
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as ImageConfig;
  const diffIds = checkDiffIds(config, entry.Layers.length, 'manifest.json');
  const files = entry.Layers.map((l, i) => {
    const file = inside(dir, l, `layer ${l}`);
    // new docker save (blobs/sha256/<hex>) names layers by blob digest; old ones (<id>/layer.tar) do not
    const m = /(?:^|\/)blobs\/sha256\/([0-9a-f]{64})$/.exec(l);
    return { file, digest: m ? `sha256:${m[1]}` : undefined, diffId: diffIds[i], size: statSync(file).size };
  });
  const results = await importLayers(store, files, opts);
  const name = opts.name ?? entry.RepoTags?.[0] ?? configDigest;
  const image: ImageRecord = {
    name,
    layers: results.map((r) => ({
      diffId: r.diffId, blobDigest: r.blobDigest,
      mediaType: r.compression === 'gzip' ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.docker.image.rootfs.diff.tar',
      size: r.blobSize,
    })),
    config: { digest: configDigest, mediaType: 'application/vnd.docker.container.image.v1+json' },
    manifestDigest: undefined, source, imported: new Date().toISOString(),
  };
  store.writeImage(image);
  return { image, layers: results, seconds: (performance.now() - t0) / 1000 };
}

function kindOfDir(dir: string): 'oci' | 'docker' | undefined {
  if (existsSync(join(dir, 'oci-layout')) && existsSync(join(dir, 'index.json'))) return 'oci';
  if (existsSync(join(dir, 'manifest.json'))) return 'docker';
  return undefined;
}

export async function importImage(store: Store, path: string, opts: ImageImportOptions = {}): Promise<ImageImportResult> {
  const st = statSync(path);
  if (st.isDirectory()) {
    const k = kindOfDir(path);
    if (k === 'oci') return importOciLayout(store, path, opts, 'oci-layout');
    if (k === 'docker') return importDockerArchive(store, path, opts, 'docker-dir');
    throw new FsError('EINVAL', path, 'image import', 'neither an OCI layout (oci-layout, index.json) nor a docker save dir (manifest.json)');
  }
  // an archive: unpack it (safely) into a temp dir of the store, then read it as a directory
  const temp = store.makeTemp('image');
  try {
    const head = readHead(path);
    let input: Readable = createReadStream(path);
    const gzip = detectCompression(head) === 'gzip';
    if (gzip) input = input.pipe(createGunzip());
    // the archive is unpacked under the same bound as a layer (a gzip bomb here fills the disk as well)
    const guard = expandGuard(path, 'image import', st.size, temp, gzip ? opts.maxExpanded : Infinity);
    input.on('error', (e: Error) => guard.destroy(e));
    input = input.pipe(guard);
    try {
      await extractTar(input, temp, { devices: false, owners: false, xattrs: false });
    } catch (e) {
      if (e instanceof FsError) throw e;
      throw new FsError('EIO', path, 'image import', `not a readable tar archive: ${(e as Error).message}`);
    }
    const k = kindOfDir(temp);
    if (k === 'oci') return await importOciLayout(store, temp, opts, 'oci-archive');
    if (k === 'docker') return await importDockerArchive(store, temp, opts, 'docker-archive');
    throw new FsError('EINVAL', path, 'image import', 'archive holds neither an OCI layout nor a docker save image');
  } finally {
    removeTree(temp);
  }
}
