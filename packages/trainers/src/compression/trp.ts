/**
 * Trained Rank Pruning's pieces beside the distortion engine (Xu et al., IJCAI 2020). Its projection
 * is a distortion (distortModel) whose energy rank policy is resolved again at every call, so each
 * layer's rank follows its current spectrum; this file adds the nuclear-norm penalty
 * lambda * sum ||W||_* over the target kernels, applied through its subgradient U V^T.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { Tensor } from '@flatrank/core';
import {
  nuclearSubgradient,
  truncatedSvdSubgradient,
  type MatrixScheme,
  type SvdDecomposition,
} from '@flatrank/decomposers';
import {
  ValidationError,
  type CompressionConfig,
  type RankAllocationRecord,
  type TrpConfig,
  type TrpNuclearSchedule,
} from '@flatrank/protocol';
import { kernelVariable, type CompressionPlan, type LayerResult, type ModelCounts } from './engine.js';
import { readBackTargets } from './readback.js';

function schemeOf(options: { scheme?: string | null | undefined }): MatrixScheme {
  return (options.scheme ?? 'lowered') as MatrixScheme;
}

function svdOf(r: LayerResult): SvdDecomposition {
  const d = r.decomposition;
  if (d.method !== 'svd')
    throw new ValidationError(
      'compression.decomposition',
      `layer ${r.target.layer.name}: TRP needs svd projections, got ${d.method}`,
    );
  return d as SvdDecomposition;
}

/** Sum of the kept singular values over the targets: the nuclear norm right after a projection. */
export function projectedNuclearNorm(results: readonly LayerResult[]): number {
  return results.reduce((s, r) => s + svdOf(r).S.reduce((a, x) => a + x, 0), 0);
}

/**
 * The penalty as a gradient hook (trainLoop's adjustGradients): lambda * U V^T is added to each
 * target kernel's loss gradient, and the optimizer then treats the sum like any gradient (weight
 * decay and momentum on top), as the authors' code adds it to the kernels' .grad before the SGD
 * step. `every`:
 * - 'step': at every optimizer step, with U V^T of the kernel as it is (a fresh SVD per target per
 *   step; the step right after a projection reuses the projection's factors, since the kernel then
 *   is that truncation): stochastic subgradient descent on the regularised loss, the paper's
 *   formulation;
 * - 'projection': only at the step after each projection, with U_r V_r^T of that projection: the
 *   authors' code with a projection period above 1.
 */
export class NuclearPenalty {
  /** U_r V_r^T per target layer from the last projection, valid until the next optimizer step. */
  private afterProjection: Map<string, Float32Array> | null = null;
  /** Optimizer steps that received the subgradient (a metric of the trial). */
  applications = 0;

  constructor(
    private readonly model: tfl.LayersModel,
    private readonly plan: CompressionPlan,
    readonly lambda: number,
    readonly every: TrpNuclearSchedule,
  ) {}

  /** To be called after each projection of the training run, with its results. */
  projected(results: readonly LayerResult[]): void {
    if (this.lambda === 0) return;
    this.afterProjection = new Map(
      results.map((r) => [r.target.layer.name, Float32Array.from(truncatedSvdSubgradient(svdOf(r)).data)]),
    );
  }

  /** The adjustGradients hook. */
  async apply(grads: tf.NamedTensorMap): Promise<void> {
    if (this.lambda === 0) return;
    const cached = this.afterProjection;
    this.afterProjection = null;
    if (cached === null && this.every === 'projection') return;
    if (cached === null) await readBackTargets(this.model, this.plan);
    for (const t of this.plan.targets) {
      // LayerVariable.read() is the tf.Variable the gradients are keyed by (trainableVariables).
      const variable = kernelVariable(this.model, t.layer.name).read() as tf.Variable;
      const grad = grads[variable.name];
      if (grad === undefined) continue;
      const sub =
        cached?.get(t.layer.name) ??
        Float32Array.from(
          nuclearSubgradient(
            new Tensor(Float32Array.from(variable.dataSync() as Float32Array), t.kernelShape),
            schemeOf(t.options),
          ).subgradient.data,
        );
      const next = tf.tidy(() => tf.add(grad, tf.mul(tf.tensor(sub, grad.shape, 'float32'), this.lambda)));
      grad.dispose();
      grads[variable.name] = next;
    }
    this.applications += 1;
  }
}

/** One projection of a TRP run: its step, every target's rank (model order), the model ratio they give. */
export interface TrpProjection {
  step: number;
  ranks: number[];
  paramsRatio: number;
}

/** Longest trajectory an allocation record carries (a long run with m = 1 is thinned evenly). */
const TRAJECTORY_LIMIT = 500;

/** The ranks of every projection of a run, for the allocation record. */
export class RankTrajectory {
  private readonly projections: TrpProjection[] = [];

  add(step: number, results: readonly LayerResult[], counts: ModelCounts): void {
    this.projections.push({
      step,
      ranks: results.map((r) => r.decomposition.ranks[0]!),
      paramsRatio: counts.paramsBefore / counts.paramsAfter,
    });
  }

  get count(): number {
    return this.projections.length;
  }

  /** At most `limit` projections, evenly spaced, the first and the last always kept. */
  sample(limit = TRAJECTORY_LIMIT): TrpProjection[] {
    const n = this.projections.length;
    if (n <= limit) return [...this.projections];
    return Array.from(
      { length: limit },
      (_, i) => this.projections[Math.round((i * (n - 1)) / (limit - 1))]!,
    );
  }
}

/**
 * TRP's allocation record: no budget (the ratio is where the energy rule and the penalty led), the
 * ranks and error of the final projection per target layer, and in `measured` the settings and
 * the rank trajectory (ranks in the order of `layers`).
 */
export function trpAllocationRecord(
  trp: TrpConfig,
  compression: CompressionConfig,
  results: readonly LayerResult[],
  counts: ModelCounts,
  trajectory: RankTrajectory,
): RankAllocationRecord {
  const energy = compression.rank.kind === 'energy' ? compression.rank.threshold : null;
  const sampled = trajectory.sample();
  return {
    policy: 'trp',
    budget: null,
    achieved: {
      params: counts.paramsBefore / counts.paramsAfter,
      macs: counts.macsBefore / counts.macsAfter,
    },
    layers: results.map((r) => ({
      name: r.target.layer.name,
      ranks: [...r.decomposition.ranks],
      error: r.decomposition.relativeError,
    })),
    measured: {
      energy,
      scheme: compression.scheme,
      interval: trp.interval,
      lambda: trp.lambda,
      nuclearEvery: trp.nuclearEvery,
      projections: trajectory.count,
      // every projection when there were at most TRAJECTORY_LIMIT, else an even sample of them
      trajectory: sampled,
    },
  };
}
