import { constants as osConstants } from 'node:os';

/** Symbolic errno names we use, e.g. 'ENOENT'. */
export type ErrnoCode = keyof typeof osConstants.errno;

/**
 * The one error type the overlay core throws. The FUSE adapter turns it into
 * -errno in exactly one place; everything else only reads `code` and `path`.
 * `path` is a byte string (latin1, see bstr.ts) relative to the mount or a layer.
 *
 * Thrown on hot paths (every failed lookup and getxattr is one), so it is
 * cheap: no stack trace (an errno is an answer, not a bug; bugs are other
 * errors and keep theirs) and the message is only built when read.
 */
export class FsError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  readonly path: string;
  readonly syscall: string | undefined;
  private readonly detail: string | undefined;

  constructor(code: ErrnoCode, path: string, syscall?: string, detail?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super();
    Error.stackTraceLimit = limit;
    this.name = 'FsError';
    this.code = code;
    this.errno = errnoOf(code);
    this.path = path;
    this.syscall = syscall;
    this.detail = detail;
  }

  override get message(): string {
    const shown = Buffer.from(this.path, 'latin1').toString('utf8');
    const { code, syscall, detail } = this;
    return `${code}: ${syscall ? syscall + ' ' : ''}${shown}${detail ? ` (${detail})` : ''}`;
  }
}

const CODE_OF = new Map<number, ErrnoCode>();
for (const [k, v] of Object.entries(osConstants.errno)) if (!CODE_OF.has(v)) CODE_OF.set(v, k as ErrnoCode);

/** The platform's errno number of a code. */
export function errnoOf(code: ErrnoCode): number {
  return osConstants.errno[code];
}

/** The code of an errno number (either sign); undefined where the platform has no name for it. */
export function knownCodeOf(errno: number): ErrnoCode | undefined {
  return CODE_OF.get(Math.abs(errno));
}

/** Map an errno number (positive) back to its code; unknown numbers become EIO. On every failed syscall: a map, not a scan. */
export function codeOf(errno: number): ErrnoCode {
  return knownCodeOf(errno) ?? 'EIO';
}

/**
 * The errno code of an error thrown by Node's fs, also where libuv has no name for it: EDQUOT
 * (a quota on the upper) comes as code "Unknown system error -122" with errno -122; taken as
 * a code, it became an FsError with no errno, and the write reply an ERANGE.
 */
export function nodeErrnoCode(e: unknown): ErrnoCode | undefined {
  const err = e as NodeJS.ErrnoException | null;
  const code = err?.code;
  if (typeof code === 'string' && code in osConstants.errno) return code as ErrnoCode;
  return typeof err?.errno === 'number' && err.errno !== 0 ? knownCodeOf(err.errno) : undefined;
}

export function isFsError(e: unknown, code?: ErrnoCode): e is FsError {
  return e instanceof FsError && (code === undefined || e.code === code);
}
