/**
 * How a trial chose its per-layer ranks (its latest attempt's rank allocation, as `flatrank show`
 * prints it): the policy, the whole-model budget it aimed at and the ratios it reached, each layer's
 * chosen ranks with the error the allocation predicted or measured and what else it measured there,
 * and the policy's own measurements (curves, EVBMF scale, validation split, TRP's trajectory).
 * Everything is text nodes (dom.ts): a policy, layer name or measurement is never parsed as markup.
 */
import { h, kv, table, type Child } from '../dom.js';
import type { TrialPage } from '../types.js';

type Allocation = NonNullable<TrialPage['allocation']>;

/** Measurements longer than this are folded (a sensitivity curve per layer can be long). */
const INLINE_JSON_CHARS = 120;

/** A whole-model ratio as `flatrank show` prints it: up to 4 decimals, then x. */
const ratio = (v: number | null | undefined): string =>
  typeof v === 'number' && Number.isFinite(v) ? `${Number(v.toFixed(4))}x` : '-';

/** An error: 4 decimals, or 3 significant digits when it is tiny. */
const fmtError = (v: number | null | undefined): string =>
  typeof v !== 'number' ? '-' : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4);

/** JSON of a measurement: inline when short, folded under its size when long, '-' when absent. */
function measuredCell(v: unknown): Child {
  if (v === null || v === undefined) return '-';
  const text = JSON.stringify(v);
  if (text.length <= INLINE_JSON_CHARS) return h('code', {}, text);
  return h(
    'details',
    {},
    h('summary', {}, `${text.length} characters`),
    h('pre', {}, JSON.stringify(v, null, 2)),
  );
}

export function allocationSection(a: Allocation): HTMLElement {
  const rows = a.layers.map((l, index) =>
    h(
      'tr',
      { 'data-allocation-layer': l.name },
      h('td', { class: 'num', 'data-col': 'index' }, index),
      h('td', { 'data-col': 'layer' }, l.name),
      h('td', { 'data-col': 'ranks' }, l.ranks.join(' × ')),
      h('td', { class: 'num', 'data-col': 'error' }, fmtError(l.error)),
      h('td', { 'data-col': 'measured' }, measuredCell(l.measured)),
    ),
  );
  return h(
    'section',
    { id: 'allocation' },
    h(
      'p',
      { class: 'muted' },
      `How attempt ${a.attempt} chose the rank of each layer it compressed (layers in model order).`,
    ),
    kv([
      ['policy', h('span', { id: 'allocation-policy' }, a.policy)],
      [
        'budget',
        h(
          'span',
          { id: 'allocation-budget' },
          a.budget ? `${a.budget.kind} ${ratio(a.budget.ratio)}` : 'none',
        ),
      ],
      [
        'reached',
        h(
          'span',
          { id: 'allocation-reached' },
          `params ${ratio(a.achieved.params)}, MACs ${ratio(a.achieved.macs)}`,
        ),
      ],
    ]),
    rows.length
      ? table([['#', 'num'], 'layer', 'ranks', ['error', 'num'], 'measured'], rows)
      : h('p', { class: 'muted' }, 'no layers in the record'),
    a.measured === null || a.measured === undefined
      ? null
      : h(
          'details',
          {},
          h('summary', {}, 'what the allocation measured'),
          h('pre', { id: 'allocation-measured' }, JSON.stringify(a.measured, null, 2)),
        ),
  );
}
