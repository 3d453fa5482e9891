/**
 * The non-root mounter of the users matrix: kernel overlayfs (userxattr) and
 * stratafs (userxattr) both mounted by the root of a user namespace whose
 * root is a plain uid outside (MOUNTER), and callers that are other ids
 * mapped in that namespace, each a process without capabilities there
 * (callers.ts, entered with nsenter). Nothing on the host changes:
 *
 *   unshare -m (private; as the test's root): /dev/fuse covered by a 0666 node
 *     on a scratch tmpfs (the host's is 0600), the case directory bound at
 *     NS_CASE_DIR (the run's root is 0700: the namespace's root could not walk
 *     to it), then
 *   unshare -U -m: the user namespace (maps written from outside by the test:
 *     0 -> MOUNTER, and the callers' ids to themselves) and the mount
 *     namespace it owns, where the mounts are made; `sleep` holds both.
 *
 * FUSE lets only processes of the mount's user namespace in (allow_other
 * means "the namespace", fs/fuse/dir.c), so every operation, root's too, runs
 * as a caller inside: NS_ROOT stands for the test's root. Trees are compared
 * through explicit stat and listxattr operations by NS_ROOT at the end of a
 * case (the runner's snapshot reads as the host's root, which such a mount
 * refuses).
 */
import { mkdir, chmod, chown, lchown, lstat, readdir, readlink, rm } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Entry, LayerSetSpec } from './layers.js';
import { buildLayerSet } from './layers.js';
import { killPids, REPO_ROOT, STRATAFS_BIN, tempDir, type Impl } from './mounts.js';
import { OpRunner, opPaths, showOp, showResult, type Op, type OpResult } from './ops.js';
import { run } from './proc.js';
import type { Case, Difference } from './differential.js';
import { compareOps } from './differential.js';
import type { Divergence } from './divergences.js';
import type { Caller } from './callers.js';

/** the plain uid (and gid) outside that is root in the namespace */
export const MOUNTER = 4711;
/** the callers' ids, mapped to themselves */
const MAPPED_FIRST = 1000;
const MAPPED_COUNT = 3;
/** where the case directory appears in the namespace */
export const NS_CASE_DIR = '/mnt';
/** the namespace's root (the mounter), with its capabilities there */
export const NS_ROOT: Caller = { uid: 0, gid: 0 };

/** Why the namespace cannot be made here (undefined: it can). */
export async function usernsProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (to make the namespaces)';
  for (const c of ['unshare', 'nsenter', 'setpriv', 'mknod']) {
    if ((await run('sh', ['-c', `command -v ${c}`])).code !== 0) return `${c} is not installed`;
  }
  if (!existsSync(NS_CASE_DIR)) return `${NS_CASE_DIR} is missing: nothing to bind the case directory over`;
  // the namespace's root reads the checkout and runs node as a stranger would
  for (let d = REPO_ROOT; d !== '/'; d = d.slice(0, d.lastIndexOf('/')) || '/') {
    if (((await lstat(d)).mode & 0o005) !== 0o005) return `${d} is not r-x for others: the namespace's root cannot reach the checkout`;
  }
  return undefined;
}

/** The spec as the namespace's root must find it: root's objects are the mounter's; no trusted.* (a namespace has none). */
export function forMounter(spec: LayerSetSpec): LayerSetSpec {
  const own = (e: Entry): Entry => {
    if (e.kind === 'whiteout' || e.kind === 'hardlink') return e;
    const xattrs = Object.fromEntries(Object.entries(e.xattrs ?? {}).filter(([k]) => !k.startsWith('trusted.') && k !== 'security.capability'));
    return { ...e, uid: e.uid === undefined || e.uid === 0 ? MOUNTER : e.uid, gid: e.gid === undefined || e.gid === 0 ? MOUNTER : e.gid, xattrs };
  };
  return { lowers: spec.lowers.map((l) => l.map(own)), ...(spec.upper ? { upper: spec.upper.map(own) } : {}) };
}

/** The two namespaces, held by one process. */
export class UserNs {
  private constructor(readonly pid: number, readonly dir: string, private readonly mnt: string) {}

