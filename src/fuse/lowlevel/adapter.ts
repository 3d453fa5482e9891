/**
 * The FUSE adapter for the low-level contract (./contract.ts): node ids to
 * paths (nodes.ts), each request to one core call, the answer back.
 *
 * - Errors become errno in one place, toErrno() (requests.ts).
 * - The caller (uid, gid, pid, umask) is read at handler entry from the array
 *   the binding fills before each request.
 * - settle() ends every request: counts it with its latency (`stratafs stats`),
 *   logs it with -d, answers a failure.
 * - Kernel caching: every entry and attribute reply carries the mount's
 *   timeouts. The kernel keeps them coherent for changes made through the
 *   mount (one node per overlay object, see nodes.ts); what it cannot see --
 *   directories copied up as a side effect, or changed by an operation that
 *   then failed -- is invalidated here (invalidateAfter).
 */
import { performance } from 'node:perf_hooks';
import type { Bstr } from '../../shared/bstr.js';
import { toText } from '../../shared/bstr.js';
import { FsError } from '../../shared/errors.js';
import type { NodeInfo } from '../../core/overlay.js';
import { sameVersion, type AttrArray, type Caller, type FileVersion, type HandleOps, type MergedEntry, type OpenResult, type OverlayOps, type TimeSet, type Timespec } from '../../core/types.js';
import { SetattrValid, type LowLevelAddon, type LowLevelHandlers, type NodeId, type ReqId, type Session } from './contract.js';
import { StatIdx, STAT_LEN, inoOf, type Ino, type Offset } from '../../native/sys-api.js';
import type { IdView } from '../idmap.js';
import { Node, NodeTable } from './nodes.js';
import { callerKeepsSetgid, modeAfterKill, privileged } from './killpriv.js';
import { ReadBuffers } from './read-buffers.js';
import { openForWriteback } from './writeback.js';
import { dirListing, osErrName, RequestStats, startCall, statvfsArray, toErrno, type DirListing, type OpSummary } from '../requests.js';
import { S_IFDIR, S_IFMT, ENOENT, ENOSYS, ERANGE, O_ACCMODE, RENAME_EXCHANGE } from '../../shared/constants.js';

/** The core as the low-level adapter uses it: OverlayOps, the calls through a handle, node identity and fallocate. */
export interface LowLevelCore extends OverlayOps, HandleOps {
  lookupNode(path: Bstr): Promise<NodeInfo>;
  fallocate(path: Bstr | null, fh: number, mode: number, offset: number, length: number): Promise<void>;
  lseek(path: Bstr | null, fh: number, offset: Offset, whence: number): Promise<Offset>;
  copyFileRange(pathIn: Bstr | null, fhIn: number, offIn: Offset, pathOut: Bstr | null, fhOut: number, offOut: Offset, len: Offset, flags: number): Promise<number>;
  syncfs(): Promise<void>;
  btime(path: Bstr | null, fh: number): Promise<Timespec | undefined>;
  tmpfile(dir: Bstr, mode: number, flags: number, caller: Caller): Promise<{ open: OpenResult; attr: AttrArray }>;
  linkHandle(fh: number, path: Bstr, caller: Caller): Promise<void>;
  handleVersion(fh: number): FileVersion | undefined;
}

export interface LowLevelOptions {
  debug: boolean;
  log: (line: string) => void;
  /** kernel cache lifetimes, seconds */
  entryTimeout: number;
  attrTimeout: number;
  negativeTimeout: number;
  /** st_ino of the root directory */
  rootIno: Ino;
  /** bound of the node table's path cache, bytes (nodes.ts) */
  pathCacheBytes?: number;
  /** copy-ups done so far by the core: a change tells which requests copied something up */
  copyUps: () => number;
  /** owners as shown (uidmapping=, squash_to_*, static_nlink: idmap.ts); undefined: as on disk */
  ids?: IdView;
  /** noxattrs=1: every xattr request fails with ENOSYS */
  noXattrs?: boolean;
  /** the server the handlers are mounted on, whose reply functions answer (fuse_server=) */
  addon: LowLevelAddon;
  /**
   * FUSE passthrough (a server that has it): which handles' layer files the kernel may read and
   * write directly. 'upper': upper files only -- a read-only handle of a lower file must see a
   * later copy-up (kernel overlayfs re-points it; a passed-through handle would stay on the
   * lower file); 'all': lower files too (a mount without upperdir, or passthrough_lower).
   */
  passthrough?: 'upper' | 'all';
}

export interface LowLevelAdapter {
  handlers: LowLevelHandlers;
  /** filled by the binding with [uid, gid, pid, umask] of the request being dispatched */
  ctx: Int32Array;
  /** set once mounted: invalidations need the session */
  attach(session: Session): void;
  /** resolves when the kernel's INIT has been answered */
  readonly initialized: Promise<void>;
  opStats(): Record<string, OpSummary>;
  nodeCount(): number;
  /** the node table's path cache: entries, bytes held, bound */
  nodePaths(): { entries: number; size: number; max: number };
}

const NO_ATTR = new Float64Array(STAT_LEN);
/** tries of a name-making core call that keeps meeting renamed directories (againIfMoved) */
const MOVED_TRIES = 8;
/** open flags the binding passes on: bit 1 keep_cache, bit 2 direct_io */
const openFlags = (r: OpenResult): number => (r.keepCache ? 1 : 0) | (r.directIo ? 2 : 0);
/** the fd the server may pass the handle through to, -1: none (LowLevelOptions.passthrough) */
const backingFd = (r: OpenResult, lower: boolean): number => (r.backing !== undefined && (lower || !r.backing.lower) ? r.backing.fd : -1);

