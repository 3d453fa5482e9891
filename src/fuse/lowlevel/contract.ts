/**
 * The contract between the low-level adapter (fuse/lowlevel/adapter.ts) and the FUSE
 * server it runs on (fuse/kernel/server.ts; native-notes/fuse-lowlevel.md): handlers in,
 * reply functions out. It lives in fuse/, beside its two sides, not in native/.
 *
 * Requests arrive as calls of LowLevelHandlers with a request id first; each
 * request is answered exactly once with one of the reply functions (a second
 * answer, or one after the session ended, is ignored by the addon). Names are
 * Bstr (latin1 byte strings); attributes are Float64Arrays in StatIdx order.
 * `forget` has no request id and no answer.
 */
import type { Bstr } from '../../shared/bstr.js';
import type { Offset } from '../../native/sys-api.js';
import type { KernelMount } from '../kernel/mount.js';

export type ReqId = number;
/** FUSE node id: 1 is the root */
export type NodeId = number;

/** setattr `valid` bits (fuse_lowlevel.h) */
export const SetattrValid = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8,
  /** FATTR_KILL_SUIDGID (killpriv_v2 only): a truncate by a caller without CAP_FSETID, or a chown (fuse/lowlevel/killpriv.ts) */
  KILL_SUIDGID: 1 << 11,
} as const;

/** Handlers. `fh` is -1 where the kernel named no open file. */
export interface LowLevelHandlers {
  /** the kernel's INIT was answered: the mount is usable */
  init(): void;
  lookup(req: ReqId, parent: NodeId, name: Bstr): void;
  forget(node: NodeId, nlookup: number): void;
  getattr(req: ReqId, node: NodeId, fh: number): void;
  setattr(req: ReqId, node: NodeId, valid: number, mode: number, uid: number, gid: number, size: Offset,
    atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, fh: number): void;
  readlink(req: ReqId, node: NodeId): void;
  mknod(req: ReqId, parent: NodeId, name: Bstr, mode: number, rdev: number): void;
  mkdir(req: ReqId, parent: NodeId, name: Bstr, mode: number): void;
  unlink(req: ReqId, parent: NodeId, name: Bstr): void;
  rmdir(req: ReqId, parent: NodeId, name: Bstr): void;
  symlink(req: ReqId, target: Bstr, parent: NodeId, name: Bstr): void;
  /** flags: renameat2's (RENAME_NOREPLACE, _EXCHANGE, _WHITEOUT), only from a server that speaks RENAME2; else absent */
  rename(req: ReqId, parent: NodeId, name: Bstr, newParent: NodeId, newName: Bstr, flags?: number): void;
  link(req: ReqId, node: NodeId, newParent: NodeId, newName: Bstr): void;
  open(req: ReqId, node: NodeId, flags: number): void;
  /** offset: a bigint from 2^53 on (Offset) */
  read(req: ReqId, node: NodeId, size: number, offset: Offset, fh: number): void;
  /** `data` is the handler's own copy; killPriv: the caller lacks CAP_FSETID (killpriv_v2 only; killpriv.ts) */
  write(req: ReqId, node: NodeId, data: Buffer, offset: Offset, fh: number, killPriv?: boolean): void;
  flush(req: ReqId, node: NodeId, fh: number): void;
  release(req: ReqId, node: NodeId, fh: number): void;
  fsync(req: ReqId, node: NodeId, datasync: number, fh: number): void;
  opendir(req: ReqId, node: NodeId, flags: number): void;
  readdir(req: ReqId, node: NodeId, size: number, offset: number, fh: number): void;
  /** READDIRPLUS (only where the server settled `readdirplus`): answered with replyDirPlus */
  readdirplus?(req: ReqId, node: NodeId, size: number, offset: number, fh: number): void;
  releasedir(req: ReqId, node: NodeId, fh: number): void;
  fsyncdir(req: ReqId, node: NodeId, datasync: number, fh: number): void;
  statfs(req: ReqId, node: NodeId): void;
  setxattr(req: ReqId, node: NodeId, name: Bstr, value: Buffer, flags: number): void;
  /** size 0: answer the value's size with replyXattr */
  getxattr(req: ReqId, node: NodeId, name: Bstr, size: number): void;
  listxattr(req: ReqId, node: NodeId, size: number): void;
  removexattr(req: ReqId, node: NodeId, name: Bstr): void;
  create(req: ReqId, parent: NodeId, name: Bstr, mode: number, flags: number): void;
  fallocate(req: ReqId, node: NodeId, mode: number, offset: number, length: number, fh: number): void;
  // Only stratafs's own server (src/fuse/kernel/) sends these; where a handler is absent it answers ENOSYS.
  /** SEEK_DATA or SEEK_HOLE: answer replyOffset */
  lseek?(req: ReqId, node: NodeId, fh: number, offset: Offset, whence: number): void;
  /** answer replyCount with the bytes copied */
  copyFileRange?(req: ReqId, nodeIn: NodeId, fhIn: number, offIn: Offset, nodeOut: NodeId, fhOut: number, offOut: Offset, len: Offset, flags: number): void;
  /** answer replyErr(req, 0) */
  syncfs?(req: ReqId, node: NodeId): void;
  /** a statx(2) asking for more than stat(2) has (the birth time): answer replyStatx */
  statx?(req: ReqId, node: NodeId, fh: number): void;
  /** an unnamed file in the directory `parent` (O_TMPFILE): answer replyCreate */
  tmpfile?(req: ReqId, parent: NodeId, mode: number, flags: number): void;
}

