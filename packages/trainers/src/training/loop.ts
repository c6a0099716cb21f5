/**
 * The custom training loop (not model.fit: the distortion method needs a hook after every step).
 * One call trains `recipe.epochs` epochs (or until `recipe.maxSteps`), evaluating after every epoch,
 * emitting metric / heartbeat events, detecting divergence and honouring an AbortSignal.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { CancelledError, DivergedError, type TrainingRecipe, type TrialEventSink } from '@flatrank/protocol';
import { learningRateAt } from './schedule.js';

// Defined with the other errors in protocol (the trial child and the scheduler see the same class).
export { CancelledError } from '@flatrank/protocol';
import { MomentumSgd } from './sgd.js';
import {
  restoreMomentum,
  type MomentumRestore,
  type MomentumStart,
  type OptimizerState,
} from './optimizer-state.js';
import {
  correctCount,
  crossEntropy,
  outputIsSoftmax,
  trainableVariables,
  yieldToEventLoop,
} from './model-utils.js';
import type { EvalResult } from './evaluate.js';

export interface Batch {
  /** NHWC float32 images. */
  x: tf.Tensor4D;
  /** int32 class labels. */
  y: tf.Tensor1D;
}

export interface StepInfo {
  /** Global optimizer steps done so far (after this step), counted from the start of the trial. */
  step: number;
  /** 0-based epoch of this step. */
  epoch: number;
  lr: number;
  loss: number;
  optimizer: MomentumSgd;
}

export interface GradientInfo {
  /** The global step this gradient is for (counted from the start of the trial, 1-based). */
  step: number;
  /** 0-based epoch of this step. */
  epoch: number;
}

export interface TrainLoopOptions {
  model: tfl.LayersModel;
  recipe: Pick<TrainingRecipe, 'epochs' | 'maxSteps' | 'optimizer' | 'lr' | 'schedule' | 'weightDecay'>;
  numClasses: number;
  /** Fresh mini-batches of one epoch (shuffled / augmented by the caller, seeded by epoch). The loop disposes them. */
  epochBatches: (epoch: number) => Iterable<Batch>;
  /** Evaluated after each epoch (inference mode). */
  evaluate?: () => EvalResult | Promise<EvalResult>;
  emit: TrialEventSink;
  /** Steps and epochs already done by earlier phases of the same trial (metrics stay monotonic). */
  stepOffset?: number;
  epochOffset?: number;
  heartbeatMs?: number;
  /** Emit a 'train' loss metric every this many steps (the running mean since the last one). */
  logEverySteps?: number;
  signal?: AbortSignal;
  /** Called after every optimizer step (the distortion hook). */
  afterStep?: (info: StepInfo) => void | Promise<void>;
  /**
   * Called with the loss gradients (keyed by variable name) before every optimizer step, which then
   * uses whatever the map holds: a penalty without a TF.js gradient (TRP's nuclear norm) adds its
   * subgradient here. A replaced tensor must be disposed by the hook.
   */
  adjustGradients?: (grads: tf.NamedTensorMap, info: GradientInfo) => void | Promise<void>;
  /**
   * Mini-batches per epoch, when the caller knows it (lets the schedule move within the first epoch;
   * otherwise it is learnt from the first epoch).
   */
  stepsPerEpoch?: number;
  /** Cross-entropy above this counts as an exploding loss (default 50 * ln(numClasses)). */
  divergenceLoss?: number;
  /**
   * The momentum a run starting from a checkpoint is offered (momentumStartFor); whether it is
   * taken follows the rules in optimizer-state.ts. The decision is emitted as the metric
   * train/momentum_restored (1 restored, 0 fresh) and returned as result.momentum. Omitted: fresh
   * momentum, nothing recorded (training from scratch).
   */
  momentumStart?: MomentumStart;
  /** Return the final momentum buffers as result.optimizerState (to save with the checkpoint). */
  keepOptimizerState?: boolean;
}

export interface TrainLoopResult {
  /** Steps done by this call. */
  steps: number;
  /** Epochs completed by this call (a maxSteps cut inside an epoch counts that epoch). */
  epochs: number;
  lastEval: EvalResult | null;
  lastTrainLoss: number | null;
  /** The restore decision when options.momentumStart was given, else null. */
  momentum: MomentumRestore | null;
  /** The final momentum buffers when options.keepOptimizerState, else null. */
  optimizerState: OptimizerState | null;
}

export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const r = signal.reason;
    throw new CancelledError(typeof r === 'string' ? r : r instanceof Error ? r.message : 'aborted');
  }
}

