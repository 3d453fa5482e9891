/**
 * stratafs's own FUSE server on the kernel protocol (native-notes/fuse-server.md):
 * the LowLevelAddon contract of fuse/lowlevel/contract.ts (handlers in, reply functions
 * out) without libfuse: the server of every mount but fuse_api=highlevel.
 *
 * native/fuse-dev.c reads requests in batches, packed into one Buffer, and calls
 * onBatch once per batch; each request is decoded here and handed to its handler
 * with a request id; each reply is encoded into one scratch Buffer and written
 * with one writev(2). Every request but FORGET, BATCH_FORGET and INTERRUPT is
 * answered exactly once; a second answer, or one after the session ended, is
 * dropped. Everything runs on the JS thread.
 */
import type { Bstr } from '../../shared/bstr.js';
import { EIO, ENOENT, ENOSYS, EPROTO, ERANGE } from '../../shared/constants.js';
import type { LowLevelAddon, LowLevelHandlers, NodeId, ReqId, Session } from '../lowlevel/contract.js';
import { Lane, fuseDev, type DevSession } from '../../native/fuse-dev.js';
import { unmountPath } from '../../native/fuse-mount.js';
import { mountDevice, type KernelMount } from './mount.js';
import { Trace } from './trace.js';
import {
  ATTR_OUT, ENTRY_OUT, FATTR_FH, FATTR_KILL_SUIDGID, FSYNC_FDATASYNC, WRITE_KILL_SUIDGID, FUSE_KERNEL_VERSION, FUSE_MAX_MINOR, FUSE_MIN_MINOR,
  GETATTR_FH, IN_HEADER, INIT_OUT, InitFlag, KSTATFS, Notify, Op, OPEN_OUT, OUT_HEADER, RW_IN, SETATTR_PASSED,
  cstr, i64, offsetAt, putAttr, putHeader, putI64, putStatfs, putTimeout, putU64, u64,
} from './wire.js';
import { settle } from './features.js';
import { PassthroughTable, type PassthroughStats } from './passthrough.js';
import { readFileSync } from 'node:fs';
import { SymlinkWatch } from './symlinks.js';
import { dataBuffers } from '../buffer-pool.js';
import { BATCH, BIG_WRITE, initSizes, maxPagesPossible, nextRequest, readRoom } from './sizes.js';
import { encodeDir, encodeDirPlus, fopenFlags, isDotOrDotDot } from './readdir.js';
import { STAT_LEN } from '../../native/sys-api.js';
import { COUNT_OUT, OFFSET_OUT, STATX_OUT, fileRequest, putCount, putOffset, putStatx } from './file-requests.js';


/** FUSE over io_uring, as `stratafs stats` shows it */
export interface UringStats {
  queues: number;
  entries: number;
  /** requests the ring delivered, answers committed through it, wakeups that took them */
  requests: number;
  commits: number;
  batches: number;
  /** the first error a command completed with (a refused REGISTER: the kernel fell back to /dev/fuse) */
  failed: string | undefined;
}

/**
 * Ring entries per queue (one queue per possible CPU): requests in flight per CPU before
 * the kernel queues more. Each holds a payload buffer of max_write, touched as far as used.
 */
const URING_DEPTH = 8;

/** what INIT settled, for `-d` and stats */
export interface Negotiated {
  kernelMinor: number;
  kernelFlags: number;
  /** fuse_init_in.flags2 (0 when the kernel did not set INIT_EXT) */
  kernelFlags2: number;
  minor: number;
  flags: number;
  flags2: number;
  /** the features INIT turned on (features.ts), in their table's order */
  features: readonly string[];
  maxWrite: number;
  maxReadahead: number;
  /** fuse_init_out.max_stack_depth answered with passthrough (0 without) */
  maxStackDepth: number;
  /** why passthrough is off though offered, if the server switched it off itself */
  passthroughOff: string | undefined;
  /** opens passed through and fallbacks (undefined without passthrough) */
  passthrough: (() => PassthroughStats) | undefined;
  /** FUSE over io_uring: the ring's counts (undefined unless io_uring is on) */
  uring: (() => UringStats) | undefined;
  /** wakeups that read requests, and the requests they read: the average batch */
  batches: number;
  requests: number;
}

interface KSession {
  dev: DevSession | undefined;
  mountpoint: Bstr;
  /** -d: the request log (trace.ts), undefined without -d */
  trace: Trace | undefined;
  /** mounted through fusermount3 (a plain user): unmounted through it too */
  viaFusermount: boolean;
  handlers: LowLevelHandlers;
  ctx: Int32Array;
  onExit: () => void;
  ended: boolean;
  maxWrite: number;
  /** fuse_minor=, else the newest this server knows */
  maxMinor: number;
  /** fuse_off=: features not to ask for (and passthrough where the kernel would refuse it) */
  off: ReadonlySet<string>;
  /** why the server switched passthrough off itself (no CAP_SYS_ADMIN in the initial user namespace) */
  passthroughOff: string | undefined;
  /** fuse_stack_depth=: max_stack_depth to answer with passthrough */
  stackDepth: number;
  /** set at INIT when passthrough is on */
  pt: PassthroughTable | undefined;
  log: (line: string) => void;
  /** request_timeout=: seconds (1 to 65535), 0 for none */
  requestTimeout: number;
  negotiated: Negotiated | undefined;
  /** with cache_symlinks: what LOOKUP last said about each symlink node */
  symlinks?: SymlinkWatch;
  /** whether INIT turned a feature on (features.ts) */
  on: (feature: string) => boolean;
  /** kept alive while mounted: the addon writes requests into it */
  buf: Buffer;
  lens: Uint32Array;
  slot: number;
}

