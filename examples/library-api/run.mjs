#!/usr/bin/env node
// Compiles demo.ts with the project's TypeScript and runs it, so the example is real TypeScript.
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
// Output stays inside the package so that `import 'stratafs'` resolves by self-reference.
const out = join(here, '.build');
execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
  '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--strict',
  '--skipLibCheck', '--types', 'node', '--rootDir', here, '--outDir', out, join(here, 'demo.ts')], { stdio: 'inherit', cwd: root });
execFileSync(process.execPath, [join(out, 'demo.js')], { stdio: 'inherit', cwd: root });
