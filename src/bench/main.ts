#!/usr/bin/env node
/**
 * `npm run bench`: stratafs against kernel overlayfs and fuse-overlayfs on one reproducible data set.
 * See issue 5. Runs as root (mounts, drop_caches). Every mount it makes lives under its own mkdtemp
 * directory and is removed by path; nothing else on the machine is touched.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ensureDataset, type Manifest } from './dataset.js';
import { FULL_PARAMS, QUICK_PARAMS } from './params.js';
import { IMPL_NAMES, MountError, fuseOverlayfsImpl, kernelImpl, makeStratafsImpl, reapDaemons, stratafsCli, type Impl, type ImplName, type MountHandle, type StratafsVariant } from './impls.js';
import { bash, describeFailure, findMount, syncAndDrop, killRunningChildren, sampleProc } from './proc.js';
import { CommandError, CorrectnessError, workloads, type Workload, type WorkloadCtx } from './workloads.js';
import { enableUring, restoreUring } from './enable-uring.js';
import { compare, markdown, median, numericDelta, stratafsProfile, type Cell, type ImplStatus, type Mode, type Results, type RunRecord } from './report.js';

interface Options {
  quick: boolean;
  runs?: number;
  cache: string;
  out: string;
  compare?: string;
  impl?: ImplName[];
  stratafsVariant: StratafsVariant[];
  stratafsBuild: StratafsVariant[];
  only?: string[];
  modes: Mode[];
  timeout?: number;
  fioSeconds?: number;
  stratafsCli?: string;
  prepareOnly: boolean;
  enableUring: boolean;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function list<T extends string>(allowed: readonly T[] | null) {
  return (v: string): T[] => {
    const items = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    for (const i of items) if (allowed !== null && !allowed.includes(i as T)) throw new InvalidArgumentError(`unknown: ${i} (one of ${allowed.join(', ')})`);
    return items as T[];
  };
}

/** A column name of its own: never one of the built-in names, never given twice. */
function columnName(name: string, prev: readonly StratafsVariant[]): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new InvalidArgumentError(`variant name ${JSON.stringify(name)}: letters, digits, . _ - only`);
  if ((IMPL_NAMES as readonly string[]).includes(name) && name !== 'stratafs') throw new InvalidArgumentError(`variant name ${name} is an implementation's`);
  if (prev.some((p) => p.name === name)) throw new InvalidArgumentError(`variant ${name} given twice`);
  return name;
}

/** NAME=OPTS: a column name of its own and the mount words it adds. */
function variant(v: string, prev: StratafsVariant[]): StratafsVariant[] {
  const eq = v.indexOf('=');
  const name = columnName(eq < 0 ? v : v.slice(0, eq), prev);
  const options = eq < 0 ? '' : v.slice(eq + 1);
  if (/\s/.test(options)) throw new InvalidArgumentError(`variant ${name}: mount options without spaces (comma-separated words)`);
  return [...prev, { name, options }];
}

/** NAME=PATH: a column mounted by another build's CLI script with its own defaults (a copy of an earlier commit), so before and after share one run. */
function build(v: string, prev: StratafsVariant[]): StratafsVariant[] {
  const eq = v.indexOf('=');
  if (eq < 0 || eq === v.length - 1) throw new InvalidArgumentError(`${JSON.stringify(v)}: NAME=PATH of a built dist/cli/main.js`);
  const name = columnName(v.slice(0, eq), prev);
  return [...prev, { name, options: '', cli: path.resolve(v.slice(eq + 1)) }];
}

const log = (s: string): void => {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
};

/** Mounts in use, so that an interrupted run still unmounts everything it mounted. */
const active = new Set<MountHandle>();
let activeRunRoot: string | null = null;
let onInterrupt: (() => void) | null = null;
/** First Ctrl-C: stop the running workload, keep what was measured, unmount, exit. Second: exit now. */
let interrupted = false;

async function cleanupAndExit(code: number): Promise<never> {
  try {
    onInterrupt?.();
  } catch {
    /* the mounts matter more than the partial results */
  }
  for (const h of active) {
    try {
      await h.unmount();
    } catch {
      /* best effort while exiting */
    }
  }
  await reapDaemons();
  // Only when nothing of ours is mounted below it any more: rm -rf must never walk into a live mount.
  if (activeRunRoot !== null && [...active].every((h) => findMount(h.mnt) === null)) {
    fs.rmSync(activeRunRoot, { recursive: true, force: true });
  }
  process.exit(code);
}

