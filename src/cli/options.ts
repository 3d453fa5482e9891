/**
 * The command line, parsed and validated into one typed configuration.
 * Nothing else in stratafs reads argv: main.ts asks this module what to do,
 * and the library entry (index.ts) builds the same MountConfig from an object.
 *
 * Two layers of parsing:
 * - commander gives the command structure (`stratafs [-f] [-d] -o OPTS MNT`, the
 *   mount-helper form `stratafs SOURCE MNT -o OPTS`, `umount`, `stats`);
 * - the `-o` string is parsed here, as the kernel parses overlayfs options:
 *   options split at unescaped commas, a backslash escapes the next character
 *   (`\,` `\:` `\\`), and lowerdir splits at unescaped colons.
 *
 * Validation (validateMountConfig) only reads the file system: every bad input is
 * reported before anything is created or changed on disk.
 */
import type * as Commander from 'commander';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fromText } from '../shared/bstr.js';
import { DEFAULT_LOOKUP_CACHE_SIZE, type IdRange, type XattrPermissions } from '../core/config.js';
import { ConfigError, DEFAULT_TIMEOUT_S, MAX_LAYERS, type MountConfig } from '../fuse/config.js';
import { findMount, isFuse, readMountsSync, resolveMountpointArgSync } from './mountinfo.js';
import { daemonAlive, readDaemonInfo, runtimeFiles } from './runtime.js';

export type CliCommand =
  | { kind: 'mount'; config: MountConfig; daemonChild: boolean }
  | { kind: 'umount'; mountpoint: string; force: boolean }
  | { kind: 'stats'; mountpoint: string; json: boolean; gc: boolean }
  | { kind: 'inspect'; mountpoint: string; json: boolean }
  | { kind: 'exit'; code: number; output: string };

// ---------------------------------------------------------------------------
// -o string

/**
 * Split at unescaped commas outside double quotes; escapes and quotes are kept for the value
 * parsers (as the kernel's ovl_next_opt keeps escapes, and libmount keeps quotes). A comma
 * inside quotes does not split: containers/storage passes SELinux labels as
 * `context="system_u:object_r:container_file_t:s0:c1,c2"`. A quote opens only where a value
 * starts (right after `=`), so a `"` inside a path stays a plain character. Empty words
 * (`,,volatile` in podman's argv) are dropped. An unterminated quote is an error.
 */
export function splitOptions(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1]!;
      i++;
    } else if (c === '"' && (quoted || cur.endsWith('='))) {
      quoted = !quoted;
      cur += c;
    } else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (quoted) throw new ConfigError('unterminated double quote in the options', s);
  out.push(cur);
  return out.filter((o) => o !== '');
}

/** `\x` -> `x` */
export function unescape(s: string): string {
  return s.replace(/\\(.)/gs, '$1');
}

/** lowerdir value: split at unescaped colons, then unescape each part. */
export function splitLowerdir(s: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += s[i + 1]!;
      i++;
    } else if (c === ':') {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

/** Options that come from fstab/mount(8) and mean nothing to a file system. */
const SILENT = new Set(['defaults', 'auto', 'noauto', 'nofail', '_netdev', 'user', 'users', 'nouser', 'owner', 'group']);
/** Generic words the kernel knows but libfuse 2.9's mount cannot apply. */
const UNAPPLIED = new Set(['relatime', 'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime',
  'diratime', 'nodiratime', 'iversion', 'noiversion', 'mand', 'nomand', 'silent', 'loud']);

function parseSeconds(key: string, v: string | undefined): number {
  const n = v === undefined || v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`invalid value for ${key} (seconds >= 0 expected)`, v ?? '');
  return n;
}

function parseOnOff(key: string, v: string | undefined): boolean {
  if (v === 'on' || v === 'yes' || v === '1' || v === 'true') return true;
  if (v === 'off' || v === 'no' || v === '0' || v === 'false') return false;
  throw new ConfigError(`invalid value for ${key} (on or off expected)`, v ?? '');
}

/** 2^32 - 1 is no id (chown's -1): valid ids are below it */
const NO_ID = 0xffffffff;

/**
 * uidmapping=/gidmapping= value: DISK:SHOWN:COUNT triples joined by ':' (fuse-overlayfs's
 * read_mappings; containers/storage writes ContainerID:HostID:Size). Empty fields are skipped
 * as read_mappings' strtok skips them: podman 4 starts every mapping with a colon
 * (`uidmapping=:0:1:4711:4711:0:1:...`). Empty: no mapping, as fuse-overlayfs reads it.
 */
