/**
 * `-d` lines of stratafs's own server (src/fuse/kernel/trace.ts): one per request, no mount needed.
 */
import { describe, expect, it } from 'vitest';
import { Trace, opName } from '../../src/fuse/kernel/trace.js';
import { Op } from '../../src/fuse/kernel/wire.js';

describe('Trace', () => {
  it('writes opcode, unique (exact past 2^32), node, caller, reply size or errno name, and duration in one line', () => {
    const lines: string[] = [];
    const t = new Trace((l) => lines.push(l));
    t.start(0, Op.LOOKUP, 7, 0, 1, 1000, 4242);
    t.start(1, Op.READ, 5, 3, 9, -2, 77); // unique 3 * 2^32 + 5; uid 0xfffffffe as the kernel sent it
    t.end(1, 4096);
    t.end(0, -2);
    t.note(Op.FORGET, 9, 0, 9, 'nlookup=3');
    expect(lines[0]).toMatch(/^\S+Z fuse READ unique=12884901893 node=9 uid=4294967294 pid=77 -> 4096 bytes \d+µs$/);
    expect(lines[1]).toMatch(/^\S+Z fuse LOOKUP unique=7 node=1 uid=1000 pid=4242 -> -ENOENT \d+µs$/);
    expect(lines[2]).toMatch(/^\S+Z fuse FORGET unique=9 node=9 nlookup=3$/);
    expect(opName(4242)).toBe('OP4242');
  });
});
