/**
 * FUSE passthrough on stratafs's own server (native-notes/fuse-server.md, "Passthrough"):
 * an OPEN or CREATE reply may name a backing file (FOPEN_PASSTHROUGH + a backing id from
 * FUSE_DEV_IOC_BACKING_OPEN); the kernel then serves read, write, splice and mmap of that
 * open file from the backing file itself, without a request.
 *
 * The kernel's rules this table keeps (fs/fuse/iomode.c, kernel 6.18), per kernel inode,
 * that is per node:
 * - an inode is either in cached mode (files opened without passthrough) or in passthrough
 *   mode, never both: a passthrough open while cached files are open fails, and so does a
 *   cached open while passthrough files are open (the caller sees EIO);
 * - all passthrough files of an inode share one backing file (another id: EIO);
 * - FOPEN_KEEP_CACHE is refused with FOPEN_PASSTHROUGH (EIO).
 * So each node counts its open files of either kind, and a new open follows the mode the
 * node is in; only a node with no file open chooses afresh. A backing id lives as long as
 * the node's passthrough files: closed when the last one is released (the kernel keeps its
 * own references to the file for the files already open).
 *
 * Pages a node cached before it was passed through may be stale once writes went to the
 * backing file directly: a later cached open of such a node drops FOPEN_KEEP_CACHE, so the
 * kernel drops its pages at open.
 */
import * as fs from 'node:fs';
import { fuseDev, type DevSession } from '../../native/fuse-dev.js';
import { ELOOP, EPERM } from '../../shared/constants.js';
import { FOpen } from './wire.js';

interface NodeFiles {
  /** files open through the backing id */
  passed: number;
  /** files open in cached mode (READ/WRITE through the daemon) */
  cached: number;
  /** the backing id while `passed` > 0 */
  id: number;
  /** the backing file's identity (st_dev:st_ino) while `passed` > 0 */
  file: string;
  /** some file of this node went through a backing file since the kernel last forgot it */
  wasPassed: boolean;
}

export interface PassthroughStats {
  /** opens answered with FOPEN_PASSTHROUGH */
  passed: number;
  /** opens of a file that could pass through answered in cached mode, by reason */
  fallbacks: Record<string, number>;
  /** backing ids registered now */
  ids: number;
}

export class PassthroughTable {
  private readonly nodes = new Map<number, NodeFiles>();
  /** fh -> [node, passed through] */
  private readonly files = new Map<number, [number, boolean]>();
  private enabled = true;
  private readonly st: PassthroughStats = { passed: 0, fallbacks: {}, ids: 0 };

  constructor(private readonly dev: () => DevSession | undefined, private readonly log: (line: string) => void) {}

  /**
   * The open flags to answer for file `fh` of `node` and the backing id (0: none):
   * `backingFd` is the daemon's fd of the file when the adapter lets it pass through, else -1.
   */
  opened(node: number, fh: number, openFlags: number, backingFd: number): [number, number] {
    let n = this.nodes.get(node);
    if (n === undefined) { n = { passed: 0, cached: 0, id: 0, file: '', wasPassed: false }; this.nodes.set(node, n); }
    if (backingFd >= 0 && n.cached === 0) {
      const id = this.backing(n, backingFd);
      if (id > 0) {
        n.passed++;
        n.wasPassed = true;
        this.files.set(fh, [node, true]);
        this.st.passed++;
        // DIRECT_IO would send reads and writes to the daemon again; KEEP_CACHE is refused
        return [(openFlags & ~(FOpen.KEEP_CACHE | FOpen.DIRECT_IO)) | FOpen.PASSTHROUGH, id];
      }
    }
    if (n.passed > 0) {
      // The node's files pass through to another file (a lower one, before its copy-up):
      // the kernel fails this open with EIO and releases it. Never hand out that id here:
      // an open for writing would write to the lower file.
      this.fallback('other-backing');
      this.files.set(fh, [node, false]);
      n.cached++;
      return [openFlags, 0];
    }
    if (backingFd >= 0) this.fallback('cached-open');
    n.cached++;
    this.files.set(fh, [node, false]);
    return [n.wasPassed ? openFlags & ~FOpen.KEEP_CACHE : openFlags, 0];
  }

  /** RELEASE of `fh`: the backing id goes with the node's last passthrough file */
  released(fh: number): void {
    const f = this.files.get(fh);
    if (f === undefined) return;
    this.files.delete(fh);
    const n = this.nodes.get(f[0]);
    if (n === undefined) return;
    if (!f[1]) { n.cached--; return; }
    if (--n.passed > 0) return;
    this.close(n);
  }

  /** FORGET: the kernel dropped the inode, its pages and its io mode with it */
  forgotten(node: number): void {
    const n = this.nodes.get(node);
    if (n !== undefined && n.passed === 0 && n.cached === 0) this.nodes.delete(node);
  }

  stats(): PassthroughStats {
    return { passed: this.st.passed, fallbacks: { ...this.st.fallbacks }, ids: this.st.ids };
  }

  /** the node's backing id for this fd's file: its current one if the same file, else a new one; 0: none */
  private backing(n: NodeFiles, fd: number): number {
    if (!this.enabled) return 0;
    let file: string;
    try {
      const s = fs.fstatSync(fd, { bigint: true });
      file = `${s.dev}:${s.ino}`;
    } catch {
      return 0;
    }
    if (n.passed > 0) return n.file === file ? n.id : 0;
    const dev = this.dev();
    if (dev === undefined) return 0;
    const id = fuseDev().backingOpen(dev, fd);
    if (id > 0) {
      n.id = id;
      n.file = file;
      this.st.ids++;
      return id;
    }
    if (id === -EPERM) {
      // not negotiated or not privileged: the same for every file of the mount
      this.enabled = false;
      this.log(`stratafs: FUSE passthrough refused by the kernel (EPERM): every file is served through READ/WRITE`);
    }
    this.fallback(id === -ELOOP ? 'stack-depth' : `errno-${-id}`);
    return 0;
  }

  private close(n: NodeFiles): void {
    const dev = this.dev();
    if (dev !== undefined && n.id > 0) fuseDev().backingClose(dev, n.id);
    this.st.ids--;
    n.id = 0;
    n.file = '';
  }

  private fallback(why: string): void {
    this.st.fallbacks[why] = (this.st.fallbacks[why] ?? 0) + 1;
  }
}
