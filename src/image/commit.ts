/**
 * `stratafs commit`: the upper dir as an OCI layer tarball.
 *
 * - char 0/0 whiteouts (and `.wh.` files of the fallback form) -> `.wh.<name>` entries;
 * - opaque directories -> the directory, then `.wh..wh..opq` before its children
 *   (containerd applies the marker when it meets it: it must come first);
 * - redirected (renamed) directories -> written whole: opaque marker plus the
 *   merged content from the lowers they were renamed from, since a layer has no
 *   way to say "renamed";
 * - overlay-private xattrs (trusted.overlay.*, user.overlay.*, user.fuseoverlayfs.*) dropped;
 * - hard links inside the layer kept as link entries;
 * - deterministic: entries sorted bytewise, no uname/gname/atime, gzip header
 *   without name or time; the same upper gives the same bytes.
 * Prints (returns) the blob digest (of the file written) and the diff-id (of the tar).
 */
import { createHash } from 'node:crypto';
import { createWriteStream, openSync, readSync, closeSync, renameSync, rmSync, constants as fsc } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as sys from '../native/sys.js';
import { StatIdx, inoOf } from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { FsError } from '../shared/errors.js';
import {
  isPrivateXattr, joinRel, OPAQUE_FILE, WH_PREFIX,
} from '../core/whiteout.js';
import { Stack, classifyUpper, compareBstr, type LowerDir, type UpperKind } from './stack.js';
import { encodeHeader, paddingFor, END_OF_ARCHIVE, type TarEntryHeader, type EntryType } from './tar-write.js';
import { NAME_MAX } from './extract.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../shared/constants.js';

export interface CommitOptions {
  upper: string;
  /** top first, as in lowerdir= */
  lowers: string[];
  output: string;
  /** default: gzip unless the output name ends in .tar */
  compression?: 'gzip' | 'none';
}

export interface CommitResult {
  output: string;
  blobDigest: string;
  diffId: string;
  compression: 'gzip' | 'none';
  blobSize: number;
  tarSize: number;
  entries: number;
  whiteouts: number;
  opaques: number;
  /** redirected directories written out whole */
  redirects: number;
  warnings: string[];
  seconds: number;
}

const CHUNK = 1 << 20;

class HashCount extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

interface Counters { entries: number; whiteouts: number; opaques: number; redirects: number; warnings: string[] }

