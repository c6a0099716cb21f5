/**
 * The wasm heap is capped at 4 GiB (wasm32). Running out aborts the wasm module ("memory access out
 * of bounds" / "Aborted()") and leaves the backend unusable, so we (1) estimate a model's training
 * memory at a batch size before training and refuse with a ResourceExhaustedError, and (2) turn
 * OOM aborts that slip through into the same error.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ResourceExhaustedError } from '@flatrank/protocol';
import { WASM_HEAP_LIMIT_BYTES, wasmHeapBytes } from '@flatrank/backend-wasm';

export interface MemoryEstimate {
  /** Floats of all layer outputs for one example. */
  activationFloatsPerExample: number;
  params: number;
  /** Estimated peak bytes of one training step at this batch size. */
  bytes: number;
  batchSize: number;
}

/**
 * Peak bytes of a training step: every layer output is kept for the backward pass, gradients of
 * similar size flow back, TF.js keeps op intermediates (batch-norm moments, ...) on the tape, and
 * the conv-gradient kernels make transposed / dilated copies; weights carry a gradient and a
 * momentum buffer. ACTIVATION_FACTOR is the measured wasm heap of one SGD-momentum step divided by
 * 4 x batch x (sum of layer output sizes): 6.3 for ResNet-20 at batch 32 / 64 / 128 (613 / 1,099 /
 * 2,148 MiB), 6.0 for ResNet-32 at 128 (3,278 MiB), 6.2 for ResNet-56 at 32 (1,479 MiB).
 */
export const ACTIVATION_FACTOR = 6.5;
const PARAM_COPIES = 4;
/** Headroom below the hard cap for the allocator's fragmentation. */
export const WASM_USABLE_FRACTION = 0.85;

export function estimateTrainingMemory(model: LayersModel, batchSize: number): MemoryEstimate {
  let floats = 0;
  for (const layer of model.layers) {
    const shapes = layer.outputShape;
    const list = (Array.isArray(shapes[0]) || shapes.length === 0 ? shapes : [shapes]) as Array<
      Array<number | null>
    >;
    for (const s of list) floats += s.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
  }
  const params = model.countParams();
  const bytes = 4 * (batchSize * floats * ACTIVATION_FACTOR + params * PARAM_COPIES);
  return { activationFloatsPerExample: floats, params, bytes, batchSize };
}

/**
 * Throws ResourceExhaustedError when a training step of `model` at `batchSize` cannot fit the wasm
 * heap. A no-op on backends without a hard cap. Returns the estimate.
 */
export function checkTrainingMemory(
  model: LayersModel,
  batchSize: number,
  opts: { modelName?: string; limitBytes?: number; backend?: string } = {},
): MemoryEstimate {
  const est = estimateTrainingMemory(model, batchSize);
  const backend = opts.backend ?? tf.getBackend();
  const limit = opts.limitBytes ?? (backend === 'wasm' ? WASM_HEAP_LIMIT_BYTES : null);
  if (limit === null) return est;
  const usable = limit * WASM_USABLE_FRACTION;
  if (est.bytes > usable) {
    const perExample = 4 * est.activationFloatsPerExample * ACTIVATION_FACTOR;
    const fits = Math.floor((usable - 4 * est.params * PARAM_COPIES) / perExample);
    const suggestion = fits >= 1 ? 2 ** Math.floor(Math.log2(fits)) : null;
    const name = opts.modelName ?? model.name;
    throw new ResourceExhaustedError(
      `training ${name} at batch size ${batchSize} needs about ${gib(est.bytes)} GiB, more than the ${gib(limit)} GiB ` +
        `${backend} heap can hold` +
        (suggestion
          ? `; use a smaller batch (training.batchSize <= ${suggestion}) or the tensorflow backend`
          : '; use the tensorflow backend'),
      {
        context: {
          model: name,
          batchSize,
          estimatedBytes: est.bytes,
          limitBytes: limit,
          suggestedBatchSize: suggestion,
          backend,
        },
      },
    );
  }
  return est;
}

const OOM_PATTERNS = [
  /memory access out of bounds/i,
  /^Aborted\(/,
  /Cannot enlarge memory/i,
  /out of memory/i,
  /\bOOM\b/,
];

/**
 * True for the errors a heap exhaustion produces. A failed wasm malloc returns 0 and the kernel
 * then traps with whatever comes first (measured: "memory access out of bounds", "divide by zero"),
 * so any WebAssembly trap while the heap is past half its cap counts as out of memory.
 */
export function isOutOfMemoryError(e: unknown, heapBytes: number | null = wasmHeapBytes()): boolean {
  const msg = e instanceof Error ? e.message : typeof e === 'string' ? e : '';
  if (OOM_PATTERNS.some((p) => p.test(msg))) return true;
  // WebAssembly.RuntimeError (not typed under lib ES2023 without DOM): match by name.
  const isTrap = e instanceof Error && e.name === 'RuntimeError';
  return isTrap && heapBytes !== null && heapBytes >= WASM_HEAP_LIMIT_BYTES / 2;
}

/**
 * Runs `fn`, converting an out-of-memory abort into a ResourceExhaustedError that suggests a smaller
 * batch. After a wasm abort the module is dead: the process must exit (the trial fails, not retried
 * as is).
 */
export async function withMemoryGuard<T>(
  fn: () => Promise<T> | T,
  ctx: { batchSize?: number; model?: string } = {},
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ResourceExhaustedError || !isOutOfMemoryError(e)) throw e;
    const backend = tf.getBackend();
    const heap = wasmHeapBytes();
    const half = ctx.batchSize && ctx.batchSize > 1 ? Math.floor(ctx.batchSize / 2) : null;
    throw new ResourceExhaustedError(
      `out of memory on the ${backend} backend${ctx.model ? ` training ${ctx.model}` : ''}${ctx.batchSize ? ` at batch size ${ctx.batchSize}` : ''}` +
        (backend === 'wasm'
          ? ` (the wasm heap is capped at 4 GiB${heap ? ` and had grown to ${gib(heap)} GiB` : ''}; the backend is unusable after this, restart the process)`
          : '') +
        (half ? `; try a smaller batch (training.batchSize = ${half})` : ''),
      { context: { backend, ...ctx, heapBytes: heap, suggestedBatchSize: half }, cause: e },
    );
  }
}

function gib(b: number): string {
  return (b / 1024 ** 3).toFixed(2);
}
