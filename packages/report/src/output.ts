/** Writing reports and plots to files: atomically (temp file then rename), PNG via resvg. */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, extname, join } from 'node:path';
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

/** Where Debian / Ubuntu (and most Linux distributions) keep font files. */
export const FONT_DIRS: readonly string[] = [
  '/usr/share/fonts',
  '/usr/local/share/fonts',
  join(homedir(), '.local/share/fonts'),
  join(homedir(), '.fonts'),
];

/** DejaVu Sans as packaged by fonts-dejavu-core (Debian), Fedora and Arch, relative to a font dir. */
const DEJAVU_DIRS = ['truetype/dejavu', 'dejavu', 'TTF', 'dejavu-sans-fonts'];
const DEJAVU_FILES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'];
/** Enough faces for the plot's text; a font dir can hold thousands. */
const MAX_FONT_FILES = 16;

function fontFilesUnder(dir: string, out: string[], depth = 0): void {
  if (depth > 4 || out.length >= MAX_FONT_FILES) return;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // missing or unreadable: nothing here
  }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (out.length >= MAX_FONT_FILES) return;
    const p = join(dir, e.name);
    if (e.isDirectory()) fontFilesUnder(p, out, depth + 1);
    else if (/\.(ttf|otf)$/i.test(e.name)) out.push(p);
  }
}

/**
 * The font files the PNG renderer loads: DejaVu Sans (regular and bold, what the plot asks for)
 * when it is in one of `dirs`, else any TrueType / OpenType files found there (sans faces first).
 * Empty when there are none: the PNG then has no text.
 */
export function findFontFiles(dirs: readonly string[] = FONT_DIRS): string[] {
  for (const dir of dirs)
    for (const sub of DEJAVU_DIRS) {
      const files = DEJAVU_FILES.map((f) => join(dir, sub, f)).filter((f) => existsSync(f));
      if (files.length > 0) return files;
    }
  const found: string[] = [];
  for (const dir of dirs) fontFilesUnder(dir, found);
  return found.sort((a, b) => Number(!/sans/i.test(a)) - Number(!/sans/i.test(b)));
}

export interface PngOptions {
  /** Zoom factor over the SVG's size (default 2). */
  scale?: number;
  /** Font files to load; default findFontFiles(). */
  fontFiles?: readonly string[];
  /** Where the no-font warning goes (default: one line on stderr). */
  warn?: (line: string) => void;
}

/** An SVG rasterised: RGBA pixels (row-major, 4 bytes per pixel) and the PNG encoding. */
export interface Raster {
  width: number;
  height: number;
  pixels: Uint8Array;
  png: Uint8Array;
}

let defaultFonts: string[] | undefined;

/**
 * Rasterises an SVG document with explicitly loaded fonts (see findFontFiles). resvg's own system
 * font lookup finds nothing on a machine without fontconfig's fonts and then silently drops every
 * text; here the missing font is said once, and the image still renders.
 */
export function rasterise(svg: string, options: PngOptions = {}): Raster {
  const fontFiles = options.fontFiles ? [...options.fontFiles] : (defaultFonts ??= findFontFiles());
  if (fontFiles.length === 0)
    (options.warn ?? ((l: string) => process.stderr.write(`${l}\n`)))(
      `warning: no font file found in ${FONT_DIRS.join(', ')}: the PNG may have no text (install fonts-dejavu-core)`,
    );
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: options.scale ?? 2 },
    font: {
      fontFiles,
      // With fonts in hand, skip the system scan (faster, same output everywhere); without any,
      // let resvg try whatever else the system has.
      loadSystemFonts: fontFiles.length === 0,
      // The plot asks for DejaVu Sans; a missing family falls back to the first loaded face.
      defaultFontFamily: 'DejaVu Sans',
      sansSerifFamily: 'DejaVu Sans',
    },
    background: '#ffffff',
  });
  const img = r.render();
  return { width: img.width, height: img.height, pixels: img.pixels, png: img.asPng() };
}

/** Rasterises an SVG document at `scale` x its size (fonts: see rasterise). */
export function svgToPng(svg: string, scale = 2, options: Omit<PngOptions, 'scale'> = {}): Uint8Array {
  return rasterise(svg, { ...options, scale }).png;
}
