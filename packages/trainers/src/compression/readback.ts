/**
 * Distortion and decomposition run on the CPU and read the kernels synchronously. GPU backends
 * cannot (webgpu in Node has no synchronous read), so the trial reads each target layer's weights
 * back in one asynchronous pass first, once per distortion; the synchronous reads then hit the
 * backend's CPU copy.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import type { CompressionPlan } from './engine.js';

export async function readBackTargets(model: tfl.LayersModel, plan: CompressionPlan): Promise<void> {
  await Promise.all(
    plan.targets.flatMap((t) => model.getLayer(t.layer.name).weights.map((w) => w.read().data())),
  );
}
