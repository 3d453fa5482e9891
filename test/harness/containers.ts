/**
 * A sandbox for container clients (podman, buildah, runc, conmon) that keeps
 * them off the host. One long-lived "holder" process owns:
 *
 * - a cgroup in every hierarchy, below the test process's own cgroup, and a
 *   cgroup namespace rooted there; the hierarchies are mounted afresh inside,
 *   so every cgroup a client makes (libpod_parent, conmon, buildah-*) is a
 *   child of the test's cgroup, and the cgroup tree is also the list of every
 *   process the clients started (containers, conmon, pause, mount daemons);
 * - a private mount namespace where /run, /dev/shm and /var/tmp are fresh
 *   tmpfs, /etc/containers, /var/lib and /var/cache are kernel overlays whose
 *   upper directories are in scratch, and /var/lib/containers,
 *   /var/cache/containers (podman's short-name alias lock) and
 *   /etc/containers/networks are tmpfs: whatever a client writes outside the
 *   roots its configuration gives it ends up in scratch or in memory. The
 *   run's scratch tree, the checkout and node stay reachable at their own
 *   paths wherever they live (ns-keep.sh binds them back when covered).
 *
 * Commands enter with `nsenter -m -C` after moving themselves into the test
 * cgroups. close() waits for the clients' processes to go, kills the ones that
 * stay (by PID, and reports them), ends the holder (which drops the namespace
 * and everything mounted in it) and removes the cgroups.
 *
 * hostSnapshot() lists what container clients write on a host when left
 * alone; tests take one before and after and require them equal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { appendFile, lstat, mkdir, readdir, readFile, readlink, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readMountInfo, REPO_ROOT, STRATAFS_BIN, tempDir, testRoot } from './mounts.js';
import { run, type RunResult } from './proc.js';

// ---------------------------------------------------------------- tools

/** Programs the container tests need, and the Debian package that has each. */
export const CLIENT_TOOLS: Record<string, { file: string; pkg: string }> = {
  podman: { file: '/usr/bin/podman', pkg: 'podman' },
  buildah: { file: '/usr/bin/buildah', pkg: 'buildah' },
  runc: { file: '/usr/sbin/runc', pkg: 'runc' },
  conmon: { file: '/usr/bin/conmon', pkg: 'conmon' },
  busybox: { file: '/bin/busybox', pkg: 'busybox-static' },
  'fuse-overlayfs': { file: '/usr/bin/fuse-overlayfs', pkg: 'fuse-overlayfs' },
  nsenter: { file: '/usr/bin/nsenter', pkg: 'util-linux' },
};

/** The packages among `names` whose program is absent (the reason a test skips). */
export function missingTools(names: string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    const t = CLIENT_TOOLS[n];
    if (!t) throw new Error(`unknown tool ${n}`);
    if (!existsSync(t.file)) out.push(t.pkg);
  }
  return out;
}

/** busybox-static's binary: /bin/busybox on Debian (/usr/bin/busybox through the /bin symlink). */
function busyboxPath(): string {
  return existsSync('/bin/busybox') ? '/bin/busybox' : '/usr/bin/busybox';
}

// ---------------------------------------------------------------- the base image

/**
 * A tiny image root: busybox-static with its applet links, root and a user
 * 1000, a home owned by the user, and /opt content that later layers copy up,
 * delete and rename. Returns the tar's path (numeric owners, as `podman import` wants).
 */
export async function buildBaseTar(dir: string): Promise<string> {
  const root = join(dir, 'base-rootfs');
  const tar = join(dir, 'base.tar');
  const bb = busyboxPath();
  const script = `set -eu
R=${root}
mkdir -p $R/bin $R/etc $R/tmp $R/root $R/home/user $R/opt/keep $R/opt/old/sub $R/opt/dir-del $R/dev $R/proc $R/sys
cp ${bb} $R/bin/busybox
for a in $($R/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox $R/bin/$a; done
printf 'root:x:0:0:root:/root:/bin/sh\\nuser:x:1000:1000:user:/home/user:/bin/sh\\n' > $R/etc/passwd
printf 'root:x:0:\\nuser:x:1000:\\n' > $R/etc/group
echo keep > $R/opt/keep/file
echo a > $R/opt/old/a
echo b > $R/opt/old/sub/b
echo del > $R/opt/del
echo x > $R/opt/dir-del/x
chmod 1777 $R/tmp; chmod 0700 $R/root
chown 1000:1000 $R/home/user
tar -C $R --numeric-owner -cf ${tar} .
`;
  const r = await run('bash', ['-c', script], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`building the base image tar failed: ${r.stderr.toString()}`);
  return tar;
}

