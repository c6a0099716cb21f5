/** The options both executors (runLocal, runBullmqCoordinator) take; each adds its own. */
import type { BackendName } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import type { Logger } from './logging.js';
import type { ProgressSnapshot } from './progress.js';

/** Where the attempts of `flatrank run` execute: child processes here, or `flatrank worker`s via Redis. */
export const EXECUTORS = ['local', 'bullmq'] as const;
export type ExecutorName = (typeof EXECUTORS)[number];

export interface CoordinatorOptions {
  store: ResultsStore;
  sweep: { id: number; name: string };
  maxAttempts: number;
  heartbeatMs: number;
  heartbeatTimeoutMs: number;
  trialTimeoutMs: number | null;
  cancelGraceMs?: number;
  runsDir: string;
  /**
   * Where `start: {checkpoint: <name>}` names are looked up (the spec file's directory, see
   * spec/checkpoints.ts); null: such trials fail with a message saying so.
   */
  checkpointDir?: string | null;
  dataDir: string | null;
  backend: BackendName | 'auto';
  logger: Logger;
  /** Abort = Ctrl-C: stop handing out work, cancel running attempts, return interrupted. */
  signal?: AbortSignal;
  onProgress?(snapshot: ProgressSnapshot): void;
}
