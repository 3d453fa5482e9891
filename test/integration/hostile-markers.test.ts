/**
 * Issue 11, "corrupt or hostile markers on disk": markers written by hand into the layers,
 * read through kernel overlayfs and stratafs side by side.
 *
 * - Corrupt markers (bad redirects, opaque values other than "y", origin garbage, char
 *   devices other than 0/0): each affects only its own entry, with the kernel's errno, and
 *   the daemon log names each refused marker once; the parent lists as the kernel lists it.
 * - Escapes: redirects and symlinks in the layers that try to leave the layer roots, and a
 *   layer directory swapped for a symlink while lookups and creates run: nothing outside the
 *   layers is ever listed, read or written (an `outside` tree in scratch, snapshotted, and
 *   the run's read-only sentinels).
 *
 * The kernel runs first on its own copy of the layers; stratafs must answer as it did.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kernelOverlayProblem, mount, requireKernel, tempDir, type Impl, type MountHandle } from '../harness/mounts.js';
import { mustBash, run, shq } from '../harness/proc.js';
import { sentinelDir } from '../harness/sentinel.js';
import { dirSnapshot } from '../harness/cli-mount.js';

/** Per path: [lstat, listdir, open] as "S_IFMT size=…" / names / "ok", or the errno name. */
type Probe = Record<string, unknown>;

// One process per probe: lstat, listdir and open of each name, and (walk) every regular file
// beneath the names read, without following symlinks. Errors are errno names.
const PROBE_PY = String.raw`
import os, sys, errno, json, stat as S
m = sys.argv[1]; walk = sys.argv[2] == 'walk'; names = sys.argv[3:]
def e(f):
    try: return f()
    except OSError as x: return errno.errorcode.get(x.errno, str(x.errno))
def st(p):
    s = os.lstat(p)
    return '%o size=%d rdev=%d,%d' % (S.S_IFMT(s.st_mode), 0 if S.S_ISDIR(s.st_mode) else s.st_size, os.major(s.st_rdev), os.minor(s.st_rdev))
def op(p):
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        return 'ok' if not S.S_ISREG(os.fstat(fd).st_mode) else 'data=' + os.read(fd, 200).decode('latin1')
    finally: os.close(fd)
out = {'.': e(lambda: sorted(os.listdir(m)))}
for n in names:
    p = os.path.join(m, n)
    out[n] = [e(lambda: st(p)), e(lambda: sorted(os.listdir(p))), e(lambda: op(p))]
    if walk:
        for root, dirs, files in os.walk(p, onerror=lambda x: out.setdefault(n + ' walk-errors', []).append(errno.errorcode.get(x.errno))):
            for f in sorted(dirs + files):
                q = os.path.join(root, f)
                out[os.path.relpath(q, m)] = [e(lambda: st(q)), e(lambda: op(q))]
print(json.dumps(out, sort_keys=True))
`;

let kernelProblem: string | undefined;
let dir: string;
const handles: MountHandle[] = [];

beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
  dir = await tempDir('hostile-markers');
  await writeFile(join(dir, 'probe.py'), PROBE_PY);
});

afterAll(async () => {
  for (const h of handles.splice(0)) await h.unmount();
  await rm(dir, { recursive: true, force: true });
});

