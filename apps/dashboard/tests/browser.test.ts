/**
 * The dashboard in a real headless browser (Debian's chromium through playwright-core) against a
 * database with a finished and a running sweep: every page renders without console errors, the
 * report table shows `flatrank report --format json`'s numbers, the plot has one mark per method x
 * ratio, filters and top-k act, the live count moves when a trial finishes, a hostile sweep name
 * stays text. Screenshots go to $FLATRANK_SCREENSHOTS (default: a temp directory).
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { trialKey } from '@flatrank/protocol';
import { buildReport, formatReport, loadSweep, type Report } from '@flatrank/report';
import { SWEEP_TRIAL_COLUMNS } from '@flatrank/store';
import {
  tempDbAllocation,
  tempDbTrialConfig,
  tempDbTrialEvents,
  writeLargeDashboardSweep,
  type DashboardSweep,
} from '@flatrank/testing';
import { launchChromium, type Launched } from './browser.js';
import { activeLines, brushAxis, brushed, clickAxis } from './parallel.js';
import { serveFixture, type Served } from './helpers.js';

const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>';
const shots = process.env['FLATRANK_SCREENSHOTS'] ?? mkdtempSync(join(tmpdir(), 'flatrank-shots-'));
mkdirSync(shots, { recursive: true });

let s: Served;
let large: DashboardSweep;
let allocatedKey: string;
let chrome: Launched;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  s = await serveFixture();
  // A sweep whose name and description are markup: they must show as text.
  const store = s.db.store!;
  const { id } = store.upsertSweep({
    name: XSS,
    specText: XSS,
    specResolved: { description: XSS },
    specHash: '0'.repeat(64),
  });
  const c = tempDbTrialConfig({ seed: 42 });
  // And a trial whose ranks were allocated, markup in what its allocation measured (claimed first:
  // the first by id); the other stays pending.
  const allocated = tempDbTrialConfig({
    seed: 43,
    compression: { decomposition: 'svd', rank: { kind: 'allocate', by: 'error', target: { params: 2 } } },
  });
  store.insertTrials(id, [
    { key: trialKey(allocated), config: allocated },
    { key: trialKey(c), config: c },
  ]);
  const claim = store.claimTrial({ sweepId: id, worker: 'w', leaseMs: 60_000, maxAttempts: 1 })!;
  allocatedKey = trialKey(allocated);
  if (claim.key !== allocatedKey) throw new Error('the fixture expected to claim the allocated trial first');
  const record = tempDbAllocation();
  // fc1 measured a long curve (folded on the page), with markup in it too.
  const curve = { note: XSS, accuracy: Array.from({ length: 24 }, (_, r) => 0.5 + r / 50) };
  const allocation = {
    ...record,
    layers: [record.layers[0]!, { ...record.layers[1]!, measured: curve }],
    measured: { note: XSS, maxError: 0.25, greedySteps: 3 },
  };
  store.applyEvents(tempDbTrialEvents(claim.key, claim.attempt, { allocation }));
  // Past the parallel coordinates' 1000 lines: they draw a sample, the list pages through all.
  large = writeLargeDashboardSweep(store, 'large-sweep', 1100);
  chrome = await launchChromium();
  page = await chrome.browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // A poll still in flight when the test navigates away is aborted by the browser: not a failure.
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${why}`);
  });
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await s?.close();
});

async function open(path: string): Promise<void> {
  await page.goto(new URL(path, s.dashboard.url).href);
  await page.waitForSelector('body[data-ready]', { timeout: 30_000 });
  expect(await page.evaluate(() => document.body.dataset['ready'])).toBe('true');
}

const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

/** The per-layer table's cells of one column, top to bottom (none when the column is not shown). */
function layerColumn(col: string): Promise<Array<string | null>> {
  return page.$$eval(`tr[data-layer] td[data-col="${col}"]`, (td) => td.map((x) => x.textContent));
}

