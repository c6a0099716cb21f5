/**
 * `npm run bench -- report [--trials=N] [--keep=DIR]`: report generation over a large sweep, the
 * per-trial path (loadSweepTrials: listTrials + every config parsed, then grouped in JavaScript)
 * and the streamed path (loadSweep: iterateReportTrials folded into groups as rows arrive) side by
 * side on the same database in the same run, with the report each produced compared byte for byte.
 *
 * The sweep: every model x lr x (baseline | finetune, distort, posttrain x svd, tucker2, cp x 5
 * ratios) configuration, then more seeds up to N trials; fine-tune and post-train trials start from
 * the baseline of their model, lr and seed (trial starts, as real sweeps do). 90% succeed with a
 * results row and 3 per-layer records, 5% fail, 5% stay pending; all written as the coordinator
 * writes them (claims, then trial events), which is setup, not what is measured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  MODELS,
  resolveTrialConfig,
  trialKey,
  type TrialConfig,
  type TrialEnvelope,
} from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { REPORT_FORMATS, buildReport, formatReport, loadSweep, loadSweepTrials } from '@flatrank/report';

type BenchRow = Record<string, string | number | boolean | null>;

function optionText(args: string[], name: string): string | undefined {
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

const METHODS = ['finetune', 'distort', 'posttrain'] as const;
const DECOMPS = ['svd', 'tucker2', 'cp'] as const;
const RATIOS = [2, 3, 4, 6, 8] as const;
const LRS = [0.1, 0.05, 0.02, 0.01] as const;

function sweepConfigs(n: number): TrialConfig[] {
  const base = (model: (typeof MODELS)[number], lr: number, seed: number) =>
    resolveTrialConfig({
      model,
      dataset: { name: 'cifar10' },
      training: { epochs: 2, lr },
      method: 'baseline',
      seed,
    });
  const perSeed: Array<(seed: number) => TrialConfig> = [];
  for (const model of MODELS)
    for (const lr of LRS) {
      perSeed.push((seed) => base(model, lr, seed));
      for (const method of METHODS)
        for (const decomposition of DECOMPS)
          for (const ratio of RATIOS)
            perSeed.push((seed) =>
              resolveTrialConfig({
                model,
                dataset: { name: 'cifar10' },
                training: { epochs: method === 'posttrain' ? 0 : 2, lr },
                method,
                start:
                  method === 'distort'
                    ? { kind: 'scratch' }
                    : { kind: 'trial', trialKey: trialKey(base(model, lr, seed)) },
                compression: { decomposition, rank: { kind: 'ratio', ratio } },
                distortion: method === 'distort' ? { interval: 200 } : null,
                seed,
              }),
            );
    }
  const out: TrialConfig[] = [];
  for (let seed = 0; out.length < n; seed++)
    for (const make of perSeed) {
      if (out.length >= n) break;
      out.push(make(seed));
    }
  return out;
}

/**
 * Every trial claimed in id order (trial i has id i + 1 in a fresh database), then: id % 20 = 0 back
 * to pending, id % 20 = 1 failed, the rest succeeded with a results row and, when compressed,
 * three per-layer records (ratios near the target ratio).
 */
