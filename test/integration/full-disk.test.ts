/**
 * Full disks (issue 11): every probe runs the same operations on kernel overlayfs and on
 * stratafs (the real CLI, a daemon in a child process), each over an upper of the same kind
 * made in the test's scratch: a tmpfs with `size=` (blocks) or `nr_inodes=` (inodes), or an
 * ext4 image on a loop device (the link limit; quotas with `-O quota`). Asserted per probe:
 * equal outcomes (errno of every step, in order), equal merged trees after it, the same names
 * in the upper on disk, and nothing left in workdir/work after the unmount (what the kernel
 * leaves is printed beside it). With STRATAFS_LONG=1 fuse-overlayfs runs the same steps too; its
 * outcomes are printed for the issue's table, not asserted.
 *
 * After each ENOSPC the probe goes on (delete, write again): the mount must keep working.
 * Probes on a loop device skip through the runner where no loop device can be set up.
 * STRATAFS_LONG=1 makes the fills larger.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { constants as fsc } from 'node:fs';
import { constants as osc } from 'node:os';
import { lstat, mkdir, open, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fuseOffWords, kernelOverlayProblem, mount, requireKernel, tempDir, type Impl, type MountHandle } from '../harness/mounts.js';
import { OpRunner, showResult, type Op } from '../harness/ops.js';
import { errnoFromMessage, run, withTimeout } from '../harness/proc.js';
import { compareTrees, readRawUpper, snapshot, type Tree } from '../harness/tree.js';

const LONG = process.env.STRATAFS_LONG === '1';
const PROBE_MS = 180_000;
const QUOTA_UID = 4242;
const MIB = 1 << 20;

type FsSpec =
  | { kind: 'tmpfs'; opts: string }
  /** an ext4 image of sizeMiB on a loop device; quota: mkfs -O quota, mounted with usrquota */
  | { kind: 'ext4'; sizeMiB: number; quota?: boolean; mkfsArgs?: string[] }
  /** a btrfs image of sizeMiB on a loop device with quota groups on, the top subvolume limited to limitMiB */
  | { kind: 'btrfs'; sizeMiB: number; limitMiB: number };

interface SmallFs {
  dir: string;
  dispose(): Promise<void>;
}

