/**
 * `bench --enable-uring` (src/bench/enable-uring.ts): the parameter it sets for its run comes
 * back however the run ends. Run on a scratch file standing in for
 * /sys/module/fuse/parameters/enable_uring (tests never touch the host's), in a child process
 * that ends the way the bench can: normally, by an error, by SIGINT through the bench's
 * handler (which ends in process.exit).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from '../harness/mounts.js';

const MODULE = join(REPO_ROOT, 'dist', 'bench', 'enable-uring.js');

async function runChild(param: string, how: 'end' | 'throw' | 'sigint'): Promise<{ code: number | null; stderr: string; during: string }> {
  const script = `
    import { enableUring } from ${JSON.stringify(MODULE)};
    import { readFileSync } from 'node:fs';
    process.on('SIGINT', () => process.exit(130));
    enableUring(() => {}, ${JSON.stringify(param)});
    process.stdout.write(readFileSync(${JSON.stringify(param)}, 'latin1') + '\\n');
    if (${JSON.stringify(how)} === 'throw') throw new Error('a failed run');
    if (${JSON.stringify(how)} === 'sigint') setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let during = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (during === '' && out.includes('\n')) {
        during = out.trim();
        if (how === 'sigint') child.kill('SIGINT');
      }
    });
    child.on('exit', (c) => resolve(c));
  });
  return { code, stderr: err, during };
}

describe('bench --enable-uring restores the parameter', () => {
  for (const how of ['end', 'throw', 'sigint'] as const) {
    it(`Y during the run, N again after it (${how})`, async () => {
      const t = await tempDir('enable-uring');
      const param = join(t, 'enable_uring');
      writeFileSync(param, 'N\n');
      const r = await runChild(param, how);
      expect(r.during, r.stderr).toBe('Y');
      expect(readFileSync(param, 'latin1')).toBe('N');
      expect(r.stderr).toContain('enable_uring restored to N');
      expect(r.code).toBe(how === 'end' ? 0 : how === 'sigint' ? 130 : 1);
    }, 20_000);
  }
  it('a parameter that was Y stays Y', async () => {
    const t = await tempDir('enable-uring-y');
    const param = join(t, 'enable_uring');
    writeFileSync(param, 'Y\n');
    const r = await runChild(param, 'end');
    expect(r.during).toBe('Y');
    expect(readFileSync(param, 'latin1')).toBe('Y');
  }, 20_000);
});
