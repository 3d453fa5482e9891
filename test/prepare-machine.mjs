#!/usr/bin/env node
// Installs the Debian packages the test suite uses that a fresh machine lacks, and
// declares what it installed: this is the one change to the host a test run makes.
// It runs before vitest in `npm test`, so before the run's host baseline
// (test/integration/setup.ts, test/harness/host-check.ts): the teardown's host check
// therefore sees none of it, and leaves apt/dpkg state out of its watch for the same
// reason. stratafs itself needs none of these (see src/native/build.mjs); the tests do.
import { execFileSync, spawnSync } from 'node:child_process';

const wanted = [
  // the differential harness's sanity check, and the reference for fuse-overlayfs options
  'fuse-overlayfs',
  // mount.fuse3, fusermount3 for the non-root cases
  'fuse3',
  // getfattr/setfattr as an outside witness
  'attr',
  // setfacl/getfacl: POSIX ACLs through a mount (test/harness/ops.ts, cases-acl.ts)
  'acl',
  // image tests (test/*/image-*.test.ts): OCI layouts and archives made by real tools, zstd layers
  'umoci', 'skopeo', 'zstd',
  // real clients on a mount: podman and buildah (rootful with runc, rootless with newuidmap),
  // a tiny offline base image from busybox-static
  'podman', 'buildah', 'runc', 'uidmap', 'busybox-static',
  // a developer's day on a merged view (test/integration/devday.test.ts): git, make and a C
  // compiler, a Python venv (python3-venv brings the pip wheel the test installs a local wheel with)
  'git', 'make', 'gcc', 'python3-venv',
  // full disks (test/integration/full-disk.test.ts): setquota for per-user quotas on an ext4 image,
  // btrfs qgroups for EDQUOT where the kernel has no quota format for ext4
  'quota', 'btrfs-progs',
];

/** Packages of `names` that dpkg does not list as installed. */
function notInstalled(names) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package}\t${Status}\n', ...names], { encoding: 'utf8' });
  if (r.error) {
    console.error(`prepare-machine: cannot ask dpkg which packages are installed (${r.error.message}); the tests need Debian packages: ${names.join(' ')}`);
    process.exit(1);
  }
  const installed = new Set(r.stdout.split('\n').filter((l) => l.endsWith('install ok installed')).map((l) => l.split('\t')[0]));
  return names.filter((n) => !installed.has(n));
}

const missing = notInstalled(wanted);
if (missing.length === 0) {
  console.log(`prepare-machine: installs nothing (all ${wanted.length} packages the tests use are installed: ${wanted.join(' ')})`);
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error(`prepare-machine: missing Debian packages: ${missing.join(' ')} (run as root, or apt-get install them)`);
  process.exit(1);
}
console.log(`prepare-machine: installs ${missing.join(' ')} (with their dependencies; already installed: ${wanted.filter((w) => !missing.includes(w)).join(' ') || 'none'})`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
const still = notInstalled(wanted);
if (still.length) {
  console.error(`prepare-machine: still missing after apt-get install: ${still.join(' ')}`);
  process.exit(1);
}
console.log(`prepare-machine: installed ${missing.join(' ')}`);
