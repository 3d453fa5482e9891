/**
 * Programs run from a mount (issue 10, defect 1): the kernel's FUSE OPEN of an
 * execve carries __FMODE_EXEC (0x20), which openat2 refused with EINVAL
 * (`bash: ./prog: Invalid argument`). Executed from the test process through
 * the real CLI mount, on both servers: an ELF binary and a script from a
 * lower layer, the same after their copy-up, files made in the upper (before
 * the mount and through it), and a script whose interpreter itself lives on
 * the mount (the kernel opens the interpreter with the exec flag too).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFile, chmod, copyFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { withTimeout } from '../harness/proc.js';
import { cli, cliScratch, daemonPids, layerOptions, Leftovers, runText } from '../harness/cli-mount.js';

let t: string;
let left: Leftovers;
let mnt: string;
const p = (rel: string): string => join(t, rel);

beforeEach(async () => {
  ({ t, left, mnt } = await cliScratch('cli-exec', ['l/bin', 'u/bin', 'w'], { runtimeDir: true }));
  await copyFile('/bin/true', p('l/bin/true'));
  await copyFile('/bin/true', p('l/bin/true-up'));
  // busybox-static runs the applet named by argv[0]: a shell that needs no loader from the host
  await copyFile('/bin/busybox', p('l/bin/sh'));
  await writeFile(p('l/bin/script'), '#!/bin/sh\necho "lower script $1"\n');
  await writeFile(p('l/bin/script-up'), '#!/bin/sh\necho "copied-up script"\n');
  await writeFile(p('l/bin/interp'), `#!${mnt}/bin/sh\necho "interpreter from the mount"\n`);
  await copyFile('/bin/true', p('u/bin/upper-true'));
  for (const f of ['l/bin/true', 'l/bin/true-up', 'l/bin/sh', 'l/bin/script', 'l/bin/script-up', 'l/bin/interp', 'u/bin/upper-true']) {
    await chmod(p(f), 0o755);
  }
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

async function exec(rel: string, args: string[] = []): Promise<string> {
  const r = await runText(join(mnt, rel), args, { timeoutMs: 10_000 });
  expect(r.code, `${rel}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe.each([
  ['the default low-level server', ''],
  ['fuse_api=highlevel', ',fuse_api=highlevel'],
])('exec from a mount on %s', (_name, extra) => {
  it('runs binaries and scripts from a lower, after copy-up and from the upper', async () => {
    const r = await cli(['-o', layerOptions({ lowers: [p('l')], upper: p('u'), work: p('w') }) + extra, mnt]);
    (await daemonPids(mnt)).forEach((pid) => left.pid(pid));
    expect(r.code, r.stderr).toBe(0);

    // from the lower layer
    expect(await exec('bin/true')).toBe('');
    expect(await exec('bin/script', ['x'])).toBe('lower script x\n');
    expect(await exec('bin/interp')).toBe('interpreter from the mount\n');

    // copied up by a write-open (data copy-up), then run from the upper copy
    await withTimeout(appendFile(join(mnt, 'bin/true-up'), ''), 5000, 'append');
    await withTimeout(appendFile(join(mnt, 'bin/script-up'), ''), 5000, 'append');
    expect(existsSync(p('u/bin/true-up'))).toBe(true);
    expect(existsSync(p('u/bin/script-up'))).toBe(true);
    expect(await exec('bin/true-up')).toBe('');
    expect(await exec('bin/script-up')).toBe('copied-up script\n');

    // in the upper before the mount, and created through the mount
    expect(await exec('bin/upper-true')).toBe('');
    await withTimeout(writeFile(join(mnt, 'bin/new'), '#!/bin/sh\necho "new in upper"\n', { mode: 0o755 }), 5000, 'write');
    expect(existsSync(p('u/bin/new'))).toBe(true);
    expect(await exec('bin/new')).toBe('new in upper\n');

    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
  });
});
