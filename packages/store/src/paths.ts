import { resolve } from 'node:path';

/** The database file used when neither --db nor FLATRANK_DB is given (relative to the cwd). */
export const DEFAULT_DB = 'flatrank.sqlite';

/** --db flag, else the FLATRANK_DB environment variable, else ./flatrank.sqlite; always absolute. */
export function resolveDbPath(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen =
    flag !== undefined && flag !== ''
      ? flag
      : env.FLATRANK_DB !== undefined && env.FLATRANK_DB !== ''
        ? env.FLATRANK_DB
        : DEFAULT_DB;
  return resolve(chosen);
}
