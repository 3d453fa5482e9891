// Lint configuration for `npm run lint` (eslint --config test/eslint.config.mjs).
// ESLint's recommended rules plus typescript-eslint's recommended rules; each
// adjustment below says why.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default defineConfig(
  {
    ignores: ['dist/**', 'node_modules/**', 'src/native/build/**', 'examples/**/.build/**', 'bench-results/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The .mjs scripts (build, fuzz runner, harness children) run under Node.
    languageOptions: { globals: { ...globals.node } },
  },
  {
    rules: {
      // Same convention as tsc's noUnusedParameters: a leading _ marks a parameter an
      // interface requires but this implementation does not read (core ops all take the
      // caller). `const { a: _, ...rest } = o` is how a property is left out of a copy.
      '@typescript-eslint/no-unused-vars': ['error', {
        argsIgnorePattern: '^_',
        varsIgnorePattern: '^_',
        ignoreRestSiblings: true,
      }],
    },
  },
);
