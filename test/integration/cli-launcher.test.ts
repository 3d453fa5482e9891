/**
 * The `stratafs` command's launcher (src/native/launcher.c, reached through
 * bin/stratafs): a plain mount starts ONE Node process, the daemon, and the
 * launcher relays its verdict; every other command line is the Node CLI's, by
 * exec. Everything a user sees must be what `node dist/cli/main.js` gives: the
 * same command lines run both ways, side by side, compared (exit code, stdout,
 * stderr, what is mounted, what is left in the runtime directory). Also: the
 * launcher sends to the daemon exactly the command lines the daemon parses
 * without commander (args.ts parsePlainMount), works through a symlink (npm's
 * bin directory), and leaves no caller's pipe open in the daemon (podman reads
 * the mount program's stderr to EOF).
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../harness/mounts.js';
import { withTimeout } from '../harness/proc.js';
import {
  cli, cliNode, cliScratch, daemonPids, dirSnapshot, isMounted, layerOptions, Leftovers, runText, STRATAFS_BIN, waitFor, type CliResult,
} from '../harness/cli-mount.js';
import { parsePlainMount } from '../../src/cli/args.js';

const BIN = STRATAFS_BIN;
const LAUNCHER = join(REPO_ROOT, 'src', 'native', 'build', 'Release', 'stratafs');
/** what the launcher runs: the CLI's CommonJS build (rolldown.config.mjs) */
const CLI = join(REPO_ROOT, 'dist', 'cjs', 'stratafs.cjs');

let t: string;
let run: string;
let left: Leftovers;
let mnt: string;
const p = (rel: string): string => join(t, rel);

beforeAll(() => {
  if (!existsSync(LAUNCHER)) throw new Error(`the launcher is not built: ${LAUNCHER} (npm ci / node src/native/build.mjs)`);
  if (!existsSync(CLI)) throw new Error(`the CLI's CommonJS build is missing: ${CLI} (npm run build)`);
});

