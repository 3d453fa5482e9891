/**
 * Mounting and unmounting helpers that need no FUSE binding loaded: the default
 * low-level server (fuse/kernel/server.ts) uses them without loading fuse-native (which
 * fuse.ts loads as soon as it is imported), and so does the daemon's lazy
 * unmount. Re-exported by fuse.ts. The one writer of libfuse's `-o` words, for
 * both APIs (what a stratafs mount asks for is chosen in fuse/libfuse-args.ts).
 */
import path from 'node:path';
import type { Bstr } from '../shared/bstr.js';

const MNT_DETACH = 2;

export interface UnmountOptions {
  /** Detach now, finish when no longer busy (umount -l / MNT_DETACH / fusermount -uz). */
  lazy?: boolean;
}

export const isRoot = (): boolean => typeof process.geteuid === 'function' && process.geteuid() === 0;

/** First executable of `names` in PATH (or the dirs libfuse 2.9 tries first). */
async function findExecutable(names: readonly string[]): Promise<string | undefined> {
  // loaded here: a root mount never needs them, and each costs its daemon start a millisecond
  const { access, constants: fsConstants } = await import('node:fs/promises');
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/bin', '/usr/bin', '/bin'];
  for (const name of names) {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      try {
        await access(file, fsConstants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

async function run(cmd: string, args: readonly string[]): Promise<void> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}

interface Umount2Module {
  umount2(path: string, flags: number): Promise<void>;
}

/** The syscall addon's umount2 (src/native/sys.ts) if it is built, else undefined. */
async function loadUmount2(): Promise<Umount2Module['umount2'] | undefined> {
  const spec = './sys.js';
  try {
    const mod: unknown = await import(spec);
    const fn = (mod as Partial<Umount2Module>).umount2;
    return typeof fn === 'function' ? fn : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Unmount `mountpoint` without touching it from this process (the caller may be
 * the daemon serving it): as root umount2 on the addon's own thread, else
 * `umount`, else fusermount -u / fusermount3 -u. Never fs.*Sync, never -z unless asked.
 */
export async function unmountPath(mountpoint: Bstr, opts: UnmountOptions = {}): Promise<void> {
  if (isRoot()) {
    const umount2 = await loadUmount2();
    if (umount2) return umount2(mountpoint, opts.lazy ? MNT_DETACH : 0);
    return run('umount', opts.lazy ? ['-l', mountpoint] : [mountpoint]);
  }
  const fusermount = await findExecutable(['fusermount', 'fusermount3']);
  if (!fusermount) throw new Error('unmount as non-root needs fusermount: install the Debian package fuse3');
  return run(fusermount, opts.lazy ? ['-u', '-z', mountpoint] : ['-u', mountpoint]);
}

/** libfuse 2.9 mounts as non-root only through the setuid fusermount: fail at once, naming the package. */
export async function checkCanMount(): Promise<void> {
  if (!isRoot() && !(await findExecutable(['fusermount']))) {
    throw new Error('mounting as non-root needs the setuid helper fusermount: install the Debian package fuse3 (apt-get install fuse3)');
  }
}

/**
 * libfuse 2.9's options that both APIs accept: the kernel's mount options (passed on to
 * mount(2) or fusermount) and the session's. Generic flags left undefined keep libfuse's
 * default (nosuid, nodev, exec, rw).
 */
export interface LibfuseOptions {
  /** libfuse debug output on stderr (every request/reply). */
  debug?: boolean;
  allowOther?: boolean;
  allowRoot?: boolean;
  defaultPermissions?: boolean;
  /** Let the kernel send writes larger than 4 KiB. Default true. */
  bigWrites?: boolean;
  /** Default 131072 (the ceiling of libfuse 2.9's receive buffer). */
  maxWrite?: number;
  maxRead?: number;
  /** Allow mounting over a non-empty directory. Default true (fuse-overlayfs does). */
  nonempty?: boolean;
  suid?: boolean;
  dev?: boolean;
  exec?: boolean;
  readOnly?: boolean;
  noatime?: boolean;
  sync?: boolean;
  dirsync?: boolean;
  fsname?: string;
  subtype?: string;
  /** More raw -o words, passed unchanged (already escaped). */
  extra?: readonly string[];
}

/** Options only the high-level API (fuse_new) knows: fuse_lowlevel_new refuses them. */
export interface HighLevelLibfuseOptions extends LibfuseOptions {
  /** Report the handlers' st_ino (and readdir ino). Default true. */
  useIno?: boolean;
  /** Kernel cache lifetimes in seconds (libfuse default 1, negative 0). */
  entryTimeout?: number;
  attrTimeout?: number;
  negativeTimeout?: number;
  acAttrTimeout?: number;
  /**
   * Unlink open files at once instead of renaming them to .fuse_hidden*. Default true.
   * Then fh-based handlers get a null path, and libfuse answers a GETATTR of the removed
   * node (fstat) with ENOENT itself; stratafs mounts without it (fuse/highlevel/hidden-names.ts).
   */
  hardRemove?: boolean;
  kernelCache?: boolean;
  autoCache?: boolean;
}

/** libfuse option values: ',' separates options and '\\' escapes (fuse_opt.c). */
const escapeOpt = (v: string): string => v.replace(/[\\,]/g, (c) => '\\' + c);

/** The `-o` words of options both APIs accept (the low-level server's whole list). */
export function libfuseOptionWords(o: LibfuseOptions): string[] {
  const opts: string[] = [];
  const flag = (on: boolean | undefined, yes: string, no?: string): void => {
    if (on === true) opts.push(yes);
    else if (on === false && no !== undefined) opts.push(no);
  };
  flag(o.debug, 'debug');
  flag(o.allowOther, 'allow_other');
  flag(o.allowRoot, 'allow_root');
  flag(o.defaultPermissions, 'default_permissions');
  flag(o.bigWrites ?? true, 'big_writes');
  opts.push(`max_write=${o.maxWrite ?? 131072}`);
  if (o.maxRead !== undefined) opts.push(`max_read=${o.maxRead}`);
  flag(o.nonempty ?? true, 'nonempty');
  flag(o.suid, 'suid', 'nosuid');
  flag(o.dev, 'dev', 'nodev');
  flag(o.exec, 'exec', 'noexec');
  flag(o.readOnly, 'ro', 'rw');
  flag(o.noatime, 'noatime');
  flag(o.sync, 'sync');
  flag(o.dirsync, 'dirsync');
  if (o.fsname !== undefined) opts.push(`fsname=${escapeOpt(o.fsname)}`);
  if (o.subtype !== undefined) opts.push(`subtype=${escapeOpt(o.subtype)}`);
  if (o.extra) opts.push(...o.extra);
  return opts;
}

/** The `-o` words of the high-level API (fuse-native): the common ones and its own. */
export function highLevelOptionWords(o: HighLevelLibfuseOptions): string[] {
  const opts = libfuseOptionWords(o);
  if (o.useIno ?? true) opts.push('use_ino');
  if (o.entryTimeout !== undefined) opts.push(`entry_timeout=${o.entryTimeout}`);
  if (o.attrTimeout !== undefined) opts.push(`attr_timeout=${o.attrTimeout}`);
  if (o.negativeTimeout !== undefined) opts.push(`negative_timeout=${o.negativeTimeout}`);
  if (o.acAttrTimeout !== undefined) opts.push(`ac_attr_timeout=${o.acAttrTimeout}`);
  if (o.hardRemove ?? true) opts.push('hard_remove');
  if (o.kernelCache) opts.push('kernel_cache');
  if (o.autoCache) opts.push('auto_cache');
  return opts;
}

/** mount(2) flags (linux/mount.h) */
const MS = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, DIRSYNC: 128, NOATIME: 1024 } as const;

/** What mount(2) needs for a FUSE mount made without libfuse, from the same -o words. */
export interface KernelMount {
  /** the mount table's source column (fsname=, else the subtype, as libfuse) */
  source: string;
  /** "fuse" or "fuse.SUBTYPE" */
  fstype: string;
  flags: number;
  /** the kernel's own FUSE words (allow_other, default_permissions, max_read=); fd=, rootmode= and the ids are the caller's */
  data: string[];
  /** answered in INIT (a libfuse word, not the kernel's) */
  maxWrite: number;
  /** fuse_minor=: the highest protocol minor to answer INIT with (the kernel server's own word) */
  maxMinor: number | undefined;
  /** fuse_off=: protocol features the kernel server must not ask for (its own word) */
  off: string[];
  debug: boolean;
}

/**
 * The -o words fusermount3 takes for a KernelMount (it adds fd=, rootmode= and the ids
 * itself, and refuses libfuse's own words).
 */
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

/** Splits an -o list at unescaped commas and drops the escapes (fuse_opt.c's rules). */
function splitOptionList(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) cur += s[++i];
    else if (c === ',') { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out.filter((w) => w !== '');
}

/**
 * The libfuse argv the low-level server gets (["stratafs", "-o", "words"], see
 * libfuseOptionWords) as mount(2) wants it, without libfuse: generic words become
 * MS_* flags (libfuse's defaults nosuid,nodev first), the kernel's FUSE words pass
 * through, libfuse's own (big_writes, nonempty) have nothing to do. An unknown word
 * is an error, not silently dropped.
 */
export function kernelMountOf(args: readonly string[]): KernelMount {
  const words: string[] = [];
  for (let i = 1; i < args.length; i++) {
    if (args[i] === '-o' && i + 1 < args.length) words.push(...splitOptionList(args[++i]!));
    else throw new Error(`unexpected mount argument ${JSON.stringify(args[i])}`);
  }
  const m: KernelMount = { source: '', fstype: 'fuse', flags: MS.NOSUID | MS.NODEV, data: [], maxWrite: 131072, maxMinor: undefined, off: [], debug: false };
  let fsname: string | undefined;
  let subtype: string | undefined;
  const set = (bit: number, on: boolean): void => { m.flags = on ? m.flags | bit : m.flags & ~bit; };
  for (const w of words) {
    const eq = w.indexOf('=');
    const key = eq < 0 ? w : w.slice(0, eq);
    const val = eq < 0 ? '' : w.slice(eq + 1);
    switch (key) {
      case 'allow_other': case 'default_permissions': m.data.push(key); break;
      case 'max_read': m.data.push(`max_read=${Number(val)}`); break;
      case 'max_write': m.maxWrite = Number(val); break;
      case 'fuse_minor': m.maxMinor = Number(val); break;
      case 'fuse_off': m.off.push(...val.split(':').filter((n) => n !== '')); break;
      case 'big_writes': case 'nonempty': break;
      case 'debug': m.debug = true; break;
      case 'suid': set(MS.NOSUID, false); break;
      case 'nosuid': set(MS.NOSUID, true); break;
      case 'dev': set(MS.NODEV, false); break;
      case 'nodev': set(MS.NODEV, true); break;
      case 'exec': set(MS.NOEXEC, false); break;
      case 'noexec': set(MS.NOEXEC, true); break;
      case 'ro': set(MS.RDONLY, true); break;
      case 'rw': set(MS.RDONLY, false); break;
      case 'noatime': set(MS.NOATIME, true); break;
      case 'sync': set(MS.SYNCHRONOUS, true); break;
      case 'dirsync': set(MS.DIRSYNC, true); break;
      case 'fsname': fsname = val; break;
      case 'subtype': subtype = val; break;
      default: throw new Error(`mount option ${JSON.stringify(w)} is not known to the kernel FUSE server`);
    }
  }
  if (!Number.isSafeInteger(m.maxWrite) || m.maxWrite < 4096) throw new Error(`max_write=${m.maxWrite}: at least 4096 expected`);
  if (subtype !== undefined) m.fstype = `fuse.${subtype}`;
  m.source = fsname ?? subtype ?? '/dev/fuse';
  return m;
}
