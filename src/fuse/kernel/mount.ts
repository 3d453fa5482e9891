/**
 * How stratafs's own server mounts (native-notes/fuse-server.md): the typed mount
 * description of a MountConfig (no libfuse words in between), mount(2) with the device fd
 * as root (also root of a user namespace), the setuid fusermount3 for a plain user.
 * Unmounting is native/fuse-mount.ts's unmountPath, the one for every caller.
 */
import { spawnSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import type { Bstr } from '../../shared/bstr.js';
import { EPERM } from '../../shared/constants.js';
import { fuseDev } from '../../native/fuse-dev.js';
import { FUSERMOUNT_PATH_FD } from '../../native/fuse-mount.js';
import { openRoot } from '../../native/sys.js';
import type { MountConfig } from '../config.js';

/** mount(2) flags (linux/mount.h) */
export const MS = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, DIRSYNC: 128, NOATIME: 1024 } as const;

/** the largest WRITE the kernel may send (answered in INIT; the read buffer is sized from it) */
export const MAX_WRITE = 131072;

/** What the server needs to mount and to answer INIT. */
export interface KernelMount {
  /** the mount table's source column */
  source: string;
  /** "fuse.stratafs" */
  fstype: string;
  /** MS_* flags */
  flags: number;
  /** the kernel's FUSE words (allow_other, default_permissions); fd=, rootmode= and the ids are added when mounting */
  data: string[];
  /** answered in INIT */
  maxWrite: number;
  /** fuse_minor=: the highest protocol minor to answer INIT with (undefined: the newest the server knows) */
  maxMinor: number | undefined;
  /** fuse_off=, and the features the mount's other options rule out: protocol features not to ask for */
  off: readonly string[];
  /** max_stack_depth answered with passthrough: 1, or 2 when a passed-through layer is stacked (stackDepthOf) */
  stackDepth: number;
  /** request_timeout=: seconds the kernel lets a request wait before it aborts the connection; 0 none */
  requestTimeout: number;
  /** -o io_uring: ask for FUSE over io_uring (features.ts; off unless set) */
  ioUring?: boolean;
  /** -d: log INIT and every request (trace.ts) */
  debug: boolean;
  /** where -d lines go (the daemon's log); stderr if unset */
  log?: (line: string) => void;
}

/** The mount description of a MountConfig: the generic flags as MS_* bits, the permission words as the kernel's. */
export function kernelMount(c: MountConfig): KernelMount {
  const f = c.flags;
  const flags = (f.readOnly ? MS.RDONLY : 0) | (f.suid ? 0 : MS.NOSUID) | (f.dev ? 0 : MS.NODEV) | (f.exec ? 0 : MS.NOEXEC)
    | (f.noatime ? MS.NOATIME : 0) | (f.sync ? MS.SYNCHRONOUS : 0) | (f.dirsync ? MS.DIRSYNC : 0);
  const data: string[] = [];
  if (c.allowOther) data.push('allow_other');
  if (c.defaultPermissions) data.push('default_permissions');
  // posix_acl: noacl asks for it off (as fuse-overlayfs's noacl); with noxattrs every xattr request fails, and with uidmapping=/squash_to_* the ids
  // inside an ACL (stored as on disk, not translated) would be enforced against shown owners;
  // with xattr_permissions the requested mode goes into the override record as the kernel
  // sent it, which DONT_MASK leaves unmasked (a 0644 create by umask 022 was recorded 0666)
  const off = new Set(c.fuseOff);
  if (c.noAcl || c.noXattrs || c.idMapping !== undefined || (c.xattrPermissions ?? 0) !== 0) off.add('posix_acl');
  return {
    source: c.fsname, fstype: 'fuse.stratafs', flags, data, maxWrite: MAX_WRITE,
    maxMinor: c.fuseMinor, off: [...off], stackDepth: stackDepthOf(c), requestTimeout: c.requestTimeout, debug: c.debug,
    ...(c.ioUring ? { ioUring: true } : {}),
  };
}

/**
 * statfs f_type of file systems whose superblock is stacked (s_stack_depth 1): overlayfs and
 * ecryptfs. A FUSE layer counts as 0: only one with passthrough is stacked (1), and its files
 * then fall back (ELOOP) rather than cost this mount its place below kernel overlayfs.
 */
const STACKED_FS = new Set([0x794c7630 /* overlayfs */, 0xf15f /* ecryptfs */]);

