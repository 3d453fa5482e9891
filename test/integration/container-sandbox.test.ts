/**
 * The container sandbox of test/harness/containers.ts keeps its promises
 * without any container client: what a command writes where podman, buildah,
 * runc and conmon write (/etc/containers, /var/lib/containers, /run, /dev/shm,
 * /var/tmp, cgroups) stays out of the host, a process left running is found
 * through the sandbox's cgroups, reported and ended by PID, and close()
 * leaves no cgroup, mount or process behind.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ContainerSandbox, hostSnapshot, missingTools, snapshotDiff } from '../harness/containers.js';

const why = process.getuid?.() !== 0 ? 'needs root' : missingTools(['nsenter']).length > 0 ? 'missing util-linux nsenter' : undefined;

describe.skipIf(why !== undefined)(`container sandbox${why ? ` (${why})` : ''}`, () => {
  it('keeps writes off the host, finds and ends a leftover process, and removes its cgroups', async () => {
    const before = await hostSnapshot();
    const sb = await ContainerSandbox.open('selftest');
    let closed = false;
    try {
      const w = await sb.exec(['sh', '-c', `set -e
mkdir -p /var/lib/containers/storage /run/libpod /etc/containers/networks/x /sys/fs/cgroup/pids/libpod_parent
echo x > /etc/containers/storage.conf; echo y > /dev/shm/libpod_lock; echo z > /var/tmp/buildah-probe
for m in /dev/shm /run /var/lib/containers; do echo "$m $(findmnt -n -o FSTYPE -M $m | tail -1)"; done
cat /proc/self/cgroup | grep -c ':/$'
sleep 300 > /dev/null 2>&1 &
echo "pid $!"`]);
      expect(w.code, w.err).toBe(0);
      const lines = w.out.trim().split('\n');
      expect(lines.slice(0, 3)).toEqual(['/dev/shm tmpfs', '/run tmpfs', '/var/lib/containers tmpfs']);
      // the command sits at the root of every hierarchy of its cgroup namespace
      expect(Number(lines[3])).toBeGreaterThan(0);
      const sleeper = Number(lines[4]!.split(' ')[1]);
      // the sleep runs in the sandbox's cgroups (not in its own PID namespace: the host sees its PID)
      const procs = await sb.processes();
      expect([...procs.values()].some((c) => c.startsWith('sleep 300'))).toBe(true);
      expect(existsSync('/etc/containers/storage.conf')).toBe(false);
      expect(existsSync('/dev/shm/libpod_lock')).toBe(false);
      expect(existsSync('/var/tmp/buildah-probe')).toBe(false);
      expect(await sb.strayWrites()).toEqual(['/etc/containers/storage.conf']);
      // the cgroup made inside is a child of the sandbox's cgroup on the host
      const cg = await readFile(`/proc/${sb.holderPid}/cgroup`, 'latin1');
      expect(cg).toMatch(/stratafs-selftest-/);

      const left = await sb.close(500);
      closed = true;
      expect(left.some((l) => l.includes('sleep 300'))).toBe(true);
      expect(existsSync(`/proc/${sleeper}/cmdline`) && (await readFile(`/proc/${sleeper}/cmdline`, 'latin1')).startsWith('sleep')).toBe(false);
      expect(existsSync(`/proc/${sb.holderPid}/cmdline`) && (await readFile(`/proc/${sb.holderPid}/cmdline`, 'latin1')).includes('stratafs-sandbox')).toBe(false);
      expect(snapshotDiff(before, await hostSnapshot())).toEqual([]);
    } finally {
      if (!closed) await sb.close(0);
    }
  });
});
