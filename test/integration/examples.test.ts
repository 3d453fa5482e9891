// Runs every example script as a person would, so the examples cannot rot.
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, lstat, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

async function script(path: string, args: string[] = []): Promise<string> {
  const { stdout, stderr } = await run('bash', [join(root, path), ...args], { cwd: root, timeout: 60_000 });
  return stdout + stderr;
}

describe('examples', () => {
  it('container-story: merged view, copy-up, whiteout and opaque dir in the upper', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stratafs-ex-story-'));
    try {
      const out = await script('examples/container-story/run.sh', [dir]);
      expect(out).toContain('./work/content.txt');
      expect(out).not.toMatch(/^\.\/work\/message\.txt$/m);
      expect(out).not.toContain('.wh.');
      expect(out).toContain('hello from the base layer');
      expect(out).toContain('appended through stratafs');
      const wh = await lstat(join(dir, 'upper', 'work', 'delete-me.txt'));
      expect(wh.isCharacterDevice()).toBe(true);
      expect(wh.rdev).toBe(0);
      expect(await readFile(join(dir, 'upper', 'work', 'hello.txt'), 'utf8')).toBe('hello, world\nappended through stratafs\n');
      const opaque = await run('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(dir, 'upper', 'var', 'log')]);
      expect(opaque.stdout).toBe('y');
      // The lowers are untouched.
      expect(await readFile(join(root, 'examples/container-story/layers/2-app/work/hello.txt'), 'utf8')).toBe('hello, world\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('laptop-view: read-only merged directories', async () => {
    const out = await script('examples/laptop-view/run.sh');
    expect(out).toContain('editor=nvim');
    expect(out).toContain('retries=3');
    expect(out).toContain('./scripts/build.sh');
    expect(out).toContain('./scripts/deploy.sh');
    expect(out).toMatch(/Read-only file system/);
  });

  it('library-api: mount from TypeScript, write, unmount', async () => {
    const { stdout } = await run(process.execPath, [join(root, 'examples/library-api/run.mjs')], { cwd: root, timeout: 120_000 });
    expect(stdout).toContain('merged /work: content.txt delete-me.txt hello.txt');
    expect(stdout).toContain('read back: written through the library API');
    expect(stdout).toContain('upper has: from-library.txt');
  });
});