/**
 * max_stack_depth for passthrough: 2 when a layer whose files may pass through lies on a
 * stacked file system (the kernel refuses a backing file whose file system is as deep as
 * max_stack_depth: ELOOP), else 1, since a mount of depth 2 cannot be a layer of kernel
 * overlayfs (2 in all at most). Lower layers count only with passthrough_lower (upper files
 * alone pass through otherwise). Called before mounting: no layer is covered yet.
 */
export function stackDepthOf(c: MountConfig): number {
  const passed = [...(c.upperPath === undefined ? [] : [c.upperPath]), ...(c.passthroughLower ? c.lowerPaths : [])];
  for (const p of passed) {
    try {
      if (STACKED_FS.has(Number(statfsSync(p).type))) return 2;
    } catch {
      // validation already named a missing layer
    }
  }
  return 1;
}

/** fuse_opt.c's escapes: ',' separates options, '\\' escapes */
const escapeOpt = (v: string): string => v.replace(/[\\,]/g, (ch) => '\\' + ch);

/** The -o words fusermount3 takes for a KernelMount (it adds fd=, rootmode= and the ids itself). */
export function fusermountWords(m: KernelMount): string[] {
  const f = (bit: number, on: string, off: string): string => ((m.flags & bit) !== 0 ? on : off);
  const words = [f(MS.RDONLY, 'ro', 'rw'), f(MS.NOSUID, 'nosuid', 'suid'), f(MS.NODEV, 'nodev', 'dev'), f(MS.NOEXEC, 'noexec', 'exec')];
  if ((m.flags & MS.NOATIME) !== 0) words.push('noatime');
  if ((m.flags & MS.SYNCHRONOUS) !== 0) words.push('sync');
  if ((m.flags & MS.DIRSYNC) !== 0) words.push('dirsync');
  words.push(...m.data, `fsname=${escapeOpt(m.source)}`);
  if (m.fstype.startsWith('fuse.')) words.push(`subtype=${escapeOpt(m.fstype.slice(5))}`);
  return words;
}

/** A mounted device: the fd to serve; through fusermount3 (a plain user), who must unmount with it too. */
export interface Mounted {
  fd: number;
  viaFusermount: boolean;
}

/** Root (also of a user namespace): mount(2) with the device fd. */
function mountDirect(mountpoint: Bstr, km: KernelMount): Mounted {
  const dev = fuseDev();
  const fd = dev.open();
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, ...km.data].join(',');
  const r = dev.mount(km.source, mountpoint, km.fstype, km.flags, data);
  if (r < 0) {
    dev.closeFd(fd);
    throw new Error(`mount(2) failed: ${-r === EPERM ? 'not permitted' : `errno ${-r}`}`);
  }
  return { fd, viaFusermount: false };
}

/**
 * A plain user: the setuid fusermount3 opens /dev/fuse, mounts, and sends the fd back
 * over a socket (SCM_RIGHTS; _FUSE_COMMFD names the socket's fd in the child). Run
 * synchronously: the kernel sends INIT in the background, so fusermount3 never waits
 * for this thread.
 *
 * The mountpoint is a byte string, and Node hands a child only UTF-8 arguments: it goes
 * as `/proc/self/fd/N/.` of an O_PATH fd opened here, before the mount covers it, which
 * fusermount3 resolves (realpath) to the exact bytes.
 */
function mountWithFusermount(mountpoint: Bstr, km: KernelMount): Mounted {
  const dev = fuseDev();
  const pathFd = openRoot(mountpoint);
  const [ours, theirs] = dev.socketpair();
  try {
    const r = spawnSync('fusermount3', ['-o', fusermountWords(km).join(','), '--', `/proc/self/fd/${FUSERMOUNT_PATH_FD}/.`], {
      stdio: ['ignore', 'ignore', 'pipe', theirs, pathFd], env: { ...process.env, _FUSE_COMMFD: '3' }, encoding: 'utf8',
    });
    if (r.error !== undefined) throw new Error(`fusermount3 could not run (install the Debian package fuse3): ${r.error.message}`);
    const fd = dev.recvFd(ours);
    if (r.status !== 0 || fd < 0) throw new Error(`fusermount3 failed (exit ${r.status}): ${r.stderr.trim() || `no device fd (errno ${-fd})`}`);
    return { fd, viaFusermount: true };
  } finally {
    dev.closeFd(pathFd);
    dev.closeFd(theirs);
    dev.closeFd(ours);
  }
}

/** Mounts and returns the device fd to serve: mount(2) as root, fusermount3 otherwise. */
export function mountDevice(mountpoint: Bstr, km: KernelMount): Mounted {
  return process.geteuid?.() === 0 ? mountDirect(mountpoint, km) : mountWithFusermount(mountpoint, km);
}