const must = async (file: string, args: string[], timeoutMs = 30_000): Promise<string> => {
  const r = await run(file, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
};

/** Why no loop device can be had here (undefined when one can). */
async function loopProblem(base: string): Promise<string | undefined> {
  const img = join(base, 'probe.img');
  await writeFile(img, '');
  await run('truncate', ['-s', '1M', img]);
  const r = await run('losetup', ['--find', '--show', img], { timeoutMs: 10_000 });
  const dev = r.stdout.toString().trim();
  if (r.code === 0 && dev) await run('losetup', ['-d', dev]);
  await rm(img, { force: true });
  return r.code === 0 && dev ? undefined : `no loop device can be set up here (losetup: ${r.stderr.toString().trim() || 'no output'})`;
}

/**
 * Why per-user quotas cannot be had here (undefined when they can): the kernel must mount an
 * ext4 image made with -O quota (it needs CONFIG_QFMT_V2; this sandbox's kernel has
 * CONFIG_QUOTA without it, and neither XFS_QUOTA nor TMPFS_QUOTA) and setquota must exist.
 */
async function quotaProblem(): Promise<string | undefined> {
  const base = await tempDir('full-quota-probe');
  let fs: SmallFs | undefined;
  try {
    fs = await smallFs(base, { kind: 'ext4', sizeMiB: 8, quota: true });
  } catch (e) {
    const config = await run('sh', ['-c', 'zcat /proc/config.gz 2>/dev/null | grep -E "^(# )?CONFIG_QFMT_V2"']);
    return `this kernel does not mount an ext4 image made with -O quota with usrquota (${config.stdout.toString().trim() || 'no /proc/config.gz'}): ${String(e).split('\n')[0]}`;
  }
  try {
    const r = await run('setquota', ['-u', String(QUOTA_UID), '1', '1', '1', '1', fs.dir]);
    return r.code === 0 ? undefined : `setquota failed (exit ${r.code}): ${r.stderr.toString().trim()} (the quota package: test/prepare-machine.mjs)`;
  } finally {
    await fs.dispose();
  }
}

/** A filesystem of the probe's kind mounted at base/fs; its backing file (ext4) beside it in scratch. */
async function smallFs(base: string, spec: FsSpec): Promise<SmallFs> {
  const dir = join(base, 'fs');
  await mkdir(dir);
  if (spec.kind === 'tmpfs') {
    await must('mount', ['-t', 'tmpfs', '-o', `${spec.opts},mode=0755`, 'tmpfs', dir]);
    return { dir, async dispose() { await must('umount', [dir]); } };
  }
  const img = join(base, 'fs.img');
  await must('truncate', ['-s', `${spec.sizeMiB}M`, img]);
  if (spec.kind === 'btrfs') await must('mkfs.btrfs', ['-q', '-f', img], 60_000);
  // no lazy init: the kernel thread that zeroes inode tables would write during the probe
  else await must('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', ...(spec.quota ? ['-O', 'quota'] : []), ...(spec.mkfsArgs ?? []), img], 60_000);
  const dev = (await must('losetup', ['--find', '--show', img])).trim();
  try {
    await must('mount', ['-t', spec.kind, ...(spec.kind === 'ext4' && spec.quota ? ['-o', 'usrquota'] : []), dev, dir]);
  } catch (e) {
    await run('losetup', ['-d', dev]);
    throw e;
  }
  if (spec.kind === 'btrfs') {
    try {
      await must('btrfs', ['quota', 'enable', dir]);
      await must('btrfs', ['qgroup', 'limit', `${spec.limitMiB}M`, dir]);
    } catch (e) {
      await run('umount', [dir]);
      await run('losetup', ['-d', dev]);
      throw e;
    }
  }
  return {
    dir,
    async dispose() {
      try {
        await must('umount', [dir]);
      } finally {
        await must('losetup', ['-d', dev]);
        await rm(img, { force: true });
      }
    },
  };
}

/** The errno name of a failed fs call, also where libuv has none (EDQUOT: "Unknown system error -122"). */
function errName(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException;
  if (typeof err.code === 'string' && /^E[A-Z0-9]+$/.test(err.code)) return err.code;
  if (typeof err.errno !== 'number') return undefined;
  const n = Math.abs(err.errno);
  return Object.entries(osc.errno).find(([, v]) => v === n)?.[0];
}

/** What one side of a probe can do on its mount. */
class Side {
  readonly ops: OpRunner;
  constructor(readonly impl: Impl, readonly mnt: string, readonly fsDir: string) {
    this.ops = new OpRunner(mnt, 30_000);
  }

  /** free inodes of the upper's filesystem */
  async freeInodes(): Promise<number> {
    return Number((await statfs(this.fsDir)).ffree);
  }

  /** One operation of the harness's language: `ok` or the errno. */
  async op(o: Op): Promise<string> {
    try {
      return showResult(await this.ops.apply(o));
    } catch (e) {
      // libuv has no name for some errnos (EDQUOT comes as "Unknown system error -122")
      const name = errName(e);
      if (name) return name;
      throw e;
    }
  }

