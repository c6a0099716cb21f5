// Whether a failure may be retried is a property of the error (cf. Temporal's ApplicationFailure
// nonRetryable), carried by the trial's failed event; the cancel code and CancelledError live here once.
import { describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  CANCELLED_CODE,
  CancelledError,
  DataError,
  FlatrankError,
  SchedulerError,
  ValidationError,
  failedEvent,
  isRetryable,
} from '../src/index.js';

describe('retryable errors', () => {
  it('flatrank errors are not retryable unless their class or the thrower says so', () => {
    expect(new ValidationError('f', 'bad').retryable).toBe(false);
    expect(new DataError('corrupt').retryable).toBe(false);
    expect(new BackendUnavailableError('no GPU here').retryable).toBe(true);
    expect(new BackendUnavailableError('never anywhere', { retryable: false }).retryable).toBe(false);
    expect(new SchedulerError('X', 'transient', { retryable: true }).retryable).toBe(true);
    expect(isRetryable(new FlatrankError('X', 'x'))).toBe(false);
    // Anything else may be transient (a bug, a killed file system): another attempt may succeed.
    expect(isRetryable(new Error('EIO'))).toBe(true);
    expect(isRetryable('thrown text')).toBe(true);
  });

  it('the failed event carries the error and its retryable flag', () => {
    expect(failedEvent(new BackendUnavailableError('gone'))).toMatchObject({
      type: 'failed',
      retryable: true,
      error: { name: 'BackendUnavailableError', code: 'BACKEND_UNAVAILABLE', message: 'gone' },
    });
    expect(failedEvent(new ValidationError('f', 'bad'))).toMatchObject({ retryable: false });
  });

  it('CancelledError has the one cancel code and is not retryable', () => {
    const e = new CancelledError('SIGINT');
    expect(e.code).toBe(CANCELLED_CODE);
    expect(e.message).toBe('trial cancelled: SIGINT');
    expect(e.retryable).toBe(false);
    expect(failedEvent(e)).toMatchObject({
      retryable: false,
      error: { name: 'CancelledError', code: 'CANCELLED' },
    });
  });
});
