import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Resvg } from '@resvg/resvg-js';
import { trialKey, ValidationError } from '@flatrank/protocol';
import {
  buildReport,
  findFontFiles,
  formatReport,
  paretoFront,
  parseReportFormat,
  plotData,
  plotFormatOf,
  rasterise,
  renderPlotSvg,
  svgToPng,
  writeFileAtomic,
  type ReportTrial,
} from '../src/index.js';
import { cfg, summary } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'flatrank-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function trial(config: ReturnType<typeof cfg>, acc: number, paramsAfter: number): ReportTrial {
  return {
    key: trialKey(config),
    status: 'succeeded',
    config,
    summary: summary({ accuracyFinal: acc, paramsBefore: 1000, paramsAfter }),
    layers: [],
  };
}
const comp = (decomposition: 'tucker2' | 'cp', ratio: number) => ({
  decomposition,
  rank: { kind: 'model-ratio' as const, ratio },
});

/** baseline (2 seeds); finetune and distort tucker2 at 2x and 4x (2 seeds each); cp at 2x (1 seed). */
function trials(): ReportTrial[] {
  const t: ReportTrial[] = [];
  for (const seed of [0, 1]) {
    t.push(trial(cfg({ method: 'baseline', seed }), 0.95 + seed * 0.01, 1000));
    for (const [ratio, pa] of [
      [2, 500],
      [4, 250],
    ] as const) {
      t.push(
        trial(
          cfg({ method: 'finetune', seed, compression: comp('tucker2', ratio) }),
          0.9 - ratio / 100 + seed * 0.01,
          pa,
        ),
      );
      t.push(
        trial(
          cfg({ method: 'distort', seed, compression: comp('tucker2', ratio) }),
          0.92 - ratio / 100 + seed * 0.02,
          pa,
        ),
      );
    }
  }
  t.push(trial(cfg({ method: 'finetune', seed: 0, compression: comp('cp', 2) }), 0.85, 500));
  return t;
}

describe('formats', () => {
  const report = buildReport(trials(), { sweep: 'fmt', reproduces: 'paper-fig3' });

  it('markdown: one table line per row, best marked, the paper column', () => {
    const md = formatReport(report, 'md');
    const lines = md.split('\n').filter((l) => l.startsWith('| '));
    expect(lines).toHaveLength(1 + report.rows.length);
    expect(lines[0]).toContain('paper %');
    expect(lines[0]).toContain('Δ pts');
    const best = lines.filter((l) => l.startsWith('| ★'));
    expect(best).toHaveLength(2);
    expect(best.every((l) => l.includes('distort tucker2'))).toBe(true);
    // distort 2x: mean of 0.90 and 0.92 -> 91.00 ± 1.41, bold
    expect(md).toContain('**91.00 ± 1.41**');
    // vs base: 91.00 - 95.50 (baseline mean) = -4.50 points
    expect(md).toMatch(/\*\*91\.00 ± 1\.41\*\* \| -4\.50 \|/);
    expect(md).toMatch(/baseline \(uncompressed\).*\| 92\.63 \| \+2\.87 \|/);
    expect(md).toContain('Published rows without a counterpart here:');
  });

  it('markdown without a paper: no paper column', () => {
    const md = formatReport(buildReport(trials(), { sweep: 'fmt' }), 'md');
    expect(md).not.toContain('paper %');
  });

  it('csv: header + one line per row, mean and std columns, parseable numbers', () => {
    const csv = formatReport(report, 'csv').trimEnd().split('\n');
    expect(csv).toHaveLength(1 + report.rows.length);
    const head = csv[0]!.split(',');
    const cols = (i: number) => Object.fromEntries(head.map((h, j) => [h, csv[i]!.split(',')[j]]));
    expect(head).toContain('accuracyFinal_mean');
    expect(head).toContain('accuracyFinal_std');
    const distort2 = csv
      .map((_, i) => cols(i))
      .find((c) => c['method'] === 'distort' && c['target_ratio'] === '2')!;
    expect(Number(distort2['accuracyFinal_mean'])).toBeCloseTo(0.91, 12);
    expect(distort2['best']).toBe('true');
    expect(Number(distort2['paper_accuracy_pct'])).toBe(92.62);
    expect(Number(distort2['n'])).toBe(2);
    expect(Number(distort2['vs_baseline_pts'])).toBeCloseTo(-4.5, 10);
    expect(cols(1)['vs_baseline_pts']).toBe('');
  });

  it('json: round-trips the report', () => {
    const back = JSON.parse(formatReport(report, 'json'));
    expect(back.sweep).toBe('fmt');
    expect(back.rows).toHaveLength(report.rows.length);
    expect(back.rows[0].accuracyFinal.mean).toBeCloseTo(0.955, 12);
  });

  it('unknown format is a ValidationError naming the allowed values', () => {
    expect(() => parseReportFormat('html')).toThrow(ValidationError);
    expect(() => parseReportFormat('html')).toThrow(/md, csv, json/);
  });
});

