// Hostile input and faults through the real `flatrank` binary: each gets its documented exit code
// and a message naming the file, never 70 ("internal error"). Processes of the built CLI where a
// signal, another user or a full file system is involved; in-process otherwise.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  createTempDb,
  fakeTrainerEnv,
  fakeTrainerPath,
  populateTempDb,
  procGroup,
  waitFor,
  waitForFakeLog,
  type Proc,
  type TempDb,
} from '@flatrank/testing';
import { runUserQuery } from '@flatrank/store';
import { runCli } from './helpers.js';
import { assertBuilt, CLI } from './processes.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const isRoot = process.getuid?.() === 0;

let dir: string;
let tmp: TempDb;
beforeAll(() => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'flatrank-faults-'));
  chmodSync(dir, 0o755);
  tmp = createTempDb();
  populateTempDb(tmp.store!, { sweep: 'grid', seeds: 30, succeeded: 100 });
  tmp.store!.close();
}, 120_000);
afterAll(() => {
  tmp.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const procs = procGroup();
afterEach(() => procs.stopAll());

/** `flatrank <args>` (or `command` with them: npx), in the test directory unless `cwd` says otherwise. */
function spawnCli(
  args: string[],
  opts: {
    env?: Record<string, string>;
    uid?: number;
    command?: string[];
    detached?: boolean;
    cwd?: string;
  } = {},
): Proc {
  const { command = [process.execPath, CLI], cwd = dir, ...rest } = opts;
  return procs.spawn([...command, ...args], { cwd, ...rest });
}

function spec(name: string, body: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, body);
  return file;
}

const values = (n: number, f: (i: number) => number): string =>
  `[${Array.from({ length: n }, (_, i) => f(i)).join(', ')}]`;

const baseline = (name: string, seeds: number): string =>
  `name: ${name}\nmodel: lenet5\ndataset: { name: mnist, trainLimit: 64, testLimit: 32 }\ntraining: { epochs: 1, batchSize: 16 }\nmethods:\n  baseline: {}\ngrid:\n  seed: ${values(seeds, (i) => i)}\n`;

const runArgs = (specFile: string, db: string): string[] => [
  'run',
  specFile,
  '--db',
  db,
  '--runs-dir',
  join(dir, 'runs'),
  '--gpus',
  'none',
  '--child-entry',
  fakeTrainerPath,
];

describe('grid size and spec checks (exit 2)', () => {
  it('a 10^9-point grid is refused at once, naming the axes and their sizes; --max-points applies to dry runs', async () => {
    const file = spec(
      'huge',
      `name: huge\nmodel: lenet5\ndataset: mnist\ntraining: { epochs: 1 }\nmethods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  ratio: ${values(1000, (i) => 1.5 + i / 100)}\n  lr: ${values(1000, (i) => 0.001 * (i + 1))}\n  batchSize: ${values(1000, (i) => i + 1)}\n`,
    );
    const r = await runCli(['run', file, '--dry-run', '--db', join(dir, 'huge.sqlite')]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${file}:7: grid: the grid has 1,000,000,000 points, over the limit of 100,000`);
    expect(r.err).toContain('ratio (1,000) x lr (1,000) x batchSize (1,000)');
    const small = spec('small', baseline('small', 12));
    expect((await runCli(['run', small, '--dry-run', '--max-points', '10'])).code).toBe(2);
    const ok = await runCli(['run', small, '--dry-run', '--max-points', '12']);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('12 trials (12 baseline)');
    expect((await runCli(['run', small, '--dry-run', '--max-points', 'lots'])).err).toContain(
      '--max-points: must be a positive integer',
    );
    expect(existsSync(join(dir, 'huge.sqlite'))).toBe(false);
  });

  it('a rank of 1e12, cifar10 without --data-dir and an alias bomb exit 2 naming file, line and field', async () => {
    const rank = spec(
      'rank',
      `name: rank\nmodel: lenet5\ndataset: mnist\ntraining: { epochs: 1 }\nmethods:\n  d: { method: distort, compression: { decomposition: svd } }\ngrid:\n  rank: [1000000000000]\n`,
    );
    const r = await runCli(['run', rank, '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      new RegExp(
        `${rank}:8: grid\\.rank: grid point "d rank=1000000000000" .*must be an integer in \\[1, 16\\]`,
      ),
    );
    const cifar = spec(
      'cifar',
      baseline('cifar', 1).replace('name: mnist', 'name: cifar10').replace('lenet5', 'resnet8'),
    );
    const c = await runCli(['run', cifar, '--dry-run']);
    expect(c.code).toBe(2);
    expect(c.err).toContain(
      `${cifar}:3: dataset: cifar10: cifar10 needs the CIFAR-10 binary files and no --data-dir was given`,
    );
    const levels = ['a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (const [i, k] of [...'bcdefghi'].entries())
      levels.push(`${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(', ')}]`);
    const bomb = spec('bomb', `${baseline('bomb', 1)}${levels.join('\n')}\n`);
    const b = await runCli(['run', bomb, '--dry-run']);
    expect(b.code).toBe(2);
    expect(b.err).toContain(`${bomb}: the YAML expands too many aliases`);
    const large = spec('large', `${baseline('large', 1)}description: "${'x'.repeat(1024 * 1024)}"\n`);
    const l = await runCli(['run', large, '--dry-run']);
    expect(l.code).toBe(2);
    expect(l.err).toContain(`${large}: the spec is 1.0 MB, over the limit of 1 MB`);
  });
});

describe('interrupting a long expansion', { timeout: 120_000 }, () => {
  // 100,000 points: allowed by default, and seconds of expansion.
  const big = (name: string): string =>
    spec(
      name,
      `${baseline(name, 100).replace('  seed:', `  lr: ${values(1000, (i) => 0.0001 * (i + 1))}\n  seed:`)}`,
    );

  it.each(['SIGTERM', 'SIGINT'] as const)('%s during expansion: exit 8, nothing written', async (signal) => {
    const db = join(dir, `big-${signal}.sqlite`);
    const p = spawnCli(runArgs(big(`big-${signal}`), db));
    await waitFor(
      () => p.output().includes('expanding 100,000 grid points'),
      60_000,
      'the expansion to start',
    );
    p.proc.kill(signal);
    expect(await p.exited).toBe(8);
    expect(p.output()).toMatch(/interrupted while expanding the grid of .* points\); nothing was written/);
    expect(existsSync(db)).toBe(false);
  });

  it('npx stopped with SIGTERM: its coordinator does not outlive it', async () => {
    const db = join(dir, 'big-npx.sqlite');
    const p = spawnCli(runArgs(big('big-npx'), db), {
      command: ['npx', '--no-install', 'flatrank'],
      cwd: ROOT, // the workspace that has the flatrank binary
      env: { npm_config_loglevel: 'silent' },
      detached: true, // its own process group, to find anything left behind
    });
    await waitFor(
      () => p.output().includes('expanding 100,000 grid points'),
      90_000,
      'the expansion to start',
    );
    process.kill(p.proc.pid!, 'SIGTERM'); // npx only: npm passes it to the shell between, not on
    await p.exited;
    const pgid = p.proc.pid!;
    onTestFinished(() => {
      try {
        process.kill(-pgid, 'SIGKILL'); // whatever is left if the test failed
      } catch {
        // none left
      }
    });
    await waitFor(
      () => {
        try {
          process.kill(-pgid, 0);
          return false;
        } catch {
          return true; // no process left in the group
        }
      },
      30_000,
      'the coordinator to exit after npx',
    );
    expect(existsSync(db)).toBe(false);
  });
});

/** A copy of the test database with garbage over its middle half. */
function corruptCopy(name: string): string {
  const file = join(dir, name);
  copyFileSync(tmp.path, file);
  const size = statSync(file).size;
  const fd = openSync(file, 'r+');
  const garbage = Buffer.alloc(size / 2, 0xa5);
  writeSync(fd, garbage, 0, garbage.length, Math.floor(size / 4 / 4096) * 4096);
  closeSync(fd);
  return file;
}

describe('database faults exit 6 naming the file (never 70)', { timeout: 120_000 }, () => {
  it('pages corrupted mid-file: runs, report, export, query and run', async () => {
    const db = corruptCopy('corrupt.sqlite');
    for (const args of [
      ['runs'],
      ['report', 'grid'],
      ['export', '--sweep', 'grid', '--format', 'csv'],
      ['query', 'SELECT count(*), sum(length(config)) FROM trials'],
    ]) {
      const r = await runCli([...args, '--db', db]);
      expect(r.code, `${args[0]}: ${r.err}`).toBe(6);
      expect(r.err).toContain(`the results database ${db} is corrupt or truncated`);
      expect(r.err).toContain('PRAGMA integrity_check');
    }
    const run = spawnCli(runArgs(spec('c', baseline('c', 2)), db));
    expect(await run.exited, run.output()).toBe(6);
    expect(run.output()).toContain(`the results database ${db} is corrupt or truncated`);
    expect(run.output()).not.toContain('internal error');
  });

  it('a truncated file says truncated', async () => {
    const db = join(dir, 'truncated.sqlite');
    copyFileSync(tmp.path, db);
    truncateSync(db, Math.floor(statSync(db).size / 2) + 100);
    const r = await runCli(['runs', '--db', db]);
    expect(r.code).toBe(6);
    expect(r.err).toContain(`${db} is corrupt or truncated: a truncated SQLite file`);
    expect(r.err).not.toContain('not a SQLite file');
  });

  it('a read-only database file for run (chmod 0444; as root, run as user nobody)', async () => {
    const home = join(dir, 'ro');
    mkdirSync(home);
    const db = join(home, 'ro.sqlite');
    copyFileSync(tmp.path, db);
    chmodSync(db, 0o444);
    const file = spec('ro', baseline('ro', 2));
    // Root writes through any mode bits: run the coordinator as an unprivileged user instead.
    const uid = isRoot ? 65534 : undefined;
    if (uid !== undefined) {
      chownSync(home, uid, uid);
      chownSync(db, uid, uid);
    }
    const p = spawnCli(
      [...runArgs(file, db).slice(0, 4), '--runs-dir', join(home, 'runs'), ...runArgs(file, db).slice(6)],
      {
        uid,
      },
    );
    expect(await p.exited, p.output()).toBe(6);
    expect(p.output()).toContain(`the results database ${db} cannot be written`);
    expect(p.output()).toContain('chmod u+w');
    // Reading it is fine.
    expect(runUserQuery(db, "SELECT count(*) AS n FROM sweeps WHERE name = 'ro'").rows).toEqual([{ n: 0 }]);
  });

  describe('full disk (a small tmpfs; needs mount)', () => {
    const mnt = join(tmpdir(), `flatrank-full-${process.pid}`);
    let mounted = false;
    beforeAll(() => {
      mkdirSync(mnt, { recursive: true });
      mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]).status === 0;
      if (!mounted)
        console.warn('full-disk tests skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)');
    });
    afterAll(() => {
      if (mounted) spawnSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    });
    const fill = (): void => {
      spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=4k'], { stdio: 'ignore' });
    };
    const unfill = (): void => rmSync(join(mnt, 'fill'), { force: true });

    it('at creation', async (ctx) => {
      if (!mounted) ctx.skip();
      fill();
      try {
        const db = join(mnt, 'new.sqlite');
        const p = spawnCli(runArgs(spec('full1', baseline('full1', 2)), db));
        expect(await p.exited, p.output()).toBe(6);
        expect(p.output()).toContain(`no space left to write the results database ${db}`);
        expect(p.output()).toContain(`Free space on its file system (df ${mnt})`);
      } finally {
        unfill();
        rmSync(join(mnt, 'new.sqlite'), { force: true });
      }
    });

    it('mid-sweep: exit 6, committed results kept, the next run finishes the sweep', async (ctx) => {
      if (!mounted) ctx.skip();
      const db = join(mnt, 'sweep.sqlite');
      const logFile = join(dir, 'full-fake.jsonl');
      const file = spec('full2', baseline('full2', 8));
      const env = fakeTrainerEnv({ logFile, default: { steps: 200, stepMs: 15 } });
      const p = spawnCli([...runArgs(file, db), '--workers', '2'], { env });
      await waitForFakeLog(logFile, (x) => x.kind === 'end', 'a trial to end', { timeoutMs: 60_000 });
      fill();
      try {
        expect(await p.exited, p.output()).toBe(6);
        expect(p.output()).toContain(`no space left to write the results database ${db}`);
        expect(p.output()).not.toContain('internal error:');
      } finally {
        unfill();
      }
      const check = runUserQuery(db, 'PRAGMA integrity_check').rows;
      expect(check).toEqual([{ integrity_check: 'ok' }]);
      const kept = Number(
        runUserQuery(db, "SELECT count(*) AS n FROM trials WHERE status = 'succeeded'").rows[0]!['n'],
      );
      expect(kept).toBeGreaterThanOrEqual(1);
      const again = spawnCli([...runArgs(file, db), '--workers', '2'], {
        env: fakeTrainerEnv({ logFile, default: { steps: 2, stepMs: 1 } }),
      });
      expect(await again.exited, again.output()).toBe(0);
      expect(runUserQuery(db, 'SELECT count(*) AS n FROM results').rows).toEqual([{ n: 8 }]);
      rmSync(db, { force: true });
    });
  });
});

describe('query --timeout', { timeout: 60_000 }, () => {
  it('stops an endless recursive CTE with exit 6 and says how to go on', async () => {
    const r = await runCli([
      'query',
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c',
      '--db',
      tmp.path,
      '--timeout',
      '1',
    ]);
    expect(r.code).toBe(6);
    expect(r.err).toContain('query stopped after 1 s (--timeout 1); nothing was changed');
    const bad = await runCli(['query', 'SELECT 1', '--db', tmp.path, '--timeout', '-3']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--timeout: must be a number of seconds >= 0');
    const ok = await runCli([
      'query',
      'SELECT count(*) AS n FROM trials',
      '--db',
      tmp.path,
      '--format',
      'json',
    ]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toEqual([{ n: 120 }]);
  });
});
