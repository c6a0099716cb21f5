/** Per-step curves of one or more trials: loss and accuracy, distortion steps marked. */
import { chart, PALETTE, type Option } from '../charts.js';
import type { MetricSeries, TrialPage } from '../types.js';

const LOSS = ['train/loss', 'train/epoch_loss', 'eval/loss'];
const ACCURACY = ['eval/accuracy', 'train/epoch_accuracy', 'after-decomposition/accuracy', 'final/accuracy'];

function points(s: MetricSeries, scale: number): Array<[number, number | null, number]> {
  return s.steps.map((step, i) => [step, s.values[i] === null ? null : s.values[i]! * scale, s.epochs[i]!]);
}

function distortionMarks(steps: readonly number[]) {
  if (steps.length === 0) return undefined;
  return {
    silent: true,
    symbol: 'none',
    label: { show: false },
    lineStyle: { type: 'dashed', color: '#9467bd', width: 1, opacity: 0.6 },
    data: steps.map((s) => ({ xAxis: s })),
  };
}

/** One chart of the given metrics for each trial (prefix: the trial's label when several). */
export function curveOption(
  trials: ReadonlyArray<{ label: string; page: TrialPage }>,
  ids: readonly string[],
  yName: string,
  scale: number,
): Option {
  const series: unknown[] = [];
  trials.forEach(({ label, page }, t) => {
    ids.forEach((id, k) => {
      const s = page.series.find((m) => `${m.phase}/${m.name}` === id);
      if (!s) return;
      const single = s.steps.length === 1;
      series.push({
        type: single ? 'scatter' : 'line',
        name: trials.length > 1 ? `${label} ${id}` : id,
        data: points(s, scale),
        color: trials.length > 1 ? PALETTE[t % PALETTE.length] : PALETTE[k % PALETTE.length],
        symbol: single ? 'diamond' : 'none',
        symbolSize: single ? 12 : 4,
        lineStyle: { width: 1.4, type: trials.length > 1 && k > 0 ? 'dashed' : 'solid' },
        ...(series.length === 0 && trials.length === 1
          ? { markLine: distortionMarks(page.distortionSteps) }
          : {}),
      });
    });
  });
  return {
    animation: false,
    legend: { type: 'scroll', top: 0 },
    grid: { left: 60, right: 20, top: 64, bottom: 60 },
    tooltip: { trigger: 'axis', confine: true },
    dataZoom: [{ type: 'inside' }, { type: 'slider', height: 16, bottom: 8 }],
    xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 24, min: 'dataMin' },
    yAxis: { type: 'value', name: yName, scale: true },
    series,
  };
}

export function drawCurves(
  lossEl: HTMLElement,
  accEl: HTMLElement,
  trials: ReadonlyArray<{ label: string; page: TrialPage }>,
): void {
  chart('loss', lossEl, curveOption(trials, LOSS, 'loss', 1));
  chart('accuracy', accEl, curveOption(trials, ACCURACY, 'accuracy %', 100));
}
