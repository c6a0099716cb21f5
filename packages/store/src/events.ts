/**
 * Applying trial events (metrics, environment, layers, artifacts, heartbeats, terminal outcomes)
 * idempotently: what the coordinator writes for every batch its children report.
 */
import {
  METRIC_PHASES,
  ValidationError,
  type LayerRecord,
  type RankAllocationRecord,
  type RunEnvironment,
  type TrialEnvelope,
  type TrialStatus,
  type TrialSummary,
} from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import { finiteOrNull, ratio, type ApplyStats } from './rows.js';

/**
 * Applies trial events in one transaction. Idempotent: metrics are unique by (trial, attempt,
 * seq), layers by (trial, attempt, layer), allocations by (trial, attempt), artifacts by (trial, kind, path), the results row by
 * trial; terminal events only act on a running attempt. Events of any attempt other than the
 * trial's current one (stale or unknown) are ignored.
 */
export function applyEvents(
  ctx: StoreContext,
  envelopes: ReadonlyArray<TrialEnvelope>,
  now: number = Date.now(),
): ApplyStats {
  ctx.assertWritable('applyEvents');
  const stats: ApplyStats = { applied: 0, ignored: 0 };
  if (envelopes.length === 0) return stats;
  const lookup = ctx.stmt('SELECT id, attempts, status FROM trials WHERE key = ?');
  const insMetric = ctx.stmt(
    'INSERT INTO metrics (trial_id, attempt, seq, step, epoch, phase, name, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
  );
  ctx.db
    .transaction(() => {
      const cache = new Map<string, { id: number; attempts: number; status: TrialStatus } | null>();
      for (const env of envelopes) {
        let t = cache.get(env.trialKey);
        if (t === undefined) {
          t =
            (lookup.get(env.trialKey) as { id: number; attempts: number; status: TrialStatus } | undefined) ??
            null;
          cache.set(env.trialKey, t);
        }
        if (t === null || env.attempt !== t.attempts) {
          stats.ignored++;
          continue;
        }
        const ev = env.event;
        let changed = false;
        switch (ev.type) {
          case 'metric': {
            const phase = (METRIC_PHASES as readonly string[]).includes(ev.phase) ? ev.phase : null;
            if (phase === null)
              throw new ValidationError(
                'event.phase',
                `event.phase: unknown value ${JSON.stringify(ev.phase)}; allowed: ${METRIC_PHASES.join(', ')}`,
              );
            changed =
              insMetric.run(
                t.id,
                env.attempt,
                env.seq,
                ev.step,
                ev.epoch,
                phase,
                ev.name,
                finiteOrNull(ev.value),
              ).changes === 1;
            break;
          }
          case 'started':
            changed = writeEnvironment(ctx, t.id, ev.env);
            break;
          case 'layer':
            changed = writeLayer(ctx, t.id, env.attempt, ev.layer);
            break;
          case 'allocation':
            changed = writeAllocation(ctx, t.id, env.attempt, ev.allocation);
            break;
          case 'artifact':
            changed =
              ctx
                .stmt(
                  'INSERT INTO artifacts (trial_id, attempt, kind, path, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
                )
                .run(t.id, env.attempt, ev.kind, ev.path, now).changes === 1;
            break;
          case 'heartbeat':
            if (t.status === 'running')
              changed =
                ctx
                  .stmt(
                    "UPDATE trials SET heartbeat_at = ?, last_step = ?, last_epoch = ? WHERE id = ? AND status = 'running'",
                  )
                  .run(now, ev.step, ev.epoch, t.id).changes === 1;
            break;
          case 'finished':
            if (t.status === 'running') {
              writeResult(ctx, t.id, env.attempt, ev.summary, now);
              ctx
                .stmt(
                  "UPDATE trials SET status = 'succeeded', finished_at = ?, lease_expires_at = NULL, error = NULL, error_code = NULL, last_step = ?, last_epoch = ? WHERE id = ?",
                )
                .run(now, ev.summary.steps, ev.summary.epochs, t.id);
              t.status = 'succeeded';
              changed = true;
            }
            break;
          case 'failed':
            if (t.status === 'running') {
              ctx
                .stmt(
                  "UPDATE trials SET status = 'failed', finished_at = ?, lease_expires_at = NULL, error = ?, error_code = ?, retryable = ? WHERE id = ?",
                )
                .run(now, ev.error.message, ev.error.code, ev.retryable ? 1 : 0, t.id);
              t.status = 'failed';
              changed = true;
            }
            break;
          case 'diverged':
            if (t.status === 'running') {
              ctx
                .stmt(
                  "UPDATE trials SET status = 'diverged', finished_at = ?, lease_expires_at = NULL, error = ?, error_code = 'DIVERGED', retryable = 0, last_step = ? WHERE id = ?",
                )
                .run(now, ev.reason, ev.step, t.id);
              t.status = 'diverged';
              changed = true;
            }
            break;
          default: {
            const unknown: never = ev;
            throw new ValidationError(
              'event.type',
              `event.type: unknown event ${JSON.stringify((unknown as { type?: unknown }).type)}`,
            );
          }
        }
        if (changed) stats.applied++;
        else stats.ignored++;
      }
    })
    .immediate();
  return stats;
}

