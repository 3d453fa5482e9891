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
    process.kill(Number(r.stdout.trim()), 'SIGTERM');
    expect(r.timedOut).toBe(true);
    expect(r.stderr).toMatch(/stuck in the kernel/);
    expect(r.seconds).toBeLessThan(15);
  }, 20_000);
});
