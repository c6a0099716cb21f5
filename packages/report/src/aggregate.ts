/**
 * Aggregation of a sweep's trials into report rows: one row per configuration up to the seed
 * (method x decomposition x rank policy x the other axes that vary), with mean +- std over seeds.
 */
import {
  allocationBudget,
  canonicalJson,
  rankPolicyLabel,
  sha256Hex,
  METHODS,
  type Decomposition,
  type LayerRecord,
  type Method,
  type TrialConfig,
  type TrialStatus,
  type TrialSummary,
  type RankPolicy,
} from '@flatrank/protocol';
import { describe, ratio, type Stat } from './stats.js';

/** One trial as the report needs it (see load.ts for how it is read from the store). */
export interface ReportTrial {
  key: string;
  status: TrialStatus;
  config: TrialConfig;
  /** The results row; null unless the trial succeeded. */
  summary: TrialSummary | null;
  /** Per-layer records of the compressed layers (latest attempt); may be empty. */
  layers: ReadonlyArray<
    Pick<LayerRecord, 'name' | 'paramsBefore' | 'paramsAfter' | 'macsBefore' | 'macsAfter'> & {
      relativeError?: number | null;
      firstDistortionError?: number | null;
    }
  >;
  error?: string | null;
}

export interface ReportRow {
  /** First 12 hex digits of the group key (sha256 of the config without seed). */
  group: string;
  method: Method;
  decomposition: Decomposition | null;
  /** The rank policy (describeRankPolicy), e.g. 'ratio 2x', 'rank=16', 'fraction=0.5'; null for the baseline. */
  rank: string | null;
  /** The other config fields that tell this row apart from its siblings, e.g. 'S_D=50' or 'tile=64x64'. */
  variant: string;
  /** Tile edge(s) for tiled-svd. */
  tile: [number, number] | null;
  /** S_D for distort. */
  distortionInterval: number | null;
  /** The ratio the configuration asks for, when it says one (rank policy ratio / model-ratio, or a tiled rank). */
  targetRatio: number | null;
  /** What targetRatio is a ratio of: the whole model or each compressed layer. */
  targetBasis: 'model' | 'layers' | null;
  isBaseline: boolean;
  seeds: number[];
  /** Trial counts by status (all statuses present, zeros included). */
  status: Record<TrialStatus, number>;
  /** Over the succeeded trials. Accuracies are fractions (0..1). */
  accuracyFinal: Stat;
  accuracyAfterDecomposition: Stat;
  accuracyOriginal: Stat;
  /** Whole-model params before / after. */
  paramsRatio: Stat;
  macsRatio: Stat;
  /** Measured latency before / after (> 1: the factored model is faster). */
  latencyRatio: Stat;
  /** Params ratio of the compressed layers only (from the per-layer records). */
  layersRatio: Stat;
  /**
   * Mean relative error of decomposing the kernels a trial started from, over its layers:
   * finetune / posttrain the decomposition's, distort the first distortion's (its final
   * projection's ~1e-6 is not comparable).
   */
  decompositionError: Stat;
  wallSeconds: Stat;
  /** The ratio the row is bucketed by for "best per ratio": targetRatio, else the mean params ratio. */
  ratio: number | null;
  /** Rows with the same bucket compete for "best"; null for the baseline. */
  bucket: number | null;
  /** Highest mean final accuracy within its ratio bucket (only marked when >= 2 rows compete). */
  best: boolean;
  /**
   * finetune only: seeds of the succeeded trials whose fine-tuning ended below their accuracy right
   * after decomposition (the recipe made the model worse than not fine-tuning at all).
   */
  worseAfterFineTuning: number[];
  trialKeys: string[];
}

export interface AggregateOptions {
  /** Relative tolerance for putting measured (untargeted) ratios into one bucket. Default 0.05. */
  bucketTolerance?: number;
}

const METHOD_ORDER: Record<Method, number> = Object.fromEntries(METHODS.map((m, i) => [m, i])) as Record<
  Method,
  number
>;
const STATUSES: readonly TrialStatus[] = [
  'pending',
  'running',
  'succeeded',
  'failed',
  'diverged',
  'cancelled',
];

