// The training bench's rows (bench/training.ts): what the per-round measurements become (medians,
// ranges, ratios paired by round, GFLOP/s, fraction of peak, distortion overhead) and its options.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { distortionRows, parse, peakRssMiB, roundOf, trainingRow, type Round } from '../bench/training.js';
import { RESULT_PREFIX, type DistortionResult, type TrainResult } from '../bench/lib/jobs.js';

function rounds(walls: number[], extra: Partial<Round> = {}): Round[] {
  return walls.map((wall, i) => ({
    round: i,
    load: 1 + i,
    batch: 128,
    wall,
    cpu: wall * 2,
    steps: 5,
    maxRssKb: 1024 * (100 + i),
    version: 'v',
    threads: 2,
    note: null,
    ...extra,
  }));
}

describe('options', () => {
  test('defaults: 3 rounds, the four nets, S_D 200, distortion on ResNet-20 and -32', () => {
    const o = parse([]);
    expect([o.distortion, o.onlyDistortion, o.distortionReps, o.trialDistortions]).toEqual([
      true,
      false,
      1,
      5,
    ]);
    expect(o.rounds).toBe(3);
    expect(o.nets).toEqual(['lenet5', 'resnet20', 'resnet32', 'resnet56']);
    expect(o.batch).toBe(128);
    expect(o.interval).toBe(200);
    expect(o.distortionNets).toEqual(['resnet20', 'resnet32']);
    expect(o.tile).toEqual([16, 16]);
  });

  test('tiny sizes and refusals', () => {
    const o = parse(['--rounds=1', '--steps=1', '--seconds=0', '--tile=8x16', '--nets=lenet5', '--no-torch']);
    expect([o.rounds, o.steps, o.seconds, o.torch]).toEqual([1, 1, 0, false]);
    expect(o.tile).toEqual([8, 16]);
    expect(() => parse(['--rounds=0'])).toThrow(/--rounds must be an integer >= 1/);
    expect(() => parse(['--nets=vgg19'])).toThrow(/unknown vgg19/);
    expect(() => parse(['--tile=16'])).toThrow(/--tile must be AxB/);
    expect(() => parse(['--frobnicate'])).toThrow(/unknown option --frobnicate/);
  });

  test('--only-distortion: the distortion part alone, which --no-distortion contradicts', () => {
    expect(parse(['--only-distortion', '--interval=20', '--distortion-reps=2'])).toMatchObject({
      onlyDistortion: true,
      interval: 20,
      distortionReps: 2,
    });
    expect(() => parse(['--only-distortion', '--no-distortion'])).toThrow(/leave nothing to measure/);
    expect(() => parse(['--trial-distortions=0'])).toThrow(/--trial-distortions must be an integer >= 1/);
  });
});

describe('trainingRow', () => {
  const o = parse([]);
  const native = { key: 'native', backend: 'native' as const, variant: null };

  test('medians and ranges over rounds, ratios to PyTorch paired by round, GFLOP/s and fraction of peak', () => {
    // images/s per round: 1280, 640, 1024 (native); 640, 640, 512 (PyTorch): ratios 2, 1, 2.
    const row = trainingRow(
      'resnet20',
      native,
      rounds([0.1, 0.2, 0.125]),
      rounds([0.2, 0.2, 0.25]),
      0.25e9,
      512,
      o,
    );
    expect(row).toMatchObject({
      kind: 'training',
      net: 'resnet20',
      backend: 'native',
      rounds: 3,
      imagesPerSecond: 1024,
      imagesPerSecondMin: 640,
      imagesPerSecondMax: 1280,
      msPerStep: 125,
      pytorchImagesPerSecond: 640,
      ratioToPytorch: 2,
      ratioToPytorchMin: 1,
      ratioToPytorchMax: 2,
      gflopPerImage: 0.25,
      gflops: 256, // 0.25 GFLOP per image x 1,024 images/s
      gflopsMin: 160,
      gflopsMax: 320,
      peakGflops: 512,
      fractionOfPeak: 0.5,
      ratioGoal: 1.5,
      meetsRatioGoal: true,
      peakGoal: 0.5,
      meetsPeakGoal: true,
      peakRssMiB: 102,
      loadAverage: 2,
      loadAverageMax: 3,
      note: null,
    });
  });

  test('a check run says so, and rows without PyTorch or a peak leave those columns empty', () => {
    const row = trainingRow('lenet5', native, rounds([0.01]), null, null, null, o);
    expect(row['ratioToPytorch']).toBeNull();
    expect(row['gflops']).toBeNull();
    expect(row['fractionOfPeak']).toBeNull();
    expect(row['meetsRatioGoal']).toBeNull();
    expect(row['note']).toMatch(/1 round\(s\): a check, not a measurement/);
  });

  test('a backend timed at another batch is not compared with PyTorch', () => {
    const cpu = { key: 'cpu', backend: 'cpu' as const, variant: null };
    const row = trainingRow(
      'lenet5',
      cpu,
      rounds([1, 1, 1], { batch: 16 }),
      rounds([0.1, 0.1, 0.1]),
      null,
      null,
      o,
    );
    expect(row['imagesPerSecond']).toBe(16);
    expect(row['ratioToPytorch']).toBeNull();
  });
});

