import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseCommandLine } from '../../src/cli/args.js';
import { escapeOptionValue, parseMountArgs, splitLowerdir, splitOptions, type MountArgs } from '../../src/cli/mount-options.js';
import { validateMountConfig } from '../../src/cli/validate.js';
import { ConfigError, DEFAULT_TIMEOUT_S, MAX_LAYERS, type MountConfig } from '../../src/fuse/config.js';
import { DEFAULT_LOOKUP_CACHE_SIZE } from '../../src/core/config.js';

const env = { cwd: '/base', uid: 0, version: '0.0.0' };
const notRoot = process.geteuid?.() !== 0;
const args = (o: Partial<MountArgs>): MountArgs => ({
  options: [], mountpoint: '/mnt', source: undefined, foreground: false, debug: false, cwd: '/base', uid: 0, ...o,
});
const mountOf = (argv: string[], e = env): MountConfig => {
  const c = parseCommandLine(argv, e);
  if (c.kind !== 'mount') throw new Error(`not a mount: ${c.kind}`);
  return c.config;
};

describe('option string', () => {
  it('splits at unescaped commas and keeps escapes for the value parser', () => {
    expect(splitOptions('a,b=1,,c=x\\,y')).toEqual(['a', 'b=1', 'c=x\\,y']);
  });
  it('splits lowerdir at unescaped colons and unescapes', () => {
    expect(splitLowerdir('/a\\:b:/c:/d\\\\e')).toEqual(['/a:b', '/c', '/d\\e']);
  });
  it('a comma escaped inside lowerdir stays in the path', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/x\\,y:/z'] }));
    expect(c.lowerPaths).toEqual(['/x,y', '/z']);
  });
  it('upperdir and workdir are unescaped', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/l,upperdir=/u\\,1,workdir=/w\\:2'] }));
    expect(c.upperPath).toBe('/u,1');
    expect(c.workPath).toBe('/w:2');
  });
});

