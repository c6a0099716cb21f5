/**
 * The canonical trial config: what one grid point resolves to and what `flatrank train` runs.
 * Plain JSON, every default filled, no machine-specific paths (data directories, output folders and
 * the backend are run-time options, not part of the config), so that the same config gives the same
 * trial key on every machine.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from './errors.js';
import {
  ALLOCATION_CRITERIA,
  DATASETS,
  DECOMPOSITIONS,
  LOWERING_ORDERS,
  METHODS,
  MODELS,
  SVD_SCHEMES,
  TRP_NUCLEAR_SCHEDULES,
  type BudgetBasis,
  type RankPolicyKind,
} from './names.js';

export const TRIAL_CONFIG_VERSION = 1;

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

export const lrScheduleSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }).strict(),
  /** lr *= gamma at each milestone (in epochs). He et al.: milestones at 32k and 48k iterations. */
  z
    .object({
      kind: z.literal('step'),
      milestones: z.array(z.number().positive()),
      gamma: z.number().positive().default(0.1),
    })
    .strict(),
  /** Cosine annealing from lr to minLr over the whole run. */
  z.object({ kind: z.literal('cosine'), minLr: z.number().nonnegative().default(0) }).strict(),
]);
export type LrSchedule = z.infer<typeof lrScheduleSchema>;

export const trainingSchema = z
  .object({
    /** Epochs of training done by this trial (0 for posttrain). */
    epochs: nonNegativeInt,
    /** Optional cap on optimizer steps (mini-batches); null = no cap. */
    maxSteps: positiveInt.nullable().default(null),
    batchSize: positiveInt.default(128),
    optimizer: z
      .object({
        name: z.literal('sgd'),
        momentum: z.number().min(0).max(1).default(0.9),
        nesterov: z.boolean().default(false),
      })
      .strict()
      .default({ name: 'sgd', momentum: 0.9, nesterov: false }),
    lr: z.number().positive().default(0.1),
    schedule: lrScheduleSchema.default({ kind: 'constant' }),
    weightDecay: z.number().nonnegative().default(1e-4),
    /** 4-pixel pad + random crop + horizontal flip (CIFAR); ignored for MNIST-like data. */
    augment: z.boolean().default(false),
  })
  .strict();
export type TrainingRecipe = z.infer<typeof trainingSchema>;

export const datasetSchema = z
  .object({
    name: z.enum(DATASETS),
    /** Use only the first N training / test examples after the fixed split (null = all). */
    trainLimit: positiveInt.nullable().default(null),
    testLimit: positiveInt.nullable().default(null),
  })
  .strict();
export type DatasetConfig = z.infer<typeof datasetSchema>;

export const startSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('scratch') }).strict(),
  /** Start from the final checkpoint of another trial (by trial key); the scheduler orders them. */
  z.object({ kind: z.literal('trial'), trialKey: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  /**
   * A checkpoint by a machine-independent name: a path relative to the directory of the spec file
   * (absolute names are refused), checked when the spec is loaded and resolved again by the
   * coordinator when it hands the trial out (packages/scheduler/README.md "Start points").
   */
  z.object({ kind: z.literal('checkpoint'), name: z.string().min(1) }).strict(),
]);
export type StartPoint = z.infer<typeof startSchema>;

const budgetRatio = z
  .number()
  .finite()
  .gt(1, { message: 'must be a whole-model compression ratio > 1 (size before / size after)' });

/**
 * The whole-model budget of an allocation: `{params: X}` or `{macs: X}`, X > 1 the compression
 * ratio of all trainable parameters (the basis of model-ratio and of the reported ratio) or of the
 * multiply-adds of one example through the conv and dense layers.
 */
export const allocationTargetSchema = z
  .object({ params: budgetRatio.optional(), macs: budgetRatio.optional() })
  .strict()
  .refine((t) => (t.params === undefined) !== (t.macs === undefined), {
    message: 'give exactly one of params: X or macs: X (the whole-model compression ratio, X > 1)',
  });
export type AllocationTarget = z.infer<typeof allocationTargetSchema>;