function writeEnvironment(ctx: StoreContext, trialId: number, env: RunEnvironment): boolean {
  return (
    ctx
      .stmt(
        `UPDATE trials SET git_commit = @gitCommit, git_dirty = @gitDirty, package_versions = @packageVersions, node_version = @nodeVersion,
         backend = @backend, backend_version = @backendVersion, device_name = @device, host = @host,
         cuda_visible_devices = @cudaVisibleDevices, pid = @pid
       WHERE id = @id AND (git_commit, git_dirty, package_versions, node_version, backend, backend_version, device_name, host, cuda_visible_devices, pid)
         IS NOT (@gitCommit, @gitDirty, @packageVersions, @nodeVersion, @backend, @backendVersion, @device, @host, @cudaVisibleDevices, @pid)`,
      )
      .run({
        id: trialId,
        gitCommit: env.gitCommit ?? null,
        gitDirty: env.gitDirty === null || env.gitDirty === undefined ? null : env.gitDirty ? 1 : 0,
        packageVersions: JSON.stringify(env.packageVersions ?? {}),
        nodeVersion: env.nodeVersion,
        backend: env.backend,
        backendVersion: env.backendVersion,
        device: env.device,
        host: env.host,
        cudaVisibleDevices: env.cudaVisibleDevices ?? null,
        pid: env.pid ?? null,
      }).changes === 1
  );
}

function writeLayer(ctx: StoreContext, trialId: number, attempt: number, l: LayerRecord): boolean {
  // A layer reported again by the same attempt replaces the earlier record (latest wins).
  return (
    ctx
      .stmt(
        `INSERT INTO layers (trial_id, attempt, name, decomposition, scheme, ranks, raw_ranks, tile, kernel_shape,
         params_before, params_after, macs_before, macs_after, relative_error, lowering_order, iterations, converged,
         cp_init, cp_seed, cp_fit, first_distortion_error, final_distortion_error)
       VALUES (@trialId, @attempt, @name, @decomposition, @scheme, @ranks, @rawRanks, @tile, @kernelShape,
         @paramsBefore, @paramsAfter, @macsBefore, @macsAfter, @relativeError, @order, @iterations, @converged,
         @cpInit, @cpSeed, @cpFit, @firstDistortionError, @finalDistortionError)
       ON CONFLICT(trial_id, attempt, name) DO UPDATE SET decomposition = excluded.decomposition, scheme = excluded.scheme,
         ranks = excluded.ranks, raw_ranks = excluded.raw_ranks, tile = excluded.tile, kernel_shape = excluded.kernel_shape,
         params_before = excluded.params_before, params_after = excluded.params_after, macs_before = excluded.macs_before,
         macs_after = excluded.macs_after, relative_error = excluded.relative_error, lowering_order = excluded.lowering_order,
         iterations = excluded.iterations, converged = excluded.converged, cp_init = excluded.cp_init,
         cp_seed = excluded.cp_seed, cp_fit = excluded.cp_fit, first_distortion_error = excluded.first_distortion_error,
         final_distortion_error = excluded.final_distortion_error
       WHERE (layers.ranks, layers.params_after, layers.relative_error, layers.first_distortion_error)
         IS NOT (excluded.ranks, excluded.params_after, excluded.relative_error, excluded.first_distortion_error)`,
      )
      .run({
        trialId,
        attempt,
        name: l.name,
        decomposition: l.decomposition,
        scheme: l.scheme ?? null,
        ranks: JSON.stringify(l.ranks),
        rawRanks: l.rawRanks ? JSON.stringify(l.rawRanks) : null,
        tile: l.tile ? JSON.stringify(l.tile) : null,
        kernelShape: JSON.stringify(l.kernelShape ?? []),
        paramsBefore: l.paramsBefore,
        paramsAfter: l.paramsAfter,
        macsBefore: l.macsBefore,
        macsAfter: l.macsAfter,
        relativeError: finiteOrNull(l.relativeError),
        order: l.order ?? null,
        iterations: l.iterations ?? null,
        converged: l.converged === undefined || l.converged === null ? null : l.converged ? 1 : 0,
        cpInit: l.cp?.init ?? null,
        cpSeed: l.cp?.seed ?? null,
        cpFit: finiteOrNull(l.cp?.fit ?? null),
        firstDistortionError: finiteOrNull(l.firstDistortionError ?? null),
        finalDistortionError: finiteOrNull(l.finalDistortionError ?? null),
      }).changes === 1
  );
}

