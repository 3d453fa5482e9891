/**
 * `--enable-uring`: the fuse module parameter `enable_uring` (host-wide, root) set to Y for
 * this benchmark run only, so a stratafs variant with `-o io_uring` can be measured against
 * the plain device (native-notes/fuse-server.md, "io_uring"). The previous value is written
 * back when the run ends however it ends -- finished, failed, SIGINT/SIGTERM (their handlers
 * end in process.exit) -- from a process 'exit' handler, which runs synchronously on every
 * exit but SIGKILL. Tests never touch the parameter. A connection that negotiated io_uring
 * keeps it after the parameter goes back (fs/fuse/dev_uring.c fuse_uring_cmd checks
 * `!enable_uring && !fc->io_uring`), so restoring never breaks a mount still being unmounted.
 */
import fs from 'node:fs';

export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

let previous: string | undefined;
/** the parameter's file (another only in the unit test, which never touches the host's) */
let file = ENABLE_URING;

/** Sets enable_uring to Y; the value before ('Y' or 'N'). Throws where the kernel has no FUSE over io_uring. */
export function enableUring(log: (line: string) => void, path = ENABLE_URING): string {
  let before: string;
  try {
    before = fs.readFileSync(path, 'latin1').trim();
  } catch (e) {
    throw new Error(`--enable-uring: ${path} is not readable (a kernel without CONFIG_FUSE_IO_URING, or the fuse module not loaded): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (previous === undefined) {
    previous = before;
    file = path;
    process.on('exit', restoreUring);
  }
  fs.writeFileSync(path, 'Y');
  log(`enable_uring: ${before} -> Y for this run (restored on exit)`);
  return before;
}

/** Writes the value from before enableUring() back; idempotent, synchronous (runs in 'exit'). */
export function restoreUring(): void {
  if (previous === undefined) return;
  const v = previous;
  previous = undefined;
  try {
    fs.writeFileSync(file, v === 'Y' ? 'Y' : 'N');
    process.stderr.write(`bench: enable_uring restored to ${v}\n`);
  } catch (e) {
    process.stderr.write(`bench: could not restore ${file} to ${v}: ${e instanceof Error ? e.message : String(e)}\n`);
  }
}
