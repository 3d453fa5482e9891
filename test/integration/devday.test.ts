/**
 * A developer's day on a merged view (issue 10): real clients on a stratafs
 * mount, and the same steps on kernel overlayfs over identical layers.
 *
 * The lower layers hold a git repository with a small C project on two
 * branches, a prebuilt binary, an npm project whose dependencies are `npm pack`
 * tarballs (file: paths, lockfile generated offline), and a hand-made wheel.
 * On each mount, one after the other at the SAME mountpoint path (so paths
 * written into files, such as a venv's shebangs, are the same): git clone of
 * the lower repository into the mount, git checkout of another branch (in the
 * clone and in the lower repository itself), make, the built binary and the
 * lower one run from the mount (also after its copy-up), `npm ci --offline`
 * and the node_modules/.bin scripts, a Python venv made and used on the mount
 * with a console script installed from the local wheel.
 *
 * Compared: every step's exit code, stdout and stderr (npm's timing words
 * aside), and the resulting upper trees: names, types, modes, sizes, content
 * hashes, symlink targets, link counts and hard-link groups, whiteouts, and
 * the xattrs a user can see. What differs by nature is left out and named
 * below (git's index holds inode numbers and times: compared through
 * `git ls-files --stage` instead).
 *
 * Host safety: every command runs with a clean environment whose HOME, TMPDIR,
 * npm cache and config, git config and pip settings point into the scratch
 * tree; the venv lives on the mount; nothing is installed or configured on the
 * host. The Debian tools used (git, make, gcc, python3-venv) come from the test
 * preparation (test/prepare-machine.mjs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { kernelOverlayProblem, mount, requireKernel, tempDir, type Impl, type Layers, type MountHandle } from '../harness/mounts.js';
import { snapshot, showPath, type Tree } from '../harness/tree.js';

interface Step {
  name: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

let T: string;
let kernelProblem: string | undefined;
let env: NodeJS.ProcessEnv;
const live: MountHandle[] = [];
const PYTHON = '/usr/bin/python3';

const p = (...rel: string[]): string => join(T, ...rel);

/** Runs a bash script with the scratch-only environment; never throws on a non-zero exit. */
function sh(script: string, cwd: string, timeoutMs = 120_000): Promise<Step & { timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ name: script, code, stdout, stderr, timedOut });
    });
  });
}

