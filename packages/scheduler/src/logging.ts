/**
 * Logs: pino JSON files (the coordinator's, and one per trial in the runs directory) plus a pretty
 * console stream that goes through a caller-supplied writer (so the live status table can redraw
 * around log lines).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import pinoPretty from 'pino-pretty';
import type { TrialEnvelope } from '@flatrank/protocol';

export type { Logger } from 'pino';

export interface LoggerHandle {
  logger: Logger;
  /** Flushes and closes the files. */
  close(): void;
  /** With `deferFile`: creates the file now and writes what was logged so far to it. */
  openFile(): void;
}

export interface CoordinatorLoggerOptions {
  /** JSON log file (created with its directory); null = no file. */
  file: string | null;
  /** Console writer for pretty lines; null = no console output. */
  console: ((text: string) => void) | null;
  consoleLevel?: pino.Level;
  colorize?: boolean;
  name?: string;
  /**
   * Create the file only when openFile() is called (lines logged before are kept in memory and
   * written then): a process that refuses to start (`flatrank worker` on an unreachable Redis)
   * leaves no log file behind.
   */
  deferFile?: boolean;
}

type FileDestination = pino.DestinationStream & { flushSync?: () => void; end?: () => void };

export function createCoordinatorLogger(o: CoordinatorLoggerOptions): LoggerHandle {
  const streams: pino.StreamEntry[] = [];
  let dest: FileDestination | null = null;
  let pending: string[] | null = o.file && o.deferFile ? [] : null;
  const openFile = () => {
    if (!o.file || dest) return;
    mkdirSync(dirname(o.file), { recursive: true });
    dest = pino.destination({ dest: o.file, sync: true, append: true }) as FileDestination;
    for (const line of pending ?? []) dest.write(line);
    pending = null;
  };
  if (o.file) {
    if (!o.deferFile) openFile();
    streams.push({
      stream: {
        write: (chunk: string) => (dest ? untilClosed(dest).write(chunk) : pending?.push(chunk)),
      },
      level: 'debug',
    });
  }
  if (o.console) {
    const prettify = pinoPretty.prettyFactory({
      colorize: o.colorize ?? false,
      translateTime: 'HH:MM:ss',
      ignore: 'pid,hostname,name',
      hideObject: true,
    });
    const write = o.console;
    streams.push({
      stream: { write: (chunk: string) => write(prettify(chunk)) },
      level: o.consoleLevel ?? 'info',
    });
  }
  const logger = streams.length
    ? pino({ name: o.name ?? 'flatrank', level: 'debug' }, pino.multistream(streams))
    : pino({ level: 'silent' });
  return {
    logger,
    openFile,
    close() {
      const d = dest as FileDestination | null;
      d?.flushSync?.();
      d?.end?.();
    },
  };
}

/** A JSON log file of one trial (all its attempts append to it). */
export function createTrialLogger(file: string, bindings: Record<string, unknown>): LoggerHandle {
  mkdirSync(dirname(file), { recursive: true });
  const dest = pino.destination({ dest: file, sync: true, append: true });
  const logger = pino({ level: 'debug', base: { pid: process.pid, ...bindings } }, untilClosed(dest));
  return {
    logger,
    openFile() {},
    close() {
      dest.flushSync();
      dest.end();
    },
  };
}

/** The EventWriter's onError of a coordinator: a write the store refused is logged, not thrown. */
export function logRefusedWrite(logger: Logger): (e: unknown, env?: TrialEnvelope) => void {
  return (e, env) =>
    logger.error(
      { err: e, trial: env?.trialKey, seq: env?.seq },
      `could not store ${env ? `event ${env.event.type} #${env.seq} of ${env.trialKey.slice(0, 10)}` : 'a heartbeat'}: ${(e as Error)?.message}`,
    );
}

/**
 * The file stream as a logger target that drops lines once the file is closed: a child's event
 * can still arrive after a coordinator that failed (e.g. a full disk) closed its logs, and
 * pino's destination throws on a write after end.
 */
function untilClosed(dest: pino.DestinationStream & { destroyed?: boolean; writable?: boolean }): {
  write(chunk: string): void;
} {
  return {
    write: (chunk: string) => {
      if (dest.destroyed !== true && dest.writable !== false) dest.write(chunk);
    },
  };
}
