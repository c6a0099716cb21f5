// Forked by processes.test.ts: opens (creating) the database as soon as the parent says go, and
// reports which migrations this process applied and the journal mode it ended up with.
import { ResultsStore } from '../../dist/index.js';
import { connectionOf } from '../../dist/internal.js';

const [file] = process.argv.slice(2);
const go = new Promise((resolve) => process.once('message', resolve));
process.send('ready');
await go;
let result;
try {
  const store = ResultsStore.open(file, { create: true });
  result = {
    migrated: [...store.migrated],
    version: store.schemaVersion(),
    journal: connectionOf(store).pragma('journal_mode', { simple: true }),
  };
  store.close();
} catch (e) {
  // Report the failure instead of dying silently (the parent would wait for a message forever).
  result = { error: `${e?.code ?? ''} ${e?.message ?? String(e)}` };
}
process.send(result, () => process.exit(0));
