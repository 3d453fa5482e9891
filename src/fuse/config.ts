/**
 * The typed configuration of one mount: what the command line (cli/) and the library entry
 * (index.ts) build, and what the FUSE front-ends and the daemon read. It lives here, below
 * cli/, because fuse/ owns the mount and must not reach up for its own configuration.
 *
 * Both builders fill in MountSettings (the options as given) and finish with mountConfig(),
 * which holds the defaults and the rules that tie options together. Pure: reads no file;
 * the checks against the file system are cli/validate.ts's.
 */
import * as path from 'node:path';
import { fromText } from '../shared/bstr.js';
import { ALL_OFF, featureNames } from './kernel/features.js';
import { DEFAULT_LOOKUP_CACHE_SIZE, type IdMapping, type IdRange, type OverlayConfig, type XattrPermissions } from '../core/config.js';

/**
 * Kernel cache timeout (entries, attributes, negative entries) in seconds unless options say
 * otherwise: a day, as good as forever (fuse-overlayfs's default is effectively infinite, and
 * kernel overlayfs caches dentries until memory is short). Safe because every change goes
 * through the mount: the kernel keeps its caches coherent for those (one FUSE node per overlay
 * object, fuse/lowlevel/nodes.ts), and the adapter invalidates what the kernel cannot see (directories
 * copied up as a side effect, fuse/lowlevel/adapter.ts). Changing layers under a mount is undefined,
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
   * which API serves the mount: the low-level one (the default) on stratafs's own FUSE server
   * (src/fuse/kernel/, src/native/fuse-dev.c; mount(2) as root, fusermount3 otherwise), or
   * fuse-native's high-level binding on libfuse 2.9 (one kernel inode per name, so attributes
   * are not cached by default there: attr_timeout=0)
   */
  fuseApi: 'lowlevel' | 'highlevel';
  /** fuse_minor=: the highest FUSE protocol minor the server answers INIT with (undefined: the newest it knows) */
  fuseMinor: number | undefined;
  /** fuse_off=: protocol features the server must not use (fuse/kernel/features.ts names, or "all") */
  fuseOff: readonly string[];
  /**
   * FUSE passthrough of lower files too (fuse_server=kernel): on without an upper layer (no
   * copy-up can happen), else only with passthrough_lower, whose divergence from kernel
   * overlayfs is that a handle opened on a lower file keeps reading it after a copy-up
   */
  passthroughLower: boolean;
  /** io_uring: ask the kernel for FUSE over io_uring (used only where it offers it: enable_uring) */
  ioUring: boolean;
  /**
   * request_timeout=: with fuse_server=kernel, seconds the kernel lets one request wait for
   * the daemon before it aborts the connection (FUSE 7.43); 0, the default: never (a copy-up
   * of a large file legitimately holds its OPEN for minutes)
   */
  requestTimeout: number;
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
  /** noacl: the kernel does not enforce POSIX ACLs (posix_acl off); system.posix_acl_* are plain xattrs */
  noAcl: boolean;
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

/**
 * A mount's options as given, before mountConfig() ties them together: what the -o parser
 * (cli/mount-options.ts) and the library entry fill in, starting from defaultMountSettings().
 * Paths as given: mountConfig() resolves relative ones.
 */
export interface MountSettings {
  /** lowerdir=, top first */
  lowerdirs: string[] | undefined;
  upperdir: string | undefined;
  workdir: string | undefined;
  /** ro */
  readOnly: boolean;
  redirectDir: boolean;
  userxattr: boolean;
  timeout: number;
  /** undefined: timeout (0 with fuse_api=highlevel) */
  attrTimeout: number | undefined;
  /** undefined: timeout */
  negativeTimeout: number | undefined;
  fuseApi: MountConfig['fuseApi'];
  /** fuse_server=kernel as given (the only server left; refused beside fuse_api=highlevel) */
  fuseServer: 'kernel' | undefined;
  fuseMinor: number | undefined;
  fuseOff: readonly string[];
  /** passthrough_lower */
  passthroughLower: boolean;
  /** io_uring */
  ioUring: boolean;
  requestTimeout: number;
  lookupCacheSize: number;
  allowOther: boolean;
  fsync: boolean;
  force: boolean;
  debug: boolean;
  /** undefined: the mount helper form's source, else "stratafs" */
  fsname: string | undefined;
  logFile: string | undefined;
  flags: Omit<MountFlags, 'readOnly'>;
  unknownOptions: string[];
  ignoredOptions: string[];
  uidMapping: IdRange[] | undefined;
  gidMapping: IdRange[] | undefined;
  squashToRoot: boolean;
  squashUid: number | undefined;
  squashGid: number | undefined;
  staticNlink: boolean;
  xattrPermissions: XattrPermissions;
  noXattrs: boolean;
  noAcl: boolean;
}

/**
 * The defaults, which the mounter's effective uid (in its user namespace) decides: 0 (root,
 * also uid 0 of rootless podman's namespace) gets allow_other,suid as fuse-overlayfs does.
 */
