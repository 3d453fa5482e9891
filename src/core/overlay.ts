/**
 * Setting up an overlay (the kernel's fs/overlayfs/super.c + params.c):
 * open every layer root once as an O_PATH directory fd (all later access goes
 * through these, so mounting over the top lower itself works and nothing
 * outside a layer is ever reached), lock the upper and workdir, refuse
 * layers made with features stratafs does not read, empty workdir/work and
 * probe what the upper's filesystem allows. Then `Overlay` dispatches the
 * OverlayOps to the per-concern files.
 */
import * as fs from 'node:fs';
import { STAT_LEN, StatIdx, inoOf, type Ino, type Offset } from '../native/sys.js';
import { toText, type Bstr } from '../shared/bstr.js';
import { cacheBounds, type OverlayConfig } from './config.js';
import { copyUp as copyUpPath } from './copy-up.js';
import { sys, type Ctx, type Layer, type LowerDirInfo } from './ctx.js';
import * as dirOps from './dir-ops.js';
import { FsError, isFsError, nodeErrnoCode } from '../shared/errors.js';
import * as fileOps from './file-ops.js';
import * as handleOps from './handle-ops.js';
import { InodeNumbers } from './inode.js';
import * as inodeOps from './inode-ops.js';
import { isUpperEntry, resolve } from './namei.js';
import { lowerDirBytes } from './layer-walk.js';
import { LookupCache } from './lookup-cache.js';
import { LRUCache } from 'lru-cache';
import * as readdirOps from './readdir.js';
import type {
  AttrArray, Caller, FileVersion, HandleOps, MergedEntry, OpenResult, OverlayOps, OverlayStats, CacheFill, StatFs, TimeSet, Timespec,
} from './types.js';
import {
  canMknodWhiteout, canWriteTrustedXattr, listXattrsOrEmpty, TRUSTED_PREFIX, USER_PREFIX, WhiteoutWriter,
} from './whiteout.js';
import * as xattrOps from './xattr.js';
import { layerOverride, optionOverride, writeRecord } from './override-stat.js';
import { S_IFDIR, EWOULDBLOCK } from '../shared/constants.js';

/** What the low-level binding needs to give an object its node (see fuse/lowlevel/nodes.ts). */
export interface NodeInfo {
  attr: AttrArray;
  /**
   * Set when other names may stand for the same object, equal for all of them:
   * an upper non-directory with several links (kernel overlayfs hashes it by
   * the upper inode), or, on a read-only mount, a lower one (hashed by the
   * lower inode). Lower hard links under an upper stay apart, as in the kernel
   * (a copy-up breaks them).
   */
  key: string | undefined;
}

export interface OverlayDescription {
  layers: { role: 'upper' | 'lower'; path: string; dev: number }[];
  workdir: string | undefined;
  readOnly: boolean;
  redirectDir: boolean;
  userxattr: boolean;
  whiteouts: 'char-dev' | '.wh.-files' | 'none';
  markerXattrs: 'trusted.overlay.*' | 'user.overlay.*' | '.wh..wh..opq files' | 'none';
  filesystems: number;
  lookupCacheSize: number;
  fsync: boolean;
}

const O_RDONLY = fs.constants.O_RDONLY;
const O_DIRECTORY = fs.constants.O_DIRECTORY;

function closeQuiet(fd: number): void { if (fd >= 0) sys.raw.close(fd); }

/** Hold an exclusive flock on directory `path` (fd beneath rootfd), or fail EBUSY naming it. */
function lockDir(rootfd: number, path: Bstr): number {
  const fd = sys.openat(rootfd, '', O_RDONLY | O_DIRECTORY, 0);
  const C = sys.constants;
  const r = sys.tryFlock(fd, C.LOCK_EX | C.LOCK_NB);
  if (r < 0) {
    closeQuiet(fd);
    if (r === -EWOULDBLOCK) throw new FsError('EBUSY', path, 'flock', 'in use by another stratafs mount');
    throw new FsError('EIO', path, 'flock');
  }
  return fd;
}

/**
 * Refuse what the kernel refuses: anything in workdir/work/incompat/. A kernel mount with
 * -o volatile leaves work/incompat/volatile there (its upper may be incomplete after a
 * crash) and mounts the pair again only once someone removed it (containers/storage does
 * before each mount). Checked before work/ is emptied, which would erase the mark.
 * stratafs's own `volatile` only skips fsync, as fuse-overlayfs's does, and leaves no mark.
 */
