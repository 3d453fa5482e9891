/**
 * An upper dir and its lowers, read directly (not through a mount), for diff,
 * commit, size and which. The walk of diff and commit is driven by the upper:
 * lower layers are asked only about names the upper touches, plus the whole
 * content of directories the upper makes opaque (to list what they delete) or
 * redirects (renamed directories, whose lower content moved with them).
 *
 * Every lookup in the layers is the mount's own layer walk (core/layer-walk.ts):
 * whiteouts, opaque directories and redirects in any layer, lower ones included,
 * mean here what they mean to the mount and the kernel.
 */
import { LRUCache } from 'lru-cache';
import * as sys from '../native/sys.js';
import { StatIdx } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { cacheBounds, DEFAULT_LOOKUP_CACHE_SIZE } from '../core/config.js';
import { FsError } from '../shared/errors.js';
import type { LowerDirInfo } from '../core/ctx.js';
import { lowerDirBytes, walkName, type Walked, type WalkCtx, type WalkLayer } from '../core/layer-walk.js';
import {
  isOpaqueDir, isWhiteoutStat, joinRel, listXattrsOrEmpty, readRedirect, whiteoutTargetOf,
  OPAQUE_FILE, type Redirect,
} from '../core/whiteout.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../shared/constants.js';

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

/** A walk context over `layers` (top first); `upper` says which one is the writable layer. */
function walkCtx(layers: Layer[], upper: Layer | undefined): WalkCtx {
  const walkLayers: WalkLayer[] = layers.map((l, index) => ({ index, fd: l.fd, upper: l === upper }));
  return {
    layers: walkLayers, userxattr: undefined, st: sys.newStatArray(), log: () => {},
    lowerDirs: new LRUCache<string, LowerDirInfo>({ maxSize: cacheBounds(DEFAULT_LOOKUP_CACHE_SIZE).lowerDirs, sizeCalculation: lowerDirBytes }),
  };
}

export class Stack {
  readonly upper: Layer | undefined;
  readonly lowers: Layer[];
  /** the lowers alone (index = lower index), as the mount walks them below the upper */
  private readonly lowerWalk: WalkCtx;
  private fullWalk: WalkCtx | undefined;

  constructor(upper: string | undefined, lowers: string[]) {
    const open = (p: string): Layer => ({ path: p, fd: sys.openRoot(toB(p)) });
    this.upper = upper !== undefined ? open(upper) : undefined;
    this.lowers = lowers.map(open);
    this.lowerWalk = walkCtx(this.lowers, undefined);
  }

  close(): void {
    if (this.upper) sys.close(this.upper.fd);
    for (const l of this.lowers) sys.close(l.fd);
  }

  /** The lower view of the root. */
  rootDirs(): LowerDir[] {
    return this.lowers.map((_, i) => ({ layer: i, rel: '' }));
  }

  /**
   * The upper (if any) over the lowers, as the mount sees them: layer 0 is the
   * upper when there is one, then the lowers top first (`which`).
   */
  walkAll(): WalkCtx {
    this.fullWalk ??= walkCtx(this.upper ? [this.upper, ...this.lowers] : this.lowers, this.upper);
    return this.fullWalk;
  }

  private hit(w: Walked): LowerHit | undefined {
    const top = w.stack[0];
    if (top === undefined) return undefined;
    const st = sys.lstatat(this.lowers[top.layer]!.fd, top.rel, sys.newStatArray());
    return { layer: top.layer, rel: top.rel, st, dirs: w.type === S_IFDIR ? w.stack : [] };
  }

  /** The topmost lower object named `name` in the merged directory made of `dirs`. */
  lookup(dirs: LowerDir[], name: Bstr): LowerHit | undefined {
    return this.hit(walkName(this.lowerWalk, '/' + joinRel(dirs[0]?.rel ?? '', name), dirs, name));
  }

  /**
   * Lower dirs an upper dir redirected to `r` takes its content from, `parentDirs` being
   * the lower dirs of its parent: the walk below the upper as the mount makes it.
   */
  redirected(parentDirs: LowerDir[], r: Redirect): LowerDir[] {
    const at = r.absolute ? '/' + r.path : '/' + joinRel(parentDirs[0]?.rel ?? '', r.name);
    const w = walkName(this.lowerWalk, at, parentDirs, '', { start: r });
    return w.type === S_IFDIR ? w.stack : [];
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
  [sys.DT.REG]: S_IFREG, [sys.DT.LNK]: S_IFLNK, [sys.DT.FIFO]: S_IFIFO, [sys.DT.SOCK]: S_IFSOCK, [sys.DT.BLK]: S_IFBLK,
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
