/**
 * `npm run bench -- dashboard [--trials=N] [--reps=N] [--db=FILE]`: the dashboard over a sweep of N
 * trials (default 10 000; every trial succeeded with per-step metrics, per-layer records and a
 * result, written as the coordinator writes them, which is setup, not what is measured). `--db`
 * keeps the database there and reuses it when it already holds the sweep.
 *
 * Times, over HTTP against the running server: the sweeps list; a sweep page's data cold (the
 * report rebuilt: another connection committed just before) and warm (kept report); the parallel
 * coordinates' trial list (every succeeded trial) and a 50-row page; the three requests the sweep
 * page makes, together, cold (target < 300 ms); and, with Debian's chromium, the sweep page from
 * navigation to fully drawn, cold (target < 2 s). Every row records the 1-minute load average.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { trialKey, type TrialConfig, type TrialEnvelope } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { dashboardTrialEvents, tempDbTrialConfig } from '@flatrank/testing';
import { HEADLESS_CHROMIUM, startDashboard } from '@flatrank/dashboard';

type BenchRow = Record<string, string | number | boolean | null>;

const CHROMIUM = HEADLESS_CHROMIUM.executablePath;

function option(args: string[], name: string, fallback: number): number {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  const v = a ? Number(a.slice(name.length + 3)) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: a positive integer is required`);
  return v;
}

/** Baseline, distort (svd, tucker2; S_D 4, 8), finetune (svd, tucker2, cp) x 6 ratios x 2 lr, then seeds. */
function sweepConfigs(n: number): TrialConfig[] {
  const shapes: Array<(seed: number) => TrialConfig> = [];
  for (const lr of [0.05, 0.02]) {
    const training = { epochs: 2, lr, batchSize: 32 };
    shapes.push((seed) => tempDbTrialConfig({ method: 'baseline', seed, training }));
    for (const ratio of [1.5, 2, 3, 4, 6, 8]) {
      for (const decomposition of ['svd', 'tucker2'] as const)
        for (const interval of [4, 8])
          shapes.push((seed) =>
            tempDbTrialConfig({
              method: 'distort',
              seed,
              training,
              compression: { decomposition, rank: { kind: 'ratio', ratio } },
              distortion: { interval },
            }),
          );
      for (const decomposition of ['svd', 'tucker2', 'cp'] as const)
        shapes.push((seed) =>
          tempDbTrialConfig({
            method: 'finetune',
            seed,
            training,
            compression: { decomposition, rank: { kind: 'ratio', ratio } },
          }),
        );
    }
  }
  const out: TrialConfig[] = [];
  for (let seed = 0; out.length < n; seed++)
    for (const shape of shapes) if (out.length < n) out.push(shape(seed));
  return out;
}

function writeSweep(store: ResultsStore, n: number): void {
  const configs = sweepConfigs(n);
  const { id: sweepId } = store.upsertSweep({
    name: 'bench',
    specText: 'name: bench\n',
    specResolved: { name: 'bench', description: `dashboard bench: ${n} trials` },
    specHash: 'b'.repeat(64),
  });
  for (let i = 0; i < configs.length; i += 5000)
    store.insertTrials(
      sweepId,
      configs.slice(i, i + 5000).map((config) => ({ key: trialKey(config), config })),
    );
  let batch: TrialEnvelope[] = [];
  for (;;) {
    const claim = store.claimTrial({ sweepId, worker: 'bench', leaseMs: 3_600_000, maxAttempts: 1 });
    if (!claim) break;
    batch.push(...dashboardTrialEvents(claim.key, claim.attempt, claim.config));
    if (batch.length >= 10_000) {
      store.applyEvents(batch);
      batch = [];
    }
  }
  store.applyEvents(batch);
  store.finishSweep(sweepId);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function time(
  reps: number,
  before: () => void,
  fn: () => Promise<number>,
): Promise<{ ms: number[]; bytes: number }> {
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < reps; i++) {
    before();
    const t0 = performance.now();
    bytes = await fn();
    ms.push(performance.now() - t0);
  }
  return { ms, bytes };
}

async function get(url: string): Promise<number> {
  const res = await fetch(url);
  const body = await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return body.byteLength;
}

