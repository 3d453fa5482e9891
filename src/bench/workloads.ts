import * as fs from 'node:fs';
import * as path from 'node:path';
import { bash, describeFailure, sq, type RunResult } from './proc.js';
import { createHash } from 'node:crypto';
import { BLOCK, blockPool, expectedSlice, gitEnv, mergedSmallFiles, planDataset, smallContent, textPool, type Manifest, type SmallFile } from './dataset.js';

/** A fast wrong answer: the benchmark reports it loudly and exits non-zero. */
export class CorrectnessError extends Error {}

/** A workload command that failed or timed out: no answer at all, which fails the cell the same way. */
export class CommandError extends CorrectnessError {}

export interface WorkloadCtx {
  mnt: string;
  /** The mount's upper dir, read directly (it is a plain directory) to prove copy-ups happened. */
  upper: string;
  m: Manifest;
  /** Files the workloads need outside the mount (reader lists). */
  scratch: string;
  timeoutMs: number;
  fioSeconds: number;
  /** Distinguishes repeated runs in one mount (untar targets). */
  runIndex: number;
}

export interface Measurement {
  seconds: number;
  /** What is compared: seconds, or IOPS for fio. */
  value: number;
  detail: string;
  /** What the client did, in the workload's own unit (files, entries, 1 MiB reads): FUSE requests per op divide by it. */
  ops?: number;
}

export type Unit = 's' | 'IOPS';

export interface Workload {
  id: string;
  title: string;
  unit: Unit;
  /** Every measured run needs a fresh upper dir and mount (the run changes what the next one would see). */
  mutates: boolean;
  /** Untimed, once per mount, before anything else. */
  setup?(c: WorkloadCtx): Promise<void>;
  /** Warm mode: what to run before measuring; defaults to one untimed run of measure(). */
  warm?(c: WorkloadCtx): Promise<void>;
  measure(c: WorkloadCtx): Promise<Measurement>;
  /** Untimed checks after measure(). */
  verify?(c: WorkloadCtx): Promise<void>;
}

function must(r: RunResult, what: string): RunResult {
  if (r.code !== 0 || r.timedOut) throw new CommandError(`${what}: ${describeFailure(r)}`);
  return r;
}

function expectEq(what: string, got: number | string, want: number | string): void {
  if (got !== want) throw new CorrectnessError(`${what}: expected ${String(want)}, got ${String(got)}`);
}

async function sh(c: WorkloadCtx, script: string, what: string, cwd?: string): Promise<RunResult> {
  return must(await bash(script, { timeoutMs: c.timeoutMs, cwd: cwd ?? c.mnt, env: { ...gitEnv(), LC_ALL: 'C' } }), what);
}

function measured(r: RunResult, detail: string, ops?: number): Measurement {
  return ops === undefined ? { seconds: r.seconds, value: r.seconds, detail } : { seconds: r.seconds, value: r.seconds, detail, ops };
}

/** dd bs=1M: one read(2) per MiB */
const mibs = (bytes: number): number => Math.ceil(bytes / BLOCK);

function ddBytes(stderr: string): number {
  let total = 0;
  for (const m of stderr.matchAll(/^(\d+) bytes/gm)) total += Number(m[1]);
  return total;
}

/** Reads `len` bytes at `offset` of a mounted file in a child process and compares with the generator. */
async function spotCheck(c: WorkloadCtx, rel: string, fileIndex: number, offset: number, len: number): Promise<void> {
  const r = await sh(c, `dd if=${sq(rel)} bs=4096 iflag=skip_bytes,count_bytes skip=${offset} count=${len} status=none`, `read ${rel}@${offset}`);
  const got = Buffer.from(r.stdout, 'latin1');
  const want = expectedSlice(blockPool(c.m.params.seed), fileIndex, offset, len);
  if (!got.equals(want)) throw new CorrectnessError(`${rel}: wrong data at offset ${offset} (${got.length} bytes read)`);
}

let specsCache: { seed: number; hash: string; specs: Map<string, SmallFile>; pool: Buffer } | null = null;

function specs(m: Manifest): { specs: Map<string, SmallFile>; pool: Buffer } {
  if (specsCache === null || specsCache.hash !== m.hash) {
    specsCache = { seed: m.params.seed, hash: m.hash, specs: mergedSmallFiles(planDataset(m.params)), pool: textPool(m.params.seed) };
  }
  return specsCache;
}

/**
 * Content check of small files read through the mount (sha256 in a child, against the generator):
 * sizes alone would not notice the lower version of a file served instead of the middle one.
 */
