/**
 * Declarative layer sets, built on disk in either marker form:
 * - 'kernel': whiteouts as char 0/0, opaque as trusted.overlay.opaque=y (what the kernel reads);
 * - 'native': as written in the spec, so OCI `.wh.` markers stay `.wh.` files
 *   (stratafs and fuse-overlayfs read those; the kernel does not).
 * Paths are latin1 byte strings (Bstr), so names may hold any byte but '/' and NUL.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { mustBash, shq } from './proc.js';
import { testRoot, type Layers } from './mounts.js';
import { expandTarget } from './sentinel.js';

export interface TimeSpec {
  sec: number;
  nsec: number;
}

interface Common {
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** atime and mtime; every entry gets a fixed past time unless given */
  time?: TimeSpec;
  /** name -> value (latin1) */
  xattrs?: Record<string, string>;
}

export type Entry =
  | (Common & { kind: 'dir'; opaque?: 'xattr' | 'oci' | 'user' })
  /** `sparse`: a file of `size` bytes, all hole but `content` at byte `at` */
  | (Common & { kind: 'file'; content?: string; sparse?: { size: number; at: number } })
  /** a target starting with OUTSIDE (sentinel.ts) points out of the mount, at the run's sentinels */
  | (Common & { kind: 'symlink'; target: string })
  | (Common & { kind: 'fifo' })
  /** a device node (never opened by a test: mounts under test are nodev or the numbers name no device) */
  | (Common & { kind: 'device'; type: 'c' | 'b'; major: number; minor: number })
  /** 'chardev' is the kernel's form; 'oci' a `.wh.<name>` file */
  | { kind: 'whiteout'; path: string; style?: 'chardev' | 'oci' }
  /** a hard link to an earlier entry of the same layer */
  | { kind: 'hardlink'; path: string; to: string };

export interface LayerSetSpec {
  /** top first */
  lowers: Entry[][];
  /** omitted: read-only set (no upper, no work) */
  upper?: Entry[];
}

export type MarkerForm = 'kernel' | 'native';

/** Fixed past times: anything older than the run start was set on purpose and is compared. */
export const BASE_TIME: TimeSpec = { sec: 1_000_000_000, nsec: 123_456_789 };

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}
function baseOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? p : p.slice(i + 1);
}
function joinB(dir: string, rel: string): string {
  return rel === '' ? dir : `${dir}/${rel}`;
}

function timeArg(t: TimeSpec): string {
  return `@${t.sec}.${String(t.nsec).padStart(9, '0')}`;
}

