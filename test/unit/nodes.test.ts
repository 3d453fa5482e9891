/**
 * The node table of the low-level adapter (src/fuse/lowlevel/nodes.ts), without FUSE.
 *
 * The property test drives the table the way the kernel does, against a model
 * of three things: the filesystem (objects, their names, hard links, inode
 * numbers that get reused), the kernel's dentry cache (hashed dentries, dentries
 * pinned by open files that survive an unlink, dentries dropped under memory
 * pressure, inodes evicted -- FORGET with their whole count -- once no dentry
 * holds them), and what the table has been told. After every step it checks
 * paths, identity, lifetime and size against that model.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodeTable, ROOT_ID, type Node } from '../../src/fuse/lowlevel/nodes.js';

const ROOT_INO = 1;

describe('NodeTable: targeted cases', () => {
  it('the root is node 1, has path /, and is never forgotten', () => {
    const t = new NodeTable(ROOT_INO);
    expect(t.root.id).toBe(ROOT_ID);
    expect(t.path(t.root)).toBe('/');
    t.forget(ROOT_ID, 1);
    t.forget(ROOT_ID, 100);
    expect(t.get(ROOT_ID)).toBe(t.root);
    expect(t.size).toBe(1);
  });

  it('lookup of the same name for the same object reuses the node and counts each lookup', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'f', false, 10, undefined);
    const b = t.found(t.root, 'f', false, 10, undefined);
    expect(b).toBe(a);
    expect(a.nlookup).toBe(2);
    t.forget(a.id, 1);
    expect(t.get(a.id)).toBe(a);
    t.forget(a.id, 1);
    expect(t.get(a.id)).toBeUndefined();
    expect(t.child(t.root, 'f')).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('the same name for a different inode number (or type) is a new node; the old one loses that name', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'f', false, 10, undefined);
    const b = t.found(t.root, 'f', false, 11, undefined);
    expect(b).not.toBe(a);
    expect(t.child(t.root, 'f')).toBe(b);
    expect(t.path(a)).toBeNull();
    expect(t.path(b)).toBe('/f');
    const c = t.found(t.root, 'f', true, 11, undefined);
    expect(c).not.toBe(b);
    expect(t.path(c)).toBe('/f');
    // all three live until the kernel forgets them
    expect(t.size).toBe(4);
  });

  it('two names of one key share one node; removing one name keeps the other', () => {
    const t = new NodeTable(ROOT_INO);
    const d = t.found(t.root, 'd', true, 2, undefined);
    const a = t.found(t.root, 'a', false, 10, 'u10');
    const b = t.found(d, 'b', false, 10, 'u10');
    expect(b).toBe(a);
    expect(a.nlookup).toBe(2);
    expect(['/a', '/d/b']).toContain(t.path(a));
    t.removed(d, 'b');
    expect(t.path(a)).toBe('/a');
    t.removed(t.root, 'a');
    expect(t.path(a)).toBeNull();
    expect(t.get(a.id)).toBe(a); // still held by the kernel (open, unlinked)
  });

  it('a nameless node with a key is not matched again by key (the inode number may be reused)', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, 'u10');
    t.removed(t.root, 'a');
    // a new object that got the same upper inode number, hence the same key
    const b = t.found(t.root, 'b', false, 10, 'u10');
    expect(b).not.toBe(a);
    expect(t.path(a)).toBeNull();
    expect(t.path(b)).toBe('/b');
  });

  it('a nameless node with a key that is still open here is matched by key: the open handle holds the inode number', () => {
    // open a, rm a, then a lookup of b (another link the kernel did not know): one inode, as in kernel overlayfs
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, 'u10');
    a.fhs = new Set([7]);
    t.removed(t.root, 'a');
    expect(t.found(t.root, 'b', false, 10, 'u10')).toBe(a);
    expect(t.path(a)).toBe('/b');
    // closed and nameless again: no longer matched
    t.removed(t.root, 'b');
    a.fhs.delete(7);
    expect(t.found(t.root, 'c', false, 10, 'u10')).not.toBe(a);
  });

  it('renaming a directory moves the cached paths of everything below it', () => {
    const t = new NodeTable(ROOT_INO);
    const d = t.found(t.root, 'd', true, 2, undefined);
    const e = t.found(d, 'e', true, 3, undefined);
    const f = t.found(e, 'f', false, 4, undefined);
    const x = t.found(t.root, 'x', true, 5, undefined);
    expect(t.path(f)).toBe('/d/e/f'); // now cached
    t.renamed(t.root, 'd', x, 'moved');
    expect(t.path(d)).toBe('/x/moved');
    expect(t.path(e)).toBe('/x/moved/e');
    expect(t.path(f)).toBe('/x/moved/e/f');
    t.renamed(x, 'moved', t.root, 'x2');
    expect(t.path(f)).toBe('/x2/e/f');
    expect(t.child(t.root, 'd')).toBeUndefined();
    expect(t.child(t.root, 'x2')).toBe(d);
  });

  it('renaming over an existing target unbinds the target, which lives on nameless', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, undefined);
    const b = t.found(t.root, 'b', false, 11, undefined);
    t.renamed(t.root, 'a', t.root, 'b');
    expect(t.path(a)).toBe('/b');
    expect(t.path(b)).toBeNull();
    expect(t.child(t.root, 'b')).toBe(a);
    expect(t.child(t.root, 'a')).toBeUndefined();
    const d = t.found(t.root, 'd', true, 2, undefined);
    const sub = t.found(d, 's', false, 3, undefined);
    const e = t.found(t.root, 'e', true, 4, undefined);
    expect(t.path(sub)).toBe('/d/s');
    t.renamed(t.root, 'd', t.root, 'e'); // over an empty directory
    expect(t.path(sub)).toBe('/e/s');
    expect(t.path(e)).toBeNull();
  });

  it('a directory removed while its node lives makes the paths below it null', () => {
    const t = new NodeTable(ROOT_INO);
    const d = t.found(t.root, 'd', true, 2, undefined);
    const f = t.found(d, 'f', false, 3, undefined);
    expect(t.path(f)).toBe('/d/f');
    t.removed(d, 'f');
    t.removed(t.root, 'd');
    expect(t.path(d)).toBeNull();
    expect(t.path(f)).toBeNull();
  });

  it('setKey after a link makes the new name find the same node', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, undefined);
    t.setKey(a, 'u10');
    const b = t.found(t.root, 'b', false, 10, 'u10');
    expect(b).toBe(a);
    t.setKey(a, undefined);
    const c = t.found(t.root, 'c', false, 10, 'u10');
    expect(c).not.toBe(a);
  });

  it('a hard link keeps its other name usable when the kernel forgets the directory of its last name', () => {
    // The kernel dropped the dentry D/y and then D (memory pressure, drop_caches)
    // while the file stays cached (or open) as E/x: FORGET of D, none of the file.
    const t = new NodeTable(ROOT_INO);
    const D = t.found(t.root, 'D', true, 2, undefined);
    const E = t.found(t.root, 'E', true, 3, undefined);
    const f = t.found(E, 'x', false, 4, undefined);
    t.setKey(f, 'u4'); // as after link E/x -> D/y
    expect(t.found(D, 'y', false, 4, 'u4')).toBe(f);
    expect(t.path(f)).toBe('/D/y');
    t.forget(D.id, 1);
    expect(t.path(f)).toBe('/E/x');
    expect(t.child(D, 'y')).toBeUndefined();
    // a rmdir elsewhere (drops every cached path) changes nothing
    t.found(t.root, 'Z', true, 9, undefined);
    t.removed(t.root, 'Z');
    expect(t.path(f)).toBe('/E/x');
  });

  it('no stale cached path through a forgotten directory reaches a new object of the same name', () => {
    const t = new NodeTable(ROOT_INO);
    const D = t.found(t.root, 'D', true, 2, undefined);
    const E = t.found(t.root, 'E', true, 3, undefined);
    const f = t.found(E, 'x', false, 4, undefined);
    t.setKey(f, 'u4');
    t.found(D, 'y', false, 4, 'u4');
    expect(t.path(f)).toBe('/D/y'); // cached, and /D cached with it
    t.forget(D.id, 1); // dentries D/y and D dropped; f stays open through E/x
    t.removed(E, 'x'); // rm E/x: f is now named only D/y on disk (nlink 1)
    const D2 = t.found(t.root, 'D', true, 2, undefined); // rm D/y: looked up again
    const y = t.found(D2, 'y', false, 4, undefined);
    expect(y).not.toBe(f); // nlink 1 now: no key; f's name was under the forgotten D
    t.removed(D2, 'y');
    // f is unlinked everywhere and must have no path: a new D/y is another object
    expect(t.path(f)).toBeNull();
    const g = t.found(D2, 'y', false, 5, undefined);
    expect(t.path(g)).toBe('/D/y');
    expect(t.path(f)).toBeNull();
  });

  it('a hard link whose link count fell back to 1 (no key any more) keeps its node on a new lookup', () => {
    // open through c, rm c, the dentry of a dropped (the open file keeps the node): a lookup of a
    // must find the open file's node, or the kernel caches two inodes for one file
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, undefined);
    t.setKey(a, 'u10');
    expect(t.found(t.root, 'c', false, 10, 'u10')).toBe(a);
    t.removed(t.root, 'c');
    expect(t.found(t.root, 'a', false, 10, undefined)).toBe(a);
    expect(a.key).toBeUndefined();
    expect(t.path(a)).toBe('/a');
  });

  it('forget takes counts off in parts; the node goes at zero with all its names', () => {
    const t = new NodeTable(ROOT_INO);
    const a = t.found(t.root, 'a', false, 10, 'u10');
    t.found(t.root, 'b', false, 10, 'u10');
    t.found(t.root, 'a', false, 10, 'u10');
    expect(a.nlookup).toBe(3);
    t.forget(a.id, 2);
    expect(t.get(a.id)).toBe(a);
    t.forget(a.id, 1);
    expect(t.get(a.id)).toBeUndefined();
    expect(t.child(t.root, 'a')).toBeUndefined();
    expect(t.child(t.root, 'b')).toBeUndefined();
    // the key is free: the next lookup is a new node
    expect(t.found(t.root, 'a', false, 10, 'u10')).not.toBe(a);
    t.forget(a.id, 1); // a second forget of a gone node is ignored
    expect(t.size).toBe(2);
  });
});

// ---------------------------------------------------------------- the model

/** An object of the filesystem: a directory or a file (hard links: several names). */
interface Obj {
  oid: number;
  isDir: boolean;
  ino: number;
  links: { dir: Obj; name: string }[];
  kids: Map<string, Obj>;
}

