/**
 * Checkpoints, in the layout protocol/src/checkpoint.ts names (format string and file names):
 *   model.json     tfjs LayersModel format (modelTopology + weightsManifest, paths ['weights.bin'])
 *   weights.bin    the concatenated weights
 *   flatrank.json  metadata: format, trial key, config, epoch, step, accuracy, ... (CheckpointMeta)
 *   optimizer.json + optimizer.bin  (optional) the momentum buffers: format, kind, hyperparameters,
 *                  one { name, shape } per buffer, byte count and sha256 of optimizer.bin
 * Every file is written (and fsynced) into a sibling temp directory which is then renamed into
 * place, so a crash never leaves a half checkpoint (model without its optimizer state, or the
 * reverse) under the final name.
 *
 * Versions: the optimizer state is an optional part with its own format ('flatrank-optimizer-1'),
 * declared in flatrank.json as `optimizer: { format, kind, file, buffers }` (null: saved without;
 * absent: written before optimizer state existed). The checkpoint format itself stays
 * 'flatrank-checkpoint-1' because the layout readers depend on is unchanged: older readers (and
 * the scheduler's start-checkpoint check, which compares the format string) still accept new
 * checkpoints and just ignore the momentum, and old checkpoints load here with fresh momentum.
 */
import { createHash } from 'node:crypto';
import { open, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  CHECKPOINT_FILES,
  CHECKPOINT_FORMAT,
  DataError,
  OPTIMIZER_FORMAT,
  ShapeError,
  ValidationError,
  type TrialConfig,
} from '@flatrank/protocol';
import {
  OPTIMIZER_STATE_KIND,
  optimizerStateMismatch,
  type MomentumStart,
  type OptimizerState,
} from './optimizer-state.js';

const { meta: META_JSON, model: MODEL_JSON, weights: WEIGHTS_BIN } = CHECKPOINT_FILES;
const { optimizerMeta: OPTIMIZER_JSON, optimizerData: OPTIMIZER_BIN } = CHECKPOINT_FILES;

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  trialKey: string | null;
  config: TrialConfig | null;
  /** 'base': the architecture named by config.model; 'factored': the exported compressed model. */
  architecture: 'base' | 'factored';
  epoch: number;
  step: number;
  accuracy: number | null;
  savedAt: string;
  /**
   * The saved optimizer state: null when saved without, absent in checkpoints written before
   * optimizer state was saved.
   */
  optimizer?: {
    format: string;
    kind: typeof OPTIMIZER_STATE_KIND;
    file: typeof OPTIMIZER_JSON;
    buffers: number;
  } | null;
  [extra: string]: unknown;
}

export interface LoadedCheckpoint {
  dir: string;
  meta: CheckpointMeta;
  modelJson: {
    modelTopology: unknown;
    weightsManifest: tf.io.WeightsManifestConfig;
    format?: string;
    generatedBy?: string;
    convertedBy?: string | null;
  };
  /** Weights in manifest order (the order of model.weights when saved). */
  weights: Array<{ name: string; tensor: tf.Tensor }>;
  /** The momentum buffers, or null (see optimizerAbsentReason). */
  optimizer: OptimizerState | null;
  /** Why optimizer is null: written before optimizer state, saved without, unknown version, not read. */
  optimizerAbsentReason: string | null;
}

export interface SaveCheckpointOptions {
  /**
   * The optimizer state of the training that produced these weights (trainLoop's
   * result.optimizerState with keepOptimizerState). Omitted or null: saved without (a dependent
   * training run then starts with fresh momentum). Must match the model's trainable variables.
   */
  optimizer?: OptimizerState | null;
}

/** Writes and fsyncs a file, so that the rename that publishes it cannot outrun its data. */
async function writeSynced(file: string, data: string | Uint8Array): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync of a directory (its entries); not possible on every platform, so best effort. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // e.g. Windows cannot open directories; the rename is still atomic there.
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Checks a state about to be saved against the model (a mismatch would only fail at load time). */
function checkStateToSave(model: tfl.LayersModel, state: OptimizerState): void {
  if (state.kind !== OPTIMIZER_STATE_KIND)
    throw new ValidationError(
      'optimizer.kind',
      `optimizer.kind: must be '${OPTIMIZER_STATE_KIND}', got ${JSON.stringify(state.kind)}`,
    );
  const targets = model.trainableWeights.map((w) => ({ name: w.originalName, shape: w.shape as number[] }));
  const mismatch = optimizerStateMismatch(state, targets);
  if (mismatch !== null)
    throw new ValidationError(
      'optimizer',
      `optimizer: the state does not belong to model ${model.name}: ${mismatch}`,
    );
}

