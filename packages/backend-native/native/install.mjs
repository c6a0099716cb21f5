#!/usr/bin/env node
// Builds the native backend's addon (oneDNN + OpenMP) with node-gyp, against the local Node
// headers (nothing is downloaded). It never fails the install: when the build is impossible or
// fails it prints one line and exits 0, and flatrank then trains on the wasm backend.
//   FLATRANK_NATIVE=0   skip the build
//   JOBS=N              make parallelism (default 1)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const say = (msg) => console.log(`flatrank native backend: ${msg}`);
const fallback = (why) => {
  say(`not built (${why}); training falls back to the wasm backend`);
  process.exit(0);
};

if (['0', 'false', 'off'].includes(process.env.FLATRANK_NATIVE ?? '')) fallback('FLATRANK_NATIVE=0');
if (process.platform !== 'linux') fallback(`unsupported platform ${process.platform}`);

const dnnl = ['/usr/include/dnnl.hpp', '/usr/include/oneapi/dnnl/dnnl.hpp', '/usr/local/include/dnnl.hpp'];
if (!dnnl.some((p) => existsSync(p))) fallback('oneDNN headers missing: apt-get install libdnnl-dev');

// Node's own headers: next to the node binary (nodesource, official tarballs) or Debian's libnode-dev.
const prefix = dirname(dirname(process.execPath));
const nodedir = [prefix, '/usr', '/usr/local'].find((d) => existsSync(join(d, 'include/node/node_api.h')));
if (!nodedir) fallback('Node.js headers missing (include/node/node_api.h): apt-get install libnode-dev');

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package: npm's bundled copy above is the usual one
  }
  return candidates.find((p) => p && existsSync(p));
}
const gyp = findNodeGyp();
if (!gyp) fallback('node-gyp not found (it ships with npm)');

// Up to date (same sources, Node and oneDNN headers): nothing to do. `npm install` of any workspace
// dependency runs this script again, and rebuilding in place would pull the addon from under
// processes that are loading it.
const target = join(here, 'build', 'Release', 'flatrank_native.node');
const stampPath = join(here, 'build', 'stamp');
const hash = createHash('sha256');
hash.update(readFileSync(join(here, 'binding.gyp')));
for (const f of readdirSync(join(here, 'src')).sort())
  hash.update(f).update(readFileSync(join(here, 'src', f)));
hash.update(process.version).update(readFileSync(dnnl.find((p) => existsSync(p))));
const stamp = hash.digest('hex');
if (existsSync(target) && existsSync(stampPath) && readFileSync(stampPath, 'utf8') === stamp) {
  say(`up to date (${target})`);
  process.exit(0);
}

// Build in a scratch copy, then move the result into place atomically.
const work = mkdtempSync(join(tmpdir(), 'flatrank-native-'));
cpSync(join(here, 'src'), join(work, 'src'), { recursive: true });
copyFileSync(join(here, 'binding.gyp'), join(work, 'binding.gyp'));
const jobs = process.env.JOBS ?? '1';
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, `--jobs=${jobs}`], {
  cwd: work,
  encoding: 'utf8',
  env: { ...process.env, JOBS: jobs },
});
const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
const built = join(work, 'build', 'Release', 'flatrank_native.node');
mkdirSync(dirname(target), { recursive: true });
if (r.status !== 0 || !existsSync(built)) {
  const logPath = join(here, 'build', 'build-error.log');
  writeFileSync(logPath, log);
  rmSync(work, { recursive: true, force: true });
  const firstError = log
    .split('\n')
    .find((l) => /error/i.test(l) && !/^gyp (info|ERR! (stack|System|command|cwd|node|not ok))/.test(l));
  fallback(`build failed: ${(firstError ?? `exit ${r.status}`).trim().slice(0, 160)}; log in ${logPath}`);
}
const staged = `${target}.${process.pid}.tmp`;
copyFileSync(built, staged);
renameSync(staged, target);
writeFileSync(stampPath, stamp);
rmSync(work, { recursive: true, force: true });
say(`built ${target}`);