type Measured = { rec: RunRecord; statsAfter?: unknown; statsBefore?: unknown };

/** Collects one cell's runs; a failure anywhere fails the cell (a wrong answer is never averaged away). */
class CellAcc {
  readonly cell: Cell;
  private readonly peaks: number[] = [];
  failed = false;

  constructor(impl: Impl, w: Workload, mode: Mode) {
    this.cell = { workload: w.id, title: w.title, mode, impl: impl.name, unit: w.unit, status: 'ok', runs: [] };
  }

  add(r: Measured, last: boolean): void {
    this.cell.runs.push(r.rec);
    if (last && r.statsAfter !== undefined) {
      this.cell.statsAfter = r.statsAfter;
      const profile = stratafsProfile(r.statsBefore, r.statsAfter);
      if (profile !== null) this.cell.profile = profile;
      else this.cell.statsDelta = numericDelta(r.statsBefore, r.statsAfter);
    }
  }

  peak(bytes: number | undefined): void {
    if (bytes !== undefined) this.peaks.push(bytes);
  }

  fail(err: unknown, prefix = ''): void {
    if (this.failed) return;
    this.failed = true;
    this.cell.status = 'failed';
    let msg: string;
    if (err instanceof MountError) msg = `mount failed: ${err.message}`;
    else if (err instanceof CommandError) msg = `COMMAND FAILED: ${err.message}`;
    else if (err instanceof CorrectnessError) msg = `WRONG RESULT: ${err.message}`;
    else msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.cell.error = prefix + msg;
  }

  finish(): Cell {
    const c = this.cell;
    if (c.status === 'ok') {
      c.median = median(c.runs.map((r) => r.value));
      const cpu = c.runs.map((r) => r.daemonCpuSeconds).filter((x): x is number => x !== undefined);
      if (cpu.length > 0) c.daemonCpuSecondsMedian = median(cpu);
    }
    if (this.peaks.length > 0) c.daemonPeakRssBytes = Math.max(...this.peaks);
    return c;
  }
}

class Runner {
  readonly scratch: string;

  constructor(
    readonly m: Manifest,
    readonly runRoot: string,
    readonly o: { runs: number; timeoutMs: number; fioSeconds: number },
  ) {
    this.scratch = path.join(runRoot, 'scratch');
    fs.mkdirSync(this.scratch, { recursive: true });
  }

