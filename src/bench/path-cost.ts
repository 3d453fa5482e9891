#!/usr/bin/env node
/**
 * What the path round trip of the low-level front-end costs per request
 * (issue 12, "Node identity"; the numbers are in native-notes/architecture.md).
 *
 * The front-end keeps FUSE node ids as (parent, name) and builds a path for
 * every request (fuse/lowlevel/nodes.ts NodeTable.path, byte-bounded path cache); the
 * core resolves that path again through its path-keyed lookup cache
 * (core/lookup-cache.ts LookupCache.get). A core addressed by (parent node, name)
 * would do neither: a node would hold its entry, a LOOKUP would look one name
 * up in its parent. So the time in those two functions is what moving the
 * core would save at most, and this script measures it in place.
 *
 *   npm run build && node --max-semi-space-size=4 dist/bench/path-cost.js [--depths 1,10,40] [--files N] [--ops N]
 *
 * For each depth it builds a lower tree (the leaf directory `depth` components
 * below the root, holding --files files of 64 bytes; reused across runs),
 * mounts it in this process (cli/serve.ts, as the daemon does; low-level front-end,
 * timeout=0 so that every stat reaches the daemon) with a fresh upper, and
 * runs from a child process standing in the leaf directory (relative names:
 * the kernel looks up one component per call whatever the depth):
 *   stat    lstat of every file (LOOKUP, GETATTR, and GETATTR of the leaf for the permission check)
 *   ls -l   /bin/ls -l of the leaf (READDIR; per entry 3 LOOKUP, 4 GETATTR, 2 GETXATTR)
 *   read    open, read, close of --ops files (LOOKUP, 3 GETATTR, OPEN, READ, RELEASE)
 *   create  open(O_CREAT|O_EXCL) and close of --ops new files (LOOKUP, 3 GETATTR, CREATE, RELEASE)
 * Each workload runs once to warm up, once plain (wall time, requests, the
 * daemon's CPU) and once with NodeTable.prototype.path and
 * LookupCache.prototype.get wrapped in process.hrtime.bigint timers (the
 * timers' own cost, calibrated on an empty function, is subtracted). The hot
 * path itself carries no instrumentation: the wrappers are installed here,
 * for the instrumented pass only.
 *
 * Never touches the mountpoint from this process (it serves the mount): the
 * clients are child processes, and unmounting goes through the library.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { serve, type Served } from '../cli/serve.js';
import { defaultMountSettings, mountConfig } from '../fuse/config.js';
import { NodeTable } from '../fuse/lowlevel/nodes.js';
import { LookupCache } from '../core/lookup-cache.js';
import { run } from './proc.js';
import * as sys from '../native/sys.js';

interface Options { depths: number[]; files: number; ops: number; repeat: number; dir: string; keep: boolean }

const NAME_LEN = 8;
const CONTENT = Buffer.alloc(64, 'x');

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** The leaf directory's components below the mount root: `depth` names of NAME_LEN bytes. */
const leafParts = (depth: number): string[] =>
  Array.from({ length: depth }, (_, i) => (i === 0 ? `t${depth}` : `l${i}`).padEnd(NAME_LEN, 'x'));
const fileName = (i: number): string => `f${i}`.padEnd(NAME_LEN, 'z');

/** The lower tree of one depth (kept: a marker says it was finished with these parameters). */
function buildLower(lower: string, depth: number, files: number): void {
  const leaf = path.join(lower, ...leafParts(depth));
  const marker = path.join(lower, `.complete-${depth}-${files}`);
  if (fs.existsSync(marker)) return;
  fs.mkdirSync(leaf, { recursive: true });
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(leaf, fileName(i)), CONTENT);
  fs.writeFileSync(marker, '');
}

// --- timers around the two functions of the seam

interface Acc { ns: bigint; calls: number }
const nodesAcc: Acc = { ns: 0n, calls: 0 };
const cacheAcc: Acc = { ns: 0n, calls: 0 };

