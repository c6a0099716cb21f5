import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*', 'test'],
    // 2-core machines: two forks keep CPU-bound tests from starving each other.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default', './scripts/vitest-summary-reporter.ts'],
  },
});