async function must(script: string, cwd: string): Promise<string> {
  const r = await sh(script, cwd);
  if (r.code !== 0) throw new Error(`fixture step failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${script}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

const GREET_H = 'const char *greet(void);\n';
const HELLO_C = `#include <stdio.h>
#include <string.h>
#include "greet.h"
int main(int argc, char **argv) {
  printf("%s, %s\\n", greet(), argc > 1 ? argv[1] : "nobody");
  return argc > 1 && strcmp(argv[1], "fail") == 0 ? 7 : 0;
}
`;
const greetC = (word: string): string => `#include "greet.h"\nconst char *greet(void) { return "${word}"; }\n`;
const MAKEFILE = `CFLAGS = -O1
hello: hello.o greet.o
\t$(CC) -o $@ hello.o greet.o
%.o: %.c greet.h
\t$(CC) $(CFLAGS) -c -o $@ $<
clean:
\trm -f hello *.o
.PHONY: clean
`;

/** A wheel made by hand (zip + dist-info with a RECORD of sha256 hashes): no network, no build backend. */
const MAKE_WHEEL = `
import base64, hashlib, sys, zipfile
out = sys.argv[1]
files = {
  'hello_py/__init__.py': 'import sys\\ndef main():\\n    print("hello-py", " ".join(sys.argv[1:]), sys.prefix != sys.base_prefix)\\n    return 3 if sys.argv[1:] == ["fail"] else 0\\n',
  'hello_py-1.0.dist-info/METADATA': 'Metadata-Version: 2.1\\nName: hello-py\\nVersion: 1.0\\n',
  'hello_py-1.0.dist-info/WHEEL': 'Wheel-Version: 1.0\\nGenerator: stratafs-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
  'hello_py-1.0.dist-info/entry_points.txt': '[console_scripts]\\nhello-py = hello_py:main\\n',
}
record = []
with zipfile.ZipFile(out, 'w') as z:
  for name, text in files.items():
    data = text.encode()
    z.writestr(zipfile.ZipInfo(name, (2001, 9, 9, 1, 46, 40)), data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    record.append(f'{name},sha256={digest},{len(data)}')
  record.append('hello_py-1.0.dist-info/RECORD,,')
  z.writestr(zipfile.ZipInfo('hello_py-1.0.dist-info/RECORD', (2001, 9, 9, 1, 46, 40)), '\\n'.join(record) + '\\n')
`;

function pipWheel(): string | undefined {
  const dir = '/usr/share/python-wheels';
  const w = existsSync(dir) ? readdirSync(dir).find((n) => /^pip-.*\.whl$/.test(n)) : undefined;
  return w === undefined ? undefined : join(dir, w);
}

async function buildFixtures(): Promise<void> {
  for (const d of ['l1/tools', 'l2/tarballs', 'l2/wheels', 'src/pkg-a/bin', 'src/pkg-b', 'cbuild', 'mnt', 'run']) await mkdir(p(d), { recursive: true });

  // the repository: a C project on main, changed, deleted and renamed files on feature
  const repo = p('l1', 'repo');
  await mkdir(join(repo, 'docs'), { recursive: true });
  await writeFile(join(repo, 'greet.h'), GREET_H);
  await writeFile(join(repo, 'hello.c'), HELLO_C);
  await writeFile(join(repo, 'greet.c'), greetC('hello from main'));
  await writeFile(join(repo, 'Makefile'), MAKEFILE);
  await writeFile(join(repo, 'OLDNOTES'), 'only on main\n');
  await writeFile(join(repo, 'docs', 'a.txt'), 'a document that moves on feature\n');
  await writeFile(join(repo, '.gitignore'), 'hello\n*.o\n');
  await must('git init -q -b main . && git add -A && git commit -q -m "main: hello" && git checkout -q -b feature', repo);
  await writeFile(join(repo, 'greet.c'), greetC('hello from feature'));
  await writeFile(join(repo, 'FEATURE'), 'new on feature\n');
  await must('git rm -q OLDNOTES && git mv docs/a.txt docs/b.txt && git add -A && git commit -q -m "feature: greet differently" && git checkout -q main', repo);

  // a binary that lives in a lower layer
  const cb = p('cbuild');
  await writeFile(join(cb, 'greet.h'), GREET_H);
  await writeFile(join(cb, 'hello.c'), HELLO_C);
  await writeFile(join(cb, 'greet.c'), greetC('hello from the lower layer'));
  await must(`cc -O1 -o ${p('l1', 'tools', 'hello-lower')} hello.c greet.c`, cb);

  // npm: two packages packed to tarballs, a project referencing them by file: path, its lockfile made offline
  await writeFile(p('src/pkg-b/package.json'), JSON.stringify({ name: 'pkg-b', version: '2.0.0', main: 'index.js' }, null, 2));
  await writeFile(p('src/pkg-b/index.js'), "exports.shout = (s) => String(s).toUpperCase() + '!';\n");
  await writeFile(p('src/pkg-a/package.json'), JSON.stringify({ name: 'pkg-a', version: '1.0.0', bin: { 'hello-a': 'bin/hello-a.js' } }, null, 2));
  await writeFile(p('src/pkg-a/bin/hello-a.js'),
    "#!/usr/bin/env node\nconst { shout } = require('pkg-b');\nconst arg = process.argv[2] ?? 'nobody';\nconsole.log('hello-a', shout(arg), __dirname.endsWith('node_modules/pkg-a/bin'));\nprocess.exitCode = arg === 'fail' ? 5 : 0;\n");
  await chmod(p('src/pkg-a/bin/hello-a.js'), 0o755);
  for (const pkg of ['pkg-a', 'pkg-b']) await must(`npm pack --silent --pack-destination ${p('l2', 'tarballs')} >/dev/null`, p('src', pkg));
  const app = p('l2', 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({
    name: 'app', version: '0.0.0', private: true,
    scripts: { greet: 'hello-a world' },
    dependencies: { 'pkg-a': 'file:../tarballs/pkg-a-1.0.0.tgz', 'pkg-b': 'file:../tarballs/pkg-b-2.0.0.tgz' },
  }, null, 2) + '\n');
  await must('npm install --package-lock-only --offline --ignore-scripts --no-audit --no-fund --silent', app);
  if (!existsSync(join(app, 'package-lock.json'))) throw new Error('npm made no package-lock.json');

  await writeFile(p('src', 'make_wheel.py'), MAKE_WHEEL);
  await must(`${PYTHON} ${p('src', 'make_wheel.py')} ${p('l2', 'wheels', 'hello_py-1.0-py3-none-any.whl')}`, T);
}

async function writeGitconfig(): Promise<void> {
  await writeFile(p('home', '.gitconfig'), '[user]\n\tname = Dev\n\temail = dev@example.invalid\n[init]\n\tdefaultBranch = main\n');
}

/** The day's work on one mount at p('mnt'); returns every step's outcome. */
async function day(impl: Impl): Promise<{ steps: Step[]; upper: Tree }> {
  const layers: Layers = { lowers: [p('l2'), p('l1')], upper: p(impl, 'upper'), work: p(impl, 'work') };
  await mkdir(layers.upper!, { recursive: true });
  await mkdir(layers.work!, { recursive: true });
  // the same HOME (and caches) path for both, made afresh
  await rm(p('home'), { recursive: true, force: true });
  await mkdir(p('home', 'tmp'), { recursive: true });
  await writeGitconfig();

  const M = p('mnt');
  const h = await mount(impl, layers, M, { timeoutMs: 30_000 });
  live.push(h);
  const steps: Step[] = [];
  const step = async (name: string, script: string, cwd = M): Promise<Step> => {
    const r = await sh(script, cwd);
    const s: Step = { name, code: r.timedOut ? -1 : r.code, stdout: norm(r.stdout), stderr: norm(r.stderr) };
    steps.push(s);
    return s;
  };
  const pip = pipWheel()!;
  try {
    await step('git clone', `git clone -q ${M}/repo ${M}/clone && git -C clone log --oneline --all | sort`);
    await step('git checkout (clone)', 'git checkout -q feature && git status --porcelain && ls -1 . docs && cat greet.c', `${M}/clone`);
    await step('git checkout (lower repo, in place)', 'git checkout -q feature && git status --porcelain && git log -1 --format=%s && ls -1 . docs', `${M}/repo`);
    await step('git index', 'git ls-files --stage && git -C ../repo ls-files --stage', `${M}/clone`);
    await step('make', 'make', `${M}/clone`);
    await step('run built binary', './hello dev', `${M}/clone`);
    await step('run built binary (exit code)', './hello fail', `${M}/clone`);
    await step('make again: nothing to do', 'make', `${M}/clone`);
    await step('make after touching one source', 'touch greet.c && make && ./hello again', `${M}/clone`);
    await step('make in the lower repo', 'make && ./hello lower-repo && git status --porcelain --ignored', `${M}/repo`);
    await step('run lower binary', `${M}/tools/hello-lower one`);
    await step('run lower binary after its copy-up', `touch ${M}/tools/hello-lower && ${M}/tools/hello-lower two; echo "exit $?"`);
    await step('npm ci --offline', 'npm ci --offline --no-audit --no-fund', `${M}/app`);
    await step('node_modules/.bin script', './node_modules/.bin/hello-a there && stat -c "%n %F" node_modules/.bin/* && readlink node_modules/.bin/hello-a', `${M}/app`);
    await step('node_modules/.bin script (exit code)', './node_modules/.bin/hello-a fail', `${M}/app`);
    await step('npm run (bin on PATH)', 'npm run --silent greet', `${M}/app`);
    await step('python venv', `${PYTHON} -m venv --without-pip ${M}/venv && ls -1 ${M}/venv/bin && cat ${M}/venv/pyvenv.cfg`);
    await step('venv python', `${M}/venv/bin/python -c "import sys, os; print(sys.prefix, sys.prefix != sys.base_prefix, os.path.realpath(sys.executable))"`);
    await step('pip install of a local wheel into the venv', `${M}/venv/bin/python ${pip}/pip install --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check --root-user-action=ignore ${M}/wheels/hello_py-1.0-py3-none-any.whl`);
    await step('console script', `${M}/venv/bin/hello-py from the venv && head -1 ${M}/venv/bin/hello-py`);
    await step('console script (exit code)', `${M}/venv/bin/hello-py fail`);
  } finally {
    await h.unmount();
    live.splice(live.indexOf(h), 1);
  }
  return { steps, upper: await snapshot(layers.upper!, { timeoutMs: 60_000 }) };
}

/** npm's timings are the clock's */
function norm(s: string): string {
  return s.replace(/\bin \d+(\.\d+)?m?s\b/g, 'in <time>');
}

/**
 * Upper-tree entries whose content legitimately differs between two runs: git's
 * index records each file's ctime, mtime, inode and device (its entries are
 * compared through `git ls-files --stage` in the steps).
 */
const CONTENT_VARIES = new Set(['clone/.git/index', 'repo/.git/index']);
/**
 * Overlay bookkeeping that says nothing a user sees: origin holds a file handle of the lower
 * (filesystem-specific bytes), impure/nlink/uuid are caches. Opaque and redirect markers stay compared.
 */
const PRIVATE_XATTR = /^(trusted|user)\.overlay\.(origin|impure|nlink|uuid|upper|metacopy|protattr)$/;

interface Row { path: string; type: string; mode: string; size?: number; hash?: string; target?: string; nlink?: number; links?: string; rdev?: number; xattrs: string }

function rows(tree: Tree): Map<string, Row> {
  const byIno = new Map<bigint, string[]>();
  for (const n of tree.values()) if (n.type !== 'dir') byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), n.path]);
  const out = new Map<string, Row>();
  for (const n of tree.values()) {
    const whiteout = n.type === 'chr' && n.rdev === 0;
    const xattrs = Object.entries(n.xattrs).filter(([k]) => !PRIVATE_XATTR.test(k)).map(([k, v]) => `${k}=${v}`).sort().join(' ');
    const row: Row = { path: showPath(n.path), type: whiteout ? 'whiteout' : n.type, mode: (n.mode & 0o7777).toString(8), xattrs };
    if (n.type === 'file' || n.type === 'symlink') row.size = n.size;
    if (n.type === 'file' && !CONTENT_VARIES.has(n.path)) row.hash = n.hash;
    if (n.target !== undefined) row.target = n.target;
    if (n.type !== 'dir' && !whiteout) {
      row.nlink = n.nlink;
      row.links = (byIno.get(n.ino) ?? []).sort().join(',');
    }
    out.set(n.path, row);
  }
  return out;
}

