#!/usr/bin/env node
/**
 * `npm run find-memory`: `find` twice over a large lower tree through stratafs
 * and fuse-overlayfs in the same run, with each daemon's time and peak
 * resident set (VmHWM), and for stratafs its heap after a full GC (`stats
 * --gc`). Issue 11 (depth and scale) reports these numbers; the CI test
 * (test/integration/memory-depth.test.ts) asserts only the memory bound.
 *
 * Defaults: 100,000 files (1,000,000 with STRATAFS_LONG=1) in directories of
 * 1,000 under `--depth` levels of `--name-len`-byte names. The walk is
 * `find -printf '%s\n'`: it stats every entry, so the kernel looks each one up
 * and the daemon keeps a node for it (a plain `find` reads d_type and looks up
 * directories only). No drop_caches: the second walk shows what the kernel's
 * and the daemon's caches keep. Everything lives under one mkdtemp directory
 * (or --dir), removed at the end unless --keep.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { fuseOverlayfsImpl, makeStratafsImpl, reapDaemons, stratafsCli, type Impl, type MountHandle } from './impls.js';
import { run, sampleProc } from './proc.js';

interface Options { files: number; depth: number; nameLen: number; dir?: string; keep: boolean; impl: string[] }

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

const PER_DIR = 1000;

/** The lower tree (reused when its marker says it was finished with the same parameters). */
function buildTree(lower: string, o: Options): void {
  const marker = path.join(lower, `.complete-${o.files}-${o.depth}-${o.nameLen}`);
  if (fs.existsSync(marker)) return;
  let base = path.join(lower, 'tree');
  for (let i = 0; i < o.depth; i++) base = path.join(base, `l${i}`.padEnd(o.nameLen, 'x'));
  fs.mkdirSync(base, { recursive: true });
  for (let d = 0; d * PER_DIR < o.files; d++) {
    const dir = path.join(base, `d${d}`.padEnd(Math.min(o.nameLen, 255), 'y'));
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < PER_DIR && d * PER_DIR + f < o.files; f++) {
      fs.closeSync(fs.openSync(path.join(dir, `f${f}`.padEnd(Math.min(o.nameLen, 255), 'z')), 'w'));
    }
  }
  fs.writeFileSync(marker, '');
}

interface Row { impl: string; walks: { seconds: number; lines: number; hwm: number | undefined; rss: number | undefined }[]; heapAfterGc?: number; nodes?: number; error?: string }

async function walk(mnt: string, pid: number | null): Promise<Row['walks'][number]> {
  const t0 = process.hrtime.bigint();
  const r = await run('sh', ['-c', `find "$1" -printf '%s\\n' | wc -l`, 'sh', path.join(mnt, 'tree')], { timeoutMs: 3_600_000 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) throw new Error(`find failed: ${r.stderr}`);
  const s = pid === null ? null : sampleProc(pid);
  return { seconds, lines: Number(r.stdout.trim()), hwm: s?.hwmBytes, rss: s?.rssBytes };
}

async function measure(impl: Impl, lower: string, scratch: string): Promise<Row> {
  const row: Row = { impl: impl.name, walks: [] };
  const why = await impl.prepare();
  if (why !== null) return { ...row, error: why };
  const d = { upper: path.join(scratch, `${impl.name}-u`), work: path.join(scratch, `${impl.name}-w`), mnt: path.join(scratch, `${impl.name}-mnt`) };
  for (const x of Object.values(d)) fs.mkdirSync(x, { recursive: true });
  let h: MountHandle | undefined;
  try {
    h = await impl.mount({ lowerdir: lower }, d);
    for (let i = 0; i < 2; i++) {
      row.walks.push(await walk(d.mnt, h.pid));
      process.stderr.write(`${impl.name}: find ${i + 1}: ${row.walks[i]!.seconds.toFixed(2)} s\n`);
    }
    if (impl.name === 'stratafs') {
      const r = await run(process.execPath, [stratafsCli(), 'stats', '--json', '--gc', d.mnt], { timeoutMs: 120_000 });
      if (r.code === 0) {
        const s = JSON.parse(r.stdout) as { memory?: { heapUsedBytes: number }; nodes?: number };
        row.heapAfterGc = s.memory?.heapUsedBytes;
        row.nodes = s.nodes;
      }
    }
  } catch (e) {
    row.error = e instanceof Error ? e.message : String(e);
  } finally {
    await h?.unmount();
    for (const x of Object.values(d)) fs.rmSync(x, { recursive: true, force: true });
  }
  return row;
}

const mib = (b: number | undefined): string => (b === undefined ? '' : (b / 1048576).toFixed(0));

async function main(): Promise<void> {
  const long = process.env.STRATAFS_LONG === '1';
  const o = new Command()
    .name('find-memory')
    .description('find x2 over a large lower tree: time and daemon peak memory, stratafs beside fuse-overlayfs')
    .option('--files <n>', 'regular files in the lower tree', positiveInt, long ? 1_000_000 : 100_000)
    .option('--depth <n>', 'directory levels above the directories of files', positiveInt, 0)
    .option('--name-len <n>', 'bytes per name of those levels (and of the files and their directories, up to 255)', positiveInt, 8)
    .option('--dir <path>', 'scratch directory (kept lower tree is reused from here); default a new one under $TMPDIR')
    .option('--keep', 'keep the lower tree for the next run', false)
    .option('--impl <list>', 'stratafs,fuse-overlayfs', (v: string) => v.split(','), ['stratafs', 'fuse-overlayfs'])
    .parse()
    .opts<Options>();
  const scratch = o.dir !== undefined ? path.resolve(o.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-find-memory-'));
  const lower = path.join(scratch, 'lower');
  process.stderr.write(`building ${o.files} files under ${o.depth} levels of ${o.nameLen}-byte names in ${lower}\n`);
  const t0 = Date.now();
  buildTree(lower, o);
  process.stderr.write(`tree ready in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  const impls: Impl[] = [];
  for (const n of o.impl) {
    if (n === 'stratafs') impls.push(makeStratafsImpl(stratafsCli()));
    else if (n === 'fuse-overlayfs') impls.push(fuseOverlayfsImpl);
    else throw new Error(`unknown implementation ${n}`);
  }
  const rows: Row[] = [];
  try {
    for (const impl of impls) rows.push(await measure(impl, lower, scratch));
  } finally {
    await reapDaemons();
    if (!o.keep) fs.rmSync(o.dir !== undefined ? lower : scratch, { recursive: true, force: true });
  }
  const out = [
    `find -printf over ${o.files} lower files (${o.depth} levels of ${o.nameLen}-byte names above them), twice, no cache dropped`,
    '',
    '| implementation | entries | find 1 (s) | find 2 (s) | peak RSS after find 1 (MiB) | peak RSS after find 2 (MiB) | RSS at end (MiB) | heap after GC (MiB) | nodes |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => r.error !== undefined
      ? `| ${r.impl} | not run: ${r.error} |||||||`
      : `| ${r.impl} | ${r.walks[0]?.lines ?? ''} | ${r.walks[0]?.seconds.toFixed(2) ?? ''} | ${r.walks[1]?.seconds.toFixed(2) ?? ''} | ` +
        `${mib(r.walks[0]?.hwm)} | ${mib(r.walks[1]?.hwm)} | ${mib(r.walks[1]?.rss)} | ${mib(r.heapAfterGc)} | ${r.nodes ?? ''} |`),
  ];
  process.stdout.write(out.join('\n') + '\n');
  if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`find-memory: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
