/**
 * GPU discovery and execution slots. A slot is one place a trial can run: a GPU (CUDA index, set as
 * CUDA_VISIBLE_DEVICES in the child, plus the environment that pins the webgpu backend to the same
 * GPU) or a CPU worker (CUDA_VISIBLE_DEVICES='' hides every GPU).
 */
import { spawn } from 'node:child_process';
import { ValidationError } from '@flatrank/protocol';
import { listWebgpuGpus, webgpuPinning, type PinningHost, type WebgpuGpu } from './webgpu-gpus.js';

export interface GpuInfo {
  index: number;
  name: string;
  uuid: string | null;
  /** PCI address (nvidia-smi's 00000000:01:00.0 or sysfs's 0000:01:00.0), when known. */
  pciBusId?: string | null;
  /** Found by Dawn's adapter list (no nvidia-smi): the adapter to pin the webgpu backend to. */
  webgpu?: WebgpuGpu | null;
}

/** Finds the GPUs: nvidia-smi, else Dawn's hardware WebGPU adapters; [] means CPU workers. */
export type GpuDiscovery = () => Promise<GpuInfo[]>;

export const discoverGpus: GpuDiscovery = async () => {
  const nvidia = await discoverNvidiaGpus();
  if (nvidia.length) return nvidia;
  return (await listWebgpuGpus()).map((g, i) => ({
    index: i,
    name: g.name,
    uuid: null,
    pciBusId: null,
    webgpu: g,
  }));
};

/** Asks nvidia-smi for the GPUs; [] when it is absent or fails. */
export const discoverNvidiaGpus: GpuDiscovery = () =>
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
      child = spawn('nvidia-smi', ['--query-gpu=index,name,uuid,pci.bus_id', '--format=csv,noheader'], {
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

/** Parses `nvidia-smi --query-gpu=index,name,uuid[,pci.bus_id] --format=csv,noheader` output. */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split(/\r?\n/)) {
    const parts = line.split(',').map((s) => s.trim());
    if (parts.length < 2 || !/^\d+$/.test(parts[0]!)) continue;
    const gpu: GpuInfo = { index: Number(parts[0]), name: parts[1]!, uuid: parts[2] || null };
    if (parts[3]) gpu.pciBusId = parts[3];
    gpus.push(gpu);
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
  /** More environment for the child: what pins the webgpu backend to this GPU (empty on CPU). */
  env?: Record<string, string>;
}

export interface SlotPlan {
  slots: Slot[];
  gpus: GpuInfo[];
  /** Why these slots (for the log). */
  reason: string;
  /** GPUs the webgpu backend cannot be pinned to, and why (for the log). */
  warnings: string[];
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
  /** Facts about this machine that pinning depends on (tests inject them). */
  host?: PinningHost;
}): Promise<SlotPlan> {
  const discover = opts.discover ?? discoverGpus;
  let gpus: GpuInfo[] = [];
  let reason: string;
  if (opts.gpus === 'none') reason = 'GPUs disabled (--gpus none)';
  else {
    const found = await discover();
    if (opts.gpus === 'auto') {
      gpus = found;
      const by = found.some((g) => g.webgpu) ? "Dawn's WebGPU adapter list" : 'nvidia-smi';
      reason = found.length
        ? `${by} found ${found.length} GPU${found.length > 1 ? 's' : ''}`
        : 'no GPU found (no nvidia-smi, no hardware WebGPU adapter): CPU workers';
    } else {
      gpus = opts.gpus.map(
        (i) => found.find((g) => g.index === i) ?? { index: i, name: `GPU ${i}`, uuid: null },
      );
      reason = `GPUs ${opts.gpus.join(',')} requested`;
    }
  }
  const slots: Slot[] = [];
  const warnings: string[] = [];
  if (gpus.length > 0) {
    const pins = webgpuPinning(gpus, opts.host);
    for (const [i, g] of gpus.entries()) {
      const pin = pins[i]!;
      if (pin.warning) warnings.push(pin.warning);
      for (let w = 0; w < opts.workersPerGpu; w++)
        slots.push({
          id: opts.workersPerGpu > 1 ? `gpu${g.index}#${w}` : `gpu${g.index}`,
          cudaVisibleDevices: pin.cudaVisibleDevices,
          device: g.webgpu ? `webgpu:${g.index} ${g.name}` : `cuda:${g.index} ${g.name}`,
          env: pin.env,
        });
    }
  } else {
    for (let w = 0; w < opts.cpuWorkers; w++)
      slots.push({ id: `cpu${w}`, cudaVisibleDevices: '', device: 'cpu' });
  }
  return { slots, gpus, reason, warnings };
}