// Pending requests: JS holds an index, the unique lives here (two 32-bit halves).
const reqLo: number[] = [];
const reqHi: number[] = [];
const reqSession: (KSession | undefined)[] = [];
/** the node an OPEN names (its reply registers the file with the passthrough table); -1 for every other request (OPENDIR) */
const reqNode: number[] = [];
const freeIds: number[] = [];
let taken = 0;

function take(s: KSession, lo: number, hi: number): ReqId {
  const id = freeIds.length > 0 ? freeIds.pop()! : reqLo.length;
  reqLo[id] = lo;
  reqHi[id] = hi;
  reqSession[id] = s;
  reqNode[id] = -1;
  taken++;
  return id;
}

/** WRITE data by request id, back to the pool once the request is answered */
const held: (Buffer | undefined)[] = [];

/** the session of a pending request, released; undefined if none is pending under id */
function release(id: ReqId): KSession | undefined {
  const s = reqSession[id];
  if (s === undefined) return undefined;
  reqSession[id] = undefined;
  const h = held[id];
  if (h !== undefined) { held[id] = undefined; dataBuffers.give(h); }
  freeIds.push(id);
  taken--;
  return s.ended ? undefined : s;
}

function dropPending(s: KSession): void {
  for (let i = 0; i < reqSession.length; i++) {
    if (reqSession[i] === s) { reqSession[i] = undefined; held[i] = undefined; freeIds.push(i); taken--; }
  }
}

// One scratch buffer for every reply: writes are synchronous. Grows for large directory/xattr replies.
let out = Buffer.alloc(OUT_HEADER + 4096);
function scratch(n: number): Buffer {
  if (out.length < n) out = Buffer.alloc(Math.max(n, out.length * 2));
  return out;
}

function send(s: KSession, len: number, data?: Buffer, dataLen = 0): number {
  if (s.dev === undefined || s.ended) return 0;
  const r = fuseDev().write(s.dev, out, len, data, dataLen);
  // ENOENT: the request was interrupted and is gone; the kernel needs nothing more
  if (r < 0 && r !== -ENOENT) process.stderr.write(`stratafs: writing /dev/fuse: errno ${-r}\n`);
  return r;
}

/** header + `argLen` bytes already encoded at OUT_HEADER */
/** header + `argLen` bytes already encoded at OUT_HEADER; the write's result (-errno), 0 if nothing was written */
function reply(id: ReqId, argLen: number, data?: Buffer, dataLen = 0): number {
  const lo = reqLo[id]!;
  const hi = reqHi[id]!;
  const s = release(id);
  if (s === undefined) return 0;
  putHeader(out, OUT_HEADER + argLen + dataLen, 0, lo, hi);
  const r = send(s, OUT_HEADER + argLen, data, dataLen);
  if (s.trace !== undefined) s.trace.end(id, argLen + dataLen);
  return r;
}

/** the session of a pending request that is still being served */
const pendingSession = (id: ReqId): KSession | undefined => {
  const s = reqSession[id];
  return s === undefined || s.ended ? undefined : s;
};

/** An open reply the kernel never got (the request was interrupted): it sends no RELEASE for it. */
function openLost(s: KSession | undefined, node: number, r: number, fh: number): void {
  if (r < 0 && node >= 0) s?.pt?.released(fh);
}

function replyError(id: ReqId, errno: number): void {
  const lo = reqLo[id]!;
  const hi = reqHi[id]!;
  const s = release(id);
  if (s === undefined) return;
  // as libfuse: an errno the protocol cannot carry becomes ERANGE
  const e = errno < 0 || errno >= 1000 ? ERANGE : errno;
  putHeader(out, OUT_HEADER, -e, lo, hi);
  send(s, OUT_HEADER);
  if (s.trace !== undefined) s.trace.end(id, -e);
}

function putEntry(p: number, ino: NodeId, generation: number, attr: Float64Array, attrTimeout: number, entryTimeout: number): void {
  putU64(out, p, ino);
  putU64(out, p + 8, generation);
  putTimeout(out, p + 16, p + 32, entryTimeout);
  putTimeout(out, p + 24, p + 36, attrTimeout);
  if (ino !== 0) putAttr(out, p + 40, attr);
  else out.fill(0, p + 40, p + ENTRY_OUT);
}

