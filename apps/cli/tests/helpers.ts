// Shared by the CLI tests: run the real program in-process and capture what it writes.
import { vi } from 'vitest';
import { run } from '../src/program.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs `flatrank <args>` through the real program; stdout / stderr are captured, not printed. */
export async function runCli(args: string[]): Promise<CliResult> {
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const code = await run(['node', 'flatrank', ...args]);
    return {
      code,
      out: out.mock.calls.map((c) => String(c[0])).join(''),
      err: err.mock.calls.map((c) => String(c[0])).join(''),
    };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
