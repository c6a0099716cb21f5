/**
 * Grid axes: short names for the fields people sweep (seed, ratio, rank, tile, sd, ...) plus any
 * dotted path into the trial config (training.lr, compression.tucker.algorithm, dataset.trainLimit).
 */
import { rankShorthand } from './schema.js';

/** Which methods an axis can apply to: every method, methods with a compression, distort only, or trp only. */
export type AxisScope = 'all' | 'compression' | 'distortion' | 'trp';

export interface AxisDef {
  /** Config path the axis writes (for conflict detection between axes). */
  target: string;
  scope: AxisScope;
  /** What the README and error messages say about it. */
  help: string;
  apply(draft: Record<string, unknown>, value: unknown): void;
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    const next = cur[k];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function pathAxis(target: string, help: string, map: (v: unknown) => unknown = (v) => v): AxisDef {
  const parts = target.split('.');
  const scopes: Record<string, AxisScope> = {
    compression: 'compression',
    distortion: 'distortion',
    trp: 'trp',
  };
  const scope: AxisScope = scopes[parts[0]!] ?? 'all';
  return { target, scope, help, apply: (d, v) => setPath(d, parts, map(v)) };
}

const rankPolicy = (kind: string, field: string) => (v: unknown) => ({ kind, [field]: v });

/** The named axes (shorthands). */
export const NAMED_AXES: Readonly<Record<string, AxisDef>> = {
  seed: pathAxis('seed', 'random seed'),
  model: pathAxis('model', 'model name'),
  dataset: pathAxis('dataset.name', 'dataset name'),
  decomposition: pathAxis('compression.decomposition', 'svd | tiled-svd | tucker2 | cp'),
  scheme: pathAxis('compression.scheme', 'SVD reshaping: lowered | spatial | input'),
  tile: pathAxis('compression.tile', 'tiled-svd tile [rows, cols]'),
  rank: pathAxis('compression.rank', 'a rank (number) or Tucker ranks [R_S, R_T]', rankShorthand),
  ratio: pathAxis(
    'compression.rank',
    'per-layer target compression ratio (> 1)',
    rankPolicy('ratio', 'ratio'),
  ),
  modelRatio: pathAxis(
    'compression.rank',
    'whole-model target compression ratio (> 1)',
    rankPolicy('model-ratio', 'ratio'),
  ),
  fraction: pathAxis(
    'compression.rank',
    'ranks as a fraction of the channels (0 < f <= 1)',
    rankPolicy('fraction', 'fraction'),
  ),
  energy: pathAxis(
    'compression.rank',
    'singular-value energy threshold (0 < e <= 1)',
    rankPolicy('energy', 'threshold'),
  ),
  rankPolicy: pathAxis('compression.rank', 'a full rank policy object, e.g. {kind: vbmf}'),
  layers: pathAxis('compression.layers', 'a layer selection object'),
  sd: pathAxis('distortion.interval', 'S_D: mini-batches between two distortions'),
  interval: pathAxis('distortion.interval', 'same as sd'),
  lambda: pathAxis('trp.lambda', 'TRP nuclear-norm weight (>= 0)'),
  lr: pathAxis('training.lr', 'learning rate'),
  epochs: pathAxis('training.epochs', 'training epochs'),
  batchSize: pathAxis('training.batchSize', 'mini-batch size'),
  weightDecay: pathAxis('training.weightDecay', 'weight decay'),
  maxSteps: pathAxis('training.maxSteps', 'cap on optimizer steps'),
};

const PATH_ROOTS = ['training', 'compression', 'distortion', 'trp', 'dataset'] as const;

/** The axis definition for a grid key, or undefined when the name is neither a shorthand nor a config path. */
export function axisDef(name: string): AxisDef | undefined {
  const named = NAMED_AXES[name];
  if (named) return named;
  const parts = name.split('.');
  if (
    parts.length >= 2 &&
    (PATH_ROOTS as readonly string[]).includes(parts[0]!) &&
    parts.every((p) => /^[A-Za-z][A-Za-z0-9]*$/.test(p))
  )
    return pathAxis(name, `config field ${name}`);
  return undefined;
}

export function allowedAxesText(): string {
  return `${Object.keys(NAMED_AXES).join(', ')}, or a dotted config path under ${PATH_ROOTS.join('. / ')}. (e.g. training.lr)`;
}

/** Two axes conflict when they write the same config field or one writes inside the other. */
export function targetsOverlap(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}.`) || b.startsWith(`${a}.`);
}