  /** A fresh upper+work dir and mount for `fn`; always unmounted and removed afterwards. */
  async withMount(impl: Impl, tag: string, fn: (h: MountHandle, c: WorkloadCtx) => Promise<void>): Promise<{ peakRss?: number }> {
    const dir = fs.mkdtempSync(path.join(this.runRoot, `${impl.name}-${tag}-`));
    const d = { upper: path.join(dir, 'upper'), work: path.join(dir, 'work'), mnt: path.join(dir, 'mnt') };
    for (const p of Object.values(d)) fs.mkdirSync(p);
    let h: MountHandle;
    try {
      h = await impl.mount(this.m, d);
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err instanceof MountError ? err : new MountError(String(err));
    }
    active.add(h);
    let peakRss: number | undefined;
    try {
      const ctx: WorkloadCtx = { mnt: d.mnt, upper: d.upper, m: this.m, scratch: this.scratch, timeoutMs: this.o.timeoutMs, fioSeconds: this.o.fioSeconds, runIndex: 0 };
      await fn(h, ctx);
    } catch (err) {
      // The daemon's own account of a failure is worth more than the symptom seen from outside.
      const logFile = path.join(dir, 'stratafs.log');
      if (err instanceof Error && fs.existsSync(logFile)) {
        const tail = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-5).join(' | ');
        if (tail.length > 0) err.message += ` [daemon log: ${tail}]`;
      }
      throw err;
    } finally {
      if (h.pid !== null) peakRss = sampleProc(h.pid)?.hwmBytes;
      await h.unmount();
      active.delete(h);
      // Never recurse into a mount that is still there.
      if (findMount(d.mnt) === null) fs.rmSync(dir, { recursive: true, force: true });
      else log(`warning: ${d.mnt} still mounted; left ${dir} in place`);
    }
    return peakRss === undefined ? {} : { peakRss };
  }

  async measureOnce(
    impl: Impl,
    w: Workload,
    h: MountHandle,
    c: WorkloadCtx,
    opts: { cold: boolean; stats: boolean },
  ): Promise<Measured> {
    const statsBefore = opts.stats ? await impl.stats(c.mnt) : undefined;
    // sync in warm mode too: write-back of an earlier run's dirty data must not land inside this one.
    await syncAndDrop(opts.cold);
    const before = h.pid !== null ? sampleProc(h.pid) : null;
    const m = await w.measure(c);
    const after = h.pid !== null ? sampleProc(h.pid) : null;
    const statsAfter = opts.stats ? await impl.stats(c.mnt) : undefined;
    await w.verify?.(c);
    const rec: RunRecord = { seconds: m.seconds, value: m.value, detail: m.detail };
    if (m.ops !== undefined) rec.ops = m.ops;
    if (before !== null && after !== null) rec.daemonCpuSeconds = after.cpuSeconds - before.cpuSeconds;
    if (!opts.stats) return { rec };
    return { rec, statsAfter, statsBefore };
  }

  /**
   * The cold and the warm cell of one workload on one implementation. Cold runs each get a fresh mount
   * (a daemon's own caches count as warm). For workloads that do not mutate, the last cold run doubles as
   * the warm-up and the warm runs follow in that same mount; mutating workloads get a fresh mount per run.
   */
  async cells(impl: Impl, w: Workload, modes: readonly Mode[]): Promise<Cell[]> {
    const n = this.o.runs;
    const wantStats = impl.kind === 'stratafs';
    const cold = modes.includes('cold') ? new CellAcc(impl, w, 'cold') : null;
    const warm = modes.includes('warm') ? new CellAcc(impl, w, 'warm') : null;
    const measure = async (acc: CellAcc, h: MountHandle, c: WorkloadCtx, i: number): Promise<void> => {
      const last = i === n - 1;
      acc.add(await this.measureOnce(impl, w, h, c, { cold: acc.cell.mode === 'cold', stats: wantStats && last }), last);
    };
    if (!w.mutates) {
      const mounts = cold !== null ? n : 1;
      for (let i = 0; i < mounts && !(cold?.failed ?? false) && !interrupted; i++) {
        let current: CellAcc | null = cold;
        try {
          const { peakRss } = await this.withMount(impl, w.id, async (h, c) => {
            await w.setup?.(c);
            if (cold !== null) await measure(cold, h, c, i);
            else await (w.warm ?? w.measure)(c);
            if (i === mounts - 1 && warm !== null) {
              current = warm;
              // A cold run may not have touched everything (fio reads a random part of the file).
              if (cold !== null) await w.warm?.(c);
              for (let j = 0; j < n && !interrupted; j++) {
                c.runIndex = j;
                await measure(warm, h, c, j);
              }
            }
          });
          cold?.peak(peakRss);
          warm?.peak(peakRss);
        } catch (err) {
          const acc: CellAcc | null = current;
          if (acc !== null) acc.fail(err);
          if (acc === cold && warm !== null) warm.fail(err, 'not measured, the cold run before it failed: ');
          if (acc === null) warm?.fail(err);
        }
      }
    } else {
      for (const acc of [cold, warm]) {
        if (acc === null) continue;
        for (let i = 0; i < n && !acc.failed && !interrupted; i++) {
          try {
            const { peakRss } = await this.withMount(impl, w.id, async (h, c) => {
              await w.setup?.(c);
              if (acc === warm) await w.warm?.(c);
              await measure(acc, h, c, i);
            });
            acc.peak(peakRss);
          } catch (err) {
            acc.fail(err);
          }
        }
      }
    }
    return [cold, warm].filter((a): a is CellAcc => a !== null).map((a) => a.finish());
  }

  /**
   * Mount latency (issue 10): LATENCY_MOUNTS fresh mounts, each timed from spawning the mount
   * command to the first stat the mount answers after the command exited (impls.ts timedMount).
   * Page caches stay warm: a container engine mounts again and again.
   */
  async latencyCell(impl: Impl): Promise<Cell> {
    const cell: Cell = { workload: LATENCY_ID, title: LATENCY_TITLE, mode: 'cold', impl: impl.name, unit: 's', status: 'ok', runs: [] };
    const ms = (s: number): string => `${(s * 1000).toFixed(1)} ms`;
    try {
      for (let i = 0; i < LATENCY_MOUNTS && !interrupted; i++) {
        await this.withMount(impl, LATENCY_ID, async (h) => {
          cell.runs.push({ seconds: h.answeredSeconds, value: h.answeredSeconds, detail: `command exited after ${ms(h.exitSeconds)}, first stat answered after ${ms(h.answeredSeconds)}` });
        });
      }
      cell.median = median(cell.runs.map((r) => r.value));
    } catch (err) {
      cell.status = 'failed';
      cell.error = err instanceof Error ? err.message : String(err);
    }
    return cell;
  }

  /** One mount + a look at the root, so a broken implementation is reported once, up front. */
  async probe(impl: Impl): Promise<string | null> {
    try {
      await this.withMount(impl, 'probe', async (_h, c) => {
        const r = await bash('ls -A', { cwd: c.mnt, timeoutMs: 30_000 });
        if (r.code !== 0) throw new MountError(`ls of the mount failed: ${describeFailure(r)}`);
        const names = r.stdout.split('\n');
        for (const want of ['tree', 'bigdir', 'repo', 'big']) if (!names.includes(want)) throw new MountError(`mount root lacks ${want}/ (got: ${names.join(' ').slice(0, 200)})`);
      });
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
}

/** The mount latency cell: `--only mount` runs just it. */
const LATENCY_ID = 'mount';
const LATENCY_TITLE = 'mount latency (command start to first stat answered)';
const LATENCY_MOUNTS = 10;

function summarize(c: Cell): string {
  if (c.status !== 'ok') return `${c.status.toUpperCase()}: ${c.error ?? ''}`;
  const v = c.unit === 'IOPS' ? `${Math.round(c.median ?? 0)} IOPS` : `${(c.median ?? 0).toFixed(3)} s`;
  const extra = [
    c.daemonCpuSecondsMedian !== undefined ? `daemon cpu ${c.daemonCpuSecondsMedian.toFixed(2)} s` : '',
    c.daemonPeakRssBytes !== undefined ? `peak rss ${(c.daemonPeakRssBytes / 1048576).toFixed(0)} MiB` : '',
  ].filter((s) => s.length > 0);
  return `${v}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}  [${c.runs[0]?.detail ?? ''}]`;
}

async function main(): Promise<void> {
  const program = new Command()
    .name('stratafs-bench')
    .description('Benchmark stratafs against kernel overlayfs and fuse-overlayfs (issue 5)')
    .option('--quick', 'small data set, 1 run, fio 3 s: a smoke run under 3 minutes', false)
    .option('--runs <n>', 'measured runs per cell, median reported (default 3, --quick 1)', positiveInt)
    .option('--cache <dir>', 'data set cache root', '/var/tmp/stratafs-bench')
    .option('--out <dir>', 'where JSON and markdown results go', './bench-results')
    .option('--compare <old.json>', 'print the change against an earlier results file')
    .option('--impl <list>', `implementations (${IMPL_NAMES.join(',')}, or variant names; default all, the variants in place of stratafs)`, list<string>(null))
    .option(
      '--stratafs-variant <NAME=OPTS>',
      'run stratafs once more as column NAME with extra mount options, e.g. stratafs-kernel=fuse_server=kernel (repeatable; the variants replace the plain stratafs column unless --impl names it)',
      variant,
      [] as StratafsVariant[],
    )
    .option(
      '--stratafs-build <NAME=PATH>',
      "run another build's stratafs (its dist/cli/main.js, e.g. main before a change built in a copy) as column NAME in the same run (repeatable; like a variant, it replaces the plain stratafs column unless --impl names it)",
      build,
      [] as StratafsVariant[],
    )
    .option('--only <list>', 'workload ids to run (default all)', list<string>(null))
    .option('--modes <list>', 'cold,warm', list<Mode>(['cold', 'warm']), ['cold', 'warm'] as Mode[])
    .option('--timeout <seconds>', 'per command timeout (default 600, --quick 180)', positiveInt)
    .option('--fio-seconds <n>', 'fio runtime (default 10, --quick 3)', positiveInt)
    .option('--stratafs-cli <path>', 'stratafs CLI script (default dist/cli/main.js of this checkout)')
    .option('--enable-uring', 'set the fuse module parameter enable_uring to Y for this run (restored at exit), for a variant with -o io_uring, e.g. --stratafs-variant stratafs-uring=io_uring', false)
    .option('--prepare-only', 'build (or find) the data set, print its manifest path, and stop', false);
  program.parse();
  const o = program.opts<Options>();
  const variants = [...o.stratafsVariant, ...o.stratafsBuild];
  const variantNames = variants.map((v) => v.name);
  const twice = variantNames.filter((n, i) => variantNames.indexOf(n) !== i);
  if (twice.length > 0) throw new Error(`column ${twice[0]} named by both --stratafs-variant and --stratafs-build`);
  const implNames: ImplName[] = o.impl ?? IMPL_NAMES.flatMap((n) => (n === 'stratafs' && variantNames.length > 0 ? variantNames : [n]));
  const unknownImpls = implNames.filter((n) => !(IMPL_NAMES as readonly string[]).includes(n) && !variantNames.includes(n));
  if (unknownImpls.length > 0) throw new Error(`unknown implementation(s): ${unknownImpls.join(', ')}; known: ${[...IMPL_NAMES, ...variantNames].join(', ')}`);
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (mount, drop_caches)');
  if (o.enableUring && !o.prepareOnly) enableUring(log);

  const all = workloads();
  if (o.only !== undefined) {
    const unknown = o.only.filter((id) => id !== LATENCY_ID && !all.some((w) => w.id === id));
    if (unknown.length > 0) throw new Error(`unknown workload(s): ${unknown.join(', ')}; known: ${[LATENCY_ID, ...all.map((w) => w.id)].join(', ')}`);
  }
  const chosen = o.only === undefined ? all : all.filter((w) => o.only?.includes(w.id));
  const runs = o.runs ?? (o.quick ? 1 : 3);
  const timeoutMs = (o.timeout ?? (o.quick ? 180 : 600)) * 1000;
  const fioSeconds = o.fioSeconds ?? (o.quick ? 3 : 10);
  const oldResults = o.compare !== undefined ? (JSON.parse(fs.readFileSync(o.compare, 'utf8')) as Results) : undefined;

  const startedAt = new Date().toISOString();
  const load = os.loadavg();
  const manifest = ensureDataset(o.quick ? QUICK_PARAMS : FULL_PARAMS, path.resolve(o.cache), log);
  if (o.prepareOnly) {
    process.stdout.write(`${path.join(manifest.dir, 'manifest.json')}\n`);
    return;
  }
  const runRoot = fs.mkdtempSync(path.join(path.dirname(manifest.dir), 'run-'));
  activeRunRoot = runRoot;
  const runner = new Runner(manifest, runRoot, { runs, timeoutMs, fioSeconds });

  const cli = stratafsCli(o.stratafsCli);
  const byName = new Map<ImplName, Impl>([
    ['kernel', kernelImpl],
    ['fuse-overlayfs', fuseOverlayfsImpl],
    ['stratafs', makeStratafsImpl(cli)],
    ...variants.map((v): [ImplName, Impl] => [v.name, makeStratafsImpl(v.cli ?? cli, v)]),
  ]);
  const statuses: ImplStatus[] = [];
  const impls: Impl[] = [];
  for (const name of implNames) {
    const impl = byName.get(name);
    if (impl === undefined) throw new Error(`unknown implementation ${name}`);
    const absent = await impl.prepare();
    const reason = absent ?? (await runner.probe(impl));
    if (reason === null) {
      statuses.push({ name, kind: impl.kind, available: true, version: await impl.version() });
      impls.push(impl);
      log(`${name}: ready`);
    } else {
      const line = absent !== null ? `${name}: absent: ${reason}` : `${name}: mount failed: ${reason}`;
      statuses.push({ name, kind: impl.kind, available: false, reason: line });
      // Loud on purpose: a skipped implementation must never look like a finished comparison.
      process.stderr.write(`\n*** ${line}\n*** ${name} is skipped in this run\n\n`);
    }
  }

  const cells: Cell[] = [];
  const outDir = path.resolve(o.out);
  fs.mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, `bench-${o.quick ? 'quick-' : ''}${startedAt.replace(/[:.]/g, '-')}`);
  const snapshot = (complete: boolean): Results => ({
    format: 'stratafs-bench/1',
    startedAt,
    finishedAt: new Date().toISOString(),
    ...(complete ? {} : { partial: true }),
    quick: o.quick,
    args: process.argv.slice(2),
    runsPerCell: runs,
    dataset: { hash: manifest.hash, dir: manifest.dir, totalFiles: manifest.totalFiles, totalBytes: manifest.totalBytes },
    host: { kernel: os.release(), cpus: os.cpus().length, node: process.version, load },
    impls: statuses,
    cells: [...cells],
  });
  const save = (r: Results): string => {
    const md = markdown(r);
    fs.writeFileSync(`${base}.json`, `${JSON.stringify(r, null, 2)}\n`);
    fs.writeFileSync(`${base}.md`, md);
    return md;
  };
  // Saved after every workload, so an interrupted (or timed-out) long run still leaves its numbers.
  onInterrupt = () => {
    if (cells.length > 0) save(snapshot(false));
  };
  if (o.only === undefined || o.only.includes(LATENCY_ID)) {
    for (const impl of impls) {
      if (interrupted) break;
      const c = await runner.latencyCell(impl);
      cells.push(c);
      log(`[${impl.name}] ${LATENCY_ID}: ${summarize(c)}`);
      if (c.status === 'failed') process.stderr.write(`\n!!! ${impl.name} / ${LATENCY_ID} FAILED: ${c.error ?? ''}\n\n`);
    }
    for (const st of statuses.filter((x) => !x.available)) {
      cells.push({ workload: LATENCY_ID, title: LATENCY_TITLE, mode: 'cold', impl: st.name, unit: 's', status: 'absent', error: st.reason ?? '', runs: [] });
    }
    save(snapshot(false));
  }
  for (const w of chosen) {
    for (const impl of impls) {
      const t0 = Date.now();
      const got = await runner.cells(impl, w, o.modes);
      // Cells cut short by an interrupt measured nothing worth keeping.
      if (interrupted) break;
      for (const c of got) {
        cells.push(c);
        log(`[${impl.name}] ${w.id} ${c.mode}: ${summarize(c)}`);
        if (c.status === 'failed') process.stderr.write(`\n!!! ${impl.name} / ${w.id} / ${c.mode} FAILED: ${c.error ?? ''}\n\n`);
      }
      log(`[${impl.name}] ${w.id}: ${((Date.now() - t0) / 1000).toFixed(1)} s in all`);
    }
    if (interrupted) break;
    for (const s of statuses.filter((x) => !x.available)) {
      for (const mode of o.modes) cells.push({ workload: w.id, title: w.title, mode, impl: s.name, unit: w.unit, status: 'absent', error: s.reason ?? '', runs: [] });
    }
    save(snapshot(false));
  }
  if (interrupted) {
    log('interrupted: partial results saved');
    await cleanupAndExit(130);
  }
  onInterrupt = null;
  fs.rmSync(runRoot, { recursive: true, force: true });
  activeRunRoot = null;
  await reapDaemons();
  // the mounts are gone: the host's setting comes back before the report is written
  restoreUring();

  const results = snapshot(true);
  const md = save(results);
  process.stdout.write(`${md}\n`);
  if (oldResults !== undefined) process.stdout.write(`\n## Change against ${o.compare ?? ''}\n\n${compare(oldResults, results)}\n`);
  log(`results: ${base}.json, ${base}.md`);

  // "absent" (not installed, not built) is a fact about the machine; "mount failed" is a defect.
  const mountFailures = statuses.filter((x) => !x.available && (x.reason ?? '').includes(': mount failed:'));
  if (mountFailures.length > 0) {
    process.stderr.write(`\n!!! ${mountFailures.map((x) => x.reason ?? x.name).join('\n!!! ')}\n`);
    process.exitCode = 1;
  }
  const failed = cells.filter((c) => c.status === 'failed');
  if (failed.length > 0) {
    process.stderr.write(`\n!!! ${failed.length} cell(s) FAILED:\n${failed.map((c) => `!!!   ${c.impl} / ${c.workload} / ${c.mode}: ${c.error ?? ''}`).join('\n')}\n`);
    process.exitCode = 1;
  }
}

function interrupt(code: number): void {
  if (interrupted) {
    void cleanupAndExit(code);
    return;
  }
  interrupted = true;
  process.stderr.write('\nbench: interrupted; stopping the running workload, saving partial results, unmounting (again to force)\n');
  killRunningChildren();
}
process.on('SIGINT', () => interrupt(130));
process.on('SIGTERM', () => interrupt(143));
main().catch(async (err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await cleanupAndExit(2);
});