/** A kernel dentry: hashed (reachable by name) or, once unlinked, kept only by open files (their handles in `fhs`). */
interface Dentry { parent: number; name: string; node: number; hashed: boolean; pins: number; fhs: number[] }

const NAMES = ['a', 'b', 'c', 'd'];

type Op =
  | { op: 'lookup'; dir: number; name: number }
  | { op: 'create'; dir: number; name: number; isDir: boolean }
  | { op: 'link'; file: number; dir: number; name: number }
  | { op: 'unlink'; dir: number; name: number }
  | { op: 'rename'; dir: number; name: number; dir2: number; name2: number }
  | { op: 'open'; dentry: number }
  | { op: 'close'; dentry: number }
  | { op: 'drop'; dentry: number; split: number }
  | { op: 'setKey'; node: number };

const idx = fc.nat({ max: 50 });
const nm = fc.nat({ max: NAMES.length - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('lookup' as const), dir: idx, name: nm }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('create' as const), dir: idx, name: nm, isDir: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('link' as const), file: idx, dir: idx, name: nm }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('unlink' as const), dir: idx, name: nm }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('rename' as const), dir: idx, name: nm, dir2: idx, name2: nm }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('open' as const), dentry: idx }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('close' as const), dentry: idx }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('drop' as const), dentry: idx, split: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('setKey' as const), node: idx }) },
);

