/**
 * The differential harness's own logic, without mounts: the comparer must see
 * every field it claims to compare, parse getfattr's escapes, quote bytes for
 * bash exactly, and map tool messages to errno codes.
 */
import { describe, expect, it } from 'vitest';
import { bash, errnoFromMessage, shq } from '../harness/proc.js';
import { compareTrees, parseGetfattr, showPath, type Tree, type TreeNode } from '../harness/tree.js';

const node = (path: string, over: Partial<TreeNode> = {}): TreeNode => ({
  path,
  type: 'file',
  mode: 0o100644,
  uid: 0,
  gid: 0,
  size: 3,
  hash: 'abc',
  nlink: 1,
  mtimeNs: 1_000_000_000_000_000_000n,
  ino: BigInt(path.length + 1),
  xattrs: {},
  ...over,
});
const tree = (...nodes: TreeNode[]): Tree => new Map(nodes.map((n) => [n.path, n]));
const CUTOFF = 1_500_000_000_000_000_000n;

describe('compareTrees', () => {
  it('reports nothing for equal trees, whatever the inode numbers', () => {
    const a = tree(node('', { type: 'dir', nlink: undefined, size: undefined, hash: undefined }), node('f', { ino: 5n }));
    const b = tree(node('', { type: 'dir', nlink: undefined, size: undefined, hash: undefined }), node('f', { ino: 99n }));
    expect(compareTrees(a, b, { mtimeCutoffNs: CUTOFF })).toEqual([]);
  });

  it.each([
    ['mode', { mode: 0o100600 }],
    ['uid', { uid: 7 }],
    ['gid', { gid: 7 }],
    ['size', { size: 4 }],
    ['hash', { hash: 'abd' }],
    ['nlink', { nlink: 2 }],
    ['type', { type: 'fifo' as const }],
  ])('sees a different %s', (field, over) => {
    const d = compareTrees(tree(node('f')), tree(node('f', over)), { mtimeCutoffNs: CUTOFF });
    expect(d.map((x) => x.field)).toContain(field);
  });

  it('compares mtimes set on purpose (older than the cutoff) to the nanosecond, and ignores clock times', () => {
    const old = node('f', { mtimeNs: 1_000_000_000_123_456_789n });
    expect(compareTrees(tree(old), tree(node('f', { mtimeNs: 1_000_000_000_123_456_000n })), { mtimeCutoffNs: CUTOFF })[0]?.field).toBe('mtime');
    // one side kept the old time, the other took the clock's: a copy-up that lost the time
    expect(compareTrees(tree(old), tree(node('f', { mtimeNs: CUTOFF + 5n })), { mtimeCutoffNs: CUTOFF })[0]?.field).toBe('mtime');
    expect(compareTrees(tree(node('f', { mtimeNs: CUTOFF + 1n })), tree(node('f', { mtimeNs: CUTOFF + 9n })), { mtimeCutoffNs: CUTOFF })).toEqual([]);
  });

  it('compares hard-link groups, not inode numbers', () => {
    const a = tree(node('x', { ino: 1n, nlink: 2 }), node('y', { ino: 1n, nlink: 2 }));
    const b = tree(node('x', { ino: 8n, nlink: 2 }), node('y', { ino: 9n, nlink: 2 }));
    expect(compareTrees(a, b, { mtimeCutoffNs: CUTOFF }).map((d) => d.field)).toEqual(['hardlinks', 'hardlinks']);
  });

  it('sees missing entries, symlink targets and each xattr', () => {
    const a = tree(node('l', { type: 'symlink', target: 'to\xff', hash: undefined }), node('gone'), node('x', { xattrs: { 'user.a': '01' } }));
    const b = tree(node('l', { type: 'symlink', target: 'to', hash: undefined }), node('x', { xattrs: { 'user.a': '02', 'user.b': '' } }));
    const d = compareTrees(a, b, { mtimeCutoffNs: CUTOFF });
    expect(d).toContainEqual(expect.objectContaining({ path: 'gone', field: 'exists', b: 'missing' }));
    expect(d).toContainEqual(expect.objectContaining({ path: 'l', field: 'target', a: 'to\\xff' }));
    expect(d.filter((x) => x.path === 'x').map((x) => x.field)).toEqual(['xattr user.a', 'xattr user.b']);
  });
});

describe('parseGetfattr', () => {
  it('undoes getfattr escapes and keeps raw bytes of names', () => {
    const out = '# file: /m/a b\\134c=d\\012x\nuser.b=0x32\n\n# file: /m/caf\xe9\nuser.a=0x31\nuser.e=0x\n\n';
    const m = parseGetfattr(out);
    expect(m.get('/m/a b\\c=d\nx')).toEqual({ 'user.b': '32' });
    expect(m.get('/m/caf\xe9')).toEqual({ 'user.a': '31', 'user.e': '' });
  });
});

describe('shq and errnoFromMessage', () => {
  it('passes every byte but NUL through bash unchanged', async () => {
    const bytes = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));
    const r = await bash(`printf '%s' ${shq(bytes)}`);
    expect(Buffer.compare(r.stdout, bytes)).toBe(0);
  });

  it('maps tool messages to errno names', () => {
    expect(errnoFromMessage("touch: setting times of 'x': No such file or directory")).toBe('ENOENT');
    expect(errnoFromMessage('setfattr: /m/x: Operation not permitted\n')).toBe('EPERM');
    expect(errnoFromMessage('mkfifo: cannot create fifo \'a: b\': File exists')).toBe('EEXIST');
    expect(errnoFromMessage('something else')).toBeUndefined();
  });

  it('shows non-printable bytes of paths', () => {
    expect(showPath('caf\xe9\n')).toBe('caf\\xe9\\x0a');
    expect(showPath('')).toBe('/');
  });
});
