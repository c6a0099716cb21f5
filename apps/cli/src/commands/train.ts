/**
 * `flatrank train <config.json|config.yaml>`: runs one trial (the canonical config a grid point
 * resolves to) in this process, printing progress, then the summary (--json: the summary as one JSON
 * object on stdout, progress on stderr). The scheduler's workers run the same runTrial.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import {
  BACKENDS,
  SpecError,
  ValidationError,
  resolveTrialConfig,
  trialKey,
  type BackendName,
  type RankAllocationRecord,
  type TrialConfig,
  type TrialEvent,
  type TrialSummary,
} from '@flatrank/protocol';

interface TrainFlags {
  backend: string;
  dataDir?: string;
  out?: string;
  startCheckpoint?: string;
  json?: boolean;
  heartbeatMs: string;
}

export async function readTrialConfig(file: string): Promise<TrialConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new SpecError('config', `cannot read config file ${file}: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new SpecError(
      'config',
      `${file}: not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message}`,
      { file, cause: e },
    );
  }
  return resolveTrialConfig(raw, 'config');
}

function fmt(v: number | null, digits = 4): string {
  return v === null ? '-' : Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

/** Human-readable progress lines for the events that matter to a person watching. */
export function progressLine(e: TrialEvent): string | null {
  switch (e.type) {
    case 'started':
      return `started on ${e.env.backend} ${e.env.backendVersion} (${e.env.device}), node ${e.env.nodeVersion}, commit ${e.env.gitCommit ?? '?'}${e.env.gitDirty ? ' (dirty)' : ''}`;
    case 'metric':
      if (e.phase === 'train' && e.name === 'epoch_loss')
        return `epoch ${e.epoch + 1}  step ${e.step}  train loss ${fmt(e.value)}`;
      if (e.phase === 'train' && e.name === 'epoch_accuracy')
        return `epoch ${e.epoch + 1}  step ${e.step}  train accuracy ${fmt(e.value)}`;
      if (e.phase === 'eval') return `epoch ${e.epoch + 1}  step ${e.step}  test ${e.name} ${fmt(e.value)}`;
      if (e.name === 'distortion_error')
        return `step ${e.step}  distortion: mean relative error ${fmt(e.value)}`;
      if (e.phase === 'after-decomposition' || e.phase === 'final')
        return `${e.phase} ${e.name} ${fmt(e.value)}`;
      if (e.phase === 'train' && e.name === 'loss') return `  step ${e.step}  loss ${fmt(e.value)}`;
      return null;
    case 'layer': {
      const l = e.layer;
      return `layer ${l.name} ${l.decomposition}${l.scheme ? `/${l.scheme}` : ''} ranks [${l.ranks}] params ${l.paramsBefore} -> ${l.paramsAfter}  macs ${l.macsBefore} -> ${l.macsAfter}  error ${fmt(l.relativeError)}`;
    }
    case 'allocation':
      return allocationLine(e.allocation);
    case 'artifact':
      return `${e.kind}: ${e.path}`;
    case 'diverged':
      return `diverged at step ${e.step}: ${e.reason}`;
    case 'failed':
      return `failed: ${e.error.message}`;
    default:
      return null;
  }
}

function allocationLine(a: RankAllocationRecord): string {
  const x = (v: number): string => `${v.toFixed(2)}x`;
  const budget = a.budget ? `budget ${a.budget.kind} ${x(a.budget.ratio)}, ` : '';
  const ranks = a.layers.map((l) => `${l.name} [${l.ranks.join(',')}]`).join(' ');
  return `allocation ${a.policy}: ${budget}achieved params ${x(a.achieved.params)} macs ${x(a.achieved.macs)}${ranks ? `; ranks ${ranks}` : ''}`;
}

