// Over 500 lines on purpose: counting, expanding and checking a grid walk the same axes and must agree point for point.
/**
 * Grid expansion: a validated spec -> the list of grid points, each a canonical TrialConfig with its
 * trial key and the trial keys it depends on (a method that starts from another method's trial).
 * The number of points is known before anything is expanded (the product of the axis sizes), so
 * an oversized grid is refused at once; the expansion itself yields to the event loop in chunks
 * (expandSpecInterruptible) so that Ctrl-C / SIGTERM are honoured while it runs.
 */
import {
  canonicalJson,
  METHODS,
  resolveTrialConfig,
  SchedulerError,
  trialKey,
  ValidationError,
  type Method,
  type StartPoint,
  type TrialConfig,
} from '@flatrank/protocol';
import { trialLabel } from '../label.js';
import { allowedAxesText, axisDef, targetsOverlap, type AxisDef } from './axes.js';
import { specError, type Spec } from './load.js';
import { checkPointCompression, type CompressionCheckCache } from './model-check.js';
import type { GridInput, MethodSpecInput, StartInput } from './schema.js';

/** Grids larger than this are refused unless the caller raises the limit (flatrank run --max-points). */
export const DEFAULT_MAX_POINTS = 100_000;

/** Points expanded between two yields to the event loop (a few milliseconds of work). */
const CHUNK = 200;

export interface ExpandOptions {
  /** Refuse a grid of more points than this before expanding it (default DEFAULT_MAX_POINTS). */
  maxPoints?: number;
}

/** The size of a spec's grid, per method: the axes (a zip or points block is one axis) and their sizes. */
export interface GridSize {
  total: number;
  methods: Array<{ id: string; points: number; axes: Array<{ name: string; size: number }> }>;
}

export interface GridPoint {
  key: string;
  config: TrialConfig;
  /** Trial keys that must succeed first (the start trial). */
  dependsOn: string[];
  /** Method id in the spec (the key under `methods:`). */
  methodId: string;
  /** Axis name -> value of this point (sweep and method axes). */
  axes: Record<string, unknown>;
  /**
   * The trial's one label, from its config (trialLabel): the same in the dry run, the run's log
   * lines and `flatrank status`, e.g. "finetune tucker2 ratio=2 seed=0".
   */
  label: string;
}

/** One assignment of an axis value. */
type Assignment = readonly [name: string, def: AxisDef, value: unknown];
/** A dimension of the cartesian product: its options, each a set of assignments. */
interface Dimension {
  names: string[];
  options: Assignment[][];
  /** Where each axis of the dimension is written in the spec. */
  paths: Record<string, Array<string | number>>;
}

interface MethodPlan {
  id: string;
  method: Method;
  spec: MethodSpecInput;
  start:
    | { kind: 'method'; methodId: string; match: string[] | undefined; path: Array<string | number> }
    | { kind: 'fixed'; start: StartPoint };
  dimensions: Dimension[];
  axisNames: Set<string>;
}

interface SpecPlan {
  ids: string[];
  plans: Map<string, MethodPlan>;
  /** Methods in dependency order (a method after the method it starts from). */
  order: string[];
}

function planSpec(spec: Spec): SpecPlan {
  const p = spec.parsed;
  const ids = Object.keys(p.methods);
  const sweepDims = p.grid ? dimensionsOf(spec, p.grid, ['grid']) : [];
  const plans = new Map<string, MethodPlan>();
  for (const id of ids) plans.set(id, planMethod(spec, id, sweepDims));
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (id: string, chain: string[]): void => {
    if (state.get(id) === 'done') return;
    if (state.get(id) === 'visiting')
      throw specError(
        spec,
        ['methods', id, 'start'],
        `start methods form a cycle: ${[...chain, id].join(' -> ')}`,
      );
    state.set(id, 'visiting');
    const plan = plans.get(id)!;
    if (plan.start.kind === 'method') visit(plan.start.methodId, [...chain, id]);
    state.set(id, 'done');
    order.push(id);
  };
  for (const id of ids) visit(id, []);
  return { ids, plans, order };
}

