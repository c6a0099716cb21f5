/**
 * The dashboard's front end: one page shell, rendered by the path (/, /sweeps/:name, /trials/:key,
 * /compare?keys=...). Live pages poll the read-only API; nothing here writes anywhere.
 */
import { ApiError } from './api.js';
import { clear, h } from './dom.js';
import { disposeCharts } from './charts.js';
import { stopPolling } from './live.js';
import { renderSweeps } from './pages/sweeps.js';
import { renderSweep } from './pages/sweep.js';
import { renderTrial } from './pages/trial.js';
import { renderCompare } from './pages/compare.js';

export function showError(root: HTMLElement, e: unknown): void {
  clear(root);
  const status = e instanceof ApiError ? `${e.status}: ` : '';
  root.append(
    h('h1', {}, 'Cannot show this page'),
    h('p', { class: 'error' }, status + String((e as Error).message ?? e)),
  );
}

async function route(): Promise<void> {
  const root = document.getElementById('app')!;
  stopPolling();
  disposeCharts();
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await renderSweeps(root);
    else if (parts[0] === 'sweeps' && parts.length === 2) await renderSweep(root, parts[1]!);
    else if (parts[0] === 'trials' && parts.length === 2) await renderTrial(root, parts[1]!);
    else if (parts[0] === 'compare' && parts.length === 1)
      await renderCompare(root, new URLSearchParams(location.search));
    else throw new Error(`no page at ${location.pathname}`);
    document.body.dataset['ready'] = 'true';
  } catch (e) {
    showError(root, e);
    document.body.dataset['ready'] = 'error';
  }
}

void route();