async function probe(mnt: string, names: string[], walk = false): Promise<Probe> {
  const r = await run('python3', [join(dir, 'probe.py'), mnt, walk ? 'walk' : 'flat', ...names], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`probe of ${mnt}: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString('latin1')) as Probe;
}

/** Copies the template layer set for `impl`, mounts it, runs `body`, unmounts. */
async function withMount<T>(template: string, impl: Impl, lowers: string[], extra: string[], body: (mnt: string, base: string) => Promise<T>, mntRel = 'mnt'): Promise<T> {
  const base = join(dir, `${impl}-${template.split('/').pop()}`);
  // cp -a: node's cp keeps no xattrs and no device nodes
  await mustBash(`cp -a ${shq(template)} ${shq(base)}`);
  const mnt = join(base, mntRel);
  await mkdir(mnt, { recursive: true });
  const h = await mount(impl, { lowers: lowers.map((l) => join(base, l)), upper: join(base, 'u'), work: join(base, 'w') }, mnt, { extra });
  handles.push(h);
  try {
    return await body(mnt, base);
  } finally {
    handles.splice(handles.indexOf(h), 1);
    await h.unmount();
  }
}

const hex = (s: string): string => '0x' + Buffer.from(s, 'latin1').toString('hex');
/** setfattr of a raw value: "" is an empty value; everything else goes as hex (NULs survive). */
const setx = (name: string, value: string, path: string): string =>
  `setfattr -h -n ${name} -v ${value === '' ? '""' : hex(value)} ${shq(path)}`;

describe('corrupt markers affect only their own entry, with the kernel errno', () => {
  // Upper directories with redirects (name -> value), all beside healthy entries.
  const REDIRECTS: Record<string, string> = {
    'r-rel-dotdot-etc': '../etc',
    'r-abs-dotdot-dotdot-etc': '/../../etc',
    'r-abs-a-dotdot-etc': '/a/../etc',
    'r-rel-slash': 'a/b',
    'r-dot': '.',
    'r-dotdot': '..',
    'r-slash': '/',
    'r-double-slash': '//etc',
    'r-trailing-slash': '/etc/',
    'r-abs-dot': '/./etc',
    'r-empty': '',
    'r-nul-first': '\0abc',
    'r-nul-inside': 'zz\0b',
    'r-long-rel': 'n'.repeat(300),
    'r-long-abs-component': '/src/' + 'n'.repeat(300),
    'r-ok-abs': '/src/target',
  };
  const OPAQUE: Record<string, string> = { 'o-x': 'x', 'o-empty': '', 'o-yes': 'yes', 'o-y-nul': 'y\0' };

  let template: string;
  beforeAll(async () => {
    template = join(dir, 'corrupt');
    const l = join(template, 'l'), m = join(template, 'm'), u = join(template, 'u');
    const s: string[] = ['set -e', `mkdir -p ${shq(join(template, 'w'))}`];
    s.push(`mkdir -p ${shq(l)}/etc ${shq(l)}/a ${shq(l)}/src/target ${shq(l)}/sub ${shq(l)}/m-bad ${shq(m)}/m-bad ${shq(u)}/sub`);
    s.push(`echo lower-etc > ${shq(l)}/etc/f; echo lower-a > ${shq(l)}/a/f; echo target > ${shq(l)}/src/target/t; echo below > ${shq(l)}/m-bad/b`);
    // a bad redirect in a middle lower layer
    s.push(setx('trusted.overlay.redirect', '/../../etc', join(m, 'm-bad')));
    for (const [n, v] of Object.entries(REDIRECTS)) {
      s.push(`mkdir ${shq(join(u, n))}`, `echo up > ${shq(join(u, n, 'own'))}`, setx('trusted.overlay.redirect', v, join(u, n)));
    }
    s.push(`mkdir ${shq(join(u, 'sub', 'bad'))}`, setx('trusted.overlay.redirect', '../etc', join(u, 'sub', 'bad')), `echo ok > ${shq(join(u, 'sub', 'good'))}`);
    for (const [n, v] of Object.entries(OPAQUE)) {
      s.push(`mkdir ${shq(join(l, n))} ${shq(join(u, n))}`, `echo lower > ${shq(join(l, n, 'lf'))}`, setx('trusted.overlay.opaque', v, join(u, n)));
    }
    // origin garbage on a file and a directory that have a lower counterpart
    s.push(`echo lower > ${shq(join(l, 'f-origin'))}`, `echo upper > ${shq(join(u, 'f-origin'))}`, setx('trusted.overlay.origin', 'garbage', join(u, 'f-origin')));
    s.push(`mkdir ${shq(join(l, 'd-origin'))} ${shq(join(u, 'd-origin'))}`, `echo lower > ${shq(join(l, 'd-origin', 'lf'))}`, setx('trusted.overlay.origin', '\0\xfb\x21garbage', join(u, 'd-origin')));
    // char devices that are not whiteouts (only 0/0 is), over lower files of the same name
    for (const [n, dev] of [['c-1-3', '1 3'], ['c-0-1', '0 1'], ['c-1-0', '1 0']] as const) {
      s.push(`echo lower > ${shq(join(l, n))}`, `mknod ${shq(join(u, n))} c ${dev}`);
    }
    s.push(`mkdir ${shq(join(u, 'healthy'))}`, `echo fine > ${shq(join(u, 'healthy', 'f'))}`);
    await mustBash(s.join('\n'));
  });

  const names = (): string[] => [
    ...Object.keys(REDIRECTS), 'sub', 'sub/bad', 'sub/good', 'm-bad', ...Object.keys(OPAQUE),
    'f-origin', 'd-origin', 'c-1-3', 'c-0-1', 'c-1-0', 'healthy', 'healthy/f', 'etc', 'a',
  ];

  it('lists every parent and fails only the bad entry, as the kernel does; the log names each once', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    // nodev as libfuse mounts stratafs: opening the char devices is then refused alike
    const kernel = await withMount(template, 'kernel', ['m', 'l'], ['nodev'], (mnt) => probe(mnt, names()));
    const log = join(dir, 'corrupt-stratafs.log');
    const strata = await withMount(template, 'stratafs', ['m', 'l'], [`log=${log}`], async (mnt) => {
      const first = await probe(mnt, names());
      // asked twice: still one log line per marker
      await probe(mnt, names());
      return first;
    });
    // what the kernel answered (read on kernel 6.18): the errnos of fs/overlayfs/namei.c
    expect(kernel['r-rel-dotdot-etc']).toEqual(['EINVAL', 'EINVAL', 'EINVAL']);
    expect(kernel['r-abs-dotdot-dotdot-etc']).toEqual(['EACCES', 'EACCES', 'EACCES']);
    expect((kernel['.'] as string[]).length).toBeGreaterThan(20);
    // stratafs: the same listing of the root and of sub, the same answer for every entry
    const diffs = Object.keys(kernel).filter((k) => JSON.stringify(kernel[k]) !== JSON.stringify(strata[k]));
    expect(diffs.map((k) => `${k}: kernel ${JSON.stringify(kernel[k])} stratafs ${JSON.stringify(strata[k])}`)).toEqual([]);
    const failing = Object.keys(kernel).filter((k) => k !== '.' && typeof (kernel[k] as unknown[])[0] === 'string' && /^E/.test((kernel[k] as string[])[0]!));
    expect(failing.length).toBeGreaterThanOrEqual(12);
    const lines = (await readFile(log, 'latin1')).split('\n').filter((x) => x.includes('corrupt marker'));
    for (const f of failing) {
      const mine = lines.filter((x) => x.endsWith(` /${f} fails ${(kernel[f] as string[])[0]}`));
      expect(mine, `log lines for ${f}:\n${lines.join('\n')}`).toHaveLength(1);
    }
    expect(lines).toHaveLength(failing.length);
    if (process.env.STRATAFS_LONG === '1') {
      // for the report: fuse-overlayfs on the same layers
      const fo = await withMount(template, 'fuse-overlayfs', ['m', 'l'], [], (mnt) => probe(mnt, names()));
      console.log(`corrupt markers, fuse-overlayfs vs kernel:\n${Object.keys(kernel).filter((k) => JSON.stringify(kernel[k]) !== JSON.stringify(fo[k])).map((k) => `${k}: kernel ${JSON.stringify(kernel[k])} fuse-overlayfs ${JSON.stringify(fo[k])}`).join('\n')}`);
    }
  });
});

describe('nothing outside the layers is reached', () => {
  // `outside` stands beside the layers where a redirect or link that climbs would land:
  // <base>/etc, <base>/outside (absolute links), and the run's read-only sentinels.
  let template: string;
  const SECRET = 'OUTSIDE-THE-LAYERS';
  const CASES = [
    'e-rel-dotdot', 'e-abs-dotdot', 'e-abs-dotdot-dotdot', 'e-abs-through-dir-dotdot', 'e-abs-to-symlink',
    'e-abs-through-symlink', 'e-rel-to-symlink', 'e-abs-through-dotdot-link', 'e-lower-dir-is-symlink',
    'e-marker-symlinks', 'e-middle-symlink',
  ];
  beforeAll(async () => {
    template = join(dir, 'escape');
    const l = join(template, 'l'), m = join(template, 'm'), u = join(template, 'u');
    const out = join(template, 'outside');
    const s: string[] = ['set -e', `mkdir -p ${shq(join(template, 'w'))} ${shq(join(template, 'etc'))} ${shq(out)}/sub ${shq(l)}/d ${shq(m)} ${shq(u)}`];
    s.push(`echo ${SECRET} > ${shq(join(template, 'etc', 'secret'))}`, `echo ${SECRET} > ${shq(join(out, 'secret'))}`, `echo ${SECRET} > ${shq(join(out, 'sub', 'secret'))}`);
    // absolute links in the layers point at the run's read-only sentinels (never the host)
    const sent = sentinelDir();
    s.push(`ln -s ${shq(sent)} ${shq(join(l, 'lnk'))}`, `ln -s .. ${shq(join(l, 'up'))}`);
    const rd = (n: string, v: string): void => { s.push(`mkdir ${shq(join(u, n))}`, setx('trusted.overlay.redirect', v, join(u, n))); };
    rd('e-rel-dotdot', '../etc');
    rd('e-abs-dotdot', '/../etc');
    rd('e-abs-dotdot-dotdot', '/../../etc');
    rd('e-abs-through-dir-dotdot', '/d/../../etc');
    rd('e-abs-to-symlink', '/lnk');
    rd('e-abs-through-symlink', '/lnk/d');
    rd('e-rel-to-symlink', 'lnk');
    rd('e-abs-through-dotdot-link', '/up/etc');
    // a lower "directory" that is a symlink out, under an upper directory of the same name
    s.push(`ln -s ${shq(out)} ${shq(join(l, 'e-lower-dir-is-symlink'))}`, `mkdir ${shq(join(u, 'e-lower-dir-is-symlink'))}`);
    // markers that are symlinks out: the opaque file and a .wh. file
    s.push(`mkdir ${shq(join(l, 'e-marker-symlinks'))} ${shq(join(u, 'e-marker-symlinks'))}`, `echo lower > ${shq(join(l, 'e-marker-symlinks', 'x'))}`);
    s.push(`ln -s ${shq(join(out, 'secret'))} ${shq(join(u, 'e-marker-symlinks', '.wh..wh..opq'))}`, `ln -s ${shq(out)} ${shq(join(u, 'e-marker-symlinks', '.wh.y'))}`);
    // a symlink out in the middle of a merge chain: a non-directory ends the merge
    s.push(`mkdir ${shq(join(l, 'e-middle-symlink'))} ${shq(join(u, 'e-middle-symlink'))}`, `echo bottom > ${shq(join(l, 'e-middle-symlink', 'b'))}`);
    s.push(`ln -s ${shq(out)} ${shq(join(m, 'e-middle-symlink'))}`);
    await mustBash(s.join('\n'));
  });

  it(`${CASES.length} static cases: the kernel's answers, and no listing or read reaches outside`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const results: Partial<Record<Impl, Probe>> = {};
    const snaps: [string[], string[]][] = [];
    // fuse-overlayfs only in the long run, for the report
    for (const impl of process.env.STRATAFS_LONG === '1' ? ['kernel', 'stratafs', 'fuse-overlayfs'] as const : ['kernel', 'stratafs'] as const) {
      results[impl] = await withMount(template, impl, ['m', 'l'], [], async (mnt, base) => {
        const outsideNow = async (): Promise<string[]> =>
          [...(await dirSnapshot(join(base, 'outside'))), ...(await dirSnapshot(join(base, 'etc')))].map(([a, b]) => `${a} ${b}`);
        const before = await outsideNow();
        const p = await probe(mnt, CASES, true);
        // writes through every case: create a file, then a directory, inside it
        const w = await run('bash', ['-c', CASES.map((c) => `(echo w > ${shq(join(mnt, c, 'new'))}) 2>/dev/null; echo "${c} $?"; mkdir ${shq(join(mnt, c, 'nd'))} 2>/dev/null; echo "${c} mkdir $?"`).join('\n')]);
        p['.writes'] = w.stdout.toString().trim().split('\n');
        snaps.push([before, await outsideNow()]);
        return p;
      });
    }
    const k = results.kernel!, s = results.stratafs!;
    const fo = results['fuse-overlayfs'];
    if (fo) {
      console.log(`escapes, fuse-overlayfs: outside untouched ${JSON.stringify(snaps[2]![0]) === JSON.stringify(snaps[2]![1])}, secret seen ${JSON.stringify(fo).includes(SECRET)}\n${Object.keys(k).filter((x) => JSON.stringify(k[x]) !== JSON.stringify(fo[x])).map((x) => `${x}: kernel ${JSON.stringify(k[x])} fuse-overlayfs ${JSON.stringify(fo[x])}`).join('\n')}`);
    }
    const text = JSON.stringify(s);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('sentinel:');
    expect(JSON.stringify(k)).not.toContain(SECRET);
    for (const [before, after] of snaps.slice(0, 2)) {
      expect(after).toEqual(before);
      expect(before).toHaveLength(6); // outside, outside/sub, two secrets there; etc, etc/secret
    }
    // Divergence wh-prefix-names-read (test/harness/divergences.ts): stratafs reads `.wh.` names
    // as OCI markers; the kernel shows them. A marker that is a symlink is only lstat'ed: the
    // opaque file makes its directory opaque and is never followed.
    const oci = (x: string): boolean => x.startsWith('e-marker-symlinks');
    expect(s['e-marker-symlinks']).toEqual(['40000 size=0 rdev=0,0', [], 'ok']);
    const diffs = Object.keys(k).filter((x) => !oci(x) && JSON.stringify(k[x]) !== JSON.stringify(s[x]));
    expect(diffs.map((x) => `${x}: kernel ${JSON.stringify(k[x])} stratafs ${JSON.stringify(s[x])}`)).toEqual([]);
  });
});

