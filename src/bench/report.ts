import type { ImplKind, ImplName } from './impls.js';
import type { Unit } from './workloads.js';

export type Mode = 'cold' | 'warm';

export interface RunRecord {
  seconds: number;
  value: number;
  detail: string;
  /** Daemon CPU (utime+stime) spent during this run, FUSE implementations only. */
  daemonCpuSeconds?: number;
  /** What the client did in this run (files, entries, 1 MiB reads, 4 KiB reads): FUSE requests per op divide by it. */
  ops?: number;
}

export interface Cell {
  workload: string;
  title: string;
  mode: Mode;
  impl: ImplName;
  unit: Unit;
  status: 'ok' | 'failed' | 'absent';
  error?: string;
  runs: RunRecord[];
  median?: number;
  /** Largest VmHWM seen over this cell's daemons. */
  daemonPeakRssBytes?: number;
  daemonCpuSecondsMedian?: number;
  /** stratafs `stats --json`: after the last run, and the numeric change over that run. */
  statsAfter?: unknown;
  statsDelta?: unknown;
  /** Per-op profile of the last run, when the counters have stratafs's shape. */
  profile?: StratafsProfile;
}

export interface ImplStatus {
  name: ImplName;
  /** What was mounted under that name (absent in results from before variants: the name then says it). */
  kind?: ImplKind;
  available: boolean;
  reason?: string;
  /** What exactly was measured: kernel release, package version, stratafs commit. */
  version?: string;
}

export interface Results {
  format: 'stratafs-bench/1';
  startedAt: string;
  finishedAt: string;
  /** Set while the run is in progress or when it was interrupted. */
  partial?: boolean;
  quick: boolean;
  /** The bench's own arguments, to rerun the same thing. */
  args?: string[];
  runsPerCell: number;
  dataset: { hash: string; dir: string; totalFiles: number; totalBytes: number };
  host: { kernel: string; cpus: number; node: string; load: number[] };
  impls: ImplStatus[];
  cells: Cell[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * How many times more it costs stratafs than `other`: >1 means stratafs is slower, for seconds and for
 * IOPS alike (IOPS are inverted), so one threshold (e.g. 1.2x) reads the same way in every row.
 */
export function costRatio(unit: Unit, stratafs: number, other: number): number {
  if (unit === 'IOPS') return stratafs > 0 ? other / stratafs : Infinity;
  return other > 0 ? stratafs / other : Infinity;
}

/** Recursive numeric difference (after - before) of two JSON values; non-numeric leaves come from `after`. */
export function numericDelta(before: unknown, after: unknown): unknown {
  if (typeof after === 'number' && typeof before === 'number') return after - before;
  if (after !== null && typeof after === 'object' && !Array.isArray(after)) {
    const b = before !== null && typeof before === 'object' && !Array.isArray(before) ? (before as Record<string, unknown>) : {};
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(after as Record<string, unknown>)) out[k] = numericDelta(b[k], v);
    return out;
  }
  return after;
}

function fmtValue(unit: Unit, v: number | undefined): string {
  if (v === undefined) return '–';
  if (unit === 'IOPS') return `${Math.round(v)} IOPS`;
  return v >= 10 ? `${v.toFixed(1)} s` : v >= 0.1 ? `${v.toFixed(2)} s` : `${(v * 1000).toFixed(1)} ms`;
}

function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '–';
  return `${r.toFixed(2)}×`;
}

function fmtMiB(b: number | undefined): string {
  return b === undefined ? '–' : `${(b / (1024 * 1024)).toFixed(0)} MiB`;
}

function fmtCpu(s: number | undefined): string {
  return s === undefined ? '–' : `${s.toFixed(2)} s`;
}

export function cellFor(r: Results, workload: string, mode: Mode, impl: ImplName): Cell | undefined {
  return r.cells.find((c) => c.workload === workload && c.mode === mode && c.impl === impl);
}

function shown(c: Cell | undefined): string {
  if (c === undefined) return '–';
  if (c.status === 'absent') return 'absent';
  if (c.status === 'failed') return '**FAILED**';
  return fmtValue(c.unit, c.median);
}

