/**
 * Namespace changes (the kernel's fs/overlayfs/dir.c): create, mkdir, mknod,
 * symlink, link, unlink, rmdir, rename.
 *
 * Kernel behaviours copied (checked on this machine's kernel 6.18):
 * - a directory created in a merged parent is made opaque (so a lower
 *   directory of that name can never merge into it), and so is one created
 *   over a whiteout; an object created over a whiteout is built in
 *   workdir/work and swapped in with RENAME_EXCHANGE, then the whiteout removed;
 * - unlink/rmdir of a name a lower layer still has leaves a whiteout: a hard
 *   link of the shared whiteout inode, swapped in with RENAME_EXCHANGE when an
 *   upper object was there (atomic: the lower object never shows through);
 * - rename leaves the whiteout with RENAME_WHITEOUT (the kernel's own whiteout
 *   then has its own inode, nlink 1, as observed); a directory with lower
 *   content gets a redirect xattr: the old name when it stays in the same
 *   parent, else the absolute lower path ("/a/b"); with redirect_dir off EXDEV;
 *   an upper-only directory moved into a merged parent is made opaque.
 */
import type { Bstr } from '../shared/bstr.js';
import { copyAttrs, copyUp, copyUpTreeOpaque, markImpure, settleCopyUps } from './copy-up.js';
import { checkNewName, fail, lendOwnerBits, parentOf, relOf, requireUpper, sys, type Ctx, type Entry, type Layer } from './ctx.js';
import { codeOf, FsError, isFsError } from '../shared/errors.js';
import {
  hasLowerDir, isUpperEntry, lookup, lowerHasName, resolve, resolveDir,
} from './namei.js';
import { isMergedEmpty } from './readdir.js';
import type { Caller } from './types.js';
import { StatIdx, inoOf } from '../native/sys.js';
import { overrideStat, placeMode, placeOwner } from './override-stat.js';
import { ACL_ACCESS, ACL_DEFAULT, inherit, type Inherited } from './acl.js';
import {
  isWhiteoutStat, joinRel, markerXattr, OPAQUE_FILE, setRedirect, splitPath, whiteoutFileName, type Redirect,
} from './whiteout.js';
import {
  S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, DT, EINVAL, ENOENT, O_WRITE_NEW, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT,
} from '../shared/constants.js';

/** overlay module parameter redirect_max (default 256, as on this machine's 6.18) */
const REDIRECT_MAX = 256;

/** What is at a name in the upper before creating there (the name is not visible). */
type UpperSlot = 'empty' | 'whiteout' | 'whfile';

function upperSlot(ctx: Ctx, upper: Layer, urel: Bstr): UpperSlot {
  const st = ctx.st;
  if (sys.tryLstatat(upper.fd, urel, st) === 0) {
    if (isWhiteoutStat(st)) return 'whiteout';
    // Something invisible but not a whiteout: cannot happen unless the layers changed behind our back.
    fail('EIO', '/' + urel, 'create', 'unexpected object in upper');
  }
  const [d, n] = splitPath(urel);
  return sys.tryLstatat(upper.fd, joinRel(d, whiteoutFileName(n)), st) === 0 ? 'whfile' : 'empty';
}

/** Make a directory (real path dirfd/rel) opaque in the format this mount can write. */
export function makeOpaque(ctx: Ctx, dirfd: number, rel: Bstr): void {
  // user.* xattrs and new names need write permission on the directory: lent to a
  // plain mounter for a read-only (0555) one (the kernel has CAP_DAC_OVERRIDE).
  if (ctx.trustedXattrs || ctx.userxattr) {
    const name = markerXattr('opaque', ctx.userxattr);
    const r = lendOwnerBits(dirfd, rel, 0o200, () => sys.raw.lsetxattrat(dirfd, rel, name, Buffer.from('y'), 0));
    if (r < 0) throw new FsError(codeOf(-r), rel, 'lsetxattr', name);
  } else {
    const marker = joinRel(rel, OPAQUE_FILE);
    const fd = lendOwnerBits(dirfd, rel, 0o300, () => sys.raw.openat(dirfd, marker, O_WRITE_NEW, 0));
    if (fd < 0) throw new FsError(codeOf(-fd), marker, 'openat');
    sys.close(fd);
  }
}

/** Create a whiteout at upper `urel` (nothing there yet). */
function whiteoutAt(ctx: Ctx, urel: Bstr): void {
  ctx.wh!.create(ctx.upper!.fd, urel);
}

