/**
 * The command line, parsed into what to do. Nothing else in stratafs reads argv: main.ts and
 * the daemon (daemon-child.ts) ask this module. commander gives the command structure
 * (`stratafs [-f] [-d] -o OPTS MNT`, the mount-helper form `stratafs SOURCE MNT -o OPTS`,
 * `umount`, `stats`, `inspect`, `mount --image`); the -o strings are mount-options.ts's; the
 * checks against the file system (validate.ts) come after, before anything is changed on disk.
 */
import type * as Commander from 'commander';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ConfigError, defaultMountSettings, mountConfig, type MountConfig } from '../fuse/config.js';
import { MOUNT_HELP } from './help.js';
import { applyMountOptions, parseMountArgs } from './mount-options.js';

export type CliCommand =
  | { kind: 'mount'; config: MountConfig; daemonChild: boolean }
  | { kind: 'umount'; mountpoint: string; force: boolean }
  | { kind: 'stats'; mountpoint: string; json: boolean; gc: boolean }
  | { kind: 'inspect'; mountpoint: string; json: boolean }
  | { kind: 'exit'; code: number; output: string };

/** the internal flag main.ts passes to the detached daemon it spawns */
export const DAEMON_CHILD_FLAG = '--daemon-child';

export interface Environment {
  cwd: string;
  uid: number;
  version: string;
  /** lowers of an imported image, top first (src/image/store.ts); throws when unknown */
  imageLowers?: (store: string, name: string) => string[];
}

/**
 * Words that are commands when they come first: the subcommands, commander's implicit `help`,
 * and the image commands main.ts dispatches (src/native/launcher.c keeps the same list).
 */
export const COMMAND_WORDS: readonly string[] = ['umount', 'stats', 'inspect', 'mount', 'help', 'layer', 'image', 'diff', 'commit', 'size', 'which'];

/**
 * The plain mount command line without commander: only `-o VALUE`, `-oVALUE`, `-d`, `--debug`
 * and one or two positionals (MOUNTPOINT, or SOURCE MOUNTPOINT; the first no command word),
 * with at least one -o. Gives what parseCommandLine gives for it (a unit test holds them
 * together); undefined for any other command line. The daemon of a mount parses its own
 * command line with it: commander is the biggest import on a mount's path, and
 * src/native/launcher.c sends exactly these command lines to the daemon directly.
 */
export function parsePlainMount(argv: readonly string[], env: Pick<Environment, 'cwd' | 'uid'>): MountConfig | undefined {
  const options: string[] = [];
  const positionals: string[] = [];
  let debug = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      if (i + 1 >= argv.length) return undefined;
      options.push(argv[++i]!);
    } else if (a.startsWith('-o')) {
      options.push(a.slice(2));
    } else if (a === '-d' || a === '--debug') {
      debug = true;
    } else if (a.startsWith('-') || a === '') {
      return undefined;
    } else {
      if (positionals.length === 0 && COMMAND_WORDS.includes(a)) return undefined;
      positionals.push(a);
    }
  }
  if (options.length === 0 || positionals.length === 0 || positionals.length > 2) return undefined;
  const [first, second] = positionals;
  return parseMountArgs({
    options, mountpoint: second ?? first, source: second === undefined ? undefined : first,
    foreground: false, debug, cwd: env.cwd, uid: env.uid,
  });
}

