// The TypeScript library API: mount a merged view from inside your own program.
// Run: npm run build && node examples/library-api/run.mjs  (run.mjs compiles this file first)
//
// The process that calls mount() serves the filesystem on its event loop, so it must
// never touch the mountpoint synchronously (no fs.*Sync on it, no execSync of a
// command that reads it): use fs.promises or a child process, as below.
import { mount } from 'stratafs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled into .build/ by run.mjs, hence two levels up to examples/.
const layers = process.argv[2] ?? join(here, '..', '..', 'container-story', 'layers');

async function main(): Promise<void> {
  const run = await mkdtemp(join(tmpdir(), 'stratafs-lib-'));
  const m = await mount({
    lowerdirs: [join(layers, '3-update'), join(layers, '2-app'), join(layers, '1-base')],
    upperdir: join(run, 'upper'),
    workdir: join(run, 'work'),
    mountpoint: join(run, 'merged'),
  });
  try {
    console.log('merged /work:', (await readdir(join(m.mountpoint, 'work'))).sort().join(' '));
    await writeFile(join(m.mountpoint, 'work', 'from-library.txt'), 'written through the library API\n');
    console.log('read back:', (await readFile(join(m.mountpoint, 'work', 'from-library.txt'), 'utf8')).trim());
  } finally {
    await m.unmount();
  }
  // After unmount the upper holds the change; reading it directly is safe now.
  console.log('upper has:', (await readdir(join(run, 'upper', 'work'))).join(' '));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
