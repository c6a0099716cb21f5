/**
 * ECharts with only the chart types and components the pages use (tree-shaken by esbuild). Every
 * chart instance is registered on `window.flatrankCharts` by name, so tests (and a curious user in
 * the console) can read what is drawn.
 */
import * as echarts from 'echarts/core';
import { BarChart, CustomChart, LineChart, ParallelChart, ScatterChart } from 'echarts/charts';
import {
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  ParallelComponent,
  TitleComponent,
  TooltipComponent,
  VisualMapComponent,
  DataZoomComponent,
} from 'echarts/components';
import { CanvasRenderer, SVGRenderer } from 'echarts/renderers';

echarts.use([
  BarChart,
  CustomChart,
  LineChart,
  ParallelChart,
  ScatterChart,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  ParallelComponent,
  TitleComponent,
  TooltipComponent,
  VisualMapComponent,
  DataZoomComponent,
  CanvasRenderer,
  SVGRenderer,
]);

export type Option = echarts.EChartsCoreOption;
export const encodeHTML = (s: unknown): string => echarts.format.encodeHTML(String(s));

export const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
];

declare global {
  interface Window {
    flatrankCharts: Record<string, echarts.ECharts>;
  }
}
window.flatrankCharts = window.flatrankCharts ?? {};

const observer = new ResizeObserver((entries) => {
  for (const e of entries) echarts.getInstanceByDom(e.target as HTMLElement)?.resize();
});

/** A chart in `el`, registered as `name` (replacing an earlier one of that name). */
export function chart(
  name: string,
  el: HTMLElement,
  option: Option,
  renderer: 'svg' | 'canvas' = 'svg',
): echarts.ECharts {
  window.flatrankCharts[name]?.dispose();
  const c = echarts.init(el, null, { renderer });
  c.setOption(option);
  window.flatrankCharts[name] = c;
  observer.observe(el);
  return c;
}

export function disposeCharts(): void {
  for (const [name, c] of Object.entries(window.flatrankCharts)) {
    c.dispose();
    delete window.flatrankCharts[name];
  }
}
