/**
 * Other users on a root mount (allow_other): the same operations by the owner
 * of the files, a member of the owner's group and a stranger, each a process
 * of its own ids with no capabilities (callers.ts), compared with kernel
 * overlayfs on the same layers: errnos, then modes, owners and xattrs (the
 * merged tree, which the runner compares after every case, includes all of
 * them). Lower objects are copied up by the caller's operation; the `up/`
 * objects are already in the upper.
 */
import type { Entry, LayerSetSpec } from './layers.js';
import type { Case } from './differential.js';
import type { Op } from './ops.js';
import type { PathPool } from './random.js';
import { MEMBER, OWNER, STRANGER, type Caller } from './callers.js';

/** security.capability v2 granting cap_net_bind_service (effective): the bytes setcap writes */
export const FILE_CAP = '\x01\x00\x00\x02' + '\x00\x04\x00\x00' + '\x00'.repeat(12);

const SCRIPT = '#!/bin/sh\necho ran\n';
const o = OWNER.uid;
const lower: Entry[] = [
  { kind: 'dir', path: 'home', mode: 0o755, uid: o, gid: o },
  { kind: 'file', path: 'home/priv', content: 'secret\n', mode: 0o600, uid: o, gid: o },
  { kind: 'file', path: 'home/grp', content: 'group\n', mode: 0o660, uid: o, gid: o },
  { kind: 'file', path: 'home/ro', content: 'public\n', mode: 0o644, uid: o, gid: o },
  { kind: 'file', path: 'home/exe', content: SCRIPT, mode: 0o750, uid: o, gid: o },
  { kind: 'file', path: 'home/exeall', content: SCRIPT, mode: 0o755, uid: o, gid: o },
  { kind: 'file', path: 'home/noexec', content: SCRIPT, mode: 0o644, uid: o, gid: o },
  { kind: 'dir', path: 'home/dir', mode: 0o700, uid: o, gid: o },
  { kind: 'file', path: 'home/dir/in', content: 'in\n', mode: 0o644, uid: o, gid: o },
  { kind: 'dir', path: 'gdir', mode: 0o775, uid: o, gid: o },
  { kind: 'file', path: 'gdir/f', content: 'f\n', mode: 0o644, uid: o, gid: o },
  { kind: 'dir', path: 'pub', mode: 0o777 },
  { kind: 'dir', path: 'sticky', mode: 0o1777 },
  { kind: 'file', path: 'sticky/a', content: 'a\n', mode: 0o666, uid: o, gid: o },
  { kind: 'file', path: 'sticky/b', content: 'b\n', mode: 0o666, uid: MEMBER.uid, gid: MEMBER.gid },
  { kind: 'dir', path: 'sticky/da', mode: 0o755, uid: o, gid: o },
  { kind: 'dir', path: 'sgid', mode: 0o2777, gid: o },
  { kind: 'file', path: 'sgid/old', content: 'old\n', mode: 0o644 },
  { kind: 'dir', path: 's', mode: 0o777 },
  { kind: 'file', path: 's/suid', content: 'suid\n', mode: 0o4777, uid: o, gid: o },
  { kind: 'file', path: 's/sgid', content: 'sgid\n', mode: 0o2777, uid: o, gid: o },
  { kind: 'file', path: 's/both', content: 'both\n', mode: 0o6777, uid: o, gid: o },
  // setgid without group execute marks mandatory locking, not privilege: a write keeps it
  { kind: 'file', path: 's/sgidnx', content: 'nx\n', mode: 0o2767, uid: o, gid: o },
  { kind: 'file', path: 's/sgidnx2', content: 'nx\n', mode: 0o2766, uid: o, gid: o },
  { kind: 'file', path: 's/sgidnx3', content: 'nx\n', mode: 0o2766, uid: o, gid: o },
  { kind: 'file', path: 's/sgidnx4', content: 'nx\n', mode: 0o2766, uid: o, gid: o },
  { kind: 'file', path: 's/sgidnx5', content: 'nx\n', mode: 0o2766, uid: o, gid: o },
  // owned by the stranger, in a group it is not in (as root can leave it)
  { kind: 'file', path: 's/cown', content: 'cown\n', mode: 0o2644, uid: STRANGER.uid, gid: o },
  { kind: 'file', path: 's/cown2', content: 'cown\n', mode: 0o2654, uid: STRANGER.uid, gid: o },
  { kind: 'file', path: 's/own', content: 'own\n', mode: 0o4755, uid: o, gid: o },
  { kind: 'file', path: 's/trunc', content: 'trunc\n', mode: 0o6777, uid: o, gid: o },
  { kind: 'file', path: 's/chown', content: 'chown\n', mode: 0o6755, uid: o, gid: o },
  { kind: 'file', path: 's/chgrp', content: 'chgrp\n', mode: 0o2755, uid: MEMBER.uid, gid: MEMBER.gid },
  { kind: 'file', path: 's/rootw', content: 'root\n', mode: 0o6777, uid: o, gid: o },
  { kind: 'file', path: 's/cap', content: 'cap\n', mode: 0o777, uid: o, gid: o, xattrs: { 'security.capability': FILE_CAP } },
  { kind: 'file', path: 's/captrunc', content: 'cap\n', mode: 0o777, uid: o, gid: o, xattrs: { 'security.capability': FILE_CAP } },
  { kind: 'file', path: 's/caproot', content: 'cap\n', mode: 0o777, uid: o, gid: o, xattrs: { 'security.capability': FILE_CAP } },
  { kind: 'dir', path: 'x', mode: 0o755, uid: o, gid: o },
  { kind: 'file', path: 'x/trust', content: 'xattrs\n', mode: 0o666, uid: o, gid: o, xattrs: { 'trusted.t': 'tt', 'user.u': 'uu' } },
  { kind: 'file', path: 'x/ro', content: 'ro\n', mode: 0o644, uid: o, gid: o, xattrs: { 'user.u': 'uu' } },
  { kind: 'dir', path: 'x/stickyd', mode: 0o1777, uid: o, gid: o, xattrs: { 'user.d': 'dd' } },
];

