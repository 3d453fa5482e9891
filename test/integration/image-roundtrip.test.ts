/**
 * The round trip of issue 6, on real stratafs mounts: import an image built by
 * umoci, mount it with an upper, run a workload, commit the upper, import the
 * new layer, mount image + layer read-only: the tree must be the live mount's,
 * as the differential harness's comparer (test/harness/tree.ts) sees it.
 */
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { mount, tempDir, type MountHandle } from '../harness/mounts.js';
import { snapshot, compareTrees, showPath } from '../harness/tree.js';
import { Store, resolveImageLowers } from '../../src/image/store.js';
import { importImage } from '../../src/image/import-image.js';
import { importLayer } from '../../src/image/import-layer.js';
import { commit } from '../../src/image/commit.js';
import { diff } from '../../src/image/diff.js';

let base: string;
const handles: MountHandle[] = [];
const sh = (cmd: string, cwd?: string): string => execFileSync('bash', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString('latin1');

beforeAll(async () => {
  base = await tempDir('image-roundtrip-');
});
afterAll(async () => {
  for (const h of handles.reverse()) await h.unmount().catch(() => undefined);
  if (base) rmSync(base, { recursive: true, force: true });
});

describe('image round trip through stratafs', () => {
  test('import -> mount rw -> workload -> commit -> import -> mount ro: same tree', async () => {
    const start = BigInt(Date.now()) * 1_000_000n - 5_000_000_000n;
    // the image: a base layer and a layer that deletes a file and makes a dir opaque
    const layout = join(base, 'layout');
    const b = join(base, 'bundle');
    sh(`umoci init --layout ${layout} && umoci new --image ${layout}:t && umoci unpack --image ${layout}:t ${b}`);
    const r = `${b}/rootfs`;
    sh(`mkdir -p ${r}/etc/app ${r}/usr/lib/mod/sub ${r}/data ${r}/bin && echo conf > ${r}/etc/app/a.conf && echo old > ${r}/etc/app/b.conf`);
    sh(`echo lib > ${r}/usr/lib/mod/lib.so && echo deep > ${r}/usr/lib/mod/sub/deep && echo d > ${r}/data/keep && echo gone > ${r}/data/gone`);
    sh(`printf '#!/bin/sh\\n' > ${r}/bin/tool && chmod 4755 ${r}/bin/tool && ln -s tool ${r}/bin/alias && ln ${r}/data/keep ${r}/data/keep.hard`);
    sh(`touch -d '2020-02-02 02:02:02.5' ${r}/etc/app/a.conf && setfattr -n user.label -v base ${r}/data/keep`);
    sh(`umoci repack --image ${layout}:t ${b} && rm -rf ${b}`);
    const l2 = join(base, 'l2');
    sh(`mkdir -p ${l2}/data ${l2}/etc/app && : > ${l2}/data/.wh.gone && : > ${l2}/etc/app/.wh..wh..opq && echo only > ${l2}/etc/app/only.conf`);
    sh(`tar -C ${l2} -cf ${base}/l2.tar . && umoci raw add-layer --image ${layout}:t ${base}/l2.tar`);

    const store = Store.open(join(base, 'store'));
    await importImage(store, layout, { name: 'rt' });
    const lowers = resolveImageLowers(store, 'rt');
    const upper = join(base, 'upper');
    const work = join(base, 'work');
    const mnt = join(base, 'mnt');
    for (const d of [upper, work, mnt]) mkdirSync(d);

    const rw = await mount('stratafs', { lowers, upper, work }, mnt);
    handles.push(rw);
    sh([
      `echo new > new.txt && printf 'caf\\xe9 bytes' > $'caf\\xe9'`,
      `echo more >> etc/app/only.conf`,
      `rm data/keep.hard && rm bin/alias && ln -s keep data/keep.link`,
      `rm -r etc/app && mkdir etc/app && echo fresh > etc/app/fresh.conf`,
      `mv usr/lib/mod usr/lib/mod2 && echo added > usr/lib/mod2/sub/added`,
      `chmod 700 data && chown 12:34 new.txt && touch -d '2019-09-09 09:09:09.123456789' new.txt`,
      `mkfifo data/pipe && ln new.txt new.hard && setfattr -n user.label -v changed data/keep`,
      `mkdir -p deep/a/b/c && echo x > deep/a/b/c/x && truncate -s 1M deep/sparse`,
    ].join(' && '), mnt);
    // After `ln`, the kernel keeps the first name's cached attributes (nlink 1) for
    // the attribute timeout (1 s): libfuse 2.9 without use_ino gives each name its
    // own node. Let that cache expire so the snapshot shows the mount's real state.
    await new Promise((res) => setTimeout(res, 1500));
    const live = await snapshot(mnt);
    await rw.unmount();

    const changes = diff(upper, lowers).map((c) => `${c.kind} ${showPath(c.path)}`);
    expect(changes).toContain('D /data/keep.hard');
    expect(changes).toContain('A /usr/lib/mod2/sub/deep');
    expect(changes).toContain('D /usr/lib/mod');

    const layerFile = join(base, 'changes.tar.gz');
    const c = await commit({ upper, lowers, output: layerFile });
    expect(c.redirects).toBe(1);
    const imp = await importLayer(store, layerFile);
    const mnt2 = join(base, 'ro');
    mkdirSync(mnt2);
    const ro = await mount('stratafs', { lowers: [imp.snapshot, ...lowers] }, mnt2);
    handles.push(ro);
    const again = await snapshot(mnt2);
    await ro.unmount();
    const diffs = compareTrees(live, again, { mtimeCutoffNs: start });
    expect(diffs.map((d) => `${showPath(d.path)} ${d.field}: ${d.a} vs ${d.b}`)).toEqual([]);
    expect(live.size).toBeGreaterThan(25);
  });
});
