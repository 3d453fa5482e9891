/**
 * The state every part of the core shares (the kernel's struct ovl_fs): the
 * layer stack as directory fds, the workdir, the marker writer, the lookup
 * cache, inode numbering and open handles, and the types of what they hold.
 * Built once by overlay.ts.
 *
 * Every core module that works on a mount imports this one, so it imports
 * only what lies below them all: native/, shared/ and the core's leaves
 * (config, types, inode, whiteout, lookup-cache), never an operation module,
 * not even for a type (`npm run deps` fails on a cycle).
 */
import type { LRUCache } from 'lru-cache';
import * as sys from '../native/sys.js';
import { STAT_LEN, StatIdx, type Ino } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import type { OverlayConfig } from './config.js';
import { FsError, type ErrnoCode } from '../shared/errors.js';
import type { InodeNumbers } from './inode.js';
import type { LookupCache } from './lookup-cache.js';
import type { MergedEntry } from './types.js';
import type { Redirect, WhiteoutWriter } from './whiteout.js';
import { EACCES } from '../shared/constants.js';

export interface Layer {
  /** position in Ctx.layers: 0 is the top (the upper when there is one) */
  index: number;
  /** O_PATH directory fd of the layer root */
  fd: number;
  /** the root path as given (for messages only: all access goes through fd) */
  root: Bstr;
  dev: number;
  upper: boolean;
  /** the stat override record this layer's objects carry (override-stat.ts), if any */
  override?: Bstr;
}

/** One real object making up a merged object: a path beneath a layer root. */
export interface LayerRef {
  layer: number;
  /** path beneath the layer root, '' for the root itself */
  rel: Bstr;
}

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
   * A plain array (V8 keeps it as 20 unboxed doubles on the heap, ~200 bytes):
   * a Float64Array of 160 bytes costs ~450 with its ArrayBuffer and malloc'd
   * backing store, times every lower entry the cache holds.
   */
  attrs?: readonly number[];
}

/** What lookup needs to know of one lower-layer directory, from one readdir (layer-walk.ts lowerDirInfo). */
export interface LowerDirInfo {
  /** every name in it; undefined for very large directories (then lstat answers) */
  names: Set<Bstr> | undefined;
  /** targets of `.wh.<name>` files (most directories have none: they share one empty set) */
  wh: ReadonlySet<Bstr>;
  /** it holds `.wh..wh..opq` */
  opq: boolean;
}

/** An open regular file (fuse_file_info.fh). */
export interface OpenFile {
  fd: number;
  path: Bstr | null;
  flags: number;
  /** overlay inode number: the key that ties handles of one object together */
  ino: Ino;
  /** the fd is on a lower layer (read-only); re-pointed to the upper after a copy-up */
  lower: boolean;
  /**
   * the lower object the fd was opened on: a copy-up re-points only handles of
   * that object, not those of its other hard links (same st_ino, but the kernel
   * copies up one name and leaves the others' handles on the lower)
   */
  lowerRef?: LayerRef;
  /** large reads running on libuv's pool with `fd` (file-ops.ts read) */
  reads?: number;
  /** fds replaced (copy-up) while such reads ran: closed when the last one ends */
  retired?: number[];
}

export interface OpenDir {
  path: Bstr;
  entries: MergedEntry[];
  /** readdir has served `entries` once (a later readdir is a rewind: list afresh) */
  listed: boolean;
  /** an fd on the top real directory, for fsyncdir (upper only) */
  fd: number;
}

export interface Counters {
  copyUps: number;
  copyUpBytes: number;
}