/**
 * Group key of a config: its canonical JSON without the seed, with a start trial replaced by that
 * trial's own group key (seed s of a fine-tune starts from seed s of the baseline, so the raw
 * start keys differ per seed while the experiment is the same).
 */
export function groupKeys(trials: readonly ReportTrial[]): Map<string, string> {
  const byKey = new Map(trials.map((t) => [t.key, t]));
  const memo = new Map<string, string>();
  const visiting = new Set<string>();
  const keyOf = (t: ReportTrial): string => {
    const hit = memo.get(t.key);
    if (hit) return hit;
    if (visiting.has(t.key)) return 'cycle';
    visiting.add(t.key);
    const c: Record<string, unknown> = { ...(t.config as unknown as Record<string, unknown>) };
    delete c['seed'];
    if (t.config.start.kind === 'trial') {
      const parent = byKey.get(t.config.start.trialKey);
      c['start'] = { kind: 'trial', group: parent ? keyOf(parent) : 'outside-sweep' };
    }
    const g = sha256Hex(canonicalJson(c));
    visiting.delete(t.key);
    memo.set(t.key, g);
    return g;
  };
  const out = new Map<string, string>();
  for (const t of trials) out.set(t.key, keyOf(t));
  return out;
}

/**
 * The rank column of a report: a target ratio as `ratio 2x` / `model-ratio 2x` (the unit makes the
 * ratio read as one in a table; the committed study reports print it so), every other policy by
 * its one label (rankPolicyLabel: `rank=16`, `ranks=4x8`, `fraction=0.5`, ...).
 */
export function describeRankPolicy(p: RankPolicy): string {
  if (p.kind === 'ratio' || p.kind === 'model-ratio') return `${p.kind} ${p.ratio}x`;
  return rankPolicyLabel(p);
}

/** The ratio a config asks for, if it states one; tiled-svd with a fixed rank has an exact per-layer ratio. */
export function targetRatioOf(c: TrialConfig): { ratio: number; basis: 'model' | 'layers' } | null {
  const comp = c.compression;
  if (!comp) return null;
  const p = comp.rank;
  if (p.kind === 'model-ratio') return { ratio: p.ratio, basis: 'model' };
  // A budget of whole-model params is the same target as model-ratio; a MACs budget states none.
  if (p.kind === 'allocate') {
    const budget = allocationBudget(p.target);
    return budget.kind === 'params' ? { ratio: budget.ratio, basis: 'model' } : null;
  }
  if (p.kind === 'ratio') return { ratio: p.ratio, basis: 'layers' };
  if (comp.decomposition === 'tiled-svd' && comp.tile && p.kind === 'rank') {
    // A rows x cols tile of rank r stores r * (rows + cols) numbers instead of rows * cols.
    const [a, b] = comp.tile;
    return { ratio: (a * b) / (p.rank * (a + b)), basis: 'layers' };
  }
  return null;
}

/** Short names for the config fields shown in the variant column. */
const ALIASES: ReadonlyArray<[prefix: string, alias: string]> = [
  ['distortion.interval', 'S_D'],
  ['distortion.', ''],
  ['trp.interval', 'm'],
  ['trp.', ''],
  ['compression.tile', 'tile'],
  ['compression.scheme', 'scheme'],
  ['compression.layers', 'layers'],
  ['compression.', ''],
  ['training.', ''],
  ['dataset.', ''],
];

function flatten(v: unknown, prefix: string, out: Map<string, string>): void {
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) out.set(prefix, v.join('x'));
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  else out.set(prefix, v === null ? '-' : String(v));
}

/** Fields never shown as variant: they have their own columns, or differ per seed. */
const NOT_VARIANT = [
  'seed',
  'method',
  'compression.decomposition',
  'compression.rank',
  'start.trialKey',
  'version',
];

