// Over 500 lines on purpose: a plan's shape, its costs and its rank resolution share the same kernel-dimension helpers.
import {
  DECOMPOSITIONS,
  LOWERING_ORDERS,
  RANK_POLICY_KINDS,
  RankError,
  SVD_SCHEMES,
  ShapeError,
  UnknownNameError,
  ValidationError,
  type Decomposition,
  type LoweringOrder,
  type RankPolicy,
  type SvdScheme,
} from '@flatrank/protocol';
import { Tensor, evbmf, maxCpRank, singularValues } from '@flatrank/core';
import { kernelToMatrix, matrixShape, type KernelDims, type LayerKernel } from './kernel.js';
import type {
  DecomposeOptions,
  DecompositionPlan,
  FactoredConv,
  LayerCosts,
  LayerGeometry,
  LayerSettings,
  Padding,
  RankSpec,
  TuckerFallback,
} from './types.js';
import { PADDINGS } from './types.js';

/** Method, scheme, tile and fallback, validated; ranks still to be chosen. */
export interface PlanShape {
  method: Decomposition;
  scheme: SvdScheme | null;
  tile: [number, number] | null;
  fallback: TuckerFallback | null;
  order: LoweringOrder | null;
}

/** Validates method / scheme / tile against the kernel and decides the Tucker fallback. */
export function planShape(
  dims: KernelDims,
  options: Pick<DecomposeOptions, 'method' | 'scheme' | 'tile' | 'tucker' | 'order'>,
): PlanShape {
  const shape = planShapeWithoutOrder(dims, options);
  const order = options.order ?? null;
  if (order !== null && !LOWERING_ORDERS.includes(order))
    throw new UnknownNameError('order', String(order), LOWERING_ORDERS);
  const ordered = shape.fallback === null && shape.scheme === 'lowered';
  if (order === 'chw' && !ordered)
    throw new ValidationError(
      'order',
      `order chw (channel-major lowering) applies to svd scheme lowered and tiled-svd only, not ${shape.method}${shape.scheme && shape.method === 'svd' ? ` scheme ${shape.scheme}` : ''}${shape.fallback ? ` (${shape.fallback})` : ''}`,
    );
  return { ...shape, order: ordered ? (order ?? 'hwc') : null };
}

function planShapeWithoutOrder(
  dims: KernelDims,
  options: Pick<DecomposeOptions, 'method' | 'scheme' | 'tile' | 'tucker'>,
): Omit<PlanShape, 'order'> {
  const method = options.method;
  if (!DECOMPOSITIONS.includes(method)) throw new UnknownNameError('method', String(method), DECOMPOSITIONS);
  const scheme = options.scheme ?? null;
  if (scheme !== null && !SVD_SCHEMES.includes(scheme))
    throw new UnknownNameError('scheme', String(scheme), SVD_SCHEMES);
  const tile = options.tile ?? null;
  if (method !== 'tiled-svd' && tile !== null)
    throw new ValidationError('tile', `tile is only allowed for method tiled-svd, not ${method}`);
  switch (method) {
    case 'svd': {
      const s = scheme ?? 'lowered';
      if (dims.kind === 'dense' && s !== 'lowered')
        throw new ValidationError(
          'scheme',
          `a dense [in, out] kernel only has scheme lowered (out x in), got ${s}`,
        );
      return { method, scheme: s, tile: null, fallback: null };
    }
    case 'tiled-svd': {
      if (scheme !== null && scheme !== 'lowered')
        throw new ValidationError(
          'scheme',
          `tiled-svd tiles the lowered matrix: scheme must be lowered, got ${scheme}`,
        );
      if (tile === null)
        throw new ValidationError(
          'tile',
          'tiled-svd needs a tile [a, b] (rows x columns of the lowered matrix)',
        );
      return { method, scheme: 'lowered', tile: checkTile(dims, tile), fallback: null };
    }
    case 'tucker2':
    case 'cp': {
      if (scheme !== null)
        throw new ValidationError(
          'scheme',
          `scheme applies to svd and tiled-svd only; ${method} takes none (got ${scheme})`,
        );
      if (method === 'cp') {
        if (dims.kind === 'dense')
          throw new ShapeError(
            'kernel',
            'cp needs a 4-D HWIO conv kernel [kh, kw, S, T]; use svd for a dense [in, out] kernel',
          );
        return { method, scheme: null, tile: null, fallback: null };
      }
      if (dims.kind === 'dense' || (dims.kh === 1 && dims.kw === 1))
        return { method, scheme: 'lowered', tile: null, fallback: 'svd-2d' };
      if (options.tucker?.firstLayer) return { method, scheme: 'lowered', tile: null, fallback: 'tucker1' };
      return { method, scheme: null, tile: null, fallback: null };
    }
  }
}

