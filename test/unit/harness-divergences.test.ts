/**
 * The divergence list is the only way a difference may pass: matchers must be
 * exact about implementation, operation, results and paths.
 */
import { describe, expect, it } from 'vitest';
import { opAllowed, treeAllowed } from '../harness/differential.js';
import { DIVERGENCES, divergencesFor, type Divergence } from '../harness/divergences.js';

const LIST: Divergence[] = [
  { id: 'exdev', impl: 'fuse-overlayfs', match: { kind: 'op', op: ['rename'], candidate: 'EXDEV', reference: 'ok', path: /^d/ }, reason: 'r' },
  { id: 'val', impl: 'stratafs', match: { kind: 'op', op: ['fdstat'], candidate: 'ok', results: /"nlink":0.* \/ .*"nlink":1/ }, reason: 'r' },
  { id: 'mtime', impl: 'stratafs', match: { kind: 'tree', phase: 'merged', field: 'mtime', nodeType: ['dir'] }, reason: 'r' },
];

describe('divergence matching', () => {
  it('matches implementation, op kind, both results and a path', () => {
    const op = { op: 'rename' as const, from: 'dirl', to: 'x' };
    expect(opAllowed(LIST, 'fuse-overlayfs', op, { ok: true }, { ok: false, errno: 'EXDEV' })).toBe('exdev');
    expect(opAllowed(LIST, 'stratafs', op, { ok: true }, { ok: false, errno: 'EXDEV' })).toBeUndefined();
    expect(opAllowed(LIST, 'fuse-overlayfs', op, { ok: false, errno: 'ENOTEMPTY' }, { ok: false, errno: 'EXDEV' })).toBeUndefined();
    expect(opAllowed(LIST, 'fuse-overlayfs', op, { ok: true }, { ok: false, errno: 'EPERM' })).toBeUndefined();
    expect(opAllowed(LIST, 'fuse-overlayfs', { op: 'rename', from: 'x', to: 'y' }, { ok: true }, { ok: false, errno: 'EXDEV' })).toBeUndefined();
    expect(opAllowed(LIST, 'fuse-overlayfs', { op: 'link', from: 'dirl', to: 'x' }, { ok: true }, { ok: false, errno: 'EXDEV' })).toBeUndefined();
  });

  it('matches differing values only through the results pattern', () => {
    const op = { op: 'fdstat' as const, fd: 'w' };
    const ref = { ok: true as const, value: { nlink: 0 } };
    expect(opAllowed(LIST, 'stratafs', op, ref, { ok: true, value: { nlink: 1 } })).toBe('val');
    expect(opAllowed(LIST, 'stratafs', op, ref, { ok: true, value: { nlink: 2 } })).toBeUndefined();
  });

  it('matches tree differences by phase, field and node type', () => {
    const t = { path: 'd', field: 'mtime', a: '1', b: '2', nodeType: 'dir' as const };
    expect(treeAllowed(LIST, 'stratafs', 'merged', t)).toBe('mtime');
    expect(treeAllowed(LIST, 'stratafs', "kernel reads stratafs's upper", t)).toBeUndefined();
    expect(treeAllowed(LIST, 'stratafs', 'merged', { ...t, nodeType: 'file' })).toBeUndefined();
    expect(treeAllowed(LIST, 'stratafs', 'merged', { ...t, field: 'mode' })).toBeUndefined();
  });

  it("stratafs's list: unique ids, each with a reason, none for the kernel", () => {
    const ids = DIVERGENCES.map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const d of DIVERGENCES) expect(d.reason.length).toBeGreaterThan(40);
    expect(divergencesFor('kernel')).toEqual([]);
  });
});
