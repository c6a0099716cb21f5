/**
 * The measuring half of `allocate` by sensitivity: for each target layer and candidate rank, the
 * accuracy on a validation split of the training set (never the test set) with only that layer
 * decomposed, the rest of the model as it is. The curves are cached per start model: a JSON file
 * keyed by the hash of the model's weights, the layers' decomposition options and candidates, and
 * the validation split, so that every trial of a grid starting from the same checkpoint reuses them.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { Tensor } from '@flatrank/core';
import {
  decompose,
  reconstruct,
  type SensitivityMeasure,
  type SensitivityMeasurement,
  type SensitivityRequest,
} from '@flatrank/decomposers';
import { ValidationError, canonicalJson, sha256Hex } from '@flatrank/protocol';
import { mixSeed, permutation, type Split } from '../data/index.js';
import { evaluateModel, type ArraySplit } from '../training/evaluate.js';

/** Version of the cached curve files (a change of their meaning changes every key). */
export const CURVES_FORMAT = 'flatrank-sensitivity-curves-1';

/** The stream of the validation draw, apart from the training shuffles of the same seed. */
const VALIDATION_STREAM = 0x5e45;

export interface ValidationSplit {
  split: ArraySplit;
  /** Recorded with the allocation: where the examples come from and which they are. */
  info: { source: 'train'; size: number; seed: number; trainCount: number; sha256: string };
}

/**
 * `size` training examples drawn with `seed` (the same seed, training set and size give the same
 * examples on every machine), in training-set order. The split is only read, never held out of the
 * trial's training: every method of a sweep trains on the same data, and the start model has seen
 * these examples, so the curves measure relative losses on seen data.
 */
export function validationSplit(train: Split, size: number, seed: number): ValidationSplit {
  if (!(Number.isInteger(size) && size >= 1 && size <= train.count))
    throw new ValidationError(
      'compression.rank.sensitivity.validationSize',
      `compression.rank.sensitivity.validationSize: must be an integer in [1, ${train.count}] (the training examples of this trial), got ${size}`,
    );
  const idx = permutation(train.count, mixSeed(seed, VALIDATION_STREAM)).subarray(0, size).sort();
  const per = train.imageShape.reduce((a, b) => a * b, 1);
  const images = new Float32Array(size * per);
  const labels = new Int32Array(size);
  idx.forEach((j, i) => {
    images.set(train.images.subarray(j * per, (j + 1) * per), i * per);
    labels[i] = train.labels[j]!;
  });
  const hash = createHash('sha256');
  hash.update(new Uint8Array(images.buffer));
  hash.update(new Uint8Array(labels.buffer));
  return {
    split: { images, labels, count: size },
    info: { source: 'train', size, seed, trainCount: train.count, sha256: hash.digest('hex') },
  };
}

/** sha256 over every weight of the model (trainable or not: batch-norm statistics count), in order. */
export async function modelWeightsHash(model: tfl.LayersModel): Promise<string> {
  const hash = createHash('sha256');
  for (const w of model.weights) {
    hash.update(`${w.originalName}:${w.shape.join('x')};`);
    const data = (await w.read().data()) as Float32Array;
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return hash.digest('hex');
}

export interface SensitivityEnv {
  validation: ValidationSplit;
  imageShape: readonly number[];
  numClasses: number;
  /** Where the curve files go (null: no cache). */
  cacheDir: string | null;
  /** Called between evaluations and after every sweep of an iterative fit (heartbeats, cancellation). */
  beat(): void;
}

interface CurveFile {
  format: string;
  key: string;
  baseline: number;
  layers: Array<{ name: string; points: Array<{ ranks: number[]; accuracy: number }> }>;
}

function readCurves(file: string, key: string, req: SensitivityRequest): SensitivityMeasurement | null {
  let c: CurveFile;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as CurveFile;
  } catch {
    return null;
  }
  const ok =
    c?.format === CURVES_FORMAT &&
    c.key === key &&
    Number.isFinite(c.baseline) &&
    Array.isArray(c.layers) &&
    c.layers.length === req.layers.length &&
    req.layers.every(
      (l, i) =>
        c.layers[i]?.name === l.name &&
        c.layers[i]!.points.length === l.candidates.length &&
        l.candidates.every(
          (cand, j) =>
            canonicalJson(c.layers[i]!.points[j]!.ranks) === canonicalJson(cand.ranks) &&
            Number.isFinite(c.layers[i]!.points[j]!.accuracy),
        ),
    );
  if (!ok) return null;
  return { baseline: c.baseline, accuracies: c.layers.map((l) => l.points.map((p) => p.accuracy)) };
}

