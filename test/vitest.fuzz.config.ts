/**
 * `npm run fuzz` (test/fuzz/run.mjs): the fuzz file alone, with the suite's setup
 * (test root, sentinels, host check and leftovers cleanup) and no per-test timeout
 * (the fuzz file bounds itself by the minutes asked for).
 */
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

export default defineConfig({
  ...base,
  // not mergeConfig: it would add the suite's include to this one
  test: { ...base.test, include: ['test/fuzz/**/*.fuzz.ts'], testTimeout: 0 },
});
