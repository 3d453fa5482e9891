/**
 * The differential runner: the same operation sequence on two identical copies
 * of a layer set, one per implementation, then the merged trees, and each
 * side's upper read by the other implementation.
 *
 * Use:
 *   const r = await runCase({ name, layers: BASE, ops }, { candidate: 'stratafs', divergences: divergencesFor('stratafs') });
 *   expect(r.unexplained, formatReport(r, ops)).toEqual([]);
 * Layer sets: layers.ts (LayerSetSpec; OCI markers are converted for the kernel's copy).
 * Operations: ops.ts (Op, applied by OpRunner; results are ok+value or an errno code).
 * Trees: tree.ts (snapshot, compareTrees, readRawUpper). Mounts: mounts.ts (mount, MountHandle.unmount).
 * Intended differences: divergences.ts, the only list the runner honours.
 *
 * Per case: build both copies, mount both, apply each op to both (concurrently)
 * and compare results; when one side changed the tree and the other did not,
 * stop (what follows would only echo it). Then compare merged trees, unmount,
 * look for `.wh.` files the candidate wrote itself, and mount each upper with
 * the other implementation (on a copy, with a fresh workdir) to compare again.
 */
import { mkdir, rm } from 'node:fs/promises';
import { mustBash, shq, TimeoutError } from './proc.js';
import { join } from 'node:path';
import { buildLayerSet, convertMarkersForKernel, foreignMarkers, ociMarkerFiles, type ForeignMarker, type LayerSetSpec } from './layers.js';
import { mount, tempDir, type Impl, type Layers, type MountHandle } from './mounts.js';
import { OpRunner, opPaths, showOp, showResult, type Op, type OpResult } from './ops.js';
import { compareRaw, compareTrees, readRawUpper, showPath, snapshot, type RawNode, type Tree, type TreeDiff } from './tree.js';
import type { Divergence } from './divergences.js';
import { guardMountParent } from './sentinel.js';

export interface Case {
  name: string;
  layers: LayerSetSpec;
  ops: Op[];
  /** what the case checks, for reports */
  about?: string;
}

export type Difference =
  | { kind: 'op'; index: number; op: Op; reference: OpResult; candidate: OpResult; allowedBy?: string }
  | { kind: 'tree'; phase: string; diff: TreeDiff; allowedBy?: string }
  | { kind: 'mount'; phase: string; message: string };

export interface CaseReport {
  name: string;
  reference: Impl;
  candidate: Impl;
  /** differences no divergence entry allows: the test fails on these */
  unexplained: Difference[];
  /** differences allowed by a divergence entry (id in allowedBy) */
  allowed: Difference[];
  /** set when results diverged in a way that changed state: later ops and trees were not compared */
  stoppedAt?: number;
  /** informational: normalized raw-upper differences */
  rawNotes: TreeDiff[];
  results: { reference: OpResult[]; candidate: OpResult[] };
  dir: string;
}

export interface RunOptions {
  reference?: Impl;
  candidate: Impl;
  /** the entries the harness may honour (for stratafs: divergencesFor('stratafs')) */
  divergences: readonly Divergence[];
  crossRead?: boolean;
  /** keep the temp dir even when the case passed */
  keep?: boolean;
  /** bound on one snapshot of a mount (a hung daemon turns into a difference after this) */
  snapshotTimeoutMs?: number;
  /** extra -o words for every mount of the candidate (e.g. kernel cache timeouts) */
  candidateOptions?: string[];
  /** extra -o words for every mount of the reference (e.g. nodev, stratafs's default, so device opens agree) */
  referenceOptions?: string[];
}

/** Operations that change nothing: a differing result there is reported, and the sequence goes on. */
const READ_ONLY: ReadonlySet<string> = new Set(['read', 'readdir', 'stat', 'readlink', 'getxattr', 'listxattr', 'sameInode', 'fdread', 'fdstat', 'attrs', 'fdattrs', 'exec']);

/** What compareOps records into: a case report, or the user-namespace matrix's. */
export interface OpsReport {
  unexplained: Difference[];
  allowed: Difference[];
  stoppedAt?: number;
  results: { reference: OpResult[]; candidate: OpResult[] };
}

/**
 * Each op on the reference and the candidate at once; every difference recorded (allowed by a
 * divergence entry or not). Stops at the first difference after which the trees differ (one side
 * changed the tree and the other did not, or the candidate hung): what follows would only echo it.
 */