const upper: Entry[] = [
  { kind: 'dir', path: 'up', mode: 0o777 },
  { kind: 'file', path: 'up/suid', content: 'suid\n', mode: 0o6777, uid: o, gid: o },
  { kind: 'file', path: 'up/own', content: 'own\n', mode: 0o6755, uid: o, gid: o },
  { kind: 'file', path: 'up/rootw', content: 'root\n', mode: 0o6777, uid: o, gid: o },
  { kind: 'file', path: 'up/cap', content: 'cap\n', mode: 0o777, uid: o, gid: o, xattrs: { 'security.capability': FILE_CAP } },
  { kind: 'file', path: 'up/trust', content: 'xattrs\n', mode: 0o666, uid: o, gid: o, xattrs: { 'trusted.t': 'tt' } },
];

export const USERS_LAYERS: LayerSetSpec = { lowers: [lower], upper };

const A = OWNER;
const B = MEMBER;
const C = STRANGER;
/** strangers first: their failures must come before the owner changes anything */
const ALL: readonly Caller[] = [C, B, A];
const tag = (c: Caller): string => `u${c.uid}`;
const as = (c: Caller, ops: Op[]): Op[] => ops.map((x) => ({ ...x, as: c }));
const stat = (path: string): Op => ({ op: 'stat', path });
const u = (name: string, about: string, ops: Op[]): Case => ({ name: `users-${name}`, about, ops, layers: USERS_LAYERS });