function variantFields(config: TrialConfig): Map<string, string> {
  const m = new Map<string, string>();
  flatten(config, '', m);
  for (const k of [...m.keys()]) if (NOT_VARIANT.some((p) => k === p || k.startsWith(`${p}.`))) m.delete(k);
  // An absent lowering order is the default hwc (configs leave it out so their keys stay stable).
  const c = config.compression;
  if (c && (c.decomposition === 'tiled-svd' || (c.decomposition === 'svd' && c.scheme === 'lowered')))
    if (!m.has('compression.order')) m.set('compression.order', 'hwc');
  return m;
}

function alias(path: string): string {
  for (const [prefix, name] of ALIASES) {
    if (path === prefix) return name;
    if (prefix.endsWith('.') && path.startsWith(prefix)) return name + path.slice(prefix.length);
    if (path.startsWith(`${prefix}.`)) return `${name}.${path.slice(prefix.length + 1)}`;
  }
  return path;
}

/**
 * What a row averages of one succeeded trial with a results row; null / NaN values are left out
 * of the statistics (describe()).
 */
export interface TrialValues {
  accuracyFinal: number | null;
  accuracyAfterDecomposition: number | null;
  accuracyOriginal: number | null;
  /** ratio() of whole-model params / MACs / measured latency, before over after. */
  paramsRatio: number | null;
  macsRatio: number | null;
  latencyRatio: number | null;
  /** ratio() of params before / after summed over the per-layer records; null without any. */
  layersRatio: number | null;
  /** Mean comparable decomposition error over the layers (see ReportRow); null without any. */
  decompositionError: number | null;
  wallSeconds: number | null;
}

/** One trial folded into a group; `values` only for a succeeded trial with a results row. */
export interface GroupedTrialInput {
  key: string;
  status: TrialStatus;
  seed: number;
  values: TrialValues | null;
}

/** The values of a trial given as a ReportTrial (null unless it succeeded with a summary). */
export function trialValues(t: ReportTrial): TrialValues | null {
  if (t.status !== 'succeeded' || !t.summary) return null;
  const s = t.summary;
  return {
    accuracyFinal: s.accuracyFinal,
    accuracyAfterDecomposition: s.accuracyAfterDecomposition,
    accuracyOriginal: s.accuracyOriginal,
    paramsRatio: ratio(s.paramsBefore, s.paramsAfter),
    macsRatio: ratio(s.macsBefore, s.macsAfter),
    latencyRatio: ratio(s.latencyBeforeMs, s.latencyAfterMs),
    layersRatio:
      t.layers.length === 0
        ? null
        : ratio(
            t.layers.reduce((a, l) => a + l.paramsBefore, 0),
            t.layers.reduce((a, l) => a + l.paramsAfter, 0),
          ),
    decompositionError: meanDefined(
      t.layers.map((l) => (t.config.method === 'distort' ? l.firstDistortionError : l.relativeError)),
    ),
    wallSeconds: s.wallSeconds,
  };
}

function meanDefined(values: ReadonlyArray<number | null | undefined>): number | null {
  let sum = 0;
  let n = 0;
  for (const v of values)
    if (typeof v === 'number' && Number.isFinite(v)) {
      sum += v;
      n++;
    }
  return n === 0 ? null : sum / n;
}

/**
 * The trials of one group (configuration up to the seed), folded one at a time in trial order: the
 * value lists that describe() averages, so the statistics are the same whether the trials came
 * as an array or streamed from the store.
 */
export class TrialGroup {
  readonly status = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>;
  readonly seeds = new Set<number>();
  readonly trialKeys: string[] = [];
  readonly accuracyFinal: Array<number | null> = [];
  readonly accuracyAfterDecomposition: Array<number | null> = [];
  readonly accuracyOriginal: Array<number | null> = [];
  readonly paramsRatio: Array<number | null> = [];
  readonly macsRatio: Array<number | null> = [];
  readonly latencyRatio: Array<number | null> = [];
  readonly layersRatio: Array<number | null> = [];
  readonly decompositionError: Array<number | null> = [];
  readonly wallSeconds: Array<number | null> = [];
  readonly worseAfterFineTuning: number[] = [];
  /** Final accuracy per seed, for paired differences between groups (paired.ts). */
  readonly finalBySeed = new Map<number, number>();

