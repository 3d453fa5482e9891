/**
 * The layer walk of overlay lookup (the kernel's ovl_lookup in
 * fs/overlayfs/namei.c), on its own: which real objects make up one name of a
 * merged directory. A name in a higher layer hides the same name below; only
 * directories merge; a non-directory, a whiteout (char 0/0 or an OCI
 * `.wh.<name>`) or an opaque directory ends the merge; a redirect xattr sends
 * the walk in the layers below to another path.
 *
 * Pure over the syscall boundary: it needs layer root fds, nothing of a mount.
 * The mount's lookup (namei.ts) adds inode numbers and its cache on top; the
 * image commands (`which`, `diff`, `commit`, src/image/) walk the same way
 * over layers read directly, so they see what the mount shows, redirects in
 * lower layers included (kernel uppers committed as layers carry them).
 *
 * Resolution never follows a symlink inside a layer: every real path is
 * reached with the addon's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS beneath the
 * layer's root fd, and only directories are walked into.
 */
import type { LRUCache } from 'lru-cache';
import * as sys from '../native/sys.js';
import { StatIdx, inoOf, type Ino } from '../native/sys.js';
import { toText, type Bstr } from '../shared/bstr.js';
import { FsError } from '../shared/errors.js';
import { fail, type LayerRef, type LowerDirInfo } from './ctx.js';
import { SLOT_BYTES, STR_BYTES, strBytes } from './lookup-cache.js';
import {
  isOpaqueDir, isWhiteoutStat, joinRel, listXattrsOrEmpty, readRedirect, splitPath,
  whiteoutFileName, type Redirect,
} from './whiteout.js';
import { S_IFDIR, S_IFMT, ENAMETOOLONG, ENOENT, ENOTDIR } from '../shared/constants.js';

/** One layer as the walk sees it (core Layer fits). */
export interface WalkLayer {
  /** position in WalkCtx.layers: 0 is the top */
  index: number;
  /** O_PATH directory fd of the layer root */
  fd: number;
  /** the writable layer: it changes, so its listings are never cached */
  upper: boolean;
}

/** What the walk needs (core Ctx fits). */
export interface WalkCtx {
  layers: readonly WalkLayer[];
  /**
   * marker xattrs read are user.overlay.* (true) or trusted.overlay.* (false); undefined: either
   * (image commands, which read layers written by the kernel, rootless mounts and stratafs alike)
   */
  userxattr: boolean | undefined;
  /** scratch stat buffer */
  st: Float64Array;
  /** per lower-layer directory listing facts (lowerDirInfo), bounded by bytes */
  lowerDirs: LRUCache<string, LowerDirInfo>;
  log: (line: string) => void;
}

/** The objects behind one merged name; `stack` is empty when nothing is there. */
export interface Walked {
  /** S_IFMT bits of the top object */
  type: number;
  /** the real objects, top first; [0] is what stat and open see; directories list every merged layer */
  stack: LayerRef[];
  /** redirect on the top directory, if it has one */
  redirect: Redirect | undefined;
  /** the top directory is opaque */
  opaque: boolean;
  topDev: number;
  topIno: Ino;
  topNlink: number;
  /** device and inode of the topmost lower object, dev -1 when there is none */
  firstLowerDev: number;
  firstLowerIno: Ino;
  /** nothing found because a whiteout hides the name: where */
  hiddenBy?: { layer: number; rel: Bstr; form: 'chardev' | 'file' };
}

export interface WalkOptions {
  /**
   * The upper directory at `prel` (of the parent's mount path) is known to hold no `.wh.` file,
   * so a missing name needs no second probe (namei's upperDirClean).
   */
  upperClean?: (prel: Bstr) => boolean;
  /**
   * Start as if a directory above every layer of `parent` carried this redirect: the
   * lower content of an upper directory read on its own (image diff/commit of a renamed
   * directory), looked up exactly as the mount looks it up below the upper.
   */
  start?: Redirect;
}

/**
 * Walk `name` down the layers of the merged directory `parent` (its stack, top first).
 * `path` is the mount path, for errors. Throws ENAMETOOLONG for a too long name,
 * EIO for a layer that cannot be read, and a corrupt redirect's errno.
 */
