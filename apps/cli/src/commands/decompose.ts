/**
 * `flatrank decompose <kernel.npy> --method svd|tiled-svd|tucker2|cp ...`: low-rank approximation of
 * one conv kernel saved by numpy (HWIO by default, OIHW for PyTorch kernels; float32 or float64).
 * Prints the ranks, error and counts (with --json exactly one JSON object on stdout) and writes the
 * factors, the factored chain's kernels and a summary as .npy / JSON files to --out (written into a
 * temporary sibling directory, then renamed: an error leaves nothing half-written).
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  DECOMPOSITIONS,
  DataError,
  LOWERING_ORDERS,
  SVD_SCHEMES,
  UnknownNameError,
  ValidationError,
  rankPolicyLabel,
  type Decomposition,
  type LoweringOrder,
  type RankPolicy,
  type SvdScheme,
} from '@flatrank/protocol';
import { readNpy, writeNpy, type Tensor } from '@flatrank/core';
import {
  KERNEL_LAYOUTS,
  allocateDataFree,
  decompose,
  factorTensors,
  factoredLayer,
  layerCosts,
  toHwio,
  type DecomposeOptions,
  type KernelLayout,
  type Padding,
  type RankAllocation,
  type RankSpec,
} from '@flatrank/decomposers';

interface DecomposeFlags {
  method?: string;
  scheme?: string;
  order?: string;
  rank?: string;
  ranks?: string;
  ratio?: string;
  rankSelect?: string;
  tile?: string;
  layout: string;
  hooi?: boolean;
  hosvd?: boolean;
  firstLayer?: boolean;
  iters?: string;
  tol?: string;
  init?: string;
  seed?: string;
  inputSize?: string;
  stride?: string;
  padding: string;
  out?: string;
  json?: boolean;
}

function positiveInt(v: string, flag: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1)
    throw new ValidationError(flag, `${flag} must be a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function nonNegativeInt(v: string, flag: string): number {
  if (!/^\d+$/.test(v.trim()))
    throw new ValidationError(flag, `${flag} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function positiveNumber(v: string, flag: string): number {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || x <= 0)
    throw new ValidationError(flag, `${flag} must be a positive number, got ${JSON.stringify(v)}`);
  return x;
}

/** "A" -> [A, A]; "AxB" -> [A, B]. */
function pairFlag(v: string, flag: string): [number, number] {
  const parts = v.toLowerCase().split('x');
  if (parts.length === 1) {
    const a = positiveInt(parts[0]!, flag);
    return [a, a];
  }
  if (parts.length !== 2)
    throw new ValidationError(flag, `${flag} must be A or AxB (positive integers), got ${JSON.stringify(v)}`);
  return [positiveInt(parts[0]!, flag), positiveInt(parts[1]!, flag)];
}

function rankSpecFrom(flags: DecomposeFlags): RankSpec {
  const given = (['rank', 'ranks', 'ratio', 'rankSelect'] as const).filter((k) => flags[k] !== undefined);
  const names = '--rank R, --ranks RS,RT, --ratio X or --rank-select vbmf|energy:T';
  if (given.length === 0) throw new ValidationError('--rank', `choose the ranks with one of ${names}`);
  if (given.length > 1) throw new ValidationError('--rank', `give only one of ${names}`);
  if (flags.rank !== undefined) return positiveIntOrZero(flags.rank, '--rank');
  if (flags.ranks !== undefined) {
    const parts = flags.ranks.split(',');
    if (parts.length !== 2)
      throw new ValidationError(
        '--ranks',
        `--ranks must be RS,RT (two integers), got ${JSON.stringify(flags.ranks)}`,
      );
    return [positiveIntOrZero(parts[0]!, '--ranks'), positiveIntOrZero(parts[1]!, '--ranks')] as const;
  }
  if (flags.ratio !== undefined) return { kind: 'ratio', ratio: positiveNumber(flags.ratio, '--ratio') };
  const sel = flags.rankSelect!;
  if (sel === 'vbmf') return { kind: 'vbmf' };
  const m = /^energy(?::(.*))?$/.exec(sel);
  if (m) {
    const th = m[1] === undefined ? 0.9 : Number(m[1]);
    if (!(th > 0 && th <= 1))
      throw new ValidationError(
        '--rank-select',
        `energy threshold must be in (0, 1], got ${JSON.stringify(m[1])}`,
      );
    return { kind: 'energy', threshold: th } satisfies RankPolicy;
  }
  const fr = /^fraction:(.*)$/.exec(sel);
  if (fr) return { kind: 'fraction', fraction: positiveNumber(fr[1]!, '--rank-select') };
  const al = /^alloc-([a-z]+):([a-z]+)=(.*)$/.exec(sel);
  if (al) return allocationFlag(al[1]!, al[2]!, al[3]!);
  throw new UnknownNameError('--rank-select', sel, [
    'vbmf',
    'energy:T (0 < T <= 1)',
    'fraction:F (0 < F <= 1)',
    'alloc-error:params=X | alloc-error:macs=X | alloc-vbmf:params=X | alloc-vbmf:macs=X (X > 1)',
  ]);
}

