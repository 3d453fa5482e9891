/**
 * Files unlinked while open, served under libfuse's `.fuse_hidden` names
 * without ever writing those names anywhere (fuse_api=highlevel only).
 *
 * libfuse 2.9's high-level API keeps a path for every kernel inode. When a
 * file that is open is unlinked (or renamed over), and the mount does not use
 * `hard_remove`, libfuse does not call unlink: it probes names
 * `<dir>/.fuse_hidden%08x%08x` (node id, a per-mount counter) with getattr
 * until one answers ENOENT, calls our rename(path, thatName), and from then on
 * addresses the node by that name: getattr (the kernel's GETATTR carries no
 * file handle), chmod/chown/utimens for fchmod/fchown/futimens, open through
 * /proc/PID/fd/N, getxattr... When the last handle is released it calls
 * unlink(thatName). (With `hard_remove` the node has no path at all and
 * libfuse answers that GETATTR with ENOENT before asking us: fstat fails.)
 *
 * HiddenNames sits between the high-level adapter and the core. Such a rename
 * becomes the core's real unlink of the source (whiteout if a lower layer has
 * the name, upper entry removed; the open fds keep the data alive, as on
 * kernel overlayfs), and the hidden name is recorded here as a *virtual* name
 * standing for the open handles of that object. Calls on a virtual name go to
 * the core's handle-based calls (fchmod, fchown, futimens, truncateByHandle,
 * reopen, f*xattr: core/handle-ops.ts) with one of those handles. Virtual
 * names exist only in this table: never on disk, never in readdir. The core
 * knows nothing of them; the low-level front-end reaches the same handle-based
 * calls through its nodes, which have no path to hide.
 *
 * Keyed by the name alone, not the path: libfuse rebuilds the path from its
 * node tree, so the directory part changes when a parent is renamed, while the
 * name (node id + counter) is unique for the life of the mount. Consequences,
 * accepted: anyone who looks up a virtual name in any directory (it can only be
 * guessed) reaches the unlinked file; and renaming a file that is open onto a
 * name of exactly this form (`.fuse_hidden` + 16 hex digits) that does not
 * exist is taken as libfuse's hide, so that file is gone once it is closed.
 * A rename onto such a name of a file with no open handle is an ordinary
 * rename: that keeps a user's file safe, and leaves a real `.fuse_hidden`
 * file only in libfuse's own race (an unlink on one thread while the last
 * release runs on another, where libfuse hides a node whose last handle is
 * already closed and never unlinks it).
 */
import type { Bstr } from '../../shared/bstr.js';
import { FsError, isFsError } from '../../shared/errors.js';
import type {
  AttrArray, Caller, HandleOps, MergedEntry, OpenResult, OverlayOps, OverlayStats, StatFs, TimeSet,
} from '../../core/types.js';
import { StatIdx, inoOf, type Ino, type Offset } from '../../native/sys-api.js';
import { S_IFDIR, S_IFMT } from '../../shared/constants.js';

/** libfuse 2.9.9 hidden_name(): ".fuse_hidden%08x%08x" (node id, hidectr). */
export const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;

/** One object unlinked while open. */
interface HiddenFile {
  /** overlay inode number of the object */
  ino: Ino;
  /** its open handles, oldest first (released ones leave the set) */
  fhs: Set<number>;
}

const nameOf = (path: Bstr): Bstr => path.slice(path.lastIndexOf('/') + 1);

/** The core as libfuse's high-level API needs it, with `.fuse_hidden` names served virtually. */
export class HiddenNames implements OverlayOps {
  private readonly hidden = new Map<Bstr, HiddenFile>();

  constructor(private readonly core: OverlayOps & HandleOps) {}

  /** The virtual object a path names, if any. Costs one size test while nothing is hidden. */
  private at(path: Bstr | null): HiddenFile | undefined {
    if (this.hidden.size === 0 || path === null) return undefined;
    return this.hidden.get(nameOf(path));
  }

  private anyHandle(h: HiddenFile, path: Bstr, syscall: string): number {
    for (const fh of h.fhs) return fh;
    // All released, libfuse's unlink of the name not yet arrived: the object is gone.
    throw new FsError('ENOENT', path, syscall);
  }

