/**
 * The connection a ResultsStore wraps, with its statement cache: what the store's modules (writes,
 * events, claims, reads, report rows, queries) take as their first argument. Never exported from the
 * package index; `@flatrank/store/internal` hands the raw connection to the store's own tests and
 * benchmarks only.
 */
import type Database from 'better-sqlite3';
import { StoreError } from '@flatrank/protocol';

export class StoreContext {
  private readonly stmts = new Map<string, Database.Statement>();
  private readonly columns = new Map<string, boolean>();

  constructor(
    readonly db: Database.Database,
    readonly path: string,
    readonly readonly: boolean,
  ) {}

  /** A prepared statement, compiled once per connection and reused. */
  stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * Whether `table` has `column` (asked once per connection): a reader of an older schema
   * (OLDEST_READABLE_VERSION) computes what a later migration's column holds. A database a writer
   * upgrades while this connection is open keeps the first answer, which stays correct.
   */
  hasColumn(table: string, column: string): boolean {
    const id = `${table}.${column}`;
    let has = this.columns.get(id);
    if (has === undefined) {
      has =
        this.db.prepare('SELECT 1 FROM pragma_table_info(?) WHERE name = ?').get(table, column) !== undefined;
      this.columns.set(id, has);
    }
    return has;
  }

  assertWritable(what: string): void {
    if (this.readonly) {
      throw new StoreError(
        'WRITE_REFUSED',
        `${what}: ${this.path} was opened read-only; only the coordinator (opened without readonly) writes.`,
        { context: { path: this.path, operation: what } },
      );
    }
  }
}

// Keyed by the store object, so the facade needs no public field for its connection.
const contexts = new WeakMap<object, StoreContext>();

export function bindContext(store: object, ctx: StoreContext): void {
  contexts.set(store, ctx);
}

/** The context of a store opened by ResultsStore.open (throws for anything else). */
export function contextOf(store: object): StoreContext {
  const ctx = contexts.get(store);
  if (!ctx) throw new TypeError('not a ResultsStore opened by ResultsStore.open');
  return ctx;
}
