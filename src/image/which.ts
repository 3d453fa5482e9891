/**
 * `stratafs which`: which layer supplies a path of the merged view, read from
 * the layers themselves (never through the mount): the object that wins, the
 * layers a directory merges, and what hides a missing name (a whiteout, an
 * opaque directory) or sends a directory elsewhere (a redirect).
 *
 * Each component is looked up with the mount's own layer walk
 * (core/layer-walk.ts), the upper first, then the lowers top down, with
 * redirects followed in every layer.
 */
import type { Bstr } from '../shared/bstr.js';
import { FsError } from '../shared/errors.js';
import type { LayerRef as RealRef } from '../core/ctx.js';
import { walkName } from '../core/layer-walk.js';
import type { Redirect } from '../core/whiteout.js';
import { Stack } from './stack.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../shared/constants.js';

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
  const w = stack.walkAll();
  const upper = stack.upper !== undefined ? 1 : 0;
  const ref = (r: RealRef): LayerRef => {
    const layer = r.layer < upper ? 'upper' : r.layer - upper;
    return { layer, root: layer === 'upper' ? stack.upper!.path : stack.lowers[layer]!.path, path: '/' + r.rel };
  };
  // the current directory: the real directories merged into it, top first
  let dirs: RealRef[] = w.layers.map((l) => ({ layer: l.index, rel: '' }));
  let result: WhichResult = { path: shown, found: true, type: 'directory', from: ref(dirs[0]!), mergedFrom: dirs.map(ref), opaque: false };
  let at = '';
  for (const name of comps) {
    if (result.type !== 'directory') {
      return { path: shown, found: false, hiddenBy: { reason: 'not-a-directory', at: result.from! } };
    }
    at += '/' + name;
    // Markers are never visible, and cannot name anything (namei.ts lookupChild).
    const e = name.startsWith('.wh.') ? undefined : walkName(w, at, dirs, name);
    if (e === undefined || e.stack.length === 0) {
      if (e?.hiddenBy) {
        const h = e.hiddenBy;
        return { path: shown, found: false, hiddenBy: { reason: 'whiteout', at: ref({ layer: h.layer, rel: h.rel }), form: h.form } };
      }
      // say so when an opaque parent is why the layers below were not consulted
      return result.opaque ? { path: shown, found: false, hiddenBy: { reason: 'opaque-parent', at: result.from! } } : { path: shown, found: false };
    }
    dirs = e.stack;
    const isDir = e.type === S_IFDIR;
    result = {
      path: shown, found: true, from: ref(e.stack[0]!), type: typeName(e.type),
      ...(isDir ? {
        mergedFrom: e.stack.map(ref),
        opaque: e.opaque,
        ...(e.redirect ? { redirect: showRedirect(e.redirect) } : {}),
      } : {}),
    };
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
