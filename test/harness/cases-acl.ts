/**
 * POSIX ACLs through a root mount (allow_other), against kernel overlayfs, which enforces its
 * layers' ACLs and inherits default ACLs by POSIX rules: who may read and write under an ACL,
 * a chmod that changes an ACL's mask, setfacl through the mount (a copy-up, then the new ACL
 * in force at once), and what new objects get under a default ACL whatever the caller's
 * umask. The callers are those of cases-users.ts (callers.ts: processes of their own ids).
 */
import type { Entry, LayerSetSpec } from './layers.js';
import type { Case } from './differential.js';
import type { Op } from './ops.js';
import { MEMBER, OWNER, STRANGER, type Caller } from './callers.js';

const Tag = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;
const NO_ID = 0xffffffff;

/** A system.posix_acl_* xattr value (version 2, entries tag/perm/id) as the latin1 string layers.ts takes. */
export function aclXattr(entries: [tag: keyof typeof Tag, perm: number, id?: number][]): string {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(Tag[tag], 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id ?? NO_ID, 8 + 8 * i);
  });
  return b.toString('latin1');
}

const A = OWNER;
const B = MEMBER;
const C = STRANGER;
const o = A.uid;
/** user C may read (the mask lets r through); the group and others nothing */
const C_READS = aclXattr([['USER_OBJ', 6], ['USER', 4, C.uid], ['GROUP_OBJ', 0], ['MASK', 4], ['OTHER', 0]]);
const C_LISTS = aclXattr([['USER_OBJ', 7], ['USER', 5, C.uid], ['GROUP_OBJ', 0], ['MASK', 5], ['OTHER', 0]]);
/** a default ACL: C gets rwx on what is made inside, the group r-x, others r-x */
const C_DEFAULT = aclXattr([['USER_OBJ', 7], ['USER', 7, C.uid], ['GROUP_OBJ', 5], ['MASK', 7], ['OTHER', 5]]);

const lower: Entry[] = [
  { kind: 'dir', path: 'acl', mode: 0o755, uid: o, gid: o },
  { kind: 'file', path: 'acl/f', content: 'f\n', mode: 0o640, uid: o, gid: o, xattrs: { 'system.posix_acl_access': C_READS } },
  { kind: 'file', path: 'acl/g', content: 'g\n', mode: 0o640, uid: o, gid: o, xattrs: { 'system.posix_acl_access': C_READS } },
  { kind: 'file', path: 'acl/h', content: 'h\n', mode: 0o600, uid: o, gid: o },
  { kind: 'dir', path: 'acl/d', mode: 0o750, uid: o, gid: o, xattrs: { 'system.posix_acl_access': C_LISTS } },
  { kind: 'file', path: 'acl/d/in', content: 'in\n', mode: 0o644, uid: o, gid: o },
  { kind: 'dir', path: 'inh', mode: 0o777, uid: o, gid: o, xattrs: { 'system.posix_acl_default': C_DEFAULT } },
  { kind: 'dir', path: 'inhsg', mode: 0o2777, uid: o, gid: o, xattrs: { 'system.posix_acl_default': C_DEFAULT } },
  { kind: 'dir', path: 'plain', mode: 0o777, uid: o, gid: o },
];

export const ACL_LAYERS: LayerSetSpec = { lowers: [lower], upper: [] };

const as = (c: Caller, ops: Op[]): Op[] => ops.map((x) => ({ ...x, as: c }));
const a = (name: string, about: string, ops: Op[]): Case => ({ name: `acl-${name}`, about, ops, layers: ACL_LAYERS });

