/* eslint-disable @typescript-eslint/no-explicit-any -- the JSON bodies of the API under test */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { buildReport, formatReport, loadSweep } from '@flatrank/report';
import { ResultsStore, SWEEP_TRIAL_COLUMNS } from '@flatrank/store';
import { createTempDb, populateDashboardDb, populateRankDb, rankDbAllocation } from '@flatrank/testing';
import {
  DashboardData,
  createHandler,
  isLoopback,
  loadAssets,
  readTokenFile,
  startDashboard,
} from '../src/index.js';
import { rawGet, serveFixture, type Served } from './helpers.js';

let s: Served;
let base: string;
const get = async (path: string) => {
  const res = await fetch(new URL(path, base));
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as any };
};

beforeAll(async () => {
  s = await serveFixture();
  base = s.dashboard.url;
});
afterAll(async () => {
  await s?.close();
});

/** What `flatrank report <sweep> --format json` prints (the same calls its command makes). */
function reportJson(db: string, sweep: string): unknown {
  const loaded = loadSweep(db, sweep);
  return JSON.parse(
    formatReport(buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces }), 'json'),
  );
}

describe('sweeps', () => {
  it('lists every sweep with its counts by status and an ETA while it runs', async () => {
    const { status, body } = await get('/api/sweeps');
    expect(status).toBe(200);
    const byName = Object.fromEntries(body.sweeps.map((w: any) => [w.name, w]));
    expect(Object.keys(byName)).toEqual(['finished-sweep', 'running-sweep']);
    const f = byName['finished-sweep'];
    expect(f.counts).toMatchObject({ trials: 15, succeeded: 15, pending: 0, running: 0 });
    expect(f.finishedAt).not.toBeNull();
    expect(f.etaMs).toBeNull();
    expect(f.description).toBe('finished-sweep of the dashboard fixture');
    const r = byName['running-sweep'];
    expect(r.counts).toMatchObject({ trials: 10, succeeded: 3, running: 1, pending: 6 });
    expect(r.etaMs).toBeGreaterThan(0);
  });

  it("answers a sweep's page with the report `flatrank report --format json` prints", async () => {
    for (const name of ['finished-sweep', 'running-sweep']) {
      const { status, body } = await get(`/api/sweeps/${name}`);
      expect(status).toBe(200);
      expect(body.report).toEqual(reportJson(s.db.path, name));
      expect(body.sweep.name).toBe(name);
    }
  });

  it('maps every plotted point to its report row', async () => {
    const { body } = await get('/api/sweeps/finished-sweep');
    const plotted = body.plotRows.flat();
    expect(plotted).not.toContain(-1);
    expect(new Set(plotted).size).toBe(plotted.length);
    // one point per compressed row (method x ratio): distort svd and finetune tucker2 at 2x and 4x
    expect(plotted.length).toBe(body.report.rows.filter((r: any) => !r.isBaseline).length);
    expect(plotted.length).toBe(4);
    body.plot.series.forEach((series: any, i: number) =>
      series.points.forEach((p: any, j: number) => {
        const row = body.report.rows[body.plotRows[i][j]];
        expect(row.accuracyFinal.mean * 100).toBe(p.y);
      }),
    );
  });

  it('pages, filters and sorts the trial list', async () => {
    const all = await get('/api/sweeps/finished-sweep/trials?limit=50000');
    expect(all.body.total).toBe(15);
    expect(all.body.columns).toEqual([...SWEEP_TRIAL_COLUMNS]);
    const page = await get('/api/sweeps/finished-sweep/trials?offset=4&limit=5');
    expect(page.body.rows.map((r: unknown[]) => r[0])).toEqual(
      all.body.rows.slice(4, 9).map((r: unknown[]) => r[0]),
    );
    const acc = SWEEP_TRIAL_COLUMNS.indexOf('accuracy_final');
    const sorted = await get('/api/sweeps/finished-sweep/trials?sort=accuracy_final&order=desc&limit=3');
    const accs = sorted.body.rows.map((r: unknown[]) => r[acc] as number);
    expect(accs).toEqual([...accs].sort((a, b) => b - a));
    expect(accs[0]).toBe(Math.max(...all.body.rows.map((r: unknown[]) => r[acc] as number)));
    const distort = await get('/api/sweeps/finished-sweep/trials?method=distort&sd=4&limit=100');
    expect(distort.body.total).toBe(6);
    const baseline = await get('/api/sweeps/finished-sweep/trials?decomposition=-');
    expect(baseline.body.total).toBe(3);
    const pending = await get('/api/sweeps/running-sweep/trials?status=pending,running');
    expect(pending.body.total).toBe(7);
    const policy = await get('/api/sweeps/finished-sweep/trials?rank_policy=ratio%3D4');
    expect(policy.body.total).toBe(6);
  });

  it('filters the trial list by ranges (a brush) and scheme, and keeps a top-k', async () => {
    const all = (await get('/api/sweeps/finished-sweep/trials?limit=1000')).body.rows as unknown[][];
    const ix = (c: string) => SWEEP_TRIAL_COLUMNS.indexOf(c as never);
    const keys = (rows: unknown[][]) => rows.map((r) => r[0]).sort();
    const acc = (r: unknown[]) => r[ix('accuracy_final')] as number;
    const brushed = await get(
      '/api/sweeps/finished-sweep/trials?range=accuracy_final:0.955:0.965,accuracy_final:0.97:1&range=seed:1:2&limit=1000',
    );
    const expected = all.filter(
      (r) => ((acc(r) >= 0.955 && acc(r) <= 0.965) || acc(r) >= 0.97) && (r[ix('seed')] as number) >= 1,
    );
    expect(expected.length).toBeGreaterThan(0);
    expect(brushed.body.total).toBe(expected.length);
    expect(keys(brushed.body.rows)).toEqual(keys(expected));
    expect((await get('/api/sweeps/finished-sweep/trials?scheme=lowered')).body.total).toBe(6);
    expect((await get('/api/sweeps/finished-sweep/trials?scheme=-')).body.total).toBe(9);
    const best = [...all].sort((a, b) => acc(b) - acc(a) || 0);
    const top = await get(
      '/api/sweeps/finished-sweep/trials?sort=accuracy_final&order=desc&top=4&offset=2&limit=10',
    );
    expect(top.body.total).toBe(4);
    expect(top.body.rows.map((r: unknown[]) => acc(r))).toEqual(best.slice(2, 4).map(acc));
  });

  it('spreads a bounded sample over the sorted list: the best rows, then every n-th', async () => {
    const sorted = (
      await get('/api/sweeps/finished-sweep/trials?status=succeeded&sort=accuracy_final&order=desc')
    ).body.rows as unknown[][];
    const spread = await get(
      '/api/sweeps/finished-sweep/trials?status=succeeded&sort=accuracy_final&order=desc&limit=5&spread=2',
    );
    expect(spread.body.total).toBe(15);
    expect(spread.body.spread).toEqual({ head: 2, step: 5 });
    expect(spread.body.rows.map((r: unknown[]) => r[0])).toEqual([0, 1, 2, 7, 12].map((i) => sorted[i]![0]));
  });

  it("each report row's axes select exactly that row's trials in the list", async () => {
    for (const name of ['finished-sweep', 'running-sweep']) {
      const { body } = await get(`/api/sweeps/${name}`);
      expect(body.rowAxes).toHaveLength(body.report.rows.length);
      for (const [i, row] of (body.report.rows as any[]).entries()) {
        const a = body.rowAxes[i];
        const q = new URLSearchParams({ limit: '1000' });
        q.set('method', a.method);
        q.set('decomposition', a.decomposition ?? '-');
        q.set('rank_policy', a.rankPolicy ?? '-');
        q.set('sd', a.distortionInterval === null ? '-' : String(a.distortionInterval));
        q.set('scheme', a.scheme ?? '-');
        const list = await get(`/api/sweeps/${name}/trials?${q}`);
        expect(list.body.rows.map((r: unknown[]) => r[0]).sort()).toEqual([...row.trialKeys].sort());
      }
    }
  });
});