export async function compareOps(runners: readonly [OpRunner, OpRunner], ops: readonly Op[], divergences: readonly Divergence[], candImpl: Impl, report: OpsReport): Promise<void> {
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    const [r, k] = await Promise.all([
      runners[0].apply(o),
      // A hung candidate is a finding, not a crash of the harness: record it and stop.
      runners[1].apply(o).catch((e: unknown): OpResult => {
        if (e instanceof TimeoutError) return { ok: false, errno: 'TIMEOUT' };
        throw e;
      }),
    ]);
    report.results.reference.push(r);
    report.results.candidate.push(k);
    if (JSON.stringify(r) === JSON.stringify(k)) continue;
    const allowedBy = opAllowed(divergences, candImpl, o, r, k);
    const d: Difference = { kind: 'op', index: i, op: o, reference: r, candidate: k, ...(allowedBy ? { allowedBy } : {}) };
    (allowedBy ? report.allowed : report.unexplained).push(d);
    if ((!k.ok && k.errno === 'TIMEOUT') || (r.ok !== k.ok && !READ_ONLY.has(o.op))) {
      report.stoppedAt = i;
      return;
    }
  }
}

/** Layers in the form the implementation reads: the kernel gets OCI markers converted. */
function formFor(impl: Impl) {
  return impl === 'kernel' ? 'kernel' as const : 'native' as const;
}

function resultKey(r: OpResult): string {
  return r.ok ? 'ok' : r.errno;
}

export function opAllowed(divs: readonly Divergence[], impl: Impl, o: Op, ref: OpResult, cand: OpResult): string | undefined {
  for (const d of divs) {
    if (d.impl !== impl || d.match.kind !== 'op') continue;
    const m = d.match;
    if (!m.op.includes(o.op)) continue;
    if (m.candidate !== resultKey(cand)) continue;
    if (m.reference !== undefined && m.reference !== resultKey(ref)) continue;
    if (m.path && !opPaths(o).some((p) => m.path!.test(p))) continue;
    if (m.results && !m.results.test(`${showResult(ref)} / ${showResult(cand)}`)) continue;
    return d.id;
  }
  return undefined;
}

export function treeAllowed(divs: readonly Divergence[], impl: Impl, phase: string, t: TreeDiff): string | undefined {
  for (const d of divs) {
    if (d.impl !== impl || d.match.kind !== 'tree') continue;
    const m = d.match;
    if (m.phase !== undefined && m.phase !== phase) continue;
    if (typeof m.field === 'string' ? m.field !== t.field : !m.field.test(t.field)) continue;
    if (m.path && !m.path.test(t.path)) continue;
    if (m.nodeType && !(t.nodeType && m.nodeType.includes(t.nodeType))) continue;
    return d.id;
  }
  return undefined;
}

async function safeUnmount(h: MountHandle | undefined, problems: string[]): Promise<void> {
  if (!h) return;
  try {
    const r = await h.unmount();
    if (r.killed.length || r.steps.some((s) => s !== 'umount')) problems.push(`${h.impl} at ${h.mnt} needed ${r.steps.join(' -> ')}${r.killed.length ? `, killed ${r.killed.join(',')}` : ''}`);
  } catch (e) {
    problems.push(String(e));
  }
}

/**
 * Mounts `upper` (written by another implementation) with `impl` over `layers`'
 * lowers, read-write with a fresh workdir as a user would, and snapshots it.
 * The upper is copied first so the cross-read never changes the evidence.
 */
async function crossRead(impl: Impl, writer: Impl, lowers: string[], upper: string, dir: string, problems: string[], markers: ForeignMarker[], timeoutMs: number, extra: string[]): Promise<Tree> {
  const copy = join(dir, 'upper');
  // cp -a keeps xattrs, owners, device nodes, hard links and ns times (fs.cp does not).
  await mustBash(`set -e\nmkdir -p ${shq(join(dir, 'work'))} ${shq(join(dir, 'mnt'))}\ncp -a ${shq(upper)} ${shq(copy)}`);
  await guardMountParent(dir);
  // An upper written by an implementation that reads `.wh.` files as whiteouts means them as such.
  if (impl === 'kernel' && writer !== 'kernel') await convertMarkersForKernel(copy, markers);
  const h = await mount(impl, { lowers, upper: copy, work: join(dir, 'work') }, join(dir, 'mnt'), { extra });
  try {
    return await snapshot(h.mnt, { timeoutMs });
  } finally {
    await safeUnmount(h, problems);
  }
}