export function parseIdMapping(key: string, v: string): IdRange[] | undefined {
  const bad = (why: string): ConfigError => new ConfigError(`invalid ${key}: ${why} (DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...] expected)`, v);
  const f = v.split(':').filter((x) => x !== '');
  if (f.length === 0) return undefined;
  if (f.length % 3 !== 0) throw bad(`${f.length} numbers, not a multiple of 3`);
  const n = f.map((x) => {
    if (!/^\d{1,10}$/.test(x) || Number(x) > NO_ID) throw bad(`"${x}" is not an id`);
    return Number(x);
  });
  const out: IdRange[] = [];
  for (let i = 0; i < n.length; i += 3) {
    const r = { disk: n[i]!, shown: n[i + 1]!, count: n[i + 2]! };
    if (r.disk + r.count > NO_ID + 1 || r.shown + r.count > NO_ID + 1) throw bad(`range ${f.slice(i, i + 3).join(':')} goes past 2^32`);
    out.push(r);
  }
  return out;
}

function parseId(key: string, v: string | undefined): number {
  const n = v === undefined || !/^\d{1,10}$/.test(v) ? NaN : Number(v);
  if (!(n < NO_ID)) throw new ConfigError(`invalid value for ${key} (an id below 4294967295 expected)`, v ?? '');
  return n;
}

export interface MountArgs {
  /** every -o string, in order */
  options: string[];
  mountpoint: string | undefined;
  /** the mount-helper form's first argument */
  source: string | undefined;
  foreground: boolean;
  debug: boolean;
  /** resolves relative paths */
  cwd: string;
  /**
   * the effective uid in the mounter's user namespace, deciding defaults: 0 (root, also uid 0
   * of rootless podman's namespace) gets allow_other,suid as fuse-overlayfs does; everyone gets
   * default_permissions, nodev and noatime
   */
  uid: number;
}

/**
 * Parse the mount options into a MountConfig. Pure: reads no file; paths are only
 * made absolute. Throws ConfigError.
 */