function checkIncompat(workRoot: number, workdir: Bstr | undefined): void {
  const r = sys.raw.readdirat(workRoot, 'work/incompat');
  if (typeof r !== 'number' && r.names.length > 0) {
    const name = [...r.names].sort()[0]!;
    throw new FsError('EINVAL', `${workdir ?? ''}/work/incompat/${name}`, 'mount',
      `an overlay with the incompatible feature '${name}' cannot be mounted, as in kernel overlayfs; remove that directory to mount it`);
  }
}

/**
 * fuse-overlayfs's stat override (override-stat.ts): which record each layer carries, by its
 * root; xattr_permissions gives the upper its record name and its root a record of its own.
 */
function setUpOverrides(layers: Layer[], upper: Layer | undefined, config: OverlayConfig): Bstr[] {
  for (const L of layers) L.override = layerOverride(L.fd);
  const opt = optionOverride(config.xattrPermissions ?? 0);
  if (upper && opt !== undefined) {
    upper.override = opt;
    if (typeof sys.raw.lgetxattrat(upper.fd, '', opt) === 'number') {
      const st = sys.fstat(upper.fd, undefined, upper.root);
      writeRecord(opt, upper.fd, '', st[StatIdx.uid]!, st[StatIdx.gid]!, st[StatIdx.mode]!, upper.root);
    }
  }
  return [...new Set(layers.flatMap((L) => (L.override === undefined ? [] : [L.override])))];
}

/** Refuse layers that use on-disk features a merge by stratafs would misread. */
function checkFeatures(layers: Layer[], workRoot: number | undefined, workdir: Bstr | undefined): void {
  for (const L of layers) {
    const names = listXattrsOrEmpty(L.fd, '');
    for (const p of [TRUSTED_PREFIX, USER_PREFIX]) {
      // The kernel writes these on the upper root only with index=on / nfs_export / metacopy setups.
      if (names.includes(p + 'origin') && L.upper) {
        throw new FsError('EINVAL', L.root, 'mount', `layer made with the kernel's index feature (${p}origin on the upper root): not supported`);
      }
      if (names.includes(p + 'metacopy')) {
        throw new FsError('EINVAL', L.root, 'mount', `layer uses the metacopy feature (${p}metacopy): not supported`);
      }
    }
  }
  if (workRoot !== undefined) {
    const r = sys.raw.readdirat(workRoot, 'index');
    if (typeof r !== 'number' && r.names.length > 0) {
      throw new FsError('EINVAL', (workdir ?? '') + '/index', 'mount', "workdir holds an index made with the kernel's index feature: not supported");
    }
    checkIncompat(workRoot, workdir);
  }
}

