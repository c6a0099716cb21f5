/**
 * Fakes for scheduler tests: the fake trainer child (fake-trainer.mjs, forkable without a build),
 * fake GPUs (an injectable discovery function, or a fake nvidia-smi script to put on PATH).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of the fake trainer child entry (the same file from src/ and dist/). */
export const fakeTrainerPath: string = fileURLToPath(new URL('../src/fake-trainer.mjs', import.meta.url));

export type FakeAction = 'ok' | 'crash' | 'hang' | 'diverge' | 'fail' | 'fail-retryable';

export interface FakeBehaviour {
  /** Steps of the fake training loop (default 5). */
  steps?: number;
  /** Sleep per step (default 20 ms; 0 = instant). */
  stepMs?: number;
  action?: FakeAction;
  /** Step at which the action happens (default steps / 2). */
  atStep?: number;
  /** The action applies only on these attempts (e.g. [1]: crash once, then succeed). */
  attempts?: number[];
  /** Exit code of a crash (default 1). */
  exitCode?: number;
  /** accuracyFinal to report (default 0.9 + 0.001 * (seed % 10)). */
  accuracy?: number;
}

export interface FakeTrainerSettings {
  default?: FakeBehaviour;
  /** Behaviour by config.seed (checked first). */
  bySeed?: Record<string, FakeBehaviour>;
  /** Behaviour by config.method. */
  byMethod?: Record<string, FakeBehaviour>;
  /** JSONL file: one 'start' and one 'end' (or 'crash' / 'hang') record per attempt. */
  logFile?: string;
  /** Directory receiving <trialKey>-<attempt>.pid for every attempt (to kill -9 a child). */
  pidDir?: string;
}

/** The environment that makes the fake trainer behave as told (pass as the child env). */
export function fakeTrainerEnv(settings: FakeTrainerSettings): Record<string, string> {
  return { FLATRANK_FAKE_TRAINER: JSON.stringify(settings) };
}

export interface FakeRunRecord {
  kind: 'start' | 'end' | 'crash' | 'hang';
  key: string;
  attempt: number;
  pid: number;
  cuda: string | null;
  order: string | null;
  /** FLATRANK_WEBGPU_ADAPTER and DRI_PRIME as the child saw them (webgpu pinning). */
  webgpuAdapter?: string | null;
  driPrime?: string | null;
  t: number;
  outcome?: string;
  seed?: number;
  method?: string;
}

/** Reads the fake trainer's JSONL log ([] when it does not exist yet). */
export function readFakeLog(file: string): FakeRunRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as FakeRunRecord);
}

/** The largest number of attempts that were running at the same time, from a fake log. */
export function maxConcurrency(records: readonly FakeRunRecord[]): number {
  const edges = records
    .filter((r) => r.kind !== 'hang')
    .map((r) => ({ t: r.t, d: r.kind === 'start' ? 1 : -1 }))
    .sort((a, b) => a.t - b.t || a.d - b.d);
  let cur = 0;
  let max = 0;
  for (const e of edges) {
    cur += e.d;
    max = Math.max(max, cur);
  }
  return max;
}

export interface FakeGpu {
  index: number;
  name: string;
  uuid: string | null;
}

export function fakeGpus(n: number, name = 'Fake Tesla T4'): FakeGpu[] {
  return Array.from({ length: n }, (_, i) => ({ index: i, name, uuid: `GPU-fake-${i}` }));
}

/** An injectable GPU discovery function (the scheduler's GpuDiscovery shape). */
export function fakeGpuDiscovery(n: number): () => Promise<FakeGpu[]> {
  return async () => fakeGpus(n);
}

/** A GPU found as a WebGPU adapter (the scheduler's GpuInfo with its `webgpu` field). */
export interface FakeWebgpuGpu extends FakeGpu {
  pciBusId: null;
  webgpu: {
    dawnBackend: string;
    name: string;
    vendor: string;
    description: string;
    selectableByName: boolean;
  };
}

/**
 * n fake WebGPU adapters as Dawn would list them on a machine without nvidia-smi; identical names
 * by default (the case Dawn's adapter= flag cannot tell apart), or the given names.
 */
export function fakeWebgpuGpus(
  n: number,
  names: readonly string[] = Array.from({ length: n }, () => 'Fake Radeon Pro W7900'),
  dawnBackend = 'vulkan',
): FakeWebgpuGpu[] {
  return names.slice(0, n).map((name, i) => ({
    index: i,
    name,
    uuid: null,
    pciBusId: null,
    webgpu: {
      dawnBackend,
      name,
      vendor: 'amd',
      description: `fake ${dawnBackend} adapter ${i}`,
      selectableByName: !names.slice(0, i).some((earlier) => earlier.includes(name)),
    },
  }));
}

/** An injectable discovery function returning fake WebGPU adapters. */
export function fakeWebgpuDiscovery(
  ...args: Parameters<typeof fakeWebgpuGpus>
): () => Promise<FakeWebgpuGpu[]> {
  return async () => fakeWebgpuGpus(...args);
}

/**
 * Writes an executable `nvidia-smi` into dir that answers the scheduler's query with n fake GPUs,
 * and returns a PATH with dir first (for CLI processes).
 */
export function installFakeNvidiaSmi(dir: string, n: number): string {
  mkdirSync(dir, { recursive: true });
  const lines = fakeGpus(n)
    .map((g) => `${g.index}, ${g.name}, ${g.uuid}`)
    .join('\\n');
  const script = join(dir, 'nvidia-smi');
  writeFileSync(
    script,
    `#!/bin/sh\n# fake nvidia-smi (flatrank tests)\nprintf '${lines}${n ? '\\n' : ''}'\n`,
  );
  chmodSync(script, 0o755);
  return `${dir}${delimiter}${process.env['PATH'] ?? ''}`;
}