export function parseMountArgs(a: MountArgs): MountConfig {
  const asRoot = a.uid === 0;
  let lower: string[] | undefined;
  let upper: string | undefined;
  let work: string | undefined;
  let ro = false;
  let redirectDir = true;
  let userxattr = false;
  let timeout = DEFAULT_TIMEOUT_S;
  let negativeTimeout: number | undefined;
  let attrTimeout: number | undefined;
  let fuseApi: 'lowlevel' | 'highlevel' = 'lowlevel';
  let lookupCacheSize = DEFAULT_LOOKUP_CACHE_SIZE;
  let allowOther = asRoot;
  const defaultPermissions = true;
  let fsync = true;
  let force = false;
  let debug = a.debug;
  let fsname: string | undefined;
  let logFile: string | undefined;
  // As fuse-overlayfs: noatime (FUSE inodes are S_NOATIME anyway; the daemon's reads touch the
  // layers' atimes), suid as root (setuid programs in a container image), and never devices:
  // with allow_other (a root default) a device node in a layer, e.g. a world-writable
  // `crw-rw-rw- 8,0` in an image, would let any local user reach that device; `dev` opts in.
  const flags = { suid: asRoot, dev: false, exec: true, noatime: true, sync: false, dirsync: false };
  const unknown: string[] = [];
  const ignored: string[] = [];
  // fuse-overlayfs's options
  let uidMap: IdRange[] | undefined;
  let gidMap: IdRange[] | undefined;
  let squashRoot = false;
  let squashUid: number | undefined;
  let squashGid: number | undefined;
  let staticNlink = false;
  let xattrPermissions: XattrPermissions = 0;
  let noXattrs = false;

  for (const optString of a.options) {
    for (const opt of splitOptions(optString)) {
      const eq = opt.indexOf('=');
      const key = eq < 0 ? opt : opt.slice(0, eq);
      const raw = eq < 0 ? undefined : opt.slice(eq + 1);
      const val = raw === undefined ? undefined : unescape(raw);
      const needValue = (): string => {
        if (val === undefined || val === '') throw new ConfigError(`option ${key} needs a value`, opt);
        return val;
      };
      switch (key) {
        case 'lowerdir': {
          if (raw === undefined || raw === '') throw new ConfigError('option lowerdir needs a value', opt);
          const parts = splitLowerdir(raw);
          if (parts.some((p) => p === '')) {
            throw new ConfigError(/::/.test(raw) ? 'data-only lower layers (::) are not supported' : 'empty layer in lowerdir', raw);
          }
          if (parts.length > MAX_LAYERS) throw new ConfigError(`too many lower layers (${parts.length}, at most ${MAX_LAYERS})`, raw.slice(0, 64) + '...');
          lower = parts;
          break;
        }
        case 'upperdir': upper = needValue(); break;
        case 'workdir': work = needValue(); break;
        case 'ro': ro = true; break;
        case 'rw': ro = false; break;
        case 'redirect_dir':
          // 'follow' follows redirects written by others but never writes one: rename then gives EXDEV, which is 'off' here.
          if (val === 'follow' || val === 'nofollow') redirectDir = false;
          else redirectDir = parseOnOff(key, val);
          break;
        case 'userxattr': userxattr = true; break;
        case 'timeout': timeout = parseSeconds(key, val); break;
        case 'negative_timeout': negativeTimeout = parseSeconds(key, val); break;
        case 'attr_timeout': attrTimeout = parseSeconds(key, val); break;
        case 'fuse_api':
          if (val !== 'lowlevel' && val !== 'highlevel') throw new ConfigError('invalid value for fuse_api (lowlevel or highlevel expected)', val ?? '');
          fuseApi = val;
          break;
        case 'lookup_cache': {
          const n = val === undefined || !/^\d+$/.test(val) ? NaN : Number(val);
          if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError('invalid value for lookup_cache (entries >= 1 expected)', val ?? '');
          lookupCacheSize = n;
          break;
        }
        case 'allow_other': allowOther = true; break;
        case 'noallow_other': allowOther = false; break;
        case 'default_permissions': break; // always on
        case 'volatile': fsync = false; break;
        case 'fsync': fsync = parseOnOff(key, val); break;
        case 'force': force = true; break;
        case 'debug': debug = true; break;
        case 'fsname': fsname = needValue(); break;
        case 'log': logFile = path.resolve(a.cwd, needValue()); break;
        case 'suid': flags.suid = true; break;
        case 'nosuid': flags.suid = false; break;
        case 'dev': flags.dev = true; break;
        case 'nodev': flags.dev = false; break;
        case 'exec': flags.exec = true; break;
        case 'noexec': flags.exec = false; break;
        case 'atime': flags.noatime = false; break;
        case 'noatime': flags.noatime = true; break;
        case 'sync': flags.sync = true; break;
        case 'async': flags.sync = false; break;
        case 'dirsync': flags.dirsync = true; break;
        // kernel overlayfs features stratafs does not implement: accepted when off, refused when on
        case 'index': case 'metacopy': case 'nfs_export':
          if (parseOnOff(key, val)) throw new ConfigError(`overlayfs feature ${key} is not supported by stratafs`, opt);
          break;
        // fuse-overlayfs's own options (its man page and main.c; README "Options")
        case 'uidmapping': uidMap = parseIdMapping(key, val ?? ''); break;
        case 'gidmapping': gidMap = parseIdMapping(key, val ?? ''); break;
        case 'squash_to_root': squashRoot = true; break;
        case 'squash_to_uid': squashUid = parseId(key, val); break;
        case 'squash_to_gid': squashGid = parseId(key, val); break;
        case 'static_nlink': staticNlink = true; break;
        // What stratafs always does: libfuse 2.9 speaks FUSE 7.19, which predates FUSE_POSIX_ACL,
        // so the kernel never enforces ACLs on the mount; system.posix_acl_* are plain xattrs.
        case 'noacl': break;
        case 'xattr_permissions':
          if (val !== '0' && val !== '1' && val !== '2') throw new ConfigError('invalid value for xattr_permissions (0, 1 or 2 expected)', val ?? '');
          xattrPermissions = Number(val) as XattrPermissions;
          break;
        case 'noxattrs':
          if (val === undefined || !/^\d+$/.test(val)) throw new ConfigError('invalid value for noxattrs (0 or 1 expected)', val ?? '');
          noXattrs = Number(val) !== 0;
          break;
        case 'plugins': throw new ConfigError('fuse-overlayfs data-source plugins are not supported by stratafs', opt);
        // SELinux labels (containers/storage passes context="..."): a libfuse 2.9 mount cannot
        // carry them and fuse-overlayfs ignores them too. Threading and caching knobs of
        // fuse-overlayfs/libfuse 3 that mean nothing to a single-threaded libfuse 2.9 server.
        case 'context': case 'fscontext': case 'defcontext': case 'rootcontext':
        case 'threaded': case 'fast_ino': case 'writeback': case 'clone_fd': case 'max_idle_threads': case 'max_threads':
          ignored.push(opt);
          break;
        default:
          if (SILENT.has(key) || key.startsWith('x-') || key === 'comment') break;
          if (UNAPPLIED.has(key)) { ignored.push(opt); break; }
          unknown.push(key);
      }
    }
  }

  const mountpoint = a.mountpoint;
  if (mountpoint === undefined || mountpoint === '') throw new ConfigError('missing mountpoint (usage: stratafs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR] MOUNTPOINT)');
  if (lower === undefined) throw new ConfigError('missing lowerdir option', 'lowerdir=');
  if (upper !== undefined && work === undefined) throw new ConfigError('upperdir needs a workdir option', upper);
  if (upper === undefined && work !== undefined) {
    ignored.push(`workdir=${work}`);
    work = undefined;
  }
  const abs = (p: string): string => path.resolve(a.cwd, p);
  let lowerPaths = lower.map(abs);
  let upperPath = upper === undefined ? undefined : abs(upper);
  let workPath = work === undefined ? undefined : abs(work);
  if (ro && upperPath !== undefined) {
    // A read-only mount writes nothing: the upper is served as the top layer and the workdir is not touched.
    lowerPaths = [upperPath, ...lowerPaths];
    if (lowerPaths.length > MAX_LAYERS) throw new ConfigError(`too many layers (${lowerPaths.length}, at most ${MAX_LAYERS})`, upperPath);
    ignored.push(`workdir=${workPath}`);
    upperPath = undefined;
    workPath = undefined;
  }
  const readOnly = ro || upperPath === undefined;
  const mnt = abs(mountpoint);
  return {
    lowerdirs: lowerPaths.map(fromText),
    upperdir: upperPath === undefined ? undefined : fromText(upperPath),
    workdir: workPath === undefined ? undefined : fromText(workPath),
    redirectDir,
    userxattr,
    lookupCacheSize,
    fsync,
    debug,
    mountpoint: mnt,
    lowerPaths,
    upperPath,
    workPath,
    foreground: a.foreground,
    timeout,
    negativeTimeout: negativeTimeout ?? timeout,
    // The high-level API gives each hard link its own kernel inode: a cached attribute could be stale.
    attrTimeout: attrTimeout ?? (fuseApi === 'highlevel' ? 0 : timeout),
    fuseApi,
    allowOther,
    defaultPermissions,
    flags: { ...flags, readOnly },
    force,
    fsname: fsname ?? (a.source !== undefined && a.source !== '' ? a.source : 'stratafs'),
    logFile,
    unknownOptions: unknown,
    ignoredOptions: ignored,
    idMapping: uidMap === undefined && gidMap === undefined && !squashRoot && squashUid === undefined && squashGid === undefined
      ? undefined
      : { uid: uidMap, gid: gidMap, squashUid: squashUid ?? (squashRoot ? 0 : undefined), squashGid: squashGid ?? (squashRoot ? 0 : undefined) },
    staticNlink,
    noXattrs,
    xattrPermissions,
    // Owners are not shown under squash_to_*: fuse-overlayfs then ignores a failing chown (do_fchown).
    ignoreChownErrors: squashRoot || squashUid !== undefined || squashGid !== undefined,
  };
}

