/**
 * Snapshots of a tree seen from outside a mount (merged view) and of an upper
 * directory's raw on-disk state, plus a comparer. Names are bytes: paths are
 * latin1 byte strings relative to the root ('' is the root itself).
 */
import { lstat, readdir, readlink, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { run, withTimeout } from './proc.js';

/** 'phantom': readdir lists the name but lstat says ENOENT (e.g. a whiteout the kernel lists in a pure-upper dir) */
export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chr' | 'blk' | 'sock' | 'phantom';

export interface TreeNode {
  path: string;
  type: NodeType;
  /** full st_mode */
  mode: number;
  uid: number;
  gid: number;
  /** files and symlinks */
  size?: number;
  /** sha256 of file content, first 16 hex digits */
  hash?: string;
  /** symlink target (latin1) */
  target?: string;
  /** non-directories */
  nlink?: number;
  /** chr/blk */
  rdev?: number;
  mtimeNs: bigint;
  ino: bigint;
  /** xattr name -> value as hex */
  xattrs: Record<string, string>;
}

export type Tree = Map<string, TreeNode>;

export function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): NodeType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chr';
  if (st.isBlockDevice()) return 'blk';
  return 'sock';
}

const b = (s: string) => Buffer.from(s, 'latin1');

/**
 * Parses `getfattr -R -P -h -d -m - -e hex --absolute-names` output (run with
 * LC_ALL=C, read as latin1): file names come raw except backslash, control
 * characters and newline, which getfattr writes as \ooo.
 */
export function parseGetfattr(out: string): Map<string, Record<string, string>> {
  const res = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      const name = line.slice(8).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      cur = {};
      res.set(name, cur);
    } else if (line && cur) {
      const eq = line.indexOf('=');
      const key = eq < 0 ? line : line.slice(0, eq);
      let val = eq < 0 ? '' : line.slice(eq + 1);
      if (val.startsWith('0x')) val = val.slice(2);
      else if (val.startsWith('"')) val = b(val.slice(1, -1)).toString('hex');
      cur[key] = val;
    }
  }
  return res;
}

/** All xattrs under root, keyed by path relative to root. Runs in a child process with a timeout. */
export async function readXattrs(root: string, timeoutMs = 30_000): Promise<Map<string, Record<string, string>>> {
  const r = await run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { timeoutMs });
  if (r.timedOut) throw new Error(`getfattr on ${root} timed out`);
  // getfattr exits 1 when some file could not be read; its stderr says which.
  // A name listed but not found (a whiteout a kernel lists in a pure-upper dir)
  // is the walk's business (type 'phantom'), not an error here.
  const errs = r.stderr.toString('latin1').split('\n').filter((l) => l.trim() && !/: No such file or directory$/.test(l));
  if (r.code !== 0 && errs.length) throw new Error(`getfattr on ${root} failed: ${errs.join('\n')}`);
  const byAbs = parseGetfattr(r.stdout.toString('latin1'));
  const out = new Map<string, Record<string, string>>();
  for (const [abs, x] of byAbs) {
    const rel = abs === root ? '' : abs.startsWith(root + '/') ? abs.slice(root.length + 1) : abs;
    out.set(rel, x);
  }
  return out;
}

/**
 * Walks `root` (a mountpoint or a plain dir) from the test process with async
 * calls only; the whole walk is bounded by `timeoutMs` so a hung daemon turns
 * into an error, not a hang.
 */
