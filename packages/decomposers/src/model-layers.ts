/**
 * The conv / dense kernel shapes of flatrank's models, derived from their architectures
 * (packages/trainers/src/models/build.ts; a trainers test checks them against the built TF.js
 * models), and the shape-only plan of a compression over them: which layers it targets and the
 * ranks it gives each. Lets a spec be checked before any trial runs, without TensorFlow.js.
 */
import {
  DATASET_INPUTS,
  MODELS,
  UnknownNameError,
  ValidationError,
  type CompressionConfig,
  type DatasetName,
  type ModelName,
  type RankPolicy,
} from '@flatrank/protocol';
import { checkAllocationTarget } from './allocation/index.js';
import { kernelDimsFromShape } from './kernel.js';
import { modelRatioFraction } from './model-ratio.js';
import { planShape, resolveRanks } from './plan.js';
import { selectTargets, type TargetableLayer } from './targets.js';
import type { DecomposeOptions, LayerGeometry } from './types.js';

/** One conv or dense layer, as the trainers' convLayers describes it. */
export interface ModelLayer extends TargetableLayer {
  /** conv HWIO [kh, kw, S, T]; dense [1, 1, in, out] (as a 1x1 conv). */
  kernelShape: [number, number, number, number];
  strides: [number, number];
  padding: 'same' | 'valid';
  /** Spatial size [h, w] of the layer's input ([1, 1] for dense), for multiply-add counts. */
  inputSize: [number, number];
  /** Trainable weights that belong to the layer: the kernel, its bias, or its batch norm's scale and offset. */
  trainableParams: number;
}

type Shape3 = readonly [number, number, number];

/** The conv and dense layers of `model` built for `dataset`'s input, in model order. */
export function modelLayers(model: ModelName, dataset: DatasetName): ModelLayer[] {
  const input = DATASET_INPUTS[dataset];
  if (!input) throw new ValidationError('dataset', `dataset: unknown dataset ${JSON.stringify(dataset)}`);
  return modelLayersFor(model, input.imageShape, input.numClasses);
}

/** The conv and dense layers of `model` for an input of [h, w, c] and `numClasses` outputs. */
export function modelLayersFor(model: ModelName, inputShape: Shape3, numClasses: number): ModelLayer[] {
  const out: ModelLayer[] = [];
  // LeNet-5's convs have biases; the ResNets' and VGG-small's are followed by batch norm instead.
  const convExtra = model === 'lenet5' ? 1 : 2;
  // The spatial size of the next layer's input, as the layers below change it.
  let [h, w] = inputShape;
  const conv = (
    name: string,
    k: number,
    s: number,
    t: number,
    stride = 1,
    padding: 'same' | 'valid' = 'same',
  ): void => {
    out.push({
      name,
      kind: 'conv',
      kernelShape: [k, k, s, t],
      strides: [stride, stride],
      padding,
      inputSize: [h, w],
      isFirst: !out.some((l) => l.kind === 'conv'),
      trainableParams: k * k * s * t + convExtra * t,
    });
    [h, w] =
      padding === 'same'
        ? [Math.ceil(h / stride), Math.ceil(w / stride)]
        : [Math.floor((h - k) / stride) + 1, Math.floor((w - k) / stride) + 1];
  };
  const dense = (name: string, n: number, m: number): void => {
    out.push({
      name,
      kind: 'dense',
      kernelShape: [1, 1, n, m],
      strides: [1, 1],
      padding: 'valid',
      inputSize: [1, 1],
      isFirst: false,
      trainableParams: n * m + m,
    });
  };
  // 2x2 max-pooling with stride 2 and 'valid' padding (the tfjs default) floors odd sizes.
  const pool = (v: number): number => Math.floor(v / 2);
  const c = inputShape[2];
  switch (model) {
    case 'lenet5': {
      // 28x28 inputs pad the first conv 'same' (the 32x32 network); 32x32 inputs use 'valid'.
      const same = h < 32 || w < 32;
      conv('conv1', 5, c, 6, 1, same ? 'same' : 'valid');
      [h, w] = [pool(h), pool(w)];
      conv('conv2', 5, 6, 16, 1, 'valid');
      [h, w] = [pool(h), pool(w)];
      dense('fc1', h * w * 16, 120);
      dense('fc2', 120, 84);
      dense('fc3', 84, numClasses);
      return out;
    }
    case 'resnet8':
    case 'resnet20':
    case 'resnet32':
    case 'resnet56': {
      const n = { resnet8: 1, resnet20: 3, resnet32: 5, resnet56: 9 }[model];
      conv('conv1', 3, c, 16);
      let inC = 16;
      [16, 32, 64].forEach((width, s) => {
        for (let k = 0; k < n; k++) {
          const p = `s${s + 1}b${k + 1}`;
          conv(`${p}_conv1`, 3, inC, width, s > 0 && k === 0 ? 2 : 1);
          conv(`${p}_conv2`, 3, width, width);
          inC = width;
        }
      });
      dense('fc', 64, numClasses);
      return out;
    }
    case 'vgg-small': {
      let inC = c;
      let i = 0;
      for (const width of [128, 256, 512]) {
        for (let r = 0; r < 2; r++) {
          conv(`conv${++i}`, 3, inC, width);
          inC = width;
        }
        [h, w] = [pool(h), pool(w)];
      }
      dense('fc', h * w * 512, numClasses);
      return out;
    }
    default:
      throw new UnknownNameError('model', String(model), MODELS);
  }
}