function writeOutcomes(store: ResultsStore, sweepId: number, n: number): void {
  let batch: TrialEnvelope[] = [];
  const flush = () => {
    store.applyEvents(batch);
    batch = [];
  };
  const pending: Array<{ key: string; attempt: number }> = [];
  for (let i = 0; i < n; i++) {
    const claim = store.claimTrial({ sweepId, worker: 'bench', leaseMs: 3_600_000, maxAttempts: 1 });
    if (!claim) throw new Error(`bench setup: only ${i} of ${n} trials were claimable`);
    const id = claim.id;
    const send = (seq: number, event: TrialEnvelope['event']) =>
      batch.push({ trialKey: claim.key, attempt: claim.attempt, seq, event });
    if (id % 20 === 0) pending.push({ key: claim.key, attempt: claim.attempt });
    else if (id % 20 === 1)
      send(0, {
        type: 'failed',
        error: { name: 'Error', code: 'BENCH', message: 'failed on purpose' },
        retryable: false,
      });
    else {
      const target =
        claim.config.compression?.rank.kind === 'ratio' ? claim.config.compression.rank.ratio : 1;
      if (claim.config.method !== 'baseline')
        for (let k = 1; k <= 3; k++)
          send(k, {
            type: 'layer',
            layer: {
              name: `conv${k}`,
              decomposition: claim.config.compression!.decomposition,
              scheme: claim.config.compression!.scheme ?? null,
              ranks: [8],
              rawRanks: null,
              tile: null,
              kernelShape: [3, 3, 16, 16],
              paramsBefore: 2304,
              paramsAfter: Math.floor(2304 / target) + k,
              macsBefore: 100_000,
              macsAfter: Math.floor(100_000 / target),
              relativeError: 0.1,
            },
          });
      send(4, {
        type: 'finished',
        summary: {
          accuracyOriginal: 0.92,
          accuracyAfterDecomposition: claim.config.method === 'baseline' ? null : 0.3 + (id % 50) / 100,
          accuracyFinal: 0.8 + (id % 17) / 100 + (id % 7) / 1000,
          paramsBefore: 270_000,
          paramsAfter: Math.floor(270_000 / target),
          macsBefore: 40_000_000,
          macsAfter: Math.floor(40_000_000 / target),
          latencyBeforeMs: 2 + (id % 13) / 10,
          latencyAfterMs: 2 / target,
          latencyBatch: 128,
          wallSeconds: 60 + (id % 100) / 10,
          steps: 1000,
          epochs: 2,
        },
      });
    }
    if (batch.length >= 5000) flush();
  }
  flush();
  for (const p of pending) store.endAttempt(p.key, p.attempt, { status: 'pending' });
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** Median of `reps` runs of fn, plus the heap fn's result keeps alive (MB, after a full gc). */
function measure(reps: number, fn: () => unknown): { medianMs: number; retainedMb: number } {
  const times: number[] = [];
  let retainedMb = 0;
  for (let r = 0; r < reps; r++) {
    gc();
    const h0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    let kept: unknown = fn();
    times.push(performance.now() - t0);
    gc();
    retainedMb = (process.memoryUsage().heapUsed - h0) / 2 ** 20;
    kept = null;
    void kept;
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, retainedMb };
}

export default {
  name: 'report',
  description: 'flatrank report over a large sweep: per-trial loading vs streamed groups, same run',
  async run(args: string[]): Promise<BenchRow[]> {
    const n = Math.max(1000, Math.floor(Number(optionText(args, 'trials') ?? 100_000)) || 100_000);
    const keep = optionText(args, 'keep');
    const dir = keep ?? mkdtempSync(join(tmpdir(), 'flatrank-bench-report-'));
    const file = join(dir, 'report.sqlite');
    const rows: BenchRow[] = [];
    try {
      let t0 = performance.now();
      const store = ResultsStore.open(file, { create: true });
      const { id: sweepId } = store.upsertSweep({
        name: 'bench',
        specText: '',
        specResolved: { name: 'bench' },
        specHash: '',
      });
      const inserts = sweepConfigs(n).map((config) => ({ key: trialKey(config), config }));
      for (let i = 0; i < inserts.length; i += 10_000)
        store.insertTrials(sweepId, inserts.slice(i, i + 10_000));
      writeOutcomes(store, sweepId, inserts.length);
      store.close();
      const setupS = (performance.now() - t0) / 1000;

      const opts = { sweep: 'bench', reproduces: null };
      const perTrial = () => buildReport(loadSweepTrials(file, 'bench').trials, opts);
      const streamed = () => buildReport(loadSweep(file, 'bench').trials, opts);
      // Identical output first (and a warm page cache for both).
      const a = perTrial();
      const b = streamed();
      const same = REPORT_FORMATS.every((f) => formatReport(a, f) === formatReport(b, f));
      const groups = b.rows.length;

      const reps = 3;
      const loadOld = measure(reps, () => loadSweepTrials(file, 'bench'));
      const loadNew = measure(reps, () => loadSweep(file, 'bench'));
      const allOld = measure(reps, () => formatReport(perTrial(), 'json'));
      const allNew = measure(reps, () => formatReport(streamed(), 'json'));
      const row = (
        c: string,
        m: { medianMs: number; retainedMb: number },
        note: string | null,
      ): BenchRow => ({
        case: c,
        trials: n,
        groups,
        medianMs: +m.medianMs.toFixed(1),
        retainedMb: +m.retainedMb.toFixed(1),
        note,
      });
      t0 = performance.now();
      rows.push(
        row('load, OLD per-trial (listTrials + views, every config parsed)', loadOld, null),
        row(
          'load, NEW streamed groups (iterateReportTrials)',
          loadNew,
          `${(loadOld.medianMs / loadNew.medianMs).toFixed(1)}x faster`,
        ),
        row('load + buildReport + json, OLD', allOld, null),
        row(
          'load + buildReport + json, NEW',
          allNew,
          `${(allOld.medianMs / allNew.medianMs).toFixed(1)}x faster; md/csv/json identical to OLD: ${same}`,
        ),
      );
      rows.push({ case: `setup (${n} trials, results, layers)`, seconds: +setupS.toFixed(1) });
    } finally {
      if (keep === undefined) rmSync(dir, { recursive: true, force: true });
    }
    const load = +loadavg()[0]!.toFixed(1);
    return rows.map((r) => ({ ...r, load1: load }));
  },
};
