/** The checkpoint an attempt starts from, resolved when the coordinator hands the attempt out. */
import type { TrialConfig } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import { resolveCheckpointName } from './spec/checkpoints.js';

/**
 * The checkpoint a trial starts from (absolute path; null from scratch), or an error text: the
 * final checkpoint artifact of its start trial, or its named checkpoint resolved against
 * `checkpointDir` (checked again here: it may have gone since the spec was loaded).
 */
export function startCheckpoint(
  store: ResultsStore,
  config: TrialConfig,
  checkpointDir: string | null = null,
): { path: string | null; error?: string } {
  if (config.start.kind === 'scratch') return { path: null };
  if (config.start.kind === 'checkpoint') {
    const name = config.start.name;
    if (checkpointDir === null)
      return {
        path: null,
        error: `start checkpoint "${name}" cannot be resolved: this run has no spec directory to look it up in (run the spec file with flatrank run)`,
      };
    const r = resolveCheckpointName(name, checkpointDir);
    return r.ok
      ? { path: r.checkpoint.path }
      : { path: null, error: `start checkpoint: ${r.reason} (looked up in ${checkpointDir})` };
  }
  const key = config.start.trialKey;
  const ckpts = store.artifacts(key).filter((a) => a.kind === 'checkpoint');
  if (ckpts.length === 0)
    return {
      path: null,
      error: `start trial ${key.slice(0, 12)} has no checkpoint artifact (did it succeed and report one?)`,
    };
  return { path: ckpts[ckpts.length - 1]!.path };
}
