/**
 * The compression engine shared by the three modes: target planning (layer selection + rank
 * policy, with 'model-ratio' resolved over the targeted layers), in-place low-rank distortion of a
 * model's kernels, the factored (exported) model, and per-layer / per-model accounting.
 * All the math is @flatrank/decomposers; this file moves kernels between TF.js and it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { Tensor } from '@flatrank/core';
import {
  allocateDataFree,
  checkAllocationTarget,
  decompose,
  factoredLayer,
  layerCosts,
  layerRecord,
  modelRatioFraction,
  planDecomposition,
  reconstruct,
  type AllocatePolicy,
  type AllocationLayer,
  type DecomposeOptions,
  type KernelDecomposition,
  type LayerGeometry,
  type RankAllocation,
} from '@flatrank/decomposers';
import {
  ValidationError,
  type CompressionConfig,
  type LayerRecord,
  type RankPolicy,
} from '@flatrank/protocol';
import { convLayers, type ConvLayerInfo } from '../models/index.js';
import { selectTargets } from './targets.js';
import { buildFactoredModel, type ChainStep } from './factored-model.js';

export interface CompressionTarget {
  layer: ConvLayerInfo;
  /** Kernel shape as the decomposers take it: conv HWIO [kh, kw, S, T]; dense [in, out]. */
  kernelShape: number[];
  options: DecomposeOptions;
  geometry: LayerGeometry;
  /** EVBMF's raw estimates when fixRanks turned a vbmf policy into fixed ranks (else undefined). */
  rawRanks?: number[] | null;
}

export interface CompressionPlan {
  targets: CompressionTarget[];
  /**
   * model-ratio: the largest uniform fraction reaching the target, from which the per-layer ranks
   * were refined (null for other policies).
   */
  modelRatioFraction: number | null;
  /** All conv / dense layers of the model (targeted or not), for model-level counts. */
  layers: ConvLayerInfo[];
  /**
   * The allocate rank policy, whose ranks are chosen together over the targets (allocation.ts:
   * resolveAllocation, or fixRanks for the data-free criteria); null for other policies.
   */
  allocate: AllocatePolicy | null;
  /** The allocation once resolved (the targets' options then hold its fixed ranks). */
  allocation: RankAllocation | null;
  /** What the whole-model counts hold besides the target kernels: the allocation budget's basis. */
  untargeted: { params: number; macs: number };
}

export interface LayerResult {
  target: CompressionTarget;
  decomposition: KernelDecomposition;
}

function kernelShapeOf(l: ConvLayerInfo): number[] {
  return l.kind === 'dense' ? [l.kernelShape[2], l.kernelShape[3]] : [...l.kernelShape];
}

/**
 * Per-layer decomposition options. Dense layers (includeFc / names) always use the lowered SVD
 * ("FC by SVD"); a Tucker pair [R_S, R_T] becomes rank R_T there. The first conv under tucker2 uses
 * Tucker-1 (Kim et al.). CP seeds derive from the trial seed and the layer position.
 */
function layerOptions(
  c: CompressionConfig,
  l: ConvLayerInfo,
  rank: RankPolicy,
  seed: number,
): DecomposeOptions {
  if (l.kind === 'dense') {
    const r: RankPolicy = rank.kind === 'ranks' ? { kind: 'rank', rank: rank.ranks[1] } : rank;
    return { method: 'svd', scheme: 'lowered', rank: r };
  }
  const base: DecomposeOptions = { method: c.decomposition, rank };
  if (c.decomposition === 'svd') base.scheme = c.scheme ?? 'lowered';
  if (c.decomposition === 'tiled-svd') {
    base.scheme = 'lowered';
    base.tile = c.tile;
  }
  if (c.order !== undefined) base.order = c.order;
  if (c.decomposition === 'tucker2')
    base.tucker = {
      algorithm: c.tucker.algorithm,
      maxIterations: c.tucker.maxIterations,
      tolerance: c.tucker.tolerance,
      firstLayer: l.isFirst,
    };
  if (c.decomposition === 'cp')
    base.cp = {
      init: c.cp.init,
      maxIterations: c.cp.maxIterations,
      tolerance: c.cp.tolerance,
      seed: seed * 1000 + l.index,
    };
  return base;
}

