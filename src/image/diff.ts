/**
 * `stratafs diff`: what the writable layer changed, as `docker diff` shows it
 * (A added, C changed, D deleted), from the upper dir and its whiteouts.
 *
 * The walk reads the upper once. Lowers are consulted only for names the upper
 * holds (Added vs Changed, and whether a whiteout hides anything), except:
 * - an opaque upper directory: the lower names it hides are listed as Deleted;
 * - a redirected (renamed) directory: its lower content moved with it, so the
 *   source is listed and every name in it reported against what the lowers
 *   have at the new path.
 * Lower directories the upper does not touch are never read.
 */
import type { Bstr } from '../shared/bstr.js';
import * as sys from '../native/sys.js';
import { StatIdx } from '../native/sys.js';
import { joinRel } from '../core/whiteout.js';
import { Stack, classifyUpper, compareBstr, type LowerDir, type LowerHit } from './stack.js';
import { S_IFDIR, S_IFMT } from '../shared/constants.js';

export type ChangeKind = 'A' | 'C' | 'D';
export interface Change { kind: ChangeKind; /** "/a/b", a Bstr */ path: Bstr }

const isDirSt = (st: Float64Array): boolean => (st[StatIdx.mode]! & S_IFMT) === S_IFDIR;

/**
 * Walk the changes of `upper` over `lowers` (top first), calling `emit` in a
 * deterministic order (bytewise by name within each directory, a directory
 * before its contents).
 */
export function walkDiff(upper: string, lowers: string[], emit: (c: Change) => void): void {
  const stack = new Stack(upper, lowers);
  try {
    const root = stack.rootDirs();
    diffDir(stack, '', root, root, emit);
  } finally {
    stack.close();
  }
}

export function diff(upper: string, lowers: string[]): Change[] {
  const out: Change[] = [];
  walkDiff(upper, lowers, (c) => out.push(c));
  return out;
}

/**
 * One upper directory `rel`.
 * @param source lower dirs whose content shows through here (none when opaque; the origin when redirected)
 * @param compare lower dirs that were at this path before (what Added/Changed/Deleted are judged against)
 */
function diffDir(stack: Stack, rel: Bstr, source: LowerDir[], compare: LowerDir[], emit: (c: Change) => void): void {
  const ufd = stack.upper!.fd;
  const { names, types } = sys.readdirat(ufd, rel);
  const dtypes = new Map<Bstr, number>();
  names.forEach((n, i) => dtypes.set(n, types[i]!));
  names.sort(compareBstr);
  const st = sys.newStatArray();
  const moved = source !== compare; // opaque or redirected: lower content is not simply "unchanged"
  const inUpper = new Set<Bstr>();
  const whiteouts = new Set<Bstr>();
  for (const name of names) {
    const k = classifyUpper(ufd, rel, name, st, dtypes.get(name));
    const path = joinRel(rel, name);
    switch (k.kind) {
      case 'opaque-marker':
        break;
      case 'whiteout':
        whiteouts.add(k.target);
        // a whiteout of a name the lowers do not have hides nothing (the kernel leaves some behind)
        if (compare.length > 0 && stack.lookup(compare, k.target)) emit({ kind: 'D', path: '/' + joinRel(rel, k.target) });
        break;
      case 'dir': {
        inUpper.add(name);
        const before = compare.length > 0 ? stack.lookup(compare, name) : undefined;
        emit({ kind: before ? 'C' : 'A', path: '/' + path });
        const beforeDirs = before && isDirSt(before.st) ? before.dirs : [];
        let src: LowerDir[];
        if (k.opaque) src = [];
        else if (k.redirect) src = stack.redirected(source, k.redirect);
        else if (moved) {
          // inside an opaque/redirected dir the lower content comes from the source, not from this path
          const s = source.length > 0 ? stack.lookup(source, name) : undefined;
          src = s && isDirSt(s.st) ? s.dirs : [];
        } else src = beforeDirs;
        diffDir(stack, path, src, beforeDirs, emit);
        break;
      }
      case 'other': {
        inUpper.add(name);
        const before = compare.length > 0 ? stack.lookup(compare, name) : undefined;
        emit({ kind: before ? 'C' : 'A', path: '/' + path });
        break;
      }
    }
  }
  if (!moved) return;
  // Lower content that shows through here without an upper copy (redirect), and
  // what the lowers had here that no longer shows (opaque, redirect).
  lowerOnly(stack, rel, source, compare, emit, (name) => inUpper.has(name) || whiteouts.has(name));
}

/**
 * Lower content at `rel` without an upper copy (a directory that moved here, or what shows
 * through a redirect), against what the lowers had here (`compare`): everything in it.
 * `decided` names entries the upper already accounted for.
 */
function lowerOnly(
  stack: Stack, rel: Bstr, source: LowerDir[], compare: LowerDir[], emit: (c: Change) => void,
  decided: (name: Bstr) => boolean = () => false,
): void {
  const visible = source.length > 0 ? stack.listMerged(source) : new Map<Bstr, LowerHit>();
  const hidden = compare.length > 0 ? stack.listMerged(compare) : new Map<Bstr, LowerHit>();
  const all = [...new Set([...visible.keys(), ...hidden.keys()])].sort(compareBstr);
  for (const name of all) {
    if (decided(name)) continue;
    const v = visible.get(name);
    const h = hidden.get(name);
    const path = joinRel(rel, name);
    if (!v) { emit({ kind: 'D', path: '/' + path }); continue; }
    emit({ kind: h ? 'C' : 'A', path: '/' + path });
    if (isDirSt(v.st)) lowerOnly(stack, path, v.dirs, h && isDirSt(h.st) ? h.dirs : [], emit);
  }
}

/** `docker diff` text: "A /path" per line; non-UTF-8 bytes shown as they are. */
export function formatChange(c: Change): Buffer {
  return Buffer.concat([Buffer.from(c.kind + ' '), Buffer.from(c.path, 'latin1'), Buffer.from('\n')]);
}
