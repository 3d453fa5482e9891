/**
 * The `-o` option language of mount(8) and overlayfs, as the kernel parses it: options split
 * at unescaped commas, a backslash escapes the next character (`\,` `\:` `\\`), and
 * lowerdir splits at unescaped colons. Each option sets one field of MountSettings
 * (fuse/config.ts), which mountConfig() then turns into the MountConfig. Pure: reads no file.
 */
import * as path from 'node:path';
import type { IdRange, XattrPermissions } from '../core/config.js';
import {
  checkFuseMinor, checkFuseOff, checkRequestTimeout, checkLayers, checkLookupCache, checkSeconds, ConfigError, defaultMountSettings, mountConfig,
  type MountConfig, type MountPlace, type MountSettings,
} from '../fuse/config.js';

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
/** Generic words the kernel knows that stratafs does not pass to the mount (warned). */
const UNAPPLIED = new Set(['relatime', 'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime',
  'diratime', 'nodiratime', 'iversion', 'noiversion', 'mand', 'nomand', 'silent', 'loud']);

function parseSeconds(key: string, v: string | undefined): number {
  return checkSeconds(key, v === undefined || v.trim() === '' ? NaN : Number(v), v ?? '');
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


/** Escape a path for an -o value: the parsers above unescape `\,` `\:` `\\` (and `\"`, which would open a quote at a value's start). */
export function escapeOptionValue(p: string): string {
  return p.replace(/[\\,:"]/g, (c) => '\\' + c);
}

/**
 * Apply one -o string to the settings, option by option (a later option wins). Bad values are
 * ConfigErrors naming the option as written; unknown options are collected, not refused.
 * Relative log= paths are resolved against `cwd` here (the layers' by mountConfig()).
 */
export function applyMountOptions(s: MountSettings, optString: string, cwd: string): void {
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
        if (parts.some((p) => p === '') && /::/.test(raw)) throw new ConfigError('data-only lower layers (::) are not supported', raw);
        checkLayers(parts, raw);
        s.lowerdirs = parts;
        break;
      }
      case 'upperdir': s.upperdir = needValue(); break;
      case 'workdir': s.workdir = needValue(); break;
      case 'ro': s.readOnly = true; break;
      case 'rw': s.readOnly = false; break;
      case 'redirect_dir':
        // 'follow' follows redirects written by others but never writes one: rename then gives EXDEV, which is 'off' here.
        if (val === 'follow' || val === 'nofollow') s.redirectDir = false;
        else s.redirectDir = parseOnOff(key, val);
        break;
      case 'userxattr': s.userxattr = true; break;
      case 'timeout': s.timeout = parseSeconds(key, val); break;
      case 'negative_timeout': s.negativeTimeout = parseSeconds(key, val); break;
      case 'attr_timeout': s.attrTimeout = parseSeconds(key, val); break;
      case 'fuse_api':
        if (val !== 'lowlevel' && val !== 'highlevel') throw new ConfigError('invalid value for fuse_api (lowlevel or highlevel expected)', val ?? '');
        s.fuseApi = val;
        break;
      case 'fuse_server':
        // the libfuse 2.9 low-level server (native/fuse-ll.c) is gone: one transport to maintain
        if (val === 'libfuse') throw new ConfigError('fuse_server=libfuse was removed: stratafs serves the kernel protocol itself (fuse_api=highlevel still mounts through libfuse 2.9)', 'fuse_server=libfuse');
        if (val !== 'kernel') throw new ConfigError('invalid value for fuse_server (kernel expected)', val ?? '');
        s.fuseServer = val;
        break;
      case 'io_uring': s.ioUring = val === undefined ? true : parseOnOff(key, val); break;
      case 'passthrough_lower': s.passthroughLower = val === undefined ? true : parseOnOff(key, val); break;
      case 'fuse_off': s.fuseOff = checkFuseOff(needValue().split(':')); break;
      case 'request_timeout': s.requestTimeout = checkRequestTimeout(val === undefined || !/^\d+$/.test(val) ? NaN : Number(val), val ?? ''); break;
      case 'fuse_minor': s.fuseMinor = checkFuseMinor(val === undefined || !/^\d+$/.test(val) ? NaN : Number(val), val ?? ''); break;
      case 'lookup_cache':
        s.lookupCacheSize = checkLookupCache(val === undefined || !/^\d+$/.test(val) ? NaN : Number(val), val ?? '');
        break;
      case 'allow_other': s.allowOther = true; break;
      case 'noallow_other': s.allowOther = false; break;
      case 'default_permissions': break; // always on
      case 'volatile': s.fsync = false; break;
      case 'fsync': s.fsync = parseOnOff(key, val); break;
      case 'force': s.force = true; break;
      case 'debug': s.debug = true; break;
      case 'fsname': s.fsname = needValue(); break;
      case 'log': s.logFile = path.resolve(cwd, needValue()); break;
      case 'suid': s.flags.suid = true; break;
      case 'nosuid': s.flags.suid = false; break;
      case 'dev': s.flags.dev = true; break;
      case 'nodev': s.flags.dev = false; break;
      case 'exec': s.flags.exec = true; break;
      case 'noexec': s.flags.exec = false; break;
      case 'atime': s.flags.noatime = false; break;
      case 'noatime': s.flags.noatime = true; break;
      case 'sync': s.flags.sync = true; break;
      case 'async': s.flags.sync = false; break;
      case 'dirsync': s.flags.dirsync = true; break;
      // kernel overlayfs features stratafs does not implement: accepted when off, refused when on
      case 'index': case 'metacopy': case 'nfs_export':
        if (parseOnOff(key, val)) throw new ConfigError(`overlayfs feature ${key} is not supported by stratafs`, opt);
        break;
      // fuse-overlayfs's own options (its man page and main.c; README "Options")
      case 'uidmapping': s.uidMapping = parseIdMapping(key, val ?? ''); break;
      case 'gidmapping': s.gidMapping = parseIdMapping(key, val ?? ''); break;
      case 'squash_to_root': s.squashToRoot = true; break;
      case 'squash_to_uid': s.squashUid = parseId(key, val); break;
      case 'squash_to_gid': s.squashGid = parseId(key, val); break;
      case 'static_nlink': s.staticNlink = true; break;
      // as fuse-overlayfs: the kernel does not enforce ACLs (posix_acl off); system.posix_acl_* are plain xattrs
      case 'noacl': s.noAcl = true; break;
      case 'xattr_permissions':
        if (val !== '0' && val !== '1' && val !== '2') throw new ConfigError('invalid value for xattr_permissions (0, 1 or 2 expected)', val ?? '');
        s.xattrPermissions = Number(val) as XattrPermissions;
        break;
      case 'noxattrs':
        if (val === undefined || !/^\d+$/.test(val)) throw new ConfigError('invalid value for noxattrs (0 or 1 expected)', val ?? '');
        s.noXattrs = Number(val) !== 0;
        break;
      case 'plugins': throw new ConfigError('fuse-overlayfs data-source plugins are not supported by stratafs', opt);
      // SELinux labels (containers/storage passes context="..."): not passed to the mount, and
      // fuse-overlayfs ignores them too. Threading and caching knobs of fuse-overlayfs/libfuse 3
      // that mean nothing to one event loop (the writeback cache is the writeback_cache feature).
      case 'context': case 'fscontext': case 'defcontext': case 'rootcontext':
      case 'threaded': case 'fast_ino': case 'writeback': case 'clone_fd': case 'max_idle_threads': case 'max_threads':
        s.ignoredOptions.push(opt);
        break;
      default:
        if (SILENT.has(key) || key.startsWith('x-') || key === 'comment') break;
        if (UNAPPLIED.has(key)) { s.ignoredOptions.push(opt); break; }
        s.unknownOptions.push(key);
    }
  }
}

export interface MountArgs extends MountPlace {
  /** every -o string, in order */
  options: string[];
  debug: boolean;
  /** the effective uid in the mounter's user namespace, deciding defaults (defaultMountSettings) */
  uid: number;
}

/**
 * Parse the mount options into a MountConfig. Pure: reads no file; paths are only
 * made absolute. Throws ConfigError.
 */
export function parseMountArgs(a: MountArgs): MountConfig {
  const s = defaultMountSettings(a.uid);
  s.debug = a.debug;
  for (const o of a.options) applyMountOptions(s, o, a.cwd);
  return mountConfig(s, a);
}
