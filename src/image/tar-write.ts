/**
 * A deterministic POSIX (pax) tar writer for `stratafs commit`.
 *
 * Why not tar-stream's pack: it encodes names and PAX values as UTF-8 text
 * (a Bstr name with byte 0xe9 would come out as 0xc3 0xa9), keeps only whole
 * seconds of mtime and cannot write binary xattr values. Writing is the simple
 * half of tar (no untrusted input); reading stays with tar-stream (tar-read.ts),
 * and tests read our output back with GNU tar and python's tarfile.
 *
 * Determinism: no uname/gname, no atime/ctime, PAX header names derived from
 * the entry, and only the fields given; the same entries give the same bytes.
 */
import type { Bstr } from '../shared/bstr.js';

export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

const TYPEFLAG: Record<EntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };

export interface TarEntryHeader {
  /** path without leading "./" or "/"; directories without the trailing slash (added here) */
  name: Bstr;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  linkname?: Bstr;
  devmajor?: number;
  devminor?: number;
  /** xattrs in the order to write them (sort them for determinism) */
  xattrs?: [Bstr, Buffer][];
}

const BLOCK = 512;

function octal(buf: Buffer, off: number, len: number, v: number): boolean {
  // len-1 digits and a NUL; false when it does not fit (then PAX carries it)
  if (!Number.isInteger(v) || v < 0 || v >= 8 ** (len - 1)) {
    buf.write('0'.repeat(len - 1), off, 'latin1');
    return false;
  }
  buf.write(v.toString(8).padStart(len - 1, '0'), off, 'latin1');
  return true;
}

function isAsciiPrintable(s: Bstr): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
}

/** One PAX record "LEN key=value\n"; LEN counts the whole record including its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(' ' + key + '=', 'latin1'), value, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), rest]);
}

function header(name: Buffer, typeflag: string, h: { mode: number; uid: number; gid: number; size: number; mtimeSec: number; linkname?: Buffer; devmajor?: number; devminor?: number }): Buffer {
  const b = Buffer.alloc(BLOCK);
  name.copy(b, 0, 0, Math.min(100, name.length));
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid);
  octal(b, 116, 8, h.gid);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, h.mtimeSec);
  b.write(typeflag, 156, 'latin1');
  if (h.linkname) h.linkname.copy(b, 157, 0, Math.min(100, h.linkname.length));
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  octal(b, 329, 8, h.devmajor ?? 0);
  octal(b, 337, 8, h.devminor ?? 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

const pad = (n: number): Buffer => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** The header block(s) of one entry (a PAX extended header first when needed). Data and padding follow separately. */
export function encodeHeader(e: TarEntryHeader): Buffer {
  const nameStr = e.type === 'dir' ? e.name + '/' : e.name;
  const name = Buffer.from(nameStr, 'latin1');
  const link = e.linkname !== undefined ? Buffer.from(e.linkname, 'latin1') : undefined;
  const recs: Buffer[] = [];
  let binary = false;
  if (name.length > 100 || !isAsciiPrintable(nameStr)) {
    recs.push(paxRecord('path', name));
    if (!isUtf8(name)) binary = true;
  }
  if (link && (link.length > 100 || !isAsciiPrintable(e.linkname!))) {
    recs.push(paxRecord('linkpath', link));
    if (!isUtf8(link)) binary = true;
  }
  if (binary) recs.unshift(paxRecord('hdrcharset', Buffer.from('BINARY')));
  if (e.mtimeNsec !== 0 || e.mtimeSec < 0 || e.mtimeSec >= 8 ** 11) {
    const neg = e.mtimeSec < 0 && e.mtimeNsec > 0;
    // -1.5 s is sec -2 + 500000000 ns
    const sec = neg ? e.mtimeSec + 1 : e.mtimeSec;
    const ns = neg ? 1_000_000_000 - e.mtimeNsec : e.mtimeNsec;
    const v = `${neg && sec === 0 ? '-' : ''}${sec}${ns ? '.' + String(ns).padStart(9, '0') : ''}`;
    recs.push(paxRecord('mtime', Buffer.from(v)));
  }
  if (e.uid >= 8 ** 7) recs.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (e.gid >= 8 ** 7) recs.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (e.size >= 8 ** 11) recs.push(paxRecord('size', Buffer.from(String(e.size))));
  for (const [k, v] of e.xattrs ?? []) recs.push(paxRecord('SCHILY.xattr.' + k, v));

  const main = header(name, TYPEFLAG[e.type], {
    mode: e.mode, uid: e.uid, gid: e.gid, size: e.type === 'file' ? e.size : 0,
    mtimeSec: Math.max(0, e.mtimeSec), linkname: link, devmajor: e.devmajor, devminor: e.devminor,
  });
  if (recs.length === 0) return main;
  const body = Buffer.concat(recs);
  // a readable, deterministic name for the extended header itself (as GNU tar does)
  const base = name.subarray(name.lastIndexOf(0x2f, name.length - 2) + 1).toString('latin1').replace(/[^\x20-\x7e]/g, '_');
  const paxName = Buffer.from(('PaxHeaders/' + base).slice(0, 100), 'latin1');
  const ph = header(paxName, 'x', { mode: 0o644, uid: 0, gid: 0, size: body.length, mtimeSec: Math.max(0, Math.min(e.mtimeSec, 8 ** 11 - 1)) });
  return Buffer.concat([ph, body, pad(body.length), main]);
}

export const paddingFor = pad;

/** End of archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
