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

/** lookups in one lower dir before it is listed instead */
const LIST_AFTER = 64;

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
  private whitedOut(d: LowerDir, name: Bstr, listing: Set<Bstr> | undefined): boolean {
    const wh = whiteoutFileName(name);
    if (listing) return listing.has(wh);
    return sys.tryLstatat(this.lowers[d.layer]!.fd, joinRel(d.rel, wh), this.st) === 0;
  }

  private readonly probes = new Map<string, number>();
  private readonly listings = new Map<string, Set<Bstr>>();
  /**
   * Names of a lower dir once the upper has asked about many names in it: one
   * readdir then answers every absent name without two lstats each. A lower
   * dir the upper asks about only a few times is never listed.
   */
  private listingOf(d: LowerDir): Set<Bstr> | undefined {
    const key = `${d.layer}\0${d.rel}`;
    const have = this.listings.get(key);
    if (have) return have;
    const n = (this.probes.get(key) ?? 0) + 1;
    this.probes.set(key, n);
    if (n < LIST_AFTER) return undefined;
    const r = sys.raw.readdirat(this.lowers[d.layer]!.fd, d.rel);
    const set = new Set<Bstr>(typeof r === 'number' ? [] : r.names);
    this.listings.set(key, set);
    this.probes.delete(key);
    return set;
  }

  /** The topmost lower object named `name` in the merged directory made of `dirs`. */
  lookup(dirs: LowerDir[], name: Bstr): LowerHit | undefined {
    let hit: LowerHit | undefined;
    for (const d of dirs) {
      const fd = this.lowers[d.layer]!.fd;
      const rel = joinRel(d.rel, name);
      const st = sys.newStatArray();
      const listing = this.listingOf(d);
      if ((!listing || listing.has(name)) && sys.tryLstatat(fd, rel, st) === 0) {
        if (isWhiteoutStat(st)) break;
        const isDir = (st[StatIdx.mode]! & S_IFMT) === S_IFDIR;
        if (!hit) {
          hit = { layer: d.layer, rel, st, dirs: [] };
          if (!isDir) break;
        } else if (!isDir) break; // a non-directory below a directory is hidden, and so is all beneath it
        hit.dirs.push({ layer: d.layer, rel });
        if (isOpaqueDir(fd, rel, this.st)) break;
      } else if (this.whitedOut(d, name, listing)) break;
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

const DT_TO_TYPE: Record<number, number> = {
  [sys.DT.REG]: 0o100000, [sys.DT.LNK]: 0o120000, [sys.DT.FIFO]: 0o010000, [sys.DT.SOCK]: 0o140000, [sys.DT.BLK]: 0o060000,
};

/** Classify `name` in upper dir `rel`, with its lstat in `st`. */
export function classifyUpper(fd: number, rel: Bstr, name: Bstr, st: Float64Array, dtype: number = sys.DT.UNKNOWN): UpperKind {
  if (name === OPAQUE_FILE) return { kind: 'opaque-marker' };
  const t = whiteoutTargetOf(name);
  if (t !== undefined) return { kind: 'whiteout', target: t, form: 'file' };
  // d_type answers for everything but char devices (a whiteout needs rdev) and directories (markers in xattrs)
  const known = DT_TO_TYPE[dtype];
  if (known !== undefined) return { kind: 'other', type: known };
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
