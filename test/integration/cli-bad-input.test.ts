/**
 * Bad input to the real CLI (issue 3, "Bad input"): one line naming the problem
 * and the path, exit code 1, and nothing created or changed on disk: the whole
 * test directory is snapshotted (names, modes, sizes, mtimes, ctimes, content
 * hashes) before and after. No mount and no process may remain.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../harness/mounts.js';
import { cli, daemonPids, dirSnapshot, isMounted, layerOptions, Leftovers } from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;

beforeEach(async () => {
  t = await tempDir('cli-bad');
  for (const d of ['l1', 'l2', 'u', 'w', 'mnt']) await mkdir(join(t, d));
  await writeFile(join(t, 'l1', 'f'), 'lower\n');
  left = new Leftovers();
});

afterEach(async () => {
  const errors = await left.cleanup();
  await rm(t, { recursive: true, force: true });
  expect(errors).toEqual([]);
});

/** tmpfs mounted by the test at dir, removed by the Leftovers cleanup */
function tmpfs(dir: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'stratafs-test', dir]);
  left.mount(dir);
}

async function expectRefused(args: string[], message: RegExp, skip: string[] = []): Promise<void> {
  const before = await dirSnapshot(t, skip);
  const r = await cli(args);
  const after = await dirSnapshot(t, skip);
  expect(r.timedOut).toBe(false);
  expect(r.code).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(r.stdout).toBe('');
  expect(after).toEqual(before);
  expect(await isMounted(join(t, 'mnt'))).toBe(false);
  expect(await daemonPids(join(t, 'mnt'))).toEqual([]);
}

const p = (rel: string): string => join(t, rel);
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** "stratafs: <problem>: <path>" exactly */
const line = (problem: string, path: string): RegExp => new RegExp(`^stratafs: ${problem}: ${esc(path)}$`);

describe('stratafs refuses bad input with one line, exit 1, nothing changed', () => {
  it('nonexistent lower layer', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1'), p('nope')], upper: p('u'), work: p('w') }), p('mnt')],
      line('lowerdir does not exist', p('nope')));
  });

  it('lower layer that is not a directory', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1/f')], upper: p('u'), work: p('w') }), p('mnt')],
      line('lowerdir is not a directory', p('l1/f')));
  });

  it('nonexistent upperdir and workdir', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('nu'), work: p('w') }), p('mnt')],
      line('upperdir does not exist', p('nu')));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('nw') }), p('mnt')],
      line('workdir does not exist', p('nw')));
  });

  it('upper equal to a lower', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1'), p('l2')], upper: p('l2'), work: p('w') }), p('mnt')],
      line(`upperdir is the same directory as lowerdir ${esc(p('l2'))}`, p('l2')));
  });

  it('upper nested in a lower', async () => {
    await mkdir(p('l1/up'));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('l1/up'), work: p('w') }), p('mnt')],
      line(`upperdir is inside lowerdir ${esc(p('l1'))}`, p('l1/up')));
  });

  it('upper inside the mountpoint', async () => {
    await mkdir(p('mnt/up'));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('mnt/up'), work: p('w') }), p('mnt')],
      line(`upperdir is inside the mountpoint ${esc(p('mnt'))}`, p('mnt/up')));
  });

  it('workdir inside upper', async () => {
    await mkdir(p('u/w'));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('u/w') }), p('mnt')],
      line(`workdir is inside upperdir ${esc(p('u'))}`, p('u/w')));
  });

  it('upper inside workdir', async () => {
    await mkdir(p('w/u'));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('w/u'), work: p('w') }), p('mnt')],
      line(`upperdir is inside workdir ${esc(p('w'))}`, p('w/u')));
  });

  it('workdir on another filesystem than the upper', async () => {
    await mkdir(p('other'));
    tmpfs(p('other'));
    await mkdir(p('other/w'));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('other/w') }), p('mnt')],
      line(`workdir is on another filesystem than upperdir ${esc(p('u'))}`, p('other/w')));
  });

  it('upper on a read-only filesystem', async () => {
    await mkdir(p('ro'));
    tmpfs(p('ro'));
    await mkdir(p('ro/u'));
    await mkdir(p('ro/w'));
    execFileSync('mount', ['-o', 'remount,ro', p('ro')]);
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('ro/u'), work: p('ro/w') }), p('mnt')],
      line('upperdir is on a read-only filesystem', p('ro/u')));
  });

  it('missing mountpoint (nonexistent, or not given)', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('w') }), p('nomnt')],
      line('mountpoint does not exist', p('nomnt')));
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('w') })], /^stratafs: missing mountpoint/);
  });

  it('mountpoint that is a file', async () => {
    await expectRefused(['-o', layerOptions({ lowers: [p('l1')] }), p('l1/f')], line('mountpoint is not a directory', p('l1/f')));
  });

  it('bad option values and a missing lowerdir', async () => {
    await expectRefused(['-o', `${layerOptions({ lowers: [p('l1')] })},timeout=soon`, p('mnt')], /^stratafs: invalid value for timeout \(seconds >= 0 expected\): soon$/);
    await expectRefused(['-o', `upperdir=${p('u')},workdir=${p('w')}`, p('mnt')], /^stratafs: missing lowerdir option: lowerdir=$/);
    await expectRefused(['-o', `lowerdir=${p('l1')},upperdir=${p('u')}`, p('mnt')], line('upperdir needs a workdir option', p('u')));
    await expectRefused(['-o', `${layerOptions({ lowers: [p('l1')] })},metacopy=on`, p('mnt')], /^stratafs: overlayfs feature metacopy is not supported by stratafs: metacopy=on$/);
  });

  it('upper/workdir in use by another live stratafs mount', async () => {
    await mkdir(p('mnt1'));
    const first = await cli(['-o', layerOptions({ lowers: [p('l1')], upper: p('u'), work: p('w') }), left.mount(p('mnt1'))]);
    for (const pid of await daemonPids(p('mnt1'))) left.pid(pid);
    expect(first.code, first.stderr).toBe(0);
    expect(await isMounted(p('mnt1'))).toBe(true);
    await expectRefused(['-o', layerOptions({ lowers: [p('l2')], upper: p('u'), work: p('w') }), p('mnt')],
      line('upperdir/workdir is in use by another stratafs mount', p('w')), [p('mnt1')]);
    // the first mount is unharmed
    expect(await isMounted(p('mnt1'))).toBe(true);
  });
});
