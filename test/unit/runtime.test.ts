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
import { ensureRuntimeDir, inInitialUserNamespace, runtimeDir, runtimeDirCandidates, runtimeDirProblem } from '../../src/cli/runtime.js';
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

  it('skips what is not ours: missing parent, symlink, other owner, writable by others', () => {
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

  it('XDG_RUNTIME_DIR that is not ours is passed over for TMPDIR; ensureRuntimeDir makes it 0700 and refuses a foreign one', () => {
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
