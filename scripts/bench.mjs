#!/usr/bin/env node
// `npm run bench [-- SUITE ...] [--json FILE]`: runs the benchmark suites of every package, each
// in <package>/bench/*.ts beside src/ and tests/ (compiled by bench/tsconfig.json to bench/dist/,
// never shipped), each default-exporting { name, description, run(args) -> rows[] }; prints each
// suite's rows as a table and writes them as JSON to bench/out/<suite>.json.
import { readdirSync, existsSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
let jsonOut = null;
const wanted = [];
const passthrough = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--json') jsonOut = argv[++i];
  else if (argv[i].startsWith('--')) passthrough.push(argv[i]);
  else wanted.push(argv[i]);
}

const suites = [];
for (const group of ['packages', 'apps']) {
  for (const pkg of readdirSync(join(root, group))) {
    // A suite under src/ would ship in the package's dist: refuse it rather than skip it silently.
    if (existsSync(join(root, group, pkg, 'src', 'bench'))) {
      console.error(
        `bench: ${group}/${pkg}/src/bench: benchmarks live in ${group}/${pkg}/bench/ (own tsconfig, not shipped)`,
      );
      process.exit(2);
    }
    const dir = join(root, group, pkg, 'bench', 'dist');
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)
      .filter((f) => f.endsWith('.js'))
      .sort()) {
      suites.push({ pkg: `${group}/${pkg}`, file: join(dir, f) });
    }
  }
}

const outDir = join(root, 'bench', 'out');
mkdirSync(outDir, { recursive: true });
const all = [];
let ran = 0;
for (const s of suites) {
  const mod = await import(pathToFileURL(s.file).href);
  const suite = mod.default;
  if (!suite || typeof suite.run !== 'function') continue;
  if (wanted.length && !wanted.includes(suite.name)) continue;
  ran++;
  console.log(`\n== ${suite.name} (${s.pkg}): ${suite.description ?? ''}`);
  const t0 = Date.now();
  const rows = await suite.run(passthrough);
  console.table(rows);
  const record = {
    suite: suite.name,
    date: new Date().toISOString(),
    seconds: (Date.now() - t0) / 1000,
    host: { node: process.version },
    rows,
  };
  const file = join(outDir, `${suite.name}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2));
  renameSync(`${file}.tmp`, file);
  all.push(...rows.map((r) => ({ suite: suite.name, ...r })));
}
if (wanted.length && ran === 0) {
  console.error(
    `bench: no suite named ${wanted.join(', ')}; available suites are compiled from <package>/bench/*.ts`,
  );
  process.exit(2);
}
if (jsonOut) {
  // With one suite, --json writes exactly that suite's rows (e.g. the training bench's array).
  const rows = ran === 1 ? all.map(({ suite: _s, ...r }) => r) : all;
  writeFileSync(jsonOut, JSON.stringify(rows, null, 2));
  console.log(`wrote ${jsonOut}`);
}
