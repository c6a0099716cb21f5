// Over 500 lines on purpose: the five methods share one trial lifecycle (events, checkpoints, evaluation, export).
/**
 * runTrial: one trial of a canonical TrialConfig, start to finish, in this process. Emits
 * 'started' (environment record), then the method's metric / layer / artifact / heartbeat events,
 * then exactly one terminal event: finished(summary), diverged(reason, step) or failed(error).
 *
 * Methods (docs/method.md):
 * - baseline: plain training with the recipe.
 * - distort: train the undecomposed model; every S_D (distortion.interval) optimizer steps replace
 *   each target kernel by reconstruct(decompose(K)) in place (optionally zeroing momentum); a final
 *   distortion; optional BN re-estimation; accuracyFinal is measured on these exactly-low-rank
 *   weights. From the second distortion in training on, CP-ALS refits warm from each layer's
 *   previous factors. Then the factored model is exported (its outputs are checked against the distorted
 *   model's) and timed. tiled-svd has no conv-chain export: its counts are the tiled GEMM's and the
 *   distorted model itself is what is evaluated (latencyAfterMs null).
 *   accuracyAfterDecomposition: for a trained start (checkpoint), the start model with one
 *   distortion applied (what post-training decomposition would give); null from scratch.
 * - finetune: from the start checkpoint, decompose, build the factored model (accuracy before
 *   fine-tuning = accuracyAfterDecomposition), fine-tune it with the recipe. From scratch the recipe's
 *   epochs are split: ceil(epochs/2) of plain training of the original model, then the rest of
 *   fine-tuning (maxSteps split the same way).
 * - posttrain: decompose the start model (training.epochs is 0: the config schema refuses more),
 *   build the factored model, evaluate. No training at all: the floor.
 * - trp (Trained Rank Pruning, Xu et al. 2020): distort's lifecycle with trp.interval as S_D, the
 *   energy rank policy resolved again at every projection (so each layer's rank follows its
 *   spectrum while training), no momentum reset or BN re-estimation, and the nuclear-norm penalty
 *   trp.lambda * sum ||W||_* applied through its subgradient U V^T (compression/trp.ts). The final
 *   projection's ranks are the trial's per-layer ranks, its model size the ratio the trial reached.
 * The final model is saved to <artifactDir>/checkpoint (an 'artifact' event of kind checkpoint: the
 * start checkpoint of dependent trials); the factored model of distort to <artifactDir>/factored.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  DivergedError,
  ShapeError,
  ValidationError,
  resolveTrialConfig,
  failedEvent,
  trialKey as computeTrialKey,
  type TrainingRecipe,
  type TrialConfig,
  type TrialEvent,
  type TrialEventSink,
  type TrialRunOptions,
  type TrialSummary,
} from '@flatrank/protocol';
import { checkTrainingMemory, initBackend, runEnvironment, withMemoryGuard } from './backend/index.js';
import { batchCount, batches, loadDataset, type Dataset } from './data/index.js';
import { buildModel, modelMacs } from './models/index.js';
import {
  checkAborted,
  disposeCheckpoint,
  evaluateModel,
  loadCheckpoint,
  momentumStartFor,
  predictArrays,
  reestimateBatchNorm,
  restoreWeights,
  saveCheckpoint,
  trainLoop,
  type Batch,
  type EvalResult,
  type MomentumRestore,
  type MomentumStart,
  type OptimizerState,
  type TrainLoopResult,
} from './training/index.js';
import {
  allocationRecord,
  applyReconstructions,
  buildExportModel,
  decomposeTargets,
  distortModel,
  fixRanks,
  hasChainExport,
  layerRecords,
  meanRelativeError,
  meanSweeps,
  measureLatency,
  modelCounts,
  planCompression,
  projectedNuclearNorm,
  readBackTargets,
  trpAllocationRecord,
  NuclearPenalty,
  RankTrajectory,
  resolveAllocation,
  type AllocationEnv,
  type CompressionPlan,
  type LayerResult,
} from './compression/index.js';

export interface RunTrialOptions extends TrialRunOptions {
  emit: TrialEventSink;
  signal?: AbortSignal;
  /** Emit a train-loss metric every this many steps (default 50). */
  logEverySteps?: number;
  /** Batches timed per model for the latency measurement (default 5, after 2 warm-up runs). */
  latencyRepeats?: number;
}

