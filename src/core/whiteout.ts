/**
 * The on-disk marker codec: whiteouts, opaque directories and redirects, in
 * every format stratafs reads, and the kernel format it writes.
 *
 * Read:
 * - whiteout: a character device 0/0 (kernel overlayfs), or a file `.wh.<name>`
 *   beside the hidden name (OCI/AUFS layer tarballs, containers/storage,
 *   fuse-overlayfs uppers on filesystems without mknod).
 * - opaque directory: xattr trusted.overlay.opaque=y, user.overlay.opaque=y
 *   (kernel with userxattr), user.fuseoverlayfs.opaque=y, or a `.wh..wh..opq`
 *   file inside it (OCI).
 * - redirect: trusted.overlay.redirect (user.overlay.redirect with userxattr),
 *   either absolute "/a/b" (from the layer root) or a single relative name
 *   (same parent), as the kernel writes them with redirect_dir=on.
 *
 * Written (the kernel's own format, so `mount -t overlay` reads our upper):
 * whiteouts are char 0/0 mode 0000 hard links of one whiteout inode kept in
 * workdir/work (a fresh one on EMLINK), opaque = "y", redirect as above.
 * `.wh.<name>` files are written only when mknod is refused (unprivileged).
 *
 * Nothing here is visible through the mount: `.wh.*` names are hidden from
 * readdir and lookup, overlay xattrs from listxattr/getxattr (see xattr.ts).
 *
 * Helper functions take a layer directory fd plus a path beneath it, so image
 * import/commit can reuse them on any tree opened with sys.openRoot.
 */
import * as sys from '../native/sys.js';
import { StatIdx } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { codeOf, FsError, type ErrnoCode } from '../shared/errors.js';
import { S_IFCHR, S_IFMT, EEXIST, EMLINK, ENODATA, ENOENT, O_WRITE_NEW } from '../shared/constants.js';

export const WH_PREFIX = '.wh.';
export const OPAQUE_FILE = '.wh..wh..opq';



/** Xattr namespaces of overlay markers. `trusted.` is the kernel default; `user.` with -o userxattr. */
export const TRUSTED_PREFIX = 'trusted.overlay.';
export const USER_PREFIX = 'user.overlay.';
/** fuse-overlayfs writes this when it cannot write trusted.* (rootless). */
export const FUSE_OVERLAYFS_PREFIX = 'user.fuseoverlayfs.';

export const OPAQUE_XATTRS: readonly Bstr[] = [
  TRUSTED_PREFIX + 'opaque', USER_PREFIX + 'opaque', FUSE_OVERLAYFS_PREFIX + 'opaque',
];

/**
 * Is this xattr the overlay's own (never copied up, never shown, never part of
 * a layer)? On a mount (`userxattr` false or true) the escaped form
 * trusted.overlay.overlay.* is user data (a nested overlay's marker). A layer
 * file (`'layer'`) may end up under a mount of either namespace, or a nested
 * one, so every overlay namespace is private there, escaped form included: a
 * layer may not plant a redirect or origin.
 */
export function isPrivateXattr(name: Bstr, userxattr: boolean | 'layer'): boolean {
  if (userxattr === 'layer') {
    return name.startsWith(TRUSTED_PREFIX) || name.startsWith(USER_PREFIX) || name.startsWith(FUSE_OVERLAYFS_PREFIX);
  }
  // Every name lookup reads as an opaque marker, whatever the mount's namespace: a copied-up
  // directory is never opaque (the kernel copies no marker), else an upper copy of a lower
  // opaque dir would hide the lower's own entries.
  if (OPAQUE_XATTRS.includes(name)) return true;
  if (name.startsWith(TRUSTED_PREFIX)) return !name.startsWith(TRUSTED_PREFIX + 'overlay.');
  if (name.startsWith(FUSE_OVERLAYFS_PREFIX)) return true;
  if (userxattr && name.startsWith(USER_PREFIX)) return !name.startsWith(USER_PREFIX + 'overlay.');
  return false;
}

/** A Bstr path join for layer-relative paths ('' is the layer root). */
export function joinRel(dir: Bstr, name: Bstr): Bstr {
  return dir === '' ? name : dir + '/' + name;
}