// ---------------------------------------------------------------------------
// validation against the file system (read-only)

const DEAD_MOUNT_MESSAGE = 'mountpoint is a dead FUSE mount (its daemon is gone); clean it with `stratafs umount --force` or mount with -o force';

/** errno codes a stat of a dead FUSE mount returns (daemon gone / connection aborted) */
export const DEAD_MOUNT_CODES = new Set(['ENOTCONN', 'ECONNABORTED']);

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** a is b or below b (both absolute, normalised) */
export function isWithin(a: string, b: string): boolean {
  if (a === b) return true;
  const rel = path.relative(b, a);
  return rel !== '' && !rel.startsWith('..' + path.sep) && rel !== '..' && !path.isAbsolute(rel);
}

function checkDir(role: string, p: string): { real: string; st: fs.Stats } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT') throw new ConfigError(`${role} does not exist`, p);
    if (code === 'ENOTDIR') throw new ConfigError(`${role} is not a directory (a path component is not a directory)`, p);
    if (code === 'EACCES') throw new ConfigError(`${role} is not accessible (permission denied)`, p);
    if (code !== undefined && DEAD_MOUNT_CODES.has(code)) throw new ConfigError(`${role} is on a dead FUSE mount (${code})`, p);
    throw new ConfigError(`${role} cannot be read (${code ?? String(e)})`, p);
  }
  if (!st.isDirectory()) throw new ConfigError(`${role} is not a directory`, p);
  return { real: fs.realpathSync(p), st };
}

