/**
 * /proc/self/mountinfo as the CLI reads it (src/cli/mountinfo.ts): paths come back as the
 * text the command line holds, escapes undone. No mount needed.
 */
import { describe, expect, it } from 'vitest';
import { findMount, parseMountinfo } from '../../src/cli/mountinfo.js';

describe('parseMountinfo', () => {
  it('a non-ASCII mountpoint is found by its name as typed (the file is bytes, the argument UTF-8 text)', () => {
    // what readMounts gets: the file read as latin1, one char per byte
    const line = Buffer.from('36 25 0:51 / /tmp/x/m\\040caf\u00e9 rw,nosuid - fuse.stratafs stratafs rw,user_id=0\n', 'utf8').toString('latin1');
    const [m] = parseMountinfo(line);
    expect(m!.mountpoint).toBe('/tmp/x/m caf\u00e9');
    expect(findMount(parseMountinfo(line), '/tmp/x/m caf\u00e9')?.fstype).toBe('fuse.stratafs');
  });
});
