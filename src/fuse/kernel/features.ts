/**
 * The protocol features stratafs's own server can use, each with its name (the word in
 * `-o fuse_off=` and in `stratafs stats`), the INIT flags it asks for, and the first
 * protocol minor that has them. INIT turns a feature on only when the kernel offers all
 * its flags and the negotiated minor has it, and the mount did not switch it off: tests
 * reach every fallback on one kernel with `fuse_off=` and `fuse_minor=`.
 *
 * A feature is added here once its server and adapter side exist; the rest of the server
 * asks `on(name)` of the session's settled set, never the raw flags.
 */
import { InitFlag, InitFlag2 } from './wire.js';

export interface Feature {
  readonly name: string;
  /** fuse_init_out.flags bits asked for (all must be offered) */
  readonly flags: number;
  /** fuse_init_out.flags2 bits (needs INIT_EXT, 7.36 on) */
  readonly flags2: number;
  /** the first protocol minor that has it */
  readonly minor: number;
  /** one line for `stratafs --help` and native-notes */
  readonly what: string;
  /**
   * features the kernel cannot use together with this one: settle() skips them when this one
   * is on (the table lists this one first)
   */
  readonly excludes?: readonly string[];
  /** a feature that means nothing without another (its name): on only where that one is */
  readonly needs?: string;
}

export const FEATURES: readonly Feature[] = [
  { name: 'async_read', flags: InitFlag.ASYNC_READ, flags2: 0, minor: 6, what: 'several READs of one file in flight (read-ahead in parallel)' },
  { name: 'big_writes', flags: InitFlag.BIG_WRITES, flags2: 0, minor: 9, what: 'WRITEs up to max_write instead of one page' },
  // The kernel caches each inode's ACLs (one GETXATTR of system.posix_acl_access per inode instead of
  // one per `ls -l` entry each time) and enforces them in its permission checks, as kernel overlayfs
  // does with its layers' ACLs. With POSIX_ACL the VFS leaves the umask to the filesystem; DONT_MASK
  // makes the kernel leave it to the server too, which applies a directory's default ACL instead
  // where there is one (core/acl.ts). Off: ACLs are stored and shown, only mode bits are enforced,
  // and the umask applies even under a default ACL.
  // READ and WRITE up to 1 MiB (max_write and max_pages: sizes.ts) instead of 32 pages
  { name: 'max_pages', flags: InitFlag.MAX_PAGES, flags2: 0, minor: 28, what: 'READs and WRITEs up to 1 MiB instead of 128 KiB' },
  // the kernel keeps symlink targets (one READLINK per link); LOOKUP answers that show a link
  // changed drop the cached target (symlinks.ts)
  { name: 'cache_symlinks', flags: InitFlag.CACHE_SYMLINKS, flags2: 0, minor: 29, what: 'symlink targets cached by the kernel' },
  // Close-to-open for layer files changed behind the mount: an OPEN whose backing file's fstat
  // differs from what the node's last open found answers without FOPEN_KEEP_CACHE (the kernel
  // drops the pages at open) and drops the node's cached attributes (NOTIFY_INVAL_INODE without
  // pages, 7.12) before its answer. No INIT flag: AUTO_INVAL_DATA and EXPLICIT_INVAL_DATA stay
  // unasked (native-notes/fuse-server.md). Off: every open of a one-name file keeps the cache.
  { name: 'close_to_open', flags: 0, flags2: 0, minor: 12, what: 'a file changed behind the mount shows its new data and size at the next open (off: the cached pages and size stay)' },
  { name: 'posix_acl', flags: InitFlag.POSIX_ACL | InitFlag.DONT_MASK, flags2: 0, minor: 26, what: 'POSIX ACLs cached and enforced by the kernel; default ACLs instead of the umask' },
  {
    name: 'killpriv_v2', flags: InitFlag.HANDLE_KILLPRIV_V2, flags2: 0, minor: 33,
    what: 'the server drops setuid/setgid on write, truncate and chown: no security.capability GETXATTR before every write',
  },
  // The kernel ignores PASSTHROUGH answered together with WRITEBACK_CACHE (fs/fuse/inode.c
  // process_init_reply), so passthrough comes first and excludes it. The server switches it off
  // itself where BACKING_OPEN would fail EPERM (no CAP_SYS_ADMIN in the initial user namespace).
  {
    name: 'passthrough', flags: 0, flags2: InitFlag2.PASSTHROUGH, minor: 40, excludes: ['writeback_cache'],
    what: 'reads, writes and mmap of an open file go to its backing file in the kernel (root only)',
  },
  // an opcode, not an INIT flag: the kernel sends RENAME2 from 7.23 on and stops after one ENOSYS (then EINVAL)
  { name: 'rename2', flags: 0, flags2: 0, minor: 23, what: 'renameat2 flags: RENAME_NOREPLACE, RENAME_EXCHANGE (RENAME_WHITEOUT EINVAL, as overlayfs)' },
  // FOPEN_CACHE_DIR is an OPENDIR answer, not an INIT flag: every kernel from 7.28 honours it (readdir.ts)
  { name: 'cache_dir', flags: 0, flags2: 0, minor: 28, what: 'directory listings kept in the kernel\'s page cache while they stay the same (OPENDIR answers FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE)' },
  { name: 'readdirplus', flags: InitFlag.DO_READDIRPLUS, flags2: 0, minor: 21, what: 'READDIRPLUS: a listing hands out each entry\'s node and attributes, no LOOKUP per entry' },
  { name: 'readdirplus_auto', flags: InitFlag.READDIRPLUS_AUTO, flags2: 0, minor: 21, needs: 'readdirplus', what: 'the kernel asks READDIRPLUS only for a listing\'s start and where entries were looked up, else READDIR' },
  { name: 'parallel_dirops', flags: InitFlag.PARALLEL_DIROPS, flags2: 0, minor: 25, what: 'lookups and listings of one directory in flight together (no per-directory lock in the kernel)' },
  // opcodes without an INIT flag: on from their first minor; off, the server answers ENOSYS and the kernel takes its own fallback
  { name: 'lseek', flags: 0, flags2: 0, minor: 24, what: 'LSEEK: SEEK_DATA/SEEK_HOLE see the holes of the layer file (off: the whole file is data)' },
  { name: 'copy_file_range', flags: 0, flags2: 0, minor: 28, what: 'COPY_FILE_RANGE: copy_file_range on the layer files (off: the kernel copies through the page cache)' },
  { name: 'copy_file_range_64', flags: 0, flags2: 0, minor: 45, what: 'COPY_FILE_RANGE_64: copies above 4 GiB in one request (off: COPY_FILE_RANGE)' },
  { name: 'syncfs', flags: 0, flags2: 0, minor: 34, what: "SYNCFS: syncfs(2) on the mount syncs the upper's file system (off: nothing reaches it)" },
  { name: 'tmpfile', flags: 0, flags2: 0, minor: 37, what: 'TMPFILE: O_TMPFILE in the mount, in the upper (off: EOPNOTSUPP)' },
  { name: 'statx', flags: 0, flags2: 0, minor: 39, what: "STATX: a statx asking for the birth time gets the layer file's (off: GETATTR, no birth time)" },
  { name: 'request_timeout', flags: 0, flags2: InitFlag2.REQUEST_TIMEOUT, minor: 43, what: 'the kernel aborts the connection when a request waits longer than request_timeout= seconds (only with that option)' },
  {
    name: 'writeback_cache', flags: InitFlag.WRITEBACK_CACHE, flags2: 0, minor: 23,
    what: 'writes land in the page cache and reach the server in pages later; the kernel owns size and mtime (ENOSPC at fsync/close)',
    // a cached write reaches the server without its caller: only killpriv_v2's write-through
    // of writes that drop setuid/setgid keeps the setgid rule (fuse/lowlevel/killpriv.ts)
    needs: 'killpriv_v2',
  },
  // Offered only where root set the fuse module's enable_uring (host-wide); asked for only with
  // -o io_uring (kernelMount), off by default until it measures faster than /dev/fuse reads
  // (native-notes/fuse-server.md, "io_uring"). Answered, the kernel sends every request but
  // FORGET and INTERRUPT through the ring once all its queues are registered (fuse-dev.c).
  { name: 'io_uring', flags: 0, flags2: InitFlag2.OVER_IO_URING, minor: 42, what: 'requests through io_uring commands instead of read(2) of /dev/fuse (only with -o io_uring, where the fuse module\'s enable_uring is set)' },
];