export function defaultMountSettings(uid: number): MountSettings {
  const asRoot = uid === 0;
  return {
    lowerdirs: undefined, upperdir: undefined, workdir: undefined,
    readOnly: false, redirectDir: true, userxattr: false,
    timeout: DEFAULT_TIMEOUT_S, attrTimeout: undefined, negativeTimeout: undefined, fuseApi: 'lowlevel', fuseServer: undefined, fuseMinor: undefined, fuseOff: [], passthroughLower: false, ioUring: false, requestTimeout: 0,
    lookupCacheSize: DEFAULT_LOOKUP_CACHE_SIZE, allowOther: asRoot, fsync: true, force: false, debug: false,
    fsname: undefined, logFile: undefined,
    // As fuse-overlayfs: noatime (FUSE inodes are S_NOATIME anyway; the daemon's reads touch the
    // layers' atimes), suid as root (setuid programs in a container image), and never devices:
    // with allow_other (a root default) a device node in a layer, e.g. a world-writable
    // `crw-rw-rw- 8,0` in an image, would let any local user reach that device; `dev` opts in.
    flags: { suid: asRoot, dev: false, exec: true, noatime: true, sync: false, dirsync: false },
    unknownOptions: [], ignoredOptions: [],
    uidMapping: undefined, gidMapping: undefined, squashToRoot: false, squashUid: undefined, squashGid: undefined,
    staticNlink: false, xattrPermissions: 0, noXattrs: false, noAcl: false,
  };
}

// The checks of single values, for the -o parser (which names the value as written) and for
// typed input alike.

/** lowerdir= layers: none empty, at most MAX_LAYERS; `shown` is how the user wrote them */
export function checkLayers(layers: readonly string[], shown: string): void {
  if (layers.some((p) => p === '')) throw new ConfigError('empty layer in lowerdir', shown);
  if (layers.length > MAX_LAYERS) throw new ConfigError(`too many lower layers (${layers.length}, at most ${MAX_LAYERS})`, shown.slice(0, 64) + '...');
}

/** a cache timeout: seconds >= 0 */
export function checkSeconds(key: string, n: number, shown = String(n)): number {
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`invalid value for ${key} (seconds >= 0 expected)`, shown);
  return n;
}

/** lookup_cache=: entries >= 1 */
export function checkLookupCache(n: number, shown = String(n)): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError('invalid value for lookup_cache (entries >= 1 expected)', shown);
  return n;
}

/** fuse_minor=: a FUSE 7.x minor stratafs's server can speak (fuse/kernel/wire.ts: 19 to 45) */
export function checkFuseMinor(n: number, shown = String(n)): number {
  if (!Number.isSafeInteger(n) || n < 19 || n > 45) throw new ConfigError('invalid value for fuse_minor (19 to 45 expected)', shown);
  return n;
}

/** request_timeout=: whole seconds, 0 (none) to 65535 (fuse_init_out.request_timeout is a u16) */
export function checkRequestTimeout(n: number, shown = String(n)): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > 65535) throw new ConfigError('invalid value for request_timeout (0 to 65535 seconds expected)', shown);
  return n;
}

/** fuse_off=: names of features.ts (or "all"), each once */
export function checkFuseOff(names: readonly string[], shown = names.join(':')): readonly string[] {
  const known = [...featureNames(), ALL_OFF];
  for (const n of names) {
    if (!known.includes(n)) throw new ConfigError(`unknown FUSE feature in fuse_off (one of ${known.join(', ')} expected)`, n === '' ? shown : n);
  }
  return names;
}

/** Where and how the mount is made: the command line's words beside the options. */
export interface MountPlace {
  mountpoint: string | undefined;
  /** the mount-helper form's first argument */
  source: string | undefined;
  foreground: boolean;
  /** resolves relative paths */
  cwd: string;
}

