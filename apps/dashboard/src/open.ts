/**
 * `flatrank serve --open`: the dashboard's URL in a browser. `$BROWSER` names the command when set
 * (the variable xdg-utils, Python's webbrowser and git read: `BROWSER=firefox`, `BROWSER="chromium
 * --new-window"`, `%s` standing for the URL; of a colon-separated list the first entry), else the
 * platform's opener (xdg-open, open, explorer). No shell is involved: the command is split on
 * spaces and the URL is one argument. Started detached and never waited for; a browser that
 * cannot be started is a message, never an error of the server.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface OpenBrowserOptions {
  /** Default process.env (read: BROWSER). */
  env?: NodeJS.ProcessEnv;
  /** Default process.platform. */
  platform?: NodeJS.Platform;
  /** Told why the browser could not be started (default: a line on stderr). */
  onError?: (message: string) => void;
}

/** The program and its arguments that open `url`. */
export function browserCommand(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): { command: string; args: string[] } {
  const chosen = env['BROWSER']?.split(':')[0]?.trim();
  if (chosen) {
    const [command, ...args] = chosen.split(/\s+/);
    return args.some((a) => a.includes('%s'))
      ? { command: command!, args: args.map((a) => a.replaceAll('%s', url)) }
      : { command: command!, args: [...args, url] };
  }
  const command = platform === 'darwin' ? 'open' : platform === 'win32' ? 'explorer' : 'xdg-open';
  return { command, args: [url] };
}

/** Starts the browser on `url` (see browserCommand); the child, or null when it could not start. */
export function openInBrowser(url: string, opts: OpenBrowserOptions = {}): ChildProcess | null {
  const { command, args } = browserCommand(url, opts.env, opts.platform);
  const tell = opts.onError ?? ((m: string) => void process.stderr.write(`flatrank serve: ${m}\n`));
  const failed = (e: unknown) =>
    tell(`could not start ${command} (${(e as Error).message}); open ${url} yourself`);
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true });
    child.on('error', failed);
    child.unref();
    return child;
  } catch (e) {
    failed(e);
    return null;
  }
}