export interface Validated {
  /** the mountpoint is a dead FUSE mount that `force` must clean before mounting */
  deadMount: boolean;
}

/**
 * Check the configuration against the file system, reading only: layers exist and
 * are directories; upper and workdir do not overlap each other, a lower or the
 * mountpoint; workdir shares the upper's filesystem; the upper is writable; the
 * mountpoint exists. Resolves symlinks in place (config.mountpoint becomes its
 * real path). The lock against a second mount on the same upper/workdir is taken
 * by the core (openOverlay -> EBUSY), since only holding it proves anything.
 */
export function validateMountConfig(c: MountConfig): Validated {
  const lowers = c.lowerPaths.map((p) => checkDir('lowerdir', p));

  let deadMount = false;
  let mntReal: string;
  // A stratafs mount whose daemon is gone can still answer a stat from the
  // kernel's attribute cache: ask the mount table and the daemon record first,
  // which never touches the mount.
  const mntPath = resolveMountpointArgSync(c.mountpoint, fs.realpathSync);
  const existing = findMount(readMountsSync(), mntPath);
  const info = existing !== undefined && isFuse(existing) ? readDaemonInfo(runtimeFiles(mntPath).info) : undefined;
  if (info !== undefined && !daemonAlive(info)) {
    if (!c.force) throw new ConfigError(DEAD_MOUNT_MESSAGE, c.mountpoint);
    deadMount = true;
    mntReal = mntPath;
  } else {
    try {
      const st = fs.statSync(c.mountpoint);
      if (!st.isDirectory()) throw new ConfigError('mountpoint is not a directory', c.mountpoint);
      mntReal = fs.realpathSync(c.mountpoint);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      const code = errCode(e);
      if (code === 'ENOENT') throw new ConfigError('mountpoint does not exist', c.mountpoint);
      if (code === 'ENOTDIR') throw new ConfigError('mountpoint is not a directory (a path component is not a directory)', c.mountpoint);
      if (code !== undefined && DEAD_MOUNT_CODES.has(code)) {
        if (!c.force) throw new ConfigError(DEAD_MOUNT_MESSAGE, c.mountpoint);
        deadMount = true;
        mntReal = mntPath;
      } else {
        throw new ConfigError(`mountpoint cannot be read (${code ?? String(e)})`, c.mountpoint);
      }
    }
  }

  // The layers are opened by descriptor before mounting, so the mountpoint may be a
  // layer root itself (mounting over the top lower works). Strictly below a layer,
  // resolving that layer would walk into the mount and the daemon would wait on itself.
  for (const [i, l] of lowers.entries()) {
    if (mntReal !== l.real && isWithin(mntReal, l.real)) {
      throw new ConfigError(`mountpoint is inside lowerdir ${c.lowerPaths[i]} (the mount would contain itself)`, c.mountpoint);
    }
  }

  if (c.upperPath !== undefined && c.workPath !== undefined) {
    const up = checkDir('upperdir', c.upperPath);
    const wk = checkDir('workdir', c.workPath);
    for (const [i, l] of lowers.entries()) {
      const lp = c.lowerPaths[i]!;
      if (up.real === l.real) throw new ConfigError(`upperdir is the same directory as lowerdir ${lp}`, c.upperPath);
      if (isWithin(up.real, l.real)) throw new ConfigError(`upperdir is inside lowerdir ${lp}`, c.upperPath);
      if (isWithin(l.real, up.real)) throw new ConfigError(`lowerdir is inside upperdir ${c.upperPath}`, lp);
      if (isWithin(wk.real, l.real)) throw new ConfigError(`workdir is inside lowerdir ${lp}`, c.workPath);
      if (isWithin(l.real, wk.real)) throw new ConfigError(`lowerdir is inside workdir ${c.workPath}`, lp);
    }
    if (up.real === wk.real) throw new ConfigError('workdir is the same directory as upperdir', c.workPath);
    if (isWithin(wk.real, up.real)) throw new ConfigError(`workdir is inside upperdir ${c.upperPath}`, c.workPath);
    if (isWithin(up.real, wk.real)) throw new ConfigError(`upperdir is inside workdir ${c.workPath}`, c.upperPath);
    if (isWithin(up.real, mntReal)) throw new ConfigError(`upperdir is inside the mountpoint ${c.mountpoint}`, c.upperPath);
    if (isWithin(wk.real, mntReal)) throw new ConfigError(`workdir is inside the mountpoint ${c.mountpoint}`, c.workPath);
    if (isWithin(mntReal, up.real)) throw new ConfigError(`mountpoint is inside upperdir ${c.upperPath} (the mount would contain itself)`, c.mountpoint);
    if (isWithin(mntReal, wk.real)) throw new ConfigError(`mountpoint is inside workdir ${c.workPath}`, c.mountpoint);
    if (up.st.dev !== wk.st.dev) throw new ConfigError(`workdir is on another filesystem than upperdir ${c.upperPath}`, c.workPath);
    for (const [role, p] of [['upperdir', c.upperPath], ['workdir', c.workPath]] as const) {
      try {
        fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
      } catch (e) {
        const code = errCode(e);
        if (code === 'EROFS') throw new ConfigError(`${role} is on a read-only filesystem`, p);
        throw new ConfigError(`${role} is not writable (${code ?? String(e)})`, p);
      }
    }
  }
  c.mountpoint = mntReal;
  return { deadMount };
}

