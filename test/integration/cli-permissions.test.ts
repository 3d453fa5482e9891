/**
 * Who may use a mount (issue 10, defect 2). fuse-overlayfs 1.10 adds
 * `default_permissions,allow_other,suid,noatime` when its euid is 0 and
 * `default_permissions,noatime` otherwise; podman passes neither. stratafs
 * did not add allow_other as root (every other user got EACCES: a container
 * started with --user 1000 could not find sh) and gave a plain user's mount no
 * default_permissions (with allow_other, everyone would act with the
 * mounter's rights).
 *
 * Clients run as a bare uid (`setpriv --reuid --regid --clear-groups`, no
 * user added) with their working directory on the mount, so the scratch
 * tree above it stays 0700. The plain-user mount is made in the rootless
 * environment of test/harness/rootless.ts (a 0666 /dev/fuse node and a
 * fuse.conf with user_allow_other bind-mounted in a private namespace), whose
 * script runs as root there to let a second uid try the user's mount; the
 * host's /dev/fuse and /etc/fuse.conf are never changed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { mount, tempDir, type MountHandle } from '../harness/mounts.js';
import { shq } from '../harness/proc.js';
import { cli, daemonPids, layerOptions, Leftovers } from '../harness/cli-mount.js';
import { asUid, chownToUser, expectNothingLeft, makeRootlessEnv, rootlessProblem, runAsUser } from '../harness/rootless.js';

const rootless = await rootlessProblem();

let t: string;
let left: Leftovers;
let handles: MountHandle[];
const p = (rel: string): string => join(t, rel);

/** what a client checks, one line each: `name ok` or `name EACCES` (or the error) */
const CHECKS = `
t() { name=$1; shift; if out=$("$@" 2>&1); then echo "$name ok"; else case "$out" in *"Permission denied"*) echo "$name EACCES";; *) echo "$name error: $out";; esac; fi; }
t list ls .
t read cat f
t read-0600 cat s
t list-dir ls d
t exec ./prog
t script ./script
t create-in-0755 touch d/new
t create-in-0777 touch pub/mine
`;

/** run CHECKS as a bare uid with its working directory on the mount */
function checksAs(uid: number, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', CHECKS], { cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err && err.code !== 0 && typeof err.code !== 'number') reject(new Error(`${String(err)} ${stderr}`));
      else resolve(stdout);
    });
  });
}

const ALLOWED_ALL = ['list ok', 'read ok', 'read-0600 EACCES', 'list-dir ok', 'exec ok', 'script ok', 'create-in-0755 EACCES', 'create-in-0777 ok'];

/** the lower layer at `l`, owned by root */
async function makeLower(l: string): Promise<void> {
  const q = (rel: string): string => join(l, rel);
  for (const d of ['d', 'pub']) await mkdir(q(d), { recursive: true });
  await writeFile(q('f'), 'data\n');
  await writeFile(q('s'), 'secret\n');
  await writeFile(q('d/x'), 'x\n');
  await copyFile('/bin/true', q('prog'));
  await writeFile(q('script'), '#!/bin/sh\necho script\n');
  for (const [f, m] of [['f', 0o644], ['s', 0o600], ['d', 0o755], ['pub', 0o777], ['prog', 0o755], ['script', 0o755]] as const) {
    await chmod(q(f), m);
  }
}

function mountLine(text: string, mnt: string): { opts: string[]; superOpts: string[]; fsType: string } {
  const line = text.split('\n').find((l) => l.split(' ')[4] === mnt);
  expect(line, `no mount at ${mnt}`).toBeDefined();
  const f = line!.split(' ');
  const dash = f.indexOf('-');
  return { opts: f[5]!.split(','), fsType: f[dash + 1]!, superOpts: f[dash + 3]!.split(',') };
}

beforeEach(async () => {
  t = await tempDir('cli-perm');
  await mkdir(p('run'));
  process.env.STRATAFS_RUNTIME_DIR = p('run');
  left = new Leftovers();
  handles = [];
});

afterEach(async () => {
  for (const h of handles) await h.unmount();
  expect(await left.cleanup()).toEqual([]);
});