function checkTile(dims: KernelDims, tile: readonly [number, number]): [number, number] {
  if (!Array.isArray(tile) || tile.length !== 2 || !tile.every((v) => Number.isInteger(v) && v >= 1))
    throw new ValidationError(
      'tile',
      `tile must be two positive integers [a, b], got ${JSON.stringify(tile)}`,
    );
  const [rows, cols] = matrixShape(dims, 'lowered');
  const [a, b] = tile;
  if (rows % a !== 0 || cols % b !== 0)
    throw new ShapeError(
      'tile',
      `tile ${a}x${b} does not divide the lowered ${rows}x${cols} matrix (T x kh*kw*S): a must divide ${rows} (${divisors(rows).join(', ')}), b must divide ${cols}`,
      { context: { rows, cols, tile: [a, b] } },
    );
  return [a, b];
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/** The largest value each free rank may take (free ranks: tucker2 [R_S, R_T]; everything else [r]). */
export function fullRanks(dims: KernelDims, shape: PlanShape): number[] {
  const { kh, kw, s, t } = dims;
  if (shape.method === 'tiled-svd') return [Math.min(...shape.tile!)];
  if (shape.method === 'cp') return [maxCpRank([kh, kw, s, t])];
  if (shape.method === 'tucker2' && shape.fallback === null)
    return [Math.min(s, kh * kw * t), Math.min(t, kh * kw * s)];
  const [rows, cols] = matrixShape(dims, shape.scheme!);
  return [Math.min(rows, cols)];
}

/** Reported ranks from free ranks: Tucker-1 keeps all S input channels ([S, R_T]); 2-D Tucker is [r, r]. */
export function reportedRanks(dims: KernelDims, shape: PlanShape, free: readonly number[]): number[] {
  if (shape.fallback === 'tucker1') return [dims.s, free[0]!];
  if (shape.fallback === 'svd-2d') return [free[0]!, free[0]!];
  return [...free];
}

/** The free ranks of a plan (inverse of reportedRanks). */
export function freeRanks(shape: PlanShape, ranks: readonly number[]): number[] {
  return shape.fallback === null ? [...ranks] : [ranks[1]!];
}

// ---------------------------------------------------------------------------------------------
// Shapes of the factored chain and counts

function pair(
  v: readonly [number, number] | number | undefined,
  field: string,
  dflt: number,
): [number, number] {
  const p: [number, number] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((x) => Number.isInteger(x) && x >= 1))
    throw new ValidationError(
      field,
      `${field} must be a positive integer or a pair of them, got ${JSON.stringify(v)}`,
    );
  return p;
}

export function normalizeSettings(settings: LayerSettings = {}): {
  strides: [number, number];
  padding: Padding;
} {
  const strides = pair(settings.strides, 'strides', 1);
  const padding = settings.padding ?? 'same';
  if (!PADDINGS.includes(padding)) throw new UnknownNameError('padding', String(padding), PADDINGS);
  return { strides, padding };
}

