// @flatrank/dashboard: `flatrank serve`, a read-only web dashboard over a flatrank results database.
export { startDashboard, createHandler, isLoopback, DEFAULT_HOST, DEFAULT_PORT } from './server.js';
export type { Dashboard, DashboardOptions } from './server.js';
export { DashboardData, NotFoundError } from './data.js';
export type {
  SweepListEntry,
  SweepPage,
  RowAxes,
  TrialPage,
  ComparePage,
  MetricSeries,
  PlotPointRows,
  DashboardDataOptions,
} from './data.js';
export { readTokenFile, TokenCheck, TOKEN_COOKIE } from './auth.js';
export { loadAssets, DEFAULT_ASSET_DIR } from './assets.js';
export type { Asset } from './assets.js';
export { HEADLESS_CHROMIUM } from './chromium.js';
export { browserCommand, openInBrowser } from './open.js';
export type { OpenBrowserOptions } from './open.js';