const pick = <T>(xs: readonly T[], i: number): T | undefined => (xs.length === 0 ? undefined : xs[i % xs.length]);

class World {
  /** set before a World is built: a small path cache makes the table evict and rebuild paths between the checks */
  static pathCacheBytes: number | undefined;
  readonly table = new NodeTable(ROOT_INO, World.pathCacheBytes);
  readonly rootObj: Obj = { oid: 0, isDir: true, ino: ROOT_INO, links: [], kids: new Map() };
  private nextOid = 1;
  private nextFh = 1;
  /** node id -> the object it stands for (kept after a forget, to check a node is never handed out again) */
  readonly objOf = new Map<number, Obj>([[ROOT_ID, this.rootObj]]);
  /** node objects by id, including forgotten ones */
  readonly nodes = new Map<number, Node>([[ROOT_ID, this.table.root]]);
  /** the kernel's lookup count of each live node */
  readonly nlookup = new Map<number, number>();
  readonly dentries = new Set<Dentry>();
  /** names the table was told, "parentId/name" -> node id (minus removed, renamed away, forgotten) */
  readonly told = new Map<string, { parent: number; name: string; node: number }>();
  readonly log: string[] = [];

  constructor() {
    // to start from: two directories holding the two names of one file, and a plain file
    const a = this.mkObj(this.rootObj, 'a', true);
    const b = this.mkObj(this.rootObj, 'b', true);
    const x = this.mkObj(a, 'c', false);
    x.links.push({ dir: b, name: 'c' });
    b.kids.set('c', x);
    this.mkObj(this.rootObj, 'd', false);
  }

