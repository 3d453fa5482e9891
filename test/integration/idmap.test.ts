/**
 * Issue 10, defect 4: fuse-overlayfs's owner and permission options on real mounts,
 * stratafs next to fuse-overlayfs 1.10 on the same lower layer (each with its own
 * upper): uidmapping=/gidmapping= (stat of mapped and unmapped owners; create, mkdir,
 * mknod, symlink, link by root and by another uid through allow_other; chown both
 * ways; the owner stored in the upper), squash_to_root/uid/gid, static_nlink, noacl,
 * xattr_permissions=1|2, noxattrs=1, and volatile (the kernel's work/incompat mark).
 * The mapping runs through both FUSE front-ends (fuse_api=lowlevel and highlevel).
 *
 * Owners and modes are compared, not times. stratafs is mounted through its CLI with
 * allow_other given explicitly (fuse-overlayfs adds it by itself as root), and must
 * print no warning: every option here is one it knows.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cli, daemonPids, isMounted, layerOptions, Leftovers } from '../harness/cli-mount.js';
import { kernelOverlayProblem, mount, pidsWithArg, tempDir } from '../harness/mounts.js';
import { mustBash, shq } from '../harness/proc.js';

type Impl = 'fuse-overlayfs' | 'stratafs';
const IMPLS: readonly Impl[] = ['fuse-overlayfs', 'stratafs'];
interface Side { upper: string; work: string; mnt: string }

const FACTS_MAP = 'uidmapping=0:1000:1:1:2000:10,gidmapping=0:1000:1:1:2000:10';

let t: string;
let lower: string;
let left: Leftovers;

beforeAll(async () => {
  // runtime files of the stratafs daemons go to scratch, never /run/stratafs
  process.env.STRATAFS_RUNTIME_DIR ??= join(await tempDir('idmap-run'), 'run');
});

beforeEach(async () => {
  t = await tempDir('idmap');
  lower = join(t, 'lower');
  await mkdir(lower);
  left = new Leftovers();
});

afterEach(async () => {
  expect(await left.cleanup()).toEqual([]);
});

const sh = async (script: string): Promise<string> => (await mustBash(script)).stdout.toString('latin1');

/** Run `script` with sh as uid:gid (no supplementary groups), in `cwd` (so that no scratch directory above needs to be searchable). */
function runAs(uid: number, cwd: string, script: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', script],
      { cwd, timeout: 20_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } },
      (err, _out, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr: String(stderr) }));
  });
}

/** `name uid:gid mode nlink` of each name below dir (lstat), one per line. */
async function stats(dir: string, names: string[]): Promise<string[]> {
  const out = await sh(`cd ${shq(dir)} && stat -c '%n %u:%g %a %h' -- ${names.map(shq).join(' ')}`);
  return out.trim().split('\n');
}
const owners = async (dir: string, names: string[]): Promise<string[]> => (await stats(dir, names)).map((l) => l.split(' ').slice(0, 2).join(' '));

/** Mount the lower with a fresh upper for each implementation; stratafs through its CLI, which must warn about nothing. */
async function mountBoth(opts: string[], stratafsOnly: string[] = []): Promise<Record<Impl, Side>> {
  const sides = {} as Record<Impl, Side>;
  for (const impl of IMPLS) {
    const base = join(t, impl);
    const s: Side = { upper: join(base, 'upper'), work: join(base, 'work'), mnt: join(base, 'mnt') };
    for (const d of [s.upper, s.work, s.mnt]) await mkdir(d, { recursive: true });
    left.mount(s.mnt);
    if (impl === 'stratafs') {
      const o = [layerOptions({ lowers: [lower], upper: s.upper, work: s.work }), 'allow_other', ...opts, ...stratafsOnly].join(',');
      const r = await cli(['-o', o, s.mnt]);
      for (const p of await daemonPids(s.mnt)) left.pid(p);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
    } else {
      await mount('fuse-overlayfs', { lowers: [lower], upper: s.upper, work: s.work }, s.mnt, { extra: opts });
      for (const p of await pidsWithArg(s.mnt)) left.pid(p);
    }
    sides[impl] = s;
  }
  return sides;
}

/** The same value from both implementations, returned once. */
async function same<T>(sides: Record<Impl, Side>, f: (s: Side, impl: Impl) => Promise<T>): Promise<T> {
  const a = await f(sides['fuse-overlayfs'], 'fuse-overlayfs');
  const b = await f(sides.stratafs, 'stratafs');
  expect(b, 'stratafs differs from fuse-overlayfs').toEqual(a);
  return b;
}