/** One targeted layer of a compression plan. */
export interface PlannedLayer {
  layer: ModelLayer;
  options: Omit<DecomposeOptions, 'rank'>;
  /** The ranks the policy gives this layer (null for energy / vbmf / allocate: they need the kernel values). */
  ranks: number[] | null;
}

/**
 * Per-layer decomposition options of a compression, as the trainers apply them: dense layers
 * always use the lowered SVD (a Tucker pair [R_S, R_T] becomes rank R_T there); the first conv
 * under tucker2 uses Tucker-1.
 */
export function layerDecomposeOptions(c: CompressionConfig, layer: ModelLayer): DecomposeOptions {
  if (layer.kind === 'dense') {
    const rank: RankPolicy = c.rank.kind === 'ranks' ? { kind: 'rank', rank: c.rank.ranks[1] } : c.rank;
    return { method: 'svd', scheme: 'lowered', rank };
  }
  const o: DecomposeOptions = { method: c.decomposition, rank: c.rank };
  if (c.decomposition === 'svd') o.scheme = c.scheme ?? 'lowered';
  if (c.decomposition === 'tiled-svd') {
    o.scheme = 'lowered';
    o.tile = c.tile;
  }
  if (c.order !== undefined) o.order = c.order;
  if (c.decomposition === 'tucker2') o.tucker = { ...c.tucker, firstLayer: layer.isFirst };
  if (c.decomposition === 'cp') o.cp = { ...c.cp };
  return o;
}

/**
 * The shape-only plan of a compression over a model's layers: target selection, scheme / tile
 * checks and rank policies (model-ratio resolved over the targets). Throws the decomposers' typed
 * errors (RankError, ShapeError, ValidationError, UnknownNameError) with the layer in the message
 * and `context.layer`, exactly where a trial would fail before training.
 */
