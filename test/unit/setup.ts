/**
 * globalSetup of `npm run test:unit` (test/vitest.unit.config.ts). As root it is the
 * suite's own (test/integration/setup.ts: the test root, the host baseline and its check).
 * Without root that setup cannot run (its host check reads /root, fusectl and the
 * sentinels' read-only bind need mounts), and the unit tests need none of it but their
 * scratch: a test root that TMPDIR and STRATAFS_RUNTIME_DIR point into, removed at the end.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import * as suite from '../integration/setup.js';

const isRoot = process.geteuid?.() === 0;
let root: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (isRoot) return suite.setup(project);
  root = await mkdtemp(join(tmpdir(), 'stratafs-test-'));
  process.env.STRATAFS_TEST_ROOT = root;
  process.env.TMPDIR = join(root, 'tmp');
  await mkdir(process.env.TMPDIR);
  process.env.STRATAFS_RUNTIME_DIR = join(root, 'run');
  console.log(`test root ${root} (not root: no host check)`);
}

export async function teardown(): Promise<void> {
  if (isRoot) return suite.teardown();
  if (!root) return;
  if (process.env.STRATAFS_KEEP_TMP) console.log(`test files kept in ${root}`);
  else await rm(root, { recursive: true, force: true });
}