// ---------------------------------------------------------------------------
// command structure

const HELP_OPTIONS = `
Mount options (-o, comma separated; \\ escapes , and : inside values):
  lowerdir=DIR[:DIR...]   read-only layers, top first (up to ${MAX_LAYERS})
  upperdir=DIR            writable layer
  workdir=DIR             its work area, on the upper's filesystem; without
                          upperdir and workdir the mount is read-only
  ro | rw                 read-only mount (the upper is then served as the top layer)
  redirect_dir=on|off     rename directories with lower content (on, default) or EXDEV (off)
  userxattr               user.overlay.* markers instead of trusted.overlay.*
  timeout=SECONDS         kernel cache of entries (default ${DEFAULT_TIMEOUT_S}); also the
                          default of attr_timeout and negative_timeout. Changes made
                          to the layers behind the mount's back show after this long
  attr_timeout=SECONDS    kernel attribute cache (default: timeout; 0 with fuse_api=highlevel)
  fuse_api=lowlevel|highlevel
                          serve through libfuse's low-level API (default) or
                          fuse-native's high-level binding (slower, for comparison)
  negative_timeout=SECONDS
                          kernel negative-lookup cache (default: timeout)
  lookup_cache=N          lookup cache entries (default ${DEFAULT_LOOKUP_CACHE_SIZE}); also bounds
                          the memory of all caches: about 1.25 KiB x N, whatever the depth
  allow_other             let other users use the mount (default as root, i.e. euid 0,
                          also inside a user namespace)
  noallow_other           only the mounter (and root) may use it
  default_permissions     kernel permission checks from the mode bits (always on)
  volatile | fsync=0      skip fsync
  force                   mount over a dead FUSE mount (aborts and detaches it first)
  log=FILE                daemon log (default <id>.log in the runtime directory:
                          $STRATAFS_RUNTIME_DIR, /run/stratafs for root,
                          $XDG_RUNTIME_DIR/stratafs or $TMPDIR/stratafs-<euid>)
  fsname=NAME             source column of the mount table (default stratafs)
  debug                   same as -d
  suid,nosuid,dev,nodev,exec,noexec,atime,noatime,sync,async,dirsync
                          mount flags (default nodev,noatime; as root suid,
                          else nosuid)
fuse-overlayfs's options:
  uidmapping=DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...], gidmapping=...
                          on-disk ids DISK.. show as SHOWN..; ids outside every
                          range show as the overflow id (65534); the ids of
                          callers and chown are stored the other way round
  squash_to_root | squash_to_uid=ID | squash_to_gid=ID
                          every object shows this owner
  static_nlink            directories show one link
  xattr_permissions=0|1|2 keep owners and modes of upper objects in
                          security.(1) or user.(2) fuseoverlayfs.override_stat
  noxattrs=1              refuse every xattr request
  noacl                   accepted: ACLs are never enforced on a stratafs mount
  context=..., threaded=, fast_ino=, writeback=
                          accepted without effect
A comma inside double quotes does not split an option; empty options are skipped.
Unknown options are reported by name and ignored.

Forms:
  stratafs [-f] [-d] -o OPTIONS MOUNTPOINT  mount; without -f as a daemon, exit 0 once it answers
  stratafs SOURCE MOUNTPOINT -o OPTIONS     mount helper form (mount -t fuse.stratafs, fstab)
  stratafs umount [--force] MOUNTPOINT
  stratafs stats [--json] [--gc] MOUNTPOINT
  stratafs layer|image|diff|commit|size ... image commands (each has --help)
`;