/** A lower with owners inside and outside the ranges of FACTS_MAP. */
async function ownersLower(): Promise<void> {
  await sh(`cd ${shq(lower)}
    for n in 0 5 10 11 1000; do echo $n > f$n; chown $n:$n f$n; done
    mkdir -p d/s1 d/s2; ln -s f0 l; chown -h 5:5 l; mkfifo p; chown 3:3 p
    mkdir pub; chmod 1777 pub`);
}

describe.each(['lowlevel', 'highlevel'] as const)('uidmapping/gidmapping (fuse_api=%s)', (api) => {
  const apiOpt = api === 'highlevel' ? ['fuse_api=highlevel'] : [];

  it('stat shows mapped owners, unmapped ones as the overflow id', async () => {
    await ownersLower();
    const sides = await mountBoth([FACTS_MAP], apiOpt);
    const got = await same(sides, (s) => owners(s.mnt, ['f0', 'f5', 'f10', 'f11', 'f1000', 'd', 'd/s1', 'l', 'p', 'pub']));
    // the example of fuse-overlayfs's man page and of the facts file: on-disk 0 shows as 1000, 5 as 2004
    expect(got).toEqual([
      'f0 1000:1000', 'f5 2004:2004', 'f10 2009:2009', 'f11 65534:65534', 'f1000 65534:65534',
      'd 1000:1000', 'd/s1 1000:1000', 'l 2004:2004', 'p 2002:2002', 'pub 1000:1000',
    ]);
  });

  it('create, mkdir, mknod, symlink, link by root and by uid 2005: shown ids in, on-disk ids in the upper', async () => {
    await ownersLower();
    const sides = await mountBoth([FACTS_MAP], apiOpt);
    const made = ['file', 'dir', 'fifo', 'link', 'hard'];
    const script = (who: string): string =>
      `umask 022 && : > ${who}file && mkdir ${who}dir && mkfifo ${who}fifo && ln -s target ${who}link && ln ${who}file ${who}hard`;
    const names = made.flatMap((m) => [`r${m}`, `c${m}`]);
    const result = await same(sides, async (s) => {
      const root = await runAs(0, join(s.mnt, 'pub'), script('r'));
      expect(root.code, root.stderr).toBe(0);
      const caller = await runAs(2005, join(s.mnt, 'pub'), script('c'));
      expect(caller.code, caller.stderr).toBe(0);
      return { shown: await stats(join(s.mnt, 'pub'), names), disk: await owners(join(s.upper, 'pub'), names) };
    });
    // uid 2005 is on-disk 6; root (0) is outside the shown ranges: stored as the overflow id, as fuse-overlayfs stores it
    for (const m of made) {
      expect(result.disk).toContain(`c${m} 6:6`);
      expect(result.disk).toContain(`r${m} 65534:65534`);
    }
    expect(result.shown.filter((l) => l.startsWith('c')).map((l) => l.split(' ')[1])).toEqual(Array(made.length).fill('2005:2005'));
  });

  it('chown both ways: a shown id is stored on-disk, an id outside the ranges as the overflow id; chgrp keeps the uid', async () => {
    await ownersLower();
    const sides = await mountBoth([FACTS_MAP], apiOpt);
    // (a symlink made through the mount: fuse-overlayfs 1.10 loses the owner of a lower symlink it copies up)
    const got = await same(sides, async (s) => {
      await sh(`cd ${shq(s.mnt)} && chown 2003:2003 f5 && chown 5:5 f0 && chgrp 2001 f10 && ln -s x nl && chown -h 2004 nl && chown 2000 pub`);
      return { shown: await owners(s.mnt, ['f5', 'f0', 'f10', 'nl', 'pub']), disk: await owners(s.upper, ['f5', 'f0', 'f10', 'nl', 'pub']) };
    });
    expect(got.disk).toEqual(['f5 4:4', 'f0 65534:65534', 'f10 10:2', 'nl 5:65534', 'pub 1:0']);
    expect(got.shown).toEqual(['f5 2003:2003', 'f0 65534:65534', 'f10 2009:2001', 'nl 2004:65534', 'pub 2000:1000']);
  });

});

