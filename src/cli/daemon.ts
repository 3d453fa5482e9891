/**
 * Running a mount as a daemon.
 *
 * Without -f, a parent starts the daemon detached (a new session), stdin from
 * /dev/null, stdout/stderr on a pipe of the parent's, and a pipe on fd 3, then
 * waits for its verdict. The parent is src/native/launcher.c (the `stratafs`
 * command: no second Node start) or, run as `node dist/cli/main.js`, spawnDaemon
 * below. The daemon (daemon-child.ts) parses and validates its command line,
 * writes warnings on stderr (relayed by the parent), opens its log and says
 * `log managed|plain PATH` on fd 3, points stdout/stderr at the log, mounts,
 * and writes `ready` once the kernel's INIT has been answered (the mount answers
 * from then on), or `error <message>`. The parent exits 0 on "ready", else 1 with
 * the daemon's line, so `mount -t fuse.stratafs`, fstab, podman and scripts see
 * success only for a working mount.
 *
 * The serving process (daemon or -f) unmounts on SIGTERM/SIGINT through the
 * binding's async unmount, exits when the mount is removed from outside, dumps
 * its stats to the log on SIGUSR1, and serves `stratafs stats` on the control
 * socket.
 */
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { MountConfig } from '../fuse/config.js';
import { DAEMON_CHILD_FLAG } from './args.js';
import { serveControl } from './control.js';
import {
  adoptLeftoverLogs, ensureRuntimeDir, keepLog, keptLogPath, processStartTime, pruneKeptLogs, removeQuietly, runtimeFiles,
  writeDaemonInfo,
} from './runtime.js';
import type { Served } from './serve.js';

/** how long the parent waits for the child's verdict (opening a huge workdir can take a while) */
const READY_TIMEOUT_MS = 120_000;
const READY_FD = 3;

export interface Notifier {
  ready(): void;
  fail(message: string): void;
}

/** the daemon child's side of the readiness pipe */
export const pipeNotifier: Notifier = {
  ready() { writeFd(`ready\n`); },
  fail(message) { writeFd(`error ${message.replace(/\n/g, ' ')}\n`); },
};

function writeFd(s: string): void {
  try {
    fs.writeSync(READY_FD, s);
    fs.closeSync(READY_FD);
  } catch {
    // started by hand without the pipe: nobody waits
  }
}

export const stderrNotifier: Notifier = {
  ready() { /* -f: nothing to tell */ },
  fail(message) { process.stderr.write(`stratafs: ${message}\n`); },
};

export const logLine = (line: string): void => {
  process.stderr.write(line + '\n');
};

/** a failed start that wrote nothing leaves no log file behind */
function removeIfEmpty(file: string): void {
  try {
    if (fs.statSync(file).size === 0) fs.unlinkSync(file);
  } catch { /* gone */ }
}

/** how the parent tells the daemon child which file its stdout/stderr go to (internal) */
const DAEMON_LOG_ENV = 'STRATAFS_DAEMON_LOG';

/** The log the daemon of this mount writes to (in the daemon child: the one its parent opened). */
export function daemonLogPath(c: MountConfig): string {
  return process.env[DAEMON_LOG_ENV] ?? c.logFile ?? runtimeFiles(c.mountpoint).log;
}

/**
 * The live log of a default-logged session (no log=FILE, no -d) is removed at a
 * clean unmount; kept (runtime.ts keepLog) after a crash (found by the next
 * start), an uncaught exception, a failed start. A -d session logs into a kept
 * name from the start. A log=FILE is the user's: only an empty one is removed.
 */
const managedLog = (c: MountConfig): boolean => c.logFile === undefined && !c.debug;

/**
 * The daemon's log, chosen and opened by the daemon itself once its command line
 * is validated: a leftover live log of a daemon that is gone is kept as a crash
 * first (runtime.ts adoptLeftoverLogs); -d logs into a kept name from the start.
 */
export function openDaemonLog(c: MountConfig): { path: string; fd: number; managed: boolean } {
  const files = runtimeFiles(c.mountpoint);
  ensureRuntimeDir(files.dir);
  let logPath: string;
  if (c.logFile !== undefined) {
    logPath = c.logFile;
  } else {
    adoptLeftoverLogs(files, READY_TIMEOUT_MS);
    logPath = c.debug ? keptLogPath(files.log, 'debug') : files.log;
  }
  const fd = fs.openSync(logPath, 'a', 0o600);
  if (c.logFile === undefined && c.debug) pruneKeptLogs(files.dir, logPath);
  process.env[DAEMON_LOG_ENV] = logPath;
  return { path: logPath, fd, managed: managedLog(c) };
}