/**
 * Empty the upper directory urel, whose merged view is empty, of the markers it
 * holds, the kernel's way (ovl_clear_empty): an empty opaque directory with its
 * attributes is built in work/, exchanged with it, and the old one removed
 * from work/. Removing the markers in place would unhide the lower entries one
 * by one: a crash halfway brought back entries whose deletion had returned.
 */
function clearMarkers(ctx: Ctx, urel: Bstr, path: Bstr): void {
  const upper = ctx.upper!;
  const r = sys.raw.readdirat(upper.fd, urel);
  if (typeof r === 'number' || r.names.length === 0) return;
  const st = sys.lstatat(upper.fd, urel, new Float64Array(ctx.st.length));
  overrideStat(upper, upper.fd, urel, st);
  const tmp = ctx.tmpName();
  sys.mkdirat(ctx.workfd, tmp, 0o700);
  let swapped: number;
  try {
    makeOpaque(ctx, ctx.workfd, tmp);
    copyAttrs(ctx, upper.fd, urel, ctx.workfd, tmp, st, path);
    swapped = sys.tryRenameat2(ctx.workfd, tmp, upper.fd, urel, sys.constants.RENAME_EXCHANGE);
  } finally {
    sys.removeTree(ctx.workfd, tmp);
  }
  if (swapped === 0) return;
  if (swapped !== -EINVAL) throw new FsError(codeOf(-swapped), path, 'renameat2', 'exchange with an empty opaque directory');
  // A filesystem without RENAME_EXCHANGE: in place, as it cannot be done better there.
  for (let i = 0; i < r.names.length; i++) {
    const c = joinRel(urel, r.names[i]!);
    if (r.types[i] === DT.DIR) sys.removeTree(upper.fd, c); else sys.unlinkat(upper.fd, c, 0);
  }
}

export interface Prepared {
  parent: Entry;
  name: Bstr;
  urel: Bstr;
  slot: UpperSlot;
  gid: number;
  setgidDir: boolean;
}

/** Checks and copy-ups before creating `path`; the name must not be visible. */
/** `refuse`: a refusal of the filesystem's own that comes after the VFS's checks (EEXIST, ENOENT) and before the parent's copy-up. */
export async function prepareCreate(ctx: Ctx, path: Bstr, caller: Caller, refuse?: () => void): Promise<Prepared> {
  const upper = requireUpper(ctx, path);
  const [ppath, name] = parentOf(path);
  if (path === '/') fail('EEXIST', path);
  resolveDir(ctx, ppath);
  if (lookup(ctx, path) !== undefined) fail('EEXIST', path);
  checkNewName(name, path);
  refuse?.();
  await copyUp(ctx, ppath);
  const parent = resolveDir(ctx, ppath);
  if (lookup(ctx, path) !== undefined) fail('EEXIST', path);
  const urel = relOf(path);
  const pst = sys.lstatat(upper.fd, relOf(ppath), ctx.st);
  overrideStat(upper, upper.fd, relOf(ppath), pst);
  const setgidDir = (pst[StatIdx.mode]! & S_ISGID) !== 0;
  const gid = setgidDir ? pst[StatIdx.gid]! : caller.gid;
  return { parent, name, urel, slot: upperSlot(ctx, upper, urel), gid, setgidDir };
}

/**
 * Build a new object with `make(dirfd, rel)` and put it at the prepared name.
 * Directories (and anything over a whiteout) are built in work/ and moved in
 * whole; other objects are made in place. Returns make's result.
 */
