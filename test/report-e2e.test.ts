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
  accuracyFinal: { n: number; mean: number | null; std: number | null };
  paramsRatio: { mean: number | null };
  status: Record<string, number>;
}

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
    expect(json.rows).toHaveLength(4);
    expect(json.rows[0]!.isBaseline).toBe(true);
    for (const row of json.rows) {
      expect(row.accuracyFinal.n).toBe(2);
      expect(row.accuracyFinal.mean).toBeGreaterThan(0);
      expect(row.accuracyFinal.mean).toBeLessThanOrEqual(1);
      if (!row.isBaseline) expect(row.paramsRatio.mean).toBeGreaterThan(1.2);
    }
    // Three compressed rows compete at 2x: exactly one (or a tie) is marked best, and it has the top mean.
    const compressed = json.rows.filter((x) => !x.isBaseline);
    const top = Math.max(...compressed.map((x) => x.accuracyFinal.mean!));
    expect(compressed.filter((x) => x.best).length).toBeGreaterThanOrEqual(1);
    for (const x of compressed) expect(x.best).toBe(x.accuracyFinal.mean === top);

    const md = (await cli('report', 'e2e-tiny', '--out', 'report.md')).stderr;
    expect(md).toContain('wrote report.md');
    const table = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(table.split('\n').filter((l) => l.startsWith('| '))).toHaveLength(1 + 4);
    expect(table).toMatch(/\| baseline \(uncompressed\) \|/);

    await cli('plot', 'e2e-tiny', '--out', 'plot.svg');
    const svg = readFileSync(join(dir, 'plot.svg'), 'utf8');
    expect(svg.match(/<polyline class="series-line"/g)).toHaveLength(3);
    expect(svg.match(/<circle class="point"/g)).toHaveLength(3);
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