type OneArg = (this: unknown, a: unknown) => unknown;

function timed(orig: OneArg, acc: Acc): OneArg {
  return function (this: unknown, a: unknown): unknown {
    const t0 = process.hrtime.bigint();
    const r = orig.call(this, a);
    acc.ns += process.hrtime.bigint() - t0;
    acc.calls++;
    return r;
  };
}

interface Patchable { [k: string]: unknown }
/** Wrap `proto[key]` (a one-argument method) in a timer; returns the undo. */
function patch(proto: object, key: string, acc: Acc): () => void {
  const p = proto as Patchable;
  const orig = p[key] as OneArg;
  p[key] = timed(orig, acc);
  return () => { p[key] = orig; };
}

/** ns a timed call of an empty function costs (the timers, the wrapper). */
function timerOverheadNs(): number {
  const acc: Acc = { ns: 0n, calls: 0 };
  const o = { f(a: unknown): unknown { return a; } };
  patch(o, 'f', acc);
  for (let i = 0; i < 2_000_000; i++) o.f(i);
  acc.ns = 0n; acc.calls = 0;
  for (let i = 0; i < 2_000_000; i++) o.f(i);
  return Number(acc.ns) / acc.calls;
}

// --- clients (child processes; this process serves the mount)

const CLIENT = `
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const [dir, op, nStr, tag, fromStr] = process.argv.slice(1);
process.chdir(dir);
const n = Number(nStr);
const from = Number(fromStr);
const name = (i) => ('f' + i).padEnd(${NAME_LEN}, 'z');
const t0 = process.hrtime.bigint();
if (op === 'stat') for (let i = 0; i < n; i++) fs.lstatSync(name(i));
else if (op === 'read') for (let i = from; i < from + n; i++) fs.readFileSync(name(i));
else if (op === 'create') for (let i = 0; i < n; i++) fs.closeSync(fs.openSync('c' + tag + '-' + i, 'wx'));
else if (op === 'ls') execFileSync('ls', ['-l'], { stdio: ['ignore', 'ignore', 'inherit'] });
else throw new Error('unknown op ' + op);
process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e9));
`;

async function client(cwd: string, op: string, n: number, tag: string, from: number): Promise<number> {
  // The child enters the mount itself: a spawn with cwd there would chdir between fork and exec,
  // while this process, which must answer that lookup, waits in uv_spawn for the exec.
  const r = await run(process.execPath, ['-e', CLIENT, cwd, op, String(n), tag, String(from)], { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`client ${op} in ${cwd}: ${r.stderr.toString()}`);
  return Number(r.stdout.toString());
}

interface Totals { requests: number; daemonUs: number; byOp: Record<string, number> }
function totals(m: Served): Totals {
  const ops = m.stats().ops;
  let requests = 0;
  let daemonUs = 0;
  const byOp: Record<string, number> = {};
  for (const [op, s] of Object.entries(ops)) {
    requests += s.count;
    daemonUs += s.avgUs * s.count;
    byOp[op] = s.count;
  }
  return { requests, daemonUs, byOp };
}

interface Pass {
  seconds: number; requests: number; byOp: Record<string, number>;
  /** per request, µs: end to end (client wall / requests), inside the daemon (request start to answer), daemon CPU */
  wallUs: number; daemonUs: number; cpuUs: number;
}

async function pass(m: Served, cwd: string, op: string, n: number, tag: string, from: number): Promise<Pass> {
  const before = totals(m);
  const cpu0 = process.cpuUsage();
  const seconds = await client(cwd, op, n, tag, from);
  const cpu = process.cpuUsage(cpu0);
  const after = totals(m);
  const requests = after.requests - before.requests;
  const byOp: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.byOp)) {
    const d = v - (before.byOp[k] ?? 0);
    if (d > 0) byOp[k] = d;
  }
  return {
    seconds, requests, byOp,
    wallUs: (seconds * 1e6) / requests,
    daemonUs: (after.daemonUs - before.daemonUs) / requests,
    cpuUs: (cpu.user + cpu.system) / requests,
  };
}