// The race: a swapper replaces layer directories by symlinks `../outside` and back, over and
// over, while a client lists, reads, copies up (appends) and creates through the mount. While
// swapped, the layer really holds a symlink, and the mount shows it: a client that follows it
// (its own path walk, beside the mount) reaches m/outside, a decoy. The daemon following it
// inside a layer would reach <base>/outside: what must never be read or written.
const SWAP_PY = String.raw`
import os, sys
base, stop = sys.argv[1], sys.argv[2]
dirs = [os.path.join(base, p) for p in ('l/sw', 'l/cu', 'u/usw')]
n = 0
while not os.path.exists(stop) and n < 200000:
    for d in dirs:
        os.rename(d, d + '.real'); os.symlink('../outside', d)
    for d in dirs:
        os.unlink(d); os.rename(d + '.real', d)
    n += 1
print(n)
`;
const CLIENT_PY = String.raw`
import os, sys, json, errno
mnt, stop, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {'ok': 0, 'decoy': 0, 'errors': {}, 'foreign': []}
def err(x):
    k = errno.errorcode.get(x.errno, str(x.errno)); seen['errors'][k] = seen['errors'].get(k, 0) + 1
def check(what, got):
    # outside's content or its only name of its own is an escape; the decoy is the client's own walk
    if b'OUTSIDE' in got or b'secret' in got: seen['foreign'].append([what, got.decode('latin1')])
    elif b'decoy' in got: seen['decoy'] += 1
    else: seen['ok'] += 1
for i in range(rounds):
    try:
        names = os.listdir(os.path.join(mnt, 'sw'))
        check('ls sw', (b'decoy' if 'g0' in names else b'') + ' '.join(names).encode())
    except OSError as x: err(x)
    try:
        k = i % 50
        with open(os.path.join(mnt, 'sw', 'f%d' % k), 'rb') as f: check('read sw/f%d' % k, f.read())
    except OSError as x: err(x)
    try:
        p = os.path.join(mnt, 'cu', 'g%d' % i)
        with open(p, 'ab') as f: f.write(b'appended\n')
        with open(p, 'rb') as f: check('copy-up cu/g%d' % i, f.read())
    except OSError as x: err(x)
    try:
        p = os.path.join(mnt, 'usw', 'n%d' % i)
        with open(p, 'wb') as f: f.write(b'new\n')
        os.mkdir(os.path.join(mnt, 'usw', 'd%d' % i))
        check('create usw/n%d' % i, b'')
    except OSError as x: err(x)
open(stop, 'w').close()
print(json.dumps(seen))
`;