/** The MountConfig of the settings: defaults filled in, options tied together. Throws ConfigError. */
export function mountConfig(s: MountSettings, w: MountPlace): MountConfig {
  const mountpoint = w.mountpoint;
  if (mountpoint === undefined || mountpoint === '') throw new ConfigError('missing mountpoint (usage: stratafs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR] MOUNTPOINT)');
  const lower = s.lowerdirs;
  if (lower === undefined) throw new ConfigError('missing lowerdir option', 'lowerdir=');
  checkLayers(lower, lower.join(':'));
  for (const [key, v] of [['upperdir', s.upperdir], ['workdir', s.workdir]] as const) {
    if (v === '') throw new ConfigError(`option ${key} needs a value`, `${key}=`);
  }
  checkSeconds('timeout', s.timeout);
  if (s.attrTimeout !== undefined) checkSeconds('attr_timeout', s.attrTimeout);
  if (s.negativeTimeout !== undefined) checkSeconds('negative_timeout', s.negativeTimeout);
  checkLookupCache(s.lookupCacheSize);
  // fuse_api=highlevel is served by fuse-native's libfuse 2.9, which speaks 7.19 and asks for its own features
  if (s.fuseMinor !== undefined) {
    checkFuseMinor(s.fuseMinor);
    if (s.fuseApi === 'highlevel') throw new ConfigError('fuse_minor= is not for fuse_api=highlevel (libfuse 2.9 always speaks 7.19)', `fuse_minor=${s.fuseMinor}`);
  }
  if (s.fuseOff.length > 0) {
    checkFuseOff(s.fuseOff);
    if (s.fuseApi === 'highlevel') throw new ConfigError('fuse_off= is not for fuse_api=highlevel (libfuse 2.9 asks for its own features)', `fuse_off=${s.fuseOff.join(':')}`);
  }
  if (s.ioUring && s.fuseApi === 'highlevel') throw new ConfigError('io_uring is not for fuse_api=highlevel (libfuse 2.9 reads /dev/fuse)', 'io_uring');
  if (s.passthroughLower && s.fuseApi === 'highlevel') throw new ConfigError('passthrough_lower is not for fuse_api=highlevel (libfuse 2.9 has no passthrough)', 'passthrough_lower');
  if (s.requestTimeout !== 0) {
    checkRequestTimeout(s.requestTimeout);
    if (s.fuseApi === 'highlevel') throw new ConfigError('request_timeout= is not for fuse_api=highlevel (libfuse 2.9 speaks FUSE 7.19)', `request_timeout=${s.requestTimeout}`);
  }
  if (s.fuseApi === 'highlevel' && s.fuseServer === 'kernel') throw new ConfigError('fuse_server=kernel serves the low-level API only (not with fuse_api=highlevel)', 'fuse_server=kernel');
  const upper = s.upperdir;
  let work = s.workdir;
  const ignored = [...s.ignoredOptions];
  if (upper !== undefined && work === undefined) throw new ConfigError('upperdir needs a workdir option', upper);
  if (upper === undefined && work !== undefined) {
    ignored.push(`workdir=${work}`);
    work = undefined;
  }
  const abs = (p: string): string => path.resolve(w.cwd, p);
  let lowerPaths = lower.map(abs);
  let upperPath = upper === undefined ? undefined : abs(upper);
  let workPath = work === undefined ? undefined : abs(work);
  if (s.readOnly && upperPath !== undefined) {
    // A read-only mount writes nothing: the upper is served as the top layer and the workdir is not touched.
    lowerPaths = [upperPath, ...lowerPaths];
    if (lowerPaths.length > MAX_LAYERS) throw new ConfigError(`too many layers (${lowerPaths.length}, at most ${MAX_LAYERS})`, upperPath);
    ignored.push(`workdir=${workPath}`);
    upperPath = undefined;
    workPath = undefined;
  }
  const readOnly = s.readOnly || upperPath === undefined;
  const { squashToRoot, squashUid, squashGid } = s;
  return {
    lowerdirs: lowerPaths.map(fromText),
    upperdir: upperPath === undefined ? undefined : fromText(upperPath),
    workdir: workPath === undefined ? undefined : fromText(workPath),
    redirectDir: s.redirectDir,
    userxattr: s.userxattr,
    lookupCacheSize: s.lookupCacheSize,
    fsync: s.fsync,
    debug: s.debug,
    mountpoint: abs(mountpoint),
    lowerPaths,
    upperPath,
    workPath,
    foreground: w.foreground,
    timeout: s.timeout,
    negativeTimeout: s.negativeTimeout ?? s.timeout,
    // The high-level API gives each hard link its own kernel inode: a cached attribute could be stale.
    attrTimeout: s.attrTimeout ?? (s.fuseApi === 'highlevel' ? 0 : s.timeout),
    fuseApi: s.fuseApi,
    fuseMinor: s.fuseMinor,
    fuseOff: s.fuseOff,
    passthroughLower: s.passthroughLower || upperPath === undefined,
    ioUring: s.ioUring,
    requestTimeout: s.requestTimeout,
    allowOther: s.allowOther,
    defaultPermissions: true,
    flags: { ...s.flags, readOnly },
    force: s.force,
    fsname: s.fsname ?? (w.source !== undefined && w.source !== '' ? w.source : 'stratafs'),
    logFile: s.logFile,
    unknownOptions: [...s.unknownOptions],
    ignoredOptions: ignored,
    idMapping: s.uidMapping === undefined && s.gidMapping === undefined && !squashToRoot && squashUid === undefined && squashGid === undefined
      ? undefined
      : { uid: s.uidMapping, gid: s.gidMapping, squashUid: squashUid ?? (squashToRoot ? 0 : undefined), squashGid: squashGid ?? (squashToRoot ? 0 : undefined) },
    staticNlink: s.staticNlink,
    noXattrs: s.noXattrs,
    noAcl: s.noAcl,
    xattrPermissions: s.xattrPermissions,
    // Owners are not shown under squash_to_*: fuse-overlayfs then ignores a failing chown (do_fchown).
    ignoreChownErrors: squashToRoot || squashUid !== undefined || squashGid !== undefined,
  };
}
