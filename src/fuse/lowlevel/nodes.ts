/**
 * The node table of the low-level binding: which FUSE node id stands for which
 * overlay object, and by which names the kernel knows it.
 *
 * The kernel keeps one inode per node id and caches its attributes, so a node
 * must be one overlay *object*, as in kernel overlayfs (ovl_get_inode):
 * - a directory has one name;
 * - hard links of one upper file share a node (the kernel overlay hashes them by
 *   the upper inode), so a write or chmod through one name shows through the
 *   others at once, cached or not;
 * - lower hard links under a writable mount are separate nodes (the kernel does
 *   not share them either: a copy-up breaks the link), read-only mounts share
 *   them (hashed by the lower inode).
 * The core says which objects share a node with a `key` (Overlay.lookupNode).
 *
 * Names are tracked, not paths: a node's path is rebuilt from its parent chain,
 * so renaming a directory moves everything below it at once. Built paths are
 * kept in a cache bounded by bytes (a path is as long as the tree is deep: one
 * per node the kernel holds would grow with depth times nodes), and the whole
 * cache is void after any rename of a directory. What a node costs without its
 * path depends on its name only.
 *
 * Lifetime follows the kernel's lookup count: every reply that hands the
 * kernel a node (lookup, create, mkdir, mknod, symlink, link) counts one, each
 * FORGET takes its count off, and a node at zero is gone. A node whose last
 * name was removed lives on nameless while the kernel still holds it (a file
 * unlinked while open).
 */
import { LRUCache } from 'lru-cache';
import type { Bstr } from '../../shared/bstr.js';
import { cacheBounds, DEFAULT_LOOKUP_CACHE_SIZE } from '../../core/config.js';
import type { NodeId } from './contract.js';
import type { Ino } from '../../native/sys-api.js';

export const ROOT_ID: NodeId = 1;

/** Default bound of the path cache, bytes (the mount's comes from core/config.ts cacheBounds). */
export const PATH_CACHE_BYTES = cacheBounds(DEFAULT_LOOKUP_CACHE_SIZE).nodePaths;
/**
 * Heap bytes of one cached path beside its characters (one byte each: Bstr is
 * latin1): the string's header and the cons strings a concatenation leaves,
 * lru-cache's map entry and slots. Measured with `stratafs stats --gc`.
 */
const PATH_ENTRY_BYTES = 128;

interface Name { parent: Node; name: Bstr }

export class Node {
  nlookup = 0;
  /** names the kernel has for it, most recent last; directories have at most one */
  names: Name[] = [];
  /** identity shared by hard links (see Overlay.lookupNode), when it has one */
  key: string | undefined;
  /**
   * the nodes bound under this directory, by name (lookups, and unbinding them when it is
   * forgotten): one map per directory rather than one table keyed by `parent id/name`, whose
   * key strings cost ~60 bytes per node
   */
  kids: Map<Bstr, Node> | undefined;
  /** open file handles (to reach a nameless node) */
  fhs: Set<number> | undefined;
  /** the path cache's entry for this node is current while this equals the table's generation */
  cachedGen = -1;
  constructor(readonly id: NodeId, readonly isDir: boolean, public ino: Ino) {}
}

const open = (n: Node): boolean => n.fhs !== undefined && n.fhs.size > 0;

export class NodeTable {
  readonly root: Node;
  private readonly byId = new Map<NodeId, Node>();
  private readonly byKey = new Map<string, Node>();
  private nextId = ROOT_ID + 1;
  /** bumped by every rename of a directory: cached paths below it are stale */
  private pathGen = 0;
  private readonly paths: LRUCache<Node, Bstr>;

  constructor(rootIno: Ino, pathCacheBytes = PATH_CACHE_BYTES) {
    this.paths = new LRUCache<Node, Bstr>({ maxSize: pathCacheBytes, sizeCalculation: (p) => PATH_ENTRY_BYTES + p.length });
    this.root = new Node(ROOT_ID, true, rootIno);
    this.root.nlookup = 1; // the kernel never forgets the root
    this.byId.set(ROOT_ID, this.root);
  }

  get size(): number { return this.byId.size; }

  /** Changes whenever a directory was renamed or lost a name: paths built before may be stale. */
  get generation(): number { return this.pathGen; }

  get(id: NodeId): Node | undefined { return this.byId.get(id); }

  /** The node the kernel knows under `name` in `parent`, if any. */
  child(parent: Node, name: Bstr): Node | undefined { return parent.kids?.get(name); }

  /** The node's path in the mount, or null once it has no name (or an ancestor lost its). */
  path(n: Node): Bstr | null {
    if (n === this.root) return '/';
    // Up to the nearest node with a current cached path, without recursion: a chain may be thousands deep.
    const chain: Node[] = [];
    let p: Bstr | undefined;
    for (let c: Node = n; p === undefined;) {
      if (c === this.root) { p = '/'; break; }
      if (c.cachedGen === this.pathGen) p = this.paths.get(c);
      if (p !== undefined) break;
      const last = c.names[c.names.length - 1];
      if (last === undefined) return null;
      chain.push(c);
      c = last.parent;
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const c = chain[i]!;
      const name = c.names[c.names.length - 1]!.name;
      p = p === '/' ? '/' + name : p + '/' + name;
      this.paths.set(c, p);
      c.cachedGen = this.pathGen;
    }
    return p;
  }

  /** How full the path cache is (`stratafs stats`). */
  get pathCache(): { entries: number; size: number; max: number } {
    return { entries: this.paths.size, size: this.paths.calculatedSize, max: this.paths.maxSize };
  }

