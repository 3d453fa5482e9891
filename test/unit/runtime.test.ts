/**
 * Choosing the runtime directory (src/cli/runtime.ts) by what the process can
 * write (issue 10, defect 3). Nothing here creates a runtime directory outside
 * the scratch tree: candidates are only computed, and ensureRuntimeDir runs on
 * scratch paths.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import {
  adoptLeftoverLogs, ensureRuntimeDir, inInitialUserNamespace, keepLog, keptLogPath, pruneKeptLogs, runtimeDir, runtimeDirCandidates,
  runtimeDirProblem, runtimeFiles, writeDaemonInfo, processStartTime,
} from '../../src/cli/runtime.js';
import { tempDir } from '../harness/mounts.js';

let t: string;
const saved = { ...process.env };
beforeEach(async () => {
  t = await tempDir('runtime');
});
afterEach(() => {
  for (const k of ['STRATAFS_RUNTIME_DIR', 'XDG_RUNTIME_DIR', 'TMPDIR']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

const isRoot = process.geteuid?.() === 0;

describe('runtime directory', () => {
  it('STRATAFS_RUNTIME_DIR wins', () => {
    process.env.STRATAFS_RUNTIME_DIR = join(t, 'over');
    expect(runtimeDir()).toBe(join(t, 'over'));
  });

  it.skipIf(!isRoot || !inInitialUserNamespace())('root of the initial user namespace: /run/stratafs first, then XDG, then tmp', () => {
    delete process.env.STRATAFS_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = join(t, 'xdg');
    process.env.TMPDIR = join(t, 'tmp');
    expect(runtimeDirCandidates()).toEqual(['/run/stratafs', join(t, 'xdg', 'stratafs'), join(t, 'tmp', 'stratafs-0'), '/tmp/stratafs-0']);
  });

  // chown to another owner: root only
  it.skipIf(!isRoot)('skips what is not ours: missing parent, symlink, other owner, writable by others', () => {
    fs.mkdirSync(join(t, 'theirs'), { mode: 0o700 });
    fs.chownSync(join(t, 'theirs'), 4321, 4321);
    fs.mkdirSync(join(t, 'open'));
    fs.chmodSync(join(t, 'open'), 0o777);
    fs.mkdirSync(join(t, 'mine'), { mode: 0o700 });
    fs.symlinkSync(join(t, 'mine'), join(t, 'link'));
    fs.writeFileSync(join(t, 'file'), '');
    expect(runtimeDirProblem(join(t, 'nope', 'stratafs'))).toMatch(/^cannot be created \(ENOENT/);
    expect(runtimeDirProblem(join(t, 'theirs'))).toBe(`belongs to uid 4321, not ${process.geteuid!()}`);
    expect(runtimeDirProblem(join(t, 'open'))).toBe('is writable by others (mode 777)');
    expect(runtimeDirProblem(join(t, 'link'))).toBe('is a symlink');
    expect(runtimeDirProblem(join(t, 'file'))).toBe('is not a directory');
    expect(runtimeDirProblem(join(t, 'mine'))).toBeUndefined();
    expect(runtimeDirProblem(join(t, 'new'))).toBeUndefined(); // may be created
  });

  it.skipIf(!isRoot)('XDG_RUNTIME_DIR that is not ours is passed over for TMPDIR; ensureRuntimeDir makes it 0700 and refuses a foreign one', () => {
    delete process.env.STRATAFS_RUNTIME_DIR;
    fs.mkdirSync(join(t, 'xdg', 'stratafs'), { recursive: true });
    fs.chownSync(join(t, 'xdg', 'stratafs'), 4321, 4321);
    process.env.XDG_RUNTIME_DIR = join(t, 'xdg');
    process.env.TMPDIR = join(t, 'tmp');
    fs.mkdirSync(join(t, 'tmp'));
    const cands = runtimeDirCandidates();
    const mine = join(t, 'tmp', `stratafs-${process.geteuid!()}`);
    expect(cands).toContain(mine);
    // root of the initial namespace would pick /run/stratafs first: only compare the order below it
    const below = cands.slice(cands.indexOf(join(t, 'xdg', 'stratafs')));
    expect(below.find((d) => runtimeDirProblem(d) === undefined)).toBe(mine);
    ensureRuntimeDir(mine);
    expect(fs.statSync(mine).mode & 0o777).toBe(0o700);
    expect(() => ensureRuntimeDir(join(t, 'xdg', 'stratafs'))).toThrow(/belongs to uid 4321.*STRATAFS_RUNTIME_DIR/);
    expect(os.tmpdir()).toBe(join(t, 'tmp'));
  });
});

describe('daemon logs', () => {
  const id = 'abcdef0123456789';
  it('keepLog renames a log with content to <id>.<UTC time>.<reason>.log and removes an empty one', () => {
    const live = join(t, `${id}.log`);
    fs.writeFileSync(live, 'boom\n');
    const kept = keepLog(live, 'exception')!;
    expect(kept).toMatch(new RegExp(`/${id}\\.\\d{8}T\\d{6}Z\\.exception\\.log$`));
    expect(fs.readFileSync(kept, 'utf8')).toBe('boom\n');
    expect(fs.existsSync(live)).toBe(false);
    fs.writeFileSync(live, '');
    expect(keepLog(live, 'failed')).toBeUndefined();
    expect(fs.existsSync(live)).toBe(false);
    // the same second twice: a suffix, nothing overwritten
    const now = new Date('2026-12-03T10:00:00.123Z');
    fs.writeFileSync(join(t, `${id}.20261203T100000Z.crash.log`), 'x');
    expect(keptLogPath(live, 'crash', now)).toBe(join(t, `${id}.20261203T100000Z-1.crash.log`));
  });

  it('pruneKeptLogs removes the oldest first until both bounds hold, never the spared one, nothing else', () => {
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const n = join(t, `${id}.20260101T00000${i}Z.failed.log`);
      fs.writeFileSync(n, 'x'.repeat(i === 0 ? 50 : 10));
      fs.utimesSync(n, 1000 + i, 1000 + i);
      names.push(n);
    }
    fs.writeFileSync(join(t, `${id}.log`), 'live');
    fs.writeFileSync(join(t, 'other.txt'), 'x');
    fs.utimesSync(join(t, `${id}.log`), 1, 1);
    // 6 files, 100 bytes; at most 4 files and 60 bytes: the oldest (50 bytes) is spared, so the bytes decide
    const removed = pruneKeptLogs(t, names[0], { files: 4, bytes: 60 });
    expect(removed).toEqual([names[1], names[2], names[3], names[4]]);
    expect(fs.readdirSync(t).sort()).toEqual([`${id}.20260101T000000Z.failed.log`, `${id}.20260101T000005Z.failed.log`, `${id}.log`, 'other.txt']);
  });

  it('adoptLeftoverLogs: the own leftover at once, another mountpoint\'s only once settled, never a live daemon\'s', () => {
    process.env.STRATAFS_RUNTIME_DIR = t;
    const files = runtimeFiles('/some/mnt');
    fs.writeFileSync(files.log, 'own crash\n');
    const fresh = join(t, `${'1'.repeat(16)}.log`);
    const stale = join(t, `${'2'.repeat(16)}.log`);
    const live = join(t, `${'3'.repeat(16)}.log`);
    for (const f of [fresh, stale, live]) fs.writeFileSync(f, 'x\n');
    const now = Date.now();
    fs.utimesSync(stale, (now - 600_000) / 1000, (now - 600_000) / 1000);
    fs.utimesSync(live, (now - 600_000) / 1000, (now - 600_000) / 1000);
    writeDaemonInfo(live.replace(/\.log$/, '.json'), {
      pid: process.pid, startTime: processStartTime(process.pid)!, mountpoint: '/x', lowerdirs: [], upperdir: undefined, workdir: undefined,
      log: live, foreground: false,
    });
    const kept = adoptLeftoverLogs(files, 120_000, now).map((k) => k.slice(t.length + 1, t.length + 17)).sort();
    expect(kept).toEqual([files.log.slice(t.length + 1, t.length + 17), '2'.repeat(16)].sort());
    expect(fs.existsSync(fresh)).toBe(true);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(files.log)).toBe(false);
  });
});