describe("a developer's day on a merged view", () => {
  beforeAll(async () => {
    kernelProblem = await kernelOverlayProblem();
    const missing = ['git', 'make', 'cc', 'npm'].filter((t) => !['/usr/bin', '/bin', dirname(process.execPath)].some((d) => existsSync(join(d, t))));
    if (!existsSync(PYTHON)) missing.push(PYTHON);
    if (pipWheel() === undefined) missing.push('/usr/share/python-wheels/pip-*.whl (python3-venv)');
    if (missing.length) throw new Error(`tools missing (test/prepare-machine.mjs installs them): ${missing.join(', ')}`);
    T = await tempDir('devday');
    process.env.STRATAFS_RUNTIME_DIR = p('run');
    env = {
      PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: p('home'),
      TMPDIR: p('home', 'tmp'),
      XDG_CACHE_HOME: p('home', '.cache'),
      XDG_CONFIG_HOME: p('home', '.config'),
      LC_ALL: 'C',
      TZ: 'UTC',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: p('home', '.gitconfig'),
      GIT_AUTHOR_DATE: '2001-09-09T01:46:40Z',
      GIT_COMMITTER_DATE: '2001-09-09T01:46:40Z',
      npm_config_cache: p('home', '.npm'),
      npm_config_userconfig: p('home', '.npmrc'),
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      npm_config_loglevel: 'warn',
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONNOUSERSITE: '1',
      PIP_CONFIG_FILE: '/dev/null',
      PIP_NO_INPUT: '1',
    };
    await mkdir(p('home', 'tmp'), { recursive: true });
    await writeGitconfig();
    await buildFixtures();
  }, 180_000);

  afterAll(async () => {
    for (const h of live) await h.unmount().catch(() => undefined);
  });

  it('git, make, npm ci and a venv give the same results as on kernel overlayfs', async (ctx) => {
    requireKernel(kernelProblem, ctx);
    const k = await day('kernel');
    const s = await day('stratafs');

    // The day itself worked (so that two equal failures cannot pass).
    const by = (r: { steps: Step[] }, name: string): Step => r.steps.find((x) => x.name === name)!;
    for (const r of [k, s]) {
      for (const st of r.steps) {
        const want = /\(exit code\)$/.test(st.name) ? { 'run built binary (exit code)': 7, 'node_modules/.bin script (exit code)': 5, 'console script (exit code)': 3 }[st.name] : 0;
        expect(st.code, `${st.name}: ${st.stderr}`).toBe(want);
      }
      expect(by(r, 'git checkout (clone)').stdout).toContain('hello from feature');
      expect(by(r, 'run built binary').stdout).toBe('hello from feature, dev\n');
      expect(by(r, 'make again: nothing to do').stdout).toMatch(/Nothing to be done|is up to date/);
      expect(by(r, 'make after touching one source').stdout).toMatch(/greet\.o[\s\S]*hello from feature, again/);
      expect(by(r, 'make after touching one source').stdout).not.toMatch(/-o hello\.o/);
      expect(by(r, 'make in the lower repo').stdout).toContain('hello from feature, lower-repo');
      expect(by(r, 'run lower binary').stdout).toBe('hello from the lower layer, one\n');
      expect(by(r, 'run lower binary after its copy-up').stdout).toBe('hello from the lower layer, two\nexit 0\n');
      expect(by(r, 'npm ci --offline').stdout).toMatch(/added 2 packages/);
      expect(by(r, 'node_modules/.bin script').stdout).toMatch(/^hello-a THERE! true\n/);
      expect(by(r, 'npm run (bin on PATH)').stdout).toBe('hello-a WORLD! true\n');
      expect(by(r, 'venv python').stdout).toContain(`${p('mnt')}/venv True`);
      expect(by(r, 'pip install of a local wheel into the venv').stdout).toContain('Successfully installed hello-py-1.0');
      expect(by(r, 'console script').stdout).toBe(`hello-py from the venv True\n#!${p('mnt')}/venv/bin/python\n`);
    }

    // The same outcome, step by step.
    expect(s.steps).toEqual(k.steps);

    // The same upper trees.
    const a = rows(k.upper);
    const b = rows(s.upper);
    expect(a.size).toBeGreaterThan(50);
    expect([...a.values()].some((r) => r.type === 'whiteout')).toBe(true);
    expect([...a.values()].some((r) => (r.nlink ?? 0) > 1)).toBe(true);
    const diffs: string[] = [];
    for (const path of [...new Set([...a.keys(), ...b.keys()])].sort()) {
      const x = JSON.stringify(a.get(path) ?? null);
      const y = JSON.stringify(b.get(path) ?? null);
      if (x !== y) diffs.push(`kernel ${x}\nstratafs ${y}`);
    }
    expect(diffs.join('\n\n')).toBe('');
  }, 240_000);
});