/** Parse argv (without node and script) into what to do. Throws ConfigError. */
export function parseCommandLine(argv: string[], env: Environment): CliCommand {
  // Loaded here, not at the top: a mount's daemon parses its plain command line without it (parsePlainMount).
  const { Command, CommanderError, Option } = createRequire(import.meta.url)('commander') as typeof Commander;
  let result: CliCommand | undefined;
  let out = '';
  const program = new Command('stratafs')
    .description('union (overlay) filesystem in user space, on-disk compatible with Linux overlayfs')
    .version(env.version, '-V, --version')
    .argument('[source]', 'mount helper form: the source (ignored) followed by the mountpoint')
    .argument('[mountpoint]')
    .option('-o <options>', 'mount options (may be repeated; see below)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('-f, --foreground', 'stay in the foreground')
    .option('-d, --debug', 'log the negotiated FUSE protocol and every request (opcode, unique, node, caller, result, duration; stderr with -f, else the daemon log)')
    .addOption(new Option(DAEMON_CHILD_FLAG).hideHelp())
    .addHelpText('after', MOUNT_HELP)
    .exitOverride()
    .configureOutput({ writeOut: (s) => { out += s; }, writeErr: (s) => { out += s; } })
    .action((first: string | undefined, second: string | undefined, o: { o?: string[]; foreground?: boolean; debug?: boolean; daemonChild?: boolean }) => {
      // `stratafs frobnicate`: a lone word without options is a mistyped command, not a mountpoint
      if (o.o === undefined && second === undefined && first !== undefined && !first.includes('/') && first !== '.' && first !== '..') {
        throw new ConfigError(`unknown command '${first}' (see stratafs --help)`);
      }
      const source = second === undefined ? undefined : first;
      const mountpoint = second === undefined ? first : second;
      const config = parseMountArgs({
        options: o.o ?? [], mountpoint, source, foreground: !!o.foreground, debug: !!o.debug, cwd: env.cwd, uid: env.uid,
      });
      result = { kind: 'mount', config, daemonChild: !!o.daemonChild };
    });

  // Subcommands throw instead of exiting and write help into `out`, like the program itself.
  const sub = (name: string): Commander.Command => program.command(name)
    .exitOverride()
    .configureOutput({ writeOut: (t) => { out += t; }, writeErr: (t) => { out += t; } });

  sub('umount')
    .description('unmount a stratafs mount; --force cleans a mount whose daemon died or hangs (or any FUSE mount)')
    .argument('<mountpoint>')
    .option('--force', 'abort the FUSE connection (fusectl), then detach the mount; also one that is not stratafs\'s')
    .action((mnt: string, o: { force?: boolean }) => {
      result = { kind: 'umount', mountpoint: path.resolve(env.cwd, mnt), force: !!o.force };
    });

  sub('stats')
    .description('operation counts and latencies, lookup cache, copy-ups and whiteouts of a live mount')
    .argument('<mountpoint>')
    .option('--json', 'JSON output')
    .option('--gc', 'the daemon runs a full garbage collection first: the heap figure is then what is live')
    .action((mnt: string, o: { json?: boolean; gc?: boolean }) => {
      result = { kind: 'stats', mountpoint: path.resolve(env.cwd, mnt), json: !!o.json, gc: !!o.gc };
    });

  sub('inspect')
    .description('the layer stack, options and stats of a live mount')
    .argument('<mountpoint>')
    .option('--json', 'JSON output')
    .action((mnt: string, o: { json?: boolean }) => {
      result = { kind: 'inspect', mountpoint: path.resolve(env.cwd, mnt), json: !!o.json };
    });

  // `mount --image NAME --store DIR [--upper U --work W]`: an imported image's snapshots as
  // the lowers, then the -o options, then --upper and --work (a later one wins, as in -o).
  sub('mount')
    .description('mount an imported image (see `stratafs image import`), or the same as the plain form with -o')
    .argument('<mountpoint>')
    .option('--image <name>', 'image name in the store')
    .option('--store <dir>', 'snapshot store directory')
    .option('--upper <dir>', 'writable upper directory (read-only mount without it)')
    .option('--work <dir>', 'workdir, on the same filesystem as --upper')
    .option('-o <options>', 'more mount options', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('-f, --foreground', 'stay in the foreground')
    .option('-d, --debug', 'log every FUSE operation')
    .action((mnt: string, o: { image?: string; store?: string; upper?: string; work?: string; o?: string[]; foreground?: boolean; debug?: boolean }) => {
      const s = defaultMountSettings(env.uid);
      s.debug = !!o.debug;
      if (o.image !== undefined) {
        if (o.store === undefined) throw new ConfigError('--image needs --store');
        if (env.imageLowers === undefined) throw new ConfigError('image support is not available');
        try {
          s.lowerdirs = env.imageLowers(path.resolve(env.cwd, o.store), o.image);
        } catch (e) {
          throw new ConfigError(e instanceof Error ? e.message : String(e));
        }
      }
      if ((o.upper === undefined) !== (o.work === undefined)) throw new ConfigError('--upper and --work go together');
      for (const opts of o.o ?? []) applyMountOptions(s, opts, env.cwd);
      if (o.upper !== undefined && o.work !== undefined) {
        s.upperdir = path.resolve(env.cwd, o.upper);
        s.workdir = path.resolve(env.cwd, o.work);
      }
      const config = mountConfig(s, { mountpoint: mnt, source: undefined, foreground: !!o.foreground, cwd: env.cwd });
      // The detached daemon re-runs this command line behind the top-level DAEMON_CHILD_FLAG.
      result = { kind: 'mount', config, daemonChild: !!program.opts<{ daemonChild?: boolean }>().daemonChild };
    });

  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return { kind: 'exit', code: 0, output: out };
      }
      throw new ConfigError(e.message.replace(/^error: /, ''));
    }
    throw e;
  }
  if (result === undefined) throw new ConfigError('nothing to do (see stratafs --help)');
  return result;
}