/** the internal flag main.ts passes to the detached daemon it spawns */
export const DAEMON_CHILD_FLAG = '--daemon-child';

export interface Environment {
  cwd: string;
  uid: number;
  version: string;
  /** lowers of an imported image, top first (src/image/store.ts); throws when unknown */
  imageLowers?: (store: string, name: string) => string[];
}

/** Escape a path for an -o value: the parsers above unescape `\,` `\:` `\\` (and `\"`, which would open a quote at a value's start). */
export function escapeOptionValue(p: string): string {
  return p.replace(/[\\,:"]/g, (c) => '\\' + c);
}

/**
 * Words that are commands when they come first: the subcommands, commander's implicit `help`,
 * and the image commands main.ts dispatches (src/native/launcher.c keeps the same list).
 */
export const COMMAND_WORDS: readonly string[] = ['umount', 'stats', 'inspect', 'mount', 'help', 'layer', 'image', 'diff', 'commit', 'size', 'which'];

/**
 * The plain mount command line without commander: only `-o VALUE`, `-oVALUE`, `-d`, `--debug`
 * and one or two positionals (MOUNTPOINT, or SOURCE MOUNTPOINT; the first no command word),
 * with at least one -o. Gives what parseCommandLine gives for it (a unit test holds them
 * together); undefined for any other command line. The daemon of a mount parses its own
 * command line with it: commander is the biggest import on a mount's path, and
 * src/native/launcher.c sends exactly these command lines to the daemon directly.
 */
export function parsePlainMount(argv: readonly string[], env: Pick<Environment, 'cwd' | 'uid'>): MountConfig | undefined {
  const options: string[] = [];
  const positionals: string[] = [];
  let debug = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      if (i + 1 >= argv.length) return undefined;
      options.push(argv[++i]!);
    } else if (a.startsWith('-o')) {
      options.push(a.slice(2));
    } else if (a === '-d' || a === '--debug') {
      debug = true;
    } else if (a.startsWith('-') || a === '') {
      return undefined;
    } else {
      if (positionals.length === 0 && COMMAND_WORDS.includes(a)) return undefined;
      positionals.push(a);
    }
  }
  if (options.length === 0 || positionals.length === 0 || positionals.length > 2) return undefined;
  const [first, second] = positionals;
  return parseMountArgs({
    options, mountpoint: second ?? first, source: second === undefined ? undefined : first,
    foreground: false, debug, cwd: env.cwd, uid: env.uid,
  });
}