beforeEach(async () => {
  ({ t, left, mnt, run } = await cliScratch('cli-launcher', ['l', 'u', 'w'], { runtimeDir: true }));
  await writeFile(p('l/a'), 'a\n');
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

/** bin/stratafs: the harness's cli() is the command users run */
const launch = (args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> => cli(args, { env });
const layers = (): string => layerOptions({ lowers: [p('l')], upper: p('u'), work: p('w') });

/** One command line both ways (Node CLI first); each result after `then` (a check, an unmount). */
async function both(args: string[], then: (r: CliResult, how: string) => Promise<void>, env?: NodeJS.ProcessEnv): Promise<[CliResult, CliResult]> {
  const viaNode = await cliNode(args, { env });
  await then(viaNode, 'node');
  const viaLauncher = await launch(args, env);
  await then(viaLauncher, 'launcher');
  return [viaNode, viaLauncher];
}

async function unmountIfMounted(): Promise<void> {
  for (const pid of await daemonPids(mnt)) left.pid(pid);
  if (await isMounted(mnt)) {
    const u = await launch(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
  }
  expect(await waitFor(async () => (await daemonPids(mnt)).length === 0, 10_000)).toBe(true);
}

/** A preload that kills the daemon (only it: the Node CLI parent and --daemon-gone live) at a given point. */
async function killer(at: 'parse' | 'after-log'): Promise<NodeJS.ProcessEnv> {
  const f = p(`die-${at}.mjs`);
  await writeFile(f, `import { writeSync } from 'node:fs';
if (process.argv.includes('--daemon-child')) {
  const die = () => { process.kill(process.pid, 'SIGKILL'); };
  ${at === 'parse'
    ? 'process.geteuid = die;'
    : "const chdir = process.chdir; process.chdir = (d) => { writeSync(2, 'last words\\n'); die(); return chdir(d); };"}
}
`);
  return { NODE_OPTIONS: `--import ${pathToFileURL(f).href}` };
}

describe('the launcher', () => {
  it('sends exactly the plain mount command lines to the daemon, the rest to the Node CLI', async () => {
    const lines: string[][] = [
      ['-o', 'lowerdir=/a', '/m'], ['-olowerdir=/a,upperdir=/u,workdir=/w', 'rel/m'], ['src', '/m', '-o', 'lowerdir=a'],
      ['-d', '-o', 'x', '-o', 'lowerdir=/a', '/m'], ['--debug', '-o', 'lowerdir=/a', '/m'], ['-o', '-d', '-o', 'lowerdir=/a', '/m'],
      ['-o', 'lowerdir=/a', 'stats-dir'], ['-o', 'upperdir=/u', '/m'],
      ['umount', '/m'], ['stats', '/m'], ['mount', '/m', '-o', 'lowerdir=/a'], ['help'], ['layer', 'ls'],
      ['-f', '-o', 'lowerdir=/a', '/m'], ['-fd', '-o', 'lowerdir=/a', '/m'], ['-o', 'lowerdir=/a', '-f', '/m'], ['--foreground', '-o', 'x', '/m'],
      ['--', '-o', 'lowerdir=/a', '/m'], ['/m'], ['frobnicate'], ['a', 'b', 'c', '-o', 'lowerdir=/a'], ['-o'], ['-o', 'lowerdir=/a', ''],
      ['--version'], ['-V'], ['-h'], ['--help'], [], ['--daemon-child', '-o', 'lowerdir=/a', '/m'],
    ];
    for (const argv of lines) {
      const r = await runText(LAUNCHER, argv, { env: { STRATAFS_LAUNCHER_DRY_RUN: '1' } });
      expect(r.code, r.stderr).toBe(0);
      const execd = r.stdout.split('\n').slice(0, -1);
      let plain: boolean;
      try {
        plain = parsePlainMount(argv, { cwd: '/base', uid: 0 }) !== undefined;
      } catch {
        plain = true; // a plain command line with bad options: the daemon reports them
      }
      // only the daemon's start carries the heap flag
      expect({ argv, daemon: execd.includes('--max-semi-space-size=1') }).toEqual({ argv, daemon: plain });
      const main = execd.findIndex((a) => a === CLI);
      expect(main).toBeGreaterThan(0);
      expect(execd.slice(main + 1)).toEqual(plain ? ['--daemon-child', ...argv] : argv);
    }
  });

  it('is reached through a symlink, as npm links the command', async () => {
    await symlink(BIN, p('stratafs'));
    const r = await runText(p('stratafs'), ['-o', 'lowerdir=/a', '/m'], { env: { STRATAFS_LAUNCHER_DRY_RUN: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${CLI}\n--daemon-child\n`);
  });

  it('mounts with the same words as the Node CLI: warnings, -d, one daemon process with its output in its log', async () => {
    const [a, b] = await both(['-d', '-o', `${layers()},frob,relatime`, mnt], async (r, how) => {
      expect(r.code, `${how}: ${r.stderr}`).toBe(0);
      expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('a\n');
      const pids = await daemonPids(mnt);
      pids.forEach((pid) => left.pid(pid));
      expect(pids).toHaveLength(1);
      const cmd = (await readFile(`/proc/${pids[0]}/cmdline`, 'utf8')).split('\0');
      expect(cmd).toContain('--daemon-child');
      const log = /^stratafs: debug log: (\S+)$/m.exec(r.stderr)?.[1];
      expect(log).toBeDefined();
      expect(await readlink(`/proc/${pids[0]}/fd/0`)).toBe('/dev/null');
      expect(await readlink(`/proc/${pids[0]}/fd/1`)).toBe(log);
      expect(await readlink(`/proc/${pids[0]}/fd/2`)).toBe(log);
      await unmountIfMounted();
    });
    const norm = (s: string): string => s.replace(/\d{8}T\d{6}Z(-\d+)?/g, '<time>');
    expect(norm(b.stderr)).toBe(norm(a.stderr));
    expect(a.stderr).toMatch(/^stratafs: warning: unknown options ignored: frob\nstratafs: warning: options without effect here: relatime\nstratafs: debug log: \S+\n$/);
    expect([a.stdout, b.stdout]).toEqual(['', '']);
  });

  it('refuses bad input as the Node CLI does: one line, exit 1, nothing on disk changed', async () => {
    const cases: string[][] = [
      ['-o', layerOptions({ lowers: [p('l'), p('nope')], upper: p('u'), work: p('w') }), mnt],
      ['-o', layerOptions({ lowers: [p('l')], upper: p('mnt/u'), work: p('w') }), mnt],
      ['-o', `${layers()},timeout=-1`, mnt],
      ['-o', `upperdir=${p('u')},workdir=${p('w')}`, mnt],
      ['-o', layers(), p('nope')],
      ['src', p('l/a'), '-o', layers()],
    ];
    for (const args of cases) {
      const before = await dirSnapshot(t);
      const [a, b] = await both(args, async (r, how) => {
        expect(r.code, how).toBe(1);
        expect(r.stderr.trimEnd().split('\n'), how).toHaveLength(1);
        expect(await isMounted(mnt)).toBe(false);
        expect(await daemonPids(mnt)).toEqual([]);
        expect(await dirSnapshot(t)).toEqual(before);
      });
      expect(b).toEqual(a);
    }
  });

  it('a second mount on a busy upper fails in the same words, and leaves the same runtime files', async () => {
    const first = await cli(['-o', layers(), mnt]);
    expect(first.code, first.stderr).toBe(0);
    (await daemonPids(mnt)).forEach((pid) => left.pid(pid));
    await mkdir(p('mnt2'));
    const mnt2 = left.mount(p('mnt2'));
    const listing: string[][] = [];
    const [a, b] = await both(['-o', layers(), mnt2], async (r, how) => {
      expect(r.code, how).toBe(1);
      expect(await isMounted(mnt2)).toBe(false);
      expect(await daemonPids(mnt2)).toEqual([]);
      listing.push((await readdir(run)).sort());
    });
    expect(a.stderr).toBe(`stratafs: upperdir/workdir is in use by another stratafs mount: ${p('w')}\n`);
    expect(b).toEqual(a);
    expect(listing[1]).toEqual(listing[0]);
    await unmountIfMounted();
  });

  it('a daemon killed before it has a log: the same message, nothing left', async () => {
    const [a, b] = await both(['-o', layers(), mnt], async (r, how) => {
      expect(r.code, how).toBe(1);
      expect(await isMounted(mnt)).toBe(false);
      expect(await daemonPids(mnt)).toEqual([]);
      expect(await readdir(run)).toEqual([]);
    }, await killer('parse'));
    expect(a.stderr).toBe('stratafs: daemon exited (SIGKILL) before the mount was ready; it logged nothing\n');
    expect(b).toEqual(a);
  });

  it('a daemon killed after opening its log: the log is kept as a failed start and named', async () => {
    const kept: string[] = [];
    const [a, b] = await both(['-o', layers(), mnt], async (r, how) => {
      expect(r.code, how).toBe(1);
      expect(await isMounted(mnt)).toBe(false);
      const m = /^stratafs: daemon exited \(SIGKILL\) before the mount was ready; see (\S+\.failed\.log)\n$/.exec(r.stderr);
      expect(m, `${how}: ${r.stderr}`).not.toBeNull();
      expect(await readFile(m![1]!, 'utf8')).toBe('last words\n');
      kept.push(m![1]!);
    }, await killer('after-log'));
    expect(b.stderr.replace(kept[1]!, 'LOG')).toBe(a.stderr.replace(kept[0]!, 'LOG'));
    expect((await readdir(run)).sort()).toEqual(kept.map((k) => k.slice(run.length + 1)).sort());
  });

  it('passes other commands through unchanged', async () => {
    for (const args of [['--version'], ['--help'], ['umount', mnt], ['stats', mnt], ['frobnicate']]) {
      const [a, b] = await both(args, async () => undefined);
      expect(b, args.join(' ')).toEqual(a);
    }
  });

  it('leaves no pipe of its caller open in the daemon: a reader of the mount program\'s output sees EOF', async () => {
    // stdio 3 and 4 are pipes of ours the launcher inherits, as a caller's stray descriptors would be
    const child = spawn(BIN, ['-o', layers(), mnt], { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    const eofs = [1, 2, 3, 4].map((i) => new Promise<void>((resolve) => {
      const s = child.stdio[i] as NodeJS.ReadableStream;
      s.on('data', () => undefined);
      s.on('end', () => resolve());
      s.on('error', () => resolve());
    }));
    const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(await withTimeout(code, 20_000, 'launcher exit')).toBe(0);
    (await daemonPids(mnt)).forEach((pid) => left.pid(pid));
    await withTimeout(Promise.all(eofs), 5000, 'EOF on every pipe the launcher had');
    expect(await withTimeout(readFile(join(mnt, 'a'), 'utf8'), 5000, 'read')).toBe('a\n');
    await unmountIfMounted();
  });
});
