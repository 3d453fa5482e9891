import type { Bstr } from '../shared/bstr.js';

/** Everything the overlay core needs to know; built only by fuse/config.ts's mountConfig() (for the CLI and the library entry). */
export interface OverlayConfig {
  /** absolute layer roots, top first (leftmost in lowerdir=) */
  lowerdirs: Bstr[];
  /** absent for a read-only mount */
  upperdir: Bstr | undefined;
  workdir: Bstr | undefined;
  /** rename of directories with lower content: on = redirect xattr (kernel redirect_dir=on), off = EXDEV */
  redirectDir: boolean;
  /** use user.overlay.* instead of trusted.overlay.* for markers this mount writes */
  userxattr: boolean;
  /** entries in the lookup cache (positive and negative) */
  lookupCacheSize: number;
  /** false with volatile / fsync=0: skip fsync */
  fsync: boolean;
  /** log each FUSE op with result and duration */
  debug: boolean;
  /**
   * xattr_permissions=1|2 (fuse-overlayfs): owners and modes of upper objects are kept in
   * security.fuseoverlayfs.override_stat (1) or user.fuseoverlayfs.override_stat (2) instead
   * of a real chown/chmod (core/override-stat.ts). 0 or absent: real owners and modes.
   */
  xattrPermissions?: XattrPermissions;
  /**
   * A failed chown of a new, copied-up or chowned object is not an error: set with
   * squash_to_* (fuse-overlayfs's do_fchown), where the owners are not shown anyway.
   */
  ignoreChownErrors?: boolean;
}

export type XattrPermissions = 0 | 1 | 2;

export const DEFAULT_LOOKUP_CACHE_SIZE = 100_000;

/**
 * The byte bound of each of the daemon's caches, all set by lookup_cache=N.
 * Their keys and most values are paths, as long as the tree is deep, so they
 * are bounded by the heap bytes they hold (estimated as namei.ts says), never
 * by a count alone: a deep tree fills them with fewer entries, not more memory.
 * About 1.25 KiB per N in all: 125 MiB at the default, whatever the depth.
 */
export interface CacheBounds {
  /** lookup results (also at most N entries) */
  lookup: number;
  /** merged directory listings */
  listings: number;
  /** names and markers of lower directories */
  lowerDirs: number;
  /** upper directories known to hold no .wh. file */
  upperDirs: number;
  /** paths of the FUSE node table's nodes (fuse/lowlevel/nodes.ts) */
  nodePaths: number;
}

const CACHE_FLOOR = 65_536;

export function cacheBounds(n: number): CacheBounds {
  const b = (perEntry: number): number => Math.max(CACHE_FLOOR, Math.ceil(n * perEntry));
  return { lookup: n * 640, listings: b(128), lowerDirs: b(320), upperDirs: b(25.6), nodePaths: b(160) };
}

/**
 * One range of fuse-overlayfs's uidmapping=/gidmapping= option (`DISK:SHOWN:COUNT`, the order
 * containers/storage writes as ContainerID:HostID:Size): the on-disk ids
 * [disk, disk + count) are shown as [shown, shown + count), and a caller or chown id in the
 * shown range is stored as the on-disk one.
 */
export interface IdRange { disk: number; shown: number; count: number }

/**
 * How a mount shows owners (uidmapping=, gidmapping=, squash_to_root, squash_to_uid=,
 * squash_to_gid=); applied at the FUSE boundary by fuse/idmap.ts. The core works in the
 * on-disk domain only.
 */
export interface IdMapping {
  /** ranges in option order (a later range wins where ranges overlap); undefined: ids as on disk */
  uid: readonly IdRange[] | undefined;
  gid: readonly IdRange[] | undefined;
  /** every object shows this owner (squash_to_uid=, else 0 with squash_to_root); undefined: mapped */
  squashUid: number | undefined;
  squashGid: number | undefined;
}
