import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Prng } from '../../src/bench/prng.js';
import { FULL_PARAMS, QUICK_PARAMS, paramsHash, type DatasetParams } from '../../src/bench/params.js';
import { BLOCK, blockPool, ensureDataset, expectedSlice, fillBlock, planDataset, smallContent, textPool } from '../../src/bench/dataset.js';

const TINY: DatasetParams = {
  ...QUICK_PARAMS,
  treeTops: 3,
  filesPerTop: 40,
  bigdirEntries: 10,
  repoFiles: 12,
  middleChanges: 6,
  middleDeletes: 4,
  opaqueNewFiles: 2,
  bigFileBytes: 2 * BLOCK + 123,
  mediumFiles: 1,
  mediumFileBytes: 4096,
  untarFiles: 10,
  copyUpSmall: 5,
  gitModify: 2,
  gitTouch: 2,
};

let tmp: string | undefined;
afterEach(() => {
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

describe('bench PRNG', () => {
  it('repeats for a seed and differs between seeds', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const xs = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(xs);
  });

  it('keeps int() in range and sample() distinct', () => {
    const r = new Prng(1);
    for (let i = 0; i < 1000; i++) {
      const v = r.int(7);
      expect(v >= 0 && v < 7 && Number.isInteger(v)).toBe(true);
    }
    const s = r.sample([...Array(50).keys()], 20);
    expect(new Set(s).size).toBe(20);
  });
});

describe('bench data set plan', () => {
  it('is a pure function of the params', () => {
    const a = planDataset(TINY);
    const b = planDataset(TINY);
    expect(b.bottom).toEqual(a.bottom);
    expect([...b.merged]).toEqual([...a.merged]);
    expect(b.copyUpTargets).toEqual(a.copyUpTargets);
    expect(paramsHash(TINY)).toBe(paramsHash({ ...TINY }));
    expect(paramsHash(TINY)).not.toBe(paramsHash({ ...TINY, seed: TINY.seed + 1 }));
    expect(paramsHash(FULL_PARAMS)).not.toBe(paramsHash(QUICK_PARAMS));
  });

  it('computes the merged view: changes win, whiteouts delete, the opaque dir hides the bottom', () => {
    const p = planDataset(TINY);
    expect(p.bottom.filter((f) => f.path.startsWith('tree/'))).toHaveLength(TINY.treeTops * TINY.filesPerTop);
    expect(p.whiteouts).toHaveLength(TINY.middleDeletes);
    for (const w of p.whiteouts) expect(p.merged.has(w)).toBe(false);
    for (const f of p.middle) expect(p.merged.get(f.path)).toBe(f.size);
    const opaque = p.opaqueDirs[0] as string;
    const bottomUnder = p.bottom.filter((f) => f.path.startsWith(`${opaque}/`));
    expect(bottomUnder.length).toBeGreaterThan(0);
    for (const f of bottomUnder) expect(p.merged.has(f.path)).toBe(false);
    expect([...p.merged.keys()].filter((k) => k.startsWith(`${opaque}/`))).toHaveLength(TINY.opaqueNewFiles);
    for (const t of p.copyUpTargets) {
      expect(p.merged.has(t)).toBe(true);
      expect(t.startsWith(`${p.rmTarget}/`)).toBe(false);
    }
    for (const f of p.bottom) {
      const depth = f.path.split('/').length - 2;
      if (f.path.startsWith('tree/')) expect(depth >= 1 && depth <= TINY.maxDepth).toBe(true);
    }
  });

  it('makes file contents of the planned size, and block slices that agree with whole blocks', () => {
    const pool = textPool(TINY.seed);
    for (const f of planDataset(TINY).bottom.slice(0, 50)) expect(smallContent(pool, f).length).toBe(f.size);
    const bp = blockPool(TINY.seed);
    const b1 = fillBlock(Buffer.alloc(BLOCK), bp, 3, 1);
    const b2 = Buffer.from(fillBlock(Buffer.alloc(BLOCK), bp, 3, 2));
    const across = expectedSlice(bp, 3, 2 * BLOCK - 10, 20);
    expect(across).toEqual(Buffer.concat([b1.subarray(BLOCK - 10), b2.subarray(0, 10)]));
  });
});

describe('bench data set on disk', () => {
  // trusted.overlay.* markers and whiteout devices: root only
  it.skipIf(process.geteuid?.() !== 0)('writes kernel-format whiteouts, the opaque marker, a committed repo, and is reused when present', () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ds-'));
    const logs: string[] = [];
    const m = ensureDataset(TINY, tmp, (s) => logs.push(s));
    const plan = planDataset(TINY);
    for (const w of plan.whiteouts) {
      const st = fs.lstatSync(path.join(m.layers.middle, w));
      expect(st.isCharacterDevice()).toBe(true);
      expect(st.rdev).toBe(0);
    }
    const opaque = path.join(m.layers.middle, plan.opaqueDirs[0] as string);
    expect(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.opaque', opaque]).toString()).toBe('y');
    const tracked = execFileSync('git', ['ls-files'], { cwd: path.join(m.layers.bottom, 'repo') }).toString().trim().split('\n');
    expect(tracked).toHaveLength(TINY.repoFiles);
    expect(fs.statSync(path.join(m.layers.top, m.bigFile)).size).toBe(TINY.bigFileBytes);
    // Data-filled, not sparse.
    expect(fs.statSync(path.join(m.layers.top, m.bigFile)).blocks * 512).toBeGreaterThanOrEqual(TINY.bigFileBytes);
    const tarList = execFileSync('tar', ['-tf', m.tarball]).toString().split('\n').filter((l) => l.length > 0 && !l.endsWith('/'));
    expect(tarList).toHaveLength(TINY.untarFiles);
    const treeList = fs.readFileSync(m.treeList, 'latin1').split('\0').filter((s) => s.length > 0);
    expect(treeList).toHaveLength(m.treeFiles);

    const again = ensureDataset(TINY, tmp, (s) => logs.push(s));
    expect(again).toEqual(m);
    expect(logs.at(-1)).toMatch(/reusing/);
  });
});
