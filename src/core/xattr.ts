/**
 * Extended attributes (the kernel's fs/overlayfs/xattrs.c), passed through
 * to the top real object; a change copies the object up first.
 *
 * The overlay's own names are private: trusted.overlay.* (and user.overlay.*
 * with userxattr, user.fuseoverlayfs.* always) never show in listxattr and
 * read as absent. Choice, matching kernel >= 6.7 (checked on this machine's
 * 6.18: `setfattr -n trusted.overlay.foo` through a kernel mount stores
 * trusted.overlay.overlay.foo): a name in the mount's marker namespace set
 * through the mount is stored escaped with one more "overlay." and shown
 * unescaped, so nested overlays (an overlay upper kept on this mount) work and
 * nothing a user does can forge a marker. user.fuseoverlayfs.* is refused
 * with EPERM, as fuse-overlayfs does.
 */
import type { Bstr } from '../shared/bstr.js';
import { copyUp } from './copy-up.js';
import { fail, relOf, requireUpper, sys, type Ctx } from './ctx.js';
import { codeOf } from '../shared/errors.js';
import { isUpperEntry, resolve } from './namei.js';
import type { Caller } from './types.js';
import { FUSE_OVERLAYFS_PREFIX, OPAQUE_XATTRS, TRUSTED_PREFIX, USER_PREFIX } from './whiteout.js';

const ESC = 'overlay.';
/**
 * Names lookup reads as markers whatever the mount's namespace (whiteout.ts
 * OPAQUE_XATTRS): hidden too, so the merged view never shows a marker, and
 * not settable, so no user can make a directory opaque by accident.
 */
const READ_AS_MARKERS: readonly Bstr[] = OPAQUE_XATTRS;

function markerPrefix(ctx: Ctx): Bstr { return ctx.userxattr ? USER_PREFIX : TRUSTED_PREFIX; }

/** The real name a name seen through the mount is stored under, or undefined if private. */
export function escapeXattr(ctx: Ctx, name: Bstr): Bstr | undefined {
  const p = markerPrefix(ctx);
  if (name.startsWith(p)) return p + ESC + name.slice(p.length);
  if (name.startsWith(FUSE_OVERLAYFS_PREFIX) || READ_AS_MARKERS.includes(name)) return undefined;
  // stat override records (override-stat.ts) of the mount's layers are the overlay's own
  if (ctx.overrides.includes(name)) return undefined;
  // The other marker namespace (e.g. trusted.overlay.* with userxattr) is read as markers too: keep it private.
  if (name.startsWith(TRUSTED_PREFIX) || (ctx.userxattr && name.startsWith(USER_PREFIX))) return undefined;
  return name;
}

/** The name a real xattr shows as through the mount, or undefined when hidden. */
export function unescapeXattr(ctx: Ctx, real: Bstr): Bstr | undefined {
  const p = markerPrefix(ctx);
  if (real.startsWith(p)) return real.startsWith(p + ESC) ? p + real.slice(p.length + ESC.length) : undefined;
  if (real.startsWith(FUSE_OVERLAYFS_PREFIX) || READ_AS_MARKERS.includes(real)) return undefined;
  if (ctx.overrides.includes(real)) return undefined;
  if (real.startsWith(TRUSTED_PREFIX)) return undefined;
  return real;
}

export function getxattr(ctx: Ctx, path: Bstr, name: Bstr): Buffer {
  const e = resolve(ctx, path);
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', path, 'getxattr', name);
  const ref = e.stack[0]!;
  const v = sys.raw.lgetxattrat(ctx.layers[ref.layer]!.fd, ref.rel, real);
  if (typeof v === 'number') fail(codeOf(-v), path, 'getxattr', name);
  return v;
}

export function listxattr(ctx: Ctx, path: Bstr): Bstr[] {
  const e = resolve(ctx, path);
  const ref = e.stack[0]!;
  const r = sys.raw.llistxattrat(ctx.layers[ref.layer]!.fd, ref.rel);
  if (typeof r === 'number') fail(codeOf(-r), path, 'listxattr');
  const out: Bstr[] = [];
  for (const n of r) {
    const shown = unescapeXattr(ctx, n);
    if (shown !== undefined) out.push(shown);
  }
  return out;
}

export async function setxattr(ctx: Ctx, path: Bstr, name: Bstr, value: Buffer, flags: number, _caller: Caller): Promise<void> {
  requireUpper(ctx, path);
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('EPERM', path, 'setxattr', name);
  const e = resolve(ctx, path);
  if (!isUpperEntry(ctx, e)) await copyUp(ctx, path);
  sys.lsetxattrat(ctx.upper!.fd, relOf(path), real, value, flags);
}

export async function removexattr(ctx: Ctx, path: Bstr, name: Bstr, _caller: Caller): Promise<void> {
  requireUpper(ctx, path);
  const real = escapeXattr(ctx, name);
  if (real === undefined) fail('ENODATA', path, 'removexattr', name);
  const e = resolve(ctx, path);
  if (!isUpperEntry(ctx, e)) {
    // Removing a name the lower object lacks copies nothing up (kernel ovl_xattr_set asks the lower first).
    const ref = e.stack[0]!;
    const v = sys.raw.lgetxattrat(ctx.layers[ref.layer]!.fd, ref.rel, real);
    if (typeof v === 'number') fail(codeOf(-v), path, 'removexattr', name);
    await copyUp(ctx, path);
  }
  sys.lremovexattrat(ctx.upper!.fd, relOf(path), real);
}
