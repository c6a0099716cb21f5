/**
 * `@flatrank/store/internal`: the raw connection of an open store, for the store's own tests and
 * benchmarks (schema checks, fault injection, timing the exact SQL a read runs). Nothing outside
 * the store package imports it; everything else goes through ResultsStore's typed methods.
 */
import type Database from 'better-sqlite3';
import { contextOf } from './context.js';
import type { ResultsStore } from './store.js';

export { runsQuery } from './query.js';
export { MIGRATIONS, migrate } from './schema.js';
export type { Migration } from './schema.js';

/** The better-sqlite3 connection behind an open store. */
export function connectionOf(store: ResultsStore): Database.Database {
  return contextOf(store).db;
}