const TEST_BATCH = 256;

/** Latency batch: the training batch size, capped to keep the measurement cheap. */
function latencyBatchOf(config: TrialConfig): number {
  return Math.min(config.training.batchSize, 128);
}

class TrialContext {
  steps = 0;
  epochs = 0;
  /** The start checkpoint's momentum, offered to the first training phase (then consumed). */
  momentumStart: MomentumStart | null = null;
  /** That phase's decision (recorded in the final checkpoint's metadata). */
  momentum: MomentumRestore | null = null;
  /** The momentum buffers of the last training phase and the model it trained. */
  lastTrained: { model: tfl.LayersModel; state: OptimizerState | null } | null = null;
  private lastBeat = Date.now();
  constructor(
    readonly config: TrialConfig,
    readonly key: string,
    readonly dataset: Dataset,
    readonly options: RunTrialOptions,
  ) {}

  /** 0-based index of the last completed epoch (0 before any), as the training loop numbers them. */
  get lastEpoch(): number {
    return Math.max(0, this.epochs - 1);
  }

  emit(e: TrialEvent): void {
    this.options.emit(e);
    if (e.type === 'heartbeat') this.lastBeat = Date.now();
  }

  /** A heartbeat when one is due (long non-training phases: decompositions, evaluation). */
  beat(): void {
    if (Date.now() - this.lastBeat >= this.options.heartbeatMs)
      this.emit({ type: 'heartbeat', step: this.steps, epoch: this.lastEpoch });
    checkAborted(this.options.signal);
  }

  async evaluate(model: tfl.LayersModel): Promise<EvalResult> {
    const r = await evaluateModel(
      model,
      this.dataset.test,
      this.dataset.imageShape,
      this.dataset.numClasses,
      TEST_BATCH,
    );
    this.beat();
    return r;
  }

  metric(phase: 'train' | 'eval' | 'after-decomposition' | 'final', name: string, value: number): void {
    this.emit({ type: 'metric', step: this.steps, epoch: this.lastEpoch, phase, name, value });
  }

  /** Training batches of one epoch (seeded by trial seed and epoch), labels as int32. */
  *epochBatches(epoch: number, augment = this.config.training.augment): Generator<Batch> {
    for (const b of batches(this.dataset.train, {
      batchSize: this.config.training.batchSize,
      shuffle: true,
      seed: this.config.seed,
      epoch,
      augment,
      labels: 'int',
    }))
      yield { x: b.x, y: b.y as tf.Tensor1D };
  }

  async train(
    model: tfl.LayersModel,
    recipe: TrainingRecipe,
    afterStep?: Parameters<typeof trainLoop>[0]['afterStep'],
    adjustGradients?: Parameters<typeof trainLoop>[0]['adjustGradients'],
  ): Promise<TrainLoopResult> {
    checkTrainingMemory(model, recipe.batchSize, { modelName: this.config.model });
    const epochOffset = this.epochs;
    // Only the first phase continues from the checkpoint; for a decomposed model the restore rule
    // finds other variables and starts fresh (recorded as train/momentum_restored 0).
    const momentumStart = this.momentumStart;
    this.momentumStart = null;
    const res = await trainLoop({
      model,
      recipe,
      numClasses: this.dataset.numClasses,
      epochBatches: (e) => this.epochBatches(epochOffset + e),
      evaluate: () => this.evaluate(model),
      emit: (e) => this.emit(e),
      stepOffset: this.steps,
      epochOffset,
      stepsPerEpoch: batchCount(this.dataset.train.count, this.config.training.batchSize),
      heartbeatMs: this.options.heartbeatMs,
      logEverySteps: this.options.logEverySteps ?? 50,
      ...(this.options.signal ? { signal: this.options.signal } : {}),
      ...(afterStep ? { afterStep } : {}),
      ...(adjustGradients ? { adjustGradients } : {}),
      ...(momentumStart ? { momentumStart } : {}),
      keepOptimizerState: true,
    });
    if (res.momentum) this.momentum = res.momentum;
    this.lastTrained = { model, state: res.optimizerState };
    this.steps += res.steps;
    this.epochs += res.epochs;
    return res;
  }