async function contentCheck(c: WorkloadCtx, rels: readonly string[], suffix: string, what: string): Promise<void> {
  const { specs: sp, pool } = specs(c.m);
  const list = path.join(c.scratch, `check-${process.pid}.lst`);
  fs.writeFileSync(list, rels.map((r) => `${r}\0`).join(''), 'latin1');
  const r = await sh(c, `xargs -0 -a ${sq(list)} sha256sum --`, `sha256sum (${what})`);
  const got = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([0-9a-f]{64}) {2}(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) got.set(m[2], m[1]);
  }
  for (const rel of rels) {
    const spec = sp.get(rel);
    if (spec === undefined) throw new CorrectnessError(`${what}: ${rel} is not in the data set plan`);
    const want = createHash('sha256').update(Buffer.concat([smallContent(pool, spec), Buffer.from(suffix)])).digest('hex');
    if (got.get(rel) !== want) throw new CorrectnessError(`${what}: wrong contents in ${rel}`);
  }
}

/** Every k-th entry: spread over the whole tree, and the same entries on every implementation. */
function every<T>(xs: readonly T[], k: number): T[] {
  return xs.filter((_, i) => i % k === 0);
}

function readList(file: string): string[] {
  return fs.readFileSync(file, 'latin1').split('\0').filter((s) => s.length > 0);
}

function listFor(c: WorkloadCtx, k: number, of: number): string {
  const p = path.join(c.scratch, `tree-${k}-of-${of}.lst`);
  if (!fs.existsSync(p)) {
    const all = fs.readFileSync(c.m.treeList, 'latin1').split('\0').filter((s) => s.length > 0);
    fs.writeFileSync(p, all.filter((_, i) => i % of === k).map((s) => `${s}\0`).join(''), 'latin1');
  }
  return p;
}

async function fileSize(c: WorkloadCtx, rel: string): Promise<number> {
  return Number((await sh(c, `stat -c %s ${sq(rel)}`, `stat ${rel}`)).stdout.trim());
}

