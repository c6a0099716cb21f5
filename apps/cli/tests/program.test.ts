import { describe, expect, it, vi } from 'vitest';
import { run } from '../src/program.js';

describe('flatrank CLI', () => {
  it('prints help and exits 0', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await run(['node', 'flatrank', '--help'])).toBe(0);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toMatch(/Usage: flatrank/);
    } finally {
      out.mockRestore();
    }
  });

  it('exits 2 on an unknown command', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await run(['node', 'flatrank', 'no-such-command'])).toBe(2);
    } finally {
      err.mockRestore();
    }
  });
});
