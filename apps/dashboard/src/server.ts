/**
 * `flatrank serve`: an HTTP server (node:http routed by find-my-way) over one read-only store
 * connection. GET / HEAD only; JSON under /api, the built front end under /assets, and the page
 * shell for every page route (the front end renders the page from the URL).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from 'find-my-way';
import { FlatrankError, StoreError, ValidationError } from '@flatrank/protocol';
import { ResultsStore } from '@flatrank/store';
import { DashboardData, NotFoundError } from './data.js';
import { loadAssets, type Asset } from './assets.js';
import { TokenCheck } from './auth.js';
import { checkNames, parseCompareQuery, parseTrialKey, parseTrialListQuery } from './params.js';

export interface DashboardOptions {
  /** The results database (opened read-only; must exist). */
  db: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8321; 0 picks a free port. */
  port?: number;
  /** When set, every request needs this bearer token (header, cookie, or ?token= once). */
  token?: string;
  /** Where `flatrank run` wrote trial logs (default ./runs). */
  runsDir?: string;
  /** The built front end (default: this package's dist/web). */
  assetDir?: string;
}

export interface Dashboard {
  /** http://host:port/ */
  url: string;
  server: Server;
  close(): Promise<void>;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8321;

/** Loopback addresses: anything else exposes the results to the network. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

interface Reply {
  status: number;
  type: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

type Handler = (params: Record<string, string | undefined>, query: URLSearchParams) => Reply;

const SECURITY_HEADERS: Record<string, string> = {
  // The front end is one bundled script and stylesheet from this server; nothing inline, nothing remote.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

const json = (value: unknown, status = 200): Reply => ({
  status,
  type: 'application/json; charset=utf-8',
  body: JSON.stringify(value),
});

function errorReply(e: unknown): Reply {
  if (e instanceof NotFoundError) return json({ error: e.message, code: e.code }, 404);
  if (e instanceof ValidationError)
    return json({ error: e.message, code: e.code, field: e.field }, e.code === 'NOT_FOUND' ? 404 : 400);
  if (e instanceof StoreError) return json({ error: e.message, code: e.code }, 503);
  if (e instanceof FlatrankError) return json({ error: e.message, code: e.code }, 500);
  return json({ error: 'internal error (see the server log)', code: 'INTERNAL' }, 500);
}

/**
 * The serialized answers of the heavy reads (a sweep's report, its trial lists), kept per sweep
 * until its revision changes (a trial of it changed status, its spec changed, a result was
 * written): pollers and reloads of a sweep that did not change get the same bytes without
 * re-reading or re-serialising, however much progress a running study commits meanwhile. A few
 * entries, least recently used dropped first.
 */
class ReplyCache {
  private readonly entries = new Map<string, { revision: string; reply: Reply }>();
  constructor(
    private readonly data: DashboardData,
    private readonly capacity = 32,
  ) {}