  async latency(model: tfl.LayersModel): Promise<number> {
    const ms = await measureLatency(model, this.dataset.imageShape, {
      batch: latencyBatchOf(this.config),
      repeats: this.options.latencyRepeats ?? 5,
      warmup: 2,
      seed: this.config.seed,
    });
    this.beat();
    return ms;
  }
}

function validateOptions(o: RunTrialOptions): void {
  if (typeof o !== 'object' || o === null)
    throw new ValidationError('options', 'runTrial: options object required');
  if (typeof o.emit !== 'function')
    throw new ValidationError('options.emit', 'options.emit: must be a function (the event sink)');
  if (typeof o.artifactDir !== 'string' || o.artifactDir.length === 0)
    throw new ValidationError('options.artifactDir', 'options.artifactDir: must be a non-empty path');
  if (!(typeof o.heartbeatMs === 'number' && o.heartbeatMs > 0))
    throw new ValidationError(
      'options.heartbeatMs',
      `options.heartbeatMs: must be a positive number, got ${String(o.heartbeatMs)}`,
    );
  if (o.dataDir !== null && typeof o.dataDir !== 'string')
    throw new ValidationError('options.dataDir', 'options.dataDir: must be a path or null');
  if (o.startCheckpoint !== null && typeof o.startCheckpoint !== 'string')
    throw new ValidationError('options.startCheckpoint', 'options.startCheckpoint: must be a path or null');
}

/** Not retried: bad input, bad data, cancellation, out of memory (the same config fails again). */
export async function runTrial(
  input: TrialConfig | unknown,
  options: RunTrialOptions,
): Promise<TrialSummary> {
  const t0 = Date.now();
  let terminal = false;
  const safeEmit: TrialEventSink = (e) => {
    if (terminal || typeof options?.emit !== 'function') return;
    if (e.type === 'finished' || e.type === 'failed' || e.type === 'diverged') terminal = true;
    options.emit(e);
  };
  try {
    validateOptions(options);
    const config = resolveTrialConfig(input, 'config');
    const backend = await initBackend({ backend: options.backend });
    safeEmit({ type: 'started', env: runEnvironment(backend) });
    const summary = await withMemoryGuard(() => runMethod(config, { ...options, emit: safeEmit }, t0), {
      batchSize: config.training.batchSize,
      model: config.model,
    });
    safeEmit({ type: 'finished', summary });
    return summary;
  } catch (e) {
    if (e instanceof DivergedError) {
      const step = typeof e.context['step'] === 'number' ? e.context['step'] : 0;
      safeEmit({ type: 'diverged', reason: e.message, step });
    } else {
      safeEmit(failedEvent(e));
    }
    throw e;
  }
}

