/**
 * Helpers for the core unit tests: temp-dir layers built with node:fs and
 * the overlay core opened on them directly (no FUSE).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { openOverlay, type Overlay } from '../../src/core/overlay.js';
import type { OverlayConfig } from '../../src/core/config.js';
import type { Caller } from '../../src/core/types.js';
import { StatIdx } from '../../src/native/sys.js';

export const root: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

export interface Layers {
  dir: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
  log: string[];
  cleanup(): void;
}

/**
 * Build a temp dir with `n` lower dirs (l0 top ... l{n-1}), an upper, a
 * workdir and an empty mountpoint. `spec` maps layer -> relative path ->
 * content: a string is a file, `{dir}` a directory, `{link}` a symlink,
 * `{wh}` a char 0/0 whiteout, `{opaque}` a directory with trusted.overlay.opaque=y.
 */
export type Node = string | { dir: true } | { link: string } | { wh: true } | { opaque: true } | { xattr: Record<string, string>; dir?: true };
export function makeLayers(spec: Record<string, Record<string, Node>>, nLowers = 2): Layers {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-core-'));
  const lowers = Array.from({ length: nLowers }, (_, i) => path.join(dir, `l${i}`));
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  const mnt = path.join(dir, 'mnt');
  for (const d of [...lowers, upper, work, mnt]) fs.mkdirSync(d);
  for (const [layer, entries] of Object.entries(spec)) {
    const base = path.join(dir, layer);
    for (const [rel, node] of Object.entries(entries)) put(path.join(base, rel), node);
  }
  return {
    dir, lowers, upper, work, mnt, log: [],
    cleanup() {
      spawnSync('umount', [mnt], { stdio: 'ignore' });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function put(p: string, node: Node): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  if (typeof node === 'string') fs.writeFileSync(p, node);
  else if ('link' in node) fs.symlinkSync(node.link, p);
  else if ('wh' in node) execFileSync('mknod', ['-m', '000', p, 'c', '0', '0']);
  else if ('opaque' in node) { fs.mkdirSync(p, { recursive: true }); setx(p, 'trusted.overlay.opaque', 'y'); }
  else if ('xattr' in node) {
    if (node.dir) fs.mkdirSync(p, { recursive: true }); else if (!fs.existsSync(p)) fs.writeFileSync(p, '');
    for (const [k, v] of Object.entries(node.xattr)) setx(p, k, v);
  } else fs.mkdirSync(p, { recursive: true });
}

export function setx(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

/** xattr value as text, or undefined when absent. */
export function getx(p: string, name: string): string | undefined {
  const r = spawnSync('getfattr', ['-h', '--only-values', '-n', name, p], { encoding: 'latin1' });
  return r.status === 0 ? r.stdout : undefined;
}

export function configFor(l: Layers, over: Partial<OverlayConfig> = {}): OverlayConfig {
  return {
    lowerdirs: l.lowers, upperdir: l.upper, workdir: l.work, redirectDir: true, userxattr: false,
    lookupCacheSize: 1000, fsync: false, debug: false, ...over,
  };
}

export async function open(l: Layers, over: Partial<OverlayConfig> = {}): Promise<Overlay> {
  return openOverlay(configFor(l, over), (line) => l.log.push(line));
}

/** Merged listing of a directory through the core, sorted names. */
export async function ls(o: Overlay, p: string): Promise<string[]> {
  const fh = await o.opendir(p, root);
  try {
    return (await o.readdir(p, fh)).map((e) => e.name).sort();
  } finally {
    await o.releasedir(p, fh);
  }
}

export async function readFile(o: Overlay, p: string): Promise<string> {
  const { fh } = await o.open(p, fs.constants.O_RDONLY, root);
  try {
    const buf = Buffer.alloc(1 << 16);
    const n = await o.read(p, fh, buf, buf.length, 0);
    return buf.subarray(0, n).toString('latin1');
  } finally {
    await o.release(p, fh);
  }
}

export async function writeFile(o: Overlay, p: string, data: string, flags = fs.constants.O_WRONLY | fs.constants.O_TRUNC): Promise<void> {
  const { fh } = await o.open(p, flags, root);
  try {
    const b = Buffer.from(data, 'latin1');
    await o.write(p, fh, b, b.length, 0);
  } finally {
    await o.release(p, fh);
  }
}

export async function createFile(o: Overlay, p: string, data: string, mode = 0o644, caller: Caller = root): Promise<void> {
  const { fh } = await o.create(p, mode, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, caller);
  try {
    const b = Buffer.from(data, 'latin1');
    await o.write(p, fh, b, b.length, 0);
  } finally {
    await o.release(p, fh);
  }
}

/** errno code of a rejected promise, or 'OK'. */
export async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return (e as { code?: string }).code ?? String(e); }
}

export const ino = (a: Float64Array): number => a[StatIdx.ino]!;
export const mode = (a: Float64Array): number => a[StatIdx.mode]!;

/** Recursive listing of a real tree as "rel type" lines (d, f:content, l->target, c0/0), sorted. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isDirectory()) { out.push(`${r}/`); walk(r); }
      else if (st.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(path.join(dir, r))}`);
      else if (st.isCharacterDevice()) out.push(`${r} c${st.rdev}`);
      else if (st.isFile()) out.push(`${r} = ${fs.readFileSync(path.join(dir, r), 'latin1')}`);
      else out.push(`${r} ?`);
    }
  };
  walk('');
  return out.sort();
}

/**
 * Mount kernel overlayfs over the same layers (the upper as stratafs left it)
 * read-only, into a fresh workdir, and return its tree; unmounts before returning.
 */
export function kernelView(l: Layers, opts = 'redirect_dir=on'): string[] {
  const kwork = path.join(l.dir, `kwork${Math.random().toString(16).slice(2)}`);
  fs.mkdirSync(kwork);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o',
    `lowerdir=${l.lowers.join(':')},upperdir=${l.upper},workdir=${kwork},${opts}`, l.mnt]);
  try {
    return tree(l.mnt);
  } finally {
    execFileSync('umount', [l.mnt]);
    fs.rmSync(kwork, { recursive: true, force: true });
  }
}

/** The merged tree as stratafs shows it, same format as tree(). */
export async function coreTree(o: Overlay, p = '/'): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const fh = await o.opendir(dir, root);
    const entries = await o.readdir(dir, fh);
    await o.releasedir(dir, fh);
    for (const e of entries) {
      const mp = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      const r = mp.slice(p === '/' ? 1 : p.length + 1);
      const t = e.type;
      if (t === 0o040000) { out.push(`${r}/`); await walk(mp); }
      else if (t === 0o120000) out.push(`${r} -> ${await o.readlink(mp)}`);
      else if (t === 0o020000) out.push(`${r} c${(await o.getattr(mp))[StatIdx.rdev]}`);
      else if (t === 0o100000) out.push(`${r} = ${await readFile(o, mp)}`);
      else out.push(`${r} ?`);
    }
  };
  await walk(p);
  return out.sort();
}