/** Open, check, lock and prepare an overlay. */
export async function openOverlay(config: OverlayConfig, log: (line: string) => void): Promise<Overlay> {
  const opened: number[] = [];
  try {
    if (config.lowerdirs.length === 0) throw new FsError('EINVAL', '', 'mount', 'no lowerdir');
    if ((config.upperdir === undefined) !== (config.workdir === undefined)) {
      throw new FsError('EINVAL', config.upperdir ?? config.workdir ?? '', 'mount', 'upperdir and workdir go together');
    }
    const roots: { path: Bstr; upper: boolean }[] = [];
    if (config.upperdir !== undefined) roots.push({ path: config.upperdir, upper: true });
    for (const l of config.lowerdirs) roots.push({ path: l, upper: false });
    const st = new Float64Array(STAT_LEN);
    const layers: Layer[] = roots.map((r, index) => {
      const fd = sys.openRoot(r.path);
      opened.push(fd);
      sys.fstat(fd, st, r.path);
      return { index, fd, root: r.path, dev: st[StatIdx.dev]!, upper: r.upper };
    });
    const upper = layers[0]!.upper ? layers[0] : undefined;

    let workRoot: number | undefined;
    let workfd = -1;
    const locks: number[] = [];
    let trustedXattrs = false;
    let userxattr = config.userxattr;
    let wh: WhiteoutWriter | undefined;
    if (upper && config.workdir !== undefined) {
      workRoot = sys.openRoot(config.workdir);
      opened.push(workRoot);
      sys.fstat(workRoot, st, config.workdir);
      if (st[StatIdx.dev] !== upper.dev) {
        throw new FsError('EXDEV', config.workdir, 'mount', 'workdir and upperdir must be on the same filesystem');
      }
      locks.push(lockDir(workRoot, config.workdir));
      opened.push(locks[0]!);
      locks.push(lockDir(upper.fd, upper.root));
      opened.push(locks[1]!);
    }
    checkFeatures(layers, workRoot, config.workdir);
    if (upper && workRoot !== undefined) {
      // Like the kernel: work/ is scratch space; whatever a crash left there goes.
      if (sys.tryLstatat(workRoot, 'work', st) === 0) sys.removeTree(workRoot, 'work');
      // 0700, not the kernel's 0000: the kernel works in it with the mounter's
      // credentials and CAP_DAC_OVERRIDE; stratafs has only the mounter's, and a
      // plain user (or uid 0 of a user namespace that does not map the owner)
      // would get EACCES on every copy-up, whiteout and the whiteout probe.
      sys.mkdirat(workRoot, 'work', 0o700);
      workfd = sys.openat(workRoot, 'work', sys.constants.O_PATH | O_DIRECTORY, 0);
      opened.push(workfd);
      const mknodOk = canMknodWhiteout(workfd);
      if (!mknodOk) log(`stratafs: cannot mknod char 0/0 whiteouts in ${toText(config.workdir!)}: writing .wh.<name> files instead`);
      trustedXattrs = !config.userxattr && canWriteTrustedXattr(workfd);
      if (!config.userxattr && !trustedXattrs) {
        // Unprivileged: the kernel's userxattr namespace is what a kernel mount could read back.
        log('stratafs: cannot write trusted.* xattrs in the upper: writing user.overlay.* markers instead (as kernel overlayfs with -o userxattr)');
        userxattr = true;
      }
      wh = new WhiteoutWriter(workfd, mknodOk);
    }

    let tmpSeq = 0;
    const ctx: Ctx = {
      config, log, layers, upper, workfd, userxattr, trustedXattrs, wh,
      cache: new LookupCache(config.lookupCacheSize),
      // Bounded by the bytes of the names held and of the directory's path (the key), not by directories.
      lowerDirs: new LRUCache<string, LowerDirInfo>({
        maxSize: cacheBounds(config.lookupCacheSize).lowerDirs,
        sizeCalculation: lowerDirBytes,
      }),
      inodes: new InodeNumbers(layers.map((l) => l.dev)),
      files: new Map(), dirs: new Map(), filesByIno: new Map(), copyUps: new Map(),
      counters: { copyUps: 0, copyUpBytes: 0 },
      nextFh: 1,
      st: new Float64Array(STAT_LEN),
      tmpName: () => `#${process.pid.toString(16)}.${(tmpSeq++).toString(16)}`,
      overrides: setUpOverrides(layers, upper, config),
    };
    return new Overlay(ctx, opened, locks, workRoot);
  } catch (e) {
    for (const fd of opened) closeQuiet(fd);
    throw e;
  }
}

const fill = <K extends NonNullable<unknown>, V extends NonNullable<unknown>>(l: LRUCache<K, V> | undefined): CacheFill =>
  ({ entries: l?.size ?? 0, size: l?.calculatedSize ?? 0, max: l?.maxSize ?? 0 });

/** Any error out of the core is an FsError. */
function asFsError(e: unknown, path: Bstr | null, op: string): FsError {
  if (isFsError(e)) return e;
  const code = nodeErrnoCode(e);
  if (code !== undefined) return new FsError(code, path ?? '', op);
  return new FsError('EIO', path ?? '', op, e instanceof Error ? e.message : String(e));
}

export class Overlay implements OverlayOps, HandleOps {
  private closed = false;

  constructor(
    readonly ctx: Ctx,
    private readonly fds: number[],
    private readonly locks: number[],
    private readonly workRoot: number | undefined,
  ) {}

  private async run<T>(path: Bstr | null, op: string, f: () => T | Promise<T>): Promise<T> {
    if (this.closed) throw new FsError('EIO', path ?? '', op, 'overlay closed');
    try {
      return await f();
    } catch (e) {
      throw asFsError(e, path, op);
    }
  }