/** The basis and ratio of an allocation target (exactly one of params / macs is set). */
export function allocationBudget(target: AllocationTarget): { kind: BudgetBasis; ratio: number } {
  return target.params !== undefined
    ? { kind: 'params', ratio: target.params }
    : { kind: 'macs', ratio: target.macs! };
}

/** Default candidate ranks of a sensitivity measurement, as fractions of each layer's full rank. */
export const SENSITIVITY_CANDIDATES: readonly number[] = [1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4];

/**
 * How by: sensitivity measures its curves: the candidate ranks (fractions, as the 'fraction' rank
 * policy maps them to ranks), and the validation split, `validationSize` training examples drawn
 * with `validationSeed` (never test examples).
 */
export const sensitivitySchema = z
  .object({
    candidates: z
      .array(z.number().gt(0).lte(1))
      .min(1)
      .default([...SENSITIVITY_CANDIDATES]),
    validationSize: positiveInt.default(1000),
    validationSeed: nonNegativeInt.default(0),
  })
  .strict();
export type SensitivityOptions = z.infer<typeof sensitivitySchema>;

export const rankPolicySchema = z.discriminatedUnion('kind', [
  /** One rank for every targeted layer (svd, tiled-svd per tile, cp) or both Tucker ranks. */
  z.object({ kind: z.literal('rank'), rank: positiveInt }).strict(),
  /** Tucker-2 ranks [R_S, R_T]. */
  z.object({ kind: z.literal('ranks'), ranks: z.tuple([positiveInt, positiveInt]) }).strict(),
  /** Ranks as a fraction of the channels (Tucker: R_S = f*S, R_T = f*T; svd/cp: f * full rank). */
  z.object({ kind: z.literal('fraction'), fraction: z.number().gt(0).lte(1) }).strict(),
  /** Per-layer target compression ratio: the largest ranks whose layer ratio reaches it. */
  z.object({ kind: z.literal('ratio'), ratio: z.number().gt(1) }).strict(),
  /** Whole-model target ratio (params of all layers): one uniform fraction found by search. */
  z.object({ kind: z.literal('model-ratio'), ratio: z.number().gt(1) }).strict(),
  /** Smallest rank keeping this fraction of the squared singular-value energy. */
  z.object({ kind: z.literal('energy'), threshold: z.number().gt(0).lte(1) }).strict(),
  /** EVBMF estimate (Nakajima et al. 2013), clamped to [1, full]. */
  z.object({ kind: z.literal('vbmf') }).strict(),
  /**
   * Per-layer ranks chosen together under a whole-model budget (packages/decomposers/README.md,
   * "Rank allocation"); `sensitivity` only with by: sensitivity (filled with its defaults there).
   */
  z
    .object({
      kind: z.literal('allocate'),
      by: z.enum(ALLOCATION_CRITERIA),
      target: allocationTargetSchema,
      sensitivity: sensitivitySchema.optional(),
    })
    .strict(),
]);
export type RankPolicy = z.infer<typeof rankPolicySchema>;
// RANK_POLICY_KINDS (names.ts) lists exactly the kinds of the schema: a kind added to one and not
// the other fails to compile here.
const rankKindsMatch: [RankPolicy['kind']] extends [RankPolicyKind]
  ? [RankPolicyKind] extends [RankPolicy['kind']]
    ? true
    : false
  : false = true;
void rankKindsMatch;

export const layerSelectionSchema = z.discriminatedUnion('kind', [
  /** Every conv except the first one (the paper's default). */
  z.object({ kind: z.literal('all-but-first'), includeFc: z.boolean().default(false) }).strict(),
  z.object({ kind: z.literal('names'), names: z.array(z.string().min(1)).min(1) }).strict(),
  /** Convs matching every given property, e.g. {inChannels: 64, outChannels: 64, kernelSize: 3}. */
  z
    .object({
      kind: z.literal('filter'),
      inChannels: positiveInt.optional(),
      outChannels: positiveInt.optional(),
      kernelSize: positiveInt.optional(),
      stride: positiveInt.optional(),
    })
    .strict(),
]);
export type LayerSelection = z.infer<typeof layerSelectionSchema>;

