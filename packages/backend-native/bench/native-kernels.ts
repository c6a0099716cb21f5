/**
 * `npm run bench -- native-kernels`: time of the hot training kernels at ResNet-20 / LeNet-5
 * shapes (batch 128) on the native backend next to the wasm backend (and its ratio), in one run:
 * the three convolution kernels of each distinct conv layer, batch norm forward + its gradient,
 * and a few elementwise ops. Min over repetitions (robust to the other load of a shared machine).
 * Convolution rows also give the native time as GFLOP/s (2 x the multiply-adds, the same for the
 * forward pass and both gradients) and its fraction of the all-core FMA peak (peak-fma.ts), so the
 * gap of a training step to the peak can be told kernel by kernel.
 * Options: --reps=N (default 5), --backends=native,wasm, --no-peak.
 */
import { availableParallelism, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import type { LoadedBackend } from '@flatrank/protocol';
// Only for the side-by-side column: the wasm backend is this bench's yardstick, not a dependency
// of the native backend.
import { loadWasmBackend, wasmBackendInstalled } from '@flatrank/backend-wasm';
import { loadNativeBackend, nativeBackendStatus } from '@flatrank/backend-native';
import { measurePeakFma } from './peak-fma.js';

type Row = Record<string, string | number | boolean | null>;

interface Case {
  name: string;
  shape: string;
  /** Flops of one run (convolutions only). */
  flops?: number;
  /** Builds inputs (outside timing) and returns the timed work. */
  setup: () => { run: () => tf.Tensor | tf.Tensor[]; inputs: tf.Tensor[] };
}

function conv(
  name: string,
  n: number,
  h: number,
  c: number,
  k: number,
  oc: number,
  s: number,
  pad: 'same' | 'valid',
): Case[] {
  const shape = `x ${n}x${h}x${h}x${c} k ${k}x${k}x${c}x${oc} s${s} ${pad}`;
  const x = () => tf.randomNormal([n, h, h, c]) as tf.Tensor4D;
  const w = () => tf.randomNormal([k, k, c, oc], 0, 0.1) as tf.Tensor4D;
  const outShape = () => tf.conv2d(x(), w(), s, pad).shape;
  const o = pad === 'same' ? Math.ceil(h / s) : Math.floor((h - k) / s) + 1;
  const flops = 2 * n * o * o * k * k * c * oc;
  return [
    {
      name: `${name} Conv2D`,
      shape,
      flops,
      setup: () => {
        const a = x(),
          b = w();
        return { inputs: [a, b], run: () => tf.conv2d(a, b, s, pad) };
      },
    },
    {
      name: `${name} Conv2DBackpropInput`,
      shape,
      flops,
      setup: () => {
        const dy = tf.randomNormal(outShape()) as tf.Tensor4D,
          b = w();
        return { inputs: [dy, b], run: () => tf.conv2dTranspose(dy, b, [n, h, h, c], s, pad) };
      },
    },
    {
      name: `${name} Conv2DBackpropFilter`,
      shape,
      flops,
      setup: () => {
        const a = x(),
          dy = tf.randomNormal(outShape()) as tf.Tensor4D,
          b = w();
        // Gradient w.r.t. the filter only: runs Conv2DBackpropFilter.
        const g = tf.grad((f: tf.Tensor) => tf.conv2d(a, f as tf.Tensor4D, s, pad));
        return { inputs: [a, dy, b], run: () => g(b, dy) };
      },
    },
  ];
}

function cases(): Case[] {
  const bn: Case = {
    name: 'batch norm (moments + FusedBatchNorm) fwd+bwd',
    shape: 'x 128x32x32x16',
    setup: () => {
      const x = tf.randomNormal([128, 32, 32, 16]);
      const g = tf.ones([16]);
      const b = tf.zeros([16]);
      const dy = tf.randomNormal([128, 32, 32, 16]);
      const f = tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => {
        const { mean, variance } = tf.moments(xx, [0, 1, 2]);
        return tf.batchNorm(xx, mean, variance, bb, gg, 1e-5);
      });
      return { inputs: [x, g, b, dy], run: () => f([x, g, b], dy) };
    },
  };
  const ew = (name: string, f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, bShape: number[]): Case => ({
    name,
    shape: `128x32x32x16 ${bShape.join('x') || 'scalar'}`,
    setup: () => {
      const a = tf.randomNormal([128, 32, 32, 16]);
      const b = tf.randomNormal(bShape);
      return { inputs: [a, b], run: () => f(a, b) };
    },
  });
  return [
    ...conv('resnet20 stage1', 128, 32, 16, 3, 16, 1, 'same'),
    ...conv('resnet20 stage2 down', 128, 32, 16, 3, 32, 2, 'same'),
    ...conv('resnet20 stage2', 128, 16, 32, 3, 32, 1, 'same'),
    ...conv('resnet20 stage3', 128, 8, 64, 3, 64, 1, 'same'),
    ...conv('lenet5 conv2', 128, 14, 6, 5, 16, 1, 'valid'),
    bn,
    ew('Add (residual)', tf.add, [128, 32, 32, 16]),
    ew('Multiply (per-channel)', tf.mul, [16]),
    {
      name: 'Relu',
      shape: '128x32x32x16',
      setup: () => {
        const a = tf.randomNormal([128, 32, 32, 16]);
        return { inputs: [a], run: () => tf.relu(a) };
      },
    },
  ];
}