/**
 * fuse_open_out for file `fh` of `node`: with passthrough on, the table chooses the mode
 * (passthrough.ts) from the daemon's fd of the file (`backingFd`, -1: may not pass through).
 */
function putOpen(s: KSession | undefined, p: number, node: number, fh: number, openFlags: number, backingFd: number): void {
  putU64(out, p, fh);
  // the contract's bit 1 keep_cache, bit 2 direct_io, bit 3 cache_dir (readdir.ts)
  let flags = fopenFlags(openFlags);
  let id = 0;
  if (s?.pt !== undefined && node >= 0) [flags, id] = s.pt.opened(node, fh, flags, backingFd);
  out.writeUInt32LE(flags, p + 8);
  out.writeInt32LE(id, p + 12);
}

const NO_ATTR = new Float64Array(STAT_LEN);

// ---------------------------------------------------------------------------
// requests

/** INIT: the highest minor both know (capped by fuse_minor=); of the features offered, those not switched off (features.ts). */
function init(s: KSession, b: Buffer, a: number, lo: number, hi: number): void {
  const major = b.readUInt32LE(a);
  const kminor = b.readUInt32LE(a + 4);
  const maxReadahead = b.readUInt32LE(a + 8);
  const kflags = b.readUInt32LE(a + 12);
  // fuse_init_in.flags2 exists from 7.36 and counts only with INIT_EXT
  const kflags2 = kminor >= 36 && (kflags & InitFlag.INIT_EXT) !== 0 ? b.readUInt32LE(a + 16) : 0;
  const o = scratch(OUT_HEADER + INIT_OUT);
  o.fill(0, 0, OUT_HEADER + INIT_OUT);
  if (major < FUSE_KERNEL_VERSION || (major === FUSE_KERNEL_VERSION && kminor < FUSE_MIN_MINOR)) {
    putHeader(o, OUT_HEADER, -EPROTO, lo, hi);
    send(s, OUT_HEADER);
    process.stderr.write(`stratafs: the kernel speaks FUSE ${major}.${kminor}, this server needs 7.${FUSE_MIN_MINOR} or newer\n`);
    return;
  }
  // a newer major: say ours, the kernel asks again
  const minor = major > FUSE_KERNEL_VERSION ? s.maxMinor : Math.min(kminor, s.maxMinor);
  let settled = major > FUSE_KERNEL_VERSION ? { flags: 0, flags2: 0, on: [] } : settle(minor, kflags, kflags2, s.off);
  let sizes = initSizes(settled.on, s.maxWrite, s.slot);
  // the ring is made before INIT names it: from the answer on, the kernel holds every request
  // back until each queue has an entry (fuse-dev.c), so a ring that cannot be made means no io_uring
  if (settled.on.includes('io_uring') && s.dev !== undefined) {
    // the kernel's max_payload_sz: max(8 KiB, max_write, max_pages pages; 32 without MAX_PAGES)
    const q = fuseDev().uringSetup(s.dev, Math.max(8192, sizes.maxWrite, (sizes.maxPages || 32) * 4096), URING_DEPTH);
    if (q < 0) {
      s.log(`stratafs: FUSE over io_uring not used: setting up the ring failed (errno ${-q})`);
      settled = settle(minor, kflags, kflags2, new Set([...s.off, 'io_uring']));
      sizes = initSizes(settled.on, s.maxWrite, s.slot);
    }
  }
  const flags = settled.flags;
  const p = OUT_HEADER;
  o.writeUInt32LE(FUSE_KERNEL_VERSION, p);
  o.writeUInt32LE(minor, p + 4);
  o.writeUInt32LE(maxReadahead, p + 8);
  o.writeUInt32LE(flags, p + 12);
  // max_background, congestion_threshold 0: the kernel's defaults, as libfuse 2.9
  o.writeUInt32LE(sizes.maxWrite, p + 20);
  o.writeUInt32LE(1, p + 24); // time_gran: nanoseconds
  if (sizes.maxPages > 0) o.writeUInt16LE(sizes.maxPages, p + 28);
  if (minor >= 36) o.writeUInt32LE(settled.flags2, p + 32);
  const passthrough = settled.on.includes('passthrough');
  // 1: a stratafs mount can still be a layer of kernel overlayfs (whose depth is its layers' + 1, at most 2)
  if (passthrough) o.writeUInt32LE(s.stackDepth, p + 36);
  // fuse_init_out.request_timeout (7.43): seconds, read with FUSE_REQUEST_TIMEOUT
  if (settled.on.includes('request_timeout')) o.writeUInt16LE(s.requestTimeout, p + 40);
  const len = minor < 23 ? 24 : INIT_OUT;
  putHeader(o, OUT_HEADER + len, 0, lo, hi);
  send(s, OUT_HEADER + len);
  if (major > FUSE_KERNEL_VERSION) return;
  if (settled.on.includes('cache_symlinks')) s.symlinks = new SymlinkWatch();
  s.negotiated = {
    kernelMinor: kminor, kernelFlags: kflags, kernelFlags2: kflags2, minor, flags, flags2: settled.flags2, features: settled.on,
    maxWrite: sizes.maxWrite, maxReadahead, maxStackDepth: passthrough ? s.stackDepth : 0, passthroughOff: s.passthroughOff,
    passthrough: undefined, uring: undefined, batches: 0, requests: 0,
  };
  if (settled.on.includes('io_uring') && s.dev !== undefined) {
    const dev = s.dev;
    const r = fuseDev().uringRegister(dev);
    if (r < 0) s.log(`stratafs: FUSE over io_uring: registering the ring's entries failed (errno ${-r})`);
    s.negotiated.uring = () => {
      const [queues, entries, requests, commits, batches, failed] = s.ended ? [0, 0, 0, 0, 0, 0] : fuseDev().uringStats(dev);
      return { queues, entries, requests, commits, batches, failed: failed !== 0 ? `errno ${-failed}` : undefined };
    };
  }
  if (passthrough) {
    const pt = new PassthroughTable(() => s.dev, s.log);
    s.pt = pt;
    s.negotiated.passthrough = () => pt.stats();
  }
  const on = new Set(settled.on);
  s.on = (feature) => on.has(feature);
  s.handlers.init();
}