interface Row {
  depth: number; workload: string; plain: Pass; timedPass: Pass;
  /** per request, µs (timer cost subtracted) */
  nodePathUs: number; cacheGetUs: number; seamUs: number;
  /** calls per request */
  nodePathCalls: number; cacheGetCalls: number;
}

/**
 * µs of one lstat of a leaf file beneath the layer root fd, as the core makes it (openat2
 * RESOLVE_BENEATH walks every component): the part of depth that identity does not change.
 */
function layerLstatUs(lower: string, depth: number, files: number): number {
  const fd = sys.openRoot(lower);
  try {
    const st = new Float64Array(sys.STAT_LEN);
    const base = leafParts(depth).join('/');
    const n = Math.min(files, 20_000);
    const rels = Array.from({ length: n }, (_, i) => `${base}/${fileName(i)}`);
    for (const r of rels) sys.tryLstatat(fd, r, st);
    const t0 = process.hrtime.bigint();
    for (const r of rels) sys.tryLstatat(fd, r, st);
    return Number(process.hrtime.bigint() - t0) / 1000 / n;
  } finally {
    sys.raw.close(fd);
  }
}

async function measureDepth(o: Options, depth: number, overheadNs: number): Promise<Row[]> {
  const lower = path.join(o.dir, 'lower');
  buildLower(lower, depth, o.files);
  console.log(`depth ${depth}: lstat of a leaf file beneath the layer root fd: ${layerLstatUs(lower, depth, o.files).toFixed(2)} µs`);
  const runDir = fs.mkdtempSync(path.join(o.dir, `run-${depth}-`));
  fs.mkdirSync(path.join(runDir, 'u'));
  fs.mkdirSync(path.join(runDir, 'w'));
  fs.mkdirSync(path.join(runDir, 'mnt'));
  const settings = {
    ...defaultMountSettings(process.geteuid?.() ?? 0),
    lowerdirs: [lower], upperdir: path.join(runDir, 'u'), workdir: path.join(runDir, 'w'), timeout: 0,
  };
  const config = mountConfig(settings, { mountpoint: path.join(runDir, 'mnt'), source: undefined, foreground: true, cwd: process.cwd() });
  const m = await serve(config, () => undefined);
  const rows: Row[] = [];
  try {
    const leaf = path.join(config.mountpoint, ...leafParts(depth));
    const workloads: { id: string; op: string; n: number }[] = [
      { id: 'stat', op: 'stat', n: o.files },
      { id: 'ls -l', op: 'ls', n: 0 },
      { id: 'read', op: 'read', n: o.ops },
      { id: 'create', op: 'create', n: o.ops },
    ];
    for (const w of workloads) {
      // reads of files read before come from the kernel's page cache (keep_cache): each pass reads its own
      let next = 0;
      const from = (): number => (w.op === 'read' ? next++ * w.n : 0);
      await pass(m, leaf, w.op, w.n, 'warm', from());
      const plains: Pass[] = [];
      for (let i = 0; i < o.repeat; i++) plains.push(await pass(m, leaf, w.op, w.n, `plain${i}`, from()));
      const timedRows: Row[] = [];
      for (let i = 0; i < o.repeat; i++) {
        nodesAcc.ns = 0n; nodesAcc.calls = 0; cacheAcc.ns = 0n; cacheAcc.calls = 0;
        const undo = [patch(NodeTable.prototype, 'path', nodesAcc), patch(LookupCache.prototype, 'get', cacheAcc)];
        let timedPass: Pass;
        try {
          timedPass = await pass(m, leaf, w.op, w.n, `timed${i}`, from());
        } finally {
          for (const u of undo) u();
        }
        const per = (a: Acc): number => Math.max(0, Number(a.ns) - a.calls * overheadNs) / 1000 / timedPass.requests;
        const nodePathUs = per(nodesAcc);
        const cacheGetUs = per(cacheAcc);
        timedRows.push({
          depth, workload: w.id, plain: plains[0]!, timedPass, nodePathUs, cacheGetUs, seamUs: nodePathUs + cacheGetUs,
          nodePathCalls: nodesAcc.calls / timedPass.requests, cacheGetCalls: cacheAcc.calls / timedPass.requests,
        });
      }
      // medians: the plain pass by its end-to-end time, the timed one by the seam's
      const row = { ...median(timedRows, (r) => r.seamUs), plain: median(plains, (p) => p.wallUs) };
      rows.push(row);
      printRow(row);
    }
  } finally {
    await m.unmount();
    fs.rmSync(runDir, { recursive: true, force: true });
  }
  return rows;
}