describe('kept answers', () => {
  it("a sweep's report and lists are rebuilt when one of its trials changes, not on progress writes", async () => {
    const db = createTempDb();
    const fixture = populateDashboardDb(db.store!);
    const store = ResultsStore.open(db.path, { readonly: true });
    const data = new DashboardData(store);
    const built = vi.spyOn(data, 'sweep');
    const server = createServer(createHandler(data, loadAssets()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const read = async (path: string) => (await fetch(url + path)).text();
    try {
      const first = await read('/api/sweeps/running-sweep');
      const list = await read('/api/sweeps/running-sweep/trials?status=running');
      expect(await read('/api/sweeps/running-sweep')).toBe(first);
      expect(built).toHaveBeenCalledTimes(1);
      // Progress of the running trial: committed, but nothing the report or list shows.
      const running = JSON.parse(list).rows[0][0] as string;
      db.store!.applyEvents([
        { trialKey: running, attempt: 1, seq: 50, event: { type: 'heartbeat', step: 6, epoch: 0 } },
        {
          trialKey: running,
          attempt: 1,
          seq: 51,
          event: { type: 'metric', step: 6, epoch: 0, phase: 'train', name: 'loss', value: 0.3 },
        },
      ]);
      expect(await read('/api/sweeps/running-sweep')).toBe(first);
      expect(await read('/api/sweeps/running-sweep/trials?status=running')).toBe(list);
      expect(built).toHaveBeenCalledTimes(1);
      // A trial finishes: rebuilt, with it.
      fixture.finishNext();
      const after = JSON.parse(await read('/api/sweeps/running-sweep'));
      expect(built).toHaveBeenCalledTimes(2);
      expect(after.sweep.counts.succeeded).toBe(JSON.parse(first).sweep.counts.succeeded + 1);
      expect(after.report).toEqual(reportJson(db.path, 'running-sweep'));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      store.close();
      db.cleanup();
    }
  });
});

describe('trials', () => {
  it('answers a trial with its config, curves, distortion steps, layers and artifacts', async () => {
    const key = s.fixture.finished.keys[s.fixture.finished.configs.findIndex((c) => c.method === 'distort')]!;
    const { status, body } = await get(`/api/trials/${key.slice(0, 12)}`);
    expect(status).toBe(200);
    expect(body.trial.key).toBe(key);
    expect(JSON.parse(body.configJson)).toEqual(body.trial.config);
    expect(body.distortionSteps).toEqual([4, 8, 12, 16]);
    const loss = body.series.find((m: any) => m.phase === 'train' && m.name === 'loss');
    expect(loss.steps).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(body.series.find((m: any) => m.phase === 'eval' && m.name === 'accuracy').epochs).toEqual([0, 1]);
    expect(body.layers.map((l: any) => l.layer)).toEqual(['conv2', 'fc1']);
    expect(body.result.accuracy_after_decomposition).toBeCloseTo(body.result.accuracy_final - 0.2, 10);
    expect(body.artifacts).toHaveLength(1);
    expect(body.trial.environment.backend).toBe('cpu');
    expect(body.allocation).toBeNull(); // a uniform ratio: nothing was allocated
  });

  it("answers a trial's rank allocation: policy, budget, ratios reached, each layer's ranks and what it measured", async () => {
    const db = createTempDb();
    const keys = populateRankDb(db.store!);
    const d = await startDashboard({ db: db.path, port: 0 });
    const trial = async (key: string) => {
      const res = await fetch(new URL(`/api/trials/${key}`, d.url));
      expect(res.status).toBe(200);
      return (await res.json()) as any;
    };
    try {
      for (const seed of [0, 1]) {
        const body = await trial(keys.allocated[seed]!);
        // The record of the attempt that succeeded, as the trainer reported it (layers in model order).
        expect(body.allocation).toEqual({ attempt: 1, ...rankDbAllocation(seed) });
        expect(body.allocation.layers.map((l: any) => l.name)).toEqual(['conv1', 'conv2', 'fc1', 'fc2']);
      }
      expect((await trial(keys.uniform[0]!)).allocation).toBeNull();
    } finally {
      await d.close();
      db.cleanup();
    }
  });

  it('serves the tail of a trial log from the runs directory, and says when there is none', async () => {
    const key = s.fixture.finished.keys[0]!;
    expect((await rawGet(base, `/api/trials/${key}/log`)).status).toBe(404);
    const { mkdirSync } = await import('node:fs');
    const dir = join(s.db.dir, 'finished-sweep', key.slice(0, 16));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'trial.log'), '{"msg":"hello <b>log</b>"}\n');
    const log = await rawGet(base, `/api/trials/${key}/log`);
    expect(log.status).toBe(200);
    expect(log.headers['content-type']).toMatch(/^text\/plain/);
    expect(log.body).toBe('{"msg":"hello <b>log</b>"}\n');
    expect((await get(`/api/trials/${key}`)).body.hasLog).toBe(true);
  });

  it('compares 2-6 trials: only the config fields that differ', async () => {
    const [a, b] = s.fixture.finished.keys;
    const { status, body } = await get(`/api/compare?keys=${a!.slice(0, 10)},${b!.slice(0, 10)}`);
    expect(status).toBe(200);
    expect(body.changedKeys).toEqual(['seed']);
    expect(body.values).toEqual([{ seed: 0 }, { seed: 1 }]);
    expect(body.trials.map((t: any) => t.trial.key)).toEqual([a, b]);
  });
});

