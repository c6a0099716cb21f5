#!/usr/bin/env node
// The installed `flatrank` binary. A checked-in shim (git keeps its exec bit), so that `npx flatrank`
// works right after `npm ci && npm run build`, whatever mode tsc gives dist/main.js.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('flatrank: not built yet: run `npm run build` in the repository root first\n');
  process.exit(70);
}
await import(main.href);
