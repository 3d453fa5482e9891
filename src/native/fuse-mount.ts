/**
 * Mounting and unmounting helpers that need no FUSE binding loaded: the default
 * low-level server (fuse-ll.ts) uses them without loading fuse-native (which
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
