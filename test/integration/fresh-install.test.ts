/**
 * The install on a "fresh machine": in a private mount namespace where the
 * system's libfuse.so.2, fusermount and fusermount3 are hidden by bind mounts of
 * an empty file, `npm ci` of a clean copy of this repo (tracked + uncommitted
 * files) builds everything, and then, as root and without fusermount:
 *  - the wrapper (src/native/fuse.ts) mounts, serves a read and unmounts,
 *  - the stratafs CLI mounts an overlay, the lower file is visible, and
 *    `stratafs umount` removes it,
 * and as uid 1000 the mount fails at once naming the package to install.
 * Nothing is uninstalled: the bind mounts vanish with the namespace. It passes
 * with or without Debian's FUSE packages (libfuse2, fuse3) installed: whether a
 * system libfuse.so.2 is usable is asked of the dynamic loader itself (dlopen), not
 * of `ldconfig -p`, whose cache still lists the hidden files.
 *
 * In that namespace the whole host is read-only except this test's scratch
 * directory (test/harness/sandbox.ts readOnlyHostPrelude: a read-only remount
 * of every mount, scratch bind-mounted writable first): npm, node-gyp and the
 * CLI cannot write outside it; npm's cache is read through an overlay whose
 * upper is in scratch.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shq } from '../harness/proc.js';
import { readOnlyHostPrelude } from '../harness/sandbox.js';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function runScript(script: string, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    // -m: own mount namespace; --propagation private: our bind mounts never leak out
    const c = spawn('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => { clearTimeout(t); res({ code, out }); });
  });
}

const marker = (out: string, name: string): string | undefined =>
  out.split('\n').find((l) => l.startsWith(name + ' '))?.slice(name.length + 1);

describe('fresh-machine install', () => {
  let base: string | undefined;
  afterAll(async () => {
    if (!base) return;
    // any process still using the copy is ours: the daemons started from it
    const left = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
      .split('\n').filter((l) => l.includes(base!)).map((l) => Number(l.trim().split(/\s+/)[0]));
    for (const pid of left) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await rm(base, { recursive: true, force: true });
  });

  it('npm ci in a namespace without libfuse2/fusermount builds, mounts and unmounts as root', async () => {
    base = await mkdtemp(join(tmpdir(), 'stratafs-fresh-'));
    await chmod(base, 0o755);
    const repo = join(base, 'repo');
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO })
      .toString('utf8').split('\0').filter(Boolean)
      .filter((f) => !/^(node_modules|dist|build)\//.test(f) && !f.includes('/build/'));
    for (const f of files) {
      const src = join(REPO, f);
      if (!existsSync(src) || !lstatSync(src).isFile()) continue; // deleted in the work tree
      await mkdir(dirname(join(repo, f)), { recursive: true });
      await copyFile(src, join(repo, f));
    }
    const empty = join(base, 'empty');
    await writeFile(empty, '');
    for (const d of ['l', 'u', 'w', 'm1', 'm2', 'm3']) await mkdir(join(base, d));
    await writeFile(join(base, 'l', 'hello'), 'from the lower layer\n');
    await chmod(join(base, 'm3'), 0o777);
    const fixture = join(repo, 'test', 'harness', 'binding-fresh-mount.mjs');
    // the user's real cache (the run points npm_config_cache at scratch), so that npm ci needs no network
    const { npm_config_cache: _, ...npmEnv } = process.env;
    const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { cwd: repo, env: npmEnv, encoding: 'utf8' }).trim();

    const script = `
set -u
cd ${repo}
for f in /usr/lib/x86_64-linux-gnu/libfuse.so.2* /lib/x86_64-linux-gnu/libfuse.so.2* /usr/bin/fusermount /bin/fusermount /usr/bin/fusermount3 /bin/fusermount3; do
  if [ -e "$f" ]; then mount --bind ${empty} "$f" && echo "HIDDEN $f"; fi
done
# everything read-only but scratch: npm's cache through an overlay with its upper in scratch
mkdir -p ${base}/npm-upper ${base}/npm-work ${base}/tmp ${base}/npm-logs
export TMPDIR=${base}/tmp npm_config_logs_dir=${base}/npm-logs STRATAFS_RUNTIME_DIR=${base}/run
npmcache=${shq(npmCache)}
if [ -d "$npmcache" ]; then mount -t overlay overlay -o lowerdir="$npmcache",upperdir=${base}/npm-upper,workdir=${base}/npm-work "$npmcache" || echo "NPM_CACHE_OVERLAY failed"; fi
export npm_config_cache="$npmcache"
${readOnlyHostPrelude(existsSync(npmCache) ? [base, npmCache] : [base])}
# access(W_OK) answers EROFS for a read-only mount, also to root: nothing is written to find out
echo "HOST_WRITABLE $( { [ -w /etc ] || [ -w /root ] || [ -w /tmp ] || [ -w /var/tmp ] || [ -w /usr/local ]; } && echo yes || echo no)"
echo "FUSERMOUNT_USABLE $(command -v fusermount >/dev/null && [ -x "$(command -v fusermount)" ] && [ -s "$(command -v fusermount)" ] && echo yes || echo no)"
# the loader's own answer: ldconfig -p would still list a hidden libfuse.so.2 of an installed libfuse2
echo "SYSTEM_LIBFUSE2 $(node -e 'try { process.dlopen({ exports: {} }, "libfuse.so.2"); console.log("usable") } catch (e) { console.log(/self-register/.test(e.message) ? "usable" : "absent") }')"
echo "LDCONFIG_LISTS_LIBFUSE2 $(ldconfig -p | grep -c 'libfuse.so.2 ' || true)"
npm ci --no-audit --no-fund > ${base}/npm-ci.log 2>&1
echo "NPM_CI $?"
echo "LIBFUSE_RESOLVED $(ldd node_modules/fuse-native/build/Release/fuse.node | awk '/libfuse/ {print $3}')"
echo "WRAPPER $(timeout 60 node ${fixture} ${repo} ${base}/m1)"
timeout 60 node dist/cli/main.js -o lowerdir=${base}/l,upperdir=${base}/u,workdir=${base}/w ${base}/m2 > ${base}/cli-mount.log 2>&1
echo "CLI_MOUNT $?"
echo "CLI_READ $(timeout 10 cat ${base}/m2/hello)"
timeout 30 node dist/cli/main.js umount ${base}/m2 > ${base}/cli-umount.log 2>&1
echo "CLI_UMOUNT $?"
sleep 1
echo "MOUNTS_LEFT $(awk -v b='${base}/' 'index($5, b) == 1' /proc/self/mountinfo | wc -l)"
echo "NONROOT $(timeout 30 setpriv --reuid=1000 --regid=1000 --clear-groups node ${fixture} ${repo} ${base}/m3)"
`;
    const { code, out } = await runScript(script, 15 * 60_000);
    const tail = async (f: string): Promise<string> => (existsSync(f) ? (await readFile(f, 'utf8')).split('\n').slice(-15).join('\n') : '');
    const ctx = `${out}\n--- npm ci:\n${await tail(join(base, 'npm-ci.log'))}\n--- cli mount:\n${await tail(join(base, 'cli-mount.log'))}\n--- cli umount:\n${await tail(join(base, 'cli-umount.log'))}`;

    expect(code, ctx).toBe(0);
    expect(marker(out, 'FUSERMOUNT_USABLE'), ctx).toBe('no');
    expect(marker(out, 'HOST_WRITABLE'), ctx).toBe('no');
    expect(marker(out, 'SYSTEM_LIBFUSE2'), ctx).toBe('absent');
    expect(marker(out, 'NPM_CI'), ctx).toBe('0');
    expect(marker(out, 'LIBFUSE_RESOLVED'), ctx).toBe(join(repo, 'node_modules/fuse-native/build/Release/libfuse.so.2'));

    const wrapper = JSON.parse(marker(out, 'WRAPPER') ?? '{}') as Record<string, unknown>;
    expect(wrapper, ctx).toMatchObject({ uid: 0, mounted: true, read: 'fresh\n', exited: true });

    expect(marker(out, 'CLI_MOUNT'), ctx).toBe('0');
    expect(marker(out, 'CLI_READ'), ctx).toBe('from the lower layer');
    expect(marker(out, 'CLI_UMOUNT'), ctx).toBe('0');
    expect(marker(out, 'MOUNTS_LEFT'), ctx).toBe('0');

    const nonroot = JSON.parse(marker(out, 'NONROOT') ?? '{}') as Record<string, unknown>;
    expect(nonroot, ctx).toMatchObject({ uid: 1000, mounted: false });
    expect(String(nonroot.error), ctx).toContain('fuse3');
    // "fails, and does not hang": the answer above came at all (`timeout 30` guards the hang);
    // no bound on mountMs, which a loaded machine stretches
  }, 20 * 60_000);
});