function conv(
  kind: FactoredConv['kind'],
  kernelShape: number[],
  strides: [number, number],
  padding: Padding,
  inChannels: number,
  outChannels: number,
): FactoredConv {
  return {
    kind,
    kernelShape,
    strides,
    padding,
    groups: kind === 'depthwise' ? inChannels : 1,
    inChannels,
    outChannels,
    useBias: false,
  };
}

/**
 * The layers of the factored form (shapes only; weights come from `factoredLayer`), or null for
 * tiled-svd, which has no conv-chain form. The original stride goes on the conv with the original
 * spatial extent (split per axis where the spatial extent is split), padding mirrors the original.
 */
export function chainShapes(
  dims: KernelDims,
  plan: DecompositionPlan,
  settings: LayerSettings = {},
): FactoredConv[] | null {
  const { strides, padding } = normalizeSettings(settings);
  const { kh, kw, s: S, t: T } = dims;
  const one: [number, number] = [1, 1];
  let layers: FactoredConv[];
  if (plan.method === 'tiled-svd') return null;
  if (plan.method === 'cp') {
    const r = plan.ranks[0]!;
    layers = [
      conv('conv2d', [1, 1, S, r], one, padding, S, r),
      conv('depthwise', [kh, 1, r, 1], [strides[0], 1], padding, r, r),
      conv('depthwise', [1, kw, r, 1], [1, strides[1]], padding, r, r),
      conv('conv2d', [1, 1, r, T], one, padding, r, T),
    ];
  } else if (plan.method === 'tucker2' && plan.fallback === null) {
    const [rs, rt] = plan.ranks as [number, number];
    layers = [
      conv('conv2d', [1, 1, S, rs], one, padding, S, rs),
      conv('conv2d', [kh, kw, rs, rt], strides, padding, rs, rt),
      conv('conv2d', [1, 1, rt, T], one, padding, rt, T),
    ];
  } else {
    // A truncated SVD of one of the matrices (svd, or Tucker-1 / 2-D Tucker which are lowered SVDs).
    const r = plan.fallback === null ? plan.ranks[0]! : plan.ranks[1]!;
    if (dims.kind === 'dense') {
      layers = [conv('dense', [S, r], one, 'valid', S, r), conv('dense', [r, T], one, 'valid', r, T)];
    } else if (plan.scheme === 'spatial') {
      layers = [
        conv('conv2d', [kh, 1, S, r], [strides[0], 1], padding, S, r),
        conv('conv2d', [1, kw, r, T], [1, strides[1]], padding, r, T),
      ];
    } else if (plan.scheme === 'input') {
      layers = [
        conv('conv2d', [1, 1, S, r], one, padding, S, r),
        conv('conv2d', [kh, kw, r, T], strides, padding, r, T),
      ];
    } else {
      layers = [
        conv('conv2d', [kh, kw, S, r], strides, padding, S, r),
        conv('conv2d', [1, 1, r, T], one, padding, r, T),
      ];
    }
  }
  layers[layers.length - 1]!.useBias =
    settings.useBias ?? (settings.bias !== undefined && settings.bias !== null);
  return layers;
}

/** Kernel parameters of the factored form (biases excluded: decomposition leaves them unchanged). */
export function planParams(dims: KernelDims, plan: DecompositionPlan): number {
  if (plan.method === 'tiled-svd') {
    const [rows, cols] = matrixShape(dims, 'lowered');
    const [a, b] = plan.tile!;
    return (rows / a) * (cols / b) * plan.ranks[0]! * (a + b);
  }
  return chainShapes(dims, plan)!.reduce((n, l) => n + l.kernelShape.reduce((p, d) => p * d, 1), 0);
}

export function kernelParams(dims: KernelDims): number {
  return dims.kh * dims.kw * dims.s * dims.t;
}