const PARTS: Case[] = [
  u('access', 'read, write, exec, create and delete where each may and may not', [
    ...ALL.flatMap((c) => as(c, [
      { op: 'read', path: 'home/priv' },
      { op: 'read', path: 'home/grp' },
      { op: 'read', path: 'home/ro' },
      { op: 'exec', path: 'home/exe' },
      { op: 'exec', path: 'home/exeall' },
      { op: 'exec', path: 'home/noexec' },
      { op: 'readdir', path: 'home/dir' },
      { op: 'stat', path: 'home/dir/in' },
      { op: 'readdir', path: 'home' },
      { op: 'getxattr', path: 'home/ro', name: 'user.none' },
    ])),
    // writes and namespace changes: each caller's failures, then the ones that succeed
    ...as(C, [
      { op: 'write', path: 'home/ro', offset: 0, data: 'C' },
      { op: 'write', path: 'home/grp', offset: 0, data: 'C' },
      { op: 'append', path: 'home/priv', data: 'C' },
      { op: 'truncate', path: 'home/grp', size: 1 },
      { op: 'create', path: 'home/newC', mode: 0o644 },
      { op: 'mkdir', path: 'home/dC', mode: 0o755 },
      { op: 'unlink', path: 'home/ro' },
      { op: 'rename', from: 'home/ro', to: 'pub/ro' },
      { op: 'rmdir', path: 'home/dir' },
      { op: 'create', path: 'gdir/newC', mode: 0o644 },
      { op: 'unlink', path: 'gdir/f' },
      { op: 'symlink', target: 'x', path: 'home/lC' },
      { op: 'link', from: 'home/ro', to: 'pub/lC' },
    ]),
    ...as(B, [
      { op: 'write', path: 'home/ro', offset: 0, data: 'B' },
      { op: 'create', path: 'home/newB', mode: 0o644 },
      { op: 'unlink', path: 'home/grp' },
      { op: 'write', path: 'home/grp', offset: 0, data: 'B' },
      { op: 'truncate', path: 'home/grp', size: 3 },
      { op: 'create', path: 'gdir/newB', mode: 0o664 },
      { op: 'mkdir', path: 'gdir/dB', mode: 0o775 },
      { op: 'rename', from: 'gdir/f', to: 'gdir/fB' },
      { op: 'link', from: 'home/grp', to: 'pub/lB' },
    ]),
    ...as(A, [
      { op: 'write', path: 'home/ro', offset: 0, data: 'A' },
      { op: 'append', path: 'home/priv', data: 'A' },
      { op: 'create', path: 'home/newA', mode: 0o640 },
      { op: 'mkdir', path: 'home/dA', mode: 0o700 },
      { op: 'rmdir', path: 'home/dir' },
      { op: 'unlink', path: 'home/dir/in' },
      { op: 'rmdir', path: 'home/dir' },
      { op: 'unlink', path: 'gdir/newB' },
      { op: 'rename', from: 'home/ro', to: 'pub/roA' },
      { op: 'link', from: 'home/priv', to: 'pub/lA' },
    ]),
    ...as(C, [{ op: 'read', path: 'pub/lA' }, { op: 'unlink', path: 'pub/lA' }, { op: 'unlink', path: 'pub/roA' }]),
    stat('home/grp'), stat('pub/lB'), stat('gdir/dB'), stat('home/newA'),
  ]),
  u('sticky', 'sticky directories: only the owner of the file or of the directory removes or renames', [
    ...as(B, [
      { op: 'unlink', path: 'sticky/a' },
      { op: 'rename', from: 'sticky/a', to: 'sticky/a2' },
      { op: 'rename', from: 'sticky/b', to: 'sticky/a' },
      { op: 'rmdir', path: 'sticky/da' },
      { op: 'write', path: 'sticky/a', offset: 0, data: 'B' },
      // O_CREAT of someone else's file in a world-writable sticky dir (fs.protected_regular)
      { op: 'create', path: 'sticky/a', mode: 0o644 },
      // a hard link to a file the caller cannot read or write... here it can: protected_hardlinks lets it
      { op: 'link', from: 'sticky/a', to: 'sticky/la' },
      { op: 'create', path: 'sticky/nb', mode: 0o600 },
      { op: 'rename', from: 'sticky/b', to: 'sticky/b2' },
    ]),
    ...as(C, [
      { op: 'unlink', path: 'sticky/b2' },
      { op: 'unlink', path: 'sticky/nb' },
      { op: 'rename', from: 'sticky/nb', to: 'sticky/nc' },
      { op: 'link', from: 'sticky/nb', to: 'sticky/lnb' },
      { op: 'create', path: 'sticky/nc', mode: 0o644 },
      { op: 'rename', from: 'sticky/nc', to: 'sticky/b2' },
      { op: 'mkdir', path: 'sticky/dc', mode: 0o777 },
    ]),
    ...as(A, [
      { op: 'unlink', path: 'sticky/b2' },
      { op: 'rmdir', path: 'sticky/dc' },
      { op: 'rename', from: 'sticky/a', to: 'sticky/a3' },
      { op: 'rmdir', path: 'sticky/da' },
      { op: 'unlink', path: 'sticky/la' },
    ]),
    { op: 'unlink', path: 'sticky/nb' },
    { op: 'readdir', path: 'sticky' },
  ]),
  u('chmod-chown', "chmod, chown and utimens of one's own and of others' files; setgid bit of a group one is not in", [
    ...as(B, [
      { op: 'chmod', path: 'home/ro', mode: 0o666 },
      { op: 'chown', path: 'home/ro', uid: B.uid, gid: B.gid },
      { op: 'chown', path: 'home/grp', uid: o, gid: o },
      { op: 'utimens', path: 'home/grp', atime: { sec: 1_200_000_000, nsec: 0 }, mtime: { sec: 1_200_000_000, nsec: 0 } },
      { op: 'utimens', path: 'home/grp', atime: 'now', mtime: 'now' },
      { op: 'create', path: 'pub/b', mode: 0o644 },
      { op: 'chown', path: 'pub/b', uid: B.uid, gid: o },
      { op: 'chmod', path: 'pub/b', mode: 0o2755 },
      { op: 'chown', path: 'pub/b', uid: B.uid, gid: C.gid },
      { op: 'chown', path: 's/chgrp', uid: B.uid, gid: o },
    ]),
    ...as(C, [
      { op: 'utimens', path: 'home/grp', atime: 'now', mtime: 'now' },
      { op: 'utimens', path: 'home/ro', atime: 'omit', mtime: 'now' },
      { op: 'chmod', path: 'home/dir', mode: 0o777 },
      { op: 'create', path: 'pub/c', mode: 0o644 },
    ]),
    { op: 'chown', path: 'pub/c', uid: C.uid, gid: o },
    ...as(C, [
      // not in group 1000: the kernel drops S_ISGID silently
      { op: 'chmod', path: 'pub/c', mode: 0o2755 },
      { op: 'chmod', path: 'pub/c', mode: 0o4755 },
      { op: 'utimens', path: 'pub/c', atime: { sec: 1_200_000_000, nsec: 5 }, mtime: { sec: 1_300_000_000, nsec: 7 } },
    ]),
    ...as(A, [
      { op: 'chmod', path: 'home/ro', mode: 0o600 },
      { op: 'chown', path: 'home/ro', uid: o, gid: o },
      { op: 'chown', path: 'home/ro', uid: o, gid: B.gid },
      { op: 'chown', path: 'home/ro', uid: B.uid, gid: o },
      { op: 'chmod', path: 'home/dir', mode: 0o1755 },
      { op: 'chmod', path: 'pub/c', mode: 0o644 },
      { op: 'utimens', path: 'home/priv', atime: { sec: 1_100_000_000, nsec: 1 }, mtime: { sec: 1_100_000_000, nsec: 2 } },
    ]),
    stat('home/ro'), stat('home/grp'), stat('pub/b'), stat('pub/c'), stat('s/chgrp'), stat('home/dir'),
  ]),
  u('xattrs', 'trusted.* is root\'s; user.* needs write permission (owner only on a sticky dir); security.* readable', [
    ...ALL.flatMap((c) => as(c, [
      { op: 'listxattr', path: 'x/trust' },
      { op: 'getxattr', path: 'x/trust', name: 'trusted.t' },
      { op: 'getxattr', path: 'up/trust', name: 'trusted.t' },
      { op: 'getxattr', path: 's/cap', name: 'security.capability' },
      { op: 'setxattr', path: 'x/trust', name: 'trusted.n', value: tag(c) },
      { op: 'removexattr', path: 'x/trust', name: 'trusted.t' },
      { op: 'removexattr', path: 'up/trust', name: 'trusted.t' },
      { op: 'setxattr', path: 'x/ro', name: 'user.n', value: tag(c) },
      { op: 'removexattr', path: 'x/ro', name: 'user.u' },
      { op: 'setxattr', path: 'x/stickyd', name: 'user.n', value: tag(c) },
      { op: 'getxattr', path: 'x/stickyd', name: 'user.d' },
      { op: 'setxattr', path: 'x/trust', name: 'user.n', value: tag(c) },
      { op: 'setxattr', path: 's/cap', name: 'security.capability', value: '' },
    ])),
    { op: 'listxattr', path: 'x/trust' },
    { op: 'listxattr', path: 'x/ro' },
    { op: 'listxattr', path: 'up/trust' },
    { op: 'getxattr', path: 'x/trust', name: 'trusted.t' },
  ]),
  u('suid-write', 'a write by any caller without CAP_FSETID (the owner too) clears setuid, and setgid where group-executable', [
    ...as(C, [{ op: 'write', path: 's/suid', offset: 0, data: 'C' }]), stat('s/suid'),
    ...as(C, [{ op: 'append', path: 's/sgid', data: 'C' }]), stat('s/sgid'),
    ...as(B, [{ op: 'write', path: 's/both', offset: 2, data: 'B' }]), stat('s/both'),
    ...as(C, [{ op: 'write', path: 's/sgidnx', offset: 0, data: 'C' }]), stat('s/sgidnx'),
    // a member of the file's group keeps a setgid bit without group execute
    ...as(B, [{ op: 'write', path: 's/sgidnx2', offset: 0, data: 'B' }]), stat('s/sgidnx2'),
    ...as(C, [
      { op: 'open', fd: 'c', path: 's/sgidnx5', flags: 'r+' },
      { op: 'fdwrite', fd: 'c', offset: 1, data: 'C' },
    ]),
    stat('s/sgidnx5'),
    ...as(A, [{ op: 'write', path: 's/own', offset: 0, data: 'A' }]), stat('s/own'),
    ...as(C, [{ op: 'write', path: 'up/suid', offset: 0, data: 'C' }]), stat('up/suid'),
    ...as(A, [{ op: 'append', path: 'up/own', data: 'A' }]), stat('up/own'),
    // root keeps the bits (CAP_FSETID)
    { op: 'write', path: 's/rootw', offset: 0, data: 'R' }, stat('s/rootw'),
    { op: 'write', path: 'up/rootw', offset: 0, data: 'R' }, stat('up/rootw'),
    // a second write to a file whose bits are gone, and an empty write
    ...as(C, [{ op: 'write', path: 's/suid', offset: 0, data: '' }]), stat('s/suid'),
  ]),
  u('suid-truncate-chown', 'truncate and chown clear setuid/setgid as the kernel does', [
    ...as(C, [{ op: 'truncate', path: 's/trunc', size: 2 }]), stat('s/trunc'),
    ...as(A, [{ op: 'chown', path: 's/chown', uid: o, gid: o }]), stat('s/chown'),
    ...as(B, [{ op: 'chown', path: 's/chgrp', uid: B.uid, gid: o }]), stat('s/chgrp'),
    ...as(A, [{ op: 'truncate', path: 'up/own', size: 1 }]), stat('up/own'),
    { op: 'chown', path: 'up/suid', uid: o, gid: o }, stat('up/suid'),
    { op: 'truncate', path: 'up/rootw', size: 0 }, stat('up/rootw'),
    ...as(C, [{ op: 'truncate', path: 's/sgidnx', size: 1 }]), stat('s/sgidnx'),
    ...as(C, [{ op: 'create', path: 's/sgidnx3', mode: 0o644, trunc: true }]), stat('s/sgidnx3'),
    ...as(C, [{ op: 'open', fd: 'c', path: 's/sgidnx4', flags: 'r+' }, { op: 'fdtruncate', fd: 'c', size: 1 }]), stat('s/sgidnx4'),
    ...as(B, [{ op: 'truncate', path: 's/sgidnx2', size: 1 }]), stat('s/sgidnx2'),
    // chown by an owner outside the file's group
    ...as(C, [{ op: 'chown', path: 's/cown', uid: C.uid, gid: C.gid }]), stat('s/cown'),
    ...as(C, [{ op: 'chown', path: 's/cown2', uid: C.uid, gid: o }]), stat('s/cown2'),
    { op: 'chown', path: 's/sgidnx5', uid: C.uid, gid: C.gid }, stat('s/sgidnx5'),
  ]),
  u('capability', 'a write or truncate clears security.capability, whoever writes', [
    ...as(C, [{ op: 'write', path: 's/cap', offset: 0, data: 'C' }]),
    { op: 'listxattr', path: 's/cap' },
    ...as(A, [{ op: 'truncate', path: 's/captrunc', size: 1 }]),
    { op: 'listxattr', path: 's/captrunc' },
    { op: 'write', path: 's/caproot', offset: 0, data: 'R' },
    { op: 'listxattr', path: 's/caproot' },
    ...as(B, [{ op: 'append', path: 'up/cap', data: 'B' }]),
    { op: 'listxattr', path: 'up/cap' },
  ]),
  u('setgid-dir', 'a setgid directory gives its group and its setgid bit; S_ISGID of a new file by a non-member is dropped', [
    ...as(C, [
      { op: 'create', path: 'sgid/fc', mode: 0o644 },
      { op: 'mkdir', path: 'sgid/dc', mode: 0o755 },
      { op: 'create', path: 'sgid/gc', mode: 0o2755 },
      { op: 'mkdir', path: 'sgid/dc2', mode: 0o700 },
      { op: 'create', path: 'sgid/dc/deep', mode: 0o2750 },
      { op: 'mkfifo', path: 'sgid/pc', mode: 0o644 },
      { op: 'symlink', target: 'fc', path: 'sgid/lc' },
      { op: 'write', path: 'sgid/old', offset: 0, data: 'C' },
    ]),
    ...as(B, [
      { op: 'create', path: 'sgid/gb', mode: 0o2755 },
      { op: 'mkdir', path: 'sgid/db', mode: 0o2700 },
      { op: 'rename', from: 'sgid/gb', to: 'pub/gb' },
    ]),
    { op: 'create', path: 'sgid/root', mode: 0o2755 },
    { op: 'mkdir', path: 'sgid/droot', mode: 0o755 },
    ...as(A, [{ op: 'create', path: 'sgid/dc/a', mode: 0o644 }]),
    ...['sgid/fc', 'sgid/dc', 'sgid/gc', 'sgid/dc2', 'sgid/dc/deep', 'sgid/pc', 'sgid/lc', 'pub/gb', 'sgid/db', 'sgid/root', 'sgid/droot', 'sgid/dc/a'].map(stat),
  ]),
  u('umask', "each caller's umask shapes the modes it creates", [
    ...as({ ...C, umask: 0o022 }, [{ op: 'create', path: 'pub/c022', mode: 0o666 }, { op: 'mkdir', path: 'pub/d022', mode: 0o777 }]),
    ...as({ ...C, umask: 0o077 }, [{ op: 'create', path: 'pub/c077', mode: 0o666 }, { op: 'mkdir', path: 'pub/d077', mode: 0o777 }, { op: 'mkfifo', path: 'pub/p077', mode: 0o666 }]),
    ...as({ ...B, umask: 0o002 }, [{ op: 'create', path: 'pub/b002', mode: 0o777 }, { op: 'mkdir', path: 'sgid/b002', mode: 0o777 }]),
    ...as({ ...A, umask: 0o000 }, [{ op: 'create', path: 'pub/a000', mode: 0o777 }, { op: 'mkdir', path: 'pub/da000', mode: 0o1777 }, { op: 'append', path: 'pub/ap000', data: 'x' }]),
    ...as({ ...A, umask: 0o777 }, [{ op: 'create', path: 'pub/a777', mode: 0o666 }, { op: 'mkdir', path: 'pub/d777', mode: 0o777 }, { op: 'symlink', target: 'a777', path: 'pub/l777' }]),
    ...as({ ...A, umask: 0o027 }, [{ op: 'create', path: 'pub/a027', mode: 0o4777 }]),
    ...['pub/c022', 'pub/d022', 'pub/c077', 'pub/d077', 'pub/p077', 'pub/b002', 'sgid/b002', 'pub/a000', 'pub/da000', 'pub/ap000', 'pub/a777', 'pub/d777', 'pub/l777', 'pub/a027'].map(stat),
  ]),
];

