/** The runs directory's layout: <runs-dir>/<sweep>/<key[0:16]>/{trial.log, attempt-<n>/}. */
import { join, resolve } from 'node:path';

export function trialDir(runsDir: string, sweep: string, key: string): string {
  return resolve(join(runsDir, sweep, key.slice(0, 16)));
}

export function attemptDir(runsDir: string, sweep: string, key: string, attempt: number): string {
  return join(trialDir(runsDir, sweep, key), `attempt-${attempt}`);
}