/** The tar stream of an upper over its lowers, as chunks. */
export function* layerTar(stack: Stack, counters: Counters): Generator<Buffer> {
  const links = new Map<string, Bstr>();
  const st = sys.newStatArray();
  const upperIdx = -1;
  const fdOf = (layer: number): number => (layer === upperIdx ? stack.upper!.fd : stack.lowers[layer]!.fd);

  function xattrsOf(fd: number, rel: Bstr): [Bstr, Buffer][] {
    const r = sys.raw.llistxattrat(fd, rel);
    if (typeof r === 'number') return [];
    const out: [Bstr, Buffer][] = [];
    for (const n of [...r].sort(compareBstr)) {
      if (isPrivateXattr(n, 'layer')) continue;
      const v = sys.raw.lgetxattrat(fd, rel, n);
      if (typeof v !== 'number') out.push([n, v]);
    }
    return out;
  }

  function base(outPath: Bstr, s: Float64Array, type: EntryType, fd: number, rel: Bstr): TarEntryHeader {
    return {
      name: outPath, type, mode: s[StatIdx.mode]! & 0o7777, uid: s[StatIdx.uid]!, gid: s[StatIdx.gid]!, size: 0,
      mtimeSec: s[StatIdx.mtimeSec]!, mtimeNsec: s[StatIdx.mtimeNsec]!, xattrs: xattrsOf(fd, rel),
    };
  }

  function* marker(outPath: Bstr): Generator<Buffer> {
    counters.entries++;
    yield encodeHeader({ name: outPath, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0 });
  }

  function* whiteout(dirOut: Bstr, target: Bstr): Generator<Buffer> {
    const name = WH_PREFIX + target;
    if (name.length > NAME_MAX) {
      throw new FsError('ENAMETOOLONG', '/' + joinRel(dirOut, target), 'commit', `a whiteout needs "${WH_PREFIX}" + the name, ${name.length} bytes > ${NAME_MAX}`);
    }
    counters.whiteouts++;
    yield* marker(joinRel(dirOut, name));
  }

  /** A non-directory (or a directory's own header) from layer `layer` at `rel`, written as `outPath`. */
  function* node(layer: number, rel: Bstr, outPath: Bstr): Generator<Buffer> {
    const fd = fdOf(layer);
    const s = sys.lstatat(fd, rel, sys.newStatArray());
    const fmt = s[StatIdx.mode]! & S_IFMT;
    counters.entries++;
    switch (fmt) {
      case S_IFDIR:
        yield encodeHeader(base(outPath, s, 'dir', fd, rel));
        return;
      case S_IFLNK: {
        const h = base(outPath, s, 'symlink', fd, rel);
        h.linkname = sys.readlinkat(fd, rel);
        yield encodeHeader(h);
        return;
      }
      case S_IFCHR:
      case S_IFBLK:
      case S_IFIFO: {
        const h = base(outPath, s, fmt === S_IFCHR ? 'char' : fmt === S_IFBLK ? 'block' : 'fifo', fd, rel);
        if (fmt !== S_IFIFO) { h.devmajor = sys.major(s[StatIdx.rdev]!); h.devminor = sys.minor(s[StatIdx.rdev]!); }
        yield encodeHeader(h);
        return;
      }
      case S_IFREG: {
        if (s[StatIdx.nlink]! > 1) {
          const key = `${layer}:${s[StatIdx.dev]}:${inoOf(s)}`;
          const first = links.get(key);
          if (first !== undefined) {
            const h = base(outPath, s, 'link', fd, rel);
            h.linkname = first;
            h.xattrs = [];
            yield encodeHeader(h);
            return;
          }
          links.set(key, outPath);
        }
        const size = s[StatIdx.size]!;
        const h = base(outPath, s, 'file', fd, rel);
        h.size = size;
        yield encodeHeader(h);
        const f = sys.openat(fd, rel, fsc.O_RDONLY);
        try {
          let done = 0;
          while (done < size) {
            const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - done));
            const n = readSync(f, buf, 0, buf.length, done);
            if (n === 0) throw new FsError('EIO', '/' + outPath, 'commit', 'file shrank while being committed');
            done += n;
            yield n === buf.length ? buf : buf.subarray(0, n);
          }
        } finally {
          closeSync(f);
        }
        yield paddingFor(size);
        return;
      }
      default:
        counters.entries--;
        counters.warnings.push(`/${outPath}: sockets cannot be carried by a layer, skipped`);
    }
  }

  /** An upper directory that is not written whole: its entries, whiteouts as markers. */
  function* upperDir(rel: Bstr, lowerHere: LowerDir[]): Generator<Buffer> {
    const ufd = stack.upper!.fd;
    const { names } = sys.readdirat(ufd, rel);
    names.sort(compareBstr);
    for (const name of names) {
      const k = classifyUpper(ufd, rel, name, st);
      const path = joinRel(rel, name);
      if (k.kind === 'opaque-marker') continue; // written with the directory's header
      if (k.kind === 'whiteout') { yield* whiteout(rel, k.target); continue; }
      if (k.kind === 'other') { yield* node(upperIdx, path, path); continue; }
      yield* upperSubdir(rel, name, k, lowerHere);
    }
  }

  function* upperSubdir(rel: Bstr, name: Bstr, k: Extract<UpperKind, { kind: 'dir' }>, lowerHere: LowerDir[]): Generator<Buffer> {
    const path = joinRel(rel, name);
    yield* node(upperIdx, path, path);
    if (k.redirect) {
      counters.redirects++;
      counters.opaques++;
      yield* marker(joinRel(path, OPAQUE_FILE));
      yield* wholeDir(path, true, stack.redirected(lowerHere, k.redirect));
      return;
    }
    if (k.opaque) {
      counters.opaques++;
      yield* marker(joinRel(path, OPAQUE_FILE));
      yield* upperDir(path, []);
      return;
    }
    const hit = lowerHere.length > 0 ? stack.lookup(lowerHere, name) : undefined;
    yield* upperDir(path, hit && (hit.st[StatIdx.mode]! & S_IFMT) === S_IFDIR ? hit.dirs : []);
  }

  /**
   * A directory written whole (its parent chain is opaque in the layer): the
   * merged view of the upper copy (if any) over `source`. Whiteouts are not
   * written: an absent name is absent.
   */
  function* wholeDir(rel: Bstr, inUpper: boolean, source: LowerDir[]): Generator<Buffer> {
    const ufd = stack.upper?.fd;
    const upperKinds = new Map<Bstr, UpperKind>();
    const hidden = new Set<Bstr>();
    if (inUpper && ufd !== undefined) {
      for (const name of sys.readdirat(ufd, rel).names) {
        const k = classifyUpper(ufd, rel, name, st);
        if (k.kind === 'whiteout') hidden.add(k.target);
        else if (k.kind !== 'opaque-marker') upperKinds.set(name, k);
      }
    }
    const lower = source.length > 0 ? stack.listMerged(source) : new Map();
    const names = [...new Set([...upperKinds.keys(), ...lower.keys()])].filter((n) => upperKinds.has(n) || !hidden.has(n)).sort(compareBstr);
    for (const name of names) {
      const path = joinRel(rel, name);
      const k = upperKinds.get(name);
      if (k) {
        yield* node(upperIdx, path, path);
        if (k.kind !== 'dir') continue;
        let src: LowerDir[] = [];
        if (k.redirect) { counters.redirects++; src = stack.redirected(source, k.redirect); }
        else if (!k.opaque) {
          const hit = lower.get(name);
          src = hit && (hit.st[StatIdx.mode]! & S_IFMT) === S_IFDIR ? hit.dirs : [];
        }
        yield* wholeDir(path, true, src);
      } else {
        const hit = lower.get(name)!;
        yield* node(hit.layer, hit.rel, path);
        if ((hit.st[StatIdx.mode]! & S_IFMT) === S_IFDIR) yield* wholeDir(path, false, hit.dirs);
      }
    }
  }

  yield* upperDir('', stack.rootDirs());
  yield END_OF_ARCHIVE;
}

