/**
 * Where links that leave a mount lead. Case data keeps symlinks that point out of
 * the mount (absolute ones, and relative ones such as `../d` created at the mount's
 * top), so that readlink, lstat and following them are still compared between
 * implementations; but what they reach must never be the host. They reach the
 * run's sentinels instead: a small tree in the test root, outside every mount,
 * made read-only by a read-only bind mount of itself. A client operation that
 * follows such a link to write, truncate or chmod gets EROFS (or EISDIR) on every
 * implementation alike and changes nothing; should a sentinel change anyway, the
 * run's teardown finds it by its content hash and ctime (test/harness/host-check.ts)
 * and fails the run.
 *
 * - Absolute targets in case data are written `OUTSIDE + 'hostname'`: expanded when
 *   the layer is built (or the op applied) to <test root>/sentinel/hostname.
 * - Relative targets that climb out of the mount (the random pool's `../d`, made at
 *   the top of the mount) resolve in the mountpoint's parent directory: the
 *   differential runner puts a link to the sentinel there for each ESCAPE_NAMES
 *   entry (guardMountParent) before it mounts.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.js';
import { mountsAt, testRoot } from './mounts.js';

/** Prefix of a symlink target that means "this name in the run's sentinel tree" (NUL never occurs in a real target). */
export const OUTSIDE = '\0outside/';

/** Names that relative targets in case data may reach one level above a mount's root. */
export const ESCAPE_NAMES: readonly string[] = ['d'];

/** Files of the sentinel tree (relative path -> content); directories are implied. */
export const SENTINEL_FILES: Readonly<Record<string, string>> = {
  hostname: 'sentinel: stands where a test link once pointed at /etc/hostname\n',
  'd/f': 'sentinel: reached through a relative link that left its mount\n',
};

export function sentinelDir(root: string = testRoot()): string {
  return join(root, 'sentinel');
}

/** A case-data symlink target as it goes to disk. */
export function expandTarget(target: string): string {
  if (!target.startsWith(OUTSIDE)) return target;
  const dir = sentinelDir();
  if (!existsSync(dir)) {
    throw new Error(`no sentinel tree at ${dir}: the run's globalSetup (test/integration/setup.ts) makes it; run tests through vitest's config`);
  }
  return join(dir, target.slice(OUTSIDE.length));
}

/**
 * Creates the sentinel tree under `root` and makes it read-only by a bind mount of
 * itself. Returns why it could not be made read-only (the hash check still holds).
 */
export async function makeSentinels(root: string): Promise<string | undefined> {
  const dir = sentinelDir(root);
  for (const [rel, content] of Object.entries(SENTINEL_FILES)) {
    const p = join(dir, rel);
    await mkdir(join(p, '..'), { recursive: true });
    await writeFile(p, content, { mode: 0o644 });
  }
  const bind = await run('mount', ['--bind', dir, dir], { timeoutMs: 10_000 });
  if (bind.code !== 0) return `mount --bind ${dir}: ${bind.stderr.toString().trim()}`;
  const ro = await run('mount', ['-o', 'remount,bind,ro', dir], { timeoutMs: 10_000 });
  if (ro.code !== 0) return `remount,bind,ro ${dir}: ${ro.stderr.toString().trim()}`;
  return undefined;
}

/** Removes the read-only bind mount(s) of the sentinel tree. */
export async function unmountSentinels(root: string): Promise<string[]> {
  const dir = sentinelDir(root);
  const errors: string[] = [];
  for (let i = 0; i < 4; i++) {
    if ((await mountsAt(dir)).length === 0) return errors;
    const r = await run('umount', [dir], { timeoutMs: 10_000 });
    if (r.code !== 0) {
      errors.push(`umount ${dir}: ${r.stderr.toString().trim()}`);
      await run('umount', ['-l', dir], { timeoutMs: 10_000 });
    }
  }
  return errors;
}

/** Puts a link to the sentinel for each ESCAPE_NAMES entry next to a mountpoint (in its parent `dir`). */
export async function guardMountParent(dir: string): Promise<void> {
  for (const name of ESCAPE_NAMES) {
    const target = expandTarget(OUTSIDE + name);
    await symlink(target, join(dir, name));
  }
}