export function planCompression(model: tfl.LayersModel, c: CompressionConfig, seed: number): CompressionPlan {
  const layers = convLayers(model);
  const chosen = selectTargets(layers, c.layers);
  if (chosen.length === 0)
    throw new ValidationError(
      'compression.layers',
      `compression.layers: selects no layer of model ${model.name}`,
    );
  let ranks: RankPolicy[] = chosen.map(() => c.rank);
  let fraction: number | null = null;
  // The basis of the reported whole-model ratio (modelCounts): every trainable weight, i.e. the
  // kernels plus biases and batch-norm scales / offsets; all but the targeted kernels count on
  // both sides. Multiply-adds: every conv / dense layer.
  const targetedKernels = chosen.reduce((s, l) => s + l.kernelShape.reduce((a, b) => a * b, 1), 0);
  const untargeted = {
    params: trainableParams(model) - targetedKernels,
    macs: layers.filter((l) => !chosen.includes(l)).reduce((s, l) => s + l.macs, 0),
  };
  if (c.rank.kind === 'model-ratio') {
    const specs = chosen.map((l) => {
      const { rank: _r, ...options } = layerOptions(c, l, { kind: 'fraction', fraction: 1 }, seed);
      return { name: l.name, kernelShape: kernelShapeOf(l), options };
    });
    const res = modelRatioFraction(specs, c.rank.ratio, { untargetedParams: untargeted.params });
    fraction = res.fraction;
    ranks = res.policies;
  }
  const targets = chosen.map((l, i) => {
    const rank = ranks[i]!;
    const options = layerOptions(c, l, rank, seed);
    const geometry: LayerGeometry = {
      strides: l.strides,
      padding: l.padding,
      inputSize: l.inputShape,
      useBias: l.hasBias,
    };
    return { layer: l, kernelShape: kernelShapeOf(l), options, geometry };
  });
  // Fail early (before any training) on impossible ranks / tiles: planning needs no kernel values
  // except for the energy / vbmf policies, which are resolved at decomposition time, and
  // allocate, whose budget is checked here and whose ranks are chosen from the kernels later.
  const allocate = c.rank.kind === 'allocate' ? c.rank : null;
  if (c.rank.kind !== 'energy' && c.rank.kind !== 'vbmf')
    for (const t of targets)
      planDecomposition(
        new Tensor(new Float32Array(t.kernelShape.reduce((a, b) => a * b, 1)), t.kernelShape),
        allocate ? { ...t.options, rank: 1 } : t.options,
      );
  if (allocate)
    checkAllocationTarget(
      targets.map((t) => ({
        name: t.layer.name,
        kernelShape: t.kernelShape,
        options: t.options,
        geometry: t.geometry,
      })),
      allocate,
      { untargetedParams: untargeted.params, untargetedMacs: untargeted.macs },
    );
  return { targets, modelRatioFraction: fraction, layers, allocate, allocation: null, untargeted };
}

/** The kernel weight of a conv / dense layer (ValidationError when it has none). */
export function kernelVariable(model: tfl.LayersModel, name: string): tfl.LayerVariable {
  const layer = model.getLayer(name);
  const k = layer.weights.find((w) => /(^|\/)kernel(_\d+)?$/.test(w.originalName));
  if (!k) throw new ValidationError('compression.layers', `layer ${name} has no kernel weight`);
  return k;
}

function biasOf(model: tfl.LayersModel, name: string): Tensor | null {
  const b = model.getLayer(name).weights.find((w) => /(^|\/)bias(_\d+)?$/.test(w.originalName));
  return b ? new Tensor(Float64Array.from(b.read().dataSync() as Float32Array), [b.shape[0]!]) : null;
}

/**
 * Resolves data-dependent rank policies (vbmf, energy) once, on the model's current kernels, and
 * fixes the resulting ranks for every later decomposition of the plan. Distortion training calls it
 * before its first distortion, so its ranks are those of the kernels it starts from (for a trained
 * start the ranks decompose + fine-tune would choose, as Kim et al. choose them from the trained
 * model) instead of being re-estimated, and the model's size changing, at every distortion.
 */
