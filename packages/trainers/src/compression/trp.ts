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
import { ValidationError, type TrpNuclearSchedule } from '@flatrank/protocol';
import { kernelVariable, type CompressionPlan, type LayerResult } from './engine.js';
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
