/**
 * Serving a mount in this process: open the overlay core, build the adapter,
 * mount through the binding and wait for the kernel's INIT. Used by the daemon,
 * by `-f`, and by the library entry (index.ts).
 *
 * This process answers the mount's requests on its event loop: it must never
 * touch the mountpoint synchronously (an fs.*Sync call on it would wait for an
 * answer only this same thread can give). Unmounting goes through native/fuse-mount.ts
 * unmountPath (umount2 on a thread of the addon, or fusermount3 as a child).
 */
import { openOverlay, type Overlay } from '../core/overlay.js';
import { fromText } from '../shared/bstr.js';
import { isFsError } from '../shared/errors.js';
import { checkCanMount, unmountPath } from '../native/fuse-mount.js';
import type { Session } from '../fuse/lowlevel/contract.js';
import { inoOf } from '../native/sys-api.js';
import { createLowLevelAdapter } from '../fuse/lowlevel/adapter.js';
import { kernelMount } from '../fuse/kernel/mount.js';
import { kernelServer, negotiated, notified } from '../fuse/kernel/server.js';
import { cacheBounds } from '../core/config.js';
import { idView, readOverflowIds } from '../fuse/idmap.js';
import type { MountConfig } from '../fuse/config.js';
import type { DaemonStats } from './stats.js';
import type { CacheFill } from '../core/types.js';
import { memoryStats } from './memory.js';

export interface Served {
  readonly config: MountConfig;
  /** with gc: the heap figure after a full collection (memory.ts) */
  stats(opts?: { gc: boolean }): DaemonStats;
  describe(): unknown;
  /** unmount (async, never touching the mountpoint) and close the core; idempotent */
  unmount(): Promise<void>;
  /** resolves once the FUSE session has ended (our unmount or an outside umount) and the core is closed */
  readonly ended: Promise<void>;
}

/** A mount that could not be set up: one line naming the problem and the path. */
export class ServeError extends Error {
  override name = 'ServeError';
}