describe('distortionRows', () => {
  type Times = { cold: number; ms: number[]; sweeps?: number[] };
  const result = (stepS: number, svd: Times, cp: Times): DistortionResult & { load: number } => ({
    backend: 'native',
    version: 'v',
    stepSeconds: [stepS, stepS * 2, stepS / 2],
    distortions: [
      {
        decomposition: 'svd',
        layers: 18,
        trainedSteps: 0,
        coldMs: svd.cold,
        coldSweeps: 0,
        coldError: 0.5,
        ms: svd.ms,
        sweeps: svd.ms.map(() => 0),
        errors: svd.ms.map(() => 0.5),
      },
      {
        decomposition: 'cp',
        layers: 18,
        trainedSteps: 200,
        coldMs: cp.cold,
        coldSweeps: 200,
        coldError: 0.6,
        ms: cp.ms,
        sweeps: cp.sweeps ?? cp.ms.map(() => 4),
        errors: cp.ms.map(() => 0.05),
      },
    ],
    maxRssKb: 2048 * 1024,
    load: 1,
  });
  // Steps of 100, 100 and 200 ms: 20, 20 and 40 s of training per distortion at S_D 200.
  const rounds = [
    result(0.1, { cold: 200, ms: [100, 120, 110] }, { cold: 9000, ms: [400, 500, 600], sweeps: [4, 5, 6] }),
    result(0.1, { cold: 240, ms: [150] }, { cold: 10000, ms: [300], sweeps: [3] }),
    result(0.2, { cold: 400, ms: [200] }, { cold: 12000, ms: [800], sweeps: [5] }),
  ];

  test('a trial of k distortions pays the cold one and k - 1 steady ones over k x S_D steps', () => {
    const rows = distortionRows('resnet20', rounds, parse([]));
    expect(rows).toHaveLength(2);
    // svd per round: (200 + 4 x 110) / (5 x 20,000) = 0.0064, (240 + 4 x 150) / 100,000 = 0.0084,
    // (400 + 4 x 200) / 200,000 = 0.006.
    expect(rows[0]).toMatchObject({
      kind: 'distortion',
      decomposition: 'svd',
      layers: 18,
      trainedSteps: 0,
      coldMs: 240,
      coldMsMin: 200,
      coldMsMax: 400,
      steadyMs: 150, // rounds' medians 110, 150, 200
      steadyMsMin: 110,
      steadyMsMax: 200,
      coldSweeps: 0,
      steadySweeps: 0,
      msPerStep: 100,
      interval: 200,
      trialDistortions: 5,
      fractionOfTraining: 0.0064,
      fractionOfTrainingMin: 0.006,
      fractionOfTrainingMax: 0.0084,
      steadyFractionOfTraining: 0.0055, // 110 / 20,000, 150 / 20,000, 200 / 40,000
      goal: 0.02,
      meetsGoal: true,
      peakRssMiB: 2048,
    });
    expect(rows[0]!['note']).toMatch(/no training between distortions/);
    expect(rows[0]!['note']).toMatch(/\(cold \+ 4 x steady\) \/ \(5 x 200 x step\)/);
    // cp per round: (9,000 + 4 x 500) / 100,000 = 0.11, (10,000 + 4 x 300) / 100,000 = 0.112,
    // (12,000 + 4 x 800) / 200,000 = 0.076: the cold fit dominates a 5-distortion trial.
    expect(rows[1]).toMatchObject({
      decomposition: 'cp',
      trainedSteps: 200,
      coldMs: 10000,
      steadyMs: 500,
      coldSweeps: 200,
      steadySweeps: 4.6, // every steady fit of every round: (4 + 5 + 6 + 3 + 5) / 5
      coldError: 0.6,
      steadyError: 0.05,
      fractionOfTraining: 0.11,
      fractionOfTrainingMin: 0.076,
      fractionOfTrainingMax: 0.112,
      steadyFractionOfTraining: 0.02, // 500 / 20,000, 300 / 20,000, 800 / 40,000
      meetsGoal: false,
    });
    expect(rows[1]!['note']).toMatch(/after 200 SGD steps .*weight decay 1e-4/);
    expect(rows[1]!['note']).not.toMatch(/a check/);
  });

  test('the trial length sets the cold share: k = 1 is the cold distortion over S_D steps', () => {
    const [svd, cp] = distortionRows('resnet20', rounds, parse(['--trial-distortions=1']));
    expect(svd).toMatchObject({ fractionOfTraining: 0.01, meetsGoal: true }); // 200 / 20,000 ...
    expect(cp).toMatchObject({ fractionOfTraining: 0.45, meetsGoal: false }); // 9,000 / 20,000 ...
    // A long trial tends to the steady share: k = 1,000.
    const long = distortionRows('resnet20', rounds, parse(['--trial-distortions=1000']));
    expect(long[1]!['fractionOfTraining']).toBe(0.0203); // rounds 0.0254, 0.0155, 0.0203
  });

  test('a short S_D or fewer than 3 rounds make the rows a check', () => {
    const rows = distortionRows('resnet20', rounds.slice(0, 1), parse(['--interval=20']));
    expect(rows[1]!['note']).toMatch(/S_D 20 < 200: .*a check/);
    expect(rows[1]!['note']).toMatch(/1 round\(s\): a check/);
    expect(rows[0]!['note']).not.toMatch(/S_D 20 < 200/); // svd trains nothing between distortions
  });
});