export async function runCase(c: Case, opts: RunOptions): Promise<CaseReport> {
  const refImpl = opts.reference ?? 'kernel';
  const candImpl = opts.candidate;
  const dir = await tempDir(`case-${c.name}`);
  const report: CaseReport = {
    name: c.name,
    reference: refImpl,
    candidate: candImpl,
    unexplained: [],
    allowed: [],
    rawNotes: [],
    results: { reference: [], candidate: [] },
    dir,
  };
  const problems: string[] = [];
  const snapTimeout = opts.snapshotTimeoutMs ?? 30_000;
  const sides = [
    { impl: refImpl, dir: join(dir, 'ref') },
    { impl: candImpl, dir: join(dir, 'cand') },
  ];
  const layers: Layers[] = [];
  layers.push(...(await Promise.all(sides.map((s) => buildLayerSet(c.layers, s.dir, formFor(s.impl))))));
  const handles: (MountHandle | undefined)[] = [undefined, undefined];
  const runners: OpRunner[] = [];
  let refTree: Tree | undefined;
  let candTree: Tree | undefined;
  try {
    // The two sides are independent mounts: set up, drive and read them concurrently (2 cores).
    const mounted = await Promise.allSettled(sides.map(async (s, i) => {
      await mkdir(join(s.dir, 'mnt'));
      // links in the case that climb out of the mount land on the read-only sentinels (sentinel.ts)
      await guardMountParent(s.dir);
      handles[i] = await mount(s.impl, layers[i]!, join(s.dir, 'mnt'), { extra: (i === 1 ? opts.candidateOptions : opts.referenceOptions) ?? [] });
    }));
    if (mounted[0]!.status === 'rejected') throw mounted[0]!.reason;
    if (mounted[1]!.status === 'rejected') {
      report.unexplained.push({ kind: 'mount', phase: 'mount', message: String(mounted[1]!.reason) });
      return report;
    }
    runners.push(new OpRunner(handles[0]!.mnt), new OpRunner(handles[1]!.mnt));
    const cutoff = BigInt(Date.now() - 1000) * 1_000_000n;
    await compareOps([runners[0]!, runners[1]!], c.ops, opts.divergences, candImpl, report);
    for (const r of runners) await r.closeAll();
    if (report.stoppedAt === undefined) {
      const [rs, cs] = await Promise.allSettled([snapshot(handles[0]!.mnt, { timeoutMs: snapTimeout }), snapshot(handles[1]!.mnt, { timeoutMs: snapTimeout })]);
      if (rs.status === 'rejected') throw rs.reason;
      refTree = rs.value;
      if (cs.status === 'fulfilled') candTree = cs.value;
      else report.unexplained.push({ kind: 'mount', phase: 'snapshot of the merged view', message: String(cs.reason) });
    }
    if (refTree && candTree) {
      for (const t of compareTrees(refTree, candTree, { mtimeCutoffNs: cutoff })) {
        const allowedBy = treeAllowed(opts.divergences, candImpl, 'merged', t);
        (allowedBy ? report.allowed : report.unexplained).push({ kind: 'tree', phase: 'merged', diff: t, ...(allowedBy ? { allowedBy } : {}) });
      }
    }
    await Promise.all([safeUnmount(handles[1], problems), safeUnmount(handles[0], problems)]);
    handles[0] = handles[1] = undefined;

    if (refTree && candTree && layers[0]!.upper && layers[1]!.upper) {
      let rawRef: Map<string, RawNode> | undefined;
      let rawCand: Map<string, RawNode> | undefined;
      try {
        rawRef = await readRawUpper(layers[0]!.upper);
        rawCand = await readRawUpper(layers[1]!.upper);
        report.rawNotes = compareRaw(rawRef, rawCand);
      } catch (e) {
        problems.push(`raw upper read: ${String(e)}`);
      }
      // As root an implementation writes kernel markers; `.wh.` files in its upper
      // that the layer set did not bring are its own doing and the kernel cannot read them.
      const brought = new Set(foreignMarkers(c.layers.upper ?? []).map((m) => (m.kind === 'oci-opaque' ? '.wh..wh..opq' : m.kind === 'oci-whiteout' ? '.wh.' + (m.path.split('/').pop() ?? '') : '')));
      for (const rel of await ociMarkerFiles(layers[1]!.upper)) {
        // brought in by the layer set, or a user's file the candidate shows as such (the kernel gives `.wh.` no meaning)
        if (brought.has(rel.split('/').pop() ?? '') || candTree.has(rel)) continue;
        const t: TreeDiff = { path: rel, field: 'oci-marker', a: '(none)', b: 'file' };
        const allowedBy = treeAllowed(opts.divergences, candImpl, 'upper on disk', t);
        (allowedBy ? report.allowed : report.unexplained).push({ kind: 'tree', phase: 'upper on disk', diff: t, ...(allowedBy ? { allowedBy } : {}) });
      }
      if (opts.crossRead !== false) {
        const phases: { phase: string; impl: Impl; lowers: string[]; upper: string; expect: Tree }[] = [
          // the candidate mounts the reference's upper: must show what the reference showed
          { phase: `${candImpl} reads ${refImpl}'s upper`, impl: candImpl, lowers: layers[1]!.lowers, upper: layers[0]!.upper, expect: refTree },
          { phase: `${refImpl} reads ${candImpl}'s upper`, impl: refImpl, lowers: layers[0]!.lowers, upper: layers[1]!.upper, expect: candTree },
        ];
        const got = await Promise.allSettled(phases.map((ph, n) => {
          const markers = ph.impl === 'kernel' && candImpl !== 'kernel' ? foreignMarkers(c.layers.upper ?? []) : [];
          const extra = (ph.impl === candImpl ? opts.candidateOptions : opts.referenceOptions) ?? [];
          return crossRead(ph.impl, ph.impl === candImpl ? refImpl : candImpl, ph.lowers, ph.upper, join(dir, `cross${n}`), problems, markers, snapTimeout, extra);
        }));
        phases.forEach((ph, n) => {
          const g = got[n]!;
          if (g.status === 'rejected') {
            report.unexplained.push({ kind: 'mount', phase: ph.phase, message: String(g.reason) });
            return;
          }
          for (const t of compareTrees(ph.expect, g.value, { mtimeCutoffNs: cutoff })) {
            const allowedBy = treeAllowed(opts.divergences, candImpl, ph.phase, t);
            (allowedBy ? report.allowed : report.unexplained).push({ kind: 'tree', phase: ph.phase, diff: t, ...(allowedBy ? { allowedBy } : {}) });
          }
        });
      }
    }
  } finally {
    for (const r of runners) await r.closeAll();
    await safeUnmount(handles[1], problems);
    await safeUnmount(handles[0], problems);
  }
  for (const p of problems) report.unexplained.push({ kind: 'mount', phase: 'cleanup', message: p });
  if (!opts.keep && report.unexplained.length === 0) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  return report;
}