  /**
   * A lookup (or create) found `name` in `parent`: the node for that object,
   * existing or new, with its lookup count raised by one.
   */
  found(parent: Node, name: Bstr, isDir: boolean, ino: Ino, key: string | undefined): Node {
    const bound = parent.kids?.get(name);
    let n: Node | undefined;
    if (key !== undefined) {
      const k = this.byKey.get(key);
      if (k !== undefined && k.isDir === isDir && (k.names.length > 0 || open(k))) n = k;
    }
    // The same name still standing for the same object (a lookup after the
    // kernel's entry timed out): keep its node, or the kernel would see a new inode.
    // No key any more is no proof of another object: the link count fell back to 1.
    if (n === undefined && bound !== undefined && bound.isDir === isDir && bound.ino === ino &&
        (bound.key === undefined || key === undefined || bound.key === key)) {
      n = bound;
    }
    if (n === undefined) {
      n = new Node(this.nextId++, isDir, ino);
      this.byId.set(n.id, n);
    }
    n.ino = ino;
    if (bound !== undefined && bound !== n) this.unbind(bound, parent, name);
    if (bound !== n) this.bind(n, parent, name);
    this.setKey(n, key);
    n.nlookup++;
    return n;
  }

  /**
   * A file made without a name (O_TMPFILE), its lookup counted once: reached through its
   * open handles, and found again by its key when linkat gives it a name.
   */
  unnamed(ino: Ino): Node {
    const n = new Node(this.nextId++, false, ino);
    this.byId.set(n.id, n);
    this.setKey(n, `t${n.id}`);
    n.nlookup = 1;
    return n;
  }

  /** The kernel dropped `count` references. */
  forget(id: NodeId, count: number): void {
    const n = this.byId.get(id);
    if (n === undefined || n === this.root) return;
    n.nlookup -= count;
    if (n.nlookup > 0) return;
    this.byId.delete(id);
    this.paths.delete(n);
    for (const { parent, name } of n.names) {
      if (parent.kids?.get(name) === n) parent.kids.delete(name);
    }
    n.names.length = 0;
    if (n.key !== undefined && this.byKey.get(n.key) === n) this.byKey.delete(n.key);
    // Names still bound under a forgotten directory are names whose dentries the
    // kernel dropped first: a hard link kept alive by its other name (an open
    // file, a cached dentry elsewhere). Left bound, such a name could be the
    // link's last one, which path() follows into a node that no longer exists
    // (null, or a stale cached path), while the other name is fine.
    if (n.kids !== undefined && n.kids.size > 0) {
      // a copy: unbind() deletes from n.kids
      for (const [name, c] of [...n.kids]) this.unbind(c, n, name);
      this.pathGen++;
    }
    n.kids = undefined;
  }

  /** `name` in `parent` is gone (unlink, rmdir). */
  removed(parent: Node, name: Bstr): void {
    const n = parent.kids?.get(name);
    if (n !== undefined) this.unbind(n, parent, name);
  }

  /** `name` moved from `parent` to `newName` in `newParent`, replacing whatever had that name. */
  renamed(parent: Node, name: Bstr, newParent: Node, newName: Bstr): void {
    const n = parent.kids?.get(name);
    this.removed(newParent, newName);
    if (n === undefined) return;
    this.unbind(n, parent, name);
    this.bind(n, newParent, newName);
    // unbinding its only name dropped its key: a hard link renamed is still the same object as its other names
    if (n.key !== undefined && !this.byKey.has(n.key)) this.byKey.set(n.key, n);
    if (n.isDir) this.pathGen++;
  }

  /** renameat2(RENAME_EXCHANGE): the nodes at `name` in `parent` and `newName` in `newParent` swapped names. */
  exchanged(parent: Node, name: Bstr, newParent: Node, newName: Bstr): void {
    const a = parent.kids?.get(name);
    const b = newParent.kids?.get(newName);
    if (a !== undefined) this.unbind(a, parent, name);
    if (b !== undefined) this.unbind(b, newParent, newName);
    for (const [n, p, nm] of [[a, newParent, newName], [b, parent, name]] as const) {
      if (n === undefined) continue;
      this.bind(n, p, nm);
      // as in renamed(): unbinding its only name dropped its key
      if (n.key !== undefined && !this.byKey.has(n.key)) this.byKey.set(n.key, n);
      if (n.isDir) this.pathGen++;
    }
  }

  /** Record (or clear) the hard-link identity of a node after a change (a link made, a copy-up). */
  setKey(n: Node, key: string | undefined): void {
    if (n.key === key) return;
    if (n.key !== undefined && this.byKey.get(n.key) === n) this.byKey.delete(n.key);
    n.key = key;
    if (key !== undefined) this.byKey.set(key, n);
  }

  private bind(n: Node, parent: Node, name: Bstr): void {
    (parent.kids ??= new Map()).set(name, n);
    // A one-element literal: push() onto an empty array reserves 17 slots, 130 bytes more per node.
    if (n.names.length === 0) n.names = [{ parent, name }];
    else n.names.push({ parent, name });
    n.cachedGen = -1;
  }

  private unbind(n: Node, parent: Node, name: Bstr): void {
    if (parent.kids?.get(name) === n) parent.kids.delete(name);
    const i = n.names.findIndex((x) => x.parent === parent && x.name === name);
    if (i >= 0) n.names.splice(i, 1);
    n.cachedGen = -1;
    if (n.isDir) this.pathGen++;
    // A nameless object's inode number may be reused by the upper filesystem: never match it by key again --
    // unless it is open here: our open handle holds the inode (and its number), so another name with that
    // key is the same file (kernel overlayfs: one inode), and found() checks that it is still open.
    if (n.names.length === 0 && !open(n) && n.key !== undefined && this.byKey.get(n.key) === n) this.byKey.delete(n.key);
  }
}