export async function snapshot(root: string, opts: { timeoutMs?: number; hashContent?: boolean } = {}): Promise<Tree> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const work = async (): Promise<Tree> => {
    const tree: Tree = new Map();
    const visit = async (rel: string): Promise<void> => {
      const abs = b(rel === '' ? root : `${root}/${rel}`);
      let st;
      try {
        st = await lstat(abs, { bigint: true });
      } catch (e) {
        if (rel === '' || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        tree.set(rel, { path: rel, type: 'phantom', mode: 0, uid: 0, gid: 0, mtimeNs: 0n, ino: 0n, xattrs: {} });
        return;
      }
      const type = typeOf(st);
      const node: TreeNode = {
        path: rel,
        type,
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs,
        ino: st.ino,
        xattrs: {},
      };
      if (type !== 'dir') node.nlink = Number(st.nlink);
      if (type === 'file' || type === 'symlink') node.size = Number(st.size);
      if (type === 'chr' || type === 'blk') node.rdev = Number(st.rdev);
      if (type === 'file' && opts.hashContent !== false) {
        node.hash = createHash('sha256').update(await readFile(abs)).digest('hex').slice(0, 16);
      }
      if (type === 'symlink') node.target = (await readlink(abs, { encoding: 'buffer' })).toString('latin1');
      tree.set(rel, node);
      if (type === 'dir') {
        const names = await readdir(abs, { encoding: 'buffer' });
        for (const n of names) await visit(rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`);
      }
    };
    await visit('');
    const xs = await readXattrs(root, timeoutMs);
    for (const [rel, x] of xs) {
      const node = tree.get(rel);
      if (node) node.xattrs = x;
    }
    return tree;
  };
  return withTimeout(work(), timeoutMs, `snapshot of ${root}`);
}

// ---------------------------------------------------------------- raw upper

export type RawType = NodeType | 'whiteout';

export interface RawNode {
  path: string;
  type: RawType;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  hash?: string;
  target?: string;
  rdev?: number;
  /** trusted.overlay.opaque / user.overlay.opaque / user.fuseoverlayfs.opaque = y, or a `.wh..wh..opq` child */
  opaque: boolean;
  /** trusted.overlay.redirect (or user.overlay.redirect) value */
  redirect?: string;
  /** xattrs minus overlay markers and kernel-private bookkeeping */
  xattrs: Record<string, string>;
}

/** Kernel/fuse-overlayfs bookkeeping that says nothing about the tree a user sees. */
const PRIVATE_XATTR = /^(trusted|user)\.(overlay|fuseoverlayfs)\.(origin|impure|nlink|upper|uuid|protattr|metacopy|opaque|redirect|.*)$/;

/** The upper as it lies on disk: whiteouts as such, opaque/redirect markers decoded, private xattrs dropped. */
export async function readRawUpper(upper: string): Promise<Map<string, RawNode>> {
  const tree = await snapshot(upper, { timeoutMs: 60_000 });
  const out = new Map<string, RawNode>();
  for (const [rel, n] of tree) {
    const hex = (k: string) => n.xattrs[k];
    const val = (k: string) => (hex(k) === undefined ? undefined : Buffer.from(hex(k)!, 'hex').toString('latin1'));
    const isWhiteout = n.type === 'chr' && n.rdev === 0;
    const xattrs: Record<string, string> = {};
    for (const [k, v] of Object.entries(n.xattrs)) if (!PRIVATE_XATTR.test(k)) xattrs[k] = v;
    const opaque = ['trusted.overlay.opaque', 'user.overlay.opaque', 'user.fuseoverlayfs.opaque'].some((k) => val(k) === 'y') ||
      tree.has(rel === '' ? '.wh..wh..opq' : `${rel}/.wh..wh..opq`);
    const redirect = val('trusted.overlay.redirect') ?? val('user.overlay.redirect');
    const node: RawNode = { path: rel, type: isWhiteout ? 'whiteout' : n.type, mode: n.mode, uid: n.uid, gid: n.gid, opaque, xattrs };
    if (redirect !== undefined) node.redirect = redirect;
    if (n.size !== undefined && n.type !== 'dir') node.size = n.size;
    if (n.hash) node.hash = n.hash;
    if (n.target !== undefined) node.target = n.target;
    if (!isWhiteout && n.rdev !== undefined) node.rdev = n.rdev;
    out.set(rel, node);
  }
  return out;
}

// ---------------------------------------------------------------- compare

export interface TreeDiff {
  path: string;
  field: string;
  a: string;
  b: string;
  /** the node's type on the first side, where it exists */
  nodeType?: NodeType;
}

/** Printable form of a latin1 byte-string path: non-printable bytes as \xHH. */
export function showPath(p: string): string {
  return p.replace(/[^\x20-\x7e]|[\\"]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')) || '/';
}

function linkPeers(tree: Tree): Map<string, string> {
  const byIno = new Map<bigint, string[]>();
  for (const n of tree.values()) {
    if (n.type === 'dir' || n.type === 'phantom') continue;
    const l = byIno.get(n.ino) ?? [];
    l.push(n.path);
    byIno.set(n.ino, l);
  }
  const out = new Map<string, string>();
  for (const l of byIno.values()) {
    const s = [...l].sort().map(showPath).join(',');
    for (const p of l) out.set(p, s);
  }
  return out;
}

export interface CompareOptions {
  /**
   * mtimes are compared where either side is older than this (ns since the
   * epoch): those were set on purpose (layer build, utimensat to a past time),
   * copy-up must keep them. Newer ones come from the clock and differ by nature.
   */
  mtimeCutoffNs: bigint;
}

/** Differences between two merged views; empty when they match. */
export function compareTrees(a: Tree, bTree: Tree, opts: CompareOptions): TreeDiff[] {
  const diffs: TreeDiff[] = [];
  const pa = linkPeers(a);
  const pb = linkPeers(bTree);
  const paths = [...new Set([...a.keys(), ...bTree.keys()])].sort();
  for (const p of paths) {
    const x = a.get(p);
    const y = bTree.get(p);
    if (!x || !y) {
      diffs.push({ path: p, field: 'exists', a: x ? x.type : 'missing', b: y ? y.type : 'missing' });
      continue;
    }
    const cmp = (field: string, u: unknown, v: unknown) => {
      const su = typeof u === 'string' && (field === 'target') ? showPath(u) : String(u);
      const sv = typeof v === 'string' && (field === 'target') ? showPath(v) : String(v);
      if (su !== sv) diffs.push({ path: p, field, a: su, b: sv, nodeType: x.type });
    };
    cmp('type', x.type, y.type);
    if (x.type !== y.type || x.type === 'phantom') continue;
    cmp('mode', '0' + x.mode.toString(8), '0' + y.mode.toString(8));
    cmp('uid', x.uid, y.uid);
    cmp('gid', x.gid, y.gid);
    cmp('size', x.size, y.size);
    cmp('hash', x.hash, y.hash);
    cmp('target', x.target, y.target);
    cmp('nlink', x.nlink, y.nlink);
    cmp('rdev', x.rdev, y.rdev);
    if (x.type !== 'dir') cmp('hardlinks', pa.get(p), pb.get(p));
    if (x.mtimeNs < opts.mtimeCutoffNs || y.mtimeNs < opts.mtimeCutoffNs) cmp('mtime', fmtNs(x.mtimeNs), fmtNs(y.mtimeNs));
    const keys = [...new Set([...Object.keys(x.xattrs), ...Object.keys(y.xattrs)])].sort();
    for (const k of keys) cmp(`xattr ${k}`, x.xattrs[k] ?? '(none)', y.xattrs[k] ?? '(none)');
  }
  return diffs;
}

export function fmtNs(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  const f = ns % 1_000_000_000n;
  return `${s}.${f.toString().padStart(9, '0')}`;
}

/** Normalized raw-upper differences (informational: on-disk form may legitimately differ). */
export function compareRaw(a: Map<string, RawNode>, bRaw: Map<string, RawNode>): TreeDiff[] {
  const diffs: TreeDiff[] = [];
  const paths = [...new Set([...a.keys(), ...bRaw.keys()])].sort();
  for (const p of paths) {
    const x = a.get(p);
    const y = bRaw.get(p);
    if (!x || !y) {
      diffs.push({ path: p, field: 'exists', a: x ? x.type : 'missing', b: y ? y.type : 'missing' });
      continue;
    }
    for (const f of ['type', 'opaque', 'size', 'hash', 'target'] as const) {
      if (String(x[f]) !== String(y[f])) diffs.push({ path: p, field: f, a: String(x[f]), b: String(y[f]) });
    }
    if ((x.redirect === undefined) !== (y.redirect === undefined)) diffs.push({ path: p, field: 'redirect', a: String(x.redirect), b: String(y.redirect) });
  }
  return diffs;
}
