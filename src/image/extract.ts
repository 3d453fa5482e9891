/**
 * Safe extraction of a layer tarball into a fresh snapshot directory.
 *
 * This is a security boundary: a layer is untrusted input. Two independent
 * defences keep every byte inside the snapshot directory:
 * 1. names are checked before anything is touched: no absolute names, no `..`
 *    component, no NUL, components <= 255 bytes and paths <= 4095 bytes; hard
 *    link targets obey the same rules and must name a non-directory this very
 *    archive already created; a parent component must be a directory this
 *    archive created (never a symlink or file it created); an existing name is
 *    removed before it is written (files are opened O_CREAT|O_EXCL, so data never
 *    goes through a symlink or into a hard-linked inode);
 * 2. every syscall is relative to the snapshot root fd through the syscall
 *    addon, which resolves with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS):
 *    even a bug in (1) cannot reach outside or follow a link.
 * Any refusal is an FsError whose path is the offending entry's name.
 *
 * Whiteouts stay in their OCI `.wh.` form (stratafs reads it natively).
 */
import { writeSync, closeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as sys from '../native/sys.js';
import type { Bstr } from '../shared/bstr.js';
import { FsError, codeOf, isFsError, nodeErrnoCode, type ErrnoCode } from '../shared/errors.js';
import { WH_PREFIX, OPAQUE_FILE, isPrivateXattr } from '../core/whiteout.js';
import { tarReader, toTarHeader, parsePaxTime, type TarHeader } from './tar-read.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, O_WRITE_NEW } from '../shared/constants.js';

export const NAME_MAX = 255;
export const PATH_MAX = 4095;

export interface ExtractOptions {
  /** create device nodes (needs CAP_MKNOD); when false a device entry is refused */
  devices: boolean;
  /** chown entries to their uid/gid and keep setuid/setgid bits (needs root) */
  owners: boolean;
  /** restore xattrs from PAX SCHILY.xattr.* records */
  xattrs: boolean;
}

export interface ExtractStats {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  devices: number;
  fifos: number;
  /** `.wh.<name>` and `.wh..wh..opq` entries (kept as they are) */
  whiteouts: number;
  /** bytes of regular file data written */
  bytes: number;
  /** things that were not kept because this user may not set them (e.g. trusted.* xattrs when not root) */
  warnings: string[];
}

export function defaultExtractOptions(): ExtractOptions {
  const root = process.getuid?.() === 0;
  return { devices: root, owners: root, xattrs: true };
}

interface Times { aSec: number; aNsec: number; mSec: number; mNsec: number }

interface DirMeta { rel: Bstr; mode: number; times: Times | undefined }

const refuse = (code: ErrnoCode, entry: Bstr, detail: string): FsError => new FsError(code, entry, 'extract', detail);

/**
 * A name from the archive as a path relative to the snapshot root ('' = root),
 * or a refusal naming the entry. `./a//b/` -> `a/b`.
 */
export function checkEntryPath(name: Bstr, entry: Bstr, what: string): Bstr {
  if (name.includes('\0')) throw refuse('EINVAL', entry, `${what} contains NUL`);
  if (name.startsWith('/')) throw refuse('EINVAL', entry, `${what} is an absolute path`);
  const parts: Bstr[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw refuse('EINVAL', entry, `${what} has a ".." component`);
    if (c.length > NAME_MAX) throw refuse('ENAMETOOLONG', entry, `${what} has a component of ${c.length} bytes (max ${NAME_MAX})`);
    parts.push(c);
  }
  const rel = parts.join('/');
  if (rel.length > PATH_MAX) throw refuse('ENAMETOOLONG', entry, `${what} is ${rel.length} bytes (max ${PATH_MAX})`);
  return rel;
}

function entryTimes(h: TarHeader): Times {
  const m = (h.pax?.mtime !== undefined ? parsePaxTime(h.pax.mtime) : undefined) ?? { sec: h.mtimeSec, nsec: 0 };
  const a = (h.pax?.atime !== undefined ? parsePaxTime(h.pax.atime) : undefined) ?? m;
  return { aSec: a.sec, aNsec: a.nsec, mSec: m.sec, mNsec: m.nsec };
}

/** xattrs carried by PAX records: SCHILY.xattr.NAME (raw value) and LIBARCHIVE.xattr.NAME (base64). */
export function paxXattrs(pax: Record<string, string> | null): Map<Bstr, Buffer> {
  const out = new Map<Bstr, Buffer>();
  if (!pax) return out;
  for (const [k, v] of Object.entries(pax)) {
    if (k.startsWith('SCHILY.xattr.')) out.set(k.slice('SCHILY.xattr.'.length), Buffer.from(v, 'latin1'));
    else if (k.startsWith('LIBARCHIVE.xattr.')) {
      const name = Buffer.from(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), 'utf8').toString('latin1');
      if (!out.has(name)) out.set(name, Buffer.from(v, 'base64'));
    }
  }
  return out;
}


