/**
 * The one label of a trial, from its canonical config alone (the rank policy by protocol's
 * rankPolicyLabel, the store column's spelling), so that the dry run, the run's log
 * lines, the live table and `flatrank status` name a trial the same way, on every machine:
 * "distort svd ratio=2 sd=200 seed=0".
 */
import { rankPolicyLabel, type TrialConfig } from '@flatrank/protocol';

export function trialLabel(c: TrialConfig): string {
  const parts: string[] = [c.method];
  const comp = c.compression;
  if (comp) {
    parts.push(comp.decomposition + (comp.tile ? ` ${comp.tile[0]}x${comp.tile[1]}` : ''));
    parts.push(rankPolicyLabel(comp.rank));
  }
  if (c.distortion) parts.push(`sd=${c.distortion.interval}`);
  parts.push(`seed=${c.seed}`);
  return parts.join(' ');
}
