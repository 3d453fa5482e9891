// Used by test/integration/fresh-install.test.ts inside a fresh copy of the
// repo: mounts a one-file filesystem with the freshly built wrapper, reads the
// file from another process, unmounts, and prints one JSON line of results.
//   node binding-fresh-mount.mjs REPO MNT
// As non-root the mount is expected to fail quickly, naming the package.
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [repo, mnt] = process.argv.slice(2);
const { Fuse } = await import(pathToFileURL(join(repo, 'dist', 'native', 'fuse.js')).href);

const content = Buffer.from('fresh\n');
const st = (mode, size, ino) => {
  const a = new Float64Array(16);
  a[1] = ino; a[2] = mode; a[3] = 1; a[7] = size;
  return a;
};
const handlers = {
  getattr(path, cb) {
    if (path === '/') return cb(0, st(0o40755, 0, 1));
    if (path === '/hello') return cb(0, st(0o100644, content.length, 2));
    cb(-2);
  },
  readdir(path, fh, cb) { cb(0, ['hello']); },
  open(path, flags, cb) { cb(0, 42); },
  read(path, fh, buf, len, offset, cb) {
    const n = Math.max(0, Math.min(len, content.length - offset));
    content.copy(buf, 0, offset, offset + n);
    cb(n);
  },
};

const out = { uid: process.getuid() };
const fuse = new Fuse(mnt, handlers, { onExit: () => { out.exited = true; } });
const t0 = Date.now();
try {
  await fuse.mount();
  out.mounted = true;
} catch (err) {
  out.mounted = false;
  out.error = err.message;
}
out.mountMs = Date.now() - t0;
if (out.mounted) {
  out.read = await new Promise((resolve) => {
    const c = spawn('cat', [join(mnt, 'hello')]);
    let s = '';
    c.stdout.setEncoding('utf8').on('data', (d) => { s += d; });
    c.on('close', () => resolve(s));
  });
  await fuse.unmount();
}
process.stdout.write(JSON.stringify(out) + '\n');
