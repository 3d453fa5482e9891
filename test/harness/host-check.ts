/**
 * What a test run must leave as it found it, and the check that it did.
 *
 * The run's globalSetup (test/integration/setup.ts) takes a HostState before the
 * first test and its teardown compares a second one with it; any difference not
 * allowed below fails the run with the list of what changed, so a human can tell
 * our damage from a neighbour's. Everything a test makes lives under the run's
 * test root (STRATAFS_TEST_ROOT; TMPDIR and STRATAFS_RUNTIME_DIR point there), so
 * nothing outside it may change:
 *  - files: every entry of the watched trees (find -xdev), by type, mode, owner,
 *    size and ctime. Any write, truncate, chmod, chown, xattr change or link-count
 *    change moves an inode's ctime, which no unprivileged caller can set back; new
 *    and removed entries show as such. Reads change nothing recorded here (no atime).
 *    `hash` watches (the sentinels) also record a sha256 of each file's content.
 *  - mounts: the whole mount table of the host namespace, added or removed;
 *  - loop devices: backing files of /sys/block/loop*;
 *  - /dev/fuse: mode, owner, device;
 *  - processes: those living in a namespace (mnt, pid, user, net, ipc, uts, cgroup)
 *    that did not exist when the run started;
 *  - installed Debian packages (the apt/dpkg files are not watched, see APT_STATE).
 * The run's own leftovers (mounts under the root, processes carrying the run's
 * marker) are found and removed by the teardown itself: see setup.ts.
 *
 * The lists are made for CI, one run on a clean machine. On a shared machine other
 * people's work shows up too: STRATAFS_HOST_CHECK_ALLOW=/path:/other (prefixes of
 * paths, mount points, backing files, or of an argument or cwd of a process) lets
 * such known noise pass; the report then lists what it let pass and why.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';

/** One tree (or file) to watch. */
export interface Watch {
  path: string;
  /** how deep below `path` (0: the entry itself); all levels when left out */
  depth?: number;
  /** prefixes left out (whole subtrees), with the reason shown in reports */
  exclude?: readonly { path: string; why: string }[];
  /** record names, types and modes only: times and sizes of the entries change with use (e.g. /tmp itself) */
  namesOnly?: boolean;
  /** record a content hash of every regular file (sentinels) */
  hash?: boolean;
}

/**
 * Package-manager state that the test preparation (test/prepare-machine.mjs, which
 * runs before the baseline in `npm test`) and unattended apt may change, and
 * journald's files: none of it is ours, and a test never writes there.
 */
export const APT_STATE: readonly { path: string; why: string }[] = [
  { path: '/var/lib/apt', why: 'apt state (test preparation)' },
  { path: '/var/lib/dpkg', why: 'dpkg state (test preparation)' },
  { path: '/var/lib/ucf', why: 'conffile state of package installs (test preparation)' },
  { path: '/var/cache/apt', why: 'apt cache (test preparation)' },
  { path: '/var/cache/debconf', why: 'debconf cache (test preparation)' },
  { path: '/var/cache/ldconfig', why: 'ldconfig aux cache (package triggers)' },
  { path: '/var/cache/man', why: 'man-db cache (package triggers)' },
  { path: '/var/log/apt', why: 'apt log (test preparation)' },
  { path: '/var/log/dpkg.log', why: 'dpkg log (test preparation)' },
  { path: '/var/log/alternatives.log', why: 'update-alternatives log (test preparation)' },
  { path: '/var/log/journal', why: 'journald' },
];

/** /run entries of the system's own daemons (never written by a test). */
export const RUN_NOT_OURS: readonly { path: string; why: string }[] = [
  { path: '/run/systemd', why: 'systemd' },
  { path: '/run/dbus', why: 'dbus' },
  { path: '/run/utmp', why: 'login records' },
  { path: '/run/sshd', why: 'sshd' },
  { path: '/run/sshd.pid', why: 'sshd' },
  { path: '/run/postgresql', why: 'postgresql' },
];

