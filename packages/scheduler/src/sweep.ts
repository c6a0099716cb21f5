/**
 * A spec's points in the store: the sweep row (spec text, resolved spec, hash) and its trials,
 * idempotent by trial key (a second run of the same spec inserts nothing). The sweep's current points
 * become exactly this expansion: trials an earlier version of the spec linked and this one no longer
 * has are retired (kept with their results, never claimed, not counted or reported).
 */
import { TRIAL_STATUSES, type TrialStatus } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import { pointName, type GridPoint } from './spec/expand.js';
import type { Spec } from './spec/load.js';

export interface PreparedSweep {
  id: number;
  name: string;
  created: boolean;
  inserted: number;
  existing: number;
  /** Retired memberships of the sweep (points no longer in the spec) by status, after this write. */
  notInSpec: Record<TrialStatus, number>;
}

export function writeSweep(store: ResultsStore, spec: Spec, points: readonly GridPoint[]): PreparedSweep {
  const { id, created } = store.upsertSweep({
    name: spec.parsed.name,
    specText: spec.text,
    specResolved: spec.parsed,
    specHash: spec.hash,
  });
  const { inserted, existing, notInSpec } = store.syncSweepTrials(
    id,
    points.map((p) => ({ key: p.key, config: p.config, dependsOn: p.dependsOn })),
  );
  return { id, name: spec.parsed.name, created, inserted, existing, notInSpec };
}

/**
 * The start-of-run note about points the spec no longer has, e.g.
 * `sweep x: 12 points no longer in the spec (kept, not run; 5 of them succeeded)`; null when none.
 */
export function describeNotInSpec(name: string, notInSpec: Record<TrialStatus, number>): string | null {
  const total = TRIAL_STATUSES.reduce((a, s) => a + notInSpec[s], 0);
  if (total === 0) return null;
  const ok = notInSpec.succeeded;
  return `sweep ${name}: ${total} point${total === 1 ? '' : 's'} no longer in the spec (kept, not run; ${ok} of them succeeded)`;
}

/**
 * The dry-run listing: one line per point (key, the trial's label as the run's logs will show it,
 * then the point as the spec spells it when that says more: another method id, or axes the label
 * does not show, such as lr) and the count by method.
 */
export function describePoints(points: readonly GridPoint[]): string {
  const lines = points.map((p) => {
    const spelled = pointName(p);
    const extra = spelled.split(' ').filter((w) => !` ${p.label} `.includes(` ${w} `));
    const after = p.dependsOn.length ? `  (after ${p.dependsOn.map((d) => d.slice(0, 12)).join(', ')})` : '';
    return `${p.key.slice(0, 12)}  ${p.label}${extra.length ? `  [${spelled}]` : ''}${after}`;
  });
  const byMethod = new Map<string, number>();
  for (const p of points) byMethod.set(p.methodId, (byMethod.get(p.methodId) ?? 0) + 1);
  const summary = [...byMethod].map(([m, n]) => `${n} ${m}`).join(', ');
  return `${lines.join('\n')}\n${points.length} trial${points.length === 1 ? '' : 's'} (${summary})\n`;
}
