/**
 * Sizes, as `docker ps -s` and `docker system df` report them: the writable
 * layer, the virtual size (writable + every lower, each once), and for a store
 * the size per image and what images share.
 *
 * "Size" is the apparent size of regular files and symlinks, each inode once
 * (hard links are not counted twice), which is what a layer tarball carries;
 * allocated blocks are reported beside it.
 */
import * as sys from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { Store } from './store.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../shared/constants.js';

export interface TreeSize {
  /** apparent bytes of regular files and symlinks, each inode once */
  bytes: number;
  /** bytes allocated on disk (st_blocks * 512), each inode once */
  allocated: number;
  /** directory entries below the root */
  entries: number;
}


/** Size of the tree at `root` (a text path), walked with the syscall addon so non-UTF-8 names are fine. */
export function treeSize(root: string): TreeSize {
  const fd = sys.openRoot(Buffer.from(root, 'utf8').toString('latin1'));
  try {
    return treeSizeAt(fd, '');
  } finally {
    sys.close(fd);
  }
}

export function treeSizeAt(dirfd: number, rel: Bstr): TreeSize {
  const out: TreeSize = { bytes: 0, allocated: 0, entries: 0 };
  const seen = new Set<string>();
  const st = sys.newStatArray();
  const walk = (dir: Bstr): void => {
    const { names, types } = sys.readdirat(dirfd, dir);
    for (let i = 0; i < names.length; i++) {
      const p = dir === '' ? names[i]! : dir + '/' + names[i]!;
      out.entries++;
      const t = types[i];
      if (sys.tryLstatat(dirfd, p, st) < 0) continue;
      const fmt = st[sys.StatIdx.mode]! & S_IFMT;
      if (fmt === S_IFREG || fmt === S_IFLNK) {
        if (st[sys.StatIdx.nlink]! > 1) {
          const key = `${st[sys.StatIdx.dev]}:${sys.inoOf(st)}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        out.bytes += st[sys.StatIdx.size]!;
        out.allocated += st[sys.StatIdx.blocks]! * 512;
      } else if (fmt === S_IFDIR || t === sys.DT.DIR) {
        out.allocated += st[sys.StatIdx.blocks]! * 512;
        walk(p);
      }
    }
  };
  walk(rel);
  return out;
}

export interface ContainerSize {
  /** the writable layer */
  writable: TreeSize;
  /** each lower, top first */
  lowers: { dir: string; size: TreeSize }[];
  /** writable + every distinct lower */
  virtual: number;
}

/** Lower sizes come from the store's records when a lower is a snapshot (no walk), else from a walk. */
export function containerSize(upper: string | undefined, lowers: string[], store?: Store): ContainerSize {
  const writable = upper ? treeSize(upper) : { bytes: 0, allocated: 0, entries: 0 };
  const fromStore = new Map<string, TreeSize>();
  if (store) for (const l of store.listLayers()) fromStore.set(store.snapshotFs(l.diffId), { bytes: l.size, allocated: 0, entries: l.entries });
  const distinct = [...new Set(lowers)];
  const lowerSizes = distinct.map((dir) => ({ dir, size: fromStore.get(dir) ?? treeSize(dir) }));
  const virtual = writable.bytes + lowerSizes.reduce((a, l) => a + l.size.bytes, 0);
  return { writable, lowers: lowerSizes, virtual };
}

export interface StoreSize {
  images: { name: string; layers: number; size: number; unique: number; shared: number }[];
  /** layers used by two or more images, each counted once */
  shared: number;
  /** every snapshot in the store, each once (includes layers no image uses) */
  total: number;
  unused: number;
}

export function storeSize(store: Store): StoreSize {
  const layers = new Map(store.listLayers().map((l) => [l.diffId, l.size]));
  const users = new Map<string, number>();
  const images = store.listImages();
  for (const img of images) for (const d of new Set(img.layers.map((l) => l.diffId))) users.set(d, (users.get(d) ?? 0) + 1);
  const out: StoreSize = { images: [], shared: 0, total: 0, unused: 0 };
  for (const img of images) {
    let size = 0, unique = 0, shared = 0;
    for (const d of new Set(img.layers.map((l) => l.diffId))) {
      const s = layers.get(d) ?? 0;
      size += s;
      if ((users.get(d) ?? 0) > 1) shared += s; else unique += s;
    }
    out.images.push({ name: img.name, layers: img.layers.length, size, unique, shared });
  }
  for (const [d, s] of layers) {
    out.total += s;
    const u = users.get(d) ?? 0;
    if (u > 1) out.shared += s;
    if (u === 0) out.unused += s;
  }
  return out;
}

/** 1536 -> "1.5 kB" (decimal units, as docker prints them). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${n} B` : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}
