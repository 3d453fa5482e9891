/**
 * What both FUSE adapters share: the one conversion of core failures to errno,
 * and per-op request statistics (counts, errors, power-of-two latency
 * histograms) for `stratafs stats` and the benchmark.
 */
import type { Bstr } from '../shared/bstr.js';
import { toText } from '../shared/bstr.js';
import { errnoOf, FsError, knownCodeOf, nodeErrnoCode } from '../shared/errors.js';
import type { MergedEntry, StatFs } from '../core/types.js';
import { STAT_LEN, StatIdx, STATVFS_LEN, StatvfsIdx, setIno, type Ino } from '../native/sys-api.js';
import { EIO, S_IFDIR } from '../shared/constants.js';

// ---------------------------------------------------------------------------
// the one error conversion

/**
 * -errno for a failure of the core. An FsError says which; a Node SystemError
 * with an errno (read as the core reads them, shared/errors.ts) is honoured but
 * logged (the core should have wrapped it); anything else is a bug: EIO, logged
 * with its stack.
 */
export function toErrno(e: unknown, op: string, path: Bstr | null, log: (s: string) => void): number {
  if (e instanceof FsError) return -e.errno;
  const code = nodeErrnoCode(e);
  const where = `${op} ${path === null ? '(unlinked)' : toText(path)}`;
  if (code !== undefined) {
    log(`stratafs: ${where}: unwrapped ${code} from the core: ${e instanceof Error ? e.message : String(e)}`);
    return -errnoOf(code);
  }
  log(`stratafs: ${where}: internal error, answered EIO: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  return -EIO;
}

// ---------------------------------------------------------------------------
// op statistics

/** Latency histogram buckets: bucket i counts latencies in [2^(i-1), 2^i) µs. */
const BUCKETS = 32;

export class OpCounter {
  count = 0;
  errors = 0;
  totalUs = 0;
  maxUs = 0;
  bytes = 0;
  readonly hist = new Uint32Array(BUCKETS);
  constructor(readonly countsBytes: boolean) {}
  add(us: number, result: number): void {
    this.count++;
    this.totalUs += us;
    if (us > this.maxUs) this.maxUs = us;
    if (result < 0) this.errors++;
    else if (this.countsBytes) this.bytes += result;
    const b = us < 1 ? 0 : Math.min(BUCKETS - 1, 32 - Math.clz32(Math.floor(us)));
    this.hist[b]!++;
  }
  /** upper bound of the bucket holding quantile q */
  quantile(q: number): number {
    const want = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.hist[i]!;
      if (seen >= want) return Math.min(2 ** i, this.maxUs);
    }
    return this.maxUs;
  }
}

export interface OpSummary {
  count: number;
  errors: number;
  avgUs: number;
  /** p50/p99 are upper bounds of power-of-two latency buckets */
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** read/write only: bytes moved by successful requests */
  bytes?: number;
}

/** A core call as a promise even when it throws before returning one: one failure path per request. */
export function startCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Counters by op name. */
export class RequestStats {
  private readonly counters = new Map<string, OpCounter>();

  counter(op: string): OpCounter {
    let c = this.counters.get(op);
    if (c === undefined) this.counters.set(op, (c = new OpCounter(op === 'read' || op === 'write')));
    return c;
  }

  summary(): Record<string, OpSummary> {
    const out: Record<string, OpSummary> = {};
    for (const [op, c] of [...this.counters].sort(([a], [b]) => a.localeCompare(b))) {
      const s: OpSummary = {
        count: c.count, errors: c.errors, avgUs: c.count ? c.totalUs / c.count : 0,
        p50Us: c.quantile(0.5), p99Us: c.quantile(0.99), maxUs: c.maxUs,
      };
      if (c.countsBytes) s.bytes = c.bytes;
      out[op] = s;
    }
    return out;
  }
}

/** An errno's name for the debug log, its number where the platform has no name. */
export function osErrName(n: number): string {
  return knownCodeOf(n) ?? String(n);
}

// ---------------------------------------------------------------------------
// answers both bindings send in the same layout


/**
 * A directory listing as the bindings send it: `.` and `..` first, and per name
 * `stride` numbers for d_type and d_ino: [mode, ino] (stride 2, the high-level
 * binding, ino as a double) or [mode, inoHi, inoLo] (stride 3, the low-level
 * server, the inode number exact as 32-bit halves).
 */
export interface DirListing { names: Bstr[]; modeIno: Float64Array; stride: 2 | 3 }

export function dirListing(self: Ino, parent: Ino, entries: readonly MergedEntry[], stride: 2 | 3): DirListing {
  const n = entries.length + 2;
  const names = new Array<Bstr>(n);
  const modeIno = new Float64Array(stride * n);
  const put = (i: number, mode: number, ino: Ino): void => {
    modeIno[stride * i] = mode;
    if (stride === 2) { modeIno[2 * i + 1] = Number(ino); return; }
    setIno(slot, ino);
    modeIno[3 * i + 1] = slot[StatIdx.inoHi]!;
    modeIno[3 * i + 2] = slot[StatIdx.inoLo]!;
  };
  names[0] = '.'; put(0, S_IFDIR, self);
  names[1] = '..'; put(1, S_IFDIR, parent);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    names[i + 2] = e.name;
    put(i + 2, e.type, e.ino);
  }
  return { names, modeIno, stride };
}
const slot = new Float64Array(STAT_LEN);

/** statvfs in the StatvfsIdx layout of sys-api.ts */
export function statvfsArray(s: StatFs): Float64Array {
  const a = new Float64Array(STATVFS_LEN);
  a[StatvfsIdx.bsize] = s.bsize; a[StatvfsIdx.frsize] = s.frsize; a[StatvfsIdx.blocks] = s.blocks;
  a[StatvfsIdx.bfree] = s.bfree; a[StatvfsIdx.bavail] = s.bavail; a[StatvfsIdx.files] = s.files;
  a[StatvfsIdx.ffree] = s.ffree; a[StatvfsIdx.favail] = s.favail; a[StatvfsIdx.fsid] = s.fsid;
  a[StatvfsIdx.flag] = s.flag; a[StatvfsIdx.namemax] = s.namemax;
  return a;
}
