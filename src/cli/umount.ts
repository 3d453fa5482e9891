/**
 * `stratafs umount [--force] MOUNTPOINT`, run in a process that does not serve the
 * mount. Plain: umount2 as root (no fusermount needed), `fusermount3 -u` otherwise
 * (native/fuse-mount.ts unmountPath, as the daemon itself unmounts),
 * then wait until the daemon has exited so that the upper/workdir lock is free for
 * the next mount. --force: for a mount whose daemon died (ENOTCONN) or hangs:
 * abort the FUSE connection through fusectl, detach the mount, and end a daemon
 * that is still there. Nothing here stats the mountpoint (a hung mount would
 * block the stat): the mount is found in /proc/self/mountinfo.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { fromText } from '../shared/bstr.js';
import { isFsError } from '../shared/errors.js';
import { unmountPath } from '../native/fuse-mount.js';
import { findMount, isFuse, readMounts, resolveMountpointArg, type MountEntry } from './mountinfo.js';
import { daemonAlive, readDaemonInfo, removeQuietly, runtimeFiles, type DaemonInfo } from './runtime.js';

const run = promisify(execFile);
/** the mount table's type of every stratafs mount (libfuse subtype=stratafs, both APIs) */
const STRATAFS_FSTYPE = 'fuse.stratafs';
const FUSECTL = '/sys/fs/fuse/connections';

export class UmountError extends Error {
  constructor(problem: string, p: string) {
    super(`${problem}: ${p}`);
    this.name = 'UmountError';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** unmountPath (the one unmount: umount2 as root, fusermount3 as a child otherwise) with its errors named */
async function detach(mnt: string, lazy: boolean): Promise<void> {
  try {
    await unmountPath(fromText(mnt), { lazy });
  } catch (e) {
    if (isFsError(e)) {
      if (e.code === 'EBUSY') throw new UmountError('mount is busy (files open or a process inside it)', mnt);
      if (e.code === 'EINVAL') throw new UmountError('not a mountpoint', mnt);
      throw new UmountError(`umount failed (${e.code})`, mnt);
    }
    throw new UmountError(e instanceof Error ? e.message : String(e), mnt);
  }
}

/** wait until the daemon process is gone; true if it went */
async function waitGone(info: DaemonInfo, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (daemonAlive(info)) {
    if (Date.now() > end) return false;
    await sleep(25);
  }
  return true;
}

/** The fusectl connection number of a FUSE mount: its kernel dev_t (major 0 for anonymous devices). */
export function connectionId(m: MountEntry): number {
  return m.major * 2 ** 20 + m.minor;
}

export async function ensureFusectl(): Promise<void> {
  const mounts = await readMounts();
  if (mounts.some((m) => m.fstype === 'fusectl')) return;
  try {
    await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL]);
  } catch (e) {
    const msg = String((e as { stderr?: unknown }).stderr ?? e).trim().split('\n')[0];
    throw new UmountError(`cannot mount fusectl (${msg})`, FUSECTL);
  }
}

/** Abort a FUSE connection: every pending and future request fails with ECONNABORTED. */
export async function abortConnection(m: MountEntry): Promise<void> {
  await ensureFusectl();
  const file = `${FUSECTL}/${connectionId(m)}/abort`;
  try {
    await fsp.writeFile(file, '1');
  } catch (e) {
    // gone already: the connection ended between reading mountinfo and here
    if ((e as { code?: unknown }).code !== 'ENOENT') throw new UmountError(`cannot abort the FUSE connection (${String((e as { code?: unknown }).code)})`, file);
  }
}

/**
 * Clean a dead or hung FUSE mount at mnt (an absolute path as mountinfo shows it):
 * abort, detach lazily, end the daemon if it is still there. Used by
 * `umount --force` and by mounting with -o force.
 */
export async function forceClean(mnt: string, log: (s: string) => void = () => {}): Promise<void> {
  const m = findMount(await readMounts(), mnt);
  const files = runtimeFiles(mnt);
  const info = readDaemonInfo(files.info);
  if (m === undefined) throw new UmountError('not mounted', mnt);
  if (isFuse(m)) await abortConnection(m);
  await detach(mnt, true);
  if (info !== undefined && daemonAlive(info)) {
    // An aborted connection ends a healthy daemon's loop; one that hangs in JS never notices.
    if (!(await waitGone(info, 2000))) {
      log(`stratafs: daemon ${info.pid} did not exit after the abort; killing it`);
      try { process.kill(info.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
      await waitGone(info, 2000);
    }
  }
  if (info === undefined || !daemonAlive(info)) {
    removeQuietly(files.sock);
    removeQuietly(files.info);
  }
}

export async function umountCommand(mountpointArg: string, force: boolean, log: (s: string) => void): Promise<void> {
  const mnt = await resolveMountpointArg(mountpointArg);
  if (force) return forceClean(mnt, log);
  const m = findMount(await readMounts(), mnt);
  if (m === undefined) throw new UmountError('not mounted', mnt);
  const info = readDaemonInfo(runtimeFiles(mnt).info);
  // Another FUSE file system (a fuse-overlayfs mount, say) is not ours to end: only with --force.
  if (!isFuse(m) || (m.fstype !== STRATAFS_FSTYPE && info === undefined)) {
    throw new UmountError(`not a stratafs mount (${m.fstype}${isFuse(m) ? '; --force unmounts it anyway' : ''})`, mnt);
  }
  await detach(mnt, false);
  if (info !== undefined && daemonAlive(info) && !(await waitGone(info, 10_000))) {
    log(`stratafs: unmounted, but daemon ${info.pid} is still running`);
  }
}