  /** `config` is the group's first trial's config (what the row's columns are read from). */
  constructor(
    readonly groupKey: string,
    readonly config: TrialConfig,
  ) {}

  add(t: GroupedTrialInput): void {
    this.status[t.status]++;
    this.seeds.add(t.seed);
    this.trialKeys.push(t.key);
    const v = t.values;
    if (!v) return;
    this.accuracyFinal.push(v.accuracyFinal);
    this.accuracyAfterDecomposition.push(v.accuracyAfterDecomposition);
    this.accuracyOriginal.push(v.accuracyOriginal);
    this.paramsRatio.push(v.paramsRatio);
    this.macsRatio.push(v.macsRatio);
    this.latencyRatio.push(v.latencyRatio);
    this.layersRatio.push(v.layersRatio);
    this.decompositionError.push(v.decompositionError);
    this.wallSeconds.push(v.wallSeconds);
    if (v.accuracyFinal !== null) this.finalBySeed.set(t.seed, v.accuracyFinal);
    if (
      this.config.method === 'finetune' &&
      v.accuracyFinal !== null &&
      v.accuracyAfterDecomposition !== null &&
      v.accuracyFinal < v.accuracyAfterDecomposition
    )
      this.worseAfterFineTuning.push(t.seed);
  }
}

/** A sweep's trials folded into groups (in order of each group's first trial) and counted by status. */
export interface GroupedTrials {
  groups: Map<string, TrialGroup>;
  totals: Record<TrialStatus, number> & { trials: number };
}

export function emptyTotals(): GroupedTrials['totals'] {
  return { trials: 0, ...(Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<TrialStatus, number>) };
}

/** Folds an array of trials into groups (see groupKeys). */
export function groupTrials(trials: readonly ReportTrial[]): GroupedTrials {
  const keys = groupKeys(trials);
  const groups = new Map<string, TrialGroup>();
  const totals = emptyTotals();
  for (const t of trials) {
    const g = keys.get(t.key)!;
    let group = groups.get(g);
    if (!group) groups.set(g, (group = new TrialGroup(g, t.config)));
    group.add({ key: t.key, status: t.status, seed: t.config.seed, values: trialValues(t) });
    totals.trials++;
    totals[t.status]++;
  }
  return { groups, totals };
}

export function aggregate(
  trials: readonly ReportTrial[] | GroupedTrials,
  options: AggregateOptions = {},
): ReportRow[] {
  return aggregateGroups(isGrouped(trials) ? trials : groupTrials(trials), options);
}

export function isGrouped(trials: readonly ReportTrial[] | GroupedTrials): trials is GroupedTrials {
  return !Array.isArray(trials);
}

function aggregateGroups({ groups }: GroupedTrials, options: AggregateOptions): ReportRow[] {
  const tol = options.bucketTolerance ?? 0.05;

  // Variant = the fields that differ between groups of the same method x decomposition.
  const fieldsOf = new Map<string, Map<string, string>>();
  for (const [g, group] of groups) fieldsOf.set(g, variantFields(group.config));
  const family = (c: TrialConfig) => `${c.method}/${c.compression?.decomposition ?? ''}`;
  const varying = new Map<string, Set<string>>();
  const families = new Map<string, string[]>();
  for (const [g, group] of groups) {
    const f = family(group.config);
    families.set(f, [...(families.get(f) ?? []), g]);
  }
  for (const [f, gs] of families) {
    const paths = new Set<string>();
    for (const g of gs) for (const p of fieldsOf.get(g)!.keys()) paths.add(p);
    const vary = new Set<string>();
    for (const p of paths) if (new Set(gs.map((g) => fieldsOf.get(g)!.get(p) ?? '-')).size > 1) vary.add(p);
    varying.set(f, vary);
  }

  const rows: ReportRow[] = [];
  for (const [g, group] of groups) {
    const c = group.config;
    const fields = fieldsOf.get(g)!;
    const variant = [...(varying.get(family(c)) ?? [])]
      .sort()
      .map((p) => `${alias(p)}=${fields.get(p) ?? '-'}`)
      .join(' ');
    const target = targetRatioOf(c);
    const paramsRatio = describe(group.paramsRatio);
    const isBaseline = c.method === 'baseline';
    rows.push({
      group: g.slice(0, 12),
      method: c.method,
      decomposition: c.compression?.decomposition ?? null,
      rank: c.compression ? describeRankPolicy(c.compression.rank) : null,
      variant,
      tile: c.compression?.tile ?? null,
      distortionInterval: c.distortion?.interval ?? null,
      targetRatio: target?.ratio ?? null,
      targetBasis: target?.basis ?? null,
      isBaseline,
      seeds: [...group.seeds].sort((a, b) => a - b),
      status: { ...group.status },
      accuracyFinal: describe(group.accuracyFinal),
      accuracyAfterDecomposition: describe(group.accuracyAfterDecomposition),
      accuracyOriginal: describe(group.accuracyOriginal),
      paramsRatio,
      macsRatio: describe(group.macsRatio),
      latencyRatio: describe(group.latencyRatio),
      layersRatio: describe(group.layersRatio),
      decompositionError: describe(group.decompositionError),
      wallSeconds: describe(group.wallSeconds),
      ratio: isBaseline ? 1 : (target?.ratio ?? paramsRatio.mean),
      bucket: null,
      best: false,
      worseAfterFineTuning: [...group.worseAfterFineTuning].sort((a, b) => a - b),
      trialKeys: [...group.trialKeys],
    });
  }

  assignBuckets(rows, tol);
  markBest(rows);
  rows.sort(compareRows);
  return rows;
}