  getattr(path: Bstr): Promise<AttrArray> { return this.run(path, 'getattr', () => inodeOps.getattr(this.ctx, path)); }
  fgetattr(path: Bstr | null, fh: number): Promise<AttrArray> { return this.run(path, 'fgetattr', () => inodeOps.fgetattr(this.ctx, path, fh)); }
  readlink(path: Bstr): Promise<Bstr> { return this.run(path, 'readlink', () => inodeOps.readlink(this.ctx, path)); }

  /** getattr plus the hard-link identity of the object (NodeInfo). */
  lookupNode(path: Bstr): Promise<NodeInfo> {
    return this.run(path, 'lookup', () => {
      const ctx = this.ctx;
      const e = resolve(ctx, path);
      const real: { ino: Ino } = { ino: 0 };
      const attr = inodeOps.attrsOf(ctx, e, real);
      let key: string | undefined;
      if (e.type !== S_IFDIR && attr[StatIdx.nlink]! > 1) {
        if (isUpperEntry(ctx, e)) key = 'u' + real.ino;
        else if (ctx.upper === undefined) key = 'o' + inoOf(attr);
      }
      return { attr, key };
    });
  }

  // --- through an open handle, for an object with no name left (unlinked or
  // renamed over while open): handle-ops.ts

  fchmod(fh: number, mode: number): Promise<void> { return this.run(null, 'fchmod', () => handleOps.fchmod(this.ctx, fh, mode)); }
  fchown(fh: number, uid: number, gid: number): Promise<void> { return this.run(null, 'fchown', () => handleOps.fchown(this.ctx, fh, uid, gid)); }
  futimens(fh: number, atime: TimeSet, mtime: TimeSet): Promise<void> { return this.run(null, 'futimens', () => handleOps.futimens(this.ctx, fh, atime, mtime)); }
  truncateByHandle(fh: number, size: Offset): Promise<void> { return this.run(null, 'truncate', () => handleOps.truncateByHandle(this.ctx, fh, size)); }
  reopen(fh: number, flags: number): Promise<OpenResult> { return this.run(null, 'open', () => handleOps.reopen(this.ctx, fh, flags)); }
  fgetxattr(fh: number, name: Bstr): Promise<Buffer> { return this.run(null, 'fgetxattr', () => handleOps.fgetxattr(this.ctx, fh, name)); }
  flistxattr(fh: number): Promise<Bstr[]> { return this.run(null, 'flistxattr', () => handleOps.flistxattr(this.ctx, fh)); }
  fsetxattr(fh: number, name: Bstr, value: Buffer, flags: number): Promise<void> { return this.run(null, 'fsetxattr', () => handleOps.fsetxattr(this.ctx, fh, name, value, flags)); }
  fremovexattr(fh: number, name: Bstr): Promise<void> { return this.run(null, 'fremovexattr', () => handleOps.fremovexattr(this.ctx, fh, name)); }
  handlesOf(ino: Ino): number[] { return handleOps.handlesOf(this.ctx, ino); }
  /** the version of the layer file behind handle fh now (file-ops.ts): a front-end's close-to-open record after its writes */
  handleVersion(fh: number): FileVersion | undefined { return fileOps.handleVersion(this.ctx, fh); }

  opendir(path: Bstr, caller: Caller): Promise<number> { return this.run(path, 'opendir', () => readdirOps.opendir(this.ctx, path, caller)); }
  readdir(path: Bstr | null, fh: number): Promise<MergedEntry[]> { return this.run(path, 'readdir', () => readdirOps.readdir(this.ctx, path, fh)); }
  releasedir(path: Bstr | null, fh: number): Promise<void> { return this.run(path, 'releasedir', () => readdirOps.releasedir(this.ctx, path, fh)); }
  fsyncdir(path: Bstr | null, fh: number, datasync: boolean): Promise<void> { return this.run(path, 'fsyncdir', () => fileOps.fsyncdir(this.ctx, path, fh, datasync)); }

