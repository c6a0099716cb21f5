/**
 * The package boundaries in eslint.config.js fail where they should: each fixture is linted with
 * the repository's own config as if it sat at the given path (ESLint's lintText with filePath), and
 * must raise a boundary error exactly when the import is forbidden: TensorFlow.js outside trainers
 * and the backend packages, better-sqlite3 outside the store, an upward or sideways import between
 * packages, @flatrank/testing from production code; static, type-only, re-export, import() and
 * require() forms alike.
 */
import { resolve } from 'node:path';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, test } from 'vitest';

const root = resolve(__dirname, '..');
let eslint: ESLint;
beforeAll(() => {
  eslint = new ESLint({ cwd: root });
});

const BOUNDARY_RULES = new Set(['no-restricted-imports', 'no-restricted-syntax']);

/** The boundary messages ESLint reports for `code` placed at `path` (relative to the root). */
async function boundaryErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(root, path) });
  expect(result, `${path} is linted, not ignored`).toBeDefined();
  expect(result!.messages.filter((m) => m.fatal)).toEqual([]);
  return result!.messages.filter((m) => BOUNDARY_RULES.has(m.ruleId ?? '')).map((m) => m.message);
}

const use = (name: string) => `\nexport const used = ${name};\n`;

type Case = [path: string, code: string];