function explain(e: unknown, c: MountConfig): string {
  if (isFsError(e)) {
    if (e.code === 'EBUSY') {
      return `upperdir/workdir is in use by another stratafs mount: ${c.workPath ?? c.upperPath ?? e.path}`;
    }
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function serve(config: MountConfig, log: (line: string) => void): Promise<Served> {
  let overlay: Overlay;
  try {
    overlay = await openOverlay(config, log);
  } catch (e) {
    throw new ServeError(explain(e, config));
  }
  const started = Date.now();
  let closed = false;
  let markEnded: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => { markEnded = resolve; });
  const closeCore = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    try {
      await overlay.close();
    } catch (e) {
      log(`stratafs: closing the overlay: ${e instanceof Error ? e.message : String(e)}`);
    }
    markEnded();
  };

  let markExited: () => void = () => undefined;
  const exited = new Promise<void>((resolve) => { markExited = resolve; });
  const onExit = (): void => {
    markExited();
    void closeCore();
  };
  let opStats: () => DaemonStats['ops'];
  let nodeCount: () => number | undefined = () => undefined;
  let nodePaths: () => CacheFill | undefined = () => undefined;
  let pending: () => number | undefined = () => undefined;
  let fuseInit: () => DaemonStats['fuse'] = () => undefined;
  try {
    // root mounts with mount(2) (no FUSE package needed); a plain user through a setuid helper:
    // fusermount3 for stratafs's server (fuse/kernel/mount.ts), fusermount for libfuse 2.9
    await checkCanMount(config.fuseApi === 'highlevel' ? 'fusermount' : 'fusermount3');
    // uidmapping=, squash_to_*, static_nlink: translated at the FUSE boundary (fuse/idmap.ts)
    const ids = idView(config.idMapping, config.staticNlink, config.idMapping?.uid || config.idMapping?.gid ? readOverflowIds() : undefined);
    if (config.fuseApi === 'highlevel') {
      // fuse-native and its adapter load only for this API (the one import of the
      // high-level front-end): the default mount path never pays for them.
      const { mountHighLevel } = await import('../fuse/highlevel/mount.js');
      opStats = (await mountHighLevel(overlay, config, { log, ids, onExit })).opStats;
    } else {
      const root = await overlay.getattr('/');
      const ll = kernelServer;
      const adapter = createLowLevelAdapter(overlay, {
        debug: config.debug,
        log,
        entryTimeout: config.timeout,
        attrTimeout: config.attrTimeout,
        negativeTimeout: config.negativeTimeout,
        rootIno: inoOf(root),
        pathCacheBytes: cacheBounds(config.lookupCacheSize).nodePaths,
        copyUps: () => overlay.ctx.counters.copyUps,
        ids,
        noXattrs: config.noXattrs,
        addon: ll,
        passthrough: config.passthroughLower ? 'all' : 'upper',
      });
      const session: Session = ll.mount(fromText(config.mountpoint), { ...kernelMount(config), log }, adapter.handlers, adapter.ctx, onExit);
      adapter.attach(session);
      await adapter.initialized;
      const init = negotiated(session);
      if (init !== undefined) {
        fuseInit = () => ({
          minor: init.minor, flags: init.flags, flags2: init.flags2, features: init.features,
          kernelMinor: init.kernelMinor, kernelFlags: init.kernelFlags, kernelFlags2: init.kernelFlags2, maxWrite: init.maxWrite,
          batches: init.batches, requests: init.requests, uring: init.uring?.(),
          notifications: notified(session),
          passthrough: init.passthrough !== undefined
            ? { maxStackDepth: init.maxStackDepth, ...init.passthrough() }
            : init.passthroughOff !== undefined ? { off: init.passthroughOff } : undefined,
        });
      }
      if (init !== undefined && config.debug) {
        log(`FUSE INIT: kernel 7.${init.kernelMinor} flags=0x${init.kernelFlags.toString(16)} flags2=0x${init.kernelFlags2.toString(16)}; answered 7.${init.minor} flags=0x${init.flags.toString(16)} flags2=0x${init.flags2.toString(16)} max_write=${init.maxWrite} max_readahead=${init.maxReadahead}; features: ${init.features.join(' ') || 'none'}${init.maxStackDepth > 0 ? `; max_stack_depth=${init.maxStackDepth}` : ''}${init.passthroughOff !== undefined ? `; passthrough off: ${init.passthroughOff}` : ''}`);
      }
      opStats = adapter.opStats;
      nodeCount = adapter.nodeCount;
      nodePaths = adapter.nodePaths;
      pending = () => ll.pending();
    }
  } catch (e) {
    await closeCore();
    throw new ServeError(`cannot mount ${config.mountpoint}: ${e instanceof Error ? e.message : String(e)}`);
  }

  let unmounting: Promise<void> | undefined;
  return {
    config,
    stats: (opts) => ({
      mountpoint: config.mountpoint,
      pid: process.pid,
      uptimeS: (Date.now() - started) / 1000,
      ops: opStats(),
      nodes: nodeCount(),
      nodePaths: nodePaths(),
      pending: pending(),
      fuse: fuseInit(),
      overlay: overlay.stats(),
      memory: memoryStats(opts?.gc === true),
    }),
    describe: () => ({
      mountpoint: config.mountpoint,
      pid: process.pid,
      lowerdirs: config.lowerPaths,
      upperdir: config.upperPath ?? null,
      workdir: config.workPath ?? null,
      options: {
        readOnly: config.flags.readOnly, redirectDir: config.redirectDir, userxattr: config.userxattr,
        fuseApi: config.fuseApi, fuseMinor: config.fuseMinor ?? null, fuseOff: config.fuseOff, timeout: config.timeout, attrTimeout: config.attrTimeout, negativeTimeout: config.negativeTimeout, lookupCache: config.lookupCacheSize,
        fsync: config.fsync, allowOther: config.allowOther, defaultPermissions: config.defaultPermissions,
        idMapping: config.idMapping ?? null, staticNlink: config.staticNlink, xattrPermissions: config.xattrPermissions ?? 0, noXattrs: config.noXattrs,
        flags: config.flags, fsname: config.fsname,
      },
      overlay: overlay.describe(),
    }),
    unmount: () => {
      unmounting ??= (async () => {
        try {
          // umount2 from a thread of the addon, or fusermount3 as a child (never on this loop):
          // the kernel then ends the session (ENODEV)
          await unmountPath(fromText(config.mountpoint));
          await exited;
        } catch (e) {
          unmounting = undefined; // busy now, may work later
          throw e;
        }
        await ended;
      })();
      return unmounting;
    },
    ended,
  };
}