export function placeNew<T>(ctx: Ctx, p: Prepared, caller: Caller, type: number, mode: number,
  make: (dirfd: number, rel: Bstr) => T, path: Bstr): T {
  const upper = ctx.upper!;
  const isDir = type === S_IFDIR;
  const inWork = isDir || p.slot !== 'empty';
  const dfd = inWork ? ctx.workfd : upper.fd;
  const rel = inWork ? ctx.tmpName() : p.urel;
  const result = make(dfd, rel);
  // the parent's default ACL, not the umask, decides when it has one (acl.ts); ACLs are left
  // alone where owners and modes are override records (the real mode is not the one shown)
  const t0 = type === 0 ? S_IFREG : type;
  const got = ctx.overrides.length > 0 ? { mode } : inherit(t0, mode, caller.umask, parentDefaultAcl(upper.fd, p.urel));
  const finalMode = (got.mode & 0o7777) | (isDir && p.setgidDir ? S_ISGID : 0);
  // A directory made without u+w (mkdir -m 555) could not be moved out of work/ by a
  // plain mounter ('..' changes) nor marked opaque: it keeps u+w until it is in place.
  const lendWrite = isDir && (finalMode & 0o200) === 0;
  try {
    const t = type === 0 ? S_IFREG : type;
    placeOwner(ctx, dfd, rel, t, caller.uid, p.gid);
    placeMode(ctx, dfd, rel, t, caller.uid, p.gid, lendWrite ? finalMode | 0o200 : finalMode, path);
    if (isDir && (p.slot !== 'empty' || hasLowerDir(ctx, p.parent))) makeOpaque(ctx, dfd, rel);
    if (p.slot === 'whiteout') {
      sys.renameat2(dfd, rel, upper.fd, p.urel, sys.constants.RENAME_EXCHANGE);
      sys.unlinkat(dfd, rel, 0);
    } else if (inWork) {
      sys.renameat2(dfd, rel, upper.fd, p.urel, sys.constants.RENAME_NOREPLACE);
      if (p.slot === 'whfile') {
        const [d, n] = splitPath(p.urel);
        sys.unlinkat(upper.fd, joinRel(d, whiteoutFileName(n)), 0);
      }
    }
    if (lendWrite) placeMode(ctx, upper.fd, p.urel, t, caller.uid, p.gid, finalMode, path);
    // after the mode: setting an access ACL sets the group bits from its mask, the same ones
    setAcls(upper.fd, p.urel, got);
  } catch (e) {
    // Leave no half-made object behind (in work/ or the upper).
    if (inWork) sys.raw.unlinkat(dfd, rel, isDir ? sys.constants.AT_REMOVEDIR : 0);
    else sys.raw.unlinkat(dfd, rel, 0);
    throw e;
  } finally {
    ctx.cache.drop(path);
  }
  return result;
}

function parentDefaultAcl(upperFd: number, urel: Bstr): Buffer | undefined {
  const v = sys.raw.lgetxattrat(upperFd, splitPath(urel)[0], ACL_DEFAULT);
  return typeof v === 'number' ? undefined : v;
}

/**
 * The inherited ACLs onto the object in place. A file made in place inherited the upper's
 * default ACL from the upper filesystem already, against the 0600 it was made with: its access
 * ACL is replaced. (A default ACL of the three base entries alone gives no access ACL, there
 * or here.)
 */
function setAcls(dirfd: number, rel: Bstr, got: Inherited): void {
  if (got.default !== undefined) sys.lsetxattrat(dirfd, rel, ACL_DEFAULT, got.default, 0);
  if (got.access !== undefined) sys.lsetxattrat(dirfd, rel, ACL_ACCESS, got.access, 0);
}

export async function mkdir(ctx: Ctx, path: Bstr, mode: number, caller: Caller): Promise<void> {
  const p = await prepareCreate(ctx, path, caller);
  placeNew(ctx, p, caller, S_IFDIR, mode, (fd, rel) => sys.mkdirat(fd, rel, 0o700), path);
}

export async function mknod(ctx: Ctx, path: Bstr, mode: number, rdev: number, caller: Caller): Promise<void> {
  const type = mode & S_IFMT;
  // A char 0/0 made here would be a whiteout hiding its own name: ovl_mknod refuses it.
  const p = await prepareCreate(ctx, path, caller, () => { if (type === S_IFCHR && rdev === 0) fail('EPERM', path, 'mknod'); });
  if (type === S_IFDIR || type === S_IFLNK) fail('EINVAL', path, 'mknod');
  placeNew(ctx, p, caller, type, mode, (fd, rel) => sys.mknodat(fd, rel, (type || S_IFREG) | 0o600, rdev), path);
}

export async function symlink(ctx: Ctx, target: Bstr, path: Bstr, caller: Caller): Promise<void> {
  const p = await prepareCreate(ctx, path, caller);
  placeNew(ctx, p, caller, S_IFLNK, 0o777, (fd, rel) => sys.symlinkat(target, fd, rel), path);
}

