/** Describes the conv and dense layers of a model (for layer selection and multiply-add counts). */
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';

export interface ConvLayerInfo {
  name: string;
  kind: 'conv' | 'dense';
  /** HWIO. Dense layers are reported as 1x1 convs: [1, 1, in, out]. */
  kernelShape: [number, number, number, number];
  strides: [number, number];
  padding: 'same' | 'valid';
  /** Spatial size [h, w] of the layer's input and output ([1, 1] for dense). */
  inputShape: [number, number];
  outputShape: [number, number];
  hasBias: boolean;
  /** Position in the returned list (model order). */
  index: number;
  /** Position in model.layers. */
  layerIndex: number;
  /** True for the first conv of the model (kept uncompressed by the paper's default policy). */
  isFirst: boolean;
  /** Weights (kernel + bias). */
  params: number;
  /** Multiply-adds of one example: h_out * w_out * kh * kw * in * out (in * out for dense). */
  macs: number;
}

const pair = (v: unknown): [number, number] =>
  Array.isArray(v) ? [Number(v[0]), Number(v[1] ?? v[0])] : [Number(v), Number(v)];

export function convLayers(model: LayersModel): ConvLayerInfo[] {
  const out: ConvLayerInfo[] = [];
  let seenConv = false;
  model.layers.forEach((layer, layerIndex) => {
    const cls = layer.getClassName();
    if (cls !== 'Conv2D' && cls !== 'Dense') return;
    const cfg = layer.getConfig() as Record<string, unknown>;
    const hasBias = cfg['useBias'] !== false;
    const kernel = layer.getWeights()[0];
    if (!kernel) return;
    const inShape = (layer.input as SymbolicTensor).shape as Array<number | null>;
    const outShape = layer.outputShape as Array<number | null>;
    if (cls === 'Conv2D') {
      const [kh, kw, ci, co] = kernel.shape as [number, number, number, number];
      const oh = outShape[1] ?? 0;
      const ow = outShape[2] ?? 0;
      out.push({
        name: layer.name,
        kind: 'conv',
        kernelShape: [kh, kw, ci, co],
        strides: pair(cfg['strides']),
        padding: cfg['padding'] === 'same' ? 'same' : 'valid',
        inputShape: [inShape[1] ?? 0, inShape[2] ?? 0],
        outputShape: [oh, ow],
        hasBias,
        index: out.length,
        layerIndex,
        isFirst: !seenConv,
        params: kh * kw * ci * co + (hasBias ? co : 0),
        macs: oh * ow * kh * kw * ci * co,
      });
      seenConv = true;
    } else {
      const [ci, co] = kernel.shape as [number, number];
      out.push({
        name: layer.name,
        kind: 'dense',
        kernelShape: [1, 1, ci, co],
        strides: [1, 1],
        padding: 'valid',
        inputShape: [1, 1],
        outputShape: [1, 1],
        hasBias,
        index: out.length,
        layerIndex,
        isFirst: false,
        params: ci * co + (hasBias ? co : 0),
        macs: ci * co,
      });
    }
  });
  return out;
}

/** Multiply-adds of one forward pass of one example over all conv and dense layers. */
export function modelMacs(model: LayersModel): number {
  return convLayers(model).reduce((a, l) => a + l.macs, 0);
}