/**
 * The host paths a run must not change. `root` is the run's test root (under /tmp),
 * `repo` the checkout (it may lie under /root or /home in CI; vitest and the build
 * write there, and it is the project's own tree).
 */
export function hostWatches(root: string, repo: string): Watch[] {
  const own = [{ path: root, why: 'the run\'s test root' }, { path: repo, why: 'the repository checkout' }];
  return [
    { path: '/etc', exclude: own },
    { path: '/root', exclude: own },
    { path: '/home', exclude: own },
    { path: '/usr/local', exclude: own },
    { path: '/opt', exclude: own },
    { path: '/srv', exclude: own },
    { path: '/var', exclude: [...APT_STATE, ...own] },
    { path: '/run', exclude: [...RUN_NOT_OURS, ...own] },
    // /tmp holds the run's root: its other entries must be the same ones before and after
    { path: '/tmp', depth: 1, namesOnly: true, exclude: own },
    { path: '/dev/shm', exclude: own },
    // setuid helpers the FUSE and rootless tests use: never chmod'ed or replaced
    ...['/usr/bin/fusermount3', '/usr/bin/fusermount', '/usr/bin/newuidmap', '/usr/bin/newgidmap', '/usr/bin/fuse-overlayfs']
      .filter((p) => existsSync(p)).map((path) => ({ path, depth: 0 })),
  ];
}

/** path -> what was recorded for it */
export type FileState = Map<string, string>;