export function fixRanks(model: tfl.LayersModel, plan: CompressionPlan): void {
  if (plan.allocate && !plan.allocation) {
    // The data-free allocations read the kernels as they are now; sensitivity was resolved before.
    const budget = { untargetedParams: plan.untargeted.params, untargetedMacs: plan.untargeted.macs };
    applyAllocation(plan, allocateDataFree(allocationLayers(model, plan), plan.allocate, budget));
    return;
  }
  for (const t of plan.targets) {
    const kind = typeof t.options.rank === 'object' && 'kind' in t.options.rank ? t.options.rank.kind : null;
    if (kind !== 'vbmf' && kind !== 'energy') continue;
    const v = kernelVariable(model, t.layer.name);
    const kernel = new Tensor(Float32Array.from(v.read().dataSync() as Float32Array), t.kernelShape);
    const p = planDecomposition(kernel, t.options);
    t.rawRanks = p.rawRanks;
    t.options = {
      ...t.options,
      rank:
        p.ranks.length === 2
          ? { kind: 'ranks', ranks: [p.ranks[0]!, p.ranks[1]!] }
          : { kind: 'rank', rank: p.ranks[0]! },
    };
  }
}

/** The targets with their current kernel values, as the allocators take them. */
export function allocationLayers(model: tfl.LayersModel, plan: CompressionPlan): AllocationLayer[] {
  return plan.targets.map((t) => {
    const { rank: _rank, ...options } = t.options;
    const v = kernelVariable(model, t.layer.name);
    const kernel = new Tensor(Float32Array.from(v.read().dataSync() as Float32Array), t.kernelShape);
    return { name: t.layer.name, kernelShape: t.kernelShape, options, geometry: t.geometry, kernel };
  });
}

/** Fixes every target's ranks to the allocation's (later decompositions all use them). */
export function applyAllocation(plan: CompressionPlan, allocation: RankAllocation): void {
  plan.targets.forEach((t, i) => {
    t.options = { ...t.options, rank: allocation.layers[i]!.policy };
  });
  plan.allocation = allocation;
}

export interface DecomposeTargetsOptions {
  /**
   * The previous distortion's results (distortion training after its first distortion): each
   * target's CP-ALS starts from that layer's previous factors, the kernel having moved only S_D
   * SGD steps since (decomposers' DecomposeRun.previous). Null or absent: every fit is cold.
   */
  previous?: readonly LayerResult[] | null;
  /**
   * Called after every layer and after every sweep of an iterative fit (HOOI, CP-ALS), which on a
   * wide layer is one long synchronous call: the trial's heartbeat (rate-limited there) and
   * cancellation check.
   */
  beat?: () => void;
}

/** Decomposes the current kernel of every target (no change to the model). */
export function decomposeTargets(
  model: tfl.LayersModel,
  plan: CompressionPlan,
  options: DecomposeTargetsOptions = {},
): LayerResult[] {
  const { beat } = options;
  const previous = new Map((options.previous ?? []).map((r) => [r.target.layer.name, r.decomposition]));
  return plan.targets.map((target) => {
    const v = kernelVariable(model, target.layer.name);
    const data = Float32Array.from(v.read().dataSync() as Float32Array);
    const decomposition = decompose(new Tensor(data, target.kernelShape), target.options, {
      previous: previous.get(target.layer.name) ?? null,
      ...(beat ? { onSweep: () => beat() } : {}),
    });
    beat?.();
    return { target, decomposition };
  });
}

/** Writes reconstruct(decomposition) into each target kernel (the model becomes exactly low-rank). */
export function applyReconstructions(model: tfl.LayersModel, results: readonly LayerResult[]): void {
  for (const { target, decomposition } of results) {
    const v = kernelVariable(model, target.layer.name);
    const k = reconstruct(decomposition);
    const t = tf.tensor(Float32Array.from(k.data), v.shape as number[], 'float32');
    v.write(t);
    t.dispose();
  }
}

/**
 * One distortion: K <- reconstruct(decompose(K)) for every target (warm-started from
 * options.previous, see DecomposeTargetsOptions). Returns the per-layer results.
 */