  mkObj(dir: Obj, name: string, isDir: boolean): Obj {
    const o: Obj = { oid: this.nextOid++, isDir, ino: this.allocIno(), links: [{ dir, name }], kids: new Map() };
    dir.kids.set(name, o);
    return o;
  }

  key(o: Obj): string | undefined {
    // as Overlay.lookupNode: only files with more than one link are keyed, by the upper inode number
    return !o.isDir && o.links.length > 1 ? 'u' + o.ino : undefined;
  }

  /** Inode numbers are reused as soon as no name and no open file holds them. */
  private allocIno(): number {
    const used = new Set<number>();
    for (const d of this.dentries) if (d.pins > 0) used.add(this.objOf.get(d.node)!.ino);
    const walk = (o: Obj): void => {
      used.add(o.ino);
      for (const k of o.kids.values()) walk(k);
    };
    walk(this.rootObj);
    let i = 2;
    while (used.has(i)) i++;
    return i;
  }

  fsPath(o: Obj): string | null {
    if (o === this.rootObj) return '/';
    const l = o.links[0];
    if (!l) return null;
    const p = this.fsPath(l.dir);
    return p === null ? null : (p === '/' ? '/' : p + '/') + l.name;
  }

  resolve(p: string): Obj | undefined {
    let o: Obj | undefined = this.rootObj;
    for (const part of p.split('/').filter((x) => x !== '')) o = o?.kids.get(part);
    return o;
  }

  live(id: number): boolean { return id === ROOT_ID || (this.nlookup.get(id) ?? 0) > 0; }

  hashed(parent: number, name: string): Dentry | undefined {
    for (const d of this.dentries) if (d.hashed && d.parent === parent && d.name === name) return d;
    return undefined;
  }

  /** Dirs the kernel can walk into: hashed dentries from the root down. */
  reachable(): Set<number> {
    const seen = new Set<number>([ROOT_ID]);
    for (let grew = true; grew;) {
      grew = false;
      for (const d of this.dentries) {
        if (d.hashed && seen.has(d.parent) && !seen.has(d.node)) { seen.add(d.node); grew = true; }
      }
    }
    return seen;
  }

  reachableDirs(): number[] { return [...this.reachable()].filter((id) => this.objOf.get(id)!.isDir).sort((a, b) => a - b); }

  /** Free a dentry nobody holds, then evict its inode if no dentry is left (FORGET with the whole count). */
  private tryFree(d: Dentry, split: number): void {
    if (d.hashed || d.pins > 0) return;
    for (const c of this.dentries) if (c.parent === d.node) return; // a child pins its parent
    this.dentries.delete(d);
    this.maybeEvict(d.node, split);
    // an unhashed parent (a removed dir) held only by this child goes too
    for (const p of [...this.dentries]) if (p.node === d.parent && !p.hashed) this.tryFree(p, split);
  }

  private maybeEvict(id: number, split: number): void {
    if (id === ROOT_ID) return;
    for (const d of this.dentries) if (d.node === id) return;
    const n = this.nlookup.get(id)!;
    // the kernel sends the whole count at eviction; send it in parts sometimes to see a partial count keep the node
    const first = split > 0 && n > 1 ? Math.min(split, n - 1) : n;
    this.table.forget(id, first);
    if (first < n) {
      expect(this.table.get(id), `node ${id} after a partial forget`).toBe(this.nodes.get(id));
      this.table.forget(id, n - first);
    }
    this.nlookup.delete(id);
    for (const [k, v] of this.told) if (v.node === id) this.told.delete(k);
  }

  private unhash(d: Dentry | undefined, split = 0): void {
    if (!d) return;
    d.hashed = false;
    this.tryFree(d, split);
  }

