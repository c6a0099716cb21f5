/**
 * The experiment spec (experiments/*.yaml): its zod schema. Field-level shapes reuse the protocol's
 * trial-config schemas (partial where a grid axis or the sweep-level value may fill the rest), so a
 * spec accepts exactly what a TrialConfig accepts; the final word on each grid point is
 * resolveTrialConfig.
 */
import { z } from 'zod';
import {
  compressionSchema,
  DATASETS,
  datasetSchema,
  distortionSchema,
  METHODS,
  MODELS,
  trainingSchema,
  trpSchema,
} from '@flatrank/protocol';

export const REPRODUCES = ['paper-fig3', 'paper-table1'] as const;
export type Reproduces = (typeof REPRODUCES)[number];

/** Names a sweep and its methods may use (they end up in file names and table columns). */
const idSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'must start with a letter or digit and contain only letters, digits, ".", "_", "-"',
  );

/** "90s", "30m", "2h", "500ms" or a number of seconds. */
export const durationSchema = z.union([
  z.number().positive(),
  z
    .string()
    .regex(
      /^\d+(\.\d+)?(ms|s|m|h)$/,
      'must be a duration such as "500ms", "90s", "30m", "2h" or a number of seconds',
    ),
]);

export function durationMs(d: z.infer<typeof durationSchema>): number {
  if (typeof d === 'number') return Math.round(d * 1000);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** compression.rank shorthands: 4 -> {kind: rank, rank: 4}; [8, 16] -> {kind: ranks, ranks: [8, 16]}. */
export function rankShorthand(v: unknown): unknown {
  if (typeof v === 'number') return { kind: 'rank', rank: v };
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number'))
    return { kind: 'ranks', ranks: v };
  return v;
}

const partialCompression = z.preprocess((v) => {
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'rank' in v)
    return { ...(v as object), rank: rankShorthand((v as { rank: unknown }).rank) };
  return v;
}, compressionSchema.partial());

/** A dataset by name ("mnist") or the full dataset object. */
const datasetField = z.preprocess(
  (v) => (typeof v === 'string' ? { name: v } : v),
  datasetSchema
    .partial()
    .extend({ name: z.enum(DATASETS) })
    .strict(),
);
const datasetOverride = z.preprocess(
  (v) => (typeof v === 'string' ? { name: v } : v),
  datasetSchema.partial().strict(),
);

const trainingPartial = trainingSchema.partial().strict();

/** Axis values: a non-empty list. */
const axisValues = z
  .array(z.unknown(), { invalid_type_error: 'must be a list of values (write [x] for a single value)' })
  .min(1, 'must list at least one value');

export const gridSchema = z
  .object({
    /** Zipped axes: equal-length lists taken together (k-th values form one combination). */
    zip: z.record(z.string(), axisValues).optional(),
    /** Explicit combinations: every entry sets several axes at once. */
    points: z.array(z.record(z.string(), z.unknown())).min(1, 'must list at least one point').optional(),
  })
  .catchall(axisValues);
export type GridInput = z.infer<typeof gridSchema>;

const startField = z.union([
  z.string().min(1),
  z
    .object({
      method: z.string().min(1),
      /** Axis names whose values must be equal between this point and its start trial (default: all shared axes). */
      match: z.array(z.string()).optional(),
    })
    .strict(),
  z.object({ trial: z.string().regex(/^[0-9a-f]{64}$/, 'must be a full 64-hex-digit trial key') }).strict(),
  z.object({ checkpoint: z.string().min(1) }).strict(),
]);
export type StartInput = z.infer<typeof startField>;

export const methodSpecSchema = z
  .object({
    /** Defaults to the method's id when that id is a method name (baseline / distort / finetune / posttrain / trp). */
    method: z.enum(METHODS).optional(),
    compression: partialCompression.optional(),
    distortion: distortionSchema.partial().strict().optional(),
    trp: trpSchema.partial().strict().optional(),
    /** Recipe overrides, merged over the sweep's training recipe. */
    training: trainingPartial.optional(),
    dataset: datasetOverride.optional(),
    start: startField.optional(),
    grid: gridSchema.optional(),
  })
  .strict();
export type MethodSpecInput = z.infer<typeof methodSpecSchema>;

export const resourcesSchema = z
  .object({
    /** 'auto' asks nvidia-smi; 'none' runs on CPU workers; or a list of GPU indices. */
    gpus: z.unknown().transform((v, ctx): 'auto' | 'none' | number[] => {
      if (v === undefined) return 'auto';
      if (v === 'auto' || v === 'none') return v;
      if (
        Array.isArray(v) &&
        v.length > 0 &&
        v.every((x) => Number.isInteger(x) && (x as number) >= 0) &&
        new Set(v).size === v.length
      )
        return v as number[];
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be auto, none, or a list of distinct GPU indices such as [0, 1]; got ${JSON.stringify(v)}`,
      });
      return z.NEVER;
    }),
    workersPerGpu: z.number().int().positive().max(64).default(1),
    cpuWorkers: z.number().int().positive().max(256).default(1),
    maxAttempts: z.number().int().positive().max(100).default(3),
    /** Wall-clock limit of one attempt (none by default). */
    trialTimeout: durationSchema.nullable().default(null),
    /** An attempt that sends no heartbeat for this long is declared dead and retried. */
    heartbeatTimeout: durationSchema.default('60s'),
    /** How often a trial child sends a heartbeat. */
    heartbeatInterval: durationSchema.default('5s'),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (durationMs(r.heartbeatInterval) * 2 > durationMs(r.heartbeatTimeout))
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['heartbeatTimeout'],
        message: 'must be at least twice heartbeatInterval',
      });
  });
export type Resources = z.output<typeof resourcesSchema>;

export const specSchema = z
  .object({
    name: idSchema,
    description: z.string().optional(),
    reproduces: z.enum(REPRODUCES).optional(),
    model: z.enum(MODELS),
    dataset: datasetField,
    training: trainingPartial,
    /** Where every method starts unless it says otherwise: 'scratch', a method id of this sweep, {trial: key}, {checkpoint: name}. */
    start: startField.default('scratch'),
    methods: z
      .record(
        idSchema,
        methodSpecSchema.nullable().transform((m) => m ?? {}),
      )
      .refine((m) => Object.keys(m).length > 0, 'must define at least one method'),
    grid: gridSchema.optional(),
    resources: resourcesSchema.default({}),
  })
  .strict();
export type SpecInput = z.input<typeof specSchema>;
export type ParsedSpec = z.output<typeof specSchema>;
