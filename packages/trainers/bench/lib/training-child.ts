/**
 * One measurement of the training bench in a process of its own (node training-child.js '<job JSON>'):
 * a probe of the installed backends and the nets' flop counts, the step times of one net on one
 * backend, or the distortions of a trial of one net per decomposition beside its step time
 * (distortion-overhead.ts).
 * A fresh process per measurement gives each row its own peak RSS and leaves no backend threads
 * behind while the next peer runs. The profile suite (profile.ts) runs its profiled steps here
 * too. Prints its result on one RESULT_PREFIX line.
 */
import type { ModelName } from '@flatrank/protocol';
import { activeWebgpuAdapter } from '@flatrank/backend-webgpu';
import { profileNative, summarizeProfile, type ProfiledRun } from '@flatrank/backend-native';
import {
  buildModel,
  checkTrainingMemory,
  initBackend,
  installedBackends,
  setFusedBatchNorm,
} from '@flatrank/trainers';
import { measureDistortionOverhead } from './distortion-overhead.js';
import { trainingFlops } from './flops.js';
import {
  RESULT_PREFIX,
  THROUGHPUT_STEP,
  type Job,
  type ProbeResult,
  type ProfileResult,
  type Protocol,
  type TrainResult,
} from './jobs.js';
import { netInput, stepper, timeSteps } from './steps.js';

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
  const s = stepper(model, batch, job.net, THROUGHPUT_STEP);
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

/** Plain steps, then profiled ones (one profile per step), on the native backend. */
async function profile(job: Extract<Job, { kind: 'profile' }>): Promise<ProfileResult> {
  const info = await initBackend({ backend: 'native' });
  const model = buildModel(job.net, { inputShape: netInput(job.net), numClasses: 10, seed: 0 });
  checkTrainingMemory(model, job.batch, { modelName: job.net });
  const s = stepper(model, job.batch, job.net, THROUGHPUT_STEP);
  try {
    const protocol: Protocol = {
      warmup: job.warmup,
      warmupSeconds: 0,
      steps: job.steps,
      seconds: 0,
      maxSteps: job.steps,
    };
    const plain = await timeSteps(s.step, protocol);
    const runs: ProfiledRun[] = [];
    for (let i = 0; i < job.steps; i++) runs.push(await profileNative(s.step));
    return {
      version: info.version,
      threads: info.threads,
      batch: job.batch,
      plainStepMs: plain.stepSeconds.map((x) => x * 1000),
      profiledStepMs: runs.map((r) => r.wallMs),
      summary: summarizeProfile(runs, {
        peakGflops: job.peakGflops,
        peakGflopsPerThread: job.peakGflopsPerThread,
      }),
      maxRssKb: process.resourceUsage().maxRSS,
    };
  } finally {
    s.dispose();
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
        : job.kind === 'profile'
          ? await profile(job)
          : await measureDistortionOverhead(job);
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
