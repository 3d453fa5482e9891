/**
 * A rootless test environment that changes nothing on the host: a script runs
 * as a plain user (a bare uid, default 4711) in a private mount namespace and
 * PID namespace of its own, where
 *  - /dev/fuse is a 0666 node (`mknod c 10 229` on a namespace-only tmpfs,
 *    bind-mounted over the host's 0600 one),
 *  - /etc/{passwd,group,subuid,subgid} are scratch copies with the user's
 *    entries added, bind-mounted over the host's (fusermount3 wants a user
 *    name; newuidmap and podman the subordinate ranges); optionally
 *    /etc/fuse.conf with user_allow_other,
 *  - HOME, XDG_RUNTIME_DIR, STRATAFS_RUNTIME_DIR and TMPDIR are in scratch,
 *  - the user is entered with `setpriv --reuid --regid --clear-groups`
 *    (setuid helpers such as fusermount3 and newuidmap keep working).
 *
 *   unshare -m --propagation private --pid --fork --kill-child --mount-proc
 *     init.sh (root, PID 1 of the namespace): mounts above, then
 *       setpriv ... env -i ... bash script.sh (the test's script)
 *     then ends by PID every process still in the namespace (a FUSE daemon,
 *     podman's pause process) and reports it, with every mount the script
 *     left, in a report file the outer test reads.
 *
 * When PID 1 exits the kernel kills whatever is left in the PID namespace and
 * the mount namespace goes with its last process; a timeout kills `unshare`,
 * whose --kill-child takes PID 1 (and so everything) with it. After every run
 * the outer side scans /proc for any process still in either namespace
 * (`RootlessRun.survivors`, expected empty).
 *
 * Nothing outside the scratch tree is writable for the user: /tmp, /var/tmp,
 * /dev/shm and /run/lock (the host's world-writable directories) get a tmpfs
 * of their own in the namespace. That hides what lives below them, and the
 * run's temp root is 0700 (mkdtemp), so the user could not walk to the scratch
 * tree either: instead of chmod'ing anything, init makes the scratch tree, the
 * checkout (REPO_ROOT: bin/stratafs, dist, the addons) and node
 * (process.execPath) reachable again at their own paths (ns-keep.sh: bound
 * back through fds opened before covering, and any ancestor the user cannot
 * search covered by a tmpfs): the user sees the same paths as the outer test,
 * wherever CI cloned the repository.
 *
 * API: rootlessProblem() (why not here, for skipIf) -> makeRootlessEnv(prefix)
 * -> chownToUser(env, path) for layers the test builds -> runAsUser(env,
 * script) as often as needed -> check code/stdout, leftovers == [] and
 * survivors == []. The script runs stratafs as users install it: "$STRATAFS"
 * (bin/stratafs). A script that starts podman should end its pause process
 * itself (`kill $(cat $XDG_RUNTIME_DIR/libpod/tmp/pause.pid)`), else it is
 * reported in leftovers (and ended by PID all the same). `asRoot` runs the
 * script as root in the same namespace, with `$AS_USER CMD` for the user's
 * side (a test that needs a second uid).
 *
 * Files the user makes are owned by the uid on disk; the outer test (root)
 * reads and removes them normally. Layers the outer test builds for the user
 * go through `chownToUser`.
 */
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, chmod, chown, lchown, lstat, mkdir, readdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { REPO_ROOT, STRATAFS_BIN, tempDir } from './mounts.js';
import { run } from './proc.js';

/** The plain user the scripts run as. Its uid must be unused on the host. */
export interface RootlessUser {
  uid: number;
  gid: number;
  name: string;
  /** start and length of its /etc/subuid and /etc/subgid range */
  subStart: number;
  subCount: number;
}

export const DEFAULT_USER: RootlessUser = { uid: 4711, gid: 4711, name: 'stratafs-rl', subStart: 100_000, subCount: 65_536 };

/** The scratch tree of one environment (absolute paths, the same inside and outside the namespace). */
export interface RootlessEnv {
  user: RootlessUser;
  /** root-owned 0755: holds everything below */
  dir: string;
  /** the user's HOME, owned by the user: put layers and mountpoints here */
  home: string;
  /** XDG_RUNTIME_DIR, owned by the user, 0700 */
  runtimeDir: string;
  /** STRATAFS_RUNTIME_DIR (= runtimeDir/stratafs, created by stratafs) */
  stratafsRuntimeDir: string;
  /** TMPDIR, owned by the user */
  tmp: string;
  /** root-owned: /etc copies, scripts, reports */
  nsDir: string;
}

