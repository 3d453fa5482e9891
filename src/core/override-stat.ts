/**
 * fuse-overlayfs's stat override, which containers/storage turns on with `xattr_permissions=2`
 * (storage.conf `force_mask`): the owner and mode of a directory or regular file are kept in
 * an xattr "UID:GID:MODE" (decimal, decimal, octal) and the real object keeps the mounter's
 * owner and a mode it can use. Rootless storage on filesystems without chown (NFS) works so.
 *
 * As fuse-overlayfs 1.10 (direct.c, utils.c override_mode, main.c):
 * - every layer whose root carries security.fuseoverlayfs.override_stat,
 *   user.fuseoverlayfs.override_stat or user.containers.override_stat (first found, in
 *   that order) has its directories' and regular files' stats overridden by that xattr
 *   where an object has it;
 * - xattr_permissions=1 (security.*) or 2 (user.*) gives the upper that mode; its root
 *   gets a record of its own stat when it has none;
 * - on an upper with a mode, owner and mode changes and new objects write the record
 *   instead of chown/chmod; the real object gets mode | 0755 (and keeps the mounter as
 *   owner); a copy-up records the lower's (overridden) owner and mode;
 * - the record names are private: never listed, read as absent, not settable.
 * Where 1.10 has bugs that later fuse-overlayfs fixed, stratafs does what the fix does:
 * the record keeps the requested mode (1.10 stored mode | 0755), a chown of one id
 * keeps the other (1.10 wrote -1), and a chmod keeps the recorded owner. Fifos,
 * sockets, devices and symlinks are never overridden (1.10 reads no record for them):
 * they get a real chown and their requested mode.
 * The ids in a record are on-disk ids (the FUSE layer maps them, fuse/idmap.ts).
 */
import { StatIdx } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import type { XattrPermissions } from './config.js';
import { STAT_LEN } from '../native/sys.js';
import { chownReal, sys, type Ctx, type Layer, type OpenFile } from './ctx.js';
import { codeOf, FsError } from '../shared/errors.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, EPERM } from '../shared/constants.js';

export const OVERRIDE_PRIVILEGED = 'security.fuseoverlayfs.override_stat';
export const OVERRIDE_USER = 'user.fuseoverlayfs.override_stat';
export const OVERRIDE_CONTAINERS = 'user.containers.override_stat';
/** in the order fuse-overlayfs looks for them on a layer root */
export const OVERRIDE_NAMES: readonly Bstr[] = [OVERRIDE_PRIVILEGED, OVERRIDE_USER, OVERRIDE_CONTAINERS];


/** Only directories and regular files carry a record (fuse-overlayfs's override_mode). */
export const overridable = (mode: number): boolean => {
  const t = mode & S_IFMT;
  return t === S_IFDIR || t === S_IFREG;
};

/** The record name a layer root announces, or undefined. */
export function layerOverride(rootFd: number): Bstr | undefined {
  for (const n of OVERRIDE_NAMES) if (typeof sys.raw.lgetxattrat(rootFd, '', n) !== 'number') return n;
  return undefined;
}

/** The record name of xattr_permissions=N. */
export function optionOverride(x: XattrPermissions): Bstr | undefined {
  return x === 1 ? OVERRIDE_PRIVILEGED : x === 2 ? OVERRIDE_USER : undefined;
}

/** "UID:GID:MODE[:...]" -> [uid, gid, mode bits] (later fuse-overlayfs versions append a type field). */
export function parseRecord(v: Buffer): [number, number, number] | undefined {
  const m = /^(\d+):(\d+):([0-7]+)(?::|$)/.exec(v.toString('latin1').replace(/\0+$/, ''));
  if (m === null) return undefined;
  return [Number(m[1]), Number(m[2]), parseInt(m[3]!, 8) & 0o7777];
}

export function formatRecord(uid: number, gid: number, mode: number): Buffer {
  return Buffer.from(`${uid}:${gid}:${(mode & 0o7777).toString(8)}`, 'latin1');
}

/**
 * Override a stat of (dirfd, rel) in place from its record, if it is a directory or a
 * regular file and has one. rel '' reads the record of dirfd itself (an open file).
 */
export function applyRecord(name: Bstr, dirfd: number, rel: Bstr, st: Float64Array): void {
  const mode = st[StatIdx.mode]!;
  if (!overridable(mode)) return;
  const v = sys.raw.lgetxattrat(dirfd, rel, name);
  if (typeof v === 'number') return;
  const r = parseRecord(v);
  if (r === undefined) return;
  st[StatIdx.uid] = r[0];
  st[StatIdx.gid] = r[1];
  st[StatIdx.mode] = (mode & S_IFMT) | r[2];
}