function execBuffer(file: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'buffer', maxBuffer: 1 << 30 }, (err, stdout, stderr) => {
      // find exits 1 when an entry vanished during the walk (or one is unreadable): the rest is still good
      if (err && typeof err.code !== 'number') reject(new Error(`${file}: ${String(err)}: ${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

/** Records every watched entry (find: C speed, about 1 s for 400k entries). */
export async function captureFiles(watches: readonly Watch[]): Promise<FileState> {
  const out: FileState = new Map();
  for (const w of watches) {
    if (!existsSync(w.path)) {
      out.set(w.path, '(absent)');
      continue;
    }
    const args = [w.path, '-xdev'];
    if (w.depth !== undefined) args.push('-maxdepth', String(w.depth));
    const ex = (w.exclude ?? []).filter((e) => e.path === w.path || e.path.startsWith(w.path.endsWith('/') ? w.path : w.path + '/'));
    if (ex.length) {
      args.push('(');
      // -path takes a glob: escape its metacharacters
      ex.forEach((e, i) => args.push(...(i ? ['-o'] : []), '-path', e.path.replace(/[*?[\]\\]/g, '\\$&')));
      args.push(')', '-prune', '-o');
    }
    // %C@: ctime with nanoseconds; %p last, NUL-terminated: names may hold any byte but NUL
    args.push('-printf', w.namesOnly ? '%y %m %U:%G\t%p\\0' : '%y %m %U:%G %s %C@\t%p\\0');
    const text = (await execBuffer('find', args)).toString('latin1');
    for (const rec of text.split('\0')) {
      if (!rec) continue;
      const tab = rec.indexOf('\t');
      out.set(rec.slice(tab + 1), rec.slice(0, tab));
    }
    if (w.hash) {
      for (const [p, meta] of out) {
        if (meta.startsWith('f ') && (p === w.path || p.startsWith(w.path + '/'))) {
          const sum = createHash('sha256').update(await readFile(Buffer.from(p, 'latin1'))).digest('hex').slice(0, 16);
          out.set(p, `${meta} sha256:${sum}`);
        }
      }
    }
  }
  return out;
}

/** Allowed prefixes of STRATAFS_HOST_CHECK_ALLOW (colon-separated absolute paths). */
export function allowFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.STRATAFS_HOST_CHECK_ALLOW ?? '').split(':').filter((p) => p.startsWith('/')).map((p) => p.replace(/\/+$/, '') || '/');
}

export function underAny(p: string, prefixes: readonly string[]): string | undefined {
  return prefixes.find((a) => p === a || p.startsWith(a === '/' ? '/' : a + '/'));
}

export interface Change {
  what: string;
  /** set when STRATAFS_HOST_CHECK_ALLOW let it pass */
  allowedBy?: string;
}

const show = (p: string): string => JSON.stringify(p).slice(1, -1);

/** Differences between two FileStates, one line each, sorted by path. */
export function diffFiles(before: FileState, after: FileState, allow: readonly string[] = []): Change[] {
  const out: { p: string; c: Change }[] = [];
  const add = (p: string, what: string) => {
    const a = underAny(p, allow);
    out.push({ p, c: { what, ...(a ? { allowedBy: a } : {}) } });
  };
  for (const [p, was] of before) {
    const now = after.get(p);
    if (now === undefined) add(p, `removed: ${show(p)} (was ${was})`);
    else if (now !== was) add(p, `changed: ${show(p)}: ${was} -> ${now}`);
  }
  for (const [p, now] of after) if (!before.has(p)) add(p, `created: ${show(p)} (${now})`);
  return out.sort((a, b) => (a.p < b.p ? -1 : a.p > b.p ? 1 : 0)).map((x) => x.c);
}

// ------------------------------------------------------------- mounts, loops, /dev/fuse, namespaces

/** "mountpoint fstype source" of every mount this process sees. */
export async function mountKeys(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'latin1');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const un = (s: string | undefined) => (s ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.add(`${un(f[4])} ${f[sep + 1] ?? ''} ${un(f[sep + 2])}`);
  }
  return out;
}

export function diffMounts(before: Set<string>, after: Set<string>, allow: readonly string[]): Change[] {
  const out: Change[] = [];
  const add = (key: string, what: string) => {
    const a = underAny(key.split(' ')[0] ?? '', allow);
    out.push({ what, ...(a ? { allowedBy: a } : {}) });
  };
  for (const k of after) if (!before.has(k)) add(k, `mount added: ${show(k)}`);
  for (const k of before) if (!after.has(k)) add(k, `mount removed: ${show(k)}`);
  return out;
}

/** /dev/loopN -> backing file, for every attached loop device. */
export async function loopDevices(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const dev of await readdir('/sys/block').catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(dev)) continue;
    const backing = await readFile(`/sys/block/${dev}/loop/backing_file`, 'latin1').catch(() => undefined);
    if (backing !== undefined) out.set(`/dev/${dev}`, backing.trim());
  }
  return out;
}

export async function devFuse(): Promise<string> {
  try {
    const st = await lstat('/dev/fuse');
    return `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')} owner ${st.uid}:${st.gid} rdev ${st.rdev >> 8}:${st.rdev & 0xff} ${st.isCharacterDevice() ? 'char device' : 'NOT a char device'}`;
  } catch {
    return '(absent)';
  }
}

const NS_KINDS = ['mnt', 'pid', 'user', 'net', 'ipc', 'uts', 'cgroup'] as const;

export interface ProcInfo {
  pid: number;
  ppid: number;
  cmdline: string;
  cwd: string;
  ns: string[];
}

/** Every process with its command line, cwd and namespace ids (e.g. "mnt:[4026531841]"). */
export async function processes(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => undefined);
    if (stat === undefined) continue;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') continue;
    // kernel threads have an empty command line and no namespaces of their own
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '')).split('\0').filter(Boolean).join(' ');
    if (!cmdline) continue;
    const ns: string[] = [];
    for (const k of NS_KINDS) {
      const id = await readlink(`/proc/${pid}/ns/${k}`).catch(() => undefined);
      if (id) ns.push(id);
    }
    out.push({ pid, ppid: Number(f[1]), cmdline, cwd: await readlink(`/proc/${pid}/cwd`).catch(() => ''), ns });
  }
  return out;
}

