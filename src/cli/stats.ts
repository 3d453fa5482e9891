/**
 * `stratafs stats [--json] [--gc] MOUNTPOINT`: asks the daemon over its control
 * socket (control.ts) and prints the FUSE op counters of the adapter, the
 * core's counters, how full its caches are and its memory (with --gc, the heap
 * after a full garbage collection). The same document is written to the daemon
 * log on SIGUSR1.
 */
import { queryControl } from './control.js';
import { resolveMountpointArg } from './mountinfo.js';
import { runtimeFiles } from './runtime.js';
import type { OpSummary } from '../fuse/requests.js';
import type { CacheFill, OverlayStats } from '../core/types.js';
import type { MemoryStats } from './memory.js';

export interface DaemonStats {
  mountpoint: string;
  pid: number;
  uptimeS: number;
  ops: Record<string, OpSummary>;
  /** FUSE nodes the kernel holds (low-level API only) */
  nodes?: number | undefined;
  /** the node table's cache of paths, in bytes (low-level API only) */
  nodePaths?: CacheFill | undefined;
  /** requests handed to the handlers and not answered yet (low-level API only) */
  pending?: number | undefined;
  /** fuse_server=kernel: what INIT settled (protocol minor, flags answered) */
  fuse?: {
    minor: number; flags: number; flags2: number; features: readonly string[];
    kernelMinor: number; kernelFlags: number; kernelFlags2: number; maxWrite: number; batches: number; requests: number;
    /** passthrough: max_stack_depth answered, opens passed through, fallbacks by reason, backing ids held; or why it is off */
    passthrough?: { maxStackDepth: number; passed: number; fallbacks: Record<string, number>; ids: number } | { off: string } | undefined;
    /** FUSE over io_uring (io_uring on): queues, entries, requests and commits through the ring */
    uring?: { queues: number; entries: number; requests: number; commits: number; batches: number; failed: string | undefined } | undefined;
    /** what the helper threads wrote (INVAL_ENTRY, symlink page drops, the LOOKUP answers behind them): waiting, written, failed, last errno */
    notifications?: { queued: number; written: number; failed: number; lastErrno: number } | undefined;
  } | undefined;
  overlay: OverlayStats;
  memory: MemoryStats;
}

/** `gc`: the daemon runs a full garbage collection first, so that the heap figure is what is live. */
export async function fetchStats(mountpointArg: string, gc = false): Promise<DaemonStats> {
  const mnt = await resolveMountpointArg(mountpointArg);
  return (await queryControl(runtimeFiles(mnt).sock, gc ? 'stats gc' : 'stats', gc ? 60_000 : 5000)) as DaemonStats;
}