describe('bad requests get a 400 (or 404) with a message, never a 500', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['/api/sweeps/finished-sweep/trials?limit=abc', 400, /limit: an integer from 1 to 50000/],
    ['/api/sweeps/finished-sweep/trials?limit=0', 400, /limit/],
    ['/api/sweeps/finished-sweep/trials?offset=-1', 400, /offset/],
    ['/api/sweeps/finished-sweep/trials?sort=bogus', 400, /sort: unknown column "bogus"; allowed: status/],
    ['/api/sweeps/finished-sweep/trials?order=up', 400, /order: asc or desc/],
    ['/api/sweeps/finished-sweep/trials?status=done', 400, /status: unknown value "done"; allowed: pending/],
    ['/api/sweeps/finished-sweep/trials?sd=abc', 400, /sd: a positive integer/],
    ['/api/sweeps/finished-sweep/trials?limit=1&limit=2', 400, /limit: given 2 times/],
    ['/api/sweeps/finished-sweep/trials?method=', 400, /method: empty value/],
    ['/api/sweeps/finished-sweep/trials?where=1%3D1', 400, /unknown query parameter "where"/],
    [
      '/api/sweeps/finished-sweep/trials?range=config:0:1',
      400,
      /range: unknown column "config"; allowed: target_ratio/,
    ],
    ['/api/sweeps/finished-sweep/trials?range=seed:2:1', 400, /range: seed: two numbers min <= max/],
    ['/api/sweeps/finished-sweep/trials?range=seed:1', 400, /range: column:min:max is required/],
    ['/api/sweeps/finished-sweep/trials?range=lr:a:b', 400, /range: lr: two numbers/],
    ['/api/sweeps/finished-sweep/trials?range=lr:0x1:2', 400, /range: lr: two numbers/],
    ['/api/sweeps/finished-sweep/trials?top=0', 400, /top: an integer from 1/],
    ['/api/sweeps/finished-sweep/trials?spread=x', 400, /spread: an integer from 0/],
    [
      '/api/sweeps/finished-sweep/trials?spread=2&offset=5',
      400,
      /offset: a spread sample covers the whole list/,
    ],
    ['/api/sweeps/finished-sweep/trials?spread=60&limit=50', 400, /spread: at most limit \(50\)/],
    ['/api/sweeps?sql=select', 400, /unknown query parameter "sql"; allowed: \(none\)/],
    ['/api/sweeps/no-such-sweep', 404, /no sweep named "no-such-sweep"/],
    ['/api/sweeps/no-such-sweep/trials', 404, /no sweep named/],
    ['/api/trials/zz', 400, /a trial key or prefix of 4-64 hex digits/],
    ['/api/trials/abcdef0123', 404, /no trial with key or prefix "abcdef0123"/],
    ['/api/compare?keys=abcd', 400, /keys: 2 to 6/],
    ['/api/compare?keys=a1a1,b2b2,c3c3,d4d4,e5e5,f6f6,a7a7', 400, /keys: 2 to 6/],
    ['/api/compare?keys=a1a1,a1a1', 400, /the same trial is given twice/],
    ['/api/compare', 400, /keys: 2 to 6/],
    ['/api/nothing-here', 404, /not found/],
  ];
  it.each(cases)('%s -> %i', async (path, code, message) => {
    const { status, type, body } = await get(path);
    expect(status).toBe(code);
    expect(type).toMatch(/^application\/json/);
    expect(body.error).toMatch(message);
  });
});

