/**
 * Mounting and unmounting helpers that need no FUSE binding loaded: the default
 * low-level server (fuse-ll.ts) uses them without loading fuse-native (which
 * fuse.ts loads as soon as it is imported), and so does the daemon's lazy
 * unmount. Re-exported by fuse.ts.
 */
import path from 'node:path';
import type { Bstr } from '../shared/bstr.js';

const MNT_DETACH = 2;

export interface UnmountOptions {
  /** Detach now, finish when no longer busy (umount -l / MNT_DETACH / fusermount -uz). */
  lazy?: boolean;
}

export const isRoot = (): boolean => typeof process.geteuid === 'function' && process.geteuid() === 0;

/** First executable of `names` in PATH (or the dirs libfuse 2.9 tries first). */
async function findExecutable(names: readonly string[]): Promise<string | undefined> {
  // loaded here: a root mount never needs them, and each costs its daemon start a millisecond
  const { access, constants: fsConstants } = await import('node:fs/promises');
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/bin', '/usr/bin', '/bin'];
  for (const name of names) {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      try {
        await access(file, fsConstants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

async function run(cmd: string, args: readonly string[]): Promise<void> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}

interface Umount2Module {
  umount2(path: string, flags: number): Promise<void>;
}

/** The syscall addon's umount2 (src/native/sys.ts) if it is built, else undefined. */
async function loadUmount2(): Promise<Umount2Module['umount2'] | undefined> {
  const spec = './sys.js';
  try {
    const mod: unknown = await import(spec);
    const fn = (mod as Partial<Umount2Module>).umount2;
    return typeof fn === 'function' ? fn : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Unmount `mountpoint` without touching it from this process (the caller may be
 * the daemon serving it): as root umount2 on the addon's own thread, else
 * `umount`, else fusermount -u / fusermount3 -u. Never fs.*Sync, never -z unless asked.
 */
export async function unmountPath(mountpoint: Bstr, opts: UnmountOptions = {}): Promise<void> {
  if (isRoot()) {
    const umount2 = await loadUmount2();
    if (umount2) return umount2(mountpoint, opts.lazy ? MNT_DETACH : 0);
    return run('umount', opts.lazy ? ['-l', mountpoint] : [mountpoint]);
  }
  const fusermount = await findExecutable(['fusermount', 'fusermount3']);
  if (!fusermount) throw new Error('unmount as non-root needs fusermount: install the Debian package fuse3');
  return run(fusermount, opts.lazy ? ['-u', '-z', mountpoint] : ['-u', mountpoint]);
}

/** libfuse 2.9 mounts as non-root only through the setuid fusermount: fail at once, naming the package. */
export async function checkCanMount(): Promise<void> {
  if (!isRoot() && !(await findExecutable(['fusermount']))) {
    throw new Error('mounting as non-root needs the setuid helper fusermount: install the Debian package fuse3 (apt-get install fuse3)');
  }
}