export const compressionSchema = z
  .object({
    decomposition: z.enum(DECOMPOSITIONS),
    /** SVD reshaping (svd: default 'lowered'; tiled-svd: only 'lowered'). Ignored for tucker2 / cp (stored as null). */
    scheme: z.enum(SVD_SCHEMES).nullable().default(null),
    /**
     * Column order of the lowered matrix for svd lowered and tiled-svd: hwc (tap major, the
     * default) or chw (channel major). hwc is normalised away (absent = hwc), so the trial keys of
     * configs written before the option existed stay the same.
     */
    order: z.enum(LOWERING_ORDERS).optional(),
    /** Tile [rows, cols] of the lowered T x (d*d*S) matrix, tiled-svd only. */
    tile: z.tuple([positiveInt, positiveInt]).nullable().default(null),
    rank: rankPolicySchema,
    layers: layerSelectionSchema.default({ kind: 'all-but-first', includeFc: false }),
    tucker: z
      .object({
        algorithm: z.enum(['hooi', 'hosvd']).default('hooi'),
        maxIterations: positiveInt.default(50),
        tolerance: z.number().positive().default(1e-6),
      })
      .strict()
      .default({}),
    cp: z
      .object({
        init: z.enum(['svd', 'random']).default('svd'),
        maxIterations: positiveInt.default(200),
        tolerance: z.number().positive().default(1e-7),
      })
      .strict()
      .default({}),
  })
  .strict();
export type CompressionConfig = z.infer<typeof compressionSchema>;

export const distortionSchema = z
  .object({
    /** S_D: mini-batches between two distortions (the paper uses 200). */
    interval: positiveInt.default(200),
    /** Zero the optimizer's momentum buffers after each distortion. */
    resetMomentum: z.boolean().default(false),
    /** Re-estimate batch-norm statistics after the final distortion. */
    reestimateBatchNorm: z.boolean().default(false),
  })
  .strict();
export type DistortionConfig = z.infer<typeof distortionSchema>;

/**
 * Trained Rank Pruning (Xu et al., IJCAI 2020). Its rank rule is compression.rank, which must be
 * {kind: energy, threshold: e}: at every projection each target kernel's rank is chosen again as the
 * smallest keeping the fraction e of the squared singular values. No defaults for interval and
 * lambda: the paper's values are for CIFAR-10 on a GPU, and a sweep should say what it ran.
 */
export const trpSchema = z
  .object({
    /** m: optimizer steps between two projections onto the energy-truncated SVD. */
    interval: positiveInt,
    /** Weight of the nuclear-norm penalty lambda * sum ||W||_* over the target kernels (0: projections alone). */
    lambda: z.number().nonnegative().finite(),
    /** When the penalty's subgradient U V^T is added to the gradient (TRP_NUCLEAR_SCHEDULES). */
    nuclearEvery: z.enum(TRP_NUCLEAR_SCHEDULES).default('step'),
  })
  .strict();
export type TrpConfig = z.infer<typeof trpSchema>;

const trialConfigObject = z
  .object({
    version: z.literal(TRIAL_CONFIG_VERSION).default(TRIAL_CONFIG_VERSION),
    model: z.enum(MODELS),
    dataset: datasetSchema,
    training: trainingSchema,
    start: startSchema.default({ kind: 'scratch' }),
    method: z.enum(METHODS),
    /** null for 'baseline'; required for every other method. */
    compression: compressionSchema.nullable().default(null),
    /** Only for 'distort'. */
    distortion: distortionSchema.nullable().default(null),
    /**
     * Only for 'trp'. Optional rather than null by default: absent from every other config, so the
     * trial keys of configs written before the method existed stay the same.
     */
    trp: trpSchema.optional(),
    seed: nonNegativeInt.default(0),
  })
  .strict();

export const trialConfigSchema = trialConfigObject.superRefine((c, ctx) =>
  checkCombinations(c, (path, message) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message })),
);

type ParsedTrialConfig = z.output<typeof trialConfigObject>;

/**
 * Rules between fields. Every consumer of a config (flatrank train, the spec expansion of
 * flatrank run, the store) resolves it here, so a combination refused here is refused everywhere
 * before anything runs.
 */