  /** Appends `chunk` bytes at a time to rel until a write fails; the errno and how many bytes went in. */
  async fill(rel: string, chunk = 64 * 1024, max = 2 ** 40): Promise<{ errno: string; bytes: number }> {
    let fh;
    try {
      fh = await open(join(this.mnt, rel), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND, 0o644);
    } catch (e) {
      return { errno: errName(e) ?? String(e), bytes: 0 };
    }
    const buf = Buffer.alloc(chunk, 0x61);
    let bytes = 0;
    // more than the whole upper filesystem taken without an error: the writes are acknowledged and lost
    const st = await statfs(this.fsDir);
    const past = Number(st.blocks) * Number(st.bsize) + 16 * chunk;
    try {
      while (bytes < max) {
        if (bytes > past) return { errno: 'no error after more bytes than the upper filesystem holds', bytes };
        const { bytesWritten } = await fh.write(buf, 0, Math.min(chunk, max - bytes));
        // a write that takes nothing and names no error would spin here forever
        if (bytesWritten === 0) return { errno: 'wrote 0 bytes', bytes };
        bytes += bytesWritten;
      }
      return { errno: 'ok', bytes };
    } catch (e) {
      return { errno: errName(e) ?? String(e), bytes };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /** Creates empty files prefix0, prefix1, ... until one fails: the errno and how many were made. */
  async createMany(prefix: string, max: number): Promise<{ errno: string; made: number }> {
    for (let i = 0; i < max; i++) {
      try {
        await (await open(join(this.mnt, `${prefix}${i}`), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644)).close();
      } catch (e) {
        return { errno: errName(e) ?? String(e), made: i };
      }
    }
    return { errno: 'ok', made: max };
  }

  /** syncfs of the upper's filesystem: btrfs gives freed space back to a quota group at the commit */
  async sync(): Promise<void> {
    await must('sync', ['-f', this.fsDir]);
  }

  /** `sh -c script` as a bare uid with its working directory on the mount: `ok` or the errno its message names. */
  async asUid(uid: number, script: string): Promise<string> {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      import('node:child_process').then(({ execFile }) => {
        execFile('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', script], { cwd: this.mnt, timeout: 30_000, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' } }, (err, _out, stderr) => {
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr: String(stderr) });
        });
      }, (e: unknown) => resolve({ code: -1, stderr: String(e) }));
    });
    if (r.code === 0) return 'ok';
    const last = r.stderr.trim().split('\n').pop() ?? '';
    return errnoFromMessage(last) ?? `exit ${r.code}: ${last}`;
  }
}

interface Probe {
  name: string;
  fs: FsSpec;
  /** fills the lower layer (plain scratch, not the small filesystem) */
  lower(dir: string): Promise<void>;
  /** after the small filesystem is mounted, before the overlay is (e.g. quota limits) */
  prepare?(fsDir: string, upper: string): Promise<void>;
  /** the steps; each pushes a line `step: outcome` onto out, compared between implementations */
  steps(s: Side, out: string[], note: (k: string, v: string) => void): Promise<void>;
  /** extra -o words per implementation */
  options?: Partial<Record<Impl, string[]>>;
}

interface SideResult {
  impl: Impl;
  outcomes: string[];
  /** numbers measured on the way (bytes, counts): printed, compared only where a probe says */
  notes: Record<string, string>;
  tree?: Tree;
  /** names in the upper on disk after the unmount */
  upperNames: string[];
  /** what workdir/work holds after the unmount, `name type nlink` */
  workLeft: string[];
  error?: string;
}

async function workEntries(work: string): Promise<string[]> {
  const dir = join(work, 'work');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names.sort()) {
    const st = await lstat(join(dir, n));
    const type = st.isDirectory() ? 'dir' : st.isCharacterDevice() ? `chr ${st.rdev}` : st.isFile() ? 'file' : 'other';
    out.push(`${n.replace(/\d+/g, 'N')} ${type} nlink=${st.nlink}`);
  }
  return out;
}

