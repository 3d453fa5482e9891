import { describe, expect, it } from 'vitest';
import { run } from '../../src/bench/proc.js';

describe('bench child processes', () => {
  it('times a command and captures its output', async () => {
    const r = await run('sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    expect(r.seconds).toBeGreaterThan(0);
  });

  it('returns after a timeout even when something outside the process group keeps its pipes open', async () => {
    // Stands in for a reader stuck in D state on an unanswered FUSE request, which SIGKILL cannot end.
    const r = await run('bash', ['-c', 'setsid sleep 20 & echo $!; sleep 30'], { timeoutMs: 500 });
    const holder = Number(r.stdout.trim());
    // returned while the pipes' holder still lives: it did not wait for their EOF (an order, not a duration)
    let holderAlive = true;
    try { process.kill(holder, 0); } catch { holderAlive = false; }
    process.kill(holder, 'SIGTERM');
    expect(holderAlive).toBe(true);
    expect(r.timedOut).toBe(true);
    expect(r.stderr).toMatch(/stuck in the kernel/);
  }, 20_000);
});