/**
 * `alloc-<by>:<basis>=<X>` (the rank policy's label): the data-free allocations over this one
 * kernel, X its layer's compression ratio. by: sensitivity needs data, so only a trial runs it.
 */
function allocationFlag(by: string, basis: string, value: string): RankPolicy {
  if (by === 'sensitivity')
    throw new ValidationError(
      '--rank-select',
      '--rank-select alloc-sensitivity needs accuracy curves measured on data: use it in a trial config; flatrank decompose takes the data-free alloc-error and alloc-vbmf',
    );
  if (by !== 'error' && by !== 'vbmf')
    throw new UnknownNameError('--rank-select', `alloc-${by}`, ['alloc-error', 'alloc-vbmf']);
  if (basis !== 'params' && basis !== 'macs')
    throw new UnknownNameError('--rank-select', `alloc-${by}:${basis}`, [
      `alloc-${by}:params=X`,
      `alloc-${by}:macs=X`,
    ]);
  const ratio = Number(value);
  if (value.trim() === '' || !Number.isFinite(ratio) || ratio <= 1)
    throw new ValidationError(
      '--rank-select',
      `--rank-select alloc-${by}:${basis}=X: X must be a compression ratio > 1, got ${JSON.stringify(value)}`,
    );
  return { kind: 'allocate', by, target: { [basis]: ratio } };
}

/** Ranks may be 0 on the command line so that the decomposer reports the allowed range (RankError). */
function positiveIntOrZero(v: string, flag: string): number {
  return nonNegativeInt(v, flag);
}

function optionsFrom(flags: DecomposeFlags): DecomposeOptions {
  const method = flags.method;
  if (method === undefined)
    throw new ValidationError('--method', `--method is required; allowed: ${DECOMPOSITIONS.join(', ')}`);
  if (!DECOMPOSITIONS.includes(method as Decomposition))
    throw new UnknownNameError('--method', method, DECOMPOSITIONS);
  if (flags.scheme !== undefined && !SVD_SCHEMES.includes(flags.scheme as SvdScheme))
    throw new UnknownNameError('--scheme', flags.scheme, SVD_SCHEMES);
  const opts: DecomposeOptions = { method: method as Decomposition, rank: rankSpecFrom(flags) };
  if (flags.scheme !== undefined) opts.scheme = flags.scheme as SvdScheme;
  if (flags.order !== undefined) {
    if (!LOWERING_ORDERS.includes(flags.order as LoweringOrder))
      throw new UnknownNameError('--order', flags.order, LOWERING_ORDERS);
    opts.order = flags.order as LoweringOrder;
  }
  if (flags.tile !== undefined) opts.tile = pairFlag(flags.tile, '--tile');
  const only = (cond: boolean, flag: string, allowed: string): void => {
    if (!cond) throw new ValidationError(flag, `${flag} applies to ${allowed} only, not --method ${method}`);
  };
  if (flags.hooi && flags.hosvd) throw new ValidationError('--hooi', 'give only one of --hooi and --hosvd');
  if (flags.hooi || flags.hosvd || flags.firstLayer)
    only(
      method === 'tucker2',
      flags.firstLayer ? '--first-layer' : flags.hooi ? '--hooi' : '--hosvd',
      'tucker2',
    );
  if (flags.init !== undefined || flags.seed !== undefined)
    only(method === 'cp', flags.init !== undefined ? '--init' : '--seed', 'cp');
  if (flags.iters !== undefined || flags.tol !== undefined)
    only(
      method === 'tucker2' || method === 'cp',
      flags.iters !== undefined ? '--iters' : '--tol',
      'tucker2 and cp',
    );
  const iters = flags.iters === undefined ? undefined : positiveInt(flags.iters, '--iters');
  const tol = flags.tol === undefined ? undefined : Number(flags.tol);
  if (tol !== undefined && !(tol >= 0))
    throw new ValidationError(
      '--tol',
      `--tol must be a non-negative number, got ${JSON.stringify(flags.tol)}`,
    );
  if (method === 'tucker2') {
    opts.tucker = {
      algorithm: flags.hosvd ? 'hosvd' : 'hooi',
      ...(iters !== undefined ? { maxIterations: iters } : {}),
      ...(tol !== undefined ? { tolerance: tol } : {}),
      ...(flags.firstLayer ? { firstLayer: true } : {}),
    };
  }
  if (method === 'cp') {
    if (flags.init !== undefined && flags.init !== 'svd' && flags.init !== 'random')
      throw new UnknownNameError('--init', flags.init, ['svd', 'random']);
    opts.cp = {
      ...(flags.init !== undefined ? { init: flags.init as 'svd' | 'random' } : {}),
      ...(flags.seed !== undefined ? { seed: nonNegativeInt(flags.seed, '--seed') } : {}),
      ...(iters !== undefined ? { maxIterations: iters } : {}),
      ...(tol !== undefined ? { tolerance: tol } : {}),
    };
  }
  return opts;
}

