/**
 * The model zoo, built with the tfjs-layers functional API (tf.LayersModel) so trainers can read
 * and write kernels with getWeights / setWeights and save / load models. Every model outputs
 * LOGITS (no softmax). Initialisation is seeded per layer: the same seed gives the same weights.
 *
 * - lenet5: LeCun et al. (1998) layout, conv5x5(6) - pool - conv5x5(16) - pool - fc120 - fc84 -
 *   fc(classes), with ReLU and max-pooling (the common modern form) and LeCun-uniform init
 *   (U(+-sqrt(3 / fan_in)), LeCun et al. "Efficient BackProp"). For 28x28 input the first conv pads
 *   'same', which makes it the 32x32 network exactly (61,706 parameters for 1 channel, 10 classes).
 * - resnet8/20/32/56: He et al. (2016) CIFAR ResNets, 6n+2 layers, 3 stages of n basic blocks with
 *   16/32/64 channels, batch norm, option-A (parameter-free) shortcuts, global average pooling,
 *   fc; He-normal init (He et al. 2015), BN gamma 1 / beta 0. resnet8 is n = 1 (small CPU studies).
 * - vgg-small: the VGG-Small of the CIFAR quantisation / low-rank literature (Zhang et al. 2018,
 *   LQ-Nets): 2x conv3x3(128) - pool - 2x conv3x3(256) - pool - 2x conv3x3(512) - pool - fc, each
 *   conv followed by batch norm and ReLU; He-normal init.
 */
import {
  layers,
  model as functionalModel,
  input,
  initializers,
  type LayersModel,
  type SymbolicTensor,
} from '@tensorflow/tfjs-layers';
import { MODELS, UnknownNameError, ValidationError, type ModelName } from '@flatrank/protocol';
import { mixSeed } from '../data/rng.js';
import { ShortcutA } from './shortcut.js';
import { batchNormalization } from './batch-normalization.js';

export interface BuildModelOptions {
  /** [h, w, c] of one input image. */
  inputShape: [number, number, number];
  numClasses: number;
  seed: number;
}

/** Batch-norm settings of PyTorch's defaults (momentum 0.1 = Keras 0.9, eps 1e-5), as in the papers' reimplementations. */
const BN = { momentum: 0.9, epsilon: 1e-5 } as const;

export function buildModel(name: ModelName, opts: BuildModelOptions): LayersModel {
  if (!(MODELS as readonly string[]).includes(name)) throw new UnknownNameError('model', name, MODELS);
  const { inputShape, numClasses, seed } = opts;
  if (
    !Array.isArray(inputShape) ||
    inputShape.length !== 3 ||
    inputShape.some((d) => !Number.isInteger(d) || d < 1)
  )
    throw new ValidationError(
      'inputShape',
      `inputShape: must be [h, w, c] positive integers, got ${JSON.stringify(inputShape)}`,
    );
  if (!Number.isInteger(numClasses) || numClasses < 2)
    throw new ValidationError('numClasses', `numClasses: must be an integer >= 2, got ${numClasses}`);
  if (!Number.isInteger(seed) || seed < 0)
    throw new ValidationError('seed', `seed: must be a non-negative integer, got ${seed}`);
  const b = new Builder(seed);
  switch (name) {
    case 'lenet5':
      return lenet5(b, inputShape, numClasses);
    case 'resnet8':
      return resnet(b, 'resnet8', 1, inputShape, numClasses);
    case 'resnet20':
      return resnet(b, 'resnet20', 3, inputShape, numClasses);
    case 'resnet32':
      return resnet(b, 'resnet32', 5, inputShape, numClasses);
    case 'resnet56':
      return resnet(b, 'resnet56', 9, inputShape, numClasses);
    case 'vgg-small':
      return vggSmall(b, inputShape, numClasses);
  }
}

/** Hands every initialiser its own seed derived from (model seed, layer counter). */
class Builder {
  private k = 0;
  constructor(private readonly seed: number) {}
  /** tfjs seeds are doubles fed to seedrandom; keep them in int32 range. */
  nextSeed(): number {
    return mixSeed(this.seed, ++this.k) % 2147483647;
  }
  he() {
    return initializers.heNormal({ seed: this.nextSeed() });
  }
  lecun() {
    return initializers.leCunUniform({ seed: this.nextSeed() });
  }
}