export interface RootlessRunOptions {
  /** default 60 s; then unshare is SIGKILLed and the namespace dies with it */
  timeoutMs?: number;
  /** added to the user's environment (which starts empty: env -i) */
  env?: Record<string, string>;
  /** stdin of the script */
  input?: string;
  /** how long processes may take to exit by themselves after the script ends (default 5 s) */
  graceMs?: number;
  /**
   * Run the script as root in the namespace (same environment, cwd and
   * mounts); `$AS_USER CMD...` runs CMD as the user. For a test that needs a
   * party besides the user, such as a second uid on the user's mount.
   */
  asRoot?: boolean;
}

export interface RootlessRun {
  /** the script's exit code; null when it was killed (timeout) or the setup failed */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /**
   * What the script left in the namespace once it had ended and the grace
   * period passed: "mount <fstype> <mountpoint>" and "process <pid> <argv>"
   * lines (processes were then ended by PID: SIGTERM, then SIGKILL).
   */
  leftovers: string[];
  /** the namespaces' ids ("mnt:[…]", "pid:[…]"); undefined if the setup failed before */
  namespace: { mnt: string; pid: string } | undefined;
  /** host PIDs still in either namespace after the run: must be empty */
  survivors: number[];
  /** the setup's own complaint, when it failed before the script ran */
  setupError: string | undefined;
}

const INIT = join(REPO_ROOT, 'test', 'harness', 'rootless-init.sh');
const ETC_FILES = ['passwd', 'group', 'subuid', 'subgid'] as const;
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
let runSeq = 0;

async function which(cmd: string): Promise<string | undefined> {
  for (const d of SYSTEM_PATH.split(':')) {
    const p = join(d, cmd);
    try {
      await access(p, fsc.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** Why the environment cannot be made on this machine (undefined: it can). For `it.skipIf`/`ctx.skip`. */
export async function rootlessProblem(user: RootlessUser = DEFAULT_USER): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (to make the namespace)';
  for (const c of ['unshare', 'setpriv', 'mknod', 'fusermount3']) {
    if (!(await which(c))) return `${c} is not installed`;
  }
  for (const f of ETC_FILES) {
    // Bind mounts need a file to cover; creating one would change the host.
    const st = await lstat(`/etc/${f}`).catch(() => undefined);
    if (!st?.isFile()) return `/etc/${f} is missing (Debian's login package makes it)`;
  }
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name === user.name || Number(uid) === user.uid) return `/etc/passwd already has ${name}:${uid}: pick another test user`;
  }
  const maxUserns = await readFile('/proc/sys/user/max_user_namespaces', 'utf8').catch(() => '1');
  if (Number(maxUserns) === 0) return 'user namespaces are disabled (user.max_user_namespaces=0)';
  return undefined;
}

/** Host directories any user may write in: the namespace covers each with a tmpfs. */
const WORLD_WRITABLE = ['/tmp', '/var/tmp', '/dev/shm', '/run/lock'];

async function hiddenDirs(): Promise<string[]> {
  const out: string[] = [];
  for (const d of WORLD_WRITABLE) {
    const st = await lstat(d).catch(() => undefined);
    if (st?.isDirectory() && (st.mode & 0o002) !== 0) out.push(d);
  }
  return out;
}

/**
 * What stays reachable in the namespace at its own path (ns-keep.sh), real
 * paths, outer first: the scratch tree, the checkout and node. The user needs
 * to read the checkout and run node: their own modes must let others in (init
 * only makes the way to them).
 */
async function keptPaths(dir: string): Promise<string[]> {
  const repo = await realpath(REPO_ROOT);
  const node = await realpath(process.execPath);
  if (((await stat(repo)).mode & 0o005) !== 0o005) throw new Error(`the test user cannot read the checkout: ${repo} is not r-x for others`);
  if (((await stat(node)).mode & 0o001) === 0) throw new Error(`the test user cannot run node: ${node} is not executable by others`);
  const out = [await realpath(dir), repo, node].sort((a, b) => a.length - b.length);
  if (out.some((p) => p.includes('\n'))) throw new Error(`a path to keep contains a newline: ${out.join(' ')}`);
  return out;
}

/**
 * The user's PATH: the system's, with node's directory first when `node` there
 * is not the node running the tests (bin/stratafs runs `node` from PATH).
 */
async function userPath(): Promise<string> {
  const onPath = await which('node');
  const same = onPath !== undefined && (await realpath(onPath)) === (await realpath(process.execPath));
  return same ? SYSTEM_PATH : `${dirname(process.execPath)}:${SYSTEM_PATH}`;
}

export interface RootlessEnvOptions {
  /** a different test user (fields default to DEFAULT_USER's) */
  user?: Partial<RootlessUser>;
  /** /etc/fuse.conf with `user_allow_other` (a plain user may then mount with allow_other) */
  userAllowOther?: boolean;
}

/** A fresh scratch tree for the user under the run's temp root. */
export async function makeRootlessEnv(prefix: string, opts: RootlessEnvOptions = {}): Promise<RootlessEnv> {
  const u: RootlessUser = { ...DEFAULT_USER, ...opts.user };
  const dir = await tempDir(prefix);
  await chmod(dir, 0o755); // our own fresh directory (mkdtemp makes it 0700)
  const env: RootlessEnv = {
    user: u,
    dir,
    home: join(dir, 'home'),
    runtimeDir: join(dir, 'run'),
    stratafsRuntimeDir: join(dir, 'run', 'stratafs'),
    tmp: join(dir, 'tmp'),
    nsDir: join(dir, 'ns'),
  };
  await mkdir(join(dir, 'dev'));
  await mkdir(join(env.nsDir, 'etc'), { recursive: true });
  for (const [d, mode] of [[env.home, 0o755], [env.runtimeDir, 0o700], [env.tmp, 0o755]] as const) {
    await mkdir(d);
    await chmod(d, mode);
    await chown(d, u.uid, u.gid);
  }
  const add: Record<(typeof ETC_FILES)[number], string> = {
    passwd: `${u.name}:x:${u.uid}:${u.gid}:stratafs rootless tests:${env.home}:/bin/sh\n`,
    group: `${u.name}:x:${u.gid}:\n`,
    subuid: `${u.name}:${u.subStart}:${u.subCount}\n`,
    subgid: `${u.name}:${u.subStart}:${u.subCount}\n`,
  };
  for (const f of ETC_FILES) {
    let text = await readFile(`/etc/${f}`, 'utf8');
    if (text !== '' && !text.endsWith('\n')) text += '\n';
    await writeFile(join(env.nsDir, 'etc', f), text + add[f], { mode: 0o644 });
  }
  if (opts.userAllowOther) {
    const conf = await readFile('/etc/fuse.conf', 'utf8').catch(() => undefined);
    if (conf === undefined) throw new Error('/etc/fuse.conf is missing: cannot cover it with user_allow_other');
    await writeFile(join(env.nsDir, 'etc', 'fuse.conf'), `${conf}${conf.endsWith('\n') || conf === '' ? '' : '\n'}user_allow_other\n`, { mode: 0o644 });
  }
  return env;
}

/** lchown -R `path` to the environment's user (layers the outer test built for it). */
export async function chownToUser(env: RootlessEnv, path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isDirectory()) for (const n of await readdir(path)) await chownToUser(env, join(path, n));
  await lchown(path, env.user.uid, env.user.gid);
}