/** Parent dir and last component of a layer-relative or mount path ("/a/b" or "a/b"). */
export function splitPath(p: Bstr): [Bstr, Bstr] {
  const i = p.lastIndexOf('/');
  if (i < 0) return ['', p];
  return [p.slice(0, i), p.slice(i + 1)];
}

// ---- reading ------------------------------------------------------------------

/** A stat result (StatIdx layout) of a kernel whiteout: char device 0/0. */
export function isWhiteoutStat(st: Float64Array): boolean {
  return (st[StatIdx.mode]! & S_IFMT) === S_IFCHR && st[StatIdx.rdev] === 0;
}

/** True for names that carry meaning as markers and so are never shown: `.wh.*`. */
export function isMarkerName(name: Bstr): boolean {
  return name.startsWith(WH_PREFIX);
}

/** `.wh.foo` -> "foo"; the opaque marker and plain names -> undefined. */
export function whiteoutTargetOf(name: Bstr): Bstr | undefined {
  if (!name.startsWith(WH_PREFIX) || name === OPAQUE_FILE) return undefined;
  const t = name.slice(WH_PREFIX.length);
  return t === '' ? undefined : t;
}

export const whiteoutFileName = (name: Bstr): Bstr => WH_PREFIX + name;

/** What a single directory entry of a layer means. */
export type EntryKind =
  | { kind: 'whiteout'; target: Bstr } // hides `target` in lower layers
  | { kind: 'opaque-marker' } // makes the containing directory opaque
  | { kind: 'entry' };

/**
 * Classify one entry from a readdir of a layer directory. `isCharDev00`
 * tells whether the entry is a char 0/0 device (the caller stats DT_CHR
 * entries only: d_type does not carry rdev).
 */
export function classifyEntry(name: Bstr, isCharDev00: boolean): EntryKind {
  if (name === OPAQUE_FILE) return { kind: 'opaque-marker' };
  const t = whiteoutTargetOf(name);
  if (t !== undefined) return { kind: 'whiteout', target: t };
  if (isCharDev00) return { kind: 'whiteout', target: name };
  return { kind: 'entry' };
}

/** Is `rel` beneath dirfd hidden by a whiteout: a char 0/0 at rel, or `.wh.<name>` beside it. */
export function isWhitedOut(dirfd: number, rel: Bstr, st: Float64Array): boolean {
  const r = sys.tryLstatat(dirfd, rel, st);
  if (r === 0) return isWhiteoutStat(st);
  const [dir, name] = splitPath(rel);
  return sys.tryLstatat(dirfd, joinRel(dir, whiteoutFileName(name)), st) === 0;
}

function xattrIsY(dirfd: number, rel: Bstr, name: Bstr): boolean {
  const v = sys.tryLgetxattrat(dirfd, rel, name);
  return typeof v !== 'number' && v.length === 1 && v[0] === 0x79; // "y"
}

/**
 * Is the directory rel opaque, in any format. `xattrNames` may pass the
 * directory's llistxattr result when the caller already has it (saves one
 * syscall per format); `hasOpqFile` likewise when it has read the directory.
 */
export function isOpaqueDir(dirfd: number, rel: Bstr, st: Float64Array, xattrNames?: readonly Bstr[], hasOpqFile?: boolean): boolean {
  const names = xattrNames ?? listXattrsOrEmpty(dirfd, rel);
  for (const x of OPAQUE_XATTRS) if (names.includes(x) && xattrIsY(dirfd, rel, x)) return true;
  if (hasOpqFile !== undefined) return hasOpqFile;
  return sys.tryLstatat(dirfd, joinRel(rel, OPAQUE_FILE), st) === 0;
}

export function listXattrsOrEmpty(dirfd: number, rel: Bstr): Bstr[] {
  const r = sys.raw.llistxattrat(dirfd, rel);
  return typeof r === 'number' ? [] : r;
}

/** A directory's redirect: the path its lower content lives at. */
export type Redirect = { absolute: true; path: Bstr } | { absolute: false; name: Bstr };

