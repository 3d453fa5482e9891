/**
 * Lookup (the kernel's fs/overlayfs/namei.c): resolve a mount path to the
 * stack of real objects that make it up, one component at a time, top layer
 * down. A name in a higher layer hides the same name below; only directories
 * merge; a non-directory, a whiteout or an opaque directory ends the merge;
 * a redirect xattr sends the lookup in lower layers to another path.
 *
 * Resolution never follows a symlink inside a layer: every real path is
 * reached with the addon's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS beneath the
 * layer's root fd, and only directories are walked into.
 *
 * Results, positive and negative, live in a bounded LRU (lru-cache) keyed by
 * mount path. The core calls drop()/dropTree() for every change it makes, so
 * a hit is always what a fresh lookup would give.
 */
import { LRUCache } from 'lru-cache';
import { StatIdx, inoOf, type Ino } from '../native/sys.js';
import { toText, type Bstr } from './bstr.js';
import { FsError } from './errors.js';
import type { MergedEntry } from './types.js';
import { cacheBounds } from './config.js';
import { fail, parentOf, sys, type Ctx, type LayerRef } from './ctx.js';
import {
  isOpaqueDir, isWhiteoutStat, joinRel, listXattrsOrEmpty, readRedirect, splitPath,
  whiteoutFileName, S_IFDIR, S_IFMT, S_IFREG, TRUSTED_PREFIX, USER_PREFIX, type Redirect,
} from './whiteout.js';

const ENOENT = 2;
const ENOTDIR = 20;
const ENAMETOOLONG = 36;

/** A resolved merged object. Immutable once cached: changes replace or drop it. */
export interface Entry {
  path: Bstr;
  /** S_IFMT bits */
  type: number;
  /** the real objects, top first; [0] is what stat and open see; directories list every merged layer */
  stack: LayerRef[];
  ino: Ino;
  /** redirect on the top directory, if it has one */
  redirect: Redirect | undefined;
  /** the top directory is opaque (a merged listing stops there) */
  opaque: boolean;
  /**
   * Attributes of a lower-only object, kept after the first getattr: lower
   * layers do not change under a mount, and any change through it copies the
   * object up, which replaces this entry. Never set for upper objects.
   */
  attrs?: Float64Array;
}

const NEGATIVE = Symbol('negative');
type Cached = Entry | typeof NEGATIVE;

export const isDir = (e: Entry): boolean => e.type === S_IFDIR;

export function isUpperEntry(ctx: Ctx, e: Entry): boolean {
  return ctx.upper !== undefined && e.stack[0]!.layer === 0;
}

/** A directory with content in some lower layer (renaming it needs a redirect). */
export function hasLowerDir(ctx: Ctx, e: Entry): boolean {
  return e.stack.some((r) => !ctx.layers[r.layer]!.upper);
}

/** The path of the upper copy (same as the mount path: the upper is never redirected at its top). */
export function upperRef(e: Entry): LayerRef { return e.stack[0]!; }

/**
 * What the caches below hold, in heap bytes: every key and most values are
 * paths, as long as the tree is deep, so each cache is bounded by bytes (and
 * the lookup cache by entries too). A string costs its characters (one byte
 * each: Bstr is latin1) and STR_BYTES beside them (header, the cons strings a
 * concatenation leaves); a slot of lru-cache costs SLOT_BYTES (map entry,
 * arrays). The object sizes are V8's on 64-bit Node, checked against the heap
 * after a full GC (`stratafs stats --gc`, test/integration/memory-depth.test.ts).
 */
export const STR_BYTES = 32;
export const SLOT_BYTES = 96;
/** an Entry, its stack array and LayerRefs, and the attribute array a lower entry keeps after its first getattr */
const ENTRY_BYTES = 448;
/** a MergedEntry in a listing and its array slot */
const LISTED_BYTES = 64;

const strBytes = (s: Bstr): number => STR_BYTES + s.length;
function cachedBytes(v: Cached, key: Bstr): number {
  let n = SLOT_BYTES + strBytes(key);
  if (v === NEGATIVE) return n;
  n += ENTRY_BYTES;
  for (const r of v.stack) n += strBytes(r.rel);
  if (v.redirect !== undefined) n += strBytes(v.redirect.absolute ? v.redirect.path : v.redirect.name);
  return n;
}
function listingBytes(v: MergedEntry[], key: Bstr): number {
  let n = SLOT_BYTES + strBytes(key);
  for (const e of v) n += LISTED_BYTES + strBytes(e.name);
  return n;
}