export async function link(ctx: Ctx, existing: Bstr, path: Bstr, caller: Caller): Promise<void> {
  const upper = requireUpper(ctx, path);
  const src = resolve(ctx, existing);
  // linkat(2)'s order: the new name is looked up (EEXIST, ENOENT) before the source type is judged.
  resolveDir(ctx, parentOf(path)[0]);
  if (lookup(ctx, path) !== undefined) fail('EEXIST', path, 'link');
  if (src.type === S_IFDIR) fail('EPERM', existing, 'link');
  const p0 = await prepareCreate(ctx, path, caller);
  await copyUp(ctx, existing);
  // Re-check: the copy-up awaited.
  const p = lookup(ctx, path) === undefined ? { ...p0, slot: upperSlot(ctx, upper, p0.urel) } : fail('EEXIST', path);
  placeLink(ctx, p, upper.fd, relOf(existing));
  ctx.cache.drop(path);
}

/** A new name for the upper object (sfd, srel) at the prepared name (srel '': the fd itself, AT_EMPTY_PATH). */
function placeLink(ctx: Ctx, p: Prepared, sfd: number, srel: Bstr): void {
  const upper = ctx.upper!;
  if (p.slot === 'empty') {
    sys.linkat(sfd, srel, upper.fd, p.urel);
  } else {
    const tmp = ctx.tmpName();
    sys.linkat(sfd, srel, ctx.workfd, tmp);
    if (p.slot === 'whiteout') {
      sys.renameat2(ctx.workfd, tmp, upper.fd, p.urel, sys.constants.RENAME_EXCHANGE);
      sys.unlinkat(ctx.workfd, tmp, 0);
    } else {
      sys.renameat2(ctx.workfd, tmp, upper.fd, p.urel, sys.constants.RENAME_NOREPLACE);
      const [d, n] = splitPath(p.urel);
      sys.unlinkat(upper.fd, joinRel(d, whiteoutFileName(n)), 0);
    }
  }
}

/**
 * linkat(2) of an object that has no name, through its open upper fd `fd` (linkat of an
 * O_TMPFILE's fd, by AT_EMPTY_PATH or /proc/self/fd): the name is made as link() makes
 * one, the fd itself linked (AT_EMPTY_PATH: Linux 6.10 lets the opener do it unprivileged).
 * The kernel has refused the unnamed files that may not get a name (nlink 0 without
 * I_LINKABLE: unlinked ones, O_TMPFILE|O_EXCL) before the request reaches us.
 */
export async function linkFd(ctx: Ctx, fd: number, path: Bstr, caller: Caller): Promise<void> {
  const upper = requireUpper(ctx, path);
  resolveDir(ctx, parentOf(path)[0]);
  if (lookup(ctx, path) !== undefined) fail('EEXIST', path, 'link');
  const p0 = await prepareCreate(ctx, path, caller);
  const p = { ...p0, slot: upperSlot(ctx, upper, p0.urel) };
  placeLink(ctx, p, fd, '');
  ctx.cache.drop(path);
}

/** Same real top object (entries are re-created when the cache is small or off). */
function sameObject(a: Entry | undefined, b: Entry): boolean {
  return a !== undefined && a.ino === b.ino && a.type === b.type &&
    a.stack[0]!.layer === b.stack[0]!.layer && a.stack[0]!.rel === b.stack[0]!.rel;
}

/** Forget the upper-ino mapping of an upper object about to lose its last name. */
function forgetIfLast(ctx: Ctx, urel: Bstr): void {
  const st = ctx.st;
  if (sys.tryLstatat(ctx.upper!.fd, urel, st) === 0 && st[StatIdx.nlink]! <= 1 && (st[StatIdx.mode]! & S_IFMT) !== S_IFDIR) {
    ctx.inodes.forgetUpper(inoOf(st));
  }
}

/**
 * Replace the upper object at urel by a whiteout, atomically (a whiteout built
 * in work/ and exchanged), and return the work/ name the old object now has.
 * Without char-dev whiteouts: remove it and write `.wh.<name>` (not atomic).
 */
function exchangeWithWhiteout(ctx: Ctx, urel: Bstr, isDir: boolean): void {
  const upper = ctx.upper!;
  if (ctx.wh!.useCharDev) {
    const tmp = ctx.tmpName();
    ctx.wh!.create(ctx.workfd, tmp);
    sys.renameat2(ctx.workfd, tmp, upper.fd, urel, sys.constants.RENAME_EXCHANGE);
    if (isDir) sys.removeTree(ctx.workfd, tmp); else sys.unlinkat(ctx.workfd, tmp, 0);
  } else {
    if (isDir) sys.removeTree(upper.fd, urel); else sys.unlinkat(upper.fd, urel, 0);
    whiteoutAt(ctx, urel);
  }
}

