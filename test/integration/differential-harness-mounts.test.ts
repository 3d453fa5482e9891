/**
 * The harness's mount handling must hold when a daemon hangs or dies: the
 * test process never blocks, the mount goes away (fusectl abort, lazy
 * unmount) and the daemon is killed by its PID.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mount, mountsAt, tempDir, unmountAll, type Impl } from '../harness/mounts.js';
import { withTimeout } from '../harness/proc.js';

afterAll(async () => {
  expect(await unmountAll()).toEqual([]);
});

async function layerSet(): Promise<{ lowers: string[]; upper: string; work: string; mnt: string }> {
  const d = await tempDir('mounts');
  const l = { lowers: [join(d, 'l0'), join(d, 'l1')], upper: join(d, 'u'), work: join(d, 'w'), mnt: join(d, 'mnt') };
  for (const p of [...l.lowers, l.upper, l.work, l.mnt]) await mkdir(p);
  return l;
}

/** running, not a zombie (a daemonized FUSE server's parent may never reap it) */
const alive = (pid: number) => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^[ZX]$/.test(st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
};

describe('mount handles', () => {
  for (const impl of ['kernel', 'fuse-overlayfs'] as Impl[]) {
    it(`${impl}: mounts, answers, unmounts with a plain umount`, async () => {
      const l = await layerSet();
      const h = await mount(impl, l, l.mnt);
      expect((await mountsAt(l.mnt)).length).toBe(1);
      if (impl === 'kernel') expect((await mountsAt(l.mnt))[0]!.options + (await mountsAt(l.mnt))[0]!.fsType).toContain('overlay');
      else expect(h.pids.length).toBeGreaterThan(0);
      const r = await h.unmount();
      expect(r.steps).toEqual(['umount']);
      expect(r.killed).toEqual([]);
      expect(await mountsAt(l.mnt)).toEqual([]);
      for (const p of h.pids) expect(alive(p)).toBe(false);
    });
  }

  it('fuse: a stopped (hung) daemon is recovered through fusectl abort and killed by PID', async () => {
    const l = await layerSet();
    const h = await mount('fuse-overlayfs', l, l.mnt);
    for (const p of h.pids) process.kill(p, 'SIGSTOP');
    // The test process only touches a hung mount with a timeout.
    await expect(withTimeout(stat(join(l.mnt, 'x')), 1000, 'stat on hung mount')).rejects.toThrow(/timed out/);
    const r = await h.unmount();
    expect(r.steps).toContain('fusectl abort');
    expect(r.killed.sort()).toEqual([...h.pids].sort());
    expect(await mountsAt(l.mnt)).toEqual([]);
  }, 60_000);

  it('fuse: a daemon that died leaves a dead mount that unmount removes', async () => {
    const l = await layerSet();
    const h = await mount('fuse-overlayfs', l, l.mnt);
    for (const p of h.pids) process.kill(p, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (h.pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // (a stat of the root could be answered from the kernel's attribute cache)
    await expect(withTimeout(readdir(l.mnt), 5000, 'readdir on dead mount')).rejects.toThrow(/ENOTCONN|ECONNABORTED/);
    await h.unmount();
    expect(await mountsAt(l.mnt)).toEqual([]);
  }, 60_000);

  it('a failed mount says why and leaves nothing', async () => {
    const l = await layerSet();
    await expect(mount('kernel', { lowers: [join(l.mnt, 'missing')], upper: l.upper, work: l.work }, l.mnt)).rejects.toThrow(/kernel mount of .* failed/);
    await expect(mount('fuse-overlayfs', { lowers: [join(l.mnt, 'missing')], upper: l.upper, work: l.work }, l.mnt)).rejects.toThrow(/fuse-overlayfs mount of .* failed/);
    expect(await mountsAt(l.mnt)).toEqual([]);
  });
});