function lenet5(b: Builder, inputShape: [number, number, number], numClasses: number): LayersModel {
  const [h, w] = inputShape;
  const x = input({ shape: inputShape, name: 'input' });
  // 28x28 (MNIST) pads the first conv to act like LeNet-5's 32x32 input.
  const pad = h < 32 || w < 32 ? 'same' : 'valid';
  let y = layers
    .conv2d({
      name: 'conv1',
      filters: 6,
      kernelSize: 5,
      padding: pad,
      activation: 'relu',
      kernelInitializer: b.lecun(),
      biasInitializer: 'zeros',
    })
    .apply(x) as SymbolicTensor;
  y = layers.maxPooling2d({ name: 'pool1', poolSize: 2, strides: 2 }).apply(y) as SymbolicTensor;
  y = layers
    .conv2d({
      name: 'conv2',
      filters: 16,
      kernelSize: 5,
      padding: 'valid',
      activation: 'relu',
      kernelInitializer: b.lecun(),
      biasInitializer: 'zeros',
    })
    .apply(y) as SymbolicTensor;
  y = layers.maxPooling2d({ name: 'pool2', poolSize: 2, strides: 2 }).apply(y) as SymbolicTensor;
  y = layers.flatten({ name: 'flatten' }).apply(y) as SymbolicTensor;
  y = layers
    .dense({ name: 'fc1', units: 120, activation: 'relu', kernelInitializer: b.lecun() })
    .apply(y) as SymbolicTensor;
  y = layers
    .dense({ name: 'fc2', units: 84, activation: 'relu', kernelInitializer: b.lecun() })
    .apply(y) as SymbolicTensor;
  y = layers
    .dense({ name: 'fc3', units: numClasses, kernelInitializer: b.lecun() })
    .apply(y) as SymbolicTensor;
  return functionalModel({ inputs: x, outputs: y, name: 'lenet5' });
}

function convBn(
  b: Builder,
  x: SymbolicTensor,
  name: string,
  filters: number,
  stride: number,
  relu: boolean,
): SymbolicTensor {
  let y = layers
    .conv2d({
      name,
      filters,
      kernelSize: 3,
      strides: stride,
      padding: 'same',
      useBias: false,
      kernelInitializer: b.he(),
    })
    .apply(x) as SymbolicTensor;
  const bn = batchNormalization({ name: name.replace(/conv/, 'bn'), axis: -1, ...BN });
  // The ReLU layer is the batch norm's only consumer: let training steps rectify in the batch-norm
  // kernel (same values; the ReLU layer stays, and costs nothing where the backend fuses).
  bn.fusedRelu = relu;
  y = bn.apply(y) as SymbolicTensor;
  return relu ? (layers.reLU({ name: name.replace(/conv/, 'relu') }).apply(y) as SymbolicTensor) : y;
}

/** Layer names: conv1/bn1/relu1, then s{stage}b{block}_conv1 ... _add, _out, then pool, fc. */
function resnet(
  b: Builder,
  name: string,
  n: number,
  inputShape: [number, number, number],
  numClasses: number,
): LayersModel {
  const x = input({ shape: inputShape, name: 'input' });
  let y = convBn(b, x, 'conv1', 16, 1, true);
  const widths = [16, 32, 64];
  for (let s = 0; s < 3; s++) {
    for (let k = 0; k < n; k++) {
      const stride = s > 0 && k === 0 ? 2 : 1;
      const p = `s${s + 1}b${k + 1}`;
      const inShape = y.shape as Array<number | null>;
      const inC = inShape[3]!;
      let r = convBn(b, y, `${p}_conv1`, widths[s]!, stride, true);
      r = convBn(b, r, `${p}_conv2`, widths[s]!, 1, false);
      let sc = y;
      if (stride !== 1 || inC !== widths[s]) {
        // TF 'same' padding of a stride-2 3x3 conv on an even size pads only at the end, so its
        // windows are centred on odd pixels: sample the shortcut there too.
        const offsetFor = (size: number): number => {
          const before = Math.floor(Math.max((Math.ceil(size / stride) - 1) * stride + 3 - size, 0) / 2);
          return stride > 1 ? Math.min(stride - 1, Math.max(0, 1 - before)) : 0;
        };
        const offset: [number, number] = [offsetFor(inShape[1]!), offsetFor(inShape[2]!)];
        sc = ShortcutA.applyTo(y, { name: `${p}_shortcut`, stride, outChannels: widths[s]!, offset });
      }
      y = layers.add({ name: `${p}_add` }).apply([r, sc]) as SymbolicTensor;
      y = layers.reLU({ name: `${p}_out` }).apply(y) as SymbolicTensor;
    }
  }
  y = layers.globalAveragePooling2d({ name: 'pool' }).apply(y) as SymbolicTensor;
  y = layers
    .dense({ name: 'fc', units: numClasses, kernelInitializer: b.he(), biasInitializer: 'zeros' })
    .apply(y) as SymbolicTensor;
  return functionalModel({ inputs: x, outputs: y, name });
}

function vggSmall(b: Builder, inputShape: [number, number, number], numClasses: number): LayersModel {
  const x = input({ shape: inputShape, name: 'input' });
  let y: SymbolicTensor = x;
  let i = 0;
  for (const width of [128, 256, 512]) {
    for (let r = 0; r < 2; r++) y = convBn(b, y, `conv${++i}`, width, 1, true);
    y = layers.maxPooling2d({ name: `pool${i / 2}`, poolSize: 2, strides: 2 }).apply(y) as SymbolicTensor;
  }
  y = layers.flatten({ name: 'flatten' }).apply(y) as SymbolicTensor;
  y = layers
    .dense({ name: 'fc', units: numClasses, kernelInitializer: b.he(), biasInitializer: 'zeros' })
    .apply(y) as SymbolicTensor;
  return functionalModel({ inputs: x, outputs: y, name: 'vgg-small' });
}
