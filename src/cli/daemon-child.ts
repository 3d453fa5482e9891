/**
 * The daemon of a mount, started by a parent that waits for its verdict: the
 * launcher (src/native/launcher.c, the `stratafs` command's fast path) or the
 * Node CLI (daemon.ts spawnDaemon). The daemon does everything between the
 * command line and the answering mount, so that its parent needs no Node:
 *
 *   parse and validate the command line     bad input: `error MESSAGE` on fd 3
 *   warnings, force-cleaning a dead mount    written to stderr (the parent relays it)
 *   open its log (daemon.ts openDaemonLog)   `log managed|plain PATH` on fd 3
 *   stdout and stderr onto the log (dup2)    the parent's pipe is at EOF from here
 *   mount and wait for INIT                  `ready`, or `error MESSAGE`
 *
 * Nothing is created on disk before validation has passed, and a failed start
 * settles its own log (daemon.ts failedStartLog) before saying so. Until its
 * stdout/stderr point at the log, this process writes to them only with
 * synchronous writes: a Node stream on fd 2 would outlive the dup2.
 */
import * as fs from 'node:fs';
import { dropExePages, dup2 } from '../native/sys.js';
import { failedStartLog, goneMessage, openDaemonLog, pipeNotifier, runServer, type Notifier } from './daemon.js';
import { ConfigError, type MountConfig } from '../fuse/config.js';
import { parseCommandLine, parsePlainMount } from './args.js';
import { validateMountConfig } from './validate.js';
import { cleanDeadMount, configWarnings } from './prepare-mount.js';

const READY_FD = 3;

function say(line: string): void {
  try {
    fs.writeSync(2, line + '\n');
  } catch {
    // the parent is gone: nobody reads
  }
}

function sayVerdict(line: string): void {
  try {
    fs.writeSync(READY_FD, line + '\n');
  } catch {
    // started by hand without the pipe: nobody waits
  }
}

async function parse(argv: string[]): Promise<MountConfig> {
  const env = { cwd: process.cwd(), uid: process.geteuid?.() ?? 0 };
  const plain = parsePlainMount(argv, env);
  if (plain !== undefined) return plain;
  // Every other form (the `mount --image` subcommand, say) goes through the full parser.
  const imageLowers = argv.includes('mount') ? (await import('../image/store.js')).resolveImageLowers : undefined;
  const cmd = parseCommandLine(argv, { ...env, version: '', imageLowers });
  if (cmd.kind !== 'mount' || cmd.config.foreground) throw new ConfigError('internal: the daemon was started without a mount command line');
  return cmd.config;
}

/** argv: the CLI's arguments after the internal --daemon-child flag. Returns the exit code. */
export async function daemonChild(argv: string[]): Promise<number> {
  let c: MountConfig;
  let deadMount: boolean;
  try {
    c = await parse(argv);
    deadMount = validateMountConfig(c).deadMount;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    pipeNotifier.fail(e.message);
    return 1;
  }
  for (const w of configWarnings(c)) say(w);
  if (deadMount) {
    const problem = await cleanDeadMount(c, say);
    if (problem !== undefined) {
      pipeNotifier.fail(problem);
      return 1;
    }
  }
  let log: ReturnType<typeof openDaemonLog>;
  try {
    log = openDaemonLog(c);
  } catch (e) {
    pipeNotifier.fail(e instanceof Error ? e.message : String(e));
    return 1;
  }
  sayVerdict(`log ${log.managed ? 'managed' : 'plain'} ${log.path}`);
  if (c.debug) say(`stratafs: debug log: ${log.path}`);
  try {
    dup2(log.fd, 1);
    dup2(log.fd, 2);
  } catch (e) {
    pipeNotifier.fail(`cannot write to the log ${log.path}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  fs.closeSync(log.fd);
  // The daemon must not keep the caller's cwd busy; every path is absolute by now.
  process.chdir('/');
  const notify: Notifier = {
    ready: () => {
      pipeNotifier.ready();
      // Startup is over: what it paged in of the node binary (~38 of its 94 MiB: symbol tables,
      // module loading, snapshot) leaves the resident set; what serving uses faults back in
      // from the page cache (native-notes/fuse-server.md, "Memory").
      dropExePages();
    },
    fail: (message) => {
      failedStartLog(log.path, log.managed);
      pipeNotifier.fail(message);
    },
  };
  return runServer(c, notify);
}

/**
 * `--daemon-gone exited HOW|timeout [managed|plain LOG]`: the launcher's daemon ended (or was
 * killed) without a verdict. The launcher hands this rare case to the Node CLI so that the log
 * is settled by the same code as everywhere (failedStartLog) and the message is the same.
 */
export function daemonGone(argv: string[]): number {
  const [what, ...rest] = argv;
  const how = what === 'exited' ? { exited: rest.shift() ?? '?' } : { timedOut: true as const };
  const [kind, path] = rest;
  const where = path !== undefined ? failedStartLog(path, kind === 'managed') : undefined;
  process.stderr.write(`stratafs: ${goneMessage(how, where)}\n`);
  return 1;
}