describe('a layer directory swapped for a symlink while lookups run', () => {
  const LONG = process.env.STRATAFS_LONG === '1';
  const ROUNDS = LONG ? 1500 : 120;
  it(`${ROUNDS} rounds of list/read/copy-up/create against a swapper: nothing outside is listed, read or written`, { timeout: LONG ? 900_000 : 60_000 }, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    await writeFile(join(dir, 'swap.py'), SWAP_PY);
    await writeFile(join(dir, 'client.py'), CLIENT_PY);
    const template = join(dir, 'race');
    const l = join(template, 'l'), u = join(template, 'u'), out = join(template, 'outside');
    const s = ['set -e', `mkdir -p ${shq(l)}/sw ${shq(l)}/cu ${shq(u)}/usw ${shq(out)} ${shq(join(template, 'w'))}`, `cd ${shq(template)}`];
    s.push('mkdir -p m/outside');
    s.push(`for i in $(seq 0 49); do echo "lower f$i" > l/sw/f$i; echo OUTSIDE > outside/f$i; echo decoy > m/outside/f$i; done`);
    s.push(`for i in $(seq 0 ${ROUNDS - 1}); do echo "lower g$i" > l/cu/g$i; echo OUTSIDE > outside/g$i; echo decoy > m/outside/g$i; done`, 'echo OUTSIDE > outside/secret');
    await mustBash(s.join('\n'));
    const report: string[] = [];
    // fuse-overlayfs only in the long run, for the report
    for (const impl of LONG ? ['kernel', 'fuse-overlayfs', 'stratafs'] as const : ['kernel', 'stratafs'] as const) {
      // stratafs with (nearly) no caches: every access resolves the layers again
      const extra = impl === 'stratafs' ? ['timeout=0', 'lookup_cache=1'] : [];
      const r = await withMount(template, impl, ['l'], extra, async (mnt, base) => {
        const before = await dirSnapshot(join(base, 'outside'));
        const stop = join(base, 'stop');
        const [sw, cl] = await Promise.all([
          run('python3', [join(dir, 'swap.py'), base, stop], { timeoutMs: 300_000 }),
          run('python3', [join(dir, 'client.py'), mnt, stop, String(ROUNDS)], { timeoutMs: 300_000 }),
        ]);
        if (sw.code !== 0 || cl.code !== 0) throw new Error(`${impl}: swapper ${sw.stderr.toString()} client ${cl.stderr.toString()}`);
        const after = await dirSnapshot(join(base, 'outside'));
        const seen = JSON.parse(cl.stdout.toString()) as { ok: number; decoy: number; errors: Record<string, number>; foreign: unknown[] };
        return { swaps: Number(sw.stdout.toString()), seen, outsideSame: JSON.stringify([...after]) === JSON.stringify([...before]), base };
      }, 'm/mnt');
      // the upper holds nothing that came from outside
      const grep = await run('grep', ['-rl', 'OUTSIDE', join(r.base, 'u')]);
      report.push(`${impl}: ${r.swaps} swaps, ${r.seen.ok} checks ok, ${r.seen.decoy} through the shown symlink (decoy), errors ${JSON.stringify(r.seen.errors)}, foreign ${r.seen.foreign.length}`);
      if (impl === 'stratafs') {
        expect(r.seen.foreign).toEqual([]);
        expect(r.outsideSame).toBe(true);
        expect(grep.stdout.toString()).toBe('');
        expect(r.swaps).toBeGreaterThan(0);
        expect(r.seen.ok).toBeGreaterThan(0);
      }
    }
    console.log(report.join('\n'));
  });
});