class Extractor {
  private readonly kinds = new Map<Bstr, number>([['', S_IFDIR]]);
  private readonly dirMeta = new Map<Bstr, DirMeta>();
  readonly stats: ExtractStats = {
    entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, devices: 0, fifos: 0, whiteouts: 0, bytes: 0, warnings: [],
  };

  constructor(private readonly rootfd: number, private readonly opts: ExtractOptions) {}

  private warn(msg: string): void {
    if (this.stats.warnings.length < 100) this.stats.warnings.push(msg);
  }

  /** Make every parent of rel a directory created by this archive (implicit ones 0755). */
  private ensureParents(rel: Bstr, entry: Bstr): void {
    let i = rel.indexOf('/');
    while (i >= 0) {
      const p = rel.slice(0, i);
      const k = this.kinds.get(p);
      if (k === undefined) {
        sys.mkdirat(this.rootfd, p, 0o700);
        this.kinds.set(p, S_IFDIR);
        this.dirMeta.set(p, { rel: p, mode: 0o755, times: undefined });
      } else if (k !== S_IFDIR) {
        const what = k === S_IFLNK ? 'a symlink' : 'not a directory';
        throw refuse(k === S_IFLNK ? 'ELOOP' : 'ENOTDIR', entry, `parent "${p}" is ${what} created by this archive`);
      }
      i = rel.indexOf('/', i + 1);
    }
  }

  /** Remove whatever this archive put at rel before (an entry may replace an earlier one). */
  private removeExisting(rel: Bstr): void {
    const k = this.kinds.get(rel);
    if (k === undefined) return;
    if (k === S_IFDIR) {
      sys.removeTree(this.rootfd, rel);
      const pre = rel + '/';
      for (const key of [...this.kinds.keys()]) if (key.startsWith(pre)) { this.kinds.delete(key); this.dirMeta.delete(key); }
      this.dirMeta.delete(rel);
    } else {
      sys.unlinkat(this.rootfd, rel, 0);
    }
    this.kinds.delete(rel);
  }

  private permittedMode(h: TarHeader): number {
    return h.mode & (this.opts.owners ? 0o7777 : 0o1777);
  }

