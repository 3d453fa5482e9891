/**
 * The image commands of `stratafs`: layer import/ls, image import/ls/lowers,
 * diff, commit, size. main.ts hands argv here when its first word is one of
 * IMAGE_COMMANDS (these commands never load the FUSE binding).
 *
 * Where an upper and its lowers are needed, they are named as for mount:
 *   -o lowerdir=A:B,upperdir=U[,workdir=W]   (kernel escaping: \, \: \\)
 *   --image NAME --store DIR [--upper U]
 *   MOUNTPOINT                               (a live stratafs or kernel overlay mount)
 */
import { realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { FsError } from '../shared/errors.js';
import { toText } from '../shared/bstr.js';
import { escapeOptionValue, splitOptions, splitLowerdir, unescape } from './mount-options.js';
import { readMountsSync, findMount, resolveMountpointArgSync } from './mountinfo.js';
import { runtimeFiles, readDaemonInfo } from './runtime.js';
import { Store, resolveImageLowers } from '../image/store.js';

export const IMAGE_COMMANDS = new Set(['layer', 'image', 'diff', 'commit', 'size', 'which']);

/** A user-facing failure: printed as one line, exit code 1. */
export class ImageCliError extends Error {}

export interface StackSpec { upper: string | undefined; lowers: string[]; source: string }

interface StackOpts { options?: string[]; image?: string; store?: string; upper?: string }

/** lowerdir/upperdir from one or more -o strings (later options win, as for mount). */
export function stackFromOptions(opts: string[]): StackSpec {
  let lowers: string[] | undefined;
  let upper: string | undefined;
  for (const o of opts) {
    for (const opt of splitOptions(o)) {
      const eq = opt.indexOf('=');
      const key = eq < 0 ? opt : opt.slice(0, eq);
      const val = eq < 0 ? '' : opt.slice(eq + 1);
      if (key === 'lowerdir') lowers = splitLowerdir(val).map((p) => path.resolve(p));
      else if (key === 'upperdir') upper = path.resolve(unescape(val));
    }
  }
  if (!lowers || lowers.length === 0 || lowers.some((l) => l === '')) throw new ImageCliError('-o needs lowerdir=DIR[:DIR...]');
  return { upper, lowers, source: '-o' };
}

/** The layers of a live mount: the stratafs daemon's runtime record, else a kernel overlay's mount options. */
export function stackFromMount(arg: string): StackSpec {
  const mnt = resolveMountpointArgSync(arg, realpathSync);
  const info = readDaemonInfo(runtimeFiles(mnt).info);
  if (info && info.mountpoint === mnt) return { upper: info.upperdir, lowers: info.lowerdirs, source: `stratafs mount ${mnt}` };
  const m = findMount(readMountsSync(), mnt);
  if (m && m.fstype === 'overlay') {
    const spec = stackFromOptions([m.superOptions]);
    return { ...spec, source: `overlay mount ${mnt}` };
  }
  throw new ImageCliError(`${arg}: not a stratafs or overlay mount (give -o lowerdir=...,upperdir=... instead)`);
}

export function resolveStack(o: StackOpts, positional: string | undefined, needUpper: boolean): StackSpec {
  const ways = [o.options && o.options.length > 0, o.image !== undefined, positional !== undefined].filter(Boolean).length;
  if (ways !== 1) throw new ImageCliError('name the layers one way: -o lowerdir=...,upperdir=..., --image NAME --store DIR [--upper U], or a MOUNTPOINT');
  let spec: StackSpec;
  if (o.options && o.options.length > 0) spec = stackFromOptions(o.options);
  else if (o.image !== undefined) {
    if (!o.store) throw new ImageCliError('--image needs --store DIR');
    spec = { upper: o.upper ? path.resolve(o.upper) : undefined, lowers: resolveImageLowers(o.store, o.image), source: `image ${o.image}` };
  } else spec = stackFromMount(positional!);
  if (o.upper && o.image === undefined) spec.upper = path.resolve(o.upper);
  if (needUpper && !spec.upper) throw new ImageCliError(`${spec.source} has no upper dir (give upperdir= or --upper)`);
  for (const d of [...(spec.upper ? [spec.upper] : []), ...spec.lowers]) {
    let ok = false;
    try { ok = statSync(d).isDirectory(); } catch { /* reported below */ }
    if (!ok) throw new ImageCliError(`not a directory: ${d}`);
  }
  return spec;
}

const out = (s: string): void => { process.stdout.write(s); };
const json = (v: unknown): void => out(JSON.stringify(v, null, 2) + '\n');

/** A path for JSON: text, plus the raw bytes in hex when they are not UTF-8. */
function jsonPath(p: string): { path: string; pathHex?: string } {
  const b = Buffer.from(p, 'latin1');
  const t = b.toString('utf8');
  return Buffer.from(t, 'utf8').equals(b) ? { path: t } : { path: t, pathHex: b.toString('hex') };
}

const MIB = 1 << 20;

/** A progress bar on stderr for big layers on a terminal; nothing otherwise. */
async function progressBar(total: number, enabled: boolean, label: string): Promise<{ update: (n: number) => void; stop: () => void }> {
  if (!enabled || !process.stderr.isTTY || total < 4 * MIB) return { update: () => undefined, stop: () => undefined };
  const { SingleBar, Presets } = (await import('cli-progress')).default;
  const bar = new SingleBar({
    stream: process.stderr, format: `${label} [{bar}] {percentage}% {value}/{total} MiB {speed} MiB/s`, hideCursor: true,
  }, Presets.shades_classic);
  const t0 = performance.now();
  bar.start(Math.ceil(total / MIB), 0, { speed: '0' });
  return {
    update: (n) => bar.update(Math.ceil(n / MIB), { speed: (n / MIB / Math.max(0.001, (performance.now() - t0) / 1000)).toFixed(0) }),
    stop: () => bar.stop(),
  };
}

function addStackOptions(c: Command): Command {
  return c
    .option('-o, --options <opts>', 'lowerdir=A:B,upperdir=U (as for mount; repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--image <name>', 'an imported image as the lowers')
    .option('--store <dir>', 'the store of --image')
    .option('--upper <dir>', 'the upper dir (with --image, or to override)');
}

const MAX_EXPANDED_HELP = 'refuse a compressed layer that expands past SIZE (e.g. 8G, or none; default: 100x its compressed size, at least 1G); any import stops before it would leave less than 5% of the disk (at most 1G) free';

export function buildImageProgram(): Command {
  const program = new Command('stratafs').exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const layer = program.command('layer').description('layer snapshots in a store');
  layer.command('import <file>')
    .description('import a layer tarball (tar, tar.gz, tar.zst) as a snapshot named by its diff-id')
    .requiredOption('--store <dir>', 'the store directory')
    .option('--digest <sha256:hex>', 'expected digest of the blob (default: from a file named by its digest)')
    .option('--no-devices', 'refuse device nodes (default: allowed as root)')
    .option('--max-expanded <size>', MAX_EXPANDED_HELP)
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { store: string; digest?: string; devices: boolean; maxExpanded?: string; json?: boolean }) => {
      const { importLayer, parseSize } = await import('../image/import-layer.js');
      const maxExpanded = o.maxExpanded === undefined ? undefined : parseSize(o.maxExpanded);
      const { defaultExtractOptions } = await import('../image/extract.js');
      const store = Store.open(o.store);
      const bar = await progressBar(statSync(file).size, !o.json, path.basename(file).slice(0, 24));
      const ext = defaultExtractOptions();
      if (!o.devices) ext.devices = false;
      let r;
      try {
        r = await importLayer(store, file, { digest: o.digest, progress: bar.update, extract: ext, maxExpanded });
        bar.update(r.blobSize); // the last chunk's update may not have been drawn
      } finally {
        bar.stop();
      }
      if (o.json) { json(r); return; }
      out(`${r.reused ? 'reused' : 'imported'} ${r.diffId}\n`);
      out(`  blob ${r.blobDigest} (${r.compression}, ${r.blobSize} bytes)\n`);
      out(`  lowerdir ${r.snapshot}\n`);
      if (!r.reused) out(`  ${r.stats!.entries} entries, ${(r.tarSize / MIB).toFixed(1)} MiB in ${r.seconds.toFixed(2)} s (${(r.tarSize / MIB / r.seconds).toFixed(1)} MiB/s)\n`);
      for (const w of r.stats?.warnings ?? []) process.stderr.write(`stratafs: warning: ${toText(w)}\n`);
    });
  layer.command('ls')
    .description('list the snapshots of a store')
    .requiredOption('--store <dir>', 'the store directory')
    .option('--json', 'machine-readable output')
    .action(async (o: { store: string; json?: boolean }) => {
      const store = Store.open(o.store);
      const layers = store.listLayers().map((l) => ({ ...l, lowerdir: store.snapshotFs(l.diffId) }));
      if (o.json) { json(layers); return; }
      const { humanSize } = await import('../image/size.js');
      for (const l of layers) out(`${l.diffId}  ${humanSize(l.size).padStart(9)}  ${l.entries} entries\n`);
    });

  const image = program.command('image').description('images in a store');
  image.command('import <path>')
    .description('import an OCI layout dir, an OCI archive or a docker/podman save tarball')
    .requiredOption('--store <dir>', 'the store directory')
    .option('--name <name>', 'record the image under this name (and pick this ref from a layout holding several)')
    .option('--max-expanded <size>', MAX_EXPANDED_HELP)
    .option('--json', 'machine-readable output')
    .action(async (p: string, o: { store: string; name?: string; maxExpanded?: string; json?: boolean }) => {
      const { importImage } = await import('../image/import-image.js');
      const { parseSize } = await import('../image/import-layer.js');
      const maxExpanded = o.maxExpanded === undefined ? undefined : parseSize(o.maxExpanded);
      const store = Store.open(o.store);
      let bar = { update: (_n: number): void => undefined, stop: (): void => undefined };
      let current = 0;
      const r = await importImage(store, p, {
        name: o.name,
        maxExpanded,
        onLayer: (i, n, size) => {
          bar.stop();
          current = i;
          void progressBar(size, !o.json, `layer ${i + 1}/${n}`).then((b) => { if (current === i) bar = b; else b.stop(); });
        },
        progress: (d) => bar.update(d),
      });
      bar.stop();
      if (o.json) { json(r); return; }
      out(`image ${r.image.name}: ${r.image.layers.length} layers, config ${r.image.config.digest}\n`);
      r.layers.forEach((l, i) => out(`  ${i + 1}. ${l.diffId} ${l.reused ? '(reused)' : `(${(l.tarSize / MIB).toFixed(1)} MiB in ${l.seconds.toFixed(2)} s)`}\n`));
      out(`mount: stratafs -o lowerdir="$(stratafs image lowers ${JSON.stringify(r.image.name)} --store ${store.dir})" MOUNTPOINT\n`);
    });
  image.command('ls')
    .description('list the images of a store')
    .requiredOption('--store <dir>', 'the store directory')
    .option('--json', 'machine-readable output')
    .action((o: { store: string; json?: boolean }) => {
      const imgs = Store.open(o.store).listImages();
      if (o.json) { json(imgs); return; }
      for (const i of imgs) out(`${i.name}  ${i.layers.length} layers  ${i.config.digest}\n`);
    });
  image.command('lowers <name>')
    .description('print the lowerdir= value of an image (top layer first)')
    .requiredOption('--store <dir>', 'the store directory')
    .option('--json', 'machine-readable output')
    .action((name: string, o: { store: string; json?: boolean }) => {
      const l = resolveImageLowers(o.store, name);
      if (o.json) json(l);
      else out(l.map(escapeOptionValue).join(':') + '\n');
    });

  addStackOptions(program.command('diff [mountpoint]'))
    .description('changes of the writable layer: A added, C changed, D deleted (like docker diff)')
    .option('--json', 'machine-readable output')
    .action(async (mp: string | undefined, o: StackOpts & { json?: boolean }) => {
      const spec = resolveStack(o, mp, true);
      const { walkDiff, formatChange } = await import('../image/diff.js');
      if (o.json) {
        const changes: unknown[] = [];
        walkDiff(spec.upper!, spec.lowers, (c) => changes.push({ kind: c.kind, ...jsonPath(c.path) }));
        json(changes);
        return;
      }
      let buf: Buffer[] = [];
      let size = 0;
      walkDiff(spec.upper!, spec.lowers, (c) => {
        const b = formatChange(c);
        buf.push(b);
        size += b.length;
        if (size > 1 << 16) { process.stdout.write(Buffer.concat(buf)); buf = []; size = 0; }
      });
      process.stdout.write(Buffer.concat(buf));
    });

  addStackOptions(program.command('commit [mountpoint]'))
    .description('write the writable layer as an OCI layer tarball; prints blob digest and diff-id')
    .requiredOption('--output <file>', 'layer file to write (.tar.gz: gzip, .tar: uncompressed)')
    .addOption(new Option('--compression <c>', 'override the choice made from the file name').choices(['gzip', 'none']))
    .option('--json', 'machine-readable output')
    .action(async (mp: string | undefined, o: StackOpts & { output: string; compression?: 'gzip' | 'none'; json?: boolean }) => {
      const spec = resolveStack(o, mp, true);
      const { commit } = await import('../image/commit.js');
      const r = await commit({ upper: spec.upper!, lowers: spec.lowers, output: path.resolve(o.output), compression: o.compression });
      if (o.json) { json(r); return; }
      out(`${r.output}\n  blob digest ${r.blobDigest} (${r.blobSize} bytes, ${r.compression})\n  diff-id     ${r.diffId}\n`);
      out(`  ${r.entries} entries, ${r.whiteouts} whiteouts, ${r.opaques} opaque dirs, ${r.redirects} renamed dirs written whole\n`);
      for (const w of r.warnings) process.stderr.write(`stratafs: warning: ${toText(w)}\n`);
    });

  addStackOptions(program.command('size [mountpoint]'))
    .description('writable layer size and virtual size (like docker ps -s); with only --store: per image and shared')
    .option('--json', 'machine-readable output')
    .action(async (mp: string | undefined, o: StackOpts & { json?: boolean }) => {
      const { containerSize, storeSize, humanSize } = await import('../image/size.js');
      if (o.store && o.image === undefined && (!o.options || o.options.length === 0) && mp === undefined) {
        const s = storeSize(Store.open(o.store));
        if (o.json) { json(s); return; }
        out(`${'IMAGE'.padEnd(40)} ${'LAYERS'.padStart(6)} ${'SIZE'.padStart(10)} ${'SHARED'.padStart(10)} ${'UNIQUE'.padStart(10)}\n`);
        for (const i of s.images) out(`${i.name.padEnd(40)} ${String(i.layers).padStart(6)} ${humanSize(i.size).padStart(10)} ${humanSize(i.shared).padStart(10)} ${humanSize(i.unique).padStart(10)}\n`);
        out(`shared between images (counted once): ${humanSize(s.shared)}; store total: ${humanSize(s.total)}${s.unused ? `; unused layers: ${humanSize(s.unused)}` : ''}\n`);
        return;
      }
      const spec = resolveStack(o, mp, false);
      const s = containerSize(spec.upper, spec.lowers, o.store ? Store.open(o.store) : undefined);
      if (o.json) { json({ upper: spec.upper, ...s }); return; }
      out(`${humanSize(s.writable.bytes)} (virtual ${humanSize(s.virtual)})\n`);
    });

  addStackOptions(program.command('which <path>'))
    .description('which layer supplies a path: MOUNTPOINT/PATH of a live mount, or a PATH within the layers given by -o or --image')
    .option('--json', 'machine-readable output')
    .action(async (p: string, o: StackOpts & { json?: boolean }) => {
      const { which, formatWhich } = await import('../image/which.js');
      let spec: StackSpec;
      let rel: string;
      if ((o.options && o.options.length > 0) || o.image !== undefined) {
        spec = resolveStack(o, undefined, false);
        rel = p;
      } else {
        const abs = path.resolve(p);
        const mp = mountContaining(abs);
        if (!mp) throw new ImageCliError(`${p}: not inside a stratafs or overlay mount (give -o lowerdir=... or --image)`);
        spec = stackFromMount(mp);
        rel = abs.slice(mp === '/' ? 0 : mp.length) || '/';
      }
      const r = which(spec.upper, spec.lowers, Buffer.from(rel, 'utf8').toString('latin1'));
      if (o.json) json({ ...r, ...jsonPath(r.path) });
      else out(formatWhich(r));
      if (!r.found) process.exitCode = 2;
    });

  return program;
}

/** The innermost stratafs (FUSE) or overlay mount holding abs, from mountinfo (the mount itself is not touched). */
function mountContaining(abs: string): string | undefined {
  let best: string | undefined;
  for (const m of readMountsSync()) {
    if (!(m.fstype === 'overlay' || m.fstype.startsWith('fuse'))) continue;
    const mp = m.mountpoint;
    if (abs === mp || abs.startsWith(mp === '/' ? '/' : mp + '/')) if (!best || mp.length > best.length) best = mp;
  }
  return best;
}

/** Run an image command; returns the exit code. */
export async function runImageCli(argv: string[]): Promise<number> {
  const program = buildImageProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof ImageCliError || e instanceof FsError) {
      process.stderr.write(`stratafs: ${e.message}\n`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (err?.code && /^E[A-Z]+$/.test(err.code)) {
      process.stderr.write(`stratafs: ${err.message}\n`);
      return 1;
    }
    throw e;
  }
}
