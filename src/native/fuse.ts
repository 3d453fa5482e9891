/**
 * Typed wrapper over our patched fuse-native (see native-notes/fuse-binding.md).
 *
 * - Every path and name is a Bstr (latin1 byte string); `null` where libfuse has
 *   no path (a file unlinked while open, with hard_remove + nullpath_ok).
 * - Errors are returned as 0 or a negative errno through the callbacks; the
 *   callbacks (not Promises) keep the per-request cost down.
 * - stat / statvfs results are Float64Arrays in the layouts of sys-api.ts
 *   (StatIdx, StatvfsIdx), passed to the kernel untouched. Do not reuse one
 *   array for several in-flight replies: the binding reads it on the next tick.
 */
import { createRequire } from 'node:module';
import type { Bstr } from '../shared/bstr.js';
import { checkCanMount, highLevelOptionWords, isRoot, unmountPath, type HighLevelLibfuseOptions, type UnmountOptions } from './fuse-mount.js';

// Mounting helpers that need no binding live in fuse-mount.ts; importers of this module keep them here too.
export { checkCanMount, unmountPath, type UnmountOptions };

export type { Bstr };

/** 0 on success, else a negative errno. */
export type Result = number;
export type DoneCb = (err: Result) => void;
export type StatCb = (err: Result, st?: Float64Array) => void;
/** `openFlags`: bit mask of OpenFlags (kernel page cache handling for this open). */
export type OpenCb = (err: Result, fh?: number, openFlags?: number) => void;
/** read/write: bytes transferred, or a negative errno. */
export type IoCb = (result: number) => void;
export type ReaddirCb = (err: Result, names?: ReadonlyArray<Bstr | Buffer>, types?: Float64Array) => void;
export type ReadlinkCb = (err: Result, target?: Bstr | Buffer) => void;
/** `value` null (or undefined) on success means "no such attribute" (ENODATA). */
export type GetxattrCb = (err: Result, value?: Buffer | null) => void;
export type ListxattrCb = (err: Result, names?: ReadonlyArray<Bstr | Buffer>) => void;

export const OpenFlags = { KEEP_CACHE: 1, DIRECT_IO: 2 } as const;
/** Values a utimens nanoseconds argument may take besides 0..999999999 (linux/stat.h). */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

