#!/usr/bin/env node
// Sequential-write throughput through the binding alone (no overlay core):
// the fixture filesystem counts and discards the data, dd writes 1 GiB.
//   node test/harness/binding-bench.mjs [runs=3] [MiB=1024] ['{"bigWrites":false}']
// Prints one JSON line: MB/s per run and the histogram of write request sizes.
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureBuilt, startFixture } from './binding-fixture.mjs';

const runs = Number(process.argv[2] ?? 3);
const mib = Number(process.argv[3] ?? 1024);
const options = JSON.parse(process.argv[4] ?? '{}');

function dd(file) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    c.on('close', (code) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) return reject(new Error(err));
      resolve({ seconds: +s.toFixed(3), MBps: +((mib * 2 ** 20) / s / 1e6).toFixed(1) });
    });
  });
}

ensureBuilt();
const fx = await startFixture(options, { discardData: true, quiet: ['write', 'getattr', 'fgetattr', 'open', 'release', 'create'] });
const results = [];
try {
  for (let i = 0; i < runs; i++) results.push(await dd(join(fx.mnt, `f${i}`)));
} finally {
  const log = fx.log;
  await fx.stop(true).catch(() => undefined);
  const text = await readFile(log, 'utf8').catch(() => '');
  await rm(fx.base, { recursive: true, force: true });
  const exit = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.op === 'exit');
  process.stdout.write(JSON.stringify({ options, mib, runs: results, writeRequests: exit?.writeCount, writeBytes: exit?.writeBytes, writeSizes: exit?.writeSizes }) + '\n');
}
