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
import { tempDbTrialConfig } from '@flatrank/testing';
import { launchChromium, type Launched } from './browser.js';
import { serveFixture, type Served } from './helpers.js';

const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>';
const shots = process.env['FLATRANK_SCREENSHOTS'] ?? mkdtempSync(join(tmpdir(), 'flatrank-shots-'));
mkdirSync(shots, { recursive: true });

let s: Served;
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
  store.insertTrials(id, [{ key: trialKey(c), config: c }]);
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
    expect(names).toEqual(['finished-sweep', 'running-sweep', XSS]);
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
    expect(await parallel()).toBe(15);
    await page.fill('input[aria-label="top k"]', '5');
    await page.dispatchEvent('input[aria-label="top k"]', 'change');
    expect(await parallel()).toBe(5);

    await page.uncheck('fieldset[data-facet="method"] label:has-text("distort") input');
    expect(await page.$$eval('tr[data-group]', (t) => t.length)).toBe(
      report.rows.filter((r) => r.method !== 'distort').length,
    );
    expect(new Map(await marks())).toEqual(new Map([...expected].filter(([k]) => !k.startsWith('distort'))));
    await page.fill('input[aria-label="top k"]', '0');
    await page.dispatchEvent('input[aria-label="top k"]', 'change');
    expect(await parallel()).toBe(9);
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
    await shot('trial');
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
