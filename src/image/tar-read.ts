/**
 * Reading tar streams with tar-stream, byte-exact.
 *
 * tar-stream does the framing (512-byte blocks, checksums, GNU long names,
 * base-256 numbers, PAX record placement), which is the part a hand-written
 * parser gets wrong. Two of its choices would lose data, so they are adjusted
 * here, in one place:
 * - ustar / GNU names are decoded with `filenameEncoding: 'latin1'`, which makes
 *   them Bstrs (one char per byte) instead of UTF-8 text;
 * - PAX records are decoded by tar-stream as UTF-8 (`decodePax`), which would
 *   turn a non-UTF-8 `path=` (written with hdrcharset=BINARY) and binary
 *   `SCHILY.xattr.*` values into U+FFFD. We replace that one exported function
 *   with a latin1 decoder: keys and values arrive as Bstrs, which is exact for
 *   UTF-8 text too (the bytes of a UTF-8 name are the name on disk).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import tarStream from 'tar-stream';
import type { Bstr } from '../shared/bstr.js';

type PaxRecords = Record<string, string>;

function decodePaxLatin1(buf: Buffer): PaxRecords {
  const result: PaxRecords = {};
  let off = 0;
  while (off < buf.length) {
    let sp = off;
    while (sp < buf.length && buf[sp] !== 0x20) sp++;
    const len = parseInt(buf.toString('latin1', off, sp), 10);
    if (!len || len < 0 || off + len > buf.length) break;
    // record = "LEN KEY=VALUE\n"; the length counts the whole record
    const rec = buf.toString('latin1', sp + 1, off + len - 1);
    const eq = rec.indexOf('=');
    if (eq === -1) break;
    result[rec.slice(0, eq)] = rec.slice(eq + 1);
    off += len;
  }
  return result;
}

let patched = false;
function patchTarStream(): void {
  if (patched) return;
  const req = createRequire(import.meta.url);
  // The package's "exports" hide headers.js; require it by file name so we get
  // the very module object extract.js holds (same resolved path, same cache entry).
  const headers = req(join(dirname(req.resolve('tar-stream')), 'headers.js')) as { decodePax: (b: Buffer) => PaxRecords };
  headers.decodePax = decodePaxLatin1;
  patched = true;
}

/** One header as tar-stream reports it, with every name a Bstr and the PAX records (latin1) kept. */
export interface TarHeader {
  name: Bstr;
  type: string | null;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** seconds (from the ustar field); PAX mtime (with ns) is in `pax` */
  mtimeSec: number;
  linkname: Bstr | null;
  devmajor: number;
  devminor: number;
  pax: PaxRecords | null;
}

export interface TarEntry {
  header: TarHeader;
  /** the entry's data; must be consumed (or resumed) before the next entry arrives */
  stream: AsyncIterable<Buffer> & { resume(): unknown };
}

export interface RawHeader {
  name: string; type?: string | null; mode?: number; uid?: number; gid?: number; size?: number;
  mtime?: Date; linkname?: string | null; devmajor?: number; devminor?: number; pax?: PaxRecords | null;
}

export interface RawEntry extends AsyncIterable<Buffer> {
  header: RawHeader;
  resume(): unknown;
}

/** A tar-stream extractor whose entries carry byte-exact names. Pipe an uncompressed tar into it. */
export function tarReader(): Writable & AsyncIterable<RawEntry> {
  patchTarStream();
  const opts = { filenameEncoding: 'latin1' } as Parameters<typeof tarStream.extract>[0];
  return tarStream.extract(opts) as unknown as Writable & AsyncIterable<RawEntry>;
}

/** A PAX numeric record, when present and sane. */
function paxInt(pax: PaxRecords | null | undefined, key: string): number | undefined {
  const v = pax?.[key];
  if (v === undefined || !/^\d{1,15}$/.test(v)) return undefined;
  return parseInt(v, 10);
}

export function toTarHeader(h: RawHeader): TarHeader {
  return {
    name: h.name,
    type: h.type ?? null,
    mode: h.mode ?? 0,
    // tar-stream applies PAX path, linkpath and size itself, not uid/gid (ids above 2097151 need them)
    uid: paxInt(h.pax, 'uid') ?? h.uid ?? 0,
    gid: paxInt(h.pax, 'gid') ?? h.gid ?? 0,
    size: h.size ?? 0,
    mtimeSec: h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0,
    linkname: h.linkname ?? null,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    pax: h.pax ?? null,
  };
}

/** A PAX time "1700000000.123456789" (or "-1.5") as exact seconds + nanoseconds, no float rounding. */
export function parsePaxTime(v: string): { sec: number; nsec: number } | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v.trim());
  if (!m) return undefined;
  const neg = m[1] === '-';
  let sec = parseInt(m[2]!, 10);
  let nsec = parseInt(((m[3] ?? '') + '000000000').slice(0, 9), 10);
  if (neg) {
    // -1.5 means 1.5 s before the epoch: sec -2, nsec 500000000
    sec = -sec;
    if (nsec > 0) { sec -= 1; nsec = 1_000_000_000 - nsec; }
  }
  return { sec, nsec };
}