describe('plot', () => {
  const report = buildReport(trials(), { sweep: 'plot' });

  it('Pareto front keeps the points nobody beats on both ratio and accuracy', () => {
    const pts = [
      { x: 2, y: 90, err: null },
      { x: 2, y: 91, err: null },
      { x: 4, y: 89, err: null },
      { x: 3, y: 88, err: null },
      { x: 8, y: 80, err: null },
    ];
    expect(paretoFront(pts).map((p) => [p.x, p.y])).toEqual([
      [2, 91],
      [4, 89],
      [8, 80],
    ]);
  });

  it('SVG: one polyline per method, error bars over seeds, Pareto front, baseline line, legend', () => {
    const data = plotData(report);
    expect(data.series.map((s) => s.label).sort()).toEqual([
      'distort tucker2',
      'finetune cp',
      'finetune tucker2',
    ]);
    expect(data.baseline?.y).toBeCloseTo(95.5, 10);
    const svg = renderPlotSvg(data);
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(svg.match(/<polyline class="series-line"/g)).toHaveLength(3);
    // 4 tucker2 points have 2 seeds (std > 0); the cp point has one seed: no bar.
    expect(svg.match(/<g class="errorbar"/g)).toHaveLength(4);
    expect(svg.match(/<circle class="point"/g)).toHaveLength(5);
    expect(svg.match(/<line class="baseline"/g)).toHaveLength(1);
    expect(svg.match(/<polyline class="pareto"/g)).toHaveLength(1);
    // distort dominates at 2x and 4x: the front is its two points.
    const front = /<polyline class="pareto"[^>]* points="([^"]+)"/.exec(svg)![1]!.split(' ');
    expect(front).toHaveLength(2);
    const legend = /<g class="legend">(.*?)<\/g>/s.exec(svg)![1]!;
    expect(legend).toContain('uncompressed baseline');
    expect(legend).toContain('Pareto front');
    // Balanced tags: every opened element is closed.
    const opened = (svg.match(/<(?!\/|\?)[a-zA-Z]+[^>]*[^/]>/g) ?? []).length;
    const closed = (svg.match(/<\/[a-zA-Z]+>/g) ?? []).length;
    expect(opened).toBe(closed);
  });

  it('a fixed y range zooms: ticks inside it, data clipped to the plot area', () => {
    const svg = renderPlotSvg(plotData(report), { yRange: [85, 100] });
    expect(svg).toContain('<g class="data" clip-path="url(#plot-area)">');
    const yTicks = [...svg.matchAll(/<text[^>]*text-anchor="end"[^>]*>([^<]+)<\/text>/g)].map((m) =>
      Number(m[1]),
    );
    expect(Math.min(...yTicks)).toBeGreaterThanOrEqual(85);
    expect(Math.max(...yTicks)).toBeLessThanOrEqual(100);
    expect(() => renderPlotSvg(plotData(report), { yRange: [90, 80] })).toThrow(ValidationError);
  });

  it('paper-fig3 reproductions add the published curves', () => {
    const svg = renderPlotSvg(plotData(buildReport(trials(), { sweep: 'p', reproduces: 'paper-fig3' })));
    expect(svg.match(/<g class="series published"/g)).toHaveLength(2);
  });

  it('PNG: rasterised by resvg, written atomically', () => {
    const png = svgToPng(renderPlotSvg(plotData(report)));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // IHDR width = 2 x 800 (zoom 2)
    expect(Buffer.from(png).readUInt32BE(16)).toBe(1600);
    const file = join(dir, 'sub', 'plot.png');
    writeFileAtomic(file, png);
    expect(readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['plot.png']);
  });

  // The title (15 px bold, baseline y = 24, centred on x = 310 of 800) at zoom 2; nothing else is drawn there.
  const titleInk = (r: { width: number; pixels: Uint8Array }) => {
    let n = 0;
    for (let y = 16; y < 60; y++)
      for (let x = 500; x < 740; x++) if (r.pixels[(y * r.width + x) * 4]! < 128) n++;
    return n;
  };
  const font = findFontFiles()[0];
  it.skipIf(!font)(
    `PNG text: a plot rendered with a known font file has ink in its title region${font ? '' : ' (SKIPPED: no .ttf/.otf font installed; apt-get install fonts-dejavu-core)'}`,
    () => {
      const svg = renderPlotSvg(plotData(report));
      const warnings: string[] = [];
      const r = rasterise(svg, { fontFiles: [font!], warn: (l) => warnings.push(l) });
      expect(r.width).toBe(1600);
      expect(titleInk(r)).toBeGreaterThan(200);
      expect(warnings).toEqual([]);
      // Control: without any font the same region is blank (what a font-less machine used to get).
      const bare = new Resvg(svg, {
        fitTo: { mode: 'zoom', value: 2 },
        font: { loadSystemFonts: false, fontFiles: [] },
        background: '#ffffff',
      }).render();
      expect(titleInk({ width: bare.width, pixels: bare.pixels })).toBe(0);
    },
  );

  it('font lookup: DejaVu Sans first, else any font file (sans first); none found is one warning line', () => {
    const fonts = join(dir, 'fonts');
    mkdirSync(join(fonts, 'a'), { recursive: true });
    mkdirSync(join(fonts, 'b'), { recursive: true });
    writeFileSync(join(fonts, 'a', 'FooSerif.ttf'), '');
    writeFileSync(join(fonts, 'b', 'FooSans.OTF'), '');
    writeFileSync(join(fonts, 'b', 'readme.txt'), '');
    expect(findFontFiles([join(dir, 'nothing-here'), fonts])).toEqual([
      join(fonts, 'b', 'FooSans.OTF'),
      join(fonts, 'a', 'FooSerif.ttf'),
    ]);
    mkdirSync(join(fonts, 'truetype', 'dejavu'), { recursive: true });
    writeFileSync(join(fonts, 'truetype', 'dejavu', 'DejaVuSans.ttf'), '');
    expect(findFontFiles([fonts])).toEqual([join(fonts, 'truetype', 'dejavu', 'DejaVuSans.ttf')]);
    expect(findFontFiles([join(dir, 'nothing-here')])).toEqual([]);

    const warnings: string[] = [];
    const r = rasterise('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {
      fontFiles: [],
      warn: (l) => warnings.push(l),
    });
    expect(r.png.length).toBeGreaterThan(8);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warning: no font file found in .*fonts-dejavu-core/);
    expect(warnings[0]).not.toContain('\n');
  });

  it('plot file extension decides the format', () => {
    expect(plotFormatOf('a/b.SVG')).toBe('svg');
    expect(plotFormatOf('x.png')).toBe('png');
    expect(() => plotFormatOf('x.jpg')).toThrow(ValidationError);
  });
});
