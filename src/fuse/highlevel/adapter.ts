/**
 * The FUSE adapter: maps each callback of the (patched) fuse-native binding to
 * one call of the overlay core (OverlayOps) and nothing more.
 *
 * - Errors become -errno in exactly one function, toErrno(): an FsError carries
 *   its errno; anything else is a bug, reported as EIO and logged with its stack.
 * - The caller (uid, gid, pid, umask) is read synchronously at handler entry:
 *   the binding overwrites it for the next request as soon as we yield.
 * - One wrapper, settle(), ends every request: it counts the op by type with its
 *   latency (for `stratafs stats`) and, only with -d, logs the op with its result
 *   and duration. Without -d the logging branch is a constant test.
 */
import { performance } from 'node:perf_hooks';
import type { Bstr } from '../../shared/bstr.js';
import { toText } from '../../shared/bstr.js';
import { FsError } from '../../shared/errors.js';
import type { IdView } from '../idmap.js';
import { dirListing, osErrName, RequestStats, startCall, statvfsArray, toErrno, type OpSummary } from '../requests.js';
import type { Caller, HandleOps, MergedEntry, OpenResult, OverlayOps, TimeSet } from '../../core/types.js';
import { HiddenNames } from './hidden-names.js';
import { StatIdx } from '../../native/sys-api.js';
import { OpenFlags, UTIME_NOW, UTIME_OMIT, type FuseHandlers } from '../../native/fuse.js';
import { ENOSYS } from '../../shared/constants.js';


/** A negative errno, or 0 */
type Err = number;
type Cb = (err: Err) => void;

/** fallocate is not part of the OverlayOps contract yet: used when the core has it. */
interface WithFallocate {
  fallocate(path: Bstr | null, fh: number, mode: number, offset: number, length: number): Promise<void>;
}
const hasFallocate = (o: object): o is WithFallocate => typeof (o as Partial<WithFallocate>).fallocate === 'function';

// ---------------------------------------------------------------------------

export interface AdapterOptions {
  debug: boolean;
  log: (line: string) => void;
  /** the caller of the request being dispatched (binding's fuse_get_context), valid synchronously at handler entry */
  context: () => Caller;
  /** owners as shown (uidmapping=, squash_to_*, static_nlink: idmap.ts); undefined: as on disk */
  ids?: IdView;
  /** noxattrs=1: every xattr request fails with ENOSYS */
  noXattrs?: boolean;
}

export interface Adapter {
  handlers: FuseHandlers;
  opStats(): Record<string, OpSummary>;
}



