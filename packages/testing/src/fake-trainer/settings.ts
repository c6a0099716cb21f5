/**
 * How the fake trial child behaves, per seed / method / attempt: the settings a test passes in the
 * FLATRANK_FAKE_TRAINER environment variable, checked when the child reads them, and the records it
 * appends to its log. Shared by the child (child.ts) and the tests that fork it (fakes.ts).
 */
import type { RankAllocationRecord, TrialConfig } from '@flatrank/protocol';

/**
 * What an attempt does at `atStep` (ok: nothing). crash = exit mid-trial with exitCode; hang = stop
 * heart-beating and ignore cancel (only SIGKILL ends it); diverge = NaN loss then `diverged`;
 * fail / fail-retryable = a `failed` event, not retryable / retryable. A new fault is one more
 * name here and one more handler in child.ts (the compiler asks for it).
 */
export const FAKE_ACTIONS = ['ok', 'crash', 'hang', 'diverge', 'fail', 'fail-retryable'] as const;
export type FakeAction = (typeof FAKE_ACTIONS)[number];

export interface FakeBehaviour {
  /** Steps of the fake training loop (default 5). */
  steps?: number;
  /** Sleep per step (default 20 ms; 0 = instant). */
  stepMs?: number;
  action?: FakeAction;
  /** Step at which the action happens (default steps / 2). */
  atStep?: number;
  /** The action applies only on these attempts (e.g. [1]: crash once, then succeed). */
  attempts?: number[];
  /** Exit code of a crash (default 1). */
  exitCode?: number;
  /** accuracyFinal to report (default 0.9 + 0.001 * (seed % 10)). */
  accuracy?: number;
  /**
   * Rank allocations a compressed trial reports: attempt n sends allocations[min(n, length) - 1] right after
   * `started` (before the training loop, as a real allocation happens before training), and its
   * layers become the attempt's layer records. Absent: no allocation, one fixed conv2 layer.
   */
  allocations?: RankAllocationRecord[];
}

export interface FakeTrainerSettings {
  default?: FakeBehaviour;
  /** Behaviour by config.seed (checked first). */
  bySeed?: Record<string, FakeBehaviour>;
  /** Behaviour by config.method. */
  byMethod?: Record<string, FakeBehaviour>;
  /** JSONL file: one 'start' and one 'end' (or 'crash' / 'hang') record per attempt. */
  logFile?: string;
  /** Directory receiving <trialKey>-<attempt>.pid for every attempt (to kill -9 a child). */
  pidDir?: string;
}

/** The environment variable the child reads its settings from (JSON). */
export const FAKE_TRAINER_ENV = 'FLATRANK_FAKE_TRAINER';

/** The environment that makes the fake trainer behave as told (pass as the child env). */
export function fakeTrainerEnv(settings: FakeTrainerSettings): Record<string, string> {
  return { [FAKE_TRAINER_ENV]: JSON.stringify(settings) };
}

/** One line of the fake trainer's JSONL log. */
export interface FakeRunRecord {
  kind: 'start' | 'end' | 'crash' | 'hang';
  key: string;
  attempt: number;
  pid: number;
  cuda: string | null;
  order: string | null;
  /** FLATRANK_WEBGPU_ADAPTER and DRI_PRIME as the child saw them (webgpu pinning). */
  webgpuAdapter?: string | null;
  driPrime?: string | null;
  t: number;
  outcome?: string;
  seed?: number;
  method?: string;
  behaviour?: FakeAction;
}

/** A behaviour with every default filled in, for one attempt. */
export interface ResolvedBehaviour {
  steps: number;
  stepMs: number;
  action: FakeAction;
  atStep: number;
  exitCode: number;
  accuracy: number | undefined;
  /** The allocation this attempt reports (null: none). */
  allocation: RankAllocationRecord | null;
}

/** Parses the settings text; a typo in an action is an error naming the field, not an 'ok' run. */
export function parseFakeSettings(text: string | undefined): FakeTrainerSettings {
  const settings = JSON.parse(text || '{}') as FakeTrainerSettings;
  const check = (where: string, b: FakeBehaviour | undefined) => {
    if (b?.action !== undefined && !(FAKE_ACTIONS as readonly string[]).includes(b.action))
      throw new TypeError(
        `${FAKE_TRAINER_ENV}.${where}.action: unknown value ${JSON.stringify(b.action)}; allowed: ${FAKE_ACTIONS.join(', ')}`,
      );
  };
  check('default', settings.default);
  for (const [k, b] of Object.entries(settings.bySeed ?? {})) check(`bySeed.${k}`, b);
  for (const [k, b] of Object.entries(settings.byMethod ?? {})) check(`byMethod.${k}`, b);
  return settings;
}

/** The behaviour of one attempt: by seed, else by method, else the default. */
export function resolveBehaviour(
  settings: FakeTrainerSettings,
  config: TrialConfig,
  attempt: number,
): ResolvedBehaviour {
  const b =
    settings.bySeed?.[String(config.seed)] ?? settings.byMethod?.[config.method] ?? settings.default ?? {};
  const steps = b.steps ?? 5;
  const applies = !b.attempts || b.attempts.includes(attempt);
  return {
    steps,
    stepMs: b.stepMs ?? 20,
    action: applies ? (b.action ?? 'ok') : 'ok',
    atStep: b.atStep ?? Math.floor(steps / 2),
    exitCode: b.exitCode ?? 1,
    accuracy: b.accuracy,
    allocation: b.allocations?.length ? b.allocations[Math.min(attempt, b.allocations.length) - 1]! : null,
  };
}
