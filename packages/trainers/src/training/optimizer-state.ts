/**
 * The saved state of MomentumSgd (its momentum buffers) and the rule for when a training run
 * starting from a checkpoint takes it over.
 *
 * Buffers are keyed by the variable's process-independent name (LayerVariable.originalName, e.g.
 * 'conv2/kernel'); tf.Variable names carry per-process suffixes ('conv2/kernel_3') and cannot be
 * compared across processes. Values are plain Float32Arrays (not tensors) so that the state
 * outlives the checkpoint's tensors and needs no disposal.
 *
 * When momentum is restored (see momentumStartFor in checkpoint.ts for the mode):
 * - 'resume' (the checkpoint was written by the same trial, same trial key): restored exactly. A
 *   checkpoint whose buffers do not match the model's variables (names, shapes) or whose
 *   momentum / nesterov differ from the recipe's is inconsistent with "the same trial": ShapeError /
 *   ValidationError rather than silently training on with fresh momentum.
 * - 'continue' (another trial starts from the checkpoint: distortion training or more training
 *   from a baseline, fine-tuning a decomposed model): restored only when every trainable variable
 *   has a saved buffer of the same name and shape (same architecture). A decomposed / factored
 *   model has other variables, its accumulators mean nothing there: momentum starts fresh and the
 *   reason is recorded.
 * - No saved state (a checkpoint written before optimizer state was saved, or saved without it):
 *   fresh, with the reason.
 */
import { ShapeError, ValidationError } from '@flatrank/protocol';

export const OPTIMIZER_STATE_KIND = 'sgd-momentum';

export interface OptimizerSlot {
  /** Process-independent variable name (LayerVariable.originalName). */
  name: string;
  shape: number[];
  /** Row-major float32 values, length = product of shape. */
  values: Float32Array;
}

export interface OptimizerState {
  kind: typeof OPTIMIZER_STATE_KIND;
  /** Hyperparameters the buffers were accumulated with. */
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  /** One momentum buffer per trainable variable, in the model's trainableWeights order. */
  slots: OptimizerSlot[];
}

export type MomentumRestoreMode = 'resume' | 'continue';

/** What a training run starting from a checkpoint is offered (see momentumStartFor). */
export interface MomentumStart {
  /** The checkpoint's saved state, or null when it has none. */
  state: OptimizerState | null;
  mode: MomentumRestoreMode;
  /** Where the state comes from (the checkpoint directory), for messages. */
  source: string;
  /** Why state is null (e.g. '<dir> was written before checkpoints carried optimizer state'). */
  absentReason?: string | null;
}

/** The decision, recorded by the training loop (metric train/momentum_restored, 1 or 0). */
export interface MomentumRestore {
  restored: boolean;
  mode: MomentumRestoreMode;
  source: string;
  reason: string;
}

/** The variables a state is matched against: stable name and shape, in optimizer order. */
export interface NamedShape {
  name: string;
  shape: readonly number[];
}

/**
 * Null when `state` has a buffer of the same name and shape for every target (and no others),
 * otherwise the first difference in words.
 */
export function optimizerStateMismatch(state: OptimizerState, targets: readonly NamedShape[]): string | null {
  const saved = new Map<string, OptimizerSlot>();
  for (const s of state.slots) {
    if (saved.has(s.name)) return `the saved state names variable ${s.name} twice`;
    const size = s.shape.reduce((a, b) => a * b, 1);
    if (s.values.length !== size)
      return `the saved buffer of ${s.name} has ${s.values.length} values, its shape [${s.shape.join(', ')}] needs ${size}`;
    saved.set(s.name, s);
  }
  const seen = new Set<string>();
  for (const t of targets) {
    if (seen.has(t.name)) return `the model has two trainable variables named ${t.name}`;
    seen.add(t.name);
    const s = saved.get(t.name);
    if (!s)
      return `no saved buffer for variable ${t.name} (the saved state has ${state.slots.length} buffers, the model ${targets.length} variables)`;
    if (s.shape.join('x') !== t.shape.join('x'))
      return `variable ${t.name} has shape [${t.shape.join(', ')}], its saved buffer [${s.shape.join(', ')}]`;
  }
  if (saved.size !== targets.length) {
    const extra = state.slots.find((s) => !seen.has(s.name))!;
    return `the saved state has a buffer for ${extra.name}, which the model does not have (${state.slots.length} buffers, ${targets.length} variables)`;
  }
  return null;
}

/** The part of MomentumSgd the restore rule needs (keeps this file free of tensors). */
export interface MomentumTarget {
  readonly options: { momentum: number; nesterov: boolean };
  slotShapes(): NamedShape[];
  importState(state: OptimizerState): void;
}

/** Applies the restore rule (file comment) to a freshly built optimizer and returns the decision. */
export function restoreMomentum(optimizer: MomentumTarget, start: MomentumStart): MomentumRestore {
  const { state, mode, source } = start;
  const fresh = (reason: string): MomentumRestore => ({ restored: false, mode, source, reason });
  if (state === null)
    return fresh(`momentum starts fresh: ${start.absentReason ?? `${source} holds no optimizer state`}`);
  const mismatch = optimizerStateMismatch(state, optimizer.slotShapes());
  if (mode === 'resume') {
    if (mismatch !== null)
      throw new ShapeError(
        'startCheckpoint',
        `startCheckpoint: resuming from ${source}, but its optimizer state does not fit the model: ${mismatch}`,
      );
    const o = optimizer.options;
    if (o.momentum !== state.momentum || o.nesterov !== state.nesterov)
      throw new ValidationError(
        'training.optimizer',
        `training.optimizer: resuming from ${source}, which was trained with momentum ${state.momentum}` +
          ` nesterov ${state.nesterov}; the recipe has momentum ${o.momentum} nesterov ${o.nesterov}`,
      );
    optimizer.importState(state);
    return { restored: true, mode, source, reason: `momentum restored exactly (resume of the same trial)` };
  }
  if (mismatch !== null)
    return fresh(`momentum starts fresh: the variables differ from those of ${source} (${mismatch})`);
  if (state.momentum === 0)
    return fresh(`momentum starts fresh: ${source} was trained without momentum (its buffers are zero)`);
  optimizer.importState(state);
  return {
    restored: true,
    mode,
    source,
    reason: `momentum restored from ${source} (same variable names and shapes)`,
  };
}
