/**
 * The mount configuration checked against the file system, reading only: every bad input is
 * reported before anything is created or changed on disk (by the CLI or the library entry).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, type MountConfig } from '../fuse/config.js';
import { findMount, isFuse, readMountsSync, resolveMountpointArgSync } from './mountinfo.js';
import { daemonAlive, readDaemonInfo, runtimeFiles } from './runtime.js';

const DEAD_MOUNT_MESSAGE = 'mountpoint is a dead FUSE mount (its daemon is gone); clean it with `stratafs umount --force` or mount with -o force';

/** errno codes a stat of a dead FUSE mount returns (daemon gone / connection aborted) */
export const DEAD_MOUNT_CODES = new Set(['ENOTCONN', 'ECONNABORTED']);

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** a is b or below b (both absolute, normalised) */
export function isWithin(a: string, b: string): boolean {
  if (a === b) return true;
  const rel = path.relative(b, a);
  return rel !== '' && !rel.startsWith('..' + path.sep) && rel !== '..' && !path.isAbsolute(rel);
}

function checkDir(role: string, p: string): { real: string; st: fs.Stats } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT') throw new ConfigError(`${role} does not exist`, p);
    if (code === 'ENOTDIR') throw new ConfigError(`${role} is not a directory (a path component is not a directory)`, p);
    if (code === 'EACCES') throw new ConfigError(`${role} is not accessible (permission denied)`, p);
    if (code !== undefined && DEAD_MOUNT_CODES.has(code)) throw new ConfigError(`${role} is on a dead FUSE mount (${code})`, p);
    throw new ConfigError(`${role} cannot be read (${code ?? String(e)})`, p);
  }
  if (!st.isDirectory()) throw new ConfigError(`${role} is not a directory`, p);
  return { real: fs.realpathSync(p), st };
}

export interface Validated {
  /** the mountpoint is a dead FUSE mount that `force` must clean before mounting */
  deadMount: boolean;
}

/**
 * Check the configuration against the file system, reading only: layers exist and
 * are directories; upper and workdir do not overlap each other, a lower or the
 * mountpoint; workdir shares the upper's filesystem; the upper is writable; the
 * mountpoint exists. Resolves symlinks in place (config.mountpoint becomes its
 * real path). The lock against a second mount on the same upper/workdir is taken
 * by the core (openOverlay -> EBUSY), since only holding it proves anything.
 */
export function validateMountConfig(c: MountConfig): Validated {
  const lowers = c.lowerPaths.map((p) => checkDir('lowerdir', p));

  let deadMount = false;
  let mntReal: string;
  // A stratafs mount whose daemon is gone can still answer a stat from the
  // kernel's attribute cache: ask the mount table and the daemon record first,
  // which never touches the mount.
  const mntPath = resolveMountpointArgSync(c.mountpoint, fs.realpathSync);
  const existing = findMount(readMountsSync(), mntPath);
  const info = existing !== undefined && isFuse(existing) ? readDaemonInfo(runtimeFiles(mntPath).info) : undefined;
  if (info !== undefined && !daemonAlive(info)) {
    if (!c.force) throw new ConfigError(DEAD_MOUNT_MESSAGE, c.mountpoint);
    deadMount = true;
    mntReal = mntPath;
  } else {
    try {
      const st = fs.statSync(c.mountpoint);
      if (!st.isDirectory()) throw new ConfigError('mountpoint is not a directory', c.mountpoint);
      mntReal = fs.realpathSync(c.mountpoint);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      const code = errCode(e);
      if (code === 'ENOENT') throw new ConfigError('mountpoint does not exist', c.mountpoint);
      if (code === 'ENOTDIR') throw new ConfigError('mountpoint is not a directory (a path component is not a directory)', c.mountpoint);
      if (code !== undefined && DEAD_MOUNT_CODES.has(code)) {
        if (!c.force) throw new ConfigError(DEAD_MOUNT_MESSAGE, c.mountpoint);
        deadMount = true;
        mntReal = mntPath;
      } else {
        throw new ConfigError(`mountpoint cannot be read (${code ?? String(e)})`, c.mountpoint);
      }
    }
  }

  // The layers are opened by descriptor before mounting, so the mountpoint may be a
  // layer root itself (mounting over the top lower works). Strictly below a layer,
  // resolving that layer would walk into the mount and the daemon would wait on itself.
  for (const [i, l] of lowers.entries()) {
    if (mntReal !== l.real && isWithin(mntReal, l.real)) {
      throw new ConfigError(`mountpoint is inside lowerdir ${c.lowerPaths[i]} (the mount would contain itself)`, c.mountpoint);
    }
  }

  if (c.upperPath !== undefined && c.workPath !== undefined) {
    const up = checkDir('upperdir', c.upperPath);
    const wk = checkDir('workdir', c.workPath);
    for (const [i, l] of lowers.entries()) {
      const lp = c.lowerPaths[i]!;
      if (up.real === l.real) throw new ConfigError(`upperdir is the same directory as lowerdir ${lp}`, c.upperPath);
      if (isWithin(up.real, l.real)) throw new ConfigError(`upperdir is inside lowerdir ${lp}`, c.upperPath);
      if (isWithin(l.real, up.real)) throw new ConfigError(`lowerdir is inside upperdir ${c.upperPath}`, lp);
      if (isWithin(wk.real, l.real)) throw new ConfigError(`workdir is inside lowerdir ${lp}`, c.workPath);
      if (isWithin(l.real, wk.real)) throw new ConfigError(`lowerdir is inside workdir ${c.workPath}`, lp);
    }
    if (up.real === wk.real) throw new ConfigError('workdir is the same directory as upperdir', c.workPath);
    if (isWithin(wk.real, up.real)) throw new ConfigError(`workdir is inside upperdir ${c.upperPath}`, c.workPath);
    if (isWithin(up.real, wk.real)) throw new ConfigError(`upperdir is inside workdir ${c.workPath}`, c.upperPath);
    if (isWithin(up.real, mntReal)) throw new ConfigError(`upperdir is inside the mountpoint ${c.mountpoint}`, c.upperPath);
    if (isWithin(wk.real, mntReal)) throw new ConfigError(`workdir is inside the mountpoint ${c.mountpoint}`, c.workPath);
    if (isWithin(mntReal, up.real)) throw new ConfigError(`mountpoint is inside upperdir ${c.upperPath} (the mount would contain itself)`, c.mountpoint);
    if (isWithin(mntReal, wk.real)) throw new ConfigError(`mountpoint is inside workdir ${c.workPath}`, c.mountpoint);
    if (up.st.dev !== wk.st.dev) throw new ConfigError(`workdir is on another filesystem than upperdir ${c.upperPath}`, c.workPath);
    for (const [role, p] of [['upperdir', c.upperPath], ['workdir', c.workPath]] as const) {
      try {
        fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
      } catch (e) {
        const code = errCode(e);
        if (code === 'EROFS') throw new ConfigError(`${role} is on a read-only filesystem`, p);
        throw new ConfigError(`${role} is not writable (${code ?? String(e)})`, p);
      }
    }
  }
  c.mountpoint = mntReal;
  return { deadMount };
}