  /** `handler`'s replies for the sweep named by the route's `name` parameter. */
  wrap(handler: Handler): Handler {
    return (params, query) => {
      const key = `${JSON.stringify(params)}?${query.toString()}`;
      const revision = this.data.revision(params['name'] ?? '');
      const hit = this.entries.get(key);
      this.entries.delete(key);
      if (hit && hit.revision === revision) {
        this.entries.set(key, hit);
        return hit.reply;
      }
      const reply = handler(params, query);
      if (reply.status === 200) {
        this.entries.set(key, { revision, reply: { ...reply, body: Buffer.from(reply.body) } });
        if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
      }
      return reply;
    };
  }
}

function routes(data: DashboardData, assets: Map<string, Asset>): Router.Instance<Router.HTTPVersion.V1> {
  const router = Router({ ignoreTrailingSlash: true, maxParamLength: 500 });
  const cache = new ReplyCache(data);
  const on = (path: string, handler: Handler) =>
    // find() is used, never lookup(): the route's store carries the handler.
    router.on(['GET', 'HEAD'], path, () => undefined, { handler });
  const shell = assets.get('index.html')!;
  // The page shell ignores its query (the front end reads and checks its own parameters).
  const page: Handler = () => {
    return { status: 200, type: shell.type, body: shell.body, headers: { 'cache-control': 'no-store' } };
  };
  on('/', page);
  on('/sweeps/:name', page);
  on('/trials/:key', page);
  on('/compare', page);
  on('/assets/:file', (p, query) => {
    checkNames(query, []);
    const a = assets.get(`/assets/${p['file'] ?? ''}`);
    if (!a) return json({ error: 'no such asset' }, 404);
    return { status: 200, type: a.type, body: a.body, headers: { 'cache-control': 'no-cache' } };
  });
  on('/api/health', (_p, query) => {
    checkNames(query, []);
    return json({
      ok: true,
      db: data.store.path,
      readonly: data.store.readonly,
      schema: data.store.schemaVersion(),
    });
  });
  on('/api/sweeps', (_p, query) => {
    checkNames(query, []);
    return json({ now: Date.now(), sweeps: data.sweeps() });
  });
  on(
    '/api/sweeps/:name',
    cache.wrap((p, query) => {
      checkNames(query, []);
      return json(data.sweep(p['name'] ?? ''));
    }),
  );
  on(
    '/api/sweeps/:name/trials',
    cache.wrap((p, query) => json(data.trials(p['name'] ?? '', parseTrialListQuery(query)))),
  );
  on('/api/trials/:key', (p, query) => {
    checkNames(query, []);
    return json(data.trial(parseTrialKey(p['key'] ?? '')));
  });
  on('/api/trials/:key/log', (p, query) => {
    checkNames(query, []);
    const log = data.trialLog(parseTrialKey(p['key'] ?? ''));
    if (!log) return json({ error: 'no log file for this trial under the runs directory' }, 404);
    return {
      status: 200,
      type: 'text/plain; charset=utf-8',
      body: log.text,
      headers: { 'x-log-truncated': String(log.truncated) },
    };
  });
  on('/api/compare', (_p, query) => json(data.compare(parseCompareQuery(query))));
  return router;
}

function send(req: IncomingMessage, res: ServerResponse, r: Reply): void {
  const body = typeof r.body === 'string' ? Buffer.from(r.body) : r.body;
  res.writeHead(r.status, {
    ...SECURITY_HEADERS,
    'content-type': r.type,
    'content-length': String(body.length),
    ...(r.type.startsWith('application/json') ? { 'cache-control': 'no-store' } : {}),
    ...r.headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** The request handler: token, method, route, parameters, then the route's reply. */
export function createHandler(
  data: DashboardData,
  assets: Map<string, Asset>,
  token?: TokenCheck,
): (req: IncomingMessage, res: ServerResponse) => void {
  const router = routes(data, assets);
  return (req, res) => {
    let reply: Reply;
    try {
      reply = handle(req, router, token);
    } catch (e) {
      reply = errorReply(e);
      if (reply.status >= 500) console.error(`flatrank serve: ${req.method} ${req.url}:`, e);
    }
    send(req, res, reply);
  };
}

function handle(
  req: IncomingMessage,
  router: Router.Instance<Router.HTTPVersion.V1>,
  token: TokenCheck | undefined,
): Reply {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://dashboard.invalid');
  } catch {
    return json({ error: 'malformed request URL' }, 400);
  }
  if (token) {
    const fromQuery = url.searchParams.get('token');
    if (fromQuery !== null && token.matches(fromQuery) && req.method === 'GET') {
      // Trade the token in the URL for a cookie, and drop it from the address bar.
      url.searchParams.delete('token');
      return {
        status: 303,
        type: 'text/plain; charset=utf-8',
        body: 'signed in\n',
        headers: { location: url.pathname + url.search, 'set-cookie': token.cookie(fromQuery) },
      };
    }
    if (!token.matches(token.presented(req)))
      return {
        ...json(
          {
            error:
              'this dashboard needs its token: Authorization: Bearer <token>, or open it once with ?token=<token>',
          },
          401,
        ),
        headers: { 'www-authenticate': 'Bearer' },
      };
  }
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return {
      ...json({ error: `${req.method} is not allowed: the dashboard is read-only` }, 405),
      headers: { allow: 'GET, HEAD' },
    };
  let found: ReturnType<typeof router.find>;
  try {
    found = router.find(req.method, url.pathname);
  } catch {
    found = null;
  }
  if (!found) return json({ error: `not found: ${url.pathname}` }, 404);
  const { handler } = found.store as { handler: Handler };
  return handler(found.params, url.searchParams);
}

/** Opens the database read-only and starts listening; `close()` stops both. */
export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ValidationError('--port', `--port: an integer from 0 to 65535 is required, got ${port}`);
  const assets = loadAssets(opts.assetDir);
  const store = ResultsStore.open(opts.db, { readonly: true });
  const data = new DashboardData(store, opts.runsDir === undefined ? {} : { runsDir: opts.runsDir });
  const server = createServer(
    createHandler(data, assets, opts.token ? new TokenCheck(opts.token) : undefined),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    store.close();
    const err = e as NodeJS.ErrnoException;
    throw new ValidationError('--port', `cannot listen on ${host}:${port}: ${err.code ?? err.message}`, {
      cause: e,
    });
  }
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}/`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          store.close();
          resolve();
        });
      }),
  };
}