function checkCombinations(
  c: ParsedTrialConfig,
  refuse: (path: Array<string | number>, message: string) => void,
): void {
  if (c.method === 'baseline' && c.compression !== null)
    refuse(['compression'], "must be null for method 'baseline'");
  if (c.method !== 'baseline' && c.compression === null)
    refuse(['compression'], `is required for method '${c.method}'`);
  if (c.method === 'distort' && c.distortion === null)
    refuse(['distortion'], "is required for method 'distort'");
  if (c.method !== 'distort' && c.distortion !== null)
    refuse(['distortion'], "is only allowed for method 'distort'");
  if (c.method === 'trp' && c.trp === undefined) refuse(['trp'], "is required for method 'trp'");
  if (c.method !== 'trp' && c.trp !== undefined) refuse(['trp'], "is only allowed for method 'trp'");
  if (c.method === 'posttrain' && c.training.epochs !== 0)
    refuse(
      ['training', 'epochs'],
      `must be 0 for method 'posttrain' (it decomposes the start model and trains nothing; use method 'finetune' to train after decomposition), got ${c.training.epochs}`,
    );
  const comp = c.compression;
  if (!comp) return;
  if (c.method === 'trp') checkTrpCompression(comp, refuse);
  if (comp.decomposition === 'tiled-svd' && comp.tile === null)
    refuse(['compression', 'tile'], "is required for decomposition 'tiled-svd'");
  if (comp.decomposition !== 'tiled-svd' && comp.tile !== null)
    refuse(['compression', 'tile'], "is only allowed for decomposition 'tiled-svd'");
  if (comp.decomposition === 'tiled-svd' && comp.scheme !== null && comp.scheme !== 'lowered')
    refuse(
      ['compression', 'scheme'],
      `must be 'lowered' (or absent) for decomposition 'tiled-svd': its tiles are cut from the lowered matrix; got '${comp.scheme}'`,
    );
  if (comp.decomposition === 'tiled-svd' && c.method === 'finetune')
    refuse(
      ['compression', 'decomposition'],
      "'tiled-svd' cannot be fine-tuned (it has no conv-chain form); allowed with method 'finetune': svd, tucker2, cp; tiled-svd runs with methods 'distort' and 'posttrain'",
    );
  const lowered =
    comp.decomposition === 'tiled-svd' ||
    (comp.decomposition === 'svd' && (comp.scheme ?? 'lowered') === 'lowered');
  if (comp.order === 'chw' && !lowered)
    refuse(
      ['compression', 'order'],
      "chw (channel-major lowering) applies only to decomposition 'tiled-svd' and 'svd' with scheme 'lowered'",
    );
  if (comp.decomposition !== 'tucker2' && comp.rank.kind === 'ranks')
    refuse(['compression', 'rank'], "kind 'ranks' ([R_S, R_T]) is only allowed for tucker2");
  if (comp.rank.kind === 'allocate') {
    if (comp.rank.by !== 'sensitivity' && comp.rank.sensitivity !== undefined)
      refuse(
        ['compression', 'rank', 'sensitivity'],
        `is only allowed with by: sensitivity (this allocation is by: ${comp.rank.by})`,
      );
    if (comp.rank.by === 'sensitivity' && c.start.kind === 'scratch')
      refuse(
        ['compression', 'rank', 'by'],
        'sensitivity measures accuracy curves of a trained model: it needs start: {kind: trial} or {kind: checkpoint}, not scratch; the data-free allocations (by: error, by: vbmf) work from scratch',
      );
  }
  if (comp.decomposition === 'cp' && comp.layers.kind === 'all-but-first' && comp.layers.includeFc)
    refuse(
      ['compression', 'layers', 'includeFc'],
      "must be false for decomposition 'cp': CP decomposes 4-D conv kernels and the fully connected layers have 2-D ones; allowed with includeFc: svd, tiled-svd, tucker2",
    );
}