/** A bash script that creates one layer at `root`. */
export function layerScript(root: string, entries: Entry[], form: MarkerForm): string {
  const lines: string[] = ['set -e', `mkdir -p ${shq(root)}`, `chmod 755 ${shq(root)}`];
  const times: { path: string; t: TimeSpec; depth: number }[] = [];
  const seen = new Set<string>(['']);
  const ensureParents = (rel: string) => {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!seen.has(d)) {
        seen.add(d);
        lines.push(`mkdir -m 755 ${shq(joinB(root, d))}`);
        times.push({ path: d, t: BASE_TIME, depth: i });
      }
    }
  };
  let n = 0;
  for (const e of entries) {
    n++;
    ensureParents(e.path);
    const p = shq(joinB(root, e.path));
    const depth = e.path.split('/').length;
    if (e.kind === 'whiteout') {
      const style = e.style ?? 'chardev';
      if (style === 'oci' && form === 'native') {
        lines.push(`: > ${shq(joinB(root, joinB(parentOf(e.path), '.wh.' + baseOf(e.path))))}`);
      } else {
        lines.push(`mknod -m 000 ${p} c 0 0`);
      }
      continue;
    }
    if (e.kind === 'hardlink') {
      lines.push(`ln ${shq(joinB(root, e.to))} ${p}`);
      continue;
    }
    seen.add(e.path);
    switch (e.kind) {
      case 'dir':
        lines.push(`mkdir ${p}`);
        if (e.opaque === 'oci' && form === 'native') lines.push(`: > ${shq(joinB(root, joinB(e.path, '.wh..wh..opq')))}`);
        else if (e.opaque === 'user' && form === 'native') lines.push(`setfattr -n user.overlay.opaque -v y ${p}`);
        else if (e.opaque) lines.push(`setfattr -n trusted.overlay.opaque -v y ${p}`);
        break;
      case 'file':
        if (e.sparse === undefined) lines.push(`printf '%s' ${shq(e.content ?? `content of ${e.path}\n`)} > ${p}`);
        else lines.push(`truncate -s ${e.sparse.size} ${p}`, `printf '%s' ${shq(e.content ?? 'data')} | dd of=${p} bs=4096 oflag=seek_bytes seek=${e.sparse.at} conv=notrunc status=none`);
        break;
      case 'symlink':
        // OUTSIDE targets lead to the run's read-only sentinels, never to the host (sentinel.ts)
        lines.push(`ln -s ${shq(expandTarget(e.target))} ${p}`);
        break;
      case 'fifo':
        lines.push(`mkfifo ${p}`);
        break;
      case 'device':
        lines.push(`mknod ${p} ${e.type} ${e.major} ${e.minor}`);
        break;
    }
    if (e.uid !== undefined || e.gid !== undefined) lines.push(`chown -h ${e.uid ?? 0}:${e.gid ?? 0} ${p}`);
    if (e.mode !== undefined && e.kind !== 'symlink') lines.push(`chmod ${e.mode.toString(8)} ${p}`);
    else if (e.kind === 'file') lines.push(`chmod 644 ${p}`);
    else if (e.kind === 'dir') lines.push(`chmod 755 ${p}`);
    else if (e.kind === 'fifo' || e.kind === 'device') lines.push(`chmod 644 ${p}`);
    for (const [k, v] of Object.entries(e.xattrs ?? {})) {
      lines.push(`setfattr -h -n ${shq(k)} -v ${v === '' ? '""' : '0x' + Buffer.from(v, 'latin1').toString('hex')} ${p}`);
    }
    times.push({ path: e.path, t: e.time ?? { sec: BASE_TIME.sec + n, nsec: BASE_TIME.nsec }, depth });
  }
  // Children first: creating an entry changes its parent's mtime.
  times.sort((a, b) => b.depth - a.depth);
  for (const t of times) lines.push(`touch -h -d ${timeArg(t.t)} ${shq(joinB(root, t.path))}`);
  lines.push(`touch -h -d ${timeArg(BASE_TIME)} ${shq(root)}`);
  return lines.join('\n') + '\n';
}

/**
 * Builds the layer set under `dir` (lower0..N, upper, work) and returns the
 * directories in mount order. A spec is built once per run and form into a
 * template and then copied with `cp -a` (keeps ns times, xattrs, owners,
 * device nodes and hard links): building spawns a process per attribute.
 */
export async function buildLayerSet(spec: LayerSetSpec, dir: string, form: MarkerForm): Promise<Layers> {
  const key = createHash('sha256').update(JSON.stringify(spec)).update(form).digest('hex').slice(0, 16);
  const template = join(testRoot(), '.templates', `${key}-${form}`);
  let building = templates.get(template);
  if (!building) {
    building = buildTemplate(spec, form, template);
    templates.set(template, building);
  }
  await building;
  await mkdir(dir, { recursive: true });
  await mustBash(`set -e\ncp -a ${shq(template)}/. ${shq(dir)}/\n`, 60_000);
  const lowers = spec.lowers.map((_, i) => join(dir, `lower${i}`));
  const layers: Layers = { lowers };
  if (spec.upper) {
    layers.upper = join(dir, 'upper');
    layers.work = join(dir, 'work');
    await mkdir(layers.work);
  }
  return layers;
}

/** one build per template and process, even when two sides ask at once */
const templates = new Map<string, Promise<void>>();