async function runMethod(config: TrialConfig, options: RunTrialOptions, t0: number): Promise<TrialSummary> {
  const key = computeTrialKey(config);
  const dataset = await loadDataset(config.dataset, { dataDir: options.dataDir, seed: config.seed });
  const ctx = new TrialContext(config, key, dataset, options);
  checkAborted(options.signal);
  const model = buildModel(config.model, {
    inputShape: dataset.imageShape,
    numClasses: dataset.numClasses,
    seed: config.seed,
  });
  const disposables: tfl.LayersModel[] = [model];
  try {
    let started = false; // the start model is trained (checkpoint) rather than freshly initialised
    if (config.start.kind !== 'scratch') {
      if (!options.startCheckpoint)
        throw new ValidationError(
          'startCheckpoint',
          `startCheckpoint: required because config.start.kind is '${config.start.kind}' (the scheduler resolves it; flatrank train takes --start-checkpoint)`,
        );
      const ckpt = await loadCheckpoint(options.startCheckpoint);
      try {
        if (ckpt.meta.architecture !== 'base')
          throw new ShapeError(
            'startCheckpoint',
            `start checkpoint ${options.startCheckpoint} holds a ${ckpt.meta.architecture} model; methods start from an undecomposed ${config.model}`,
          );
        if (ckpt.meta.config && ckpt.meta.config.model !== config.model)
          throw new ShapeError(
            'startCheckpoint',
            `start checkpoint ${options.startCheckpoint} is a ${ckpt.meta.config.model}, the config trains a ${config.model}`,
          );
        restoreWeights(model, ckpt);
        // Momentum carries over only when a trial resumes from its own checkpoint. A new trial (any
        // method starting from a baseline) starts its optimiser fresh, as decompose-then-fine-tune
        // recipes do, so that all methods of a sweep start alike; the reason is recorded.
        const offered = momentumStartFor(ckpt, key);
        ctx.momentumStart =
          offered.mode === 'resume'
            ? offered
            : {
                ...offered,
                state: null,
                absentReason: `a new trial starts its optimizer fresh (momentum carries over only when a trial resumes from its own checkpoint; ${ckpt.dir} was written by trial ${String(ckpt.meta.trialKey).slice(0, 12)})`,
              };
      } finally {
        disposeCheckpoint(ckpt);
      }
      started = true;
    }
    switch (config.method) {
      case 'baseline':
        return await runBaseline(ctx, model, started, t0);
      case 'distort':
      case 'trp':
        return await runDistort(ctx, model, started, t0, disposables);
      case 'finetune':
      case 'posttrain':
        return await runDecompose(ctx, model, started, t0, disposables);
      default:
        throw new ValidationError(
          'config.method',
          `config.method: unknown value ${JSON.stringify(config.method)}`,
        );
    }
  } finally {
    for (const m of disposables) m.dispose();
  }
}

async function saveFinal(
  ctx: TrialContext,
  model: tfl.LayersModel,
  architecture: 'base' | 'factored',
  accuracy: number,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const dir = join(ctx.options.artifactDir, 'checkpoint');
  // The momentum goes with the weights only when they come from the last training phase (not e.g.
  // posttrain's factored model, built after training).
  const optimizer = ctx.lastTrained?.model === model ? ctx.lastTrained.state : null;
  const momentum = ctx.momentum
    ? { momentumRestored: ctx.momentum.restored, momentumNote: ctx.momentum.reason }
    : {};
  await saveCheckpoint(
    model,
    dir,
    {
      trialKey: ctx.key,
      config: ctx.config,
      architecture,
      epoch: ctx.epochs,
      step: ctx.steps,
      accuracy,
      method: ctx.config.method,
      ...momentum,
      ...extra,
    },
    { optimizer },
  );
  ctx.emit({ type: 'artifact', kind: 'checkpoint', path: dir });
}

function summary(
  ctx: TrialContext,
  t0: number,
  s: Omit<TrialSummary, 'wallSeconds' | 'steps' | 'epochs'>,
): TrialSummary {
  return { ...s, wallSeconds: (Date.now() - t0) / 1000, steps: ctx.steps, epochs: ctx.epochs };
}

async function runBaseline(
  ctx: TrialContext,
  model: tfl.LayersModel,
  started: boolean,
  t0: number,
): Promise<TrialSummary> {
  const original = started ? (await ctx.evaluate(model)).accuracy : null;
  if (original !== null) ctx.metric('eval', 'accuracy_start', original);
  const res = await ctx.train(model, ctx.config.training);
  const final = res.lastEval ?? (await ctx.evaluate(model));
  ctx.metric('final', 'accuracy', final.accuracy);
  const params = model.trainableWeights.reduce(
    (s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1),
    0,
  );
  const macs = modelMacs(model);
  const latency = await ctx.latency(model);
  await saveFinal(ctx, model, 'base', final.accuracy);
  return summary(ctx, t0, {
    accuracyOriginal: original,
    accuracyAfterDecomposition: null,
    accuracyFinal: final.accuracy,
    paramsBefore: params,
    paramsAfter: params,
    macsBefore: macs,
    macsAfter: macs,
    latencyBeforeMs: latency,
    latencyAfterMs: null,
    latencyBatch: latencyBatchOf(ctx.config),
  });
}