describe("fuse-overlayfs's other options", () => {
  // (through the default front-end; both take the translation from fuse/idmap.ts, proved above for both)
  it('squash_to_root, squash_to_uid=/squash_to_gid= (over a mapping): owners shown squashed, stored as given', async () => {
    await ownersLower();
    for (const [opts, want] of [
      [['squash_to_root'], ['f0 0:0', 'f5 0:0', 'd 0:0', 'l 0:0', 'new 0:0']],
      [['squash_to_uid=42', 'squash_to_gid=43'], ['f0 42:43', 'f5 42:43', 'd 42:43', 'l 42:43', 'new 42:43']],
      [['squash_to_root', 'squash_to_uid=42'], ['f0 42:0', 'f5 42:0', 'd 42:0', 'l 42:0', 'new 42:0']],
      [['squash_to_gid=43'], ['f0 0:43', 'f5 5:43', 'd 0:43', 'l 5:43', 'new 0:43']],
      [['squash_to_uid=42', 'uidmapping=5:100:1'], ['f0 42:0', 'f5 42:5', 'd 42:0', 'l 42:5', 'new 42:0']],
    ] as const) {
      const sides = await mountBoth([...opts]);
      const got = await same(sides, async (s) => {
        await sh(`cd ${shq(s.mnt)} && : > new && chown 7:8 f10`);
        return { shown: await owners(s.mnt, ['f0', 'f5', 'd', 'l', 'new', 'f10']), disk: await owners(s.upper, ['new', 'f10']) };
      });
      expect(got.shown.slice(0, 5), opts.join(',')).toEqual(want);
      // the mapping goes backwards for stored ids; squashing is not undone (root creates 0:0, or the overflow id when 0 is unmapped)
      const mapped = (opts as readonly string[]).includes('uidmapping=5:100:1');
      expect(got.disk, opts.join(',')).toEqual(mapped ? ['new 65534:0', 'f10 65534:8'] : ['new 0:0', 'f10 7:8']);
      await left.cleanup();
      await rm(join(t, 'fuse-overlayfs'), { recursive: true });
      await rm(join(t, 'stratafs'), { recursive: true });
    }
  });

  it('static_nlink: every directory reports one link', async () => {
    await ownersLower();
    const sides = await mountBoth(['static_nlink']);
    const got = await same(sides, async (s) => {
      await sh(`mkdir ${shq(join(s.mnt, 'd/s3'))}`);
      return (await stats(s.mnt, ['.', 'd', 'd/s1', 'pub', 'f0'])).map((l) => `${l.split(' ')[0]} ${l.split(' ')[3]}`);
    });
    expect(got).toEqual(['. 1', 'd 1', 'd/s1 1', 'pub 1', 'f0 1']);
  });

  it('noacl: an access ACL is stored as given (ids unmapped) and not enforced', async () => {
    await sh(`cd ${shq(lower)} && echo secret > s && chmod 600 s`);
    // system.posix_acl_access: user::rw-, user:1000:r--, group::---, mask::r--, other::---
    const acl = '0x0200000001000600ffffffff02000400e803000004000000ffffffff10000400ffffffff20000000ffffffff';
    const sides = await mountBoth(['noacl', 'uidmapping=0:0:1:1000:3000:1']);
    const got = await same(sides, async (s) => {
      await sh(`setfattr -n system.posix_acl_access -v ${acl} ${shq(join(s.mnt, 's'))}`);
      const read = await runAs(1000, s.mnt, 'cat s');
      const shownAcl = await sh(`getfattr -e hex -n system.posix_acl_access --only-values ${shq(join(s.mnt, 's'))} | od -An -tx1 | tr -d ' \\n'`);
      const stored = await sh(`getfattr -e hex -n system.posix_acl_access ${shq(join(s.upper, 's'))} | grep =`);
      return { denied: read.code !== 0 && /Permission denied/.test(read.stderr), shownAcl, stored: stored.trim() };
    });
    expect(got.denied).toBe(true);
    expect(got.stored).toBe(`system.posix_acl_access=${acl}`);
    expect('0x' + got.shownAcl).toBe(acl);
  });

  it('security.capability keeps its root id unmapped (a v3 capability set through a mapped mount)', async () => {
    await sh(`cd ${shq(lower)} && echo x > prog && chmod 755 prog`);
    // VFS_CAP_REVISION_3, permitted cap_net_bind_service, rootid 2003 (a shown id: on-disk 4 under FACTS_MAP)
    const cap = '0x' + '00000003' + '00040000' + '00000000'.repeat(3) + 'd3070000';
    const sides = await mountBoth([FACTS_MAP]);
    const got = await same(sides, async (s) => {
      await sh(`setfattr -n security.capability -v ${cap} ${shq(join(s.mnt, 'prog'))}`);
      const read = async (f: string): Promise<string> => (await sh(`getfattr -e hex -n security.capability ${shq(f)} | grep =`)).trim();
      return { shown: await read(join(s.mnt, 'prog')), stored: await read(join(s.upper, 'prog')) };
    });
    expect(got).toEqual({ shown: `security.capability=${cap}`, stored: `security.capability=${cap}` });
  });

  it('noxattrs=1: every xattr request is refused', async () => {
    await sh(`cd ${shq(lower)} && : > f && setfattr -n user.a -v 1 f`);
    const sides = await mountBoth(['noxattrs=1']);
    await same(sides, async (s) => {
      const r = await mustBash(`f=${shq(join(s.mnt, 'f'))}; getfattr -n user.a "$f" 2>&1; setfattr -n user.b -v 2 "$f" 2>&1; getfattr -d "$f" 2>&1; true`);
      return r.stdout.toString().split('\n').map((l) => l.replace(/^.*: /, '')).filter((l) => l !== '');
    }).then((lines) => expect(lines).toEqual(['Operation not supported', 'Operation not supported', 'Operation not supported']));
  });

  describe.each(['2', '1'] as const)('xattr_permissions=%s', (x) => {
    const name = x === '2' ? 'user.fuseoverlayfs.override_stat' : 'security.fuseoverlayfs.override_stat';
    const record = async (file: string): Promise<string> => {
      const v = (await mustBash(`getfattr --absolute-names -n ${name} --only-values ${shq(file)} 2>/dev/null; true`)).stdout.toString().trim();
      const m = /^(\d+):(\d+):([0-7]+)$/.exec(v);
      // fuse-overlayfs 1.10 writes the file type bits too (100640), stratafs the permission bits: both read either
      return m === null ? `(none: ${v})` : `${m[1]}:${m[2]}:${(parseInt(m[3]!, 8) & 0o7777).toString(8)}`;
    };

    it('owners and modes live in the record; the real object keeps the mounter and a usable mode', async () => {
      await sh(`cd ${shq(lower)} && echo x > f && chmod 640 f && chown 7:8 f && mkdir d && chmod 750 d && echo y > g && chown 3:4 g`);
      const sides = await mountBoth([`xattr_permissions=${x}`]);
      const noNlink = (l: string[]): string[] => l.map((x) => x.split(' ').slice(0, 3).join(' '));
      const got = await same(sides, async (s) => {
        const before = await stats(s.mnt, ['f', 'd', 'g']);
        await sh(`cd ${shq(s.mnt)} && chown 5:6 f && chmod 700 d && chown 3:9 g`);
        return {
          before,
          // (a merged directory has one link on stratafs, as on kernel overlayfs; fuse-overlayfs counts)
          after: noNlink(await stats(s.mnt, ['f', 'd', 'g'])),
          real: noNlink(await stats(s.upper, ['f', 'd', 'g'])),
          records: [await record(join(s.upper, 'f')), await record(join(s.upper, 'd')), await record(join(s.upper, 'g')), await record(s.upper)],
        };
      });
      expect(got.before).toEqual(['f 7:8 640 1', 'd 0:0 750 2', 'g 3:4 644 1']);
      expect(got.after).toEqual(['f 5:6 640', 'd 0:0 700', 'g 3:9 644']);
      expect(got.real).toEqual(['f 0:0 755', 'd 0:0 755', 'g 0:0 755']);
      expect(got.records.slice(0, 3)).toEqual(['5:6:640', '0:0:700', '3:9:644']);
      expect(got.records[3]).toMatch(/^0:0:7\d\d$/);

      // Where fuse-overlayfs 1.10 errs (later versions fixed it), stratafs does what the fix does:
      // a chmod keeps the recorded owner (1.10 records 0:0); the record is private also under
      // security.* (1.10 lists security.fuseoverlayfs.override_stat and lets anyone with
      // CAP_SYS_ADMIN rewrite it through the mount).
      const s = sides.stratafs;
      await sh(`chmod 604 ${shq(join(s.mnt, 'f'))}`);
      expect(await stats(s.mnt, ['f'])).toEqual(['f 5:6 604 1']);
      expect(await record(join(s.upper, 'f'))).toBe('5:6:604');
      expect(await sh(`getfattr -d -m - ${shq(join(s.mnt, 'f'))} 2>/dev/null; true`)).not.toContain('override_stat');
      const set = await mustBash(`setfattr -n ${name} -v 1:1:777 ${shq(join(s.mnt, 'f'))} 2>&1; echo $?`);
      expect(set.stdout.toString()).toMatch(/Operation not permitted\n1\n$/);
    });

    it('new objects: the record has the caller and the requested mode (where fuse-overlayfs 1.10 records mode|0755 and -1 for chgrp)', async () => {
      const sides = await mountBoth([`xattr_permissions=${x}`]);
      const s = sides.stratafs;
      await sh(`cd ${shq(s.mnt)} && umask 022 && : > new && mkdir newd && mkfifo fifo && chgrp 11 new && chmod 2750 newd`);
      expect(await stats(s.mnt, ['new', 'newd', 'fifo'])).toEqual(['new 0:11 644 1', 'newd 0:0 2750 2', 'fifo 0:0 644 1']);
      expect([await record(join(s.upper, 'new')), await record(join(s.upper, 'newd'))]).toEqual(['0:11:644', '0:0:2750']);
      expect((await stats(s.upper, ['new', 'newd'])).map((l) => l.split(' ')[2])).toEqual(['755', '755']);
    });
  });

  it("a lower layer whose root carries user.containers.override_stat shows its records, and a copy-up keeps them (as containers/storage's force_mask layers)", async () => {
    await sh(`cd ${shq(lower)} && setfattr -n user.containers.override_stat -v 0:0:755 . && echo y > g && setfattr -n user.containers.override_stat -v 9:9:600 g`);
    const sides = await mountBoth([]);
    const got = await same(sides, async (s) => {
      const before = await stats(s.mnt, ['g']);
      await sh(`touch ${shq(join(s.mnt, 'g'))}`);
      return { before, after: await stats(s.mnt, ['g']), real: await stats(s.upper, ['g']) };
    });
    expect(got).toEqual({ before: ['g 9:9 600 1'], after: ['g 9:9 600 1'], real: ['g 9:9 600 1'] });
  });
});