function encodeOptimizer(state: OptimizerState): { json: string; bin: Uint8Array } {
  const bytes = state.slots.reduce((s, b) => s + b.values.byteLength, 0);
  const bin = new Uint8Array(bytes);
  let off = 0;
  for (const slot of state.slots) {
    bin.set(new Uint8Array(slot.values.buffer, slot.values.byteOffset, slot.values.byteLength), off);
    off += slot.values.byteLength;
  }
  const json = JSON.stringify({
    format: OPTIMIZER_FORMAT,
    kind: state.kind,
    momentum: state.momentum,
    nesterov: state.nesterov,
    weightDecay: state.weightDecay,
    dtype: 'float32',
    bytes,
    sha256: createHash('sha256').update(bin).digest('hex'),
    buffers: state.slots.map((s) => ({ name: s.name, shape: s.shape })),
  });
  return { json, bin };
}

export async function saveCheckpoint(
  model: tfl.LayersModel,
  dir: string,
  meta: Omit<CheckpointMeta, 'format' | 'savedAt' | 'optimizer'>,
  options: SaveCheckpointOptions = {},
): Promise<string> {
  const state = options.optimizer ?? null;
  if (state !== null) checkStateToSave(model, state);
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const stamp = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${stamp}`);
  await mkdir(tmp, { recursive: true });
  try {
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const data =
          artifacts.weightData === undefined
            ? new ArrayBuffer(0)
            : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
        const modelJson = {
          modelTopology: artifacts.modelTopology,
          format: artifacts.format ?? 'layers-model',
          generatedBy: artifacts.generatedBy,
          convertedBy: artifacts.convertedBy ?? null,
          weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
        };
        await writeSynced(join(tmp, MODEL_JSON), JSON.stringify(modelJson));
        await writeSynced(join(tmp, WEIGHTS_BIN), new Uint8Array(data));
        return {
          modelArtifactsInfo: {
            dateSaved: new Date(),
            modelTopologyType: 'JSON',
            weightDataBytes: data.byteLength,
          },
        };
      }),
    );
    if (state !== null) {
      const { json, bin } = encodeOptimizer(state);
      await writeSynced(join(tmp, OPTIMIZER_BIN), bin);
      await writeSynced(join(tmp, OPTIMIZER_JSON), json);
    }
    // (Omit over CheckpointMeta's index signature drops the named keys from the type, hence the cast.)
    const full = {
      format: CHECKPOINT_FORMAT,
      savedAt: new Date().toISOString(),
      ...meta,
      optimizer:
        state === null
          ? null
          : { format: OPTIMIZER_FORMAT, kind: state.kind, file: OPTIMIZER_JSON, buffers: state.slots.length },
    } as CheckpointMeta;
    await writeSynced(join(tmp, META_JSON), JSON.stringify(full, null, 2));
    await syncDir(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await publish(tmp, dir, stamp);
  return dir;
}

/**
 * Renames the finished temp directory to `dir`. A directory cannot be renamed over a non-empty
 * one, so an existing checkpoint is first moved aside and removed only once the new one is in
 * place (a crash in between leaves it as .<name>.old-*, never a half checkpoint under the name).
 */
async function publish(tmp: string, dir: string, stamp: string): Promise<void> {
  const parent = dirname(dir);
  let old: string | null = null;
  try {
    if (existsSync(dir)) {
      old = join(parent, `.${basename(dir)}.old-${stamp}`);
      await rename(dir, old);
    }
    try {
      await rename(tmp, dir);
    } catch (e) {
      if (old !== null) await rename(old, dir).catch(() => undefined);
      old = null;
      throw e;
    }
    await syncDir(parent);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (old !== null) await rm(old, { recursive: true, force: true });
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DataError(`checkpoint file ${file} cannot be read: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DataError(`checkpoint file ${file} is not valid JSON`, { file, cause: e });
  }
}