/** Writes the file next to its final name and renames it: a reader never sees half a file. */
function writeCurves(file: string, dir: string, content: CurveFile): string | null {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(tmp, `${JSON.stringify(content)}\n`);
    renameSync(tmp, file);
    return null;
  } catch (e) {
    rmSync(tmp, { force: true });
    return (e as Error).message;
  }
}

function kernelVariableOf(model: tfl.LayersModel, name: string): tfl.LayerVariable {
  const k = model.getLayer(name).weights.find((w) => /(^|\/)kernel(_\d+)?$/.test(w.originalName));
  if (!k) throw new ValidationError('compression.layers', `layer ${name} has no kernel weight`);
  return k;
}

/**
 * The measure function of the allocator. Each layer's kernel is replaced by the reconstruction at
 * each candidate, the model evaluated on the validation split, and the kernel restored; the model
 * is left exactly as it was.
 */
export function measureSensitivity(model: tfl.LayersModel, env: SensitivityEnv): SensitivityMeasure {
  return async (req) => {
    const key = sha256Hex(
      canonicalJson({
        format: CURVES_FORMAT,
        weights: await modelWeightsHash(model),
        validation: env.validation.info,
        layers: req.layers.map((l) => ({ name: l.name, candidates: l.candidates.map((c) => c.options) })),
      }),
    );
    const file = env.cacheDir === null ? null : join(env.cacheDir, `${key}.json`);
    const info = (cache: Record<string, unknown>): Record<string, unknown> => ({
      validation: env.validation.info,
      cache: { key, file, ...cache },
    });
    const cached = file === null ? null : readCurves(file, key, req);
    if (cached) return { ...cached, info: info({ hit: true }) };
    const evaluate = async (): Promise<number> => {
      const r = await evaluateModel(model, env.validation.split, env.imageShape, env.numClasses, 256);
      env.beat();
      return r.accuracy;
    };
    const baseline = await evaluate();
    const accuracies: number[][] = [];
    for (const layer of req.layers) {
      const v = kernelVariableOf(model, layer.name);
      const original = Float32Array.from((await v.read().data()) as Float32Array);
      const shape = v.shape as number[];
      const write = (data: Float32Array): void => {
        const t = tf.tensor(data, shape, 'float32');
        v.write(t);
        t.dispose();
      };
      const kernel = new Tensor(original, shape);
      const row: number[] = [];
      try {
        for (const c of layer.candidates) {
          // A long fit (CP-ALS of a wide layer) reports its sweeps: heartbeats between evaluations too.
          const d = decompose(kernel, c.options, { onSweep: () => env.beat() });
          write(Float32Array.from(reconstruct(d).data));
          row.push(await evaluate());
        }
      } finally {
        write(original);
      }
      accuracies.push(row);
    }
    let written: string | null = 'no start checkpoint to keep the curves beside';
    if (file !== null && env.cacheDir !== null)
      written = writeCurves(file, env.cacheDir, {
        format: CURVES_FORMAT,
        key,
        baseline,
        layers: req.layers.map((l, i) => ({
          name: l.name,
          points: l.candidates.map((c, j) => ({ ranks: c.ranks, accuracy: accuracies[i]![j]! })),
        })),
      });
    return {
      baseline,
      accuracies,
      info: info({ hit: false, ...(written === null ? {} : { notWritten: written }) }),
    };
  };
}
