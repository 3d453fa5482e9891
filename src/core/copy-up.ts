/**
 * Copy-up (the kernel's fs/overlayfs/copy_up.c): before the first change to
 * an object that lives only in a lower layer, copy it into the upper, parents
 * first.
 *
 * The copy is built under a temporary name in workdir/work (same filesystem
 * as the upper) with data, owner, mode (setuid/setgid/sticky included, set
 * after chown, which clears them), xattrs (overlay-private ones excepted),
 * the kernel's origin xattr and nanosecond times, and only then renamed into
 * the upper with RENAME_NOREPLACE: a crash or ENOSPC at any point leaves at
 * most a stray file in work/ (emptied at the next mount), never a partial
 * file in the upper. As in the kernel, the upper parent's times are restored
 * afterwards, so a copy-up does not show as a change of the parent.
 *
 * Data moves with the addon's copyData (reflink, else copy_file_range over
 * data segments: holes stay holes) on a thread of its own; nothing global is
 * held while it runs, so other operations continue. Two callers wanting the
 * same copy-up share one promise (Ctx.copyUps).
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { StatIdx, inoOf, type Ino } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { closeWhenIdle, fail, lendOwnerBits, parentOf, relOf, requireUpper, sys, type Ctx, type Entry, type LayerRef } from './ctx.js';
import { codeOf, FsError, isFsError } from '../shared/errors.js';
import { isUpperEntry, resolve } from './namei.js';
import { mergedEntries } from './readdir.js';
import { overrideStat, placeMode, placeOwner } from './override-stat.js';
import { isPrivateXattr, markerXattr } from './whiteout.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, ENODATA, EOPNOTSUPP, O_WRITE_NEW } from '../shared/constants.js';

const fsyncAsync = promisify(fs.fsync);

const O_RDONLY = fs.constants.O_RDONLY;

export interface CopyUpOptions {
  /** the object is about to be truncated to 0: copy no data (O_TRUNC open) */
  noData?: boolean;
}

/** Wait for any copy-up in flight at or beneath `path` (before renaming or removing it). */
export async function settleCopyUps(ctx: Ctx, path: Bstr): Promise<void> {
  const prefix = path === '/' ? '/' : path + '/';
  for (;;) {
    const pending: Promise<void>[] = [];
    for (const [p, pr] of ctx.copyUps) if (p === path || p.startsWith(prefix)) pending.push(pr);
    if (pending.length === 0) return;
    await Promise.allSettled(pending);
  }
}

/** Make sure `path` exists in the upper; returns its (new) entry. */
export async function copyUp(ctx: Ctx, path: Bstr, opts: CopyUpOptions = {}): Promise<Entry> {
  requireUpper(ctx, path);
  for (;;) {
    const e = resolve(ctx, path);
    if (isUpperEntry(ctx, e)) return e;
    const inflight = ctx.copyUps.get(path);
    if (inflight) {
      await inflight.catch(() => undefined);
      continue;
    }
    const p = copyUpOne(ctx, e, opts);
    ctx.copyUps.set(path, p);
    try {
      await p;
    } finally {
      if (ctx.copyUps.get(path) === p) ctx.copyUps.delete(path);
    }
  }
}

