/**
 * What both ways into a mount do between a valid configuration and serving it:
 * the Node CLI (main.ts) and the launcher's daemon (daemon-child.ts) warn about
 * the same options and clean a dead mount the same way, each reporting through
 * its own channel (stderr, or the launcher's verdict pipe).
 */
import type { MountConfig } from '../fuse/config.js';

/** The warning lines a configuration gets (unknown options, options without effect). */
export function configWarnings(c: MountConfig): string[] {
  const out: string[] = [];
  if (c.unknownOptions.length) out.push(`stratafs: warning: unknown options ignored: ${c.unknownOptions.join(', ')}`);
  if (c.ignoredOptions.length) out.push(`stratafs: warning: options without effect here: ${c.ignoredOptions.join(', ')}`);
  return out;
}

/** Abort and detach the dead FUSE mount at the mountpoint (`force`); the problem, or undefined once clean. */
export async function cleanDeadMount(c: MountConfig, say: (line: string) => void): Promise<string | undefined> {
  const { forceClean } = await import('./umount.js');
  try {
    await forceClean(c.mountpoint, say);
    return undefined;
  } catch (e) {
    return `cannot clean the dead mount: ${e instanceof Error ? e.message : String(e)}`;
  }
}