  /** A lookup reply (lookup, create, mkdir, link): the table's answer is checked against the model. */
  found(parent: number, name: string, o: Obj): number {
    const key = this.key(o);
    const prevTold = this.told.get(parent + '/' + name);
    const n = this.table.found(this.nodes.get(parent)!, name, o.isDir, o.ino, key);
    const old = this.objOf.get(n.id);
    if (old !== undefined) {
      expect(this.live(n.id), `found() handed out forgotten node ${n.id}`).toBe(true);
      expect(old.oid, `found(${parent}/${name}) gave node ${n.id} of object ${old.oid} for object ${o.oid}`).toBe(o.oid);
    }
    if (prevTold && prevTold.node !== n.id && this.objOf.get(prevTold.node) === o) {
      expect.fail(`found(${parent}/${name}) made node ${n.id} although node ${prevTold.node} has that name for the same object ${o.oid}`);
    }
    if (key !== undefined) {
      // two names of one keyed object share a node while that node has a name the kernel can use, or is open
      for (const [id, ob] of this.objOf) {
        if (ob === o && this.live(id) && id !== n.id && [...this.dentries].some((d) => (d.hashed || d.pins > 0) && d.node === id)) {
          expect.fail(`found(${parent}/${name}) made node ${n.id}; node ${id} of the same keyed object ${o.oid} is in the dcache or open`);
        }
      }
    }
    this.objOf.set(n.id, o);
    this.nodes.set(n.id, n);
    this.nlookup.set(n.id, (this.nlookup.get(n.id) ?? 0) + 1);
    this.told.set(parent + '/' + name, { parent, name, node: n.id });
    const d = this.hashed(parent, name);
    if (d?.node !== n.id) {
      this.unhash(d);
      this.dentries.add({ parent, name, node: n.id, hashed: true, pins: 0, fhs: [] });
    }
    return n.id;
  }

  /** The kernel has (or gets) a dentry for the name before it acts on it. */
  private ensure(parent: number, name: string): number | undefined {
    const o = this.objOf.get(parent)!.kids.get(name);
    if (!o) return undefined;
    return this.hashed(parent, name)?.node ?? this.found(parent, name, o);
  }