function emitLayers(
  ctx: TrialContext,
  results: readonly LayerResult[],
  firstDistortion: readonly LayerResult[] | null = null,
): void {
  for (const layer of layerRecords(results, firstDistortion)) ctx.emit({ type: 'layer', layer });
}

/** The ranks an allocate policy chose, with its budget and what it measured (other policies: none). */
function emitAllocation(ctx: TrialContext, plan: CompressionPlan): void {
  const allocation = allocationRecord(plan);
  if (allocation) ctx.emit({ type: 'allocation', allocation });
}

function allocationEnv(ctx: TrialContext): AllocationEnv {
  return { dataset: ctx.dataset, startCheckpoint: ctx.options.startCheckpoint, beat: () => ctx.beat() };
}

/** Max |a-b| / max |a| over the outputs of the first test images (the export check). */
async function exportDeviation(ctx: TrialContext, a: tfl.LayersModel, b: tfl.LayersModel): Promise<number> {
  const n = Math.min(32, ctx.dataset.test.count);
  const ya = await predictArrays(a, ctx.dataset.test, ctx.dataset.imageShape, n);
  const yb = await predictArrays(b, ctx.dataset.test, ctx.dataset.imageShape, n);
  let scale = 0;
  let d = 0;
  for (let i = 0; i < ya.length; i++) {
    scale = Math.max(scale, Math.abs(ya[i]!));
    d = Math.max(d, Math.abs(ya[i]! - yb[i]!));
  }
  return d / Math.max(scale, 1e-12);
}

/**
 * How a training run projects its kernels: distort's distortions and TRP's projections are the same
 * operation (K <- reconstruct(decompose(K)) every `interval` steps and once at the end); TRP
 * re-chooses each layer's energy rank at every projection and adds its nuclear-norm subgradient.
 */
interface ProjectionSchedule {
  interval: number;
  /** distort: data-dependent ranks are fixed at the first distortion; trp: chosen at every projection. */
  fixRanks: boolean;
  resetMomentum: boolean;
  reestimateBatchNorm: boolean;
  penalty: NuclearPenalty | null;
}

function projectionSchedule(
  config: TrialConfig,
  model: tfl.LayersModel,
  plan: CompressionPlan,
): ProjectionSchedule {
  if (config.method === 'trp') {
    const trp = config.trp!;
    return {
      interval: trp.interval,
      fixRanks: false,
      resetMomentum: false,
      reestimateBatchNorm: false,
      penalty: new NuclearPenalty(model, plan, trp.lambda, trp.nuclearEvery),
    };
  }
  const dist = config.distortion!;
  return {
    interval: dist.interval,
    fixRanks: true,
    resetMomentum: dist.resetMomentum,
    reestimateBatchNorm: dist.reestimateBatchNorm,
    penalty: null,
  };
}