export const featureNames = (): string[] => FEATURES.map((f) => f.name);

/** the word that switches every feature off: the server then asks for no INIT flag */
export const ALL_OFF = 'all';

/** What INIT settled: the flags answered and the features they turned on. */
export interface Settled {
  flags: number;
  flags2: number;
  /** names of the features on, in FEATURES order */
  on: readonly string[];
}

/**
 * The features to use, given what the kernel offered (its flags and flags2; flags2 only
 * counts when it set INIT_EXT), the minor both settled on, and the names switched off.
 */
export function settle(minor: number, kflags: number, kflags2: number, off: ReadonlySet<string>): Settled {
  const offered2 = (kflags & InitFlag.INIT_EXT) !== 0 ? kflags2 : 0;
  let flags = 0;
  let flags2 = 0;
  const on: string[] = [];
  if (off.has(ALL_OFF)) return { flags, flags2, on };
  const excluded = new Set<string>();
  for (const f of FEATURES) {
    if (off.has(f.name) || excluded.has(f.name) || minor < f.minor) continue;
    if ((kflags & f.flags) !== f.flags || (offered2 & f.flags2) !== f.flags2) continue;
    if (f.needs !== undefined && !on.includes(f.needs)) continue;
    flags |= f.flags;
    flags2 |= f.flags2;
    on.push(f.name);
    for (const x of f.excludes ?? []) excluded.add(x);
  }
  // flags2 is read by the kernel only when INIT_EXT is set in the answer
  if (flags2 !== 0) flags |= InitFlag.INIT_EXT;
  return { flags, flags2, on };
}