/** Did INIT turn this feature (features.ts) on for the session? */
const featureOn = (s: KSession, name: string): boolean => s.negotiated?.features.includes(name) ?? false;

/** One request at b[h, h+len): decode, set the caller, call its handler. */
function dispatch(s: KSession, b: Buffer, h: number, len: number): void {
  if (len < IN_HEADER) return;
  const end = h + len;
  const op = b.readUInt32LE(h + 4);
  const lo = b.readUInt32LE(h + 8);
  const hi = b.readUInt32LE(h + 12);
  const node = u64(b, h + 16);
  const a = h + IN_HEADER;
  const H = s.handlers;
  if (s.trace !== undefined && (op === Op.FORGET || op === Op.BATCH_FORGET || op === Op.INTERRUPT || op === Op.INIT)) {
    s.trace.note(op, lo, hi, node, op === Op.FORGET ? `nlookup=${u64(b, a)}` : op === Op.BATCH_FORGET ? `count=${b.readUInt32LE(a)}` : op === Op.INTERRUPT ? `of unique=${u64(b, a)}` : `kernel 7.${b.readUInt32LE(a + 4)}`);
  }
  // the kernel forgets an inode whole, when it evicts it (a symlink's cached target goes with it)
  if (op === Op.FORGET) { s.pt?.forgotten(node); s.symlinks?.forget(node); H.forget(node, u64(b, a)); return; }
  if (op === Op.BATCH_FORGET) {
    const count = b.readUInt32LE(a);
    for (let i = 0, p = a + 8; i < count && p + 16 <= end; i++, p += 16) {
      const n = u64(b, p);
      s.pt?.forgotten(n);
      s.symlinks?.forget(n);
      H.forget(n, u64(b, p + 8));
    }
    return;
  }
  // libfuse 2.9 registers no interrupt callbacks: the request interrupted gets its one answer as usual
  if (op === Op.INTERRUPT) return;
  if (op === Op.INIT) { init(s, b, a, lo, hi); return; }
  const ctx = s.ctx;
  ctx[0] = b.readUInt32LE(h + 24) | 0;
  ctx[1] = b.readUInt32LE(h + 28) | 0;
  ctx[2] = b.readUInt32LE(h + 32) | 0;
  ctx[3] = 0;
  const req = take(s, lo, hi);
  if (s.trace !== undefined) s.trace.start(req, op, lo, hi, node, ctx[0]!, ctx[2]!);
  try {
    switch (op) {
      case Op.LOOKUP: H.lookup(req, node, cstr(b, a, end)[0]); break;
      case Op.GETATTR: H.getattr(req, node, (b.readUInt32LE(a) & GETATTR_FH) !== 0 ? u64(b, a + 8) : -1); break;
      case Op.SETATTR: {
        const valid = b.readUInt32LE(a);
        // fuse_setattr_in: fh 8, size 16, atime 32, mtime 40, atimensec 56, mtimensec 60, mode 68, uid 76, gid 80
        // FATTR_KILL_SUIDGID comes only with killpriv_v2
        H.setattr(req, node, valid & (SETATTR_PASSED | FATTR_KILL_SUIDGID), b.readUInt32LE(a + 68), b.readUInt32LE(a + 76), b.readUInt32LE(a + 80),
          offsetAt(b, a + 16), i64(b, a + 32), b.readUInt32LE(a + 56), i64(b, a + 40), b.readUInt32LE(a + 60), (valid & FATTR_FH) !== 0 ? u64(b, a + 8) : -1);
        break;
      }
      case Op.READLINK: H.readlink(req, node); break;
      case Op.SYMLINK: {
        const [name, p] = cstr(b, a, end);
        H.symlink(req, cstr(b, p, end)[0], node, name);
        break;
      }
      case Op.MKNOD: ctx[3] = b.readUInt32LE(a + 8); H.mknod(req, node, cstr(b, a + 16, end)[0], b.readUInt32LE(a), b.readUInt32LE(a + 4)); break;
      case Op.MKDIR: ctx[3] = b.readUInt32LE(a + 4); H.mkdir(req, node, cstr(b, a + 8, end)[0], b.readUInt32LE(a)); break;
      case Op.UNLINK: H.unlink(req, node, cstr(b, a, end)[0]); break;
      case Op.RMDIR: H.rmdir(req, node, cstr(b, a, end)[0]); break;
      case Op.RENAME: {
        const [name, p] = cstr(b, a + 8, end);
        H.rename(req, node, name, u64(b, a), cstr(b, p, end)[0]);
        break;
      }
      case Op.RENAME2: {
        // fuse_rename2_in: newdir, flags, padding; then both names. Switched off: ENOSYS, and the kernel answers EINVAL itself from then on.
        if (!featureOn(s, 'rename2')) { replyError(req, ENOSYS); break; }
        const [name, p] = cstr(b, a + 16, end);
        H.rename(req, node, name, u64(b, a), cstr(b, p, end)[0], b.readUInt32LE(a + 8));
        break;
      }
      case Op.LINK: H.link(req, u64(b, a), node, cstr(b, a + 8, end)[0]); break;
      // open_in.open_flags would carry FUSE_OPEN_KILL_SUIDGID only with ATOMIC_O_TRUNC, not asked for: a SETATTR truncates
      case Op.OPEN: reqNode[req] = node; H.open(req, node, b.readUInt32LE(a)); break;
      case Op.READ: H.read(req, node, b.readUInt32LE(a + 16), offsetAt(b, a + 8), u64(b, a)); break;
      case Op.WRITE: {
        const size = b.readUInt32LE(a + 16);
        // the slot is reused by the next batch: the handler gets its own copy, pooled when large
        const data = dataBuffers.take(size);
        held[req] = data;
        b.copy(data, 0, a + RW_IN, Math.min(end, a + RW_IN + size));
        // fuse_write_in.write_flags: FUSE_WRITE_KILL_SUIDGID only with killpriv_v2
        H.write(req, node, data, offsetAt(b, a + 8), u64(b, a), (b.readUInt32LE(a + 20) & WRITE_KILL_SUIDGID) !== 0);
        break;
      }
      case Op.STATFS: H.statfs(req, node); break;
      case Op.RELEASE: {
        const fh = u64(b, a);
        s.pt?.released(fh);
        H.release(req, node, fh);
        break;
      }
      case Op.FSYNC: H.fsync(req, node, b.readUInt32LE(a + 8) & FSYNC_FDATASYNC, u64(b, a)); break;
      case Op.SETXATTR: {
        const size = b.readUInt32LE(a);
        const [name, p] = cstr(b, a + 8, end);
        const value = Buffer.allocUnsafe(size);
        b.copy(value, 0, p, Math.min(end, p + size));
        H.setxattr(req, node, name, value, b.readUInt32LE(a + 4));
        break;
      }
      case Op.GETXATTR: H.getxattr(req, node, cstr(b, a + 8, end)[0], b.readUInt32LE(a)); break;
      case Op.LISTXATTR: H.listxattr(req, node, b.readUInt32LE(a)); break;
      case Op.REMOVEXATTR: H.removexattr(req, node, cstr(b, a, end)[0]); break;
      case Op.FLUSH: H.flush(req, node, u64(b, a)); break;
      case Op.OPENDIR: H.opendir(req, node, b.readUInt32LE(a)); break;
      case Op.READDIR: H.readdir(req, node, b.readUInt32LE(a + 16), u64(b, a + 8), u64(b, a)); break;
      case Op.READDIRPLUS:
        if (H.readdirplus !== undefined) H.readdirplus(req, node, b.readUInt32LE(a + 16), u64(b, a + 8), u64(b, a));
        else replyError(req, ENOSYS);
        break;
      case Op.RELEASEDIR: H.releasedir(req, node, u64(b, a)); break;
      case Op.FSYNCDIR: H.fsyncdir(req, node, b.readUInt32LE(a + 8) & FSYNC_FDATASYNC, u64(b, a)); break;
      case Op.CREATE: ctx[3] = b.readUInt32LE(a + 8); H.create(req, node, cstr(b, a + 16, end)[0], b.readUInt32LE(a + 4), b.readUInt32LE(a)); break;
      case Op.FALLOCATE: H.fallocate(req, node, b.readUInt32LE(a + 24), u64(b, a + 8), u64(b, a + 16), u64(b, a)); break;
      // DESTROY (fuseblk only): nothing to tear down before the device closes
      case Op.DESTROY: replyError(req, 0); break;
      // everything else, as libfuse without a handler: ENOSYS (the kernel then stops asking or falls back)
      default:
        if (!fileRequest(op, req, node, b, a, H, s.on, (umask) => { ctx[3] = umask; })) replyError(req, ENOSYS);
    }
  } catch (e) {
    process.stderr.write(`stratafs: ${op} handler threw: ${e instanceof Error ? e.message : String(e)}\n`);
    if (reqSession[req] === s) replyError(req, EIO);
  }
}

