/**
 * sys.dropExePages (src/native/sys.c), which the daemon calls once it is ready: the clean
 * pages of the node executable leave the resident set, and the process runs on (the pages
 * it needs fault back in from the page cache; mappings with written pages, such as the
 * relocated RELRO, are left alone). Run in a child: the resident set read is its own.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const sysModule = fileURLToPath(new URL('../../dist/native/sys.js', import.meta.url));

// After the drop: code startup never ran (zlib, a regex, JSON) and the relocated GOT in use.
const CHILD = `
const fileKb = () => Number(/RssFile:\\s+(\\d+)/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]);
import(${JSON.stringify(sysModule)}).then((sys) => {
  const before = fileKb();
  const dropped = sys.dropExePages();
  const after = fileKb();
  const zlib = require('node:zlib');
  const round = zlib.inflateSync(zlib.deflateSync(Buffer.from('x'.repeat(100000)))).length;
  const parsed = JSON.parse(JSON.stringify({ a: [1, 2.5, 'é'] })).a[2].replace(/é/u, 'e');
  process.stdout.write(JSON.stringify({ before, dropped, after, round, parsed }));
});
`;

describe('dropExePages', () => {
  it('unmaps the executable pages startup touched and the process runs on', () => {
    const r = spawnSync(process.execPath, ['-e', CHILD], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const o = JSON.parse(r.stdout) as { before: number; dropped: number; after: number; round: number; parsed: string };
    // node's startup alone pages in tens of MiB of its 94 MiB binary (38 MiB measured here)
    expect(o.dropped).toBeGreaterThan(8 << 20);
    expect(o.before - o.after).toBeGreaterThan(8 << 10);
    expect(o.round).toBe(100000);
    expect(o.parsed).toBe('e');
  });
});