  /** `dir`: the case directory (host path), seen as NS_CASE_DIR inside. */
  static async make(dir: string): Promise<UserNs> {
    const dev = join(dir, '.dev');
    await mkdir(dev);
    await chmod(dir, 0o755);
    await chown(dir, MOUNTER, MOUNTER);
    const script = [
      'set -e',
      `mount -t tmpfs -o size=64k,mode=0755 tmpfs "$1"`,
      `mknod -m 666 "$1/fuse" c 10 229`,
      'mount --bind "$1/fuse" /dev/fuse',
      `mount --bind "$2" ${NS_CASE_DIR}`,
      'exec unshare -U -m --propagation private sleep 600',
    ].join('\n');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script, 'ns', dev, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const pid = child.pid!;
    const own = await readlink('/proc/self/ns/user');
    const end = Date.now() + 10_000;
    for (;;) {
      const ns = await readlink(`/proc/${pid}/ns/user`).catch(() => undefined);
      if (ns !== undefined && ns !== own) break;
      if (ns === undefined || child.exitCode !== null || Date.now() > end) throw new Error(`the user namespace did not start: ${err.trim()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const map = `0 ${MOUNTER} 1\n${MAPPED_FIRST} ${MAPPED_FIRST} ${MAPPED_COUNT}\n`;
    const w = await run('sh', ['-c', `printf '${map.replace(/\n/g, '\\n')}' > /proc/${pid}/uid_map && printf '${map.replace(/\n/g, '\\n')}' > /proc/${pid}/gid_map`]);
    if (w.code !== 0) {
      await killPids([pid]);
      throw new Error(`cannot write the id maps: ${w.stderr.toString()}`);
    }
    return new UserNs(pid, dir, await readlink(`/proc/${pid}/ns/mnt`));
  }

  /** words that run a command as the namespace's root, in its mount namespace, in `wd` (a path inside) */
  enter(wd = '/'): string[] {
    // nsenter's --wd opens its directory before it enters the mount namespace
    return ['nsenter', '-t', String(this.pid), '-U', '-m', 'env', `--chdir=${wd}`];
  }

  /** A host path below the case directory, as the namespace sees it. */
  inside(hostPath: string): string {
    if (!hostPath.startsWith(this.dir)) throw new Error(`${hostPath} is not below ${this.dir}`);
    return NS_CASE_DIR + hostPath.slice(this.dir.length);
  }

  async sh(script: string, timeoutMs = 30_000): Promise<void> {
    const r = await run(this.enter()[0]!, [...this.enter().slice(1), 'sh', '-c', script], { timeoutMs });
    if (r.code !== 0) throw new Error(`in the namespace: ${script}: ${r.stderr.toString().trim()} ${r.stdout.toString().trim()}`);
  }

  /** Mounts `impl` at `mnt` (host paths) with userxattr, as the namespace's root. */
  async mount(impl: Impl, layers: { lowers: string[]; upper: string; work: string }, mnt: string): Promise<void> {
    const o = `lowerdir=${layers.lowers.map((l) => this.inside(l)).join(':')},upperdir=${this.inside(layers.upper)},workdir=${this.inside(layers.work)},userxattr`;
    if (impl === 'kernel') await this.sh(`mount -t overlay overlay -o ${o} ${this.inside(mnt)}`);
    else if (impl === 'stratafs') {
      await this.sh(`PATH=${process.execPath.replace(/\/[^/]*$/, '')}:$PATH STRATAFS_RUNTIME_DIR=${NS_CASE_DIR}/.run ${STRATAFS_BIN} -o ${o} ${this.inside(mnt)}`);
    } else throw new Error(`${impl} is not run in the user namespace`);
  }

  async umount(mnt: string): Promise<void> {
    await this.sh(`umount ${this.inside(mnt)}`);
  }

  /** Ends every process of the mount namespace (daemons, then the holder): its mounts go with it. */
  async close(): Promise<number[]> {
    const others: number[] = [];
    for (const e of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(e) || Number(e) === this.pid) continue;
      if ((await readlink(`/proc/${e}/ns/mnt`).catch(() => '')) === this.mnt) others.push(Number(e));
    }
    const killed = await killPids(others, 3000);
    await killPids([this.pid], 1000);
    return killed;
  }
}

export interface NsCaseReport {
  name: string;
  unexplained: Difference[];
  allowed: Difference[];
  stoppedAt?: number;
  ops: Op[];
  results: { reference: OpResult[]; candidate: OpResult[] };
  dir: string;
  problems: string[];
}

/**
 * One case on kernel overlayfs and stratafs in one user namespace: ops without a caller
 * are NS_ROOT's; after the case, NS_ROOT stats and lists the xattrs of every path it named.
 */
export async function runNsCase(c: Case, divergences: readonly Divergence[]): Promise<NsCaseReport> {
  const dir = await tempDir(`ns-${c.name}`);
  const ns = await UserNs.make(dir);
  const spec = forMounter(c.layers);
  const seen = new Set<string>();
  const tail: Op[] = [];
  for (const o of c.ops) for (const p of opPaths(o)) if (!seen.has(p)) { seen.add(p); tail.push({ op: 'stat', path: p }, { op: 'listxattr', path: p }); }
  const ops: Op[] = [...c.ops, ...tail].map((o) => (o.as ? o : { ...o, as: NS_ROOT }));
  const report: NsCaseReport = { name: c.name, unexplained: [], allowed: [], ops, results: { reference: [], candidate: [] }, dir, problems: [] };
  const sides = (['kernel', 'stratafs'] as const).map((impl) => ({ impl, dir: join(dir, impl === 'kernel' ? 'ref' : 'cand') }));
  const mounted: string[] = [];
  const runners: OpRunner[] = [];
  try {
    await mkdir(join(dir, '.run'), { mode: 0o700 });
    await chown(join(dir, '.run'), MOUNTER, MOUNTER);
    for (const s of sides) {
      const layers = await buildLayerSet(spec, s.dir, s.impl === 'kernel' ? 'kernel' : 'native');
      if (!layers.upper || !layers.work) throw new Error('the users matrix needs an upper layer');
      // layer roots and the work directory were made by the test's root: the mounter's, as its own layers would be
      for (const d of [s.dir, ...layers.lowers, layers.upper, layers.work]) await lchown(d, MOUNTER, MOUNTER);
      const mnt = join(s.dir, 'mnt');
      await mkdir(mnt);
      await chown(mnt, MOUNTER, MOUNTER);
      await ns.mount(s.impl, { lowers: layers.lowers, upper: layers.upper, work: layers.work }, mnt);
      mounted.push(mnt);
      runners.push(new OpRunner(ns.inside(mnt), 10_000, ns.enter(ns.inside(mnt))));
    }
    await compareOps([runners[0]!, runners[1]!], ops, divergences, 'stratafs', report);
  } finally {
    for (const r of runners) await r.closeAll().catch((e: unknown) => report.problems.push(`callers: ${String(e)}`));
    for (const m of mounted.reverse()) await ns.umount(m).catch((e: unknown) => report.problems.push(String(e)));
    const killed = await ns.close();
    if (killed.length) report.problems.push(`processes left in the namespace after unmounting: ${killed.join(',')}`);
  }
  for (const p of report.problems) report.unexplained.push({ kind: 'mount', phase: 'cleanup', message: p });
  // the mounts lived only in the namespace, which is gone: nothing below dir is mounted
  if (report.unexplained.length === 0) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  return report;
}

export function formatNsReport(r: NsCaseReport): string {
  const lines = [`case ${r.name}: kernel vs stratafs in a user namespace (${r.dir})`];
  if (r.stoppedAt !== undefined) lines.push(`  stopped after op #${r.stoppedAt}: the two trees diverged`);
  for (const d of r.unexplained) lines.push(`  DIFF ${d.kind === 'op' ? `op #${d.index} ${showOp(d.op)}: kernel ${showResult(d.reference)}, stratafs ${showResult(d.candidate)}` : d.kind === 'mount' ? `${d.phase}: ${d.message}` : JSON.stringify(d)}`);
  for (const d of r.allowed) lines.push(`  allowed ${d.kind === 'op' ? `op #${d.index} ${showOp(d.op)} [${d.allowedBy}]` : ''}`);
  lines.push('  sequence:');
  r.ops.forEach((o, i) => lines.push(`    #${i} ${showOp(o)} -> ${r.results.reference[i] ? showResult(r.results.reference[i]!) : '-'} / ${r.results.candidate[i] ? showResult(r.results.candidate[i]!) : '-'}`));
  return lines.join('\n');
}
