/**
 * /proc/self/mountinfo, read by processes that do NOT serve the mount in
 * question (the CLI's umount/stats, the parent of a daemon, tests): reading it
 * never touches a FUSE mountpoint, so it is safe even for a dead or hung mount.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { toText } from '../shared/bstr.js';

export interface MountEntry {
  id: number;
  parent: number;
  major: number;
  minor: number;
  /** root of the mount within its filesystem */
  root: string;
  /** where it is mounted, unescaped */
  mountpoint: string;
  options: string;
  fstype: string;
  source: string;
  superOptions: string;
}

/**
 * mountinfo escapes space, tab, newline and backslash as \ooo octal. The file is read as
 * latin1 (one char per byte, so the escapes give bytes back); a path is then decoded as
 * UTF-8, the text the command line and MountConfig hold (a mountpoint `mé` was `m\xc3\xa9`
 * here and never matched, so `stratafs umount` answered "not mounted").
 */
const unoctal = (s: string): string => toText(s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));

/** `text`: the file as latin1 (bytes one to one) */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    const [maj, min] = f[2]!.split(':').map(Number);
    out.push({
      id: Number(f[0]), parent: Number(f[1]), major: maj!, minor: min!,
      root: unoctal(f[3]!), mountpoint: unoctal(f[4]!), options: f[5]!,
      fstype: f[sep + 1]!, source: unoctal(f[sep + 2] ?? ''), superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await fsp.readFile('/proc/self/mountinfo', 'latin1'));
}

export function readMountsSync(): MountEntry[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'));
}

/** The topmost mount at exactly this path (later lines are mounted over earlier ones). */
export function findMount(mounts: MountEntry[], mountpoint: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.mountpoint === mountpoint) found = m;
  return found;
}

export const isFuse = (m: MountEntry): boolean => m.fstype === 'fuse' || m.fstype.startsWith('fuse.') || m.fstype === 'fuseblk';

/**
 * The absolute path a mountpoint argument names, without statting the mountpoint
 * itself (it may be a dead FUSE mount: any stat gives ENOTCONN): the parent is
 * resolved, the last component is kept.
 */
export async function resolveMountpointArg(p: string): Promise<string> {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(await fsp.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

export function resolveMountpointArgSync(p: string, realpath: (s: string) => string): string {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}
