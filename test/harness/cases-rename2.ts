/**
 * Scripted differential cases for renameat2's flags (RENAME_NOREPLACE,
 * RENAME_EXCHANGE, RENAME_WHITEOUT) on BASE: objects in the upper only, in a
 * lower only (copy-up first), merged directories, whiteouts as targets, an
 * exchange of a file with a directory and across directories, and the
 * refusals (what kernel overlayfs 6.18 answers, probed by hand first:
 * NOREPLACE onto a visible name EEXIST and onto a whiteout ok; EXCHANGE with
 * a missing or whited-out name ENOENT, of a name with its own ancestor EINVAL,
 * of a directory with lower content EXDEV without redirect_dir; WHITEOUT
 * EINVAL, as every flag combination the VFS refuses).
 *
 * Kept apart from SCRIPTED: where RENAME2 is not spoken (the high-level front-end,
 * libfuse 2.9 at 7.19; fuse_minor= below 23, as CI's STRATAFS_TEST_FUSE_MINOR=19 pass;
 * fuse_off=rename2) every flagged rename is EINVAL, so these cases run where the test
 * names the protocol (test/integration/rename2.test.ts) and against fuse-overlayfs
 * (differential-fuse-overlayfs.test.ts).
 */
import type { Case } from './differential.js';
import type { Op, Rename2Flag } from './ops.js';
import { BASE } from './cases.js';

const r2 = (from: string, to: string, ...flags: Rename2Flag[]): Op => ({ op: 'rename2', from, to, flags });
const c = (name: string, about: string, ops: Op[]): Case => ({ name, about, ops, layers: BASE });

