#!/usr/bin/env node
// Installs the Debian packages the test suite uses that a fresh machine lacks.
// stratafs itself needs none of them (see src/native/build.mjs); the tests do:
// fuse-overlayfs (the differential harness's sanity check), fuse3 (mount.fuse3,
// fusermount for the non-root cases), attr (getfattr/setfattr as an outside witness).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const wanted = [
  { pkg: 'fuse-overlayfs', file: '/usr/bin/fuse-overlayfs' },
  { pkg: 'fuse3', file: '/sbin/mount.fuse3' },
  { pkg: 'attr', file: '/usr/bin/getfattr' },
  // image tests (test/*/image-*.test.ts): OCI layouts and archives made by real tools, zstd layers
  { pkg: 'umoci', file: '/usr/bin/umoci' },
  { pkg: 'skopeo', file: '/usr/bin/skopeo' },
  { pkg: 'zstd', file: '/usr/bin/zstd' },
  // a developer's day on a mount (test/integration/devday.test.ts): git, make and a C compiler, a Python venv
  // (python3-venv brings the pip wheel the test installs a local wheel with)
  { pkg: 'git', file: '/usr/bin/git' },
  { pkg: 'make', file: '/usr/bin/make' },
  { pkg: 'gcc', file: '/usr/bin/gcc' },
  { pkg: 'python3-venv', file: '/usr/share/doc/python3-venv' },
];
const missing = wanted.filter((w) => !existsSync(w.file)).map((w) => w.pkg);
if (missing.length === 0) process.exit(0);
if (process.getuid?.() !== 0) {
  console.error(`prepare-machine: missing Debian packages: ${missing.join(' ')} (run as root, or apt-get install them)`);
  process.exit(1);
}
console.log(`prepare-machine: installing ${missing.join(' ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
