/**
 * Memory of a mount walked over a deep tree: what the daemon keeps must not
 * grow with the depth of the paths, only with the entries the caches' bounds
 * allow and the nodes the kernel holds (issue 11, depth and scale).
 *
 * Every cache of the daemon is keyed by a path (lookup results, merged
 * listings, lower- and upper-directory facts, the node table's paths), and a
 * path is as long as the tree is deep: any user of the mount can make a tree
 * whose every entry costs kilobytes. The test walks such a tree (30 levels of
 * 100-byte names, then directories of files) and a shallow one with the same
 * entries twice, with a small lookup cache so that the bounds are reached, and
 * reads the JS heap after a forced full GC (`stratafs stats --gc`):
 * - every cache is within its byte bound, the lookup cache within its entries;
 * - the heap grew by no more than the caches' bounds plus a depth-independent
 *   cost per kernel-held node;
 * - the second walk adds nothing.
 * Timing is not asserted: `npm run find-memory` (src/bench/find-memory.ts)
 * reports find x2 time and peak memory beside fuse-overlayfs.
 *
 * STRATAFS_LONG=1: 20,000 entries instead of 5,000.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mount, tempDir, unmountAll } from '../harness/mounts.js';
import { run } from '../harness/proc.js';
import { cli } from '../harness/cli-mount.js';
import type { DaemonStats } from '../../src/cli/stats.js';
import type { CacheFill } from '../../src/core/types.js';
import { cacheBounds } from '../../src/core/config.js';

const LONG = process.env.STRATAFS_LONG === '1';
/** directories at the bottom of the tree, each with FILES files */
const DIRS = LONG ? 4000 : 1000;
const FILES = 4;
const LOOKUP_CACHE = 2000;
/**
 * What one node of the node table may cost, whatever its depth: measured about
 * 400 bytes plus its name (src/fuse/lowlevel/nodes.ts); the names here are 100 bytes.
 */
const NODE_BYTES = 1024;
/**
 * The bounds lookup_cache=LOOKUP_CACHE sets, bytes (namei.ts, nodes.ts); `stratafs stats` must report
 * the same and hold each cache within its own.
 */
const BOUNDS = cacheBounds(LOOKUP_CACHE);
const CACHE_CAP = Object.values(BOUNDS).reduce((a, b) => a + b, 0);
/** the heap moves by this much between two GCs with nothing cached in between (code, compiled functions) */
const SLACK = 3 * 1024 * 1024;

afterEach(async () => {
  expect(await unmountAll()).toEqual([]);
});

const pad = (s: string, n: number, c: string): string => s.padEnd(n, c);

/** `depth` levels of `nameLen`-byte directory names, then DIRS directories of FILES files (names nameLen too). */
async function makeTree(lower: string, depth: number, nameLen: number): Promise<number> {
  let base = lower;
  for (let i = 0; i < depth; i++) base = join(base, pad(`d${i}`, nameLen, 'x'));
  await mkdir(base, { recursive: true });
  for (let d = 0; d < DIRS; d++) {
    const dir = join(base, pad(`g${d}`, nameLen, 'y'));
    await mkdir(dir);
    await Promise.all(Array.from({ length: FILES }, (_, f) => writeFile(join(dir, pad(`f${f}`, nameLen, 'z')), '')));
  }
  return depth + DIRS * (FILES + 1);
}

async function stats(mnt: string): Promise<DaemonStats> {
  const r = await cli(['stats', '--json', '--gc', mnt], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as DaemonStats;
}

/** find that stats every entry: the kernel looks each one up and keeps a node for it. */
async function walk(mnt: string): Promise<void> {
  const r = await run('find', [mnt, '-printf', '%s\n'], { timeoutMs: 300_000 });
  expect(r.code, r.stderr.toString()).toBe(0);
  expect(r.stdout.toString().split('\n').length).toBeGreaterThan(DIRS * FILES);
}

interface Measured { entries: number; nodes: number; heapGrowth: number; secondWalkGrowth: number; caches: Record<string, CacheFill> }

async function measure(prefix: string, depth: number, nameLen: number): Promise<Measured> {
  const t = await tempDir(prefix);
  for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
  const entries = await makeTree(join(t, 'l'), depth, nameLen);
  const mnt = join(t, 'mnt');
  const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, mnt, { extra: [`lookup_cache=${LOOKUP_CACHE}`] });
  try {
    const s0 = await stats(mnt);
    await walk(mnt);
    const s1 = await stats(mnt);
    await walk(mnt);
    const s2 = await stats(mnt);
    const lc = s2.overlay.lookupCache;
    expect(lc.size).toBeLessThanOrEqual(LOOKUP_CACHE);
    const caches: Record<string, CacheFill> = {
      lookup: { entries: lc.size, size: lc.bytes, max: lc.maxBytes },
      ...s2.overlay.caches,
      nodePaths: s2.nodePaths!,
    };
    for (const [name, bound] of Object.entries(BOUNDS)) {
      const c = caches[name]!;
      expect(c.max, name).toBe(bound);
      expect(c.size, `${name}: ${c.size} bytes over its bound ${c.max}`).toBeLessThanOrEqual(c.max);
    }
    return {
      entries, nodes: s2.nodes!, caches,
      heapGrowth: s2.memory.heapUsedBytes - s0.memory.heapUsedBytes,
      secondWalkGrowth: s2.memory.heapUsedBytes - s1.memory.heapUsedBytes,
    };
  } finally {
    await h.unmount();
  }
}

