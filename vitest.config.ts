import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real Redis, real Docker: generous limits; the worker image build runs in a beforeAll.
    testTimeout: 120_000,
    hookTimeout: 1_800_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