export function showDifference(d: Difference): string {
  const tag = 'allowedBy' in d && d.allowedBy ? ` [allowed: ${d.allowedBy}]` : '';
  switch (d.kind) {
    case 'op':
      return `op #${d.index} ${showOp(d.op)}: reference ${showResult(d.reference)}, candidate ${showResult(d.candidate)}${tag}`;
    case 'tree':
      return `${d.phase}: ${showPath(d.diff.path)} ${d.diff.field}: reference ${d.diff.a}, candidate ${d.diff.b}${tag}`;
    case 'mount':
      return `${d.phase}: ${d.message}`;
  }
}

export function formatReport(r: CaseReport, ops?: Op[]): string {
  const lines = [`case ${r.name}: ${r.reference} vs ${r.candidate} (${r.dir})`];
  if (r.stoppedAt !== undefined) lines.push(`  stopped after op #${r.stoppedAt}: the two trees diverged`);
  for (const d of r.unexplained) lines.push(`  DIFF ${showDifference(d)}`);
  for (const d of r.allowed) lines.push(`  allowed ${showDifference(d)}`);
  // On-disk form may differ legitimately (e.g. redirect values); shown only as context for a failure.
  if (r.unexplained.length) for (const t of r.rawNotes) lines.push(`  note, raw uppers: ${showPath(t.path)} ${t.field}: reference ${t.a}, candidate ${t.b}`);
  if (ops) {
    lines.push('  sequence:');
    ops.forEach((o, i) => lines.push(`    #${i} ${showOp(o)} -> ${r.results.reference[i] ? showResult(r.results.reference[i]!) : '-'} / ${r.results.candidate[i] ? showResult(r.results.candidate[i]!) : '-'}`));
  }
  return lines.join('\n');
}
