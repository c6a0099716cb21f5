/**
 * The distortion job of the training bench: what the distortions of a distortion-training trial
 * cost, per decomposition. Per decomposition, from the same start weights and with a fresh
 * optimizer: the first distortion (cold fits), then `reps` steady-state distortions, each given the
 * last distortion's results exactly as runDistort (trial.ts) gives them (read the kernels back,
 * fix the ranks before the first, distortModel with { previous, beat }). For tucker2 and cp each
 * steady distortion follows `interval` (S_D) real training steps with the distortion trials'
 * recipe, so the kernels have moved as in a trial (CP-ALS refits warm from the previous factors,
 * HOOI starts from a nearly low-rank kernel). svd and tiled-svd have no warm state and no
 * iteration: their steady distortions skip the training and start from the start kernels again,
 * the same computation as the cold one.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { compressionSchema, type Decomposition } from '@flatrank/protocol';
import {
  buildModel,
  checkTrainingMemory,
  distortModel,
  fixRanks,
  initBackend,
  meanRelativeError,
  meanSweeps,
  planCompression,
  readBackTargets,
  type LayerResult,
} from '@flatrank/trainers';
import {
  DISTORTION_TRIAL_STEP,
  THROUGHPUT_STEP,
  type DistortionJob,
  type DistortionResult,
  type DistortionTimes,
} from './jobs.js';
import { netInput, stepper, timeSteps } from './steps.js';

/** The decompositions whose fits iterate (HOOI, CP-ALS): their cost depends on where the kernel moved. */
const ITERATIVE: ReadonlySet<Decomposition> = new Set<Decomposition>(['tucker2', 'cp']);

/**
 * The beat a distortion calls after every sweep and layer stands for a trial's (TrialContext.beat):
 * between its rate-limited heartbeats that is one clock read. Any interval of seconds does here.
 */
const HEARTBEAT_MS = 5_000;

export async function measureDistortionOverhead(
  job: DistortionJob,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<DistortionResult> {
  const info = await initBackend({ backend: job.backend });
  const model = buildModel(job.net, { inputShape: netInput(job.net), numClasses: 10, seed: 0 });
  try {
    checkTrainingMemory(model, job.batch, { modelName: job.net });
    // The same step as the training rows time: the fraction of training time divides by it.
    const timing = stepper(model, job.batch, job.net, THROUGHPUT_STEP);
    let stepSeconds: number[];
    try {
      ({ stepSeconds } = await timeSteps(timing.step, job.protocol));
    } finally {
      timing.dispose();
    }
    const start = model.getWeights().map((w) => w.clone());
    try {
      const distortions: DistortionTimes[] = [];
      for (const decomposition of job.decompositions)
        distortions.push(await distortionsOf(model, start, decomposition, job, log));
      return {
        backend: job.backend,
        version: info.version,
        stepSeconds,
        distortions,
        maxRssKb: process.resourceUsage().maxRSS,
      };
    } finally {
      tf.dispose(start);
    }
  } finally {
    model.dispose();
  }
}

/** One decomposition's cold and steady-state distortions, as one trial of it would pay them. */
async function distortionsOf(
  model: tfl.LayersModel,
  start: tf.Tensor[],
  decomposition: Decomposition,
  job: DistortionJob,
  log: (line: string) => void,
): Promise<DistortionTimes> {
  model.setWeights(start);
  const config = compressionSchema.parse({
    decomposition,
    rank: { kind: 'ratio', ratio: job.ratio },
    ...(decomposition === 'tiled-svd' ? { tile: job.tile } : {}),
  });
  const plan = planCompression(model, config, 0);
  let ranksFixed = false;
  let lastBeat = Date.now();
  const beat = (): void => {
    if (Date.now() - lastBeat >= HEARTBEAT_MS) lastBeat = Date.now();
  };
  // What runDistort does at a distortion step, timed from the read-back on.
  const distort = async (previous: LayerResult[] | null): Promise<{ ms: number; results: LayerResult[] }> => {
    const t0 = performance.now();
    await readBackTargets(model, plan);
    if (!ranksFixed) fixRanks(model, plan);
    ranksFixed = true;
    const results = distortModel(model, plan, { previous, beat });
    return { ms: performance.now() - t0, results };
  };
  const name = `distortion ${job.net} ${decomposition}`;
  const cold = await distort(null);
  log(`${name}: cold ${cold.ms.toFixed(0)} ms (${meanSweeps(cold.results).toFixed(1)} sweeps)`);
  const trained = ITERATIVE.has(decomposition);
  // A fresh optimizer per decomposition: each is a trial of its own.
  const trainer = trained ? stepper(model, job.batch, job.net, DISTORTION_TRIAL_STEP) : null;
  const out: DistortionTimes = {
    decomposition,
    layers: plan.targets.length,
    trainedSteps: trained ? job.interval : 0,
    coldMs: cold.ms,
    coldSweeps: meanSweeps(cold.results),
    coldError: meanRelativeError(cold.results),
    ms: [],
    sweeps: [],
    errors: [],
  };
  try {
    let last = cold.results;
    for (let i = 0; i < job.reps; i++) {
      if (trainer) for (let s = 0; s < job.interval; s++) await trainer.step();
      else model.setWeights(start);
      const steady = await distort(last);
      last = steady.results;
      out.ms.push(steady.ms);
      out.sweeps.push(meanSweeps(steady.results));
      out.errors.push(meanRelativeError(steady.results));
      log(
        `${name}: steady ${i + 1}/${job.reps}${trainer ? ` after ${job.interval} steps` : ''}: ` +
          `${steady.ms.toFixed(0)} ms (${out.sweeps.at(-1)!.toFixed(1)} sweeps)`,
      );
    }
  } finally {
    trainer?.dispose();
  }
  return out;
}
