// Test-side control of test/harness/binding-fs.mjs: start it as a child
// process on a fresh mountpoint, wait for READY, read its handler log, and
// clean up whatever state it ends in (unmount, kill, fusectl abort).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const FIXTURE = join(REPO, 'test', 'harness', 'binding-fs.mjs');

/** The fixture imports dist/native/fuse.js: compile when src is newer. */
export function ensureBuilt() {
  const out = join(REPO, 'dist', 'native', 'fuse.js');
  const src = join(REPO, 'src', 'native', 'fuse.ts');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return;
  // tsc emits even when another part of the tree does not type-check yet
  spawnSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'tsconfig.json')], { stdio: 'ignore' });
  if (!existsSync(out)) throw new Error('dist/native/fuse.js missing after tsc');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function mountinfoAt(mnt) {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter((l) => l.split(' ')[4] === mnt);
}

async function sh(cmd, args, timeoutMs = 5000) {
  return new Promise((res) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => { clearTimeout(t); res(code); });
    c.on('error', () => { clearTimeout(t); res(-1); });
  });
}

/**
 * Abort the FUSE connection of mnt through fusectl, then lazy-unmount it. Where fusectl
 * is not mounted, it is mounted in a private mount namespace for the abort only (a test
 * never leaves a fusectl mount on the host).
 */
export async function forceUnmount(mnt) {
  for (const line of await mountinfoAt(mnt)) {
    const minor = Number(line.split(' ')[2].split(':')[1]);
    const abort = `/sys/fs/fuse/connections/${minor}/abort`;
    if (existsSync(abort)) await writeFile(abort, '1').catch(() => undefined);
    else await sh('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t fusectl fusectl /sys/fs/fuse/connections && echo 1 > ${abort}`]);
    await sh('umount', ['-l', mnt]);
  }
}

/**
 * Starts the fixture. `options` go to the Fuse wrapper; `extra` to the fixture.
 * `dir` (optional) is the parent of the mountpoint.
 */
export async function startFixture(options = {}, extra = {}, where = {}) {
  const base = await mkdtemp(join(tmpdir(), 'stratafs-binding-'));
  // uid 1000 must reach the mount in the caller-identity test
  await chmod(base, 0o755);
  const mnt = where.mnt ?? join(base, 'mnt');
  await mkdir(mnt, { recursive: true });
  const log = join(base, 'log.jsonl');
  await writeFile(log, '');
  const child = spawn(process.execPath, [FIXTURE, JSON.stringify({ mnt, log, options, ...extra })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  let done = false;
  void exited.then(() => { done = true; });

  const deadline = Date.now() + 15_000;
  while (!stdout.includes('READY')) {
    if (done || Date.now() > deadline) {
      await forceUnmount(mnt);
      child.kill('SIGKILL');
      throw new Error(`fixture did not mount: ${stderr.trim() || stdout.trim()}`);
    }
    await sleep(20);
  }

  let logOffset = 0;
  const fx = {
    base, mnt, log, child, exited,
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    get alive() { return !done; },
    /** Handler calls logged since the last mark(). */
    async entries() {
      const text = await readFile(log, 'latin1');
      // The log is UTF-8 JSON of latin1 byte strings: decode as UTF-8 first.
      return Buffer.from(text, 'latin1').toString('utf8').slice(logOffset).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    async mark() {
      logOffset = Buffer.from(await readFile(log, 'latin1'), 'latin1').toString('utf8').length;
    },
    /** Unmount (SIGTERM lets the fixture unmount itself), then make sure nothing is left. */
    async stop(keepFiles = false) {
      if (!done) {
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
      }
      if ((await mountinfoAt(mnt)).length) {
        if ((await sh('umount', [mnt])) !== 0) await forceUnmount(mnt);
      }
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
      if (!keepFiles && (await mountinfoAt(mnt)).length === 0) await rm(base, { recursive: true, force: true });
    },
  };
  return fx;
}

/**
 * Starts the fixture with options that must make mount() fail; returns how it
 * ended and the mounts it left at its mountpoint (checked before any cleanup).
 */
export async function failingFixture(options) {
  const base = await mkdtemp(join(tmpdir(), 'stratafs-binding-'));
  const mnt = join(base, 'mnt');
  await mkdir(mnt);
  const log = join(base, 'log.jsonl');
  const child = spawn(process.execPath, [FIXTURE, JSON.stringify({ mnt, log, options })], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const t0 = Date.now();
  const ended = await Promise.race([
    new Promise((res) => child.on('exit', (code) => res({ code }))),
    sleep(15_000).then(() => ({ code: 'timeout' })),
  ]);
  const ms = Date.now() - t0;
  const mountsLeft = (await mountinfoAt(mnt)).length;
  await forceUnmount(mnt);
  if (ended.code === 'timeout') child.kill('SIGKILL');
  await rm(base, { recursive: true, force: true });
  return { code: ended.code, stdout, stderr, ms, mountsLeft };
}