async function copyUpOne(ctx: Ctx, e: Entry, opts: CopyUpOptions): Promise<void> {
  const upper = ctx.upper!;
  const path = e.path;
  const [ppath] = parentOf(path);
  if (path !== '/') await copyUp(ctx, ppath);
  // The world may have moved while the parent was copied up.
  const cur = resolve(ctx, path);
  if (isUpperEntry(ctx, cur)) return;
  e = cur;

  const src = e.stack[0]!;
  const srcL = ctx.layers[src.layer]!;
  const st = sys.lstatat(srcL.fd, src.rel, new Float64Array(ctx.st.length));
  // the owner and mode the overlay shows are what the copy keeps (stat override records)
  overrideStat(srcL, srcL.fd, src.rel, st);
  const mode = st[StatIdx.mode]!;
  const type = mode & S_IFMT;
  const work = ctx.workfd;
  const tmp = ctx.tmpName();
  const urel = relOf(path);
  const uparent = relOf(ppath);
  const pst = new Float64Array(ctx.st.length);
  const parentTimes = sys.tryLstatat(upper.fd, uparent, pst) === 0;
  let bytes = 0;
  let made = false;
  try {
    if (type === S_IFDIR) {
      sys.mkdirat(work, tmp, 0o700);
      made = true;
    } else if (type === S_IFREG) {
      const sfd = sys.openat(srcL.fd, src.rel, O_RDONLY, 0);
      try {
        const dfd = sys.openat(work, tmp, O_WRITE_NEW, 0o600);
        made = true;
        try {
          if (!opts.noData && st[StatIdx.size]! > 0) {
            const r = await sys.copyData(sfd, dfd, path);
            bytes = r.bytes;
          }
          if (ctx.config.fsync) await fsyncAsync(dfd).catch((err: NodeJS.ErrnoException) => {
            throw new FsError((err.code ?? 'EIO') as 'EIO', path, 'fsync');
          });
        } finally {
          sys.raw.close(dfd);
        }
      } finally {
        sys.raw.close(sfd);
      }
    } else if (type === S_IFLNK) {
      sys.symlinkat(sys.readlinkat(srcL.fd, src.rel), work, tmp);
      made = true;
    } else {
      sys.mknodat(work, tmp, mode & (S_IFMT | 0o7777), st[StatIdx.rdev]!);
      made = true;
    }
    copyAttrs(ctx, srcL.fd, src.rel, work, tmp, st, path);
    // As ovl_do_copy_up without the index feature: no origin for a non-directory with other
    // names (the copy is one name's own object); its number is then the upper's, and no lookup
    // may take it for the lower object of the same path after a rename (observed on 6.18).
    if (type === S_IFDIR || st[StatIdx.nlink]! === 1) writeOrigin(ctx, srcL.fd, src.rel, work, tmp);
    // The name may have been taken meanwhile (e.g. removed and re-created): NOREPLACE keeps us from clobbering it.
    moveIntoUpper(ctx, tmp, urel, uparent, type === S_IFDIR ? mode & 0o7777 : undefined);
    made = false;
  } catch (err) {
    if (made) sys.raw.unlinkat(work, tmp, type === S_IFDIR ? sys.constants.AT_REMOVEDIR : 0);
    if (isFsError(err)) {
      if (err.code === 'EEXIST') {
        // Someone created the name in the upper while we copied: theirs wins.
        ctx.cache.drop(path);
        return;
      }
      throw new FsError(err.code, path, 'copy-up', err.message);
    }
    throw err;
  }
  if (path !== '/') markImpure(ctx, uparent);
  if (parentTimes) {
    sys.raw.utimensat(upper.fd, uparent, pst[StatIdx.atimeSec]!, pst[StatIdx.atimeNsec]!, pst[StatIdx.mtimeSec]!, pst[StatIdx.mtimeNsec]!);
  }
  const ust = sys.lstatat(upper.fd, urel, new Float64Array(ctx.st.length));
  // Like the kernel: a lower file with several links keeps its number only while in
  // the lower; copies of its names are separate files, so each reports its own.
  if (type !== S_IFDIR && st[StatIdx.nlink] === 1) ctx.inodes.recordCopyUp(inoOf(ust), e.ino);
  ctx.counters.copyUps++;
  ctx.counters.copyUpBytes += bytes;
  ctx.cache.drop(path);
  if (type === S_IFREG) repointHandles(ctx, e.ino, src, urel);
}

/**
 * Rename the finished copy `tmp` (in work/) to `urel` in the upper. The kernel
 * does this with CAP_DAC_OVERRIDE; a plain-user mounter meets read-only (0555)
 * directories: moving a directory to another parent needs write permission on
 * it ('..' changes), entering a name needs it on the upper parent. So a
 * directory copy (`dirMode`: its final mode) without u+w gets it for the move
 * and its mode after, and the parent is lent u+wx if that is what is missing.
 */
function moveIntoUpper(ctx: Ctx, tmp: Bstr, urel: Bstr, uparent: Bstr, dirMode: number | undefined): void {
  const upper = ctx.upper!;
  const move = (): number => sys.tryRenameat2(ctx.workfd, tmp, upper.fd, urel, sys.constants.RENAME_NOREPLACE);
  let r: number;
  if (dirMode !== undefined && (dirMode & 0o200) === 0) {
    sys.fchmodat(ctx.workfd, tmp, dirMode | 0o200);
    r = lendOwnerBits(upper.fd, uparent, 0o300, move);
    sys.fchmodat(r === 0 ? upper.fd : ctx.workfd, r === 0 ? urel : tmp, dirMode);
  } else {
    r = lendOwnerBits(upper.fd, uparent, 0o300, move);
  }
  if (r < 0) throw new FsError(codeOf(-r), tmp, 'renameat2', `-> ${urel}`);
}

