/**
 * Per-mount runtime files, named after the mountpoint so that `stratafs stats`
 * and `stratafs umount` find the daemon from the mountpoint alone:
 *   <dir>/<id>.sock  control socket (stats, describe) served by the daemon
 *   <dir>/<id>.json  who serves the mount: pid, process start time, layers, log
 *   <dir>/<id>.log   the detached daemon's stdout/stderr, removed at unmount
 *   <dir>/<id>.<time>.<reason>.log  logs kept (see keepLog): a crash, an
 *                    uncaught exception, a failed start, a -d session
 * <dir> is chosen by what this process can write, never by its uid alone
 * (rootless podman runs the mount program as uid 0 of a user namespace, where
 * /run is not writable): $STRATAFS_RUNTIME_DIR when set (tests point it at
 * their scratch tree); else /run/stratafs for root of the initial user
 * namespace; else $XDG_RUNTIME_DIR/stratafs; else <tmpdir>/stratafs-<euid>
 * ($TMPDIR or /tmp), then /tmp/stratafs-<euid> -- the first that exists as a
 * directory of ours (not a symlink, owned by the euid, not writable by
 * others) or can be created in a writable parent. `stratafs umount` and
 * `stats` run the same choice and find what the daemon made. The id is a
 * hash: a mountpoint path can be longer than a unix socket path may be (108
 * bytes).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface RuntimeFiles {
  dir: string;
  sock: string;
  info: string;
  log: string;
}

export interface DaemonInfo {
  pid: number;
  /** /proc/<pid>/stat field 22: tells a reused pid from the daemon */
  startTime: string;
  mountpoint: string;
  lowerdirs: string[];
  upperdir: string | undefined;
  workdir: string | undefined;
  log: string | undefined;
  foreground: boolean;
}

/** In the initial user namespace /proc/self/uid_map maps every id to itself. */
export function inInitialUserNamespace(): boolean {
  try {
    const map = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295';
  } catch {
    return true; // no /proc: nothing to tell
  }
}

const euid = (): number => process.geteuid?.() ?? 0;

/** The directories a runtime dir may be, best first (see the file comment). */
export function runtimeDirCandidates(): string[] {
  const uid = euid();
  const out: string[] = [];
  if (uid === 0 && inInitialUserNamespace()) out.push('/run/stratafs');
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg)) out.push(path.join(xdg, 'stratafs'));
  out.push(path.join(os.tmpdir(), `stratafs-${uid}`));
  out.push(`/tmp/stratafs-${uid}`);
  return [...new Set(out)];
}

/** why dir cannot hold our runtime files, or undefined when it is ours (or may be created) */
export function runtimeDirProblem(dir: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return `cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
    try {
      fs.accessSync(path.dirname(dir), fs.constants.W_OK | fs.constants.X_OK);
      return undefined;
    } catch (e2) {
      return `cannot be created (${(e2 as NodeJS.ErrnoException).code ?? String(e2)} on ${path.dirname(dir)})`;
    }
  }
  if (!st.isDirectory()) return st.isSymbolicLink() ? 'is a symlink' : 'is not a directory';
  if (st.uid !== euid()) return `belongs to uid ${st.uid}, not ${euid()}`;
  if (st.mode & 0o022) return `is writable by others (mode ${(st.mode & 0o7777).toString(8)})`;
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    return `is not writable (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
  return undefined;
}

export function runtimeDir(): string {
  const override = process.env.STRATAFS_RUNTIME_DIR;
  if (override && path.isAbsolute(override)) return override;
  const all = runtimeDirCandidates();
  // None usable: the last one, whose creation then fails with the reason (ensureRuntimeDir).
  return all.find((d) => runtimeDirProblem(d) === undefined) ?? all[all.length - 1]!;
}

export function runtimeFiles(mountpoint: string): RuntimeFiles {
  const dir = runtimeDir();
  const id = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
  return { dir, sock: path.join(dir, `${id}.sock`), info: path.join(dir, `${id}.json`), log: path.join(dir, `${id}.log`) };
}

/** Create the runtime dir (0700) and check that it is ours; throws an Error naming the problem. */
export function ensureRuntimeDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // $STRATAFS_RUNTIME_DIR is the user's own choice; a chosen dir may have been made by someone else meanwhile.
  if (dir === process.env.STRATAFS_RUNTIME_DIR) return;
  const problem = runtimeDirProblem(dir);
  if (problem !== undefined) throw new Error(`runtime directory ${dir} ${problem} (set STRATAFS_RUNTIME_DIR to choose another)`);
}

/** fields 3.. of /proc/<pid>/stat (comm may contain spaces and parentheses: split after the last ')') */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

export function readDaemonInfo(file: string): DaemonInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as DaemonInfo;
  } catch {
    return undefined;
  }
}