export async function unlink(ctx: Ctx, path: Bstr, _caller: Caller): Promise<void> {
  requireUpper(ctx, path);
  await settleCopyUps(ctx, path);
  const e = resolve(ctx, path);
  if (e.type === S_IFDIR) fail('EISDIR', path, 'unlink');
  const [ppath, name] = parentOf(path);
  const urel = relOf(path);
  if (isUpperEntry(ctx, e)) {
    const parent = resolveDir(ctx, ppath);
    forgetIfLast(ctx, urel);
    if (lowerHasName(ctx, parent, name)) exchangeWithWhiteout(ctx, urel, false);
    else sys.unlinkat(ctx.upper!.fd, urel, 0);
  } else {
    await copyUp(ctx, ppath);
    if (!sameObject(lookup(ctx, path), e)) {
      // Changed while the parent was copied up: start over on the new state.
      return unlink(ctx, path, _caller);
    }
    whiteoutAt(ctx, urel);
  }
  ctx.cache.drop(path);
  ctx.cache.setNegative(path);
}

export async function rmdir(ctx: Ctx, path: Bstr, _caller: Caller): Promise<void> {
  requireUpper(ctx, path);
  if (path === '/') fail('EBUSY', path, 'rmdir');
  await settleCopyUps(ctx, path);
  const e = resolve(ctx, path);
  if (e.type !== S_IFDIR) fail('ENOTDIR', path, 'rmdir');
  if (!isMergedEmpty(ctx, e)) fail('ENOTEMPTY', path, 'rmdir');
  const [ppath, name] = parentOf(path);
  const urel = relOf(path);
  if (isUpperEntry(ctx, e)) {
    const parent = resolveDir(ctx, ppath);
    const needWh = hasLowerDir(ctx, e) || lowerHasName(ctx, parent, name);
    if (needWh) exchangeWithWhiteout(ctx, urel, true);
    else sys.removeTree(ctx.upper!.fd, urel);
  } else {
    await copyUp(ctx, ppath);
    if (!sameObject(lookup(ctx, path), e)) return rmdir(ctx, path, _caller);
    whiteoutAt(ctx, urel);
  }
  ctx.cache.dropTree(path);
  ctx.cache.setNegative(path);
}

/**
 * rename(2) and renameat2(2) on the merged view, with the flags kernel
 * overlayfs takes (ovl_rename, checked on 6.18): RENAME_NOREPLACE (EEXIST
 * when the name is visible; a whiteout there is no name), RENAME_EXCHANGE
 * (exchange), and RENAME_WHITEOUT refused with EINVAL, as overlayfs refuses
 * it. The checks come in the VFS's order (do_renameat2, vfs_rename): flag
 * combinations, the source, NOREPLACE's target, ancestors, a rename of a name
 * onto itself (nothing, whatever the flags), then the filesystem's refusals.
 */
