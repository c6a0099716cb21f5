#!/usr/bin/env node
// `npm run bench [-- SUITE ...] [--json FILE]`: runs the benchmark suites of every package, each
// in <package>/bench/*.ts beside src/ and tests/ (compiled by bench/tsconfig.json to bench/dist/,
// never shipped), each default-exporting { name, description, run(args) -> rows[] }; prints each
// suite's rows as a table and writes them as JSON to bench/out/<suite>.json, with the host (CPU
// model and count, Node) and the load averages before and after the suite.
//
// Suites are named after their files (training.ts is the suite 'training'): with suite names given,
// only those files are imported, so that this process loads nothing it does not run (the training
// bench's peers run in child processes while this one waits, holding no backend and no threads).
import { readdirSync, existsSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
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

// Arguments: suite names, `--json FILE`, and the suites' options, passed on as `--name=value`. A bare
// word right after an option without '=' is that option's value unless it names a suite, so both
// `--model resnet32` and `--model=resnet32` reach a suite as `--model=resnet32`.
const suiteNames = new Set(suites.map((s) => basename(s.file, '.js')));
const argv = process.argv.slice(2);
let jsonOut = null;
const wanted = [];
const passthrough = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const prev = passthrough.at(-1);
  if (a === '--json') jsonOut = argv[++i];
  else if (a.startsWith('--')) passthrough.push(a);
  else if (!suiteNames.has(a) && argv[i - 1] === prev && prev !== undefined && !prev.includes('='))
    passthrough[passthrough.length - 1] = `${prev}=${a}`;
  else wanted.push(a);
}

// Import only the files named like the wanted suites, unless some wanted name matches no file.
const named = suites.filter((s) => wanted.includes(basename(s.file, '.js')));
const toImport =
  wanted.length && wanted.every((w) => named.some((s) => basename(s.file, '.js') === w)) ? named : suites;

const outDir = join(root, 'bench', 'out');
mkdirSync(outDir, { recursive: true });
const all = [];
let ran = 0;
const load = () => loadavg().map((x) => Math.round(x * 100) / 100);
const records = [];

/** Rows with a `kind` (the training bench's training / distortion / peak rows): one table per kind, with its own columns. */
function printTable(rows) {
  const kinds = [...new Set(rows.map((r) => r.kind))];
  if (kinds.length <= 1 || kinds.includes(undefined)) {
    console.table(rows);
    return;
  }
  for (const kind of kinds) {
    const some = rows.filter((r) => r.kind === kind);
    const columns = [...new Set(some.flatMap((r) => Object.keys(r)))].filter((c) => c !== 'kind');
    console.log(`-- ${kind}`);
    console.table(some, columns);
  }
}
for (const s of toImport) {
  const mod = await import(pathToFileURL(s.file).href);
  const suite = mod.default;
  if (!suite || typeof suite.run !== 'function') continue;
  if (wanted.length && !wanted.includes(suite.name)) continue;
  ran++;
  console.log(`\n== ${suite.name} (${s.pkg}): ${suite.description ?? ''}`);
  const t0 = Date.now();
  const loadBefore = load();
  const rows = await suite.run(passthrough);
  printTable(rows);
  const record = {
    suite: suite.name,
    date: new Date().toISOString(),
    seconds: (Date.now() - t0) / 1000,
    host: {
      node: process.version,
      cpu: cpus()[0]?.model ?? null,
      cores: cpus().length,
      // 1, 5 and 15-minute load averages when the suite started and ended.
      loadAverageBefore: loadBefore,
      loadAverageAfter: load(),
    },
    args: passthrough,
    rows,
  };
  const file = join(outDir, `${suite.name}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2));
  renameSync(`${file}.tmp`, file);
  all.push(...rows.map((r) => ({ suite: suite.name, ...r })));
  records.push(record);
}
if (wanted.length && ran === 0) {
  console.error(
    `bench: no suite named ${wanted.join(', ')}; available suites are compiled from <package>/bench/*.ts`,
  );
  process.exit(2);
}
if (jsonOut) {
  // With one suite, --json writes that suite's record (date, host, load averages, options, rows),
  // as committed in docs/bench/; with several, all their rows, each naming its suite.
  const out = ran === 1 ? records[0] : all;
  writeFileSync(jsonOut, JSON.stringify(out, null, 2));
  console.log(`wrote ${jsonOut}`);
}
