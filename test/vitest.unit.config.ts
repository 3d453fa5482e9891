import { defineConfig } from 'vitest/config';
import suite from './vitest.config.js';

// `npm run test:unit`: the tests that need neither root nor FUSE (test/unit), as any user.
// (Not mergeConfig: it would append to include and globalSetup instead of replacing them.)
export default defineConfig({
  ...suite,
  test: { ...suite.test, include: ['test/unit/**/*.test.ts'], globalSetup: ['test/unit/setup.ts'] },
});
