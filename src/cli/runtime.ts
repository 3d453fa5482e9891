/**
 * Per-mount runtime files, named after the mountpoint so that `stratafs stats`
 * and `stratafs umount` find the daemon from the mountpoint alone:
 *   <dir>/<id>.sock  control socket (stats, describe) served by the daemon
 *   <dir>/<id>.json  who serves the mount: pid, process start time, layers, log
 *   <dir>/<id>.log   the detached daemon's stdout/stderr (and -d op log)
 * <dir> is $STRATAFS_RUNTIME_DIR when set (tests point it at their scratch
 * tree), else /run/stratafs as root, else $XDG_RUNTIME_DIR/stratafs, else
 * <tmpdir>/stratafs-<uid>. The id is a hash: a mountpoint path can be longer
 * than a unix socket path may be (108 bytes).
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

export function runtimeDir(): string {
  const override = process.env.STRATAFS_RUNTIME_DIR;
  if (override && path.isAbsolute(override)) return override;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/stratafs';
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'stratafs');
  return path.join(os.tmpdir(), `stratafs-${uid}`);
}

export function runtimeFiles(mountpoint: string): RuntimeFiles {
  const dir = runtimeDir();
  const id = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
  return { dir, sock: path.join(dir, `${id}.sock`), info: path.join(dir, `${id}.json`), log: path.join(dir, `${id}.log`) };
}

export function ensureRuntimeDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
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
