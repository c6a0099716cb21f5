// The training bench's rows (bench/training.ts): what the per-round measurements become (medians,
// ranges, ratios paired by round, GFLOP/s, fraction of peak, distortion overhead) and its options.
import { describe, expect, test } from 'vitest';
import { distortionRows, parse, trainingRow, type Round } from '../bench/training.js';
import type { DistortionResult } from '../bench/lib/jobs.js';

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
  test('the distortion time over S_D steps is the fraction of training time, per decomposition', () => {
    const o = parse([]);
    const result = (stepS: number, svdMs: number[], cpMs: number[]): DistortionResult & { load: number } => ({
      backend: 'native',
      version: 'v',
      stepSeconds: [stepS, stepS, stepS],
      distortions: [
        { decomposition: 'svd', layers: 18, coldMs: 500, ms: svdMs },
        { decomposition: 'cp', layers: 18, coldMs: 9000, ms: cpMs },
      ],
      maxRssKb: 2048 * 1024,
      load: 1,
    });
    // Step 100 ms, S_D 200: 20 s of training per distortion.
    const rows = distortionRows(
      'resnet20',
      [result(0.1, [200, 180, 220], [1000]), result(0.1, [400], [1200])],
      o,
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({
      kind: 'distortion',
      decomposition: 'svd',
      layers: 18,
      distortionMs: 300, // rounds' medians 200 and 400
      distortionMsMin: 200,
      distortionMsMax: 400,
      coldDistortionMs: 500,
      msPerStep: 100,
      interval: 200,
      fractionOfTraining: 0.015,
      fractionOfTrainingMin: 0.01,
      fractionOfTrainingMax: 0.02,
      meetsGoal: true,
      peakRssMiB: 2048,
    });
    expect(rows[1]).toMatchObject({ decomposition: 'cp', fractionOfTraining: 0.055, meetsGoal: false });
  });
});
