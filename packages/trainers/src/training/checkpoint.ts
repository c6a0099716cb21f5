/**
 * Checkpoints: a directory holding
 *   model.json    tfjs LayersModel format (modelTopology + weightsManifest, paths ['weights.bin'])
 *   weights.bin   the concatenated weights
 *   flatrank.json metadata: trial key, config, epoch, step, accuracy, ... (CheckpointMeta)
 * Written into a sibling temp directory and renamed into place, so a crash never leaves a half
 * checkpoint under the final name.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { DataError, ShapeError, type TrialConfig } from '@flatrank/protocol';

export const CHECKPOINT_FORMAT = 'flatrank-checkpoint-1';

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
}

export async function saveCheckpoint(
  model: tfl.LayersModel,
  dir: string,
  meta: Omit<CheckpointMeta, 'format' | 'savedAt'>,
): Promise<string> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.tmp-${process.pid}-${Date.now().toString(36)}`);
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
          weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
        };
        await writeFile(join(tmp, 'model.json'), JSON.stringify(modelJson));
        await writeFile(join(tmp, 'weights.bin'), new Uint8Array(data));
        return {
          modelArtifactsInfo: {
            dateSaved: new Date(),
            modelTopologyType: 'JSON',
            weightDataBytes: data.byteLength,
          },
        };
      }),
    );
    const full = { format: CHECKPOINT_FORMAT, savedAt: new Date().toISOString(), ...meta } as CheckpointMeta;
    await writeFile(join(tmp, 'flatrank.json'), JSON.stringify(full, null, 2));
    if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return dir;
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

export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const meta = (await readJson(join(dir, 'flatrank.json'))) as CheckpointMeta;
  if (meta?.format !== CHECKPOINT_FORMAT)
    throw new DataError(
      `${join(dir, 'flatrank.json')}: not a flatrank checkpoint (format ${JSON.stringify(meta?.format)}, expected ${CHECKPOINT_FORMAT})`,
      { file: join(dir, 'flatrank.json') },
    );
  const modelJson = (await readJson(join(dir, 'model.json'))) as LoadedCheckpoint['modelJson'];
  const specs = (modelJson.weightsManifest ?? []).flatMap((g) => g.weights);
  const binFile = join(dir, 'weights.bin');
  let bin: Buffer;
  try {
    bin = await readFile(binFile);
  } catch (e) {
    throw new DataError(`checkpoint file ${binFile} cannot be read: ${(e as Error).message}`, {
      file: binFile,
      cause: e,
    });
  }
  const expected = specs.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (bin.byteLength !== expected)
    throw new DataError(
      `${binFile}: ${bin.byteLength} bytes, the manifest needs ${expected} (truncated or corrupt checkpoint)`,
      { file: binFile },
    );
  const buffer = new Uint8Array(bin).buffer as ArrayBuffer;
  const named = tf.io.decodeWeights(buffer, specs);
  return { dir, meta, modelJson, weights: specs.map((s) => ({ name: s.name, tensor: named[s.name]! })) };
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
