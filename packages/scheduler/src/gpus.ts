/**
 * GPU discovery and execution slots. A slot is one place a trial can run: a GPU (CUDA index, set as
 * CUDA_VISIBLE_DEVICES in the child) or a CPU worker (CUDA_VISIBLE_DEVICES='' hides every GPU).
 */
import { spawn } from 'node:child_process';
import { ValidationError } from '@flatrank/protocol';

export interface GpuInfo {
  index: number;
  name: string;
  uuid: string | null;
}

/** Asks nvidia-smi for the GPUs; [] when it is absent or fails (the CPU fallback). */
export type GpuDiscovery = () => Promise<GpuInfo[]>;

export const discoverGpus: GpuDiscovery = () =>
  new Promise((resolve) => {
    let out = '';
    let done = false;
    const finish = (gpus: GpuInfo[]) => {
      if (!done) {
        done = true;
        resolve(gpus);
      }
    };
    let child;
    try {
      child = spawn('nvidia-smi', ['--query-gpu=index,name,uuid', '--format=csv,noheader'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      finish([]);
      return;
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish([]);
    }, 10_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', () => {
      clearTimeout(timer);
      finish([]);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      finish(code === 0 ? parseNvidiaSmi(out) : []);
    });
  });

/** Parses `nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader` output. */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split(/\r?\n/)) {
    const parts = line.split(',').map((s) => s.trim());
    if (parts.length < 2 || !/^\d+$/.test(parts[0]!)) continue;
    gpus.push({ index: Number(parts[0]), name: parts[1]!, uuid: parts[2] || null });
  }
  return gpus;
}

export type GpuRequest = 'auto' | 'none' | number[];

/** Parses --gpus: auto | none | 0,1,... */
export function parseGpusFlag(value: string, field = '--gpus'): GpuRequest {
  const v = value.trim();
  if (v === 'auto' || v === 'none') return v;
  if (/^\d+(\s*,\s*\d+)*$/.test(v)) {
    const ids = v.split(',').map((s) => Number(s.trim()));
    if (new Set(ids).size !== ids.length)
      throw new ValidationError(field, `${field}: GPU ${v} lists a GPU twice`);
    return ids;
  }
  throw new ValidationError(
    field,
    `${field}: must be auto, none, or a comma-separated list of GPU indices such as 0,1; got ${JSON.stringify(value)}`,
  );
}

export interface Slot {
  /** "gpu0#1" or "cpu2". */
  id: string;
  /** CUDA_VISIBLE_DEVICES value for the child ('' = CPU only). */
  cudaVisibleDevices: string;
  /** Device name for the store and the status table. */
  device: string;
}

export interface SlotPlan {
  slots: Slot[];
  gpus: GpuInfo[];
  /** Why these slots (for the log). */
  reason: string;
}

/**
 * One slot per GPU x workersPerGpu, or cpuWorkers CPU slots when there is no GPU. An explicit GPU
 * list is trusted (its names come from nvidia-smi when it answers).
 */
export async function planSlots(opts: {
  gpus: GpuRequest;
  workersPerGpu: number;
  cpuWorkers: number;
  discover?: GpuDiscovery;
}): Promise<SlotPlan> {
  const discover = opts.discover ?? discoverGpus;
  let gpus: GpuInfo[] = [];
  let reason: string;
  if (opts.gpus === 'none') reason = 'GPUs disabled (--gpus none)';
  else {
    const found = await discover();
    if (opts.gpus === 'auto') {
      gpus = found;
      reason = found.length
        ? `nvidia-smi found ${found.length} GPU${found.length > 1 ? 's' : ''}`
        : 'no GPU found (nvidia-smi absent or empty): CPU workers';
    } else {
      gpus = opts.gpus.map(
        (i) => found.find((g) => g.index === i) ?? { index: i, name: `GPU ${i}`, uuid: null },
      );
      reason = `GPUs ${opts.gpus.join(',')} requested`;
    }
  }
  const slots: Slot[] = [];
  if (gpus.length > 0) {
    for (const g of gpus)
      for (let w = 0; w < opts.workersPerGpu; w++)
        slots.push({
          id: opts.workersPerGpu > 1 ? `gpu${g.index}#${w}` : `gpu${g.index}`,
          cudaVisibleDevices: String(g.index),
          device: `cuda:${g.index} ${g.name}`,
        });
  } else {
    for (let w = 0; w < opts.cpuWorkers; w++)
      slots.push({ id: `cpu${w}`, cudaVisibleDevices: '', device: 'cpu' });
  }
  return { slots, gpus, reason };
}
