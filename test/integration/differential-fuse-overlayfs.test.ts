/**
 * Proof of the differential harness before it judges stratafs:
 * 1. kernel vs kernel on every scripted case: the harness must report nothing
 *    (no spurious differences from snapshots, marker conversion, timestamps...);
 * 2. kernel vs fuse-overlayfs: it must report fuse-overlayfs's known differences
 *    (lower directory rename gives EXDEV; 255-byte names fail), each where the
 *    cases exercise them, and no difference outside the list below.
 *
 * The list below is local to this proof on purpose: src of truth for stratafs
 * is test/harness/divergences.ts. Every entry beyond the two headline ones was
 * observed here and reproduced by hand with fuse-overlayfs 1.10 outside the
 * harness (shell commands given in the reasons).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE, SCRIPTED } from '../harness/cases.js';
import { RENAME2_CASES } from '../harness/cases-rename2.js';
import { formatReport, runCase, type CaseReport } from '../harness/differential.js';
import type { Divergence } from '../harness/divergences.js';
import type { OpKind } from '../harness/ops.js';
import { kernelOverlayProblem, unmountAll, requireKernel } from '../harness/mounts.js';
import { PATH_POOL, sequenceArb } from '../harness/random.js';

const FO = 'fuse-overlayfs' as const;
const KERNEL_READS = "kernel reads fuse-overlayfs's upper";
/** everything that creates a name or copies one up */
const MUTATING: OpKind[] = ['create', 'write', 'append', 'truncate', 'chmod', 'chown', 'utimens', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'mkfifo', 'setxattr', 'removexattr', 'open'];

