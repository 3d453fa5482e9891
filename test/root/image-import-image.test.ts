/**
 * Image import from layouts and archives made by real tools: umoci builds an
 * OCI layout (a deleted file, a replaced directory, and an opaque directory via
 * `umoci raw add-layer` of a GNU tar layer), skopeo converts it into an OCI
 * archive and a docker-archive (`docker save` format).
 */
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Store, resolveImageLowers } from '../../src/image/store.js';
import { importImage } from '../../src/image/import-image.js';
import { FsError } from '../../src/shared/errors.js';
import { inReadOnlyHost } from '../harness/sandbox.js';

let base: string;
let layout: string;
let ociArchive: string;
let dockerArchive: string;

const sh = (cmd: string, cwd?: string): string => execFileSync('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'stratafs-imgimp-'));
  layout = join(base, 'img');
  const b = join(base, 'bundle');
  sh(`umoci init --layout ${layout} && umoci new --image ${layout}:v1`);
  sh(`umoci unpack --image ${layout}:v1 ${b}`);
  sh(`mkdir -p ${b}/rootfs/etc/conf.d ${b}/rootfs/work ${b}/rootfs/bin && echo a > ${b}/rootfs/etc/conf.d/a.conf && echo b > ${b}/rootfs/etc/conf.d/b.conf`);
  sh(`echo hello > ${b}/rootfs/work/message.txt && printf '#!/bin/sh\\necho hi\\n' > ${b}/rootfs/bin/hello && chmod 755 ${b}/rootfs/bin/hello`);
  sh(`umoci repack --image ${layout}:v1 ${b} && rm -rf ${b}`);
  sh(`umoci unpack --image ${layout}:v1 ${b}`);
  sh(`rm ${b}/rootfs/work/message.txt && echo content > ${b}/rootfs/work/content.txt`);
  sh(`umoci repack --image ${layout}:v1 ${b} && umoci tag --image ${layout}:v1 v2 && rm -rf ${b}`);
  // v1 was moved on by repack; re-point: v2 is what we just made. An opaque dir layer made with GNU tar:
  const l = join(base, 'opq');
  sh(`mkdir -p ${l}/etc/conf.d && : > ${l}/etc/conf.d/.wh..wh..opq && echo only > ${l}/etc/conf.d/only.conf`);
  sh(`tar -C ${l} -cf ${base}/opq.tar etc`); // umoci compresses it itself
  sh(`umoci raw add-layer --image ${layout}:v2 --tag v3 ${base}/opq.tar`);
  ociArchive = join(base, 'oci.tar');
  dockerArchive = join(base, 'docker.tar');
  // skopeo writes /var/lib/containers/cache/blob-info-cache-v1.boltdb and temporary files
  // in /var/tmp: it runs where only `base` is writable (it then keeps its cache in memory)
  const skopeo = (args: string) => execFileSync(...inReadOnlyHost(`skopeo --tmpdir ${base} ${args}`, [base]), { stdio: ['ignore', 'pipe', 'pipe'] });
  skopeo(`copy oci:${layout}:v3 oci-archive:${ociArchive}:v3`);
  skopeo(`copy oci:${layout}:v3 docker-archive:${dockerArchive}:example/app:v3`);
}, 120_000);

afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

function newStore(): Store {
  return Store.open(mkdtempSync(join(base, 'store-')));
}

function entries(dir: string): string[] {
  return (sh(`find . -mindepth 1 | sort`, dir)).trim().split('\n');
}

