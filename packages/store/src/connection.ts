/**
 * Opening a flatrank database: existence and identity checks (application_id), schema version
 * checks, migrations for the writer, and the pragmas every connection needs.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, ValidationError } from '@flatrank/protocol';
import { FLATRANK_APPLICATION_ID, SCHEMA_VERSION, migrate } from './schema.js';

/**
 * Creates a flatrank database at an older schema version (tests of upgrade paths, here and in
 * other packages, without importing better-sqlite3). Refuses an existing file.
 */
export function createDatabaseAtVersion(file: string, version: number): string {
  const path = resolve(file);
  if (existsSync(path)) throw new ValidationError('file', `file: ${path} already exists`);
  if (!Number.isInteger(version) || version < 1 || version > SCHEMA_VERSION)
    throw new ValidationError('version', `version: must be an integer in 1..${SCHEMA_VERSION}`);
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    migrate(db, version);
  } finally {
    db.close();
  }
  return path;
}

/** Milliseconds a connection waits for a lock before SQLITE_BUSY (the one writer holds it briefly). */
export const BUSY_TIMEOUT_MS = 10_000;

export interface OpenOptions {
  /** Open a read-only connection (queries, reports). Default false. */
  readonly?: boolean;
  /** Create the file and apply migrations if it does not exist (the coordinator only). Default false. */
  create?: boolean;
}

/** Runs `step`, retrying for up to BUSY_TIMEOUT_MS while it fails with SQLITE_BUSY. */
function retryBusy<T>(step: () => T): T {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; ; attempt++) {
    try {
      return step();
    } catch (e) {
      if (
        !isSqliteError(e, 'SQLITE_BUSY', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_SNAPSHOT') ||
        Date.now() > deadline
      )
        throw e;
      Atomics.wait(pause, 0, 0, Math.min(200, 10 * 2 ** attempt)); // synchronous sleep: the API is sync
    }
  }
}

function isSqliteError(e: unknown, ...codes: string[]): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && codes.includes(code);
}

function notFlatrank(path: string, why: string, cause?: unknown): StoreError {
  return new StoreError(
    'DB_NOT_FLATRANK',
    `${path} is not a flatrank database (${why}). Point --db (or FLATRANK_DB) at a file written by flatrank, or choose a new file name for a new database.`,
    { context: { path }, cause },
  );
}

/**
 * Opens (and, for a writer, migrates) a flatrank database. Never creates a file unless
 * `create` is set; never touches a SQLite file that another application owns.
 */
export function openDatabase(
  file: string,
  opts: OpenOptions = {},
): { db: Database.Database; path: string; migrated: number[] } {
  const readonly = opts.readonly ?? false;
  const create = opts.create ?? false;
  if (typeof file !== 'string' || file === '')
    throw new ValidationError('--db', '--db: a database file path is required');
  if (readonly && create)
    throw new ValidationError(
      'open',
      'open: create and readonly cannot both be set (only the writer creates a database)',
    );
  const path = resolve(file);
  const exists = existsSync(path);
  if (!exists && !create) {
    throw new StoreError(
      'DB_MISSING',
      `no flatrank database at ${path}. Pass --db FILE (or set FLATRANK_DB) to an existing database; databases are created by the sweep coordinator (flatrank run <spec>).`,
      { context: { path } },
    );
  }
  if (exists && statSync(path).isDirectory()) throw notFlatrank(path, 'it is a directory');

  let db: Database.Database;
  try {
    if (create && !exists) mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { readonly, fileMustExist: !create, timeout: BUSY_TIMEOUT_MS });
  } catch (e) {
    throw new StoreError(
      'DB_OPEN_FAILED',
      `cannot open ${path}: ${(e as Error).message}. Check the path and its permissions.`,
      {
        context: { path },
        cause: e,
      },
    );
  }
  let migrated: number[] = [];
  try {
    // application_id and the object count are read in one read transaction: another process may
    // be creating this database right now, and two separate reads could see its tables without
    // its (same-transaction) application_id.
    let identity: { appId: number; objects: number };
    try {
      identity = retryBusy(() =>
        db.transaction(() => ({
          appId: db.pragma('application_id', { simple: true }) as number,
          objects: (
            db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").get() as {
              n: number;
            }
          ).n,
        }))(),
      );
    } catch (e) {
      if (isSqliteError(e, 'SQLITE_NOTADB', 'SQLITE_CORRUPT'))
        throw notFlatrank(path, 'not a SQLite file', e);
      throw e;
    }
    const { appId } = identity;
    if (appId !== FLATRANK_APPLICATION_ID) {
      const fresh = appId === 0 && identity.objects === 0;
      if (!(fresh && create)) {
        throw notFlatrank(
          path,
          fresh
            ? 'an empty SQLite file'
            : appId === 0
              ? 'a SQLite database of another application'
              : `application_id ${appId}`,
        );
      }
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        'DB_TOO_NEW',
        `${path} has schema version ${version}, newer than this flatrank understands (${SCHEMA_VERSION}). Upgrade flatrank to read it; it was not modified.`,
        { context: { path, version, supported: SCHEMA_VERSION } },
      );
    }
    if (readonly) {
      if (version < SCHEMA_VERSION) {
        throw new StoreError(
          'DB_OUTDATED',
          `${path} has schema version ${version}; this flatrank needs ${SCHEMA_VERSION}. Run "flatrank migrate --db ${path}" (or let the sweep coordinator open it) to upgrade it; read-only commands never modify a database.`,
          { context: { path, version, supported: SCHEMA_VERSION } },
        );
      }
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('query_only = ON');
      // Readers scan: memory-map the file and allow a larger page cache (per connection, lazy).
      db.pragma('mmap_size = 268435456');
      db.pragma('cache_size = -65536');
    } else {
      // WAL: readers never block the writer and the writer never blocks readers; NORMAL
      // synchronous is durable against process crashes (kill -9), which is what we need.
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // Two processes creating one new database at once: switching to WAL (and WAL recovery) can
      // answer SQLITE_BUSY without consulting the busy handler, so retry that step briefly.
      // Migrations are idempotent (each step re-checks user_version inside BEGIN IMMEDIATE).
      migrated = retryBusy(() => {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        db.pragma('foreign_keys = ON');
        return migrate(db);
      });
    }
    return { db, path, migrated };
  } catch (e) {
    db.close();
    throw e;
  }
}
