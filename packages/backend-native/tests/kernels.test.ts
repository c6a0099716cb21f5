/**
 * Every kernel the native backend overrides matches the cpu backend, values and gradients, over a
 * grid of shapes, strides, paddings and dilations.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import {
  compareBackends,
  nativeDetail,
  nativeExpected,
  rand,
  setupNative,
  valueAndGrads,
} from '../src/testing.js';

// Whole networks (or 131k-element tensors) against the cpu backend: seconds on a quiet machine,
// minutes on a loaded shared one.
const HEAVY = { timeout: 120_000 };

let available = false;
let calls = new Map<string, number>();
beforeAll(async () => {
  ({ available, calls } = await setupNative());
});

test('the addon is built wherever its build prerequisites (oneDNN headers) are installed', () => {
  if (nativeExpected) expect(available, nativeDetail()).toBe(true);
  else expect(available).toBe(false);
});

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
const EXPLICIT: Pad = [
  [0, 0],
  [1, 0],
  [2, 1],
  [0, 0],
];
const PADS: Pad[] = ['same', 'valid', EXPLICIT];

/** Runs the comparisons and asserts none failed, and that the addon did the work. */
async function check(
  cases: Array<[string, () => tf.Tensor | tf.Tensor[]]>,
  addonFn: string,
  tol?: number,
): Promise<void> {
  const before = calls.get(addonFn) ?? 0;
  const failures: string[] = [];
  for (const [label, f] of cases) {
    if (process.env['NATIVE_TEST_TRACE']) process.stderr.write(`${label}\n`);
    const r = await compareBackends(label, f, tol);
    if (r) failures.push(r);
  }
  expect(failures).toEqual([]);
  expect(calls.get(addonFn) ?? 0, `addon.${addonFn} calls`).toBeGreaterThan(before);
}

