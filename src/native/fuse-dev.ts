/**
 * Typed wrapper over the transport of stratafs's own FUSE server
 * (src/native/fuse-dev.c, native-notes/fuse-server.md): /dev/fuse, mount(2), a
 * uv_poll with batched reads into one Buffer JS owns, one writev(2) per reply.
 * The protocol itself is src/fuse/kernel/.
 */
import { createRequire } from 'node:module';
import type { Bstr } from '../shared/bstr.js';

declare const devSessionBrand: unique symbol;
export type DevSession = { readonly [devSessionBrand]: true };

/** The helper threads' queues (fuse-dev.c LANE_ENTRY, LANE_PAGES). */
export const Lane = { ENTRY: 0, PAGES: 1 } as const;
export type Lane = (typeof Lane)[keyof typeof Lane];

export interface FuseDevAddon {
  /** /dev/fuse opened O_RDWR|O_CLOEXEC; throws with the reason */
  open(): number;
  /** closes a device fd whose mount failed */
  closeFd(fd: number): void;
  /** a unix socket pair [ours (close-on-exec), theirs] for fusermount3 */
  socketpair(): [number, number];
  /** the fd received over `sock` (SCM_RIGHTS, non-blocking), or -errno */
  recvFd(sock: number): number;
  /** mount(2): 0 or -errno */
  mount(source: Bstr, target: Bstr, fstype: string, flags: number, data: Bstr): number;
  /**
   * Polls `fd` on this thread's loop. On readable, reads requests (until EAGAIN or
   * lens.length of them) into slots of `slotSize` bytes of `buf`, their lengths into
   * `lens`, then calls onBatch(n) once; the slots are reused after it returns.
   * onExit() runs once, when the kernel says the mount is gone (ENODEV) or on close.
   */
  start(fd: number, buf: Buffer, slotSize: number, lens: Uint32Array, onBatch: (n: number) => void, onExit: () => void): DevSession;
  /** one writev(2) of head[0, headLen) and data[0, dataLen): bytes written or -errno */
  write(s: DevSession, head: Buffer, headLen: number, data: Buffer | undefined, dataLen: number): number;
  /**
   * FUSE_DEV_IOC_BACKING_OPEN: registers the open file `fd` for passthrough; the backing id
   * (> 0) an OPEN reply names, or -errno (-EPERM: not negotiated or no CAP_SYS_ADMIN in the
   * initial user namespace; -ELOOP: its file system is stacked max_stack_depth deep).
   */
  backingOpen(s: DevSession, fd: number): number;
  /** FUSE_DEV_IOC_BACKING_CLOSE: 0 or -errno; files already opened through the id keep working */
  backingClose(s: DevSession, id: number): number;
  /**
   * Queues one notification (msg[0, len), copied) for the helper thread of `lane`, which
   * writes them in order: those that take inode locks in the kernel, which the JS thread
   * must never wait for. Lane.ENTRY: INVAL_ENTRY and DELETE (a directory's i_rwsem);
   * Lane.PAGES: INVAL_INODE of pages and the answers queued behind them, never behind a
   * wait for a directory (fuse-dev.c, above notifier). 0 or -errno.
   */
  notify(s: DevSession, msg: Buffer, len: number, lane: Lane): number;
  /** what the helper threads did, both lanes: [queued, written, failed, last errno] */
  notified(s: DevSession): [number, number, number, number];
  /**
   * FUSE over io_uring, before INIT is answered with it: a ring, its eventfd (polled on this
   * thread's loop) and `depth` entries of `payloadSize` bytes per queue (one queue per
   * possible CPU). Requests the ring delivers reach onBatch packed as read(2) gives them, and
   * write() commits an answer to one through the ring. The queue count, or -errno.
   */
  uringSetup(s: DevSession, payloadSize: number, depth: number): number;
  /** after INIT was answered with FUSE_OVER_IO_URING: REGISTER every entry; 0 or -errno */
  uringRegister(s: DevSession): number;
  /** [queues, entries, requests, commits, batches, first failure -errno, entries given back] (zeros without a ring) */
  uringStats(s: DevSession): [number, number, number, number, number, number, number];
  /** ends the session (closes the device); with a path, detaches that mount too (MNT_DETACH) */
  close(s: DevSession, detachPath?: Bstr): void;
}

const require = createRequire(import.meta.url);

function load(): FuseDevAddon {
  // dist/native/fuse-dev.js and src/native/fuse-dev.ts both sit two levels below the package root
  const candidates = ['../../src/native/build/Release/stratafs_fusedev.node', './build/Release/stratafs_fusedev.node'];
  let first: unknown;
  for (const c of candidates) {
    try {
      return require(c) as FuseDevAddon;
    } catch (e) {
      first ??= e;
    }
  }
  throw new Error(`the /dev/fuse addon is not built (npm install runs src/native/build.mjs): ${first instanceof Error ? first.message : String(first)}`);
}

let loaded: FuseDevAddon | undefined;
/** loaded on first use: a fuse_api=highlevel mount never needs it */
export function fuseDev(): FuseDevAddon {
  return (loaded ??= load());
}