/** Owner, xattrs (overlay markers excepted), mode, times of the real object (sfd, srel) onto (dfd, drel). */
export function copyAttrs(ctx: Ctx, sfd: number, srel: Bstr, dfd: number, drel: Bstr, st: Float64Array, path: Bstr): void {
  const type = st[StatIdx.mode]! & S_IFMT;
  placeOwner(ctx, dfd, drel, type, st[StatIdx.uid]!, st[StatIdx.gid]!);
  const names = sys.raw.llistxattrat(sfd, srel);
  if (typeof names !== 'number') {
    for (const n of names) {
      if (isPrivateXattr(n, ctx.userxattr) || ctx.overrides.includes(n)) continue;
      const v = sys.raw.lgetxattrat(sfd, srel, n);
      if (typeof v === 'number') {
        if (v === -ENODATA) continue;
        fail('EIO', path, 'copy-up getxattr', n);
      }
      const r = sys.raw.lsetxattrat(dfd, drel, n, v, 0);
      // Like the kernel, tolerate security.* the upper cannot hold.
      if (r < 0 && !(r === -EOPNOTSUPP && n.startsWith('security.'))) {
        throw new FsError(r === -EOPNOTSUPP ? 'EOPNOTSUPP' : 'EIO', path, 'copy-up setxattr', n);
      }
    }
  }
  placeMode(ctx, dfd, drel, type, st[StatIdx.uid]!, st[StatIdx.gid]!, st[StatIdx.mode]!, path);
  sys.utimensat(dfd, drel, st[StatIdx.atimeSec]!, st[StatIdx.atimeNsec]!, st[StatIdx.mtimeSec]!, st[StatIdx.mtimeNsec]!);
}

/**
 * The kernel's origin xattr: struct ovl_fb {version 0, magic 0xfb, len, flags,
 * type, uuid[16], fid[]} holding the lower object's file handle. This kernel
 * writes a null uuid here (observed on ext4), so we do too. Lets a kernel mount
 * keep the origin's st_ino for what stratafs copied up.
 */
export function encodeOrigin(type: number, handle: Buffer): Buffer {
  const b = Buffer.alloc(5 + 16 + handle.length);
  b[0] = 0; b[1] = 0xfb; b[2] = b.length; b[3] = 0; b[4] = type;
  handle.copy(b, 21);
  return b;
}

function writeOrigin(ctx: Ctx, sfd: number, srel: Bstr, dfd: number, drel: Bstr): void {
  if (!ctx.trustedXattrs && !ctx.userxattr) return;
  const h = sys.raw.nameToHandle(sfd, srel);
  if (typeof h === 'number' || h.type > 255) return;
  sys.raw.lsetxattrat(dfd, drel, markerXattr('origin', ctx.userxattr), encodeOrigin(h.type, h.handle), 0);
}

/**
 * The kernel marks an upper directory "impure" once it holds objects with an
 * origin (copied up) or a redirect, so that its readdir reports the origin's
 * d_ino for them; we do the same so a kernel mount of our upper agrees.
 */
export function markImpure(ctx: Ctx, udir: Bstr): void {
  if (!ctx.trustedXattrs && !ctx.userxattr) return;
  const name = markerXattr('impure', ctx.userxattr);
  const v = sys.raw.lgetxattrat(ctx.upper!.fd, udir, name);
  if (typeof v !== 'number') return;
  sys.raw.lsetxattrat(ctx.upper!.fd, udir, name, Buffer.from('y'), 0);
}

/**
 * As on kernel >= 4.19: read-only handles opened on the lower object now read
 * the upper copy (the kernel re-points the overlay inode; we swap the fd).
 */
function repointHandles(ctx: Ctx, ino: Ino, src: LayerRef, urel: Bstr): void {
  const set = ctx.filesByIno.get(ino);
  if (!set) return;
  for (const f of set) {
    if (!f.lower || f.lowerRef === undefined || f.lowerRef.layer !== src.layer || f.lowerRef.rel !== src.rel) continue;
    const fd = sys.tryOpenat(ctx.upper!.fd, urel, O_RDONLY, 0);
    if (fd < 0) continue;
    const old = f.fd;
    f.fd = fd;
    f.lower = false;
    closeWhenIdle(f, old);
  }
}

/**
 * The fallback for renaming a directory with lower content where a redirect
 * cannot be written (no trusted.* xattrs, or userxattr, where the kernel
 * refuses to follow redirects): copy the whole merged subtree up and make
 * every directory in it opaque, so it no longer depends on any lower path.
 */
export async function copyUpTreeOpaque(ctx: Ctx, path: Bstr, makeOpaque: (dirfd: number, rel: Bstr) => void): Promise<void> {
  const e = await copyUp(ctx, path);
  if ((e.type & S_IFMT) !== S_IFDIR) return;
  for (const child of mergedEntries(ctx, resolve(ctx, path))) {
    const cp = path === '/' ? '/' + child.name : path + '/' + child.name;
    if (child.type === S_IFDIR) await copyUpTreeOpaque(ctx, cp, makeOpaque);
    else await copyUp(ctx, cp);
  }
  const cur = resolve(ctx, path);
  if (!cur.opaque) {
    makeOpaque(ctx.upper!.fd, relOf(path));
    ctx.cache.dropTree(path);
  }
}

/** Copy up the parent of a path about to be created (or the target of a rename). */
export async function copyUpParent(ctx: Ctx, path: Bstr): Promise<Entry> {
  const [ppath] = parentOf(path);
  return copyUp(ctx, ppath);
}