export class LookupCache {
  private readonly lru: LRUCache<Bstr, Cached> | undefined;
  hits = 0;
  misses = 0;
  /** entries at most */
  readonly max: number;
  /** bytes at most (config.ts cacheBounds: a shallow tree reaches `max` entries first) */
  readonly maxBytes: number;

  constructor(max: number) {
    const bounds = cacheBounds(max);
    this.max = max;
    this.maxBytes = bounds.lookup;
    // Bounded by maxSize (bytes) and set() bounds the count: lru-cache's own `max` preallocates `max` slots
    // with Array.from, 13-30 ms for the default 100k, all of it before a new mount can answer.
    this.lru = max > 0 ? new LRUCache<Bstr, Cached>({ maxSize: this.maxBytes, sizeCalculation: cachedBytes }) : undefined;
    this.upperDirs = max > 0
      ? new LRUCache<Bstr, boolean>({ maxSize: bounds.upperDirs, sizeCalculation: (_v, k) => SLOT_BYTES + strBytes(k) })
      : undefined;
    // A listing larger than the bound is not kept (lru-cache refuses it): it is built at each opendir.
    this.listings = max > 0
      ? new LRUCache<Bstr, MergedEntry[]>({ maxSize: bounds.listings, sizeCalculation: listingBytes })
      : undefined;
  }

  /** Heap bytes the entries hold now (estimated as above). */
  get bytes(): number { return this.lru?.calculatedSize ?? 0; }

  private put(path: Bstr, v: Cached): void {
    if (!this.lru) return;
    this.lru.set(path, v);
    while (this.lru.size > this.max) this.lru.pop();
  }

  /**
   * Merged listings of directories by mount path (readdir.ts), bounded by the
   * bytes they hold. Every change of a name goes through drop() or
   * dropTree() of that name (the positive and negative entries above depend on
   * it), which also drops the listing of its directory; a copy-up drops the
   * path too. So a listing is served from here only while no name in it changed.
   */
  readonly listings: LRUCache<Bstr, MergedEntry[]> | undefined;

  private dropListings(path: Bstr): void {
    if (!this.listings) return;
    this.listings.delete(path);
    const i = path.lastIndexOf('/');
    this.listings.delete(i <= 0 ? '/' : path.slice(0, i));
  }

  get size(): number { return this.lru?.size ?? 0; }

  get(path: Bstr): Cached | undefined {
    const v = this.lru?.get(path);
    if (v === undefined) this.misses++; else this.hits++;
    return v;
  }

  setPositive(e: Entry): void { this.put(e.path, e); }
  setNegative(path: Bstr): void { this.put(path, NEGATIVE); }

  /** Forget one path. */
  drop(path: Bstr): void {
    this.lru?.delete(path);
    this.dropListings(path);
  }

  /**
   * Forget a path and everything beneath it (directory rename, rmdir). A scan
   * of the keys: O(cache size), paid only by directory renames and rmdirs.
   */
  dropTree(path: Bstr): void {
    const prefix = path === '/' ? '/' : path + '/';
    this.dropListings(path);
    for (const lru of [this.lru, this.upperDirs, this.listings]) {
      if (!lru) continue;
      lru.delete(path);
      const doomed: Bstr[] = [];
      for (const k of lru.keys()) if (k.startsWith(prefix)) doomed.push(k);
      for (const k of doomed) lru.delete(k);
    }
  }

  /**
   * Upper directories (by mount path) known to hold no `.wh.` file, so that a
   * name missing from one needs no second probe for `.wh.<name>`. Only used
   * when this mount writes char-dev whiteouts (it then never adds `.wh.`
   * files). Every other way a directory at a path could gain one is a
   * directory rename onto it, which calls dropTree; new directories are empty.
   */
  readonly upperDirs: LRUCache<Bstr, boolean> | undefined;

  clear(): void { this.lru?.clear(); this.upperDirs?.clear(); this.listings?.clear(); }
}

export { NEGATIVE };

/** The root: every layer's root directory merged (opaque/redirect at a root mean nothing). */
export function rootEntry(ctx: Ctx): Entry {
  const top = ctx.layers.find((l) => !l.upper) ?? ctx.layers[0]!;
  sys.lstatat(top.fd, '', ctx.st);
  return {
    path: '/', type: S_IFDIR, stack: ctx.layers.map((l) => ({ layer: l.index, rel: '' })),
    ino: ctx.inodes.real(ctx.st[StatIdx.dev]!, inoOf(ctx.st)), redirect: undefined, opaque: false,
  };
}