function timeCase(c: Case, reps: number): number {
  const { run, inputs } = c.setup();
  tf.dispose(run()); // warm-up (oneDNN primitive creation, wasm kernel setup)
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    const out = run();
    // Reading one value makes sure the work is done on every backend.
    (Array.isArray(out) ? out : [out]).forEach((o) => o.dataSync());
    best = Math.min(best, performance.now() - t);
    tf.dispose(out);
  }
  tf.dispose(inputs);
  return best;
}

export default {
  name: 'native-kernels',
  description:
    'hot training kernels at batch 128 (ResNet-20 / LeNet-5 shapes): native vs wasm, ms (min of reps)',
  async run(args: string[]): Promise<Row[]> {
    let reps = 5;
    let wanted = ['native', 'wasm'];
    let peakWanted = true;
    for (const a of args) {
      if (a.startsWith('--reps=')) reps = Math.max(1, Number(a.slice(7)));
      if (a.startsWith('--backends=')) wanted = a.slice(11).split(',');
      if (a === '--no-peak') peakWanted = false;
    }
    // Measured first, before any backend's threads exist in this process.
    const peak = peakWanted
      ? (await measurePeakFma({ threads: availableParallelism(), reps: 5 })).best
      : null;
    const flops = new Map(cases().map((c) => [`${c.name}|${c.shape}`, c.flops ?? null]));
    const loaders: Record<string, { installed: () => boolean; load: () => Promise<LoadedBackend> }> = {
      native: { installed: () => nativeBackendStatus().available, load: loadNativeBackend },
      wasm: { installed: wasmBackendInstalled, load: loadWasmBackend },
    };
    const backends = wanted.filter((b) => loaders[b]?.installed());
    const times = new Map<string, Map<string, number>>();
    for (const b of backends) {
      await loaders[b]!.load();
      for (const c of cases()) {
        const key = `${c.name}|${c.shape}`;
        if (!times.has(key)) times.set(key, new Map());
        times.get(key)!.set(b, timeCase(c, reps));
      }
    }
    const load = Number(loadavg()[0]!.toFixed(2));
    return [...times].map(([key, m]) => {
      const [kernel, shape] = key.split('|') as [string, string];
      const row: Row = { kernel, shape };
      for (const b of backends) row[`${b}Ms`] = Number(m.get(b)!.toFixed(2));
      const n = m.get('native');
      const w = m.get('wasm');
      row['speedupVsWasm'] = n !== undefined && w !== undefined ? Number((w / n).toFixed(2)) : null;
      const f = flops.get(key) ?? null;
      const gflops = f !== null && n !== undefined ? f / (n / 1000) / 1e9 : null;
      row['nativeGflops'] = gflops === null ? null : Number(gflops.toFixed(1));
      row['fractionOfPeak'] = gflops !== null && peak !== null ? Number((gflops / peak).toFixed(3)) : null;
      row['peakGflops'] = peak === null ? null : Number(peak.toFixed(1));
      row['load1m'] = load;
      return row;
    });
  },
};