export function createAdapter(core: OverlayOps & HandleOps, opt: AdapterOptions): Adapter {
  const { log, ids } = opt;
  // libfuse's .fuse_hidden names of files unlinked while open are served here, not by the core
  const ops = new HiddenNames(core);
  // The core stores on-disk ids: a mapped mount translates the caller on the way in,
  // and every attribute answer on the way out (libfuse's high-level API asks getattr
  // after mkdir, create, chown, ...: these two handlers are all there is).
  const context = ids === undefined ? opt.context : (): Caller => ids.callerIn(opt.context());
  const shown = ids === undefined ? (a: Float64Array): Float64Array => a : (a: Float64Array): Float64Array => { ids.attrOut(a); return a; };
  const noXattrs = opt.noXattrs === true;
  const debug = opt.debug;
  const requests = new RequestStats();
  const counter = (op: string) => requests.counter(op);

  function debugLine(op: string, path: Bstr | null, detail: string, result: number, us: number): void {
    const res = result < 0 ? `-${osErrName(-result)}` : String(result);
    log(`${new Date().toISOString()} ${op} ${path === null ? '-' : JSON.stringify(toText(path))}${detail ? ' ' + detail : ''} -> ${res} ${us.toFixed(0)}µs`);
  }

  /**
   * Runs one core call and answers the kernel: counts, logs with -d, converts a
   * failure. `result` maps the value to the number reported in stats and logs
   * (bytes for read/write, fh for open), `reply` answers success.
   */
  function settle<T>(
    op: string, path: Bstr | null, detail: (() => string) | string, cb: Cb,
    call: () => Promise<T>, reply: (v: T) => void, result?: (v: T) => number,
  ): void {
    const c = counter(op);
    const t0 = performance.now();
    startCall(call).then(
      (v) => {
        const us = (performance.now() - t0) * 1000;
        const r = result === undefined ? 0 : result(v);
        c.add(us, r);
        if (debug) debugLine(op, path, typeof detail === 'string' ? detail : detail(), r, us);
        reply(v);
      },
      (e: unknown) => {
        const us = (performance.now() - t0) * 1000;
        const err = toErrno(e, op, path, log);
        c.add(us, err);
        if (debug) debugLine(op, path, typeof detail === 'string' ? detail : detail(), err, us);
        cb(err);
      },
    );
  }

  const done = (cb: Cb) => (): void => cb(0);
  const oct = (n: number): string => '0' + n.toString(8);
  const time = (sec: number, nsec: number): TimeSet => (nsec === UTIME_NOW ? 'now' : nsec === UTIME_OMIT ? 'omit' : { sec, nsec });
  const openFlags = (r: OpenResult): number => (r.keepCache ? OpenFlags.KEEP_CACHE : 0) | (r.directIo ? OpenFlags.DIRECT_IO : 0);
  const parentOf = (p: Bstr): Bstr => {
    const i = p.lastIndexOf('/');
    return i <= 0 ? '/' : p.slice(0, i);
  };
  const named = (p: Bstr | null, op: string): Bstr => {
    if (p === null) throw new FsError('ENOENT', '', op, 'file unlinked while open');
    return p;
  };
  const inoOf = async (p: Bstr | null): Promise<number> => {
    if (p === null) return 1;
    try {
      return (await ops.getattr(p))[StatIdx.ino]!;
    } catch {
      return 1;
    }
  };

  const handlers: FuseHandlers = {
    init(cb) { cb(0); },

    getattr(path, cb) {
      settle('getattr', path, '', cb, () => ops.getattr(path), (st) => cb(0, shown(st)));
    },
    fgetattr(path, fh, cb) {
      settle('fgetattr', path, () => `fh=${fh}`, cb, () => ops.fgetattr(path, fh), (st) => cb(0, shown(st)));
    },
    readlink(path, cb) {
      settle('readlink', path, '', cb, () => ops.readlink(path), (t) => cb(0, t));
    },

    opendir(path, flags, cb) {
      const caller = context();
      settle('opendir', path, () => `flags=0x${flags.toString(16)}`, cb, () => ops.opendir(path, caller),
        (fh) => cb(0, fh, 0), (fh) => fh);
    },
    readdir(path, fh, cb) {
      // fh is what opendir answered: the listing the core built for this handle.
      settle('readdir', path, () => `fh=${fh}`, cb, async (): Promise<[MergedEntry[], number, number]> => {
        const entries = await ops.readdir(path, fh);
        // POSIX getdents lists . and .. ; the core's merged listing holds only real names.
        const self = await inoOf(path);
        const parent = path === null || path === '/' ? self : await inoOf(parentOf(path));
        return [entries, self, parent];
      }, ([entries, self, parent]) => {
        const l = dirListing(self, parent, entries, 2);
        cb(0, l.names, l.modeIno);
      }, ([entries]) => entries.length);
    },
    releasedir(path, fh, cb) {
      settle('releasedir', path, () => `fh=${fh}`, cb, () => ops.releasedir(path, fh), done(cb));
    },
    fsyncdir(path, datasync, fh, cb) {
      settle('fsyncdir', path, () => `fh=${fh} datasync=${datasync}`, cb, () => ops.fsyncdir(path, fh, !!datasync), done(cb));
    },

    open(path, flags, cb) {
      const caller = context();
      settle('open', path, () => `flags=0x${flags.toString(16)}`, cb, () => ops.open(path, flags, caller),
        (r) => cb(0, r.fh, openFlags(r)), (r) => r.fh);
    },
    create(path, mode, flags, cb) {
      const caller = context();
      settle('create', path, () => `mode=${oct(mode)} flags=0x${flags.toString(16)}`, cb, () => ops.create(path, mode, flags, caller),
        (r) => cb(0, r.fh, openFlags(r)), (r) => r.fh);
    },
    read(path, fh, buf, len, pos, cb) {
      settle('read', path, () => `fh=${fh} len=${len} pos=${pos}`, cb, () => ops.read(path, fh, buf, len, pos), (n) => cb(n), (n) => n);
    },
    write(path, fh, buf, len, pos, cb) {
      settle('write', path, () => `fh=${fh} len=${len} pos=${pos}`, cb, () => ops.write(path, fh, buf, len, pos), (n) => cb(n), (n) => n);
    },
    flush(path, fh, cb) {
      settle('flush', path, () => `fh=${fh}`, cb, () => ops.flush(path, fh), done(cb));
    },
    fsync(path, datasync, fh, cb) {
      settle('fsync', path, () => `fh=${fh} datasync=${datasync}`, cb, () => ops.fsync(path, fh, !!datasync), done(cb));
    },
    release(path, fh, cb) {
      settle('release', path, () => `fh=${fh}`, cb, () => ops.release(path, fh), done(cb));
    },
    ftruncate(path, fh, size, cb) {
      settle('ftruncate', path, () => `fh=${fh} size=${size}`, cb, () => ops.ftruncate(path, fh, size), done(cb));
    },

    truncate(path, size, cb) {
      const caller = context();
      settle('truncate', path, () => `size=${size}`, cb, () => ops.truncate(path, size, caller), done(cb));
    },
    // Without hard_remove libfuse names a file unlinked while open `.fuse_hidden…`
    // and passes that name (highlevel/hidden-names.ts), so path is never null here; should
    // it be (a hard_remove mount), these fail with ENOENT instead of crashing.
    chmod(path, mode, cb) {
      const caller = context();
      settle('chmod', path, () => `mode=${oct(mode)}`, cb, () => ops.chmod(named(path, 'chmod'), mode, caller), done(cb));
    },
    chown(path, uid, gid, cb) {
      const caller = context();
      const u = ids === undefined ? uid : ids.uidIn(uid);
      const g = ids === undefined ? gid : ids.gidIn(gid);
      settle('chown', path, () => `uid=${uid} gid=${gid}`, cb, () => ops.chown(named(path, 'chown'), u, g, caller), done(cb));
    },
    utimens(path, aSec, aNsec, mSec, mNsec, cb) {
      const caller = context();
      const at = time(aSec, aNsec);
      const mt = time(mSec, mNsec);
      settle('utimens', path, () => `atime=${JSON.stringify(at)} mtime=${JSON.stringify(mt)}`, cb,
        () => ops.utimens(named(path, 'utimens'), at, mt, caller), done(cb));
    },

    mkdir(path, mode, cb) {
      const caller = context();
      settle('mkdir', path, () => `mode=${oct(mode)}`, cb, () => ops.mkdir(path, mode, caller), done(cb));
    },
    mknod(path, mode, dev, cb) {
      const caller = context();
      settle('mknod', path, () => `mode=${oct(mode)} dev=${dev}`, cb, () => ops.mknod(path, mode, dev, caller), done(cb));
    },
    symlink(target, path, cb) {
      const caller = context();
      settle('symlink', path, () => `target=${JSON.stringify(toText(target))}`, cb, () => ops.symlink(target, path, caller), done(cb));
    },
    link(existing, path, cb) {
      const caller = context();
      settle('link', path, () => `existing=${JSON.stringify(toText(existing))}`, cb, () => ops.link(existing, path, caller), done(cb));
    },
    unlink(path, cb) {
      const caller = context();
      settle('unlink', path, '', cb, () => ops.unlink(path, caller), done(cb));
    },
    rmdir(path, cb) {
      const caller = context();
      settle('rmdir', path, '', cb, () => ops.rmdir(path, caller), done(cb));
    },
    rename(from, to, cb) {
      const caller = context();
      // libfuse 2.9 (protocol 7.19) carries no renameat2 flags: the kernel refuses them before we see the call.
      settle('rename', from, () => `to=${JSON.stringify(toText(to))}`, cb, () => ops.rename(from, to, 0, caller), done(cb));
    },

    getxattr(path, name, _position, cb) {
      if (noXattrs) { cb(-ENOSYS); return; }
      settle('getxattr', path, () => `name=${JSON.stringify(toText(name))}`, cb, () => ops.getxattr(path, name), (v) => cb(0, v), (v) => v.length);
    },
    listxattr(path, cb) {
      if (noXattrs) { cb(-ENOSYS); return; }
      settle('listxattr', path, '', cb, () => ops.listxattr(path), (l) => cb(0, l), (l) => l.length);
    },
    setxattr(path, name, value, _position, flags, cb) {
      if (noXattrs) { cb(-ENOSYS); return; }
      const caller = context();
      settle('setxattr', path, () => `name=${JSON.stringify(toText(name))} size=${value.length} flags=${flags}`, cb,
        () => ops.setxattr(path, name, value, flags, caller), done(cb));
    },
    removexattr(path, name, cb) {
      if (noXattrs) { cb(-ENOSYS); return; }
      const caller = context();
      settle('removexattr', path, () => `name=${JSON.stringify(toText(name))}`, cb, () => ops.removexattr(path, name, caller), done(cb));
    },
    statfs(path, cb) {
      settle('statfs', path, '', cb, () => ops.statfs(path), (s) => cb(0, statvfsArray(s)));
    },
  };

  if (hasFallocate(core)) {
    handlers.fallocate = (path, fh, mode, offset, length, cb) => {
      settle('fallocate', path, () => `fh=${fh} mode=${mode} offset=${offset} len=${length}`, cb,
        () => core.fallocate(path, fh, mode, offset, length), done(cb));
    };
  }

  return {
    handlers,
    opStats: () => requests.summary(),
  };
}
