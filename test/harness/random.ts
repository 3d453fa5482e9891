/**
 * Randomized operation sequences (fast-check) over the BASE layer set: paths
 * come from a pool of names that exist in some layer, are hidden by markers,
 * or are new, so that sequences hit copy-up, whiteouts, opaque dirs and
 * redirects often instead of failing with ENOENT.
 */
import fc from 'fast-check';
import { NAME255, NONUTF8, NONUTF8_2 } from './cases.js';
import type { Op, Rename2Flag, Time } from './ops.js';
import type { Caller } from './callers.js';

/** Pools of names that exist in some layer, are hidden by markers, or are new. */
export interface PathPool {
  /** regular files (and names meant to become files) */
  files: readonly string[];
  /** directories (and names meant to become directories) */
  dirs: readonly string[];
}

export const PATH_POOL: PathPool = {
  files: [
    'f1', 'f2', 'big', 'uf2', 'u/uf', 'd/low', 'd/top', 'd/fromUpper', 'd/sub/deep', 'd/new',
    'dirl/x', 'dirl/y/z', 'dirm/m1', 'opq/visible', 'opq/hidden', 'ociOpq/new', 'ociOpq/old', 'userOpq/new', 'userOpq/old',
    'shadow', 'shadow/inner', 'gone', 'ociGone', 'f2gone', 'suid', 'sl', 'abs', 'sgiddir/n', 'empty/e',
    'n1', 'n2', 'nd/n', NONUTF8, `${NONUTF8_2}/in`, NAME255,
  ],
  dirs: ['', 'd', 'd/sub', 'u', 'opq', 'ociOpq', 'userOpq', 'dirl', 'dirl/y', 'dirm', 'empty', 'gonedir', 'sgiddir', 'sticky', NONUTF8_2, 'nd', 'nd2', 'd/nd', 'u/nd'],
};

/** Objects whose behaviour differs between fuse-overlayfs and the kernel beyond its known differences (see the proof). */
export const SPECIAL_PATHS: readonly string[] = ['hl1', 'hl2', 'pipe'];

export function withSpecial(pool: PathPool): PathPool {
  return { files: [...pool.files, ...SPECIAL_PATHS], dirs: pool.dirs };
}

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

/** What a sequence may use beyond the common vocabulary. */
export interface OpChoice {
  /** renameat2 with flags: only where RENAME2 is spoken (a 7.19 server answers EINVAL) */
  rename2?: boolean;
}

const r2flags = fc.constantFrom<Rename2Flag[]>(['noreplace'], ['exchange'], ['exchange'], ['whiteout']);

export function opArb(pool: PathPool, choice: OpChoice = {}): fc.Arbitrary<Op> {
  const f = fc.constantFrom(...pool.files);
  const d = fc.constantFrom(...pool.dirs);
  // mostly the right kind of object, sometimes the wrong one (EISDIR, ENOTDIR...)
  const file = fc.oneof({ weight: 5, arbitrary: f }, { weight: 1, arbitrary: d });
  const dir = fc.oneof({ weight: 5, arbitrary: d }, { weight: 1, arbitrary: f });
  const any = fc.oneof(f, d);
  const rename2: fc.WeightedArbitrary<Op>[] = choice.rename2 ? [
    { weight: 3, arbitrary: fc.record({ op: fc.constant('rename2' as const), from: any, to: any, flags: r2flags }) },
  ] : [];
  return fc.oneof(
    ...rename2,
    { weight: 4, arbitrary: fc.record({ op: fc.constant('create' as const), path: file, mode, excl: fc.boolean(), trunc: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), path: file, offset: fc.constantFrom(0, 3, 1000, 70_000), data }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('append' as const), path: file, data }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), path: file, size: fc.constantFrom(0, 2, 5000) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('chmod' as const), path: any, mode: fmode }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('chown' as const), path: any, uid: id, gid: id }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('utimens' as const), path: any, atime: time, mtime: time }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: dir, mode }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('rmdir' as const), path: dir }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('unlink' as const), path: file }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('rename' as const), from: file, to: file }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('rename' as const), from: dir, to: dir }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), from: file, to: file }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('symlink' as const), target: fc.constantFrom('f1', '../d', 'nowhere'), path: file }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('mkfifo' as const), path: file, mode }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('setxattr' as const), path: any, name: xname, value: fc.constantFrom('v', '', 'long'.repeat(50)) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('removexattr' as const), path: any, name: xname }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('getxattr' as const), path: any, name: xname }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('listxattr' as const), path: any }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('read' as const), path: file }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: dir }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('stat' as const), path: any }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('sameInode' as const), a: file, b: file }) },
  );
}

/** Sequences of 1..length operations; lengths spread over the whole range (fast-check's default keeps them short). */
export function sequenceArb(length: number, pool: PathPool = PATH_POOL, choice: OpChoice = {}): fc.Arbitrary<Op[]> {
  return fc.array(opArb(pool, choice), { minLength: 1, maxLength: length, size: 'max' });
}

/**
 * lseek SEEK_DATA/SEEK_HOLE, copy_file_range, O_TMPFILE (+ linkat) and syncfs, for a server
 * that answers them (fuse_server=kernel). Apart from opArb: where the kernel takes its fallback
 * (libfuse's FUSE 7.19, fuse-overlayfs) holes read as data and O_TMPFILE fails, and the
 * sequences every other test draws stay as they were.
 */
export function fileOpArb(pool: PathPool): fc.Arbitrary<Op> {
  const f = fc.constantFrom(...pool.files);
  const d = fc.constantFrom(...pool.dirs);
  const off = fc.constantFrom(0, 3, 4096, 70_000, 1 << 20);
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant('seek' as const), path: f, whence: fc.constantFrom<'data' | 'hole'>('data', 'hole'), offset: off }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('copyrange' as const), from: f, to: f, fromOffset: off, toOffset: off, len: fc.constantFrom(1, 100, 100_000) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('tmpfile' as const), path: d, mode, data, link: fc.option(f, { nil: undefined }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('syncfs' as const), path: d }) },
  );
}

/** opArb's sequences with fileOpArb's operations mixed in (about one in five). */
export function fileSequenceArb(length: number, pool: PathPool = PATH_POOL): fc.Arbitrary<Op[]> {
  const op = fc.oneof({ weight: 4, arbitrary: opArb(pool) }, { weight: 1, arbitrary: fileOpArb(pool) });
  return fc.array(op, { minLength: 1, maxLength: length, size: 'max' });
}

/**
 * Non-root callers in random sequences (callers.ts): each op stays root's, or
 * becomes the owner's, a group member's or a stranger's, with a random umask.
 * Kept apart from opArb so that sequences without callers are unchanged.
 */
export function withCallerArb(ops: fc.Arbitrary<Op>, callers: readonly Caller[]): fc.Arbitrary<Op> {
  const who = fc.record({ c: fc.constantFrom(...callers), umask: fc.constantFrom(0o022, 0o077, 0o002, 0o000) });
  return fc.tuple(ops, fc.option(who, { freq: 3 })).map(([o, w]) => (w ? { ...o, as: { ...w.c, umask: w.umask } } : o));
}

export function callerSequenceArb(length: number, pool: PathPool, callers: readonly Caller[]): fc.Arbitrary<Op[]> {
  return fc.array(withCallerArb(opArb(pool), callers), { minLength: 1, maxLength: length, size: 'max' });
}
