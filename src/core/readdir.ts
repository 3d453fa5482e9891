/**
 * Merged directory listings (the kernel's fs/overlayfs/readdir.c): the names
 * of every layer in the directory's merge stack, upper first, each once, with
 * markers (`.wh.*`, char 0/0 whiteouts) hiding what they should.
 *
 * Each distinct name is resolved with the same lookup the mount uses
 * (namei.lookupIn), so a listed entry has exactly the type and st_ino a stat
 * of it reports, and the lookup cache is warm for the `ls -l` that follows.
 * The listing is built at opendir and held until releasedir: memory is linear
 * in the entries of open directories.
 */
import type { Bstr } from '../shared/bstr.js';
import { StatIdx, inoOf } from '../native/sys.js';
import { fail, sys, type Ctx, type Entry } from './ctx.js';
import { FsError } from '../shared/errors.js';
import { joinRel } from './whiteout.js';
import { lookupIn, resolveDir } from './namei.js';
import type { Caller, MergedEntry } from './types.js';
import { S_IFMT } from '../shared/constants.js';

/** All visible entries of the merged directory `dir`. */
export function mergedEntries(ctx: Ctx, dir: Entry): MergedEntry[] {
  const seen = new Set<Bstr>();
  const out: MergedEntry[] = [];
  for (const ref of dir.stack) {
    const L = ctx.layers[ref.layer]!;
    const r = sys.raw.readdirat(L.fd, ref.rel);
    if (typeof r === 'number') fail('EIO', dir.path, 'readdir', `layer ${L.index} errno ${-r}`);
    for (const name of r.names) {
      if (seen.has(name)) continue;
      seen.add(name);
      if (name.startsWith('.wh.')) continue;
      let e: Entry | undefined;
      try {
        e = lookupIn(ctx, dir, name);
      } catch (err) {
        // As the kernel's merged readdir: an entry that cannot be looked up (a corrupt marker)
        // is still listed, with its layer's type and number; only its own lookup fails.
        if (!(err instanceof FsError)) throw err;
        const st = sys.newStatArray();
        if (sys.tryLstatat(L.fd, joinRel(ref.rel, name), st) < 0) continue;
        const ino = L.upper ? ctx.inodes.upper(st[StatIdx.dev]!, inoOf(st)) : ctx.inodes.real(st[StatIdx.dev]!, inoOf(st));
        out.push({ name, type: st[StatIdx.mode]! & S_IFMT, ino });
        continue;
      }
      if (e !== undefined) out.push({ name, type: e.type, ino: e.ino });
    }
  }
  return out;
}

/** True when the merged directory shows no entry (rmdir, rename over a directory). */
export function isMergedEmpty(ctx: Ctx, dir: Entry): boolean {
  const seen = new Set<Bstr>();
  for (const ref of dir.stack) {
    const L = ctx.layers[ref.layer]!;
    const r = sys.raw.readdirat(L.fd, ref.rel);
    if (typeof r === 'number') fail('EIO', dir.path, 'readdir', `layer ${L.index} errno ${-r}`);
    for (const name of r.names) {
      if (seen.has(name) || name.startsWith('.wh.')) continue;
      seen.add(name);
      try {
        if (lookupIn(ctx, dir, name) !== undefined) return false;
      } catch (err) {
        // Listed, though its lookup fails (mergedEntries): the directory is not empty.
        if (err instanceof FsError) return false;
        throw err;
      }
    }
  }
  return true;
}

/** The listing of the directory at `path`, from the cache while nothing in it changed (namei.ts LookupCache.listings). */
function listingOf(ctx: Ctx, path: Bstr): MergedEntry[] {
  const dir = resolveDir(ctx, path);
  const cached = ctx.cache.listings?.get(path);
  if (cached !== undefined) return cached;
  const entries = mergedEntries(ctx, dir);
  ctx.cache.listings?.set(path, entries);
  return entries;
}

export function opendir(ctx: Ctx, path: Bstr, _caller: Caller): number {
  const entries = listingOf(ctx, path);
  const fh = ctx.nextFh++;
  ctx.dirs.set(fh, { path, entries, fd: -1, listed: false });
  return fh;
}

/**
 * The listing of an open directory. libfuse 2.9 buffers the whole listing and
 * asks again (offset 0) only on a rewind: the first call gets the opendir
 * listing, a later one a fresh listing, as rewinddir(3) on the kernel's
 * overlayfs sees changes made since. `path` is libfuse's current path of the
 * directory (null once it is removed: then it lists empty).
 */
export function readdir(ctx: Ctx, path: Bstr | null, fh: number): MergedEntry[] {
  const d = ctx.dirs.get(fh);
  if (!d) fail('EBADF', path ?? '', 'readdir');
  if (d.listed) d.entries = path === null ? [] : listingOf(ctx, path);
  d.listed = true;
  return d.entries;
}

export function releasedir(ctx: Ctx, _path: Bstr | null, fh: number): void {
  const d = ctx.dirs.get(fh);
  if (!d) return;
  ctx.dirs.delete(fh);
  if (d.fd >= 0) sys.raw.close(d.fd);
}
