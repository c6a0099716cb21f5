/**
 * Who holds an attempt: the store's worker column is "<prefix>:<host>:<pid>[/<slot>]", so a later
 * coordinator of the same host can tell whether the holder is still alive.
 */
import { hostname } from 'node:os';

export const HOST = hostname();

/** "<prefix>:<host>:<pid>" (the store's worker column); the pid tells a later run whether we are alive. */
export function workerId(prefix: string, pid = process.pid, host = HOST): string {
  return `${prefix}:${host}:${pid}`;
}

export function parseWorkerId(worker: string): { prefix: string; host: string; pid: number } | null {
  const m = /^([a-z]+):(.+):(\d+)(?:\/.*)?$/.exec(worker);
  return m ? { prefix: m[1]!, host: m[2]!, pid: Number(m[3]) } : null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The pid of the holder when `worker` names a coordinator of this host with one of `prefixes` that
 * no longer exists (kill -9, power loss), else null: another host's attempt is left to its lease.
 */
export function deadHolderHere(worker: string | null, prefixes: readonly string[]): number | null {
  const w = worker ? parseWorkerId(worker) : null;
  if (!w || w.host !== HOST || !prefixes.includes(w.prefix) || w.pid === process.pid || pidAlive(w.pid))
    return null;
  return w.pid;
}
