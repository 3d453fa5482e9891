/**
 * Child-process helpers for the harness. Anything that may touch a mount that
 * can hang runs as a child process with a timeout (or as an async fs call the
 * caller guards with `withTimeout`), so a stuck daemon never blocks the test
 * process itself.
 */
import { execFile, spawnSync } from 'node:child_process';
import { constants as osConstants } from 'node:os';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

/** Runs a program without a shell; never throws on a non-zero exit. */
export function run(file: string, args: string[], opts: { timeoutMs?: number; input?: Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      {
        encoding: 'buffer',
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 256 * 1024 * 1024,
        env: { ...process.env, LC_ALL: 'C', ...(opts.env ?? {}) },
        ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: unknown }) | null;
        let code: number | null = 0;
        let signal: NodeJS.Signals | null = null;
        if (e) {
          code = typeof e.code === 'number' ? e.code : null;
          signal = e.signal ?? null;
        }
        resolve({
          code,
          signal,
          stdout: Buffer.isBuffer(stdout) ? stdout : Buffer.from(stdout ?? ''),
          stderr: Buffer.isBuffer(stderr) ? stderr : Buffer.from(stderr ?? ''),
          timedOut: Boolean(e?.killed) && signal === 'SIGKILL',
        });
      },
    );
    if (opts.input) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Runs a bash script (built with `shq` for byte-exact names) with a timeout. */
export function bash(script: string, timeoutMs = 20_000): Promise<RunResult> {
  // The script travels on stdin as latin1 so that raw name bytes survive;
  // argv would be re-encoded as UTF-8 by Node.
  return run('bash', ['-s'], { timeoutMs, input: Buffer.from(script, 'latin1') });
}

/** Throws with the command's stderr unless it exited 0. */
export async function mustBash(script: string, timeoutMs = 20_000): Promise<RunResult> {
  const r = await bash(script, timeoutMs);
  if (r.code !== 0) {
    throw new Error(`bash failed (code ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.toString('latin1').trim()}\nscript:\n${script.slice(0, 2000)}`);
  }
  return r;
}

/**
 * Quotes a path or name (Buffer or latin1 byte string) for bash as $'...'
 * with every byte outside a safe set written as \xHH: non-UTF-8 bytes,
 * newlines and quotes pass through exactly.
 */
export function shq(p: Buffer | string): string {
  const b = typeof p === 'string' ? Buffer.from(p, 'latin1') : p;
  let out = "$'";
  for (const c of b) {
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2f || c === 0x2e || c === 0x5f || c === 0x2d) {
      out += String.fromCharCode(c);
    } else {
      out += '\\x' + c.toString(16).padStart(2, '0');
    }
  }
  return out + "'";
}

let strerrorMap: Map<string, string> | undefined;

/**
 * glibc's strerror text -> errno name ("No such file or directory" -> "ENOENT"),
 * so that failures of coreutils/attr tools compare as errno codes. perl is
 * Essential on Debian and prints glibc's own strings.
 */
export function errnoFromMessage(stderr: string): string | undefined {
  if (!strerrorMap) {
    strerrorMap = new Map();
    const byNum = new Map<number, string>();
    for (const [name, num] of Object.entries(osConstants.errno)) {
      // Aliases (EWOULDBLOCK/EAGAIN, EDEADLOCK/EDEADLK, ENOTSUP/EOPNOTSUPP): keep the first.
      if (!byNum.has(num)) byNum.set(num, name);
    }
    const r = spawnSync('perl', ['-e', 'for(1..133){$!=$_; print "$_\\t$!\\n"}'], { encoding: 'utf8' });
    for (const line of (r.stdout ?? '').split('\n')) {
      const [n, msg] = line.split('\t');
      const name = byNum.get(Number(n));
      if (name && msg) strerrorMap.set(msg, name);
    }
    if (strerrorMap.size === 0) throw new Error('perl did not print strerror texts: cannot map tool failures to errno');
  }
  const text = stderr.trim();
  // Tools print "prog: path: Message"; the path may contain ': ' itself, so
  // try the longest known message that ends the text.
  let best: string | undefined;
  let bestLen = 0;
  for (const [msg, name] of strerrorMap) {
    if (text.endsWith(msg) && msg.length > bestLen) {
      best = name;
      bestLen = msg.length;
    }
  }
  return best;
}

/** Rejects with `what` timed out after ms; the underlying work is abandoned, not cancelled. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}
