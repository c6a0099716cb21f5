/**
 * The floating-point work of one training step, counted from a model's layer shapes: what the
 * training bench divides by the step time (achieved GFLOP/s) and by the machine's peak.
 *
 * Counted: the multiply-adds (2 flops each) of every Conv2D, DepthwiseConv2D and Dense layer in
 *   - the forward pass,
 *   - the gradient with respect to the kernel (as many multiply-adds as the forward pass), and
 *   - the gradient with respect to the layer's input (as many again), except where nothing
 *     upstream of the layer has a trainable weight: the first conv's input is the image, whose
 *     gradient neither TF.js (it prunes the backward graph to the paths from the variables) nor
 *     PyTorch (the input does not require grad) computes.
 * Not counted: biases, batch norm, activations, pooling, residual adds, the loss and the optimizer
 * update (each O(activations or weights), memory-bound, a few percent of the flops of a ResNet).
 * Both the flatrank rows and the PyTorch rows of a net divide the same count.
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';

type Layer = LayersModel['layers'][number];

export interface LayerFlops {
  name: string;
  kind: 'conv' | 'depthwise' | 'dense';
  /** Multiply-adds of one example's forward pass through the layer. */
  macs: number;
  /** Whether the backward pass computes the gradient with respect to the layer's input. */
  inputGradient: boolean;
}

export interface TrainingFlops {
  layers: LayerFlops[];
  /** Multiply-adds of one example's forward pass over the counted layers. */
  forwardMacs: number;
  /** Flops of one example: 2 x (forward + kernel-gradient + input-gradient multiply-adds). */
  trainingFlopsPerExample: number;
  /** Flops of one example's forward pass (inference): 2 x forwardMacs. */
  inferenceFlopsPerExample: number;
}

// Layers whose trainable weights cost no counted flops: batch norm (a scale and an offset per channel).
const UNCOUNTED_WEIGHTED = new Set(['BatchNormalization']);

function dims(shape: ReadonlyArray<number | null>, what: string): number[] {
  const out = shape.map((d) => {
    if (d === null || !Number.isFinite(d))
      throw new Error(`flops: ${what} has an unknown dimension (${String(d)})`);
    return d;
  });
  return out;
}

function singleShape(s: Layer['outputShape'], what: string): number[] {
  const shape = Array.isArray(s[0]) ? (s[0] as Array<number | null>) : (s as Array<number | null>);
  return dims(shape.slice(1), what); // without the batch dimension
}

/** The layers whose outputs `layer` reads (through all of its call sites). */
function upstream(layer: Layer): Layer[] {
  return layer.inboundNodes.flatMap((n) => n.inboundLayers);
}

/** Forward multiply-adds of one example through a counted layer, or null for other layers. */
function layerMacs(layer: Layer): { kind: LayerFlops['kind']; macs: number } | null {
  const cls = layer.getClassName();
  const kernel = layer.weights[0];
  const out = singleShape(layer.outputShape, `layer ${layer.name}'s output`);
  if (cls === 'Conv2D') {
    const [kh, kw, ci, co] = dims(kernel!.shape, `layer ${layer.name}'s kernel`) as [
      number,
      number,
      number,
      number,
    ];
    return { kind: 'conv', macs: out[0]! * out[1]! * kh * kw * ci * co };
  }
  if (cls === 'DepthwiseConv2D') {
    const [kh, kw, ci, mult] = dims(kernel!.shape, `layer ${layer.name}'s kernel`) as [
      number,
      number,
      number,
      number,
    ];
    return { kind: 'depthwise', macs: out[0]! * out[1]! * kh * kw * ci * mult };
  }
  if (cls === 'Dense') {
    const [ci, co] = dims(kernel!.shape, `layer ${layer.name}'s kernel`) as [number, number];
    // A dense layer on a rank > 2 input applies to every position of the inner dimensions.
    const positions = out.slice(0, -1).reduce((a, b) => a * b, 1);
    return { kind: 'dense', macs: positions * ci * co };
  }
  return null;
}

/**
 * The flops of one training step per example of `model`. Throws on a layer with trainable weights
 * that it has no rule for (rather than silently counting it as free).
 */
export function trainingFlops(model: LayersModel): TrainingFlops {
  // model.layers is in topological order: a layer's output depends on a trainable weight when it
  // has one or when any layer it reads from does.
  const dependsOnWeights = new Set<Layer>();
  const layers: LayerFlops[] = [];
  for (const layer of model.layers) {
    const inputNeedsGradient = upstream(layer).some((u) => dependsOnWeights.has(u));
    const counted = layerMacs(layer);
    if (counted) layers.push({ name: layer.name, ...counted, inputGradient: inputNeedsGradient });
    else if (layer.trainableWeights.length > 0 && !UNCOUNTED_WEIGHTED.has(layer.getClassName()))
      throw new Error(
        `flops: layer ${layer.name} (${layer.getClassName()}) has trainable weights but no flop rule`,
      );
    if (inputNeedsGradient || layer.trainableWeights.length > 0) dependsOnWeights.add(layer);
  }
  const forwardMacs = layers.reduce((s, l) => s + l.macs, 0);
  const backwardMacs = layers.reduce((s, l) => s + l.macs * (l.inputGradient ? 2 : 1), 0);
  return {
    layers,
    forwardMacs,
    trainingFlopsPerExample: 2 * (forwardMacs + backwardMacs),
    inferenceFlopsPerExample: 2 * forwardMacs,
  };
}
