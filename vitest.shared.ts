// Shared vitest settings: every package's tests resolve @flatrank/* workspace packages to their
// TypeScript sources (the "@flatrank/source" export condition), so tests never run stale dist/.
import { defineProject } from 'vitest/config';

export function flatrankProject(name: string, overrides: { testTimeout?: number } = {}) {
  return defineProject({
    resolve: { conditions: ['@flatrank/source'] },
    ssr: { resolve: { conditions: ['@flatrank/source'] } },
    test: {
      name,
      include: ['tests/**/*.test.ts', '*.test.ts'],
      environment: 'node',
      testTimeout: overrides.testTimeout ?? 30_000,
      hookTimeout: 60_000,
    },
  });
}
