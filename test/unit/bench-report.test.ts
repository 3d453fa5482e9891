import { describe, expect, it } from 'vitest';
import { compare, costRatio, markdown, median, requestsPerOp, stratafsNames, stratafsProfile, type Results } from '../../src/bench/report.js';

function results(cells: Results['cells'], impls: Results['impls'] = []): Results {
  return {
    format: 'stratafs-bench/1',
    startedAt: 'a',
    finishedAt: 'b',
    quick: true,
    runsPerCell: 1,
    dataset: { hash: 'h', dir: '/d', totalFiles: 1, totalBytes: 1 },
    host: { kernel: 'k', cpus: 2, node: 'v20', load: [0, 0, 0] },
    impls,
    cells,
  };
}

describe('bench report math', () => {
  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
  });

  it('reads cost ratios the same way for seconds and IOPS', () => {
    expect(costRatio('s', 2, 1)).toBe(2);
    expect(costRatio('IOPS', 500, 1000)).toBe(2);
    expect(costRatio('IOPS', 0, 1000)).toBe(Infinity);
  });

  it('turns two stats documents into per-op totals and a hit rate', () => {
    const before = { ops: { getattr: { count: 10, errors: 0, avgUs: 20 } }, overlay: { lookupCache: { size: 5, max: 100, hits: 10, misses: 5 }, copyUps: { count: 0, bytes: 0 }, whiteoutsWritten: 0 } };
    const after = {
      ops: { getattr: { count: 30, errors: 1, avgUs: 30 }, read: { count: 4, errors: 0, avgUs: 100 } },
      overlay: { lookupCache: { size: 9, max: 100, hits: 40, misses: 15 }, copyUps: { count: 2, bytes: 10 }, whiteoutsWritten: 1 },
    };
    const p = stratafsProfile(before, after);
    expect(p).not.toBeNull();
    const getattr = p?.ops.find((o) => o.op === 'getattr');
    // 30·30 − 10·20 = 700 µs over 20 calls.
    expect(getattr?.totalMs).toBeCloseTo(0.7);
    expect(getattr?.avgUs).toBeCloseTo(35);
    expect(getattr?.errors).toBe(1);
    expect(p?.ops[0]?.op).toBe('getattr');
    expect(p?.lookupCache?.hitRate).toBeCloseTo(30 / 40);
    expect(p?.copyUps).toEqual({ count: 2, bytes: 10 });
    expect(stratafsProfile(undefined, { other: 1 })).toBeNull();
  });

  it('marks absent and failed implementations in the table and compares runs', () => {
    const old = results([
      { workload: 'walk', title: 'walk', mode: 'cold', impl: 'kernel', unit: 's', status: 'ok', runs: [], median: 1 },
      { workload: 'fio', title: 'fio', mode: 'warm', impl: 'kernel', unit: 'IOPS', status: 'ok', runs: [], median: 1000 },
    ]);
    const now = results(
      [
        { workload: 'walk', title: 'walk', mode: 'cold', impl: 'kernel', unit: 's', status: 'ok', runs: [], median: 1.5 },
        { workload: 'walk', title: 'walk', mode: 'cold', impl: 'fuse-overlayfs', unit: 's', status: 'failed', error: 'WRONG RESULT: x', runs: [] },
        { workload: 'walk', title: 'walk', mode: 'cold', impl: 'stratafs', unit: 's', status: 'absent', error: 'no', runs: [] },
        { workload: 'fio', title: 'fio', mode: 'warm', impl: 'kernel', unit: 'IOPS', status: 'ok', runs: [], median: 500 },
      ],
      [{ name: 'stratafs', available: false, reason: 'stratafs: mount failed: nope' }],
    );
    const md = markdown(now);
    expect(md).toContain('stratafs: mount failed: nope');
    expect(md).toContain('**FAILED**');
    expect(md).toMatch(/\| walk \| cold \| 1\.50 s \| \*\*FAILED\*\* \| absent \|/);
    const cmp = compare(old, now);
    expect(cmp).toMatch(/walk \| cold \| kernel \| 1\.00 s \| 1\.50 s \| \+50\.0% \(slower\)/);
    expect(cmp).toMatch(/fio \| warm \| kernel \| 1000 IOPS \| 500 IOPS \| \+100\.0% \(slower\)/);
  });
  it('reports the mount latency target (stratafs median against 120 ms)', () => {
    const cell = (impl: 'kernel' | 'fuse-overlayfs' | 'stratafs', median: number): Results['cells'][number] => ({
      workload: 'mount', title: 'mount latency (command start to first stat answered)', mode: 'cold', impl, unit: 's', status: 'ok',
      runs: Array.from({ length: 10 }, () => ({ seconds: median, value: median, detail: '' })), median,
    });
    const fast = markdown(results([cell('kernel', 0.003), cell('fuse-overlayfs', 0.004), cell('stratafs', 0.082)]));
    expect(fast).toContain('| 3.0 ms | 4.0 ms | 82.0 ms |');
    expect(fast).toMatch(/\| mount answers \(median of 10\) \| .* \| 82 ms \| ≤ 120 ms \| yes \|/);
    const slow = markdown(results([cell('stratafs', 0.214)]));
    expect(slow).toMatch(/\| mount answers \(median of 10\) \| .* \| 214 ms \| ≤ 120 ms \| \*\*no\*\* \|/);
  });
  it('gives each stratafs variant its own columns, ratios, requests per operation and targets', () => {
    const profile = (count: number): NonNullable<Results['cells'][number]['profile']> => ({ ops: [{ op: 'lookup', count, errors: 0, totalMs: 1, avgUs: 1 }] });
    const run = (seconds: number, ops: number, cpu: number): Results['cells'][number]['runs'][number] => ({ seconds, value: seconds, detail: '', ops, daemonCpuSeconds: cpu });
    const r = results(
      [
        { workload: 'ls-l', title: 'ls', mode: 'cold', impl: 'kernel', unit: 's', status: 'ok', runs: [], median: 0.1 },
        { workload: 'ls-l', title: 'ls', mode: 'cold', impl: 'fuse-overlayfs', unit: 's', status: 'ok', runs: [], median: 0.2, daemonPeakRssBytes: 2 * 1048576 },
        { workload: 'ls-l', title: 'ls', mode: 'cold', impl: 'stratafs-libfuse', unit: 's', status: 'ok', runs: [run(0.6, 1000, 0.3)], median: 0.6, profile: profile(3000), daemonPeakRssBytes: 90 * 1048576 },
        { workload: 'ls-l', title: 'ls', mode: 'cold', impl: 'stratafs-kernel', unit: 's', status: 'ok', runs: [run(0.4, 1000, 0.1)], median: 0.4, profile: profile(1000), daemonPeakRssBytes: 60 * 1048576 },
      ],
      [
        { name: 'kernel', kind: 'kernel', available: true },
        { name: 'fuse-overlayfs', kind: 'fuse-overlayfs', available: true },
        { name: 'stratafs-libfuse', kind: 'stratafs', available: true, version: 'bin/stratafs -o fuse_server=libfuse' },
        { name: 'stratafs-kernel', kind: 'stratafs', available: true, version: 'bin/stratafs -o fuse_server=kernel' },
      ],
    );
    expect(stratafsNames(r)).toEqual(['stratafs-libfuse', 'stratafs-kernel']);
    const md = markdown(r);
    expect(md).toContain('| workload | mode | kernel | fuse-overlayfs | stratafs-libfuse | stratafs-kernel | stratafs-libfuse/fo | stratafs-libfuse/k | stratafs-kernel/fo | stratafs-kernel/k |');
    expect(md).toContain('| ls | cold | 0.10 s | 0.20 s | 0.60 s | 0.40 s | 3.00× | 6.00× | 2.00× | 4.00× | 2 MiB | – | 90 MiB | – | 60 MiB | – |');
    // 3000 requests for 1000 entries, 0.3 s CPU: 100 µs each; the kernel variant 1 per entry
    expect(md).toContain('| ls | cold | 3.00 (3000 / 1000, 100 µs CPU/req) | 1.00 (1000 / 1000, 100 µs CPU/req) |');
    expect(md).toContain('## Targets of issue 5 for stratafs-libfuse');
    expect(md).toContain('## Targets of issue 5 for stratafs-kernel');
    expect(requestsPerOp(r.cells[0]!)).toBeUndefined();
    // results from before variants: one plain stratafs column, the table it always had
    const old = markdown(results([{ workload: 'ls-l', title: 'ls', mode: 'cold', impl: 'stratafs', unit: 's', status: 'ok', runs: [], median: 1 }], [{ name: 'stratafs', available: true }]));
    expect(old).toContain('| workload | mode | kernel | fuse-overlayfs | stratafs | s/fo | s/k | fo RSS | fo CPU | s RSS | s CPU |');
  });
});
