import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTempDb, fakeBrowser, populateDashboardDb, type TempDb } from '@flatrank/testing';
import { run } from '../src/program.js';
import { runCli } from './helpers.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

/** Starts `flatrank serve ...` in-process; resolves with its URL, its output so far, and a stop(). */
async function serve(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const listeners = process.listenerCount('SIGTERM');
  const exit = run(['node', 'flatrank', 'serve', ...args]);
  try {
    for (let i = 0; i < 200 && !out.join('').includes('http://'); i++)
      await new Promise((r) => setTimeout(r, 25));
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const url = /http:\/\/\S+\//.exec(out.join(''))?.[0];
  return {
    url,
    out: out.join(''),
    err: err.join(''),
    exit,
    async stop() {
      // The command waits for SIGTERM / SIGINT: deliver it to its own listener only.
      const mine = process.listeners('SIGTERM').slice(listeners);
      for (const l of mine) (l as () => void)();
      return exit;
    },
  };
}

/** Runs `fn` with $BROWSER set to `command` (the opener `serve --open` starts), then restores it. */
async function withBrowser(command: string, fn: () => Promise<void>): Promise<void> {
  const before = process.env['BROWSER'];
  process.env['BROWSER'] = command;
  try {
    await fn();
  } finally {
    if (before === undefined) delete process.env['BROWSER'];
    else process.env['BROWSER'] = before;
  }
}

describe('flatrank serve', () => {
  it('serves the report `flatrank report --format json` prints, read-only, until stopped', async () => {
    tmp = createTempDb();
    populateDashboardDb(tmp.store!);
    const report = await runCli(['report', 'finished-sweep', '--db', tmp.path, '--format', 'json']);
    expect(report.code).toBe(0);
    const s = await serve(['--db', tmp.path, '--port', '0']);
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(s.out).toMatch(/read-only/);
    expect(s.err).toBe('');
    const page = (await (await fetch(`${s.url}api/sweeps/finished-sweep`)).json()) as { report: unknown };
    expect(page.report).toEqual(JSON.parse(report.out));
    expect(await s.stop()).toBe(0);
  });

  it('--open starts $BROWSER with the URL it serves', async () => {
    tmp = createTempDb();
    const browser = fakeBrowser(tmp.dir);
    await withBrowser(browser.command, async () => {
      const s = await serve(['--db', tmp!.path, '--port', '0', '--open']);
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(await browser.firstStart()).toEqual([s.url]);
      // The URL it was given is the dashboard.
      expect((await fetch(`${s.url}api/health`)).status).toBe(200);
      expect(await s.stop()).toBe(0);
      expect(browser.starts()).toHaveLength(1);
    });
  });

  it('without --open no browser is started', async () => {
    tmp = createTempDb();
    const browser = fakeBrowser(tmp.dir);
    await withBrowser(browser.command, async () => {
      const s = await serve(['--db', tmp!.path, '--port', '0']);
      expect((await fetch(`${s.url}api/health`)).status).toBe(200);
      expect(await s.stop()).toBe(0);
      await expect(browser.firstStart(500)).rejects.toThrow(/was not started/);
    });
  });

  it('warns when it listens beyond loopback', async () => {
    tmp = createTempDb();
    const s = await serve(['--db', tmp.path, '--port', '0', '--host', '0.0.0.0']);
    expect(s.err).toMatch(/WARNING: listening on 0\.0\.0\.0, not loopback.*no --token set/);
    expect(await s.stop()).toBe(0);
  });

  it('bad options and a missing database are errors with their exit codes', async () => {
    tmp = createTempDb({ create: false });
    expect((await runCli(['serve', '--db', tmp.path, '--port', '0'])).code).toBe(6);
    const bad = await runCli(['serve', '--db', tmp.path, '--port', '99999']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--port: an integer from 0 to 65535/);
    const short = join(tmp.dir, 'token');
    writeFileSync(short, 'abc');
    const t = await runCli(['serve', '--db', tmp.path, '--token', short]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/--token: .* at least 16 characters/);
  });
});