/**
 * Resolve a mount path, or undefined when nothing is there. Throws ENOTDIR
 * when a parent component is not a directory, ENAMETOOLONG for long names.
 */
export function lookup(ctx: Ctx, path: Bstr): Entry | undefined {
  const c = ctx.cache.get(path);
  if (c !== undefined) return c === NEGATIVE ? undefined : c;
  if (path === '/') {
    const r = rootEntry(ctx);
    ctx.cache.setPositive(r);
    return r;
  }
  const [ppath, name] = parentOf(path);
  if (name.length > 255) fail('ENAMETOOLONG', path);
  const parent = lookup(ctx, ppath);
  if (parent === undefined) return undefined;
  if (parent.type !== S_IFDIR) fail('ENOTDIR', path);
  const e = lookupChild(ctx, parent, name);
  if (e === undefined) ctx.cache.setNegative(path); else ctx.cache.setPositive(e);
  return e;
}

/** lookup() that fails ENOENT. */
export function resolve(ctx: Ctx, path: Bstr): Entry {
  const e = lookup(ctx, path);
  if (e === undefined) fail('ENOENT', path);
  return e;
}

/** resolve() of a path whose last component must be a directory. */
export function resolveDir(ctx: Ctx, path: Bstr): Entry {
  const e = resolve(ctx, path);
  if (e.type !== S_IFDIR) fail('ENOTDIR', path);
  return e;
}

/** Cached lookup of `name` in the already resolved directory `parent`. */
export function lookupIn(ctx: Ctx, parent: Entry, name: Bstr): Entry | undefined {
  const path = parent.path === '/' ? '/' + name : parent.path + '/' + name;
  const c = ctx.cache.get(path);
  if (c !== undefined) return c === NEGATIVE ? undefined : c;
  const e = lookupChild(ctx, parent, name);
  if (e === undefined) ctx.cache.setNegative(path); else ctx.cache.setPositive(e);
  return e;
}

