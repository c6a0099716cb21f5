/**
 * Sweep and trial-grid writes (the coordinator's): sweeps, idempotent trial inserts, a sweep's
 * membership synced to its latest spec. Each is one short BEGIN IMMEDIATE transaction.
 */
import { ValidationError, checkTrialConfigRules, trialKey as computeTrialKey } from '@flatrank/protocol';
import type { StoreContext } from './context.js';
import { membershipCounts } from './reads.js';
import { KEY_RE, configAxes, type SyncResult, type TrialAxes, type TrialInsert } from './rows.js';

export function upsertSweep(
  ctx: StoreContext,
  s: { name: string; specText: string; specResolved: unknown; specHash: string },
  now: number = Date.now(),
): { id: number; created: boolean } {
  ctx.assertWritable('upsertSweep');
  if (typeof s.name !== 'string' || s.name.trim() === '')
    throw new ValidationError('sweep.name', 'sweep.name: must be a non-empty string');
  return ctx.db
    .transaction(() => {
      const existing = ctx.stmt('SELECT id FROM sweeps WHERE name = ?').get(s.name) as
        { id: number } | undefined;
      const resolved = JSON.stringify(s.specResolved ?? null);
      if (existing) {
        ctx
          .stmt(
            'UPDATE sweeps SET spec_text = ?, spec_resolved = ?, spec_hash = ?, updated_at = ?, finished_at = NULL WHERE id = ?',
          )
          .run(s.specText, resolved, s.specHash, now, existing.id);
        return { id: existing.id, created: false };
      }
      const info = ctx
        .stmt(
          'INSERT INTO sweeps (name, spec_text, spec_resolved, spec_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(s.name, s.specText, resolved, s.specHash, now, now);
      return { id: Number(info.lastInsertRowid), created: true };
    })
    .immediate();
}

export function finishSweep(ctx: StoreContext, sweepId: number, now: number = Date.now()): void {
  ctx.assertWritable('finishSweep');
  ctx.stmt('UPDATE sweeps SET finished_at = ? WHERE id = ?').run(now, sweepId);
}

/**
 * Idempotent by trial key: a key already present (in any sweep) is counted as existing and only
 * linked to this sweep. dependsOn = keys that must have succeeded before this trial is claimable.
 */
export function insertTrials(
  ctx: StoreContext,
  sweepId: number,
  trials: ReadonlyArray<TrialInsert>,
  now: number = Date.now(),
): { inserted: number; existing: number } {
  ctx.assertWritable('insertTrials');
  const rows = validateInserts(trials);
  return ctx.db
    .transaction(() => {
      const r = writeInserts(ctx, sweepId, rows, now);
      return { inserted: r.inserted, existing: r.existing };
    })
    .immediate();
}

/**
 * Makes the sweep's current points exactly `trials` (the latest expansion of its spec), in one
 * transaction: inserts / links them like insertTrials (a retired membership comes back), and
 * retires every other membership of the sweep (`sweep_trials.active = 0`). Retired trials keep
 * their rows and results; claims, counts, progress and reports of the sweep skip them.
 */
export function syncSweepTrials(
  ctx: StoreContext,
  sweepId: number,
  trials: ReadonlyArray<TrialInsert>,
  now: number = Date.now(),
): SyncResult {
  ctx.assertWritable('syncSweepTrials');
  const rows = validateInserts(trials);
  return ctx.db
    .transaction((): SyncResult => {
      const r = writeInserts(ctx, sweepId, rows, now);
      const keep = new Set(r.ids);
      const active = ctx
        .stmt('SELECT trial_id FROM sweep_trials WHERE sweep_id = ? AND active = 1')
        .pluck()
        .all(sweepId) as number[];
      const retire = ctx.stmt('UPDATE sweep_trials SET active = 0 WHERE sweep_id = ? AND trial_id = ?');
      let retired = 0;
      for (const id of active) if (!keep.has(id)) retired += retire.run(sweepId, id).changes;
      return {
        inserted: r.inserted,
        existing: r.existing,
        retired,
        restored: r.restored,
        notInSpec: membershipCounts(ctx, sweepId, 'retired'),
      };
    })
    .immediate();
}

function validateInserts(
  trials: ReadonlyArray<TrialInsert>,
): Array<{ t: TrialInsert; axes: TrialAxes; json: string }> {
  // Validate everything before writing anything.
  return trials.map((t, i) => {
    if (typeof t.key !== 'string' || !KEY_RE.test(t.key))
      throw new ValidationError(
        `trials[${i}].key`,
        `trials[${i}].key: must be 64 lowercase hex characters (sha256), got ${JSON.stringify(t.key)}`,
      );
    const expected = computeTrialKey(t.config);
    if (expected !== t.key) {
      throw new ValidationError(
        `trials[${i}].key`,
        `trials[${i}].key: ${t.key} is not trialKey(config) (${expected}); pass the key of the resolved config`,
      );
    }
    // The same rules between fields as flatrank train and the spec expansion.
    checkTrialConfigRules(t.config, `trials[${i}].config`);
    for (const [j, d] of (t.dependsOn ?? []).entries()) {
      if (typeof d !== 'string' || !KEY_RE.test(d))
        throw new ValidationError(
          `trials[${i}].dependsOn[${j}]`,
          `trials[${i}].dependsOn[${j}]: must be a trial key (64 hex characters)`,
        );
    }
    return { t, axes: configAxes(t.config), json: JSON.stringify(t.config) };
  });
}

/** insertTrials' writes, inside the caller's transaction; also the trial ids, in input order. */
function writeInserts(
  ctx: StoreContext,
  sweepId: number,
  rows: ReadonlyArray<{ t: TrialInsert; axes: TrialAxes; json: string }>,
  now: number,
): { inserted: number; existing: number; restored: number; ids: number[] } {
  if (!ctx.stmt('SELECT 1 FROM sweeps WHERE id = ?').get(sweepId))
    throw new ValidationError('sweepId', `sweepId: no sweep with id ${sweepId}`);
  // What a report groups the trial by (migration 9), computed once here by the same expressions as
  // the migration and the readers of older databases, so every path gives the same text: its
  // shape's group (created by the first trial of that shape) and its start trial key.
  const shape = `json_remove(@config, '$.seed', '$.start.trialKey')`;
  const group = ctx.stmt(`INSERT INTO trial_groups (shape) VALUES (${shape}) ON CONFLICT (shape) DO NOTHING`);
  const ins =
    ctx.stmt(`INSERT INTO trials (sweep_id, key, config, model, dataset, method, decomposition, scheme, rank_policy, target_ratio,
          distortion_interval, seed, lr, epochs, batch_size, created_at, group_id, start_trial_key)
        VALUES (@sweepId, @key, @config, @model, @dataset, @method, @decomposition, @scheme, @rankPolicy, @targetRatio,
          @distortionInterval, @seed, @lr, @epochs, @batchSize, @now,
          (SELECT g.id FROM trial_groups g WHERE g.shape = ${shape}), json_extract(@config, '$.start.trialKey'))
        ON CONFLICT(key) DO NOTHING`);
  const idOf = ctx.stmt('SELECT id FROM trials WHERE key = ?').pluck();
  // A point in the spec again after an edit: its retired membership becomes current again.
  const link = ctx.stmt(
    'INSERT INTO sweep_trials (sweep_id, trial_id) VALUES (?, ?) ON CONFLICT DO UPDATE SET active = 1 WHERE active = 0',
  );
  const wasRetired = ctx.stmt(
    'SELECT 1 FROM sweep_trials WHERE sweep_id = ? AND trial_id = ? AND active = 0',
  );
  const dep = ctx.stmt('INSERT OR IGNORE INTO trial_dependencies (trial_id, depends_on_key) VALUES (?, ?)');
  let inserted = 0;
  let existing = 0;
  let restored = 0;
  const ids: number[] = [];
  for (const { t, axes, json } of rows) {
    group.run({ config: json });
    const info = ins.run({ sweepId, key: t.key, config: json, now, ...axes });
    let id: number;
    if (info.changes === 1) {
      inserted++;
      id = Number(info.lastInsertRowid);
    } else {
      existing++;
      id = idOf.get(t.key) as number;
      if (wasRetired.get(sweepId, id)) restored++;
    }
    link.run(sweepId, id);
    ids.push(id);
    for (const d of t.dependsOn ?? []) dep.run(id, d);
  }
  return { inserted, existing, restored, ids };
}
