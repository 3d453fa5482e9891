/**
 * Randomized operation sequences (fast-check) over the BASE layer set: paths
 * come from a pool of names that exist in some layer, are hidden by markers,
 * or are new, so that sequences hit copy-up, whiteouts, opaque dirs and
 * redirects often instead of failing with ENOENT.
 */
import fc from 'fast-check';
import { NAME255, NONUTF8, NONUTF8_2 } from './cases.js';
import type { Op, Time } from './ops.js';

/** Existing (lower, upper, merged), hidden (whiteout/opaque) and new names. */
export const PATH_POOL: readonly string[] = [
  '', 'd', 'd/low', 'd/top', 'd/sub', 'd/sub/deep', 'd/fromUpper', 'd/new',
  'f1', 'f2', 'big', 'uf2', 'u', 'u/uf', 'u/new',
  'gone', 'gonedir', 'gonedir/x', 'opq', 'opq/hidden', 'opq/visible', 'shadow', 'shadow/inner',
  'ociGone', 'ociOpq', 'ociOpq/old', 'ociOpq/new', 'userOpq', 'userOpq/old',
  'dirl', 'dirl/x', 'dirl/y', 'dirl/y/z', 'dirm', 'dirm/m1', 'empty', 'empty/e',
  'sl', 'abs', 'sgiddir', 'sgiddir/n', 'sticky', 'suid',
  'n1', 'n2', 'nd', 'nd/n', NONUTF8, `${NONUTF8_2}/in`, NONUTF8_2, NAME255,
];

/** Paths whose objects hit behaviours only some implementations share (see the fuse-overlayfs proof). */
export const SPECIAL_PATHS: readonly string[] = ['hl1', 'hl2', 'pipe'];

const past: fc.Arbitrary<Time> = fc.constantFrom<Time>(
  { sec: 1_234_567_890, nsec: 123_456_789 },
  { sec: 1_500_000_000, nsec: 1 },
  { sec: 999_999_999, nsec: 999_999_999 },
);
const time: fc.Arbitrary<Time> = fc.oneof({ weight: 4, arbitrary: past }, { weight: 1, arbitrary: fc.constantFrom<Time>('omit', 'now') });
const data = fc.constantFrom('x', 'hello', 'Z'.repeat(300), '\x00\xff\n');
const xname = fc.constantFrom('user.a', 'user.b', 'user.new', 'trusted.t');
const mode = fc.constantFrom(0o644, 0o600, 0o755, 0o700);
const fmode = fc.constantFrom(0o600, 0o644, 0o755, 0o4755, 0o2750, 0o1777, 0o000);
const id = fc.constantFrom(0, 5, 1000);

export function opArb(paths: readonly string[]): fc.Arbitrary<Op> {
  const p = fc.constantFrom(...paths);
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('create' as const), path: p, mode, excl: fc.boolean(), trunc: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), path: p, offset: fc.constantFrom(0, 3, 1000, 70_000), data }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('append' as const), path: p, data }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), path: p, size: fc.constantFrom(0, 2, 5000) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('chmod' as const), path: p, mode: fmode }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('chown' as const), path: p, uid: id, gid: id }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('utimens' as const), path: p, atime: time, mtime: time }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: p, mode }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('rmdir' as const), path: p }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('unlink' as const), path: p }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant('rename' as const), from: p, to: p }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), from: p, to: p }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('symlink' as const), target: fc.constantFrom('f1', '../d', 'nowhere'), path: p }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('mkfifo' as const), path: p, mode }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('setxattr' as const), path: p, name: xname, value: fc.constantFrom('v', '', 'long'.repeat(50)) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('removexattr' as const), path: p, name: xname }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('getxattr' as const), path: p, name: xname }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('listxattr' as const), path: p }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('read' as const), path: p }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: p }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('stat' as const), path: p }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('sameInode' as const), a: p, b: p }) },
  );
}

export function sequenceArb(length: number, paths: readonly string[] = PATH_POOL): fc.Arbitrary<Op[]> {
  return fc.array(opArb(paths), { minLength: 1, maxLength: length });
}