/** Rows in first-seen order of (workload, mode). */
function rowKeys(r: Results): { workload: string; title: string; mode: Mode; unit: Unit }[] {
  const seen = new Set<string>();
  const out: { workload: string; title: string; mode: Mode; unit: Unit }[] = [];
  for (const c of r.cells) {
    const k = `${c.workload}/${c.mode}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ workload: c.workload, title: c.title, mode: c.mode, unit: c.unit });
  }
  return out;
}

export function markdown(r: Results): string {
  const lines: string[] = [];
  lines.push(`# stratafs benchmark ${r.quick ? '(--quick)' : '(full data set)'}${r.partial === true ? ' — PARTIAL (run unfinished or interrupted)' : ''}`);
  lines.push('');
  lines.push(
    `${r.startedAt} → ${r.finishedAt}; kernel ${r.host.kernel}, ${r.host.cpus} CPUs, node ${r.host.node}, ` +
      `load at start ${r.host.load.map((x) => x.toFixed(2)).join(' ')}; median of ${r.runsPerCell} run(s); ` +
      `data set ${r.dataset.hash}: ${r.dataset.totalFiles} files, ${fmtMiB(r.dataset.totalBytes)}.`,
  );
  if (r.args !== undefined) lines.push('', `Command: \`node dist/bench/main.js ${r.args.join(' ')}\``);
  lines.push('');
  for (const s of r.impls) {
    if (!s.available) lines.push(`- **${s.name}: absent** — ${s.reason ?? ''}`);
    else if (s.version !== undefined) lines.push(`- ${s.name}: ${s.version}`);
  }
  if (r.impls.length > 0) lines.push('');
  const ss = stratafsNames(r);
  // One stratafs column named stratafs keeps the table it always had; variants get their names.
  const abbr = (n: string): string => (ss.length === 1 && n === 'stratafs' ? 's' : n);
  lines.push('Ratios are stratafs cost ÷ other cost (>1 = stratafs slower; IOPS inverted). RSS = daemon peak VmHWM, CPU = daemon utime+stime per run (median).');
  lines.push('');
  const head = ['workload', 'mode', 'kernel', 'fuse-overlayfs', ...ss, ...ss.flatMap((n) => [`${abbr(n)}/fo`, `${abbr(n)}/k`]), 'fo RSS', 'fo CPU', ...ss.flatMap((n) => [`${abbr(n)} RSS`, `${abbr(n)} CPU`])];
  lines.push(`| ${head.join(' | ')} |`);
  lines.push(`|${head.map(() => '---|').join('')}`);
  const ok = (c: Cell | undefined): number | undefined => (c?.status === 'ok' ? c.median : undefined);
  for (const row of rowKeys(r)) {
    const k = cellFor(r, row.workload, row.mode, 'kernel');
    const fo = cellFor(r, row.workload, row.mode, 'fuse-overlayfs');
    const sc = ss.map((n) => cellFor(r, row.workload, row.mode, n));
    const ratios = sc.flatMap((s) => {
      const sv = ok(s);
      return [ok(fo), ok(k)].map((o) => fmtRatio(sv !== undefined && o !== undefined ? costRatio(row.unit, sv, o) : undefined));
    });
    const cols = [
      row.title, row.mode, shown(k), shown(fo), ...sc.map(shown), ...ratios,
      fmtMiB(fo?.daemonPeakRssBytes), fmtCpu(fo?.daemonCpuSecondsMedian),
      ...sc.flatMap((s) => [fmtMiB(s?.daemonPeakRssBytes), fmtCpu(s?.daemonCpuSecondsMedian)]),
    ];
    lines.push(`| ${cols.join(' | ')} |`);
  }
  const perOp = requestsPerOpMarkdown(r, ss);
  if (perOp !== '') lines.push('', '## FUSE requests per client operation (last measured run; op = file, entry, 1 MiB read, 4 KiB fio read, copy-up)', '', perOp);
  for (const n of ss) {
    if (!r.cells.some((c) => c.impl === n && c.status !== 'absent')) continue;
    lines.push('');
    lines.push(`## Targets of issue 5 for ${n} (ratios from this one run)`);
    lines.push('');
    lines.push(targetsMarkdown(r, n));
  }
  const failures = r.cells.filter((c) => c.status === 'failed');
  if (failures.length > 0) {
    lines.push('');
    lines.push('## Failures');
    lines.push('');
    for (const c of failures) lines.push(`- ${c.impl} / ${c.workload} / ${c.mode}: ${(c.error ?? '').replace(/\s*\n\s*/g, ' ⏎ ')}`);
  }
  for (const n of ss) {
    const withStats = r.cells.filter((c) => c.impl === n && (c.profile !== undefined || c.statsDelta !== undefined));
    if (withStats.length === 0) continue;
    lines.push('');
    lines.push(`## ${n} profile (FUSE ops of the last measured run: count × mean handler time = total, by total)`);
    lines.push('');
    for (const c of withStats) {
      const body = c.profile !== undefined ? formatProfile(c.profile, c.runs.at(-1)) : `\`${JSON.stringify(compactStats(c.statsDelta))}\``;
      lines.push(`- ${c.workload} / ${c.mode}: ${body}`);
    }
  }
  lines.push('');
  return lines.join('\n');
}

/** The columns that are stratafs: its variants in run order, or the one plain stratafs of older results. */
export function stratafsNames(r: Results): ImplName[] {
  const named = r.impls.filter((s) => (s.kind ?? s.name) === 'stratafs').map((s) => s.name);
  if (named.length > 0) return named;
  return r.cells.some((c) => c.impl === 'stratafs') ? ['stratafs'] : [];
}

/** FUSE requests (handler calls counted by stats) of the last run ÷ the client operations of that run. */
export function requestsPerOp(c: Cell): { requests: number; ops: number; perOp: number } | undefined {
  const last = c.runs.at(-1);
  if (c.profile === undefined || last?.ops === undefined || last.ops <= 0) return undefined;
  const requests = c.profile.ops.reduce((n, o) => n + o.count, 0);
  return { requests, ops: last.ops, perOp: requests / last.ops };
}

function requestsPerOpMarkdown(r: Results, ss: readonly ImplName[]): string {
  const rows: string[] = [];
  for (const row of rowKeys(r)) {
    const cols = ss.map((n) => {
      const c = cellFor(r, row.workload, row.mode, n);
      const q = c === undefined ? undefined : requestsPerOp(c);
      if (q === undefined) return '–';
      const us = c?.runs.at(-1)?.daemonCpuSeconds;
      const cpu = us !== undefined && q.requests > 0 ? `, ${((us * 1e6) / q.requests).toFixed(0)} µs CPU/req` : '';
      return `${q.perOp.toFixed(2)} (${q.requests} / ${q.ops}${cpu})`;
    });
    if (cols.every((x) => x === '–')) continue;
    rows.push(`| ${row.title} | ${row.mode} | ${cols.join(' | ')} |`);
  }
  if (rows.length === 0) return '';
  return [`| workload | mode | ${ss.map((n) => `${n} req/op (requests / ops, daemon CPU per request)`).join(' | ')} |`, `|---|---|${ss.map(() => '---|').join('')}`, ...rows].join('\n');
}

/** Drops zero counters so the per-workload line shows what the workload actually did. */
export function compactStats(v: unknown): unknown {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const c = compactStats(x);
      if (c === 0) continue;
      if (c !== null && typeof c === 'object' && !Array.isArray(c) && Object.keys(c).length === 0) continue;
      out[k] = c;
    }
    return out;
  }
  return v;
}

