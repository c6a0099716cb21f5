#!/usr/bin/env node
// Builds the dashboard's front end into dist/web: web/src/main.ts bundled by esbuild (ECharts
// tree-shaken in, nothing loaded from a CDN at run time) plus the static files of web/. Type
// checking is tsc -b's job (web/tsconfig.json is a project of the root build); esbuild only strips types.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const web = join(pkg, 'web');
const out = join(pkg, 'dist', 'web');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(web, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});
for (const f of readdirSync(web))
  if (statSync(join(web, f)).isFile() && /\.(html|css|svg)$/.test(f))
    copyFileSync(join(web, f), join(out, f));
console.log(`dashboard: front end built in ${out}`);