/** Host PIDs (live, not zombies) whose mount or PID namespace is one of `ns`. */
async function processesIn(ns: { mnt: string; pid: string }): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const mnt = await readlink(`/proc/${e}/ns/mnt`).catch(() => undefined);
    const pid = await readlink(`/proc/${e}/ns/pid`).catch(() => undefined);
    if (mnt !== ns.mnt && pid !== ns.pid) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'latin1').catch(() => '');
    if (stat !== '' && !/\) [ZX] /.test(stat)) out.push(Number(e));
  }
  return out;
}

/**
 * Processes of the namespace once it had time to die: a SIGKILLed PID 1 takes
 * the others with it, but not in the same instant. Polls up to 5 s.
 */
async function survivorsOf(ns: { mnt: string; pid: string }): Promise<number[]> {
  const end = Date.now() + 5000;
  for (;;) {
    const left = await processesIn(ns);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Run `script` (bash) as the environment's user in a fresh namespace (see the
 * top of this file). Its cwd is HOME; its environment is PATH, HOME, USER,
 * LOGNAME, LC_ALL=C, XDG_RUNTIME_DIR, STRATAFS_RUNTIME_DIR, TMPDIR,
 * STRATAFS (bin/stratafs, the command users put on PATH) and `opts.env`. The script
 * must undo its own mounts (a trap) before it returns; whatever it leaves is
 * reported in `leftovers` and ended by PID. Never throws for the script's
 * failure; throws only if the environment cannot be made at all.
 */
export async function runAsUser(env: RootlessEnv, script: string, opts: RootlessRunOptions = {}): Promise<RootlessRun> {
  const seq = runSeq++;
  const scriptFile = join(env.nsDir, `script.${seq}.sh`);
  const inputFile = join(env.nsDir, `input.${seq}`);
  const report = join(env.nsDir, `report.${seq}`);
  await writeFile(scriptFile, script, { mode: 0o644 });
  await writeFile(inputFile, opts.input ?? '', { mode: 0o644 });
  const keep = await keptPaths(env.dir);
  const userEnv: Record<string, string> = {
    PATH: await userPath(), HOME: env.home, USER: env.user.name, LOGNAME: env.user.name, LC_ALL: 'C',
    XDG_RUNTIME_DIR: env.runtimeDir, STRATAFS_RUNTIME_DIR: env.stratafsRuntimeDir, TMPDIR: env.tmp,
    STRATAFS: STRATAFS_BIN, ...(opts.env ?? {}),
  };
  // NUL-separated in a file: init reads it back into an array (values may hold anything but NUL).
  const envArgs = Object.entries(userEnv).map(([k, v]) => `${k}=${v}`);
  if (envArgs.some((a) => a.includes('\0'))) throw new Error('environment values must not contain NUL');
  const initEnv: Record<string, string> = {
    RL_DIR: env.dir, RL_NS: env.nsDir, RL_HOME: env.home, RL_REPORT: report, RL_SEQ: String(seq),
    RL_HIDE: (await hiddenDirs()).join(':'), RL_KEEPFILE: join(env.nsDir, `keep.${seq}`),
    RL_UID: String(env.user.uid), RL_GID: String(env.user.gid), RL_AS_ROOT: opts.asRoot ? '1' : '0',
    RL_SCRIPT: scriptFile, RL_ENVFILE: join(env.nsDir, `env.${seq}`), RL_INPUT: inputFile, RL_GRACE: String(Math.ceil((opts.graceMs ?? 5000) / 1000)),
  };
  await writeFile(initEnv.RL_ENVFILE!, envArgs.join('\0') + '\0', { mode: 0o600 });
  await writeFile(initEnv.RL_KEEPFILE!, keep.join('\0') + '\0', { mode: 0o600 });
  const r = await run('unshare', [
    '-m', '--propagation', 'private', '--ipc', '--pid', '--fork', '--kill-child', '--mount-proc', 'bash', INIT,
  ], { timeoutMs: opts.timeoutMs ?? 60_000, env: initEnv });

  const lines = (await readFile(report, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  let namespace: RootlessRun['namespace'];
  let code: number | null = null;
  let setupError: string | undefined;
  const leftovers: string[] = [];
  for (const l of lines) {
    const [k, ...rest] = l.split(' ');
    if (k === 'ns') namespace = { mnt: rest[0]!, pid: rest[1]! };
    else if (k === 'exit') code = Number(rest[0]);
    else if (k === 'setup-failed') setupError = rest.join(' ');
    else if (k === 'mount' || k === 'process') leftovers.push(l);
  }
  if (!lines.includes('start') && setupError === undefined) {
    setupError = `the namespace setup did not finish (unshare: code ${r.code}, ${r.timedOut ? 'timed out, ' : ''}stderr: ${r.stderr.toString('utf8').trim()})`;
  }
  return {
    code: r.timedOut ? null : code,
    stdout: r.stdout.toString('utf8'),
    stderr: r.stderr.toString('utf8'),
    timedOut: r.timedOut,
    leftovers,
    namespace,
    survivors: namespace ? await survivorsOf(namespace) : [],
    setupError,
  };
}

/** sha256 of the host files this environment must never change (compare before/after in a test). */
export async function hostFingerprint(): Promise<string> {
  const h = createHash('sha256');
  for (const f of [...ETC_FILES.map((f) => `/etc/${f}`), '/etc/fuse.conf', '/dev/fuse']) {
    const st = await lstat(f).catch(() => undefined);
    h.update(`${f} ${st ? `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${st.rdev}` : 'missing'}\n`);
    if (st?.isFile()) h.update(await readFile(f));
  }
  return h.digest('hex');
}

/** `setpriv` words that make the rest of a command line run as a bare uid (no user in /etc/passwd needed) */
export const asUid = (uid: number, gid = uid): string => `setpriv --reuid=${uid} --regid=${gid} --clear-groups`;

/** A run that set up, and left nothing in its namespace: no mount, no process, no survivor. */
export function expectNothingLeft(r: RootlessRun): void {
  expect(r.setupError).toBeUndefined();
  expect(r.leftovers).toEqual([]);
  expect(r.survivors).toEqual([]);
}