/** the daemon described by info, if that very process still runs */
export function daemonAlive(info: DaemonInfo): boolean {
  const f = procStat(info.pid);
  // A zombie has exited (it only waits to be reaped, which a container's init may do late).
  return f !== undefined && f[19] === info.startTime && f[0] !== 'Z' && f[0] !== 'X';
}

export function writeDaemonInfo(file: string, info: DaemonInfo): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeQuietly(file: string): void {
  try { fs.unlinkSync(file); } catch { /* already gone */ }
}

// ---------------------------------------------------------------------------
// daemon logs: one live log per mount, removed at a clean unmount; the ones
// worth reading later are kept under their own names, and those are bounded.

/** why a log outlives its session */
export type KeptLogReason = 'crash' | 'exception' | 'failed' | 'debug';
/** kept logs per runtime directory, newest first: at most this many ... */
export const KEPT_LOGS_MAX = 20;
/** ... and this many bytes together (the newest is kept whatever its size) */
export const KEPT_LOGS_MAX_BYTES = 32 * 1024 * 1024;
const KEPT_RE = /^[0-9a-f]{16}\.\d{8}T\d{6}Z(?:-\d+)?\.(?:crash|exception|failed|debug)\.log$/;

/** `<id>.<UTC time>.<reason>.log` beside the live log `<id>.log`, not taken yet */
export function keptLogPath(liveLog: string, reason: KeptLogReason, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = liveLog.replace(/\.log$/, '');
  for (let n = 0; ; n++) {
    const p = `${base}.${stamp}${n ? `-${n}` : ''}.${reason}.log`;
    if (!fs.existsSync(p)) return p;
  }
}

/**
 * Keep a finished log under its reason's name (an empty one is just removed),
 * then bound the directory. Returns where it is now, or undefined.
 */
export function keepLog(liveLog: string, reason: KeptLogReason): string | undefined {
  let size: number;
  try {
    size = fs.statSync(liveLog).size;
  } catch {
    return undefined;
  }
  if (size === 0) {
    removeQuietly(liveLog);
    return undefined;
  }
  const kept = keptLogPath(liveLog, reason);
  try {
    fs.renameSync(liveLog, kept);
  } catch {
    return liveLog;
  }
  pruneKeptLogs(path.dirname(kept), kept);
  return kept;
}

/** Remove the oldest kept logs beyond KEPT_LOGS_MAX files or KEPT_LOGS_MAX_BYTES; `spare` always stays. */
export function pruneKeptLogs(dir: string, spare?: string, limits = { files: KEPT_LOGS_MAX, bytes: KEPT_LOGS_MAX_BYTES }): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => KEPT_RE.test(n));
  } catch {
    return [];
  }
  const logs: { p: string; mtime: number; size: number }[] = [];
  for (const n of names) {
    const p = path.join(dir, n);
    try {
      const st = fs.lstatSync(p);
      if (st.isFile()) logs.push({ p, mtime: st.mtimeMs, size: st.size });
    } catch { /* gone meanwhile */ }
  }
  // oldest first, until the rest fits
  logs.sort((a, b) => a.mtime - b.mtime || (a.p < b.p ? -1 : 1));
  const removed: string[] = [];
  let files = logs.length;
  let bytes = logs.reduce((n, l) => n + l.size, 0);
  for (const l of logs) {
    if (files <= limits.files && bytes <= limits.bytes) break;
    if (l.p === spare) continue;
    removeQuietly(l.p);
    removed.push(l.p);
    files--;
    bytes -= l.size;
  }
  return removed;
}

/**
 * Before a daemon starts on a mountpoint: a live log `<id>.log` left behind by
 * a daemon that is gone (it would have removed it at unmount) records a crash:
 * keep it as such instead of appending the new session to it. The live logs
 * of other mountpoints whose daemons are gone are kept as crashes too (and so
 * bounded), once older than `settleMs`: a daemon that is still starting has
 * no record yet, but its log is new.
 */
export function adoptLeftoverLogs(files: RuntimeFiles, settleMs: number, now = Date.now()): string[] {
  const kept: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(files.dir).filter((n) => /^[0-9a-f]{16}\.log$/.test(n));
  } catch {
    return kept;
  }
  for (const n of names) {
    const log = path.join(files.dir, n);
    const own = log === files.log;
    const info = readDaemonInfo(log.replace(/\.log$/, '.json'));
    if (info !== undefined && daemonAlive(info)) continue; // still written by its daemon
    if (!own) {
      try {
        if (now - fs.statSync(log).mtimeMs < settleMs) continue;
      } catch {
        continue;
      }
    }
    const k = keepLog(log, 'crash');
    if (k !== undefined) kept.push(k);
  }
  return kept;
}
