// The training bench's distortion job (bench/lib/distortion-overhead.ts), run in this process on a
// tiny trial: LeNet-5 on the cpu backend, S_D 2, one steady-state distortion. No timings are checked,
// only what was computed: cp's steady distortion refits warm from the first one's factors after the
// kernels moved, svd's distorts the start kernels again.
import { describe, expect, test } from 'vitest';
import { measureDistortionOverhead } from '../bench/lib/distortion-overhead.js';

describe('distortion job', { timeout: 240_000 }, () => {
  test('LeNet-5, S_D 2: cp refits warm in fewer sweeps than the cold fit; svd trains nothing in between', async () => {
    const lines: string[] = [];
    const r = await measureDistortionOverhead(
      {
        kind: 'distortion',
        net: 'lenet5',
        backend: 'cpu',
        batch: 8,
        protocol: { warmup: 0, warmupSeconds: 0, steps: 1, seconds: 0, maxSteps: 1 },
        decompositions: ['svd', 'cp'],
        ratio: 4,
        tile: [16, 16],
        reps: 1,
        interval: 2,
      },
      (line) => lines.push(line),
    );
    expect(r.backend).toBe('cpu');
    expect(r.stepSeconds).toHaveLength(1);
    const [svd, cp] = r.distortions;
    expect(svd).toMatchObject({ decomposition: 'svd', trainedSteps: 0, coldSweeps: 0, sweeps: [0] });
    expect(svd!.layers).toBeGreaterThan(0);
    // From the same start kernels: the same truncation error.
    expect(svd!.errors[0]).toBeCloseTo(svd!.coldError, 6);

    expect(cp).toMatchObject({ decomposition: 'cp', trainedSteps: 2, layers: svd!.layers });
    expect(cp!.ms).toHaveLength(1);
    expect(cp!.sweeps[0]).toBeLessThan(cp!.coldSweeps);
    expect(cp!.sweeps[0]).toBeLessThanOrEqual(10);
    // The two SGD steps moved the exactly low-rank kernels: the warm refit has a small error to fit,
    // well above the float32 round-off of refitting an unmoved kernel and below the cold fit's.
    expect(cp!.errors[0]).toBeGreaterThan(1e-5);
    expect(cp!.errors[0]).toBeLessThan(cp!.coldError);
    expect(lines.some((l) => /distortion lenet5 cp: steady 1\/1 after 2 steps/.test(l))).toBe(true);
  });
});
