/**
 * Observability of a mount made by the real CLI: `-d` logs every FUSE op with
 * its result and duration (to the daemon log, or stderr with -f); `stratafs
 * stats` reports op counts and latencies, lookup-cache hits and misses,
 * copy-ups and whiteouts; SIGUSR1 dumps the same into the log; big writes
 * arrive in 128 KiB requests.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTimeout } from '../harness/proc.js';
import {
  cli, cliScratch, daemonMount, isMounted, layerOptions, Leftovers, runText, startForeground, waitFor,
} from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
let mnt: string;
let opts: string;
const p = (rel: string): string => join(t, rel);

beforeEach(async () => {
  ({ t, left, mnt } = await cliScratch('cli-obs', ['l1', 'u', 'w']));
  await writeFile(p('l1/a'), 'lower a\n');
  await writeFile(p('l1/b'), 'lower b\n');
  opts = layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('w') });
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

const mountDaemon = (extra: string[] = []): Promise<{ pid: number; stderr: string }> => daemonMount(left, [...extra, '-o', opts], mnt);

interface Stats {
  mountpoint: string;
  pid: number;
  ops: Record<string, { count: number; errors: number; avgUs: number; p50Us: number; p99Us: number; maxUs: number; bytes?: number }>;
  overlay: { lookupCache: { size: number; max: number; hits: number; misses: number }; copyUps: { count: number; bytes: number }; whiteoutsWritten: number };
}

async function stats(): Promise<Stats> {
  const r = await cli(['stats', '--json', mnt]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Stats;
}

describe('-d', () => {
  it('logs every op with result and duration to the daemon log, and says where', async () => {
    const { stderr } = await mountDaemon(['-d']);
    const m = /^stratafs: debug log: (\S+)$/m.exec(stderr);
    expect(m, stderr).not.toBeNull();
    const log = m![1]!;
    await expect(withTimeout(stat(join(mnt, 'missing')), 5000, 'stat')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('lower a\n');
    const text = await readFile(log, 'utf8');
    expect(text).toMatch(/ lookup "\/missing" -> -ENOENT \d+µs$/m);
    expect(text).toMatch(/ open "\/a" flags=0x[0-9a-f]+ -> \d+ \d+µs$/m);
    expect(text).toMatch(/ read "\/a" fh=\d+ size=\d+ off=0 -> 8 \d+µs$/m);
    // the server's own line for every request: opcode, unique, node, caller, errno or reply size, duration
    const me = `uid=${process.getuid?.() ?? 0} pid=\\d+`;
    expect(text).toMatch(/ fuse INIT unique=\d+ node=0 kernel 7\.\d+$/m);
    expect(text).toMatch(/^FUSE INIT: kernel 7\.\d+ .* features: /m);
    // a missing name is answered with a negative entry (node 0, cached by the kernel), not an errno
    expect(text).toMatch(new RegExp(` fuse LOOKUP unique=\\d+ node=1 ${me} -> 128 bytes \\d+µs$`, 'm'));
    expect(text).toMatch(new RegExp(` fuse OPEN unique=\\d+ node=\\d+ ${me} -> 16 bytes \\d+µs$`, 'm'));
    expect(text).toMatch(new RegExp(` fuse READ unique=\\d+ node=\\d+ ${me} -> 8 bytes \\d+µs$`, 'm'));
  });

  it('with -f the op log goes to stderr', async () => {
    const fg = startForeground(['-d', '-o', opts, mnt], left);
    expect(await waitFor(() => isMounted(mnt), 15_000)).toBe(true);
    await withTimeout(readFile(join(mnt, 'b'), 'utf8'), 5000, 'read');
    expect(await waitFor(() => / read "\/b" .* -> 8 \d+µs/.test(fg.stderr()), 5000)).toBe(true);
    fg.child.kill('SIGTERM');
    expect(await withTimeout(fg.exited, 10_000, 'exit')).toBe(0);
  });
});

describe('stats', () => {
  it('reports op counts and latencies, lookup cache, copy-ups and whiteouts (--json and text)', async () => {
    // passthrough off: with it the copied-up file's write reaches the layer without a WRITE
    // the 7.19-era write path: no passthrough, no 1 MiB requests (max_pages), no page-cache writeback
    await mountDaemon(['-o', 'fuse_off=passthrough:max_pages:writeback_cache']);
    await withTimeout(readFile(join(mnt, 'b'), 'utf8'), 5000, 'read');
    // copy-up of a lower file, then a whiteout for a deleted lower file
    const w = await runText('sh', ['-c', `echo more >> ${join(mnt, 'a')} && rm ${join(mnt, 'b')}`], { timeoutMs: 10_000 });
    expect(w.code, w.stderr).toBe(0);
    const s = await stats();
    expect(s.mountpoint).toBe(mnt);
    expect(s.ops.read!.count).toBeGreaterThanOrEqual(1);
    expect(s.ops.write!.count).toBeGreaterThanOrEqual(1);
    expect(s.ops.unlink!.count).toBe(1);
    expect(s.ops.getattr!.count).toBeGreaterThan(0);
    expect(s.ops.getattr!.maxUs).toBeGreaterThan(0);
    expect(s.overlay.copyUps.count).toBe(1);
    expect(s.overlay.copyUps.bytes).toBe(8);
    expect(s.overlay.whiteoutsWritten).toBe(1);
    expect(s.overlay.lookupCache.hits + s.overlay.lookupCache.misses).toBeGreaterThan(0);

    const text = await cli(['stats', mnt]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^op +count +errors +avg +p50 +p99 +max/m);
    expect(text.stdout).toMatch(/^unlink +1 +0 /m);
    expect(text.stdout).toMatch(/^copy-ups: 1 \(8 B\)$/m);
    expect(text.stdout).toMatch(/^whiteouts written: 1$/m);
    expect(text.stdout).toMatch(/^lookup cache: \d+\/100000 entries, \d+ hits, \d+ misses.*, \d+\/64000000 bytes$/m);
    expect(text.stdout).toMatch(/^memory: heap [\d.]+ [KMG]iB used \(/m);
    const gc = await cli(['stats', '--gc', mnt]);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/^memory: heap [\d.]+ [KMG]iB used after a full GC \(.*, peak rss [\d.]+ MiB$/m);
    expect(gc.stdout).toMatch(/^node path cache: \d+ entries, \d+\/16000000 bytes$/m);
  });

  it('SIGUSR1 dumps the stats into the daemon log', async () => {
    const { pid } = await mountDaemon(['-o', `log=${p('daemon.log')}`]);
    await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read');
    process.kill(pid, 'SIGUSR1');
    expect(await waitFor(async () => /^stratafs: stats \{.*"read":\{"count":1/m.test(await readFile(p('daemon.log'), 'utf8')), 5000)).toBe(true);
  });

  it('stats of a path no daemon serves fails with one line', async () => {
    const r = await cli(['stats', p('u')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^stratafs: no stratafs daemon serves this mount \(no control socket \S+\)$/);
  });

  it('a large sequential write arrives in 128 KiB requests', async () => {
    // the 7.19-era write path: no passthrough, no 1 MiB requests (max_pages), no page-cache writeback
    await mountDaemon(['-o', 'fuse_off=passthrough:max_pages:writeback_cache']);
    const dd = await runText('dd', ['if=/dev/zero', `of=${join(mnt, 'big')}`, 'bs=1M', 'count=16', 'conv=fsync'], { timeoutMs: 30_000 });
    expect(dd.code, dd.stderr).toBe(0);
    const s = await stats();
    expect(s.ops.write!.bytes).toBe(16 * 1024 * 1024);
    expect(s.ops.write!.count).toBe(128);
  });
});
