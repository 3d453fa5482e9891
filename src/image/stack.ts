/**
 * An upper dir and its lowers, read directly (not through a mount), for diff,
 * commit and size. The walk is driven by the upper: lower layers are asked
 * only about names the upper touches, plus the whole content of directories
 * the upper makes opaque (to list what they delete) or redirects (renamed
 * directories, whose lower content moved with them).
 *
 * Lower lookup follows overlayfs rules (as core/namei.ts does for the mount):
 * top lower first; a whiteout (char 0/0 or OCI `.wh.<name>`) or a non-directory
 * ends the search; directories merge until one is opaque.
 */
import * as sys from '../native/sys.js';
import { StatIdx } from '../native/sys.js';
import type { Bstr } from '../core/bstr.js';
import { FsError } from '../core/errors.js';
import {
  isOpaqueDir, isWhiteoutStat, joinRel, listXattrsOrEmpty, readRedirect, whiteoutFileName, whiteoutTargetOf,
  OPAQUE_FILE, S_IFDIR, S_IFMT, S_IFCHR, type Redirect,
} from '../core/whiteout.js';

export interface Layer {
  /** text path as given */
  path: string;
  fd: number;
}

/** One lower directory that contributes to a merged directory. */
export interface LowerDir { layer: number; rel: Bstr }

export interface LowerHit {
  layer: number;
  rel: Bstr;
  st: Float64Array;
  /** when a directory: every lower dir that merges into it, top first */
  dirs: LowerDir[];
}

const toB = (p: string): Bstr => Buffer.from(p, 'utf8').toString('latin1');

export class Stack {
  readonly upper: Layer | undefined;
  readonly lowers: Layer[];
  private readonly st = sys.newStatArray();

  constructor(upper: string | undefined, lowers: string[]) {
    const open = (p: string): Layer => ({ path: p, fd: sys.openRoot(toB(p)) });
    this.upper = upper !== undefined ? open(upper) : undefined;
    this.lowers = lowers.map(open);
  }

  close(): void {
    if (this.upper) sys.close(this.upper.fd);
    for (const l of this.lowers) sys.close(l.fd);
  }

  /** The lower view of the root. */
  rootDirs(): LowerDir[] {
    return this.lowers.map((_, i) => ({ layer: i, rel: '' }));
  }

  /** Lower dirs of an absolute redirect target ("a/b" from the root), as the kernel resolves it. */
  resolvePath(path: Bstr): LowerDir[] {
    let dirs = this.rootDirs();
    if (path === '') return dirs;
    for (const c of path.split('/')) {
      const hit = this.lookup(dirs, c);
      if (!hit || (hit.st[StatIdx.mode]! & S_IFMT) !== S_IFDIR) return [];
      dirs = hit.dirs;
    }
    return dirs;
  }

  /** Is `name` in lower dir d hidden there by a whiteout (either form)? */
  private whitedOut(d: LowerDir, name: Bstr): boolean {
    const fd = this.lowers[d.layer]!.fd;
    return sys.tryLstatat(fd, joinRel(d.rel, whiteoutFileName(name)), this.st) === 0;
  }

  /** The topmost lower object named `name` in the merged directory made of `dirs`. */
  lookup(dirs: LowerDir[], name: Bstr): LowerHit | undefined {
    let hit: LowerHit | undefined;
    for (const d of dirs) {
      const fd = this.lowers[d.layer]!.fd;
      const rel = joinRel(d.rel, name);
      const st = sys.newStatArray();
      if (sys.tryLstatat(fd, rel, st) === 0) {
        if (isWhiteoutStat(st)) break;
        const isDir = (st[StatIdx.mode]! & S_IFMT) === S_IFDIR;
        if (!hit) {
          hit = { layer: d.layer, rel, st, dirs: [] };
          if (!isDir) break;
        } else if (!isDir) break; // a non-directory below a directory is hidden, and so is all beneath it
        hit.dirs.push({ layer: d.layer, rel });
        if (isOpaqueDir(fd, rel, this.st)) break;
      } else if (this.whitedOut(d, name)) break;
    }
    return hit;
  }

  /**
   * Every visible name of the merged lower directory `dirs` (markers resolved),
   * each with its hit. Used only for opaque and redirected directories.
   */
  listMerged(dirs: LowerDir[]): Map<Bstr, LowerHit> {
    const names = new Set<Bstr>();
    for (const d of dirs) {
      const r = sys.raw.readdirat(this.lowers[d.layer]!.fd, d.rel);
      if (typeof r === 'number') continue;
      for (const n of r.names) if (n !== OPAQUE_FILE && whiteoutTargetOf(n) === undefined) names.add(n);
    }
    const out = new Map<Bstr, LowerHit>();
    for (const n of [...names].sort(compareBstr)) {
      const hit = this.lookup(dirs, n);
      if (hit) out.set(n, hit);
    }
    return out;
  }
}

/** Bytewise order (Bstr chars are bytes), the order tar entries and listings use. */
export function compareBstr(a: Bstr, b: Bstr): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What an upper directory entry means. */
export type UpperKind =
  | { kind: 'whiteout'; target: Bstr; form: 'chardev' | 'file' }
  | { kind: 'opaque-marker' }
  | { kind: 'dir'; opaque: boolean; redirect: Redirect | undefined; xattrs: Bstr[] }
  | { kind: 'other'; type: number };

/** Classify `name` in upper dir `rel`, with its lstat in `st`. */
export function classifyUpper(fd: number, rel: Bstr, name: Bstr, st: Float64Array): UpperKind {
  if (name === OPAQUE_FILE) return { kind: 'opaque-marker' };
  const t = whiteoutTargetOf(name);
  if (t !== undefined) return { kind: 'whiteout', target: t, form: 'file' };
  const p = joinRel(rel, name);
  if (sys.tryLstatat(fd, p, st) < 0) throw new FsError('ENOENT', p, 'lstat', 'vanished during the walk');
  const type = st[StatIdx.mode]! & S_IFMT;
  if (type === S_IFCHR && isWhiteoutStat(st)) return { kind: 'whiteout', target: name, form: 'chardev' };
  if (type === S_IFDIR) {
    const xattrs = listXattrsOrEmpty(fd, p);
    const scratch = sys.newStatArray();
    const opaque = isOpaqueDir(fd, p, scratch, xattrs);
    const redirect = readRedirect(fd, p, false, xattrs) ?? readRedirect(fd, p, true, xattrs);
    return { kind: 'dir', opaque, redirect, xattrs };
  }
  return { kind: 'other', type };
}

/** Lower dirs a redirected upper dir takes its lower content from. */
export function redirectSource(stack: Stack, parentDirs: LowerDir[], r: Redirect): LowerDir[] {
  if (r.absolute) return stack.resolvePath(r.path);
  const hit = stack.lookup(parentDirs, r.name);
  return hit && (hit.st[StatIdx.mode]! & S_IFMT) === S_IFDIR ? hit.dirs : [];
}
