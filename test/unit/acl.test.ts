/**
 * core/acl.ts: posix_acl_create as the kernel computes it (fs/posix_acl.c), checked against
 * what ext4 made of the same default ACL and modes on this machine (umask 022 and 077 alike,
 * since a default ACL replaces the umask).
 */
import { describe, expect, it } from 'vitest';
import { createMasq, inherit } from '../../src/core/acl.js';
import { S_IFDIR, S_IFLNK, S_IFREG } from '../../src/shared/constants.js';
import { aclXattr } from '../harness/cases-acl.js';

const acl = (s: string): Buffer => Buffer.from(s, 'latin1');
/** u::rwx u:1002:rwx g::r-x m::rwx o::r-x (setfacl -d -m u:1002:rwx on a 0755 directory) */
const DEFAULT = acl(aclXattr([['USER_OBJ', 7], ['USER', 7, 1002], ['GROUP_OBJ', 5], ['MASK', 7], ['OTHER', 5]]));
const BASE_ONLY = acl(aclXattr([['USER_OBJ', 7], ['GROUP_OBJ', 5], ['OTHER', 0]]));

describe('POSIX ACL inheritance (core/acl.ts)', () => {
  it('a file asked 0666 under the default ACL: mode 0664, the mask rw- (ext4: -rw-rw-r--, mask::rw-)', () => {
    const r = inherit(S_IFREG, 0o666, 0o077, DEFAULT);
    expect(r.mode).toBe(0o664);
    expect(r.access).toEqual(acl(aclXattr([['USER_OBJ', 6], ['USER', 7, 1002], ['GROUP_OBJ', 5], ['MASK', 6], ['OTHER', 4]])));
    expect(r.default).toBeUndefined();
  });
  it('a directory asked 2750 keeps its special bits, gets the default ACL too, and a mask of r-x', () => {
    const r = inherit(S_IFDIR, 0o2750, 0o022, DEFAULT);
    expect(r.mode).toBe(0o2750);
    expect(r.default).toBe(DEFAULT);
    expect(r.access).toEqual(acl(aclXattr([['USER_OBJ', 7], ['USER', 7, 1002], ['GROUP_OBJ', 5], ['MASK', 5], ['OTHER', 0]])));
  });
  it('no default ACL, or a malformed one: the umask; symlinks: nothing', () => {
    expect(inherit(S_IFREG, 0o666, 0o022, undefined)).toEqual({ mode: 0o644 });
    expect(inherit(S_IFREG, 0o666, 0o022, Buffer.from([1, 0, 0, 0]))).toEqual({ mode: 0o644 });
    expect(inherit(S_IFLNK, 0o777, 0o077, DEFAULT)).toEqual({ mode: 0o777 });
  });
  it('a default ACL of the base entries only: the mode alone says it all (no access ACL), the group from group::', () => {
    expect(createMasq(BASE_ONLY, 0o666)).toEqual({ mode: 0o640, acl: undefined });
    expect(inherit(S_IFREG, 0o666, 0o077, BASE_ONLY)).toEqual({ mode: 0o640, access: undefined, default: undefined });
  });
});
