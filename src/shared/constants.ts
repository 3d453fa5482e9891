/**
 * The numbers of the Linux file-system ABI the project speaks, in one place,
 * below every other folder: st_mode file-type bits, readdir's d_type values,
 * errno numbers and the open flags of an exclusive create. Sync calls of the
 * addon return -errno, so code compares with these instead of `-21` or `0o301`.
 */
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';

/** st_mode file-type bits (identical on every Linux architecture). */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_IXGRP = 0o010;

/** d_type values of readdirat (identical on every Linux architecture). */
export const DT = {
  UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12,
} as const;

/** errno numbers, the platform's own (a few architectures, MIPS among them, number some differently). */
export const {
  EPERM, ENOENT, EIO, EAGAIN, EACCES, EEXIST, ENOTDIR, EISDIR, EINVAL, EMLINK, ERANGE, ENAMETOOLONG, ENOSYS,
  ENODATA, EOPNOTSUPP, EPROTO, ELOOP,
} = osConstants.errno;
/** flock's "held elsewhere" (the same number as EAGAIN on Linux) */
export const EWOULDBLOCK = osConstants.errno.EWOULDBLOCK;

/** open flags that create a file that must not exist yet, for writing (O_CREAT differs between architectures). */
export const O_WRITE_NEW = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;

/** the access-mode bits of open flags (O_RDONLY, O_WRONLY, O_RDWR) */
export const O_ACCMODE = 3;

/** renameat2 flags (include/uapi/linux/fs.h; identical on every Linux architecture): FUSE's RENAME2 carries them as is. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;
