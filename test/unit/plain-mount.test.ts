/**
 * parsePlainMount (the daemon's commander-free parser for the command lines the
 * launcher sends it) against parseCommandLine: the same MountConfig, the same
 * error, and undefined for everything that is not a plain mount.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/fuse/config.js';
import { parseCommandLine, parsePlainMount } from '../../src/cli/args.js';

const env = { cwd: '/base', uid: 0, version: '0.0.0' };

function viaCommander(argv: string[], e = env): unknown {
  try {
    const c = parseCommandLine(argv, e);
    return c.kind === 'mount' ? c.config : c.kind;
  } catch (err) {
    return err instanceof ConfigError ? `ConfigError: ${err.message}` : err;
  }
}

function viaPlain(argv: string[], e = env): unknown {
  try {
    return parsePlainMount(argv, e);
  } catch (err) {
    return err instanceof ConfigError ? `ConfigError: ${err.message}` : err;
  }
}

describe('parsePlainMount', () => {
  const plain: string[][] = [
    ['-o', 'lowerdir=/a', '/m'],
    ['-olowerdir=/a,upperdir=/u,workdir=/w', 'rel/m'],
    ['src', '/m', '-o', 'lowerdir=a'],
    ['-o', 'lowerdir=/a', 'src', 'm'],
    ['-d', '-o', 'ro', '-o', 'lowerdir=/a:/b', '/m'],
    ['--debug', '-o', 'lowerdir=/a', '/m'],
    ['-o', '-d', '-o', 'lowerdir=/a', '/m'],
    ['-o', 'lowerdir=/a,frob,relatime,allow_other,timeout=3', 'stats-dir'],
    ['-o', 'lowerdir=/a\\,b,upperdir=/u,workdir=/w,volatile', '/m'],
    ['-o', 'lowerdir=/a,,context="system_u:object_r:container_file_t:s0:c1,c2"', '/m'],
    ['-o', 'upperdir=/u', '/m'],
    ['-o', 'lowerdir=/a,timeout=-1', '/m'],
    ['-o', 'lowerdir=/a,upperdir=/u', '/m'],
  ];
  it('gives what commander gives for plain mount command lines (configs and errors)', () => {
    for (const argv of plain) {
      for (const e of [env, { ...env, uid: 1000 }]) {
        const want = viaCommander(argv, e);
        expect(typeof want === 'string' && !want.startsWith('ConfigError') ? `not a mount: ${want}` : 'ok', argv.join(' ')).toBe('ok');
        expect(viaPlain(argv, e), argv.join(' ')).toEqual(want);
      }
    }
  });

  it('leaves every other command line to commander', () => {
    const others: string[][] = [
      [], ['/m'], ['frobnicate'], ['umount', '/m'], ['stats', '/m'], ['inspect', '/m'], ['help'],
      ['mount', '/m', '-o', 'lowerdir=/a'], ['layer', 'ls'], ['image', 'ls'], ['size', 'x'],
      ['-f', '-o', 'lowerdir=/a', '/m'], ['-fd', '-o', 'lowerdir=/a', '/m'], ['--foreground', '-o', 'x', '/m'],
      ['--', '-o', 'lowerdir=/a', '/m'], ['a', 'b', 'c', '-o', 'lowerdir=/a'], ['-o'], ['-o', 'lowerdir=/a', ''],
      ['--version'], ['-V'], ['-h'], ['--help'], ['--daemon-child', '-o', 'lowerdir=/a', '/m'],
      ['-o', 'lowerdir=/a', '--debug=1', '/m'],
    ];
    for (const argv of others) expect(parsePlainMount(argv, env), argv.join(' ')).toBeUndefined();
  });
});
