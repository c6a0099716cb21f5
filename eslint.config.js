import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

// ---- Package boundaries ------------------------------------------------------------------------
//
// Imports point one way: protocol <- core <- decomposers <- backend-* <- trainers; protocol <- store
// <- report <- scheduler, and decomposers <- scheduler; apps above all. Each folder's production code may import the
// @flatrank packages listed for it (and itself), nothing else from @flatrank. Its test code
// (tests/, test/, *.test.ts, benchmarks) may also import @flatrank/testing, and a backend's test
// code the other backends (a benchmark's yardstick). Only trainers and the backend packages import
// TensorFlow.js; only the store imports better-sqlite3; a package's ./internal entry point (the
// store's connection) is imported only inside that package. A package missing from this table may
// import only @flatrank/protocol until it is added here. Packages are folder globs, so a new
// backend package (packages/backend-webgpu) is covered as it is created.
//
//   folder              may import (production code)
//   packages/protocol   -
//   packages/core       protocol                 (and each package itself, by name)
//   packages/decomposers protocol, core
//   packages/backend-*  protocol, core, decomposers
//   packages/trainers   protocol, core, decomposers, backend-*
//   packages/store      protocol
//   packages/testing    protocol, store          (itself imported by test code only)
//   packages/report     protocol, store
//   packages/scheduler  protocol, decomposers, store, report  (runs trainers as child processes, never
//                       imports them; plans a spec's compressions on the decomposers' layer table)
//   apps/dashboard      protocol, store, report  (`flatrank serve`; its front end imports its types only)
//   apps/*              protocol, core, decomposers, backend-*, trainers, store, scheduler, report, dashboard
//   test/ (end-to-end)  everything, testing included
const LOWER = ['protocol', 'core', 'decomposers'];
const PACKAGE_DEPS = {
  protocol: [],
  core: ['protocol'],
  decomposers: ['protocol', 'core'],
  'backend-*': LOWER,
  trainers: [...LOWER, 'backend-*'],
  store: ['protocol'],
  testing: ['protocol', 'store'],
  scheduler: ['protocol', 'decomposers', 'store', 'report'],
  report: ['protocol', 'store'],
};
const APP_DEPS = [...LOWER, 'backend-*', 'trainers', 'store', 'scheduler', 'report', 'dashboard'];
const DASHBOARD_DEPS = ['protocol', 'store', 'report', 'dashboard'];
const TENSORFLOW_FOLDERS = ['trainers', 'backend-*'];
const SQLITE_FOLDERS = ['store'];
const TEST_CODE = ['tests/**', 'test/**', '**/*.test.ts', 'src/bench/**', 'bench/**'];

/** A regular expression (for no-restricted-syntax) matching import sources outside `allowed`. */
function forbiddenFlatrankSource(allowed) {
  // esquery's regex literals cannot contain '/': \x2F stands for it.
  const names = allowed.map((a) => a.replace('*', '[\\w-]+')).join('|');
  return names ? `^@flatrank\\x2F(?!(${names})(\\x2F|$))` : '^@flatrank\\x2F';
}

/** The import restrictions of one folder (`allowed`: @flatrank package names or globs). */
function boundaryRules(folder, allowed, { tensorflow, sqlite, note, self }) {
  allowed = [...new Set(allowed)];
  const direction = `${folder} may import ${allowed.length ? allowed.map((a) => `@flatrank/${a}`).join(', ') : 'no @flatrank package'}${note}`;
  const patterns = [
    {
      group: ['@flatrank/*', ...allowed.flatMap((a) => [`!@flatrank/${a}`, `!@flatrank/${a}/**`])],
      message: `${direction} (package direction: eslint.config.js).`,
    },
  ];
  const dynamic = [{ source: forbiddenFlatrankSource(allowed), message: `${direction}.` }];
  // A package's ./internal entry point (the store's connection) is for its own tests and benchmarks.
  const internal = 'An @flatrank/<package>/internal entry point is imported only inside that package.';
  const own = self ? [`!@flatrank/${self}/internal`, `!@flatrank/${self}/internal/**`] : [];
  patterns.push({ group: ['@flatrank/*/internal', '@flatrank/*/internal/**', ...own], message: internal });
  dynamic.push({
    source: self
      ? `^@flatrank\\x2F(?!${self}\\x2F)[\\w-]+\\x2Finternal`
      : '^@flatrank\\x2F[\\w-]+\\x2Finternal',
    message: internal,
  });
  if (!tensorflow) {
    const message = 'Only packages/trainers and packages/backend-* import TensorFlow.js.';
    patterns.push({ group: ['@tensorflow/*'], message });
    dynamic.push({ source: '^@tensorflow\\x2F', message });
  }
  if (!sqlite) {
    const message = 'Only packages/store imports better-sqlite3.';
    patterns.push({ group: ['better-sqlite3', 'better-sqlite3/**'], message });
    dynamic.push({ source: '^better-sqlite3(\\x2F|$)', message });
  }
  return {
    'no-restricted-imports': ['error', { patterns }],
    // import() and require() escape no-restricted-imports.
    'no-restricted-syntax': [
      'error',
      ...dynamic.flatMap(({ source, message }) => [
        { selector: `ImportExpression[source.value=/${source}/]`, message },
        { selector: `CallExpression[callee.name='require'][arguments.0.value=/${source}/]`, message },
      ]),
    ],
  };
}

function boundaryConfigs() {
  const table = [
    // Catch-all first: a later, more specific entry replaces these rules for the folders it covers.
    {
      folders: ['packages/*', 'apps/*'],
      label: 'a package',
      deps: ['protocol'],
      note: ' until it is added to the package table in eslint.config.js',
    },
    // A package may name itself (its benchmarks import its public entry points); a family such as
    // backend-* may not import its siblings.
    ...Object.entries(PACKAGE_DEPS).map(([name, deps]) => ({
      folders: [`packages/${name}`],
      name,
      deps: name.includes('*') ? deps : [...deps, name],
    })),
    { folders: ['apps/*'], deps: APP_DEPS },
    { folders: ['apps/dashboard'], name: 'dashboard', deps: DASHBOARD_DEPS },
  ];
  const configs = [];
  for (const { folders, name, deps, label = folders.join(', '), note = '' } of table) {
    const flags = {
      tensorflow: name !== undefined && TENSORFLOW_FOLDERS.includes(name),
      sqlite: name !== undefined && SQLITE_FOLDERS.includes(name),
      note,
      self: name !== undefined && !name.includes('*') ? name : undefined,
    };
    configs.push({ files: folders.map((f) => `${f}/**`), rules: boundaryRules(label, deps, flags) });
    const testDeps = [...deps, 'testing', ...(name === 'backend-*' ? ['backend-*'] : [])];
    configs.push({
      files: folders.flatMap((f) => TEST_CODE.map((g) => `${f}/${g}`)),
      rules: boundaryRules(`${label} test code`, testDeps, flags),
    });
  }
  // End-to-end tests and root scripts: any @flatrank package, but neither TF.js nor SQLite.
  configs.push({
    files: ['test/**', 'scripts/**'],
    rules: boundaryRules('test/ and scripts/', ['*'], { tensorflow: false, sqlite: false, note: '' }),
  });
  return configs;
}

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/build/**', '.nx/**', 'docs/**', 'bench/out/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
        URL: 'readonly',
        Buffer: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  ...boundaryConfigs(),
);