export async function trainLoop(o: TrainLoopOptions): Promise<TrainLoopResult> {
  const { model, recipe, numClasses, emit } = o;
  const stepOffset = o.stepOffset ?? 0;
  const epochOffset = o.epochOffset ?? 0;
  const heartbeatMs = o.heartbeatMs ?? 10_000;
  const logEvery = o.logEverySteps ?? 50;
  const divergenceLoss = o.divergenceLoss ?? 50 * Math.log(Math.max(2, numClasses));
  const softmax = outputIsSoftmax(model);
  const vars = trainableVariables(model);
  const optimizer = new MomentumSgd(vars, {
    momentum: recipe.optimizer.momentum,
    nesterov: recipe.optimizer.nesterov,
    weightDecay: recipe.weightDecay,
  });
  const varList = vars.map((v) => v.variable);
  let momentum: MomentumRestore | null = null;
  let optimizerState: OptimizerState | null = null;
  let steps = 0;
  let epochsDone = 0;
  let lastEval: EvalResult | null = null;
  let lastTrainLoss: number | null = null;
  let lastBeat = Date.now();
  let stepsPerEpochSeen = o.stepsPerEpoch ?? 0;
  // The schedule's horizon is the whole run: the epochs, or fewer when maxSteps ends it earlier.
  const horizon = (): number =>
    recipe.maxSteps !== null && stepsPerEpochSeen > 0
      ? Math.min(recipe.epochs, recipe.maxSteps / stepsPerEpochSeen)
      : recipe.epochs;

  try {
    if (o.momentumStart) {
      momentum = restoreMomentum(optimizer, o.momentumStart);
      emit({
        type: 'metric',
        step: stepOffset,
        epoch: epochOffset,
        phase: 'train',
        name: 'momentum_restored',
        value: momentum.restored ? 1 : 0,
      });
    }
    for (let epoch = 0; epoch < recipe.epochs; epoch++) {
      if (recipe.maxSteps !== null && steps >= recipe.maxSteps) break;
      let epochLoss = 0;
      let epochCorrect = 0;
      let epochCount = 0;
      let windowLoss = 0;
      let windowSteps = 0;
      let inEpoch = 0;
      for (const batch of o.epochBatches(epoch)) {
        if (recipe.maxSteps !== null && steps >= recipe.maxSteps) {
          tf.dispose([batch.x, batch.y]);
          break;
        }
        checkAborted(o.signal);
        // Fractional epoch for the schedule: before the first epoch is complete we do not know the
        // epoch length, so the schedule stays at the epoch start until it is known.
        const frac = stepsPerEpochSeen > 0 ? inEpoch / stepsPerEpochSeen : 0;
        const lr = learningRateAt(recipe.schedule, recipe.lr, epoch + frac, horizon());
        let correctT: tf.Scalar | null = null;
        const { value, grads } = tf.variableGrads(() => {
          const out = model.apply(batch.x, { training: true }) as tf.Tensor;
          correctT = tf.keep(correctCount(out, batch.y));
          return crossEntropy(out, batch.y, numClasses, softmax);
        }, varList);
        const loss = (await value.data())[0]!;
        const correct = (await (correctT as unknown as tf.Scalar).data())[0]!;
        const n = batch.x.shape[0];
        tf.dispose([value, correctT as unknown as tf.Scalar]);
        if (!Number.isFinite(loss) || loss > divergenceLoss) {
          tf.dispose(grads);
          tf.dispose([batch.x, batch.y]);
          const reason = Number.isFinite(loss)
            ? `loss exploded to ${loss.toPrecision(4)} (> ${divergenceLoss.toPrecision(4)})`
            : `loss is ${loss}`;
          throw new DivergedError(`training diverged at step ${stepOffset + steps + 1}: ${reason}`, {
            context: { step: stepOffset + steps + 1, epoch: epochOffset + epoch, loss: String(loss), lr },
          });
        }
        if (o.adjustGradients)
          try {
            await o.adjustGradients(grads, { step: stepOffset + steps + 1, epoch: epochOffset + epoch });
          } catch (e) {
            tf.dispose(grads);
            throw e;
          }
        optimizer.step(grads, lr);
        tf.dispose(grads);
        tf.dispose([batch.x, batch.y]);
        steps += 1;
        inEpoch += 1;
        epochLoss += loss * n;
        epochCorrect += correct;
        epochCount += n;
        windowLoss += loss;
        windowSteps += 1;
        lastTrainLoss = loss;
        const globalStep = stepOffset + steps;
        if (windowSteps >= logEvery) {
          emit({
            type: 'metric',
            step: globalStep,
            epoch: epochOffset + epoch,
            phase: 'train',
            name: 'loss',
            value: windowLoss / windowSteps,
          });
          emit({
            type: 'metric',
            step: globalStep,
            epoch: epochOffset + epoch,
            phase: 'train',
            name: 'lr',
            value: lr,
          });
          windowLoss = 0;
          windowSteps = 0;
        }
        if (o.afterStep)
          await o.afterStep({ step: globalStep, epoch: epochOffset + epoch, lr, loss, optimizer });
        if (Date.now() - lastBeat >= heartbeatMs) {
          emit({ type: 'heartbeat', step: globalStep, epoch: epochOffset + epoch });
          lastBeat = Date.now();
        }
        await yieldToEventLoop();
      }
      if (stepsPerEpochSeen === 0) stepsPerEpochSeen = inEpoch;
      if (epochCount === 0) break;
      epochsDone += 1;
      const globalStep = stepOffset + steps;
      const e = epochOffset + epoch;
      emit({
        type: 'metric',
        step: globalStep,
        epoch: e,
        phase: 'train',
        name: 'epoch_loss',
        value: epochLoss / epochCount,
      });
      emit({
        type: 'metric',
        step: globalStep,
        epoch: e,
        phase: 'train',
        name: 'epoch_accuracy',
        value: epochCorrect / epochCount,
      });
      if (o.evaluate) {
        checkAborted(o.signal);
        lastEval = await o.evaluate();
        emit({
          type: 'metric',
          step: globalStep,
          epoch: e,
          phase: 'eval',
          name: 'accuracy',
          value: lastEval.accuracy,
        });
        emit({
          type: 'metric',
          step: globalStep,
          epoch: e,
          phase: 'eval',
          name: 'loss',
          value: lastEval.loss,
        });
      }
      emit({ type: 'heartbeat', step: globalStep, epoch: e });
      lastBeat = Date.now();
    }
    if (o.keepOptimizerState) {
      await optimizer.readBack();
      optimizerState = optimizer.exportState();
    }
  } finally {
    // The momentum buffers live as long as this call (a later phase starts with fresh ones unless
    // it is handed optimizerState through momentumStart).
    optimizer.dispose();
  }
  return { steps, epochs: epochsDone, lastEval, lastTrainLoss, momentum, optimizerState };
}