/** fuse-overlayfs 1.10 vs kernel 6.18 overlayfs (redirect_dir=on), as observed and reproduced by hand. */
const FUSE_OVERLAYFS_KNOWN: Divergence[] = [
  { id: 'lower-dir-rename-exdev', impl: FO, match: { kind: 'op', op: ['rename'], candidate: 'EXDEV' },
    reason: 'fuse-overlayfs has no redirect_dir: renaming a directory with lower content fails with EXDEV (mv falls back to copying); ' +
      'it says so before looking at the target, so where the kernel reports ENOTEMPTY/ENOTDIR/EINVAL for the target fuse-overlayfs says EXDEV' },
  { id: 'name-255', impl: FO, match: { kind: 'op', op: MUTATING, candidate: 'ENAMETOOLONG', reference: 'ok', path: /(^|\/)[^/]{255}$/ },
    reason: 'fuse-overlayfs builds names with a prefix in the workdir, so 255-byte names fail with ENAMETOOLONG' },
  { id: 'name-255-crash', impl: FO, match: { kind: 'op', op: MUTATING, candidate: 'ECONNABORTED', path: /(^|\/)[^/]{255}$/ },
    reason: 'fuse-overlayfs dies removing or copying up a lower 255-byte name (rm m/$(printf "n%.0s" $(seq 255)): "Software caused connection abort", the mount then answers ENOTCONN)' },
  { id: 'wh-prefix', impl: FO, match: { kind: 'op', op: ['create', 'mkdir', 'rename', 'link', 'symlink', 'mkfifo'], candidate: 'EINVAL', reference: 'ok', path: /(^|\/)\.wh\./ },
    reason: 'fuse-overlayfs refuses to create names starting with .wh. (EINVAL); the kernel gives the prefix no meaning' },
  { id: 'trusted-overlay-xattr', impl: FO, match: { kind: 'op', op: ['setxattr'], candidate: 'EPERM', reference: 'ok', path: /./ },
    reason: 'fuse-overlayfs refuses trusted.overlay.* through the mount (EPERM); kernel >= 6.7 stores it escaped' },
  { id: 'wh-prefix-read', impl: FO, match: { kind: 'tree', phase: "fuse-overlayfs reads kernel's upper", field: 'exists', path: /(^|\/)\.wh\./ },
    reason: 'fuse-overlayfs reads every `.wh.X` in any layer as a whiteout, so a file or dir the kernel let a user name `.wh.X` vanishes' },
  { id: 'redirect-not-followed', impl: FO, match: { kind: 'op', op: ['readdir'], candidate: 'ok', path: /^(moved|p\/rel)$/ },
    reason: 'fuse-overlayfs ignores trusted.overlay.redirect in lower layers (a dir the kernel renamed with redirect_dir=on): only its own layer shows' },
  { id: 'redirect-not-followed-read', impl: FO, match: { kind: 'op', op: ['read', 'stat'], candidate: 'ENOENT', reference: 'ok', path: /^moved\// },
    reason: 'as redirect-not-followed' },
  { id: 'copy-up-parent-mtime', impl: FO, match: { kind: 'tree', field: 'mtime', nodeType: ['dir'] },
    reason: 'the kernel restores the parent directory times after a copy-up; fuse-overlayfs leaves them at the copy-up time ' +
      '(echo >> m/d/low; stat -c %y m/d) and keeps reporting a stale root mtime from its attribute cache' },
  { id: 'symlink-copy-up-times', impl: FO, match: { kind: 'tree', field: 'mtime', nodeType: ['symlink'] },
    reason: 'fuse-overlayfs does not keep the times of a symlink it copies up (chown -h m/sl; stat -c %y m/sl)' },
  { id: 'lower-hardlinks-op', impl: FO, match: { kind: 'op', op: ['read', 'stat', 'sameInode'], candidate: 'ok', path: /^(hl1|hl2|u\/hl1)$/ },
    reason: 'the kernel (index=off) breaks a lower hard link at copy-up; fuse-overlayfs keeps both names on one upper inode, with varying nlink' },
  { id: 'lower-hardlinks-tree', impl: FO, match: { kind: 'tree', field: /^(nlink|hardlinks|size|hash|mode|mtime)$/, path: /^(hl1|hl2|u\/hl1)$/ },
    reason: 'as lower-hardlinks-op, in the trees and when each reads the other upper' },
  { id: 'fifo-copy-up', impl: FO, match: { kind: 'op', op: ['chmod'], candidate: 'EIO', path: /(^|\/)pipe$/ },
    reason: 'fuse-overlayfs cannot copy up a FIFO: chmod 600 m/pipe gives EIO' },
  { id: 'fifo-rename-becomes-file', impl: FO, match: { kind: 'op', op: ['readdir'], candidate: 'ok', results: /pipe:p.* \/ .*pipe:f/ },
    reason: 'renaming a lower FIFO in fuse-overlayfs leaves a regular file (mv m/pipe m/d2/pipe; stat -c %F m/d2/pipe)' },
  { id: 'fifo-rename-becomes-file-tree', impl: FO, match: { kind: 'tree', field: 'type', path: /(^|\/)pipe$/ },
    reason: 'as fifo-rename-becomes-file' },
  { id: 'unlinked-open-nlink', impl: FO, match: { kind: 'op', op: ['fdstat'], candidate: 'ok', results: /"nlink":0.* \/ .*"nlink":1/ },
    reason: 'fstat of an open, unlinked file reports nlink 1 in fuse-overlayfs, 0 on the kernel' },
  { id: 'mkdir-over-whiteout-lookup', impl: FO, match: { kind: 'op', op: ['stat'], candidate: 'ok', reference: 'ENOENT', path: /^d\/sub\/deep$/ },
    reason: 'after rm d/sub/deep; rmdir d/sub; mkdir d/sub, fuse-overlayfs still finds the lower d/sub/deep by name although the new dir is opaque' },
  { id: 'mkdir-over-whiteout-lookup-tree', impl: FO, match: { kind: 'tree', field: 'exists', path: /^d\/sub\/deep$/ },
    reason: 'as mkdir-over-whiteout-lookup' },
  { id: 'setgid-dirs', impl: FO, match: { kind: 'op', op: ['stat'], candidate: 'ok', path: /^sgiddir\// },
    reason: 'fuse-overlayfs ignores a setgid parent (new objects get the caller group, subdirs lose S_ISGID) and drops S_ISGID when it copies the dir up' },
  { id: 'setgid-dirs-tree', impl: FO, match: { kind: 'tree', field: /^(gid|mode)$/, path: /^sgiddir(\/|$)/ },
    reason: 'as setgid-dirs' },
  { id: 'rename-over-lower-unlink-resurrects', impl: FO, match: { kind: 'op', op: ['symlink'], candidate: 'EEXIST', reference: 'ok', path: /^sl$/ },
    reason: 'a name renamed over a lower file and then removed shows the lower file again: fuse-overlayfs writes no whiteout ' +
      '(ln -s d/low m/sl.tmp; mv -T m/sl.tmp m/sl; rm m/sl; readlink m/sl: the lower target; ln -s d/top m/sl: File exists; the upper is left empty)' },
  { id: 'rename-over-lower-unlink-resurrects-op', impl: FO, match: { kind: 'op', op: ['readlink', 'read'], candidate: 'ok', reference: 'ok', path: /^sl$/ },
    reason: 'as rename-over-lower-unlink-resurrects: reads of the name then find the lower link' },
  { id: 'rename-over-lower-unlink-resurrects-tree', impl: FO, match: { kind: 'tree', field: /^(target|size|hash|mtime|exists)$/, path: /^sl$/ },
    reason: 'as rename-over-lower-unlink-resurrects' },
  { id: 'upper-private-xattr', impl: FO, match: { kind: 'tree', phase: KERNEL_READS, field: /^xattr user\.fuseoverlayfs\./ },
    reason: 'fuse-overlayfs records origins in user.fuseoverlayfs.origin, which the kernel shows as a user xattr' },
  { id: 'upper-opq-whiteout', impl: FO, match: { kind: 'tree', phase: KERNEL_READS, field: 'exists', path: /(^|\/)\.wh\.\.opq$/ },
    reason: 'fuse-overlayfs writes a char 0/0 `.wh..opq` in opaque dirs; the kernel does not filter whiteouts when listing a pure-upper dir, so the name is listed and lstat gives ENOENT' },
  { id: 'upper-oci-opq-file', impl: FO, match: { kind: 'tree', phase: 'upper on disk', field: 'oci-marker', path: /(^|\/)\.wh\.\.wh\.\.opq$/ },
    reason: 'fuse-overlayfs also writes an OCI `.wh..wh..opq` file into dirs it makes opaque (besides the xattr); the kernel would show it as a regular file' },
];

/** Where the headline differences must show up (and nothing may be unexplained anywhere). */
const MUST_REPORT: Record<string, string[]> = {
  'rename-dirs': ['lower-dir-rename-exdev'],
  'rename-dir-over-empty-lower': ['lower-dir-rename-exdev'],
  'names-non-utf8': ['lower-dir-rename-exdev'],
  'names-255': ['name-255'],
  'names-wh-prefix': ['wh-prefix'],
  // fuse-overlayfs refuses only files named .wh.*; a dir of that name is created and then hidden from anyone reading the upper as it does
  'names-wh-prefix-dir': ['wh-prefix-read'],
  'xattr-overlay-private': ['trusted-overlay-xattr'],
  'symlink-retarget': ['rename-over-lower-unlink-resurrects'],
  'deep-redirects': ['redirect-not-followed', 'redirect-not-followed-read', 'lower-dir-rename-exdev'],
};

/**
 * fuse-overlayfs blocks for good opening an upper FIFO that carries the kernel's
 * origin xattr (its daemon sits in fifo_open/wait_for_partner), so reading the
 * kernel's upper after a FIFO copy-up hangs. The harness must turn that into a
 * reported timeout and recover the mount (fusectl abort), not hang itself.
 */
const HANGS: Record<string, RegExp> = {
  'rename-files': /fuse-overlayfs reads kernel's upper: TimeoutError/,
};

let kernelProblem: string | undefined;
beforeAll(async () => {
  kernelProblem = await kernelOverlayProblem();
});
afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});


