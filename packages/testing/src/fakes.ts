/**
 * Fakes for scheduler tests: the fake trainer child (fake-trainer/child.ts), fake GPUs (an
 * injectable discovery function, or a fake nvidia-smi script to put on PATH).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FakeRunRecord } from './fake-trainer/settings.js';

/**
 * Absolute path of the fake trainer child (src/fake-trainer/child.ts, built to dist/ like the rest
 * of this package: `npx tsc -b` first; `npm test` does). The same path from src/ and dist/.
 */
export const fakeTrainerPath: string = fileURLToPath(
  new URL('../dist/fake-trainer/child.js', import.meta.url),
);

export {
  FAKE_ACTIONS,
  FAKE_TRAINER_ENV,
  fakeTrainerEnv,
  type FakeAction,
  type FakeBehaviour,
  type FakeRunRecord,
  type FakeTrainerSettings,
} from './fake-trainer/settings.js';

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