export const RENAME2_CASES: Case[] = [
  c('rename2-noreplace', 'RENAME_NOREPLACE: EEXIST onto a visible name (also itself), ok onto a new name or a whiteout (lower, upper, OCI), copy-up and whiteout as a plain rename', [
    r2('uf2', 'n1', 'noreplace'),
    r2('f1', 'f2', 'noreplace'),
    r2('u', 'd', 'noreplace'),
    r2('f1', 'f1', 'noreplace'),
    r2('nope', 'x', 'noreplace'),
    r2('u', 'u/inner', 'noreplace'),
    r2('d/low', 'gone', 'noreplace'),
    r2('f2', 'f2gone', 'noreplace'),
    r2('d/top', 'ociGone', 'noreplace'),
    r2('dirl', 'gonedir', 'noreplace'),
    r2('u', 'dirm/m1', 'noreplace'),
    { op: 'readdir', path: '' },
    { op: 'readdir', path: 'd' },
    { op: 'read', path: 'gone' },
    { op: 'read', path: 'f2gone' },
    { op: 'readdir', path: 'gonedir' },
    { op: 'readdir', path: 'gonedir/y' },
    { op: 'readdir', path: 'dirm/m1' },
    { op: 'stat', path: 'd/low' },
  ]),
  c('rename2-exchange-files', 'RENAME_EXCHANGE of files: upper with lower (copy-up), two lowers in a merged dir, across dirs, symlink with FIFO, two names of a lower hard link, refusals', [
    r2('uf2', 'f1', 'exchange'),
    { op: 'read', path: 'f1' },
    { op: 'read', path: 'uf2' },
    { op: 'stat', path: 'uf2' },
    { op: 'listxattr', path: 'uf2' },
    r2('d/low', 'd/top', 'exchange'),
    { op: 'read', path: 'd/low' },
    { op: 'read', path: 'd/top' },
    r2('f2', 'u/uf', 'exchange'),
    { op: 'read', path: 'f2' },
    { op: 'read', path: 'u/uf' },
    r2('sl', 'pipe', 'exchange'),
    { op: 'stat', path: 'sl' },
    { op: 'readlink', path: 'pipe' },
    r2('hl1', 'hl2', 'exchange'),
    { op: 'sameInode', a: 'hl1', b: 'hl2' },
    r2('f1', 'missing', 'exchange'),
    r2('missing', 'f1', 'exchange'),
    r2('f1', 'gone', 'exchange'),
    r2('f1', 'f2gone', 'exchange'),
    r2('f1', 'ociGone', 'exchange'),
    r2('f1', 'f1', 'exchange'),
    r2('d/fromUpper', 'd/sub/deep', 'exchange'),
    { op: 'read', path: 'd/sub/deep' },
    { op: 'readdir', path: '' },
    { op: 'readdir', path: 'd' },
    { op: 'readdir', path: 'd/sub' },
    { op: 'readdir', path: 'u' },
  ]),
  c('rename2-exchange-dirs', 'RENAME_EXCHANGE of directories: upper-only with lower-only and merged (redirect, opaque), file with directory, a name with its ancestor', [
    r2('u', 'dirl', 'exchange'),
    { op: 'readdir', path: 'u' },
    { op: 'readdir', path: 'dirl' },
    { op: 'read', path: 'u/y/z' },
    r2('d', 'dirm', 'exchange'),
    { op: 'readdir', path: 'd' },
    { op: 'readdir', path: 'dirm' },
    { op: 'stat', path: 'dirm' },
    r2('uf2', 'empty', 'exchange'),
    { op: 'stat', path: 'uf2' },
    { op: 'read', path: 'empty' },
    r2('opq', 'ociOpq', 'exchange'),
    { op: 'readdir', path: 'opq' },
    { op: 'readdir', path: 'ociOpq' },
    r2('dirm', 'dirm/sub', 'exchange'),
    r2('dirm/sub', 'dirm', 'exchange'),
    r2('u', 'u/y', 'exchange'),
    r2('dirm', 'dirm', 'exchange'),
    { op: 'create', path: 'dirm/new', mode: 0o644 },
    { op: 'rmdir', path: 'uf2' },
    { op: 'readdir', path: '' },
  ]),
  c('rename2-exchange-across', 'RENAME_EXCHANGE across directories: a lower subdirectory with an upper dir (absolute redirect), files between merged and upper-only parents, then back', [
    r2('dirl/y', 'u', 'exchange'),
    { op: 'readdir', path: 'u' },
    { op: 'read', path: 'u/z' },
    { op: 'readdir', path: 'dirl/y' },
    { op: 'read', path: 'dirl/y/uf' },
    r2('d/sub/deep', 'u/z', 'exchange'),
    { op: 'read', path: 'u/z' },
    { op: 'stat', path: 'd/sub/deep' },
    r2('u', 'dirl/y', 'exchange'),
    { op: 'readdir', path: 'dirl/y' },
    { op: 'readdir', path: 'u' },
    r2('d/sub', 'sticky', 'exchange'),
    { op: 'stat', path: 'sticky' },
    { op: 'readdir', path: 'd/sub' },
    { op: 'rename', from: 'sticky', to: 'moved' },
    { op: 'readdir', path: 'moved' },
    { op: 'readdir', path: 'd' },
  ]),
  c('rename2-hardlink-origin', 'a lower file with two names, copied up, has no origin (index=off): moved onto or exchanged with another lower name it keeps a number of its own', [
    { op: 'rename', from: 'f1', to: 'x' },
    { op: 'rename', from: 'hl2', to: 'f1' },
    { op: 'sameInode', a: 'x', b: 'f1' },
    { op: 'sameInode', a: 'hl1', b: 'f1' },
    r2('hl1', 'f2', 'exchange'),
    { op: 'sameInode', a: 'f2', b: 'hl1' },
    { op: 'sameInode', a: 'f2', b: 'f1' },
    { op: 'stat', path: 'f2' },
    { op: 'stat', path: 'hl1' },
  ]),
  c('rename2-whiteout-flag', 'RENAME_WHITEOUT is refused by overlayfs (EINVAL) after the VFS checks; flag combinations and unknown flags EINVAL', [
    r2('uf2', 'x', 'whiteout'),
    r2('f1', 'x', 'whiteout'),
    r2('u', 'd', 'whiteout'),
    r2('nope', 'x', 'whiteout'),
    r2('f1', 'f1', 'whiteout'),
    r2('uf2', 'f1', 'exchange', 'whiteout'),
    r2('uf2', 'x', 'noreplace', 'whiteout'),
    r2('uf2', 'f1', 'exchange', 'noreplace'),
    r2('uf2', 'x', 'bad'),
    r2('uf2', 'x'),
    { op: 'readdir', path: '' },
  ]),
];

/** With redirect_dir=off on both sides (-o redirect_dir=off): directories with lower content cannot move (EXDEV). */
export const RENAME2_REDIRECT_OFF: Case = c('rename2-redirect-off', 'redirect_dir=off: an exchange or NOREPLACE rename of a directory with lower content is EXDEV; files and upper-only dirs move', [
  r2('u', 'dirl', 'exchange'),
  r2('d', 'u', 'exchange'),
  r2('dirl', 'newdir', 'noreplace'),
  r2('f1', 'uf2', 'exchange'),
  r2('u', 'uf2', 'exchange'),
  r2('u', 'gonedir', 'noreplace'),
  { op: 'readdir', path: '' },
  { op: 'readdir', path: 'gonedir' },
]);