describe('safety', () => {
  it('has no writing endpoint: anything but GET / HEAD is 405', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'])
      for (const path of ['/api/sweeps', '/api/sweeps/finished-sweep', '/api/query'])
        expect((await rawGet(base, path, {}, method)).status).toBe(405);
    expect((await rawGet(base, '/api/health', {}, 'HEAD')).status).toBe(200);
  });

  it('reads through a read-only connection', async () => {
    const { body } = await get('/api/health');
    expect(body).toMatchObject({ ok: true, readonly: true });
  });

  it('serves only the built assets: paths cannot leave the asset folder', async () => {
    const js = await rawGet(base, '/assets/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    for (const path of [
      '/assets/../../etc/passwd',
      '/../../etc/passwd',
      '/assets/%2e%2e/%2e%2e/etc/passwd',
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2fetc%2fpasswd',
      '/assets/index.html/..',
      '/etc/passwd',
    ]) {
      const res = await rawGet(base, path);
      expect([404, 400], path).toContain(res.status);
      expect(res.body).not.toMatch(/root:/);
    }
  });

  it('every page route answers the same static shell, with a strict content security policy', async () => {
    const pages = ['/', '/sweeps/%3Cscript%3Ealert(1)%3C%2Fscript%3E', '/trials/abcd', '/compare?keys=a,b'];
    const bodies = await Promise.all(pages.map((p) => rawGet(base, p)));
    for (const r of bodies) {
      expect(r.status).toBe(200);
      expect(r.body).toBe(bodies[0]!.body);
      expect(r.body).not.toMatch(/alert/);
      expect(r.headers['content-security-policy']).toMatch(/script-src 'self';/);
      expect(r.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('loopback hosts are told apart from the others', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '192.168.1.5', '::', 'example.org']) expect(isLoopback(h)).toBe(false);
  });
});

