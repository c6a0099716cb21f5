import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');

/** Runs the install script on a private copy of native/ (never touching the real build). */
function runInstallScript(env: Record<string, string>): {
  status: number | null;
  stdout: string;
  dir: string;
} {
  const dir = mkdtempSync(join(tmpdir(), 'flatrank-native-'));
  for (const f of ['build.mjs', 'binding.gyp', 'flatrank_linalg.cc'])
    copyFileSync(join(nativeDir, f), join(dir, f));
  const r = spawnSync(process.execPath, [join(dir, 'build.mjs')], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, dir };
}

describe('native addon install script', () => {
  it('never fails the install: a broken compiler gives one notice line and the JS path', () => {
    const { status, stdout, dir } = runInstallScript({
      CXX: '/bin/false',
      CC: '/bin/false',
      FLATRANK_LINALG: '',
    });
    try {
      expect(status).toBe(0);
      expect(stdout.trim().split('\n')).toHaveLength(1);
      expect(stdout).toMatch(/@flatrank\/core: native LAPACK addon not built.*using pure-JS linear algebra/);
      expect(existsSync(join(dir, 'build.log'))).toBe(true);
      expect(existsSync(join(dir, 'build', 'Release', 'flatrank_linalg.node'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('skips the build when asked', () => {
    const { status, stdout, dir } = runInstallScript({ FLATRANK_SKIP_NATIVE: '1' });
    rmSync(dir, { recursive: true, force: true });
    expect(status).toBe(0);
    expect(stdout).toMatch(/skipping the native LAPACK addon/);
  });
});
