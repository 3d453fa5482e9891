import type { Bstr } from '../shared/bstr.js';
import type { Ino, Offset } from '../native/sys-api.js';

/** Seconds and nanoseconds, as the kernel keeps them. */
export interface Timespec { sec: number; nsec: number }

/** A time argument of utimensat: a value, "now", or "leave unchanged". */
export type TimeSet = Timespec | 'now' | 'omit';

/** Who made the request (fuse_get_context). */
export interface Caller { uid: number; gid: number; pid: number; umask: number }

/**
 * Attributes of a merged object, as the overlay reports them. Laid out as a
 * Float64Array in the StatIdx order of native/sys-api.ts so that a stat from a
 * layer can be adjusted in place (ino) and handed to the binding without
 * building an object per getattr. `dev` is ignored by FUSE (the mount's st_dev
 * is reported).
 */
export type AttrArray = Float64Array;

/** One merged directory entry. */
export interface MergedEntry {
  name: Bstr;
  /** S_IFMT bits of the entry (enough for d_type) */
  type: number;
  /** the overlay inode number the entry will report on stat */
  ino: Ino;
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number;
  files: number; ffree: number; favail: number; fsid: number; flag: number; namemax: number;
}

/** Flags the core asks the binding to set on an open file (fuse_file_info). */
export interface OpenResult {
  fh: number;
  keepCache: boolean;
  directIo: boolean;
  /**
   * the layer file behind the handle, for FUSE passthrough (fuse/kernel/passthrough.ts): its
   * fd, and whether it is a lower file (a copy-up would leave a passed-through handle on it)
   */
  backing?: { fd: number; lower: boolean };
  /** the layer file's version as this open found it (fstat of its fd): what close-to-open checks compare */
  version?: FileVersion;
  /**
   * the core had answered attributes of the object that the layer file no longer has (it
   * changed behind the mount): they are dropped, and what the front-end told its cache is stale
   */
  stale?: boolean;
}

/**
 * What tells one content of a layer file from another, from an fstat of its fd: times, size
 * and the layer's own inode number (a file replaced by a rename in its layer has another one,
 * and another ctime). Changes behind the mount show in it; the front-end compares the version
 * of each open with the one it last told the kernel about (close-to-open).
 */
export interface FileVersion {
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly ctimeSec: number;
  readonly ctimeNsec: number;
  readonly size: number;
  /** the layer file's st_ino (not the overlay's) */
  readonly ino: Ino;
}

export const sameVersion = (a: FileVersion, b: FileVersion): boolean =>
  a.mtimeNsec === b.mtimeNsec && a.ctimeNsec === b.ctimeNsec && a.mtimeSec === b.mtimeSec &&
  a.ctimeSec === b.ctimeSec && a.size === b.size && a.ino === b.ino;

/**
 * The operations the FUSE front-ends call. Paths are absolute within the mount
 * ("/", "/a/b"), as Bstr. Every failure is an FsError; the adapter converts it
 * to -errno in one place. Only the fh-based calls take a `null` path: the
 * low-level front-end passes it when the file has no name any more (unlinked
 * while open) or the call needs none (flush, release, fsync). A file with no
 * name left is changed through one of its handles (HandleOps).
 */
export interface OverlayOps {
  getattr(path: Bstr): Promise<AttrArray>;
  fgetattr(path: Bstr | null, fh: number): Promise<AttrArray>;
  readlink(path: Bstr): Promise<Bstr>;

  opendir(path: Bstr, caller: Caller): Promise<number>;
  /** the whole merged listing of an open directory (libfuse 2.9 buffers it) */
  readdir(path: Bstr | null, fh: number): Promise<MergedEntry[]>;
  releasedir(path: Bstr | null, fh: number): Promise<void>;
  fsyncdir(path: Bstr | null, fh: number, datasync: boolean): Promise<void>;