const fmtUs = (us: number): string => (us >= 10_000 ? `${(us / 1000).toFixed(1)}ms` : `${Math.round(us)}µs`);
const fmtBytes = (b: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${i === 0 ? b : b.toFixed(1)} ${units[i]}`;
};

export function formatStats(s: DaemonStats): string {
  const lines: string[] = [];
  lines.push(`mount ${s.mountpoint}  (daemon pid ${s.pid}, up ${s.uptimeS.toFixed(0)} s)`);
  const names = Object.keys(s.ops).sort((a, b) => s.ops[b]!.count - s.ops[a]!.count);
  if (names.length === 0) {
    lines.push('no FUSE operations yet');
  } else {
    const head = ['op', 'count', 'errors', 'avg', 'p50', 'p99', 'max', 'bytes', 'avg size'];
    const rows = names.map((n) => {
      const o = s.ops[n]!;
      return [n, String(o.count), String(o.errors), fmtUs(o.avgUs), fmtUs(o.p50Us), fmtUs(o.p99Us), fmtUs(o.maxUs),
        o.bytes === undefined ? '' : fmtBytes(o.bytes),
        o.bytes === undefined || o.count === 0 ? '' : fmtBytes(Math.round(o.bytes / o.count))];
    });
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd();
    lines.push(line(head), ...rows.map(line));
  }
  const fill = (name: string, c: CacheFill, unit: string): string => `${name}: ${c.entries} entries, ${c.size}/${c.max} ${unit}`;
  const lc = s.overlay.lookupCache;
  const total = lc.hits + lc.misses;
  lines.push(`lookup cache: ${lc.size}/${lc.max} entries, ${lc.hits} hits, ${lc.misses} misses${total ? ` (${((100 * lc.hits) / total).toFixed(1)}% hits)` : ''}, ${lc.bytes}/${lc.maxBytes} bytes`);
  lines.push(`copy-ups: ${s.overlay.copyUps.count} (${fmtBytes(s.overlay.copyUps.bytes)})`);
  lines.push(`whiteouts written: ${s.overlay.whiteoutsWritten}`);
  if (s.nodes !== undefined) lines.push(`kernel nodes: ${s.nodes}, requests in flight: ${s.pending ?? 0}`);
  if (s.fuse !== undefined) {
    const f = s.fuse;
    lines.push(`FUSE protocol: 7.${f.minor}, flags 0x${f.flags.toString(16)} flags2 0x${f.flags2.toString(16)} (kernel offered 7.${f.kernelMinor}, flags 0x${f.kernelFlags.toString(16)} flags2 0x${f.kernelFlags2.toString(16)}), max_write ${f.maxWrite}; ${f.requests} requests read in ${f.batches} wakeups`);
    lines.push(`FUSE features: ${f.features.join(' ') || 'none'}`);
    const p = f.passthrough;
    if (p !== undefined) {
      lines.push('off' in p
        ? `FUSE passthrough: off (${p.off})`
        : `FUSE passthrough: ${p.passed} opens passed through, fallbacks ${JSON.stringify(p.fallbacks)}, ${p.ids} backing ids held, max_stack_depth ${p.maxStackDepth}`);
    }
    const n = f.notifications;
    if (n !== undefined) lines.push(`FUSE notifications (helper threads): ${n.written} written, ${n.queued} waiting, ${n.failed} failed${n.failed > 0 ? ` (last errno ${n.lastErrno})` : ''}`);
    const u = f.uring;
    if (u !== undefined) {
      lines.push(`FUSE io_uring: ${u.queues} queues x ${u.entries / Math.max(1, u.queues)} entries; ${u.requests} requests in ${u.batches} wakeups, ${u.commits} answers committed${u.failed !== undefined ? `; a command failed: ${u.failed} (the kernel falls back to /dev/fuse)` : ''}`);
    }
  }
  if (s.nodePaths !== undefined) lines.push(fill('node path cache', s.nodePaths, 'bytes'));
  const cs = s.overlay.caches;
  lines.push(fill('listing cache', cs.listings, 'bytes'), fill('lower directory cache', cs.lowerDirs, 'bytes'),
    fill('upper directory cache', cs.upperDirs, 'bytes'));
  const m = s.memory;
  lines.push(`memory: heap ${fmtBytes(m.heapUsedBytes)} used${m.gc ? ' after a full GC' : ''} (${fmtBytes(m.heapTotalBytes)} reserved), ` +
    `external ${fmtBytes(m.externalBytes)}, rss ${fmtBytes(m.rssBytes)}${m.peakRssBytes === undefined ? '' : `, peak rss ${fmtBytes(m.peakRssBytes)}`}`);
  return lines.join('\n');
}

export async function statsCommand(mountpointArg: string, json: boolean, gc = false): Promise<string> {
  const s = await fetchStats(mountpointArg, gc);
  return json ? JSON.stringify(s, null, 2) : formatStats(s);
}

/** What the daemon's control socket answers to "describe" (serve.ts). */
export interface DaemonDescription {
  mountpoint: string;
  pid: number;
  lowerdirs: string[];
  upperdir: string | null;
  workdir: string | null;
  options: Record<string, unknown>;
  overlay: Record<string, unknown>;
}

/** `stratafs inspect [--json] MOUNTPOINT`: the layer stack, options and stats of a live mount. */
export async function inspectCommand(mountpointArg: string, json: boolean): Promise<string> {
  const mnt = await resolveMountpointArg(mountpointArg);
  const sock = runtimeFiles(mnt).sock;
  const d = (await queryControl(sock, 'describe')) as DaemonDescription;
  const s = (await queryControl(sock, 'stats')) as DaemonStats;
  if (json) return JSON.stringify({ ...d, stats: s }, null, 2);
  const lines = [`mount ${d.mountpoint}  (daemon pid ${d.pid})`, 'layers, top first:'];
  if (d.upperdir !== null) lines.push(`  upper  ${d.upperdir}`);
  d.lowerdirs.forEach((l, i) => lines.push(`  lower${i}  ${l}`));
  if (d.workdir !== null) lines.push(`  work   ${d.workdir}`);
  lines.push('options:');
  for (const [k, v] of Object.entries(d.options)) lines.push(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  lines.push('overlay:');
  for (const [k, v] of Object.entries(d.overlay)) {
    if (k !== 'layers') lines.push(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  }
  lines.push('', formatStats(s));
  return lines.join('\n');
}