export function planModelCompression(layers: readonly ModelLayer[], c: CompressionConfig): PlannedLayer[] {
  const chosen = selectTargets(layers, c.layers);
  if (chosen.length === 0)
    throw new ValidationError('compression.layers', 'compression.layers: selects no layer of the model');
  let policies: RankPolicy[] = chosen.map(() => c.rank);
  if (c.rank.kind === 'model-ratio') {
    // The reported whole-model basis: every trainable weight; all but the targeted kernels count on both sides.
    const targetedKernels = chosen.reduce((s, l) => s + l.kernelShape.reduce((a, b) => a * b, 1), 0);
    const untargetedParams = layers.reduce((s, l) => s + l.trainableParams, 0) - targetedKernels;
    const specs = chosen.map((l) => {
      const { rank: _rank, ...options } = layerDecomposeOptions(c, l);
      return { name: l.name, kernelShape: kernelShapeOf(l), options };
    });
    policies = modelRatioFraction(specs, c.rank.ratio, { untargetedParams }).policies;
  }
  if (c.rank.kind === 'allocate') {
    // Only the budget can be checked without kernel values: the smallest model must meet it.
    const targetedKernels = chosen.reduce((s, l) => s + l.kernelShape.reduce((a, b) => a * b, 1), 0);
    const untargetedParams = layers.reduce((s, l) => s + l.trainableParams, 0) - targetedKernels;
    const untargetedMacs = layers.filter((l) => !chosen.includes(l)).reduce((s, l) => s + layerMacs(l), 0);
    const specs = chosen.map((l) => {
      const { rank: _rank, ...options } = layerDecomposeOptions({ ...c, rank: { kind: 'rank', rank: 1 } }, l);
      return { name: l.name, kernelShape: kernelShapeOf(l), options, geometry: geometryOf(l) };
    });
    checkAllocationTarget(specs, c.rank, { untargetedParams, untargetedMacs });
    policies = chosen.map(() => ({ kind: 'rank', rank: 1 }));
  }
  return chosen.map((layer, i) => {
    const { rank: layerRank, ...options } = layerDecomposeOptions(
      { ...c, rank: policies[i]! },
      layer,
    ) as DecomposeOptions & {
      rank: RankPolicy;
    };
    try {
      const dims = kernelDimsFromShape(kernelShapeOf(layer), 'kernelShape');
      const shape = planShape(dims, options);
      const needsValues =
        layerRank.kind === 'energy' || layerRank.kind === 'vbmf' || c.rank.kind === 'allocate';
      const ranks = needsValues ? null : resolveRanks(null, dims, shape, layerRank).ranks;
      return { layer, options, ranks };
    } catch (e) {
      if (e instanceof ValidationError) throw inLayer(e, layer);
      throw e;
    }
  });
}

function kernelShapeOf(l: ModelLayer): number[] {
  return l.kind === 'dense' ? [l.kernelShape[2], l.kernelShape[3]] : [...l.kernelShape];
}

/** The layer's convolution settings and input size (multiply-add counts). */
export function geometryOf(l: ModelLayer): LayerGeometry {
  return { strides: l.strides, padding: l.padding, inputSize: l.inputSize };
}

/** Multiply-adds of one example through the layer (conv: output positions x kernel size; dense: in x out). */
function layerMacs(l: ModelLayer): number {
  const k = l.kernelShape.reduce((a, b) => a * b, 1);
  if (l.kind === 'dense') return k;
  const out = l.inputSize.map((v, i) =>
    l.padding === 'same'
      ? Math.ceil(v / l.strides[i]!)
      : Math.floor((v - l.kernelShape[i]!) / l.strides[i]!) + 1,
  );
  return out[0]! * out[1]! * k;
}

/** The same typed error, its message prefixed with the layer it is about. */
function inLayer(e: ValidationError, layer: ModelLayer): ValidationError {
  const Ctor = e.constructor as new (field: string, message: string, o: object) => ValidationError;
  const what = `layer ${layer.name} (${layer.kind} ${layer.kernelShape.join('x')})`;
  const message = `${what}: ${e.message}`;
  // UnknownNameError has another constructor signature: keep its class only where it fits.
  if (e instanceof UnknownNameError)
    return new ValidationError(e.field, message, {
      code: e.code,
      cause: e,
      context: { ...e.context, layer: layer.name },
    });
  return new Ctor(e.field, message, { cause: e, context: { ...e.context, layer: layer.name } });
}