describe('a mount made by root with no options', () => {
  it('is open to other users with kernel permission checks, as fuse-overlayfs is', async () => {
    await makeLower(p('l'));
    for (const d of ['u1', 'w1', 'm1', 'u2', 'w2', 'm2']) await mkdir(p(d));
    const mnt = left.mount(p('m1'));
    const r = await cli(['-o', layerOptions({ lowers: [p('l')], upper: p('u1'), work: p('w1') }), mnt]);
    (await daemonPids(mnt)).forEach((pid) => left.pid(pid));
    expect(r.code, r.stderr).toBe(0);
    const fo = await mount('fuse-overlayfs', { lowers: [p('l')], upper: p('u2'), work: p('w2') }, p('m2'));
    handles.push(fo);

    const info = await readFile('/proc/self/mountinfo', 'utf8');
    const s = mountLine(info, mnt);
    const f = mountLine(info, p('m2'));
    expect(s.fsType).toBe('fuse.stratafs');
    for (const m of [s, f]) {
      expect(m.superOpts).toEqual(expect.arrayContaining(['default_permissions', 'allow_other']));
      expect(m.opts).toContain('noatime');
      expect(m.opts).not.toContain('nosuid');
    }

    const out = await checksAs(1000, mnt);
    expect(out.trim().split('\n')).toEqual(ALLOWED_ALL);
    expect(await checksAs(1000, p('m2'))).toBe(out);
    // a file made by uid 1000 is its own
    expect(existsSync(p('u1/pub/mine'))).toBe(true);

    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
  });

  it('noallow_other keeps other users out', async () => {
    await makeLower(p('l'));
    for (const d of ['u', 'w', 'm']) await mkdir(p(d));
    const mnt = left.mount(p('m'));
    const r = await cli(['-o', layerOptions({ lowers: [p('l')], upper: p('u'), work: p('w') }) + ',noallow_other', mnt]);
    (await daemonPids(mnt)).forEach((pid) => left.pid(pid));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/unknown/);
    const m = mountLine(await readFile('/proc/self/mountinfo', 'utf8'), mnt);
    expect(m.superOpts).not.toContain('allow_other');
    expect(m.superOpts).toContain('default_permissions');
    expect((await checksAs(1000, mnt)).trim().split('\n')[0]).toBe('list EACCES');
    const u = await cli(['umount', mnt]);
    expect(u.code, u.stderr).toBe(0);
  });
});

describe.skipIf(rootless !== undefined)(`a mount made by a plain user (fusermount3)${rootless ? ` (${rootless})` : ''}`, () => {
  it('has default_permissions: with allow_other another user does not act with the mounter\'s rights', async (ctx) => {
    if (!existsSync('/etc/fuse.conf')) ctx.skip(true, 'no /etc/fuse.conf to bind user_allow_other over (fuse3 not installed)');
    const env = await makeRootlessEnv('cli-perm-user', { userAllowOther: true });
    const b = join(env.home, 'perm');
    await makeLower(join(b, 'l'));
    for (const d of ['u', 'w', 'mnt']) await mkdir(join(b, d));
    await chownToUser(env, b);
    const m = `${b}/mnt`;
    // The script runs as root in the namespace: the user mounts and unmounts ($AS_USER), uid 2000 is the other user.
    const r = await runAsUser(env, `
$AS_USER "$STRATAFS" -o lowerdir=${b}/l,upperdir=${b}/u,workdir=${b}/w,allow_other ${m} || exit 80
echo "MOUNTINFO $(grep ' ${m} ' /proc/self/mountinfo)"
(cd ${m} && ${asUid(2000)} sh -c ${shq(CHECKS)})
$AS_USER "$STRATAFS" umount ${m} || echo "UMOUNT FAILED"
`, { asRoot: true, timeoutMs: 40_000 });
    expectNothingLeft(r);
    const out = `${r.stdout}${r.code !== 0 ? `\nEXIT ${String(r.code)} ${r.stderr}` : ''}`;
    const lines = out.trim().split('\n');
    const mi = lines.find((l) => l.startsWith('MOUNTINFO '));
    expect(mi, out).toBeDefined();
    const mline = mountLine(mi!.slice('MOUNTINFO '.length), m);
    expect(mline.superOpts).toEqual(expect.arrayContaining([`user_id=${env.user.uid}`, 'default_permissions', 'allow_other']));
    expect(mline.opts).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noatime']));
    // uid 2000 against files of the mounter (0644 f, 0600 s, 0755 d). Not checked here: a create in
    // the 0777 lower directory, whose copy-up a plain mounter cannot do yet (issue 10, defect 5).
    const got = lines.filter((l) => !l.startsWith('MOUNTINFO ') && !l.startsWith('create-in-0777 '));
    expect(got, out).toEqual(ALLOWED_ALL.filter((l) => !l.startsWith('create-in-0777 ')));
  });
});