/** Lines comparing `now` with an earlier run, per workload/mode/implementation present in both. */
export function compare(old: Results, now: Results): string {
  const lines: string[] = [];
  if (old.dataset.hash !== now.dataset.hash) lines.push(`Note: different data sets (${old.dataset.hash} then ${now.dataset.hash}); the numbers are not comparable.`, '');
  if (old.runsPerCell !== now.runsPerCell) lines.push(`Note: median of ${old.runsPerCell} run(s) then of ${now.runsPerCell}.`, '');
  for (const s of now.impls) {
    const o = old.impls.find((x) => x.name === s.name);
    if (o?.version !== undefined && s.version !== undefined && o.version !== s.version) lines.push(`- ${s.name}: ${o.version} → ${s.version}`);
  }
  lines.push('| workload | mode | impl | before | now | change |', '|---|---|---|---|---|---|');
  for (const c of now.cells) {
    const o = cellFor(old, c.workload, c.mode, c.impl);
    if (o === undefined) continue;
    const before = o.status === 'ok' ? o.median : undefined;
    const after = c.status === 'ok' ? c.median : undefined;
    let change = '–';
    if (before !== undefined && after !== undefined && before > 0) {
      // Positive = slower now, for time and IOPS alike.
      const cost = costRatio(c.unit, after, before);
      change = `${cost >= 1 ? '+' : ''}${((cost - 1) * 100).toFixed(1)}% ${cost > 1.05 ? '(slower)' : cost < 0.95 ? '(faster)' : ''}`.trim();
    } else if (o.status !== c.status) {
      change = `${o.status} → ${c.status}`;
    }
    lines.push(`| ${c.title} | ${c.mode} | ${c.impl} | ${o.status === 'ok' ? fmtValue(o.unit, before) : o.status} | ${c.status === 'ok' ? fmtValue(c.unit, after) : c.status} | ${change} |`);
  }
  return lines.join('\n');
}