async function runSide(probe: Probe, impl: Impl): Promise<SideResult> {
  const base = await tempDir(`full-${probe.name}-${impl}`);
  const lower = join(base, 'lower');
  const mnt = join(base, 'mnt');
  await mkdir(lower);
  await mkdir(mnt);
  await probe.lower(lower);
  const fs = await smallFs(base, probe.fs);
  const res: SideResult = { impl, outcomes: [], notes: {}, upperNames: [], workLeft: [] };
  try {
    const upper = join(fs.dir, 'upper');
    const work = join(fs.dir, 'work');
    await mkdir(upper, { mode: 0o755 });
    await mkdir(work);
    await probe.prepare?.(fs.dir, upper);
    let h: MountHandle | undefined;
    try {
      // without the writeback cache a full upper fails the write itself, as on the kernel; with it the
      // fsync or close (fuse-writeback.test.ts, divergences.ts: writeback-enospc)
      const extra = probe.options?.[impl] ?? [];
      h = await mount(impl, { lowers: [lower], upper, work }, mnt, { extra: impl === 'stratafs' ? [...extra, ...fuseOffWords(['writeback_cache'], extra)] : extra });
      const side = new Side(impl, mnt, fs.dir);
      // fuse-overlayfs is only printed: a hang there must not take the test's time
      const steps = probe.steps(side, res.outcomes, (k, v) => { res.notes[k] = v; });
      await (impl === 'fuse-overlayfs' ? withTimeout(steps, 20_000, 'fuse-overlayfs: a step') : steps);
      await side.ops.closeAll();
      res.tree = await snapshot(mnt, { timeoutMs: 60_000 });
    } catch (e) {
      res.error = String(e);
    } finally {
      await h?.unmount();
    }
    res.upperNames = [...(await readRawUpper(upper)).entries()].map(([p, n]) => `${p} ${n.type}`).sort();
    res.workLeft = await workEntries(work);
  } finally {
    await fs.dispose();
    await rm(base, { recursive: true, force: true }).catch(() => undefined);
  }
  return res;
}

/** kernel, stratafs (asserted equal) and fuse-overlayfs (printed) on the same probe. */
async function compare(probe: Probe): Promise<{ kernel: SideResult; stratafs: SideResult }> {
  const kernel = await runSide(probe, 'kernel');
  const stratafs = await runSide(probe, 'stratafs');
  // fuse-overlayfs 1.10 acknowledges writes to a full upper (a fill never ends: its file grows
  // through the mount, not on disk) and takes long over 5000 files: only in the long variant
  const fo = LONG ? [await runSide(probe, 'fuse-overlayfs').catch((e: unknown): SideResult => ({ impl: 'fuse-overlayfs', outcomes: [], notes: {}, upperNames: [], workLeft: [], error: String(e) }))] : [];
  const show = (r: SideResult): string => `  ${r.impl}: ${r.error ? `ERROR ${r.error}\n    ` : ''}${r.outcomes.join('; ')}${Object.keys(r.notes).length ? `\n    notes ${JSON.stringify(r.notes)}` : ''}\n    work/ after unmount: [${r.workLeft.join(', ')}]`;
  console.log(`probe ${probe.name}\n${[kernel, stratafs, ...fo].map(show).join('\n')}`);
  expect(kernel.error, 'the kernel side failed').toBeUndefined();
  expect(stratafs.error).toBeUndefined();
  expect(stratafs.outcomes).toEqual(kernel.outcomes);
  expect(compareTrees(kernel.tree!, stratafs.tree!, { mtimeCutoffNs: BigInt(Date.now() - 600_000) * 1_000_000n })).toEqual([]);
  expect(stratafs.upperNames).toEqual(kernel.upperNames);
  // stratafs drops its shared whiteout name at unmount; nothing else may stay
  expect(stratafs.workLeft).toEqual([]);
  return { kernel, stratafs };
}

let kernelProblem: string | undefined;
let noLoop: string | undefined;

beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  noLoop = await loopProblem(await tempDir('full-loop-probe'));
});

const files = async (dir: string, spec: Record<string, number>): Promise<void> => {
  for (const [rel, size] of Object.entries(spec)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), Buffer.alloc(size, 0x6c));
  }
};