export function walkName(w: WalkCtx, path: Bstr, parent: readonly LayerRef[], name: Bstr, opts: WalkOptions = {}): Walked {
  const st = w.st;
  const out: Walked = {
    type: 0, stack: [], redirect: undefined, opaque: false, topDev: 0, topIno: 0, topNlink: 0, firstLowerDev: -1, firstLowerIno: 0,
  };
  const stack = out.stack;
  let curName = name;
  let absPath: Bstr | undefined;
  let list: readonly LayerRef[] = parent;
  const hide = (layer: number, rel: Bstr, form: 'chardev' | 'file'): void => {
    if (stack.length === 0) out.hiddenBy = { layer, rel, form };
  };
  const rootsBelow = (layer: number): LayerRef[] => w.layers.slice(layer + 1).map((l) => ({ layer: l.index, rel: '' }));
  if (opts.start?.absolute) { absPath = opts.start.path; list = rootsBelow(-1); }
  else if (opts.start) curName = opts.start.name;

  // An opaque dir on the way to an absolute redirect target ends the merge after that layer,
  // unless the target itself redirects absolutely (kernel ovl_check_redirect clears d->stop).
  let stopBelow = false;
  for (let i = 0; i < list.length; i++) {
    if (stopBelow) break;
    const { layer, rel: prel } = list[i]!;
    const L = w.layers[layer]!;
    const rel = absPath ?? joinRel(prel, curName);
    // An absolute redirect is walked in each layer one component at a time, as the kernel's
    // ovl_lookup_layer does: what lies on the way there can stop or redirect the lookup below.
    if (absPath !== undefined && absPath.includes('/')) {
      const aw = walkAbsolute(w, path, layer, absPath);
      if (aw.state === 'stop') break;
      stopBelow = aw.opaque;
      absPath = aw.next;
      if (aw.state === 'missing') continue;
    }
    if (!L.upper) {
      // Lower layers never change: their directory listings answer most probes without a syscall.
      const [d, n] = absPath === undefined ? [prel, curName] : splitPath(rel);
      const info = lowerDirInfo(w, layer, d);
      if (info !== undefined) {
        if (info.wh.has(n)) { hide(layer, joinRel(d, whiteoutFileName(n)), 'file'); break; }
        if (info.names !== undefined && !info.names.has(n)) continue;
      }
    }
    const r = sys.tryLstatat(L.fd, rel, st);
    if (r < 0) {
      if (r === -ENOENT || r === -ENOTDIR) {
        if (L.upper && absPath === undefined && r === -ENOENT && opts.upperClean?.(prel)) continue;
        // An OCI/fuse-overlayfs whiteout beside the name hides it below.
        const [d, n] = splitPath(rel);
        const whf = joinRel(d, whiteoutFileName(n));
        if (sys.tryLstatat(L.fd, whf, st) === 0) { hide(layer, whf, 'file'); break; }
        continue;
      }
      if (r === -ENAMETOOLONG) {
        // A name from a redirect that no layer can hold is missing there (kernel ovl_lookup_single).
        if (absPath !== undefined || curName !== name) continue;
        fail('ENAMETOOLONG', path);
      }
      fail('EIO', path, 'lstat', `layer ${L.index} errno ${-r}`);
    }
    if (isWhiteoutStat(st)) { hide(layer, rel, 'chardev'); break; }
    const t = st[StatIdx.mode]! & S_IFMT;
    if (stack.length === 0) {
      out.type = t;
      out.topDev = st[StatIdx.dev]!;
      out.topIno = inoOf(st);
      out.topNlink = st[StatIdx.nlink]!;
      stack.push({ layer, rel });
      if (!L.upper) { out.firstLowerDev = out.topDev; out.firstLowerIno = out.topIno; }
      if (t !== S_IFDIR) break;
    } else {
      // A non-directory below a directory ends the merge.
      if (t !== S_IFDIR) break;
      stack.push({ layer, rel });
      if (out.firstLowerDev < 0 && !L.upper) { out.firstLowerDev = st[StatIdx.dev]!; out.firstLowerIno = inoOf(st); }
    }
    // A directory: does it stop the merge or send it elsewhere? Not worth asking of the
    // bottom layer. (An absolute redirect restarts from the root stack, so even a
    // directory whose parent has no lower content may continue below.)
    if (layer === w.layers.length - 1) break;
    const xnames = listXattrsOrEmpty(L.fd, rel);
    const opqFile = L.upper ? undefined : lowerDirInfo(w, layer, rel)?.opq;
    if (isOpaqueDir(L.fd, rel, st, xnames, opqFile)) {
      if (stack.length === 1) out.opaque = true;
      break;
    }
    const rd = redirectOf(w, path, layer, rel, xnames);
    if (rd !== undefined) {
      if (stack.length === 1) out.redirect = rd;
      if (rd.absolute) {
        // Continue in every layer below this one, from its root (kernel: poe = roe).
        absPath = rd.path;
        stopBelow = false;
        list = rootsBelow(layer);
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
  return out;
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

function walkAbsolute(w: WalkCtx, path: Bstr, layer: number, abs: Bstr): AbsWalk {
  const L = w.layers[layer]!;
  const bottom = layer === w.layers.length - 1;
  const st = new Float64Array(w.st.length);
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
    if (isOpaqueDir(L.fd, rel, st, xnames, L.upper ? undefined : lowerDirInfo(w, layer, rel)?.opq)) { opaque = true; continue; }
    const rd = redirectOf(w, path, layer, rel, xnames);
    if (rd === undefined) continue;
    // Components after this one keep their place counted from the end of the path.
    const post = next.slice(next.length - (parts.length - 1 - k));
    if (rd.absolute) { next = [...(rd.path === '' ? [] : rd.path.split('/')), ...post]; opaque = false; }
    else next = [...next.slice(0, next.length - (parts.length - k)), rd.name, ...post];
  }
  return { state: 'found', opaque, next: next.join('/') };
}

/** Layer objects whose bad marker the log has named (per walk context; emptied when it grows large). */
const loggedMarkers = new WeakMap<WalkCtx, Set<Bstr>>();

/**
 * The redirect of directory `rel` in `layer`, met while looking up mount path `path`. A value
 * the kernel refuses fails that lookup alone with the kernel's errno (parseRedirect), never
 * the listing of the parent (readdir.ts); the log names it once.
 */
function redirectOf(w: WalkCtx, path: Bstr, layer: number, rel: Bstr, xnames: readonly Bstr[]): Redirect | undefined {
  const fd = w.layers[layer]!.fd;
  try {
    if (w.userxattr !== undefined) return readRedirect(fd, rel, w.userxattr, xnames);
    return readRedirect(fd, rel, false, xnames) ?? readRedirect(fd, rel, true, xnames);
  } catch (e) {
    if (!(e instanceof FsError)) throw e;
    let seen = loggedMarkers.get(w);
    if (seen === undefined) { seen = new Set(); loggedMarkers.set(w, seen); }
    const key = layer + '\0' + rel;
    if (!seen.has(key)) {
      if (seen.size >= 10_000) seen.clear();
      seen.add(key);
      w.log(`stratafs: corrupt marker: ${e.message} on ${toText(rel)} in layer ${layer}: ${toText(path)} fails ${e.code}`);
    }
    throw new FsError(e.code, path, 'lookup', e.message);
  }
}

const NAMES_KEPT_MAX = 20_000;
/** a name in a Set of LowerDirInfo */
const SET_SLOT_BYTES = 32;

/** Heap bytes of one lower-directory cache entry (WalkCtx.lowerDirs), counted as lookup-cache.ts explains. */
export function lowerDirBytes(v: LowerDirInfo, key: string): number {
  let n = SLOT_BYTES + 2 * STR_BYTES + key.length + 64;
  if (v.names !== undefined) for (const x of v.names) n += SET_SLOT_BYTES + strBytes(x);
  for (const x of v.wh) n += SET_SLOT_BYTES + strBytes(x);
  return n;
}

/** Listing facts of directory `rel` of lower layer `layer` (cached; lower layers are immutable). */
/** the whiteout set of every directory without one (~150 bytes each otherwise) */
const NO_WHITEOUTS: ReadonlySet<Bstr> = new Set();

export function lowerDirInfo(w: WalkCtx, layer: number, rel: Bstr): LowerDirInfo | undefined {
  const key = layer + '\0' + rel;
  const hit = w.lowerDirs.get(key);
  if (hit !== undefined) return hit;
  const r = sys.raw.readdirat(w.layers[layer]!.fd, rel);
  if (typeof r === 'number') return undefined;
  let wh: Set<Bstr> | undefined;
  let opq = false;
  for (const n of r.names) {
    if (!n.startsWith('.wh.')) continue;
    if (n === '.wh..wh..opq') opq = true;
    else if (n.length > 4) (wh ??= new Set()).add(n.slice(4));
  }
  const info: LowerDirInfo = { names: r.names.length <= NAMES_KEPT_MAX ? new Set(r.names) : undefined, wh: wh ?? NO_WHITEOUTS, opq };
  // A directory whose names would take more than a quarter of the cache keeps only its markers: left out
  // of the cache altogether, every lookup in it would read it again.
  if (info.names !== undefined && lowerDirBytes(info, key) > w.lowerDirs.maxSize / 4) info.names = undefined;
  w.lowerDirs.set(key, info);
  return info;
}