/** Look `name` up in the merged directory `parent` (uncached). */
export function lookupChild(ctx: Ctx, parent: Entry, name: Bstr): Entry | undefined {
  const path = parent.path === '/' ? '/' + name : parent.path + '/' + name;
  // Markers are never visible, and cannot name anything.
  if (name.startsWith('.wh.')) return undefined;
  const st = ctx.st;
  const stack: LayerRef[] = [];
  let type = 0;
  let topDev = 0;
  let topIno: Ino = 0;
  let firstLowerDev = -1;
  let firstLowerIno: Ino = 0;
  let redirect: Redirect | undefined;
  let opaque = false;
  let curName = name;
  let absPath: Bstr | undefined;
  let list: readonly LayerRef[] = parent.stack;
  let upperXattrs: Bstr[] | undefined;

  // An opaque dir on the way to an absolute redirect target ends the merge after that layer,
  // unless the target itself redirects absolutely (kernel ovl_check_redirect clears d->stop).
  let stopBelow = false;
  for (let i = 0; i < list.length; i++) {
    if (stopBelow) break;
    const { layer, rel: prel } = list[i]!;
    const L = ctx.layers[layer]!;
    const rel = absPath ?? joinRel(prel, curName);
    // An absolute redirect is walked in each layer one component at a time, as the kernel's
    // ovl_lookup_layer does: what lies on the way there can stop or redirect the lookup below.
    if (absPath !== undefined && absPath.includes('/')) {
      const w = walkAbsolute(ctx, path, layer, absPath);
      if (w.state === 'stop') break;
      stopBelow = w.opaque;
      absPath = w.next;
      if (w.state === 'missing') continue;
    }
    if (!L.upper) {
      // Lower layers never change: their directory listings answer most probes without a syscall.
      const [d, n] = absPath === undefined ? [prel, curName] : splitPath(rel);
      const info = lowerDirInfo(ctx, layer, d);
      if (info !== undefined) {
        if (info.wh.has(n)) break;
        if (info.names !== undefined && !info.names.has(n)) continue;
      }
    }
    const r = sys.tryLstatat(L.fd, rel, st);
    if (r < 0) {
      if (r === -ENOENT || r === -ENOTDIR) {
        if (L.upper && absPath === undefined && r === -ENOENT && upperDirClean(ctx, parent.path, prel)) continue;
        // An OCI/fuse-overlayfs whiteout beside the name hides it below.
        const [d, n] = splitPath(rel);
        if (sys.tryLstatat(L.fd, joinRel(d, whiteoutFileName(n)), st) === 0) break;
        continue;
      }
      if (r === -ENAMETOOLONG) {
        // A name from a redirect that no layer can hold is missing there (kernel ovl_lookup_single).
        if (absPath !== undefined || curName !== name) continue;
        fail('ENAMETOOLONG', path);
      }
      fail('EIO', path, 'lstat', `layer ${L.index} errno ${-r}`);
    }
    if (isWhiteoutStat(st)) break;
    const t = st[StatIdx.mode]! & S_IFMT;
    if (stack.length === 0) {
      type = t;
      topDev = st[StatIdx.dev]!;
      topIno = inoOf(st);
      stack.push({ layer, rel });
      if (!L.upper) { firstLowerDev = topDev; firstLowerIno = topIno; }
      if (t !== S_IFDIR) {
        // Only a single-link upper file can be matched to its origin by path: another name of
        // it would find no lower object and report a different number.
        if (L.upper && t === S_IFREG && parent.stack.length > 1) {
          upperXattrs = listXattrsOrEmpty(L.fd, rel);
          if (st[StatIdx.nlink]! > 1) upperXattrs = upperXattrs.filter((x) => !x.endsWith('.origin'));
        }
        break;
      }
    } else {
      // A non-directory below a directory ends the merge.
      if (t !== S_IFDIR) break;
      stack.push({ layer, rel });
      if (firstLowerDev < 0 && !L.upper) { firstLowerDev = st[StatIdx.dev]!; firstLowerIno = inoOf(st); }
    }
    // A directory: does it stop the merge or send it elsewhere? Not worth asking of the
    // bottom layer. (An absolute redirect restarts from the root stack, so even a
    // directory whose parent has no lower content may continue below.)
    if (layer === ctx.layers.length - 1) break;
    const xnames = listXattrsOrEmpty(L.fd, rel);
    const opqFile = L.upper ? undefined : lowerDirInfo(ctx, layer, rel)?.opq;
    if (isOpaqueDir(L.fd, rel, st, xnames, opqFile)) {
      if (stack.length === 1) opaque = true;
      break;
    }
    const rd = redirectOf(ctx, path, layer, rel, xnames);
    if (rd !== undefined) {
      if (stack.length === 1) redirect = rd;
      if (rd.absolute) {
        // Continue in every layer below this one, from its root (kernel: poe = roe).
        absPath = rd.path;
        stopBelow = false;
        list = ctx.layers.slice(layer + 1).map((l) => ({ layer: l.index, rel: '' }));
        i = -1;
      } else if (absPath !== undefined) {
        // A relative redirect met on an absolute walk replaces the last component of the
        // path walked so far (kernel ovl_check_redirect keeps the prefix).
        absPath = joinRel(splitPath(absPath)[0], rd.name);
      } else {
        curName = rd.name;
      }
    }
  }
  if (stack.length === 0) return undefined;

  let ino: Ino;
  if (type === S_IFDIR) {
    ino = firstLowerDev >= 0 ? ctx.inodes.real(firstLowerDev, firstLowerIno) : ctx.inodes.upper(topDev, topIno);
  } else if (ctx.layers[stack[0]!.layer]!.upper) {
    ino = upperFileIno(ctx, parent, name, path, topDev, topIno, upperXattrs);
  } else {
    ino = ctx.inodes.real(topDev, topIno);
  }
  return { path, type, stack, ino, redirect, opaque };
}

/**
 * Walk the components of `abs` before its last one in lower layer `layer`
 * (kernel ovl_lookup_single on each element of an absolute redirect path): a
 * missing one means this layer has nothing there (what was met before it
 * still counts); a whiteout or a
 * non-directory stops the lookup in every layer below; an opaque directory
 * stops it after this layer; a redirect on the way rewrites the path the
 * layers below are searched at (relative: that component; absolute: the
 * prefix). The bottom layer's directories are not asked for markers.
 */
interface AbsWalk {
  state: 'found' | 'missing' | 'stop';
  /** an opaque dir was met: search no layer below this one */
  opaque: boolean;
  /** the path to search the layers below at */
  next: Bstr;
}

