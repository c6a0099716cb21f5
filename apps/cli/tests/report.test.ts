import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTempDb, populateTempDb, type TempDb } from '@flatrank/testing';
import { runCli as cli } from './helpers.js';

let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

describe('flatrank report / plot', () => {
  it('prints the table of a sweep and writes csv / svg / png files', async () => {
    tmp = createTempDb();
    populateTempDb(tmp.store!, { sweep: 's1', seeds: 2, succeeded: 4 });
    const md = await cli(['report', 's1', '--db', tmp.path]);
    expect(md.code).toBe(0);
    expect(md.out).toContain('# flatrank report: s1');
    expect(md.out).toMatch(/\| finetune tucker2 \| ratio 2x \|/);

    const csvFile = join(tmp.dir, 'r.csv');
    expect((await cli(['report', 's1', '--db', tmp.path, '--format', 'csv', '--out', csvFile])).code).toBe(0);
    expect(readFileSync(csvFile, 'utf8').split('\n')[0]).toMatch(/^sweep,best,baseline,method/);

    const svg = join(tmp.dir, 'p.svg');
    expect((await cli(['plot', 's1', '--db', tmp.path, '--out', svg])).code).toBe(0);
    expect(readFileSync(svg, 'utf8')).toContain('<svg');
    expect((await cli(['plot', 's1', '--db', tmp.path, '--out', svg, '--y-range', '70:100'])).code).toBe(0);
    expect(readFileSync(svg, 'utf8')).toContain('clip-path="url(#plot-area)"');
    const png = join(tmp.dir, 'p.png');
    expect((await cli(['plot', 's1', '--db', tmp.path, '--out', png])).code).toBe(0);
    expect(readFileSync(png).subarray(0, 4).toString('latin1')).toBe('\x89PNG');
  });

  it('typed errors: unknown sweep (2), missing database (6), bad format / extension (2)', async () => {
    tmp = createTempDb();
    populateTempDb(tmp.store!, { sweep: 's1', succeeded: 1 });
    const unknown = await cli(['report', 'nope', '--db', tmp.path]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/sweep: unknown value "nope"; allowed: s1/);
    const missing = await cli(['report', 's1', '--db', join(tmp.dir, 'none.sqlite')]);
    expect(missing.code).toBe(6);
    expect(missing.err).toMatch(/no flatrank database/);
    expect((await cli(['report', 's1', '--db', tmp.path, '--format', 'html'])).code).toBe(2);
    expect(
      (await cli(['plot', 's1', '--db', tmp.path, '--out', join(tmp.dir, 'z.svg'), '--y-range', '90:80']))
        .code,
    ).toBe(2);
    const jpg = join(tmp.dir, 'p.jpg');
    expect((await cli(['plot', 's1', '--db', tmp.path, '--out', jpg])).code).toBe(2);
    expect(existsSync(jpg)).toBe(false);
  });
});