function sizeOf(plan: SpecPlan): GridSize {
  const methods = plan.ids.map((id) => {
    const dims = plan.plans.get(id)!.dimensions;
    const axes = dims.map((d) => ({ name: d.names.join('+'), size: d.options.length }));
    return { id, points: axes.reduce((n, a) => n * a.size, 1), axes };
  });
  return { total: methods.reduce((n, m) => n + m.points, 0), methods };
}

/** The number of grid points of a spec (per method, with the axes), computed without expanding it. */
export function countSpecPoints(spec: Spec): GridSize {
  return sizeOf(planSpec(spec));
}

/** A SpecError when the grid has more than `maxPoints` points, naming the axes and their sizes. */
function checkGridSize(spec: Spec, size: GridSize, maxPoints: number): void {
  if (!(Number.isInteger(maxPoints) && maxPoints >= 1))
    throw new ValidationError('--max-points', `--max-points: must be a positive integer, got ${maxPoints}`);
  if (size.total <= maxPoints) return;
  const fmt = (n: number): string => n.toLocaleString('en-US');
  const parts = size.methods
    .filter((m) => m.points > 1)
    .sort((a, b) => b.points - a.points)
    .map((m) => `${m.id}: ${m.axes.map((a) => `${a.name} (${fmt(a.size)})`).join(' x ')} = ${fmt(m.points)}`);
  const where = spec.parsed.grid ? ['grid'] : ['methods'];
  throw specError(
    spec,
    where,
    `the grid has ${fmt(size.total)} points, over the limit of ${fmt(maxPoints)} (${parts.join('; ')}); shrink the axes, or raise the limit with --max-points N`,
    { context: { points: size.total, maxPoints, methods: size.methods } },
  );
}

/** Expands a spec into its grid points (synchronously; see expandSpecInterruptible for long grids). */
export function expandSpec(spec: Spec, options: ExpandOptions = {}): GridPoint[] {
  const steps = expansion(spec, options);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * expandSpec that yields to the event loop every few hundred points and stops with
 * SchedulerError('INTERRUPTED') once `signal` is aborted (nothing has been written by then).
 */
export async function expandSpecInterruptible(
  spec: Spec,
  options: ExpandOptions & { signal?: AbortSignal; onProgress?(done: number, total: number): void } = {},
): Promise<GridPoint[]> {
  const steps = expansion(spec, options);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
    options.onProgress?.(r.value.done, r.value.total);
    if (options.signal?.aborted)
      throw new SchedulerError(
        'INTERRUPTED',
        `interrupted while expanding the grid of ${spec.file ?? 'the spec'} (${r.value.done} of ${r.value.total} points); nothing was written`,
        { context: { done: r.value.done, total: r.value.total } },
      );
  }
}

/** The expansion, pausing (yield) every CHUNK points with the progress so far. */
function* expansion(
  spec: Spec,
  options: ExpandOptions,
): Generator<{ done: number; total: number }, GridPoint[]> {
  const plan = planSpec(spec);
  const size = sizeOf(plan);
  checkGridSize(spec, size, options.maxPoints ?? DEFAULT_MAX_POINTS);
  const { ids, plans, order } = plan;
  const byMethod = new Map<string, GridPoint[]>();
  const seen = new Map<string, GridPoint>();
  const compressionChecks: CompressionCheckCache = new Map();
  let done = 0;
  for (const id of order) {
    const plan = plans.get(id)!;
    const points: GridPoint[] = [];
    const startIndex =
      plan.start.kind === 'method' ? startTrialIndex(spec, plan, byMethod.get(plan.start.methodId)!) : null;
    for (const combo of product(plan.dimensions)) {
      const axes: Record<string, unknown> = {};
      for (const [name, , value] of combo) axes[name] = value;
      // Names the point in spec errors (the method id and the axis values, as the spec spells them).
      const label = pointName({ methodId: id, axes });
      let start: StartPoint;
      if (plan.start.kind === 'fixed') start = plan.start.start;
      else start = { kind: 'trial', trialKey: findStartTrial(spec, plan, axes, label, startIndex!) };
      const draft = buildDraft(spec, plan, start);
      for (const [, def, value] of combo) def.apply(draft, structuredCloneJson(value));
      const { config, key } = resolvePoint(spec, plan, draft, label);
      if (start.kind === 'checkpoint') checkCheckpointModel(spec, plan, start.name, config, label);
      checkPointCompression(spec, compressionChecks, config, {
        methodId: id,
        label,
        blame: (configField) => blamePath(plan, combo, configField),
      });
      const point: GridPoint = {
        key,
        config,
        dependsOn: start.kind === 'trial' ? [start.trialKey] : [],
        methodId: id,
        axes,
        label: trialLabel(config),
      };
      const dup = seen.get(key);
      if (dup)
        throw specError(
          spec,
          ['methods', id],
          `grid point "${label}" is the same trial as "${pointName(dup)}" (identical config); remove the duplicate value or method`,
        );
      seen.set(key, point);
      points.push(point);
      if (++done % CHUNK === 0) yield { done, total: size.total };
    }
    byMethod.set(id, points);
  }
  // Output in spec order of methods (dependencies are expressed by dependsOn, not by position).
  return ids.flatMap((id) => byMethod.get(id)!);
}

