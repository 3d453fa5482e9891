/**
 * stratafs as a library: mount a merged view from TypeScript, served by the
 * calling process.
 *
 *   import { mount } from 'stratafs';
 *   const m = await mount({ lowerdirs: [a, b], upperdir: u, workdir: w, mountpoint: mnt });
 *   await fs.promises.readdir(m.mountpoint);
 *   await m.unmount();
 *
 * WARNING: the mount is answered by THIS process's event loop. Never touch the
 * mountpoint synchronously from it: an fs.*Sync call, execSync/spawnSync of a
 * program that reads the mount, or anything else that blocks the loop while
 * waiting for the mount will wait forever (the one thread that must answer is
 * the one waiting). Use fs.promises / callbacks, or a child process. The same
 * holds for process.exit() with files still open on the mount: unmount first.
 */
import * as fs from 'node:fs';
import { checkLookupCache, checkSeconds, ConfigError, defaultMountSettings, mountConfig, type MountConfig } from './fuse/config.js';
import { applyMountOptions } from './cli/mount-options.js';
import { validateMountConfig } from './cli/validate.js';
import { serve, ServeError } from './cli/serve.js';
import type { DaemonStats } from './cli/stats.js';

export { ConfigError, ServeError };
export type { MountConfig, DaemonStats };
export { FsError } from './shared/errors.js';

export interface MountOptions {
  /** read-only layers, top first */
  lowerdirs: string[];
  /** writable layer; without it (and workdir) the mount is read-only */
  upperdir?: string;
  /** work area on the upper's filesystem */
  workdir?: string;
  mountpoint: string;
  /** mount read-only even with an upper (the upper is then served as the top layer) */
  readOnly?: boolean;
  /** rename of directories with lower content: redirect xattr (default true) or EXDEV */
  redirectDir?: boolean;
  userxattr?: boolean;
  /** kernel entry/attr/negative cache timeout in seconds (default 86400, as on the CLI) */
  timeout?: number;
  negativeTimeout?: number;
  lookupCacheSize?: number;
  /** other users may use the mount (default: true as root, as on the CLI) */
  allowOther?: boolean;
  /** kept for compatibility: kernel permission checks are always on */
  defaultPermissions?: boolean;
  /** false: skip fsync (volatile) */
  fsync?: boolean;
  /** log every FUSE op through `log` */
  debug?: boolean;
  /** where the mount's messages go (default: stderr) */
  log?: (line: string) => void;
  /** further options in the CLI's -o syntax, e.g. 'noexec,fsname=img' */
  options?: string;
  /**
   * Create upperdir, workdir and mountpoint when missing (default true; the CLI
   * never does). What was created is removed again if the mount fails.
   */
  createDirs?: boolean;
}

export interface Mount {
  readonly mountpoint: string;
  readonly config: MountConfig;
  /** FUSE op counters and the core's counters (what `stratafs stats` shows) */
  stats(): DaemonStats;
  /** unmount and close; safe to call twice. Fails with EBUSY-like errors while the mount is in use. */
  unmount(): Promise<void>;
  /** resolves when the mount has gone, by unmount() or by an outside umount */
  readonly ended: Promise<void>;
}

/**
 * The configuration mount(o) serves, without touching the file system: the fields, then
 * `options` over them, as the CLI's -o words would be. Throws ConfigError.
 */
export function mountConfigOf(o: MountOptions): MountConfig {
  if (!Array.isArray(o.lowerdirs) || o.lowerdirs.length === 0) throw new ConfigError('missing lowerdirs');
  const cwd = process.cwd();
  // defaults as on the CLI (allow_other and suid as root)
  const s = defaultMountSettings(process.geteuid?.() ?? 0);
  s.lowerdirs = [...o.lowerdirs];
  if (o.upperdir !== undefined) s.upperdir = o.upperdir;
  if (o.workdir !== undefined) s.workdir = o.workdir;
  if (o.readOnly) s.readOnly = true;
  if (o.redirectDir !== undefined) s.redirectDir = o.redirectDir;
  if (o.userxattr) s.userxattr = true;
  if (o.timeout !== undefined) s.timeout = checkSeconds('timeout', o.timeout);
  if (o.negativeTimeout !== undefined) s.negativeTimeout = checkSeconds('negative_timeout', o.negativeTimeout);
  if (o.lookupCacheSize !== undefined) s.lookupCacheSize = checkLookupCache(o.lookupCacheSize);
  if (o.allowOther !== undefined) s.allowOther = o.allowOther;
  if (o.fsync === false) s.fsync = false;
  s.debug = !!o.debug;
  if (o.options) applyMountOptions(s, o.options, cwd);
  return mountConfig(s, { mountpoint: o.mountpoint, source: undefined, foreground: true, cwd });
}

/**
 * Mount. Validates like the CLI (nothing is created or changed on bad input;
 * errors are ConfigError with one line naming the problem and the path), then
 * serves the mount from this process until unmount() or an outside umount.
 */
export async function mount(o: MountOptions): Promise<Mount> {
  const config = mountConfigOf(o);
  const log = o.log ?? ((line: string) => { process.stderr.write(line + '\n'); });
  if (config.unknownOptions.length) log(`stratafs: warning: unknown options ignored: ${config.unknownOptions.join(', ')}`);
  const created: string[] = [];
  const rollback = (): void => {
    for (const d of created.reverse()) fs.rmSync(d, { recursive: true, force: true });
  };
  let served: Awaited<ReturnType<typeof serve>>;
  try {
    if (o.createDirs !== false) {
      for (const d of [config.upperPath, config.workPath, config.mountpoint]) {
        if (d === undefined) continue;
        const first = fs.mkdirSync(d, { recursive: true });
        if (first !== undefined) created.push(first);
      }
    }
    const { deadMount } = validateMountConfig(config);
    if (deadMount) {
      const { forceClean } = await import('./cli/umount.js');
      await forceClean(config.mountpoint, log);
    }
    served = await serve(config, log);
  } catch (e) {
    rollback();
    throw e;
  }
  return {
    mountpoint: config.mountpoint,
    config,
    stats: () => served.stats(),
    unmount: () => served.unmount(),
    ended: served.ended,
  };
}