export function workloads(): Workload[] {
  return [
    {
      id: 'walk',
      title: 'find -type f (tree walk)',
      unit: 's',
      mutates: false,
      async measure(c) {
        const r = await sh(c, 'find . -type f | wc -l', 'find');
        expectEq('files found', Number(r.stdout.trim()), c.m.totalFiles);
        return measured(r, `${c.m.totalFiles} files`, c.m.totalFiles);
      },
    },
    {
      id: 'lstat',
      title: 'lstat every file (find -printf %s)',
      unit: 's',
      mutates: false,
      async measure(c) {
        const r = await sh(c, `find . -type f -printf '%s\\n' | awk '{n++; s+=$1} END {printf "%d %d\\n", n, s}'`, 'find -printf');
        const [n, s] = r.stdout.trim().split(' ').map(Number);
        expectEq('files stat-ed', n ?? -1, c.m.totalFiles);
        expectEq('sum of st_size', s ?? -1, c.m.totalBytes);
        return measured(r, `${n} files, ${s} bytes`, c.m.totalFiles);
      },
    },
    {
      id: 'ls-l',
      title: `ls -l of the big directory`,
      unit: 's',
      mutates: false,
      async measure(c) {
        const r = await sh(c, 'ls -l bigdir | wc -l', 'ls -l');
        expectEq('ls -l lines (entries + total)', Number(r.stdout.trim()), c.m.bigdirEntries + 1);
        return measured(r, `${c.m.bigdirEntries} entries`, c.m.bigdirEntries);
      },
    },
    {
      id: 'read-small',
      title: 'read every small file (xargs cat)',
      unit: 's',
      mutates: false,
      async measure(c) {
        const r = await sh(c, `xargs -0 -a ${sq(c.m.treeList)} cat -- | wc -c`, 'xargs cat');
        expectEq('bytes read', Number(r.stdout.trim()), c.m.treeBytes);
        return measured(r, `${c.m.treeFiles} files, ${c.m.treeBytes} bytes`, c.m.treeFiles);
      },
      async verify(c) {
        const all = readList(c.m.treeList);
        const opaque = all.filter((p) => c.m.opaqueDirs.some((d) => p.startsWith(`${d}/`)));
        await contentCheck(c, [...new Set([...every(all, 37), ...opaque])], '', 'small-file contents');
      },
    },
    {
      id: 'read-big',
      title: 'sequential read of the big file (dd bs=1M)',
      unit: 's',
      mutates: false,
      async measure(c) {
        const r = await sh(c, `dd if=${sq(c.m.bigFile)} of=/dev/null bs=1M`, 'dd');
        expectEq('bytes read', ddBytes(r.stderr), c.m.bigFileBytes);
        return measured(r, `${c.m.bigFileBytes} bytes`, mibs(c.m.bigFileBytes));
      },
      async verify(c) {
        for (const off of [0, BLOCK - 100, Math.floor(c.m.bigFileBytes / 2) + 12345, c.m.bigFileBytes - 4096]) {
          await spotCheck(c, c.m.bigFile, 0, off, 4096);
        }
      },
    },
    {
      id: 'copyup-big',
      title: 'copy-up of the big file (append 1 byte)',
      unit: 's',
      mutates: true,
      async warm(c) {
        await sh(c, `cat ${sq(c.m.bigFile)} > /dev/null`, 'cat big file');
      },
      async measure(c) {
        const r = await sh(c, `printf x >> ${sq(c.m.bigFile)}`, 'append');
        return measured(r, `${c.m.bigFileBytes} bytes copied up`, 1);
      },
      async verify(c) {
        expectEq('size after append', await fileSize(c, c.m.bigFile), c.m.bigFileBytes + 1);
        const up = fs.statSync(path.join(c.upper, c.m.bigFile), { throwIfNoEntry: false });
        expectEq('size of the copy in upperdir', up?.size ?? -1, c.m.bigFileBytes + 1);
        await spotCheck(c, c.m.bigFile, 0, 0, 4096);
        await spotCheck(c, c.m.bigFile, 0, c.m.bigFileBytes - 8192, 8192);
        const tail = await sh(c, `tail -c 1 ${sq(c.m.bigFile)}`, 'tail');
        expectEq('appended byte', tail.stdout, 'x');
      },
    },
    {
      id: 'copyup-small',
      title: `copy-up of small files (append 1 byte each)`,
      unit: 's',
      mutates: true,
      async warm(c) {
        await sh(c, `xargs -0 -a ${sq(c.m.copyUpList)} cat -- > /dev/null`, 'cat copy-up files');
      },
      async measure(c) {
        // A bash loop with builtins only: one process, one open+write+close per file.
        const r = await sh(c, `while IFS= read -r -d '' f; do printf x >> "$f" || exit 1; done < ${sq(c.m.copyUpList)}`, 'append loop');
        return measured(r, `${c.m.copyUpFiles} files`, c.m.copyUpFiles);
      },
      async verify(c) {
        const r = await sh(c, `xargs -0 -a ${sq(c.m.copyUpList)} stat -c %s -- | awk '{n++; s+=$1} END {printf "%d %d\\n", n, s}'`, 'stat copied files');
        const [n, s] = r.stdout.trim().split(' ').map(Number);
        expectEq('files after copy-up', n ?? -1, c.m.copyUpFiles);
        expectEq('bytes after copy-up', s ?? -1, c.m.copyUpBytesBefore + c.m.copyUpFiles);
        const list = readList(c.m.copyUpList);
        await contentCheck(c, every(list, 10), 'x', 'copied-up contents');
        const inUpper = list.filter((rel) => fs.statSync(path.join(c.upper, rel), { throwIfNoEntry: false })?.isFile() === true).length;
        expectEq('copied-up files present in upperdir', inUpper, c.m.copyUpFiles);
      },
    },
    {
      id: 'untar',
      title: 'untar small files into the mount',
      unit: 's',
      mutates: true,
      async warm(c) {
        await sh(c, `mkdir warm-untar && tar -xf ${sq(c.m.tarball)} -C warm-untar`, 'warm-up untar');
      },
      async measure(c) {
        const r = await sh(c, `mkdir untar && tar -xf ${sq(c.m.tarball)} -C untar`, 'tar -x');
        return measured(r, `${c.m.untarFiles} files`, c.m.untarFiles);
      },
      async verify(c) {
        const r = await sh(c, 'find untar -type f | wc -l', 'count untarred');
        expectEq('untarred files', Number(r.stdout.trim()), c.m.untarFiles);
      },
    },
    {
      id: 'rm-rf',
      title: 'rm -rf of a lower subtree',
      unit: 's',
      mutates: true,
      async warm(c) {
        await sh(c, `find ${sq(c.m.rmTarget)} -printf '%s\\n' > /dev/null`, 'warm-up find');
      },
      async measure(c) {
        const r = await sh(c, `rm -rf ${sq(c.m.rmTarget)}`, 'rm -rf');
        return measured(r, `${c.m.rmTargetFiles} files`, c.m.rmTargetFiles);
      },
      async verify(c) {
        const r = await sh(c, `if [ -e ${sq(c.m.rmTarget)} ] || [ -L ${sq(c.m.rmTarget)} ]; then echo present; else echo gone; fi; ls tree | wc -l`, 'check removal');
        const [state, left] = r.stdout.trim().split('\n');
        expectEq(`${c.m.rmTarget} after rm -rf`, state ?? '', 'gone');
        expectEq('entries left in tree/', Number(left), c.m.params.treeTops - 1);
      },
    },
    {
      id: 'git-status',
      title: 'git status after touching a few files',
      unit: 's',
      mutates: false,
      async setup(c) {
        const repo = path.join(c.mnt, c.m.repoDir);
        const mod = c.m.gitModify.map(sq).join(' ');
        const touch = c.m.gitTouch.map(sq).join(' ');
        await sh(c, `for f in ${mod}; do printf 'bench change\\n' >> "$f" || exit 1; done; touch ${touch}`, 'modify repo files', repo);
      },
      async measure(c) {
        const r = await sh(c, 'git status --porcelain', 'git status', path.join(c.mnt, c.m.repoDir));
        const want = c.m.gitModify.map((f) => ` M ${f}`).join('\n');
        // trimEnd only: porcelain lines start with a significant space.
        expectEq('git status --porcelain', JSON.stringify(r.stdout.trimEnd()), JSON.stringify(want));
        return measured(r, `${c.m.gitModify.length} modified, ${c.m.gitTouch.length} touched`, c.m.params.repoFiles);
      },
    },
    {
      id: 'fio-randread',
      title: '4 KiB random reads of the big file (fio, IOPS)',
      unit: 'IOPS',
      mutates: false,
      async warm(c) {
        // Ten seconds of random 4 KiB reads touch only part of a 1 GiB file: warm means all of it cached.
        await sh(c, `cat ${sq(c.m.bigFile)} > /dev/null`, 'cat big file');
      },
      async measure(c) {
        // invalidate=0: fio would otherwise drop the file's page cache first and make "warm" cold.
        const r = await sh(
          c,
          `fio --name=randread --filename=${sq(c.m.bigFile)} --readonly --rw=randread --bs=4k --ioengine=psync ` +
            `--time_based --runtime=${c.fioSeconds} --size=${c.m.bigFileBytes} --randrepeat=1 --invalidate=0 --output-format=json`,
          'fio',
        );
        interface FioJson {
          jobs: { error: number; read: { iops: number; io_bytes: number } }[];
        }
        let parsed: FioJson;
        try {
          parsed = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as FioJson;
        } catch {
          throw new CorrectnessError(`fio printed no JSON: ${r.stdout.slice(0, 200)}`);
        }
        const job = parsed.jobs[0];
        if (job === undefined) throw new CorrectnessError('fio: no job in output');
        expectEq('fio job error', job.error, 0);
        if (!(job.read.io_bytes > 0)) throw new CorrectnessError('fio read nothing');
        return { seconds: r.seconds, value: job.read.iops, detail: `${Math.round(job.read.iops)} IOPS, ${job.read.io_bytes} bytes`, ops: Math.round(job.read.io_bytes / 4096) };
      },
    },
    {
      id: 'par-small',
      title: '4 parallel readers of the small files',
      unit: 's',
      mutates: false,
      async measure(c) {
        const lists = [0, 1, 2, 3].map((k) => listFor(c, k, 4));
        const r = await sh(
          c,
          `pids=(); ${lists.map((l, k) => `(xargs -0 -a ${sq(l)} cat -- | wc -c > ${sq(path.join(c.scratch, `out${k}`))}) & pids+=($!);`).join(' ')} ` +
            `rc=0; for p in "\${pids[@]}"; do wait "$p" || rc=1; done; cat ${[0, 1, 2, 3].map((k) => sq(path.join(c.scratch, `out${k}`))).join(' ')}; exit $rc`,
          'parallel cat',
        );
        const total = r.stdout.trim().split('\n').reduce((s, x) => s + Number(x), 0);
        expectEq('bytes read by 4 readers', total, c.m.treeBytes);
        return measured(r, `${c.m.treeBytes} bytes`, c.m.treeFiles);
      },
    },
    {
      id: 'par-big',
      title: '4 parallel readers of the big file (one quarter each)',
      unit: 's',
      mutates: false,
      async measure(c) {
        const q = Math.ceil(c.m.bigFileBytes / BLOCK / 4);
        const r = await sh(
          c,
          // dd writes its summary to stderr in several writes: four at once interleave mid-line and a
          // count went missing (48 of 64 MiB, both transports in the same second); tail passes each
          // summary's last line on in one write, which a pipe keeps whole
          `pids=(); for k in 0 1 2 3; do (set -o pipefail; dd if=${sq(c.m.bigFile)} of=/dev/null bs=1M skip=$((k*${q})) count=${q} 2>&1 | tail -n 1 >&2) & pids+=($!); done; ` +
            `rc=0; for p in "\${pids[@]}"; do wait "$p" || rc=1; done; exit $rc`,
          'parallel dd',
        );
        expectEq('bytes read by 4 readers', ddBytes(r.stderr), c.m.bigFileBytes);
        return measured(r, `${c.m.bigFileBytes} bytes`, mibs(c.m.bigFileBytes));
      },
    },
  ];
}