describe('memory of a walk does not grow with path length', () => {
  it(`a deep tree (30 x 100-byte names) and a shallow one, ${DIRS * (FILES + 1)} entries each, walked twice: heap within the cache bounds plus a per-node cost`, async () => {
    const shallow = await measure('mem-shallow', 0, 8);
    const deep = await measure('mem-deep', 30, 100);
    const per = (m: Measured): string => `${(m.heapGrowth / m.entries).toFixed(0)} B/entry`;
    console.log(`heap after GC: shallow ${per(shallow)} (${shallow.nodes} nodes), deep ${per(deep)} (${deep.entries} entries, ${deep.nodes} nodes); ` +
      `deep caches ${JSON.stringify(deep.caches)}`);
    for (const m of [deep, shallow]) {
      // Everything the walk left is in a bounded cache or is a node the kernel holds. (The kernel may
      // have dropped some dentries under memory pressure -- another run's drop_caches: fewer nodes,
      // and their memory gone with them, so the bounds hold all the same.)
      const cap = CACHE_CAP + m.nodes * NODE_BYTES + SLACK;
      expect(m.heapGrowth, `heap grew ${m.heapGrowth} B, cap ${cap} B (caches ${CACHE_CAP} B + ${m.nodes} nodes x ${NODE_BYTES} B)`)
        .toBeLessThanOrEqual(cap);
      // what the caches do not account for is the nodes, whose cost must not depend on depth
      const cached = Object.values(m.caches).reduce((a, c) => a + c.size, 0);
      expect(m.heapGrowth - cached - SLACK, `heap beyond the caches' ${cached} B, for ${m.nodes} nodes`).toBeLessThanOrEqual(m.nodes * NODE_BYTES);
      // the second walk is served from the kernel's caches and the bounded ones: it keeps nothing new
      expect(m.secondWalkGrowth).toBeLessThanOrEqual(SLACK);
    }
  }, 600_000);
});

/** VmHWM of a daemon, bytes */
async function peakRss(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(s)?.[1]) * 1024;
}

describe('memory of a long sequential read', () => {
  // Each READ reply used to get a Buffer of its own (128 KiB, 1 MiB with max_pages): garbage outside the JS heap that
  // V8 collects only after tens of MiB of it (a 64 MiB dd: peak RSS 82 -> 113 MiB).
  const SIZE = 256 * 1024 * 1024;
  const GROWTH = 16 * 1024 * 1024;
  it("a 256 MiB read raises the daemon's peak RSS by less than 16 MiB", async () => {
    const t = await tempDir('mem-read');
    for (const d of ['l', 'u', 'w', 'mnt']) await mkdir(join(t, d));
    // sparse: no disk used, and every byte still comes through the daemon's READ
    await writeFile(join(t, 'l', 'big'), '');
    await truncate(join(t, 'l', 'big'), SIZE);
    const mnt = join(t, 'mnt');
    // passthrough would let the kernel read the backing file itself: every READ must reach the daemon here
    const h = await mount('stratafs', { lowers: [join(t, 'l')], upper: join(t, 'u'), work: join(t, 'w') }, mnt, { extra: ['fuse_off=passthrough'] });
    try {
      const pid = h.pids[0]!;
      // the first read loads the read path's code; the second one is measured
      const dd = async (): Promise<void> => {
        const r = await run('dd', [`if=${join(mnt, 'big')}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'], { timeoutMs: 120_000 });
        expect(r.code, r.stderr.toString()).toBe(0);
      };
      await run('dd', [`if=${join(mnt, 'big')}`, 'of=/dev/null', 'bs=1M', 'count=8', 'iflag=direct'], { timeoutMs: 60_000 });
      const before = await peakRss(pid);
      await dd();
      const after = await peakRss(pid);
      const reads = (JSON.parse((await cli(['stats', '--json', mnt], { timeoutMs: 30_000 })).stdout) as DaemonStats).ops.read;
      console.log(`peak RSS ${(before / 1048576).toFixed(1)} -> ${(after / 1048576).toFixed(1)} MiB over a 256 MiB read (${reads?.count ?? 0} READs)`);
      // every byte went through the daemon
      expect(reads?.bytes ?? 0).toBeGreaterThanOrEqual(SIZE);
      expect(after - before).toBeLessThan(GROWTH);
    } finally {
      await h.unmount();
    }
  }, 180_000);
});
