/** A dashboard over a temp database with the fixture's finished and running sweeps. */
import { request } from 'node:http';
import { createTempDb, populateDashboardDb, type DashboardDb, type TempDb } from '@flatrank/testing';
import { startDashboard, type Dashboard, type DashboardOptions } from '../src/index.js';

export interface Served {
  db: TempDb;
  fixture: DashboardDb;
  dashboard: Dashboard;
  close(): Promise<void>;
}

export async function serveFixture(opts: Partial<DashboardOptions> = {}): Promise<Served> {
  const db = createTempDb();
  const fixture = populateDashboardDb(db.store!);
  const dashboard = await startDashboard({ db: db.path, port: 0, runsDir: db.dir, ...opts });
  return {
    db,
    fixture,
    dashboard,
    async close() {
      await dashboard.close();
      db.cleanup();
    },
  };
}

/** A GET with the path sent exactly as given (fetch would normalise `..`). */
export function rawGet(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}
