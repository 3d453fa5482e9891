import { constants as osConstants } from 'node:os';

/** Symbolic errno names we use, e.g. 'ENOENT'. */
export type ErrnoCode = keyof typeof osConstants.errno;

/**
 * The one error type the overlay core throws. The FUSE adapter turns it into
 * -errno in exactly one place; everything else only reads `code` and `path`.
 * `path` is a byte string (latin1, see bstr.ts) relative to the mount or a layer.
 */
export class FsError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  readonly path: string;
  readonly syscall: string | undefined;

  constructor(code: ErrnoCode, path: string, syscall?: string, detail?: string) {
    const shown = Buffer.from(path, 'latin1').toString('utf8');
    super(`${code}: ${syscall ? syscall + ' ' : ''}${shown}${detail ? ` (${detail})` : ''}`);
    this.name = 'FsError';
    this.code = code;
    this.errno = osConstants.errno[code];
    this.path = path;
    this.syscall = syscall;
  }
}

/** Map an errno number (positive) back to its code; unknown numbers become EIO. */
export function codeOf(errno: number): ErrnoCode {
  const n = Math.abs(errno);
  for (const [k, v] of Object.entries(osConstants.errno)) if (v === n) return k as ErrnoCode;
  return 'EIO';
}

export function isFsError(e: unknown, code?: ErrnoCode): e is FsError {
  return e instanceof FsError && (code === undefined || e.code === code);
}