/** Refuses an allocation record the readers could not use, naming the field. */
function checkAllocation(a: RankAllocationRecord): void {
  const bad = (field: string, what: string): never => {
    throw new ValidationError(`event.allocation.${field}`, `event.allocation.${field}: ${what}`);
  };
  if (typeof a?.policy !== 'string' || a.policy === '') bad('policy', 'must be a non-empty string');
  if (a.budget !== null && a.budget !== undefined) {
    if (typeof a.budget !== 'object') bad('budget', 'must be {kind, ratio} or null');
    if (a.budget.kind !== 'params' && a.budget.kind !== 'macs')
      bad('budget.kind', `unknown value ${JSON.stringify(a.budget.kind)}; allowed: params, macs`);
    if (!(Number.isFinite(a.budget.ratio) && a.budget.ratio > 0))
      bad('budget.ratio', `must be a finite number > 0, got ${JSON.stringify(a.budget.ratio)}`);
  }
  for (const k of ['params', 'macs'] as const)
    if (typeof a.achieved?.[k] !== 'number')
      bad(`achieved.${k}`, `must be a number, got ${JSON.stringify(a.achieved?.[k])}`);
  if (!Array.isArray(a.layers)) bad('layers', 'must be an array of {name, ranks}');
  a.layers.forEach((l, i) => {
    if (typeof l?.name !== 'string' || l.name === '') bad(`layers[${i}].name`, 'must be a non-empty string');
    if (!Array.isArray(l.ranks) || !l.ranks.every((r) => Number.isInteger(r) && r >= 0))
      bad(`layers[${i}].ranks`, `must be an array of integers >= 0, got ${JSON.stringify(l.ranks)}`);
  });
}

function writeAllocation(
  ctx: StoreContext,
  trialId: number,
  attempt: number,
  a: RankAllocationRecord,
): boolean {
  checkAllocation(a);
  // Canonical key order, so that the same record reported twice is recognised as unchanged.
  const record = JSON.stringify({
    policy: a.policy,
    budget:
      a.budget === null || a.budget === undefined ? null : { kind: a.budget.kind, ratio: a.budget.ratio },
    achieved: { params: finiteOrNull(a.achieved.params), macs: finiteOrNull(a.achieved.macs) },
    layers: a.layers,
    measured: a.measured ?? null,
  });
  // Reported again by the same attempt: the later record replaces the earlier one (latest wins).
  return (
    ctx
      .stmt(
        `INSERT INTO allocations (trial_id, attempt, policy, budget_kind, budget_ratio, achieved_params_ratio,
         achieved_macs_ratio, record)
       VALUES (@trialId, @attempt, @policy, @budgetKind, @budgetRatio, @params, @macs, @record)
       ON CONFLICT(trial_id, attempt) DO UPDATE SET policy = excluded.policy, budget_kind = excluded.budget_kind,
         budget_ratio = excluded.budget_ratio, achieved_params_ratio = excluded.achieved_params_ratio,
         achieved_macs_ratio = excluded.achieved_macs_ratio, record = excluded.record
       WHERE allocations.record IS NOT excluded.record`,
      )
      .run({
        trialId,
        attempt,
        policy: a.policy,
        budgetKind: a.budget?.kind ?? null,
        budgetRatio: a.budget?.ratio ?? null,
        params: finiteOrNull(a.achieved.params),
        macs: finiteOrNull(a.achieved.macs),
        record,
      }).changes === 1
  );
}

function writeResult(
  ctx: StoreContext,
  trialId: number,
  attempt: number,
  s: TrialSummary,
  now: number,
): void {
  ctx
    .stmt(
      `INSERT INTO results (trial_id, attempt, accuracy_original, accuracy_after_decomposition, accuracy_final, params_before, params_after,
       macs_before, macs_after, params_ratio, macs_ratio, latency_before_ms, latency_after_ms, latency_batch, wall_seconds, steps, epochs, created_at)
     VALUES (@trialId, @attempt, @accuracyOriginal, @accuracyAfterDecomposition, @accuracyFinal, @paramsBefore, @paramsAfter,
       @macsBefore, @macsAfter, @paramsRatio, @macsRatio, @latencyBeforeMs, @latencyAfterMs, @latencyBatch, @wallSeconds, @steps, @epochs, @now)
     ON CONFLICT(trial_id) DO NOTHING`,
    )
    .run({
      trialId,
      attempt,
      accuracyOriginal: finiteOrNull(s.accuracyOriginal),
      accuracyAfterDecomposition: finiteOrNull(s.accuracyAfterDecomposition),
      accuracyFinal: finiteOrNull(s.accuracyFinal),
      paramsBefore: s.paramsBefore,
      paramsAfter: s.paramsAfter,
      macsBefore: s.macsBefore,
      macsAfter: s.macsAfter,
      paramsRatio: ratio(s.paramsBefore, s.paramsAfter),
      macsRatio: ratio(s.macsBefore, s.macsAfter),
      latencyBeforeMs: finiteOrNull(s.latencyBeforeMs),
      latencyAfterMs: finiteOrNull(s.latencyAfterMs),
      latencyBatch: s.latencyBatch ?? null,
      wallSeconds: s.wallSeconds,
      steps: s.steps,
      epochs: s.epochs,
      now,
    });
}
