/**
 * The lookup cache (namei.ts): results of lookup, positive and negative, in a
 * bounded LRU (lru-cache) keyed by mount path, with the merged listings and the
 * clean upper directories that depend on the same names. The core calls
 * drop()/dropTree() for every change it makes, so a hit is always what a fresh
 * lookup would give.
 *
 * Below ctx.ts, which holds one in every mount's state: it knows of an entry
 * only what it keys and measures (Cacheable), so it imports no core module
 * above the leaves.
 */
import { LRUCache } from 'lru-cache';
import type { Bstr } from '../shared/bstr.js';
import type { MergedEntry } from './types.js';
import { cacheBounds } from './config.js';
import type { Redirect } from './whiteout.js';

/** What the cache reads of an entry: its key, and the paths it holds (for its size). ctx.ts Entry fits. */
export interface Cacheable {
  path: Bstr;
  stack: readonly { rel: Bstr }[];
  redirect: Redirect | undefined;
}

/** A cached "nothing is there". */
export const NEGATIVE = Symbol('negative');

/**
 * What the caches hold, in heap bytes: every key and most values are
 * paths, as long as the tree is deep, so each cache is bounded by bytes (and
 * the lookup cache by entries too). A string costs its characters (one byte
 * each: Bstr is latin1) and STR_BYTES beside them (header, the cons strings a
 * concatenation leaves); a slot of lru-cache costs SLOT_BYTES (map entry,
 * arrays). The object sizes are V8's on 64-bit Node, checked against the heap
 * after a full GC (`stratafs stats --gc`, test/integration/memory-depth.test.ts).
 * The lower-directory cache (layer-walk.ts lowerDirBytes) counts the same way.
 */
export const STR_BYTES = 32;
export const SLOT_BYTES = 96;
export const strBytes = (s: Bstr): number => STR_BYTES + s.length;
/** an Entry, its stack array and LayerRefs, and the attribute array a lower entry keeps after its first getattr */
const ENTRY_BYTES = 448;
/** a MergedEntry in a listing and its array slot */
const LISTED_BYTES = 64;

function cachedBytes(v: Cacheable | typeof NEGATIVE, key: Bstr): number {
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

export class LookupCache<E extends Cacheable> {
  private readonly lru: LRUCache<Bstr, E | typeof NEGATIVE> | undefined;
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
    this.lru = max > 0 ? new LRUCache<Bstr, E | typeof NEGATIVE>({ maxSize: this.maxBytes, sizeCalculation: cachedBytes }) : undefined;
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

  private put(path: Bstr, v: E | typeof NEGATIVE): void {
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

  get(path: Bstr): E | typeof NEGATIVE | undefined {
    const v = this.lru?.get(path);
    if (v === undefined) this.misses++; else this.hits++;
    return v;
  }

  setPositive(e: E): void { this.put(e.path, e); }
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
