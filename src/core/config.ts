import type { Bstr } from './bstr.js';

/** Everything the overlay core needs to know; built only by cli/options.ts (or the library entry). */
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
}

export const DEFAULT_LOOKUP_CACHE_SIZE = 100_000;
