/**
 * What a fuse_api=highlevel mount asks of libfuse 2.9 (fuse-native's binding) from its
 * MountConfig: the kernel's mount options (permissions and the generic flags; libfuse 2.9
 * itself would mount nosuid,nodev), nonempty (mounting over a non-empty directory or a
 * layer is normal for an overlay), 128 KiB writes, and the source and type columns of the
 * mount table. The words themselves are written by native/fuse-mount.ts. The default
 * server takes no libfuse words: fuse/kernel/mount.ts describes its mount.
 */
import type { LibfuseOptions } from '../native/fuse-mount.js';
import type { FuseOptions } from '../native/fuse.js';
import type { MountConfig } from './config.js';

function mountOptions(c: MountConfig): LibfuseOptions {
  return {
    bigWrites: true, maxWrite: 131072, nonempty: true,
    allowOther: c.allowOther, defaultPermissions: c.defaultPermissions,
    suid: c.flags.suid, dev: c.flags.dev, exec: c.flags.exec, readOnly: c.flags.readOnly,
    noatime: c.flags.noatime, sync: c.flags.sync, dirsync: c.flags.dirsync,
    fsname: c.fsname, subtype: 'stratafs',
  };
}

/**
 * The binding's options for fuse_api=highlevel: the mount's, plus use_ino (the core numbers
 * inodes), the kernel cache timeouts, and NOT hard_remove: libfuse then renames a file
 * unlinked while open to a `.fuse_hidden` name, which the high-level adapter turns into the
 * core's real unlink plus a virtual name served through the open handles
 * (highlevel/hidden-names.ts) -- with hard_remove libfuse loses the node's path and answers
 * fstat with ENOENT itself.
 */
export function highLevelOptions(c: MountConfig, onExit: () => void): FuseOptions {
  return {
    ...mountOptions(c),
    useIno: true, hardRemove: false,
    entryTimeout: c.timeout, attrTimeout: c.attrTimeout, negativeTimeout: c.negativeTimeout,
    timeout: false,
    onExit,
  };
}