/**
 * Processes started by the run: those carrying its marker in their environment
 * (STRATAFS_TEST_ROOT=<root>, which globalSetup exports and everything a test starts
 * inherits, in any namespace), and their descendants. `self` (the vitest process) is left out.
 */
export async function markedProcesses(dir: string, procs: readonly ProcInfo[], self: number): Promise<ProcInfo[]> {
  const marker = `STRATAFS_TEST_ROOT=${dir}`;
  const ours = new Set<number>();
  for (const p of procs) {
    if (p.pid === self) continue;
    const env = await readFile(`/proc/${p.pid}/environ`, 'latin1').catch(() => '');
    if (env.split('\0').includes(marker)) ours.add(p.pid);
  }
  // a child that cleared its environment (a container's process) is still ours through its parent
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs) {
      if (!ours.has(p.pid) && ours.has(p.ppid)) {
        ours.add(p.pid);
        grew = true;
      }
    }
  }
  return procs.filter((p) => ours.has(p.pid));
}

export async function namespaceIds(): Promise<Set<string>> {
  return new Set((await processes()).flatMap((p) => p.ns));
}

/**
 * Processes living in a namespace that did not exist at `before`. One is let pass by
 * `allow` when it, or one of its ancestors, has its cwd or an argument under an allowed
 * prefix (a neighbour's container runs below the neighbour's own process).
 */
export function inNewNamespaces(before: Set<string>, procs: readonly ProcInfo[], allow: readonly string[]): Change[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const allowedBy = (p: ProcInfo): string | undefined => {
    for (let q: ProcInfo | undefined = p, n = 0; q && n < 64; q = byPid.get(q.ppid), n++) {
      const a = underAny(q.cwd, allow) ?? q.cmdline.split(' ').map((x) => underAny(x, allow)).find(Boolean);
      if (a) return a;
    }
    return undefined;
  };
  const out: Change[] = [];
  for (const p of procs) {
    const fresh = p.ns.filter((n) => !before.has(n));
    if (fresh.length === 0) continue;
    const a = allowedBy(p);
    out.push({ what: `process in a namespace made during the run (${fresh.join(' ')}): pid ${p.pid} cwd ${p.cwd}: ${p.cmdline.slice(0, 300)}`, ...(a ? { allowedBy: a } : {}) });
  }
  return out;
}

/** Installed Debian packages (name:arch -> version); empty where dpkg-query is missing. */
export async function installedPackages(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const text = await new Promise<string>((resolve) => {
    execFile('dpkg-query', ['-W', '-f=${Package}:${Architecture}\t${Version}\t${Status}\n'], { maxBuffer: 64 << 20 }, (err, stdout) => resolve(err ? '' : stdout));
  });
  for (const line of text.split('\n')) {
    const [pkg, version, status] = line.split('\t');
    if (pkg && status === 'install ok installed') out.set(pkg, version ?? '');
  }
  return out;
}

/** apt/dpkg state is left out of the file watch: the package list itself must not change during a run. */
export function diffPackages(before: Map<string, string>, after: Map<string, string>): Change[] {
  const out: Change[] = [];
  for (const [p, v] of after) {
    const was = before.get(p);
    if (was === undefined) out.push({ what: `package installed during the run: ${p} ${v}` });
    else if (was !== v) out.push({ what: `package changed during the run: ${p} ${was} -> ${v}` });
  }
  for (const [p, v] of before) if (!after.has(p)) out.push({ what: `package removed during the run: ${p} ${v}` });
  return out;
}

export function showChanges(changes: readonly Change[]): { failing: string[]; allowed: string[] } {
  return {
    failing: changes.filter((c) => !c.allowedBy).map((c) => c.what),
    allowed: changes.filter((c) => c.allowedBy).map((c) => `${c.what} [allowed by STRATAFS_HOST_CHECK_ALLOW ${c.allowedBy}]`),
  };
}
