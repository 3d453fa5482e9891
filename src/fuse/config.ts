/**
 * The typed configuration of one mount: what the command line (cli/) and the library entry
 * (index.ts) build, and what the FUSE front-ends and the daemon read. It lives here, below
 * cli/, because fuse/ owns the mount and must not reach up for its own configuration.
 */
import type { IdMapping, OverlayConfig } from '../core/config.js';
/**
 * Kernel cache timeout (entries, attributes, negative entries) in seconds unless options say
 * otherwise: a day, as good as forever (fuse-overlayfs's default is effectively infinite, and
 * kernel overlayfs caches dentries until memory is short). Safe because every change goes
 * through the mount: the kernel keeps its caches coherent for those (one FUSE node per overlay
 * object, fuse/nodes.ts), and the adapter invalidates what the kernel cannot see (directories
 * copied up as a side effect, fuse/lowlevel.ts). Changing layers under a mount is undefined,
 * as in overlayfs; a shorter `timeout=` bounds how long such changes stay unseen.
 */
export const DEFAULT_TIMEOUT_S = 86400;
/** overlayfs's OVL_MAX_STACK */
export const MAX_LAYERS = 500;

/** Generic mount flags, applied to the FUSE mount itself. */
export interface MountFlags {
  readOnly: boolean;
  suid: boolean;
  dev: boolean;
  exec: boolean;
  noatime: boolean;
  sync: boolean;
  dirsync: boolean;
}

export interface MountConfig extends OverlayConfig {
  /** absolute path of the mountpoint (text, as given; symlinks resolved by validation) */
  mountpoint: string;
  /** layer roots as the user gave them, absolute, for messages and describe() */
  lowerPaths: string[];
  upperPath: string | undefined;
  workPath: string | undefined;
  /** -f: serve in this process instead of a detached daemon */
  foreground: boolean;
  /** kernel entry cache timeout, seconds */
  timeout: number;
  /** kernel attribute cache timeout, seconds */
  attrTimeout: number;
  /**
   * which libfuse API serves the mount: the low-level one (src/native/fuse-ll.c, the default)
   * or fuse-native's high-level binding (one kernel inode per name, so attributes are not
   * cached by default there: attr_timeout=0)
   */
  fuseApi: 'lowlevel' | 'highlevel';
  /** kernel negative-lookup cache timeout, seconds */
  negativeTimeout: number;
  /** other users may use the mount: on by default as root (noallow_other turns it off), as fuse-overlayfs does */
  allowOther: boolean;
  /**
   * kernel permission checks from the mode bits shown: always on. The daemon acts with the
   * mounter's rights (as root: anyone's), so without them every user allowed in would too.
   */
  defaultPermissions: boolean;
  flags: MountFlags;
  /** mount over a dead FUSE mount (daemon gone) after aborting and detaching it */
  force: boolean;
  /** the source column of the mount table */
  fsname: string;
  /** daemon log file; undefined: the runtime dir's default (see cli/runtime.ts) */
  logFile: string | undefined;
  /** options stratafs does not know, by name, in order; warned about and ignored */
  unknownOptions: string[];
  /** options recognised but without effect here (generic words libfuse 2.9 cannot apply, useless workdir) */
  ignoredOptions: string[];

  // fuse-overlayfs's options (README "Options"); shown by the FUSE adapters, fuse/idmap.ts
  /** uidmapping=, gidmapping=, squash_to_*: owners as shown; undefined: as on disk */
  idMapping: IdMapping | undefined;
  /** static_nlink: every directory reports st_nlink 1 */
  staticNlink: boolean;
  /** noxattrs=1: every xattr request fails with ENOSYS (the kernel then answers EOPNOTSUPP itself) */
  noXattrs: boolean;
}

/** A bad command line or bad input: one line naming the problem and the path. */
export class ConfigError extends Error {
  readonly path: string | undefined;
  constructor(problem: string, p?: string) {
    super(p === undefined ? problem : `${problem}: ${p}`);
    this.name = 'ConfigError';
    this.path = p;
  }
}
