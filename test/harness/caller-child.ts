/**
 * The process of one Caller (callers.ts): started by setpriv in the mount's
 * root, it reads {n, umask, op} lines on stdin, applies each op with the
 * harness's OpRunner on "." under that umask and answers {n, r} (or {n, error}
 * for a failure that is not an errno) on stdout. Runs bundled, outside vitest.
 */
import { createInterface } from 'node:readline';
import { OpRunner, type Op } from './ops.js';

const runner = new OpRunner('.', Number(process.argv[process.argv.length - 1]) || 10_000);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { n, umask, op } = JSON.parse(line) as { n: number; umask: number; op: Op };
  let reply: unknown;
  try {
    process.umask(umask);
    reply = { n, r: await runner.apply(op) };
  } catch (e) {
    reply = { n, error: e instanceof Error ? e.message : String(e) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
await runner.closeAll();
