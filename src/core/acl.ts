/**
 * POSIX ACL inheritance for objects the overlay creates (the kernel's posix_acl_create and
 * posix_acl_create_masq, fs/posix_acl.c): a directory's default ACL, not the caller's umask,
 * decides a new object's permissions. Kernel overlayfs gets this from the upper filesystem for
 * objects made in place and sets the ACLs itself on objects made in its workdir
 * (ovl_create_or_link); stratafs makes files in place but directories (and anything replacing a
 * whiteout) in work/, where no default ACL applies, and always sets the final mode itself: so
 * the ACLs are computed here and set explicitly.
 *
 * The mode arrives unmasked only when the kernel leaves the umask to the server (FUSE
 * DONT_MASK, negotiated with POSIX_ACL: fuse/kernel/features.ts); otherwise the kernel masked
 * it already and applying the umask again changes nothing.
 *
 * The xattr format (include/uapi/linux/posix_acl_xattr.h): a u32 version (2), then entries
 * { u16 tag, u16 perm, u32 id }, little-endian.
 */
import { S_IFDIR, S_IFLNK } from '../shared/constants.js';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const VERSION = 2;
const HEAD = 4;
const ENTRY = 8;
const Tag = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;

/** What a new object gets: its mode and, when they are needed, the ACL xattr values to set. */
export interface Inherited {
  mode: number;
  access?: Buffer;
  default?: Buffer;
}

/** A default ACL's xattr value well formed enough to apply (else the caller's umask decides). */
function entries(v: Buffer): number | undefined {
  if (v.length < HEAD || (v.length - HEAD) % ENTRY !== 0 || v.readUInt32LE(0) !== VERSION) return undefined;
  return (v.length - HEAD) / ENTRY;
}

/**
 * posix_acl_create_masq: the ACL cut down to `mode`, and `mode` cut down to the ACL. Returns
 * the new mode and the access ACL, or no ACL when the result is equivalent to the mode alone.
 */
export function createMasq(dflt: Buffer, mode: number): { mode: number; acl: Buffer | undefined } | undefined {
  const n = entries(dflt);
  if (n === undefined) return undefined;
  const acl = Buffer.from(dflt);
  let m = mode & 0o777;
  let notEquiv = false;
  let groupObj = -1;
  let maskObj = -1;
  for (let i = 0, p = HEAD; i < n; i++, p += ENTRY) {
    const tag = acl.readUInt16LE(p);
    const perm = acl.readUInt16LE(p + 2);
    switch (tag) {
      case Tag.USER_OBJ: {
        const e = perm & ((m >> 6) | ~0o7);
        acl.writeUInt16LE(e & 0xffff, p + 2);
        m &= (e << 6) | ~0o700;
        break;
      }
      case Tag.USER:
      case Tag.GROUP:
        notEquiv = true;
        break;
      case Tag.GROUP_OBJ:
        groupObj = p;
        break;
      case Tag.OTHER: {
        const e = perm & (m | ~0o7);
        acl.writeUInt16LE(e & 0xffff, p + 2);
        m &= e | ~0o7;
        break;
      }
      case Tag.MASK:
        maskObj = p;
        notEquiv = true;
        break;
      default:
        return undefined;
    }
  }
  const g = maskObj >= 0 ? maskObj : groupObj;
  if (g < 0) return undefined;
  const e = acl.readUInt16LE(g + 2) & ((m >> 3) | ~0o7);
  acl.writeUInt16LE(e & 0xffff, g + 2);
  m &= (e << 3) | ~0o70;
  return { mode: (mode & ~0o777) | (m & 0o777), acl: notEquiv ? acl : undefined };
}

/**
 * posix_acl_create: the mode and ACLs of a new object of `type` (S_IF*) with the requested
 * `mode` (permission bits and S_ISUID/S_ISGID/S_ISVTX) in a directory whose default ACL is
 * `parentDefault` (undefined: none), for a caller with `umask`.
 */
export function inherit(type: number, mode: number, umask: number, parentDefault: Buffer | undefined): Inherited {
  if (type === S_IFLNK) return { mode };
  const r = parentDefault === undefined ? undefined : createMasq(parentDefault, mode);
  if (r === undefined) return { mode: mode & ~(umask & 0o777) };
  return { mode: r.mode, access: r.acl, default: type === S_IFDIR ? parentDefault : undefined };
}