/** A start that failed: its log is kept when it says anything (managed logs) or removed when empty. Returns where it is. */
export function failedStartLog(logPath: string, managed: boolean): string | undefined {
  if (managed) return keepLog(logPath, 'failed');
  removeIfEmpty(logPath);
  return fs.existsSync(logPath) ? logPath : undefined;
}

/** How a start that ended without a verdict is told, once its log is settled (failedStartLog). */
export function goneMessage(how: { exited: string } | { timedOut: true }, log: string | undefined): string {
  const see = log === undefined ? 'it logged nothing' : `see ${log}`;
  return 'exited' in how
    ? `daemon exited (${how.exited}) before the mount was ready; ${see}`
    : `the mount did not become ready within ${READY_TIMEOUT_MS / 1000} s; ${see}`;
}

/** A verdict-pipe line: `log managed|plain PATH`, `ready`, `error MESSAGE`. */
export type Verdict = { log: string; managed: boolean } | { ready: true } | { error: string };

export function parseVerdictLine(line: string): Verdict {
  const m = /^log (managed|plain) (.*)$/.exec(line);
  if (m) return { log: m[2]!, managed: m[1] === 'managed' };
  if (line === 'ready') return { ready: true };
  return { error: line.startsWith('error ') ? line.slice(6) : `daemon said: ${line}` };
}

/**
 * Parent side when the Node CLI itself is the parent (`node dist/cli/main.js`, or the launcher
 * absent): spawn the daemon and relay its verdict, as src/native/launcher.c does without a second
 * Node start. argv is the CLI's own argument list; the daemon parses and validates it (same cwd),
 * writes warnings on its stderr (relayed here until it has its log), and says where its log is,
 * then `ready` or `error MESSAGE` on fd 3 (daemon-child.ts).
 */
export async function spawnDaemon(argv: string[]): Promise<number> {
  // the CLI this process runs (dist/cli/main.js or its CommonJS build dist/cjs/stratafs.cjs)
  const script = process.argv[1] ?? fileURLToPath(new URL('./main.js', import.meta.url));
  // A daemon allocates little that lives long per request: V8's default 16 MiB semi-spaces only
  // inflate its resident size (measured on the bench data set: peak 198 -> 179 MB, same CPU; 4 -> 1 MiB:
  // quick data set lstat cell 82 -> 76 MiB, daemon CPU per request the same within noise). Same in launcher.c.
  const heapFlags = process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) ? [] : ['--max-semi-space-size=1'];
  const { spawn } = await import('node:child_process');
  const env = { ...process.env };
  // The daemon makes no TLS connection: parsing an extra CA bundle only delays its start (~30 ms).
  delete env.NODE_EXTRA_CA_CERTS;
  // One malloc arena per thread that allocates costs ~0.4 MiB resident each; two shared (as launcher.c).
  env.MALLOC_ARENA_MAX ??= '2';
  const child = spawn(process.execPath, [...heapFlags, ...process.execArgv, script, DAEMON_CHILD_FLAG, ...argv], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env,
  });
  // Until the daemon points them at its log: its warnings, or what it said before dying.
  const closed: Promise<void>[] = [];
  for (const out of [child.stdout!, child.stderr!]) {
    out.on('data', (d: Buffer) => { process.stderr.write(d); });
    out.on('error', () => { /* the exit handler reports */ });
    closed.push(new Promise((r) => out.once('close', () => r())));
  }
  // What the daemon wrote before its verdict is relayed in full; a daemon that keeps a stream
  // open (a child it started holding it) must not hold us up for more than a second.
  const earlyDone = async (): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closed), new Promise((r) => { timer = setTimeout(r, 1000); })]);
    clearTimeout(timer);
    child.stdout!.destroy();
    child.stderr!.destroy();
  };

  return new Promise<number>((resolve) => {
    let decided = false;
    let exited = false;
    let log: { path: string; managed: boolean } | undefined;
    /** message: given where the log is now (undefined: it said nothing) */
    const decide = (code: number, message?: (log: string | undefined) => string): void => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      pipe.destroy();
      const finish = (): void => {
        void earlyDone().then(() => {
          // A verdict `error` comes after the daemon settled its log itself.
          const where = code === 0 || log === undefined ? log?.path : failedStartLog(log.path, log.managed);
          if (message !== undefined) process.stderr.write(`stratafs: ${message(where)}\n`);
          resolve(code);
        });
      };
      if (code === 0 || exited) {
        child.unref();
        finish();
        return;
      }
      // A failed daemon is on its way out: return only once it is gone, so
      // that a non-zero exit leaves no process behind.
      const kill = setTimeout(() => {
        if (child.pid !== undefined) {
          try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
        }
      }, 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        finish();
      });
    };
    const pipe = child.stdio[READY_FD] as Readable;
    let buf = '';
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0 && !decided; nl = buf.indexOf('\n')) {
        const v = parseVerdictLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if ('log' in v) log = { path: v.log, managed: v.managed };
        else if ('ready' in v) decide(0);
        else {
          // the daemon kept (or removed) its log itself before saying so
          log = undefined;
          decide(1, () => v.error);
        }
      }
    });
    pipe.on('error', () => { /* the exit handler reports */ });
    child.on('error', (e) => decide(1, () => `cannot start the daemon: ${e.message}`));
    child.on('exit', (code, signal) => {
      exited = true;
      // the pipe may still hold the verdict: let it drain first
      setImmediate(() => decide(1, (where) => goneMessage({ exited: signal ?? `code ${code}` }, where)));
    });
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
      decide(1, (where) => goneMessage({ timedOut: true }, where));
    }, READY_TIMEOUT_MS);
  });
}

