import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root,
  test: {
    include: ['test/**/*.test.ts'],
    // Mount tests share /dev/fuse, the kernel and 2 cores: one file at a time.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One temp root per run; its teardown fails the run on leaked mounts or daemons.
    globalSetup: ['test/integration/setup.ts'],
  },
});