describe.skipIf(!nativeExpected)('native kernels vs cpu', HEAVY, () => {
  test('Conv2D forward: shapes x filters x strides x paddings x dilations', async () => {
    const cases: Array<[string, () => tf.Tensor]> = [];
    for (const xs of [
      [2, 7, 7, 3],
      [1, 8, 6, 4],
    ])
      for (const k of [
        [1, 1],
        [3, 3],
        [2, 3],
        [5, 5],
      ])
        for (const s of [1, 2, [1, 2]] as Array<number | [number, number]>)
          for (const pad of PADS)
            for (const d of [1, 2]) {
              if (d > 1 && s !== 1) continue; // tfjs: strides or dilations must be 1
              if (pad === 'valid' && (xs[1]! < (k[0]! - 1) * d + 1 || xs[2]! < (k[1]! - 1) * d + 1)) continue;
              cases.push([
                `conv2d x=${xs} k=${k} s=${s} pad=${JSON.stringify(pad)} d=${d}`,
                () =>
                  tf.conv2d(
                    rand(xs, 1) as tf.Tensor4D,
                    rand([k[0]!, k[1]!, xs[3]!, 5], 2) as tf.Tensor4D,
                    s,
                    pad,
                    'NHWC',
                    d,
                  ),
              ]);
            }
    await check(cases, 'conv');
  });

  test('Conv2D gradients (Conv2DBackpropInput, Conv2DBackpropFilter)', async () => {
    const cases: Array<[string, () => tf.Tensor[]]> = [];
    for (const xs of [
      [2, 7, 7, 3],
      [1, 8, 6, 4],
    ])
      for (const k of [
        [1, 1],
        [3, 3],
        [2, 3],
        [5, 5],
      ])
        for (const s of [1, 2, [2, 1]] as Array<number | [number, number]>)
          for (const pad of PADS)
            cases.push([
              `conv2d grads x=${xs} k=${k} s=${s} pad=${JSON.stringify(pad)}`,
              () =>
                valueAndGrads(
                  (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, pad),
                  [rand(xs, 3), rand([k[0]!, k[1]!, xs[3]!, 4], 4)],
                ),
            ]);
    await check(cases, 'conv');
  });

  test('batches split into uneven chunks across threads (11 images)', async () => {
    const cases: Array<[string, () => tf.Tensor[]]> = [];
    for (const s of [1, 2])
      cases.push([
        `conv2d grads batch 11 s=${s}`,
        () =>
          valueAndGrads(
            (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, 'same'),
            [rand([11, 6, 5, 3], 41), rand([3, 3, 3, 4], 42)],
          ),
      ]);
    cases.push([
      'depthwise grads batch 11',
      () =>
        valueAndGrads(
          (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'),
          [rand([11, 6, 5, 3], 43), rand([3, 3, 3, 2], 44)],
        ),
    ]);
    await check(cases, 'conv');
  });

  test('conv2dTranspose runs Conv2DBackpropInput directly', async () => {
    await check(
      [
        [
          'conv2dTranspose s=2 same',
          () =>
            tf.conv2dTranspose(
              rand([2, 4, 4, 5], 5) as tf.Tensor4D,
              rand([3, 3, 3, 5], 6) as tf.Tensor4D,
              [2, 8, 8, 3],
              2,
              'same',
            ),
        ],
        [
          'conv2dTranspose s=1 valid',
          () =>
            tf.conv2dTranspose(
              rand([1, 5, 5, 2], 7) as tf.Tensor4D,
              rand([2, 2, 4, 2], 8) as tf.Tensor4D,
              [1, 6, 6, 4],
              1,
              'valid',
            ),
        ],
      ],
      'conv',
    );
  });

  test('FusedConv2D (bias, relu) forward and its gradients', async () => {
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [];
    for (const act of ['linear', 'relu'] as const)
      for (const s of [1, 2])
        for (const pad of ['same', 'valid'] as const) {
          const args = () => ({
            x: rand([2, 6, 7, 3], 9) as tf.Tensor4D,
            filter: rand([3, 3, 3, 4], 10) as tf.Tensor4D,
            bias: rand([4], 11),
          });
          cases.push([
            `fused conv2d ${act} s=${s} ${pad}`,
            () => tf.fused.conv2d({ ...args(), strides: s, pad, activation: act }),
          ]);
          cases.push([
            `fused conv2d grads ${act} s=${s} ${pad}`,
            () => {
              const a = args();
              return valueAndGrads(
                (x, w, b) =>
                  tf.fused.conv2d({
                    x: x as tf.Tensor4D,
                    filter: w as tf.Tensor4D,
                    bias: b,
                    strides: s,
                    pad,
                    activation: act,
                  }),
                [a.x, a.filter, a.bias],
              );
            },
          ]);
        }
    await check(cases, 'conv');
  });

  test('DepthwiseConv2dNative forward (dilations) and gradients', async () => {
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [];
    for (const mult of [1, 2])
      for (const k of [
        [3, 3],
        [2, 3],
      ])
        for (const s of [1, 2] as const)
          for (const pad of PADS) {
            for (const d of [1, 2]) {
              if (d > 1 && s !== 1) continue;
              cases.push([
                `depthwise m=${mult} k=${k} s=${s} pad=${JSON.stringify(pad)} d=${d}`,
                () =>
                  tf.depthwiseConv2d(
                    rand([2, 7, 8, 3], 12) as tf.Tensor4D,
                    rand([k[0]!, k[1]!, 3, mult], 13) as tf.Tensor4D,
                    s,
                    pad,
                    'NHWC',
                    d,
                  ),
              ]);
            }
            cases.push([
              `depthwise grads m=${mult} k=${k} s=${s} pad=${JSON.stringify(pad)}`,
              () =>
                valueAndGrads(
                  (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, pad),
                  [rand([2, 7, 8, 3], 14), rand([k[0]!, k[1]!, 3, mult], 15)],
                ),
            ]);
          }
    cases.push([
      'fused depthwise relu',
      () =>
        tf.fused.depthwiseConv2d({
          x: rand([1, 5, 5, 4], 16) as tf.Tensor4D,
          filter: rand([3, 3, 4, 1], 17) as tf.Tensor4D,
          strides: 1,
          pad: 'same',
          bias: rand([4], 18),
          activation: 'relu',
        }),
    ]);
    await check(cases, 'conv');
  });

  test('MaxPool / AvgPool and their gradients', async () => {
    const cases: Array<[string, () => tf.Tensor[]]> = [];
    for (const f of [2, 3, [2, 3]] as Array<number | [number, number]>)
      for (const s of [1, 2])
        for (const pad of ['same', 'valid'] as const) {
          cases.push([
            `maxPool f=${f} s=${s} ${pad}`,
            () => valueAndGrads((x) => tf.maxPool(x as tf.Tensor4D, f, s, pad), [rand([2, 7, 6, 3], 19)]),
          ]);
          cases.push([
            `avgPool f=${f} s=${s} ${pad}`,
            () => valueAndGrads((x) => tf.avgPool(x as tf.Tensor4D, f, s, pad), [rand([2, 7, 6, 3], 20)]),
          ]);
        }
    // LeNet-5's pooling (oneDNN's primitive) and odd sizes that leave trailing input unused.
    for (const shape of [
      [3, 8, 8, 6],
      [2, 9, 7, 16],
    ])
      for (const max of [true, false])
        cases.push([
          `${max ? 'max' : 'avg'}Pool 2x2 s2 valid ${shape.join('x')}`,
          () =>
            valueAndGrads(
              (x) => (max ? tf.maxPool : tf.avgPool)(x as tf.Tensor4D, 2, 2, 'valid'),
              [rand(shape, 21)],
            ),
        ]);
    // Ties in 2x2 windows tiling the input (the vectorized path): the first maximum in scan order.
    cases.push([
      'maxPool 2x2 s2 ties',
      () =>
        valueAndGrads(
          (x) => tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid'),
          [tf.relu(tf.round(tf.mul(rand([3, 8, 6, 5], 51), 1.5)))],
        ),
    ]);
    // Ties (integer-valued inputs, as after quantisation or in all-zero relu windows): the first
    // maximum in scan order gets dy, as on cpu.
    for (const s of [1, 2])
      cases.push([
        `maxPool ties s=${s}`,
        () =>
          valueAndGrads(
            (x) => tf.maxPool(x as tf.Tensor4D, 3, s, 'same'),
            [tf.round(tf.mul(rand([2, 7, 6, 3], 50), 1.5))],
          ),
      ]);
    await check(cases, 'maxPoolGrad');
    expect(calls.get('avgPoolGrad') ?? 0).toBeGreaterThan(0);
    expect(calls.get('maxPool') ?? 0).toBeGreaterThan(0);
  });

  test('FusedBatchNorm and its gradient, direct and through moments (training-mode batch norm)', async () => {
    const x = () => rand([4, 5, 3, 6], 21);
    const cases: Array<[string, () => tf.Tensor[]]> = [
      [
        'batchNorm all inputs',
        () =>
          valueAndGrads(
            (x, m, v, o, s) => tf.batchNorm(x!, m!, tf.abs(v!), o, s, 1e-3),
            [x(), rand([6], 22), rand([6], 23), rand([6], 24), rand([6], 25)],
          ),
      ],
      // tfjs-core cannot differentiate batchNorm without scale and offset (on any backend): forward only.
      [
        'batchNorm no scale/offset',
        () => [tf.batchNorm(x(), rand([6], 26), tf.add(tf.abs(rand([6], 27)), 0.5))],
      ],
      [
        'batchNorm scalar mean',
        () => [tf.batchNorm(x(), rand([1], 26), tf.add(tf.abs(rand([6], 27)), 0.5), rand([6], 28))],
      ],
      [
        'moments + batchNorm (as tfjs-layers trains)',
        () =>
          valueAndGrads(
            (x, g, b) => {
              const { mean, variance } = tf.moments(x!, [0, 1, 2]);
              return tf.relu(tf.batchNorm(x!, mean, variance, b, g, 1e-5));
            },
            [x(), rand([6], 28), rand([6], 29)],
          ),
      ],
    ];
    await check(cases, 'batchNormGrad', 1e-4);
    expect(calls.get('batchNorm') ?? 0).toBeGreaterThan(0);
  });

  test('BatchMatMul / _FusedMatMul with transposes, batches and broadcasting', async () => {
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [];
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const a = (b: number[]) => rand(ta ? [...b, 4, 3] : [...b, 3, 4], 30);
      const b = (bb: number[]) => rand(tb ? [...bb, 5, 4] : [...bb, 4, 5], 31);
      cases.push([
        `matMul ta=${ta} tb=${tb}`,
        () => valueAndGrads((x, y) => tf.matMul(x!, y!, ta, tb), [a([]), b([])]),
      ]);
      cases.push([
        `batched matMul ta=${ta} tb=${tb}`,
        () => valueAndGrads((x, y) => tf.matMul(x!, y!, ta, tb), [a([2]), b([2])]),
      ]);
      cases.push([`broadcast matMul ta=${ta} tb=${tb}`, () => tf.matMul(a([1]), b([3]), ta, tb)]);
    }
    for (const act of ['linear', 'relu'] as const)
      cases.push([
        `fused matMul ${act}`,
        () =>
          tf.fused.matMul({
            a: rand([6, 7], 32) as tf.Tensor2D,
            b: rand([7, 3], 33) as tf.Tensor2D,
            bias: rand([3], 34),
            activation: act,
          }),
      ]);
    await check(cases, 'matmul');
  });

  test('elementwise binary ops with broadcasting, and their gradients', async () => {
    const shapes: Array<[number[], number[]]> = [
      [
        [2, 3, 4],
        [2, 3, 4],
      ],
      [[2, 3, 4], [4]],
      [
        [2, 3, 4],
        [3, 1],
      ],
      [
        [2, 1, 4],
        [1, 3, 1],
      ],
      [[2, 3, 4], []],
      [[5], [2, 5]],
    ];
    const ops: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
      ['add', tf.add],
      ['sub', tf.sub],
      ['mul', tf.mul],
      ['div', (a, b) => tf.div(a, tf.add(tf.abs(b), 0.5))],
      ['maximum', tf.maximum],
      ['minimum', tf.minimum],
      ['squaredDifference', tf.squaredDifference],
    ];
    const cases: Array<[string, () => tf.Tensor[]]> = [];
    for (const [name, op] of ops)
      for (const [sa, sb] of shapes) {
        // tfjs-core's Maximum/Minimum/SquaredDifference gradients do not reduce broadcast axes (on any backend).
        const grads = !['maximum', 'minimum', 'squaredDifference'].includes(name) || sa.join() === sb.join();
        cases.push([
          `${name} ${sa} ${sb}`,
          () => (grads ? valueAndGrads(op, [rand(sa, 35), rand(sb, 36)]) : [op(rand(sa, 35), rand(sb, 36))]),
        ]);
      }
    await check(cases, 'binary');
  });

  test('elementwise unary ops and their gradients', async () => {
    const ops: Array<[string, (x: tf.Tensor) => tf.Tensor]> = [
      ['relu', tf.relu],
      ['neg', tf.neg],
      ['square', tf.square],
      ['sqrt', (x) => tf.sqrt(tf.add(tf.abs(x), 0.1))],
      ['rsqrt', (x) => tf.rsqrt(tf.add(tf.abs(x), 0.1))],
      ['exp', tf.exp],
      ['log', (x) => tf.log(tf.add(tf.abs(x), 0.1))],
      ['abs', tf.abs],
      ['sigmoid', tf.sigmoid],
      ['tanh', tf.tanh],
      ['relu6', (x) => tf.relu6(tf.mul(x, 8))],
      ['leakyRelu', (x) => tf.leakyRelu(x, 0.3)],
      ['reciprocal', (x) => tf.reciprocal(tf.add(tf.abs(x), 0.5))],
    ];
    await check(
      ops.map(([name, op]) => [name, () => valueAndGrads(op, [rand([3, 4, 5], 37)])]),
      'unary',
    );
    expect(calls.get('binary') ?? 0).toBeGreaterThan(0);
  });

  test('reductions over contiguous and non-contiguous axes, keepDims, and gradients', async () => {
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [];
    const x = () => rand([3, 4, 5, 6], 38);
    for (const axes of [[0], [1], [3], [0, 1, 2], [1, 2], [0, 2], [0, 1, 2, 3]])
      for (const keep of [false, true]) {
        cases.push([`sum ${axes} keep=${keep}`, () => valueAndGrads((t) => tf.sum(t, axes, keep), [x()])]);
        cases.push([`mean ${axes} keep=${keep}`, () => valueAndGrads((t) => tf.mean(t, axes, keep), [x()])]);
        cases.push([`max ${axes} keep=${keep}`, () => tf.max(x(), axes, keep)]);
        cases.push([`min ${axes} keep=${keep}`, () => tf.min(x(), axes, keep)]);
      }
    await check(cases, 'reduce');
  });

  test('transpose, slice, strided slice and pad (and gradients)', async () => {
    const x = () => rand([3, 4, 5, 2], 39);
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [
      ['transpose 0312', () => valueAndGrads((t) => tf.transpose(t, [0, 3, 1, 2]), [x()])],
      ['transpose 3210', () => tf.transpose(x(), [3, 2, 1, 0])],
      ['slice', () => valueAndGrads((t) => tf.slice(t, [1, 0, 2, 0], [2, 3, -1, 1]), [x()])],
      ['stridedSlice step 2', () => tf.stridedSlice(x(), [0, 1, 0, 0], [3, 4, 5, 2], [1, 2, 2, 1])],
      [
        'stridedSlice shrink',
        () => tf.stridedSlice(x(), [1, 0, 0, 0], [2, 4, 5, 2], [1, 1, 1, 1], 0, 0, 0, 0, 1),
      ],
      [
        'stridedSlice begin/end masks',
        () => tf.stridedSlice(x(), [1, 1, 1, 0], [0, 3, 0, 2], [2, 1, 2, 1], 0b0101, 0b0101),
      ],
      [
        'pad',
        () =>
          valueAndGrads(
            (t) =>
              tf.pad(
                t,
                [
                  [0, 1],
                  [2, 0],
                  [0, 0],
                  [3, 1],
                ],
                0.5,
              ),
            [x()],
          ),
      ],
      [
        'pad channels (option-A shortcut)',
        () =>
          tf.pad(rand([2, 4, 4, 16], 40), [
            [0, 0],
            [0, 0],
            [0, 0],
            [8, 8],
          ]),
      ],
    ];
    await check(cases, 'gather');
    expect(calls.get('pad') ?? 0).toBeGreaterThan(0);
  });

  test('large tensors (split into chunks across threads): elementwise, reductions, copies, pooling, batch norm', async () => {
    const big = () => rand([2, 64, 64, 16], 45); // 131k elements: two of the addon's 64k-element chunks
    const cases: Array<[string, () => tf.Tensor | tf.Tensor[]]> = [
      [
        'add per-channel + relu grads',
        () => valueAndGrads((a, b) => tf.relu(tf.add(a!, b!)), [big(), rand([16], 46)]),
      ],
      [
        'mul same shape grads',
        () => valueAndGrads((a, b) => tf.mul(a!, b!), [big(), rand([2, 64, 64, 16], 47)]),
      ],
      ['square/exp', () => valueAndGrads((a) => tf.exp(tf.square(a!)), [big()])],
      ['sum over N,H,W (per-channel)', () => valueAndGrads((a) => tf.sum(a!, [0, 1, 2]), [big()])],
      ['sum over C (per-pixel)', () => tf.sum(big(), [3])],
      ['max over H,W', () => tf.max(big(), [1, 2])],
      [
        'mean over H,W grads (global average pooling)',
        () => valueAndGrads((a) => tf.mean(a!, [1, 2]), [big()]),
      ],
      ['transpose', () => tf.transpose(big(), [0, 3, 1, 2])],
      [
        'slice + pad (option-A shortcut)',
        () =>
          valueAndGrads(
            (a) =>
              tf.pad(tf.slice(a!, [0, 1, 1, 0], [2, 62, 62, 16]), [
                [0, 0],
                [0, 0],
                [0, 0],
                [8, 8],
              ]),
            [big()],
          ),
      ],
      [
        // Chunks start mid-tensor, inside padded rows: the row odometers must resume there.
        'pad every axis + strided slice',
        () =>
          valueAndGrads(
            (a) =>
              tf.pad(
                a!,
                [
                  [1, 0],
                  [2, 1],
                  [0, 3],
                  [1, 2],
                ],
                -2,
              ),
            [big()],
          ),
      ],
      ['strided slice', () => tf.stridedSlice(big(), [0, 1, 0, 2], [2, 64, 63, 16], [1, 2, 3, 2])],
      ['maxPool grads', () => valueAndGrads((a) => tf.maxPool(a as tf.Tensor4D, 3, 2, 'same'), [big()])],
      ['avgPool grads', () => valueAndGrads((a) => tf.avgPool(a as tf.Tensor4D, 2, 2, 'valid'), [big()])],
      [
        'moments + batchNorm grads',
        () =>
          valueAndGrads(
            (x, g, b) => {
              const { mean, variance } = tf.moments(x!, [0, 1, 2]);
              return tf.batchNorm(x!, mean, variance, b, g, 1e-5);
            },
            [big(), rand([16], 48), rand([16], 49)],
          ),
      ],
    ];
    await check(cases, 'reduce', 1e-4);
  });
});
