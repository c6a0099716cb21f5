/**
 * The child-process protocol between the scheduler (coordinator or worker) and a trial child
 * (apps/cli/dist/trial-child.js, or the fake trainer in packages/testing). Messages travel over
 * Node's IPC channel (child_process.fork); every message is plain JSON.
 *
 * Sequence: child -> 'ready'; coordinator -> 'run'; child -> 'event'* (envelope.seq increasing,
 * exactly one terminal event: finished / failed / diverged), then the child exits 0.
 * On 'cancel' the child stops at the next step and sends failed(retryable=false, code CANCELLED_CODE,
 * errors.ts).
 * The child exits when the IPC channel disconnects (process 'disconnect': its coordinator died), so
 * that a killed coordinator or worker leaves no orphan training behind.
 */
import type { TrialEnvelope } from './events.js';
import type { BackendName } from './names.js';
import type { TrialConfig } from './trial-config.js';

/** Run-time options of one attempt: machine-specific, never part of the trial key. */
export interface TrialRunOptions {
  /** --data-dir (machine-specific, not part of the trial key). */
  dataDir: string | null;
  /** Where this attempt writes checkpoints / exported models. */
  artifactDir: string;
  /**
   * Absolute path of the checkpoint the attempt starts from, or null for `scratch`: the checkpoint
   * artifact of the start trial (config.start.kind === 'trial'), or the checkpoint name resolved
   * relative to the spec file's directory (config.start.kind === 'checkpoint').
   */
  startCheckpoint: string | null;
  backend: BackendName | 'auto';
  /** How often the child sends a heartbeat event (at least). */
  heartbeatMs: number;
}

export type CoordinatorToChild =
  | { type: 'run'; trialKey: string; attempt: number; config: TrialConfig; options: TrialRunOptions }
  | { type: 'cancel'; reason: string };

export type ChildToCoordinator = { type: 'ready' } | { type: 'event'; envelope: TrialEnvelope };