describe('image import', () => {
  test('OCI layout from umoci: layers in order, whiteouts and opaque marker kept, record written', async () => {
    const store = newStore();
    const r = await importImage(store, layout, { name: 'v3' });
    expect(r.image.name).toBe('v3');
    expect(r.image.layers).toHaveLength(3);
    const config = JSON.parse(readFileSync(join(layout, 'blobs/sha256', r.image.config.digest.slice(7)), 'utf8'));
    expect(r.image.layers.map((l) => l.diffId)).toEqual(config.rootfs.diff_ids);
    const lowers = resolveImageLowers(store.dir, 'v3');
    expect(lowers).toHaveLength(3);
    // top first: the opaque layer, then the delete layer, then the base
    expect(entries(lowers[0]!)).toEqual(['./etc', './etc/conf.d', './etc/conf.d/.wh..wh..opq', './etc/conf.d/only.conf']);
    expect(entries(lowers[1]!)).toContain('./work/.wh.message.txt');
    expect(entries(lowers[2]!)).toContain('./bin/hello');
    expect(store.image('v3').source).toBe('oci-layout');
  });

  test('several images in a layout: --name picks one, none is an error listing them', async () => {
    const store = newStore();
    await expect(importImage(store, layout)).rejects.toThrow(/several images.*v1.*v2.*v3|choose one/);
    const r = await importImage(store, layout, { name: 'v2' });
    expect(r.image.layers).toHaveLength(2);
    // v3 shares both of v2's layers: only its own top layer is unpacked
    const r3 = await importImage(store, layout, { name: 'v3' });
    expect(r3.layers.map((l) => l.reused)).toEqual([true, true, false]);
  });

  test('OCI archive and docker-archive (skopeo) give the same snapshots', async () => {
    const s1 = newStore();
    const a = await importImage(s1, ociArchive);
    expect(a.image.source).toBe('oci-archive');
    expect(a.image.name).toBe('v3');
    const s2 = newStore();
    const d = await importImage(s2, dockerArchive);
    expect(d.image.source).toBe('docker-archive');
    expect(d.image.name).toBe('docker.io/example/app:v3');
    expect(d.image.layers.map((l) => l.diffId)).toEqual(a.image.layers.map((l) => l.diffId));
    expect(d.image.config.digest).toBe(a.image.config.digest);
    // importing the docker archive into the first store reuses every snapshot
    const again = await importImage(s1, dockerArchive, { name: 'app' });
    expect(again.layers.every((l) => l.reused)).toBe(true);
    expect(s1.listImages().map((i) => i.name)).toEqual(['app', 'v3']);
    expect(readdirSync(join(s1.dir, 'tmp'))).toEqual([]);
  });

  test('a corrupted layer blob: named error, no image recorded, no snapshot', async () => {
    const bad = join(base, 'badlayout');
    sh(`cp -r ${layout} ${bad}`);
    const index = JSON.parse(readFileSync(join(bad, 'index.json'), 'utf8'));
    const mdesc = index.manifests.find((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name'] === 'v3');
    const manifest = JSON.parse(readFileSync(join(bad, 'blobs/sha256', mdesc.digest.slice(7)), 'utf8'));
    const top = join(bad, 'blobs/sha256', manifest.layers[2].digest.slice(7));
    const buf = readFileSync(top);
    buf[buf.length - 12]! ^= 0x55;
    writeFileSync(top, buf);
    const store = newStore();
    let err: unknown;
    try { await importImage(store, bad, { name: 'v3' }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FsError);
    expect((err as FsError).code).toBe('EBADMSG');
    expect((err as FsError).path).toBe(top);
    expect(store.listImages()).toEqual([]);
    // the two good layers below were imported (they are valid snapshots), the bad one not
    expect(readdirSync(join(store.dir, 'snapshots'))).toHaveLength(2);
    expect(readdirSync(join(store.dir, 'tmp'))).toEqual([]);
  });

  test('a docker archive whose layer is a symlink leading outside is refused', async () => {
    const dir = join(base, 'evil-docker');
    mkdirSync(dir);
    sh(`tar -C ${dir} -xf ${dockerArchive}`);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    const victim = join(base, 'secret');
    writeFileSync(victim, 'secret');
    rmSync(join(dir, m[0].Layers[0]));
    symlinkSync(victim, join(dir, m[0].Layers[0]));
    const evil = join(base, 'evil-docker.tar');
    sh(`tar -C ${dir} -cf ${evil} .`);
    const store = newStore();
    let err: unknown;
    try { await importImage(store, evil); } catch (e) { err = e; }
    expect((err as FsError).code).toBe('EINVAL');
    expect((err as FsError).path).toBe(m[0].Layers[0]);
    expect((err as Error).message).toMatch(/outside/);
    expect(store.listImages()).toEqual([]);
    expect(existsSync(victim)).toBe(true);
  });
});