/**
 * Serve a mount in this process until it ends. Returns the exit code.
 * Used by the daemon child (pipe notifier) and by -f (stderr notifier).
 */
export async function runServer(c: MountConfig, notify: Notifier, log: (s: string) => void = logLine): Promise<number> {
  const files = runtimeFiles(c.mountpoint);
  let served: Served | undefined;
  let server: import('node:net').Server | undefined;
  let stopping: string | undefined;

  const cleanup = (): void => {
    server?.close();
    removeQuietly(files.sock);
    removeQuietly(files.info);
  };
  const unmount = (s: Served, sig: string): void => {
    log(`stratafs: ${sig}: unmounting ${c.mountpoint}`);
    s.unmount().catch(async (e: unknown) => {
      // Busy (a process has a file open or its cwd inside): detach now, as
      // libfuse does, and keep serving until the last user lets go.
      log(`stratafs: unmount failed (${e instanceof Error ? e.message : String(e)}); detaching lazily`);
      const { unmountPath } = await import('../native/fuse-mount.js');
      const { fromText } = await import('../shared/bstr.js');
      await unmountPath(fromText(c.mountpoint), { lazy: true }).catch((e2: unknown) => {
        log(`stratafs: lazy unmount failed too: ${e2 instanceof Error ? e2.message : String(e2)}`);
      });
    });
  };
  const stop = (sig: string): void => {
    if (stopping !== undefined) {
      // A second signal while the mount is held busy (or setup hangs): leave now;
      // the kernel ends the connection when this process closes /dev/fuse.
      log(`stratafs: ${sig} again: exiting without waiting`);
      cleanup();
      process.exit(1);
    }
    stopping = sig;
    // Before the mount is up the signal is remembered and acted on as soon as it is.
    if (served !== undefined) unmount(served, sig);
  };
  // Handlers first: a signal that arrives while mounting must still unmount cleanly.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => { /* detached: no terminal to lose; ignore */ });
  process.on('SIGUSR1', () => log(`stratafs: stats ${JSON.stringify(served?.stats() ?? null)}`));
  let uncaught = false;
  process.on('uncaughtException', (e) => {
    // A bug outside a request must not take the mount down with it (every user would get ENOTCONN).
    uncaught = true;
    log(`stratafs: uncaught exception (mount kept serving): ${e.stack ?? e.message}`);
  });

  const { serve, ServeError } = await import('./serve.js');
  try {
    served = await serve(c, log);
  } catch (e) {
    notify.fail(e instanceof ServeError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e));
    return 1;
  }

  try {
    ensureRuntimeDir(files.dir);
    writeDaemonInfo(files.info, {
      pid: process.pid, startTime: processStartTime(process.pid) ?? '', mountpoint: c.mountpoint,
      lowerdirs: c.lowerPaths, upperdir: c.upperPath, workdir: c.workPath,
      log: c.foreground ? undefined : daemonLogPath(c), foreground: c.foreground,
    });
    server = await serveControl(files.sock, served, log);
  } catch (e) {
    log(`stratafs: warning: no control socket (stats unavailable): ${e instanceof Error ? e.message : String(e)}`);
  }

  if (stopping !== undefined) {
    notify.fail(`stopped by ${stopping} while mounting`);
    unmount(served, stopping);
  } else {
    notify.ready();
  }
  await served.ended;
  if (c.debug) log(`stratafs: ${c.mountpoint} unmounted; exiting`);
  cleanup();
  // A clean session leaves no log behind (runtime dirs fill up with temp mountpoints otherwise).
  if (!c.foreground) {
    const logPath = daemonLogPath(c);
    if (!managedLog(c)) removeIfEmpty(logPath);
    else if (uncaught) keepLog(logPath, 'exception');
    else removeQuietly(logPath);
  }
  return 0;
}
