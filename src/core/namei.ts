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
 * Results, positive and negative, live in the lookup cache (lookup-cache.ts)
 * keyed by mount path. The core calls drop()/dropTree() for every change it
 * makes, so a hit is always what a fresh lookup would give.
 */
import { StatIdx, inoOf, type Ino } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { fail, parentOf, sys, type Ctx, type Entry, type LayerRef } from './ctx.js';
import { walkName } from './layer-walk.js';
import { NEGATIVE } from './lookup-cache.js';
import {
  isWhiteoutStat, joinRel, listXattrsOrEmpty, splitPath,
  whiteoutFileName, TRUSTED_PREFIX, USER_PREFIX,
} from './whiteout.js';
import { S_IFDIR, S_IFMT, S_IFREG, ENOTDIR } from '../shared/constants.js';

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

/** Look `name` up in the merged directory `parent` (uncached): the layer walk, then the inode number. */
export function lookupChild(ctx: Ctx, parent: Entry, name: Bstr): Entry | undefined {
  const path = parent.path === '/' ? '/' + name : parent.path + '/' + name;
  // Markers are never visible, and cannot name anything.
  if (name.startsWith('.wh.')) return undefined;
  const w = walkName(ctx, path, parent.stack, name, { upperClean: (prel) => upperDirClean(ctx, parent.path, prel) });
  const { type, stack } = w;
  if (stack.length === 0) return undefined;

  let ino: Ino;
  const top = stack[0]!;
  if (type === S_IFDIR) {
    ino = w.firstLowerDev >= 0 ? ctx.inodes.real(w.firstLowerDev, w.firstLowerIno) : ctx.inodes.upper(w.topDev, w.topIno);
  } else if (ctx.layers[top.layer]!.upper) {
    // Only a single-link upper file can be matched to its origin by path: another name of
    // it would find no lower object and report a different number.
    let upperXattrs: Bstr[] | undefined;
    if (type === S_IFREG && parent.stack.length > 1) {
      upperXattrs = listXattrsOrEmpty(ctx.layers[top.layer]!.fd, top.rel);
      if (w.topNlink > 1) upperXattrs = upperXattrs.filter((x) => !x.endsWith('.origin'));
    }
    ino = upperFileIno(ctx, parent, name, path, w.topDev, w.topIno, upperXattrs);
  } else {
    ino = ctx.inodes.real(w.topDev, w.topIno);
  }
  // slice(): the walk's array grew by push to room for 17 (152 bytes for the usual one layer);
  // the entry lives in the lookup cache, one per node the kernel holds (7 MiB per 56k nodes)
  return { path, type, stack: stack.slice(), ino, redirect: w.redirect, opaque: w.opaque };
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
