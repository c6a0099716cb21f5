/**
 * One measurement of the training bench in a process of its own (node training-child.js '<job JSON>'):
 * a probe of the installed backends and the nets' flop counts, the step times of one net on one
 * backend, or the time of one distortion of a whole net per decomposition beside its step time.
 * A fresh process per measurement gives each row its own peak RSS and leaves no backend threads
 * behind while the next peer runs. Prints its result on one RESULT_PREFIX line.
 */
import * as tf from '@tensorflow/tfjs-core';
import { compressionSchema, type ModelName } from '@flatrank/protocol';
import { activeWebgpuAdapter } from '@flatrank/backend-webgpu';
import {
  MomentumSgd,
  buildModel,
  checkTrainingMemory,
  distortModel,
  initBackend,
  installedBackends,
  planCompression,
  setFusedBatchNorm,
} from '@flatrank/trainers';
import { trainingFlops } from './flops.js';
import {
  NET_INPUT,
  RESULT_PREFIX,
  type DistortionResult,
  type Job,
  type ProbeResult,
  type Protocol,
  type TrainResult,
} from './jobs.js';

type LayersModel = ReturnType<typeof buildModel>;

function netInput(net: ModelName): [number, number, number] {
  const shape = NET_INPUT[net];
  if (!shape) throw new Error(`training bench: unknown net ${net}`);
  return shape;
}

/** One SGD-momentum step (flatrank's MomentumSgd, lr 0.01, momentum 0.9, as PyTorch's peer). */
function stepper(
  model: LayersModel,
  batch: number,
  net: ModelName,
): { step: () => Promise<void>; dispose: () => void } {
  const shape = netInput(net);
  const x = tf.randomNormal([batch, ...shape], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', 2), 10);
  const vars = model.trainableWeights.map((w) => ({
    variable: w.read() as tf.Variable,
    decay: false,
    name: w.originalName,
  }));
  const opt = new MomentumSgd(vars, { momentum: 0.9, nesterov: false, weightDecay: 0 });
  const step = async (): Promise<void> => {
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
      vars.map((v) => v.variable),
    );
    opt.step(grads, 0.01);
    await value.data(); // forces the step to finish on asynchronous backends
    tf.dispose([value, ...Object.values(grads)]);
  };
  return { step, dispose: () => (tf.dispose([x, y]), opt.dispose()) };
}

/** Warm up for at least p.warmup steps and p.warmupSeconds, then time steps (wall and process CPU). */
async function timeSteps(
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

async function probe(nets: ModelName[]): Promise<ProbeResult> {
  await initBackend({ backend: 'cpu' }); // building a model needs a backend; counting needs no speed
  const out: ProbeResult = { installed: await installedBackends(), nets: {} };
  for (const net of nets) {
    const model = buildModel(net, { inputShape: netInput(net), numClasses: 10, seed: 0 });
    const f = trainingFlops(model);
    out.nets[net] = {
      trainingFlopsPerExample: f.trainingFlopsPerExample,
      forwardMacs: f.forwardMacs,
      countedLayers: f.layers.length,
    };
    model.dispose();
  }
  return out;
}

async function train(job: Extract<Job, { kind: 'train' }>): Promise<TrainResult> {
  const info = await initBackend({ backend: job.backend });
  const adapter = job.backend === 'webgpu' ? activeWebgpuAdapter() : null;
  const software = adapter?.software ?? null;
  // A software WebGPU adapter (llvmpipe) rasterises on the CPU: a small batch, timed briefly.
  const batch = software ? Math.min(job.batch, 16) : job.batch;
  const protocol: Protocol = software
    ? { warmup: 1, warmupSeconds: 0, steps: 2, seconds: 0, maxSteps: 2 }
    : job.protocol;
  if (job.variant === 'tfjs-layers-bn') setFusedBatchNorm(false);
  const model = buildModel(job.net, { inputShape: netInput(job.net), numClasses: 10, seed: 0 });
  checkTrainingMemory(model, batch, { modelName: job.net });
  const s = stepper(model, batch, job.net);
  try {
    const t = await timeSteps(s.step, protocol);
    return {
      backend: job.backend,
      version: info.version,
      threads: info.threads,
      batch,
      ...t,
      maxRssKb: process.resourceUsage().maxRSS,
      adapter: adapter?.name ?? null,
      software,
    };
  } finally {
    s.dispose();
    model.dispose();
  }
}

async function distortion(job: Extract<Job, { kind: 'distortion' }>): Promise<DistortionResult> {
  const info = await initBackend({ backend: job.backend });
  const model = buildModel(job.net, { inputShape: netInput(job.net), numClasses: 10, seed: 0 });
  checkTrainingMemory(model, job.batch, { modelName: job.net });
  const s = stepper(model, job.batch, job.net);
  const { stepSeconds } = await timeSteps(s.step, job.protocol);
  s.dispose();
  // Every distortion starts from the same full-rank kernels (a trial's kernels are full rank again
  // after S_D steps of training; distorting already low-rank ones would flatter CP-ALS).
  const start = model.getWeights().map((w) => w.clone());
  const distortions: DistortionResult['distortions'] = [];
  try {
    for (const decomposition of job.decompositions) {
      const config = compressionSchema.parse({
        decomposition,
        rank: { kind: 'ratio', ratio: job.ratio },
        ...(decomposition === 'tiled-svd' ? { tile: job.tile } : {}),
      });
      const plan = planCompression(model, config, 0);
      const times: number[] = [];
      for (let i = 0; i <= job.reps; i++) {
        model.setWeights(start);
        const t0 = performance.now();
        distortModel(model, plan);
        times.push(performance.now() - t0);
      }
      distortions.push({ decomposition, layers: plan.targets.length, coldMs: times[0]!, ms: times.slice(1) });
    }
    return {
      backend: job.backend,
      version: info.version,
      stepSeconds,
      distortions,
      maxRssKb: process.resourceUsage().maxRSS,
    };
  } finally {
    tf.dispose(start);
    model.dispose();
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? 'null') as Job | null;
  if (!job) throw new Error('usage: training-child.js <job JSON>');
  const result =
    job.kind === 'probe'
      ? await probe(job.nets)
      : job.kind === 'train'
        ? await train(job)
        : await distortion(job);
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify({ ok: true, result })}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stdout.write(
      `${RESULT_PREFIX}${JSON.stringify({ ok: false, error: (e as Error).message ?? String(e) })}\n`,
    );
    process.exit(1);
  },
);