/** Output spatial size of a conv (TF.js rules): same -> ceil(in / s); valid -> floor((in - k) / s) + 1. */
export function convOutputSize(input: number, kernel: number, stride: number, padding: Padding): number {
  const out = padding === 'same' ? Math.ceil(input / stride) : Math.floor((input - kernel) / stride) + 1;
  if (out < 1)
    throw new ShapeError(
      'inputSize',
      `input size ${input} is smaller than the kernel (${kernel}) with padding valid`,
    );
  return out;
}

function inputSizeOf(dims: KernelDims, geometry: LayerGeometry): [number, number] {
  if (dims.kind === 'dense') return [1, 1];
  if (geometry.inputSize === undefined)
    throw new ValidationError(
      'inputSize',
      'multiply-add counts of a conv layer need its input spatial size [H, W]',
    );
  return pair(geometry.inputSize, 'inputSize', 1);
}

/** Multiply-adds of one image through the original layer and through its factored form. */
export function planCosts(dims: KernelDims, plan: DecompositionPlan, geometry: LayerGeometry): LayerCosts {
  const { strides, padding } = normalizeSettings(geometry);
  const input = inputSizeOf(dims, geometry);
  const outH = dims.kind === 'dense' ? 1 : convOutputSize(input[0], dims.kh, strides[0], padding);
  const outW = dims.kind === 'dense' ? 1 : convOutputSize(input[1], dims.kw, strides[1], padding);
  const paramsBefore = kernelParams(dims);
  const paramsAfter = planParams(dims, plan);
  const macsBefore = outH * outW * paramsBefore;
  let macsAfter = 0;
  const chain = chainShapes(dims, plan, geometry);
  if (chain === null) {
    // Tiled GEMM: per output position every tile costs b*r + r*a multiply-adds.
    macsAfter = outH * outW * paramsAfter;
  } else {
    let [h, w] = input;
    for (const l of chain) {
      if (l.kind === 'dense') {
        macsAfter += l.inChannels * l.outChannels;
        continue;
      }
      h = convOutputSize(h, l.kernelShape[0]!, l.strides[0], l.padding);
      w = convOutputSize(w, l.kernelShape[1]!, l.strides[1], l.padding);
      macsAfter += h * w * l.kernelShape[0]! * l.kernelShape[1]! * (l.inChannels / l.groups) * l.outChannels;
    }
  }
  return {
    paramsBefore,
    paramsAfter,
    macsBefore,
    macsAfter,
    compressionRatio: paramsBefore / paramsAfter,
    macsRatio: macsBefore / macsAfter,
  };
}

// ---------------------------------------------------------------------------------------------
// Rank policies

function normalizePolicy(spec: RankSpec): RankPolicy {
  if (typeof spec === 'number') return { kind: 'rank', rank: spec };
  if (Array.isArray(spec)) return { kind: 'ranks', ranks: [spec[0], spec[1]] as [number, number] };
  if (spec === null || typeof spec !== 'object' || !('kind' in spec))
    throw new ValidationError(
      'rank',
      `rank must be a number, [R_S, R_T] or a rank policy {kind: ${RANK_POLICY_KINDS.join('|')}}`,
    );
  if (!RANK_POLICY_KINDS.includes(spec.kind))
    throw new UnknownNameError('rank.kind', String(spec.kind), RANK_POLICY_KINDS);
  return spec as RankPolicy;
}

function checkRank(v: unknown, full: number, field: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > full)
    throw new RankError(field, `${what} must be an integer in [1, ${full}], got ${JSON.stringify(v)}`, {
      context: { full },
    });
  return v;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

