/**
 * Request sizes of stratafs's own FUSE server: the read buffer native/fuse-dev.c fills, and
 * what INIT answers for max_write and max_pages (the max_pages feature, FUSE 7.28).
 *
 * Without MAX_PAGES the kernel puts at most 32 pages (128 KiB) in one READ or WRITE, whatever
 * max_write says; with it, up to max_pages (the kernel caps it at its sysctl
 * fs.fuse.max_pages_limit, 256 by default: 1 MiB). The kernel refuses a read(2) of /dev/fuse
 * smaller than max_write + the request headers (or 8 KiB), so each read is given that much
 * room; requests are packed one after the other (fuse-dev.c read_batch), so a batch of small
 * requests touches only the first pages of the buffer and memory grows only as large requests
 * fill it.
 */
import { ALL_OFF } from './features.js';
import { FUSE_MAX_MINOR } from './wire.js';

/** max_write (and READ size) with max_pages: measured in native-notes/fuse-server.md ("Large requests") */
export const BIG_WRITE = 1 << 20;
const PAGE = 4096;
/** the first minor with fuse_init_out.max_pages */
const MAX_PAGES_MINOR = 28;
/** room for small requests after the one a read may fill: a batch of them never waits for a large one */
const SMALL_ROOM = 64 * 1024;
/** requests per batch at most */
export const BATCH = 16;

/** Whether the mount's options leave max_pages possible (the kernel's offer is known only at INIT). */
export const maxPagesPossible = (off: ReadonlySet<string>, maxMinor: number | undefined): boolean =>
  !off.has(ALL_OFF) && !off.has('max_pages') && Math.min(maxMinor ?? FUSE_MAX_MINOR, FUSE_MAX_MINOR) >= MAX_PAGES_MINOR;

/** The room one read is given and the buffer's size, for a mount whose largest write may be `maxWrite`. */
export function readRoom(maxWrite: number): { slot: number; cap: number } {
  // libfuse's rule: a page for the headers (the kernel needs 80 bytes)
  const slot = Math.max(maxWrite + PAGE, 8192);
  return { slot, cap: slot + SMALL_ROOM };
}

/** Where request i + 1 starts after request i of `len` bytes at `pos` (fuse-dev.c aligns to 8). */
export const nextRequest = (pos: number, len: number): number => pos + ((len + 7) & ~7);

/** fuse_init_out.max_write and max_pages for what INIT settled (max_pages 0: the field unused). */
export function initSizes(on: readonly string[], mountMaxWrite: number, slot: number): { maxWrite: number; maxPages: number } {
  if (!on.includes('max_pages')) return { maxWrite: Math.min(mountMaxWrite, slot - PAGE), maxPages: 0 };
  const maxWrite = Math.min(Math.max(mountMaxWrite, BIG_WRITE), slot - PAGE);
  return { maxWrite, maxPages: Math.ceil(maxWrite / PAGE) };
}
