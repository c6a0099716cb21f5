/**
 * Opening a flatrank database: existence and identity checks (application_id), schema version
 * checks, migrations for the writer, and the pragmas every connection needs.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, ValidationError } from '@flatrank/protocol';
import { FLATRANK_APPLICATION_ID, OLDEST_READABLE_VERSION, SCHEMA_VERSION, migrate } from './schema.js';

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
  /**
   * Open a read-only connection (queries, reports). Default false. A reader never migrates: it
   * opens schema OLDEST_READABLE_VERSION or later as it is, and refuses an older one (DB_OUTDATED).
   */
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

/** The SQLite result code of an error or of the first error in its cause chain ('SQLITE_FULL', ...). */
function sqliteCode(e: unknown): string | null {
  for (let x = e, depth = 0; x !== null && x !== undefined && depth < 8; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return code;
    x = (x as { cause?: unknown }).cause;
  }
  return null;
}

/**
 * What the first bytes of a database file say about it: not SQLite at all, or a SQLite file
 * shorter than its header says (truncated), or one whose size is consistent (so: corrupt inside).
 */
export function describeDatabaseFile(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(100);
    const n = readSync(fd, head, 0, 100, 0);
    const size = statSync(path).size;
    if (n < 100 || head.toString('latin1', 0, 16) !== 'SQLite format 3\0')
      return size === 0 ? 'an empty file' : 'not a SQLite file';
    const rawPageSize = head.readUInt16BE(16);
    const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
    const pages = head.readUInt32BE(28);
    // The in-header page count is valid when its version stamp matches the change counter.
    const countValid = head.readUInt32BE(92) === head.readUInt32BE(24) && pages > 0;
    if (countValid && size < pages * pageSize)
      return `a truncated SQLite file: ${size} bytes, but its header says ${pages} pages of ${pageSize} bytes (${pages * pageSize} bytes)`;
    if (pageSize > 0 && size % pageSize !== 0)
      return `a truncated SQLite file: ${size} bytes is not a whole number of ${pageSize}-byte pages`;
    return 'its size matches its header, so pages inside it are damaged';
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * A StoreError (CLI exit 6) for a fault of the database file itself: corrupt or truncated pages,
 * a full disk, a read-only file or file system, an I/O error, a lock held too long. It names the
 * file and what to do. null for anything else (an SQL mistake or a bug is not a database fault).
 * Looks through the cause chain, so a fault wrapped by another error is still recognised.
 */
export function databaseFault(e: unknown, path: string): StoreError | null {
  if (e instanceof StoreError) return e;
  const code = sqliteCode(e);
  if (code === null) return null;
  const msg = (e as Error)?.message ?? String(e);
  const fault = (kind: string, text: string): StoreError =>
    new StoreError(kind, text, { context: { path, sqliteCode: code }, cause: e });
  const base = code.replace(/^(SQLITE_[A-Z]+?)(_[A-Z_]+)?$/, '$1');
  switch (base) {
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return fault(
        'DB_CORRUPT',
        `the results database ${path} is corrupt or truncated: ${describeDatabaseFile(path)} (SQLite: ${msg}). Restore it from a copy (the last good backup), or keep a copy of it and check what is left with: sqlite3 ${path} "PRAGMA integrity_check" (".recover" can salvage rows into a new file).`,
      );
    case 'SQLITE_FULL':
      return fault(
        'DB_FULL',
        `no space left to write the results database ${path} (SQLite: ${msg}). Free space on its file system (df ${dirname(path)}) and run the command again: the failed transaction was rolled back, everything committed before is kept.`,
      );
    case 'SQLITE_READONLY':
      return fault(
        'DB_READ_ONLY',
        `the results database ${path} cannot be written (SQLite: ${msg}): the file, its directory (SQLite writes ${path}-wal and -shm next to it) or the file system is read-only. Make them writable (chmod u+w), or pass --db a writable copy; read commands (runs, report, query) work on a read-only file.`,
      );
    case 'SQLITE_IOERR':
      return fault(
        'DB_IO_ERROR',
        `I/O error on the results database ${path} (SQLite: ${msg}, ${code}). Check the disk and the free space (df ${dirname(path)}, dmesg), then check the file with: sqlite3 ${path} "PRAGMA integrity_check".`,
      );
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_PERM':
    case 'SQLITE_AUTH':
      return fault(
        'DB_OPEN_FAILED',
        `cannot open the results database ${path} (SQLite: ${msg}). Check the path and the permissions of the file and its directory.`,
      );
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return fault(
        'DB_BUSY',
        `the results database ${path} stayed locked by another process for over ${BUSY_TIMEOUT_MS / 1000} s (SQLite: ${msg}). Another coordinator or a long write holds it; try again when it is done.`,
      );
    case 'SQLITE_NOMEM':
      return fault('DB_NO_MEMORY', `SQLite ran out of memory on ${path} (SQLite: ${msg}).`);
    default:
      return null;
  }
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
      if (isSqliteError(e, 'SQLITE_NOTADB', 'SQLITE_CORRUPT')) {
        const what = describeDatabaseFile(path);
        // A file that is SQLite by its header but unreadable is damaged, not someone else's.
        if (what === 'not a SQLite file' || what === 'an empty file') throw notFlatrank(path, what, e);
        throw databaseFault(e, path)!;
      }
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
      // A reader opens any version it can read without the later migrations' additions.
      if (version < OLDEST_READABLE_VERSION) {
        throw new StoreError(
          'DB_OUTDATED',
          `${path} has schema version ${version}; this flatrank needs ${SCHEMA_VERSION}. Run "flatrank migrate --db ${path}" (or let the sweep coordinator open it) to upgrade it; read-only commands never modify a database.`,
          { context: { path, version, supported: SCHEMA_VERSION, readable: OLDEST_READABLE_VERSION } },
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
    throw databaseFault(e, path) ?? e;
  }
}
