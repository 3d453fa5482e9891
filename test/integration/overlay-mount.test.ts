// Issue 3 bullets that need a real mount rather than the core alone: statfs, a 100,000-entry
// merged directory listed through FUSE, and racing opens that must produce one copy-up.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { mount, tempDir, type MountHandle } from '../harness/mounts.js';

const run = promisify(execFile);
let dir: string;
const handles: MountHandle[] = [];

beforeAll(async () => {
  dir = await tempDir('overlay-mount');
  for (const d of ['lower', 'upper', 'work', 'mnt', 'romnt']) await fsp.mkdir(join(dir, d));
  // 60,000 names in the lower and 40,000 more in the upper of one directory: 100,000 merged.
  await run('sh', ['-c', `mkdir -p lower/big upper/big && cd lower/big && seq -f 'l%06g' 1 60000 | xargs touch && cd ../../upper/big && seq -f 'u%06g' 1 40000 | xargs touch`], { cwd: dir, timeout: 300_000 });
  await fsp.writeFile(join(dir, 'lower', 'shared'), 'base\n');
  handles.push(await mount('stratafs', { lowers: [join(dir, 'lower')], upper: join(dir, 'upper'), work: join(dir, 'work') }, join(dir, 'mnt')));
  handles.push(await mount('stratafs', { lowers: [join(dir, 'lower')] }, join(dir, 'romnt')));
}, 600_000);

afterAll(async () => {
  for (const h of handles) await h.unmount();
  await fsp.rm(dir, { recursive: true, force: true });
});

const statfsOf = async (p: string): Promise<{ type: string; blocks: number; files: number }> => {
  const { stdout } = await run('stat', ['-f', '-c', '%T %b %c', p]);
  const [type, blocks, files] = stdout.trim().split(' ');
  return { type: type!, blocks: Number(blocks), files: Number(files) };
};

describe('stratafs on a real mount', () => {
  it('statfs reports the upper filesystem, and the top layer when read-only', async () => {
    const m = await statfsOf(join(dir, 'mnt'));
    const up = await statfsOf(join(dir, 'upper'));
    expect(m.blocks).toBe(up.blocks);
    expect(m.files).toBe(up.files);
    const ro = await statfsOf(join(dir, 'romnt'));
    const low = await statfsOf(join(dir, 'lower'));
    expect(ro.blocks).toBe(low.blocks);
  });

  it('a 100,000-entry merged directory lists completely, each name once', async () => {
    const { stdout } = await run('sh', ['-c', `ls -f '${join(dir, 'mnt', 'big')}' | grep -v '^\\.\\.\\?$' | sort | uniq -d | wc -l; ls -f '${join(dir, 'mnt', 'big')}' | grep -vc '^\\.\\.\\?$'`], { timeout: 300_000, maxBuffer: 1 << 20 });
    const [dups, count] = stdout.trim().split('\n').map(Number);
    expect(dups).toBe(0);
    expect(count).toBe(100_000);
    // find -type f relies on d_type: every entry must be reported as a regular file.
    const types = await run('sh', ['-c', `find '${join(dir, 'mnt', 'big')}' -mindepth 1 -maxdepth 1 -printf '%y\\n' | sort | uniq -c`], { timeout: 300_000 });
    expect(types.stdout.trim()).toMatch(/^100000 f$/);
  }, 300_000);

  it('two processes opening the same lower file for writing at once produce one copy-up with both writes', async () => {
    const f = join(dir, 'mnt', 'shared');
    await Promise.all([
      run('sh', ['-c', `printf 'A\\n' >> '${f}'`]),
      run('sh', ['-c', `printf 'B\\n' >> '${f}'`]),
    ]);
    const content = await fsp.readFile(join(dir, 'upper', 'shared'), 'utf8');
    expect(content.startsWith('base\n')).toBe(true);
    expect(content.split('\n').filter(Boolean).sort()).toEqual(['A', 'B', 'base']);
    expect(await fsp.readFile(join(dir, 'lower', 'shared'), 'utf8')).toBe('base\n');
    expect(await fsp.readdir(join(dir, 'work', 'work'))).toEqual([]);
  });
});