const ids = (r: CaseReport) => [...new Set(r.allowed.map((d) => ('allowedBy' in d ? d.allowedBy : undefined)).filter(Boolean))].sort();

describe('harness self-check: kernel vs kernel reports nothing', () => {
  for (const c of SCRIPTED) {
    it(c.name, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'kernel', divergences: [] });
      expect(r.unexplained.length + r.allowed.length, formatReport(r, c.ops)).toBe(0);
      expect(r.stoppedAt).toBeUndefined();
    }, 120_000);
  }
});

describe('harness proof: kernel vs fuse-overlayfs reports the known differences and nothing else', () => {
  for (const c of SCRIPTED) {
    it(c.name, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: FO, divergences: FUSE_OVERLAYFS_KNOWN, snapshotTimeoutMs: 8_000 });
      const text = formatReport(r, c.ops);
      const hang = HANGS[c.name];
      const unexplained = r.unexplained.filter((d) => !(hang && d.kind === 'mount' && (hang.test(`${d.phase}: ${d.message}`) || d.phase === 'cleanup')));
      expect(unexplained, text).toEqual([]);
      if (hang) expect(r.unexplained.some((d) => d.kind === 'mount' && hang.test(`${d.phase}: ${d.message}`)), text).toBe(true);
      for (const id of MUST_REPORT[c.name] ?? []) expect(ids(r), text).toContain(id);
      // the headline differences appear exactly where expected, never elsewhere
      const here = MUST_REPORT[c.name] ?? [];
      for (const must of Object.values(MUST_REPORT)) {
        for (const id of must) if (!here.includes(id)) expect(ids(r), text).not.toContain(id);
      }
    }, 120_000);
  }
});

describe('harness proof: random sequences, kernel vs fuse-overlayfs', () => {
  const RUNS = 20;
  const LENGTH = 20;
  it(`${RUNS} sequences of up to ${LENGTH} ops (seed 4242)`, async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(sequenceArb(LENGTH, PATH_POOL), async (ops) => {
        const r = await runCase({ name: 'random', layers: BASE, ops }, { candidate: FO, divergences: FUSE_OVERLAYFS_KNOWN, snapshotTimeoutMs: 8_000 });
        for (const id of ids(r)) seen.add(id as string);
        if (r.unexplained.length) throw new Error(formatReport(r, ops));
      }),
      // a proof cut short by its time limit proved less than it claims: that fails, as in differential-stratafs
      { seed: 4242, numRuns: RUNS, interruptAfterTimeLimit: 150_000, markInterruptAsFailure: true },
    );
    console.log(`random fuse-overlayfs proof: known differences met: ${[...seen].sort().join(', ') || 'none'}`);
  }, 300_000);
});