  open(path: Bstr, flags: number, caller: Caller): Promise<OpenResult>;
  create(path: Bstr, mode: number, flags: number, caller: Caller): Promise<OpenResult>;
  read(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number>;
  write(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number>;
  flush(path: Bstr | null, fh: number): Promise<void>;
  fsync(path: Bstr | null, fh: number, datasync: boolean): Promise<void>;
  release(path: Bstr | null, fh: number): Promise<void>;
  ftruncate(path: Bstr | null, fh: number, size: Offset): Promise<void>;

  truncate(path: Bstr, size: Offset, caller: Caller): Promise<void>;
  chmod(path: Bstr, mode: number, caller: Caller): Promise<void>;
  chown(path: Bstr, uid: number, gid: number, caller: Caller): Promise<void>;
  utimens(path: Bstr, atime: TimeSet, mtime: TimeSet, caller: Caller): Promise<void>;

  mkdir(path: Bstr, mode: number, caller: Caller): Promise<void>;
  mknod(path: Bstr, mode: number, rdev: number, caller: Caller): Promise<void>;
  symlink(target: Bstr, path: Bstr, caller: Caller): Promise<void>;
  link(existing: Bstr, path: Bstr, caller: Caller): Promise<void>;
  unlink(path: Bstr, caller: Caller): Promise<void>;
  rmdir(path: Bstr, caller: Caller): Promise<void>;
  /**
   * `moved`, when given, runs synchronously the moment the name has moved in
   * the upper, before any other operation can see the new state: a caller that
   * keeps its own names (the low-level adapter's node table) updates them there,
   * or a request in between would resolve an old path against the new tree.
   */
  rename(from: Bstr, to: Bstr, flags: number, caller: Caller, moved?: () => void): Promise<void>;

  getxattr(path: Bstr, name: Bstr): Promise<Buffer>;
  listxattr(path: Bstr): Promise<Bstr[]>;
  setxattr(path: Bstr, name: Bstr, value: Buffer, flags: number, caller: Caller): Promise<void>;
  removexattr(path: Bstr, name: Bstr, caller: Caller): Promise<void>;

  statfs(path: Bstr): Promise<StatFs>;


  /** counters for `stratafs stats` and the benchmark */
  stats(): OverlayStats;
}

/**
 * Calls through an open handle `fh`, for an object with no name left to call
 * it by (unlinked or renamed over while open; handle-ops.ts). A change through
 * a handle on a lower file fails EEXIST, as kernel overlayfs does for an
 * unlinked lower file.
 */
export interface HandleOps {
  fchmod(fh: number, mode: number): Promise<void>;
  /** -1 (or 0xffffffff) leaves an id unchanged */
  fchown(fh: number, uid: number, gid: number): Promise<void>;
  futimens(fh: number, atime: TimeSet, mtime: TimeSet): Promise<void>;
  /** truncate(2) of the object open as fh, whatever the handle's access mode (ftruncate needs a writable one) */
  truncateByHandle(fh: number, size: Offset): Promise<void>;
  /** open(2) of the object open as fh (an open of /proc/PID/fd/N): a new handle on it */
  reopen(fh: number, flags: number): Promise<OpenResult>;
  fgetxattr(fh: number, name: Bstr): Promise<Buffer>;
  flistxattr(fh: number): Promise<Bstr[]>;
  fsetxattr(fh: number, name: Bstr, value: Buffer, flags: number): Promise<void>;
  fremovexattr(fh: number, name: Bstr): Promise<void>;
  /** the handles open on the object that getattr numbers `ino`, oldest first */
  handlesOf(ino: Ino): number[];
}

/** How full one bounded cache is: `size` counts the unit `max` bounds (heap bytes, namei.ts). */
export interface CacheFill { entries: number; size: number; max: number }

export interface OverlayStats {
  /** size/max: entries; bytes/maxBytes: heap bytes they hold (estimated, namei.ts) */
  lookupCache: { size: number; max: number; bytes: number; maxBytes: number; hits: number; misses: number };
  /** the other caches (namei.ts LookupCache, overlay.ts lowerDirs): entries, and size in the unit of their bound */
  caches: { listings: CacheFill; upperDirs: CacheFill; lowerDirs: CacheFill };
  copyUps: { count: number; bytes: number };
  whiteoutsWritten: number;
}