/** A point as the spec spells it: "ft-tucker2 ratio=2 seed=0". */
export function pointName(p: Pick<GridPoint, 'methodId' | 'axes'>): string {
  return [
    p.methodId,
    ...Object.entries(p.axes).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`),
  ].join(' ');
}

/**
 * Where in the spec a config field of a point was set: the grid axis that wrote it (or wrote a
 * field around it), else the method's own field, else the method.
 */
function blamePath(plan: MethodPlan, combo: Assignment[], configField: string): Array<string | number> {
  for (const [name, def] of combo)
    if (targetsOverlap(def.target, configField)) {
      const dim = plan.dimensions.find((d) => d.names.includes(name));
      if (dim) return dim.paths[name]!;
    }
  const [root, ...rest] = configField.split('.');
  const m = plan.spec as Record<string, unknown>;
  if (root && m[root] !== undefined) return ['methods', plan.id, root, ...rest.slice(0, 1)];
  return ['methods', plan.id];
}

function planMethod(spec: Spec, id: string, sweepDims: Dimension[]): MethodPlan {
  const p = spec.parsed;
  const m = p.methods[id]!;
  const method = m.method ?? METHODS.find((name) => name === id);
  if (!method)
    throw specError(
      spec,
      ['methods', id],
      `needs a "method" field (${METHODS.join(', ')}); only a method id equal to a method name may omit it`,
    );
  if (id === 'scratch')
    throw specError(
      spec,
      ['methods', id],
      `"scratch" is reserved for start: scratch; pick another method id`,
    );

  const ownDims = m.grid ? dimensionsOf(spec, m.grid, ['methods', id, 'grid']) : [];
  // A method's own axis replaces a sweep axis with the same name or an overlapping target.
  const ownAssign = ownDims.flatMap((d) => d.options[0]!.map(([n, def]) => ({ n, def })));
  const inherited: Dimension[] = [];
  for (const d of sweepDims) {
    const defs = d.options[0]!.map(([n, def]) => ({ n, def }));
    if (defs.some((x) => ownAssign.some((o) => o.n === x.n || targetsOverlap(o.def.target, x.def.target))))
      continue;
    // Sweep-level compression / distortion / trp axes apply only where they make sense.
    if (defs.some((x) => !scopeApplies(x.def, method))) {
      if (defs.every((x) => !scopeApplies(x.def, method))) continue;
      throw specError(
        spec,
        ['grid'],
        `zipped axes ${defs.map((x) => x.n).join(', ')} mix axes that apply to method '${method}' (methods.${id}) with axes that do not`,
      );
    }
    inherited.push(d);
  }
  for (const d of ownDims)
    for (const [n, def] of d.options[0]!)
      if (!scopeApplies(def, method))
        throw specError(
          spec,
          ['methods', id, 'grid', n],
          `axis "${n}" sets ${def.target}, which does not apply to method '${method}'`,
        );

  const dims = [...inherited, ...ownDims];
  const axisNames = new Set(dims.flatMap((d) => d.names));

  const startInput: StartInput = m.start ?? (p.start as StartInput);
  const startPath: Array<string | number> = m.start !== undefined ? ['methods', id, 'start'] : ['start'];
  let start: MethodPlan['start'];
  if (m.start === undefined && typeof p.start === 'string' && p.start === id)
    start = { kind: 'fixed', start: { kind: 'scratch' } };
  else start = resolveStart(spec, startInput, startPath, id);
  return { id, method, spec: m, start, dimensions: dims, axisNames };
}

function scopeApplies(def: AxisDef, method: Method): boolean {
  if (def.scope === 'compression') return method !== 'baseline';
  if (def.scope === 'distortion') return method === 'distort';
  if (def.scope === 'trp') return method === 'trp';
  return true;
}

function resolveStart(
  spec: Spec,
  s: StartInput,
  path: Array<string | number>,
  selfId: string,
): MethodPlan['start'] {
  const ids = Object.keys(spec.parsed.methods);
  const methodRef = (
    methodId: string,
    match: string[] | undefined,
    refPath: Array<string | number>,
  ): MethodPlan['start'] => {
    if (!ids.includes(methodId))
      throw specError(
        spec,
        refPath,
        `unknown start ${JSON.stringify(methodId)}; allowed: scratch, a method id of this sweep (${ids.join(', ')}), {trial: <key>}, {checkpoint: <name>}`,
      );
    if (methodId === selfId) throw specError(spec, refPath, `method '${selfId}' cannot start from itself`);
    return { kind: 'method', methodId, match, path };
  };
  if (typeof s === 'string')
    return s === 'scratch' ? { kind: 'fixed', start: { kind: 'scratch' } } : methodRef(s, undefined, path);
  if ('method' in s) return methodRef(s.method, s.match, [...path, 'method']);
  if ('trial' in s) return { kind: 'fixed', start: { kind: 'trial', trialKey: s.trial } };
  return { kind: 'fixed', start: { kind: 'checkpoint', name: s.checkpoint } };
}

/** A checkpoint that records its model must hold the model the point trains (found before any run). */
function checkCheckpointModel(
  spec: Spec,
  plan: MethodPlan,
  name: string,
  config: TrialConfig,
  label: string,
): void {
  const ckpt = spec.checkpoints.get(name);
  if (!ckpt || ckpt.model === null || ckpt.model === config.model) return;
  const path =
    plan.spec.start !== undefined ? ['methods', plan.id, 'start', 'checkpoint'] : ['start', 'checkpoint'];
  throw specError(
    spec,
    path,
    `checkpoint "${name}" (${ckpt.path}) holds a ${ckpt.model} model, but grid point "${label}" trains ${config.model}; allowed: a checkpoint of the model the point trains`,
  );
}

interface StartTrialIndex {
  methodId: string;
  /** The axes a point and its start trial must agree on. */
  match: string[];
  /** canonical JSON of the match values -> the producing method's points with those values. */
  byValues: Map<string, GridPoint[]>;
}

/** Indexes the producing method's points by the values of the matched axes (one pass, not one per point). */
function startTrialIndex(spec: Spec, plan: MethodPlan, producers: GridPoint[]): StartTrialIndex {
  const st = plan.start as Extract<MethodPlan['start'], { kind: 'method' }>;
  const producerPlanAxes = new Set(producers[0] ? Object.keys(producers[0].axes) : []);
  let match: string[];
  if (st.match) {
    for (const n of st.match)
      if (!plan.axisNames.has(n) || !producerPlanAxes.has(n))
        throw specError(
          spec,
          [...st.path, 'match'],
          `"${n}" is not an axis of both '${plan.id}' and '${st.methodId}'; their shared axes: ${[...plan.axisNames].filter((a) => producerPlanAxes.has(a)).join(', ') || '(none)'}`,
        );
    match = st.match;
  } else match = [...plan.axisNames].filter((a) => producerPlanAxes.has(a));
  const byValues = new Map<string, GridPoint[]>();
  for (const pp of producers) {
    const k = canonicalJson(match.map((n) => pp.axes[n] ?? null));
    const list = byValues.get(k);
    if (list) list.push(pp);
    else byValues.set(k, [pp]);
  }
  return { methodId: st.methodId, match, byValues };
}

function findStartTrial(
  spec: Spec,
  plan: MethodPlan,
  axes: Record<string, unknown>,
  label: string,
  index: StartTrialIndex,
): string {
  const st = plan.start as Extract<MethodPlan['start'], { kind: 'method' }>;
  const { match } = index;
  const found = index.byValues.get(canonicalJson(match.map((n) => axes[n] ?? null))) ?? [];
  const matchText = match.length
    ? ` with ${match.map((n) => `${n}=${JSON.stringify(axes[n])}`).join(', ')}`
    : '';
  if (found.length === 0)
    throw specError(
      spec,
      st.path,
      `grid point "${label}" starts from method '${st.methodId}', which has no trial${matchText}; give '${st.methodId}' that value, or set start: {method: ${st.methodId}, match: [...]} to match on fewer axes`,
    );
  if (found.length > 1)
    throw specError(
      spec,
      st.path,
      `grid point "${label}" starts from method '${st.methodId}', which has ${found.length} trials${matchText}; match on more axes with start: {method: ${st.methodId}, match: [...]}`,
    );
  return found[0]!.key;
}

function buildDraft(spec: Spec, plan: MethodPlan, start: StartPoint): Record<string, unknown> {
  const p = spec.parsed;
  const m = plan.spec;
  const training: Record<string, unknown> = {
    ...structuredCloneJson(p.training),
    ...structuredCloneJson(m.training ?? {}),
  };
  // Post-training compression trains nothing: epochs 0 unless the spec insists (the config schema refuses that).
  if (plan.method === 'posttrain' && m.training?.epochs === undefined) training['epochs'] = 0;
  const draft: Record<string, unknown> = {
    model: p.model,
    dataset: { ...structuredCloneJson(p.dataset), ...structuredCloneJson(m.dataset ?? {}) },
    training,
    start,
    method: plan.method,
    compression:
      m.compression !== undefined
        ? structuredCloneJson(m.compression)
        : plan.method === 'baseline'
          ? null
          : {},
    distortion:
      m.distortion !== undefined ? structuredCloneJson(m.distortion) : plan.method === 'distort' ? {} : null,
  };
  // Absent, not null, for the other methods: their trial keys predate the trp block.
  if (m.trp !== undefined) draft['trp'] = structuredCloneJson(m.trp);
  else if (plan.method === 'trp') draft['trp'] = {};
  return draft;
}

/**
 * Resolves a point's draft through the protocol's trial-config schema, the same rules flatrank
 * train and the store apply; a refusal becomes a SpecError at the line of the spec that set the
 * field (the method's own setting, else the sweep-level one, else the method).
 */
function resolvePoint(
  spec: Spec,
  plan: MethodPlan,
  draft: Record<string, unknown>,
  label: string,
): { config: TrialConfig; key: string } {
  try {
    const config = resolveTrialConfig(draft, '');
    return { config, key: trialKey(config) };
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const sub = e.field.replace(/^\./, '');
    const msg = e.message.replace(/^\.?[^:]*: /, '');
    throw specError(spec, specPathOfConfigField(spec, plan, sub), `grid point "${label}": ${sub}: ${msg}`, {
      cause: e,
      context: { point: label, configField: sub },
    });
  }
}

/** The spec path that set a config field (e.g. training.epochs): the method's, the sweep's, or the method. */
function specPathOfConfigField(spec: Spec, plan: MethodPlan, field: string): Array<string | number> {
  const parts = field.split('.').filter((p) => p !== '');
  const own = ['methods', plan.id, ...parts];
  if (parts.length > 0 && hasPath(spec.parsed, own)) return own;
  if (parts.length > 0 && hasPath(spec.parsed, parts)) return parts;
  return ['methods', plan.id];
}

function hasPath(root: unknown, path: ReadonlyArray<string | number>): boolean {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return false;
    node = (node as Record<string | number, unknown>)[key];
  }
  return true;
}

function dimensionsOf(spec: Spec, grid: GridInput, path: Array<string | number>): Dimension[] {
  const dims: Dimension[] = [];
  const used: Array<{ name: string; def: AxisDef }> = [];
  const take = (name: string, at: Array<string | number>): AxisDef => {
    const def = axisDef(name);
    if (!def) throw specError(spec, at, `unknown grid axis "${name}"; allowed: ${allowedAxesText()}`);
    const clash = used.find((u) => u.name !== name && targetsOverlap(u.def.target, def.target));
    if (clash)
      throw specError(
        spec,
        at,
        `axes "${clash.name}" and "${name}" both set ${def.target.length <= clash.def.target.length ? def.target : clash.def.target}; use one of them`,
      );
    if (used.some((u) => u.name === name))
      throw specError(spec, at, `axis "${name}" is given twice in this grid`);
    used.push({ name, def });
    return def;
  };
  for (const [name, values] of Object.entries(grid)) {
    if (name === 'zip' || name === 'points' || values === undefined) continue;
    const def = take(name, [...path, name]);
    dims.push({
      names: [name],
      options: (values as unknown[]).map((v) => [[name, def, v] as const]),
      paths: { [name]: [...path, name] },
    });
  }
  if (grid.zip) {
    const entries = Object.entries(grid.zip);
    if (entries.length === 0) throw specError(spec, [...path, 'zip'], 'must zip at least one axis');
    const len = entries[0]![1].length;
    for (const [name, values] of entries)
      if (values.length !== len)
        throw specError(
          spec,
          [...path, 'zip', name],
          `zipped lists must have equal lengths: "${entries[0]![0]}" has ${len} values, "${name}" has ${values.length}`,
        );
    const defs = entries.map(([name]) => [name, take(name, [...path, 'zip', name])] as const);
    dims.push({
      names: defs.map(([n]) => n),
      options: Array.from({ length: len }, (_, k) =>
        defs.map(([n, def], j) => [n, def, entries[j]![1][k]] as const),
      ),
      paths: Object.fromEntries(defs.map(([n]) => [n, [...path, 'zip', n]])),
    });
  }
  if (grid.points) {
    const defs = new Map<string, AxisDef>();
    const options = grid.points.map((pt, i) => {
      const keys = Object.keys(pt);
      if (keys.length === 0)
        throw specError(spec, [...path, 'points', i], 'a point must set at least one axis');
      return keys.map((name) => {
        let def = defs.get(name);
        if (!def) defs.set(name, (def = take(name, [...path, 'points', i, name])));
        return [name, def, pt[name]] as const;
      });
    });
    const first = options[0]!.map(([n]) => n);
    for (const [i, opt] of options.entries())
      if (opt.length !== first.length || opt.some(([n]) => !first.includes(n)))
        throw specError(
          spec,
          [...path, 'points', i],
          `every point must set the same axes (${first.join(', ')}); this one sets ${opt.map(([n]) => n).join(', ')}`,
        );
    dims.push({
      names: first,
      options,
      paths: Object.fromEntries(first.map((n) => [n, [...path, 'points']])),
    });
  }
  return dims;
}

function* product(dims: Dimension[]): Generator<Assignment[]> {
  if (dims.length === 0) {
    yield [];
    return;
  }
  const idx = new Array<number>(dims.length).fill(0);
  for (;;) {
    yield dims.flatMap((d, i) => d.options[idx[i]!]!);
    let k = dims.length - 1;
    while (k >= 0) {
      idx[k]!++;
      if (idx[k]! < dims[k]!.options.length) break;
      idx[k] = 0;
      k--;
    }
    if (k < 0) return;
  }
}

/** Deep copy of plain JSON data (a draft is mutated by axes; points must not share objects). */
function structuredCloneJson<T>(v: T): T {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(structuredCloneJson) as T;
  const out: Record<string, unknown> = {};
  for (const k in v) out[k] = structuredCloneJson((v as Record<string, unknown>)[k]);
  return out as T;
}
