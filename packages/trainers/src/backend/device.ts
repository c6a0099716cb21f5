/** Host facts for the reproducibility record: CPU model, GPU name, package versions, git state. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';

const require = createRequire(import.meta.url);

/** CPU model from /proc/cpuinfo (Linux), else os.cpus(). */
export function cpuModel(): string {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(text) ?? /^Hardware\s*:\s*(.+)$/m.exec(text);
    if (m?.[1]) return `${m[1].trim()} (${cpus().length} cores)`;
  } catch {
    // not Linux: fall through
  }
  const c = cpus();
  return c.length ? `${c[0]!.model.trim()} (${c.length} cores)` : 'unknown CPU';
}

/** GPU names from `nvidia-smi` (null when absent or failing), honouring CUDA_VISIBLE_DEVICES. */
export function gpuNames(): string[] | null {
  let out: string;
  try {
    out = execFileSync('nvidia-smi', ['--query-gpu=index,name', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return null;
  }
  const gpus = out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const i = l.indexOf(',');
      return { index: l.slice(0, i).trim(), name: l.slice(i + 1).trim() };
    });
  const visible = process.env['CUDA_VISIBLE_DEVICES'];
  if (visible === undefined) return gpus.map((g) => g.name);
  const wanted = visible
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return gpus.filter((g) => wanted.includes(g.index)).map((g) => g.name);
}

/** Version of an installed package (reads its package.json; never imports it), or null. */
export function packageVersion(name: string): string | null {
  try {
    const file = require.resolve(`${name}/package.json`);
    return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/** True when `name` can be resolved from this package (without loading it). */
export function isResolvable(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** Git commit and dirty flag of the checkout containing `dir` (nulls outside a checkout). */
export function gitState(dir: string): { commit: string | null; dirty: boolean | null } {
  const git = (args: string[]): string =>
    execFileSync('git', args, {
      cwd: dir,
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  try {
    const commit = git(['rev-parse', 'HEAD']).trim();
    let dirty: boolean | null = null;
    try {
      dirty = git(['status', '--porcelain', '--untracked-files=no']).trim().length > 0;
    } catch {
      dirty = null;
    }
    return { commit: /^[0-9a-f]{40}$/.test(commit) ? commit : null, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}