describe('a full upper: stratafs fails and recovers as kernel overlayfs does', () => {
  it('blocks (tmpfs size=): copy-up ENOSPC, fill and continue, whiteout and directory copy-up when full', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const sizeMiB = LONG ? 64 : 4;
    await compare({
      name: 'blocks',
      fs: { kind: 'tmpfs', opts: `size=${sizeMiB}m` },
      lower: (d) => files(d, { big: (sizeMiB + 2) * MIB, small: 1000, gone: 10, 'd/x': 100, 'd/y': 100, 'e/z': 100 }),
      steps: async (s, out, note) => {
        out.push(`copy-up of a file larger than the upper: ${await s.op({ op: 'append', path: 'big', data: 'x' })}`);
        out.push(`big still the lower's: ${await s.op({ op: 'stat', path: 'big' })}`);
        const f = await s.fill('fill');
        note('fill bytes', String(f.bytes));
        out.push(`fill: ${f.errno}`);
        out.push(`whiteout when full: ${await s.op({ op: 'unlink', path: 'gone' })}`);
        out.push(`directory copy-up when full (empty file in a lower dir): ${await s.op({ op: 'create', path: 'd/new', mode: 0o644 })}`);
        out.push(`rename of a lower dir's file when full: ${await s.op({ op: 'rename', from: 'd/x', to: 'd/x2' })}`);
        out.push(`mkdir when full: ${await s.op({ op: 'mkdir', path: 'newdir', mode: 0o755 })}`);
        out.push(`symlink when full: ${await s.op({ op: 'symlink', target: 'small', path: 'sl' })}`);
        out.push(`write into a new file when full: ${await s.op({ op: 'write', path: 'd/new', offset: 0, data: 'y'.repeat(8192) })}`);
        out.push(`copy-up of a small file when full: ${await s.op({ op: 'append', path: 'small', data: 'more' })}`);
        out.push(`small unchanged: ${await s.op({ op: 'read', path: 'small' })}`);
        out.push(`delete the fill: ${await s.op({ op: 'unlink', path: 'fill' })}`);
        out.push(`copy-up after the delete: ${await s.op({ op: 'append', path: 'small', data: 'more' })}`);
        out.push(`directory copy-up after the delete: ${await s.op({ op: 'write', path: 'e/z', offset: 0, data: 'zz' })}`);
        const again = await s.fill('again', 64 * 1024, MIB);
        out.push(`write 1 MiB after the delete: ${again.errno} ${again.bytes}`);
        out.push(`listing: ${await s.op({ op: 'readdir', path: '' })}`);
      },
    });
  }, PROBE_MS);

  it('inodes (tmpfs nr_inodes=): create, whiteout and directory copy-up when no inode is left, then continue', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const n = LONG ? 5000 : 200;
    await compare({
      name: 'inodes',
      fs: { kind: 'tmpfs', opts: `size=64m,nr_inodes=${n}` },
      lower: (d) => files(d, { g1: 10, g2: 10, g3: 10, 'd/x': 100, 'e/y': 100, big: 100_000 }),
      steps: async (s, out, note) => {
        out.push(`first whiteout: ${await s.op({ op: 'unlink', path: 'g1' })}`);
        const m = await s.createMany('f', n + 10);
        note('files made', String(m.made));
        out.push(`create until full: ${m.errno}`);
        out.push(`whiteout when no inode is left: ${await s.op({ op: 'unlink', path: 'g2' })}`);
        out.push(`second whiteout: ${await s.op({ op: 'unlink', path: 'g3' })}`);
        out.push(`directory copy-up when no inode is left: ${await s.op({ op: 'create', path: 'd/new', mode: 0o644 })}`);
        out.push(`file copy-up when no inode is left: ${await s.op({ op: 'append', path: 'big', data: 'x' })}`);
        out.push(`mkdir: ${await s.op({ op: 'mkdir', path: 'nd', mode: 0o755 })}`);
        out.push(`write to a made file: ${await s.op({ op: 'write', path: 'f0', offset: 0, data: 'data' })}`);
        let freed = 0;
        for (let i = 1; i <= 10; i++) if ((await s.op({ op: 'unlink', path: `f${i}` })) === 'ok') freed++;
        out.push(`delete ten: ${freed}`);
        note('free after delete', String(await s.freeInodes()));
        out.push(`directory copy-up after the delete: ${await s.op({ op: 'create', path: 'e/new', mode: 0o644 })}`);
        note('free after e/new', String(await s.freeInodes()));
        out.push(`whiteout after the delete: ${await s.op({ op: 'unlink', path: 'd/x' })}`);
        note('free after whiteout', String(await s.freeInodes()));
        out.push(`listing of d: ${await s.op({ op: 'readdir', path: 'd' })}`);
        out.push(`listing of e: ${await s.op({ op: 'readdir', path: 'e' })}`);
        // tmpfs charges xattrs to the inode space in bytes (nr_inodes counts 1 KiB units), and the
        // kernel writes trusted.overlay.uuid on the upper root at mount: one file more or less fits
        // on one side, so the made files go before the trees are compared
        let gone = 0;
        for (let i = 0; i < m.made; i++) if ((await s.op({ op: 'unlink', path: `f${i}` })) === 'ok') gone++;
        out.push(`delete the made files: ${gone === m.made - 10 ? 'all' : `${gone} of ${m.made - 10}`}`);
      },
    });
  }, PROBE_MS);
});