/** Parse argv (without node and script) into what to do. Throws ConfigError. */
export function parseCommandLine(argv: string[], env: Environment): CliCommand {
  // Loaded here, not at the top: a mount's daemon parses its plain command line without it (parsePlainMount).
  const { Command, CommanderError, Option } = createRequire(import.meta.url)('commander') as typeof Commander;
  let result: CliCommand | undefined;
  let out = '';
  const program = new Command('stratafs')
    .description('union (overlay) filesystem in user space, on-disk compatible with Linux overlayfs')
    .version(env.version, '-V, --version')
    .argument('[source]', 'mount helper form: the source (ignored) followed by the mountpoint')
    .argument('[mountpoint]')
    .option('-o <options>', 'mount options (may be repeated; see below)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('-f, --foreground', 'stay in the foreground')
    .option('-d, --debug', 'log every FUSE operation with result and duration (stderr with -f, else the daemon log)')
    .addOption(new Option(DAEMON_CHILD_FLAG).hideHelp())
    .addHelpText('after', HELP_OPTIONS)
    .exitOverride()
    .configureOutput({ writeOut: (s) => { out += s; }, writeErr: (s) => { out += s; } })
    .action((first: string | undefined, second: string | undefined, o: { o?: string[]; foreground?: boolean; debug?: boolean; daemonChild?: boolean }) => {
      // `stratafs frobnicate`: a lone word without options is a mistyped command, not a mountpoint
      if (o.o === undefined && second === undefined && first !== undefined && !first.includes('/') && first !== '.' && first !== '..') {
        throw new ConfigError(`unknown command '${first}' (see stratafs --help)`);
      }
      const source = second === undefined ? undefined : first;
      const mountpoint = second === undefined ? first : second;
      const config = parseMountArgs({
        options: o.o ?? [], mountpoint, source, foreground: !!o.foreground, debug: !!o.debug, cwd: env.cwd, uid: env.uid,
      });
      result = { kind: 'mount', config, daemonChild: !!o.daemonChild };
    });

  // Subcommands throw instead of exiting and write help into `out`, like the program itself.
  const sub = (name: string): Commander.Command => program.command(name)
    .exitOverride()
    .configureOutput({ writeOut: (t) => { out += t; }, writeErr: (t) => { out += t; } });

  sub('umount')
    .description('unmount a stratafs mount; --force cleans a mount whose daemon died or hangs (or any FUSE mount)')
    .argument('<mountpoint>')
    .option('--force', 'abort the FUSE connection (fusectl), then detach the mount; also one that is not stratafs\'s')
    .action((mnt: string, o: { force?: boolean }) => {
      result = { kind: 'umount', mountpoint: path.resolve(env.cwd, mnt), force: !!o.force };
    });

  sub('stats')
    .description('operation counts and latencies, lookup cache, copy-ups and whiteouts of a live mount')
    .argument('<mountpoint>')
    .option('--json', 'JSON output')
    .option('--gc', 'the daemon runs a full garbage collection first: the heap figure is then what is live')
    .action((mnt: string, o: { json?: boolean; gc?: boolean }) => {
      result = { kind: 'stats', mountpoint: path.resolve(env.cwd, mnt), json: !!o.json, gc: !!o.gc };
    });

  sub('inspect')
    .description('the layer stack, options and stats of a live mount')
    .argument('<mountpoint>')
    .option('--json', 'JSON output')
    .action((mnt: string, o: { json?: boolean }) => {
      result = { kind: 'inspect', mountpoint: path.resolve(env.cwd, mnt), json: !!o.json };
    });

  // `mount --image NAME --store DIR [--upper U --work W]`: an imported image's snapshots as
  // the lowers; turned into the same -o words as the plain form so validation is shared.
  sub('mount')
    .description('mount an imported image (see `stratafs image import`), or the same as the plain form with -o')
    .argument('<mountpoint>')
    .option('--image <name>', 'image name in the store')
    .option('--store <dir>', 'snapshot store directory')
    .option('--upper <dir>', 'writable upper directory (read-only mount without it)')
    .option('--work <dir>', 'workdir, on the same filesystem as --upper')
    .option('-o <options>', 'more mount options', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('-f, --foreground', 'stay in the foreground')
    .option('-d, --debug', 'log every FUSE operation')
    .action((mnt: string, o: { image?: string; store?: string; upper?: string; work?: string; o?: string[]; foreground?: boolean; debug?: boolean }) => {
      const words = [...(o.o ?? [])];
      if (o.image !== undefined) {
        if (o.store === undefined) throw new ConfigError('--image needs --store');
        if (env.imageLowers === undefined) throw new ConfigError('image support is not available');
        let lowers: string[];
        try {
          lowers = env.imageLowers(path.resolve(env.cwd, o.store), o.image);
        } catch (e) {
          throw new ConfigError(e instanceof Error ? e.message : String(e));
        }
        words.unshift(`lowerdir=${lowers.map(escapeOptionValue).join(':')}`);
      }
      if ((o.upper === undefined) !== (o.work === undefined)) throw new ConfigError('--upper and --work go together');
      if (o.upper !== undefined && o.work !== undefined) {
        words.push(`upperdir=${escapeOptionValue(path.resolve(env.cwd, o.upper))}`, `workdir=${escapeOptionValue(path.resolve(env.cwd, o.work))}`);
      }
      const config = parseMountArgs({
        options: words, mountpoint: mnt, source: undefined, foreground: !!o.foreground, debug: !!o.debug, cwd: env.cwd, uid: env.uid,
      });
      // The detached daemon re-runs this command line behind the top-level DAEMON_CHILD_FLAG.
      result = { kind: 'mount', config, daemonChild: !!program.opts<{ daemonChild?: boolean }>().daemonChild };
    });

  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return { kind: 'exit', code: 0, output: out };
      }
      throw new ConfigError(e.message.replace(/^error: /, ''));
    }
    throw e;
  }
  if (result === undefined) throw new ConfigError('nothing to do (see stratafs --help)');
  return result;
}