export default {
  name: 'dashboard',
  description: 'flatrank serve over a 10k-trial sweep: page data (< 300 ms) and render in chromium (< 2 s)',
  async run(args: string[]): Promise<BenchRow[]> {
    const trials = option(args, 'trials', 10_000);
    const reps = option(args, 'reps', 5);
    const kept = args.find((a) => a.startsWith('--db='))?.slice('--db='.length);
    const dir = kept ? null : mkdtempSync(join(tmpdir(), 'flatrank-bench-dashboard-'));
    const file = kept ?? join(dir!, 'bench.sqlite');
    const writer = ResultsStore.open(file, { create: true });
    const rows: BenchRow[] = [];
    try {
      const t0 = performance.now();
      if (writer.getSweep('bench')) console.log(`setup: reusing the sweep in ${file}`);
      else {
        writeSweep(writer, trials);
        console.log(`setup: ${trials} trials written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      const dashboard = await startDashboard({ db: file, port: 0 });
      // A commit by another connection: the next sweep page rebuilds its report (a cold read).
      let touches = 0;
      const touch = () =>
        void writer.upsertSweep({
          name: `touch-${touches++}`,
          specText: '',
          specResolved: null,
          specHash: '',
        });
      const none = () => undefined;
      const url = (p: string) => new URL(p, dashboard.url).href;
      const parallel = '/api/sweeps/bench/trials?status=succeeded&sort=accuracy_final&order=desc&limit=50000';
      const listPage = '/api/sweeps/bench/trials?offset=0&limit=50';
      const add = (name: string, r: { ms: number[]; bytes: number }, target: number | null) =>
        rows.push({
          case: name,
          trials,
          median_ms: +median(r.ms).toFixed(1),
          min_ms: +Math.min(...r.ms).toFixed(1),
          max_ms: +Math.max(...r.ms).toFixed(1),
          reps: r.ms.length,
          kb: +(r.bytes / 1024).toFixed(0),
          target_ms: target,
          ok: target === null ? null : median(r.ms) < target,
          load1: +loadavg()[0]!.toFixed(2),
        });
      try {
        await get(url('/api/sweeps/bench')); // first request warms the JIT, not measured
        add('GET /api/sweeps', await time(reps, touch, () => get(url('/api/sweeps'))), null);
        add(
          'GET /api/sweeps/bench, cold (report rebuilt)',
          await time(reps, touch, () => get(url('/api/sweeps/bench'))),
          null,
        );
        add(
          'GET /api/sweeps/bench, warm (report kept)',
          await time(reps, none, () => get(url('/api/sweeps/bench'))),
          null,
        );
        add(
          'GET trials: every succeeded trial (parallel coordinates)',
          await time(reps, none, () => get(url(parallel))),
          null,
        );
        add('GET trials: a 50-row page', await time(reps, none, () => get(url(listPage))), null);
        add(
          "sweep page's data: its 3 requests together, cold",
          await time(reps, touch, async () => {
            const sizes = await Promise.all([
              get(url('/api/sweeps/bench')),
              get(url(parallel)),
              get(url(listPage)),
            ]);
            return sizes.reduce((a, b) => a + b, 0);
          }),
          300,
        );
        if (existsSync(CHROMIUM))
          rows.push(...(await renderRows(dashboard.url, Math.min(reps, 3), touch, trials)));
        else console.log(`no chromium at ${CHROMIUM}: render not measured`);
      } finally {
        await dashboard.close();
      }
    } finally {
      writer.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

/** The sweep page in chromium, from navigation to every chart drawn (body[data-ready]), cold. */
async function renderRows(
  base: string,
  reps: number,
  touch: () => void,
  trials: number,
): Promise<BenchRow[]> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ ...HEADLESS_CHROMIUM, args: [...HEADLESS_CHROMIUM.args] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(new URL('/sweeps/bench', base).href); // warm the browser's cache of app.js
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) {
      touch();
      const t0 = performance.now();
      await page.goto(new URL('/sweeps/bench', base).href);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
      // ECharts draws on the next frames: wait for two of them.
      await page.evaluate('new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))');
      ms.push(performance.now() - t0);
    }
    return [
      {
        case: 'sweep page in chromium: navigation to drawn, cold',
        trials,
        median_ms: +median(ms).toFixed(1),
        min_ms: +Math.min(...ms).toFixed(1),
        max_ms: +Math.max(...ms).toFixed(1),
        reps,
        kb: null,
        target_ms: 2000,
        ok: median(ms) < 2000,
        load1: +loadavg()[0]!.toFixed(2),
      },
    ];
  } finally {
    await browser.close();
  }
}
