/**
 * The child process of a user query with a time limit (runUserQueryWithTimeout): SQLite cannot be
 * interrupted from JavaScript while a statement runs (better-sqlite3 is synchronous and has no
 * progress handler; a worker thread stuck in sqlite3_step cannot be terminated either), so the
 * query runs here, on its own read-only connection, and the parent kills this process when the
 * time is up. Nothing is written, so a kill loses nothing.
 */
import { FlatrankError, ValidationError } from '@flatrank/protocol';
import { runUserQuery, type Cell } from './query.js';

interface QueryRequest {
  file: string;
  sql: string;
  params: Cell[];
}

process.once('message', (msg: QueryRequest) => {
  let reply: unknown;
  try {
    reply = { ok: true, result: runUserQuery(msg.file, msg.sql, msg.params) };
  } catch (e) {
    const err = e as Error;
    reply = {
      ok: false,
      error: {
        name: err?.name ?? 'Error',
        message: err?.message ?? String(e),
        code: e instanceof FlatrankError ? e.code : undefined,
        field: e instanceof ValidationError ? e.field : undefined,
        context: e instanceof FlatrankError ? e.context : undefined,
      },
    };
  }
  process.send!(reply, () => process.disconnect());
});
