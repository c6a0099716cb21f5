import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, createRng, readNpy, writeNpy } from '@flatrank/core';
import { hwioToOihw, kernelToMatrix } from '@flatrank/decomposers';
import { svd } from '@flatrank/core';
import { runCli, type CliResult } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'flatrank-decompose-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randn(shape: number[], seed: number): Tensor {
  const rng = createRng(seed);
  return new Tensor(
    Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()),
    shape,
  );
}

const K = randn([3, 3, 8, 16], 1);
const kernelFile = join(dir, 'k.npy');
writeFileSync(kernelFile, writeNpy(K));
const k32File = join(dir, 'k32.npy');
writeFileSync(k32File, writeNpy(K, 'float32'));
const oihwFile = join(dir, 'k-oihw.npy');
writeFileSync(oihwFile, writeNpy(hwioToOihw(K)));

const cli = (args: string[]): Promise<CliResult> => runCli(['decompose', ...args]);

function json(out: string): Record<string, unknown> {
  const lines = out.trim().split('\n');
  expect(lines).toHaveLength(1); // exactly one JSON object
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

describe('flatrank decompose', () => {
  it('svd --json prints the required fields and the Eckart-Young error', async () => {
    const r = await cli([kernelFile, '--method', 'svd', '--rank', '4', '--json']);
    expect(r.code).toBe(0);
    const o = json(r.out);
    for (const k of [
      'method',
      'scheme',
      'shape',
      'ranks',
      'tile',
      'relativeError',
      'paramsBefore',
      'paramsAfter',
      'compressionRatio',
      'iterations',
      'seconds',
    ])
      expect(o).toHaveProperty(k);
    expect(o).toMatchObject({
      method: 'svd',
      scheme: 'lowered',
      shape: [3, 3, 8, 16],
      ranks: [4],
      tile: null,
      paramsBefore: 1152,
      paramsAfter: 4 * (16 + 72),
    });
    const s = svd(kernelToMatrix(K, 'lowered')).S;
    const tail = Math.sqrt(s.slice(4).reduce((a, v) => a + v * v, 0) / s.reduce((a, v) => a + v * v, 0));
    expect(o.relativeError as number).toBeCloseTo(tail, 10);
    expect(o.compressionRatio as number).toBeCloseTo(1152 / 352, 10);
  });

  it('tiled-svd --order chw gives the optimal tiled error of the channel-major lowering', async () => {
    const r = await cli([
      kernelFile,
      '--method',
      'tiled-svd',
      '--tile',
      '8',
      '--rank',
      '2',
      '--order',
      'chw',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const o = json(r.out);
    expect(o).toMatchObject({ method: 'tiled-svd', order: 'chw', tile: [8, 8], ranks: [2] });
    // Independent lowering: the OIHW kernel read as T x (S*kh*kw) is the channel-major im2col matrix.
    const w = hwioToOihw(K).data;
    const [rows, cols] = [16, 72];
    let tail = 0;
    let all = 0;
    for (let p = 0; p < rows / 8; p++)
      for (let q = 0; q < cols / 8; q++) {
        const t = new Float64Array(64);
        for (let i = 0; i < 8; i++)
          for (let j = 0; j < 8; j++) t[i * 8 + j] = w[(p * 8 + i) * cols + q * 8 + j]!;
        svd(new Tensor(t, [8, 8])).S.forEach((v, k) => {
          all += v * v;
          if (k >= 2) tail += v * v;
        });
      }
    expect(o.relativeError as number).toBeCloseTo(Math.sqrt(tail / all), 10);
    const bad = await cli([kernelFile, '--method', 'tucker2', '--rank', '2', '--order', 'chw']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/order chw/);
    const unknown = await cli([kernelFile, '--method', 'svd', '--rank', '2', '--order', 'cwh']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/allowed: hwc, chw/);
  });

  it('tucker2 writes factors and chain kernels to --out and reads OIHW / float32 kernels', async () => {
    const out = join(dir, 'tucker');
    const r = await cli([
      oihwFile,
      '--layout',
      'oihw',
      '--method',
      'tucker2',
      '--ranks',
      '3,5',
      '--hosvd',
      '--input-size',
      '8x8',
      '--stride',
      '2',
      '--out',
      out,
      '--json',
    ]);
    expect(r.code).toBe(0);
    const o = json(r.out);
    expect(o).toMatchObject({
      method: 'tucker2',
      ranks: [3, 5],
      shape: [3, 3, 8, 16],
      inputShape: [16, 8, 3, 3],
      algorithm: 'hosvd',
      iterations: 0,
    });
    expect(o.macsAfter).toBe(64 * 8 * 3 + 16 * 9 * 3 * 5 + 16 * 5 * 16);
    const files = readdirSync(out).sort();
    expect(files).toEqual([
      'core.npy',
      'factor_s.npy',
      'factor_t.npy',
      'layer0_conv2d.npy',
      'layer1_conv2d.npy',
      'layer2_conv2d.npy',
      'summary.json',
    ]);
    expect(readNpy(readFileSync(join(out, 'core.npy'))).shape).toEqual([3, 3, 3, 5]);
    expect(readNpy(readFileSync(join(out, 'layer1_conv2d.npy'))).shape).toEqual([3, 3, 3, 5]);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
      chain: Array<{ strides: number[] }>;
    };
    expect(summary.chain.map((l) => l.strides)).toEqual([
      [1, 1],
      [2, 2],
      [1, 1],
    ]);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);

    const r32 = await cli([
      k32File,
      '--method',
      'cp',
      '--rank',
      '3',
      '--iters',
      '5',
      '--seed',
      '7',
      '--init',
      'random',
      '--out',
      join(dir, 'cp32'),
      '--json',
    ]);
    expect(r32.code).toBe(0);
    expect(json(r32.out)).toMatchObject({
      method: 'cp',
      dtype: 'float32',
      ranks: [3],
      iterations: 5,
      seed: 7,
      init: 'random',
    });
    expect(readNpy(readFileSync(join(dir, 'cp32', 'layer1_depthwise.npy'))).dtype).toBe('float32');
  });

  it('tiled-svd, vbmf and energy report tile and raw ranks; text output works', async () => {
    const t = json(
      (await cli([kernelFile, '--method', 'tiled-svd', '--tile', '8x24', '--rank', '2', '--json'])).out,
    );
    expect(t).toMatchObject({ tile: [8, 24], ranks: [2] });
    expect(t.compressionRatio as number).toBeCloseTo((8 * 24) / (2 * 32), 10);
    const v = json((await cli([kernelFile, '--method', 'tucker2', '--rank-select', 'vbmf', '--json'])).out);
    expect(v.rawRanks).toHaveLength(2);
    expect((v.ranks as number[]).every((x) => x >= 1)).toBe(true);
    const e = json(
      (
        await cli([
          kernelFile,
          '--method',
          'svd',
          '--scheme',
          'input',
          '--rank-select',
          'energy:0.5',
          '--json',
        ])
      ).out,
    );
    expect(e.scheme).toBe('input');
    const txt = await cli([kernelFile, '--method', 'svd', '--ratio', '2']);
    expect(txt.code).toBe(0);
    expect(txt.out).toMatch(/compressionRatio\s+2\.\d+/);
  });

  it('--rank-select alloc-error / alloc-vbmf allocate the ranks of the layer to a ratio', async () => {
    // Tucker-2 by error: the cheapest (R_S, R_T) pair within the budget, not the proportional one.
    const e = json(
      (
        await cli([
          kernelFile,
          '--method',
          'tucker2',
          '--hosvd',
          '--rank-select',
          'alloc-error:params=2',
          '--json',
        ])
      ).out,
    );
    expect(e.compressionRatio as number).toBeGreaterThanOrEqual(2);
    expect(e.allocation).toMatchObject({
      policy: 'alloc-error:params=2',
      measured: { estimate: 'tucker2-hosvd-bound' },
    });
    expect((e.allocation as { achieved: { params: number } }).achieved.params).toBeCloseTo(
      e.compressionRatio as number,
      10,
    );
    // HOSVD's error is within the bound the allocation predicted.
    expect(e.relativeError as number).toBeLessThanOrEqual(
      (e.allocation as { predictedError: number }).predictedError + 1e-9,
    );
    const v = json(
      (
        await cli([
          kernelFile,
          '--method',
          'svd',
          '--rank-select',
          'alloc-vbmf:macs=3',
          '--input-size',
          '8x8',
          '--json',
        ])
      ).out,
    );
    expect((v.macsBefore as number) / (v.macsAfter as number)).toBeGreaterThanOrEqual(3);
    expect(v.allocation).toMatchObject({
      measured: { scale: expect.any(Number), rawRanks: expect.any(Array) },
    });
    const txt = await cli([kernelFile, '--method', 'svd', '--rank-select', 'alloc-error:params=2']);
    expect(txt.code).toBe(0);
    expect(txt.out).toMatch(/allocation\s+\{"policy":"alloc-error:params=2"/);
  });

  it('bad inputs: typed errors on stderr, non-zero exit, nothing written', async () => {
    const out = join(dir, 'never');
    const cases: Array<[string[], number, RegExp]> = [
      [[join(dir, 'missing.npy'), '--method', 'svd', '--rank', '1'], 3, /cannot read kernel file/],
      [[kernelFile, '--method', 'svd', '--rank', '0'], 2, /\[1, 16\]/],
      [[kernelFile, '--method', 'svd', '--rank', '17'], 2, /\[1, 16\]/],
      [[kernelFile, '--method', 'tiled-svd', '--tile', '5', '--rank', '1'], 2, /does not divide/],
      [[kernelFile, '--method', 'nmf', '--rank', '1'], 2, /allowed: svd, tiled-svd, tucker2, cp/],
      [
        [kernelFile, '--method', 'svd', '--scheme', 'diag', '--rank', '1'],
        2,
        /allowed: lowered, spatial, input/,
      ],
      [[kernelFile, '--method', 'svd'], 2, /one of --rank/],
      [[kernelFile, '--method', 'svd', '--rank', '2', '--ratio', '3'], 2, /only one of/],
      [[kernelFile, '--method', 'svd', '--ranks', '2,3'], 2, /only for tucker2/],
      [[kernelFile, '--method', 'svd', '--rank', '2', '--hosvd'], 2, /tucker2 only/],
      [[kernelFile, '--method', 'cp', '--rank', 'x'], 2, /integer/],
      [[kernelFile, '--method', 'svd', '--rank', '2', '--layout', 'nchw'], 2, /allowed: hwio, oihw/],
      [[kernelFile, '--method', 'svd', '--rank-select', 'magic'], 2, /allowed: vbmf/],
      [[kernelFile, '--rank', '2'], 2, /--method is required/],
      [[kernelFile, '--method', 'svd', '--rank-select', 'alloc-error:params=1'], 2, /ratio > 1/],
      [[kernelFile, '--method', 'svd', '--rank-select', 'alloc-error:params=500'], 2, /out of reach/],
      [
        [kernelFile, '--method', 'svd', '--rank-select', 'alloc-sensitivity:params=2'],
        2,
        /needs accuracy curves/,
      ],
      [[kernelFile, '--method', 'svd', '--rank-select', 'alloc-vbmf:macs=2'], 2, /--input-size/],
      [
        [kernelFile, '--method', 'svd', '--rank-select', 'alloc-size:params=2'],
        2,
        /allowed: alloc-error, alloc-vbmf/,
      ],
    ];
    for (const [args, code, msg] of cases) {
      const r = await cli([...args, '--out', out, '--json']);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.err).toMatch(msg);
      expect(r.out).toBe('');
      expect(existsSync(out)).toBe(false);
    }
    // a 3-D array is not a kernel
    const bad = join(dir, 'bad.npy');
    writeFileSync(bad, writeNpy(randn([3, 3, 8], 2)));
    const r = await cli([bad, '--method', 'svd', '--rank', '1']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/HWIO/);
    // a corrupt file is a data error
    const corrupt = join(dir, 'corrupt.npy');
    writeFileSync(corrupt, 'not an npy file');
    expect((await cli([corrupt, '--method', 'svd', '--rank', '1'])).code).toBe(3);
    // --out that exists and is not empty is refused, and left alone
    const busy = join(dir, 'busy');
    await cli([kernelFile, '--method', 'svd', '--rank', '1', '--out', busy]);
    const before = readdirSync(busy);
    const again = await cli([kernelFile, '--method', 'svd', '--rank', '2', '--out', busy]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/not empty/);
    expect(readdirSync(busy)).toEqual(before);
  });
});