/**
 * Parse a redirect xattr value as the kernel does (ovl_get_redirect_xattr, then the lookup of
 * each component): the value is a C string (cut at its first NUL); "/a/b" is absolute and may
 * have no empty component ("/", "//a", "/a/" are invalid), anything else must be one name.
 * Invalid values fail EINVAL; ".", ".." and "" as a component fail EACCES, as the kernel's
 * lookup_one refuses them: so a redirect can never climb out of a layer, and one bad value
 * fails only the directory that carries it.
 */
export function parseRedirect(value: Buffer, where: Bstr): Redirect {
  if (value.length === 0) throw new FsError('EINVAL', where, 'redirect', 'empty redirect xattr');
  const nul = value.indexOf(0);
  const s = (nul < 0 ? value : value.subarray(0, nul)).toString('latin1');
  const parts = s.startsWith('/') ? s.slice(1).split('/') : [s];
  if (s.startsWith('/') ? parts.includes('') : s.includes('/')) {
    throw new FsError('EINVAL', where, 'redirect', `invalid redirect xattr "${s}"`);
  }
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new FsError('EACCES', where, 'redirect', `redirect xattr "${s}" names "." or ".."`);
  }
  return s.startsWith('/') ? { absolute: true, path: parts.join('/') } : { absolute: false, name: s };
}

/** The redirect xattr of rel, if any. Reads trusted.* (and user.* when userxattr). */
export function readRedirect(dirfd: number, rel: Bstr, userxattr: boolean, xattrNames?: readonly Bstr[]): Redirect | undefined {
  const name = (userxattr ? USER_PREFIX : TRUSTED_PREFIX) + 'redirect';
  if (xattrNames && !xattrNames.includes(name)) return undefined;
  const v = sys.tryLgetxattrat(dirfd, rel, name);
  if (typeof v === 'number') {
    if (v === -ENODATA || v === -ENOENT) return undefined;
    throw new FsError('EIO', rel, 'lgetxattr', `redirect: errno ${-v}`);
  }
  return parseRedirect(v, rel);
}

/** Encode a redirect value the way the kernel writes it. */
export function encodeRedirect(r: Redirect): Buffer {
  return Buffer.from(r.absolute ? '/' + r.path : r.name, 'latin1');
}

// ---- writing --------------------------------------------------------------------

/** The xattr name of marker `what` (opaque, redirect, origin, ...) in the namespace this mount writes. */
export function markerXattr(what: string, userxattr: boolean): Bstr {
  return (userxattr ? USER_PREFIX : TRUSTED_PREFIX) + what;
}

/** Make rel (a directory) opaque in the kernel's format. */
export function setOpaque(dirfd: number, rel: Bstr, userxattr: boolean): void {
  sys.lsetxattrat(dirfd, rel, markerXattr('opaque', userxattr), Buffer.from('y'), 0);
}

export function setRedirect(dirfd: number, rel: Bstr, r: Redirect, userxattr: boolean): void {
  sys.lsetxattrat(dirfd, rel, markerXattr('redirect', userxattr), encodeRedirect(r), 0);
}

/**
 * Writes whiteouts for one upper layer. With mknod permitted, a whiteout is a
 * hard link to a char 0/0 inode kept in workdir/work (as the kernel does since
 * 5.8: one inode, many links), a new one when the link count is exhausted;
 * when a link fails, the shared inode itself becomes the whiteout (as the kernel).
 * Without mknod, `.wh.<name>` empty files (the fuse-overlayfs fallback).
 */
export class WhiteoutWriter {
  private sharedName: Bstr | undefined;
  private seq = 0;
  /** false after a link to the shared inode failed other than with EMLINK (as the kernel) */
  private sharing = true;
  private readonly st = sys.newStatArray();
  written = 0;

  /**
   * @param workfd fd of workdir/work (same filesystem as the upper)
   * @param useCharDev false when mknod of a char 0/0 is not permitted
   */
  constructor(private readonly workfd: number, readonly useCharDev: boolean, private readonly tag = `wh.${process.pid}`) {}

