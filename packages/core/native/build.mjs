#!/usr/bin/env node
// `install` script of @flatrank/core: builds the optional OpenBLAS/LAPACKE addon with node-gyp. It never
// fails the install: without a compiler or the libopenblas-dev / liblapacke-dev headers it prints one
// line and @flatrank/core uses its pure-JS linear algebra (linalgBackend() === 'js').
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const log = join(here, 'build.log');

if (process.env.FLATRANK_LINALG === 'js' || process.env.FLATRANK_SKIP_NATIVE === '1') {
  console.log(
    '@flatrank/core: skipping the native LAPACK addon (FLATRANK_LINALG=js / FLATRANK_SKIP_NATIVE=1); using pure-JS linear algebra',
  );
  process.exit(0);
}

// npm tells lifecycle scripts where its bundled node-gyp is; otherwise look for one on PATH.
const candidates = [];
if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
  candidates.push([process.execPath, [process.env.npm_config_node_gyp]]);
}
const npmGyp = join(
  dirname(process.execPath),
  '..',
  'lib',
  'node_modules',
  'npm',
  'node_modules',
  'node-gyp',
  'bin',
  'node-gyp.js',
);
if (existsSync(npmGyp)) candidates.push([process.execPath, [npmGyp]]);
candidates.push(['node-gyp', []]);

const args = ['rebuild'];
// node-gyp downloads Node's headers unless told where they are; Debian's nodejs ships them in /usr/include/node.
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h'))
  args.push('--nodedir=/usr');

let output = '';
for (const [cmd, pre] of candidates) {
  const r = spawnSync(cmd, [...pre, ...args], { cwd: here, encoding: 'utf8', timeout: 300_000 });
  output += `$ ${cmd} ${[...pre, ...args].join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}\n`;
  if (r.status === 0 && existsSync(join(here, 'build', 'Release', 'flatrank_linalg.node'))) {
    writeFileSync(log, output);
    process.exit(0);
  }
  if (r.error && r.error.code === 'ENOENT') continue;
  break;
}
writeFileSync(log, output);
const hint = /lapacke\.h|cblas\.h|-lopenblas|-llapacke/.test(output)
  ? ' (install libopenblas-dev liblapacke-dev)'
  : '';
console.log(
  `@flatrank/core: native LAPACK addon not built${hint}; using pure-JS linear algebra (details: ${log})`,
);
process.exit(0);