function readKernel(file: string, layout: KernelLayout): { raw: Tensor; kernel: Tensor } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new DataError(`cannot read kernel file ${file}: ${(e as Error).message}`, { file, cause: e });
  }
  const raw = readNpy(bytes, file);
  return { raw, kernel: toHwio(raw, layout) };
}

/** Writes files into a fresh temporary sibling of `out`, then renames it into place. */
function writeAtomically(out: string, files: Record<string, Uint8Array | string>): string[] {
  const target = resolve(out);
  if (existsSync(target)) {
    if (readdirSync(target).length > 0)
      throw new ValidationError(
        '--out',
        `--out ${out} exists and is not empty; give a new or empty directory`,
      );
  }
  mkdirSync(dirname(target), { recursive: true });
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    for (const [name, data] of Object.entries(files)) writeFileSync(join(tmp, name), data);
    if (existsSync(target)) rmdirSync(target); // empty (checked above)
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new DataError(`could not write the factors to ${out}: ${(e as Error).message}`, {
      file: out,
      cause: e,
    });
  }
  return Object.keys(files);
}

export function registerDecompose(program: Command): void {
  program
    .command('decompose')
    .description('low-rank approximation of one conv kernel (.npy): factors, ranks, error, params and MACs')
    .argument(
      '<kernel>',
      'kernel .npy file (float32/float64, C order): HWIO [kh, kw, S, T] (or OIHW with --layout oihw), or dense [in, out]',
    )
    .option('--method <method>', `decomposition: ${DECOMPOSITIONS.join(' | ')}`)
    .option('--scheme <scheme>', `svd matrix: ${SVD_SCHEMES.join(' | ')} (default lowered)`)
    .option(
      '--order <order>',
      `column order of the lowered matrix (svd lowered, tiled-svd): ${LOWERING_ORDERS.join(' | ')} (default hwc: (i*kw+j)*S+s; chw: s*kh*kw+i*kw+j)`,
    )
    .option('--rank <R>', 'rank (tucker2: both ranks; tiled-svd: per tile)')
    .option('--ranks <RS,RT>', 'tucker2 ranks R_S,R_T')
    .option('--ratio <X>', 'largest ranks whose layer compression ratio (params) reaches X')
    .option(
      '--rank-select <policy>',
      'vbmf | energy:T (smallest rank keeping T of the energy) | fraction:F | alloc-error:params=X | alloc-vbmf:macs=X (ranks allocated to a layer ratio X)',
    )
    .option(
      '--tile <AxB>',
      'tiled-svd tile of the lowered T x (kh*kw*S) matrix: A rows x B columns (A alone: square)',
    )
    .option('--layout <layout>', `kernel layout: ${KERNEL_LAYOUTS.join(' | ')}`, 'hwio')
    .option('--hooi', 'tucker2: HOSVD refined by HOOI (default)')
    .option('--hosvd', 'tucker2: truncated HOSVD only')
    .option('--first-layer', 'tucker2: this is the first conv, use Tucker-1 (mode T only)')
    .option('--iters <N>', 'tucker2 / cp: maximum iterations')
    .option('--tol <X>', 'tucker2 / cp: stop when the relative error changes by less than X')
    .option('--init <init>', 'cp: svd | random (default svd)')
    .option('--seed <N>', 'cp: seed of the random initialisation (default 0)')
    .option('--input-size <HxW>', "the layer's input spatial size, for multiply-add counts")
    .option('--stride <SxS>', "the layer's stride (default 1)")
    .option('--padding <padding>', "the layer's padding: same | valid", 'same')
    .option('--out <dir>', 'write the factors (.npy), the factored chain kernels and summary.json here')
    .option('--json', 'print exactly one JSON object on stdout')
    .action((file: string, flags: DecomposeFlags) => {
      if (!KERNEL_LAYOUTS.includes(flags.layout as KernelLayout))
        throw new UnknownNameError('--layout', flags.layout, KERNEL_LAYOUTS);
      if (flags.padding !== 'same' && flags.padding !== 'valid')
        throw new UnknownNameError('--padding', flags.padding, ['same', 'valid']);
      const options = optionsFrom(flags);
      const geometry = {
        strides:
          flags.stride === undefined ? ([1, 1] as [number, number]) : pairFlag(flags.stride, '--stride'),
        padding: flags.padding as Padding,
        ...(flags.inputSize !== undefined ? { inputSize: pairFlag(flags.inputSize, '--input-size') } : {}),
      };
      const policy = options.rank;
      const allocate =
        typeof policy === 'object' && 'kind' in policy && policy.kind === 'allocate' ? policy : null;
      if (allocate?.target.macs !== undefined && geometry.inputSize === undefined)
        throw new ValidationError(
          '--input-size',
          "a macs budget counts the layer's multiply-adds: give its --input-size HxW",
        );
      const { raw, kernel } = readKernel(file, flags.layout as KernelLayout);
      const t0 = performance.now();
      let allocation: RankAllocation | null = null;
      if (allocate) {
        const { rank: _rank, ...layerOptions } = options;
        allocation = allocateDataFree(
          [
            {
              name: basename(file),
              kernelShape: [...kernel.shape],
              options: layerOptions,
              geometry: geometry.inputSize ? geometry : { ...geometry, inputSize: [1, 1] },
              kernel,
            },
          ],
          allocate,
        );
        options.rank = allocation.layers[0]!.policy;
      }
      const d = decompose(kernel, options);
      const seconds = (performance.now() - t0) / 1000;
      const costs = layerCosts(d, geometry.inputSize ? geometry : { ...geometry, inputSize: [1, 1] });
      const summary: Record<string, unknown> = {
        kernel: file,
        layout: flags.layout,
        dtype: raw.dtype,
        method: d.method,
        scheme: d.scheme,
        order: d.order,
        fallback: d.fallback,
        shape: [...kernel.shape],
        inputShape: [...raw.shape],
        ranks: d.ranks,
        rawRanks: d.rawRanks,
        tile: d.tile,
        relativeError: d.relativeError,
        paramsBefore: costs.paramsBefore,
        paramsAfter: costs.paramsAfter,
        compressionRatio: costs.compressionRatio,
        macsBefore: geometry.inputSize ? costs.macsBefore : null,
        macsAfter: geometry.inputSize ? costs.macsAfter : null,
        iterations: d.iterations,
        converged: d.converged,
        seconds,
        ...(d.method === 'cp' ? { init: d.init, seed: d.seed } : {}),
        ...('algorithm' in d ? { algorithm: d.algorithm } : {}),
        ...(allocation
          ? {
              allocation: {
                policy: rankPolicyLabel(allocate!),
                achieved: allocation.achieved,
                predictedError: allocation.layers[0]!.error,
                measured: { ...allocation.measured, ...allocation.layers[0]!.measured },
              },
            }
          : {}),
      };
      if (flags.out !== undefined) {
        const files: Record<string, Uint8Array | string> = {};
        for (const [name, t] of Object.entries(factorTensors(d)))
          files[`${name}.npy`] = writeNpy(t, raw.dtype);
        const f = factoredLayer(d, geometry);
        if (f.form === 'chain')
          f.layers.forEach((l, i) => (files[`layer${i}_${l.kind}.npy`] = writeNpy(l.kernel, raw.dtype)));
        else {
          files['tiles_left.npy'] = writeNpy(f.left, raw.dtype);
          files['tiles_right.npy'] = writeNpy(f.right, raw.dtype);
        }
        const chain = f.form === 'chain' ? f.layers.map(({ kernel: _k, bias: _b, ...rest }) => rest) : null;
        const names = Object.keys(files);
        files['summary.json'] = `${JSON.stringify({ ...summary, files: names, chain }, null, 2)}\n`;
        writeAtomically(flags.out, files);
        summary.out = flags.out;
        summary.files = [...names, 'summary.json'];
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      const fmt = (v: unknown): string =>
        v === null || v === undefined
          ? '-'
          : Array.isArray(v)
            ? v.join(' x ')
            : typeof v === 'number' && !Number.isInteger(v)
              ? v.toPrecision(6)
              : typeof v === 'object'
                ? JSON.stringify(v)
                : String(v);
      const lines = Object.entries(summary)
        .filter(([k]) => k !== 'files')
        .map(
          ([k, v]) =>
            `${k.padEnd(17)} ${k === 'ranks' || k === 'rawRanks' ? (Array.isArray(v) ? v.join(', ') : '-') : fmt(v)}`,
        );
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