/** Hard links from outside the mount to the upper's whiteout `rel`, in a directory of the upper's filesystem outside upper/ and work/. */
async function linkOutside(fsDir: string, rel: string, n: number): Promise<void> {
  const dir = join(fsDir, 'links');
  await mkdir(dir, { recursive: true });
  await must('perl', ['-e', 'my ($f, $d, $n) = @ARGV; for my $i (1..$n) { link($f, "$d/l$i") or die "link $i: $!\\n" }', join(fsDir, 'upper', rel), dir, String(n)], 60_000);
}

/** Which whiteouts in the upper share an inode: `a b | c` (groups in order of first name). */
async function whiteoutGroups(fsDir: string, names: string[]): Promise<string> {
  const byIno = new Map<number, string[]>();
  for (const n of names) {
    const st = await lstat(join(fsDir, 'upper', n)).catch(() => undefined);
    if (!st) continue;
    const g = byIno.get(st.ino) ?? [];
    g.push(st.isCharacterDevice() && st.rdev === 0 ? n : `${n}(not a whiteout)`);
    byIno.set(st.ino, g);
  }
  return [...byIno.values()].map((g) => g.join(' ')).join(' | ');
}

const EXT4_LINK_MAX = 65_000;

describe('ext4 on a loop device', () => {
  it('EMLINK on the shared whiteout inode: the full inode becomes the whiteout, the next starts a new one', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    if (noLoop) ctx.skip(noLoop);
    const names = ['g0', 'g1', 'g2', 'g3', 'g4'];
    await compare({
      name: 'emlink',
      fs: { kind: 'ext4', sizeMiB: 64 },
      lower: (d) => files(d, Object.fromEntries(names.map((n) => [n, 10]))),
      steps: async (s, out) => {
        out.push(`first whiteout: ${await s.op({ op: 'unlink', path: 'g0' })}`);
        // the shared inode: its name in work/ and g0; links from outside bring it to one below the limit
        await linkOutside(s.fsDir, 'g0', EXT4_LINK_MAX - 3);
        out.push(`the last link the shared inode takes: ${await s.op({ op: 'unlink', path: 'g1' })}`);
        out.push(`whiteout on a full shared inode: ${await s.op({ op: 'unlink', path: 'g2' })}`);
        out.push(`the next two: ${await s.op({ op: 'unlink', path: 'g3' })} ${await s.op({ op: 'unlink', path: 'g4' })}`);
        out.push(`shared inodes: ${await whiteoutGroups(s.fsDir, names)}`);
        out.push(`listing: ${await s.op({ op: 'readdir', path: '' })}`);
      },
    });
  }, PROBE_MS);

  it('EDQUOT: a non-root user over its ext4 quota (allow_other root mount), and root without CAP_SYS_RESOURCE', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    if (noLoop) ctx.skip(noLoop);
    const problem = await quotaProblem();
    if (problem) ctx.skip(problem);
    const u = QUOTA_UID;
    await compare({
      name: 'edquot',
      fs: { kind: 'ext4', sizeMiB: 32, quota: true },
      lower: async (d) => {
        await files(d, { 'home/data': 100 * 1024, 'home/small': 10, shared: 10 });
        await must('chown', ['-R', `${u}:${u}`, join(d, 'home')]);
      },
      // blocks in KiB (soft, hard), then inodes (soft, hard)
      prepare: async (fsDir) => { await must('setquota', ['-u', String(u), '512', '512', '40', '40', fsDir]); },
      steps: async (s, out) => {
        out.push(`write 300 KiB: ${await s.asUid(u, 'head -c 300K /dev/zero > home/a')}`);
        out.push(`write 400 KiB more: ${await s.asUid(u, 'head -c 400K /dev/zero > home/b')}`);
        out.push(`copy-up over quota: ${await s.asUid(u, 'echo more >> home/data')}`);
        out.push(`data unchanged: ${await s.op({ op: 'read', path: 'home/data' })}`);
        out.push(`root appends to the user's file: ${await s.op({ op: 'append', path: 'home/a', data: 'r'.repeat(300 * 1024) })}`);
        out.push(`delete b: ${await s.asUid(u, 'rm home/b')}`);
        out.push(`copy-up after the delete: ${await s.asUid(u, 'echo more >> home/data')}`);
        out.push(`create files until the inode limit: ${await s.asUid(u, 'i=0; while [ $i -lt 100 ]; do : > home/n$i || exit 1; i=$((i+1)); done')}`);
        out.push(`mkdir over the inode limit: ${await s.asUid(u, 'mkdir home/dd')}`);
        out.push(`delete the made files: ${await s.asUid(u, 'rm -f home/n*')}`);
        out.push(`mkdir after the delete: ${await s.asUid(u, 'mkdir home/dd')}`);
        out.push(`listing: ${await s.op({ op: 'readdir', path: 'home' })}`);
      },
    });
  }, PROBE_MS);
});