function walkAbsolute(ctx: Ctx, path: Bstr, layer: number, abs: Bstr): AbsWalk {
  const L = ctx.layers[layer]!;
  const bottom = layer === ctx.layers.length - 1;
  const st = new Float64Array(ctx.st.length);
  const parts = abs.split('/');
  let next = parts.slice();
  let opaque = false;
  let cur = '';
  for (let k = 0; k < parts.length - 1; k++) {
    const name = parts[k]!;
    const rel = joinRel(cur, name);
    const r = sys.tryLstatat(L.fd, rel, st);
    if (r < 0) {
      if (r === -ENAMETOOLONG) return { state: 'missing', opaque, next: next.join('/') };
      if (r !== -ENOENT && r !== -ENOTDIR) fail('EIO', '/' + abs, 'lstat', `layer ${L.index} errno ${-r}`);
      const whf = sys.tryLstatat(L.fd, joinRel(cur, whiteoutFileName(name)), st) === 0;
      return { state: whf ? 'stop' : 'missing', opaque, next: next.join('/') };
    }
    if (isWhiteoutStat(st) || (st[StatIdx.mode]! & S_IFMT) !== S_IFDIR) return { state: 'stop', opaque, next: abs };
    cur = rel;
    if (bottom) continue;
    const xnames = listXattrsOrEmpty(L.fd, rel);
    if (isOpaqueDir(L.fd, rel, st, xnames, lowerDirInfo(ctx, layer, rel)?.opq)) { opaque = true; continue; }
    const rd = redirectOf(ctx, path, layer, rel, xnames);
    if (rd === undefined) continue;
    // Components after this one keep their place counted from the end of the path.
    const post = next.slice(next.length - (parts.length - 1 - k));
    if (rd.absolute) { next = [...(rd.path === '' ? [] : rd.path.split('/')), ...post]; opaque = false; }
    else next = [...next.slice(0, next.length - (parts.length - k)), rd.name, ...post];
  }
  return { state: 'found', opaque, next: next.join('/') };
}

/** Layer objects whose bad marker the log has named (per mount; emptied when it grows large). */
const loggedMarkers = new WeakMap<Ctx, Set<Bstr>>();

/**
 * The redirect of directory `rel` in `layer`, met while looking up mount path `path`. A value
 * the kernel refuses fails that lookup alone with the kernel's errno (parseRedirect), never
 * the listing of the parent (readdir.ts); the daemon log names it once.
 */
function redirectOf(ctx: Ctx, path: Bstr, layer: number, rel: Bstr, xnames: readonly Bstr[]): Redirect | undefined {
  try {
    return readRedirect(ctx.layers[layer]!.fd, rel, ctx.userxattr, xnames);
  } catch (e) {
    if (!(e instanceof FsError)) throw e;
    let seen = loggedMarkers.get(ctx);
    if (seen === undefined) { seen = new Set(); loggedMarkers.set(ctx, seen); }
    const key = layer + '\0' + rel;
    if (!seen.has(key)) {
      if (seen.size >= 10_000) seen.clear();
      seen.add(key);
      ctx.log(`stratafs: corrupt marker: ${e.message} on ${toText(rel)} in layer ${layer}: ${toText(path)} fails ${e.code}`);
    }
    throw new FsError(e.code, path, 'lookup', e.message);
  }
}

/**
 * An upper non-directory keeps its lower origin's number: recorded by a
 * copy-up in this mount, or (a copy-up by an earlier mount or the kernel,
 * marked by an origin xattr) the number of the lower object at the same path.
 * Refuses metacopy files: their data lives in a lower file stratafs does not follow.
 */