/** Waits until the trial list holds exactly these trials (one page: at most 50). */
async function listShows(keys: string[]): Promise<void> {
  const want = [...keys].sort().join(',');
  await page.waitForFunction(
    (want) =>
      [...document.querySelectorAll('#trial-list tbody tr[data-key]')]
        .map((tr) => tr.getAttribute('data-key'))
        .sort()
        .join(',') === want,
    want,
    { timeout: 15_000 },
  );
  expect(await page.getAttribute('#trial-list', 'data-total')).toBe(String(keys.length));
}

/** `mean ± std` as `flatrank report` prints it. */
function stat(st: { mean: number | null; std: number | null }, digits: number, scale = 1): string {
  if (st.mean === null) return '-';
  const m = (st.mean * scale).toFixed(digits);
  return st.std === null ? m : `${m} ± ${(st.std * scale).toFixed(digits)}`;
}

function reportJson(sweep: string): Report {
  const loaded = loadSweep(s.db.path, sweep);
  return JSON.parse(
    formatReport(buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces }), 'json'),
  ) as Report;
}

describe('in chromium', () => {
  it('the sweeps page lists every sweep, shows a markup name as text, and its live count moves', async () => {
    await open('/?poll=250');
    const names = await page.$$eval('tr[data-sweep]', (trs) =>
      trs.map((tr) => tr.getAttribute('data-sweep')),
    );
    expect(names).toEqual(['finished-sweep', 'running-sweep', XSS, 'large-sweep']);
    const shown = await page.$$eval('tr[data-sweep] td:first-child a', (as) => as.map((a) => a.textContent));
    expect(shown).toContain(XSS);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.$$('main img, main script')).toHaveLength(0);

    const cell = 'tr[data-sweep="running-sweep"] td[data-col="succeeded"]';
    const before = Number(await page.textContent(cell));
    expect(before).toBe(3);
    s.fixture.finishNext(); // as the coordinator would: claim + the trial's events
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === '4', cell, {
      timeout: 15_000,
    });
    await shot('sweeps');
  });

  it("the sweep page's table has the numbers of `flatrank report --format json`", async () => {
    await open('/sweeps/finished-sweep');
    const report = reportJson('finished-sweep');
    const rows = await page.$$eval('tr[data-group]', (trs) =>
      trs.map((tr) => ({
        group: tr.getAttribute('data-group'),
        cells: Object.fromEntries(
          [...tr.querySelectorAll('td[data-col]')].map((td) => [td.getAttribute('data-col'), td.textContent]),
        ),
      })),
    );
    expect(rows.map((r) => r.group)).toEqual(report.rows.map((r) => r.group));
    report.rows.forEach((r, i) => {
      const c = rows[i]!.cells;
      expect(c['n']).toBe(String(r.accuracyFinal.n));
      expect(c['accuracyFinal']).toBe(stat(r.accuracyFinal, 2, 100));
      expect(c['accuracyAfterDecomposition']).toBe(stat(r.accuracyAfterDecomposition, 2, 100));
      expect(c['paramsRatio']).toBe(r.isBaseline ? '1' : stat(r.paramsRatio, 2));
      expect(c['macsRatio']).toBe(r.isBaseline ? '1' : stat(r.macsRatio, 2));
      expect(c['latencyRatio']).toBe(stat(r.latencyRatio, 2));
      if (c['decompositionError'] !== undefined)
        expect(c['decompositionError']).toBe(stat(r.decompositionError, 3));
      expect(c['wallSeconds']).toBe(stat(r.wallSeconds, 1));
      expect(c['vsBaseline']).toBe(
        r.vsBaseline === null ? '-' : `${r.vsBaseline >= 0 ? '+' : ''}${r.vsBaseline.toFixed(2)}`,
      );
      expect(c['best']).toBe(r.best ? '★' : '');
    });
    await shot('sweep');
  });

  it('the plot has one mark per method x ratio; filters and top-k act on table, plot and parallel coordinates', async () => {
    await open('/sweeps/finished-sweep');
    const report = reportJson('finished-sweep');
    const marks = () =>
      page.evaluate(() => {
        const series = window.flatrankCharts['sweepPlot']!.getOption()['series'] as Array<{
          type: string;
          name: string;
          data: unknown[];
        }>;
        return series
          .filter((x) => x.type === 'line' && x.name !== 'Pareto front' && x.data.length > 0)
          .map((x) => [x.name, x.data.length] as const);
      });
    const expected = new Map<string, number>();
    for (const r of report.rows.filter((r) => !r.isBaseline && r.accuracyFinal.mean !== null)) {
      const label = `${r.method} ${r.decomposition ?? ''}${r.variant ? ` ${r.variant}` : ''}`.trim();
      expected.set(label, (expected.get(label) ?? 0) + 1);
    }
    expect(new Map(await marks())).toEqual(expected);
    expect([...expected.values()].reduce((a, b) => a + b, 0)).toBe(4);
    // The symbols are drawn: the SVG holds at least one path per mark.
    expect(await page.$$eval('#sweep-plot svg path', (p) => p.length)).toBeGreaterThan(4);

    // Hover a point: its row and trials.
    await page.evaluate(() =>
      window.flatrankCharts['sweepPlot']!.dispatchAction({ type: 'showTip', seriesIndex: 0, dataIndex: 0 }),
    );
    await page.waitForFunction(() =>
      /trials: /.test(document.querySelector('#sweep-plot')?.textContent ?? ''),
    );

    const parallel = () =>
      page.evaluate(
        () =>
          (window.flatrankCharts['parallel']!.getOption()['series'] as Array<{ data: unknown[] }>)[0]!.data
            .length,
      );
    // The lines come from the server: wait until the chart has the expected number.
    const lines = (n: number) =>
      page.waitForFunction(
        (want) =>
          (window.flatrankCharts['parallel']?.getOption()['series'] as Array<{ data: unknown[] }>)[0]?.data
            .length === want,
        n,
        { timeout: 15_000 },
      );
    expect(await parallel()).toBe(15);
    await page.fill('input[aria-label="top k"]', '5');
    await page.dispatchEvent('input[aria-label="top k"]', 'change');
    await lines(5);
    expect(await page.textContent('#parallel-sample')).toBe(
      '5 succeeded trials (the 5 most accurate), every one drawn',
    );

    await page.uncheck('fieldset[data-facet="method"] label:has-text("distort") input');
    expect(await page.$$eval('tr[data-group]', (t) => t.length)).toBe(
      report.rows.filter((r) => r.method !== 'distort').length,
    );
    expect(new Map(await marks())).toEqual(new Map([...expected].filter(([k]) => !k.startsWith('distort'))));
    // The trial list follows the page's filters too (on the server).
    await page.waitForFunction(() => document.querySelector('#trial-range')?.textContent === '1-9 of 9');
    await page.fill('input[aria-label="top k"]', '0');
    await page.dispatchEvent('input[aria-label="top k"]', 'change');
    await lines(9);
    const methods = await page.evaluate(() =>
      (window.flatrankCharts['parallel']!.getOption()['series'] as Array<{ data: unknown[][] }>)[0]!.data.map(
        (d) => d[0],
      ),
    );
    expect(new Set(methods)).toEqual(new Set(['baseline', 'finetune']));
  });

  it('brushing an axis fades the lines outside it and filters the trial list to every trial inside', async () => {
    await open('/sweeps/finished-sweep');
    const all = s.db.store!.sweepTrialPage(s.fixture.finished.sweepId, { limit: 1000 }).rows;
    const col = (c: (typeof SWEEP_TRIAL_COLUMNS)[number]) => SWEEP_TRIAL_COLUMNS.indexOf(c);

    // Accuracy 95.95-96.65 %: the six trials at 2x (distort svd 96.4-96.6, finetune tucker2 96.2-96.4).
    await brushAxis(page, 'accuracy_final', 95.95, 96.65);
    const [acc] = await brushed(page, 'accuracy_final');
    const inAcc = all.filter((r) => {
      const v = (r[col('accuracy_final')] as number) * 100;
      return v >= acc![0] && v <= acc![1];
    });
    expect(inAcc).toHaveLength(6);
    await listShows(inAcc.map((r) => r[0] as string));
    expect(await activeLines(page)).toBe(6);
    expect(await page.textContent('#parallel-brush')).toMatch(/^brushed: 6 of the 15 drawn lines/);

    // And a category: method = distort (its ordinal position, 1 of baseline / distort / finetune).
    await brushAxis(page, 'method', 0.7, 1.3);
    const both = inAcc.filter((r) => r[col('method')] === 'distort');
    expect(both).toHaveLength(3);
    await listShows(both.map((r) => r[0] as string));
    expect(await activeLines(page)).toBe(3);

    // A click on the axis clears its brush: every distort trial again.
    await clickAxis(page, 'accuracy_final', 97);
    await listShows(all.filter((r) => r[col('method')] === 'distort').map((r) => r[0] as string));
    expect(await activeLines(page)).toBe(6);
    await shot('sweep-brushed');
  });

  it('a sweep past 1000 succeeded trials draws a fixed sample of lines, brushes and pages every trial', async () => {
    await open('/sweeps/large-sweep');
    const store = s.db.store!;
    const best = store.sweepTrialPage(large.sweepId, {
      status: ['succeeded'],
      sort: 'accuracy_final',
      order: 'desc',
      limit: 2000,
    }).rows;
    expect(best).toHaveLength(1100);
    const drawn = await page.evaluate(() =>
      (window.flatrankCharts['parallel']!.getOption()['series'] as Array<{ data: unknown[][] }>)[0]!.data.map(
        (d) => d[d.length - 1] as string,
      ),
    );
    // The best 250, then 1 in ceil(850 / 750) = 2 of the rest: 250 + 425 lines.
    expect(drawn).toHaveLength(675);
    expect(drawn.slice(0, 250)).toEqual(best.slice(0, 250).map((r) => r[0]));
    expect(drawn.slice(250)).toEqual(
      best
        .slice(250)
        .filter((_, i) => i % 2 === 0)
        .map((r) => r[0]),
    );
    expect(await page.textContent('#parallel-sample')).toBe(
      '675 of 1100 succeeded trials drawn: the 250 most accurate, then 1 in 2 of the rest in order of accuracy (a fixed sample; the trial list below has them all)',
    );
    // One page of the list in the DOM, whatever the sweep's size.
    expect(await page.$$eval('#trial-list tbody tr', (t) => t.length)).toBe(50);
    expect(await page.textContent('#trial-range')).toBe('1-50 of 1100');

    // The brush filters the list on the server: every trial in range, drawn or not.
    const col = (c: (typeof SWEEP_TRIAL_COLUMNS)[number]) => SWEEP_TRIAL_COLUMNS.indexOf(c);
    await brushAxis(page, 'accuracy_final', 95.05, 95.75);
    const [acc] = await brushed(page, 'accuracy_final');
    const inRange = best.filter((r) => {
      const v = (r[col('accuracy_final')] as number) * 100;
      return v >= acc![0] && v <= acc![1];
    });
    const drawnInRange = inRange.filter((r) => drawn.includes(r[0] as string)).length;
    expect(drawnInRange).toBeLessThan(inRange.length);
    expect(await activeLines(page)).toBe(drawnInRange);
    await page.waitForFunction(
      (n) => document.querySelector('#trial-list')?.getAttribute('data-total') === String(n),
      inRange.length,
      { timeout: 15_000 },
    );

    // Sorting by a column is the server's: the first page is the least accurate in the range.
    await page.click('th[data-sort="accuracy_final"]');
    const worst = [...inRange].sort(
      (a, b) => (a[col('accuracy_final')] as number) - (b[col('accuracy_final')] as number),
    )[0]!;
    await page.waitForFunction(() =>
      /▼/.test(document.querySelector('th[data-sort="accuracy_final"]')?.textContent ?? ''),
    );
    await page.click('th[data-sort="accuracy_final"]');
    await page.waitForFunction(
      (pct) =>
        document.querySelector('#trial-list tbody tr td[data-col="accuracy_final"]')?.textContent === pct,
      ((worst[col('accuracy_final')] as number) * 100).toFixed(2),
    );
    await page.click('#trial-list button:has-text("next")');
    await page.waitForFunction(() => /^51-/.test(document.querySelector('#trial-range')?.textContent ?? ''));
    await shot('sweep-large');
  });

  it("a running sweep's page updates its counts and table when a trial finishes", async () => {
    await open('/sweeps/running-sweep?poll=250');
    const n = () =>
      page.$$eval('tr[data-group] td[data-col="n"]', (td) =>
        td.reduce((a, c) => a + Number(c.textContent), 0),
      );
    const before = await n();
    const counts = await page.textContent('#sweep-counts');
    s.fixture.finishNext();
    await page.waitForFunction(
      (old) => document.querySelector('#sweep-counts')?.textContent !== old,
      counts,
      { timeout: 15_000 },
    );
    await page.waitForFunction(
      (want) =>
        [...document.querySelectorAll('tr[data-group] td[data-col="n"]')].reduce(
          (a, c) => a + Number(c.textContent),
          0,
        ) === want,
      before + 1,
      { timeout: 15_000 },
    );
    expect(await page.$$eval('tr[data-group]', (t) => t.length)).toBe(
      reportJson('running-sweep').rows.length,
    );
  });

  it('the trial page shows config, curves with the distortion steps, accuracy after decomposition, layers', async () => {
    const i = s.fixture.finished.configs.findIndex((c) => c.method === 'distort');
    const key = s.fixture.finished.keys[i]!;
    await open(`/trials/${key}`);
    expect(JSON.parse((await page.textContent('#config'))!)).toEqual(s.fixture.finished.configs[i]);
    const marks = await page.evaluate(() => {
      const series = window.flatrankCharts['accuracy']!.getOption()['series'] as Array<{
        markLine?: { data: unknown[] };
      }>;
      return series.flatMap((x) => x.markLine?.data ?? []).length;
    });
    expect(marks).toBe(4);
    expect(await page.textContent('#acc-after-decomposition')).toMatch(/^\d+\.\d\d %$/);
    expect(await page.$$eval('td[data-col="ranks"]', (td) => td.map((x) => x.textContent))).toEqual([
      '12',
      '12',
    ]);
    // svd lowered: the lowering order; distort: the first and final distortion errors, and the
    // final projection's tiny relative error; no iterative fit, no CP columns.
    expect(await layerColumn('lowering_order')).toEqual(['hwc', 'hwc']);
    expect(await layerColumn('first_distortion_error')).toEqual(['0.1500', '0.1500']);
    expect(await layerColumn('final_distortion_error')).toEqual(['0.1000', '0.1000']);
    expect(await layerColumn('relative_error')).toEqual(['1.00e-6', '1.00e-6']);
    for (const absent of ['iterations', 'converged', 'cp_init', 'cp_seed', 'cp_fit'])
      expect(await layerColumn(absent)).toEqual([]);
    // A uniform ratio: no allocation to show.
    expect(await page.$$('#allocation')).toHaveLength(0);
    await shot('trial');
  });

  it("the trial page shows a rank allocation: policy, budget, ratios reached, each layer's ranks, what it measured, as text", async () => {
    await open(`/trials/${allocatedKey}`);
    expect(await page.textContent('#allocation-policy')).toBe('model-ratio=2');
    expect(await page.textContent('#allocation-budget')).toBe('params 2x');
    expect(await page.textContent('#allocation-reached')).toBe('params 2.01x, MACs 1.6x');
    const layers = await page.$$eval('tr[data-allocation-layer]', (trs) =>
      trs.map((tr) =>
        Object.fromEntries(
          [...tr.querySelectorAll('td[data-col]')].map((td) => [td.getAttribute('data-col'), td.textContent]),
        ),
      ),
    );
    expect(layers.map(({ measured: _, ...rest }) => rest)).toEqual([
      { index: '0', layer: 'conv2', ranks: '3 × 8', error: '0.2500' },
      { index: '1', layer: 'fc1', ranks: '16', error: '0.2000' },
    ]);
    // A short measurement inline, a long one folded under its size.
    expect(layers[0]!['measured']).toBe('{"candidates":[2,4,8]}');
    const fc1 = 'tr[data-allocation-layer="fc1"] td[data-col="measured"]';
    expect(await page.textContent(`${fc1} summary`)).toMatch(/^\d+ characters$/);
    expect(JSON.parse((await page.textContent(`${fc1} pre`))!)).toEqual({
      note: XSS,
      accuracy: Array.from({ length: 24 }, (_, r) => 0.5 + r / 50),
    });
    // The policy's own measurements, markup included, as text: nothing of it runs or renders.
    expect(JSON.parse((await page.textContent('#allocation-measured'))!)).toEqual({
      note: XSS,
      maxError: 0.25,
      greedySteps: 3,
    });
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.$$('main img, main script')).toHaveLength(0);
    await page.click('#allocation > details > summary');
    await shot('trial-allocation');
  });

  it("the per-layer table shows Tucker-2's and CP's fits, blank where a layer has none", async () => {
    const { configs, keys } = s.fixture.finished;
    const tucker = configs.findIndex((c) => c.compression?.decomposition === 'tucker2');
    await open(`/trials/${keys[tucker]}`);
    expect(await page.$$eval('thead th', (th) => th.map((x) => x.textContent))).toEqual(
      expect.arrayContaining(['iterations', 'converged']),
    );
    // conv2 fitted by HOOI at 2x (5 sweeps, converged); fc1 has no iterative fit: blank cells.
    expect(await layerColumn('layer')).toEqual(['conv2', 'fc1']);
    expect(await layerColumn('iterations')).toEqual(['5', '']);
    expect(await layerColumn('converged')).toEqual(['yes', '']);
    expect(await layerColumn('relative_error')).toEqual(['0.2000', '0.2000']);
    for (const absent of ['lowering_order', 'cp_init', 'first_distortion_error', 'final_distortion_error'])
      expect(await layerColumn(absent)).toEqual([]);

    const cp = large.configs.findIndex(
      (c) =>
        c.compression?.decomposition === 'cp' &&
        c.compression.rank.kind === 'ratio' &&
        c.compression.rank.ratio === 4 &&
        c.seed === 3,
    );
    await open(`/trials/${large.keys[cp]}`);
    expect(await layerColumn('cp_init')).toEqual(['svd', 'svd']);
    expect(await layerColumn('cp_seed')).toEqual(['3', '3']);
    expect(await layerColumn('cp_fit')).toEqual(['0.6000', '0.6000']);
    expect(await layerColumn('iterations')).toEqual(['7', '']);
    expect(await layerColumn('converged')).toEqual(['no', '']);
    await shot('trial-cp');
  });

  it('the compare page shows only the differing config fields, overlaid curves and ranks side by side', async () => {
    const [a, b] = [s.fixture.finished.keys[3]!, s.fixture.finished.keys[5]!];
    await open(`/compare?keys=${a.slice(0, 12)},${b.slice(0, 12)}`);
    const fields = await page.$$eval('tr[data-field]', (t) => t.map((x) => x.getAttribute('data-field')));
    expect(fields.length).toBeGreaterThan(0);
    expect(fields).not.toContain('model');
    const lines = await page.evaluate(
      () => (window.flatrankCharts['loss']!.getOption()['series'] as unknown[]).length,
    );
    expect(lines).toBeGreaterThanOrEqual(2);
    await shot('compare');
  });

  it('no page so far logged a console error or failed a request', () => {
    expect(problems).toEqual([]);
  });

  it('a bad URL shows an error page, not a crash', async () => {
    await page.goto(new URL('/trials/zz', s.dashboard.url).href);
    await page.waitForSelector('body[data-ready="error"]');
    expect(await page.textContent('main')).toMatch(/400: trial: a trial key or prefix/);
  });
});