export async function rename(ctx: Ctx, from: Bstr, to: Bstr, flags: number, caller: Caller, moved?: () => void): Promise<void> {
  requireUpper(ctx, from);
  checkRenameFlags(flags, from);
  if (from === '/' || to === '/') fail('EBUSY', from, 'rename');
  if ((flags & RENAME_EXCHANGE) !== 0) return exchange(ctx, from, to, moved);
  let src = resolve(ctx, from);
  const [tp, tname] = parentOf(to);
  resolveDir(ctx, tp);
  const noReplace = (flags & RENAME_NOREPLACE) !== 0;
  if (noReplace && lookup(ctx, to) !== undefined) fail('EEXIST', to, 'rename');
  if (from === to) return;
  if (to.startsWith(from + '/')) fail('EINVAL', from, 'rename', 'target inside source');
  const srcIsDir = src.type === S_IFDIR;
  let tgt = lookup(ctx, to);
  if (from.startsWith(to + '/')) fail('ENOTEMPTY', to, 'rename');
  checkNewName(tname, to);
  checkTarget(ctx, src, tgt, to);
  if (tgt && !srcIsDir && sameUpperFile(ctx, src, tgt)) {
    // Two names of one object: rename(2) does nothing. Only upper hard links are one object
    // to the kernel; two names of a lower hard link are two (each copies up on its own), and
    // the rename goes ahead (observed on 6.18).
    return;
  }
  // overlayfs's own refusal, after every check of the VFS
  if ((flags & RENAME_WHITEOUT) !== 0) fail('EINVAL', from, 'rename', 'RENAME_WHITEOUT (overlayfs makes its own whiteouts)');
  const needsRedirect = srcIsDir && hasLowerDir(ctx, src);
  if (needsRedirect && !ctx.config.redirectDir) fail('EXDEV', from, 'rename', 'directory with lower content; mount with redirect_dir=on');
  checkTargetEmpty(ctx, tgt, to);

  await settleCopyUps(ctx, from);
  await settleCopyUps(ctx, to);
  // Redirects only where a kernel mount would follow them (trusted.* xattrs).
  if (needsRedirect && (ctx.userxattr || !ctx.trustedXattrs)) {
    await copyUpTreeOpaque(ctx, from, (fd, rel) => makeOpaque(ctx, fd, rel));
  }
  const fromLower = !isUpperEntry(ctx, src);
  await copyUp(ctx, from);
  await copyUp(ctx, tp);
  // Everything below is synchronous: no other operation interleaves.
  src = resolve(ctx, from);
  tgt = lookup(ctx, to);
  // made by another request while the copy-ups awaited: NOREPLACE still holds
  if (noReplace && tgt !== undefined) fail('EEXIST', to, 'rename');
  checkTarget(ctx, src, tgt, to);
  checkTargetEmpty(ctx, tgt, to);
  // A failure of the real rename below (a non-empty pure upper target) leaves the source
  // copied up with its redirect, as the kernel does: forget what the cache knew of it.
  try {
    renameUpper(ctx, from, to, src, tgt, srcIsDir, fromLower);
  } catch (e) {
    ctx.cache.dropTree(from);
    throw e;
  }
  // In the same tick as the move: a promise continuation of another request must not find
  // the tree moved and the caller's names not (a create answered ENOENT for a file it made).
  moved?.();
  void caller;
}

/** The synchronous part of rename: markers, then the move in the upper. */
function renameUpper(ctx: Ctx, from: Bstr, to: Bstr, src: Entry, tgt: Entry | undefined, srcIsDir: boolean, fromLower: boolean): void {
  const upper = ctx.upper!;
  const [fp, fname] = parentOf(from);
  const [tp] = parentOf(to);
  const sparent = resolveDir(ctx, fp);
  const tparent = resolveDir(ctx, tp);
  const srel = relOf(from);
  const trel = relOf(to);

  if (srcIsDir) {
    if (hasLowerDir(ctx, src) && !src.opaque) {
      setRedirect(upper.fd, srel, redirectFor(ctx, src, fname, fp === tp), ctx.userxattr);
    } else if (!src.opaque && hasLowerDir(ctx, tparent)) {
      makeOpaque(ctx, upper.fd, srel);
    }
  }
  if (tgt && isUpperEntry(ctx, tgt)) {
    // Only a target checked empty in the merged view can hold nothing but markers; a pure
    // upper one holds none, and the real rename judges whether it is empty.
    if (tgt.type === S_IFDIR) { if (tgt.opaque || hasLowerDir(ctx, tgt)) clearMarkers(ctx, trel, to); }
    else forgetIfLast(ctx, trel);
  }
  const oldNeedsWh = lowerHasName(ctx, sparent, fname);
  const slot = tgt && isUpperEntry(ctx, tgt) ? 'empty' : upperSlot(ctx, upper, trel);
  const C = sys.constants;

  if (slot === 'whiteout' && srcIsDir) {
    // A directory cannot replace a char device: swap, and the whiteout lands at the old name.
    sys.renameat2(upper.fd, srel, upper.fd, trel, C.RENAME_EXCHANGE);
    if (!oldNeedsWh) sys.unlinkat(upper.fd, srel, 0);
  } else if (oldNeedsWh && ctx.wh!.useCharDev) {
    const r = sys.tryRenameat2(upper.fd, srel, upper.fd, trel, C.RENAME_WHITEOUT);
    if (r === -EINVAL) {
      sys.renameat2(upper.fd, srel, upper.fd, trel, 0);
      whiteoutAt(ctx, srel);
    } else if (r < 0) {
      sys.renameat2(upper.fd, srel, upper.fd, trel, 0); // throws the real error
    } else {
      ctx.wh!.written++;
    }
  } else {
    sys.renameat2(upper.fd, srel, upper.fd, trel, 0);
    if (oldNeedsWh) whiteoutAt(ctx, srel);
  }
  if (slot === 'whfile') {
    const [d, n] = splitPath(trel);
    if (sys.tryUnlinkat(upper.fd, joinRel(d, whiteoutFileName(n)), 0) === -ENOENT) { /* already gone */ }
  }
  if (fromLower || (srcIsDir && hasLowerDir(ctx, src))) markImpure(ctx, relOf(tp));
  if (srcIsDir) { ctx.cache.dropTree(from); ctx.cache.dropTree(to); }
  else { ctx.cache.drop(from); ctx.cache.drop(to); }
  ctx.cache.setNegative(from);
}

