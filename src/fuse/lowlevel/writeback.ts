/**
 * Open flags under the kernel's writeback cache (feature `writeback_cache`,
 * fuse/kernel/features.ts; libfuse's passthrough examples do the same):
 * - the kernel reads a page before it writes part of it, through whatever file wrote,
 *   so a write-only open gets a backing fd that can read (O_RDWR);
 * - the kernel owns the size and puts an O_APPEND write at its own end of file: the
 *   backing fd must write where told, so O_APPEND goes (pwrite on an O_APPEND fd
 *   ignores the offset).
 */
import { constants as fsConstants } from 'node:fs';
import { FsError } from '../../shared/errors.js';
import { O_ACCMODE } from '../../shared/constants.js';

const { O_WRONLY, O_RDWR, O_APPEND } = fsConstants;

export function writebackOpenFlags(flags: number): number {
  const f = (flags & O_ACCMODE) === O_WRONLY ? (flags & ~O_ACCMODE) | O_RDWR : flags;
  return f & ~O_APPEND;
}

/**
 * Opens with writebackOpenFlags; where the daemon may not read the file (a plain user's
 * mount, a file of mode -w-), write-only after all: the kernel's read of a partial page
 * then fails (EBADF from the backing fd) and so does that write, instead of the open.
 */
export async function openForWriteback<T>(flags: number, open: (flags: number) => Promise<T>): Promise<T> {
  const wb = writebackOpenFlags(flags);
  try {
    return await open(wb);
  } catch (e) {
    if (!(e instanceof FsError && e.code === 'EACCES') || (wb & O_ACCMODE) === (flags & O_ACCMODE)) throw e;
    return open(flags & ~O_APPEND);
  }
}
