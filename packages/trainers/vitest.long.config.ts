// The long test target (`npm run test:long -w packages/trainers`): real-length trainings that do
// not fit the default test budget. Excluded from the default run by its file suffix (*.long.ts).
import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['@flatrank/source'] },
  ssr: { resolve: { conditions: ['@flatrank/source'] } },
  test: {
    name: 'trainers-long',
    include: ['tests/**/*.long.ts'],
    environment: 'node',
    testTimeout: 900_000,
    hookTimeout: 60_000,
  },
});
