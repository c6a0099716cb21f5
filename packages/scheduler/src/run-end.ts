/**
 * The message of a run that did not end well: per trial that failed, was cancelled or is still
 * pending, the real reason (its own error; the start trial that failed; the trial outside the sweep
 * it waits for), so that nobody is told a dependency failed when none did.
 */
import type { TrialStatus } from '@flatrank/protocol';
import type { ResultsStore, TrialRow } from '@flatrank/store';
import type { RunResult } from './attempt.js';
import { trialLabel } from './label.js';

/** Trials listed by name in the message; the rest are counted. */
const LISTED = 10;

export function describeEnd(
  store: ResultsStore,
  sweepId: number,
  sweep: string,
  run: RunResult,
  logs: string,
): string {
  const c = run.counts;
  const lines: string[] = [];
  let more = 0;
  for (const status of [
    'failed',
    'cancelled',
    'pending',
    'running',
  ] as const satisfies readonly TrialStatus[]) {
    if (!c[status]) continue;
    for (const t of store.listTrials({ sweepId, status })) {
      if (lines.length < LISTED)
        lines.push(`  ${t.key.slice(0, 10)} ${trialLabel(t.config)}: ${trialReason(store, t)}`);
      else more++;
    }
  }
  if (more) lines.push(`  ... and ${more} more (flatrank status ${sweep})`);
  const parts = (['failed', 'cancelled', 'pending', 'running'] as const)
    .filter((s) => c[s])
    .map((s) => `${c[s]} ${s}`)
    .join(', ');
  const retry =
    c['failed'] || c['cancelled'] ? `; flatrank run <spec> --retry-failed runs the failed points again` : '';
  return `sweep ${sweep}: ${parts}:\n${lines.join('\n')}\nsee flatrank status ${sweep} and the logs in ${logs}${retry}`;
}

/** " (2 counted, 3 interrupted)" when attempt numbers and the budget differ. */
function countNote(t: TrialRow): string {
  if (t.countedAttempts === t.attempts) return '';
  const parts = [`${t.countedAttempts} counted`];
  if (t.interruptedAttempts) parts.push(`${t.interruptedAttempts} interrupted`);
  return ` (${parts.join(', ')})`;
}

function trialReason(store: ResultsStore, t: TrialRow): string {
  const start = t.config.start.kind === 'trial' ? t.config.start.trialKey : null;
  const dep = start ? store.getTrial(start) : undefined;
  const depName = start ? `its start trial ${start.slice(0, 10)}` : '';
  switch (t.status) {
    case 'failed':
      return `failed at attempt ${t.attempts}${countNote(t)}: ${t.errorCode && t.errorCode !== 'ATTEMPT_FAILED' ? `${t.errorCode}: ` : ''}${t.error ?? 'no error recorded'}`;
    case 'cancelled':
      if (t.errorCode === 'DEPENDENCY_FAILED' && start)
        return `cancelled: ${depName} ${dep ? (dep.status === 'failed' ? 'failed' : `ended ${dep.status}`) : 'is not in this database'}`;
      return `cancelled${t.error ? `: ${t.error}` : ''}`;
    case 'pending':
      if (start && dep?.status !== 'succeeded')
        return `pending: waits for ${depName}, ${dep ? `which is ${dep.status}${dep.sweepId !== t.sweepId ? ' in another sweep' : ''}` : 'which is not in this database'}`;
      return `pending${t.error ? ` (${t.error})` : ''}`;
    default:
      return `${t.status}${t.worker ? ` on ${t.worker}` : ''} (another coordinator?)`;
  }
}