/** The VFS's refusals of flag combinations (do_renameat2), before anything is looked up. */
function checkRenameFlags(flags: number, from: Bstr): void {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) !== 0) fail('EINVAL', from, 'rename', `unknown flags 0x${flags.toString(16)}`);
  if ((flags & RENAME_EXCHANGE) !== 0 && (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)) !== 0) fail('EINVAL', from, 'rename', 'RENAME_EXCHANGE with another flag');
}

/**
 * renameat2(RENAME_EXCHANGE) on the merged view, as ovl_rename does it with
 * `overwrite` false: both names must be visible (ENOENT), neither may be an
 * ancestor of the other (EINVAL), a directory or file may swap with either;
 * a directory with lower content needs redirect_dir (EXDEV). Both objects and
 * both parents are copied up, then, in one synchronous step: each directory
 * with lower content gets the redirect of its old name (as a rename would
 * give it), each pure upper directory that is not opaque and lands in a
 * merged parent is made opaque, a parent that receives an object with an
 * origin is marked impure, and the two upper names are swapped with one
 * renameat2(RENAME_EXCHANGE): atomic, and no whiteout is needed since both
 * names stay occupied.
 */
async function exchange(ctx: Ctx, from: Bstr, to: Bstr, moved?: () => void): Promise<void> {
  const a0 = resolve(ctx, from);
  const [tp] = parentOf(to);
  resolveDir(ctx, tp);
  const b0 = lookup(ctx, to) ?? fail('ENOENT', to, 'rename');
  if (from === to) return;
  if (to.startsWith(from + '/') || from.startsWith(to + '/')) fail('EINVAL', from, 'rename', 'one name inside the other');
  if (sameUpperFile(ctx, a0, b0)) return;
  for (const [e, p] of [[a0, from], [b0, to]] as const) {
    if (e.type === S_IFDIR && hasLowerDir(ctx, e) && !ctx.config.redirectDir) fail('EXDEV', p, 'rename', 'directory with lower content; mount with redirect_dir=on');
  }
  await settleCopyUps(ctx, from);
  await settleCopyUps(ctx, to);
  // Redirects only where a kernel mount would follow them (trusted.* xattrs): else whole copies.
  if (ctx.userxattr || !ctx.trustedXattrs) {
    for (const [e, p] of [[a0, from], [b0, to]] as const) {
      if (e.type === S_IFDIR && hasLowerDir(ctx, e)) await copyUpTreeOpaque(ctx, p, (fd, rel) => makeOpaque(ctx, fd, rel));
    }
  }
  await copyUp(ctx, from);
  await copyUp(ctx, to);
  // Everything below is synchronous: no other operation interleaves.
  const a = resolve(ctx, from);
  const b = lookup(ctx, to) ?? fail('ENOENT', to, 'rename');
  if (sameUpperFile(ctx, a, b)) return;
  exchangeUpper(ctx, from, to, a, b);
  moved?.();
}

/** The synchronous part of exchange: markers on both objects and parents, then one renameat2. */
function exchangeUpper(ctx: Ctx, from: Bstr, to: Bstr, a: Entry, b: Entry): void {
  const upper = ctx.upper!;
  const [fp, fname] = parentOf(from);
  const [tp, tname] = parentOf(to);
  const samedir = fp === tp;
  const sparent = resolveDir(ctx, fp);
  const tparent = resolveDir(ctx, tp);
  const srel = relOf(from);
  const trel = relOf(to);
  // each object as it is now, then where it goes (ovl_rename: old to new's parent, new to old's)
  const moves: [Entry, Bstr, Bstr, Entry, Bstr][] = [[a, srel, fname, tparent, relOf(tp)], [b, trel, tname, sparent, relOf(fp)]];
  const origin = markerXattr('origin', ctx.userxattr);
  const impure: Bstr[] = [];
  for (const [e, rel, name, into, intoRel] of moves) {
    if (e.type === S_IFDIR) {
      if (hasLowerDir(ctx, e) && !e.opaque) setRedirect(upper.fd, rel, redirectFor(ctx, e, name, samedir), ctx.userxattr);
      else if (!e.opaque && hasLowerDir(ctx, into)) makeOpaque(ctx, upper.fd, rel);
    }
    // a parent that receives a copied-up object is "impure" (its readdir must look up origins)
    if (!samedir && (ctx.trustedXattrs || ctx.userxattr) && typeof sys.raw.lgetxattrat(upper.fd, rel, origin) !== 'number') impure.push(intoRel);
  }
  sys.renameat2(upper.fd, srel, upper.fd, trel, sys.constants.RENAME_EXCHANGE);
  for (const r of impure) markImpure(ctx, r);
  ctx.cache.dropTree(from);
  ctx.cache.dropTree(to);
}

