#!/usr/bin/env node
// `npm run deps`: the folder-level import graph of src/ (dependency-cruiser), for reviews of
// the floors (cli -> fuse -> core -> native; nothing imports upward). Type-only imports count:
// they tie the folders' code together as much as value imports do.
// Prints each folder with its module count, then each arrow with the number of imports it
// stands for (type-only ones in brackets), then the folders' cycles, if any.
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
console.log('folders (modules):');
for (const [f, n] of [...counts].sort()) console.log(`  ${f} (${n})`);
console.log('arrows (imports, [type-only]):');
for (const [k, a] of [...arrows].sort()) console.log(`  ${k} (${a.n}${a.typeOnly ? `, [${a.typeOnly}]` : ''})`);
const pairs = [...arrows.keys()].filter((k) => { const [a, b] = k.split(' -> '); return arrows.has(`${b} -> ${a}`) && a < b; });
console.log(pairs.length ? `two-way: ${pairs.map((k) => k.replace(' -> ', ' <-> ')).join(', ')}` : 'two-way: none');

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
console.log(sccs.length ? 'module cycles:' : 'module cycles: none');
for (const c of sccs) console.log(`  ${c.map((f) => f.replace(/^src\//, '').replace(/\.ts$/, '')).join(' ')}`);