// ---------------------------------------------------------------------------
// the contract

const sessions = new WeakMap<Session, KSession>();
const sessionOf = (x: Session): KSession => {
  const s = sessions.get(x);
  if (s === undefined) throw new Error('not a session of the kernel FUSE server');
  return s;
};

/**
 * Why FUSE_DEV_IOC_BACKING_OPEN would fail EPERM for this daemon, or undefined: it needs
 * CAP_SYS_ADMIN in the initial user namespace (fs/fuse/backing.c: capable()), so a mount
 * inside `unshare -Urm` or a plain user's never passes through. Known before INIT, where it
 * decides whether writeback_cache may be asked for instead (features.ts). The kernel has the
 * last word: an EPERM at the first open still falls back (passthrough.ts).
 */
function passthroughRefusal(): string | undefined {
  let status: string;
  let uidMap: string;
  try {
    status = readFileSync('/proc/self/status', 'latin1');
    uidMap = readFileSync('/proc/self/uid_map', 'latin1');
  } catch {
    return 'no /proc to check CAP_SYS_ADMIN';
  }
  const cap = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  // CAP_SYS_ADMIN is capability 21
  if (cap === undefined || (BigInt('0x' + cap) & (1n << 21n)) === 0n) return 'no CAP_SYS_ADMIN';
  // the initial user namespace maps all 2^32 ids onto themselves
  if (uidMap.trim().split(/\s+/).join(' ') !== '0 0 4294967295') return 'in a user namespace (CAP_SYS_ADMIN there is not enough)';
  return undefined;
}