// ---------------------------------------------------------------- host state

/** What container clients write on a host when nothing redirects them; must be equal before and after a test. */
const HOST_PATHS = [
  '/var/lib/containers', '/var/cache/containers', '/var/lib/cni', '/etc/containers', '/etc/cni',
  '/run/containers', '/run/libpod', '/run/runc', '/run/crun', '/run/netns', '/run/user/0',
  '/root/.config/containers', '/root/.local/share/containers', '/var/tmp', '/dev/fuse',
];

async function treeLines(p: string, out: string[], depth: number, skip: ReadonlySet<string>): Promise<void> {
  // the run's own scratch (TMPDIR may put it in /var/tmp) is the tests' to change
  if (skip.has(p)) return;
  let st;
  try {
    st = await lstat(p, { bigint: true });
  } catch {
    out.push(`${p} absent`);
    return;
  }
  let extra = '';
  if (st.isFile() && st.size < 1_000_000n) extra = createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 16);
  if (st.isSymbolicLink()) extra = await readlink(p);
  out.push(`${p} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : st.size} ${st.isDirectory() ? '' : `m${st.mtimeNs}`} ${extra}`);
  if (st.isDirectory() && depth > 0) {
    for (const n of (await readdir(p)).sort()) await treeLines(join(p, n), out, depth - 1, skip);
  }
}

/** The cgroup directories at the top of every hierarchy and below the test process's own cgroup. */
async function cgroupLines(out: string[]): Promise<void> {
  for (const h of await cgroupHierarchies()) {
    for (const base of new Set([h.mountPoint, h.ownDir])) {
      for (const n of (await readdir(base, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort()) {
        out.push(`cgroup ${join(base, n)}`);
      }
    }
  }
}

export async function hostSnapshot(): Promise<string[]> {
  const out: string[] = [];
  const scratch = new Set([testRoot(), realpathSync(testRoot())]);
  for (const p of HOST_PATHS) await treeLines(p, out, 6, scratch);
  // /dev/shm: podman's lock segment (libpod_lock, libpod_rootless_lock_UID)
  for (const n of (await readdir('/dev/shm').catch(() => [] as string[])).filter((n) => n.startsWith('libpod'))) out.push(`/dev/shm/${n}`);
  await cgroupLines(out);
  return out;
}

/** Lines that differ between two snapshots, as "- old" / "+ new". */
export function snapshotDiff(before: string[], after: string[]): string[] {
  const b = new Set(before);
  const a = new Set(after);
  return [...before.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...after.filter((l) => !b.has(l)).map((l) => `+ ${l}`)];
}

// ---------------------------------------------------------------- cgroups

interface Hierarchy {
  mountPoint: string;
  fsType: 'cgroup' | 'cgroup2';
  /** super options: the controllers (or name=) a v1 hierarchy is mounted with */
  superOpts: string;
  /** the test process's own cgroup in this hierarchy, as a path under mountPoint */
  ownDir: string;
}

async function cgroupHierarchies(): Promise<Hierarchy[]> {
  const text = await readFile('/proc/self/mountinfo', 'latin1');
  const own = (await readFile('/proc/self/cgroup', 'latin1')).split('\n').filter(Boolean).map((l) => {
    const i = l.indexOf(':');
    const j = l.indexOf(':', i + 1);
    return { id: l.slice(0, i), ctrls: l.slice(i + 1, j).split(','), path: l.slice(j + 1) };
  });
  const out: Hierarchy[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0) continue;
    const fsType = f[sep + 1];
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const mountPoint = f[4]!;
    const superOpts = f[sep + 3] ?? '';
    let path: string | undefined;
    if (fsType === 'cgroup2') path = own.find((o) => o.id === '0')?.path;
    else {
      const opts = superOpts.split(',');
      path = own.find((o) => o.id !== '0' && o.ctrls.some((c) => c !== '' && opts.includes(c)))?.path;
    }
    if (path === undefined) continue;
    // A mount of a sub-tree (mountinfo root other than /) is not the hierarchy's root; skip it.
    if (f[3] !== '/') continue;
    out.push({ mountPoint, fsType, superOpts, ownDir: join(mountPoint, path) });
  }
  return out;
}

async function cgroupTreePids(dir: string): Promise<number[]> {
  const out: number[] = [];
  const walk = async (d: string): Promise<void> => {
    const procs = await readFile(join(d, 'cgroup.procs'), 'latin1').catch(() => '');
    for (const l of procs.split('\n')) if (l) out.push(Number(l));
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
    }
  };
  await walk(dir);
  return out;
}