declare const sessionBrand: unique symbol;
export type Session = { readonly [sessionBrand]: true };

export interface LowLevelAddon {
  /**
   * Mounts and starts serving on this thread's event loop. `mount` describes the mount
   * (fuse/kernel/mount.ts kernelMount, from the MountConfig); `ctx` receives
   * [uid, gid, pid, umask] of each request just before its handler runs. Throws if
   * mounting fails.
   */
  mount(mountpoint: Bstr, mount: KernelMount, handlers: LowLevelHandlers, ctx: Int32Array, onExit: () => void): Session;
  /** End the session now; with `unmount`, detach the mount too (lazy; never waiting on it). */
  close(session: Session, unmount: boolean): void;
  /** Drop the kernel's cached attributes of a node (0 or -errno; -ENOENT: the kernel has no such inode cached). */
  invalAttr(session: Session, node: NodeId): number;
  /**
   * Drop the kernel's dentry of `name` in `parent` (positive or negative), for a name the
   * layers changed behind the kernel. Queued for a helper thread: the kernel takes the
   * parent's lock, which the request being served may hold. 0 or -errno (queueing only).
   */
  invalEntry?(session: Session, parent: NodeId, name: Bstr): number;
  /** requests handed to JS and not answered yet, over all sessions */
  pending(): number;
  /** whether INIT turned a protocol feature on (fuse/kernel/features.ts names); absent: none */
  uses?(session: Session, feature: string): boolean;

  replyErr(req: ReqId, errno: number): void;
  /** ino 0: a negative entry, cached for entryTimeout */
  replyEntry(req: ReqId, ino: NodeId, generation: number, attr: Float64Array, attrTimeout: number, entryTimeout: number): void;
  /** backingFd as for replyOpen */
  replyCreate(req: ReqId, ino: NodeId, generation: number, attr: Float64Array, attrTimeout: number, entryTimeout: number,
    fh: number, openFlags: number, backingFd?: number): void;
  replyAttr(req: ReqId, attr: Float64Array, timeout: number): void;
  /**
   * openFlags: bit 1 keep_cache, bit 2 direct_io, bit 3 cache_dir (an OPENDIR, where the server settled `cache_dir`). backingFd: the daemon's fd of the layer file,
   * which a server with FUSE passthrough may let the kernel read and write directly
   * (fuse/kernel/passthrough.ts); -1 or absent: every read and write comes to the handlers.
   */
  replyOpen(req: ReqId, fh: number, openFlags: number, backingFd?: number): void;
  replyReadlink(req: ReqId, target: Bstr): void;
  /** the reply is written before this returns: the adapter reuses `buf` at once (read-buffers.ts) */
  replyBuf(req: ReqId, buf: Buffer, length: number): void;
  replyWrite(req: ReqId, count: number): void;
  replyXattr(req: ReqId, size: number): void;
  replyStatfs(req: ReqId, statvfs: Float64Array): void;
  /** names[i] gets offset firstOffset+i+1; modeIno holds [mode, inoHi, inoLo] per name; returns how many fitted in size bytes */
  replyDir(req: ReqId, size: number, firstOffset: number, names: readonly Bstr[], modeIno: Float64Array): number;
  /**
   * READDIRPLUS: as replyDir, each name with an entry. `entry(i)` is called for each name that
   * fits, in order, as it is encoded: its node and attributes, or undefined for none (node 0: the
   * kernel only lists it). The kernel counts a lookup for each entry sent with a node except `.`
   * and `..`, so `entry` hands out (counts) nodes only for names that fitted. Returns how many did.
   */
  replyDirPlus?(req: ReqId, size: number, firstOffset: number, names: readonly Bstr[], modeIno: Float64Array,
    entry: (i: number) => DirPlusEntry | undefined, attrTimeout: number, entryTimeout: number): number;
  /** the answer to lseek (the kernel server's only) */
  replyOffset?(req: ReqId, offset: Offset): void;
  /** the answer to statx: the attributes and the birth time, if known (the kernel server's only) */
  replyStatx?(req: ReqId, attr: Float64Array, btime: { sec: number; nsec: number } | undefined, timeout: number): void;
  /** the answer to copyFileRange: bytes copied (the kernel server's only) */
  replyCount?(req: ReqId, count: number): void;
}

/** one READDIRPLUS entry's node and attributes (StatIdx order) */
export interface DirPlusEntry { node: NodeId; attr: Float64Array }