/** distort and trp: train the full model, projecting its target kernels (see ProjectionSchedule). */
async function runDistort(
  ctx: TrialContext,
  model: tfl.LayersModel,
  started: boolean,
  t0: number,
  disposables: tfl.LayersModel[],
): Promise<TrialSummary> {
  const { config } = ctx;
  const comp = config.compression!;
  const plan = planCompression(model, comp, config.seed);
  const schedule = projectionSchedule(config, model, plan);
  let original: number | null = null;
  let afterDecomposition: number | null = null;
  let ranksFixed = !schedule.fixRanks;
  // `previous`: the last distortion in training, whose factors CP-ALS refits from (the kernels moved
  // only S_D steps since); null for the first distortion in training and the start model's preview.
  const distort = (previous: readonly LayerResult[] | null): LayerResult[] => {
    if (!ranksFixed) fixRanks(model, plan);
    ranksFixed = true;
    return distortModel(model, plan, { previous, beat: () => ctx.beat() });
  };
  if (started) {
    original = (await ctx.evaluate(model)).accuracy;
    ctx.metric('eval', 'accuracy_start', original);
    // What one distortion does to the trained start model (post-training decomposition), measured
    // on a copy of the kernels that is restored before training starts.
    const saved = plan.targets.map((t) =>
      model
        .getLayer(t.layer.name)
        .getWeights()
        .map((w) => tf.clone(w)),
    );
    await readBackTargets(model, plan);
    // An allocation is chosen on the start model (the data-free ones from scratch: at the first distortion).
    await resolveAllocation(model, plan, allocationEnv(ctx));
    distort(null);
    afterDecomposition = (await ctx.evaluate(model)).accuracy;
    ctx.metric('after-decomposition', 'accuracy', afterDecomposition);
    plan.targets.forEach((t, i) => {
      model.getLayer(t.layer.name).setWeights(saved[i]!);
      tf.dispose(saved[i]!);
    });
  }
  let distortions = 0;
  let last: { step: number; results: LayerResult[] } | null = null;
  let first: LayerResult[] | null = null;
  const trajectory = config.method === 'trp' ? new RankTrajectory() : null;
  const projectionMetrics = (
    step: number,
    epoch: number,
    phase: 'train' | 'final',
    r: LayerResult[],
  ): void => {
    const emit = (name: string, value: number): void =>
      ctx.emit({ type: 'metric', step, epoch, phase, name, value });
    emit('distortion_error', meanRelativeError(r));
    // The iterative fits' sweeps (CP-ALS, HOOI): a warm-started CP refit takes few.
    if (comp.decomposition === 'cp' || comp.decomposition === 'tucker2')
      emit('distortion_sweeps', meanSweeps(r));
    if (!trajectory) return;
    // TRP's ranks move: the model size its current ranks give, and the nuclear norm they hold.
    const counts = modelCounts(model, plan, r);
    trajectory.add(step, r, counts);
    emit('params_ratio', counts.paramsBefore / counts.paramsAfter);
    emit('nuclear_norm', projectedNuclearNorm(r));
  };
  const penalty = schedule.penalty;
  await ctx.train(
    model,
    config.training,
    async ({ step, epoch, optimizer }) => {
      if (step % schedule.interval !== 0) return;
      await readBackTargets(model, plan);
      const r = distort(last?.results ?? null);
      distortions += 1;
      last = { step, results: r };
      first ??= r;
      penalty?.projected(r);
      projectionMetrics(step, epoch, 'train', r);
      if (schedule.resetMomentum) optimizer.resetMomentum();
    },
    penalty ? (grads) => penalty.apply(grads) : undefined,
  );
  // The final distortion makes the weights exactly low-rank; its decompositions are exported. When
  // the last optimizer step was itself a distortion step the weights already are, and that
  // distortion's results (with its real reconstruction errors) are kept instead of a no-op one.
  let results: LayerResult[];
  const lastDistortion = last as { step: number; results: LayerResult[] } | null;
  if (lastDistortion && lastDistortion.step === ctx.steps) results = lastDistortion.results;
  else {
    await readBackTargets(model, plan);
    results = distort(lastDistortion?.results ?? null);
    distortions += 1;
    projectionMetrics(ctx.steps, ctx.lastEpoch, 'final', results);
  }
  ctx.metric('final', 'distortions', distortions);
  if (penalty) ctx.metric('final', 'nuclear_subgradient_steps', penalty.applications);
  if (schedule.reestimateBatchNorm) {
    ctx.metric('final', 'accuracy_before_bn_reestimation', (await ctx.evaluate(model)).accuracy);
    reestimateBatchNorm(model, ctx.epochBatches(1_000_000, false), 100);
  }
  const final = await ctx.evaluate(model);
  ctx.metric('final', 'accuracy', final.accuracy);
  // Without a distortion during training the final one is also the first.
  emitLayers(ctx, results, first ?? results);
  emitAllocation(ctx, plan);
  const counts = modelCounts(model, plan, results);
  if (trajectory)
    ctx.emit({
      type: 'allocation',
      allocation: trpAllocationRecord(config.trp!, comp, results, counts, trajectory),
    });
  const latencyBefore = await ctx.latency(model);
  let latencyAfter: number | null = null;
  if (hasChainExport(results)) {
    const factored = buildExportModel(model, results);
    disposables.push(factored);
    ctx.metric('final', 'export_max_rel_deviation', await exportDeviation(ctx, model, factored));
    latencyAfter = await ctx.latency(factored);
    const dir = join(ctx.options.artifactDir, 'factored');
    await saveCheckpoint(factored, dir, {
      trialKey: ctx.key,
      config,
      architecture: 'factored',
      epoch: ctx.epochs,
      step: ctx.steps,
      accuracy: final.accuracy,
      method: config.method,
    });
    ctx.emit({ type: 'artifact', kind: 'factored-model', path: dir });
  }
  await saveFinal(ctx, model, 'base', final.accuracy, { exactlyLowRank: true, distortions });
  return summary(ctx, t0, {
    accuracyOriginal: original,
    accuracyAfterDecomposition: afterDecomposition,
    accuracyFinal: final.accuracy,
    ...counts,
    latencyBeforeMs: latencyBefore,
    latencyAfterMs: latencyAfter,
    latencyBatch: latencyBatchOf(config),
  });
}

