// Runs examples/oci-roundtrip/run.sh as a person would: import an OCI image, mount it
// with stratafs, change it, diff, commit, re-import, and compare the trees.
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, readFile, lstat } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

describe('examples/oci-roundtrip', () => {
  it('import, mount, change, diff, commit, re-import: same tree', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stratafs-ex-oci-'));
    try {
      const { stdout } = await run('bash', [join(root, 'examples/oci-roundtrip/run.sh'), dir], { cwd: root, timeout: 120_000 });
      expect(stdout).toMatch(/image story:1: 3 layers/);
      expect(stdout).toContain('D /work/delete-me.txt');
      expect(stdout).toContain('C /work/hello.txt');
      expect(stdout).toContain('D /var/log/boot.log');
      expect(stdout).toContain('  var/log/.wh..wh..opq');
      expect(stdout).toContain('  work/.wh.delete-me.txt');
      expect(stdout).toMatch(/round trip: same tree \(\d+ objects\)/);
      expect(stdout).toMatch(/\/work\/hello\.txt: file from upper \(/);
      expect(stdout).toMatch(/\/work\/delete-me\.txt: deleted: whiteout \(char 0\/0\) in upper/);
      expect(stdout).toMatch(/\/app\/config: directory from lower 1 \(.*\/app\/config\), opaque/);
      // the committed layer in the store, as its digest says
      const layer = await readFile(join(dir, '4-changes.tar.gz'));
      expect(layer.length).toBeGreaterThan(0);
      expect((await lstat(join(dir, 'upper', 'work', 'delete-me.txt'))).isCharacterDevice()).toBe(true);
    } finally {
      // the script unmounts on exit; make sure before deleting
      for (const m of ['merged', 'readonly']) {
        try { execFileSync('mountpoint', ['-q', join(dir, m)]); execFileSync('umount', ['-l', join(dir, m)]); } catch { /* not mounted */ }
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});
