/**
 * The library entry (src/index.ts) builds its MountConfig from typed fields, the CLI from -o
 * words: the same fields and the same words give the same configuration.
 */
import { describe, expect, it } from 'vitest';
import { mountConfigOf, type MountOptions } from '../../src/index.js';
import { parseMountArgs } from '../../src/cli/mount-options.js';
import { ConfigError } from '../../src/fuse/config.js';

const uid = process.geteuid?.() ?? 0;
const cli = (words: string[], debug = false) => parseMountArgs({
  options: words, mountpoint: '/m', source: undefined, foreground: true, debug, cwd: process.cwd(), uid,
});
const lib = (o: Omit<MountOptions, 'mountpoint'>) => mountConfigOf({ mountpoint: '/m', ...o });

describe('library configuration', () => {
  it('fields give what the equivalent -o words give', () => {
    expect(lib({ lowerdirs: ['/a', 'rel/b'] })).toEqual(cli(['lowerdir=/a:rel/b']));
    expect(lib({ lowerdirs: ['/a:x', '/b,y', '/"c\\'], upperdir: '/u,1', workdir: '/w:2' }))
      .toEqual(cli(['lowerdir=/a\\:x:/b\\,y:/\\"c\\\\,upperdir=/u\\,1,workdir=/w\\:2']));
    expect(lib({
      lowerdirs: ['/a'], upperdir: '/u', workdir: '/w', readOnly: true, redirectDir: false, userxattr: true,
      timeout: 2.5, negativeTimeout: 0, lookupCacheSize: 7, allowOther: uid !== 0, fsync: false, debug: true,
    })).toEqual(cli([`lowerdir=/a,upperdir=/u,workdir=/w,ro,redirect_dir=off,userxattr,timeout=2.5,negative_timeout=0,lookup_cache=7,${uid !== 0 ? 'allow_other' : 'noallow_other'},fsync=0`], true));
    expect(lib({ lowerdirs: ['/a'], upperdir: '/u', workdir: '/w' })).toEqual(cli(['lowerdir=/a,upperdir=/u,workdir=/w']));
  });
  it('options are applied over the fields, as later -o words win', () => {
    const c = lib({ lowerdirs: ['/a'], timeout: 5, fsync: false, options: 'timeout=7,fsync=1,lowerdir=/b,fuse_api=highlevel,nodev,frob' });
    expect(c).toEqual(cli(['lowerdir=/a,timeout=5,fsync=0', 'timeout=7,fsync=1,lowerdir=/b,fuse_api=highlevel,nodev,frob']));
    expect([c.timeout, c.fsync, c.lowerPaths, c.attrTimeout, c.unknownOptions]).toEqual([7, true, ['/b'], 0, ['frob']]);
  });
  it('bad fields are ConfigErrors with the messages of the -o words', () => {
    const msg = (f: () => unknown): string => {
      try { f(); } catch (e) { expect(e).toBeInstanceOf(ConfigError); return (e as Error).message; }
      throw new Error('no error');
    };
    expect(msg(() => lib({ lowerdirs: [] }))).toBe('missing lowerdirs');
    expect(msg(() => lib({ lowerdirs: ['/a'], timeout: -1 }))).toBe(msg(() => cli(['lowerdir=/a,timeout=-1'])));
    expect(msg(() => lib({ lowerdirs: ['/a'], negativeTimeout: NaN }))).toBe(msg(() => cli(['lowerdir=/a,negative_timeout=NaN'])));
    expect(msg(() => lib({ lowerdirs: ['/a'], lookupCacheSize: 1.5 }))).toBe(msg(() => cli(['lowerdir=/a,lookup_cache=1.5'])));
    expect(msg(() => lib({ lowerdirs: ['/a'], lookupCacheSize: 0 }))).toBe(msg(() => cli(['lowerdir=/a,lookup_cache=0'])));
    expect(msg(() => lib({ lowerdirs: ['/a', ''] }))).toBe(msg(() => cli(['lowerdir=/a:'])));
    expect(msg(() => lib({ lowerdirs: ['/a'], upperdir: '', workdir: '/w' }))).toBe(msg(() => cli(['lowerdir=/a,upperdir=,workdir=/w'])));
    expect(msg(() => lib({ lowerdirs: ['/a'], upperdir: '/u' }))).toBe(msg(() => cli(['lowerdir=/a,upperdir=/u'])));
    const many = Array.from({ length: 501 }, (_, i) => `/l${i}`);
    expect(msg(() => lib({ lowerdirs: many }))).toMatch(/^too many lower layers \(501, at most 500\)/);
    expect(msg(() => mountConfigOf({ lowerdirs: ['/a'], mountpoint: '' }))).toMatch(/^missing mountpoint/);
  });
});
