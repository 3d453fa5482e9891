/**
 * Rootless podman on each overlay driver, as a bare user in the rootless
 * environment of test/harness/rootless.ts (private mount and PID namespaces,
 * /dev/fuse a 0666 node of the namespace, scratch /etc/{passwd,group,subuid,
 * subgid}, HOME in scratch, nothing changed on the host). The storage.conf is
 * the README's rootless snippet with the mount program's path filled in
 * (stratafs, fuse-overlayfs; without the line: the kernel driver).
 *
 * Per driver, one script as the user: `podman import` of the busybox image,
 * `podman run` (uid 0 of the user namespace), `--userns=keep-id` (the user's
 * own uid inside: `id`, `ls -ln /etc/passwd`, a file it creates, and that
 * file's owner on disk), `--uidmap 0:1:5000`, `podman rm`/`rmi`, and podman's
 * pause process ended by the PID in its pause.pid. stratafs must show what
 * fuse-overlayfs shows (containers/storage passes both the same uidmapping=
 * options) and leave the same owners on disk; nothing may be left in the
 * namespace (mount, daemon, conmon, pause).
 *
 * XDG_RUNTIME_DIR is a short path in the namespace's own /tmp (a tmpfs that
 * dies with it): podman's `container cleanup` refuses a run root longer than
 * 50 characters, and the run root is $XDG_RUNTIME_DIR/containers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildBaseTar, DRIVERS, missingTools, writeMountProgram, type Driver } from '../harness/containers.js';
import { REPO_ROOT } from '../harness/mounts.js';
import { hostFingerprint, makeRootlessEnv, rootlessProblem, runAsUser, type RootlessEnv, type RootlessRun } from '../harness/rootless.js';

const problem = (await rootlessProblem())
  ?? (missingTools(['podman', 'runc', 'conmon', 'busybox', 'fuse-overlayfs']).length > 0
    ? `missing: ${missingTools(['podman', 'runc', 'conmon', 'busybox', 'fuse-overlayfs']).join(' ')}`
    : !existsSync('/usr/bin/newuidmap') ? 'missing: uidmap' : undefined);

interface Step { rc: number; ms: number; out: string; err: string }
interface Result { run: RootlessRun; steps: Map<string, Step>; argv: string[]; disk: Map<string, string>; pause: string[] }
const results = new Map<Driver, Result>();
let env: RootlessEnv;
let tar = '';
let fingerprint = '';

function readmeRootlessConf(): string {
  const text = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = text.indexOf('\n## Use with podman and buildah');
  const end = text.indexOf('\n## ', start + 1);
  const blocks = [...text.slice(start, end < 0 ? undefined : end).matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  if (blocks.length !== 2) throw new Error(`README: expected 2 storage.conf blocks in "Use with podman and buildah", found ${blocks.length}`);
  return blocks[1]!;
}

const STEPS = `
set -u
mkdir -m 700 /tmp/xdg
# as a user's session has it: no STRATAFS_RUNTIME_DIR; stratafs, run by podman as uid 0 of a user
# namespace, must find a directory it can write by itself ($XDG_RUNTIME_DIR/stratafs, in /tmp here)
unset STRATAFS_RUNTIME_DIR
out=$OUTDIR
step() { # step NAME CMD...: stdout, stderr, exit code and wall time of one client command
  local name=$1; shift
  local t0; t0=$(date +%s%N)
  "$@" > "$out/$name.out" 2> "$out/$name.err"
  local rc=$?
  echo "$name $rc $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$out/steps"
}
PROBE='id; ls -ln /etc/passwd | tr -s " " | cut -d" " -f1,3,4; grep " / " /proc/mounts | cut -d" " -f3'
# A container's output is taken from \`podman logs\` (conmon's log file): attaching to a container that
# exits at once can lose its output (seen once in ten runs, with fuse-overlayfs).
probe() { # probe NAME PODMAN-RUN-ARGS...
  local name=$1; shift
  step "$name" podman run --name "$name" --pull=never --network=none "$@"
  podman logs "$name" > "$out/$name.log" 2>&1
}
step import podman import "$TAR" localhost/base:1
probe run localhost/base:1 sh -c "$PROBE; echo x > /tmp/f && ls -ln /tmp/f | tr -s ' ' | cut -d' ' -f3,4"
probe keepid --userns=keep-id localhost/base:1 sh -c "$PROBE; echo x > /tmp/mine && ls -ln /tmp/mine | tr -s ' ' | cut -d' ' -f3,4; mkdir /tmp/minedir; ls -ln /home | tr -s ' ' | cut -d' ' -f1,3,4,9"
# owners on disk of what the keep-id container made, as the mount program sees them (podman's user namespace)
upper=$(podman inspect --format '{{.GraphDriver.Data.UpperDir}}' keepid 2>/dev/null)
for p in tmp/mine tmp/minedir etc/passwd; do
  echo "$p $(podman unshare stat -c '%u:%g %a' "$upper/$p" 2>&1 | sed "s#$upper/##")" >> "$out/keepid.disk"
done
probe uidmap --uidmap 0:1:5000 localhost/base:1 sh -c "$PROBE; echo x > /tmp/f && ls -ln /tmp/f | tr -s ' ' | cut -d' ' -f3,4"
step rm podman rm -af
step rmi podman rmi -af
[ -d "$XDG_RUNTIME_DIR/stratafs" ] && echo "runtime-dir $XDG_RUNTIME_DIR/stratafs" >> "$out/steps"
pause=$(cat "$XDG_RUNTIME_DIR/libpod/tmp/pause.pid" 2>/dev/null)
if [ -n "$pause" ]; then
  kill "$pause"
  for _ in $(seq 50); do kill -0 "$pause" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pause" 2>/dev/null && echo "pause $pause still alive" >> "$out/steps"
  echo "pause $pause ended" >> "$out/steps"
fi
`;

async function runDriver(d: Driver): Promise<Result> {
  const dir = join(env.dir, d);
  await mkdir(dir);
  await chmod(dir, 0o755);
  const outDir = join(env.tmp, `out-${d}`);
  const argvLog = join(env.tmp, `argv-${d}`);
  let conf = readmeRootlessConf();
  if (d === 'kernel') conf = conf.replace(/^mount_program = .*\n/m, '');
  else {
    // a wrapper that logs containers/storage's argv, then runs the program (bin/stratafs for stratafs)
    const prog = join(dir, 'mount-program');
    await writeMountProgram(prog, d, argvLog);
    conf = conf.replaceAll('/usr/local/bin/stratafs', prog);
  }
  await writeFile(join(dir, 'storage.conf'), conf);
  // runc (crun refuses this machine's cgroups), no systemd, no journald; ulimits as in the rootful tests
  await writeFile(join(dir, 'containers.conf'), '[containers]\nnetns = "none"\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
  const run = await runAsUser(env, `mkdir -p "$OUTDIR"\n${STEPS}`, {
    timeoutMs: 240_000,
    env: {
      OUTDIR: outDir, TAR: tar,
      CONTAINERS_CONF: join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
      XDG_RUNTIME_DIR: '/tmp/xdg',
      // a separate graph root per driver, so that the drivers never share a store
      XDG_DATA_HOME: join(env.home, `data-${d}`),
    },
  });
  const steps = new Map<string, Step>();
  const pause: string[] = [];
  const lines = (await readFile(join(outDir, 'steps'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  for (const l of lines) {
    const [name, rc, ms] = l.split(' ');
    if (name === 'pause' || name === 'runtime-dir') {
      pause.push(l);
      continue;
    }
    steps.set(name!, {
      rc: Number(rc), ms: Number(ms),
      // a container's output from `podman logs` when there is one, else the command's stdout
      out: await readFile(join(outDir, `${name}.log`), 'utf8').catch(() => readFile(join(outDir, `${name}.out`), 'utf8')).catch(() => ''),
      err: await readFile(join(outDir, `${name}.err`), 'utf8').catch(() => ''),
    });
  }
  const disk = new Map<string, string>();
  for (const l of (await readFile(join(outDir, 'keepid.disk'), 'utf8').catch(() => '')).split('\n').filter(Boolean)) {
    const i = l.indexOf(' ');
    disk.set(l.slice(0, i), l.slice(i + 1));
  }
  return { run, steps, argv: (await readFile(argvLog, 'utf8').catch(() => '')).split('\n').filter(Boolean), disk, pause };
}

describe.skipIf(problem !== undefined)(`rootless podman on each overlay driver${problem ? ` (${problem})` : ''}`, () => {
  beforeAll(async () => {
    fingerprint = await hostFingerprint();
    env = await makeRootlessEnv('clients-rootless');
    const img = join(env.dir, 'img');
    await mkdir(img);
    await chmod(img, 0o755);
    tar = await buildBaseTar(img);
    await chmod(tar, 0o644);
  }, 60_000);

  afterAll(async () => {
    expect(await hostFingerprint()).toBe(fingerprint);
    const lines: string[] = [];
    for (const [d, r] of results) {
      for (const [name, s] of r.steps) lines.push(`${name.padEnd(10)} ${d.padEnd(15)} ${s.rc === 0 ? 'ok' : `FAIL(${s.rc})`} ${(s.ms / 1000).toFixed(2)}s`);
    }
    console.log(`rootless podman matrix (wall time per step):\n${lines.join('\n')}`);
    if (process.env.STRATAFS_CLIENT_MATRIX) {
      const rows = [...results].flatMap(([driver, r]) => [...r.steps].map(([step, s]) => JSON.stringify({ mode: 'rootless', step: `podman ${step}`, driver, ok: s.rc === 0, ms: s.ms })));
      await appendFile(process.env.STRATAFS_CLIENT_MATRIX, rows.map((x) => x + '\n').join(''));
    }
  });

  // the README's claim that stratafs needs nothing more than fuse-overlayfs: one line in storage.conf
  describe.each(DRIVERS)('%s', (d) => {
    it('import, run, --userns=keep-id, --uidmap, rm; the pause process ended; nothing left', async () => {
      const r = await runDriver(d);
      results.set(d, r);
      expect(r.run.setupError).toBeUndefined();
      expect(r.run.code, r.run.stderr).toBe(0);
      const step = (name: string): Step => {
        const s = r.steps.get(name);
        expect(s, `step ${name} ran`).toBeDefined();
        return s!;
      };
      for (const name of ['import', 'run', 'keepid', 'rm', 'rmi']) {
        const s = step(name);
        expect(s.rc, `${d} ${name}: ${s.err.trim().slice(-1500)}`).toBe(0);
      }
      const fsType = d === 'kernel' ? 'overlay' : `fuse.${d}`;
      expect(step('run').out).toBe(`uid=0(root) gid=0(root)\n-rw-r--r-- 0 0\n${fsType}\n0 0\n`);
      // keep-id: the user's uid inside, podman's /etc/passwd entry for it, files it makes are its own
      const uid = env.user.uid;
      expect(step('keepid').out).toMatch(new RegExp(`^uid=${uid}\\(${env.user.name}\\) gid=${uid}\\(${env.user.name}\\)[^\\n]*\\n-rw-r--r-- 0 0\\n${fsType}\\n${uid} ${uid}\\n`));
      console.log(`${d} keep-id, owners in the upper (podman's user namespace): ${[...r.disk].map(([p, v]) => `${p} ${v}`).join(', ')}`);
      // podman's pause process (it holds the user namespace) ended by its PID, then nothing else was left:
      // no mount, conmon, or mount daemon in the namespace
      expect(r.pause.filter((l) => l.startsWith('pause '))).toHaveLength(1);
      expect(r.pause).toContainEqual(expect.stringMatching(/^pause \d+ ended$/));
      if (d === 'stratafs') expect(r.pause).toContain('runtime-dir /tmp/xdg/stratafs');
      expect(r.run.leftovers).toEqual([]);
      expect(r.run.survivors).toEqual([]);
      if (d !== 'kernel') expect(r.argv.some((a) => a.includes('uidmapping='))).toBe(true);
      if (d === 'stratafs') {
        const fo = results.get('fuse-overlayfs');
        expect(fo, 'fuse-overlayfs ran first').toBeDefined();
        for (const name of ['run', 'keepid']) {
          expect(step(name).out.replaceAll('fuse.stratafs', 'FUSE')).toBe(fo!.steps.get(name)!.out.replaceAll('fuse.fuse-overlayfs', 'FUSE'));
        }
        expect([...r.disk]).toEqual([...fo!.disk]);
      }
    }, 300_000);

    it('--uidmap 0:1:5000', async () => {
      const r = results.get(d);
      expect(r, 'the run above').toBeDefined();
      const s = r!.steps.get('uidmap')!;
      const fo = results.get('fuse-overlayfs')?.steps.get('uidmap');
      if (d === 'stratafs' && fo?.rc === 0) {
        expect(s.rc, s.err).toBe(0);
        expect(s.out.replaceAll('fuse.stratafs', 'FUSE')).toBe(fo.out.replaceAll('fuse.fuse-overlayfs', 'FUSE'));
      } else {
        // recorded for the matrix; fuse-overlayfs's and the kernel driver's result as they are
        console.log(`${d} --uidmap 0:1:5000: rc ${s.rc} ${s.out.trim()} ${s.err.trim().slice(-300)}`);
      }
    });
  });
});
