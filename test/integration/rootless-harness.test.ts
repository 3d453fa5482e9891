/**
 * The rootless environment of test/harness/rootless.ts keeps its promises: the
 * script runs as the bare uid with no groups, /dev/fuse is usable inside and
 * untouched outside, the user's /etc entries exist only inside, writes to the
 * host's world-writable directories stay in the namespace, and whatever the
 * script leaves (a daemon, a FUSE mount, a hang) is reported, ended by PID and
 * gone with the namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mountsUnder } from '../harness/mounts.js';
import {
  chownToUser, DEFAULT_USER, hostFingerprint, makeRootlessEnv, rootlessProblem, runAsUser, type RootlessEnv,
} from '../harness/rootless.js';

const problem = await rootlessProblem();

describe.skipIf(problem !== undefined)('rootless test environment', () => {
  let env: RootlessEnv;
  let fingerprint: string;
  beforeAll(async () => {
    fingerprint = await hostFingerprint();
    env = await makeRootlessEnv('rootless-harness');
  });
  afterAll(async () => {
    expect(await hostFingerprint()).toBe(fingerprint);
    expect(await mountsUnder(env.dir)).toEqual([]);
  });

  it('runs the script as the bare uid with its /etc entries, a usable /dev/fuse and scratch HOME/XDG_RUNTIME_DIR', async () => {
    const r = await runAsUser(env, `
id -u; id -g; id -G; id -un
stat -c '%F %t:%T %a' /dev/fuse
grep -c "^${DEFAULT_USER.name}:${DEFAULT_USER.subStart}:${DEFAULT_USER.subCount}$" /etc/subuid /etc/subgid
echo "home=$HOME run=$XDG_RUNTIME_DIR srun=$STRATAFS_RUNTIME_DIR pwd=$(pwd)"
stat -c '%u %a' "$XDG_RUNTIME_DIR"
test -w /etc/passwd && echo etc-writable || echo etc-read-only
echo in > /dev/fuse-probe 2>/dev/null && echo dev-writable || echo dev-read-only
`);
    expect(r.setupError).toBeUndefined();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')).toEqual([
      '4711', '4711', '4711', DEFAULT_USER.name,
      'character special file a:e5 666',
      '/etc/subuid:1', '/etc/subgid:1',
      `home=${env.home} run=${env.runtimeDir} srun=${env.stratafsRuntimeDir} pwd=${env.home}`,
      '4711 700',
      'etc-read-only', 'dev-read-only', '',
    ]);
    expect(r.leftovers).toEqual([]);
    expect(r.survivors).toEqual([]);
    // outside: /dev/fuse as it was, no entry for the user
    const st = await lstat('/dev/fuse');
    expect(st.mode & 0o777).toBe(0o600);
    expect(await readFile('/etc/passwd', 'utf8')).not.toContain(`${DEFAULT_USER.name}:`);
  });

  it("keeps writes to the host's world-writable directories in the namespace", async () => {
    const name = `stratafs-rootless-probe-${process.pid}`;
    const dirs = ['/tmp', '/var/tmp', '/dev/shm', '/run/lock'].filter((d) => existsSync(d));
    const r = await runAsUser(env, dirs.map((d) => `echo x > ${d}/${name} && echo wrote ${d}`).join('\n'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(dirs.map((d) => `wrote ${d}`));
    for (const d of dirs) expect(existsSync(join(d, name)), d).toBe(false);
  });

  it('reports a FUSE mount and daemons the script left, ends them by PID, and the namespace is gone', async () => {
    const b = join(env.home, 'left');
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(b, d), { recursive: true });
    await chownToUser(env, b);
    const r = await runAsUser(env, `
fuse-overlayfs -o lowerdir=${b}/l,upperdir=${b}/u,workdir=${b}/w ${b}/m || exit 3
setsid sleep 1000 < /dev/null > /dev/null 2>&1 &
echo started
`, { graceMs: 1000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('started\n');
    expect(r.leftovers).toContain(`mount fuse.fuse-overlayfs ${b}/m`);
    expect(r.leftovers.some((l) => /^process \d+ fuse-overlayfs /.test(l))).toBe(true);
    expect(r.leftovers.some((l) => /^process \d+ sleep 1000$/.test(l))).toBe(true);
    expect(r.namespace).toBeDefined();
    expect(r.survivors).toEqual([]);
    expect(await mountsUnder(b)).toEqual([]);
  });

  it('a script that hangs is cut off by the timeout, with everything in its namespace', async () => {
    const r = await runAsUser(env, 'sleep 1000 & sleep 1000', { timeoutMs: 3000 });
    expect(r.timedOut).toBe(true);
    expect(r.code).toBeNull();
    expect(r.namespace).toBeDefined();
    expect(r.survivors).toEqual([]);
  });
});