function median<T>(xs: T[], key: (x: T) => number): T {
  return [...xs].sort((a, b) => key(a) - key(b))[Math.floor((xs.length - 1) / 2)]!;
}

const f1 = (x: number): string => x.toFixed(1);
const f2 = (x: number): string => x.toFixed(2);
const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)} %`;

function printRow(r: Row): void {
  const p = r.plain;
  const ops = Object.entries(p.byOp).map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(
    `| ${r.depth} | ${r.workload} | ${p.requests} | ${f2(p.seconds)} | ${f1(p.requests / p.seconds / 1000)}k | ${f1(p.wallUs)} | ${f1(p.daemonUs)} | ${f1(p.cpuUs)} ` +
    `| ${f2(r.nodePathUs)} (${f2(r.nodePathCalls)}) | ${f2(r.cacheGetUs)} (${f2(r.cacheGetCalls)}) | ${f2(r.seamUs)} | ${pct(r.seamUs, p.wallUs)} | ${pct(r.seamUs, p.cpuUs)} | ${f1(r.timedPass.wallUs)} |`);
  console.error(`   requests: ${ops}`);
}

async function main(): Promise<void> {
  const prog = new Command('path-cost')
    .description('cost of the path round trip (front-end node -> path -> core path-keyed cache) per FUSE request')
    .option('--depths <list>', 'leaf directory depths', (v) => v.split(',').map(positiveInt), [1, 10, 40])
    .option('--files <n>', 'files in each leaf (stat, ls -l)', positiveInt, 100_000)
    .option('--ops <n>', 'files read and files created per pass (reads need files >= (2 x repeat + 1) x ops)', positiveInt, 10_000)
    .option('--repeat <n>', 'plain and timed passes of each workload (medians reported)', positiveInt, 3)
    .option('--dir <dir>', 'where the lower trees and mounts live', '/tmp/stratafs-path-cost')
    .option('--no-keep', 'remove the lower trees at the end (kept by default: building them takes a while)')
    .parse();
  const o = prog.opts<Options>();
  if (o.files < (2 * o.repeat + 1) * o.ops) throw new InvalidArgumentError(`--files must be at least (2 x --repeat + 1) x --ops = ${(2 * o.repeat + 1) * o.ops}`);
  fs.mkdirSync(o.dir, { recursive: true });
  const overheadNs = timerOverheadNs();
  console.log(`timer overhead per wrapped call: ${overheadNs.toFixed(0)} ns (subtracted); node ${process.version}; --files ${o.files} --ops ${o.ops} --repeat ${o.repeat}`);
  console.log('| depth | workload | requests | s | req/s | µs/req end to end | µs/req in daemon | daemon CPU µs/req | nodes.path µs/req (calls) | cache.get µs/req (calls) | seam µs/req | seam / end to end | seam / daemon CPU | µs/req timed pass |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const d of o.depths) await measureDepth(o, d, overheadNs);
  if (!o.keep) fs.rmSync(o.dir, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
});