function splitRecipe(r: TrainingRecipe): [TrainingRecipe, TrainingRecipe] {
  const pre = Math.ceil(r.epochs / 2);
  const preSteps = r.maxSteps === null ? null : Math.ceil(r.maxSteps / 2);
  const ftSteps = r.maxSteps === null ? null : r.maxSteps - preSteps!;
  return [
    { ...r, epochs: pre, maxSteps: preSteps },
    { ...r, epochs: r.epochs - pre, maxSteps: ftSteps === 0 ? null : ftSteps },
  ];
}

async function runDecompose(
  ctx: TrialContext,
  model: tfl.LayersModel,
  started: boolean,
  t0: number,
  disposables: tfl.LayersModel[],
): Promise<TrialSummary> {
  const { config } = ctx;
  const comp = config.compression!;
  // The config schema refuses finetune with tiled-svd and posttrain with epochs > 0.
  const finetune = config.method === 'finetune';
  // Plan before any training so that impossible ranks fail fast.
  const plan: CompressionPlan = planCompression(model, comp, config.seed);
  let fineTuneRecipe: TrainingRecipe | null = null;
  if (finetune) {
    if (started) fineTuneRecipe = config.training;
    else {
      const [pre, ft] = splitRecipe(config.training);
      if (pre.epochs > 0) await ctx.train(model, pre);
      fineTuneRecipe = ft;
    }
  }
  const original = started || ctx.steps > 0 ? (await ctx.evaluate(model)).accuracy : null;
  if (original !== null) ctx.metric('eval', 'accuracy_original', original);
  await readBackTargets(model, plan);
  await resolveAllocation(model, plan, allocationEnv(ctx));
  const results = decomposeTargets(model, plan, { beat: () => ctx.beat() });
  emitLayers(ctx, results);
  emitAllocation(ctx, plan);
  const counts = modelCounts(model, plan, results);
  const latencyBefore = await ctx.latency(model);
  let compressed: tfl.LayersModel;
  let architecture: 'base' | 'factored';
  if (hasChainExport(results)) {
    compressed = buildExportModel(model, results);
    disposables.push(compressed);
    architecture = 'factored';
  } else {
    // tiled-svd (posttrain only): evaluated as the reconstructed original-shape model.
    applyReconstructions(model, results);
    compressed = model;
    architecture = 'base';
  }
  const afterDecomposition = (await ctx.evaluate(compressed)).accuracy;
  ctx.metric('after-decomposition', 'accuracy', afterDecomposition);
  let final = afterDecomposition;
  if (fineTuneRecipe && fineTuneRecipe.epochs > 0) {
    const res = await ctx.train(compressed, fineTuneRecipe);
    final = (res.lastEval ?? (await ctx.evaluate(compressed))).accuracy;
  }
  ctx.metric('final', 'accuracy', final);
  const latencyAfter = architecture === 'factored' ? await ctx.latency(compressed) : null;
  await saveFinal(ctx, compressed, architecture, final);
  return summary(ctx, t0, {
    accuracyOriginal: original,
    accuracyAfterDecomposition: afterDecomposition,
    accuracyFinal: final,
    ...counts,
    latencyBeforeMs: latencyBefore,
    latencyAfterMs: latencyAfter,
    latencyBatch: latencyBatchOf(config),
  });
}
