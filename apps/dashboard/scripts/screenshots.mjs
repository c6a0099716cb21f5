#!/usr/bin/env node
// Screenshots of the dashboard's main pages for the docs: `node apps/dashboard/scripts/screenshots.mjs
// DB SWEEP OUTDIR [RUNS_DIR]` (after npm run build) serves DB read-only on a free port, opens the sweeps list,
// the sweep, its first distortion-training trial and a comparison of the distortion and fine-tuning
// rows' first trials at the first ratio in Debian's chromium, and writes <OUTDIR>/{sweeps,sweep,sweep-first-screen,trial,compare}.png;
// when a trial of SWEEP, else of another sweep of DB, reported a rank allocation, also its page
// (the section open) as <OUTDIR>/trial-allocation.png.
/* global fetch */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { HEADLESS_CHROMIUM, startDashboard } from '@flatrank/dashboard';

const [db, sweep, out, runsDir] = process.argv.slice(2);
if (!db || !sweep || !out) {
  console.error('usage: screenshots.mjs DB SWEEP OUTDIR [RUNS_DIR]');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const dashboard = await startDashboard({ db, port: 0, ...(runsDir ? { runsDir } : {}) });
const browser = await chromium.launch({ ...HEADLESS_CHROMIUM, args: [...HEADLESS_CHROMIUM.args] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const shoot = async (path, name, fullPage = true) => {
    await page.goto(new URL(path, dashboard.url).href);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(out, `${name}.png`), fullPage });
    console.log(`wrote ${join(out, `${name}.png`)}`);
  };
  const api = async (path) => (await fetch(new URL(path, dashboard.url))).json();
  const data = await api(`/api/sweeps/${encodeURIComponent(sweep)}`);
  const rows = data.report.rows.filter((r) => !r.isBaseline);
  // Distortion training beside fine-tuning of the same decomposition at the same ratio, when the sweep has both.
  const finetuneOf = (d) =>
    rows.find((r) => r.method === 'finetune' && r.ratio === d.ratio && r.decomposition === d.decomposition);
  const distorts = rows.filter((r) => r.method === 'distort');
  const distort = distorts.find((d) => finetuneOf(d)) ?? distorts[0];
  const finetune = distort && (finetuneOf(distort) ?? rows.find((r) => r.method === 'finetune'));
  await shoot('/', 'sweeps', false);
  await shoot(`/sweeps/${encodeURIComponent(sweep)}`, 'sweep');
  await shoot(`/sweeps/${encodeURIComponent(sweep)}`, 'sweep-first-screen', false);
  if (distort) await shoot(`/trials/${distort.trialKeys[0]}`, 'trial');
  if (distort && finetune)
    await shoot(
      `/compare?keys=${distort.trialKeys[0].slice(0, 16)},${finetune.trialKeys[0].slice(0, 16)}`,
      'compare',
    );
  // The first trial with a rank allocation: each report row's first trial, SWEEP's rows first.
  const others = (await api('/api/sweeps')).sweeps.map((x) => x.name).filter((n) => n !== sweep);
  const firstAllocated = async () => {
    for (const name of [sweep, ...others]) {
      const { report } = name === sweep ? data : await api(`/api/sweeps/${encodeURIComponent(name)}`);
      for (const row of report.rows) {
        const key = row.trialKeys[0];
        if (key && (await api(`/api/trials/${key}`)).allocation) return key;
      }
    }
    return null;
  };
  const allocated = await firstAllocated();
  if (allocated) {
    await page.goto(new URL(`/trials/${allocated}`, dashboard.url).href);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await page.click('#allocation > details > summary');
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(out, 'trial-allocation.png'), fullPage: true });
    console.log(`wrote ${join(out, 'trial-allocation.png')}`);
  }
} finally {
  await browser.close();
  await dashboard.close();
}