function defaultCompression(output: string): 'gzip' | 'none' {
  return /\.tar$/.test(output) ? 'none' : 'gzip';
}

export async function commit(opts: CommitOptions): Promise<CommitResult> {
  const t0 = performance.now();
  const compression = opts.compression ?? defaultCompression(opts.output);
  const stack = new Stack(opts.upper, opts.lowers);
  const counters: Counters = { entries: 0, whiteouts: 0, opaques: 0, redirects: 0, warnings: [] };
  const tmp = join(dirname(opts.output), `.${basename(opts.output)}.tmp-${process.pid}`);
  try {
    const tarHash = new HashCount();
    const blobHash = new HashCount();
    const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [Readable.from(layerTar(stack, counters), { objectMode: false }), tarHash];
    // level 6 and Node's zlib header (no name, mtime 0, OS unix): the same input gives the same bytes
    if (compression === 'gzip') stages.push(createGzip({ level: 6 }));
    // Opened here, not by the stream: a stream opens its file on the thread pool, and when the
    // walk fails at once (a name too long for its whiteout) that open could land after the
    // cleanup below and leave the temporary file behind (seen in CI).
    stages.push(blobHash, createWriteStream('', { fd: openSync(tmp, 'w', 0o644) }));
    await pipeline(stages as unknown as [Readable, Transform, NodeJS.WritableStream]);
    renameSync(tmp, opts.output);
    return {
      output: opts.output,
      blobDigest: 'sha256:' + blobHash.hash.digest('hex'),
      diffId: 'sha256:' + tarHash.hash.digest('hex'),
      compression, blobSize: blobHash.bytes, tarSize: tarHash.bytes,
      entries: counters.entries, whiteouts: counters.whiteouts, opaques: counters.opaques, redirects: counters.redirects,
      warnings: counters.warnings, seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    stack.close();
  }
}