/**
 * renameat2's flags (cases-rename2.ts): fuse-overlayfs 1.10 implements NOREPLACE and EXCHANGE, refuses lower dirs,
 * honours WHITEOUT; its other differences there, as observed (and by hand with a python3 renameat2 probe). Only for
 * these cases: the paths they name mean other objects in SCRIPTED.
 */
const RENAME2_FO_KNOWN: Divergence[] = [
  { id: 'rename2-lower-dir-exdev', impl: FO, match: { kind: 'op', op: ['rename2'], candidate: 'EXDEV' },
    reason: 'as lower-dir-rename-exdev, for renameat2 with RENAME_EXCHANGE or RENAME_NOREPLACE (python3 rename2 probe: exchange of a lower or merged dir with an upper dir, NOREPLACE of a lower dir onto a whiteout)' },
  { id: 'rename2-whiteout-honoured', impl: FO, match: { kind: 'op', op: ['rename2'], candidate: 'ok', reference: 'EINVAL' },
    reason: 'fuse-overlayfs passes RENAME_WHITEOUT (alone or with NOREPLACE) to the upper: the rename succeeds and leaves a whiteout at the old name; kernel overlayfs refuses the flag with EINVAL' },
  { id: 'rename2-exchange-one-ino', impl: FO, match: { kind: 'tree', field: 'hardlinks', path: /^(f1|uf2)$/ },
    reason: 'after exchanging an upper file with a lower one (renameat2 RENAME_EXCHANGE uf2 f1), fuse-overlayfs reports one st_ino for both names: it numbers a copy by its origin path (user.fuseoverlayfs.origin), which now names the other' },
  { id: 'rename2-lower-hardlinks-moved', impl: FO, match: { kind: 'op', op: ['sameInode', 'stat'], candidate: 'ok', path: /^(f1|f2)$/ },
    reason: 'as lower-hardlinks-op, for the names of a lower hard link after a rename or exchange moved them onto f1 and f2' },
  { id: 'rename2-lower-hardlinks-moved-tree', impl: FO, match: { kind: 'tree', field: /^(nlink|hardlinks)$/, path: /^(f1|f2)$/ },
    reason: 'as rename2-lower-hardlinks-moved, in the trees' },
  { id: 'fifo-exchange-becomes-file', impl: FO, match: { kind: 'op', op: ['stat'], candidate: 'EIO', path: /^sl$/ },
    reason: 'as fifo-rename-becomes-file: a lower FIFO exchanged with a symlink (renameat2 RENAME_EXCHANGE sl pipe) becomes a regular file, and stat of it gives EIO' },
  { id: 'fifo-exchange-becomes-file-list', impl: FO, match: { kind: 'op', op: ['readdir'], candidate: 'ok', results: /sl:p.* \/ .*sl:f/ },
    reason: 'as fifo-exchange-becomes-file' },
  { id: 'fifo-exchange-becomes-file-tree', impl: FO, match: { kind: 'tree', field: 'type', path: /^sl$/ },
    reason: 'as fifo-exchange-becomes-file' },
];

const RENAME2_MUST: Record<string, string[]> = {
  'rename2-exchange-dirs': ['rename2-lower-dir-exdev'],
  'rename2-whiteout-flag': ['rename2-whiteout-honoured'],
};

describe('harness proof: renameat2 flags, kernel vs kernel and kernel vs fuse-overlayfs', () => {
  for (const c of RENAME2_CASES) {
    it(`${c.name} (kernel vs kernel)`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: 'kernel', divergences: [] });
      expect(r.unexplained.length + r.allowed.length, formatReport(r, c.ops)).toBe(0);
    }, 120_000);
    it(`${c.name} (fuse-overlayfs)`, async (ctx) => {
      requireKernel(kernelProblem, ctx);
      const r = await runCase(c, { candidate: FO, divergences: [...FUSE_OVERLAYFS_KNOWN, ...RENAME2_FO_KNOWN], snapshotTimeoutMs: 8_000 });
      const text = formatReport(r, c.ops);
      // the FIFO hang of HANGS: the kernel's upper holds a copied-up FIFO with its origin
      const hang = c.name === 'rename2-exchange-files' ? /fuse-overlayfs reads kernel's upper: .*(TimeoutError|timed out)/ : undefined;
      expect(r.unexplained.filter((d) => !(hang && d.kind === 'mount' && (hang.test(`${d.phase}: ${d.message}`) || d.phase === 'cleanup'))), text).toEqual([]);
      for (const id of RENAME2_MUST[c.name] ?? []) expect(ids(r), text).toContain(id);
    }, 120_000);
  }
});
