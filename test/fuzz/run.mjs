#!/usr/bin/env node
/**
 * npm run fuzz -- --minutes N [--seed S [--path P]] [--runs R] [--length L]
 *
 * Random operation sequences on kernel overlayfs and stratafs (test/fuzz/kernel.fuzz.ts)
 * until N minutes are up, with the suite's setup (run as root, like the tests). Everything
 * lives in a scratch directory of its own under the temp dir; on exit, failure or SIGINT/
 * SIGTERM, vitest's teardown removes the run's mounts and daemons, and this script then
 * removes whatever is still left under that scratch directory (mounts, processes naming
 * it) and the directory itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const usage = 'usage: npm run fuzz -- --minutes N [--seed S [--path P]] [--runs R] [--length L]';

const env = { ...process.env };
const names = { minutes: 'STRATAFS_FUZZ_MINUTES', seed: 'STRATAFS_FUZZ_SEED', path: 'STRATAFS_FUZZ_PATH', runs: 'STRATAFS_FUZZ_RUNS', length: 'STRATAFS_FUZZ_LENGTH' };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const m = /^--(minutes|seed|path|runs|length)(?:=(.*))?$/.exec(args[i]);
  if (!m) {
    console.error(`${args[i] === '--help' || args[i] === '-h' ? '' : `unknown argument ${args[i]}\n`}${usage}`);
    process.exit(args[i] === '--help' || args[i] === '-h' ? 0 : 2);
  }
  const v = m[2] ?? args[++i];
  const ok = m[1] === 'path' ? /^[0-9:]+$/.test(v ?? '') : /^[0-9]+(\.[0-9]+)?$/.test(v ?? '') && Number(v) > 0;
  if (!ok) {
    console.error(`--${m[1]} needs ${m[1] === 'path' ? "fast-check's path (digits and colons)" : 'a positive number'}\n${usage}`);
    process.exit(2);
  }
  env[names[m[1]]] = v;
}
if (env.STRATAFS_FUZZ_PATH && !env.STRATAFS_FUZZ_SEED) {
  console.error(`--path replays a case of one seed: give --seed too\n${usage}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('npm run fuzz mounts kernel overlayfs: run it as root (like the tests)');
  process.exit(2);
}

// The run's own scratch: vitest's setup puts its test root (and TMPDIR) inside.
const scratch = mkdtempSync(join(tmpdir(), 'sfz-'));
env.TMPDIR = scratch;
console.log(`fuzz: scratch ${scratch}`);

// vitest's setup mounts fusectl where it is missing and its teardown unmounts it; a ^C skips
// the teardown, so this script does it then.
const fusectlBefore = fusectlMounted();

const child = spawn(process.execPath, [join(repo, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', join(repo, 'test', 'vitest.fuzz.config.ts')], {
  cwd: repo,
  env,
  stdio: 'inherit',
  // its own process group: a terminal's ^C reaches this script only, which passes on one SIGINT
  detached: true,
});

let signalled;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // vitest stops its tests and runs its teardown on SIGINT; a second signal (or the hard
    // limit below) ends it, and the cleanup below removes what that left.
    if (!signalled) {
      signalled = sig;
      console.error(`fuzz: ${sig}: stopping (vitest tears down, then the scratch is removed)`);
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 120_000).unref();
    } else child.kill('SIGKILL');
  });
}

const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
// vitest's workers are in its process group and may outlive it after a signal: end them
// (by that group, which is ours) before looking for what they left.
await endGroup(child.pid);
// after a failure the case's files stay for a look (the report names them); mounts and daemons never
const keep = code !== 0 && !signalled;
const left = cleanup(scratch, keep);
if (signalled && !fusectlBefore && fusectlMounted()) {
  const r = spawnSync('umount', ['/sys/fs/fuse/connections'], { stdio: 'pipe', timeout: 30_000 });
  left.push(`fusectl mounted by the run's setup${r.status === 0 ? '' : ` (umount failed: ${String(r.stderr).trim()})`}`);
}
if (left.length) console.error(`fuzz: left under ${scratch} after vitest (removed now):\n  ${left.join('\n  ')}`);
if (keep) console.error(`fuzz: files of the run kept in ${scratch} (remove it when done)`);
process.exit(signalled ? 130 : code);

function fusectlMounted() {
  return readFileSync('/proc/self/mountinfo', 'latin1').split('\n').some((l) => l.includes(' - fusectl '));
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function endGroup(pgid) {
  for (const [sig, ms] of [['SIGTERM', 10_000], ['SIGKILL', 5_000]]) {
    if (!groupAlive(pgid)) return;
    try { process.kill(-pgid, sig); } catch { /* gone */ }
    const until = Date.now() + ms;
    while (Date.now() < until && groupAlive(pgid)) await new Promise((r) => setTimeout(r, 100));
  }
}

/** Mounts under dir (deepest first), from this process's mount table. */
function mountsUnder(dir) {
  const out = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    const sep = f.indexOf('-');
    if (mp === dir || mp.startsWith(dir + '/')) out.push({ mp, type: f[sep + 1] });
  }
  return out.sort((a, b) => b.mp.length - a.mp.length);
}

/** PIDs whose command line names dir: the run's daemons (the name is unique to this run). */
function pidsNaming(dir) {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'latin1');
      if (cmd.split('\0').some((a) => a.includes(dir))) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function cleanup(dir, keepFiles) {
  const left = [];
  for (let round = 0; round < 3; round++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    for (const m of mounts) {
      if (round === 0) left.push(`mount: ${m.type} at ${m.mp}`);
      // a FUSE mount whose daemon hangs: the CLI's forced unmount aborts it through fusectl
      const r = m.type.startsWith('fuse')
        ? spawnSync(process.execPath, [join(repo, 'dist', 'cli', 'main.js'), 'umount', '--force', m.mp], { stdio: 'pipe', timeout: 30_000 })
        : spawnSync('umount', [m.mp], { stdio: 'pipe', timeout: 30_000 });
      if (r.status !== 0) spawnSync('umount', ['-l', m.mp], { stdio: 'pipe', timeout: 30_000 });
    }
  }
  const pids = pidsNaming(dir);
  for (const p of pids) {
    left.push(`process ${p}`);
    try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }
  const still = mountsUnder(dir);
  if (still.length) {
    // never remove files below a mount: leave the directory for a look by hand
    left.push(`still mounted, ${dir} kept: ${still.map((m) => m.mp).join(' ')}`);
    return left;
  }
  if (!keepFiles) rmSync(dir, { recursive: true, force: true });
  return left;
}
