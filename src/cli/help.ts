/** The help text after commander's own for `stratafs --help`: every mount option, and the forms. */
import { DEFAULT_LOOKUP_CACHE_SIZE } from '../core/config.js';
import { DEFAULT_TIMEOUT_S, MAX_LAYERS } from '../fuse/config.js';
import { featureNames } from '../fuse/kernel/features.js';

export const MOUNT_HELP = `
Mount options (-o, comma separated; \\ escapes , and : inside values):
  lowerdir=DIR[:DIR...]   read-only layers, top first (up to ${MAX_LAYERS})
  upperdir=DIR            writable layer
  workdir=DIR             its work area, on the upper's filesystem; without
                          upperdir and workdir the mount is read-only
  ro | rw                 read-only mount (the upper is then served as the top layer)
  redirect_dir=on|off     rename directories with lower content (on, default) or EXDEV (off)
  userxattr               user.overlay.* markers instead of trusted.overlay.*
  timeout=SECONDS         kernel cache of entries (default ${DEFAULT_TIMEOUT_S}); also the
                          default of attr_timeout and negative_timeout. Changes made
                          to the layers behind the mount's back show after this long
  attr_timeout=SECONDS    kernel attribute cache (default: timeout; 0 with fuse_api=highlevel)
  fuse_api=lowlevel|highlevel
                          serve through stratafs's own FUSE server on /dev/fuse
                          (default; mount(2) as root, fusermount3 otherwise) or
                          fuse-native's high-level binding on libfuse 2.9 (slower,
                          for comparison; a plain user needs fusermount)
  fuse_server=kernel      the default server, named (fuse_server=libfuse was removed)
  fuse_minor=N            answer the kernel's INIT with protocol 7.N at most (19 to
                          45; default the newest both know; not with fuse_api=highlevel)
  fuse_off=NAME[:NAME...] do not use these protocol features
                          even where the kernel offers them (${featureNames().join(', ')};
                          all: none of them); \`stratafs stats\` shows those in use
  request_timeout=SECONDS the kernel aborts the connection once a request waited
                          this long for the daemon (a hung daemon: that request
                          fails ECONNABORTED, every later one ENOTCONN); default 0,
                          never: a copy-up of a large file holds its request for minutes
  io_uring                ask the kernel for FUSE over io_uring: requests come
                          through io_uring commands, not read(2) of /dev/fuse. Only
                          where root set /sys/module/fuse/parameters/enable_uring
                          (else nothing changes); default off
  passthrough_lower       as root: FUSE passthrough (reads, writes, mmap) of
                          lower files through too (upper files always are); a handle
                          opened on a lower file then keeps reading it after a copy-up
                          (kernel overlayfs shows the copy). Default without upperdir
  negative_timeout=SECONDS
                          kernel negative-lookup cache (default: timeout)
  lookup_cache=N          lookup cache entries (default ${DEFAULT_LOOKUP_CACHE_SIZE}); also bounds
                          the memory of all caches: about 1.25 KiB x N, whatever the depth
  allow_other             let other users use the mount (default as root, i.e. euid 0,
                          also inside a user namespace)
  noallow_other           only the mounter (and root) may use it
  default_permissions     kernel permission checks from the mode bits (always on)
  volatile | fsync=0      skip fsync
  force                   mount over a dead FUSE mount (aborts and detaches it first)
  log=FILE                daemon log (default <id>.log in the runtime directory:
                          $STRATAFS_RUNTIME_DIR, /run/stratafs for root,
                          $XDG_RUNTIME_DIR/stratafs or $TMPDIR/stratafs-<euid>)
  fsname=NAME             source column of the mount table (default stratafs)
  debug                   same as -d
  suid,nosuid,dev,nodev,exec,noexec,atime,noatime,sync,async,dirsync
                          mount flags (default nodev,noatime; as root suid,
                          else nosuid)
fuse-overlayfs's options:
  uidmapping=DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...], gidmapping=...
                          on-disk ids DISK.. show as SHOWN..; ids outside every
                          range show as the overflow id (65534); the ids of
                          callers and chown are stored the other way round
  squash_to_root | squash_to_uid=ID | squash_to_gid=ID
                          every object shows this owner
  static_nlink            directories show one link
  xattr_permissions=0|1|2 keep owners and modes of upper objects in
                          security.(1) or user.(2) fuseoverlayfs.override_stat
  noxattrs=1              refuse every xattr request
  noacl                   the kernel does not enforce POSIX ACLs (mode bits only)
  context=..., threaded=, fast_ino=, writeback=
                          accepted without effect
A comma inside double quotes does not split an option; empty options are skipped.
Unknown options are reported by name and ignored.

Forms:
  stratafs [-f] [-d] -o OPTIONS MOUNTPOINT  mount; without -f as a daemon, exit 0 once it answers
  stratafs SOURCE MOUNTPOINT -o OPTIONS     mount helper form (mount -t fuse.stratafs, fstab)
  stratafs umount [--force] MOUNTPOINT
  stratafs stats [--json] [--gc] MOUNTPOINT
  stratafs layer|image|diff|commit|size ... image commands (each has --help)
`;