  private applyXattrs(rel: Bstr, h: TarHeader, fd?: number): void {
    if (!this.opts.xattrs) return;
    for (const [name, value] of paxXattrs(h.pax)) {
      if (isPrivateXattr(name, 'layer')) { this.warn(`${rel}: overlay-private xattr ${name} dropped`); continue; }
      const r = fd !== undefined ? sys.raw.fsetxattr(fd, name, value, 0) : sys.raw.lsetxattrat(this.rootfd, rel, name, value, 0);
      if (r < 0) {
        const code = codeOf(-r);
        // EPERM: namespace this user may not write (trusted.*, user.* on a symlink); ENOTSUP: fs lacks xattrs
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EACCES') {
          this.warn(`${rel}: xattr ${name} not kept (${code})`);
          continue;
        }
        throw new FsError(code, h.name, 'setxattr', name);
      }
    }
  }

  private chown(rel: Bstr, h: TarHeader): void {
    if (this.opts.owners) sys.fchownat(this.rootfd, rel, h.uid, h.gid);
  }

  async entry(hdr: TarHeader, data: AsyncIterable<Buffer> & { resume(): unknown }): Promise<void> {
    const entry = hdr.name;
    this.stats.entries++;
    const type = hdr.type;
    const rel = checkEntryPath(hdr.name, entry, 'name');
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith(WH_PREFIX) || base === OPAQUE_FILE) this.stats.whiteouts++;
    if (rel === '' && type !== 'directory') throw refuse('EINVAL', entry, 'only a directory may name the archive root');
    if (rel !== '') this.ensureParents(rel, entry);

    switch (type) {
      case 'directory': {
        const k = this.kinds.get(rel);
        if (k !== S_IFDIR) {
          this.removeExisting(rel);
          sys.mkdirat(this.rootfd, rel, 0o700);
          this.kinds.set(rel, S_IFDIR);
        }
        this.chown(rel, hdr);
        this.applyXattrs(rel, hdr);
        this.dirMeta.set(rel, { rel, mode: this.permittedMode(hdr), times: entryTimes(hdr) });
        this.stats.dirs++;
        data.resume();
        return;
      }
      case 'file':
      case 'contiguous-file': {
        this.removeExisting(rel);
        const fd = sys.openat(this.rootfd, rel, O_WRITE_NEW, 0o600);
        this.kinds.set(rel, S_IFREG);
        try {
          let n = 0;
          for await (const chunk of data) {
            let off = 0;
            while (off < chunk.length) {
              try {
                off += writeSync(fd, chunk, off, chunk.length - off);
              } catch (e) {
                throw new FsError(nodeErrnoCode(e) ?? 'EIO', entry, 'write');
              }
            }
            n += chunk.length;
          }
          this.stats.bytes += n;
          this.chown(rel, hdr);
          // chmod after chown: chown clears setuid/setgid
          sys.fchmodat(this.rootfd, rel, this.permittedMode(hdr));
          this.applyXattrs(rel, hdr, fd);
          const t = entryTimes(hdr);
          sys.futimens(fd, t.aSec, t.aNsec, t.mSec, t.mNsec, rel);
        } finally {
          closeSync(fd);
        }
        this.stats.files++;
        return;
      }
      case 'symlink': {
        const target = hdr.linkname ?? '';
        if (target === '') throw refuse('EINVAL', entry, 'symlink without a target');
        if (target.includes('\0') || target.length > PATH_MAX) throw refuse('ENAMETOOLONG', entry, 'symlink target invalid or too long');
        this.removeExisting(rel);
        // The target is stored, never followed here: inside a container it resolves against the container's root.
        sys.symlinkat(target, this.rootfd, rel);
        this.kinds.set(rel, S_IFLNK);
        this.chown(rel, hdr);
        this.applyXattrs(rel, hdr);
        this.setTimes(rel, hdr);
        this.stats.symlinks++;
        data.resume();
        return;
      }
      case 'link': {
        const target = checkEntryPath(hdr.linkname ?? '', entry, 'hard link target');
        const tk = this.kinds.get(target);
        if (target === '' || tk === undefined) throw refuse('ENOENT', entry, `hard link target "${hdr.linkname}" is not an earlier entry of this archive`);
        if (tk === S_IFDIR) throw refuse('EPERM', entry, `hard link target "${hdr.linkname}" is a directory`);
        if (target === rel) { data.resume(); return; }
        this.removeExisting(rel);
        sys.linkat(this.rootfd, target, this.rootfd, rel);
        this.kinds.set(rel, tk);
        this.stats.hardlinks++;
        data.resume();
        return;
      }
      case 'character-device':
      case 'block-device': {
        if (!this.opts.devices) throw refuse('EPERM', entry, 'device nodes are not permitted (not root, or --no-devices)');
        this.removeExisting(rel);
        const t = type === 'character-device' ? S_IFCHR : S_IFBLK;
        sys.mknodat(this.rootfd, rel, t | 0o600, sys.makedev(hdr.devmajor, hdr.devminor));
        this.kinds.set(rel, t);
        this.finishNode(rel, hdr);
        this.stats.devices++;
        data.resume();
        return;
      }
      case 'fifo': {
        this.removeExisting(rel);
        sys.mknodat(this.rootfd, rel, S_IFIFO | 0o600, 0);
        this.kinds.set(rel, S_IFIFO);
        this.finishNode(rel, hdr);
        this.stats.fifos++;
        data.resume();
        return;
      }
      default:
        throw refuse('EINVAL', entry, `unsupported entry type ${type ?? 'unknown'}`);
    }
  }

  private finishNode(rel: Bstr, hdr: TarHeader): void {
    this.chown(rel, hdr);
    sys.fchmodat(this.rootfd, rel, this.permittedMode(hdr));
    this.applyXattrs(rel, hdr);
    this.setTimes(rel, hdr);
  }

  private setTimes(rel: Bstr, hdr: TarHeader): void {
    const t = entryTimes(hdr);
    sys.utimensat(this.rootfd, rel, t.aSec, t.aNsec, t.mSec, t.mNsec);
  }

  /** Directory modes and times last: creating children changes a directory's mtime, and a 0555 dir must stay writable until then. */
  finish(): void {
    for (const m of this.dirMeta.values()) {
      sys.fchmodat(this.rootfd, m.rel, m.mode);
      if (m.times) sys.utimensat(this.rootfd, m.rel, m.times.aSec, m.times.aNsec, m.times.mSec, m.times.mNsec);
    }
  }
}

/**
 * Unpack an uncompressed tar stream into `root` (an existing, empty directory
 * that nobody else writes). On failure the directory is left partly filled:
 * the caller (the store) owns it and deletes it.
 */
export async function extractTar(input: Readable, root: string, opts: ExtractOptions = defaultExtractOptions()): Promise<ExtractStats> {
  const rootfd = sys.openRoot(Buffer.from(root, 'utf8').toString('latin1'));
  try {
    const ex = new Extractor(rootfd, opts);
    const reader = tarReader();
    const piping = pipeline(input, reader);
    // Surface the pipeline's own error (e.g. a truncated gzip) rather than the
    // reader's "premature close" if both fail.
    let pipeErr: unknown;
    piping.catch((e: unknown) => { pipeErr = e; });
    try {
      for await (const e of reader) {
        await ex.entry(toTarHeader(e.header), e);
      }
    } catch (e) {
      input.destroy();
      await piping.catch(() => undefined);
      if (pipeErr !== undefined && !isFsError(e)) throw pipeErr;
      throw e;
    }
    await piping;
    ex.finish();
    return ex.stats;
  } finally {
    sys.close(rootfd);
  }
}