describe('--token', () => {
  it('requires the bearer token; ?token= once trades it for a cookie', async () => {
    const db = createTempDb();
    const tokenFile = join(db.dir, 'token');
    writeFileSync(tokenFile, 'correct-horse-battery-staple-42\n');
    const token = readTokenFile(tokenFile);
    const d = await startDashboard({ db: db.path, port: 0, token });
    try {
      expect((await rawGet(d.url, '/api/sweeps')).status).toBe(401);
      expect((await rawGet(d.url, '/')).status).toBe(401);
      expect((await rawGet(d.url, '/assets/app.js')).status).toBe(401);
      expect(
        (await rawGet(d.url, '/api/sweeps', { authorization: 'Bearer wrong-token-wrong-token' })).status,
      ).toBe(401);
      expect((await rawGet(d.url, '/api/sweeps', { authorization: `Bearer ${token}` })).status).toBe(200);
      const signIn = await rawGet(d.url, `/sweeps/x?token=${token}&poll=500`);
      expect(signIn.status).toBe(303);
      expect(signIn.headers.location).toBe('/sweeps/x?poll=500');
      const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
      expect(String(signIn.headers['set-cookie'])).toMatch(/HttpOnly; SameSite=Strict/);
      expect((await rawGet(d.url, '/api/sweeps', { cookie })).status).toBe(200);
      expect((await rawGet(d.url, '/?token=nope-nope-nope-nope')).status).toBe(401);
    } finally {
      await d.close();
      db.cleanup();
    }
  });

  it('refuses a short or unreadable token file', () => {
    const db = createTempDb({ create: false });
    const f = join(db.dir, 'short');
    writeFileSync(f, 'abc\n');
    expect(() => readTokenFile(f)).toThrow(/at least 16 characters/);
    expect(() => readTokenFile(join(db.dir, 'missing'))).toThrow(/--token: cannot read/);
    db.cleanup();
  });
});

describe('opening', () => {
  it('a missing database is a StoreError, and nothing is created', async () => {
    const db = createTempDb({ create: false });
    await expect(startDashboard({ db: db.path, port: 0 })).rejects.toMatchObject({ code: 'DB_MISSING' });
    const { existsSync } = await import('node:fs');
    expect(existsSync(db.path)).toBe(false);
    db.cleanup();
  });
});
