import { describe, expect, it } from 'vitest';
import { trialKey } from '@flatrank/protocol';
import { buildReport, formatReport, tCritical95, type ReportTrial } from '../src/index.js';
import { cfg, summary } from './helpers.js';

const tucker = (ratio: number) => ({
  decomposition: 'tucker2' as const,
  rank: { kind: 'ratio' as const, ratio },
});

function trial(config: ReturnType<typeof cfg>, accuracyFinal: number): ReportTrial {
  return {
    key: trialKey(config),
    status: 'succeeded',
    config,
    summary: summary({ accuracyFinal }),
    layers: [],
  };
}

/** 4 seeds: distort beats finetune by exactly 0.5 / 0.7 / 0.6 / 0.6 points; seed 3 of finetune at 4x is missing. */
function sweep(): ReportTrial[] {
  const out: ReportTrial[] = [];
  const base = [0.95, 0.96, 0.94, 0.95];
  base.forEach((acc, seed) => out.push(trial(cfg({ method: 'baseline', seed }), acc)));
  const start = (seed: number) => ({
    kind: 'trial' as const,
    trialKey: trialKey(cfg({ method: 'baseline', seed })),
  });
  const ft = [0.9, 0.91, 0.89, 0.9];
  const gain = [0.005, 0.007, 0.006, 0.006];
  for (let seed = 0; seed < 4; seed++) {
    out.push(trial(cfg({ method: 'finetune', seed, start: start(seed), compression: tucker(2) }), ft[seed]!));
    out.push(
      trial(
        cfg({ method: 'distort', seed, start: start(seed), compression: tucker(2) }),
        ft[seed]! + gain[seed]!,
      ),
    );
    out.push(trial(cfg({ method: 'distort', seed, start: start(seed), compression: tucker(4) }), 0.85));
    if (seed < 3)
      out.push(
        trial(
          cfg({ method: 'finetune', seed, start: start(seed), compression: tucker(4) }),
          0.85 + seed / 1000,
        ),
      );
  }
  return out;
}

describe('paired differences', () => {
  it('pairs rows of one ratio seed by seed, with the mean, std and t of the differences', () => {
    const report = buildReport(sweep(), { sweep: 's', paired: true });
    const p = report.paired!.find(
      (x) => x.bucket === 2 && x.a.label.startsWith('distort') && x.b.label.startsWith('finetune'),
    )!;
    expect(p.seeds).toEqual([0, 1, 2, 3]);
    p.differences.forEach((d, i) => expect(d).toBeCloseTo([0.5, 0.7, 0.6, 0.6][i]!, 9));
    expect(p.mean).toBeCloseTo(0.6, 9);
    const std = Math.sqrt((0.01 + 0.01 + 0 + 0) / 3);
    expect(p.std).toBeCloseTo(std, 9);
    expect(p.t).toBeCloseTo(0.6 / (std / 2), 6);
    expect(p.verdict).toBe('a');
  });

  it('uses only the seeds both rows finished, calls a small difference a tie, and never pairs across ratios', () => {
    const report = buildReport(sweep(), { sweep: 's', paired: true });
    const at4 = report.paired!.filter((x) => x.bucket === 4);
    expect(at4).toHaveLength(1);
    expect(at4[0]!.seeds).toEqual([0, 1, 2]);
    // distort 0.85 vs finetune 0.850 / 0.851 / 0.852: -0 / -0.1 / -0.2 points, t = -1.73 < 4.303.
    expect(at4[0]!.mean).toBeCloseTo(-0.1, 9);
    expect(at4[0]!.verdict).toBe('tie');
    // Every compressed row is also paired with the baseline: 4 rows.
    expect(report.paired!.filter((x) => x.bucket === null)).toHaveLength(4);
    const vsBase = report.paired!.find(
      (x) => x.bucket === null && x.a.label === 'distort tucker2, ratio 4x',
    )!;
    expect(vsBase.b.label).toBe('baseline');
    // 0.85 against 0.95 / 0.96 / 0.94 / 0.95: -10 / -11 / -9 / -10 points.
    expect(vsBase.mean).toBeCloseTo(-10, 9);
    expect(vsBase.verdict).toBe('b');
  });

  it('is left out unless asked for, and printed as a markdown section when it is', () => {
    expect(buildReport(sweep(), { sweep: 's' }).paired).toBeUndefined();
    expect(formatReport(buildReport(sweep(), { sweep: 's' }), 'md')).not.toContain('Paired');
    const md = formatReport(buildReport(sweep(), { sweep: 's', paired: true }), 'md');
    expect(md).toContain('## Paired differences (same seed)');
    expect(md).toMatch(
      /\| 2x \| distort tucker2, ratio 2x \| finetune tucker2, ratio 2x \| 0, 1, 2, 3 \| \+0\.50 \/ \+0\.70 \/ \+0\.60 \/ \+0\.60 \| \+0\.60 ± 0\.08 \| 14\.7 \| a ahead \|/,
    );
  });

  it('has the two-sided 95 % critical values of Student t', () => {
    expect(tCritical95(2)).toBe(4.303);
    expect(tCritical95(5)).toBe(2.571);
    expect(tCritical95(100)).toBe(1.96);
    expect(() => tCritical95(0)).toThrow(RangeError);
  });
});