function mount(mountpoint: Bstr, km: KernelMount, handlers: LowLevelHandlers, ctx: Int32Array, onExit: () => void): Session {
  const dev = fuseDev();
  const { fd, viaFusermount } = mountDevice(mountpoint, km);
  const off = new Set(km.off);
  const passthroughOff = off.has('passthrough') ? undefined : passthroughRefusal();
  if (passthroughOff !== undefined) off.add('passthrough');
  // room for the largest WRITE INIT may allow (sizes.ts); untouched pages cost no memory
  const { slot, cap } = readRoom(maxPagesPossible(off, km.maxMinor) ? Math.max(km.maxWrite, BIG_WRITE) : km.maxWrite);
  // request_timeout is asked for only with a timeout to send
  if (km.requestTimeout === 0) off.add('request_timeout');
  // io_uring is opt-in until it measures faster than read(2) of /dev/fuse (features.ts)
  if (km.ioUring !== true) off.add('io_uring');
  const s: KSession = {
    dev: undefined, mountpoint, viaFusermount, trace: km.debug ? new Trace(km.log ?? ((line) => process.stderr.write(line + '\n'))) : undefined, handlers, ctx, onExit, ended: false, maxWrite: km.maxWrite, maxMinor: Math.min(km.maxMinor ?? FUSE_MAX_MINOR, FUSE_MAX_MINOR), off, requestTimeout: km.requestTimeout, negotiated: undefined, on: () => false,
    passthroughOff, stackDepth: km.stackDepth, pt: undefined, log: (line) => { process.stderr.write(line + '\n'); },
    buf: Buffer.allocUnsafeSlow(cap), lens: new Uint32Array(BATCH), slot,
  };
  const onBatch = (n: number): void => {
    if (s.negotiated !== undefined) { s.negotiated.batches++; s.negotiated.requests += n; }
    // packed as fuse-dev.c read them
    for (let i = 0, pos = 0; i < n && !s.ended; i++) {
      const len = s.lens[i]!;
      dispatch(s, s.buf, pos, len);
      pos = nextRequest(pos, len);
    }
  };
  const exited = (): void => {
    if (s.ended) return;
    s.ended = true;
    dropPending(s);
    s.onExit();
  };
  s.dev = dev.start(fd, s.buf, slot, s.lens, onBatch, exited);
  const handle = {} as Session;
  sessions.set(handle, s);
  return handle;
}

function close(x: Session, unmount: boolean): void {
  const s = sessionOf(x);
  if (s.ended || s.dev === undefined) return;
  if (!unmount || !s.viaFusermount) {
    // root: umount2(MNT_DETACH) right after closing the device, which never waits for this thread
    fuseDev().close(s.dev, unmount ? s.mountpoint : undefined);
    return;
  }
  // a plain user cannot umount2: fusermount3 -uz, a child this thread never waits for; the
  // device closes first, so nothing it does can wait on this mount's server
  fuseDev().close(s.dev);
  unmountPath(s.mountpoint, { lazy: true })
    .catch((e: unknown) => process.stderr.write(`stratafs: ${e instanceof Error ? e.message : String(e)}\n`));
}

