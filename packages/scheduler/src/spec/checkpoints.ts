/**
 * `start: {checkpoint: <name>}`: a trial starts from a checkpoint that no trial of the sweep
 * produces (a model trained elsewhere, e.g. by `flatrank train --out DIR` or by an older sweep).
 *
 * Lookup rule: <name> is a relative path, resolved against the directory of the spec file. It must
 * name a flatrank checkpoint directory in the layout of protocol/src/checkpoint.ts (the metadata
 * file of format CHECKPOINT_FORMAT, the model and the weights) holding an undecomposed model. Absolute names are
 * refused: the name is part of the trial config, hence of the trial key, and must mean the same on
 * every machine (a checkout of the experiments). The coordinator resolves the name again when it
 * hands the trial out (the directory may have gone since the spec was loaded) and passes the
 * absolute path to the trial child as `startCheckpoint`.
 */
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CHECKPOINT_FILES, CHECKPOINT_FORMAT, REQUIRED_CHECKPOINT_FILES } from '@flatrank/protocol';

export interface ResolvedCheckpoint {
  /** The name as written in the spec / trial config. */
  name: string;
  /** Absolute path of the checkpoint directory. */
  path: string;
  /** Model of the trial that wrote it (flatrank.json config.model), when recorded. */
  model: string | null;
}

export type CheckpointLookup = { ok: true; checkpoint: ResolvedCheckpoint } | { ok: false; reason: string };

/** What `start: {checkpoint: ...}` accepts, for error messages. */
export function checkpointAllowedText(baseDir: string): string {
  return `allowed: a path relative to the spec's directory (${baseDir}) of a flatrank checkpoint directory (${REQUIRED_CHECKPOINT_FILES.join(', ')}; written by flatrank train --out or by a trial's attempt-<n>/checkpoint)`;
}

/** Resolves a checkpoint name against the spec's directory and checks that it is a usable checkpoint. */
export function resolveCheckpointName(name: string, baseDir: string): CheckpointLookup {
  if (name.trim() === '') return { ok: false, reason: 'is empty' };
  if (isAbsolute(name))
    return {
      ok: false,
      reason: `"${name}" is an absolute path; the name is part of the trial key and must not depend on the machine`,
    };
  const path = resolve(baseDir, name);
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    return { ok: false, reason: `no checkpoint "${name}": ${path} does not exist` };
  }
  if (!isDir) return { ok: false, reason: `"${name}": ${path} is a file, not a checkpoint directory` };
  const missing = REQUIRED_CHECKPOINT_FILES.filter((f) => !isFile(join(path, f)));
  if (missing.length)
    return {
      ok: false,
      reason: `"${name}": ${path} is not a flatrank checkpoint (no ${missing.join(', ')})`,
    };
  const metaFile = join(path, CHECKPOINT_FILES.meta);
  let meta: { format?: unknown; architecture?: unknown; config?: { model?: unknown } | null };
  try {
    meta = JSON.parse(readFileSync(metaFile, 'utf8')) as typeof meta;
  } catch (e) {
    return {
      ok: false,
      reason: `"${name}": ${metaFile} is unreadable: ${(e as Error).message}`,
    };
  }
  if (meta?.format !== CHECKPOINT_FORMAT)
    return {
      ok: false,
      reason: `"${name}": ${metaFile} has format ${JSON.stringify(meta?.format)}, expected ${CHECKPOINT_FORMAT}`,
    };
  // A factored (exported compressed) model cannot be a start point: every method starts from the base architecture.
  if (meta.architecture !== undefined && meta.architecture !== 'base')
    return {
      ok: false,
      reason: `"${name}" holds a ${String(meta.architecture)} model; methods start from an undecomposed (base) checkpoint`,
    };
  const model = typeof meta.config?.model === 'string' ? meta.config.model : null;
  return { ok: true, checkpoint: { name, path, model } };
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
