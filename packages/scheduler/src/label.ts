/**
 * The one label of a trial, from its canonical config alone (the rank policy by protocol's
 * rankPolicyLabel, the store column's spelling), so that the dry run, the run's log
 * lines, the live table and `flatrank status` name a trial the same way, on every machine:
 * "distort svd ratio=2 sd=200 seed=0", "trp svd spatial energy=0.95 m=20 lambda=0.0003 seed=0".
 */
import { rankPolicyLabel, type TrialConfig } from '@flatrank/protocol';

export function trialLabel(c: TrialConfig): string {
  const parts: string[] = [c.method];
  const comp = c.compression;
  if (comp) {
    parts.push(comp.decomposition + (comp.tile ? ` ${comp.tile[0]}x${comp.tile[1]}` : ''));
    // TRP's two decomposition schemes (channel-wise = lowered, spatial-wise) are its main variant.
    if (c.trp && comp.scheme) parts.push(comp.scheme);
    parts.push(rankPolicyLabel(comp.rank));
  }
  if (c.distortion) parts.push(`sd=${c.distortion.interval}`);
  if (c.trp)
    parts.push(
      `m=${c.trp.interval} lambda=${c.trp.lambda}` +
        (c.trp.nuclearEvery === 'projection' ? ' nuclear@projection' : ''),
    );
  parts.push(`seed=${c.seed}`);
  return parts.join(' ');
}
