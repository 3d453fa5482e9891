/**
 * The library entry (dist/index.js): mount(options) -> Mount, m.unmount().
 * The mount is served by the process that calls mount(), so a child process
 * plays the library user and the test process talks to the mount.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, tempDir } from '../harness/mounts.js';
import { withTimeout } from '../harness/proc.js';
import { isMounted, Leftovers, runText, waitFor } from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
const p = (rel: string): string => join(t, rel);

const SCRIPT = `
import { mount } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))};
const say = (s) => process.stdout.write(s + '\\n');
try {
  const m = await mount({ ...JSON.parse(process.env.LIB_OPTIONS), log: () => {} });
  let asked = false;
  m.ended.then(() => { say('ended'); if (!asked) process.exit(0); });
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', async () => {
    asked = true;
    await m.unmount();
    say('unmounted ' + JSON.stringify(m.stats().ops.create ?? null));
    process.exit(0);
  });
  say('ready ' + m.mountpoint);
} catch (e) {
  say('error ' + e.name + ' ' + e.message);
  process.exit(3);
}
`;

interface LibUser { child: ChildProcess; lines: string[]; exited: Promise<number | null> }

function startLibUser(options: object): LibUser {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, LIB_OPTIONS: JSON.stringify(options) },
  });
  left.child(child);
  const lines: string[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, lines, exited };
}

beforeEach(async () => {
  t = await tempDir('lib');
  for (const d of ['l1', 'l2']) await mkdir(p(d));
  await writeFile(p('l1/a'), 'from l1\n');
  await writeFile(p('l2/b'), 'from l2\n');
  left = new Leftovers();
  left.mount(p('run/merged'));
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

describe('library API', () => {
  it('mount() serves a merged view (creating upper, work and mountpoint); unmount() ends it', async () => {
    const u = startLibUser({ lowerdirs: [p('l1'), p('l2')], upperdir: p('run/upper'), workdir: p('run/work'), mountpoint: p('run/merged') });
    expect(await waitFor(() => u.lines.length > 0, 20_000)).toBe(true);
    expect(u.lines[0]).toBe(`ready ${p('run/merged')}`);
    expect(await isMounted(p('run/merged'))).toBe(true);
    expect((await withTimeout(readdir(p('run/merged')), 5000, 'readdir')).sort()).toEqual(['a', 'b']);
    await withTimeout(writeFile(p('run/merged/c'), 'new\n'), 5000, 'write');
    u.child.stdin!.write('unmount\n');
    expect(await withTimeout(u.exited, 10_000, 'library user exit')).toBe(0);
    // ended resolves before unmount() returns; the stats stay readable after (the CREATE of c: its
    // data went to the upper file by passthrough, without a WRITE, as root)
    expect(u.lines[1]).toBe('ended');
    expect(u.lines[2]).toMatch(/^unmounted \{"count":1,/);
    expect(await isMounted(p('run/merged'))).toBe(false);
    expect(await readFile(p('run/upper/c'), 'utf8')).toBe('new\n');
  });

  it('an outside umount resolves m.ended', async () => {
    const u = startLibUser({ lowerdirs: [p('l1')], mountpoint: p('run/merged') });
    expect(await waitFor(() => u.lines.length > 0, 20_000)).toBe(true);
    expect(u.lines[0]).toMatch(/^ready /);
    const r = await runText('umount', [p('run/merged')]);
    expect(r.code, r.stderr).toBe(0);
    expect(await withTimeout(u.exited, 10_000, 'library user exit')).toBe(0);
    expect(u.lines).toContain('ended');
  });

  it('bad input rejects with a ConfigError and removes the directories it created', async () => {
    const u = startLibUser({ lowerdirs: [p('nope')], upperdir: p('run/upper'), workdir: p('run/work'), mountpoint: p('run/merged') });
    expect(await withTimeout(u.exited, 20_000, 'library user exit')).toBe(3);
    expect(u.lines).toEqual([`error ConfigError lowerdir does not exist: ${p('nope')}`]);
    expect(existsSync(p('run'))).toBe(false);
  });
});
