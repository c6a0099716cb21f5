/**
 * Builds the factored (exported) model: a copy of a LayersModel's graph in which each targeted conv
 * / dense layer is replaced by a chain of smaller layers (no nonlinearity in between; the original
 * activation and bias go on the last one), every other layer cloned with its weights.
 *
 * The graph is rebuilt by walking model.layers (topologically ordered) and re-applying a clone of
 * every layer to the mapped inputs, so any functional model (residual adds, custom registered
 * layers) is supported as long as no layer is shared between two call sites.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ShapeError, ValidationError } from '@flatrank/protocol';

/** One layer of a factored chain. Kernels are HWIO; depthwise kernels are [h, w, channels, 1]. */
export interface ChainStep {
  kind: 'conv2d' | 'depthwise' | 'dense';
  /** conv2d: [h, w, in, out]; depthwise: [h, w, channels, 1]; dense: [in, out]. */
  kernelShape: number[];
  kernel: Float32Array;
  strides: [number, number];
  padding: 'same' | 'valid';
  bias: Float32Array | null;
}

type AnyLayer = tfl.layers.Layer;
interface GraphNode {
  inputTensors: tfl.SymbolicTensor[];
  outputTensors: tfl.SymbolicTensor[];
}

function cloneLayer(layer: AnyLayer): AnyLayer {
  const className = layer.getClassName();
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (!entry)
    throw new ValidationError(
      'model',
      `cannot clone layer ${layer.name}: class ${className} is not registered for serialization`,
    );
  const [cls, fromConfig] = entry;
  return fromConfig(cls, layer.getConfig() as tf.serialization.ConfigDict) as unknown as AnyLayer;
}

function activationOf(layer: AnyLayer): string {
  const a = (layer.getConfig() as { activation?: unknown }).activation;
  return typeof a === 'string' ? a : 'linear';
}

function chainLayers(
  original: AnyLayer,
  steps: readonly ChainStep[],
): Array<{ layer: AnyLayer; weights: tf.Tensor[] }> {
  if (steps.length === 0)
    throw new ValidationError('chain', `empty factored chain for layer ${original.name}`);
  const act = activationOf(original);
  return steps.map((s, i) => {
    const last = i === steps.length - 1;
    const name = `${original.name}_f${i + 1}`;
    const useBias = s.bias !== null;
    const common = { name, useBias, activation: (last ? act : 'linear') as 'linear' };
    const kernel = tf.tensor(s.kernel, s.kernelShape);
    const weights = useBias ? [kernel, tf.tensor1d(s.bias!)] : [kernel];
    if (s.kind === 'dense') {
      if (s.kernelShape.length !== 2)
        throw new ShapeError(
          'chain.kernelShape',
          `dense step of ${original.name}: kernel must be [in, out], got [${s.kernelShape}]`,
        );
      return { layer: tfl.layers.dense({ ...common, units: s.kernelShape[1]! }), weights };
    }
    if (s.kernelShape.length !== 4)
      throw new ShapeError(
        'chain.kernelShape',
        `conv step of ${original.name}: kernel must be HWIO, got [${s.kernelShape}]`,
      );
    const [h, w, , o] = s.kernelShape as [number, number, number, number];
    if (s.kind === 'depthwise') {
      if (o !== 1)
        throw new ShapeError(
          'chain.kernelShape',
          `depthwise step of ${original.name}: depth multiplier must be 1, got ${o}`,
        );
      return {
        layer: tfl.layers.depthwiseConv2d({
          ...common,
          kernelSize: [h, w],
          strides: s.strides,
          padding: s.padding,
          depthMultiplier: 1,
        }),
        weights,
      };
    }
    return {
      layer: tfl.layers.conv2d({
        ...common,
        filters: o,
        kernelSize: [h, w],
        strides: s.strides,
        padding: s.padding,
      }),
      weights,
    };
  });
}

/**
 * @param replacements layer name -> chain replacing it (layers not named are cloned unchanged).
 */
export function buildFactoredModel(
  model: tfl.LayersModel,
  replacements: ReadonlyMap<string, readonly ChainStep[]>,
  name = `${model.name}_factored`,
): tfl.LayersModel {
  for (const n of replacements.keys()) {
    if (!model.layers.some((l) => l.name === n))
      throw new ValidationError(
        'layers',
        `cannot replace layer ${JSON.stringify(n)}: no such layer in model ${model.name}`,
      );
  }
  const map = new Map<number, tfl.SymbolicTensor>();
  const newInputs = model.inputs.map((t) => {
    const ni = tfl.input({ shape: t.shape.slice(1) as number[], dtype: t.dtype, name: t.name.split('/')[0] });
    map.set(t.id, ni);
    return ni;
  });
  const pending: Array<() => void> = [];
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') continue;
    const nodes = layer.inboundNodes as unknown as GraphNode[];
    if (nodes.length !== 1)
      throw new ValidationError(
        'model',
        `layer ${layer.name} is used at ${nodes.length} call sites; shared layers are not supported by the factored export`,
      );
    const node = nodes[0]!;
    const inputs = node.inputTensors.map((t) => {
      const m = map.get(t.id);
      if (!m)
        throw new ValidationError(
          'model',
          `layer ${layer.name}: input ${t.name} not produced earlier in the graph`,
        );
      return m;
    });
    const arg = inputs.length === 1 ? inputs[0]! : inputs;
    let out: tfl.SymbolicTensor | tfl.SymbolicTensor[];
    const chain = replacements.get(layer.name);
    if (chain) {
      let h = arg as tfl.SymbolicTensor;
      for (const { layer: cl, weights } of chainLayers(layer, chain)) {
        h = cl.apply(h) as tfl.SymbolicTensor;
        pending.push(() => {
          cl.setWeights(weights);
          tf.dispose(weights);
        });
      }
      out = h;
    } else {
      const clone = cloneLayer(layer);
      out = clone.apply(arg) as tfl.SymbolicTensor | tfl.SymbolicTensor[];
      pending.push(() => {
        const w = layer.getWeights();
        if (w.length) clone.setWeights(w);
      });
    }
    const outs = Array.isArray(out) ? out : [out];
    node.outputTensors.forEach((t, i) => map.set(t.id, outs[i]!));
  }
  const outputs = model.outputs.map((t) => map.get(t.id)!);
  const result = tfl.model({
    inputs: newInputs.length === 1 ? newInputs[0]! : newInputs,
    outputs: outputs.length === 1 ? outputs[0]! : outputs,
    name,
  });
  for (const p of pending) p();
  return result;
}
