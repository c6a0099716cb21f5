// Faults of the database file (corrupt pages, truncation, read-only, full disk) are StoreErrors that
// name the file and what to do; a user query has a time limit.
import { copyFileSync, openSync, readFileSync, statSync, truncateSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreError, ValidationError } from '@flatrank/protocol';
import { createTempDb, populateTempDb, type TempDb } from '@flatrank/testing';
import {
  ResultsStore,
  databaseFault,
  describeDatabaseFile,
  listRuns,
  runUserQuery,
  runUserQueryWithTimeout,
} from '../src/index.js';
import { buildStoreDist } from './util.js';

let tmp: TempDb;
beforeAll(() => {
  buildStoreDist(); // the query child runs from dist/
  tmp = createTempDb();
  populateTempDb(tmp.store!, { sweep: 'grid', seeds: 30, succeeded: 100 });
  tmp.store!.close();
}, 120_000);
afterAll(() => tmp.cleanup());

/** A copy of the database with garbage over its middle half (many pages of the trials table). */
function corruptCopy(name: string): string {
  const file = join(tmp.dir, name);
  copyFileSync(tmp.path, file);
  const size = statSync(file).size;
  const fd = openSync(file, 'r+');
  const garbage = Buffer.alloc(size / 2, 0xa5);
  writeSync(fd, garbage, 0, garbage.length, Math.floor(size / 4 / 4096) * 4096);
  closeSync(fd);
  return file;
}

function storeErrorOf(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(StoreError);
    return e as StoreError;
  }
  throw new Error('expected a StoreError');
}

describe('damaged database files', () => {
  it('pages corrupted mid-file: the user query is not blamed; a fault names the file and what to do', () => {
    const file = corruptCopy('corrupt.sqlite');
    const e = storeErrorOf(() => runUserQuery(file, 'SELECT count(*), sum(length(config)) FROM trials'));
    expect(e.code).toBe('DB_CORRUPT');
    expect(e.exitCode).toBe(6);
    expect(e.message).toContain(file);
    expect(e.message).toContain('is corrupt or truncated');
    expect(e.message).toContain('PRAGMA integrity_check');
    expect(e.message).toContain('Restore it from a copy');
    // A store read on the same file fails the same way (its open already maps; a raw read error is
    // mapped with the file's path).
    let raw: unknown;
    try {
      const store = ResultsStore.open(file, { readonly: true });
      try {
        listRuns(store);
      } finally {
        store.close();
      }
    } catch (x) {
      raw = x;
    }
    expect(databaseFault(raw, file)?.code).toBe('DB_CORRUPT');
  });

  it('a truncated file is called truncated, not "not a SQLite file"', () => {
    const file = join(tmp.dir, 'truncated.sqlite');
    copyFileSync(tmp.path, file);
    truncateSync(file, Math.floor(statSync(file).size / 2) + 100);
    expect(describeDatabaseFile(file)).toMatch(
      /^a truncated SQLite file: \d+ bytes, but its header says \d+ pages of 4096 bytes/,
    );
    const e = storeErrorOf(() => {
      const s = ResultsStore.open(file, { readonly: true });
      try {
        return listRuns(s);
      } finally {
        s.close();
      }
    });
    expect(e.message).toContain(`${file} is corrupt or truncated: a truncated SQLite file`);
    expect(e.message).not.toContain('not a SQLite file');
  });

  it('a file that is not SQLite at all is still "not a flatrank database"', () => {
    const file = join(tmp.dir, 'text.sqlite');
    copyFileSync(new URL(import.meta.url).pathname, file);
    const e = storeErrorOf(() => ResultsStore.open(file, { readonly: true }));
    expect(e.code).toBe('DB_NOT_FLATRANK');
    expect(e.message).toContain('not a SQLite file');
  });

  it('maps SQLite result codes (through causes too) and leaves everything else alone', () => {
    const sqlite = (code: string, message: string) => Object.assign(new Error(message), { code });
    expect(databaseFault(sqlite('SQLITE_FULL', 'database or disk is full'), '/d/x.sqlite')?.message).toMatch(
      /^no space left to write the results database \/d\/x\.sqlite .*Free space on its file system \(df \/d\)/,
    );
    expect(
      databaseFault(sqlite('SQLITE_READONLY', 'attempt to write a readonly database'), '/d/x.sqlite')?.code,
    ).toBe('DB_READ_ONLY');
    expect(databaseFault(sqlite('SQLITE_IOERR_WRITE', 'disk I/O error'), '/d/x.sqlite')?.code).toBe(
      'DB_IO_ERROR',
    );
    const wrapped = new Error('claim failed', {
      cause: sqlite('SQLITE_CORRUPT', 'database disk image is malformed'),
    });
    expect(databaseFault(wrapped, '/d/x.sqlite')?.code).toBe('DB_CORRUPT');
    expect(databaseFault(sqlite('SQLITE_ERROR', 'no such table: x'), '/d/x.sqlite')).toBeNull();
    expect(databaseFault(new Error('boom'), '/d/x.sqlite')).toBeNull();
  });
});

describe('query time limit', { timeout: 60_000 }, () => {
  const endless = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';

  it('stops an endless recursive CTE after the timeout with QUERY_TIMEOUT', async () => {
    const t0 = Date.now();
    const p = runUserQueryWithTimeout(tmp.path, endless, { timeoutMs: 500 });
    await expect(p).rejects.toThrow(StoreError);
    await expect(p).rejects.toMatchObject({ code: 'QUERY_TIMEOUT', exitCode: 6 });
    await expect(p).rejects.toThrow(/query stopped after 0\.5 s \(--timeout 0\.5\)/);
    // Without the limit it would never end; with it, the answer comes soon after the limit.
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('returns the rows of a normal query, and the typed errors of bad ones, from the child', async () => {
    const r = await runUserQueryWithTimeout(tmp.path, 'SELECT count(*) AS n FROM trials', {
      timeoutMs: 20_000,
    });
    expect(r).toEqual({ columns: ['n'], rows: [{ n: 120 }] });
    const bad = runUserQueryWithTimeout(tmp.path, 'SELEC 1', { timeoutMs: 20_000 });
    await expect(bad).rejects.toBeInstanceOf(ValidationError);
    await expect(bad).rejects.toMatchObject({ field: 'sql', code: 'SQL_INVALID' });
    const write = runUserQueryWithTimeout(tmp.path, 'DELETE FROM trials', { timeoutMs: 20_000 });
    await expect(write).rejects.toMatchObject({ code: 'WRITE_REFUSED' });
    expect(readFileSync(tmp.path).length).toBeGreaterThan(0);
  });
});
