/**
 * The checkpoint layout: what the trainers write, what the scheduler checks before it hands out a
 * trial that starts from a checkpoint, and what the fake trainer reads. A checkpoint is a directory:
 *   flatrank.json   metadata: format, trial key, config, architecture, epoch, step, accuracy, ...
 *   model.json      TensorFlow.js LayersModel topology + weights manifest (paths: weights.bin)
 *   weights.bin     the concatenated weights
 *   optimizer.json + optimizer.bin   optional: the momentum buffers, with their own format string
 * Readers compare the format string in flatrank.json; the optional optimizer part is versioned on
 * its own so that adding it did not change the checkpoint format.
 */

/** `format` in flatrank.json. Bump it only when readers of the required files must change. */
export const CHECKPOINT_FORMAT = 'flatrank-checkpoint-1';

/** `format` in optimizer.json (the optional momentum buffers). */
export const OPTIMIZER_FORMAT = 'flatrank-optimizer-1';

/** File names inside a checkpoint directory. */
export const CHECKPOINT_FILES = {
  meta: 'flatrank.json',
  model: 'model.json',
  weights: 'weights.bin',
  optimizerMeta: 'optimizer.json',
  optimizerData: 'optimizer.bin',
} as const;

/** The files every checkpoint has (the optimizer part is optional). */
export const REQUIRED_CHECKPOINT_FILES: readonly string[] = [
  CHECKPOINT_FILES.meta,
  CHECKPOINT_FILES.model,
  CHECKPOINT_FILES.weights,
];
