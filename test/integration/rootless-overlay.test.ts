/**
 * Issue 10, defect 5: a non-root mounter (the developer-laptop case) must be
 * able to copy up, delete and rename inside lower directories, with char 0/0
 * whiteouts (unprivileged mknod of 0/0 works since Linux 5.8).
 *
 * Everything runs as a bare uid in the rootless environment of
 * test/harness/rootless.ts (nothing on the host changes). The same steps run on
 *  - stratafs mounted by the plain user through fusermount3 with userxattr,
 *  - fuse-overlayfs mounted by the same user,
 *  - stratafs mounted as uid 0 of `unshare -Urm` (libfuse mounts directly),
 *    next to kernel overlayfs mounted in that same user namespace (userxattr),
 * and each resulting upper is judged by kernel overlayfs, mounted read-only as
 * root outside the namespace (upper as the top lower layer, -o userxattr): the
 * merged views must all agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, writeFile, symlink, chmod, readdir, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { forceCleanup, kernelOverlayProblem, mount } from '../harness/mounts.js';
import { run } from '../harness/proc.js';
import {
  chownToUser, expectNothingLeft, hostFingerprint, makeRootlessEnv, rootlessProblem, runAsUser, type RootlessEnv, type RootlessRun,
} from '../harness/rootless.js';

const problem = await rootlessProblem();
const kernelProblem = await kernelOverlayProblem();

/** The lower layer, built by the test as root and given to the user. */
async function buildLower(dir: string): Promise<void> {
  const f = async (p: string, text: string, mode = 0o644): Promise<void> => {
    await writeFile(join(dir, p), text);
    await chmod(join(dir, p), mode);
  };
  for (const d of ['d/sub', 'mv/sub', 'rn', 'p', 'o', 'ro/in']) await mkdir(join(dir, d), { recursive: true });
  await f('f', 'hello\n');
  await f('d/x', 'x\n');
  await f('d/sub/y', 'y\n');
  await f('mv/a', 'a\n');
  await f('mv/sub/b', 'b\n');
  await f('rn/c', 'c\n');
  await f('r', 'rename me\n');
  await f('g', 'delete me\n');
  await f('p/q', 'q\n');
  await f('p/keep', 'keep\n');
  await f('o/z', 'z\n');
  await f('m600', 'mode\n', 0o644);
  await f('ro/in/file', 'in a read-only dir\n');
  await f('ro/in/file2', 'in a read-only dir\n');
  await symlink('f', join(dir, 'ln'));
  // a read-only directory tree (as Go's module cache makes): its files can still be written
  await chmod(join(dir, 'ro/in'), 0o555);
  await chmod(join(dir, 'ro'), 0o555);
  await chownToUser(ENV!, dir);
}

/**
 * The steps, run by the user in the merged view $M. Each prints one line
 * "step NAME ok" or "step NAME fail: <message>"; `rename2` reports the raw
 * errno of rename(2) of a lower directory (mv falls back to copy+delete on EXDEV).
 */
const STEPS = String.raw`
step() { local n=$1; shift; local out; if out=$("$@" 2>&1); then echo "step $n ok"; else echo "step $n fail: $out" | head -1; fi; }
rename2() { python3 -c 'import os,sys
try:
  os.rename(sys.argv[1], sys.argv[2]); print("rename2 ok")
except OSError as e:
  import errno; print("rename2 " + errno.errorcode[e.errno])' "$@"; [ -e "$1" ] && mv "$1" "$2"; }
cd "$M"
step append sh -c 'echo more >> f'
step rm-rf-dir rm -rf d
step mv-dir mv mv mv2
rename2 rn rn2
step mv-file mv r r2
step rm-file rm g
step create-in-lower-dir sh -c 'echo new > p/new'
step rm-in-lower-dir rm p/q
step create-delete-in-lower-dir sh -c 'echo t > p/tmp && rm p/tmp'
step opaque sh -c 'rm -rf o && mkdir o && echo n > o/new'
step chmod chmod 600 m600
step symlink-replace sh -c 'rm ln && ln -s r2 ln'
cd /
`;

/**
 * Beneath read-only (0555) lower directories, and making one: what the user may do on
 * any filesystem, where the overlay's own steps (copy-up into the directory, moving a
 * directory out of work/, marking it opaque) meet the missing write permission. The
 * kernel passes those with CAP_DAC_OVERRIDE.
 */
