import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const STORE_DIR = fileURLToPath(new URL('..', import.meta.url));
export const HELPERS = join(STORE_DIR, 'tests', 'helpers');

/** Forked helper scripts import packages/store/dist: bring it up to date (incremental, fast). */
export function buildStoreDist(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-b', STORE_DIR], { stdio: 'inherit' });
}