  apply(op: Op): void {
    const dirs = this.reachableDirs();
    const dentries = [...this.dentries];
    switch (op.op) {
      case 'lookup': {
        const p = pick(dirs, op.dir)!;
        const name = NAMES[op.name]!;
        const o = this.objOf.get(p)!.kids.get(name);
        this.log.push(`lookup ${p}/${name}`);
        if (o) this.found(p, name, o);
        return;
      }
      case 'create': {
        const p = pick(dirs, op.dir)!;
        const name = NAMES[op.name]!;
        const dir = this.objOf.get(p)!;
        if (dir.kids.has(name)) return;
        const o = this.mkObj(dir, name, op.isDir);
        this.log.push(`create ${p}/${name} ${op.isDir ? 'dir' : 'file'} ino ${o.ino} -> obj ${o.oid}`);
        this.found(p, name, o);
        return;
      }
      case 'link': {
        const files = dentries.filter((d) => d.hashed && this.reachable().has(d.node) && !this.objOf.get(d.node)!.isDir);
        const src = pick(files, op.file);
        const q = pick(dirs, op.dir)!;
        const name = NAMES[op.name]!;
        if (!src) return;
        const o = this.objOf.get(src.node)!;
        const qd = this.objOf.get(q)!;
        if (qd.kids.has(name)) return;
        o.links.push({ dir: qd, name });
        qd.kids.set(name, o);
        this.log.push(`link node ${src.node} (obj ${o.oid}) to ${q}/${name}`);
        // as the adapter: record the new identity on the node linked, then hand out the entry
        this.table.setKey(this.nodes.get(src.node)!, this.key(o));
        const got = this.found(q, name, o);
        expect(got, 'a link answers with the node linked').toBe(src.node);
        return;
      }
      case 'unlink': {
        const p = pick(dirs, op.dir)!;
        const name = NAMES[op.name]!;
        const dir = this.objOf.get(p)!;
        const o = dir.kids.get(name);
        if (!o || (o.isDir && o.kids.size > 0)) return;
        this.ensure(p, name);
        this.log.push(`${o.isDir ? 'rmdir' : 'unlink'} ${p}/${name}`);
        this.table.removed(this.nodes.get(p)!, name);
        this.told.delete(p + '/' + name);
        dir.kids.delete(name);
        o.links.splice(o.links.findIndex((l) => l.dir === dir && l.name === name), 1);
        this.unhash(this.hashed(p, name));
        return;
      }
      case 'rename': {
        const p = pick(dirs, op.dir)!;
        const q = pick(dirs, op.dir2)!;
        const name = NAMES[op.name]!;
        const name2 = NAMES[op.name2]!;
        const pd = this.objOf.get(p)!;
        const qd = this.objOf.get(q)!;
        const o = pd.kids.get(name);
        const t = qd.kids.get(name2);
        if (!o || t === o) return;
        if (t && (t.isDir !== o.isDir || (t.isDir && t.kids.size > 0))) return;
        if (o.isDir) {
          for (let a: Obj | undefined = qd; a; a = a.links[0]?.dir) if (a === o) return; // into itself
        }
        this.ensure(p, name);
        if (t) this.ensure(q, name2);
        this.log.push(`rename ${p}/${name} to ${q}/${name2}${t ? ` over obj ${t.oid}` : ''}`);
        this.table.renamed(this.nodes.get(p)!, name, this.nodes.get(q)!, name2);
        const moved = this.told.get(p + '/' + name);
        this.told.delete(q + '/' + name2);
        this.told.delete(p + '/' + name);
        if (moved) this.told.set(q + '/' + name2, { parent: q, name: name2, node: moved.node });
        if (t) {
          qd.kids.delete(name2);
          t.links.splice(t.links.findIndex((l) => l.dir === qd && l.name === name2), 1);
        }
        pd.kids.delete(name);
        const l = o.links.find((x) => x.dir === pd && x.name === name)!;
        l.dir = qd; l.name = name2;
        qd.kids.set(name2, o);
        const target = this.hashed(q, name2);
        const src = this.hashed(p, name)!;
        src.parent = q; src.name = name2; // d_move
        this.unhash(target);
        return;
      }
      case 'open': {
        const d = pick(dentries.filter((x) => x.hashed && !this.objOf.get(x.node)!.isDir && this.reachable().has(x.node)), op.dentry);
        if (!d) return;
        const fh = this.nextFh++;
        this.log.push(`open node ${d.node} via ${d.parent}/${d.name}: fh ${fh}`);
        d.pins++;
        d.fhs.push(fh);
        (this.nodes.get(d.node)!.fhs ??= new Set()).add(fh);
        return;
      }
      case 'close': {
        const d = pick(dentries.filter((x) => x.pins > 0), op.dentry);
        if (!d) return;
        this.log.push(`close node ${d.node} (${d.hashed ? '' : 'un'}hashed ${d.parent}/${d.name})`);
        d.pins--;
        this.nodes.get(d.node)!.fhs!.delete(d.fhs.pop()!);
        this.tryFree(d, 0);
        return;
      }
      case 'drop': {
        // memory pressure: an unused leaf dentry goes; its inode is evicted if that was its last dentry
        const d = pick(dentries.filter((x) => x.hashed && x.pins === 0 && ![...this.dentries].some((c) => c.parent === x.node)), op.dentry);
        if (!d) return;
        this.log.push(`drop dentry ${d.parent}/${d.name} of node ${d.node}`);
        d.hashed = false;
        this.tryFree(d, op.split);
        return;
      }
      case 'setKey': {
        const id = pick([...this.nlookup.keys()].sort((a, b) => a - b), op.node);
        if (id === undefined) return;
        const o = this.objOf.get(id)!;
        // only what the core would say now (a copy-up, a link seen): the object's current key
        if (o.links.length === 0) return;
        this.log.push(`setKey node ${id} ${String(this.key(o))}`);
        this.table.setKey(this.nodes.get(id)!, this.key(o));
        return;
      }
    }
  }

  /** Every file closed, every dentry dropped (leaves first), as `echo 2 > drop_caches` after the last close. */
  dropAll(): void {
    for (const d of [...this.dentries]) {
      if (d.pins > 0) {
        for (const fh of d.fhs.splice(0)) this.nodes.get(d.node)!.fhs!.delete(fh);
        d.pins = 0;
        this.tryFree(d, 1);
      }
    }
    for (let i = 0; this.dentries.size > 0; i++) {
      const before = this.dentries.size;
      this.apply({ op: 'drop', dentry: i, split: i % 3 });
      if (this.dentries.size === before && i > 10_000) throw new Error('dentries left that cannot be dropped');
    }
  }