const RO_STEPS = String.raw`
cd "$M"
step append-in-read-only-dir sh -c 'echo more >> ro/in/file'
step chmod-in-read-only-dir chmod 600 ro/in/file2
step mkdir-read-only mkdir -m 555 p/rodir
step mv-read-only-dir mv ro ro2
cd /
`;

/** A listing of a tree (type, mode, [owner,] path; file hashes; link targets), the same as root and as the user. */
const SNAP = String.raw`
snap() { (cd "$1" && find . -mindepth 1 -printf "%y %m $2 %P\n" | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum && find . -type l -printf '%P -> %l\n' | LC_ALL=C sort); }
`;

function between(out: string, tag: string): string {
  const a = out.indexOf(`--- ${tag} begin\n`);
  const b = out.indexOf(`--- ${tag} end\n`);
  if (a < 0 || b < 0) throw new Error(`no ${tag} section in output:\n${out}`);
  return out.slice(a + tag.length + 11, b);
}

const stepLines = (out: string): string[] => out.split('\n').filter((l) => l.startsWith('step ') || l.startsWith('rename2 '));

/** Upper-layer facts: whiteouts as char 0/0 (never `.wh.` files), user.overlay.opaque on `o`. */
async function upperFacts(upper: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const n of (await readdir(join(upper, rel))).sort()) {
      const p = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(upper, p));
      if (n.startsWith('.wh.')) out.push(`wh-file ${p}`);
      else if (st.isCharacterDevice() && st.rdev === 0) out.push(`whiteout ${p}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out;
}

/**
 * The merged view of `upper` over `lower` as root sees it outside the
 * namespace, read-only (the upper as the top lower layer): kernel overlayfs
 * with user.overlay.* markers (userxattr), or stratafs (which also reads
 * fuse-overlayfs's markers).
 */
async function judgeView(env: RootlessEnv, judge: 'kernel' | 'stratafs', name: string, upper: string, lower: string, owners: boolean): Promise<string> {
  const mnt = join(env.dir, `judge-${judge}-${name}`);
  await mkdir(mnt);
  const h = judge === 'kernel'
    ? await run('mount', ['-t', 'overlay', '-o', `ro,userxattr,lowerdir=${upper}:${lower}`, 'judge', mnt], { timeoutMs: 10_000 })
      .then((m) => { if (m.code !== 0) throw new Error(`kernel judge mount failed: ${m.stderr.toString()}`); })
    : await mount('stratafs', { lowers: [upper, lower] }, mnt);
  try {
    const r = await run('bash', ['-c', `${SNAP}\nsnap ${mnt} ${owners ? '%U:%G' : '-'}`], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`snapshot failed: ${r.stderr.toString()}`);
    return r.stdout.toString('utf8');
  } finally {
    if (h) await h.unmount();
    else await forceCleanup(mnt);
  }
}

let ENV: RootlessEnv | undefined;
let fingerprint = '';

describe.skipIf(problem !== undefined || kernelProblem !== undefined)('defect 5: a plain user mounts and changes lower directories', () => {
  const runs = new Map<string, RootlessRun>();

  beforeAll(async () => {
    fingerprint = await hostFingerprint();
    ENV = await makeRootlessEnv('rootless-overlay');
    // the judges' stratafs mounts (root, outside the namespace) keep their runtime files in scratch too
    process.env.STRATAFS_RUNTIME_DIR = join(ENV.dir, 'root-run');
    for (const impl of ['stratafs', 'fuse-overlayfs', 'userns']) {
      for (const d of ['l', 'u', 'w', 'm', 'ku', 'kw', 'km']) await mkdir(join(ENV.home, impl, d), { recursive: true });
      await buildLower(join(ENV.home, impl, 'l'));
      await chownToUser(ENV, join(ENV.home, impl));
    }

  });

  afterAll(async () => {
    delete process.env.STRATAFS_RUNTIME_DIR;
    if (ENV) {
      // judge mounts are removed in kernelView; nothing of the user's can be mounted outside its namespace
      expect(await hostFingerprint()).toBe(fingerprint);
    }
  });

  /** The script a plain user runs for one implementation: mount, steps, snapshots, unmount (trap). */
  function userScript(impl: 'stratafs' | 'fuse-overlayfs'): string {
    const B = join(ENV!.home, impl);
    const mountCmd = impl === 'stratafs'
      ? `"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr ${B}/m`
      : `fuse-overlayfs -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w ${B}/m`;
    const umountCmd = impl === 'stratafs' ? `"$STRATAFS" umount ${B}/m` : `fusermount3 -u ${B}/m`;
    return `${SNAP}
M=${B}/m
${mountCmd} || exit 3
trap '${umountCmd}' EXIT
grep -q " ${B}/m " /proc/self/mountinfo || { echo "not mounted"; exit 4; }
${STEPS}
echo '--- merged begin'; snap "$M" %U:%G; echo '--- merged end'
${RO_STEPS}
echo '--- merged-ro begin'; snap "$M" %U:%G; echo '--- merged-ro end'
`;
  }

  const ALL_OK = [
    'step append ok', 'step rm-rf-dir ok', 'step mv-dir ok', 'rename2 ok', 'step mv-file ok', 'step rm-file ok',
    'step create-in-lower-dir ok', 'step rm-in-lower-dir ok', 'step create-delete-in-lower-dir ok', 'step opaque ok',
    'step chmod ok', 'step symlink-replace ok',
    'step append-in-read-only-dir ok', 'step chmod-in-read-only-dir ok', 'step mkdir-read-only ok', 'step mv-read-only-dir ok',
  ];
  const RO_COUNT = 4;

  it('stratafs, mounted by the plain user through fusermount3 with userxattr: every step works, char 0/0 whiteouts', async () => {
    const r = await runAsUser(ENV!, userScript('stratafs'), { timeoutMs: 60_000 });
    runs.set('stratafs', r);
    expectNothingLeft(r);
    expect(r.code, r.stderr).toBe(0);
    expect(stepLines(r.stdout)).toEqual(ALL_OK);
    const upper = join(ENV!.home, 'stratafs', 'u');
    const facts = await upperFacts(upper);
    expect(facts.filter((l) => l.startsWith('wh-file'))).toEqual([]);
    expect(facts).toEqual(expect.arrayContaining(['whiteout d', 'whiteout mv', 'whiteout rn', 'whiteout r', 'whiteout g', 'whiteout p/q']));
    const opaque = await run('getfattr', ['--absolute-names', '-n', 'user.overlay.opaque', '--only-values', join(upper, 'o')]);
    expect(opaque.stdout.toString()).toBe('y');
    // the read-only directories stay read-only in the upper
    for (const d of ['ro2', 'ro2/in', 'p/rodir']) expect((await lstat(join(upper, d))).mode & 0o7777, d).toBe(0o555);
    // work/ is the mounter's alone
    expect((await lstat(join(ENV!.home, 'stratafs', 'w', 'work'))).mode & 0o777).toBe(0o700);
  });

  it('a plain user mounts over a workdir whose work/ a kernel mount or a crash left (mode 0, not empty)', async () => {
    const B = join(ENV!.home, 'stale');
    for (const d of ['l', 'u', 'w/work/#stale', 'm']) await mkdir(join(B, d), { recursive: true });
    await writeFile(join(B, 'l', 'f'), 'hello\n');
    await writeFile(join(B, 'w', 'work', '#stale', 'file'), 'left over\n');
    await chownToUser(ENV!, B);
    await chmod(join(B, 'w', 'work', '#stale'), 0);
    await chmod(join(B, 'w', 'work'), 0);
    const r = await runAsUser(ENV!, `
"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr ${B}/m || exit 3
trap '"$STRATAFS" umount ${B}/m' EXIT
echo more >> ${B}/m/f && cat ${B}/m/f
`);
    expectNothingLeft(r);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('hello\nmore\n');
    expect((await lstat(join(B, 'w', 'work'))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(B, 'w', 'work'))).toEqual([]);
  });

  it('fuse-overlayfs, mounted by the same user, shows the same merged view', async () => {
    const r = await runAsUser(ENV!, userScript('fuse-overlayfs'), { timeoutMs: 60_000 });
    runs.set('fuse-overlayfs', r);
    expectNothingLeft(r);
    expect(r.code, r.stderr).toBe(0);
    const s = runs.get('stratafs');
    if (!s) throw new Error('the stratafs run did not happen');
    // fuse-overlayfs gives EXDEV for rename(2) of a lower directory (mv copies instead); every other step works.
    // Beneath read-only directories it fails with EACCES (1.10 copies up with the mounter's rights only): not compared.
    const main = (out: string): string[] => stepLines(out).slice(0, -RO_COUNT);
    expect(main(r.stdout)).toEqual(main(s.stdout).map((l) => (l === 'rename2 ok' ? 'rename2 EXDEV' : l)));
    expect(between(r.stdout, 'merged')).toBe(between(s.stdout, 'merged'));
  });

  it('kernel overlayfs reads the upper stratafs wrote as the same merged view', async () => {
    const s = runs.get('stratafs');
    if (!s) throw new Error('the stratafs run did not happen');
    const B = join(ENV!.home, 'stratafs');
    expect(await judgeView(ENV!, 'kernel', 'stratafs', join(B, 'u'), join(B, 'l'), true)).toBe(between(s.stdout, 'merged-ro'));
  });

  it('stratafs reads the upper fuse-overlayfs wrote as fuse-overlayfs showed it', async () => {
    // Kernel overlayfs does not: rootless fuse-overlayfs 1.10 marks opaque directories with
    // user.fuseoverlayfs.opaque and a .wh..wh..opq file, which the kernel shows as a plain file
    // (and the lower entries beneath). stratafs reads every format.
    const f = runs.get('fuse-overlayfs');
    if (!f) throw new Error('the fuse-overlayfs run did not happen');
    const B = join(ENV!.home, 'fuse-overlayfs');
    expect(await judgeView(ENV!, 'stratafs', 'fuse-overlayfs', join(B, 'u'), join(B, 'l'), true)).toBe(between(f.stdout, 'merged-ro'));
  });

  it('as uid 0 of `unshare -Urm`: stratafs and kernel overlayfs (userxattr) in the same user namespace agree', async () => {
    const B = join(ENV!.home, 'userns');
    const inner = `${SNAP}
set -u
M=${B}/km
mount -t overlay -o lowerdir=${B}/l,upperdir=${B}/ku,workdir=${B}/kw,userxattr kernel ${B}/km || exit 5
${STEPS}
${RO_STEPS}
echo '--- kernel begin'; snap "$M" -; echo '--- kernel end'
umount ${B}/km
M=${B}/m
"$STRATAFS" -o lowerdir=${B}/l,upperdir=${B}/u,workdir=${B}/w,userxattr ${B}/m || exit 3
trap '"$STRATAFS" umount ${B}/m' EXIT
grep -q " ${B}/m " /proc/self/mountinfo || { echo "not mounted"; exit 4; }
echo "fstype $(awk '$5 == "'${B}/m'" { for (i = 7; $i != "-"; i++); print $(i+1) }' /proc/self/mountinfo)"
${STEPS}
${RO_STEPS}
echo '--- merged begin'; snap "$M" -; echo '--- merged end'
`;
    await writeFile(join(ENV!.tmp, 'userns.sh'), inner);
    await chownToUser(ENV!, join(ENV!.tmp, 'userns.sh'));
    const r = await runAsUser(ENV!, `id -u; unshare -Urm bash ${join(ENV!.tmp, 'userns.sh')}`, { timeoutMs: 60_000 });
    expectNothingLeft(r);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('fstype fuse.stratafs');
    const lines = stepLines(r.stdout);
    const half = lines.length / 2;
    const [kernelSteps, stratafsSteps] = [lines.slice(0, half), lines.slice(half)];
    // the kernel refuses redirect_dir with userxattr (nofollow): EXDEV, and mv copies; stratafs renames
    expect(kernelSteps).toContain('rename2 EXDEV');
    expect(stratafsSteps).toEqual(kernelSteps.map((l) => (l === 'rename2 EXDEV' ? 'rename2 ok' : l)));
    expect(stratafsSteps).toEqual(ALL_OK);
    expect(between(r.stdout, 'merged')).toBe(between(r.stdout, 'kernel'));
    const facts = await upperFacts(join(B, 'u'));
    expect(facts.filter((l) => l.startsWith('wh-file'))).toEqual([]);
    expect(await judgeView(ENV!, 'kernel', 'userns', join(B, 'u'), join(B, 'l'), false)).toBe(between(r.stdout, 'merged'));
  });
});