  open(path: Bstr, flags: number, caller: Caller): Promise<OpenResult> { return this.run(path, 'open', () => fileOps.open(this.ctx, path, flags, caller)); }
  create(path: Bstr, mode: number, flags: number, caller: Caller): Promise<OpenResult> { return this.run(path, 'create', () => fileOps.create(this.ctx, path, mode, flags, caller)); }
  read(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number> { return this.run(path, 'read', () => fileOps.read(this.ctx, path, fh, buf, len, pos)); }
  write(path: Bstr | null, fh: number, buf: Buffer, len: number, pos: Offset): Promise<number> { return this.run(path, 'write', () => fileOps.write(this.ctx, path, fh, buf, len, pos)); }
  flush(path: Bstr | null, fh: number): Promise<void> { return this.run(path, 'flush', () => fileOps.flush(this.ctx, path, fh)); }
  fsync(path: Bstr | null, fh: number, datasync: boolean): Promise<void> { return this.run(path, 'fsync', () => fileOps.fsync(this.ctx, path, fh, datasync)); }
  release(path: Bstr | null, fh: number): Promise<void> { return this.run(path, 'release', () => fileOps.release(this.ctx, path, fh)); }
  ftruncate(path: Bstr | null, fh: number, size: Offset): Promise<void> { return this.run(path, 'ftruncate', () => fileOps.ftruncate(this.ctx, path, fh, size)); }
  /** Not in OverlayOps yet: the adapter uses it when present. */
  fallocate(path: Bstr | null, fh: number, mode: number, offset: number, length: number): Promise<void> { return this.run(path, 'fallocate', () => fileOps.fallocate(this.ctx, path, fh, mode, offset, length)); }

  /** lseek with SEEK_DATA/SEEK_HOLE on the handle's real file (file-ops.ts). */
  lseek(path: Bstr | null, fh: number, offset: Offset, whence: number): Promise<Offset> { return this.run(path, 'lseek', () => fileOps.lseek(this.ctx, path, fh, offset, whence)); }
  /** copy_file_range between two handles; the bytes copied (file-ops.ts). */
  copyFileRange(pathIn: Bstr | null, fhIn: number, offIn: Offset, pathOut: Bstr | null, fhOut: number, offOut: Offset, len: Offset, flags: number): Promise<number> {
    return this.run(pathOut, 'copy_file_range', () => fileOps.copyFileRange(this.ctx, pathIn, fhIn, offIn, pathOut, fhOut, offOut, len, flags));
  }
  /** O_TMPFILE in the directory `dir`: the handle and the unnamed file's attributes (nlink 0) (file-ops.ts). */
  tmpfile(dir: Bstr, mode: number, flags: number, caller: Caller): Promise<{ open: OpenResult; attr: AttrArray }> {
    return this.run(dir, 'tmpfile', async () => {
      const open = await fileOps.tmpfile(this.ctx, dir, mode, flags, caller);
      return { open, attr: inodeOps.fgetattr(this.ctx, null, open.fh) };
    });
  }
  /** linkat of the unnamed file open as `fh` (an O_TMPFILE) to `path` (file-ops.ts). */
  linkHandle(fh: number, path: Bstr, caller: Caller): Promise<void> { return this.run(path, 'link', () => fileOps.linkHandle(this.ctx, fh, path, caller)); }
  /** The birth time of the top real object (by handle when fh >= 0), undefined where unknown (inode-ops.ts). */
  btime(path: Bstr | null, fh: number): Promise<Timespec | undefined> { return this.run(path, 'statx', () => inodeOps.btime(this.ctx, path, fh)); }
  /** syncfs of the mount: the upper's file system (file-ops.ts). */
  syncfs(): Promise<void> { return this.run(null, 'syncfs', () => fileOps.syncfs(this.ctx)); }

  truncate(path: Bstr, size: Offset, caller: Caller): Promise<void> { return this.run(path, 'truncate', () => inodeOps.truncate(this.ctx, path, size, caller)); }
  chmod(path: Bstr, mode: number, caller: Caller): Promise<void> { return this.run(path, 'chmod', () => inodeOps.chmod(this.ctx, path, mode, caller)); }
  chown(path: Bstr, uid: number, gid: number, caller: Caller): Promise<void> { return this.run(path, 'chown', () => inodeOps.chown(this.ctx, path, uid, gid, caller)); }
  utimens(path: Bstr, atime: TimeSet, mtime: TimeSet, caller: Caller): Promise<void> { return this.run(path, 'utimens', () => inodeOps.utimens(this.ctx, path, atime, mtime, caller)); }

  mkdir(path: Bstr, mode: number, caller: Caller): Promise<void> { return this.run(path, 'mkdir', () => dirOps.mkdir(this.ctx, path, mode, caller)); }
  mknod(path: Bstr, mode: number, rdev: number, caller: Caller): Promise<void> { return this.run(path, 'mknod', () => dirOps.mknod(this.ctx, path, mode, rdev, caller)); }
  symlink(target: Bstr, path: Bstr, caller: Caller): Promise<void> { return this.run(path, 'symlink', () => dirOps.symlink(this.ctx, target, path, caller)); }
  link(existing: Bstr, path: Bstr, caller: Caller): Promise<void> { return this.run(path, 'link', () => dirOps.link(this.ctx, existing, path, caller)); }
  unlink(path: Bstr, caller: Caller): Promise<void> { return this.run(path, 'unlink', () => dirOps.unlink(this.ctx, path, caller)); }
  rmdir(path: Bstr, caller: Caller): Promise<void> { return this.run(path, 'rmdir', () => dirOps.rmdir(this.ctx, path, caller)); }
  rename(from: Bstr, to: Bstr, flags: number, caller: Caller, moved?: () => void): Promise<void> { return this.run(from, 'rename', () => dirOps.rename(this.ctx, from, to, flags, caller, moved)); }

  getxattr(path: Bstr, name: Bstr): Promise<Buffer> { return this.run(path, 'getxattr', () => xattrOps.getxattr(this.ctx, path, name)); }
  listxattr(path: Bstr): Promise<Bstr[]> { return this.run(path, 'listxattr', () => xattrOps.listxattr(this.ctx, path)); }
  setxattr(path: Bstr, name: Bstr, value: Buffer, flags: number, caller: Caller): Promise<void> { return this.run(path, 'setxattr', () => xattrOps.setxattr(this.ctx, path, name, value, flags, caller)); }
  removexattr(path: Bstr, name: Bstr, caller: Caller): Promise<void> { return this.run(path, 'removexattr', () => xattrOps.removexattr(this.ctx, path, name, caller)); }

  statfs(path: Bstr): Promise<StatFs> { return this.run(path, 'statfs', () => inodeOps.statfs(this.ctx, path)); }

  /** Copy `path` up now (image commit, tests); no-op when it is in the upper already. */
  copyUp(path: Bstr): Promise<void> { return this.run(path, 'copyup', async () => { await copyUpPath(this.ctx, path); }); }

  stats(): OverlayStats {
    const c = this.ctx.cache;
    return {
      lookupCache: { size: c.size, max: c.max, bytes: c.bytes, maxBytes: c.maxBytes, hits: c.hits, misses: c.misses },
      caches: { listings: fill(c.listings), upperDirs: fill(c.upperDirs), lowerDirs: fill(this.ctx.lowerDirs) },
      copyUps: { count: this.ctx.counters.copyUps, bytes: this.ctx.counters.copyUpBytes },
      whiteoutsWritten: this.ctx.wh?.written ?? 0,
    };
  }

  describe(): OverlayDescription {
    const ctx = this.ctx;
    return {
      layers: ctx.layers.map((l) => ({ role: l.upper ? 'upper' : 'lower', path: toText(l.root), dev: l.dev })),
      workdir: ctx.config.workdir === undefined ? undefined : toText(ctx.config.workdir),
      readOnly: ctx.upper === undefined,
      redirectDir: ctx.config.redirectDir,
      userxattr: ctx.userxattr,
      whiteouts: ctx.wh === undefined ? 'none' : ctx.wh.useCharDev ? 'char-dev' : '.wh.-files',
      markerXattrs: ctx.upper === undefined ? 'none' : ctx.userxattr ? 'user.overlay.*' : ctx.trustedXattrs ? 'trusted.overlay.*' : '.wh..wh..opq files',
      filesystems: ctx.inodes.filesystems,
      lookupCacheSize: ctx.cache.max,
      fsync: ctx.config.fsync,
    };
  }

  /** Close every layer fd and open handle, drop the workdir/upper locks. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Let copy-ups in flight finish: their temporary files are in work/, and the next mount empties it anyway.
    await Promise.allSettled([...this.ctx.copyUps.values()]);
    this.closed = true;
    for (const f of this.ctx.files.values()) closeQuiet(f.fd);
    this.ctx.files.clear();
    this.ctx.filesByIno.clear();
    this.ctx.dirs.clear();
    this.ctx.wh?.dispose();
    this.ctx.cache.clear();
    this.ctx.lowerDirs.clear();
    for (const fd of this.fds) closeQuiet(fd);
    void this.locks; void this.workRoot;
  }
}
