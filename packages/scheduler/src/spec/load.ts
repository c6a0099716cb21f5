/**
 * Reading a spec: YAML text -> validated spec (SpecError with file, line, field path and what is
 * allowed). Nothing here touches the database.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { canonicalJson, formatPath, sha256Hex, SpecError, zodToValidationError } from '@flatrank/protocol';
import { checkpointAllowedText, resolveCheckpointName, type ResolvedCheckpoint } from './checkpoints.js';
import { specSchema, type ParsedSpec, type StartInput } from './schema.js';

export interface Spec {
  /** File the spec came from (undefined for text given directly). */
  file: string | undefined;
  text: string;
  parsed: ParsedSpec;
  /** sha256 of the canonical JSON of the validated spec. */
  hash: string;
  /** Line of a spec path (for messages about grid points found later). */
  lineOf(path: ReadonlyArray<string | number>): number | undefined;
  /**
   * Where `start: {checkpoint: <name>}` names are looked up: the spec file's directory (null for
   * text parsed without one: such names are then not resolved, and a run cannot start them).
   */
  checkpointDir: string | null;
  /** Every checkpoint name of the spec, resolved and checked (empty when checkpointDir is null). */
  checkpoints: ReadonlyMap<string, ResolvedCheckpoint>;
}

/**
 * The largest spec accepted. Specs are stored in the database with every sweep (as given and
 * resolved); a real spec is a few kilobytes, and anything near this size is generated data.
 */
export const MAX_SPEC_BYTES = 1024 * 1024;

/** YAML aliases a spec may expand (more is an alias bomb, "billion laughs"). */
const MAX_ALIAS_COUNT = 100;

function tooLarge(where: string, file: string | undefined, bytes: number): SpecError {
  return new SpecError(
    '(file)',
    `${where}: the spec is ${(bytes / 1024 / 1024).toFixed(1)} MB, over the limit of ${MAX_SPEC_BYTES / 1024 / 1024} MB; a spec lists axes, not points: describe large grids with axes, zip or points of a few values each`,
    { file, context: { bytes, limit: MAX_SPEC_BYTES } },
  );
}

/** Reads and validates a spec file (refused unread when larger than MAX_SPEC_BYTES). */
export function loadSpecFile(file: string): Spec {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_SPEC_BYTES) throw tooLarge(file, file, size);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof SpecError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new SpecError(
      '(file)',
      `${file}: cannot read the spec${code === 'ENOENT' ? ': no such file' : `: ${(e as Error).message}`}`,
      { file, cause: e },
    );
  }
  return parseSpecText(text, file, { checkpointDir: dirname(resolve(file)) });
}

/**
 * Parses and validates spec text (YAML or JSON). With `checkpointDir`, every `start: {checkpoint:
 * <name>}` is resolved against it and must name an existing checkpoint (loadSpecFile passes the
 * spec file's directory).
 */
export function parseSpecText(text: string, file?: string, options: { checkpointDir?: string } = {}): Spec {
  const where = file ?? 'spec';
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_SPEC_BYTES) throw tooLarge(where, file, bytes);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const pos = err.linePos?.[0] ?? (err.pos ? lineCounter.linePos(err.pos[0]) : undefined);
    const at = pos ? `:${pos.line}:${pos.col}` : '';
    throw new SpecError('(yaml)', `${where}${at}: invalid YAML: ${err.message.split('\n')[0]}`, {
      file,
      cause: err,
      context: { line: pos?.line, col: pos?.col },
    });
  }
  const lineOf = (path: ReadonlyArray<string | number>): number | undefined =>
    nodeLine(doc, lineCounter, path);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    // The yaml package stops an alias bomb with a plain Error ("Excessive alias count ...").
    if (!/alias/i.test((e as Error).message)) throw e;
    throw new SpecError(
      '(yaml)',
      `${where}: the YAML expands too many aliases (over ${MAX_ALIAS_COUNT}; an alias bomb?): ${(e as Error).message}; write the values out or use fewer *aliases`,
      { file, cause: e },
    );
  }
  if (raw === null || raw === undefined)
    throw new SpecError(
      '(root)',
      `${where}: the spec is empty; expected a mapping with name, model, dataset, training, methods`,
      { file },
    );
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new SpecError(
      '(root)',
      `${where}: the spec must be a mapping (name: ..., model: ..., methods: ...), got ${Array.isArray(raw) ? 'a list' : typeof raw}`,
      { file },
    );

  const nonFinite = findNonFinite(raw, []);
  if (nonFinite) {
    const field = formatPath('', nonFinite.path);
    const line = lineOf(nonFinite.path);
    throw new SpecError(
      field,
      `${where}${line !== undefined ? `:${line}` : ''}: ${field}: must be a finite number, got ${nonFinite.value}`,
      { file, context: { line } },
    );
  }
  const result = specSchema.safeParse(raw);
  if (!result.success) throw specZodError(result.error, where, file, lineOf);
  const parsed = result.data;
  const spec: Spec = {
    file,
    text,
    parsed,
    hash: sha256Hex(canonicalJson(parsed)),
    lineOf,
    checkpointDir: options.checkpointDir ?? null,
    checkpoints: new Map(),
  };
  if (options.checkpointDir !== undefined) spec.checkpoints = resolveCheckpoints(spec, options.checkpointDir);
  return spec;
}

