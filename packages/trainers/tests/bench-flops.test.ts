// The training bench's flop counter (bench/lib/flops.ts): exact counts on a tiny model worked out by
// hand, and on ResNet-20 against its layer-by-layer multiply-adds.
import { beforeAll, describe, expect, test } from 'vitest';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/backend/index.js';
import { buildModel, modelMacs } from '../src/models/index.js';
import { trainingFlops } from '../bench/lib/flops.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

/**
 * input 12x12x2 -> max-pool 2 -> conv 3x3 same 2->3 (+bias) -> batch norm -> relu
 * -> depthwise 3x3 valid x2 -> conv 1x1 stride 2 6->4 -> flatten -> dense 16->5.
 */
function tinyModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [12, 12, 2] });
  let x = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(input) as tfl.SymbolicTensor; // 6x6x2
  x = tfl.layers
    .conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'c1' })
    .apply(x) as tfl.SymbolicTensor; // 6x6x3
  x = tfl.layers.batchNormalization().apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'relu' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers
    .depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'valid', name: 'd1' })
    .apply(x) as tfl.SymbolicTensor; // 4x4x6
  x = tfl.layers
    .conv2d({ filters: 4, kernelSize: 1, strides: 2, padding: 'valid', useBias: false, name: 'c2' })
    .apply(x) as tfl.SymbolicTensor; // 2x2x4
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor; // 16
  const out = tfl.layers.dense({ units: 5, name: 'fc' }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

describe('trainingFlops', () => {
  test('counts every conv, depthwise and dense layer of a tiny model exactly', () => {
    const m = tinyModel();
    const f = trainingFlops(m);
    expect(f.layers).toEqual([
      // c1 reads the pooled image: nothing upstream is trainable, so no input gradient.
      { name: 'c1', kind: 'conv', macs: 6 * 6 * 3 * 3 * 2 * 3, inputGradient: false }, // 1,944
      { name: 'd1', kind: 'depthwise', macs: 4 * 4 * 3 * 3 * 3 * 2, inputGradient: true }, // 864
      { name: 'c2', kind: 'conv', macs: 2 * 2 * 1 * 1 * 6 * 4, inputGradient: true }, // 96
      { name: 'fc', kind: 'dense', macs: 16 * 5, inputGradient: true }, // 80
    ]);
    expect(f.forwardMacs).toBe(2984);
    // forward 2,984 + kernel gradients 2,984 + input gradients 864 + 96 + 80 = 7,008 multiply-adds.
    expect(f.trainingFlopsPerExample).toBe(2 * 7008);
    expect(f.inferenceFlopsPerExample).toBe(2 * 2984);
    m.dispose();
  });

  test('ResNet-20 on 32x32x3: 40,551,040 forward multiply-adds, no input gradient for the first conv only', () => {
    const m = buildModel('resnet20', { inputShape: [32, 32, 3], numClasses: 10, seed: 0 });
    const f = trainingFlops(m);
    // First conv 32*32*27*16; per stage: 6 convs of 2,359,296 at stage 1, and at stages 2 and 3 one
    // stride-2 conv of 1,179,648 then 5 of 2,359,296; the dense layer 64*10.
    const first = 32 * 32 * 27 * 16;
    const expected = first + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296) + 640;
    expect(expected).toBe(40_551_040);
    expect(f.forwardMacs).toBe(expected);
    expect(f.forwardMacs).toBe(modelMacs(m)); // the trainers' own conv + dense count
    expect(f.layers).toHaveLength(20); // 19 convs (option-A shortcuts have none) + the dense layer
    expect(f.layers.filter((l) => !l.inputGradient).map((l) => l.name)).toEqual([f.layers[0]!.name]);
    expect(f.trainingFlopsPerExample).toBe(2 * (3 * expected - first));
    m.dispose();
  });

  test('refuses a layer with trainable weights it has no rule for', () => {
    const input = tfl.input({ shape: [8, 2] });
    const out = tfl.layers
      .conv1d({ filters: 2, kernelSize: 3, name: 'c1d' })
      .apply(input) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: input, outputs: out });
    expect(() => trainingFlops(m)).toThrow(/c1d \(Conv1D\) has trainable weights but no flop rule/);
    m.dispose();
  });
});
