/**
 * `stratafs which`: which layer supplies a path of the merged view, read from
 * the layers themselves (never through the mount): the object that wins, the
 * layers a directory merges, and what hides a missing name (a whiteout, an
 * opaque directory) or sends a directory elsewhere (a redirect).
 *
 * The walk is overlayfs lookup, one component at a time: the upper first, then
 * the lowers top down; whiteouts (char 0/0 or `.wh.<name>`) and non-directories
 * end the search, an opaque directory ends it for the layers below, a redirect
 * moves it to another lower path.
 */
import * as sys from '../native/sys.js';
import { StatIdx } from '../native/sys.js';
import type { Bstr } from '../core/bstr.js';
import { FsError } from '../core/errors.js';
import {
  isOpaqueDir, isWhiteoutStat, joinRel, listXattrsOrEmpty, readRedirect, whiteoutFileName,
  S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, type Redirect,
} from '../core/whiteout.js';
import { Stack, type LowerDir } from './stack.js';

export interface LayerRef {
  /** 'upper' or the lower's index, 0 = top lower */
  layer: 'upper' | number;
  root: string;
  /** path within that layer */
  path: Bstr;
}

export interface WhichResult {
  path: Bstr;
  found: boolean;
  /** the object stat/open see */
  from?: LayerRef;
  type?: string;
  /** directories: every layer merged into the listing, top first */
  mergedFrom?: LayerRef[];
  /** the directory is opaque in the layer that supplies it */
  opaque?: boolean;
  redirect?: string;
  /** what makes the path absent: a whiteout, or a non-directory on the way */
  hiddenBy?: { reason: 'whiteout' | 'not-a-directory' | 'opaque-parent'; at: LayerRef; form?: 'chardev' | 'file' };
}

const typeName = (mode: number): string => {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'directory';
    case S_IFREG: return 'file';
    case S_IFLNK: return 'symlink';
    case S_IFCHR: return 'char device';
    case S_IFBLK: return 'block device';
    case S_IFIFO: return 'fifo';
    default: return 'socket';
  }
};

const showRedirect = (r: Redirect): string => (r.absolute ? '/' + r.path : r.name);

/** Resolve `path` ("/a/b" or "a/b") in the stack. */
export function which(upper: string | undefined, lowers: string[], path: Bstr): WhichResult {
  const stack = new Stack(upper, lowers);
  try {
    return resolve(stack, path.split('/').filter((c) => c !== '' && c !== '.'));
  } finally {
    stack.close();
  }
}