/** A checkpoint's binary file, or a DataError naming it. */
async function readCheckpointFile(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    throw new DataError(`checkpoint file ${file} cannot be read: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
}

export interface LoadCheckpointOptions {
  /** Read the optimizer state (default true); false skips the files (e.g. evaluation only). */
  optimizer?: boolean;
}

export async function loadCheckpoint(
  dir: string,
  options: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const metaFile = join(dir, META_JSON);
  const meta = (await readJson(metaFile)) as CheckpointMeta;
  if (meta?.format !== CHECKPOINT_FORMAT)
    throw new DataError(
      `${metaFile}: not a flatrank checkpoint (format ${JSON.stringify(meta?.format)}, expected ${CHECKPOINT_FORMAT})`,
      { file: metaFile },
    );
  const modelJson = (await readJson(join(dir, MODEL_JSON))) as LoadedCheckpoint['modelJson'];
  const specs = (modelJson.weightsManifest ?? []).flatMap((g) => g.weights);
  const binFile = join(dir, WEIGHTS_BIN);
  const bin = await readCheckpointFile(binFile);
  const expected = specs.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (bin.byteLength !== expected)
    throw new DataError(
      `${binFile}: ${bin.byteLength} bytes, the manifest needs ${expected} (truncated or corrupt checkpoint)`,
      { file: binFile },
    );
  let optimizer: OptimizerState | null = null;
  let optimizerAbsentReason: string | null = null;
  const declared = meta.optimizer;
  if (declared === undefined)
    optimizerAbsentReason = `${dir} was written before checkpoints carried optimizer state`;
  else if (declared === null) optimizerAbsentReason = `${dir} was saved without optimizer state`;
  else if (typeof declared !== 'object' || !Number.isInteger(declared.buffers))
    throw new DataError(
      `${metaFile}: optimizer must be null or { format, kind, file, buffers }, got ${JSON.stringify(declared)}`,
      { file: metaFile },
    );
  else if (declared.format !== OPTIMIZER_FORMAT)
    // A newer writer's optimizer part: the weights are still usable, only the momentum is not.
    optimizerAbsentReason = `${dir} holds optimizer state of format ${JSON.stringify(declared.format)}, which this version cannot read (it reads ${OPTIMIZER_FORMAT})`;
  else if (options.optimizer === false) optimizerAbsentReason = `optimizer state of ${dir} not read`;
  else optimizer = await readOptimizer(dir, declared.buffers);
  const buffer = new Uint8Array(bin).buffer as ArrayBuffer;
  const named = tf.io.decodeWeights(buffer, specs);
  return {
    dir,
    meta,
    modelJson,
    weights: specs.map((s) => ({ name: s.name, tensor: named[s.name]! })),
    optimizer,
    optimizerAbsentReason,
  };
}

function isShape(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((d) => Number.isInteger(d) && (d as number) >= 0);
}

/** Reads optimizer.json + optimizer.bin; anything missing, malformed or truncated: DataError naming the file. */
async function readOptimizer(dir: string, expectedBuffers: number): Promise<OptimizerState> {
  const jsonFile = join(dir, OPTIMIZER_JSON);
  const binFile = join(dir, OPTIMIZER_BIN);
  const j = (await readJson(jsonFile)) as Record<string, unknown> | null;
  const bad = (what: string): DataError =>
    new DataError(`${jsonFile}: ${what} (corrupt optimizer state)`, { file: jsonFile });
  if (typeof j !== 'object' || j === null) throw bad('not a JSON object');
  if (j['format'] !== OPTIMIZER_FORMAT)
    throw bad(`format ${JSON.stringify(j['format'])}, expected ${OPTIMIZER_FORMAT}`);
  if (j['kind'] !== OPTIMIZER_STATE_KIND)
    throw bad(`kind ${JSON.stringify(j['kind'])}, expected ${OPTIMIZER_STATE_KIND}`);
  if (j['dtype'] !== 'float32') throw bad(`dtype ${JSON.stringify(j['dtype'])}, expected float32`);
  const momentum = j['momentum'];
  const weightDecay = j['weightDecay'];
  const nesterov = j['nesterov'];
  if (typeof momentum !== 'number' || !Number.isFinite(momentum)) throw bad('momentum is not a number');
  if (typeof weightDecay !== 'number' || !Number.isFinite(weightDecay))
    throw bad('weightDecay is not a number');
  if (typeof nesterov !== 'boolean') throw bad('nesterov is not a boolean');
  const buffers = j['buffers'];
  if (
    !Array.isArray(buffers) ||
    !buffers.every(
      (b: unknown) =>
        typeof b === 'object' &&
        b !== null &&
        typeof (b as { name?: unknown }).name === 'string' &&
        isShape((b as { shape?: unknown }).shape),
    )
  )
    throw bad('buffers must be a list of { name, shape }');
  const list = buffers as Array<{ name: string; shape: number[] }>;
  if (list.length !== expectedBuffers)
    throw bad(`${list.length} buffers, flatrank.json says ${expectedBuffers}`);
  const bytes = list.reduce((s, b) => s + product(b.shape) * 4, 0);
  if (j['bytes'] !== bytes) throw bad(`bytes ${JSON.stringify(j['bytes'])}, the buffers need ${bytes}`);
  const bin = await readCheckpointFile(binFile);
  if (bin.byteLength !== bytes)
    throw new DataError(
      `${binFile}: ${bin.byteLength} bytes, ${OPTIMIZER_JSON} needs ${bytes} (truncated or corrupt optimizer state)`,
      { file: binFile },
    );
  const sha = createHash('sha256').update(bin).digest('hex');
  if (sha !== j['sha256'])
    throw new DataError(
      `${binFile}: sha256 ${sha} differs from the ${JSON.stringify(j['sha256'])} recorded in ${OPTIMIZER_JSON} (corrupt optimizer state)`,
      { file: binFile },
    );
  // One aligned copy, sliced per buffer (a Buffer from readFile may sit at an unaligned offset).
  const all = new Float32Array(new Uint8Array(bin).buffer);
  let off = 0;
  const slots = list.map((b) => {
    const n = product(b.shape);
    const values = all.slice(off, off + n);
    off += n;
    return { name: b.name, shape: [...b.shape], values };
  });
  return { kind: OPTIMIZER_STATE_KIND, momentum, nesterov, weightDecay, slots };
}

/**
 * What a training run starting from `ckpt` is offered: 'resume' when the checkpoint was written
 * by the same trial (trial keys equal), else 'continue' (rules in optimizer-state.ts).
 */
export function momentumStartFor(ckpt: LoadedCheckpoint, trialKey: string | null): MomentumStart {
  const resume = trialKey !== null && ckpt.meta.trialKey === trialKey;
  return {
    state: ckpt.optimizer,
    mode: resume ? 'resume' : 'continue',
    source: ckpt.dir,
    absentReason: ckpt.optimizerAbsentReason,
  };
}

/**
 * Copies checkpoint weights into an already built model of the same architecture. Matches by
 * position in model.weights (the order they were saved in) and checks every shape, because layer
 * names carry global suffixes that differ between processes.
 */
export function restoreWeights(model: tfl.LayersModel, ckpt: LoadedCheckpoint): void {
  const targets = model.weights;
  if (targets.length !== ckpt.weights.length)
    throw new ShapeError(
      'startCheckpoint',
      `checkpoint ${ckpt.dir} has ${ckpt.weights.length} weight tensors, the model has ${targets.length} (different architecture?)`,
    );
  targets.forEach((w, i) => {
    const src = ckpt.weights[i]!;
    if (src.tensor.shape.join('x') !== w.shape.join('x'))
      throw new ShapeError(
        'startCheckpoint',
        `checkpoint ${ckpt.dir}: weight ${i} (${src.name}) has shape [${src.tensor.shape}], the model's ${w.originalName} has [${w.shape}]`,
      );
  });
  targets.forEach((w, i) => w.write(ckpt.weights[i]!.tensor));
}

/** Rebuilds the saved model from its own topology (any architecture, e.g. a factored one). */
export async function loadCheckpointModel(ckpt: LoadedCheckpoint): Promise<tfl.LayersModel> {
  const { data, specs: encSpecs } = await tf.io.encodeWeights(
    ckpt.weights.map((w) => ({ name: w.name, tensor: w.tensor })),
  );
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: ckpt.modelJson.modelTopology as object,
      weightSpecs: encSpecs,
      weightData: data,
    }),
  );
}

export function disposeCheckpoint(ckpt: LoadedCheckpoint): void {
  for (const w of ckpt.weights) w.tensor.dispose();
}
