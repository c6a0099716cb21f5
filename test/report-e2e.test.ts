/**
 * End to end through the built CLI: `flatrank run` (real tiny trainings: LeNet-5 on 256 embedded
 * MNIST digits, 1 epoch, 2 seeds, in trial child processes) -> the SQLite store -> `flatrank report`
 * (md, json) -> `flatrank plot` (svg, png). Needs `npx tsc -b` first (npm test does it).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = resolve(__dirname, '../apps/cli/dist/main.js');
const dir = mkdtempSync(join(tmpdir(), 'flatrank-e2e-report-'));
const db = join(dir, 'flatrank.sqlite');

const SPEC = `
name: e2e-tiny
description: tiny real sweep for the end-to-end test
model: lenet5
dataset: { name: mnist, trainLimit: 256, testLimit: 128 }
training: { epochs: 1, batchSize: 32, lr: 0.05 }
start: baseline
methods:
  baseline: {}
  distort-svd:
    method: distort
    compression: { decomposition: svd, layers: { kind: all-but-first, includeFc: true } }
    distortion: { interval: 4 }
    training: { lr: 0.01 }
  finetune-tucker2:
    method: finetune
    compression: { decomposition: tucker2, layers: { kind: all-but-first, includeFc: true } }
    training: { lr: 0.01 }
  posttrain-svd:
    method: posttrain
    compression: { decomposition: svd, layers: { kind: all-but-first, includeFc: true } }
    training: { epochs: 0 }
grid:
  seed: [0, 1]
  ratio: [2]
resources: { gpus: none, cpuWorkers: 2, maxAttempts: 1, trialTimeout: 3m }
`;

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, ...args], {
    cwd: dir,
    maxBuffer: 64 << 20,
    env: { ...process.env, FLATRANK_DB: db },
  });
}

interface JsonRow {
  method: string;
  decomposition: string | null;
  isBaseline: boolean;
  best: boolean;
  seeds: number[];
  accuracyFinal: { n: number; mean: number | null; std: number | null };
  accuracyAfterDecomposition: { mean: number | null };
  paramsRatio: { mean: number | null };
  vsBaseline: number | null;
  status: Record<string, number>;
}

/** One trial as the store's trial_summary view has it (the report's input, read with plain SQL). */
interface TrialRow {
  method: string;
  decomposition: string | null;
  seed: number;
  accuracy_final: number;
  accuracy_after_decomposition: number | null;
  params_before: number;
  params_after: number;
}

const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const sampleStd = (v: number[]): number =>
  Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1));

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
  writeFileSync(join(dir, 'tiny.yaml'), SPEC);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run -> store -> report -> plot', () => {
  it('runs a tiny real sweep, reports it and plots it', async () => {
    const r = await cli('run', 'tiny.yaml', '--runs-dir', join(dir, 'runs'));
    expect(r.stdout + r.stderr).toMatch(/8 succeeded/);

    const json = JSON.parse((await cli('report', 'e2e-tiny', '--format', 'json')).stdout) as {
      rows: JsonRow[];
      totals: Record<string, number>;
    };
    expect(json.totals).toMatchObject({ trials: 8, succeeded: 8 });
    // The report against the trials themselves: every row's statistics recomputed from the
    // per-trial results in the database.
    const trials = JSON.parse(
      (
        await cli(
          'query',
          '--format',
          'json',
          'SELECT method, decomposition, seed, accuracy_final, accuracy_after_decomposition, params_before, params_after FROM trial_summary ORDER BY method, seed',
        )
      ).stdout,
    ) as TrialRow[];
    expect(trials).toHaveLength(8);
    const byMethod = new Map<string, TrialRow[]>();
    for (const t of trials) byMethod.set(t.method, [...(byMethod.get(t.method) ?? []), t]);
    expect([...byMethod.keys()].sort()).toEqual(['baseline', 'distort', 'finetune', 'posttrain']);
    expect(json.rows.map((r) => r.method)).toEqual(['baseline', 'distort', 'finetune', 'posttrain']);
    const baseMean = mean(byMethod.get('baseline')!.map((t) => t.accuracy_final));
    for (const row of json.rows) {
      const own = byMethod.get(row.method)!;
      const acc = own.map((t) => t.accuracy_final);
      expect(row.seeds).toEqual([0, 1]);
      expect(row.accuracyFinal.n).toBe(2);
      expect(row.accuracyFinal.mean).toBeCloseTo(mean(acc), 12);
      expect(row.accuracyFinal.std).toBeCloseTo(sampleStd(acc), 12);
      expect(row.paramsRatio.mean).toBeCloseTo(mean(own.map((t) => t.params_before / t.params_after)), 12);
      if (row.isBaseline) expect(row.vsBaseline).toBeNull();
      else {
        expect(row.vsBaseline).toBeCloseTo((mean(acc) - baseMean) * 100, 10);
        // svd / tucker2 at a per-layer ratio of 2 on conv2 and the three dense layers of LeNet-5
        // (61,706 params, 61,320 of them in those kernels): the whole model shrinks by about 2x.
        expect(row.paramsRatio.mean).toBeGreaterThan(1.95);
        expect(row.paramsRatio.mean).toBeLessThan(2.1);
      }
    }
    // Post-training decomposition does no training: final = right after decomposition, per trial.
    for (const t of byMethod.get('posttrain')!) expect(t.accuracy_final).toBe(t.accuracy_after_decomposition);
    // Best at 2x: the compressed configuration with the highest mean final accuracy over its
    // trials, found here from the trials (ties are not expected with real trainings).
    const compressedMeans = ['distort', 'finetune', 'posttrain'].map(
      (m) => [m, mean(byMethod.get(m)!.map((t) => t.accuracy_final))] as const,
    );
    const winner = compressedMeans.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    expect(json.rows.filter((x) => x.best).map((x) => x.method)).toEqual([winner]);

    const md = (await cli('report', 'e2e-tiny', '--out', 'report.md')).stderr;
    expect(md).toContain('wrote report.md');
    const table = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(table.split('\n').filter((l) => l.startsWith('| '))).toHaveLength(1 + 4);
    expect(table).toMatch(/\| baseline \(uncompressed\) \|/);

    await cli('plot', 'e2e-tiny', '--out', 'plot.svg');
    const svg = readFileSync(join(dir, 'plot.svg'), 'utf8');
    expect(svg.match(/<polyline class="series-line"/g)).toHaveLength(3);
    expect(svg.match(/<circle class="point"/g)).toHaveLength(3);
    const compressed = json.rows.filter((x) => !x.isBaseline);
    const withSpread = compressed.filter((x) => (x.accuracyFinal.std ?? 0) > 0).length;
    expect((svg.match(/<g class="errorbar"/g) ?? []).length).toBe(withSpread);
    expect(svg).toContain('class="baseline"');
    expect(svg).toContain('class="pareto"');

    await cli('plot', 'e2e-tiny', '--out', 'plot.png');
    expect([...readFileSync(join(dir, 'plot.png')).subarray(0, 8)]).toEqual([
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
    ]);

    // Resumable: a second run finds everything done and trains nothing.
    const again = await cli('run', 'tiny.yaml', '--runs-dir', join(dir, 'runs'));
    expect(again.stdout + again.stderr).toMatch(/0 new/);
    expect(again.stdout + again.stderr).not.toMatch(/INFO: start /);
  });
});