export function summaryLines(s: TrialSummary, config?: TrialConfig): string[] {
  const ratio = s.paramsAfter > 0 ? s.paramsBefore / s.paramsAfter : null;
  const tiled = config?.compression?.decomposition === 'tiled-svd';
  return [
    `accuracy: original ${fmt(s.accuracyOriginal)}  after decomposition ${fmt(s.accuracyAfterDecomposition)}  final ${fmt(s.accuracyFinal)}`,
    `params: ${s.paramsBefore} -> ${s.paramsAfter}${ratio ? ` (${ratio.toFixed(2)}x)` : ''}   multiply-adds: ${s.macsBefore} -> ${s.macsAfter}`,
    `latency (batch ${s.latencyBatch ?? '-'}): ${fmt(s.latencyBeforeMs, 2)} ms -> ${fmt(s.latencyAfterMs, 2)} ms`,
    `epochs ${s.epochs}  steps ${s.steps}  wall ${s.wallSeconds.toFixed(1)} s`,
    ...(tiled
      ? [
          'tiled-svd has no conv-chain export: params / multiply-adds are the tiled GEMM counts; accuracy and latency are those of the distorted (reconstructed) model',
        ]
      : []),
  ];
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('run one trial from a canonical trial config (JSON or YAML) in this process')
    .argument('<config>', 'trial config file (.json, .yaml or .yml)')
    .option('--backend <name>', `TensorFlow.js backend: auto|${BACKENDS.join('|')}`, 'auto')
    .option('--data-dir <dir>', 'dataset directory (CIFAR-10 binary files, IDX files)')
    .option(
      '--out <dir>',
      'artifact directory (checkpoints, exported model); default runs/train-<trial key prefix>',
    )
    .option(
      '--start-checkpoint <dir>',
      'checkpoint directory to start from (config.start kind trial / checkpoint)',
    )
    .option('--heartbeat-ms <ms>', 'heartbeat interval', '10000')
    .option('--json', 'print the summary as one JSON object on stdout (progress goes to stderr)')
    .action(async (file: string, flags: TrainFlags) => {
      const config = await readTrialConfig(file);
      const backend = flags.backend;
      if (backend !== 'auto' && !(BACKENDS as readonly string[]).includes(backend))
        throw new ValidationError(
          '--backend',
          `--backend: unknown value ${JSON.stringify(backend)}; allowed: auto, ${BACKENDS.join(', ')}`,
        );
      const heartbeatMs = Number(flags.heartbeatMs);
      if (!Number.isFinite(heartbeatMs) || heartbeatMs <= 0)
        throw new ValidationError(
          '--heartbeat-ms',
          `--heartbeat-ms: must be a positive number, got ${flags.heartbeatMs}`,
        );
      if (config.start.kind !== 'scratch' && !flags.startCheckpoint)
        throw new ValidationError(
          '--start-checkpoint',
          `--start-checkpoint: required because config.start.kind is '${config.start.kind}'`,
        );
      const key = trialKey(config);
      const out = resolve(flags.out ?? `runs/train-${key.slice(0, 12)}`);
      const write = (line: string) => (flags.json ? process.stderr : process.stdout).write(`${line}\n`);
      write(
        `trial ${key.slice(0, 12)}: ${config.method} ${config.model} on ${config.dataset.name}${config.compression ? ` (${config.compression.decomposition}${config.compression.scheme ? `/${config.compression.scheme}` : ''})` : ''} -> ${out}`,
      );
      const { runTrial } = await import('@flatrank/trainers');
      const summary = await runTrial(config, {
        dataDir: flags.dataDir ? resolve(flags.dataDir) : null,
        artifactDir: out,
        startCheckpoint: flags.startCheckpoint ? resolve(flags.startCheckpoint) : null,
        backend: backend as BackendName | 'auto',
        heartbeatMs,
        emit: (e) => {
          const line = progressLine(e);
          if (line) write(line);
        },
      });
      if (flags.json) process.stdout.write(`${JSON.stringify({ trialKey: key, ...summary })}\n`);
      else for (const l of summaryLines(summary, config)) write(l);
    });
}