function resolve(stack: Stack, comps: Bstr[]): WhichResult {
  const shown = '/' + comps.join('/');
  if (comps.includes('..')) throw new FsError('EINVAL', shown, 'which', 'give a path without ".."');
  const st = sys.newStatArray();
  const ref = (layer: 'upper' | number, p: Bstr): LayerRef => ({ layer, root: layer === 'upper' ? stack.upper!.path : stack.lowers[layer]!.path, path: '/' + p });
  // where the current directory is: its upper copy (if any) and the lower dirs merged under it
  let upperRel: Bstr | undefined = stack.upper ? '' : undefined;
  let lowerDirs: LowerDir[] = stack.rootDirs();
  let result: WhichResult = {
    path: shown, found: true, type: 'directory', from: stack.upper ? ref('upper', '') : ref(0, ''),
    mergedFrom: [...(stack.upper ? [ref('upper', '')] : []), ...lowerDirs.map((d) => ref(d.layer, d.rel))], opaque: false,
  };
  for (let i = 0; i < comps.length; i++) {
    const name = comps[i]!;
    const last = i === comps.length - 1;
    if (result.type !== 'directory') {
      return { path: shown, found: false, hiddenBy: { reason: 'not-a-directory', at: result.from! } };
    }
    let top: { layer: 'upper' | number; rel: Bstr; mode: number } | undefined;
    let nextUpper: Bstr | undefined;
    let opaque = false;
    let redirect: Redirect | undefined;
    if (upperRel !== undefined) {
      const fd = stack.upper!.fd;
      const p = joinRel(upperRel, name);
      if (sys.tryLstatat(fd, p, st) === 0) {
        if (isWhiteoutStat(st)) return { path: shown, found: false, hiddenBy: { reason: 'whiteout', at: ref('upper', p), form: 'chardev' } };
        top = { layer: 'upper', rel: p, mode: st[StatIdx.mode]! };
        if ((top.mode & S_IFMT) === S_IFDIR) {
          const xs = listXattrsOrEmpty(fd, p);
          opaque = isOpaqueDir(fd, p, sys.newStatArray(), xs);
          redirect = readRedirect(fd, p, false, xs) ?? readRedirect(fd, p, true, xs);
          nextUpper = p;
        }
      } else if (sys.tryLstatat(fd, joinRel(upperRel, whiteoutFileName(name)), st) === 0) {
        return { path: shown, found: false, hiddenBy: { reason: 'whiteout', at: ref('upper', joinRel(upperRel, whiteoutFileName(name))), form: 'file' } };
      }
    }
    // lowers: skipped below an upper non-directory or opaque directory
    let nextLower: LowerDir[] = [];
    if (!top || ((top.mode & S_IFMT) === S_IFDIR && !opaque)) {
      let search = lowerDirs;
      let searchName = name;
      if (redirect) {
        if (redirect.absolute) {
          const parts = redirect.path.split('/');
          searchName = parts.pop()!;
          search = stack.resolvePath(parts.join('/'));
        } else searchName = redirect.name;
      }
      for (const d of search) {
        const fd = stack.lowers[d.layer]!.fd;
        const p = joinRel(d.rel, searchName);
        if (sys.tryLstatat(fd, p, st) === 0) {
          if (isWhiteoutStat(st)) {
            if (!top) return { path: shown, found: false, hiddenBy: { reason: 'whiteout', at: ref(d.layer, p), form: 'chardev' } };
            break;
          }
          const isDir = (st[StatIdx.mode]! & S_IFMT) === S_IFDIR;
          if (!top) {
            top = { layer: d.layer, rel: p, mode: st[StatIdx.mode]! };
            if (isDir) opaque = isOpaqueDir(fd, p, sys.newStatArray());
          }
          if ((top.mode & S_IFMT) !== S_IFDIR || !isDir) break;
          nextLower.push({ layer: d.layer, rel: p });
          if (isOpaqueDir(fd, p, sys.newStatArray())) break;
        } else if (sys.tryLstatat(fd, joinRel(d.rel, whiteoutFileName(searchName)), st) === 0) {
          if (!top) return { path: shown, found: false, hiddenBy: { reason: 'whiteout', at: ref(d.layer, joinRel(d.rel, whiteoutFileName(searchName))), form: 'file' } };
          break;
        }
      }
    }
    if (!top) {
      // say so when an opaque parent is why the layers below were not consulted
      return result.opaque ? { path: shown, found: false, hiddenBy: { reason: 'opaque-parent', at: result.from! } } : { path: shown, found: false };
    }
    upperRel = nextUpper;
    lowerDirs = nextLower;
    const isDir = (top.mode & S_IFMT) === S_IFDIR;
    result = {
      path: shown, found: true, from: ref(top.layer, top.rel), type: typeName(top.mode),
      ...(isDir ? {
        mergedFrom: [...(nextUpper !== undefined ? [ref('upper', nextUpper)] : []), ...nextLower.map((d) => ref(d.layer, d.rel))],
        opaque,
        ...(redirect ? { redirect: showRedirect(redirect) } : {}),
      } : {}),
    };
    if (last) return result;
  }
  return result;
}

/** One or two lines for people. */
export function formatWhich(r: WhichResult): string {
  const show = (x: LayerRef): string => `${x.layer === 'upper' ? 'upper' : `lower ${x.layer + 1}`} (${x.root}${x.path === '/' ? '' : x.path})`;
  const p = Buffer.from(r.path, 'latin1').toString('utf8');
  if (!r.found) {
    if (!r.hiddenBy) return `${p}: not found in any layer\n`;
    if (r.hiddenBy.reason === 'not-a-directory') return `${p}: not found: ${show(r.hiddenBy.at)} is not a directory\n`;
    if (r.hiddenBy.reason === 'opaque-parent') return `${p}: not found above the opaque directory ${show(r.hiddenBy.at)}; layers below it are hidden\n`;
    return `${p}: deleted: whiteout (${r.hiddenBy.form === 'chardev' ? 'char 0/0' : '.wh. file'}) in ${show(r.hiddenBy.at)}\n`;
  }
  let s = `${p}: ${r.type} from ${show(r.from!)}`;
  if (r.opaque) s += ', opaque (layers below hidden)';
  if (r.redirect) s += `, redirected to ${r.redirect}`;
  s += '\n';
  if (r.mergedFrom && r.mergedFrom.length > 1) s += `  merged from: ${r.mergedFrom.map(show).join(', ')}\n`;
  return Buffer.from(s, 'utf8').toString('utf8');
}
