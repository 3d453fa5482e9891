/**
 * The daemon's memory as `stratafs stats --gc` reports it: the JS heap after a
 * forced full garbage collection (what is live, not what the collector has not
 * got round to), beside the resident set and its peak. Caches bound what stays
 * live; this is how a test or a user checks the bound on a running mount.
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

export interface MemoryStats {
  /** a full GC ran just before the figures were taken */
  gc: boolean;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** memory of Buffers and other objects outside the JS heap */
  externalBytes: number;
  rssBytes: number;
  /** VmHWM: the largest resident set since the daemon started */
  peakRssBytes: number | undefined;
}

let gcFn: (() => void) | undefined;

/**
 * A full collection without starting Node with --expose-gc: the flag set at run
 * time exposes `gc` in contexts created afterwards. Paid only when asked for.
 */
function fullGc(): void {
  if (gcFn === undefined) {
    const g: unknown = (globalThis as { gc?: unknown }).gc;
    if (typeof g === 'function') {
      gcFn = g as () => void;
    } else {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    }
  }
  gcFn();
}

function peakRss(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'latin1'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function memoryStats(gc: boolean): MemoryStats {
  if (gc) fullGc();
  const m = process.memoryUsage();
  return {
    gc, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external,
    rssBytes: m.rss, peakRssBytes: peakRss(),
  };
}