/** The matrices whose spectra drive energy / vbmf: one per free rank (cp: the two channel unfoldings). */
export function spectralMatrices(kernel: LayerKernel | null, dims: KernelDims, shape: PlanShape): Tensor[][] {
  if (kernel === null)
    throw new ValidationError('rank', 'energy and vbmf rank policies need the kernel values');
  if (shape.method === 'tiled-svd') {
    const w = kernelToMatrix(kernel, 'lowered', shape.order ?? 'hwc');
    const [rows, cols] = w.shape as [number, number];
    const [a, b] = shape.tile!;
    const tiles: Tensor[] = [];
    for (let p = 0; p < rows / a; p++)
      for (let q = 0; q < cols / b; q++) {
        const t = new Float64Array(a * b);
        for (let i = 0; i < a; i++)
          for (let j = 0; j < b; j++) t[i * b + j] = w.data[(p * a + i) * cols + q * b + j]!;
        tiles.push(new Tensor(t, [a, b]));
      }
    return [tiles];
  }
  if (shape.method === 'cp' || (shape.method === 'tucker2' && shape.fallback === null)) {
    // mode-S unfolding (up to column order) = the 'input' matrix; mode-T unfolding = the lowered one.
    return [[kernelToMatrix(kernel, 'input')], [kernelToMatrix(kernel, 'lowered')]];
  }
  void dims;
  return [[kernelToMatrix(kernel, shape.scheme!, shape.order ?? 'hwc')]];
}

function energyRank(spectra: Float64Array[], threshold: number): number {
  const maxLen = Math.max(...spectra.map((s) => s.length));
  let total = 0;
  for (const s of spectra) for (const v of s) total += v * v;
  if (total === 0) return 1;
  let kept = 0;
  for (let r = 1; r <= maxLen; r++) {
    for (const s of spectra) if (r <= s.length) kept += s[r - 1]! ** 2;
    if (kept >= threshold * total * (1 - 1e-12)) return r;
  }
  return maxLen;
}

export interface ResolvedRanks {
  /** The plan's ranks (as reported: tucker2 [R_S, R_T], others [r]). */
  ranks: number[];
  /** EVBMF raw estimates (vbmf policy only), else null. */
  rawRanks: number[] | null;
}