/** One case of several that touch disjoint names: one set of mounts instead of several (CI time). */
function merge(name: string, parts: string[]): Case {
  const ps = parts.map((n) => {
    const c = PARTS.find((x) => x.name === `users-${n}`);
    if (!c) throw new Error(`no users case ${n}`);
    return c;
  });
  return { name: `users-${name}`, about: ps.map((c) => c.about).join('; '), ops: ps.flatMap((c) => c.ops), layers: USERS_LAYERS };
}

export const USER_CASES: Case[] = [
  merge('access-sticky', ['access', 'sticky']),
  merge('attrs-xattrs', ['chmod-chown', 'xattrs']),
  merge('suid-write', ['suid-write']),
  merge('suid-truncate-chown-capability', ['suid-truncate-chown', 'capability']),
  merge('setgid-dir-umask', ['setgid-dir', 'umask']),
];

/** operation × caller pairs in a list of cases (ops with a caller) */
export function callerOps(cases: readonly Case[]): number {
  return cases.reduce((n, c) => n + c.ops.filter((x) => x.as !== undefined).length, 0);
}

/** Names for random sequences by callers over USERS_LAYERS (random.ts callerSequenceArb). */
export const USERS_POOL: PathPool = {
  files: [
    'home/priv', 'home/grp', 'home/ro', 'home/exe', 'home/dir/in', 'home/new', 'gdir/f', 'gdir/n', 'pub/n', 'pub/m',
    'sticky/a', 'sticky/b', 'sticky/n', 'sgid/old', 'sgid/n', 's/suid', 's/sgidnx', 's/both', 's/cown', 's/cap', 'x/trust', 'x/ro', 'up/suid', 'up/own',
  ],
  dirs: ['home', 'home/dir', 'gdir', 'pub', 'pub/d', 'sticky', 'sticky/da', 'sticky/d', 'sgid', 'sgid/d', 'x/stickyd', 'up', 'up/d'],
};
export const USER_CALLERS: readonly Caller[] = [OWNER, MEMBER, STRANGER];