describe('btrfs on a loop device', () => {
  it('EDQUOT from a quota group on the upper (this kernel has no ext4 quota format): copy-up, fill, other users, then continue', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    if (noLoop) ctx.skip(noLoop);
    const u = QUOTA_UID;
    await compare({
      name: 'qgroup',
      fs: { kind: 'btrfs', sizeMiB: 128, limitMiB: 2 },
      lower: async (d) => {
        await files(d, { big: 3 * MIB, small: 1000, gone: 10, 'd/x': 100, 'home/data': 100 * 1024 });
        await must('chown', ['-R', `${u}:${u}`, join(d, 'home')]);
      },
      steps: async (s, out, note) => {
        out.push(`copy-up of a file larger than the quota: ${await s.op({ op: 'append', path: 'big', data: 'x' })}`);
        out.push(`big unchanged: ${await s.op({ op: 'read', path: 'big' })}`);
        const f = await s.fill('fill');
        note('fill bytes', String(f.bytes));
        out.push(`fill: ${f.errno}`);
        out.push(`another user writes: ${await s.asUid(u, 'head -c 256K /dev/zero > home/mine')}`);
        out.push(`another user's copy-up: ${await s.asUid(u, 'echo more >> home/data')}`);
        out.push(`data unchanged: ${await s.op({ op: 'read', path: 'home/data' })}`);
        out.push(`whiteout over quota: ${await s.op({ op: 'unlink', path: 'gone' })}`);
        out.push(`directory copy-up over quota: ${await s.op({ op: 'create', path: 'd/new', mode: 0o644 })}`);
        out.push(`delete the fill: ${await s.op({ op: 'unlink', path: 'fill' })}`);
        await s.sync();
        out.push(`copy-up after the delete: ${await s.op({ op: 'append', path: 'small', data: 'more' })}`);
        out.push(`another user's copy-up after the delete: ${await s.asUid(u, 'echo more >> home/data')}`);
        const again = await s.fill('again', 64 * 1024, 512 * 1024);
        out.push(`write 512 KiB after the delete: ${again.errno} ${again.bytes}`);
        out.push(`listing: ${await s.op({ op: 'readdir', path: '' })}`);
      },
    });
  }, PROBE_MS);
});
