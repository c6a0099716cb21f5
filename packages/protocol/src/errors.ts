/**
 * The one typed error hierarchy of flatrank. Every error carries a stable `code` (used for exit
 * codes and by tests), a human message that names the field and what is allowed, optional
 * structured `context`, the underlying `cause`, and whether another attempt could succeed
 * (`retryable`, carried by the trial's failed event; cf. Temporal's ApplicationFailure.nonRetryable).
 */
export type ErrorContext = Record<string, unknown>;

export interface FlatrankErrorOptions {
  context?: ErrorContext;
  cause?: unknown;
  /** Overrides the class's default (flatrank errors are deterministic, hence not retryable). */
  retryable?: boolean;
}

/** Error code of a trial stopped by its coordinator ('cancel' over IPC, Ctrl-C, a worker's cancel). */
export const CANCELLED_CODE = 'CANCELLED';

export class FlatrankError extends Error {
  /** Stable machine-readable code, e.g. 'SPEC_INVALID'. */
  readonly code: string;
  readonly context: ErrorContext;
  /** CLI exit code for this error class (documented in apps/cli/README.md). */
  readonly exitCode: number = 1;
  /**
   * Whether running the same trial again could succeed. Flatrank errors describe the input or the
   * data (the same config fails the same way again), so false unless a class or caller says so.
   */
  readonly retryable: boolean;

  constructor(code: string, message: string, options: FlatrankErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = options.context ?? {};
    this.retryable = options.retryable ?? (this.constructor as typeof FlatrankError).retryableByDefault;
  }

  /** The `retryable` of instances constructed without the option. */
  static readonly retryableByDefault: boolean = false;

  toJSON(): { name: string; code: string; message: string; context: ErrorContext } {
    return { name: this.name, code: this.code, message: this.message, context: this.context };
  }
}

/** Bad user input at a boundary: a CLI flag, an option object, a config field. Exit code 2. */
export class ValidationError extends FlatrankError {
  override readonly exitCode: number = 2;
  /** Path of the offending field, e.g. 'grid.rank[2]' or '--rank'. */
  readonly field: string;
  constructor(field: string, message: string, options: FlatrankErrorOptions & { code?: string } = {}) {
    super(options.code ?? 'INVALID_OPTION', message, { ...options, context: { field, ...options.context } });
    this.field = field;
  }
}

/** A malformed experiment spec (file, path of the field, what is allowed). Exit code 2. */
export class SpecError extends ValidationError {
  readonly file: string | undefined;
  constructor(field: string, message: string, options: FlatrankErrorOptions & { file?: string } = {}) {
    super(field, message, {
      ...options,
      code: 'SPEC_INVALID',
      context: { file: options.file, ...options.context },
    });
    this.file = options.file;
  }
}

/** A tensor of the wrong shape or layout. Exit code 2. */
export class ShapeError extends ValidationError {
  constructor(field: string, message: string, options: FlatrankErrorOptions = {}) {
    super(field, message, { ...options, code: 'SHAPE_INVALID' });
  }
}

/** An impossible rank (0, above the full rank, not an integer, ...). Exit code 2. */
export class RankError extends ValidationError {
  constructor(field: string, message: string, options: FlatrankErrorOptions = {}) {
    super(field, message, { ...options, code: 'RANK_INVALID' });
  }
}

/** An unknown method / decomposition / scheme / model name. Exit code 2. */
export class UnknownNameError extends ValidationError {
  readonly allowed: readonly string[];
  constructor(field: string, got: string, allowed: readonly string[], options: FlatrankErrorOptions = {}) {
    super(field, `${field}: unknown value ${JSON.stringify(got)}; allowed: ${allowed.join(', ')}`, {
      ...options,
      code: 'UNKNOWN_NAME',
      context: { got, allowed, ...options.context },
    });
    this.allowed = allowed;
  }
}

/** A missing, corrupt or truncated data file (names the file). Exit code 3. */
export class DataError extends FlatrankError {
  override readonly exitCode: number = 3;
  readonly file: string | undefined;
  constructor(message: string, options: FlatrankErrorOptions & { file?: string } = {}) {
    super('DATA_INVALID', message, { ...options, context: { file: options.file, ...options.context } });
    this.file = options.file;
  }
}

/** A requested TensorFlow.js backend that is not installed or fails to load. Exit code 4. */
export class BackendUnavailableError extends FlatrankError {
  override readonly exitCode: number = 4;
  /** Another worker (another machine) may have the backend. */
  static override readonly retryableByDefault: boolean = true;
  constructor(message: string, options: FlatrankErrorOptions = {}) {
    super('BACKEND_UNAVAILABLE', message, options);
  }
}

/** Out of memory (e.g. the 4 GiB wasm heap) with a hint such as a smaller batch. Exit code 5. */
export class ResourceExhaustedError extends FlatrankError {
  override readonly exitCode: number = 5;
  constructor(message: string, options: FlatrankErrorOptions = {}) {
    super('RESOURCE_EXHAUSTED', message, options);
  }
}

/** The results database: missing, not a flatrank database, refused write, schema too new. Exit code 6. */
export class StoreError extends FlatrankError {
  override readonly exitCode: number = 6;
  constructor(code: string, message: string, options: FlatrankErrorOptions = {}) {
    super(code, message, options);
  }
}

/** Training diverged (NaN or exploding loss): recorded, never retried. Exit code 7. */
export class DivergedError extends FlatrankError {
  override readonly exitCode: number = 7;
  constructor(message: string, options: FlatrankErrorOptions = {}) {
    super('DIVERGED', message, options);
  }
}

/** A scheduling / worker / transport failure. Exit code 8. */
export class SchedulerError extends FlatrankError {
  override readonly exitCode: number = 8;
  constructor(code: string, message: string, options: FlatrankErrorOptions = {}) {
    super(code, message, options);
  }
}

/** A trial stopped by its coordinator before it ended; not retryable (the coordinator decides). */
export class CancelledError extends FlatrankError {
  constructor(reason: string, options: FlatrankErrorOptions = {}) {
    super(CANCELLED_CODE, `trial cancelled: ${reason}`, {
      ...options,
      context: { reason, ...options.context },
    });
  }
}

export function isFlatrankError(e: unknown): e is FlatrankError {
  return e instanceof FlatrankError;
}

/**
 * Whether another attempt of the trial that threw `e` could succeed: a flatrank error says so
 * itself; anything else (a bug, a killed file system, ...) may be transient, so it is retried.
 */
export function isRetryable(e: unknown): boolean {
  return e instanceof FlatrankError ? e.retryable : true;
}

/** Plain-object form of any thrown value, safe to send over IPC / Redis and store. */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  context?: ErrorContext;
  stack?: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof FlatrankError) return { ...e.toJSON(), ...(e.stack ? { stack: e.stack } : {}) };
  if (e instanceof Error)
    return { name: e.name, code: 'INTERNAL', message: e.message, ...(e.stack ? { stack: e.stack } : {}) };
  return { name: 'Error', code: 'INTERNAL', message: String(e) };
}
