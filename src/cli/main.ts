#!/usr/bin/env node
/**
 * The stratafs command. Everything about the command line is in args.ts;
 * this file only dispatches. Modules that load the FUSE binding are imported
 * lazily, so `umount`, `stats` and bad input never load native code.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../fuse/config.js';
import { DAEMON_CHILD_FLAG, parseCommandLine, type CliCommand } from './args.js';
import { validateMountConfig } from './validate.js';
import { cleanDeadMount, configWarnings } from './prepare-mount.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const err = (s: string): void => { process.stderr.write(s + '\n'); };

async function mountCommand(cmd: Extract<CliCommand, { kind: 'mount' }>, argv: string[]): Promise<number> {
  const c = cmd.config;
  // The daemon validates its command line itself (daemon-child.ts): this process only relays.
  if (!c.foreground) return (await import('./daemon.js')).spawnDaemon(argv);
  let deadMount: boolean;
  try {
    deadMount = validateMountConfig(c).deadMount;
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`stratafs: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const daemon = await import('./daemon.js');
  for (const w of configWarnings(c)) err(w);
  if (deadMount) {
    const problem = await cleanDeadMount(c, err);
    if (problem !== undefined) {
      err(`stratafs: ${problem}`);
      return 1;
    }
  }
  return daemon.runServer(c, daemon.stderrNotifier);
}

async function main(argv: string[]): Promise<number> {
  // A mount's daemon (started by src/native/launcher.c or by spawnDaemon) skips the command tree.
  if (argv[0] === DAEMON_CHILD_FLAG) return (await import('./daemon-child.js')).daemonChild(argv.slice(1));
  if (argv[0] === '--daemon-gone') return (await import('./daemon-child.js')).daemonGone(argv.slice(1));
  // Image commands (layer, image, diff, commit, size, which) live in src/cli/image.ts.
  if (argv[0] !== undefined && ['layer', 'image', 'diff', 'commit', 'size', 'which'].includes(argv[0])) {
    return (await import('./image.js')).runImageCli(argv);
  }
  let cmd: CliCommand;
  try {
    const imageLowers = argv.includes('mount') ? (await import('../image/store.js')).resolveImageLowers : undefined;
    cmd = parseCommandLine(argv, { cwd: process.cwd(), uid: process.geteuid?.() ?? 0, version: version(), imageLowers });
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`stratafs: ${e.message}`);
      return 1;
    }
    throw e;
  }
  switch (cmd.kind) {
    case 'exit':
      process.stdout.write(cmd.output);
      return cmd.code;
    case 'mount':
      return mountCommand(cmd, argv);
    case 'umount': {
      const { umountCommand, UmountError } = await import('./umount.js');
      try {
        await umountCommand(cmd.mountpoint, cmd.force, err);
        return 0;
      } catch (e) {
        if (e instanceof UmountError) {
          err(`stratafs: ${e.message}`);
          return 1;
        }
        throw e;
      }
    }
    case 'inspect':
    case 'stats': {
      const { statsCommand, inspectCommand } = await import('./stats.js');
      const { ControlError } = await import('./control.js');
      try {
        const text = cmd.kind === 'stats' ? await statsCommand(cmd.mountpoint, cmd.json, cmd.gc) : await inspectCommand(cmd.mountpoint, cmd.json);
        process.stdout.write(text + '\n');
        return 0;
      } catch (e) {
        if (e instanceof ControlError) {
          err(`stratafs: ${e.message}`);
          return 1;
        }
        throw e;
      }
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    err(`stratafs: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
