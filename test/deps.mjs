#!/usr/bin/env node
// `npm run deps`: the folder-level import graph of src/ (dependency-cruiser), for reviews of
// the floors (cli -> fuse -> core -> native; nothing imports upward). Type-only imports count:
// they tie the folders' code together as much as value imports do.
// Prints each folder with its module count, then each arrow with the number of imports it
// stands for (type-only ones in brackets), then the two-way arrows and the module cycles.
// A module-level import cycle, and an arrow the FLOORS table below does not allow, is an error (exit 1; `--check` prints only the errors), and
// `npm run lint`, so `npm test`, runs the check: the modules of a cycle cannot be read,
// tested or moved one at a time, and one type-only import is enough to close one again
// (core/ctx.ts naming namei's cache type did).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const json = execFileSync(
  'node',
  ['node_modules/dependency-cruiser/bin/dependency-cruise.mjs', 'src', '--no-config', '--ts-config', 'tsconfig.json',
    '--ts-pre-compilation-deps', '--include-only', '^src/', '--output-type', 'json'],
  { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20 },
);
const { modules } = JSON.parse(json);
const check = process.argv.includes('--check');
const out = check ? () => {} : console.log;

// src/a/b.ts -> src/a; src/index.ts stays itself
const folder = (f) => f.split('/').slice(0, 2).join('/');
const counts = new Map();
const arrows = new Map();
for (const m of modules) {
  const from = folder(m.source);
  counts.set(from, (counts.get(from) ?? 0) + 1);
  for (const d of m.dependencies) {
    const to = folder(d.resolved);
    if (to === from) continue;
    const key = `${from} -> ${to}`;
    const a = arrows.get(key) ?? { n: 0, typeOnly: 0 };
    a.n++;
    if (d.dependencyTypes.includes('type-only')) a.typeOnly++;
    arrows.set(key, a);
  }
}
out('folders (modules):');
for (const [f, n] of [...counts].sort()) out(`  ${f} (${n})`);
out('arrows (imports, [type-only]):');
for (const [k, a] of [...arrows].sort()) out(`  ${k} (${a.n}${a.typeOnly ? `, [${a.typeOnly}]` : ''})`);
const pairs = [...arrows.keys()].filter((k) => { const [a, b] = k.split(' -> '); return arrows.has(`${b} -> ${a}`) && a < b; });
out(pairs.length ? `two-way: ${pairs.map((k) => k.replace(' -> ', ' <-> ')).join(', ')}` : 'two-way: none');

// The floors: each folder may import only the folders listed for it (shared/ is the vocabulary
// below them all; image/ sits beside fuse/ over core/; the library entry and bench/ sit on top).
// An arrow outside this table is an error, so a new upward import fails `npm run lint`.
const FLOORS = {
  'src/index.ts': ['src/cli', 'src/fuse', 'src/image', 'src/core', 'src/native', 'src/shared'],
  'src/bench': ['src/cli', 'src/fuse', 'src/image', 'src/core', 'src/native', 'src/shared'],
  'src/cli': ['src/fuse', 'src/image', 'src/core', 'src/native', 'src/shared'],
  'src/fuse': ['src/core', 'src/native', 'src/shared'],
  'src/image': ['src/core', 'src/native', 'src/shared'],
  'src/core': ['src/native', 'src/shared'],
  'src/native': ['src/shared'],
  'src/shared': [],
};
const upward = [...arrows.keys()].filter((k) => { const [a, b] = k.split(' -> '); return !(FLOORS[a] ?? []).includes(b); });
if (upward.length) {
  console.error('error: imports against the floors (cli -> fuse -> core -> native, shared below all; see native-notes/architecture.md):');
  for (const k of upward) console.error(`  ${k}`);
  process.exitCode = 1;
}

// Module-level import cycles (strongly connected components of more than one module).
const edges = new Map(modules.map((m) => [m.source, m.dependencies.map((d) => d.resolved).filter((r) => r.startsWith('src/'))]));
const index = new Map(), low = new Map(), stack = [], onStack = new Set(), sccs = [];
let next = 0;
const visit = (v) => {
  index.set(v, next); low.set(v, next); next++; stack.push(v); onStack.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
    else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
  }
  if (low.get(v) === index.get(v)) {
    const c = [];
    let w;
    do { w = stack.pop(); onStack.delete(w); c.push(w); } while (w !== v);
    if (c.length > 1) sccs.push(c.sort());
  }
};
for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v);
// The shortest chain of imports inside component `c` that leads from a module back to itself.
const shortestLoop = (c) => {
  const inC = new Set(c);
  let best;
  for (const start of c) {
    const prev = new Map([[start, undefined]]);
    const queue = [start];
    let found;
    for (let i = 0; i < queue.length && found === undefined; i++) {
      for (const w of edges.get(queue[i]) ?? []) {
        if (w === start) { found = queue[i]; break; }
        if (inC.has(w) && !prev.has(w)) { prev.set(w, queue[i]); queue.push(w); }
      }
    }
    const loop = [start];
    for (let v = found; v !== start; v = prev.get(v)) loop.splice(1, 0, v);
    loop.push(start);
    if (best === undefined || loop.length < best.length) best = loop;
  }
  return best;
};
const short = (f) => f.replace(/^src\//, '').replace(/\.ts$/, '');
if (sccs.length === 0) out('module cycles: none');
else {
  console.error('error: module cycles (each line: modules that import each other, type-only imports included):');
  for (const c of sccs) {
    console.error(`  ${c.map(short).join(' ')}`);
    console.error(`    shortest loop: ${shortestLoop(c).map(short).join(' -> ')}`);
  }
  process.exitCode = 1;
}
