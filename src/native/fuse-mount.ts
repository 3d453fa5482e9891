/**
 * Mounting and unmounting helpers that need no FUSE binding loaded: the one unmount
 * (unmountPath) for the daemon, `stratafs umount`, the kernel server and fuse-native's
 * binding; the check for a plain user's setuid helper; and the writer of libfuse's `-o`
 * words for fuse_api=highlevel (what it asks for is chosen in fuse/libfuse-args.ts).
 * Re-exported by fuse.ts. Loads nothing FUSE: the default mount never loads fuse-native.
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

/**
 * Where the kernel server's fusermount3 finds an O_PATH fd of the mountpoint when mounting
 * (`/proc/self/fd/4/.`): Node hands a child only UTF-8 arguments, a mountpoint is bytes.
 */
export const FUSERMOUNT_PATH_FD = 4;

async function run(cmd: string, args: readonly string[], shown = path.basename(cmd)): Promise<void> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${shown} failed (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`));
    });
  });
}

interface SysModule {
  umount2(path: string, flags: number): Promise<void>;
}

/** The syscall addon (src/native/sys.ts) if it is built, else undefined. */
async function loadSys(): Promise<SysModule | undefined> {
  const spec = './sys.js';
  try {
    const mod = (await import(spec)) as Partial<SysModule>;
    return typeof mod.umount2 === 'function' ? (mod as SysModule) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A shell line that runs `"$0" "$1" -- MOUNTPOINT` with the mountpoint's exact bytes: every
 * byte but [A-Za-z0-9/._-] written as printf's \ooo (the line itself is ASCII, so Node's UTF-8
 * arguments carry it unchanged); the trailing x keeps a final newline from $(...)'s trim.
 */
const execWithPath = (p: Bstr): string => {
  const octal = [...Buffer.from(p, 'latin1')].map((b) => (/[A-Za-z0-9/._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '\\' + b.toString(8).padStart(3, '0'))).join('');
  return `m="$(printf '${octal}'; echo x)"; exec "$0" "$1" -- "\${m%x}"`;
};

const isUtf8 = (s: Bstr): boolean => Buffer.from(Buffer.from(s, 'latin1').toString('utf8'), 'utf8').equals(Buffer.from(s, 'latin1'));

/**
 * Unmount `mountpoint` (bytes), the one way every caller does it: as root umount2 on a
 * thread of the syscall addon (util-linux umount if it is not built); as a plain user the
 * setuid fusermount3 (or libfuse 2's fusermount) -u, run as a child: never synchronously
 * from this process, which may be the one serving the mount. A mountpoint that is not UTF-8
 * reaches fusermount3 through `sh -c` and printf's octal escapes (execWithPath): Node's
 * arguments are UTF-8, and fusermount3 -u resolves only the parent of what it is given, so
 * the /proc/self/fd/N/. of mounting would have it enter the mount (EACCES without allow_other).
 * Errors: the addon's FsError (EBUSY, EINVAL) as root, else one line.
 */
export async function unmountPath(mountpoint: Bstr, opts: UnmountOptions = {}): Promise<void> {
  if (isRoot()) {
    const sys = await loadSys();
    if (sys) return sys.umount2(mountpoint, opts.lazy ? MNT_DETACH : 0);
    return run('umount', opts.lazy ? ['-l', mountpoint] : [mountpoint]);
  }
  const fusermount = await findExecutable(['fusermount3', 'fusermount']);
  if (!fusermount) throw new Error('unmounting as a plain user needs fusermount3: install the Debian package fuse3');
  const flags = opts.lazy ? '-uz' : '-u';
  if (isUtf8(mountpoint)) return run(fusermount, [flags, '--', Buffer.from(mountpoint, 'latin1').toString('utf8')]);
  return run('/bin/sh', ['-c', execWithPath(mountpoint), fusermount, flags], path.basename(fusermount));
}

/**
 * A plain user mounts only through a setuid helper: fail at once, naming the package.
 * The kernel server uses fusermount3, libfuse 2.9 (fuse_api=highlevel) fusermount; root needs neither.
 */
export async function checkCanMount(helper: 'fusermount3' | 'fusermount'): Promise<void> {
  if (!isRoot() && !(await findExecutable([helper]))) {
    throw new Error(`mounting as a plain user needs the setuid helper ${helper}: install the Debian package fuse3 (apt-get install fuse3)`);
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
