#!/usr/bin/env node
// postinstall: make the native layer usable on a fresh machine.
//  1. apply our fuse-native patch (patch-package; a no-op when already applied),
//  2. rebuild fuse-native with node-gyp: the addon gets RPATH $ORIGIN and
//     build/Release holds the bundled libfuse.so + libfuse.so.2, so no system
//     libfuse2 is needed,
//  3. build the project's syscall addon (src/native/binding.gyp) the same way.
// npm 11 does not run dependencies' install scripts here, so fuse-native's own
// node-gyp-build never runs: this script is the only build.
// Any failure ends the install with one line naming the step.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const require = createRequire(path.join(root, 'package.json'));

function fail(step, detail) {
  const reason = String(detail ?? '').trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
  console.error(`stratafs native build: ${step} failed${reason ? ': ' + reason : ''}`);
  process.exit(1);
}

function run(step, args, cwd = root) {
  const res = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', env: process.env });
  if (res.error) fail(step, res.error.message);
  if (res.status !== 0) {
    // the whole log helps whoever has to fix the build; the last line says it all
    process.stderr.write(res.stdout ?? '');
    process.stderr.write(res.stderr ?? '');
    const errLine = (res.stderr ?? '').split('\n').filter((l) => /error|ERR!/i.test(l) && !/not ok/.test(l))[0];
    fail(step, errLine ?? `exit ${res.status}`);
  }
  return res.stdout;
}

function resolveDir(pkg) {
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch (err) {
    return fail(`locating ${pkg}`, err.message);
  }
}

// Headers of the running node: npm passes its nodedir config; a node installed
// with its headers (Debian's /usr/include/node) works offline too; otherwise
// node-gyp downloads them.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [`--nodedir=${process.env.npm_config_nodedir}`];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const versionH = path.join(prefix, 'include', 'node', 'node_version.h');
  if (existsSync(versionH)) {
    const h = readFileSync(versionH, 'utf8');
    const num = (name) => (h.match(new RegExp(`#define ${name} (\\d+)`)) ?? [])[1];
    const v = `${num('NODE_MAJOR_VERSION')}.${num('NODE_MINOR_VERSION')}.${num('NODE_PATCH_VERSION')}`;
    if (`v${v}` === process.version) return [`--nodedir=${prefix}`];
  }
  return [];
}

const nodeGyp = path.join(resolveDir('node-gyp'), 'bin', 'node-gyp.js');
const patchPackage = path.join(resolveDir('patch-package'), 'index.js');
const fuseDir = resolveDir('fuse-native');
const gypArgs = nodedirArgs();

run('applying src/native/patches to fuse-native', [patchPackage, '--patch-dir', path.relative(root, path.join(here, 'patches')), '--error-on-fail']);

run('building fuse-native (node-gyp)', [nodeGyp, 'rebuild', '--directory', fuseDir, ...gypArgs]);
const fuseNode = path.join(fuseDir, 'build', 'Release', 'fuse.node');
try {
  require(fuseNode);
} catch (err) {
  fail('loading the built fuse-native addon', err.message);
}

if (existsSync(path.join(here, 'binding.gyp'))) {
  run('building the syscall addon in src/native (node-gyp)', [nodeGyp, 'rebuild', '--directory', here, ...gypArgs]);
}

console.log('stratafs native build: fuse-native (patched, bundled libfuse) and src/native built');
