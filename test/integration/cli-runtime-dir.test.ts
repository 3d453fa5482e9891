/**
 * The runtime directory of a rootless mount (issue 10, defect 3). Rootless
 * podman runs the mount program as uid 0 of a user namespace; stratafs chose
 * /run/stratafs by that uid and died with EACCES before mounting. Here the
 * plain user of the rootless environment (test/harness/rootless.ts: a private
 * namespace with /dev/fuse 0666 and /tmp a tmpfs of its own) enters
 * `unshare -Urm` (uid 0 inside, /run not writable) and mounts with
 * STRATAFS_RUNTIME_DIR unset: the runtime files go to
 * $XDG_RUNTIME_DIR/stratafs, else to $TMPDIR/stratafs-0, else (that one not
 * ours) to /tmp/stratafs-0; `stratafs stats` and `stratafs umount` find them
 * there.
 */
import { describe, expect, it } from 'vitest';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chownToUser, expectNothingLeft, makeRootlessEnv, rootlessProblem, runAsUser } from '../harness/rootless.js';

const problem = await rootlessProblem();

describe.skipIf(problem !== undefined)(`a mount by uid 0 of a user namespace (rootless podman's mount program)${problem ? ` (${problem})` : ''}`, () => {
  it('puts its runtime files where it can write them, and umount/stats find them', async () => {
    const env = await makeRootlessEnv('cli-rt');
    const T = join(env.home, 'rt');
    const p = (rel: string): string => join(T, rel);
    // Owned by the user = uid 0 in the namespace; ro-xdg and tmp2/stratafs-0 stay root's (unmapped there).
    for (const d of ['', 'l', 'u', 'w', 'm', 'xdg', 'ro-xdg', 'tmp', 'tmp2', 'tmp2/stratafs-0']) await mkdir(p(d), { mode: 0o755 });
    await writeFile(p('l/f'), 'from the lower\n');
    for (const f of ['', 'l', 'l/f', 'u', 'w', 'm', 'xdg', 'tmp', 'tmp2']) await chown(p(f), env.user.uid, env.user.gid);
    const inner = `
# uid 0 of a user namespace owned by the user; /run is not writable here
touch /run/.probe 2>/dev/null && echo "RUN writable" || echo "RUN not-writable"
cat /proc/self/uid_map | tr -s ' ' | sed 's/^/UIDMAP/'
trap 'umount -l ${T}/m 2>/dev/null' EXIT
case_() {
  name=$1; shift
  env -u STRATAFS_RUNTIME_DIR "$@" "$STRATAFS" -o lowerdir=${T}/l,upperdir=${T}/u,workdir=${T}/w ${T}/m 2>&1 | sed "s/^/$name mount-out /"
  echo "$name read $(cat ${T}/m/f 2>&1)"
  echo "$name records $(cd ${T} && ls -d xdg/stratafs/*.json tmp/stratafs-0/*.json /tmp/stratafs-0/*.json 2>/dev/null | sed 's,^/tmp,TMPFS,' | tr '\\n' ' ')"
  env -u STRATAFS_RUNTIME_DIR "$@" "$STRATAFS" stats --json ${T}/m >/dev/null 2>&1; echo "$name stats $?"
  env -u STRATAFS_RUNTIME_DIR "$@" "$STRATAFS" umount ${T}/m 2>&1 | sed "s/^/$name umount-out /"
  grep -q " ${T}/m " /proc/self/mountinfo && echo "$name mounted yes" || echo "$name mounted no"
}
case_ A XDG_RUNTIME_DIR=${T}/xdg TMPDIR=${T}/tmp
case_ B XDG_RUNTIME_DIR=${T}/ro-xdg TMPDIR=${T}/tmp
case_ C XDG_RUNTIME_DIR= TMPDIR=${T}/tmp2
`;
    await writeFile(p('inner.sh'), inner);
    await chownToUser(env, p('inner.sh'));
    const r = await runAsUser(env, `unshare -Urm bash ${T}/inner.sh\n`, { timeoutMs: 90_000 });
    const out = r.stdout;
    expectNothingLeft(r);
    expect(r.code, `${out}\n${r.stderr}`).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines, out).toContain('RUN not-writable');
    expect(lines, out).toContain(`UIDMAP 0 ${env.user.uid} 1`);
    for (const c of ['A', 'B', 'C']) {
      expect(lines.filter((l) => l.startsWith(`${c} mount-out`) || l.startsWith(`${c} umount-out`)), out).toEqual([]);
      expect(lines, out).toContain(`${c} read from the lower`);
      expect(lines, out).toContain(`${c} stats 0`);
      expect(lines, out).toContain(`${c} mounted no`);
    }
    const records = (c: string): string => lines.find((l) => l.startsWith(`${c} records `))!.slice(`${c} records `.length).trim();
    expect(records('A')).toMatch(/^xdg\/stratafs\/[0-9a-f]{16}\.json$/);
    // not writable: $XDG_RUNTIME_DIR is passed over for $TMPDIR
    expect(records('B')).toMatch(/^tmp\/stratafs-0\/[0-9a-f]{16}\.json$/);
    // $TMPDIR/stratafs-0 exists but is not ours: /tmp/stratafs-0
    expect(records('C')).toMatch(/^TMPFS\/stratafs-0\/[0-9a-f]{16}\.json$/);
  });
});