/** Resolves every `start: {checkpoint: <name>}` of the spec (sweep level and per method). */
function resolveCheckpoints(spec: Spec, baseDir: string): Map<string, ResolvedCheckpoint> {
  const starts: Array<[StartInput | undefined, Array<string | number>]> = [
    [spec.parsed.start, ['start']],
    ...Object.entries(spec.parsed.methods).map(
      ([id, m]): [StartInput | undefined, Array<string | number>] => [m.start, ['methods', id, 'start']],
    ),
  ];
  const out = new Map<string, ResolvedCheckpoint>();
  for (const [start, path] of starts) {
    if (start === undefined || typeof start === 'string' || !('checkpoint' in start)) continue;
    if (out.has(start.checkpoint)) continue;
    const r = resolveCheckpointName(start.checkpoint, baseDir);
    if (!r.ok)
      throw specError(spec, [...path, 'checkpoint'], `${r.reason}; ${checkpointAllowedText(baseDir)}`);
    out.set(start.checkpoint, r.checkpoint);
  }
  return out;
}

/** A SpecError for a field of the spec, with the line when known. */
export function specError(
  spec: Pick<Spec, 'file' | 'lineOf'>,
  path: ReadonlyArray<string | number>,
  message: string,
  options: { cause?: unknown; context?: Record<string, unknown> } = {},
): SpecError {
  const field = formatPath('', path) || '(root)';
  const line = spec.lineOf(path);
  const where = `${spec.file ?? 'spec'}${line !== undefined ? `:${line}` : ''}`;
  return new SpecError(field, `${where}: ${field}: ${message}`, {
    file: spec.file,
    cause: options.cause,
    context: { line, ...options.context },
  });
}

function specZodError(
  error: z.ZodError,
  where: string,
  file: string | undefined,
  lineOf: Spec['lineOf'],
): SpecError {
  const v = zodToValidationError(error, '');
  const first = error.issues[0]!;
  const field = v.field || '(root)';
  // zod reports unknown keys on the parent object: point at the first unknown key's line instead.
  const linePath = first.code === 'unrecognized_keys' ? [...first.path, first.keys[0]!] : first.path;
  const line = lineOf(linePath) ?? lineOf(first.path);
  const loc = `${where}${line !== undefined ? `:${line}` : ''}`;
  const message = v.message.startsWith(': ') ? `(root)${v.message}` : v.message;
  return new SpecError(field, `${loc}: ${message}`, {
    file,
    cause: error,
    context: { line, issues: v.context['issues'] },
  });
}

/** The first NaN / Infinity in the document (YAML has .nan and .inf; a trial config must not). */
function findNonFinite(
  v: unknown,
  path: Array<string | number>,
): { path: Array<string | number>; value: number } | null {
  if (typeof v === 'number') return Number.isFinite(v) ? null : { path, value: v };
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) {
      const r = findNonFinite(x, [...path, i]);
      if (r) return r;
    }
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const r = findNonFinite(x, [...path, k]);
      if (r) return r;
    }
  }
  return null;
}

/** Line (1-based) of the deepest existing node along the path. */
function nodeLine(doc: Document, lc: LineCounter, path: ReadonlyArray<string | number>): number | undefined {
  let node: unknown = doc.contents;
  let best: number | undefined = rangeLine(node, lc);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      if (!pair) break;
      best = rangeLine(pair.key, lc) ?? best;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      best = rangeLine(node, lc) ?? best;
    } else break;
  }
  return best;
}

function rangeLine(node: unknown, lc: LineCounter): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? lc.linePos(range[0]).line : undefined;
}