export const ACL_CASES: Case[] = [
  a('enforce', 'an ACL of a lower file and directory grants a stranger what the mode bits do not; a chmod narrows the mask', [
    ...as(C, [
      { op: 'read', path: 'acl/f' },
      { op: 'write', path: 'acl/f', offset: 0, data: 'C' },
      { op: 'readdir', path: 'acl/d' },
      { op: 'read', path: 'acl/d/in' },
      { op: 'create', path: 'acl/d/newC', mode: 0o644 },
    ]),
    ...as(B, [{ op: 'read', path: 'acl/f' }, { op: 'readdir', path: 'acl/d' }]),
    { op: 'getfacl', path: 'acl/f' },
    // chmod sets the ACL's mask: C loses r with the group bits (the kernel's cached ACL must go)
    { op: 'chmod', path: 'acl/f', mode: 0o600 },
    { op: 'getfacl', path: 'acl/f' },
    ...as(C, [{ op: 'read', path: 'acl/f' }]),
    { op: 'chmod', path: 'acl/f', mode: 0o640 },
    ...as(C, [{ op: 'read', path: 'acl/f' }]),
    { op: 'stat', path: 'acl/f' },
  ]),
  a('setfacl', 'setfacl through the mount copies up and is in force at once, by root and by the owner; removing an entry takes it back', [
    ...as(C, [{ op: 'read', path: 'acl/h' }]),
    ...as(A, [{ op: 'setfacl', path: 'acl/h', spec: `u:${C.uid}:rw` }]),
    { op: 'getfacl', path: 'acl/h' },
    ...as(C, [{ op: 'read', path: 'acl/h' }, { op: 'write', path: 'acl/h', offset: 0, data: 'C' }]),
    ...as(C, [{ op: 'setfacl', path: 'acl/h', spec: `u:${C.uid}:rwx` }]),
    { op: 'setfacl', path: 'acl/g', spec: `u:${C.uid}:-` },
    ...as(C, [{ op: 'read', path: 'acl/g' }]),
    { op: 'setfacl', path: 'acl/g', spec: `g:${B.gid}:r` },
    ...as(B, [{ op: 'read', path: 'acl/g' }]),
    { op: 'getfacl', path: 'acl/g' },
    { op: 'setfacl', path: 'plain', spec: `u:${C.uid}:rwx`, default: true },
    { op: 'getfacl', path: 'plain' },
    ...as({ ...A, umask: 0o077 }, [{ op: 'create', path: 'plain/after', mode: 0o666 }]),
    { op: 'getfacl', path: 'plain/after' },
  ]),
  a('inherit', 'a default ACL, not the umask, decides the mode and ACLs of files, directories, fifos and symlinks made under it', [
    ...as({ ...A, umask: 0o022 }, [
      { op: 'create', path: 'inh/f22', mode: 0o666 },
      { op: 'mkdir', path: 'inh/d22', mode: 0o777 },
      { op: 'mkfifo', path: 'inh/p22', mode: 0o666 },
      { op: 'symlink', target: 'f22', path: 'inh/l22' },
      { op: 'mkdir', path: 'inh/d22/deeper', mode: 0o750 },
      { op: 'create', path: 'inhsg/f', mode: 0o640 },
      { op: 'mkdir', path: 'inhsg/d', mode: 0o755 },
      { op: 'create', path: 'plain/f22', mode: 0o666 },
      { op: 'mkdir', path: 'plain/d22', mode: 0o777 },
    ]),
    ...as({ ...A, umask: 0o077 }, [
      { op: 'create', path: 'inh/f77', mode: 0o666 },
      { op: 'mkdir', path: 'inh/d77', mode: 0o777 },
      { op: 'create', path: 'plain/f77', mode: 0o666 },
    ]),
    { op: 'getfacl', path: 'inh/f22' },
    { op: 'getfacl', path: 'inh/d22' },
    { op: 'getfacl', path: 'inh/d22/deeper' },
    { op: 'getfacl', path: 'inh/f77' },
    { op: 'getfacl', path: 'inhsg/d' },
    ...as(C, [
      { op: 'write', path: 'inh/f77', offset: 0, data: 'C' },
      { op: 'create', path: 'inh/d77/byC', mode: 0o600 },
      { op: 'read', path: 'plain/f77' },
    ]),
  ]),
];