/** getxattr/listxattr answer: the size asked for with size 0, ERANGE when it does not fit, else the bytes. */
function replyXattrValue(ll: LowLevelAddon, req: ReqId, size: number, v: Buffer): number {
  if (size === 0) ll.replyXattr(req, v.length);
  else if (v.length > size) ll.replyErr(req, ERANGE);
  else ll.replyBuf(req, v, v.length);
  return v.length;
}

/**
 * An open directory's listing: the handle's snapshot (opendir's, then a fresh one at
 * each rewind), with the core's entries it was made from (to reuse it while they are
 * the same array) and the parent it named as `..`.
 */
interface DirHandle {
  l: DirListing;
  entries: readonly MergedEntry[];
  upIno: Ino;
  /** made at opendir and not served yet: the first READDIR at offset 0 takes it (not on a cache_dir handle) */
  fresh: boolean;
  /** the directory's node */
  node: Node;
  /** opened with FOPEN_CACHE_DIR: its READDIR answers fill the kernel's cache of the directory */
  cached: boolean;
}

/** the kernel's cache of a directory may hold entries of listings that differ */
const MIXED = Symbol('mixed');

/** Two listings with the same names, types and numbers in the same order (`.` and `..` included). */
function sameListing(a: DirListing, b: DirListing): boolean {
  if (a === b) return true;
  if (a.names.length !== b.names.length || a.modeIno.length !== b.modeIno.length) return false;
  for (let i = 0; i < a.names.length; i++) if (a.names[i] !== b.names[i]) return false;
  for (let i = 0; i < a.modeIno.length; i++) if (a.modeIno[i] !== b.modeIno[i]) return false;
  return true;
}

/** a fuse_direntplus takes at least 160 bytes (entry 128, dirent 24, a name up to 8): entries one answer can hold */
const plusFit = (size: number): number => Math.floor(size / 160) + 1;

/** Names and their NUL terminators, as listxattr answers. */
const xattrList = (names: Bstr[]): Buffer => Buffer.from(names.map((n) => n + '\0').join(''), 'latin1');

