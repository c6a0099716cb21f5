/**
 * The parallel-coordinates chart as a user drives it: where a value sits on an axis (from ECharts'
 * own layout), a mouse drag along an axis (a brush), a click on it (clears the brush), and what
 * ECharts holds afterwards (the brushed intervals, the lines drawn as active).
 */
import type { Page } from 'playwright-core';

/** ECharts' own model of the parallel chart (not in its typings): axes, layout, active lines. */
interface ParallelModel {
  findComponents(q: { mainType: string }): Array<{
    id: string;
    activeIntervals: Array<[number, number]>;
    axis: { dim: string; dataToCoord(v: number): number };
  }>;
  getComponent(type: string): { coordinateSystem: { getAxisLayout(dim: string): { position: number[] } } };
  getSeriesByIndex(i: number): { getRawIndicesByActiveState(state: string): number[] };
}

/** The page position of `value` (data units; a category's ordinal position) on the axis of `col`. */
async function axisPoint(page: Page, col: string, value: number): Promise<{ x: number; y: number }> {
  await page.locator('#parallel').scrollIntoViewIfNeeded();
  return page.evaluate(
    ([col, value]) => {
      const c = window.flatrankCharts['parallel']!;
      const model = (c as unknown as { getModel(): ParallelModel }).getModel();
      const axis = model.findComponents({ mainType: 'parallelAxis' }).find((a) => a.id === col)!.axis;
      const at = model.getComponent('parallel').coordinateSystem.getAxisLayout(axis.dim).position;
      const box = c.getDom().getBoundingClientRect();
      // A category axis places whole positions only: between two, interpolate (linear on value axes).
      const v = value as number;
      const [lo, hi] = [Math.floor(v), Math.ceil(v)];
      const coord =
        lo === hi
          ? axis.dataToCoord(v)
          : axis.dataToCoord(lo) + (axis.dataToCoord(hi) - axis.dataToCoord(lo)) * (v - lo);
      // Horizontal layout: each axis is vertical, its coordinate measured upward from at[1].
      return { x: box.x + at[0]!, y: box.y + at[1]! - coord };
    },
    [col, value] as const,
  );
}

/** Drags with the mouse along the axis of `col` from one value to another (as a user brushes). */
export async function brushAxis(page: Page, col: string, from: number, to: number): Promise<void> {
  const a = await axisPoint(page, col, from);
  const b = await axisPoint(page, col, to);
  await page.mouse.move(a.x, a.y);
  await page.mouse.down();
  await page.mouse.move(b.x, (a.y + b.y) / 2, { steps: 4 });
  await page.mouse.move(b.x, b.y, { steps: 4 });
  await page.mouse.up();
}

/** Clicks the axis of `col` at `value`, outside its brush: a click without a drag clears the brush. */
export async function clickAxis(page: Page, col: string, value: number): Promise<void> {
  const p = await axisPoint(page, col, value);
  await page.mouse.click(p.x, p.y);
}

/** The brushed intervals of the axis of `col`, as ECharts holds them (data units). */
export function brushed(page: Page, col: string): Promise<Array<[number, number]>> {
  return page.evaluate((col) => {
    const model = (window.flatrankCharts['parallel'] as unknown as { getModel(): ParallelModel }).getModel();
    return model.findComponents({ mainType: 'parallelAxis' }).find((a) => a.id === col)!.activeIntervals;
  }, col);
}

/** Lines ECharts draws as active (inside every brush). */
export function activeLines(page: Page): Promise<number> {
  return page.evaluate(() => {
    const model = (window.flatrankCharts['parallel'] as unknown as { getModel(): ParallelModel }).getModel();
    return model.getSeriesByIndex(0).getRawIndicesByActiveState('active').length;
  });
}
