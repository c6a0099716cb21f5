/**
 * `flatrank show <trial> [--db F] [--format text|json]`: one trial (full key or unique prefix):
 * status, config, environment, result, per-layer table, the rank allocation (when the trial
 * recorded one), metric history (one row per step, one column per phase/metric) and artifacts. Reads the database read-only.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { formatTable, type FormatRow } from '@flatrank/report';
import {
  ResultsStore,
  resolveDbPath,
  trialDetail,
  type TrialAllocation,
  type TrialDetail,
} from '@flatrank/store';

function iso(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}

/** Metric history as one row per (attempt, step, epoch) and one column per phase/name. */
export function metricHistory(metrics: TrialDetail['metrics']): { columns: string[]; rows: FormatRow[] } {
  const series: string[] = [];
  const rows = new Map<string, FormatRow>();
  for (const m of metrics) {
    const col = `${m.phase}/${m.name}`;
    if (!series.includes(col)) series.push(col);
    const k = `${m.step}:${m.epoch}`;
    let row = rows.get(k);
    if (!row) rows.set(k, (row = { step: m.step, epoch: m.epoch }));
    row[col] = m.value;
  }
  return { columns: ['step', 'epoch', ...series], rows: [...rows.values()] };
}

/** How the trial chose its ranks: policy, budget, the ratios reached, each layer's ranks, what it measured. */
export function allocationLines(a: TrialAllocation): string[] {
  const ratio = (v: number | null) => (v === null ? '-' : `${Number(v.toFixed(4))}x`);
  const out = [
    `allocation (attempt ${a.attempt}):`,
    `  ${'policy'.padEnd(14)} ${a.policy}`,
    `  ${'budget'.padEnd(14)} ${a.budget ? `${a.budget.kind} ${ratio(a.budget.ratio)}` : '-'}`,
    `  ${'reached'.padEnd(14)} params ${ratio(a.achieved.params)}, MACs ${ratio(a.achieved.macs)}`,
  ];
  if (a.measured !== null && a.measured !== undefined)
    out.push(`  ${'measured'.padEnd(14)} ${JSON.stringify(a.measured)}`);
  const rows: FormatRow[] = a.layers.map((l, index) => ({
    index,
    layer: l.name,
    ranks: l.ranks.join('x'),
    error: l.error ?? null,
    measured: l.measured === undefined || l.measured === null ? null : JSON.stringify(l.measured),
  }));
  if (rows.length) out.push(formatTable(rows, ['index', 'layer', 'ranks', 'error', 'measured']).trimEnd());
  return out;
}

export function formatTrialDetail(d: TrialDetail): string {
  const t = d.trial;
  const out: string[] = [];
  const kv = (k: string, v: unknown) =>
    out.push(`  ${k.padEnd(14)} ${v === null || v === undefined || v === '' ? '-' : String(v)}`);
  out.push(`trial ${t.key}`);
  kv('sweeps', d.sweeps.join(', '));
  kv('status', t.status + (t.errorCode ? ` (${t.errorCode})` : ''));
  kv('attempts', t.attempts);
  kv('worker', t.worker);
  kv('device', t.device);
  kv('started', iso(t.startedAt));
  kv('finished', iso(t.finishedAt));
  if (t.status === 'running')
    kv(
      'progress',
      `step ${t.lastStep ?? '-'}, epoch ${t.lastEpoch ?? '-'}, lease until ${iso(t.leaseExpiresAt)}`,
    );
  if (t.error) kv('error', t.error);
  if (d.dependsOn.length)
    kv('depends on', d.dependsOn.map((x) => `${x.key.slice(0, 12)} (${x.status ?? 'missing'})`).join(', '));
  out.push(
    '',
    'config:',
    ...JSON.stringify(t.config, null, 2)
      .split('\n')
      .map((l) => `  ${l}`),
  );
  out.push('', 'environment:');
  const e = t.environment;
  if (!e) out.push('  (not reported yet)');
  else {
    kv('git', `${e.gitCommit ?? 'unknown'}${e.gitDirty ? ' (dirty)' : ''}`);
    kv('node', e.nodeVersion);
    kv('backend', `${e.backend} ${e.backendVersion}`);
    kv('device', e.device + (e.cudaVisibleDevices ? ` (CUDA_VISIBLE_DEVICES=${e.cudaVisibleDevices})` : ''));
    kv('host', `${e.host} (pid ${e.pid})`);
    kv(
      'packages',
      Object.entries(e.packageVersions)
        .map(([k, v]) => `${k}@${v}`)
        .join(', '),
    );
  }
  out.push('', 'result:');
  if (!d.result) out.push('  (none yet)');
  else {
    const r = d.result;
    for (const k of [
      'accuracy_original',
      'accuracy_after_decomposition',
      'accuracy_final',
      'params_before',
      'params_after',
      'params_ratio',
      'macs_before',
      'macs_after',
      'macs_ratio',
      'latency_before_ms',
      'latency_after_ms',
      'latency_batch',
      'wall_seconds',
      'steps',
      'epochs',
    ])
      kv(k.replace(/_/g, ' '), r[k]);
  }
  out.push('', `layers (${d.layers.length}):`);
  if (d.layers.length) out.push(formatTable(d.layers).trimEnd());
  if (d.allocation) out.push('', ...allocationLines(d.allocation));
  const h = metricHistory(d.metrics);
  out.push('', `metrics (attempt ${t.attempts}, ${d.metrics.length} values):`);
  if (h.rows.length) out.push(formatTable(h.rows, h.columns).trimEnd());
  if (d.artifacts.length)
    out.push('', 'artifacts:', ...d.artifacts.map((a) => `  ${a.kind.padEnd(14)} ${a.path}`));
  return `${out.join('\n')}\n`;
}

export function registerShow(program: Command): void {
  program
    .command('show')
    .description(
      'show one trial: config, environment, result, per-layer table, rank allocation, metric history',
    )
    .argument('<trial>', 'trial key or a unique prefix of it (at least 4 hex characters)')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--format <format>', 'text or json', 'text')
    .action((trial: string, flags: { db?: string; format: string }) => {
      if (flags.format !== 'text' && flags.format !== 'json')
        throw new ValidationError(
          '--format',
          `--format: unknown value ${JSON.stringify(flags.format)}; allowed: text, json`,
        );
      const store = ResultsStore.open(resolveDbPath(flags.db), { readonly: true });
      try {
        const d = trialDetail(store, trial);
        process.stdout.write(
          flags.format === 'json' ? `${JSON.stringify(d, null, 2)}\n` : formatTrialDetail(d),
        );
      } finally {
        store.close();
      }
    });
}