async function buildTemplate(spec: LayerSetSpec, form: MarkerForm, template: string): Promise<void> {
  if (!existsSync(template)) {
    const tmp = `${template}.tmp${process.pid}-${Math.random().toString(36).slice(2)}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    let script = '';
    spec.lowers.forEach((entries, i) => {
      script += layerScript(join(tmp, `lower${i}`), entries, form);
    });
    if (spec.upper) script += layerScript(join(tmp, 'upper'), spec.upper, form);
    await mustBash(script, 120_000);
    await rename(tmp, template).catch(async (e: NodeJS.ErrnoException) => {
      // another process built it meanwhile
      if (existsSync(template)) await rm(tmp, { recursive: true, force: true });
      else throw e;
    });
  }
}

/** A marker the kernel does not read, as the spec placed it in a layer. */
export interface ForeignMarker {
  kind: 'oci-whiteout' | 'oci-opaque' | 'user-opaque';
  /** the whiteout's target name or the opaque dir (relative) */
  path: string;
}

/** Markers of `entries` that the 'native' form writes in a form the kernel does not read. */
export function foreignMarkers(entries: Entry[]): ForeignMarker[] {
  const out: ForeignMarker[] = [];
  for (const e of entries) {
    if (e.kind === 'whiteout' && e.style === 'oci') out.push({ kind: 'oci-whiteout', path: e.path });
    if (e.kind === 'dir' && e.opaque === 'oci') out.push({ kind: 'oci-opaque', path: e.path });
    if (e.kind === 'dir' && e.opaque === 'user') out.push({ kind: 'user-opaque', path: e.path });
  }
  return out;
}

/**
 * Rewrites every OCI marker under `dir` (a copy of an upper another
 * implementation used) into the kernel's form: `.wh..wh..opq` files become
 * trusted.overlay.opaque=y, `.wh.NAME` files char 0/0 NAME, and the listed
 * user.overlay.opaque dirs trusted ones. Directory times are kept. Markers can
 * have moved with a renamed directory, so all `.wh.` regular files are taken;
 * the differential runner separately reports `.wh.` files that an
 * implementation wrote by itself.
 */
export async function convertMarkersForKernel(dir: string, markers: ForeignMarker[]): Promise<void> {
  const lines: string[] = ['set -e', 'ref=$(mktemp)'];
  const keep = (d: string, cmd: string) => `touch -h -r ${shq(d)} "$ref"; ${cmd}; touch -h -r "$ref" ${shq(d)}`;
  for (const rel of await ociMarkerFiles(dir)) {
    const par = joinB(dir, parentOf(rel));
    const name = baseOf(rel);
    if (name === '.wh..wh..opq') {
      lines.push(keep(par, `rm -f ${shq(joinB(dir, rel))}; setfattr -n trusted.overlay.opaque -v y ${shq(par)}`));
    } else {
      const target = joinB(par, name.slice(4));
      lines.push(keep(par, `rm -f ${shq(joinB(dir, rel))}; [ -e ${shq(target)} ] || [ -L ${shq(target)} ] || mknod -m 000 ${shq(target)} c 0 0`));
    }
  }
  for (const m of markers) {
    if (m.kind !== 'user-opaque') continue;
    const abs = joinB(dir, m.path);
    lines.push(`if [ "$(getfattr --only-values -n user.overlay.opaque ${shq(abs)} 2>/dev/null)" = y ]; then setfattr -x user.overlay.opaque ${shq(abs)}; setfattr -n trusted.overlay.opaque -v y ${shq(abs)}; fi`);
  }
  lines.push('rm -f "$ref"');
  await mustBash(lines.join('\n') + '\n');
}

/** Relative paths of `.wh.*` regular files under dir (OCI whiteouts and opaque markers). */
export async function ociMarkerFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = Buffer.from(joinB(dir, rel), 'latin1');
    for (const d of await readdir(abs, { encoding: 'buffer', withFileTypes: true })) {
      const name = d.name.toString('latin1');
      const childRel = rel === '' ? name : `${rel}/${name}`;
      if (d.isDirectory()) await walk(childRel);
      else if (d.isFile() && name.startsWith('.wh.')) out.push(childRel);
    }
  };
  await walk('');
  return out;
}
