/**
 * Symlink targets cached by the kernel (the cache_symlinks feature, FUSE 7.29): with
 * CACHE_SYMLINKS the kernel keeps a link's target in the page cache of its inode and sends
 * READLINK once. It never drops those pages on its own while the inode lives: attribute
 * changes invalidate the pages of regular files only (fs/fuse/inode.c fuse_change_attributes),
 * so a link replaced behind the mount's back that the node table maps to the same node (the
 * same name, and a lower filesystem that reused the inode number: ext4 does) would show its
 * old target forever.
 *
 * The server cannot tell a change behind its back from the attributes it answers (the core's
 * lookup cache keeps an object's attributes until a change through the mount drops them), but
 * the kernel asks LOOKUP again once the entry times out (timeout=): so every LOOKUP answer,
 * and every READDIRPLUS entry, for a symlink node the kernel already knows drops its cached
 * target (FUSE_NOTIFY_INVAL_INODE from offset 0). The next readlink asks READLINK once more:
 * a change behind the mount's back shows after timeout=, as without the cache, and between
 * two entry timeouts every readlink is served by the kernel. A change made through the mount
 * always gives a new node (a symlink cannot be rewritten in place).
 *
 * The notification goes out through the helper thread, never from the JS thread: dropping the
 * pages locks each one, and a READLINK filling the page holds that lock until the server
 * answers it (server.ts dropLinkTarget). A LOOKUP's answer follows it through the same thread
 * (replyAfterDrop), so the caller that follows the link next reads it again; a READDIRPLUS
 * answer goes out directly, before its entries' drops land (a readlink in between sees the old
 * target, as it would have an instant earlier).
 */
import { S_IFLNK, S_IFMT } from '../../shared/constants.js';
import { StatIdx } from '../../native/sys-api.js';

export class SymlinkWatch {
  /** symlink nodes answered before */
  private readonly seen = new Set<number>();

  /** Whether the kernel may hold a cached target of `node` that must go, given the attributes being answered. */
  changed(node: number, attr: Float64Array): boolean {
    if ((attr[StatIdx.mode]! & S_IFMT) !== S_IFLNK) return false;
    if (this.seen.has(node)) return true;
    this.seen.add(node);
    return false;
  }

  /** the kernel forgot the node (it evicted the inode, and its cached target with it) */
  forget(node: number): void {
    this.seen.delete(node);
  }
}
