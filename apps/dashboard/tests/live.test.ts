/**
 * A sweep written live by another process (the store's writer API: WAL, busy_timeout) while five
 * pollers read through the dashboard's read-only connection: neither side ever sees "database is
 * locked", every poll is a 200, and the counts the pollers see only move forward. The writer runs
 * until every poller has made ROUNDS rounds, so the pollers see the sweep in progress however
 * slow the machine is.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTempDb, type TempDb } from '@flatrank/testing';
import { startDashboard, type Dashboard } from '../src/index.js';

const writerPath = fileURLToPath(new URL('./helpers/live-writer.mjs', import.meta.url));
const TRIALS = 600;
/** Poll rounds each poller makes before the writer is told to stop. */
const ROUNDS = 6;

let db: TempDb;
let dashboard: Dashboard | undefined;

beforeAll(() => {
  db = createTempDb();
});
afterAll(async () => {
  await dashboard?.close();
  db.cleanup();
});

it('five pollers read while a writer runs a sweep: no lock errors, no failed poll', async () => {
  dashboard = await startDashboard({ db: db.path, port: 0 });
  const writer = fork(writerPath, [db.path, String(TRIALS)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages: Array<{ ready?: boolean; finished?: number; errors?: string[] }> = [];
  const done = new Promise<{ finished: number; errors: string[] }>((resolve, reject) => {
    writer.on('message', (m: { ready?: boolean; finished?: number; errors?: string[] }) => {
      messages.push(m);
      if (m.finished !== undefined) resolve(m as { finished: number; errors: string[] });
    });
    writer.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`writer exited with ${code}`))));
  });
  await new Promise<void>((resolve) => {
    const check = () => (messages.some((m) => m.ready) ? resolve() : setTimeout(check, 20));
    check();
  });

  let writing = true;
  const failures: string[] = [];
  const seen: number[][] = [];
  let rounds = 0;
  const poller = async (i: number) => {
    const counts: number[] = [];
    while (writing) {
      if (++rounds === 5 * ROUNDS) writer.send('stop');
      for (const path of [
        '/api/sweeps',
        '/api/sweeps/live',
        `/api/sweeps/live/trials?limit=50&offset=${i * 10}`,
      ]) {
        const res = await fetch(new URL(path, dashboard!.url));
        const text = await res.text();
        if (res.status !== 200) failures.push(`${path}: ${res.status} ${text}`);
        else if (path === '/api/sweeps') counts.push(JSON.parse(text).sweeps[0].counts.succeeded);
      }
    }
    seen.push(counts);
  };
  const polls = Promise.all([0, 1, 2, 3, 4].map(poller));
  const result = await done;
  writing = false;
  await polls;

  expect(result.errors).toEqual([]);
  expect(result.finished).toBeGreaterThan(0);
  expect(failures).toEqual([]);
  for (const counts of seen) {
    expect(counts.length).toBeGreaterThan(0);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
  }
  // The pollers saw the sweep move while it was written.
  expect(new Set(seen.flat()).size).toBeGreaterThanOrEqual(2);
  const final = await (await fetch(new URL('/api/sweeps', dashboard.url))).json();
  expect(final.sweeps[0].counts.succeeded).toBe(result.finished);
  expect(final.sweeps[0].counts.pending).toBe(TRIALS - result.finished);
});