/** TRP projects onto a truncated SVD whose rank the energy rule chooses anew at every projection. */
function checkTrpCompression(
  comp: CompressionConfig,
  refuse: (path: Array<string | number>, message: string) => void,
): void {
  if (comp.decomposition !== 'svd')
    refuse(
      ['compression', 'decomposition'],
      `must be 'svd' for method 'trp' (TRP truncates the SVD of each kernel's matrix: scheme 'lowered' is its channel-wise decomposition, 'spatial' its spatial-wise one); got '${comp.decomposition}'`,
    );
  if (comp.rank.kind !== 'energy')
    refuse(
      ['compression', 'rank'],
      `must be {kind: energy, threshold: e} for method 'trp' (each projection keeps the smallest rank holding the fraction e of the squared singular values, so the ranks are chosen while training, not fixed); got kind '${comp.rank.kind}'`,
    );
}

export type TrialConfig = z.output<typeof trialConfigSchema>;
export type TrialConfigInput = z.input<typeof trialConfigSchema>;

/**
 * The rules between fields alone, on a config that is already a TrialConfig (e.g. one read back or
 * handed to the store): the same checks and messages as resolveTrialConfig, at a fraction of the
 * cost of a full parse. Throws ValidationError.
 */
export function checkTrialConfigRules(config: TrialConfig, where = 'config'): void {
  const issues: FieldIssue[] = [];
  checkCombinations(config, (path, message) => issues.push({ path: formatPath(where, path), message }));
  if (issues.length > 0) throw issuesToValidationError(issues, where);
}

/** Validates and fills defaults; throws ValidationError naming the field path and what is allowed. */
export function resolveTrialConfig(input: unknown, where = 'config'): TrialConfig {
  const parsed = trialConfigSchema.safeParse(input);
  if (parsed.success) {
    const c = parsed.data;
    // Normalise fields that do not apply so that equivalent configs hash alike.
    if (c.compression) {
      if (c.compression.decomposition === 'tiled-svd') c.compression.scheme = 'lowered';
      else if (c.compression.decomposition === 'svd') c.compression.scheme ??= 'lowered';
      else c.compression.scheme = null;
      if (c.compression.order === 'hwc') delete c.compression.order;
      const rank = c.compression.rank;
      if (rank.kind === 'allocate' && rank.by === 'sensitivity') {
        rank.sensitivity ??= sensitivitySchema.parse({});
        rank.sensitivity.candidates = [...new Set(rank.sensitivity.candidates)].sort((a, b) => a - b);
      }
    }
    return c;
  }
  throw zodToValidationError(parsed.error, where);
}

/** Formats the first zod issue as "<where>.<path>: <message>" (all issues go into context). */
export function zodToValidationError(error: z.ZodError, where: string): ValidationError {
  const issues = error.issues.map((i) => ({ path: formatPath(where, i.path), message: describeIssue(i) }));
  return issuesToValidationError(issues, where, error);
}

interface FieldIssue {
  path: string;
  message: string;
}

function issuesToValidationError(issues: FieldIssue[], where: string, cause?: unknown): ValidationError {
  const first = issues[0] ?? { path: where, message: 'invalid' };
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return new ValidationError(first.path, `${first.path}: ${first.message}${more}`, {
    context: { issues },
    ...(cause === undefined ? {} : { cause }),
  });
}

export function formatPath(where: string, path: ReadonlyArray<string | number>): string {
  let out = where;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function describeIssue(i: z.ZodIssue): string {
  switch (i.code) {
    case z.ZodIssueCode.invalid_enum_value:
      return `unknown value ${JSON.stringify(i.received)}; allowed: ${i.options.join(', ')}`;
    case z.ZodIssueCode.invalid_union_discriminator:
      return `unknown kind; allowed: ${i.options.map(String).join(', ')}`;
    case z.ZodIssueCode.unrecognized_keys:
      return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`;
    case z.ZodIssueCode.invalid_literal:
      return `must be ${JSON.stringify(i.expected)}`;
    default:
      return i.message;
  }
}

/** JSON with object keys sorted recursively (arrays keep their order). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  if (typeof v === 'number' && !Number.isFinite(v))
    throw new ValidationError('config', `non-finite number ${v} cannot be part of a trial config`);
  return v;
}

/** trial key = sha256 (hex) of the canonical JSON of the resolved config. */
export function trialKey(config: TrialConfig): string {
  return sha256Hex(canonicalJson(config));
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