/**
 * Rows that state a target ratio are bucketed by it (exactly). A row without one (e.g. a fixed
 * rank) joins the target bucket nearest to its measured ratio if within `tol` (relative); the
 * rest are chained greedily: sorted ascending, a row joins the current bucket while within `tol`
 * of the bucket's first ratio.
 */
function assignBuckets(rows: ReportRow[], tol: number): void {
  const measured: ReportRow[] = [];
  for (const r of rows) {
    if (r.isBaseline || r.ratio === null) continue;
    if (r.targetRatio !== null) r.bucket = r.targetRatio;
    else measured.push(r);
  }
  const targets = [...new Set(rows.map((r) => r.targetRatio).filter((v): v is number => v !== null))];
  const rest: ReportRow[] = [];
  for (const r of measured) {
    let best: number | null = null;
    for (const t of targets)
      if (
        Math.abs(Math.log(r.ratio! / t)) <= Math.log(1 + tol) &&
        (best === null || Math.abs(Math.log(r.ratio! / t)) < Math.abs(Math.log(r.ratio! / best)))
      )
        best = t;
    if (best !== null) r.bucket = best;
    else rest.push(r);
  }
  rest.sort((a, b) => a.ratio! - b.ratio!);
  let anchor: number | null = null;
  for (const r of rest) {
    if (anchor === null || r.ratio! > anchor * (1 + tol)) anchor = r.ratio!;
    r.bucket = anchor;
  }
}

function markBest(rows: ReportRow[]): void {
  const buckets = new Map<number, ReportRow[]>();
  for (const r of rows)
    if (r.bucket !== null && r.accuracyFinal.mean !== null)
      buckets.set(r.bucket, [...(buckets.get(r.bucket) ?? []), r]);
  for (const list of buckets.values()) {
    if (list.length < 2) continue;
    const top = Math.max(...list.map((r) => r.accuracyFinal.mean!));
    for (const r of list) r.best = r.accuracyFinal.mean === top;
  }
}

function compareRows(a: ReportRow, b: ReportRow): number {
  if (a.isBaseline !== b.isBaseline) return a.isBaseline ? -1 : 1;
  const ra = a.bucket ?? a.ratio ?? Infinity;
  const rb = b.bucket ?? b.ratio ?? Infinity;
  if (ra !== rb) return ra - rb;
  if (a.method !== b.method) return METHOD_ORDER[a.method] - METHOD_ORDER[b.method];
  const da = a.decomposition ?? '';
  const db = b.decomposition ?? '';
  if (da !== db) return da < db ? -1 : 1;
  return a.variant.localeCompare(b.variant, 'en', { numeric: true });
}