describe('volatile', () => {
  it("skips fsync and leaves no mark, as fuse-overlayfs; a kernel volatile mount's mark is refused as the kernel refuses it", async (ctx) => {
    const problem = await kernelOverlayProblem();
    if (problem !== undefined) ctx.skip(problem);
    await sh(`echo a > ${shq(join(lower, 'a'))}`);
    // stratafs (and fuse-overlayfs) with volatile: nothing left in work/ that would stop a kernel mount
    const sides = await mountBoth([',,volatile']);
    await same(sides, async (s) => {
      await sh(`cd ${shq(s.mnt)} && echo b > b && sync b`);
      return (await sh(`cd ${shq(s.mnt)} && cat a b`)).trim();
    });
    await left.cleanup();
    const s = sides.stratafs;
    expect((await sh(`find ${shq(s.work)} -mindepth 1 | sed 's|^${s.work}/||'`)).trim()).toBe('work');
    const k = join(t, 'kmnt');
    await mkdir(k);
    left.mount(k);
    const opts = `lowerdir=${lower},upperdir=${s.upper},workdir=${s.work}`;
    await sh(`mount -t overlay overlay -o ${shq(opts)} ${shq(k)} && cat ${shq(join(k, 'b'))} && umount ${shq(k)}`);

    // the kernel's volatile mount leaves work/incompat/volatile and then refuses the pair: stratafs refuses it too, and keeps the mark
    await sh(`mount -t overlay overlay -o ${shq(opts + ',volatile')} ${shq(k)} && umount ${shq(k)}`);
    expect(await sh(`ls ${shq(join(s.work, 'work/incompat'))}`)).toBe('volatile\n');
    const r = await cli(['-o', `${layerOptions({ lowers: [lower], upper: s.upper, work: s.work })},allow_other`, s.mnt]);
    for (const p of await daemonPids(s.mnt)) left.pid(p);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe(`stratafs: EINVAL: mount ${s.work}/work/incompat/volatile (an overlay with the incompatible feature 'volatile' cannot be mounted, as in kernel overlayfs; remove that directory to mount it)`);
    expect(await isMounted(s.mnt)).toBe(false);
    expect(await sh(`ls ${shq(join(s.work, 'work/incompat/volatile'))}`)).toBe('dirty\n');
    // removed, as containers/storage removes it before every mount: mounts again
    await rm(join(s.work, 'work/incompat'), { recursive: true });
    const again = await cli(['-o', `${layerOptions({ lowers: [lower], upper: s.upper, work: s.work })},allow_other`, s.mnt]);
    for (const p of await daemonPids(s.mnt)) left.pid(p);
    expect(again.code, again.stderr).toBe(0);
    expect(await sh(`cat ${shq(join(s.mnt, 'b'))} && echo c > ${shq(join(s.mnt, 'c'))}`)).toBe('b\n');
  });
});