/** The process behind the request being served. */
export interface CallerContext {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

/**
 * Handlers. `path` is null only where noted (file-handle operations on a file
 * unlinked while open). readdir `types` is a Float64Array of [mode, ino] pairs,
 * one per name, so d_type and d_ino reach the kernel without a stat per entry.
 */
export interface FuseHandlers {
  init?(cb: DoneCb): void;
  access?(path: Bstr, mode: number, cb: DoneCb): void;
  statfs?(path: Bstr, cb: StatCb): void;
  getattr?(path: Bstr, cb: StatCb): void;
  fgetattr?(path: Bstr | null, fh: number, cb: StatCb): void;
  flush?(path: Bstr | null, fh: number, cb: DoneCb): void;
  fsync?(path: Bstr | null, datasync: number, fh: number, cb: DoneCb): void;
  fsyncdir?(path: Bstr | null, datasync: number, fh: number, cb: DoneCb): void;
  /** fh: what opendir answered for this directory handle (0 if opendir gave none); path null for a removed directory. */
  readdir?(path: Bstr | null, fh: number, cb: ReaddirCb): void;
  truncate?(path: Bstr, size: number, cb: DoneCb): void;
  ftruncate?(path: Bstr | null, fh: number, size: number, cb: DoneCb): void;
  /** nsec values may be UTIME_NOW or UTIME_OMIT; path null for futimens on an unlinked file. */
  utimens?(path: Bstr | null, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, cb: DoneCb): void;
  readlink?(path: Bstr, cb: ReadlinkCb): void;
  /** uid/gid 0xffffffff (-1) leaves that id unchanged; path null for fchown on an unlinked file. */
  chown?(path: Bstr | null, uid: number, gid: number, cb: DoneCb): void;
  chmod?(path: Bstr | null, mode: number, cb: DoneCb): void;
  mknod?(path: Bstr, mode: number, dev: number, cb: DoneCb): void;
  setxattr?(path: Bstr, name: Bstr, value: Buffer, position: number, flags: number, cb: DoneCb): void;
  getxattr?(path: Bstr, name: Bstr, position: number, cb: GetxattrCb): void;
  listxattr?(path: Bstr, cb: ListxattrCb): void;
  removexattr?(path: Bstr, name: Bstr, cb: DoneCb): void;
  open?(path: Bstr, flags: number, cb: OpenCb): void;
  opendir?(path: Bstr, flags: number, cb: OpenCb): void;
  /** `buf` is only valid until cb is called. */
  read?(path: Bstr | null, fh: number, buf: Buffer, len: number, offset: number, cb: IoCb): void;
  /** `buf` is only valid until cb is called. */
  write?(path: Bstr | null, fh: number, buf: Buffer, len: number, offset: number, cb: IoCb): void;
  release?(path: Bstr | null, fh: number, cb: DoneCb): void;
  releasedir?(path: Bstr | null, fh: number, cb: DoneCb): void;
  /** `flags` are the open(2) flags (O_EXCL, O_TRUNC, O_APPEND, ...). */
  create?(path: Bstr, mode: number, flags: number, cb: OpenCb): void;
  unlink?(path: Bstr, cb: DoneCb): void;
  rename?(src: Bstr, dest: Bstr, cb: DoneCb): void;
  link?(existing: Bstr, newPath: Bstr, cb: DoneCb): void;
  /** `target` is the link's content, `path` the new link. */
  symlink?(target: Bstr, path: Bstr, cb: DoneCb): void;
  mkdir?(path: Bstr, mode: number, cb: DoneCb): void;
  rmdir?(path: Bstr, cb: DoneCb): void;
  fallocate?(path: Bstr | null, fh: number, mode: number, offset: number, length: number, cb: DoneCb): void;
}

export type OpName = Exclude<keyof FuseHandlers, 'init'> | 'init';

/** Per-op timeouts in ms (false: none). Applies to the JS handler's answer. */
export type TimeoutSpec = false | number | (Partial<Record<OpName, number | false>> & { default?: number | false });

/** The binding's options: libfuse's (fuse-mount.ts) and the JS side's. */
export interface FuseOptions extends HighLevelLibfuseOptions {
  /** Default false: a long copy-up must never be cut off with ETIMEDOUT. */
  timeout?: TimeoutSpec;
  /** Refuse to mount over a mount point (fuse-native's old guard). Default false. */
  checkMounted?: boolean;
  /** Called once when the FUSE session has ended (our unmount or an outside one). */
  onExit?: () => void;
}

// --- the JS base class (CommonJS, patched at install) ---

interface NativeOpts {
  timeout: TimeoutSpec;
  checkMounted: boolean;
  onExit: () => void;
}

interface FuseNativeInstance {
  readonly mnt: string;
  readonly opts: NativeOpts;
  /** nanoresource open: mounts, calls back after INIT */
  open(cb: (err: Error | null) => void): void;
  /** The caller of the request being handled; valid synchronously at handler entry only. */
  context(): CallerContext;
  _fuseOptions(): string;
  _close(cb: (err: Error | null) => void): void;
}

type FuseNativeCtor = new (mnt: string, ops: FuseHandlers, opts: NativeOpts) => FuseNativeInstance;

const require = createRequire(import.meta.url);
const FuseNative = require('fuse-native') as FuseNativeCtor;

/**
 * A FUSE filesystem served by this process.
 *
 *   const fuse = new Fuse(mnt, handlers, { allowOther: true, onExit })
 *   await fuse.mount()      // resolves once the kernel's INIT is answered
 *   ...
 *   await fuse.unmount()    // resolves once libfuse's loop has ended
 */
export class Fuse extends FuseNative {
  /** Resolves when the FUSE session ends, however it ends. */
  readonly exited: Promise<void>;
  private readonly options: FuseOptions;
  private hasExited = false;

  constructor(mountpoint: Bstr, handlers: FuseHandlers, options: FuseOptions = {}) {
    let markExited: () => void = () => undefined;
    const exited = new Promise<void>((resolve) => { markExited = resolve; });
    super(mountpoint, handlers, {
      timeout: options.timeout ?? false,
      checkMounted: options.checkMounted ?? false,
      onExit: () => {
        markExited();
        options.onExit?.();
      },
    });
    this.exited = exited;
    this.options = options;
    void exited.then(() => { this.hasExited = true; });
  }

  override _fuseOptions(): string {
    const opts = highLevelOptionWords(this.options);
    return opts.length ? '-o' + opts.join(',') : '';
  }

  /** Mounts; as non-root without fusermount fails at once naming the package. */
  async mount(): Promise<void> {
    await checkCanMount('fusermount');
    await new Promise<void>((resolve, reject) => {
      this.open((err) => {
        if (!err) return resolve();
        // libfuse 2.9 opens /dev/fuse itself before falling back to fusermount
        if (!isRoot()) err.message += ': as non-root libfuse 2.9 needs /dev/fuse mode 0666 and the setuid fusermount (Debian package fuse3)';
        reject(err);
      });
    });
  }

  /** Unmounts (see unmountPath) and waits until the session has ended. */
  async unmount(opts: UnmountOptions = {}): Promise<void> {
    if (this.hasExited) return;
    await unmountPath(this.mnt, opts);
    await this.exited;
  }

  get mountpoint(): Bstr {
    return this.mnt;
  }
}