export function createLowLevelAdapter(core: LowLevelCore, opt: LowLevelOptions): LowLevelAdapter {
  const { log, debug, entryTimeout, attrTimeout, negativeTimeout, ids, addon: ll } = opt;
  const noXattrs = opt.noXattrs === true;
  const passLower = opt.passthrough === 'all';
  const nodes = new NodeTable(opt.rootIno, opt.pathCacheBytes);
  const ctx = new Int32Array(4);
  const requests = new RequestStats();
  const dirs = new Map<number, DirHandle>();
  const readBuffers = new ReadBuffers();
  /** the server settled cache_dir (fuse/kernel/features.ts) */
  let cacheDir = false;
  /**
   * cache_dir: per directory node, the listing the kernel's page cache can hold now: that of
   * every READDIR answered for the node since an OPENDIR last let the kernel drop its cache,
   * or MIXED once two of them differed. An OPENDIR whose listing is that one keeps the cache
   * (FOPEN_KEEP_CACHE); any other drops it. A node the kernel forgot takes its cache with it.
   */
  const served = new WeakMap<Node, DirListing | typeof MIXED>();
  /** open handles per directory node (cache_dir goes to a handle only while it is the one open) */
  const openDirs = new WeakMap<Node, number>();
  /** per directory node, the listing last answered from offset 0: what changed since is compared with the node table */
  const lastListed = new WeakMap<Node, DirListing>();
  let session: Session | undefined;
  /** killpriv_v2 settled at INIT: the kernel marks the changes that drop setuid/setgid (killpriv.ts) */
  let serverKills = false;
  /** writeback_cache settled at INIT: open flags as writeback.ts says */
  let writeback = false;
  /** close_to_open settled at INIT (fuse/kernel/features.ts): opens check the layer file's version */
  let closeToOpen = false;
  /**
   * close_to_open: per file node, the layer file's version the kernel's cache of it stands for:
   * that of its last open, refreshed where a change through the mount leaves the kernel's pages
   * and attributes right (a writable handle released, a SETATTR answered). A node the kernel
   * forgot takes its cache with it.
   */
  const versions = new WeakMap<Node, FileVersion>();
  /** handles opened for writing: their release records the version their writes left */
  const writers = new Set<number>();
  let markInit: () => void = () => undefined;
  const initialized = new Promise<void>((resolve) => { markInit = resolve; });

  const caller0 = (): Caller => ({ uid: ctx[0]! >>> 0, gid: ctx[1]! >>> 0, pid: ctx[2]!, umask: ctx[3]! });
  // The core stores on-disk ids: a mapped mount translates the caller on the way in.
  const caller = ids === undefined ? caller0 : (): Caller => ids.callerIn(caller0());
  /** every attribute reply goes through here: on-disk owners become shown ones */
  const shown = ids === undefined ? (a: AttrArray): AttrArray => a : (a: AttrArray): AttrArray => { ids.attrOut(a); return a; };
  const oct = (n: number): string => '0' + n.toString(8);

  const nodeOf = (id: NodeId): Node => {
    const n = nodes.get(id);
    if (n === undefined) throw new FsError('ENOENT', '', 'node', `unknown node ${id}`);
    return n;
  };
  const pathOf = (n: Node): Bstr => {
    const p = nodes.path(n);
    if (p === null) throw new FsError('ENOENT', '', 'node', 'no longer has a name');
    return p;
  };
  /**
   * A node with no name left (unlinked or renamed over while open) is reached
   * through its open handles: the oldest one.
   */
  const handleOf = (n: Node): number => {
    if (n.fhs !== undefined) for (const fh of n.fhs) return fh;
    throw new FsError('ENOENT', '', 'node', 'unlinked and no longer open');
  };
  const childPath = (parent: Node, name: Bstr): Bstr => {
    const p = pathOf(parent);
    return p === '/' ? '/' + name : p + '/' + name;
  };
  const describe = (id: NodeId, name?: Bstr): string => {
    const n = nodes.get(id);
    const p = n === undefined ? `#${id}` : nodes.path(n) ?? `#${id}(unlinked)`;
    return JSON.stringify(toText(name === undefined ? p : (p === '/' ? '' : p) + '/' + name));
  };

  /**
   * Drop cached attributes the kernel cannot know changed. A request that
   * copied something up may have turned lower directories above its target
   * into merged ones (new ctime; nlink 1, as the kernel overlay reports merged
   * directories): all ancestors go. A request that failed may still have
   * changed the objects it named (a copy-up, a redirect written before the
   * target turned out not empty), which the kernel refreshes only on success:
   * those go.
   */
  function invalidateAfter(starts: (Node | undefined)[], copyUpsBefore: number, failed: boolean): void {
    if (session === undefined) return;
    const walk = opt.copyUps() !== copyUpsBefore;
    if (!walk && !failed) return;
    const seen = new Set<Node>();
    for (const start of starts) {
      for (let n: Node | undefined = start; n !== undefined && !seen.has(n); n = walk ? n.names[n.names.length - 1]?.parent : undefined) {
        seen.add(n);
        ll.invalAttr(session, n.id);
      }
    }
  }

  /**
   * Runs one core call and answers: counts, logs with -d, converts a failure.
   * `where` names the request in logs (built only with -d); `changes`, for
   * requests that change the tree, is the node whose ancestors' attributes
   * may need dropping afterwards.
   */
  function settle<T>(
    op: string, req: ReqId, where: () => string,
    call: () => Promise<T>, reply: (v: T) => number | void,
    opts?: { changes?: () => (Node | undefined)[]; onError?: (errno: number) => boolean },
  ): void {
    const c = requests.counter(op);
    const t0 = performance.now();
    const before = opts?.changes ? opt.copyUps() : 0;
    startCall(call).then(
      (v) => {
        let r: number;
        try {
          // before the answer: the caller may stat the moment its call returns
          if (opts?.changes) invalidateAfter(opts.changes(), before, false);
          r = reply(v) ?? 0;
        } catch (e) {
          // A bug here must not leave the caller waiting forever (a second answer is ignored).
          r = toErrno(e, op, null, log);
          ll.replyErr(req, -r);
        }
        const us = (performance.now() - t0) * 1000;
        c.add(us, r);
        if (debug) log(`${new Date().toISOString()} ${op} ${where()} -> ${r} ${us.toFixed(0)}µs`);
      },
      (e: unknown) => {
        const us = (performance.now() - t0) * 1000;
        const errno = -toErrno(e, op, null, log);
        if (opts?.changes) invalidateAfter(opts.changes(), before, true);
        if (!(opts?.onError?.(errno) ?? false)) ll.replyErr(req, errno);
        c.add(us, -errno);
        if (debug) log(`${new Date().toISOString()} ${op} ${where()} -> -${osErrName(errno)} ${us.toFixed(0)}µs`);
      },
    );
  }

  /**
   * A core call that changes or opens what a path names, given the path of now and run again
   * while it fails ENOENT after a directory was renamed. The core resolves the path it was given
   * once more after its awaits (copy-ups: of a lower parent's directories, of a lower file opened
   * for writing or changed), and a rename of an ancestor that finished meanwhile leaves that path
   * stale: ENOENT where the kernel acts on the directory or file wherever it is now
   * (test/integration/load.test.ts, lower directories while an ancestor is renamed: 2-15 % of
   * creates, 1-50 % of opens for writing, chmods, unlinks and renames). The core's ENOENT means
   * nothing was changed but copy-ups; each try builds its path afresh.
   */
  function againIfMoved<T>(call: () => Promise<T>, tries = 1): Promise<T> {
    const gen = nodes.generation;
    return call().catch((e: unknown) => {
      if (!(e instanceof FsError && e.code === 'ENOENT') || nodes.generation === gen || tries >= MOVED_TRIES) throw e;
      return againIfMoved(call, tries + 1);
    });
  }


  /** Answer a request that made `name` in `parent`: look the new object up and hand out its node. */
  async function entryOf(parent: Node, name: Bstr): Promise<[Node, AttrArray]> {
    const info = await core.lookupNode(childPath(parent, name));
    const n = nodes.found(parent, name, (info.attr[StatIdx.mode]! & S_IFMT) === S_IFDIR, inoOf(info.attr), info.key);
    return [n, info.attr];
  }
  const replyEntry = (req: ReqId) => ([n, attr]: [Node, AttrArray]): number => {
    ll.replyEntry(req, n.id, 0, shown(attr), attrTimeout, entryTimeout);
    return n.id;
  };

  const shownGid = (a: AttrArray): number => shown(a.slice())[StatIdx.gid]!;
  /**
   * A write, truncate or chown the kernel marked (killpriv_v2; else any by a non-root caller,
   * after which the kernel has dropped all but a quiet S_ISGID itself) takes S_ISUID and
   * S_ISGID away as the VFS does (killpriv.ts). `kwho` is the caller as the kernel names it
   * (judged against /proc), `who` as the core stores ids; `gid` the file's group before a
   * chown. With no path `p`, the mode changes through the handle `fh` gives. Returns whether
   * it changed the mode.
   */
  async function killPrivs(
    p: Bstr | null, fh: () => number, kwho: Caller, who: Caller, gid: number | undefined, attrNow: () => Promise<AttrArray>,
  ): Promise<boolean> {
    const a = await attrNow();
    const mode = a[StatIdx.mode]!;
    if (!privileged(mode)) return false;
    const m = modeAfterKill(mode, () => callerKeepsSetgid(kwho.pid, kwho.gid, gid ?? shownGid(a)));
    if (m === mode) return false;
    await (p !== null ? core.chmod(p, m & 0o7777, who) : core.fchmod(fh(), m & 0o7777));
    return true;
  }

  const time = (set: boolean, now: boolean, sec: number, nsec: number): TimeSet => (now ? 'now' : set ? { sec, nsec } : 'omit');

  /**
   * close_to_open: an open of node `n` found its layer file at `r.version`. Unchanged since what
   * the kernel's cache of the node stands for (or the node's first open, with no pages cached
   * yet): the core's keep_cache stands. Changed behind the mount (or the core dropped attributes
   * it had answered, `r.stale`): the open answers without FOPEN_KEEP_CACHE, and the kernel drops
   * the node's pages itself once it has the answer, in the opener's context; its cached
   * attributes go before the answer (INVAL_INODE without pages, which takes no page lock: safe
   * from this thread), so the opener's next stat or read past the old size asks GETATTR.
   * Returns whether the kernel may keep the cache.
   */
  function opened(n: Node, r: OpenResult, flags: number): boolean {
    if ((flags & O_ACCMODE) !== 0) writers.add(r.fh);
    const v = r.version;
    if (v === undefined) return r.keepCache;
    const before = versions.get(n);
    versions.set(n, v);
    if (r.stale !== true && (before === undefined || sameVersion(before, v))) return r.keepCache;
    if (debug) log(`${new Date().toISOString()} changed behind the mount: ${describe(n.id)}, its cached data and attributes dropped`);
    if (session !== undefined) ll.invalAttr(session, n.id);
    return false;
  }

  /** close_to_open: attributes answered for a node after a change through the mount; its version follows them */
  function answered(n: Node, attr: AttrArray): void {
    const before = versions.get(n);
    if (before === undefined) return;
    versions.set(n, {
      mtimeSec: attr[StatIdx.mtimeSec]!, mtimeNsec: attr[StatIdx.mtimeNsec]!, ctimeSec: attr[StatIdx.ctimeSec]!,
      ctimeNsec: attr[StatIdx.ctimeNsec]!, size: attr[StatIdx.size]!, ino: before.ino,
    });
  }

  const handlers: LowLevelHandlers = {
    init() {
      serverKills = session !== undefined && (ll.uses?.(session, 'killpriv_v2') ?? false);
      cacheDir = session !== undefined && (ll.uses?.(session, 'cache_dir') ?? false);
      writeback = session !== undefined && (ll.uses?.(session, 'writeback_cache') ?? false);
      closeToOpen = session !== undefined && (ll.uses?.(session, 'close_to_open') ?? false);
      markInit();
    },

    lookup(req, parent, name) {
      let P: Node;
      settle('lookup', req, () => describe(parent, name), async () => {
        P = nodeOf(parent);
        return entryOf(P, name);
      }, replyEntry(req), {
        onError: (errno) => {
          // A negative entry the kernel may cache: the next lookups of the name cost nothing.
          if (errno !== ENOENT || negativeTimeout <= 0) return false;
          ll.replyEntry(req, 0, 0, NO_ATTR, 0, negativeTimeout);
          return true;
        },
      });
    },

    forget(id, count) { nodes.forget(id, count); },

    getattr(req, id, fh) {
      settle('getattr', req, () => describe(id), () => {
        const n = nodeOf(id);
        if (fh >= 0) return core.fgetattr(nodes.path(n), fh);
        const p = nodes.path(n);
        if (p !== null) return core.getattr(p);
        return core.fgetattr(null, handleOf(n));
      }, (attr) => { ll.replyAttr(req, shown(attr), attrTimeout); });
    },

    setattr(req, id, valid, mode, uid, gid, size, aSec, aNsec, mSec, mNsec, fh) {
      const V = SetattrValid;
      let n: Node | undefined;
      settle('setattr', req, () => `${describe(id)} valid=0x${valid.toString(16)} mode=${oct(mode)} uid=${uid} gid=${gid} size=${size} fh=${fh}`, async () => {
        const node = nodeOf(id);
        n = node;
        const who = caller();
        const kwho = caller0();
        return againIfMoved(() => setattrAt(node, who, kwho));
      }, (attr) => {
        // the kernel takes these attributes and truncates its pages to the size: its cache stands for them now
        if (closeToOpen && n !== undefined) answered(n, attr);
        ll.replyAttr(req, shown(attr), attrTimeout);
      }, { changes: () => [n] });

      /** The changes in libfuse's order, by the node's path of now (each one is the same again on a second try). */
      async function setattrAt(node: Node, who: Caller, kwho: Caller): Promise<AttrArray> {
        const p = nodes.path(node);
        const viaHandle = (): number => handleOf(node);
        const attrNow = (): Promise<AttrArray> => (fh >= 0 ? core.fgetattr(p, fh) : p !== null ? core.getattr(p) : core.fgetattr(null, viaHandle()));
        const kill = serverKills ? (valid & V.KILL_SUIDGID) !== 0 : (valid & (V.SIZE | V.UID | V.GID)) !== 0 && kwho.uid !== 0;
        // the group a chown is judged by is the one before it
        const gidBefore = kill && (valid & (V.UID | V.GID)) ? shownGid(await attrNow()) : undefined;
        // libfuse's order (fuse.c): mode, owner, size, times
        if (valid & V.MODE) await (p !== null ? core.chmod(p, mode, who) : core.fchmod(viaHandle(), mode));
        if (valid & (V.UID | V.GID)) {
          const u = valid & V.UID ? (ids === undefined ? uid : ids.uidIn(uid)) : -1;
          const g = valid & V.GID ? (ids === undefined ? gid : ids.gidIn(gid)) : -1;
          await (p !== null ? core.chown(p, u, g, who) : core.fchown(viaHandle(), u, g));
        }
        if (valid & V.SIZE) {
          if (fh >= 0) await core.ftruncate(p, fh, size);
          else await (p !== null ? core.truncate(p, size, who) : core.truncateByHandle(viaHandle(), size));
        }
        if (valid & (V.ATIME | V.MTIME | V.ATIME_NOW | V.MTIME_NOW)) {
          const at = time((valid & V.ATIME) !== 0, (valid & V.ATIME_NOW) !== 0, aSec, aNsec);
          const mt = time((valid & V.MTIME) !== 0, (valid & V.MTIME_NOW) !== 0, mSec, mNsec);
          await (p !== null ? core.utimens(p, at, mt, who) : core.futimens(viaHandle(), at, mt));
        }
        if (kill) await killPrivs(p, viaHandle, kwho, who, gidBefore, attrNow);
        return attrNow();
      }
    },

    readlink(req, id) {
      settle('readlink', req, () => describe(id), () => core.readlink(pathOf(nodeOf(id))), (t) => { ll.replyReadlink(req, t); });
    },

    mknod(req, parent, name, mode, rdev) {
      let P: Node | undefined;
      settle('mknod', req, () => `${describe(parent, name)} mode=${oct(mode)} rdev=${rdev}`, async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        await againIfMoved(() => core.mknod(childPath(at, name), mode, rdev, who));
        return entryOf(at, name);
      }, replyEntry(req), { changes: () => [P] });
    },
    mkdir(req, parent, name, mode) {
      let P: Node | undefined;
      settle('mkdir', req, () => `${describe(parent, name)} mode=${oct(mode)}`, async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        await againIfMoved(() => core.mkdir(childPath(at, name), mode, who));
        return entryOf(at, name);
      }, replyEntry(req), { changes: () => [P] });
    },
    symlink(req, target, parent, name) {
      let P: Node | undefined;
      settle('symlink', req, () => `${describe(parent, name)} target=${JSON.stringify(toText(target))}`, async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        await againIfMoved(() => core.symlink(target, childPath(at, name), who));
        return entryOf(at, name);
      }, replyEntry(req), { changes: () => [P] });
    },
    link(req, id, newParent, newName) {
      let P: Node | undefined;
      settle('link', req, () => `${describe(id)} to ${describe(newParent, newName)}`, async () => {
        const n = nodeOf(id);
        const at = P = nodeOf(newParent);
        const who = caller();
        // A node without a name reaching LINK is an O_TMPFILE being named (the kernel refuses other nameless ones)
        const unnamed = nodes.path(n) === null && n.fhs !== undefined && n.fhs.size > 0;
        await againIfMoved(() => (unnamed ? core.linkHandle(handleOf(n), childPath(at, newName), who) : core.link(pathOf(n), childPath(at, newName), who)));
        // Both names now stand for one upper object: make the new name find this node. Its path
        // afresh: a rename of an ancestor may have finished since (entryOf does the same).
        const info = await core.lookupNode(childPath(P, newName));
        // the unnamed file keeps its key (no other name shares it) so that found() returns its node
        const key = unnamed ? info.key ?? n.key : info.key;
        nodes.setKey(n, key);
        const m = nodes.found(P, newName, false, inoOf(info.attr), key);
        return [m, info.attr] as [Node, AttrArray];
      }, replyEntry(req), { changes: () => [P, nodes.get(id)] });
    },
    unlink(req, parent, name) {
      let P: Node | undefined;
      settle('unlink', req, () => describe(parent, name), async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        await againIfMoved(() => core.unlink(childPath(at, name), who));
        nodes.removed(at, name);
      }, () => { ll.replyErr(req, 0); }, { changes: () => [P] });
    },
    rmdir(req, parent, name) {
      let P: Node | undefined;
      settle('rmdir', req, () => describe(parent, name), async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        await againIfMoved(() => core.rmdir(childPath(at, name), who));
        nodes.removed(at, name);
      }, () => { ll.replyErr(req, 0); }, { changes: () => [P] });
    },
    rename(req, parent, name, newParent, newName, flags = 0) {
      let P: Node | undefined;
      let Q: Node | undefined;
      settle('rename', req, () => `${describe(parent, name)} to ${describe(newParent, newName)}${flags !== 0 ? ` flags=0x${flags.toString(16)}` : ''}`, async () => {
        P = nodeOf(parent);
        Q = nodeOf(newParent);
        // flags come only with RENAME2 (fuse_server=kernel, 7.23 on); libfuse 2.9 (7.19) never passes them
        const from = P, to = Q;
        // The node table moves in the same tick as the upper (core: `moved`), not after the
        // promise settles: continuations of other requests run in between and would rebuild
        // paths from the old names against the moved tree.
        const who = caller();
        const moved = (flags & RENAME_EXCHANGE) !== 0 ? () => nodes.exchanged(from, name, to, newName) : () => nodes.renamed(from, name, to, newName);
        await againIfMoved(() => core.rename(childPath(from, name), childPath(to, newName), flags, who, moved));
      }, () => { ll.replyErr(req, 0); }, {
        // the source may have been copied up even when the rename then failed
        changes: () => [P, Q, P && nodes.child(P, name), Q && nodes.child(Q, newName)],
      });
    },

    open(req, id, flags) {
      let n: Node | undefined;
      settle('open', req, () => `${describe(id)} flags=0x${flags.toString(16)}`, () => {
        const at = n = nodeOf(id);
        const who = caller();
        const openAs = (f: number): Promise<OpenResult> => againIfMoved(() => {
          const p = nodes.path(at);
          return p !== null ? core.open(p, f, who) : core.reopen(handleOf(at), f);
        });
        return writeback ? openForWriteback(flags, openAs) : openAs(flags);
      }, (r) => {
        (n!.fhs ??= new Set()).add(r.fh);
        const keep = closeToOpen ? opened(n!, r, flags) : r.keepCache;
        ll.replyOpen(req, r.fh, (keep ? 1 : 0) | (r.directIo ? 2 : 0), backingFd(r, passLower));
        return r.fh;
      }, { changes: () => [n] });
    },
    create(req, parent, name, mode, flags) {
      let P: Node | undefined;
      settle('create', req, () => `${describe(parent, name)} mode=${oct(mode)} flags=0x${flags.toString(16)}`, async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        const createAs = (f: number): Promise<OpenResult> => againIfMoved(() => core.create(childPath(at, name), mode, f, who));
        const r = await (writeback ? openForWriteback(flags, createAs) : createAs(flags));
        try {
          const [n, attr] = await entryOf(at, name);
          return { r, n, attr };
        } catch (e) {
          await core.release(null, r.fh).catch(() => undefined);
          throw e;
        }
      }, ({ r, n, attr }) => {
        (n.fhs ??= new Set()).add(r.fh);
        if (closeToOpen) opened(n, r, flags);
        ll.replyCreate(req, n.id, 0, shown(attr), attrTimeout, entryTimeout, r.fh, openFlags(r), backingFd(r, passLower));
        return r.fh;
      }, { changes: () => [P] });
    },
    read(req, id, size, offset, fh) {
      // reused (read-buffers.ts): the reply is written before replyBuf returns
      const buf = readBuffers.take(size);
      settle('read', req, () => `${describe(id)} fh=${fh} size=${size} off=${offset}`, () => {
        const n = nodes.get(id);
        return core.read(n ? nodes.path(n) : null, fh, buf, size, offset);
      }, (got) => { ll.replyBuf(req, buf, got); readBuffers.give(buf); return got; }, { onError: () => { readBuffers.give(buf); return false; } });
    },
    write(req, id, data, offset, fh, killPriv) {
      settle('write', req, () => `${describe(id)} fh=${fh} size=${data.length} off=${offset}`, async () => {
        const kwho = caller0();
        const who = caller();
        const n = nodes.get(id);
        const p = n ? nodes.path(n) : null;
        // a caller with CAP_FSETID keeps every bit: only marked writes pay for the look at the mode
        if ((serverKills ? killPriv === true : kwho.uid !== 0) && n !== undefined) {
          const attrNow = (): Promise<AttrArray> => core.fgetattr(p, fh);
          if (await killPrivs(p, () => fh, kwho, who, undefined, attrNow) && session !== undefined) ll.invalAttr(session, n.id);
        }
        return core.write(p, fh, data, data.length, offset);
      }, (done) => { ll.replyWrite(req, done); return done; });
    },
    flush(req, id, fh) {
      // The core has nothing to do on close(2) (the layers' files are flushed by their own close
      // on release; locks are the kernel's): ENOSYS once and the kernel stops sending FLUSH,
      // one request less per close.
      settle('flush', req, () => `${describe(id)} fh=${fh}`, async () => {
        await core.flush(null, fh);
        throw new FsError('ENOSYS', '', 'flush', 'not needed: the kernel stops asking');
      }, () => undefined);
    },
    release(req, id, fh) {
      settle('release', req, () => `${describe(id)} fh=${fh}`, () => {
        const n = nodes.get(id);
        n?.fhs?.delete(fh);
        // what this handle's writes left is what the kernel's pages hold (a writeback cache has
        // written them back by now: the kernel flushes before it releases)
        if (writers.delete(fh) && n !== undefined) {
          const v = core.handleVersion(fh);
          if (v !== undefined) versions.set(n, v);
        }
        return core.release(null, fh);
      }, () => { ll.replyErr(req, 0); });
    },
    fsync(req, id, datasync, fh) {
      settle('fsync', req, () => `${describe(id)} fh=${fh} datasync=${datasync}`, () => core.fsync(null, fh, datasync !== 0), () => { ll.replyErr(req, 0); });
    },

    opendir(req, id, flags) {
      settle('opendir', req, () => `${describe(id)} flags=0x${flags.toString(16)}`, async () => {
        const n = nodeOf(id);
        const fh = await core.opendir(pathOf(n), caller());
        // cache_dir: the listing now, to tell whether the kernel's cached one is still it
        if (cacheDir) dirs.set(fh, { ...listingOf(n, await core.readdir(nodes.path(n), fh), undefined), fresh: true, node: n, cached: false });
        return { fh, n };
      }, ({ fh, n }) => {
        const h = dirs.get(fh);
        if (h === undefined) { ll.replyOpen(req, fh, 0); return fh; }
        // Decided with the answer, in one run: no READDIR answer of another handle comes between.
        // The kernel keeps one cache per directory for all its open files and continues any of
        // them in it by offset; offsets index the listing of a handle, so only a handle opened
        // while no other is open fills it. Others read their own listings (as on kernel
        // overlayfs, where each open directory reads its own snapshot).
        const others = openDirs.get(n) ?? 0;
        openDirs.set(n, others + 1);
        const s = served.get(n);
        const keep = s !== undefined && s !== MIXED && sameListing(s, h.l);
        if (keep) h.l = s; else served.delete(n);
        h.cached = others === 0;
        ll.replyOpen(req, fh, (keep ? 1 : 0) | (h.cached ? 4 : 0));
        return fh;
      });
    },
    readdir(req, id, size, offset, fh) { list('readdir', req, id, size, offset, fh, false); },
    readdirplus(req, id, size, offset, fh) { list('readdirplus', req, id, size, offset, fh, true); },
    releasedir(req, id, fh) {
      settle('releasedir', req, () => `${describe(id)} fh=${fh}`, () => {
        const h = dirs.get(fh);
        if (h !== undefined) {
          const k = (openDirs.get(h.node) ?? 1) - 1;
          if (k > 0) openDirs.set(h.node, k); else openDirs.delete(h.node);
        }
        dirs.delete(fh);
        return core.releasedir(null, fh);
      }, () => { ll.replyErr(req, 0); });
    },
    fsyncdir(req, id, datasync, fh) {
      settle('fsyncdir', req, () => `${describe(id)} fh=${fh}`, () => core.fsyncdir(null, fh, datasync !== 0), () => { ll.replyErr(req, 0); });
    },
    statfs(req, id) {
      settle('statfs', req, () => describe(id), () => core.statfs(nodes.path(nodes.get(id) ?? nodes.root) ?? '/'),
        (s) => { ll.replyStatfs(req, statvfsArray(s)); });
    },

    setxattr(req, id, name, value, flags) {
      if (noXattrs) { ll.replyErr(req, ENOSYS); return; }
      let n: Node | undefined;
      settle('setxattr', req, () => `${describe(id)} name=${JSON.stringify(toText(name))} size=${value.length} flags=${flags}`, () => {
        const at = n = nodeOf(id);
        const who = caller();
        return againIfMoved(() => {
          const p = nodes.path(at);
          return p !== null ? core.setxattr(p, name, value, flags, who) : core.fsetxattr(handleOf(at), name, value, flags);
        });
      }, () => { ll.replyErr(req, 0); }, { changes: () => [n] });
    },
    getxattr(req, id, name, size) {
      if (noXattrs) { ll.replyErr(req, ENOSYS); return; }
      settle('getxattr', req, () => `${describe(id)} name=${JSON.stringify(toText(name))} size=${size}`, () => {
        const n = nodeOf(id);
        const p = nodes.path(n);
        return p !== null ? core.getxattr(p, name) : core.fgetxattr(handleOf(n), name);
      }, (v) => replyXattrValue(ll, req, size, v));
    },
    listxattr(req, id, size) {
      if (noXattrs) { ll.replyErr(req, ENOSYS); return; }
      settle('listxattr', req, () => `${describe(id)} size=${size}`, () => {
        const n = nodeOf(id);
        const p = nodes.path(n);
        return p !== null ? core.listxattr(p) : core.flistxattr(handleOf(n));
      }, (names) => replyXattrValue(ll, req, size, xattrList(names)));
    },
    removexattr(req, id, name) {
      if (noXattrs) { ll.replyErr(req, ENOSYS); return; }
      let n: Node | undefined;
      settle('removexattr', req, () => `${describe(id)} name=${JSON.stringify(toText(name))}`, () => {
        const at = n = nodeOf(id);
        const who = caller();
        return againIfMoved(() => {
          const p = nodes.path(at);
          return p !== null ? core.removexattr(p, name, who) : core.fremovexattr(handleOf(at), name);
        });
      }, () => { ll.replyErr(req, 0); }, { changes: () => [n] });
    },
    fallocate(req, id, mode, offset, length, fh) {
      settle('fallocate', req, () => `${describe(id)} fh=${fh} mode=${mode} off=${offset} len=${length}`, () => {
        const n = nodes.get(id);
        return core.fallocate(n ? nodes.path(n) : null, fh, mode, offset, length);
      }, () => { ll.replyErr(req, 0); });
    },

    // The kernel server's only (fuse/kernel/file-requests.ts); each reply function is its own.
    lseek(req, id, fh, offset, whence) {
      settle('lseek', req, () => `${describe(id)} fh=${fh} off=${offset} whence=${whence}`, () => {
        const n = nodes.get(id);
        return core.lseek(n ? nodes.path(n) : null, fh, offset, whence);
      }, (off) => { ll.replyOffset!(req, off); });
    },
    copyFileRange(req, idIn, fhIn, offIn, idOut, fhOut, offOut, len, flags) {
      settle('copy_file_range', req, () => `${describe(idIn)} fh=${fhIn} off=${offIn} to ${describe(idOut)} fh=${fhOut} off=${offOut} len=${len} flags=${flags}`, async () => {
        const a = nodes.get(idIn);
        const b = nodes.get(idOut);
        const pOut = b ? nodes.path(b) : null;
        // A copy writes: S_ISUID/S_ISGID go as on a write by a caller without CAP_FSETID. The kernel
        // marks no COPY_FILE_RANGE (with killpriv_v2 its file_modified() leaves it to us; without,
        // it sent a SETATTR first and this finds nothing left to drop).
        const kwho = caller0();
        if (kwho.uid !== 0 && b !== undefined) {
          const attrNow = (): Promise<AttrArray> => core.fgetattr(pOut, fhOut);
          if (await killPrivs(pOut, () => fhOut, kwho, caller(), undefined, attrNow) && session !== undefined) ll.invalAttr(session, b.id);
        }
        return core.copyFileRange(a ? nodes.path(a) : null, fhIn, offIn, pOut, fhOut, offOut, len, flags);
      }, (n) => { ll.replyCount!(req, n); return n; });
    },
    tmpfile(req, parent, mode, flags) {
      let P: Node | undefined;
      settle('tmpfile', req, () => `${describe(parent)} mode=${oct(mode)} flags=0x${flags.toString(16)}`, async () => {
        const at = P = nodeOf(parent);
        const who = caller();
        const { open, attr } = await againIfMoved(() => core.tmpfile(pathOf(at), mode, flags, who));
        return { open, attr, n: nodes.unnamed(inoOf(attr)) };
      }, ({ open, attr, n }) => {
        (n.fhs ??= new Set()).add(open.fh);
        ll.replyCreate(req, n.id, 0, shown(attr), attrTimeout, entryTimeout, open.fh, openFlags(open));
        return open.fh;
      }, { changes: () => [P] });
    },
    statx(req, id, fh) {
      settle('statx', req, () => `${describe(id)} fh=${fh}`, async () => {
        const n = nodeOf(id);
        const p = nodes.path(n);
        const via = fh >= 0 ? fh : p === null ? handleOf(n) : -1;
        const attr = await (via >= 0 ? core.fgetattr(p, via) : core.getattr(p!));
        return { attr, btime: await core.btime(p, via) };
      }, ({ attr, btime }) => { ll.replyStatx!(req, shown(attr), btime, attrTimeout); });
    },
    syncfs(req, id) {
      settle('syncfs', req, () => describe(id), () => core.syncfs(), () => { ll.replyErr(req, 0); });
    },
  };

  /**
   * Names the layers changed behind the mount, as a listing shows them (the core noticed:
   * lookup_cache=0, or its cached listing was dropped): a name that appeared since the last
   * listing and has no node (the kernel may cache a negative dentry for it for
   * negative_timeout), and one that vanished but still has a node (a positive dentry).
   * Changes through the mount never qualify: a name made hands out a node, one removed or
   * renamed away loses it. Their dentries are dropped through the server's helper thread
   * (invalEntry): the caller of this READDIR holds the directory's lock.
   */
  function behindOurBack(d: Node, l: DirListing): void {
    const before = lastListed.get(d);
    lastListed.set(d, l);
    if (before === undefined || before === l || session === undefined || ll.invalEntry === undefined) return;
    const had = new Set(before.names);
    const has = new Set(l.names);
    const drop = (name: Bstr): void => {
      if (debug) log(`${new Date().toISOString()} changed behind the mount: ${describe(d.id, name)}, its dentry dropped`);
      ll.invalEntry!(session!, d.id, name);
    };
    for (const name of l.names) if (!had.has(name) && nodes.child(d, name) === undefined) drop(name);
    for (const name of before.names) if (!has.has(name) && nodes.child(d, name) !== undefined) drop(name);
  }

  /** A handle's listing from the core's entries: the one it has while they are the same array. */
  function listingOf(n: Node, entries: readonly MergedEntry[], had: DirHandle | undefined): Pick<DirHandle, 'l' | 'entries' | 'upIno'> {
    const up = n.names[n.names.length - 1]?.parent ?? n;
    if (had !== undefined && had.entries === entries && had.upIno === up.ino) return had;
    return { l: dirListing(n.ino, up.ino, entries, 3), entries, upIno: up.ino };
  }

  /**
   * READDIR and READDIRPLUS: from the handle's listing at `offset` (entry i answers offset
   * i + 1); offset 0 after the first answer is a rewind and lists afresh. READDIRPLUS looks
   * up the entries one answer can hold first; the nodes are handed out (counted) only for
   * those the answer held (replyDirPlus calls back for each).
   */
  function list(op: string, req: ReqId, id: NodeId, size: number, offset: number, fh: number, plus: boolean): void {
    let n: Node;
    settle(op, req, () => `${describe(id)} fh=${fh} size=${size} off=${offset}`, async () => {
      n = nodeOf(id);
      let h = dirs.get(fh);
      // A cache_dir handle lists afresh at every offset 0: the kernel asks only when its cache
      // is void, and keeps what it gets as the listing of the directory's state now.
      if (h === undefined || (offset === 0 && (!h.fresh || h.cached))) {
        const { l, entries, upIno } = listingOf(n, await core.readdir(nodes.path(n), fh), h);
        if (h === undefined) dirs.set(fh, h = { l, entries, upIno, fresh: false, node: n, cached: false });
        else Object.assign(h, { l, entries, upIno });
      }
      h.fresh = false;
      if (!plus) return { h, infos: undefined };
      const { names } = h.l;
      const end = Math.min(names.length, offset + plusFit(size));
      const at = n;
      const infos = await Promise.all(names.slice(offset, end).map((name) => (name === '.' || name === '..'
        ? undefined
        // an entry that cannot be looked up is listed without a node (READDIR's answer for it)
        : core.lookupNode(childPath(at, name)).catch(() => undefined))));
      return { h, infos };
    }, ({ h, infos }) => {
      const l = h.l;
      if (h.cached) {
        const s = served.get(n);
        if (s === undefined) served.set(n, l);
        else if (s !== MIXED && !sameListing(s, l)) served.set(n, MIXED);
      }
      if (offset === 0) behindOurBack(n, l);
      // an entry takes at least 32 bytes (fuse_dirent with a name up to 8 bytes)
      const max = Math.ceil(size / 32);
      const names = offset === 0 && l.names.length <= max ? l.names : l.names.slice(offset, offset + max);
      const modeIno = l.modeIno.subarray(3 * offset, 3 * (offset + names.length));
      if (infos === undefined || ll.replyDirPlus === undefined) return ll.replyDir(req, size, offset, names, modeIno);
      return ll.replyDirPlus(req, size, offset, names, modeIno, (i) => {
        const info = infos[i];
        if (info === undefined) return undefined;
        const m = nodes.found(n, names[i]!, (info.attr[StatIdx.mode]! & S_IFMT) === S_IFDIR, inoOf(info.attr), info.key);
        return { node: m.id, attr: shown(info.attr) };
      }, attrTimeout, entryTimeout);
    });
  }

  return {
    handlers,
    ctx,
    attach(s) { session = s; },
    initialized,
    opStats: () => requests.summary(),
    nodeCount: () => nodes.size,
    nodePaths: () => nodes.pathCache,
  };
}