/** Write the record of (dirfd, rel); a user.* name on what cannot hold one (EPERM) is skipped, as fuse-overlayfs does. */
export function writeRecord(name: Bstr, dirfd: number, rel: Bstr, uid: number, gid: number, mode: number, path: Bstr): void {
  const r = sys.raw.lsetxattrat(dirfd, rel, name, formatRecord(uid, gid, mode), 0);
  if (r === -EPERM && name.startsWith('user.')) return;
  if (r < 0) throw new FsError(codeOf(-r), path, 'setxattr', name);
}

/** The real mode of an object whose mode is recorded: usable by the mounter, as fuse-overlayfs makes it. */
export const realMode = (mode: number): number => (mode & 0o7777) | 0o755;

/** A stat of (dirfd, rel) on layer L as the overlay shows it: with L's record, if L has one. */
export function overrideStat(L: Layer | undefined, dirfd: number, rel: Bstr, st: Float64Array): void {
  if (L?.override !== undefined) applyRecord(L.override, dirfd, rel, st);
}

/** The fstat of an open file as the overlay shows it: with the record of the layer its fd is on. */
export function overrideOpenStat(ctx: Ctx, f: OpenFile, st: Float64Array): void {
  overrideStat(f.lower ? (f.lowerRef === undefined ? undefined : ctx.layers[f.lowerRef.layer]) : ctx.upper, f.fd, '', st);
}


/**
 * First step of giving a new or copied-up upper object (dirfd, rel) its owner: the real
 * chown, unless a record will hold the owner. Objects that carry no record (fifos,
 * devices, symlinks) on an upper with records get a best-effort chown: fuse-overlayfs
 * never chowns there, and the mounter of such an upper usually may not.
 */
export function placeOwner(ctx: Ctx, dirfd: number, rel: Bstr, type: number, uid: number, gid: number): void {
  if (ctx.upper!.override === undefined) chownReal(ctx, dirfd, rel, uid, gid);
  else if (!overridable(type)) sys.raw.fchownat(dirfd, rel, uid, gid);
}

/** Last step (after the chown, which clears setuid/setgid): the real mode, or the record and a usable real mode. */
export function placeMode(ctx: Ctx, dirfd: number, rel: Bstr, type: number, uid: number, gid: number, mode: number, path: Bstr): void {
  const name = ctx.upper!.override;
  if (name !== undefined && overridable(type)) {
    sys.fchmodat(dirfd, rel, realMode(mode));
    writeRecord(name, dirfd, rel, uid, gid, mode, path);
  } else if ((type & S_IFMT) !== S_IFLNK) {
    sys.fchmodat(dirfd, rel, mode & 0o7777);
  }
}

/** The upper object's stat with its record, when the upper keeps records and it can carry one. */
function recorded(ctx: Ctx, dirfd: number, rel: Bstr): { name: Bstr; st: Float64Array } | undefined {
  const name = ctx.upper!.override;
  if (name === undefined) return undefined;
  const st = sys.lstatat(dirfd, rel, new Float64Array(STAT_LEN));
  if (!overridable(st[StatIdx.mode]!)) return undefined;
  applyRecord(name, dirfd, rel, st);
  return { name, st };
}

/** chmod of an upper object (rel '' for dirfd itself). */
export function changeMode(ctx: Ctx, dirfd: number, rel: Bstr, mode: number, path: Bstr): void {
  const r = recorded(ctx, dirfd, rel);
  if (r === undefined) sys.fchmodat(dirfd, rel, mode & 0o7777);
  else writeRecord(r.name, dirfd, rel, r.st[StatIdx.uid]!, r.st[StatIdx.gid]!, mode, path);
}

/** chown of an upper object (rel '' for dirfd itself); -1 keeps an id. */
export function changeOwner(ctx: Ctx, dirfd: number, rel: Bstr, uid: number, gid: number, path: Bstr): void {
  const r = recorded(ctx, dirfd, rel);
  if (r === undefined) chownReal(ctx, dirfd, rel, uid, gid);
  else writeRecord(r.name, dirfd, rel, uid < 0 ? r.st[StatIdx.uid]! : uid, gid < 0 ? r.st[StatIdx.gid]! : gid, r.st[StatIdx.mode]!, path);
}
