/**
 * `flatrank serve [--db F] [--host 127.0.0.1] [--port 8321] [--open] [--token FILE] [--runs-dir DIR]`:
 * the read-only web dashboard (@flatrank/dashboard) until Ctrl-C.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { resolveDbPath } from '@flatrank/store';
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  isLoopback,
  openInBrowser,
  readTokenFile,
  startDashboard,
} from '@flatrank/dashboard';

interface ServeFlags {
  db?: string;
  host: string;
  port: string;
  open?: boolean;
  token?: string;
  runsDir: string;
}

export function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 0 || n > 65535)
    throw new ValidationError(
      '--port',
      `--port: an integer from 0 to 65535 is required, got ${JSON.stringify(v)}`,
    );
  return n;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'read-only web dashboard of the results database: sweeps (live), reports, plots, trials, compare',
    )
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option(
      '--host <host>',
      'address to listen on (anything but loopback exposes your results)',
      DEFAULT_HOST,
    )
    .option('--port <port>', 'port (0: any free port)', String(DEFAULT_PORT))
    .option('--open', 'open the dashboard in a browser ($BROWSER, else xdg-open / open)')
    .option(
      '--token <file>',
      'require the bearer token in FILE on every request (open the URL once with ?token=...)',
    )
    .option('--runs-dir <dir>', "where flatrank run wrote the trials' logs", 'runs')
    .action(async (flags: ServeFlags) => {
      const port = parsePort(flags.port);
      const token = flags.token === undefined ? undefined : readTokenFile(flags.token);
      if (!isLoopback(flags.host))
        process.stderr.write(
          `flatrank serve: WARNING: listening on ${flags.host}, not loopback: anyone who can reach this address can read the results${token ? '' : ' (no --token set)'}\n`,
        );
      const dashboard = await startDashboard({
        db: resolveDbPath(flags.db),
        host: flags.host,
        port,
        runsDir: flags.runsDir,
        ...(token ? { token } : {}),
      });
      process.stdout.write(
        `flatrank serve: ${dashboard.url} (read-only${token ? ', token required: open it once with ?token=<token>' : ''}; Ctrl-C stops)\n`,
      );
      if (flags.open) openInBrowser(dashboard.url);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void dashboard.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
