/**
 * Spec-time check that the data of every dataset a sweep trains on is where its trials will look
 * (the protocol's datasetSearchDirs, the same lookup the trainers use), so that a missing
 * --data-dir is a SpecError before anything is written rather than a failed trial per point.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import {
  CIFAR_TEST_FILE,
  CIFAR_TRAIN_FILES,
  datasetSearchDirs,
  IDX_FILES,
  idxFileNames,
  type DatasetName,
} from '@flatrank/protocol';
import type { GridPoint } from './expand.js';
import { specError, type Spec } from './load.js';

const isFile = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
const isDir = (p: string): boolean => statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;

const IDX_BASES = [
  IDX_FILES.train.images,
  IDX_FILES.train.labels,
  IDX_FILES.test.images,
  IDX_FILES.test.labels,
];
const CIFAR_FILES = [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE];

function missingIdx(dir: string): string[] {
  return IDX_BASES.filter((b) => !idxFileNames(b).some((n) => isFile(join(dir, n))));
}

/** Why `name`'s data is not available with this data dir, or null when it is. */
export function datasetProblem(name: DatasetName, dataDir: string | null): string | null {
  if (dataDir !== null && !isDir(dataDir))
    return `--data-dir ${dataDir} does not exist or is not a directory`;
  const { dirs } = datasetSearchDirs(name, dataDir);
  if (name === 'mnist') {
    // <dataDir>/mnist is used whenever it exists, so it must hold the files; else the embedded digits.
    const dir = dirs.find(isDir);
    const missing = dir ? missingIdx(dir) : [];
    return missing.length ? `${dir} has no ${missing.join(', ')} (raw or .gz)` : null;
  }
  if (name === 'fashion-mnist') {
    if (dirs.some((d) => missingIdx(d).length === 0)) return null;
    return `no Fashion-MNIST IDX files (${IDX_BASES.join(', ')}, raw or .gz) in ${dirs.join(', ')}; install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data-dir DIR holding them`;
  }
  if (dirs.length === 0)
    return 'cifar10 needs the CIFAR-10 binary files and no --data-dir was given; pass --data-dir DIR holding cifar-10-batches-bin/ (data_batch_1..5.bin, test_batch.bin)';
  const partial = dirs.find((d) => CIFAR_FILES.some((f) => isFile(join(d, f))));
  if (!partial)
    return `no CIFAR-10 binary files (data_batch_1..5.bin, test_batch.bin) in ${dirs.join(', ')}; download the "CIFAR-10 binary version" and pass --data-dir`;
  const missing = CIFAR_FILES.filter((f) => !isFile(join(partial, f)));
  return missing.length ? `${partial} lacks ${missing.join(', ')} of the CIFAR-10 binary version` : null;
}

/** Throws a SpecError at the spec's dataset field when a dataset the points train on is unavailable. */
export function checkDataAvailable(spec: Spec, points: readonly GridPoint[], dataDir: string | null): void {
  const firstUse = new Map<DatasetName, GridPoint>();
  for (const p of points) if (!firstUse.has(p.config.dataset.name)) firstUse.set(p.config.dataset.name, p);
  for (const [name, point] of firstUse) {
    const problem = datasetProblem(name, dataDir);
    if (problem === null) continue;
    throw specError(spec, datasetPath(spec, point), `${name}: ${problem}`, {
      context: { dataset: name, dataDir, point: point.label },
    });
  }
}

/** The spec field that chose a point's dataset: a grid axis, the method's dataset, or the sweep's. */
function datasetPath(spec: Spec, point: GridPoint): Array<string | number> {
  const candidates: Array<Array<string | number>> = [];
  if ('dataset' in point.axes)
    candidates.push(['methods', point.methodId, 'grid', 'dataset'], ['grid', 'dataset']);
  if (spec.parsed.methods[point.methodId]?.dataset?.name !== undefined)
    candidates.push(['methods', point.methodId, 'dataset', 'name']);
  const found = candidates.find((c) => spec.lineOf(c) !== undefined && hasPath(spec, c));
  return found ?? ['dataset'];
}

function hasPath(spec: Spec, path: Array<string | number>): boolean {
  let v: unknown = spec.parsed;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return false;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v !== undefined;
}