describe('parseMountArgs', () => {
  it('defaults', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=l1:/l2,upperdir=u,workdir=w'] }));
    expect(c.lowerPaths).toEqual(['/base/l1', '/l2']);
    expect(c.lowerdirs).toEqual(['/base/l1', '/l2']);
    expect(c.upperPath).toBe('/base/u');
    expect(c.workPath).toBe('/base/w');
    expect(c.mountpoint).toBe('/mnt');
    expect(c.redirectDir).toBe(true);
    expect(c.userxattr).toBe(false);
    expect(c.timeout).toBe(DEFAULT_TIMEOUT_S);
    expect(c.negativeTimeout).toBe(DEFAULT_TIMEOUT_S);
    expect(c.lookupCacheSize).toBe(DEFAULT_LOOKUP_CACHE_SIZE);
    expect(c.fsync).toBe(true);
    // as root (euid 0, also inside a user namespace): what fuse-overlayfs adds, allow_other,suid,noatime, and dev
    expect(c.defaultPermissions).toBe(true);
    expect(c.allowOther).toBe(true);
    expect(c.flags).toEqual({ readOnly: false, suid: true, dev: false, exec: true, noatime: true, sync: false, dirsync: false });
    expect(c.fsname).toBe('stratafs');
    expect(c.unknownOptions).toEqual([]);
    expect(c.force).toBe(false);
  });
  it('non-root defaults: nosuid, nodev, noatime, no allow_other, and default_permissions (the daemon acts with the mounter\'s rights)', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/l'], uid: 1000 }));
    expect(c.flags.suid).toBe(false);
    expect(c.flags.dev).toBe(false);
    expect(c.flags.noatime).toBe(true);
    expect(c.allowOther).toBe(false);
    expect(c.defaultPermissions).toBe(true);
    expect(parseMountArgs(args({ options: ['lowerdir=/l,allow_other'], uid: 1000 })).allowOther).toBe(true);
  });
  it('noallow_other turns the root default off; the last word wins; atime turns noatime off', () => {
    expect(parseMountArgs(args({ options: ['lowerdir=/l,noallow_other'], uid: 0 })).allowOther).toBe(false);
    expect(parseMountArgs(args({ options: ['lowerdir=/l,noallow_other', 'allow_other'], uid: 0 })).allowOther).toBe(true);
    expect(parseMountArgs(args({ options: ['lowerdir=/l,atime'], uid: 0 })).flags.noatime).toBe(false);
    expect(parseMountArgs(args({ options: ['lowerdir=/l,noallow_other,default_permissions'], uid: 0 })).unknownOptions).toEqual([]);
  });
  it('paths are byte strings (latin1) in the core config, text in *Path', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/caf\u00e9'] }));
    expect(c.lowerPaths).toEqual(['/caf\u00e9']);
    expect(c.lowerdirs).toEqual(['/caf\u00c3\u00a9']);
  });
  it('without upperdir the mount is read-only', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/a:/b'] }));
    expect(c.upperdir).toBeUndefined();
    expect(c.flags.readOnly).toBe(true);
  });
  it('ro with an upper serves the upper as top layer and leaves the workdir alone', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/a,upperdir=/u,workdir=/w,ro'] }));
    expect(c.lowerPaths).toEqual(['/u', '/a']);
    expect(c.upperdir).toBeUndefined();
    expect(c.workdir).toBeUndefined();
    expect(c.flags.readOnly).toBe(true);
  });
  it('rw after ro wins', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/a,upperdir=/u,workdir=/w,ro', 'rw'] }));
    expect(c.flags.readOnly).toBe(false);
    expect(c.upperPath).toBe('/u');
  });
  it('all known options', () => {
    const c = parseMountArgs(args({
      options: ['lowerdir=/a,redirect_dir=off,userxattr,timeout=2.5,negative_timeout=0,lookup_cache=7,allow_other',
        'volatile,force,debug,fsname=img,log=x.log,nosuid,nodev,noexec,noatime,sync,dirsync,default_permissions'],
      uid: 0,
    }));
    expect(c.redirectDir).toBe(false);
    expect(c.userxattr).toBe(true);
    expect(c.timeout).toBe(2.5);
    expect(c.negativeTimeout).toBe(0);
    expect(c.lookupCacheSize).toBe(7);
    expect(c.allowOther).toBe(true);
    expect(c.fsync).toBe(false);
    expect(c.force).toBe(true);
    expect(c.debug).toBe(true);
    expect(c.fsname).toBe('img');
    expect(c.logFile).toBe('/base/x.log');
    expect(c.flags).toEqual({ readOnly: true, suid: false, dev: false, exec: false, noatime: true, sync: true, dirsync: true });
  });
  it('fsync=0 and fsync=1', () => {
    expect(parseMountArgs(args({ options: ['lowerdir=/a,fsync=0'] })).fsync).toBe(false);
    expect(parseMountArgs(args({ options: ['lowerdir=/a,volatile,fsync=1'] })).fsync).toBe(true);
  });
  it('redirect_dir=follow means no redirect written', () => {
    expect(parseMountArgs(args({ options: ['lowerdir=/a,redirect_dir=follow'] })).redirectDir).toBe(false);
    expect(parseMountArgs(args({ options: ['lowerdir=/a,redirect_dir=on'] })).redirectDir).toBe(true);
  });
  it('unknown options are collected by name; fstab words are silent; unapplied generic words are listed', () => {
    const c = parseMountArgs(args({
      options: ['lowerdir=/a,frobnicate,context="system_u:object_r:container_file_t:s0",uidmapping=0:1000:1,defaults,nofail,x-systemd.automount,relatime,squash_to_root,allow_root'],
    }));
    expect(c.unknownOptions).toEqual(['frobnicate', 'allow_root']);
    expect(c.ignoredOptions).toEqual(['context="system_u:object_r:container_file_t:s0"', 'relatime']);
  });
  it('workdir without upperdir is ignored with a note', () => {
    const c = parseMountArgs(args({ options: ['lowerdir=/a,workdir=/w'] }));
    expect(c.workdir).toBeUndefined();
    expect(c.ignoredOptions).toEqual(['workdir=/w']);
  });
  it('source of the mount-helper form becomes fsname', () => {
    expect(parseMountArgs(args({ options: ['lowerdir=/a'], source: 'myimage' })).fsname).toBe('myimage');
  });
  it('500 layers are accepted, 501 refused', () => {
    const many = (n: number): string => Array.from({ length: n }, (_, i) => `/l${i}`).join(':');
    expect(parseMountArgs(args({ options: [`lowerdir=${many(MAX_LAYERS)}`] })).lowerdirs).toHaveLength(500);
    expect(() => parseMountArgs(args({ options: [`lowerdir=${many(MAX_LAYERS + 1)}`] }))).toThrow(/too many lower layers \(501/);
  });
  it.each([
    [['upperdir=/u,workdir=/w'], /missing lowerdir/],
    [['lowerdir='], /lowerdir needs a value/],
    [['lowerdir=/a::/b'], /data-only lower layers/],
    [['lowerdir=/a:'], /empty layer in lowerdir/],
    [['lowerdir=/a,upperdir=/u'], /upperdir needs a workdir option: \/u/],
    [['lowerdir=/a,timeout=-1'], /invalid value for timeout/],
    [['lowerdir=/a,timeout=abc'], /invalid value for timeout/],
    [['lowerdir=/a,lookup_cache=0'], /invalid value for lookup_cache/],
    [['lowerdir=/a,redirect_dir=maybe'], /invalid value for redirect_dir/],
    [['lowerdir=/a,metacopy=on'], /metacopy is not supported/],
    [['lowerdir=/a,index=on'], /index is not supported/],
  ])('refuses %j', (options, msg) => {
    expect(() => parseMountArgs(args({ options }))).toThrow(msg);
  });
  it('index=off and metacopy=off are accepted', () => {
    expect(parseMountArgs(args({ options: ['lowerdir=/a,index=off,metacopy=off'] })).unknownOptions).toEqual([]);
  });
  it('missing mountpoint', () => {
    expect(() => parseMountArgs(args({ options: ['lowerdir=/a'], mountpoint: undefined }))).toThrow(/missing mountpoint/);
  });
});