  /** Paths by which the table may reach a node: told names whose parents are live and reachable the same way. */
  modelPaths(id: number, depth = 0): string[] {
    if (id === ROOT_ID) return ['/'];
    if (!this.live(id) || depth > 64) return [];
    const out: string[] = [];
    for (const v of this.told.values()) {
      if (v.node !== id) continue;
      for (const pp of this.modelPaths(v.parent, depth + 1)) out.push((pp === '/' ? '/' : pp + '/') + v.name);
    }
    return out;
  }

  check(): void {
    const t = this.table;
    const ctx = (): string => this.log.join('\n');
    expect(t.get(ROOT_ID), 'root').toBe(t.root);
    expect(t.size, `size\n${ctx()}`).toBe(this.nlookup.size + 1);
    const reach = this.reachable();
    for (const [id, n] of this.nodes) {
      if (id === ROOT_ID) continue;
      const live = this.live(id);
      expect(t.get(id), `node ${id} ${live ? 'live' : 'forgotten'}\n${ctx()}`).toBe(live ? n : undefined);
      if (!live) continue;
      expect(n.nlookup, `lookup count of node ${id}`).toBe(this.nlookup.get(id));
      const o = this.objOf.get(id)!;
      const p = t.path(n);
      const want = this.modelPaths(id);
      if (p !== null) {
        expect(this.resolve(p)?.oid, `path ${p} of node ${id} must name its object ${o.oid}\n${ctx()}`).toBe(o.oid);
        expect(want, `path ${p} of node ${id} is not one the table was told through live nodes\n${ctx()}`).toContain(p);
      } else {
        expect(want, `node ${id} has no path although it has names the kernel can use\n${ctx()}`).toEqual([]);
      }
      if (reach.has(id)) expect(p, `node ${id} is in the dcache but has no path\n${ctx()}`).not.toBeNull();
      if (o.isDir && p !== null) expect(p).toBe(this.fsPath(o));
    }
    // no binding leads to a forgotten node, and none is left under a forgotten directory
    for (const parent of this.nodes.values()) {
      for (const name of NAMES) {
        const c = t.child(parent, name);
        if (c === undefined) continue;
        expect(t.get(c.id), `binding ${parent.id}/${name} -> forgotten node ${c.id}\n${ctx()}`).toBe(c);
        expect(this.live(parent.id), `binding ${parent.id}/${name} -> ${c.id} under a forgotten directory\n${ctx()}`).toBe(true);
      }
    }
  }
}

describe('NodeTable: paths of a deep tree', () => {
  it('cost a bounded cache, not one full path per node: a chain of 2000 directories with 200-byte names', () => {
    const bound = 1024 * 1024;
    const t = new NodeTable(ROOT_INO, bound);
    const name = (i: number): string => String(i).padEnd(200, 'x');
    const chain: Node[] = [];
    let parent = t.root;
    for (let i = 0; i < 2000; i++) {
      parent = t.found(parent, name(i), true, 100 + i, undefined);
      chain.push(parent);
      // each lookup below a directory asks for its path (lowlevel/adapter.ts childPath): 2000 paths, 400 MB in all
      expect(t.path(parent)!.length).toBe(201 * (i + 1));
    }
    expect(t.pathCache.size).toBeLessThanOrEqual(bound);
    expect(t.pathCache.entries).toBeLessThan(10);
    // evicted paths come back right, and a rename high up moves everything below
    expect(t.path(chain[999]!)).toBe('/' + Array.from({ length: 1000 }, (_, i) => name(i)).join('/'));
    t.renamed(chain[0]!, name(1), chain[0]!, 'r');
    expect(t.path(chain[1999]!)).toBe('/' + [name(0), 'r', ...Array.from({ length: 1998 }, (_, i) => name(i + 2))].join('/'));
    expect(t.pathCache.size).toBeLessThanOrEqual(bound);
  });
});

describe('NodeTable: property test against a model of the filesystem and the kernel dcache', () => {
  it('paths, identity, lookup counts and size stay right over random operation sequences', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.constantFrom(undefined, 300, 600), (ops, pathCacheBytes) => {
        World.pathCacheBytes = pathCacheBytes;
        const w = new World();
        for (const op of ops) {
          w.apply(op);
          w.check();
        }
        // in the end the kernel drops every dentry it can: only pinned ones (and their parents) keep nodes
        w.dropAll();
        w.check();
        expect(w.table.size).toBe(1);
      }),
      { numRuns: 1500 },
    );
  });
});
