/**
 * A spec's points in the store: the sweep row (spec text, resolved spec, hash) and its trials,
 * idempotent by trial key (a second run of the same spec inserts nothing).
 */
import type { ResultsStore } from '@flatrank/store';
import type { GridPoint } from './spec/expand.js';
import type { Spec } from './spec/load.js';

export interface PreparedSweep {
  id: number;
  name: string;
  created: boolean;
  inserted: number;
  existing: number;
}

export function writeSweep(store: ResultsStore, spec: Spec, points: readonly GridPoint[]): PreparedSweep {
  const { id, created } = store.upsertSweep({
    name: spec.parsed.name,
    specText: spec.text,
    specResolved: spec.parsed,
    specHash: spec.hash,
  });
  const { inserted, existing } = store.insertTrials(
    id,
    points.map((p) => ({ key: p.key, config: p.config, dependsOn: p.dependsOn })),
  );
  return { id, name: spec.parsed.name, created, inserted, existing };
}

/** The dry-run listing: one line per point and the count by method. */
export function describePoints(points: readonly GridPoint[]): string {
  const lines = points.map(
    (p) =>
      `${p.key.slice(0, 12)}  ${p.label}${p.dependsOn.length ? `  (after ${p.dependsOn.map((d) => d.slice(0, 12)).join(', ')})` : ''}`,
  );
  const byMethod = new Map<string, number>();
  for (const p of points) byMethod.set(p.methodId, (byMethod.get(p.methodId) ?? 0) + 1);
  const summary = [...byMethod].map(([m, n]) => `${n} ${m}`).join(', ');
  return `${lines.join('\n')}\n${points.length} trial${points.length === 1 ? '' : 's'} (${summary})\n`;
}
