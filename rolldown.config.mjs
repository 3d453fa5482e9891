// The CLI as CommonJS chunks (dist/cjs/), built from tsc's ESM output (dist/) by `npm run build`.
// The `stratafs` command (src/native/launcher.c) runs it: Node 20 loads one CommonJS file much
// faster than the dozens of ES modules it is made of (no compile cache for either), and a mount's
// daemon pays that load before the mount can answer (measured: ~30 ms CPU of ~90; native-notes/launcher.md).
// Dynamic imports stay chunks of their own (commander, image commands, fuse-native's adapter load
// only when used). Packages and node: built-ins are required at run time, not bundled.
// The chunks sit two levels below the package root, as dist/cli/*.js do, so every
// import.meta.url-relative path (native addons, package.json) resolves the same.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('./dist/cjs/', import.meta.url));
rmSync(dir, { recursive: true, force: true });

const config = {
  input: { stratafs: fileURLToPath(new URL('./dist/cli/main.js', import.meta.url)) },
  platform: 'node',
  // bare specifiers (packages, node: built-ins) stay require()s; only the project's own files are bundled
  external: (id) => !id.startsWith('.') && !id.startsWith('/'),
  output: { dir, format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: '[name].cjs' },
};

export default config;

// `node rolldown.config.mjs` (npm run build): the same build without the CLI's chunk table.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { build } = await import('rolldown');
  await build(config);
}