/** FUSE_NOTIFY_INVAL_INODE: attributes, and with offset >= 0 the cached pages from there (length 0: all) */
function invalInode(s: KSession, node: NodeId, offset: number): number {
  if (s.ended) return -107; // ENOTCONN
  const o = scratch(OUT_HEADER + 24);
  putHeader(o, OUT_HEADER + 24, Notify.INVAL_INODE, 0, 0);
  putU64(o, OUT_HEADER, node);
  putI64(o, OUT_HEADER + 8, offset);
  putI64(o, OUT_HEADER + 16, 0);
  const r = send(s, OUT_HEADER + 24);
  return r < 0 ? r : 0;
}

// offset < 0: attributes only, not the pages
const invalAttr = (x: Session, node: NodeId): number => invalInode(sessionOf(x), node, -1);

/**
 * A symlink's cached target dropped (INVAL_INODE of its pages) through the helper thread:
 * the kernel locks each cached page to drop it, and a READLINK that is filling that page
 * holds the lock until this thread answers it. Written here, the daemon sat in folio_lock for
 * good (load.test.ts, a stat through a link while another process looked the link up again).
 */
function dropLinkTarget(s: KSession, node: NodeId): void {
  if (s.ended || s.dev === undefined) return;
  const m = Buffer.allocUnsafe(OUT_HEADER + 24);
  putHeader(m, OUT_HEADER + 24, Notify.INVAL_INODE, 0, 0);
  putU64(m, OUT_HEADER, node);
  putI64(m, OUT_HEADER + 8, 0);
  putI64(m, OUT_HEADER + 16, 0);
  fuseDev().notify(s.dev, m, OUT_HEADER + 24, Lane.PAGES);
}

/**
 * FUSE_NOTIFY_INVAL_ENTRY through the helper thread (fuse-dev.c notify): the kernel takes
 * the parent's i_rwsem for it, which a request not answered yet may hold (a LOOKUP or
 * READDIR shared, a CREATE exclusive): written here, the JS thread would wait for a lock
 * only its own answer releases. INVAL_INODE without pages (invalAttr) takes no such lock
 * and stays synchronous, ordered before the reply it goes with.
 */
function invalEntry(x: Session, parent: NodeId, name: Bstr): number {
  const s = sessionOf(x);
  if (s.ended || s.dev === undefined) return -107; // ENOTCONN
  const len = OUT_HEADER + 16 + name.length + 1;
  const m = Buffer.allocUnsafe(len);
  putHeader(m, len, Notify.INVAL_ENTRY, 0, 0);
  putU64(m, OUT_HEADER, parent);
  m.writeUInt32LE(name.length, OUT_HEADER + 8);
  m.writeUInt32LE(0, OUT_HEADER + 12); // flags: 0, drop it (not FUSE_EXPIRE_ONLY)
  m.write(name, OUT_HEADER + 16, name.length, 'latin1');
  m[len - 1] = 0;
  return fuseDev().notify(s.dev, m, len, Lane.ENTRY);
}

/**
 * The answer encoded at OUT_HEADER (argLen bytes) goes out after the node's cached symlink target
 * is dropped: both through the helper thread, in that order, so the caller that follows the link
 * the moment its LOOKUP returns reads it again (with the drop merely queued before a direct answer,
 * `readlink` right after printed the old target about every second run). The JS thread never waits:
 * a READLINK holding the page lock the drop waits for is answered meanwhile. Both go in the pages'
 * lane, never behind an INVAL_ENTRY: that waits for the directory this LOOKUP's caller may hold.
 * A request held by an io_uring entry must be answered through the ring: there the drop is only
 * queued first.
 */
function replyAfterDrop(req: ReqId, s: KSession, node: NodeId, argLen: number): void {
  if (featureOn(s, 'io_uring') || s.dev === undefined || s.ended) {
    dropLinkTarget(s, node);
    reply(req, argLen);
    return;
  }
  const lo = reqLo[req]!;
  const hi = reqHi[req]!;
  if (release(req) === undefined) return;
  dropLinkTarget(s, node);
  putHeader(out, OUT_HEADER + argLen, 0, lo, hi);
  fuseDev().notify(s.dev, out, OUT_HEADER + argLen, Lane.PAGES);
  if (s.trace !== undefined) s.trace.end(req, argLen);
}

/** What the helper threads wrote for a session: notifications and the answers queued behind them. */
export function notified(x: Session): { queued: number; written: number; failed: number; lastErrno: number } {
  const s = sessionOf(x);
  const [queued, written, failed, lastErrno] = s.dev === undefined || s.ended ? [0, 0, 0, 0] : fuseDev().notified(s.dev);
  return { queued, written, failed, lastErrno };
}

/** What INIT settled for a session (undefined until the kernel's INIT was answered). */
export function negotiated(x: Session): Negotiated | undefined {
  return sessionOf(x).negotiated;
}