  /** getattr of a path that may not exist: undefined for ENOENT, any other failure thrown. */
  private async existing(path: Bstr): Promise<AttrArray | undefined> {
    try {
      return await this.core.getattr(path);
    } catch (e) {
      if (isFsError(e) && e.code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Is rename(from, to) libfuse hiding an open file? `to` has the hidden form,
   * does not exist (libfuse probed it), and `from` is a non-directory with open
   * handles, or is itself a virtual name (an open file renamed over twice).
   */
  private async isHide(from: Bstr, to: Bstr): Promise<boolean> {
    if (!HIDDEN_NAME.test(nameOf(to)) || this.at(to) !== undefined) return false;
    if (this.at(from) !== undefined) return true;
    const a = await this.existing(from);
    if (a === undefined || (a[StatIdx.mode]! & S_IFMT) === S_IFDIR || (await this.existing(to)) !== undefined) return false;
    return this.core.handlesOf(inoOf(a)).length > 0;
  }

  /** Perform the hide: the core's unlink of `from`; a virtual source only changes name. */
  private async hide(from: Bstr, to: Bstr, caller: Caller): Promise<void> {
    const prev = this.at(from);
    if (prev !== undefined) {
      this.hidden.delete(nameOf(from));
      this.hidden.set(nameOf(to), prev);
      return;
    }
    const a = await this.existing(from);
    if (a === undefined) throw new FsError('ENOENT', from, 'rename');
    const ino = inoOf(a);
    await this.core.unlink(from, caller);
    // Taken after the unlink: handles opened while it awaited a copy-up count too.
    this.hidden.set(nameOf(to), { ino, fhs: new Set(this.core.handlesOf(ino)) });
  }

  /**
   * Attributes through a handle. nlink: libfuse subtracts one from the nlink of
   * a hidden node in its GETATTR reply (it expects the hidden name to be a real
   * link), so a count above 0 is reported one higher: fstat then shows 0 for an
   * upper file with no name left, the other names' count for a hard-linked one,
   * and the lower file's own count for an unlinked lower file, as the kernel
   * does. (Replies to chmod/utimens are not decremented by libfuse: there the
   * extra link shows until the kernel's attribute cache expires; only for
   * objects with names left.)
   */
  private async attrs(h: HiddenFile, path: Bstr, fh?: number): Promise<AttrArray> {
    const out = await this.core.fgetattr(path, fh !== undefined && h.fhs.has(fh) ? fh : this.anyHandle(h, path, 'getattr'));
    const n = out[StatIdx.nlink]!;
    if (n > 0) out[StatIdx.nlink] = n + 1;
    return out;
  }

  // --- calls that may name a virtual name

  getattr(path: Bstr): Promise<AttrArray> {
    const h = this.at(path);
    return h ? this.attrs(h, path) : this.core.getattr(path);
  }
  fgetattr(path: Bstr | null, fh: number): Promise<AttrArray> {
    const h = this.at(path);
    return h ? this.attrs(h, path!, fh) : this.core.fgetattr(path, fh);
  }
  async open(path: Bstr, flags: number, caller: Caller): Promise<OpenResult> {
    const h = this.at(path);
    if (!h) return this.core.open(path, flags, caller);
    // open(2) of the hidden node (someone opened /proc/PID/fd/N): a new handle on the same object
    const r = await this.core.reopen(this.anyHandle(h, path, 'open'), flags);
    h.fhs.add(r.fh);
    return r;
  }
  release(path: Bstr | null, fh: number): Promise<void> {
    // the handle no longer stands for any virtual name
    if (this.hidden.size !== 0) for (const h of this.hidden.values()) h.fhs.delete(fh);
    return this.core.release(path, fh);
  }
  /** truncate(2) by name (the kernel sends ftruncate(2) with the handle, which the core serves). */
  truncate(path: Bstr, size: Offset, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.truncateByHandle(this.anyHandle(h, path, 'truncate'), size) : this.core.truncate(path, size, caller);
  }
  chmod(path: Bstr, mode: number, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.fchmod(this.anyHandle(h, path, 'chmod'), mode) : this.core.chmod(path, mode, caller);
  }
  chown(path: Bstr, uid: number, gid: number, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.fchown(this.anyHandle(h, path, 'chown'), uid, gid) : this.core.chown(path, uid, gid, caller);
  }
  utimens(path: Bstr, atime: TimeSet, mtime: TimeSet, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.futimens(this.anyHandle(h, path, 'utimens'), atime, mtime) : this.core.utimens(path, atime, mtime, caller);
  }
  /** libfuse's unlink of the hidden name after the last release (or anyone's unlink of it) drops it. */
  async unlink(path: Bstr, caller: Caller): Promise<void> {
    if (this.at(path)) { this.hidden.delete(nameOf(path)); return; }
    return this.core.unlink(path, caller);
  }
  async rename(from: Bstr, to: Bstr, flags: number, caller: Caller, moved?: () => void): Promise<void> {
    if (flags === 0 && await this.isHide(from, to)) {
      await this.hide(from, to, caller);
      moved?.();
      return;
    }
    // A virtual name has no directory entry to move (and never a new name but another hidden one).
    if (this.at(from)) throw new FsError('ENOENT', from, 'rename', 'file unlinked while open');
    return this.core.rename(from, to, flags, caller, moved);
  }
  getxattr(path: Bstr, name: Bstr): Promise<Buffer> {
    const h = this.at(path);
    return h ? this.core.fgetxattr(this.anyHandle(h, path, 'getxattr'), name) : this.core.getxattr(path, name);
  }
  listxattr(path: Bstr): Promise<Bstr[]> {
    const h = this.at(path);
    return h ? this.core.flistxattr(this.anyHandle(h, path, 'listxattr')) : this.core.listxattr(path);
  }
  setxattr(path: Bstr, name: Bstr, value: Buffer, flags: number, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.fsetxattr(this.anyHandle(h, path, 'setxattr'), name, value, flags) : this.core.setxattr(path, name, value, flags, caller);
  }
  removexattr(path: Bstr, name: Bstr, caller: Caller): Promise<void> {
    const h = this.at(path);
    return h ? this.core.fremovexattr(this.anyHandle(h, path, 'removexattr'), name) : this.core.removexattr(path, name, caller);
  }

  // --- the rest never meets a virtual name (libfuse hides only non-directories, and opens by name)

  readlink(path: Bstr): Promise<Bstr> { return this.core.readlink(path); }
  opendir(path: Bstr, caller: Caller): Promise<number> { return this.core.opendir(path, caller); }
  readdir(path: Bstr | null, fh: number): Promise<MergedEntry[]> { return this.core.readdir(path, fh); }
  releasedir(path: Bstr | null, fh: number): Promise<void> { return this.core.releasedir(path, fh); }
  fsyncdir(path: Bstr | null, fh: number, datasync: boolean): Promise<void> { return this.core.fsyncdir(path, fh, datasync); }
  create(path: Bstr, mode: number, flags: number, caller: Caller): Promise<OpenResult> { return this.core.create(path, mode, flags, caller); }
  read(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number> { return this.core.read(path, fh, buf, len, pos); }
  write(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number> { return this.core.write(path, fh, buf, len, pos); }
  flush(path: Bstr | null, fh: number): Promise<void> { return this.core.flush(path, fh); }
  fsync(path: Bstr | null, fh: number, datasync: boolean): Promise<void> { return this.core.fsync(path, fh, datasync); }
  ftruncate(path: Bstr | null, fh: number, size: Offset): Promise<void> { return this.core.ftruncate(path, fh, size); }
  mkdir(path: Bstr, mode: number, caller: Caller): Promise<void> { return this.core.mkdir(path, mode, caller); }
  mknod(path: Bstr, mode: number, rdev: number, caller: Caller): Promise<void> { return this.core.mknod(path, mode, rdev, caller); }
  symlink(target: Bstr, path: Bstr, caller: Caller): Promise<void> { return this.core.symlink(target, path, caller); }
  link(existing: Bstr, path: Bstr, caller: Caller): Promise<void> { return this.core.link(existing, path, caller); }
  rmdir(path: Bstr, caller: Caller): Promise<void> { return this.core.rmdir(path, caller); }
  statfs(path: Bstr): Promise<StatFs> { return this.core.statfs(path); }
  stats(): OverlayStats { return this.core.stats(); }
}
