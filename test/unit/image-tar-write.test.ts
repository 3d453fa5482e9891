/**
 * The commit tar writer's edge cases, read back by independent readers
 * (python's tarfile, GNU tar) and by our own reader (tar-stream + latin1 PAX).
 */
import { test, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { encodeHeader, paddingFor, END_OF_ARCHIVE, type TarEntryHeader } from '../../src/image/tar-write.js';
import { tarReader, toTarHeader, parsePaxTime } from '../../src/image/tar-read.js';

const longName = Array.from({ length: 6 }, (_, i) => `dir${i}-${'d'.repeat(40)}`).join('/') + '/file';
const binName = 'bin-\xff\xfe-\xe9';
const entries: [TarEntryHeader, Buffer?][] = [
  [{ name: 'plain', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, mtimeSec: 1_600_000_000, mtimeNsec: 0 }, Buffer.from('abc')],
  [{ name: longName, type: 'file', mode: 0o600, uid: 3_000_000, gid: 4_000_000, size: 0, mtimeSec: 1_600_000_000, mtimeNsec: 1 }],
  [{ name: binName, type: 'file', mode: 0o4755, uid: 1, gid: 2, size: 0, mtimeSec: -2, mtimeNsec: 500_000_000 }],
  [{ name: 'sl', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, linkname: 't'.repeat(150) }],
  [{ name: 'hl', type: 'link', mode: 0o644, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, linkname: longName }],
  [{ name: 'dev', type: 'char', mode: 0o600, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, devmajor: 4095, devminor: 1_000_000 }],
  [{ name: 'd', type: 'dir', mode: 0o1777, uid: 0, gid: 0, size: 0, mtimeSec: 5, mtimeNsec: 0, xattrs: [['user.bin', Buffer.from([0, 0xff, 0x0a, 0x3d])], ['user.\xe9', Buffer.from('v')]] }],
];

function archive(): Buffer {
  const parts: Buffer[] = [];
  for (const [h, data] of entries) {
    parts.push(encodeHeader(h));
    if (data) parts.push(data, paddingFor(data.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

test('python tarfile and GNU tar read every field back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratafs-tarw-'));
  try {
    const f = join(dir, 'a.tar');
    writeFileSync(f, archive());
    const py = `
import tarfile, sys
t = tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape')
for m in t:
    n = m.name.encode('utf-8', 'surrogateescape').hex()
    x = {k: v.encode('utf-8', 'surrogateescape').hex() for k, v in m.pax_headers.items() if k.startswith('SCHILY')}
    print(n, m.type.decode(), oct(m.mode), m.uid, m.gid, m.size, m.pax_headers.get('mtime', m.mtime), len(m.linkname), m.devmajor, m.devminor, sorted(x.items()))
`;
    const lines = execFileSync('python3', ['-c', py, f]).toString().trim().split('\n');
    const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');
    expect(lines[0]).toBe(`${hex('plain')} 0 0o644 0 0 3 1600000000 0 0 0 []`);
    expect(lines[1]).toBe(`${hex(longName)} 0 0o600 3000000 4000000 0 1600000000.000000001 0 0 0 []`);
    expect(lines[2]).toBe(`${hex(binName)} 0 0o4755 1 2 0 -1.500000000 0 0 0 []`);
    expect(lines[3]).toBe(`${hex('sl')} 2 0o777 0 0 0 0 150 0 0 []`);
    expect(lines[4]).toBe(`${hex('hl')} 1 0o644 0 0 0 0 ${longName.length} 0 0 []`);
    expect(lines[5]).toBe(`${hex('dev')} 3 0o600 0 0 0 0 0 4095 1000000 []`);
    expect(lines[6]).toContain(`${hex('d')} 5 0o1777 0 0 0 5 0 0 0`);
    expect(lines[6]).toContain(`('SCHILY.xattr.user.bin', '00ff0a3d')`);
    // GNU tar: names with raw bytes, the long link target
    const gnu = execFileSync('tar', ['--quoting-style=literal', '-tvf', f]).toString('latin1');
    expect(gnu).toContain(binName);
    expect(gnu).toContain(`hl link to ${longName}`);
    expect(gnu).toContain(`sl -> ${'t'.repeat(150)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('our reader gets the same bytes back (round trip of names, links, xattrs, ns times)', async () => {
  const reader = tarReader();
  Readable.from([archive()]).pipe(reader);
  const got: ReturnType<typeof toTarHeader>[] = [];
  for await (const e of reader) {
    got.push(toTarHeader(e.header));
    e.resume();
  }
  expect(got.map((h) => h.name)).toEqual(['plain', longName, binName, 'sl', 'hl', 'dev', 'd/']);
  expect(got[3]!.linkname).toBe('t'.repeat(150));
  expect(got[4]!.linkname).toBe(longName);
  expect(parsePaxTime(got[1]!.pax!.mtime!)).toEqual({ sec: 1_600_000_000, nsec: 1 });
  expect(parsePaxTime(got[2]!.pax!.mtime!)).toEqual({ sec: -2, nsec: 500_000_000 });
  expect(Buffer.from(got[6]!.pax!['SCHILY.xattr.user.bin']!, 'latin1')).toEqual(Buffer.from([0, 0xff, 0x0a, 0x3d]));
  expect(got[6]!.pax!['SCHILY.xattr.user.\xe9']).toBe('v');
  expect(got[1]!.uid).toBe(3_000_000);
  expect(got[1]!.gid).toBe(4_000_000);
});