/** Are two entries names of one upper file (the same real inode)? */
function sameUpperFile(ctx: Ctx, a: Entry, b: Entry): boolean {
  if (a.ino !== b.ino || !isUpperEntry(ctx, a) || !isUpperEntry(ctx, b)) return false;
  const st = ctx.st;
  if (sys.tryLstatat(ctx.upper!.fd, a.stack[0]!.rel, st) !== 0) return false;
  const ino = inoOf(st);
  if (sys.tryLstatat(ctx.upper!.fd, b.stack[0]!.rel, st) !== 0) return false;
  return inoOf(st) === ino;
}

/** The VFS's checks of a rename target's type (before the filesystem is asked anything). */
function checkTarget(_ctx: Ctx, src: Entry, tgt: Entry | undefined, to: Bstr): void {
  if (!tgt) return;
  const srcIsDir = src.type === S_IFDIR;
  const tgtIsDir = tgt.type === S_IFDIR;
  if (srcIsDir && !tgtIsDir) fail('ENOTDIR', to, 'rename');
  if (!srcIsDir && tgtIsDir) fail('EISDIR', to, 'rename');
}

/**
 * A directory target must be empty in the merged view. As the kernel's
 * ovl_rename, this is checked before any copy-up only for a target that has
 * lower content or may hold whiteouts (opaque); a pure upper directory is left
 * to the real rename, which fails ENOTEMPTY after the source was copied up and
 * given its redirect (observed on 6.18).
 */
function checkTargetEmpty(ctx: Ctx, tgt: Entry | undefined, to: Bstr): void {
  if (!tgt || tgt.type !== S_IFDIR) return;
  if (isUpperEntry(ctx, tgt) && !hasLowerDir(ctx, tgt) && !tgt.opaque) return;
  if (!isMergedEmpty(ctx, tgt)) fail('ENOTEMPTY', to, 'rename');
}

/**
 * The redirect a directory with lower content gets when renamed (kernel
 * ovl_set_redirect): within the same parent, its existing redirect or else
 * its old name (relative); across parents, an existing absolute redirect or
 * else the path ovl_get_redirect builds: from the directory up, each
 * component's upper redirect or else its name, until an absolute redirect or
 * the root. Redirects read in lower layers count for nothing there (the kernel
 * keeps only the upper's: observed on 6.18, a lower dir p/rel redirected to
 * "relorig" in a lower, renamed to /rel2, gets "/p/rel"); lookup follows them
 * when walking the path.
 */
function redirectFor(ctx: Ctx, src: Entry, oldName: Bstr, samedir: boolean): Redirect {
  const upperRd = (e: Entry): Redirect | undefined => (isUpperEntry(ctx, e) ? e.redirect : undefined);
  const cur = upperRd(src);
  if (samedir) return cur ?? { absolute: false, name: oldName };
  if (cur?.absolute) return cur;
  const parts: Bstr[] = [];
  for (let p = src.path, e = src; p !== '/';) {
    const rd = upperRd(e);
    if (rd?.absolute) { if (rd.path !== '') parts.unshift(rd.path); break; }
    const [pp, name] = parentOf(p);
    parts.unshift(rd ? rd.name : name);
    p = pp;
    if (p !== '/') e = resolveDir(ctx, p);
  }
  const path = parts.join('/');
  // The kernel's redirect_max (256 here): a longer path is EXDEV, for programs to copy instead.
  if (path.length + 1 > REDIRECT_MAX) fail('EXDEV', src.path, 'rename', `redirect longer than ${REDIRECT_MAX} bytes`);
  return { absolute: true, path };
}

export { isFsError };