/** Chooses the ranks of a plan by a rank policy (see README, "Rank policies"). */
export function resolveRanks(
  kernel: LayerKernel | null,
  dims: KernelDims,
  shape: PlanShape,
  spec: RankSpec,
): ResolvedRanks {
  const policy = normalizePolicy(spec);
  const full = fullRanks(dims, shape);
  const isTucker2 = shape.method === 'tucker2' && shape.fallback === null;
  const tuckerNames = ['R_S', 'R_T'];
  const label = (k: number): string =>
    isTucker2
      ? `${tuckerNames[k]} for ${shape.method}`
      : `rank for ${shape.method}${shape.fallback ? ` (${shape.fallback})` : ''}${shape.scheme && shape.method === 'svd' ? ` scheme ${shape.scheme}` : ''}`;
  const report = (free: number[], rawRanks: number[] | null = null): ResolvedRanks => ({
    ranks: reportedRanks(dims, shape, free),
    rawRanks,
  });
  switch (policy.kind) {
    case 'rank':
      return report(full.map((f, k) => checkRank(policy.rank, f, 'rank', label(k))));
    case 'ranks': {
      if (shape.method !== 'tucker2')
        throw new ValidationError(
          'ranks',
          `a rank pair [R_S, R_T] is only for tucker2; ${shape.method} takes one rank`,
        );
      const [rs, rt] = policy.ranks;
      if (isTucker2)
        return report([
          checkRank(rs, full[0]!, 'ranks[0]', label(0)),
          checkRank(rt, full[1]!, 'ranks[1]', label(1)),
        ]);
      checkRank(
        rs,
        shape.fallback === 'tucker1' ? dims.s : full[0]!,
        'ranks[0]',
        `R_S for tucker2 (${shape.fallback})`,
      );
      checkRank(rt, full[0]!, 'ranks[1]', `R_T for tucker2 (${shape.fallback})`);
      // Tucker-1 keeps all S channels and uses R_T; the 2-D form's core has rank min(R_S, R_T).
      return report([shape.fallback === 'tucker1' ? rt : Math.min(rs, rt)]);
    }
    case 'fraction': {
      const f = policy.fraction;
      if (!(typeof f === 'number' && f > 0 && f <= 1))
        throw new ValidationError('rank.fraction', `fraction must be in (0, 1], got ${JSON.stringify(f)}`);
      let base: number[];
      if (isTucker2) base = [dims.s, dims.t];
      else if (shape.fallback === 'tucker1') base = [dims.t];
      else if (shape.fallback === 'svd-2d') base = [Math.min(dims.s, dims.t)];
      else base = full;
      return report(base.map((b, k) => clamp(Math.round(f * b), 1, full[k]!)));
    }
    case 'ratio':
      return report(ranksForRatio(dims, shape, policy.ratio));
    case 'model-ratio':
      throw new ValidationError(
        'rank',
        "rank policy 'model-ratio' needs every targeted layer: call modelRatioFraction(layers, ratio) and decompose each layer with { kind: 'fraction', fraction }",
      );
    case 'allocate':
      throw new ValidationError(
        'rank',
        "rank policy 'allocate' chooses the ranks of every target layer together: call allocateRanks(layers, policy) and decompose each layer with its allocated policy",
      );
    case 'energy': {
      const th = policy.threshold;
      if (!(typeof th === 'number' && th > 0 && th <= 1))
        throw new ValidationError(
          'rank.threshold',
          `energy threshold must be in (0, 1], got ${JSON.stringify(th)}`,
        );
      // Only the spectra are needed: singular values alone cost a fraction of a full SVD.
      const groups = spectralMatrices(kernel, dims, shape).map((ms) =>
        energyRank(
          ms.map((m) => singularValues(m)),
          th,
        ),
      );
      if (shape.method === 'cp') return report([clamp(Math.max(...groups), 1, full[0]!)]);
      return report(groups.map((r, k) => clamp(r, 1, full[k]!)));
    }
    case 'vbmf': {
      const raw = spectralMatrices(kernel, dims, shape).map((ms) =>
        Math.max(...ms.map((m) => evbmf(m).rank)),
      );
      if (shape.method === 'cp') return report([clamp(Math.max(...raw), 1, full[0]!)], raw);
      const clamped = raw.map((r, k) => clamp(r, 1, full[k]!));
      return report(clamped, shape.fallback === null ? raw : reportedRanks(dims, shape, raw));
    }
  }
}

/** Largest free ranks whose layer params ratio reaches `ratio` (tucker2: R_T follows R_S * T / S). */
export function ranksForRatio(dims: KernelDims, shape: PlanShape, ratio: number): number[] {
  if (!(typeof ratio === 'number' && ratio > 0 && Number.isFinite(ratio)))
    throw new ValidationError('rank.ratio', `ratio must be a positive number, got ${JSON.stringify(ratio)}`);
  const full = fullRanks(dims, shape);
  const before = kernelParams(dims);
  const paramsOf = (free: number[]): number =>
    planParams(dims, { ...shape, ranks: reportedRanks(dims, shape, free) });
  const ok = (free: number[]): boolean => before / paramsOf(free) >= ratio * (1 - 1e-12);
  const candidates: number[][] = [];
  if (full.length === 2) {
    for (let rs = full[0]!; rs >= 1; rs--)
      candidates.push([rs, clamp(Math.round((rs * dims.t) / dims.s), 1, full[1]!)]);
    candidates.push([1, 1]);
  } else for (let r = full[0]!; r >= 1; r--) candidates.push([r]);
  for (const c of candidates) if (ok(c)) return c;
  const best = before / paramsOf(full.map(() => 1));
  throw new RankError(
    'rank.ratio',
    `compression ratio ${ratio} is out of reach for ${shape.method} on this kernel: even rank 1 gives ${best.toFixed(3)}`,
    {
      context: { ratio, best },
    },
  );
}

export { normalizePolicy };