export const kernelServer: LowLevelAddon = {
  mount,
  close,
  invalAttr,
  invalEntry,
  pending: () => taken,
  uses: (x, feature) => sessionOf(x).negotiated?.features.includes(feature) ?? false,

  replyErr: replyError,
  replyEntry(req, ino, generation, attr, attrTimeout, entryTimeout) {
    const s = reqSession[req];
    scratch(OUT_HEADER + ENTRY_OUT);
    putEntry(OUT_HEADER, ino, generation, attr, attrTimeout, entryTimeout);
    // a cached symlink target that may have changed behind the mount (symlinks.ts): dropped before the answer
    if (s?.symlinks !== undefined && ino !== 0 && s.symlinks.changed(ino, attr)) replyAfterDrop(req, s, ino, ENTRY_OUT);
    else reply(req, ENTRY_OUT);
  },
  replyCreate(req, ino, generation, attr, attrTimeout, entryTimeout, fh, openFlags, backingFd = -1) {
    scratch(OUT_HEADER + ENTRY_OUT + OPEN_OUT);
    putEntry(OUT_HEADER, ino, generation, attr, attrTimeout, entryTimeout);
    const s = pendingSession(req);
    putOpen(s, OUT_HEADER + ENTRY_OUT, ino, fh, openFlags, backingFd);
    openLost(s, ino, reply(req, ENTRY_OUT + OPEN_OUT), fh);
  },
  replyAttr(req, attr, timeout) {
    scratch(OUT_HEADER + ATTR_OUT);
    putTimeout(out, OUT_HEADER, OUT_HEADER + 8, timeout);
    out.writeUInt32LE(0, OUT_HEADER + 12);
    putAttr(out, OUT_HEADER + 16, attr);
    reply(req, ATTR_OUT);
  },
  replyOpen(req, fh, openFlags, backingFd = -1) {
    scratch(OUT_HEADER + OPEN_OUT);
    const s = pendingSession(req);
    // OPEN and OPENDIR answer here; only an OPEN's file has an io mode (reqNode -1 otherwise)
    const node = reqNode[req]!;
    putOpen(s, OUT_HEADER, node, fh, openFlags, backingFd);
    openLost(s, node, reply(req, OPEN_OUT), fh);
  },
  replyReadlink(req, target) {
    scratch(OUT_HEADER + target.length);
    out.write(target, OUT_HEADER, target.length, 'latin1');
    reply(req, target.length);
  },
  replyBuf(req, buf, length) {
    const n = length < 0 || length > buf.length ? buf.length : length;
    reply(req, 0, buf, n);
  },
  replyWrite(req, count) {
    scratch(OUT_HEADER + 8);
    out.writeUInt32LE(count, OUT_HEADER);
    out.writeUInt32LE(0, OUT_HEADER + 4);
    reply(req, 8);
  },
  replyXattr(req, size) {
    scratch(OUT_HEADER + 8);
    out.writeUInt32LE(size, OUT_HEADER);
    out.writeUInt32LE(0, OUT_HEADER + 4);
    reply(req, 8);
  },
  replyStatfs(req, statvfs) {
    scratch(OUT_HEADER + KSTATFS);
    putStatfs(out, OUT_HEADER, statvfs);
    reply(req, KSTATFS);
  },
  replyDir(req, size, firstOffset, names, modeIno) {
    scratch(OUT_HEADER + size);
    const [len, n] = encodeDir(out, OUT_HEADER, size, firstOffset, names, modeIno);
    reply(req, len);
    return n;
  },
  replyDirPlus(req, size, firstOffset, names, modeIno, entry, attrTimeout, entryTimeout) {
    const s = reqSession[req];
    // answered already, or the session is gone: hand out no node the kernel would never count
    if (s === undefined || s.ended) return 0;
    scratch(OUT_HEADER + size);
    const handed: NodeId[] = [];
    const [len, n] = encodeDirPlus(out, OUT_HEADER, size, firstOffset, names, modeIno, (p, i) => {
      const e = isDotOrDotDot(names[i]!) ? undefined : entry(i);
      if (e !== undefined && e.node !== 0) {
        handed.push(e.node);
        // READDIRPLUS refreshes a known dentry without a LOOKUP: the same check as replyEntry's
        if (s.symlinks?.changed(e.node, e.attr) === true) dropLinkTarget(s, e.node);
      }
      putEntry(p, e?.node ?? 0, 0, e?.attr ?? NO_ATTR, attrTimeout, entryTimeout);
    });
    // The kernel counted nothing of an answer it never took (the request was interrupted
    // and is gone: ENOENT): give the lookups back as its FORGETs would.
    if (reply(req, len) < 0) for (const node of handed) s.handlers.forget(node, 1);
    return n;
  },
  replyOffset(req, offset) {
    scratch(OUT_HEADER + OFFSET_OUT);
    putOffset(out, OUT_HEADER, offset);
    reply(req, OFFSET_OUT);
  },
  replyStatx(req, attr, btime, timeout) {
    scratch(OUT_HEADER + STATX_OUT);
    putStatx(out, OUT_HEADER, attr, btime, timeout);
    reply(req, STATX_OUT);
  },
  replyCount(req, count) {
    scratch(OUT_HEADER + COUNT_OUT);
    putCount(out, OUT_HEADER, count);
    reply(req, COUNT_OUT);
  },
};

