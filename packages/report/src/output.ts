/** Writing reports and plots to files: atomically (temp file then rename), PNG via resvg. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { ValidationError } from '@flatrank/protocol';

/** Writes to a sibling temp file and renames it over `file`, so a reader never sees half a file. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export type PlotFormat = 'svg' | 'png';

export function plotFormatOf(file: string, field = '--out'): PlotFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.svg') return 'svg';
  if (ext === '.png') return 'png';
  throw new ValidationError(
    field,
    `${field}: the plot file must end in .svg or .png, got ${JSON.stringify(file)}`,
  );
}

/** Rasterises an SVG document (system fonts, DejaVu Sans preferred) at `scale` x its size. */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
    background: '#ffffff',
  });
  return r.render().asPng();
}
