/**
 * Operations by other users: a Caller (uid, gid, supplementary groups, umask)
 * is a child process entered with `setpriv` (no capabilities: a non-zero uid
 * keeps none after setresuid, and --inh-caps=-all clears the inheritable set)
 * that runs the harness's own OpRunner (caller-child.ts) in the mount's root.
 * One child per identity and OpRunner, kept for the whole sequence, so the
 * descriptors it opens stay open across operations.
 *
 * The run's temp root is 0700 (mkdtemp) and a caller could not walk to the
 * mount: the child is started with the mount root as its working directory
 * (chdir happens before setpriv drops root) and names every path relative to
 * it. For the same reason the child's code travels on the command line
 * (`node -e`), bundled once per test process by rolldown from caller-child.ts;
 * symlink targets that name the run's sentinels are expanded here, and the
 * child's copy of sentinel.ts (which would look for the test root) is a stub.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { Op, OpResult } from './ops.js';
import { expandTarget } from './sentinel.js';

export interface Caller {
  uid: number;
  gid: number;
  /** supplementary groups; none when omitted */
  groups?: readonly number[];
  /** umask for the operation (default 022) */
  umask?: number;
}

export const showCaller = (c: Caller): string =>
  `${c.uid}:${c.gid}${c.groups?.length ? `+${c.groups.join(',')}` : ''}${c.umask !== undefined ? `/0${c.umask.toString(8)}` : ''}`;

/** The identity a child serves (umask is set per operation). */
const identity = (c: Caller): string => `${c.uid}:${c.gid}:${(c.groups ?? []).join(',')}`;

let childCode: Promise<string> | undefined;

/** caller-child.ts and what it imports, as one ES module text. */
function bundle(): Promise<string> {
  childCode ??= (async () => {
    const { rolldown } = await import('rolldown');
    const b = await rolldown({
      input: fileURLToPath(new URL('./caller-child.ts', import.meta.url)),
      platform: 'node',
      external: (id: string) => !id.startsWith('.') && !id.startsWith('/'),
      logLevel: 'silent',
      // the harness imports its .ts siblings by their .js names
      resolve: { extensionAlias: { '.js': ['.ts', '.js'] } },
      plugins: [{
        name: 'sentinel-stub',
        load(id: string) {
          if (!id.endsWith('/sentinel.ts')) return null;
          return 'export function expandTarget(t) { if (t.startsWith("\\0")) throw new Error("unexpanded sentinel target"); return t; }';
        },
      }],
    });
    try {
      const { output } = await b.generate({ format: 'esm' });
      return output[0].code;
    } finally {
      await b.close();
    }
  })();
  return childCode;
}

type Reply = { n: number; r?: OpResult; error?: string };

class CallerProcess {
  private seq = 0;
  private waiting = new Map<number, (r: Reply) => void>();
  private exited: Promise<void>;
  private stderr = '';

  constructor(private readonly child: ChildProcessWithoutNullStreams, readonly what: string) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      this.waiting.get(reply.n)?.(reply);
      this.waiting.delete(reply.n);
    });
    child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString('utf8'); });
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => {
      for (const [, w] of this.waiting) w({ n: -1, error: `caller ${this.what} exited (${code ?? signal}): ${this.stderr.trim()}` });
      this.waiting.clear();
      resolve();
    }));
  }

  async apply(o: Op, umask: number): Promise<OpResult> {
    const n = this.seq++;
    const reply = await new Promise<Reply>((resolve) => {
      this.waiting.set(n, resolve);
      this.child.stdin.write(JSON.stringify({ n, umask, op: o }) + '\n');
    });
    if (reply.error !== undefined || !reply.r) throw new Error(`caller ${this.what}: ${reply.error ?? 'no result'}`);
    return reply.r;
  }

  /** Ends the child (it closes its descriptors on EOF) and waits for it: its cwd is in the mount. */
  async close(): Promise<void> {
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** The caller processes of one mount root. */
export class CallerPool {
  private procs = new Map<string, Promise<CallerProcess>>();
  /**
   * `enter`, when given, are the words that take a process into another namespace and
   * to the mount's root there (e.g. nsenter ... --wd=ROOT): `root` is then its path there.
   */
  constructor(private readonly root: string, private readonly timeoutMs: number, private readonly enter?: readonly string[]) {}

  private get(c: Caller): Promise<CallerProcess> {
    const key = identity(c);
    let p = this.procs.get(key);
    if (!p) {
      p = bundle().then((code) => {
        const words = [
          'setpriv', `--reuid=${c.uid}`, `--regid=${c.gid}`, c.groups?.length ? `--groups=${c.groups.join(',')}` : '--clear-groups',
          '--inh-caps=-all', process.execPath, '--input-type=module', '-e', code, String(this.timeoutMs),
        ];
        const all = this.enter ? [...this.enter, ...words] : words;
        const child = spawn(all[0]!, all.slice(1), { cwd: this.enter ? '/' : this.root, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
        return new CallerProcess(child, showCaller(c));
      });
      this.procs.set(key, p);
    }
    return p;
  }

  async apply(o: Op, c: Caller): Promise<OpResult> {
    const { as: _as, ...plain } = o;
    if (plain.op === 'symlink') plain.target = expandTarget(plain.target);
    return (await this.get(c)).apply(plain as Op, c.umask ?? 0o022);
  }

  async closeAll(): Promise<void> {
    const all = [...this.procs.values()];
    this.procs.clear();
    for (const p of all) await (await p).close();
  }
}

/**
 * The ids of the callers' matrix. Unused on a Debian host (uids 1000+ belong to
 * no one in a fresh machine's /etc/passwd; setpriv needs no entry).
 */
export const OWNER: Caller = { uid: 1000, gid: 1000 };
/** a member of the owner's group (supplementary) */
export const MEMBER: Caller = { uid: 1001, gid: 1001, groups: [1000] };
/** in none of the owner's groups */
export const STRANGER: Caller = { uid: 1002, gid: 1002 };
