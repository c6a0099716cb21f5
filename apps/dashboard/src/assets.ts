/**
 * The front end's built files (scripts/build-web.mjs writes them to dist/web), read into memory once
 * at start. A request is answered only for a name in this table, so no request path is ever
 * joined to a file system path: `/assets/../../etc/passwd` is simply not a key (404).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlatrankError } from '@flatrank/protocol';

export interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** dist/web of this package (the same from src/ under vitest and from dist/). */
export const DEFAULT_ASSET_DIR: string = fileURLToPath(new URL('../dist/web/', import.meta.url));

/** `/assets/<name>` -> file, plus the page shell as `index.html`. */
export function loadAssets(dir: string = DEFAULT_ASSET_DIR): Map<string, Asset> {
  if (!existsSync(join(dir, 'index.html')))
    throw new FlatrankError(
      'ASSETS_MISSING',
      `dashboard: the front end is not built (no ${join(dir, 'index.html')}); run npm run build`,
      { context: { dir } },
    );
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const file = join(dir, name);
    const type = TYPES[extname(name)];
    if (!type || !statSync(file).isFile()) continue;
    assets.set(name === 'index.html' ? 'index.html' : `/assets/${name}`, { body: readFileSync(file), type });
  }
  return assets;
}
