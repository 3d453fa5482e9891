/**
 * Owners as the mount shows them: fuse-overlayfs's uidmapping=, gidmapping=,
 * squash_to_root, squash_to_uid=, squash_to_gid= and static_nlink, implemented once
 * for both FUSE adapters (lowlevel/adapter.ts, highlevel/adapter.ts).
 *
 * Why here and not in the core: the core decides nothing by comparing a caller's
 * ids with an object's owner (permission checks are the kernel's, default_permissions,
 * made on the attributes the adapters reply with). It uses ids only to store them:
 * owners of new objects, the group of a setgid directory (read from the upper, so
 * on-disk), the uid:gid records of xattr_permissions (on-disk, as fuse-overlayfs
 * writes them). So the core works in the on-disk domain throughout, and the
 * translation happens once at the boundary: every attribute reply on its way out
 * (lookup, getattr, setattr, create, mkdir, mknod, symlink, link), the caller's ids
 * and chown's ids on their way in.
 *
 * The rules, checked against fuse-overlayfs 1.10 (main.c find_mapping):
 * - out (on-disk -> shown): squash_to_uid/gid, else 0 with squash_to_root, else the
 *   mapping; an id outside every range shows as /proc/sys/kernel/overflowuid (gid);
 *   without a mapping ids show as on disk;
 * - in (shown -> on-disk): the mapping backwards (squashing is not undone); a shown
 *   id outside every range is stored as the overflow id (fuse-overlayfs does so:
 *   a root caller of `uidmapping=0:1000:1` creates files owned by 65534);
 * - ranges are searched last first (fuse-overlayfs prepends each one it reads),
 *   so where ranges overlap the later one wins;
 * - ACL entries (system.posix_acl_*) and the root id of security.capability pass
 *   through unmapped, as in fuse-overlayfs.
 */
import { readFileSync } from 'node:fs';
import type { IdMapping, IdRange } from '../core/config.js';
import type { AttrArray, Caller } from '../core/types.js';
import { StatIdx } from '../native/sys-api.js';
import { S_IFDIR, S_IFMT } from '../shared/constants.js';

/** chown's "leave unchanged" (-1, or its unsigned form from the bindings) */
const NO_ID = 0xffffffff;

export interface OverflowIds { uid: number; gid: number }

/** The kernel's overflow ids (65534 unless changed), read once per mount. */
export function readOverflowIds(): OverflowIds {
  const read = (f: string): number => {
    const n = Number(readFileSync(f, 'latin1').trim());
    return Number.isInteger(n) && n >= 0 ? n : 65534;
  };
  return { uid: read('/proc/sys/kernel/overflowuid'), gid: read('/proc/sys/kernel/overflowgid') };
}

/** The translation for one mount; absent (undefined) when the mount shows ids as on disk. */
export interface IdView {
  /** on-disk -> shown, in place on an attribute array about to be replied (also static_nlink) */
  attrOut(a: AttrArray): void;
  /** shown -> on-disk (a chown argument); NO_ID (unchanged) stays NO_ID */
  uidIn(id: number): number;
  gidIn(id: number): number;
  /** the caller with on-disk ids (owner of what it creates) */
  callerIn(c: Caller): Caller;
}

type Map1 = (id: number) => number;

/** One direction of one kind of id: identity when no ranges, else the ranges, else overflow. */
function mapper(ranges: readonly IdRange[] | undefined, out: boolean, overflow: number): Map1 | undefined {
  if (ranges === undefined) return undefined;
  const from = ranges.map((r) => (out ? r.disk : r.shown)).reverse();
  const to = ranges.map((r) => (out ? r.shown : r.disk)).reverse();
  const count = ranges.map((r) => r.count).reverse();
  const n = from.length;
  return (id) => {
    for (let i = 0; i < n; i++) {
      const d = id - from[i]!;
      if (d >= 0 && d < count[i]!) return to[i]! + d;
    }
    return overflow;
  };
}

/**
 * The view for a mount's options, or undefined when there is nothing to translate:
 * then the adapters skip every translation (one test of a constant per reply).
 */
export function idView(m: IdMapping | undefined, staticNlink: boolean, overflow: OverflowIds = { uid: 65534, gid: 65534 }): IdView | undefined {
  if (m === undefined && !staticNlink) return undefined;
  const squashUid = m?.squashUid;
  const squashGid = m?.squashGid;
  const uidOut: Map1 | undefined = squashUid !== undefined ? () => squashUid : mapper(m?.uid, true, overflow.uid);
  const gidOut: Map1 | undefined = squashGid !== undefined ? () => squashGid : mapper(m?.gid, true, overflow.gid);
  const uidIn0 = mapper(m?.uid, false, overflow.uid);
  const gidIn0 = mapper(m?.gid, false, overflow.gid);
  const uidIn = uidIn0 === undefined ? (id: number) => id : (id: number) => (id === NO_ID || id === -1 ? id : uidIn0(id));
  const gidIn = gidIn0 === undefined ? (id: number) => id : (id: number) => (id === NO_ID || id === -1 ? id : gidIn0(id));
  return {
    attrOut(a) {
      if (uidOut !== undefined) a[StatIdx.uid] = uidOut(a[StatIdx.uid]!);
      if (gidOut !== undefined) a[StatIdx.gid] = gidOut(a[StatIdx.gid]!);
      if (staticNlink && (a[StatIdx.mode]! & S_IFMT) === S_IFDIR) a[StatIdx.nlink] = 1;
    },
    uidIn,
    gidIn,
    callerIn: uidIn0 === undefined && gidIn0 === undefined
      ? (c) => c
      : (c) => ({ uid: uidIn(c.uid), gid: gidIn(c.gid), pid: c.pid, umask: c.umask }),
  };
}