/** cgroup directories below dir, deepest first */
async function cgroupTreeDirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
    }
    out.push(d);
  };
  await walk(dir);
  return out;
}

function procState(text: string): string {
  return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3);
}

async function liveCmdline(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => undefined);
  if (stat === undefined || /[ZX]/.test(procState(stat))) return undefined;
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => undefined);
  return cmd === undefined ? undefined : cmd.split('\0').filter(Boolean).join(' ');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the sandbox

export interface Timed extends RunResult {
  ms: number;
  out: string;
  err: string;
}

const HOLDER_INNER = `set -eu
S=$1
# the run's scratch, the checkout and node: kept reachable below the mounts that cover /run,
# /var/tmp, /dev/shm, /var/lib and /var/cache, wherever they live (ns-keep.sh)
. "$2"
shift 2
keep_open "$@"
# cgroup hierarchies mounted afresh: rooted at this cgroup namespace, i.e. the test's cgroups
while read -r mp fstype sopts; do
  umount "$mp"
  if [ "$fstype" = cgroup2 ]; then mount -t cgroup2 cgroup2 "$mp"; else mount -t cgroup -o "$sopts" cgroup "$mp"; fi
done < "$S/cgmounts"
mount -t tmpfs -o size=64m,mode=755 tmpfs /run
mount -t tmpfs -o size=64m,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o size=256m,mode=1777 tmpfs /var/tmp
keep_bind
for d in etc-containers var-lib var-cache; do mkdir -p "$S/ov/$d/u" "$S/ov/$d/w"; done
mount -t overlay overlay -o "lowerdir=/etc/containers,upperdir=$S/ov/etc-containers/u,workdir=$S/ov/etc-containers/w" /etc/containers
mkdir -p /etc/containers/networks
mount -t tmpfs -o size=1m tmpfs /etc/containers/networks
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$S/ov/var-lib/u,workdir=$S/ov/var-lib/w" /var/lib
mkdir -p /var/lib/containers
mount -t tmpfs -o size=1g,mode=700 tmpfs /var/lib/containers
mount -t overlay overlay -o "lowerdir=/var/cache,upperdir=$S/ov/var-cache/u,workdir=$S/ov/var-cache/w" /var/cache
mkdir -p /var/cache/containers
mount -t tmpfs -o size=16m,mode=700 tmpfs /var/cache/containers
keep_bind
keep_close
echo ready
exec -a "stratafs-sandbox $S" sleep infinity
`;

/** Enters the sandbox: into the test cgroups, then the holder's mount and cgroup namespaces. */
const ENTER = `S=$1; shift
while read -r f; do echo $$ > "$f"; done < "$S/cgprocs"
# no --wd: nsenter opens it before entering, leaving a cwd outside the new root (Go's getwd: ENOENT);
# setns() to a mount namespace puts cwd and root at that namespace's root anyway
exec nsenter -t "$(cat "$S/holder.pid")" -m -C -- "$@"
`;

