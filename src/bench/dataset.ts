import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Prng } from './prng.js';
import { type DatasetParams, paramsHash } from './params.js';

/** A small text file: contents are derived from (path, size, seed), so they need not be stored. */
export interface SmallFile {
  path: string;
  size: number;
  seed: number;
}

export interface BlockFile {
  path: string;
  size: number;
  /** Salt written into every 1 MiB block header, so blocks of different files differ. */
  fileIndex: number;
}

/** What the generator will write, and what a correct overlay must show: a pure function of the params. */
export interface DatasetPlan {
  params: DatasetParams;
  bottom: SmallFile[];
  repo: SmallFile[];
  middle: SmallFile[];
  whiteouts: string[];
  opaqueDirs: string[];
  top: BlockFile[];
  untar: SmallFile[];
  /** Merged view of everything outside repo/ (repo/ is untouched by upper layers): path -> size. */
  merged: Map<string, number>;
  rmTarget: string;
  copyUpTargets: string[];
  gitModify: string[];
  gitTouch: string[];
}

export const BLOCK = 1024 * 1024;
const POOL_BYTES = 1024 * 1024;

export function planDataset(p: DatasetParams): DatasetPlan {
  const rng = new Prng(p.seed);
  const bottom: SmallFile[] = [];
  const smallSize = (): number => rng.range(p.smallMin, p.smallMax);
  let serial = 0;
  for (let t = 0; t < p.treeTops; t++) {
    for (let i = 0; i < p.filesPerTop; i++) {
      const depth = rng.range(1, p.maxDepth);
      const parts = [`tree`, `t${t}`];
      for (let d = 1; d < depth; d++) parts.push(`d${rng.int(p.fanout)}`);
      parts.push(`f${serial++}.txt`);
      bottom.push({ path: parts.join('/'), size: smallSize(), seed: rng.nextU32() });
    }
  }
  for (let i = 0; i < p.bigdirEntries; i++) {
    bottom.push({ path: `bigdir/e${String(i).padStart(6, '0')}`, size: rng.range(64, 256), seed: rng.nextU32() });
  }
  const repo: SmallFile[] = [];
  for (let i = 0; i < p.repoFiles; i++) {
    const parts = ['repo', `m${rng.int(20)}`];
    if (rng.int(2) === 1) parts.push(`s${rng.int(10)}`);
    parts.push(`src${i}.c`);
    repo.push({ path: parts.join('/'), size: rng.range(200, 4096), seed: rng.nextU32() });
  }

  const rmTarget = `tree/t${p.treeTops - 1}`;
  // The opaque directory: a second-level directory of t1 that has files below it in the bottom layer.
  const candidates = [...new Set(bottom.filter((f) => /^tree\/t1\/d\d+\/d\d+\//.test(f.path)).map((f) => f.path.split('/').slice(0, 4).join('/')))].sort();
  const opaqueDir = rng.pick(candidates);
  const underOpaque = (q: string): boolean => q.startsWith(`${opaqueDir}/`);
  const treeFiles = bottom.filter((f) => f.path.startsWith('tree/') && !underOpaque(f.path));
  const picked = rng.sample(treeFiles, p.middleChanges + p.middleDeletes);
  const middle: SmallFile[] = picked.slice(0, p.middleChanges).map((f) => ({ path: f.path, size: smallSize(), seed: rng.nextU32() }));
  const whiteouts = picked.slice(p.middleChanges).map((f) => f.path).sort();
  for (let i = 0; i < p.opaqueNewFiles; i++) {
    middle.push({ path: `${opaqueDir}/new${i}.txt`, size: smallSize(), seed: rng.nextU32() });
  }

  const top: BlockFile[] = [{ path: 'big/big.bin', size: p.bigFileBytes, fileIndex: 0 }];
  for (let i = 0; i < p.mediumFiles; i++) top.push({ path: `big/m${i}.bin`, size: p.mediumFileBytes, fileIndex: i + 1 });

  const untar: SmallFile[] = [];
  for (let i = 0; i < p.untarFiles; i++) {
    untar.push({ path: `u${rng.int(10)}/v${rng.int(10)}/x${i}.txt`, size: rng.range(512, 4096), seed: rng.nextU32() });
  }

  // Merged view in overlay order: bottom, then middle (opaque hides bottom below it; whiteouts delete), then top.
  const merged = new Map<string, number>();
  for (const f of bottom) merged.set(f.path, f.size);
  for (const k of [...merged.keys()]) if (underOpaque(k)) merged.delete(k);
  for (const f of middle) merged.set(f.path, f.size);
  for (const w of whiteouts) merged.delete(w);
  for (const f of top) merged.set(f.path, f.size);

  const copyPool = [...merged.keys()].filter((k) => k.startsWith('tree/') && !k.startsWith(`${rmTarget}/`)).sort();
  const copyUpTargets = rng.sample(copyPool, p.copyUpSmall).sort();
  const gitPicked = rng.sample(repo.map((f) => f.path), p.gitModify + p.gitTouch);
  return {
    params: p,
    bottom,
    repo,
    middle,
    whiteouts,
    opaqueDirs: [opaqueDir],
    top,
    untar,
    merged,
    rmTarget,
    copyUpTargets,
    gitModify: gitPicked.slice(0, p.gitModify).sort(),
    gitTouch: gitPicked.slice(p.gitModify).sort(),
  };
}

/** The small file that wins in the merged view for each path (middle over bottom), repo/ included. */
export function mergedSmallFiles(plan: DatasetPlan): Map<string, SmallFile> {
  const out = new Map<string, SmallFile>();
  for (const f of [...plan.bottom, ...plan.repo, ...plan.middle]) if (plan.merged.has(f.path) || f.path.startsWith('repo/')) out.set(f.path, f);
  return out;
}

/** Printable pool shared by all small files; a file is a header naming it plus a window of the pool. */
export function textPool(seed: number): Buffer {
  return new Prng(seed ^ 0x7e57_7e57).bytes(POOL_BYTES, true);
}

export function smallContent(pool: Buffer, f: SmallFile): Buffer {
  const head = Buffer.from(`${f.path} ${f.seed}\n`, 'latin1').subarray(0, f.size);
  const rest = f.size - head.length;
  const off = f.seed % (pool.length - rest);
  return Buffer.concat([head, pool.subarray(off, off + rest)]);
}

export function blockPool(seed: number): Buffer {
  return new Prng(seed ^ 0x0b10_c4ed).bytes(BLOCK, false);
}

/** Block `index` of a block file, written in place into `buf` (a copy of the block pool). */
export function fillBlock(buf: Buffer, pool: Buffer, fileIndex: number, index: number): Buffer {
  pool.copy(buf, 0);
  buf.write(`stratafs-bench f=${String(fileIndex).padStart(3, '0')} b=${String(index).padStart(8, '0')}\n`, 0, 'latin1');
  return buf;
}

/** Expected bytes at [offset, offset+len) of a block file; used for spot checks after reads and copy-ups. */
export function expectedSlice(pool: Buffer, fileIndex: number, offset: number, len: number): Buffer {
  const out = Buffer.alloc(len);
  const buf = Buffer.alloc(BLOCK);
  let done = 0;
  while (done < len) {
    const pos = offset + done;
    const idx = Math.floor(pos / BLOCK);
    fillBlock(buf, pool, fileIndex, idx);
    const inBlock = pos - idx * BLOCK;
    const n = Math.min(BLOCK - inBlock, len - done);
    buf.copy(out, done, inBlock, inBlock + n);
    done += n;
  }
  return out;
}

/** What the workloads check against, saved next to the layers. */
export interface Manifest {
  hash: string;
  params: DatasetParams;
  dir: string;
  layers: { bottom: string; middle: string; top: string };
  /** Lowerdir order for mount options: top first. */
  lowerdir: string;
  tarball: string;
  untarFiles: number;
  /** Regular files visible in the merged root (find -type f), including repo/.git. */
  totalFiles: number;
  totalBytes: number;
  treeFiles: number;
  treeBytes: number;
  /** NUL-separated relative paths of the merged tree/ files, sorted. */
  treeList: string;
  bigdirEntries: number;
  bigFile: string;
  bigFileBytes: number;
  rmTarget: string;
  rmTargetFiles: number;
  copyUpList: string;
  copyUpFiles: number;
  copyUpBytesBefore: number;
  repoDir: string;
  gitModify: string[];
  gitTouch: string[];
  whiteouts: number;
  opaqueDirs: string[];
}

function writeSmall(root: string, pool: Buffer, files: readonly SmallFile[], made: Set<string>): void {
  for (const f of files) {
    const full = path.join(root, f.path);
    const dir = path.dirname(full);
    if (!made.has(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
    fs.writeFileSync(full, smallContent(pool, f));
  }
}

function writeBlockFile(full: string, pool: Buffer, f: BlockFile): void {
  fs.mkdirSync(path.dirname(full), { recursive: true });
  const fd = fs.openSync(full, 'w');
  try {
    const buf = Buffer.alloc(BLOCK);
    for (let off = 0, i = 0; off < f.size; off += BLOCK, i++) {
      fillBlock(buf, pool, f.fileIndex, i);
      fs.writeSync(fd, buf, 0, Math.min(BLOCK, f.size - off));
    }
  } finally {
    fs.closeSync(fd);
  }
}

function countFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      files++;
      bytes += fs.lstatSync(path.join(e.parentPath, e.name)).size;
    }
  }
  return { files, bytes };
}

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'stratafs bench',
  GIT_AUTHOR_EMAIL: 'bench@stratafs.invalid',
  GIT_COMMITTER_NAME: 'stratafs bench',
  GIT_COMMITTER_EMAIL: 'bench@stratafs.invalid',
  GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

export function gitEnv(): NodeJS.ProcessEnv {
  return GIT_ENV;
}

/**
 * Returns the manifest of the data set for `params`, building it under `cacheRoot/<hash>` first if absent.
 * Building goes to a temporary sibling that is renamed into place at the end, so an interrupted build
 * is never mistaken for a complete one.
 */
export function ensureDataset(params: DatasetParams, cacheRoot: string, log: (s: string) => void): Manifest {
  const hash = paramsHash(params);
  const dir = path.join(cacheRoot, hash);
  const manifestPath = path.join(dir, 'manifest.json');
  if (fs.existsSync(manifestPath)) {
    log(`data set: reusing ${dir}`);
    return JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as Manifest;
  }
  fs.mkdirSync(cacheRoot, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cacheRoot, `${hash}.building-`));
  const t0 = Date.now();
  log(`data set: building ${dir} (seed ${params.seed})`);
  const plan = planDataset(params);
  const pool = textPool(params.seed);
  const bottom = path.join(tmp, 'bottom');
  const middle = path.join(tmp, 'middle');
  const top = path.join(tmp, 'top');
  for (const d of [bottom, middle, top]) fs.mkdirSync(d);

  const made = new Set<string>();
  writeSmall(bottom, pool, plan.bottom, made);
  writeSmall(bottom, pool, plan.repo, made);
  execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: path.join(bottom, 'repo'), env: GIT_ENV });
  execFileSync('git', ['add', '-A'], { cwd: path.join(bottom, 'repo'), env: GIT_ENV });
  execFileSync('git', ['commit', '-q', '-m', 'bench repository'], { cwd: path.join(bottom, 'repo'), env: GIT_ENV });
  log(`data set: bottom layer written (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  writeSmall(middle, pool, plan.middle, made);
  for (const od of plan.opaqueDirs) {
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(middle, od)]);
  }
  for (const w of plan.whiteouts) {
    const dir = path.join(middle, path.dirname(w));
    if (!made.has(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
  }
  // One shell for all whiteouts: the mknod command has no batch form, and a process per node is slow.
  for (let i = 0; i < plan.whiteouts.length; i += 500) {
    const batch = plan.whiteouts.slice(i, i + 500).map((w) => path.join(middle, w));
    execFileSync('sh', ['-c', 'for f; do mknod "$f" c 0 0 || exit 1; done', 'sh', ...batch]);
  }
  log(`data set: middle layer written (${plan.middle.length} changed/new, ${plan.whiteouts.length} whiteouts, opaque ${plan.opaqueDirs.join(',')})`);

  const bpool = blockPool(params.seed);
  for (const f of plan.top) writeBlockFile(path.join(top, f.path), bpool, f);
  log(`data set: top layer written (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  const staging = path.join(tmp, 'untar-staging');
  writeSmall(staging, pool, plan.untar, made);
  const tarball = path.join(tmp, 'untar.tar');
  execFileSync('tar', ['-cf', tarball, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', staging, '.']);
  fs.rmSync(staging, { recursive: true });

  const repoCount = countFiles(path.join(bottom, 'repo'));
  const final = (p: string): string => path.join(dir, path.relative(tmp, p));
  const treeEntries = [...plan.merged.entries()].filter(([k]) => k.startsWith('tree/')).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  fs.writeFileSync(path.join(tmp, 'tree.lst'), treeEntries.map(([k]) => `${k}\0`).join(''));
  fs.writeFileSync(path.join(tmp, 'copyup.lst'), plan.copyUpTargets.map((k) => `${k}\0`).join(''));
  let mergedBytes = 0;
  for (const v of plan.merged.values()) mergedBytes += v;
  const manifest: Manifest = {
    hash,
    params,
    dir,
    layers: { bottom: final(bottom), middle: final(middle), top: final(top) },
    lowerdir: [final(top), final(middle), final(bottom)].join(':'),
    tarball: final(tarball),
    untarFiles: plan.untar.length,
    totalFiles: plan.merged.size + repoCount.files,
    totalBytes: mergedBytes + repoCount.bytes,
    treeFiles: treeEntries.length,
    treeBytes: treeEntries.reduce((s, [, v]) => s + v, 0),
    treeList: path.join(dir, 'tree.lst'),
    bigdirEntries: params.bigdirEntries,
    bigFile: 'big/big.bin',
    bigFileBytes: params.bigFileBytes,
    rmTarget: plan.rmTarget,
    rmTargetFiles: [...plan.merged.keys()].filter((k) => k.startsWith(`${plan.rmTarget}/`)).length,
    copyUpList: path.join(dir, 'copyup.lst'),
    copyUpFiles: plan.copyUpTargets.length,
    copyUpBytesBefore: plan.copyUpTargets.reduce((s, k) => s + (plan.merged.get(k) ?? 0), 0),
    repoDir: 'repo',
    gitModify: plan.gitModify.map((k) => k.slice('repo/'.length)),
    gitTouch: plan.gitTouch.map((k) => k.slice('repo/'.length)),
    whiteouts: plan.whiteouts.length,
    opaqueDirs: plan.opaqueDirs,
  };
  fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2));
  execFileSync('sync');
  fs.renameSync(tmp, dir);
  log(`data set: done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${manifest.totalFiles} files visible, ${(manifest.totalBytes / BLOCK).toFixed(0)} MiB`);
  return manifest;
}
