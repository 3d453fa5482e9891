/**
 * THE list of intended divergences of stratafs from kernel overlayfs. The
 * differential harness honours these entries and nothing else: any other
 * difference in results, errnos or trees fails the tests.
 *
 * An entry matches an operation whose results differ (reference = kernel,
 * candidate = the implementation named), or a tree difference.
 */
import type { Impl } from './mounts.js';
import type { OpKind } from './ops.js';

export interface OpMatcher {
  kind: 'op';
  op: OpKind[];
  /** the candidate's errno, or 'ok' */
  candidate: string;
  /** the kernel's result: errno or 'ok'; omitted = any */
  reference?: string;
  /** tested against every path the operation names (latin1); omitted = any */
  path?: RegExp;
  /** tested against "REFERENCE / CANDIDATE" as showResult prints them (for differing values) */
  results?: RegExp;
}

export interface TreeMatcher {
  kind: 'tree';
  /** 'merged' or a cross-read phase */
  phase?: string;
  field: string | RegExp;
  path?: RegExp;
  /** the node's type in the reference tree */
  nodeType?: string[];
}

export interface Divergence {
  id: string;
  impl: Exclude<Impl, 'kernel'>;
  /** only on mounts with this -o word (an option that trades agreement for something else) */
  option?: string;
  match: OpMatcher | TreeMatcher;
  reason: string;
}

export const DIVERGENCES: readonly Divergence[] = [
  {
    id: 'wh-prefix-names',
    impl: 'stratafs',
    match: { kind: 'op', op: ['create', 'mkdir', 'symlink', 'mkfifo', 'link', 'rename'], candidate: 'EINVAL', reference: 'ok', path: /(^|\/)\.wh\.[^/]*$/ },
    reason:
      'stratafs reads OCI `.wh.` whiteouts in every layer, so a user file named `.wh.X` would read back as a whiteout of X ' +
      '(and be invisible): creating such names is refused with EINVAL, as fuse-overlayfs does. The kernel gives the prefix no meaning.',
  },
  {
    id: 'wh-prefix-names-read',
    impl: 'stratafs',
    match: { kind: 'tree', phase: "stratafs reads kernel's upper", field: 'exists', path: /(^|\/)\.wh\.[^/]*$/ },
    reason:
      'the other side of wh-prefix-names: a kernel upper may hold a user file named `.wh.X` (the kernel allows it); ' +
      'stratafs reads it as an OCI whiteout, as fuse-overlayfs and containers/storage do, so it does not show.',
  },
  {
    id: 'passthrough-lower-stale-handle',
    impl: 'stratafs',
    option: 'passthrough_lower',
    match: { kind: 'op', op: ['fdread'], candidate: 'ok', reference: 'ok' },
    reason:
      'passthrough_lower (fuse_server=kernel): the kernel reads a passed-through handle of a lower file from that file itself, ' +
      'so after a copy-up it keeps the lower data; kernel overlayfs re-points read-only handles to the copy (since 4.19). ' +
      'The default passes upper files only (native-notes/fuse-server.md, "Passthrough").',
  },
  {
    id: 'passthrough-lower-busy-inode',
    impl: 'stratafs',
    option: 'passthrough_lower',
    match: { kind: 'op', op: ['open', 'read', 'write', 'append', 'truncate', 'create', 'exec', 'fdwrite'], candidate: 'EIO' },
    reason:
      'passthrough_lower: while a handle passes through to a lower file, the kernel keeps that one backing file for the inode ' +
      '(fs/fuse/iomode.c): an open of the copied-up file (another backing file) or in cached mode fails EIO until the handle is closed.',
  },
  {
    id: 'seek-data-merged-dir',
    impl: 'stratafs',
    match: { kind: 'op', op: ['seek'], candidate: 'ok', reference: 'EINVAL' },
    reason:
      'lseek SEEK_DATA/SEEK_HOLE on a merged directory: kernel overlayfs\'s ovl_dir_llseek takes only SEEK_SET/SEEK_CUR ' +
      '(EINVAL); on a FUSE mount a directory\'s llseek is the kernel\'s generic one (0 for SEEK_DATA 0), no request reaches ' +
      'the daemon. Found by fileSequenceArb (seed 7): rename d/sub ociOpq/old, then SEEK_DATA on it; fuse-overlayfs answers as stratafs.',
  },
  {
    id: 'seek-data-merged-dir-past-end',
    impl: 'stratafs',
    match: { kind: 'op', op: ['seek'], candidate: 'ENXIO', reference: 'EINVAL' },
    reason: 'as seek-data-merged-dir, from an offset past the directory\'s size: the generic llseek says ENXIO',
  },
  // writeback_cache (fuse_server=kernel where passthrough is not in use): the kernel acknowledges
  // a write once it is in its page cache; the daemon learns of ENOSPC/EDQUOT only when the pages
  // are written back, and the caller at fsync or close. Shown by fuse-writeback.test.ts
  // ("writeback-enospc"); the crash and full-disk tests run without writeback (mounts.ts fuseOffWords).
  // The same test shows the other side, which no operation here can match: dirty pages not yet
  // written back are lost when the daemon is killed ("writeback-crash").
  {
    id: 'writeback-enospc-write',
    impl: 'stratafs',
    match: { kind: 'op', op: ['fdwrite'], candidate: 'ok', reference: 'ENOSPC' },
    reason: 'with the writeback cache a write into a full upper is acknowledged from the page cache; the error comes at fsync or close',
  },
  {
    id: 'writeback-enospc-close',
    impl: 'stratafs',
    match: { kind: 'op', op: ['close'], candidate: 'ENOSPC', reference: 'ok' },
    reason: 'with the writeback cache the ENOSPC of a write into a full upper is reported when the descriptor is closed',
  },
  {
    id: 'writeback-coarse-mtime',
    impl: 'stratafs',
    // not an -o word: the writeback cache is on by default where passthrough is not (fuse-writeback.test.ts names it)
    option: 'writeback_cache',
    match: { kind: 'op', op: ['attrs', 'fdattrs'], candidate: 'ok', reference: 'ok', results: /"since":\{[^}]*"mtime":"later"[^}]*\}.* \/ .*"since":\{[^}]*"mtime":"same"/ },
    reason:
      'with the writeback cache the kernel stamps mtime/ctime on the FUSE inode itself at clock-tick granularity (no multigrain ' +
      'timestamps on FUSE), and hands that value to the daemon at close: a write within a few ms of the last change keeps its ' +
      'mtime; kernel overlayfs shows the layer file\'s fine-grained one.',
  },
];

/** The divergences of `impl`, with those of the -o words in `options` (entries with `option`). */
export function divergencesFor(impl: Impl, options: readonly string[] = []): Divergence[] {
  return DIVERGENCES.filter((d) => d.impl === impl && (d.option === undefined || options.includes(d.option)));
}