/** Where a FUSE daemon's time went during one run, per op type (from stratafs `stats --json`). */
export interface StratafsProfile {
  ops: { op: string; count: number; errors: number; totalMs: number; avgUs: number }[];
  lookupCache?: { hits: number; misses: number; hitRate: number; size: number; max: number };
  copyUps?: { count: number; bytes: number };
  whiteoutsWritten?: number;
  /** fuse_server=kernel: every request read from /dev/fuse (FORGET and INIT too) and the wakeups that read them */
  device?: { requests: number; batches: number };
  /** io_uring on: of those, the requests the ring delivered and the wakeups that took them */
  ring?: { requests: number; batches: number };
}

interface OpLike {
  count: number;
  errors?: number;
  avgUs: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function opOf(v: unknown): OpLike | null {
  if (!isRecord(v) || typeof v.count !== 'number' || typeof v.avgUs !== 'number') return null;
  return { count: v.count, avgUs: v.avgUs, ...(typeof v.errors === 'number' ? { errors: v.errors } : {}) };
}

function num(v: unknown, ...keys: string[]): number | undefined {
  let cur: unknown = v;
  for (const k of keys) cur = isRecord(cur) ? cur[k] : undefined;
  return typeof cur === 'number' ? cur : undefined;
}

/**
 * The counters' change over one run. Averages cannot be subtracted, but count × avg can: the op's total
 * handler time in the run is after.count·after.avg − before.count·before.avg. Null if the shape is not
 * the one stratafs's stats command prints (then the raw documents are kept instead).
 */
export function stratafsProfile(before: unknown, after: unknown): StratafsProfile | null {
  if (!isRecord(after) || !isRecord(after.ops)) return null;
  const bOps = isRecord(before) && isRecord(before.ops) ? before.ops : {};
  const ops: StratafsProfile['ops'] = [];
  for (const [op, v] of Object.entries(after.ops)) {
    const a = opOf(v);
    if (a === null) return null;
    const b = opOf(bOps[op]) ?? { count: 0, avgUs: 0, errors: 0 };
    const count = a.count - b.count;
    if (count <= 0) continue;
    const totalUs = a.count * a.avgUs - b.count * b.avgUs;
    ops.push({ op, count, errors: (a.errors ?? 0) - (b.errors ?? 0), totalMs: totalUs / 1000, avgUs: totalUs / count });
  }
  ops.sort((x, y) => y.totalMs - x.totalMs);
  const p: StratafsProfile = { ops };
  const hitsA = num(after, 'overlay', 'lookupCache', 'hits');
  const missA = num(after, 'overlay', 'lookupCache', 'misses');
  if (hitsA !== undefined && missA !== undefined) {
    const hits = hitsA - (num(before, 'overlay', 'lookupCache', 'hits') ?? 0);
    const misses = missA - (num(before, 'overlay', 'lookupCache', 'misses') ?? 0);
    p.lookupCache = {
      hits,
      misses,
      hitRate: hits + misses > 0 ? hits / (hits + misses) : 0,
      size: num(after, 'overlay', 'lookupCache', 'size') ?? 0,
      max: num(after, 'overlay', 'lookupCache', 'max') ?? 0,
    };
  }
  const cu = num(after, 'overlay', 'copyUps', 'count');
  if (cu !== undefined) {
    p.copyUps = {
      count: cu - (num(before, 'overlay', 'copyUps', 'count') ?? 0),
      bytes: (num(after, 'overlay', 'copyUps', 'bytes') ?? 0) - (num(before, 'overlay', 'copyUps', 'bytes') ?? 0),
    };
  }
  const dr = num(after, 'fuse', 'requests');
  const db = num(after, 'fuse', 'batches');
  if (dr !== undefined && db !== undefined) {
    p.device = { requests: dr - (num(before, 'fuse', 'requests') ?? 0), batches: db - (num(before, 'fuse', 'batches') ?? 0) };
  }
  const rr = num(after, 'fuse', 'uring', 'requests');
  const rb = num(after, 'fuse', 'uring', 'batches');
  if (rr !== undefined && rb !== undefined) {
    p.ring = { requests: rr - (num(before, 'fuse', 'uring', 'requests') ?? 0), batches: rb - (num(before, 'fuse', 'uring', 'batches') ?? 0) };
  }
  const wo = num(after, 'overlay', 'whiteoutsWritten');
  if (wo !== undefined) p.whiteoutsWritten = wo - (num(before, 'overlay', 'whiteoutsWritten') ?? 0);
  return p;
}

/**
 * `run` (wall time and daemon CPU of the same run) puts the handler time in proportion: what the
 * handlers do not account for is the trip through the kernel, libfuse and the binding to the JS thread.
 */
export function formatProfile(p: StratafsProfile, run?: RunRecord): string {
  const total = p.ops.reduce((s, o) => s + o.totalMs, 0);
  const nOps = p.ops.reduce((s, o) => s + o.count, 0);
  const parts = p.ops.map((o) => `${o.op} ${o.count}× ${o.avgUs.toFixed(0)} µs = ${o.totalMs.toFixed(0)} ms${o.errors > 0 ? ` (${o.errors} err)` : ''}`);
  const tail: string[] = [];
  if (run !== undefined && nOps > 0) {
    tail.push(
      `${nOps} ops in ${run.seconds.toFixed(2)} s wall (${((run.seconds * 1e6) / nOps).toFixed(0)} µs/op), handlers ${total.toFixed(0)} ms = ` +
        `${((total / 10) / run.seconds).toFixed(0)}% of wall${run.daemonCpuSeconds !== undefined ? `, daemon CPU ${run.daemonCpuSeconds.toFixed(2)} s` : ''}`,
    );
  } else {
    tail.push(`handlers ${total.toFixed(0)} ms`);
  }
  if (p.lookupCache !== undefined) {
    const lc = p.lookupCache;
    tail.push(`lookup cache ${(lc.hitRate * 100).toFixed(1)}% hits (${lc.hits}/${lc.hits + lc.misses}), ${lc.size}/${lc.max} entries`);
  }
  if (p.copyUps !== undefined && p.copyUps.count > 0) tail.push(`copy-ups ${p.copyUps.count} (${(p.copyUps.bytes / 1048576).toFixed(1)} MiB)`);
  if (p.whiteoutsWritten !== undefined && p.whiteoutsWritten > 0) tail.push(`whiteouts ${p.whiteoutsWritten}`);
  if (p.device !== undefined && p.device.batches > 0) {
    tail.push(p.ring !== undefined
      ? `${p.device.requests} requests in ${p.device.batches} wakeups, ${p.ring.requests} of them through io_uring (${p.ring.batches} wakeups)`
      : `${p.device.requests} requests read from /dev/fuse in ${p.device.batches} wakeups`);
  }
  return `${parts.join('; ')} — ${tail.join(', ')}`;
}

/** The round's targets from issue 5: stratafs cost ÷ fuse-overlayfs cost at most `limit`. */
export const TARGETS: readonly { group: string; mode: Mode; workloads: readonly string[]; limit: number }[] = [
  { group: 'warm cached reads', mode: 'warm', workloads: ['lstat', 'read-small', 'fio-randread', 'read-big'], limit: 1.2 },
  { group: 'warm listing workloads', mode: 'warm', workloads: ['walk', 'ls-l', 'git-status', 'untar', 'rm-rf'], limit: 2 },
  { group: 'big-file read, cold', mode: 'cold', workloads: ['read-big'], limit: 1.2 },
  { group: 'big-file copy-up', mode: 'cold', workloads: ['copyup-big'], limit: 1.2 },
  { group: 'big-file copy-up', mode: 'warm', workloads: ['copyup-big'], limit: 1.2 },
  { group: 'cold metadata', mode: 'cold', workloads: ['walk', 'lstat', 'ls-l', 'read-small', 'untar', 'rm-rf', 'git-status'], limit: 2 },
];

export const RSS_TARGET_BYTES = 200 * 1000 * 1000;
/** Issue 10: a stratafs mount answers within this long of its command starting (median of the latency cell). */
export const MOUNT_LATENCY_TARGET_S = 0.12;

export function targetsMarkdown(r: Results, impl: ImplName = 'stratafs'): string {
  const lines = ['| target | workload | mode | stratafs ÷ fuse-overlayfs | limit | met |', '|---|---|---|---|---|---|'];
  let met = 0;
  let total = 0;
  for (const t of TARGETS) {
    for (const w of t.workloads) {
      const s = cellFor(r, w, t.mode, impl);
      const fo = cellFor(r, w, t.mode, 'fuse-overlayfs');
      if (s === undefined || fo === undefined) continue;
      let ratio: number | undefined;
      let verdict: string;
      if (s.status !== 'ok') verdict = s.status === 'failed' ? '**no (stratafs failed)**' : 'n/a (stratafs absent)';
      else if (fo.status !== 'ok' || fo.median === undefined || s.median === undefined) verdict = 'n/a (no fuse-overlayfs number)';
      else {
        ratio = costRatio(s.unit, s.median, fo.median);
        total++;
        if (ratio <= t.limit) met++;
        verdict = ratio <= t.limit ? 'yes' : '**no**';
      }
      lines.push(`| ${t.group} | ${s.title} | ${t.mode} | ${fmtRatio(ratio)} | ${t.limit}× | ${verdict} |`);
    }
  }
  const lat = cellFor(r, 'mount', 'cold', impl);
  if (lat !== undefined && lat.status !== 'absent') {
    total++;
    const ok = lat.status === 'ok' && lat.median !== undefined && lat.median <= MOUNT_LATENCY_TARGET_S;
    if (ok) met++;
    const shownMs = lat.status === 'ok' && lat.median !== undefined ? `${(lat.median * 1000).toFixed(0)} ms` : 'failed';
    lines.push(`| mount answers (median of ${lat.runs.length}) | ${lat.title} | – | ${shownMs} | ≤ ${MOUNT_LATENCY_TARGET_S * 1000} ms | ${ok ? 'yes' : '**no**'} |`);
  }
  const sCells = r.cells.filter((c) => c.impl === impl && c.daemonPeakRssBytes !== undefined);
  if (sCells.length > 0) {
    const peak = Math.max(...sCells.map((c) => c.daemonPeakRssBytes as number));
    total++;
    if (peak < RSS_TARGET_BYTES) met++;
    lines.push(`| daemon peak RSS${r.quick ? ' (quick data set: indicative only)' : ''} | all | – | ${(peak / 1e6).toFixed(0)} MB | < 200 MB | ${peak < RSS_TARGET_BYTES ? 'yes' : '**no**'} |`);
  }
  const lc = r.cells.filter((c) => c.impl === impl).map((c) => c.profile?.lookupCache).filter((x): x is NonNullable<typeof x> => x !== undefined && x.max > 0);
  if (lc.length > 0) {
    const worst = lc.reduce((a, b) => (b.size / b.max > a.size / a.max ? b : a));
    total++;
    if (worst.size <= worst.max) met++;
    lines.push(`| lookup cache within its bound | all | – | ${worst.size} / ${worst.max} entries (fullest) | ≤ bound | ${worst.size <= worst.max ? 'yes' : '**no**'} |`);
  }
  lines.push('', `${met} of ${total} measurable targets met.`);
  return lines.join('\n');
}