  private freshShared(): Bstr {
    for (;;) {
      const name = `#${this.tag}.${this.seq++}`;
      const r = sys.raw.mknodat(this.workfd, name, S_IFCHR | 0, 0);
      if (r === -EEXIST) continue;
      if (r < 0) throw new FsError(codeOfNeg(r), name, 'mknodat', 'whiteout');
      this.sharedName = name;
      return name;
    }
  }

  /**
   * Create a char 0/0 whiteout at `rel` beneath dirfd (which must be on the
   * workdir's filesystem). With `.wh.` files, creates `.wh.<name>` beside rel.
   * Fails EEXIST if something is there already.
   */
  create(dirfd: number, rel: Bstr): void {
    if (!this.useCharDev) {
      const [dir, name] = splitPath(rel);
      const whRel = joinRel(dir, whiteoutFileName(name));
      const fd = sys.openat(dirfd, whRel, O_WRITE_NEW, 0);
      sys.close(fd);
      sys.fchmodat(dirfd, whRel, 0);
      this.written++;
      return;
    }
    if (!this.sharing) {
      // the kernel's no_shared_whiteout: one inode per whiteout from now on
      const r = sys.raw.mknodat(dirfd, rel, S_IFCHR | 0, 0);
      if (r < 0) throw new FsError(codeOfNeg(r), rel, 'mknodat', 'whiteout');
      this.written++;
      return;
    }
    for (let attempt = 0; ; attempt++) {
      const shared = this.sharedName ?? this.freshShared();
      const r = sys.raw.linkat(this.workfd, shared, dirfd, rel);
      if (r === 0) break;
      if (r === -EEXIST) throw new FsError('EEXIST', rel, 'linkat', 'whiteout');
      if (r === -ENOENT) {
        // rel's directory is gone, or someone emptied work/: then start a new shared inode
        if (attempt >= 2 || sys.raw.lstatat(this.workfd, shared, this.st) === 0) throw new FsError('ENOENT', rel, 'linkat', 'whiteout');
        this.sharedName = undefined;
        continue;
      }
      // As the kernel (ovl_whiteout): the shared inode that cannot take one more link
      // becomes this whiteout itself, which needs no new inode and no new link (on an
      // upper out of inodes the unlink still succeeds once); the next whiteout starts a
      // new shared inode after EMLINK, and after any other error is an inode of its own
      // for the rest of the mount ("disabling whiteout inode sharing").
      if (r !== -EMLINK) this.sharing = false;
      const m = sys.raw.renameat2(this.workfd, shared, dirfd, rel, sys.constants.RENAME_NOREPLACE);
      if (m < 0) throw new FsError(codeOfNeg(m), rel, 'renameat2', 'whiteout');
      this.sharedName = undefined;
      break;
    }
    this.written++;
  }

  /** Drop the shared whiteout inode's name in work/ (at unmount). */
  dispose(): void {
    if (this.sharedName !== undefined) sys.raw.unlinkat(this.workfd, this.sharedName, 0);
    this.sharedName = undefined;
  }
}

function codeOfNeg(r: number): ErrnoCode {
  return codeOf(-r);
}

/**
 * Probe whether char 0/0 whiteouts can be made in the directory `workfd`
 * (mknod needs CAP_MKNOD; some filesystems refuse). Leaves nothing behind.
 */
export function canMknodWhiteout(workfd: number): boolean {
  const name = `#probe.wh.${process.pid}`;
  sys.raw.unlinkat(workfd, name, 0);
  const r = sys.raw.mknodat(workfd, name, S_IFCHR, 0);
  if (r < 0) return false;
  sys.raw.unlinkat(workfd, name, 0);
  return true;
}

/** Probe whether trusted.* xattrs can be written in the directory `workfd` (needs CAP_SYS_ADMIN). */
export function canWriteTrustedXattr(workfd: number): boolean {
  const name = `#probe.xa.${process.pid}`;
  sys.raw.unlinkat(workfd, name, sys.constants.AT_REMOVEDIR);
  if (sys.raw.mkdirat(workfd, name, 0o700) < 0) return false;
  const r = sys.raw.lsetxattrat(workfd, name, TRUSTED_PREFIX + 'opaque', Buffer.from('y'), 0);
  sys.raw.unlinkat(workfd, name, sys.constants.AT_REMOVEDIR);
  return r === 0;
}