describe('parseCommandLine', () => {
  it('classic form with -f -d and repeated -o', () => {
    const c = mountOf(['-f', '-d', '-o', 'lowerdir=/a', '-o', 'upperdir=/u,workdir=/w', 'mnt']);
    expect(c.foreground).toBe(true);
    expect(c.debug).toBe(true);
    expect(c.upperPath).toBe('/u');
    expect(c.mountpoint).toBe('/base/mnt');
  });
  it('-oOPTS glued and --debug long form', () => {
    const c = mountOf(['-olowerdir=/a', '--debug', '/m']);
    expect(c.lowerPaths).toEqual(['/a']);
    expect(c.debug).toBe(true);
  });
  it('mount helper form: SOURCE MOUNTPOINT -o OPTS (as mount.fuse3 calls it)', () => {
    const c = mountOf(['stratafs', '/m', '-o', 'rw,lowerdir=/a\\:b,dev,suid']);
    expect(c.mountpoint).toBe('/m');
    expect(c.lowerPaths).toEqual(['/a:b']);
    expect(c.fsname).toBe('stratafs');
  });
  it('daemon child flag', () => {
    const c = parseCommandLine(['--daemon-child', '-o', 'lowerdir=/a', '/m'], env);
    expect(c.kind === 'mount' && c.daemonChild).toBe(true);
  });
  it('umount, umount --force, stats --json', () => {
    expect(parseCommandLine(['umount', 'x'], env)).toEqual({ kind: 'umount', mountpoint: '/base/x', force: false });
    expect(parseCommandLine(['umount', '--force', '/x'], env)).toEqual({ kind: 'umount', mountpoint: '/x', force: true });
    expect(parseCommandLine(['stats', '--json', '/x'], env)).toEqual({ kind: 'stats', mountpoint: '/x', json: true, gc: false });
  });
  it('help and version exit 0 with text', () => {
    const h = parseCommandLine(['--help'], env);
    expect(h.kind).toBe('exit');
    expect(h.kind === 'exit' && h.output).toMatch(/lowerdir=DIR/);
    const v = parseCommandLine(['--version'], env);
    expect(v.kind === 'exit' && v.output.trim()).toBe('0.0.0');
  });
  it('bad command lines are ConfigErrors with one line', () => {
    expect(() => parseCommandLine(['-o', 'lowerdir=/a'], env)).toThrow(/missing mountpoint/);
    expect(() => parseCommandLine(['--bogus', '/m'], env)).toThrow(ConfigError);
    expect(() => parseCommandLine(['a', 'b', 'c', '-o', 'lowerdir=/a'], env)).toThrow(ConfigError);
    expect(() => parseCommandLine(['umount'], env)).toThrow(/missing required argument/);
  });
  it('an unknown command is named (not taken for a mountpoint without options)', () => {
    expect(() => parseCommandLine(['frobnicate'], env)).toThrow(/^unknown command 'frobnicate' \(see stratafs --help\)$/);
    expect(() => parseCommandLine(['-f', 'frobnicate'], env)).toThrow(/unknown command 'frobnicate'/);
    // with options it is a mountpoint, as before; a path without options still asks for lowerdir
    expect(mountOf(['frobnicate', '-o', 'lowerdir=/a']).mountpoint).toBe('/base/frobnicate');
    expect(() => parseCommandLine(['./mnt'], env)).toThrow(/missing lowerdir option/);
  });
});