export interface Ctx {
  config: OverlayConfig;
  log: (line: string) => void;
  layers: Layer[];
  upper: Layer | undefined;
  /** O_PATH fd of workdir/work (upper mounts only) */
  workfd: number;
  /** marker xattrs this mount writes are user.overlay.* (userxattr) */
  userxattr: boolean;
  /** trusted.* xattrs can be written in the upper */
  trustedXattrs: boolean;
  wh: WhiteoutWriter | undefined;
  cache: LookupCache<Entry>;
  /** per lower-layer directory listing facts (layer-walk.ts lowerDirInfo), bounded by total names */
  lowerDirs: LRUCache<string, LowerDirInfo>;
  inodes: InodeNumbers;
  files: Map<number, OpenFile>;
  dirs: Map<number, OpenDir>;
  /** open file handles by overlay ino (copy-up re-pointing, unlink bookkeeping) */
  filesByIno: Map<Ino, Set<OpenFile>>;
  /** copy-ups in flight, by mount path: a second caller awaits the first */
  copyUps: Map<Bstr, Promise<void>>;
  counters: Counters;
  nextFh: number;
  /** scratch stat buffer: valid only until the next call that uses it */
  st: Float64Array;
  /** a unique name in workdir/work */
  tmpName(): Bstr;
  /** stat override record names some layer uses (override-stat.ts): private xattrs; usually empty */
  overrides: readonly Bstr[];
}

/**
 * chown of a real object. Under squash_to_* (config.ignoreChownErrors) a failure is not an
 * error, as fuse-overlayfs's do_fchown: owners are not shown there anyway.
 */
export function chownReal(ctx: Ctx, dirfd: number, rel: Bstr, uid: number, gid: number): void {
  if (ctx.config.ignoreChownErrors) sys.raw.fchownat(dirfd, rel, uid, gid);
  else sys.fchownat(dirfd, rel, uid, gid);
}

/**
 * Throw FsError. Like every FsError it has no stack trace (errors.ts): capturing
 * one costs about 20 µs, more than the lookup itself, and the code and path say it all.
 */
export function fail(code: ErrnoCode, path: Bstr, syscall?: string, detail?: string): never {
  throw new FsError(code, path, syscall, detail);
}

export function requireUpper(ctx: Ctx, path: Bstr): Layer {
  if (!ctx.upper) fail('EROFS', path);
  return ctx.upper;
}

export const NAME_MAX = 255;

/** Checks for a name about to be created through the mount. */
export function checkNewName(name: Bstr, path: Bstr): void {
  if (name.length > NAME_MAX) fail('ENAMETOOLONG', path);
  // `.wh.` names would be read back as whiteouts by OCI tools and fuse-overlayfs;
  // fuse-overlayfs refuses them the same way.
  if (name.startsWith('.wh.')) fail('EINVAL', path, undefined, 'names starting .wh. are reserved');
}

/** "/a/b" -> ["/a", "b"]; "/a" -> ["/", "a"]. */
export function parentOf(path: Bstr): [Bstr, Bstr] {
  const i = path.lastIndexOf('/');
  return [i <= 0 ? '/' : path.slice(0, i), path.slice(i + 1)];
}

/** Mount path "/a/b" -> layer-relative "a/b" (the same path in a layer without redirects). */
export const relOf = (path: Bstr): Bstr => (path === '/' ? '' : path.slice(1));

export function layerFd(ctx: Ctx, ref: LayerRef): number {
  return ctx.layers[ref.layer]!.fd;
}

export { sys };


/**
 * Run `call` (a raw syscall: 0 or -errno). If it fails with EACCES and the
 * object at `rel` beneath dirfd is ours but lacks the owner `bits` (0o200
 * write, 0o100 search), lend them to it for one retry and put the mode back
 * at once; nothing else runs in between (synchronous calls, one JS thread),
 * and chmod leaves mtime alone. The kernel passes such checks with
 * CAP_DAC_OVERRIDE; a plain-user mounter meets them in read-only (0555)
 * directories, which its own users may still change below.
 */
export function lendOwnerBits(dirfd: number, rel: Bstr, bits: number, call: () => number): number {
  const r = call();
  if (r !== -EACCES) return r;
  const st = new Float64Array(STAT_LEN);
  if (sys.tryLstatat(dirfd, rel, st) !== 0 || st[StatIdx.uid] !== process.geteuid?.()) return r;
  const mode = st[StatIdx.mode]! & 0o7777;
  if ((mode & bits) === bits || sys.raw.fchmodat(dirfd, rel, mode | bits) !== 0) return r;
  try {
    return call();
  } finally {
    sys.raw.fchmodat(dirfd, rel, mode);
  }
}

/** Close fds that a copy-up replaced once no pool read uses them (the fd number could be reused meanwhile). */
export function closeWhenIdle(f: OpenFile, fd: number): void {
  if (f.reads) (f.retired ??= []).push(fd);
  else sys.raw.close(fd);
}