describe('peak RSS', () => {
  const o = parse([]);
  const native = { key: 'native', backend: 'native' as const, variant: null };
  const pytorch = { key: 'pytorch', backend: 'pytorch' as const, variant: null };

  test('every training row, flatrank and PyTorch alike, carries the largest peak RSS of its rounds in MiB', () => {
    const torch = rounds([0.2, 0.2, 0.2], { maxRssKb: 600 * 1024 });
    for (const [peer, own] of [
      [native, rounds([0.1, 0.1, 0.1])],
      [pytorch, torch],
    ] as const) {
      const row = trainingRow('resnet20', peer, own, torch, 0.25e9, 512, o);
      expect(Number.isInteger(row['peakRssMiB']), `${peer.key}: ${row['peakRssMiB']}`).toBe(true);
      expect(row['peakRssMiB']).toBe(peer.key === 'native' ? 102 : 600);
      // Written as JSON (the committed record), it stays a number.
      expect(JSON.parse(JSON.stringify(row))['peakRssMiB']).toBe(row['peakRssMiB']);
    }
  });

  test('a child that reports no peak RSS is an error naming it, never a null column', () => {
    expect(peakRssMiB([2048, 4096], 'x')).toBe(4);
    expect(() => peakRssMiB([2048, undefined], 'resnet20 native')).toThrow(/resnet20 native: no peak RSS/);
    expect(() => peakRssMiB([], 'x')).toThrow(/no peak RSS/);
    expect(() => peakRssMiB([0], 'x')).toThrow(/no peak RSS/);
    const t = { batch: 2, stepSeconds: [0.1], cpuSeconds: [0.1], version: 'v', threads: 1 };
    expect(() => roundOf({ ...t, maxRssKb: undefined as unknown as number }, 0, 1, null)).toThrow(
      /no peak RSS/,
    );
    expect(roundOf({ ...t, maxRssKb: 5000 }, 0, 1, null).maxRssKb).toBe(5000);
  });

  // The PyTorch peer itself (bench/torch-peer.py), one tiny step, where a python3 can import torch.
  const python = ['python3', '/usr/bin/python3'].find(
    (py) => spawnSync(py, ['-c', 'import torch'], { timeout: 60_000 }).status === 0,
  );
  test.skipIf(!python)('the PyTorch peer reports its peak RSS in KiB', { timeout: 180_000 }, () => {
    const peer = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'torch-peer.py');
    const r = spawnSync(python!, [peer, 'lenet5', '2', '0', '0', '1', '0', '1', 'cpu'], {
      encoding: 'utf8',
      timeout: 170_000,
    });
    const line = r.stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
    expect(line, r.stderr).toBeDefined();
    const { ok, result } = JSON.parse(line!.slice(RESULT_PREFIX.length)) as {
      ok: boolean;
      result: TrainResult;
    };
    expect(ok).toBe(true);
    // torch alone maps well over 50 MiB and a Python process stays under 10 GiB: KiB, not bytes or pages.
    expect(result.maxRssKb).toBeGreaterThan(50 * 1024);
    expect(result.maxRssKb).toBeLessThan(10 * 1024 * 1024);
    const row = trainingRow('lenet5', pytorch, [roundOf(result, 0, 1, null)], null, null, null, o);
    expect(row['peakRssMiB']).toBe(Math.round(result.maxRssKb / 1024));
  });
});