describe('validateMountConfig (reads only)', () => {
  let t: string;
  const mounts: string[] = [];
  const mk = (...ps: string[]): string[] => ps.map((p) => { const full = path.join(t, p); fs.mkdirSync(full, { recursive: true }); return full; });
  const cfg = (o: string, mnt = path.join(t, 'mnt')): MountConfig => parseMountArgs(args({ options: [o], mountpoint: mnt, cwd: t }));
  const tmpfs = (dir: string, extra = ''): void => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=1m${extra}`, 'stratafs-test', dir]);
    mounts.push(dir);
  };

  beforeEach(() => {
    t = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-opt-'));
    mk('l1', 'l2', 'u', 'w', 'mnt');
  });
  afterEach(() => {
    for (const m of mounts.splice(0).reverse()) execFileSync('umount', [m]);
    fs.rmSync(t, { recursive: true, force: true });
  });

  it('a good config passes and resolves symlinks of the mountpoint', () => {
    fs.symlinkSync(path.join(t, 'mnt'), path.join(t, 'mlink'));
    const c = cfg('lowerdir=l1:l2,upperdir=u,workdir=w', path.join(t, 'mlink'));
    expect(validateMountConfig(c)).toEqual({ deadMount: false });
    expect(c.mountpoint).toBe(fs.realpathSync(path.join(t, 'mnt')));
  });
  it('the mountpoint may be the top lower itself', () => {
    expect(() => validateMountConfig(cfg('lowerdir=l1:l2,upperdir=u,workdir=w', path.join(t, 'l1')))).not.toThrow();
  });
  const bad: [string, string, (t: string) => string | undefined, RegExp][] = [
    ['nonexistent lower', 'lowerdir=l1:nope,upperdir=u,workdir=w', () => undefined, /^lowerdir does not exist: .*\/nope$/],
    ['lower is a file', 'lowerdir=f,upperdir=u,workdir=w', (t) => { fs.writeFileSync(path.join(t, 'f'), ''); return undefined; }, /^lowerdir is not a directory: .*\/f$/],
    ['nonexistent upper', 'lowerdir=l1,upperdir=nope,workdir=w', () => undefined, /^upperdir does not exist: .*\/nope$/],
    ['nonexistent workdir', 'lowerdir=l1,upperdir=u,workdir=nope', () => undefined, /^workdir does not exist: .*\/nope$/],
    ['upper equal to a lower', 'lowerdir=l1:l2,upperdir=l2,workdir=w', () => undefined, /^upperdir is the same directory as lowerdir .*\/l2: .*\/l2$/],
    ['upper nested in a lower', 'lowerdir=l1,upperdir=l1/sub,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'l1/sub')); return undefined; }, /^upperdir is inside lowerdir .*\/l1: .*\/l1\/sub$/],
    ['lower nested in the upper', 'lowerdir=u/sub,upperdir=u,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'u/sub')); return undefined; }, /^lowerdir is inside upperdir/],
    ['upper equal to a lower through a symlink', 'lowerdir=l1,upperdir=ul,workdir=w', (t) => { fs.symlinkSync(path.join(t, 'l1'), path.join(t, 'ul')); return undefined; }, /^upperdir is the same directory as lowerdir/],
    ['upper inside the mountpoint', 'lowerdir=l1,upperdir=mnt/u,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'mnt/u')); return undefined; }, /^upperdir is inside the mountpoint .*: .*\/mnt\/u$/],
    ['upper is the mountpoint', 'lowerdir=l1,upperdir=mnt,workdir=w', () => undefined, /^upperdir is inside the mountpoint/],
    ['workdir inside upper', 'lowerdir=l1,upperdir=u,workdir=u/w', (t) => { fs.mkdirSync(path.join(t, 'u/w')); return undefined; }, /^workdir is inside upperdir .*: .*\/u\/w$/],
    ['upper inside workdir', 'lowerdir=l1,upperdir=w/u,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'w/u')); return undefined; }, /^upperdir is inside workdir .*: .*\/w\/u$/],
    ['workdir equal to upper', 'lowerdir=l1,upperdir=u,workdir=u', () => undefined, /^workdir is the same directory as upperdir: .*\/u$/],
    ['workdir inside a lower', 'lowerdir=l1,upperdir=u,workdir=l1/w', (t) => { fs.mkdirSync(path.join(t, 'l1/w')); return undefined; }, /^workdir is inside lowerdir/],
    ['mountpoint inside a lower', 'lowerdir=l1,upperdir=u,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'l1/m')); return path.join(t, 'l1/m'); }, /^mountpoint is inside lowerdir .*: .*\/l1\/m$/],
    ['mountpoint inside the upper', 'lowerdir=l1,upperdir=u,workdir=w', (t) => { fs.mkdirSync(path.join(t, 'u/m')); return path.join(t, 'u/m'); }, /^mountpoint is inside upperdir/],
    ['missing mountpoint', 'lowerdir=l1,upperdir=u,workdir=w', (t) => path.join(t, 'nomnt'), /^mountpoint does not exist: .*\/nomnt$/],
    ['mountpoint is a file', 'lowerdir=l1,upperdir=u,workdir=w', (t) => { fs.writeFileSync(path.join(t, 'mf'), ''); return path.join(t, 'mf'); }, /^mountpoint is not a directory: .*\/mf$/],
  ];
  it.each(bad)('%s', (_name, o, setup, msg) => {
    const mnt = setup(t);
    let err: unknown;
    try { validateMountConfig(cfg(o, mnt)); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).not.toMatch(/\n/);
  });
  // these mount a small tmpfs: root only
  it.skipIf(notRoot)('workdir on another filesystem than the upper', () => {
    tmpfs(path.join(t, 'w'));
    expect(() => validateMountConfig(cfg('lowerdir=l1,upperdir=u,workdir=w'))).toThrow(/^workdir is on another filesystem than upperdir .*\/u: .*\/w$/);
  });
  it.skipIf(notRoot)('upper on a read-only filesystem', () => {
    const ro = path.join(t, 'ro');
    fs.mkdirSync(ro);
    tmpfs(ro);
    fs.mkdirSync(path.join(ro, 'u'));
    fs.mkdirSync(path.join(ro, 'w'));
    execFileSync('mount', ['-o', 'remount,ro', ro]);
    expect(() => validateMountConfig(cfg('lowerdir=l1,upperdir=ro/u,workdir=ro/w'))).toThrow(/^upperdir is on a read-only filesystem: .*\/ro\/u$/);
  });
  it.skipIf(notRoot)('a read-only upper is fine for an ro mount (nothing is written)', () => {
    const ro = path.join(t, 'ro');
    fs.mkdirSync(ro);
    tmpfs(ro);
    fs.mkdirSync(path.join(ro, 'u'));
    execFileSync('mount', ['-o', 'remount,ro', ro]);
    expect(() => validateMountConfig(cfg('lowerdir=l1,upperdir=ro/u,workdir=nope,ro'))).not.toThrow();
  });
});

describe("fuse-overlayfs's options (issue 10, defect 4)", () => {
  const parse = (o: string): MountConfig => parseMountArgs(args({ options: [o] }));
  const oneLine = (f: () => unknown, re: RegExp): void => {
    let err: unknown;
    try { f(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    const m = (err as Error).message;
    expect(m).toMatch(re);
    expect(m).not.toContain('\n');
  };

  it('a comma inside double quotes does not split (containers/storage SELinux labels)', () => {
    expect(splitOptions('lowerdir=/a,context="system_u:object_r:container_file_t:s0:c1,c2",volatile'))
      .toEqual(['lowerdir=/a', 'context="system_u:object_r:container_file_t:s0:c1,c2"', 'volatile']);
    const c = parse('lowerdir=/a,context="system_u:object_r:container_file_t:s0:c1,c2",volatile');
    expect(c.unknownOptions).toEqual([]);
    expect(c.ignoredOptions).toEqual(['context="system_u:object_r:container_file_t:s0:c1,c2"']);
    expect(c.fsync).toBe(false);
  });
  it('a quote opens only at the start of a value and not when escaped; an unterminated one is a one-line error', () => {
    expect(splitOptions('a=\\"x,b')).toEqual(['a=\\"x', 'b']);
    expect(splitOptions('lowerdir=/my"dir,upperdir=/u')).toEqual(['lowerdir=/my"dir', 'upperdir=/u']);
    expect(parse('lowerdir=/my"dir:/b\\"c').lowerPaths).toEqual(['/my"dir', '/b"c']);
    expect(parse(`lowerdir=${escapeOptionValue('"/q,x')}`).lowerPaths).toEqual(['/base/"/q,x']);
    oneLine(() => parse('lowerdir=/a,context="abc,volatile'), /unterminated double quote/);
  });
  it('empty options are skipped (podman passes ",,volatile")', () => {
    expect(splitOptions(',,volatile,')).toEqual(['volatile']);
    const c = parse('lowerdir=/a,,,volatile');
    expect(c.fsync).toBe(false);
    expect(c.unknownOptions).toEqual([]);
  });
  it('uidmapping/gidmapping: DISK:SHOWN:COUNT triples joined by colons, in order', () => {
    const c = parse('lowerdir=/a,uidmapping=0:1000:1:1:2000:10,gidmapping=0:100000:65536');
    expect(c.idMapping).toEqual({
      uid: [{ disk: 0, shown: 1000, count: 1 }, { disk: 1, shown: 2000, count: 10 }],
      gid: [{ disk: 0, shown: 100000, count: 65536 }],
      squashUid: undefined, squashGid: undefined,
    });
    expect(c.ignoreChownErrors).toBe(false);
    expect(c.unknownOptions).toEqual([]);
  });
  it('an empty mapping means none, as fuse-overlayfs reads it; no option: no mapping at all', () => {
    expect(parse('lowerdir=/a,uidmapping=,gidmapping=').idMapping).toBeUndefined();
    // podman 4's form (rootless --userns=keep-id, user 4711): every mapping starts with a colon;
    // empty fields are skipped as fuse-overlayfs's strtok skips them
    expect(parse('lowerdir=/a,uidmapping=:0:1:4711:4711:0:1:4712:4712:60825').idMapping?.uid).toEqual([
      { disk: 0, shown: 1, count: 4711 }, { disk: 4711, shown: 0, count: 1 }, { disk: 4712, shown: 4712, count: 60825 }]);
    expect(parse('lowerdir=/a,uidmapping=:').idMapping).toBeUndefined();
    expect(parse('lowerdir=/a,uidmapping=,gidmapping=0:1:2').idMapping).toEqual({ uid: undefined, gid: [{ disk: 0, shown: 1, count: 2 }], squashUid: undefined, squashGid: undefined });
    expect(parse('lowerdir=/a').idMapping).toBeUndefined();
  });
  it('bad mappings are one-line errors naming the value', () => {
    oneLine(() => parse('lowerdir=/a,uidmapping=0:1000'), /invalid uidmapping: 2 numbers, not a multiple of 3.*: 0:1000$/);
    oneLine(() => parse('lowerdir=/a,gidmapping=0:x:1'), /invalid gidmapping: "x" is not an id/);
    oneLine(() => parse('lowerdir=/a,uidmapping=-1:0:1'), /invalid uidmapping: "-1" is not an id/);
    oneLine(() => parse('lowerdir=/a,uidmapping=0::1'), /invalid uidmapping: 2 numbers, not a multiple of 3/);
    oneLine(() => parse('lowerdir=/a,uidmapping=4294967295:0:2'), /goes past 2\^32/);
    oneLine(() => parse('lowerdir=/a,uidmapping=99999999999:0:1'), /"99999999999" is not an id/);
    // the man page's comma form: the second range is a word of its own, not an option
    expect(parse('lowerdir=/a,uidmapping=0:1000:1,1:2000:10').unknownOptions).toEqual(['1:2000:10']);
  });
  it('squash_to_root, squash_to_uid=, squash_to_gid= (uid/gid win over root), and chown errors are then ignored', () => {
    expect(parse('lowerdir=/a,squash_to_root').idMapping).toMatchObject({ squashUid: 0, squashGid: 0 });
    expect(parse('lowerdir=/a,squash_to_root,squash_to_uid=42').idMapping).toMatchObject({ squashUid: 42, squashGid: 0 });
    expect(parse('lowerdir=/a,squash_to_gid=43').idMapping).toMatchObject({ squashUid: undefined, squashGid: 43 });
    expect(parse('lowerdir=/a,squash_to_gid=43').ignoreChownErrors).toBe(true);
    oneLine(() => parse('lowerdir=/a,squash_to_uid=abc'), /invalid value for squash_to_uid/);
    oneLine(() => parse('lowerdir=/a,squash_to_uid'), /invalid value for squash_to_uid/);
    oneLine(() => parse('lowerdir=/a,squash_to_gid=4294967295'), /invalid value for squash_to_gid/);
  });
  it('static_nlink, noacl, noxattrs, xattr_permissions', () => {
    const c = parse('lowerdir=/a,static_nlink,noacl,noxattrs=1,xattr_permissions=2');
    expect([c.staticNlink, c.noXattrs, c.xattrPermissions]).toEqual([true, true, 2]);
    expect(c.unknownOptions).toEqual([]);
    expect(c.ignoredOptions).toEqual([]);
    const d = parse('lowerdir=/a,noxattrs=0,xattr_permissions=0');
    expect([d.staticNlink, d.noXattrs, d.xattrPermissions]).toEqual([false, false, 0]);
    expect(parse('lowerdir=/a,xattr_permissions=1').xattrPermissions).toBe(1);
    oneLine(() => parse('lowerdir=/a,xattr_permissions=3'), /invalid value for xattr_permissions \(0, 1 or 2 expected\)/);
    oneLine(() => parse('lowerdir=/a,xattr_permissions'), /invalid value for xattr_permissions/);
    oneLine(() => parse('lowerdir=/a,noxattrs=yes'), /invalid value for noxattrs/);
  });
  it("fuse-overlayfs's threading and cache knobs are accepted without effect; plugins are refused", () => {
    const c = parse('lowerdir=/a,threaded=1,fast_ino=1,writeback=0,clone_fd,max_threads=4,max_idle_threads=1');
    expect(c.unknownOptions).toEqual([]);
    expect(c.ignoredOptions).toEqual(['threaded=1', 'fast_ino=1', 'writeback=0', 'clone_fd', 'max_threads=4', 'max_idle_threads=1']);
    oneLine(() => parse('lowerdir=/a,plugins=/usr/lib/x.so'), /data-source plugins are not supported/);
  });
  it('the command line form podman uses: -o with mappings, an SELinux label and empty words', () => {
    const c = mountOf(['-o', 'lowerdir=/l,upperdir=/u,workdir=/w,,,volatile,context="system_u:object_r:container_file_t:s0:c1,c2",uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1:1:100000:65536', '/m']);
    expect(c.idMapping?.uid).toEqual([{ disk: 0, shown: 1000, count: 1 }, { disk: 1, shown: 100000, count: 65536 }]);
    expect(c.fsync).toBe(false);
    expect(c.unknownOptions).toEqual([]);
  });
});