function upperFileIno(ctx: Ctx, parent: Entry, name: Bstr, path: Bstr, dev: number, ino: Ino, xattrs: Bstr[] | undefined): Ino {
  const mapped = ctx.inodes.upper(dev, ino);
  if (!xattrs || xattrs.length === 0) return mapped;
  for (const p of [TRUSTED_PREFIX, USER_PREFIX]) {
    if (xattrs.includes(p + 'metacopy')) {
      ctx.log(`refusing ${path}: upper file made with the metacopy feature (${p}metacopy), which stratafs does not read`);
      fail('EIO', path, 'lookup', 'metacopy upper file: feature not supported');
    }
  }
  if (mapped !== ctx.inodes.real(dev, ino)) return mapped;
  const originName = (ctx.userxattr ? USER_PREFIX : TRUSTED_PREFIX) + 'origin';
  if (!xattrs.includes(originName)) return mapped;
  const st = new Float64Array(ctx.st.length);
  for (const ref of parent.stack) {
    const L = ctx.layers[ref.layer]!;
    if (L.upper) continue;
    const rel = joinRel(ref.rel, name);
    if (sys.tryLstatat(L.fd, rel, st) !== 0) continue;
    if (isWhiteoutStat(st) || (st[StatIdx.mode]! & S_IFMT) === S_IFDIR || st[StatIdx.nlink]! > 1) break;
    const n = ctx.inodes.real(st[StatIdx.dev]!, inoOf(st));
    ctx.inodes.recordCopyUp(ino, n);
    return n;
  }
  return mapped;
}

/** Does the upper directory of mount path `mpath` (at upper rel `urel`) hold no `.wh.` file? */
export function upperDirClean(ctx: Ctx, mpath: Bstr, urel: Bstr): boolean {
  const m = ctx.cache.upperDirs;
  if (m === undefined || !ctx.wh?.useCharDev) return false;
  const known = m.get(mpath);
  if (known !== undefined) return known;
  const r = sys.raw.readdirat(ctx.upper!.fd, urel);
  if (typeof r === 'number') return false;
  const clean = !r.names.some((n) => n.startsWith('.wh.'));
  m.set(mpath, clean);
  return clean;
}

/** What lookup needs to know of one lower-layer directory, from one readdir. */
export interface LowerDirInfo {
  /** every name in it; undefined for very large directories (then lstat answers) */
  names: Set<Bstr> | undefined;
  /** targets of `.wh.<name>` files */
  wh: Set<Bstr>;
  /** it holds `.wh..wh..opq` */
  opq: boolean;
}

const NAMES_KEPT_MAX = 20_000;
/** a name in a Set of LowerDirInfo */
const SET_SLOT_BYTES = 32;

/** Heap bytes of one lower-directory cache entry (ctx.lowerDirs). */
export function lowerDirBytes(v: LowerDirInfo, key: string): number {
  let n = SLOT_BYTES + 2 * STR_BYTES + key.length + 64;
  if (v.names !== undefined) for (const x of v.names) n += SET_SLOT_BYTES + strBytes(x);
  for (const x of v.wh) n += SET_SLOT_BYTES + strBytes(x);
  return n;
}

/** Listing facts of directory `rel` of lower layer `layer` (cached; lower layers are immutable). */
export function lowerDirInfo(ctx: Ctx, layer: number, rel: Bstr): LowerDirInfo | undefined {
  const key = layer + '\0' + rel;
  const hit = ctx.lowerDirs.get(key);
  if (hit !== undefined) return hit;
  const r = sys.raw.readdirat(ctx.layers[layer]!.fd, rel);
  if (typeof r === 'number') return undefined;
  const wh = new Set<Bstr>();
  let opq = false;
  for (const n of r.names) {
    if (!n.startsWith('.wh.')) continue;
    if (n === '.wh..wh..opq') opq = true;
    else if (n.length > 4) wh.add(n.slice(4));
  }
  const info: LowerDirInfo = { names: r.names.length <= NAMES_KEPT_MAX ? new Set(r.names) : undefined, wh, opq };
  // A directory whose names would take more than a quarter of the cache keeps only its markers: left out
  // of the cache altogether, every lookup in it would read it again.
  if (info.names !== undefined && lowerDirBytes(info, key) > ctx.lowerDirs.maxSize / 4) info.names = undefined;
  ctx.lowerDirs.set(key, info);
  return info;
}

/**
 * Does some lower layer still have `name` in the merged directory `parent`
 * (so removing or renaming away the upper object must leave a whiteout)?
 */
export function lowerHasName(ctx: Ctx, parent: Entry, name: Bstr): boolean {
  const st = ctx.st;
  for (const ref of parent.stack) {
    const L = ctx.layers[ref.layer]!;
    if (L.upper) continue;
    const rel = joinRel(ref.rel, name);
    const r = sys.tryLstatat(L.fd, rel, st);
    if (r === 0) return !isWhiteoutStat(st);
    const [d, n] = splitPath(rel);
    if (sys.tryLstatat(L.fd, joinRel(d, whiteoutFileName(n)), st) === 0) return false;
  }
  return false;
}


export { ENOTDIR };