export function distortModel(
  model: tfl.LayersModel,
  plan: CompressionPlan,
  options: DecomposeTargetsOptions = {},
): LayerResult[] {
  const results = decomposeTargets(model, plan, options);
  applyReconstructions(model, results);
  return results;
}

export function meanRelativeError(results: readonly LayerResult[]): number {
  return results.reduce((s, r) => s + r.decomposition.relativeError, 0) / Math.max(1, results.length);
}

/** Mean sweeps of the targets' iterative fits (HOOI, CP-ALS; 0 for SVD-based ones). */
export function meanSweeps(results: readonly LayerResult[]): number {
  return results.reduce((s, r) => s + r.decomposition.iterations, 0) / Math.max(1, results.length);
}

/**
 * The per-layer records. For distortion training pass the first distortion's results too: each
 * record then carries the first and the final distortion's errors.
 */
export function layerRecords(
  results: readonly LayerResult[],
  firstDistortion: readonly LayerResult[] | null = null,
): LayerRecord[] {
  return results.map((r, i) => {
    const rec = layerRecord(r.target.layer.name, r.decomposition, r.target.geometry);
    if (rec.rawRanks === null && r.target.rawRanks) rec.rawRanks = [...r.target.rawRanks];
    if (firstDistortion === null) return rec;
    return {
      ...rec,
      firstDistortionError: firstDistortion[i]!.decomposition.relativeError,
      finalDistortionError: r.decomposition.relativeError,
    };
  });
}

/** True when every target has a conv-chain export (tiled-svd is deployed as tiled GEMMs instead). */
export function hasChainExport(results: readonly LayerResult[]): boolean {
  return results.every((r) => r.decomposition.method !== 'tiled-svd');
}

/** The factored model: every target replaced by the chain of its decomposition, the rest copied. */
export function buildExportModel(model: tfl.LayersModel, results: readonly LayerResult[]): tfl.LayersModel {
  const replacements = new Map<string, ChainStep[]>();
  for (const { target, decomposition } of results) {
    const bias = biasOf(model, target.layer.name);
    const f = factoredLayer(decomposition, {
      strides: target.layer.strides,
      padding: target.layer.padding,
      bias,
      useBias: bias !== null,
    });
    if (f.form !== 'chain')
      throw new ValidationError(
        'compression.decomposition',
        `layer ${target.layer.name}: ${f.method} has no conv-chain export (it is deployed as tiled GEMMs)`,
      );
    replacements.set(
      target.layer.name,
      f.layers.map((l) => ({
        kind: l.kind,
        kernelShape: [...l.kernelShape],
        kernel: Float32Array.from(l.kernel.data),
        strides: [l.strides[0], l.strides[1]] as [number, number],
        padding: l.padding,
        bias: l.useBias && l.bias ? Float32Array.from(l.bias.data) : null,
      })),
    );
  }
  return buildFactoredModel(model, replacements);
}

export interface ModelCounts {
  paramsBefore: number;
  paramsAfter: number;
  macsBefore: number;
  macsAfter: number;
}

/**
 * Model-level parameters and multiply-adds. Params: all trainable weights of the original model
 * (kernels, biases, batch-norm scale / offset); after: minus each target's kernel saving (tiled-svd:
 * the tiled GEMM factors). MACs: conv + dense layers of one example with their real output sizes.
 */
/** Number of trainable parameters (kernels, biases, batch-norm scale / offset). */
export function trainableParams(model: tfl.LayersModel): number {
  return model.trainableWeights.reduce((s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

export function modelCounts(
  model: tfl.LayersModel,
  plan: CompressionPlan,
  results: readonly LayerResult[] | null,
): ModelCounts {
  const paramsBefore = trainableParams(model);
  const macsBefore = plan.layers.reduce((s, l) => s + l.macs, 0);
  let paramsAfter = paramsBefore;
  let macsAfter = macsBefore;
  for (const r of results ?? []) {
    const c = layerCosts(r.decomposition, r.target.geometry);
    paramsAfter -= c.paramsBefore - c.paramsAfter;
    macsAfter -= c.macsBefore - c.macsAfter;
  }
  return { paramsBefore, paramsAfter, macsBefore, macsAfter };
}