const FORBIDDEN: Array<[string, Case, RegExp]> = [
  // (a) TensorFlow.js only in trainers and the backend packages
  [
    'tfjs in the store',
    ['packages/store/src/fixture.ts', `import * as tf from '@tensorflow/tfjs-core';${use('tf')}`],
    /Only packages\/trainers and packages\/backend-\* import TensorFlow\.js/,
  ],
  [
    'tfjs in the scheduler, type-only',
    [
      'packages/scheduler/src/fixture.ts',
      `import type { Tensor } from '@tensorflow/tfjs-core';${use('0 as unknown as Tensor')}`,
    ],
    /TensorFlow\.js/,
  ],
  [
    'tfjs in core',
    ['packages/core/src/fixture.ts', `export { tensor } from '@tensorflow/tfjs-core';\n`],
    /TensorFlow\.js/,
  ],
  [
    'tfjs in report through import()',
    [
      'packages/report/src/fixture.ts',
      `export const load = () => import('@tensorflow/tfjs-backend-wasm');\n`,
    ],
    /TensorFlow\.js/,
  ],
  [
    'tfjs in the CLI',
    ['apps/cli/src/fixture.ts', `import * as tfl from '@tensorflow/tfjs-layers';${use('tfl')}`],
    /TensorFlow\.js/,
  ],
  [
    'tfjs in the testing package',
    ['packages/testing/src/fixture.ts', `import * as tf from '@tensorflow/tfjs-core';${use('tf')}`],
    /TensorFlow\.js/,
  ],
  [
    'tfjs in an end-to-end test',
    ['test/fixture.test.ts', `import * as tf from '@tensorflow/tfjs-core';${use('tf')}`],
    /TensorFlow\.js/,
  ],
  // (b) better-sqlite3 only in the store
  [
    'better-sqlite3 in report',
    ['packages/report/src/fixture.ts', `import Database from 'better-sqlite3';${use('Database')}`],
    /Only packages\/store imports better-sqlite3/,
  ],
  [
    'better-sqlite3 in the CLI',
    ['apps/cli/src/fixture.ts', `import Database from 'better-sqlite3';${use('Database')}`],
    /better-sqlite3/,
  ],
  [
    'better-sqlite3 in the testing package via require()',
    [
      'packages/testing/src/fixture.ts',
      `import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);${use("require('better-sqlite3')")}`,
    ],
    /better-sqlite3/,
  ],
  [
    'better-sqlite3 in the scheduler tests',
    ['packages/scheduler/tests/fixture.test.ts', `import Database from 'better-sqlite3';${use('Database')}`],
    /better-sqlite3/,
  ],
  // (c) package direction
  [
    'core imports decomposers (upward)',
    ['packages/core/src/fixture.ts', `import { decompose } from '@flatrank/decomposers';${use('decompose')}`],
    /packages\/core may import @flatrank\/protocol, @flatrank\/core \(package direction/,
  ],
  [
    'protocol imports core',
    ['packages/protocol/src/fixture.ts', `import { svd } from '@flatrank/core';${use('svd')}`],
    /packages\/protocol may import @flatrank\/protocol \(package direction/,
  ],
  [
    'decomposers import trainers',
    [
      'packages/decomposers/src/fixture.ts',
      `import { runTrial } from '@flatrank/trainers';${use('runTrial')}`,
    ],
    /packages\/decomposers may import/,
  ],
  [
    'a backend imports trainers',
    [
      'packages/backend-wasm/src/fixture.ts',
      `import { initBackend } from '@flatrank/trainers';${use('initBackend')}`,
    ],
    /packages\/backend-\* may import/,
  ],
  [
    'a backend imports another backend in production code',
    [
      'packages/backend-native/src/fixture.ts',
      `import { loadWasmBackend } from '@flatrank/backend-wasm';${use('loadWasmBackend')}`,
    ],
    /packages\/backend-\* may import/,
  ],
  [
    'trainers import the store',
    [
      'packages/trainers/src/fixture.ts',
      `import type { ResultsStore } from '@flatrank/store';${use('0 as unknown as ResultsStore')}`,
    ],
    /packages\/trainers may import/,
  ],
  [
    'the store imports the scheduler',
    ['packages/store/src/fixture.ts', `import { runSweep } from '@flatrank/scheduler';${use('runSweep')}`],
    /packages\/store may import/,
  ],
  [
    'the scheduler imports trainers (it runs them as child processes)',
    ['packages/scheduler/src/fixture.ts', `export { runTrial } from '@flatrank/trainers';\n`],
    /packages\/scheduler may import/,
  ],
  [
    'the scheduler imports trainers through import()',
    ['packages/scheduler/src/fixture.ts', `export const load = () => import('@flatrank/trainers');\n`],
    /packages\/scheduler may import/,
  ],
  [
    'report imports the CLI',
    ['packages/report/src/fixture.ts', `import * as cli from '@flatrank/cli';${use('cli')}`],
    /packages\/report may import/,
  ],
  [
    'report imports the scheduler',
    ['packages/report/src/fixture.ts', `import * as s from '@flatrank/scheduler';${use('s')}`],
    /packages\/report may import/,
  ],
  [
    'production code imports the testing fakes',
    ['packages/scheduler/src/fixture.ts', `import { tempDb } from '@flatrank/testing';${use('tempDb')}`],
    /packages\/scheduler may import/,
  ],
  [
    'the CLI imports the testing fakes',
    ['apps/cli/src/fixture.ts', `import { tempDb } from '@flatrank/testing';${use('tempDb')}`],
    /apps\/\* may import/,
  ],
  [
    'tests of a lower package import a higher one',
    [
      'packages/trainers/tests/fixture.test.ts',
      `import { runSweep } from '@flatrank/scheduler';${use('runSweep')}`,
    ],
    /packages\/trainers test code may import/,
  ],
  [
    'a subpath of a forbidden package',
    [
      'packages/core/src/fixture.ts',
      `import { setupNative } from '@flatrank/backend-native/testing';${use('setupNative')}`,
    ],
    /packages\/core may import/,
  ],
  [
    "another package reaches into the store's internal entry point",
    ['packages/report/src/fixture.ts', `import * as db from '@flatrank/store/internal';${use('db')}`],
    /internal entry point is imported only inside that package/,
  ],
  [
    "the CLI loads the store's internal entry point through import()",
    ['apps/cli/src/fixture.ts', `export const load = () => import('@flatrank/store/internal');\n`],
    /internal entry point is imported only inside that package/,
  ],
  [
    'a package not in the table (falls back to protocol only)',
    ['packages/not-in-the-table/src/fixture.ts', `import { svd } from '@flatrank/core';${use('svd')}`],
    /until it is added to the package table in eslint.config.js/,
  ],
];

const ALLOWED: Array<[string, Case]> = [
  [
    'the scheduler plans compressions on the decomposers (spec-time checks, no TF.js)',
    [
      'packages/scheduler/src/fixture.ts',
      `import { planModelCompression } from '@flatrank/decomposers';${use('planModelCompression')}`,
    ],
  ],
  [
    'tfjs in trainers',
    ['packages/trainers/src/fixture.ts', `import * as tf from '@tensorflow/tfjs-core';${use('tf')}`],
  ],
  [
    'tfjs in a backend package',
    ['packages/backend-native/src/fixture.ts', `import * as tf from '@tensorflow/tfjs-core';${use('tf')}`],
  ],
  [
    'tfjs in a backend package yet to come',
    [
      'packages/backend-webgpu/src/fixture.ts',
      `export const load = () => import('@tensorflow/tfjs-core');\n`,
    ],
  ],
  [
    'better-sqlite3 in the store',
    ['packages/store/src/fixture.ts', `import Database from 'better-sqlite3';${use('Database')}`],
  ],
  [
    'trainers import the backends, core, decomposers, protocol',
    [
      'packages/trainers/src/fixture.ts',
      [
        `import { loadNativeBackend } from '@flatrank/backend-native';`,
        `import { loadWasmBackend } from '@flatrank/backend-wasm';`,
        `import { svd } from '@flatrank/core';`,
        `import { decompose } from '@flatrank/decomposers';`,
        `import { BACKENDS } from '@flatrank/protocol';`,
        `export const used = [loadNativeBackend, loadWasmBackend, svd, decompose, BACKENDS];`,
      ].join('\n'),
    ],
  ],
  [
    'trainers select a backend through import()',
    ['packages/trainers/src/fixture.ts', `export const load = () => import('@flatrank/backend-wasm');\n`],
  ],
  [
    'trainers tests use a backend test entry point',
    [
      'packages/trainers/tests/fixture.test.ts',
      `import { runOn } from '@flatrank/backend-native/testing';${use('runOn')}`,
    ],
  ],
  [
    'a benchmark imports its own package by name',
    ['packages/store/bench/fixture.ts', `import * as store from '@flatrank/store';${use('store')}`],
  ],
  [
    "the store's benchmark uses its internal entry point",
    ['packages/store/bench/fixture.ts', `import * as db from '@flatrank/store/internal';${use('db')}`],
  ],
  [
    'decomposers import core',
    ['packages/decomposers/src/fixture.ts', `import { svd } from '@flatrank/core';${use('svd')}`],
  ],
  [
    'the scheduler imports the store',
    ['packages/scheduler/src/fixture.ts', `import * as s from '@flatrank/store';${use('s')}`],
  ],
  [
    'report imports the store',
    ['packages/report/src/fixture.ts', `import * as s from '@flatrank/store';${use('s')}`],
  ],
  [
    'the testing fakes import the store',
    ['packages/testing/src/fixture.ts', `import * as s from '@flatrank/store';${use('s')}`],
  ],
  [
    'tests import the testing fakes',
    ['packages/store/tests/fixture.test.ts', `import { tempDb } from '@flatrank/testing';${use('tempDb')}`],
  ],
  [
    'a backend benchmark measures against another backend',
    [
      'packages/backend-native/src/bench/fixture.ts',
      `import { loadWasmBackend } from '@flatrank/backend-wasm';${use('loadWasmBackend')}`,
    ],
  ],
  [
    'the CLI imports every library package',
    [
      'apps/cli/src/fixture.ts',
      [
        `import * as trainers from '@flatrank/trainers';`,
        `import * as scheduler from '@flatrank/scheduler';`,
        `import * as report from '@flatrank/report';`,
        `import * as store from '@flatrank/store';`,
        `export const used = [trainers, scheduler, report, store];`,
      ].join('\n'),
    ],
  ],
  [
    'end-to-end tests import anything of flatrank',
    [
      'test/fixture.test.ts',
      `import * as cli from '@flatrank/cli';\nimport * as t from '@flatrank/testing';${use('[cli, t]')}`,
    ],
  ],
];

describe('eslint package boundaries', () => {
  test.each(FORBIDDEN)('forbidden: %s', async (_label, [path, code], message) => {
    const errors = await boundaryErrors(path, code);
    expect(errors.length, `${path}: ${code}`).toBeGreaterThanOrEqual(1);
    expect(errors.join('\n')).toMatch(message);
  });

  test.each(ALLOWED)('allowed: %s', async (_label, [path, code]) => {
    expect(await boundaryErrors(path, code)).toEqual([]);
  });
});
