/**
 * Inode numbers as exact 64-bit values from the addon to the node table and the
 * FUSE listing (issue 11): a kernel overlay with xino=on hands out 2^62 + n and
 * 2^63 + n, which as doubles collapse to one number per 1024 (at 2^62) or 2048.
 * The mount itself is tested in test/integration/depth-scale.test.ts.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sys from '../../src/native/sys.js';
import { canonicalIno, inoOf, setIno, StatIdx, type Ino } from '../../src/native/sys-api.js';
import { InodeNumbers } from '../../src/core/inode.js';
import { NodeTable } from '../../src/fuse/lowlevel/nodes.js';
import { dirListing } from '../../src/fuse/requests.js';

const XINO_TOP = 2n ** 62n + 3n;
const XINO_SECOND = 2n ** 63n + 3n;
const EDGES: Ino[] = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2n ** 53n, 2n ** 53n + 1n, XINO_TOP, XINO_TOP + 1n, XINO_SECOND, 2n ** 64n - 1n];

describe('Ino in a stat array', () => {
  it('setIno then inoOf gives back every value exactly, in its one form', () => {
    const a = sys.newStatArray();
    for (const v of EDGES) {
      setIno(a, v);
      expect(inoOf(a)).toBe(v);
      expect(typeof inoOf(a)).toBe(typeof v === 'bigint' && v < 2n ** 53n ? 'number' : typeof v);
    }
    expect(canonicalIno(5n)).toBe(5);
    expect(canonicalIno(2n ** 53n)).toBe(2n ** 53n);
  });

  it('numbers one apart above 2^53 stay apart, though their doubles are one', () => {
    const a = sys.newStatArray();
    const b = sys.newStatArray();
    setIno(a, XINO_TOP);
    setIno(b, XINO_TOP + 1n);
    expect(a[StatIdx.ino]).toBe(b[StatIdx.ino]);
    expect(inoOf(a)).not.toBe(inoOf(b));
  });

  it('the addon fills the exact halves: lstatat agrees with the kernel\'s 64-bit st_ino', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-ino64-'));
    try {
      fs.writeFileSync(path.join(dir, 'f'), 'x');
      const fd = sys.openRoot(dir);
      try {
        const st = sys.lstatat(fd, 'f');
        expect(BigInt(inoOf(st))).toBe(BigInt.asUintN(64, fs.lstatSync(path.join(dir, 'f'), { bigint: true }).ino));
      } finally {
        sys.close(fd);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('overlay numbers', () => {
  it('one filesystem: the real number unchanged, also above 2^63', () => {
    const n = new InodeNumbers([7]);
    expect(n.real(7, XINO_SECOND)).toBe(XINO_SECOND);
  });

  it('several filesystems: numbers too big for the xino bits get distinct pool numbers, each kept', () => {
    const n = new InodeNumbers([7, 8]);
    const a = n.real(8, XINO_TOP);
    const b = n.real(8, XINO_TOP + 1n);
    expect(a).not.toBe(b);
    expect(n.real(8, XINO_TOP)).toBe(a);
    n.recordCopyUp(XINO_SECOND, a);
    expect(n.upper(7, XINO_SECOND)).toBe(a);
    expect(n.upper(7, XINO_SECOND + 1n)).not.toBe(a);
  });
});

describe('node table and listing', () => {
  it('two hard-linked files whose numbers differ in the low bits get two nodes', () => {
    const t = new NodeTable(XINO_TOP - 1n);
    const f1 = t.found(t.root, 'f1', false, XINO_TOP, 'o' + XINO_TOP);
    const f2 = t.found(t.root, 'f2', false, XINO_TOP + 1n, 'o' + (XINO_TOP + 1n));
    const f1b = t.found(t.root, 'f1b', false, XINO_TOP, 'o' + XINO_TOP);
    expect(f2).not.toBe(f1);
    expect(f1b).toBe(f1);
    expect(t.path(f1)).toBe('/f1b');
    expect(t.path(f2)).toBe('/f2');
  });

  it('the low-level listing carries each number as exact halves, the high-level one as a double', () => {
    const entries = [{ name: 'a', type: 0o100000, ino: XINO_SECOND }, { name: 'b', type: 0o040000, ino: 12 }];
    const l = dirListing(XINO_TOP, 1, entries, 3);
    const exact = (i: number): bigint => (BigInt(l.modeIno[3 * i + 1]!) << 32n) | BigInt(l.modeIno[3 * i + 2]!);
    expect([exact(0), exact(1), exact(2), exact(3)]).toEqual([XINO_TOP, 1n, XINO_SECOND, 12n]);
    expect(l.modeIno[6]).toBe(0o100000);
    const h = dirListing(XINO_TOP, 1, entries, 2);
    expect(h.modeIno.length).toBe(8);
    expect(h.modeIno[5]).toBe(Number(XINO_SECOND));
  });
});
