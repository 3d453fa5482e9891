/**
 * The owner translation of fuse/idmap.ts (uidmapping=, gidmapping=, squash_to_*,
 * static_nlink), one function per direction. The expected values are what
 * fuse-overlayfs 1.10 shows and stores on this machine (the integration test
 * test/integration/idmap.test.ts runs both side by side on real mounts).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import type { IdMapping, IdRange } from '../../src/core/config.js';
import { idView, readOverflowIds } from '../../src/fuse/idmap.js';
import { STAT_LEN, StatIdx } from '../../src/native/sys-api.js';

const attr = (uid: number, gid: number, mode = 0o100644, nlink = 1): Float64Array => {
  const a = new Float64Array(STAT_LEN);
  a[StatIdx.uid] = uid; a[StatIdx.gid] = gid; a[StatIdx.mode] = mode; a[StatIdx.nlink] = nlink;
  return a;
};
const shown = (m: IdMapping | undefined, uid: number, gid: number, opts: { mode?: number; nlink?: number; staticNlink?: boolean } = {}): number[] => {
  const a = attr(uid, gid, opts.mode, opts.nlink);
  idView(m, opts.staticNlink ?? false, { uid: 65534, gid: 65533 })!.attrOut(a);
  return [a[StatIdx.uid]!, a[StatIdx.gid]!, a[StatIdx.nlink]!];
};
const map = (uid?: IdRange[], gid?: IdRange[], squashUid?: number, squashGid?: number): IdMapping => ({ uid, gid, squashUid, squashGid });
const r = (disk: number, shownId: number, count: number): IdRange => ({ disk, shown: shownId, count });
const FACTS = [r(0, 1000, 1), r(1, 2000, 10)];

describe('idView', () => {
  it('nothing configured: no view at all (the adapters then skip every translation)', () => {
    expect(idView(undefined, false)).toBeUndefined();
  });

  it('uidmapping=0:1000:1:1:2000:10 shows an on-disk 0 as 1000 and 5 as 2004; unmapped ids as the overflow ids', () => {
    const m = map(FACTS, FACTS);
    expect(shown(m, 0, 0)).toEqual([1000, 1000, 1]);
    expect(shown(m, 5, 5)).toEqual([2004, 2004, 1]);
    expect(shown(m, 10, 10)).toEqual([2009, 2009, 1]);
    expect(shown(m, 11, 1000)).toEqual([65534, 65533, 1]);
  });

  it('a chown to 2003 stores 4; a shown id outside every range is stored as the overflow id; -1 stays -1', () => {
    const v = idView(map(FACTS, FACTS), false, { uid: 65534, gid: 65533 })!;
    expect(v.uidIn(2003)).toBe(4);
    expect(v.gidIn(1000)).toBe(0);
    expect(v.uidIn(0)).toBe(65534);
    expect(v.gidIn(5)).toBe(65533);
    expect(v.uidIn(0xffffffff)).toBe(0xffffffff);
    expect(v.gidIn(-1)).toBe(-1);
    expect(v.callerIn({ uid: 2000, gid: 1000, pid: 7, umask: 0o22 })).toEqual({ uid: 1, gid: 0, pid: 7, umask: 0o22 });
  });

  it('only the mapped kind is translated: a uid mapping leaves gids as on disk', () => {
    expect(shown(map(FACTS), 5, 5)).toEqual([2004, 5, 1]);
    const v = idView(map(FACTS), false)!;
    expect(v.gidIn(77)).toBe(77);
  });

  it('overlapping ranges: the later one wins (fuse-overlayfs prepends each range it reads)', () => {
    // checked with fuse-overlayfs 1.10: uidmapping=0:1000:10:5:3000:10 shows 5 as 3000, 12 as 3007, stores a chown to 1005 as 5
    const m = map([r(0, 1000, 10), r(5, 3000, 10)]);
    expect(shown(m, 5, 0)[0]).toBe(3000);
    expect(shown(m, 12, 0)[0]).toBe(3007);
    expect(shown(m, 3, 0)[0]).toBe(1003);
    expect(idView(m, false)!.uidIn(1005)).toBe(5);
  });

  it('squash: squash_to_uid/gid override the mapping outwards only; squash_to_root is 0 for the kind not given', () => {
    expect(shown(map(FACTS, undefined, 42, 0), 5, 6)).toEqual([42, 0, 1]);
    expect(shown(map(undefined, undefined, undefined, 43), 5, 6)).toEqual([5, 43, 1]);
    const v = idView(map(FACTS, undefined, 42, undefined), false)!;
    expect(v.uidIn(2003)).toBe(4);
    expect(v.callerIn({ uid: 2003, gid: 9, pid: 1, umask: 0 })).toEqual({ uid: 4, gid: 9, pid: 1, umask: 0 });
  });

  it('static_nlink: directories report 1, other objects keep their count', () => {
    expect(shown(undefined, 5, 6, { mode: 0o040755, nlink: 7, staticNlink: true })).toEqual([5, 6, 1]);
    expect(shown(undefined, 5, 6, { mode: 0o100644, nlink: 3, staticNlink: true })).toEqual([5, 6, 3]);
    expect(shown(map(FACTS), 5, 6, { mode: 0o040755, nlink: 7 })).toEqual([2004, 6, 7]);
  });

  it('in undoes out for every mapped id of non-overlapping ranges', () => {
    const ranges = fc.array(fc.record({ count: fc.integer({ min: 1, max: 1000 }), gapD: fc.integer({ min: 0, max: 1000 }), gapS: fc.integer({ min: 0, max: 1000 }) }), { minLength: 1, maxLength: 5 })
      .map((rs) => {
        let d = 0;
        let s = 50_000;
        return fc.shuffledSubarray(rs.map((x) => {
          const out = r(d + x.gapD, s + x.gapS, x.count);
          d = out.disk + x.count;
          s = out.shown + x.count;
          return out;
        }), { minLength: rs.length });
      }).chain((x) => x);
    fc.assert(fc.property(ranges, fc.nat({ max: 10_000 }), (rs, pick) => {
      const v = idView(map(rs, rs), false)!;
      const R = rs[pick % rs.length]!;
      const disk = R.disk + (pick % R.count);
      const a = attr(disk, disk);
      v.attrOut(a);
      expect(a[StatIdx.uid]).toBe(R.shown + (pick % R.count));
      expect(v.uidIn(a[StatIdx.uid]!)).toBe(disk);
      expect(v.gidIn(a[StatIdx.gid]!)).toBe(disk);
    }));
  });

  it("the overflow ids are the kernel's (/proc/sys/kernel/overflowuid, overflowgid)", () => {
    const n = (f: string): number => Number(readFileSync(f, 'latin1'));
    expect(readOverflowIds()).toEqual({ uid: n('/proc/sys/kernel/overflowuid'), gid: n('/proc/sys/kernel/overflowgid') });
  });
});