export class ContainerSandbox {
  private constructor(
    /** scratch directory on the host (visible inside the sandbox at the same path) */
    readonly dir: string,
    readonly holderPid: number,
    private readonly holder: ChildProcess,
    private readonly holderExit: Promise<void>,
    private readonly cgDirs: string[],
  ) {}

  static async open(name: string): Promise<ContainerSandbox> {
    const dir = await tempDir(`sandbox-${name}`);
    const cgName = `stratafs-${name}-${process.pid}-${Date.now().toString(36)}`;
    const hier = await cgroupHierarchies();
    if (hier.length === 0) throw new Error('no cgroup hierarchy mounted');
    const cgDirs: string[] = [];
    const keep = [testRoot(), REPO_ROOT, process.execPath].map((p) => realpathSync(p)).sort((a, b) => a.length - b.length);
    const holder = spawn('bash', ['-euc', `read -r go; exec unshare -m -C --propagation private -- bash -euc '${HOLDER_INNER.replace(/'/g, `'\\''`)}' holder "$@"`,
      'holder', dir, join(REPO_ROOT, 'test', 'harness', 'ns-keep.sh'), ...keep], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // libmount makes /run/mount for its utab on the host otherwise (before /run is a tmpfs)
      env: { ...process.env, LC_ALL: 'C', LIBMOUNT_UTAB: join(dir, 'utab') },
    });
    const holderExit = new Promise<void>((resolve) => holder.on('exit', () => resolve()));
    let err = '';
    holder.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const pid = holder.pid!;
    await mkdir(join(testRoot(), '.pids'), { recursive: true });
    await appendFile(join(testRoot(), '.pids', `${process.pid}`), `${pid}\tcontainer sandbox holder ${dir}\n`);
    try {
      for (const h of hier) {
        const d = join(h.ownDir, cgName);
        await mkdir(d);
        cgDirs.push(d);
        // a v1 cpuset cgroup takes no task before it has cpus and mems
        if (existsSync(join(d, 'cpuset.cpus'))) {
          await writeFile(join(d, 'cpuset.cpus'), await readFile(join(h.ownDir, 'cpuset.cpus'), 'latin1'));
          await writeFile(join(d, 'cpuset.mems'), await readFile(join(h.ownDir, 'cpuset.mems'), 'latin1'));
        }
        await writeFile(join(d, 'cgroup.procs'), `${pid}\n`);
      }
      await writeFile(join(dir, 'cgmounts'), hier.map((h) => `${h.mountPoint} ${h.fsType} ${h.superOpts}\n`).join(''));
      await writeFile(join(dir, 'cgprocs'), cgDirs.map((d) => `${join(d, 'cgroup.procs')}\n`).join(''));
      await writeFile(join(dir, 'holder.pid'), `${pid}\n`);
      await writeFile(join(dir, 'enter.sh'), ENTER);
      holder.stdin!.end('go\n');
      const ready = await new Promise<boolean>((resolve) => {
        let out = '';
        const t = setTimeout(() => resolve(false), 15_000);
        holder.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready\n')) { clearTimeout(t); resolve(true); }
        });
        holder.on('exit', () => { clearTimeout(t); resolve(false); });
      });
      if (!ready) throw new Error(`container sandbox did not come up: ${err.trim()}`);
    } catch (e) {
      holder.kill('SIGKILL');
      await holderExit;
      for (const d of cgDirs.reverse()) await rmdir(d).catch(() => undefined);
      throw e;
    }
    return new ContainerSandbox(dir, pid, holder, holderExit, cgDirs);
  }

  /** Runs argv inside the sandbox; never throws on failure. ms: wall time of the whole command. */
  async exec(argv: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: Buffer } = {}): Promise<Timed> {
    const t0 = process.hrtime.bigint();
    const r = await run('sh', ['-c', ENTER, 'enter', this.dir, ...argv], { timeoutMs: opts.timeoutMs ?? 120_000, env: opts.env, input: opts.input });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    return { ...r, ms, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
  }

  /**
   * What commands wrote into /etc/containers, /var/lib and /var/cache outside the tmpfs the
   * sandbox mounts there (the overlays' upper directories): on a host, these
   * writes would have landed in its /etc and /var/lib.
   */
  async strayWrites(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (d: string, rel: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
        out.push(`${rel}/${e.name}`);
        if (e.isDirectory()) await walk(join(d, e.name), `${rel}/${e.name}`);
      }
    };
    await walk(join(this.dir, 'ov', 'etc-containers', 'u'), '/etc/containers');
    await walk(join(this.dir, 'ov', 'var-lib', 'u'), '/var/lib');
    await walk(join(this.dir, 'ov', 'var-cache', 'u'), '/var/cache');
    // the mount points the sandbox made for its tmpfs (when the host lacks them)
    const made = new Set(['/etc/containers/networks', '/var/lib/containers', '/var/cache/containers']);
    return out.filter((p) => !made.has(p)).sort();
  }

  /** PIDs in the sandbox's cgroups other than the holder: every process a client left running. */
  async processes(): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    for (const d of this.cgDirs) {
      for (const pid of await cgroupTreePids(d)) {
        if (pid === this.holderPid || out.has(pid)) continue;
        const cmd = await liveCmdline(pid);
        if (cmd !== undefined) out.set(pid, cmd);
      }
    }
    return out;
  }

  /**
   * Waits up to graceMs for the clients' processes to end; kills what is left
   * (by PID) and returns their descriptions; then ends the holder and removes
   * the cgroups. Idempotent.
   */
  async close(graceMs = 10_000): Promise<string[]> {
    const left: string[] = [];
    if (this.cgDirs.length === 0) return left;
    const end = Date.now() + graceMs;
    let procs = await this.processes();
    while (procs.size > 0 && Date.now() < end) {
      await sleep(100);
      procs = await this.processes();
    }
    for (const [pid, cmd] of procs) left.push(`pid ${pid}: ${cmd}`);
    for (let round = 0; round < 20 && procs.size > 0; round++) {
      for (const pid of procs.keys()) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await sleep(100);
      procs = await this.processes();
    }
    this.holder.kill('SIGKILL');
    await this.holderExit;
    // cgroups empty a moment after their last task is reaped
    for (const top of this.cgDirs.splice(0).reverse()) {
      for (const d of await cgroupTreeDirs(top)) {
        for (let i = 0; ; i++) {
          try {
            await rmdir(d);
            break;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
            if (i >= 50) { left.push(`cgroup ${d} could not be removed: ${String(e)}`); break; }
            await sleep(100);
          }
        }
      }
    }
    return left;
  }
}

// ---------------------------------------------------------------- podman and buildah configuration

export type Driver = 'kernel' | 'fuse-overlayfs' | 'stratafs';
export const DRIVERS: readonly Driver[] = ['kernel', 'fuse-overlayfs', 'stratafs'];

/**
 * A mount program wrapper that appends its argv (one line, NUL-free) to
 * argvLog and execs the driver's program: for stratafs the package's bin
 * (bin/stratafs, what the README has users name in storage.conf), with the
 * tests' node first on PATH (the launcher runs `node` from PATH).
 * containers/storage runs the mount program with its own environment, so
 * STRATAFS_RUNTIME_DIR reaches stratafs.
 */
export async function writeMountProgram(path: string, driver: Exclude<Driver, 'kernel'>, argvLog: string): Promise<void> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const target = driver === 'stratafs' ? STRATAFS_BIN : '/usr/bin/fuse-overlayfs';
  await writeFile(path, `#!/bin/sh
# argv as containers/storage passes it, one line per mount
printf '%s\\n' "$*" >> ${q(argvLog)}
export PATH=${q(dirname(process.execPath))}:$PATH
exec ${q(target)} "$@"
`, { mode: 0o755 });
}

export interface ClientConfig {
  driver: Driver;
  /** environment for podman/buildah commands */
  env: NodeJS.ProcessEnv;
  /** file the mount program wrapper logs its argv to (absent for the kernel driver) */
  argvLog?: string;
}

/**
 * storage.conf and containers.conf for one driver, in `dir` (scratch). The
 * graph root and run root are the defaults (/var/lib/containers/storage,
 * /run/containers/storage): inside the sandbox they are tmpfs.
 * mountProgram: the wrapper path (stratafs/fuse-overlayfs); storageConf: an
 * explicit storage.conf text instead (the README's snippet).
 */
export async function clientConfig(dir: string, driver: Driver, opts: { storageConf?: string } = {}): Promise<ClientConfig> {
  await mkdir(dir, { recursive: true });
  let argvLog: string | undefined;
  let mountProgram: string | undefined;
  if (driver !== 'kernel' && opts.storageConf === undefined) {
    argvLog = join(dir, 'mount-program.argv');
    mountProgram = join(dir, `mount-${driver}`);
    await writeMountProgram(mountProgram, driver, argvLog);
  }
  const storageConf = opts.storageConf ?? `[storage]
driver = "overlay"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
${mountProgram ? `[storage.options.overlay]\nmount_program = "${mountProgram}"\n` : ''}`;
  await writeFile(join(dir, 'storage.conf'), storageConf);
  // runc: crun refuses this machine's cgroups; cgroupfs: no systemd; file events: no journald.
  // default_ulimits: without the key, rootful podman 4.3 asks runc for more open files and
  // processes than this sandbox's hard limits, and raising a hard limit needs CAP_SYS_RESOURCE,
  // which the sandbox lacks ("error setting rlimit type 7/6: operation not permitted"); an empty
  // list makes the containers inherit podman's own limits.
  // network_config_dir: podman 4.3's CNI backend takes a lock file in its network directory at
  // every start, netns none or not; left at /etc/cni/net.d it created the host's
  // /etc/cni/net.d/cni.lock on a fresh machine (the sandbox covers /etc/containers, not /etc/cni).
  await writeFile(join(dir, 'containers.conf'), `[containers]
netns = "none"
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_config_dir = "${join(dir, 'cni')}"
`);
  for (const d of ['home', 'tmp', 'xdg', 'stratafs-run', 'cni']) await mkdir(join(dir, d), { recursive: true, mode: 0o700 });
  return {
    driver,
    argvLog,
    env: {
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
      HOME: join(dir, 'home'),
      TMPDIR: join(dir, 'tmp'),
      XDG_RUNTIME_DIR: join(dir, 'xdg'),
      STRATAFS_RUNTIME_DIR: join(dir, 'stratafs-run'),
      PWD: '/',
    },
  };
}

// ---------------------------------------------------------------- tar listings

/**
 * A comparable listing of a tar archive: one line per entry with type, mode,
 * owner, size, link target and a hash of the content; no times. Needs GNU tar
 * (`--to-command`).
 */
export async function tarListing(tarPath: string): Promise<string[]> {
  // --to-command pipes regular files only and creates nothing; the cwd is an empty scratch dir all the same
  const script = `set -eu
mkdir -p "$1.x" && cd "$1.x"
tar -xf "$1" --to-command='printf "%s\\t%s\\t%s:%s\\t%s\\t%s\\t" "$TAR_FILETYPE" "$TAR_MODE" "$TAR_UID" "$TAR_GID" "$TAR_SIZE" "$TAR_FILENAME"; sha256sum | cut -c1-16'
tar --numeric-owner -tvf "$1" | awk '$1 !~ /^-/ { t=$6; for (i = 7; i <= NF; i++) t = t " " $i; printf "%s\\t%s\\t%s\\t%s\\n", $1, $2, $3, t }'
`;
  const r = await run('bash', ['-c', script, 'tarls', tarPath], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`listing ${tarPath} failed: ${r.stderr.toString()}`);
  const norm = (n: string): string => n.replace(/^\.\//, '').replace(/^\//, '').replace(/\/$/, '') || '.';
  return r.stdout.toString('utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.split('\t');
    // regular: type mode owner size name hash; others: perms owner size "name[ -> target]"
    if (f.length === 6) return `${norm(f[4]!)} f ${f[1]} ${f[2]} ${f[3]} ${f[5]}`;
    const [name, ...rest] = f[3]!.split(' ');
    return `${norm(name!)} ${f[0]} ${f[1]!.replace('/', ':')} ${f[2]} ${rest.join(' ')}`.trimEnd();
  }).sort();
}

export { readMountInfo };
