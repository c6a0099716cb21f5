/**
 * The training steps the training bench's children run: one SGD-with-momentum step of a net on
 * synthetic batches (flatrank's MomentumSgd, as trials run it), and the warm-up-then-time protocol.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelName } from '@flatrank/protocol';
import { MomentumSgd, trainableVariables } from '@flatrank/trainers';
import { NET_INPUT, type Protocol, type StepRecipe } from './jobs.js';

export function netInput(net: ModelName): [number, number, number] {
  const shape = NET_INPUT[net];
  if (!shape) throw new Error(`training bench: unknown net ${net}`);
  return shape;
}

/** One optimizer step per call on synthetic batches (Gaussian images, uniform random labels). */
export function stepper(
  model: tfl.LayersModel,
  batch: number,
  net: ModelName,
  recipe: StepRecipe,
): { step: () => Promise<void>; dispose: () => void } {
  const shape = netInput(net);
  const synthetic = (seed: number): [tf.Tensor, tf.Tensor] =>
    tf.tidy(() => [
      tf.randomNormal([batch, ...shape], 0, 1, 'float32', seed),
      tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', seed + 1), 10),
    ]);
  const fixed = recipe.freshBatches ? null : synthetic(1);
  const vars = trainableVariables(model);
  const opt = new MomentumSgd(vars, {
    momentum: recipe.momentum,
    nesterov: false,
    weightDecay: recipe.weightDecay,
  });
  let steps = 0;
  const step = async (): Promise<void> => {
    const [x, y] = fixed ?? synthetic(1000 + 2 * steps);
    steps += 1;
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
      vars.map((v) => v.variable),
    );
    opt.step(grads, recipe.lr);
    await value.data(); // forces the step to finish on asynchronous backends
    tf.dispose([value, ...Object.values(grads)]);
    if (!fixed) tf.dispose([x, y]);
  };
  return { step, dispose: () => (tf.dispose(fixed ?? []), opt.dispose()) };
}

/** Warm up for at least p.warmup steps and p.warmupSeconds, then time steps (wall and process CPU). */
export async function timeSteps(
  step: () => Promise<void>,
  p: Protocol,
): Promise<{ stepSeconds: number[]; cpuSeconds: number[] }> {
  const w0 = performance.now();
  for (let i = 0; i < p.warmup || (performance.now() - w0) / 1000 < p.warmupSeconds; i++) await step();
  const stepSeconds: number[] = [];
  const cpuSeconds: number[] = [];
  const t0 = performance.now();
  while (
    stepSeconds.length < p.maxSteps &&
    (stepSeconds.length < p.steps || (performance.now() - t0) / 1000 < p.seconds)
  ) {
    const s0 = performance.now();
    const c0 = process.cpuUsage();
    await step();
    const c = process.cpuUsage(c0);
    stepSeconds.push((performance.now() - s0) / 1000);
    cpuSeconds.push((c.user + c.system) / 1e6);
  }
  return { stepSeconds, cpuSeconds };
}
