/**
 * The trial child process (forked by the scheduler: child_process.fork(apps/cli/dist/trial-child.js)).
 * Protocol (packages/protocol/src/ipc.ts): send 'ready'; receive 'run'; stream every TrialEvent as an
 * envelope with increasing seq; exactly one terminal event; exit 0. 'cancel' aborts the trial at
 * the next step (failed, retryable=false, code CANCELLED). A lost IPC channel (the coordinator died)
 * ends the process so no orphan training is left behind.
 * TensorFlow.js is imported only after 'run' arrives, so CUDA_VISIBLE_DEVICES set by the parent
 * is in place before any backend loads.
 */
import {
  CancelledError,
  failedEvent,
  isTerminalEvent,
  serializeError,
  type ChildToCoordinator,
  type CoordinatorToChild,
  type TrialEvent,
} from '@flatrank/protocol';

if (typeof process.send !== 'function') {
  process.stderr.write('trial-child: must be started with child_process.fork (no IPC channel)\n');
  process.exit(2);
}

const controller = new AbortController();
let started = false;
let seq = 0;
let terminalSent = false;
let trialKey = '';
let attempt = 0;

function send(msg: ChildToCoordinator): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(msg, undefined, {}, () => resolve());
  });
}

let lastSend: Promise<void> = Promise.resolve();
function emit(event: TrialEvent): void {
  if (terminalSent) return; // exactly one terminal event, nothing after it
  if (isTerminalEvent(event)) terminalSent = true;
  const envelope = { trialKey, attempt, seq: seq++, event };
  lastSend = send({ type: 'event', envelope });
}

async function finish(code: number): Promise<void> {
  await lastSend;
  process.exitCode = code;
  if (process.connected) process.disconnect();
  // Let pending stdio flush, then leave even if TF.js keeps handles open.
  setTimeout(() => process.exit(code), 50).unref();
}

async function run(msg: Extract<CoordinatorToChild, { type: 'run' }>): Promise<void> {
  trialKey = msg.trialKey;
  attempt = msg.attempt;
  try {
    const { runTrial } = await import('@flatrank/trainers');
    await runTrial(msg.config, { ...msg.options, emit, signal: controller.signal });
  } catch (e) {
    // runTrial emits its own terminal event; this covers failures before it could (e.g. import).
    if (!terminalSent) emit({ type: 'failed', error: serializeError(e), retryable: false });
  }
  if (!terminalSent)
    emit({
      type: 'failed',
      error: { name: 'Error', code: 'INTERNAL', message: 'trial ended without a terminal event' },
      retryable: true,
    });
  await finish(0);
}

process.on('message', (raw: unknown) => {
  const msg = raw as CoordinatorToChild;
  if (msg?.type === 'run') {
    if (started) return; // one trial per child
    started = true;
    void run(msg);
  } else if (msg?.type === 'cancel') {
    if (!started) {
      // cancelled before it ran: still one terminal event
      started = true;
      emit(failedEvent(new CancelledError(msg.reason)));
      void finish(0);
      return;
    }
    controller.abort(msg.reason);
  }
});

process.on('disconnect', () => {
  // The coordinator is gone: stop training now.
  controller.abort('coordinator disconnected');
  if (!terminalSent) setTimeout(() => process.exit(1), 100).unref();
});

void send({ type: 'ready' });
