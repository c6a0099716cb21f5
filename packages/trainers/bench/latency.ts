/**
 * `npm run bench -- latency`: inference latency (model.predict of one batch, as the trials' latency
 * columns measure it) of an original net beside its factored forms at the same multiply-add budget:
 * Tucker-2, SVD (lowered) and CP as their exported conv chains, and tiled SVD, which has no chain
 * form (it is deployed as tiled GEMMs, which no backend runs yet), as the distorted original-shape
 * model: its row says what the tiled GEMMs would have to beat.
 *
 * Ranks: every conv but the first, one rank fraction per decomposition: the one whose whole-model
 * multiply-adds (every conv and dense layer, counted from the decomposers' chain shapes) come
 * closest to 1 / --mac-ratio of the original's (ranks move in steps); `macsRatio` is what it reached.
 *
 * Protocol: every model is built and warmed up (--warmup predicts per batch) before any timing;
 * then --rounds rounds, in each of which every batch size runs every model in an order rotating per
 * round (lib/stats.ts roundOrder), each --warmup untimed then --reps timed predicts. A row gives the
 * median over rounds of the per-round medians, their min-max, the fastest single run, and the
 * speed-up over the original as the median (and min-max) of the per-round ratios; >1 is faster.
 *
 * Options: --nets=resnet20  --batches=1,128  --rounds=5  --warmup=3  --reps=10  --mac-ratio=4
 * --tile=16x16  --decompositions=tucker2,svd,cp,tiled-svd  --backend=native (default: native when
 * installed, else the trainers' automatic choice). Tiny check: --rounds=1 --warmup=1 --reps=1.
 */
import { loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { Tensor } from '@flatrank/core';
import { layerCosts, planDecomposition } from '@flatrank/decomposers';
import {
  DECOMPOSITIONS,
  compressionSchema,
  type BackendName,
  type CompressionConfig,
  type Decomposition,
  type ModelName,
} from '@flatrank/protocol';
import {
  applyReconstructions,
  buildExportModel,
  buildModel,
  decomposeTargets,
  initBackend,
  installedBackends,
  modelCounts,
  planCompression,
} from '@flatrank/trainers';
import { NET_INPUT } from './lib/jobs.js';
import { median, pairedRatios, roundOrder, significant, spread } from './lib/stats.js';

type Row = Record<string, string | number | boolean | null>;

interface Options {
  nets: ModelName[];
  batches: number[];
  rounds: number;
  warmup: number;
  reps: number;
  macRatio: number;
  tile: [number, number];
  decompositions: Decomposition[];
  backend: BackendName | null;
}

function parse(args: string[]): Options {
  const o: Options = {
    nets: ['resnet20'],
    batches: [1, 128],
    rounds: 5,
    warmup: 3,
    reps: 10,
    macRatio: 4,
    tile: [16, 16],
    decompositions: ['tucker2', 'svd', 'cp', 'tiled-svd'],
    backend: null,
  };
  const int = (k: string, v: string, min: number): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min)
      throw new Error(`latency bench: ${k} must be an integer >= ${min}, got '${v}'`);
    return x;
  };
  for (const a of args) {
    const [k, v = ''] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a];
    if (k === '--nets') {
      o.nets = v.split(',').filter(Boolean) as ModelName[];
      const bad = o.nets.filter((n) => !NET_INPUT[n]);
      if (bad.length || !o.nets.length)
        throw new Error(
          `latency bench: --nets: unknown ${bad.join(', ')}; allowed: ${Object.keys(NET_INPUT).join(', ')}`,
        );
    } else if (k === '--batches') o.batches = v.split(',').map((b) => int(k, b, 1));
    else if (k === '--rounds') o.rounds = int(k, v, 1);
    else if (k === '--warmup') o.warmup = int(k, v, 0);
    else if (k === '--reps') o.reps = int(k, v, 1);
    else if (k === '--mac-ratio') {
      o.macRatio = Number(v);
      if (!(o.macRatio > 1)) throw new Error(`latency bench: --mac-ratio must be > 1, got '${v}'`);
    } else if (k === '--tile') {
      const m = /^(\d+)x(\d+)$/.exec(v);
      if (!m) throw new Error(`latency bench: --tile must be AxB, got '${v}'`);
      o.tile = [Number(m[1]), Number(m[2])];
    } else if (k === '--decompositions') {
      o.decompositions = v.split(',').filter(Boolean) as Decomposition[];
      const bad = o.decompositions.filter((d) => !DECOMPOSITIONS.includes(d));
      if (bad.length || !o.decompositions.length)
        throw new Error(
          `latency bench: --decompositions: unknown ${bad.join(', ')}; allowed: ${DECOMPOSITIONS.join(', ')}`,
        );
    } else if (k === '--backend') o.backend = v as BackendName;
    else if (k.startsWith('--')) throw new Error(`latency bench: unknown option ${k}`);
  }
  return o;
}

function compression(
  decomposition: Decomposition,
  fraction: number,
  tile: [number, number],
): CompressionConfig {
  return compressionSchema.parse({
    decomposition,
    rank: { kind: 'fraction', fraction },
    ...(decomposition === 'tiled-svd' ? { tile } : {}),
  });
}

/** Whole-model multiply-adds before / after, from the plan's shapes alone (no factorisation). */
function plannedMacsRatio(model: LayersModel, c: CompressionConfig): number {
  const plan = planCompression(model, c, 0);
  const before = plan.layers.reduce((s, l) => s + l.macs, 0);
  let after = before;
  for (const t of plan.targets) {
    const zeros = new Tensor(new Float32Array(t.kernelShape.reduce((a, b) => a * b, 1)), t.kernelShape);
    const p = planDecomposition(zeros, t.options);
    const cost = layerCosts({ ...p, kernelShape: t.kernelShape }, t.geometry);
    after -= cost.macsBefore - cost.macsAfter;
  }
  return before / after;
}

/**
 * The rank fraction whose whole-model multiply-add ratio is closest to `target` (in log scale): the
 * ratio moves in rank steps (a 16x16 tile: per-layer 8x, 4x, 2.7x, ...), so the budget is met as
 * nearly as the ranks allow, on either side (the row reports the ratio reached).
 */
function fractionForMacRatio(
  model: LayersModel,
  d: Decomposition,
  target: number,
  tile: [number, number],
): number {
  const ratio = (f: number): number => plannedMacsRatio(model, compression(d, f, tile));
  let lo = 1e-4; // ranks clamp to >= 1: the cheapest model
  let hi = 1;
  if (ratio(lo) <= target) return lo;
  // Invariant: ratio(lo) > target >= ratio(hi) (hi = 1 keeps full ranks).
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (ratio(mid) > target) lo = mid;
    else hi = mid;
  }
  return Math.abs(Math.log(ratio(lo) / target)) < Math.abs(Math.log(ratio(hi) / target)) ? lo : hi;
}

interface Variant {
  name: string;
  model: LayersModel;
  macsRatio: number | null;
  paramsRatio: number | null;
  fraction: number | null;
  note: string | null;
}

function variants(net: ModelName, o: Options): Variant[] {
  const inputShape = NET_INPUT[net]!;
  const original = buildModel(net, { inputShape, numClasses: 10, seed: 0 });
  const out: Variant[] = [
    { name: 'original', model: original, macsRatio: 1, paramsRatio: 1, fraction: null, note: null },
  ];
  for (const d of o.decompositions) {
    const fraction = fractionForMacRatio(original, d, o.macRatio, o.tile);
    const c = compression(d, fraction, o.tile);
    const plan = planCompression(original, c, 0);
    const results = decomposeTargets(original, plan);
    const counts = modelCounts(original, plan, results);
    let model: LayersModel;
    let note: string | null = null;
    if (d === 'tiled-svd') {
      // No conv chain: the distorted original-shape model (explicit layer names match the original's).
      model = buildModel(net, { inputShape, numClasses: 10, seed: 0 });
      applyReconstructions(model, results);
      note = `no tiled-GEMM runtime: runs the original convolutions on the tiled-low-rank kernels (tile ${o.tile.join('x')}); macsRatio is what tiled GEMMs would do`;
    } else model = buildExportModel(original, results);
    out.push({
      name: d,
      model,
      macsRatio: counts.macsBefore / counts.macsAfter,
      paramsRatio: counts.paramsBefore / counts.paramsAfter,
      fraction,
      note,
    });
  }
  return out;
}

async function predictMs(model: LayersModel, x: tf.Tensor): Promise<number> {
  const t0 = performance.now();
  const y = model.predict(x) as tf.Tensor;
  await y.data(); // waits for asynchronous backends
  const ms = performance.now() - t0;
  y.dispose();
  return ms;
}

export default {
  name: 'latency',
  description:
    'inference latency (model.predict) of original vs factored nets at the same multiply-add budget (tucker2, svd, cp chains; tiled-svd as distorted original), warm, interleaved over rounds, batch 1 and 128: median, min-max, speed-up',
  async run(args: string[]): Promise<Row[]> {
    const o = parse(args);
    const backend = o.backend ?? ((await installedBackends()).includes('native') ? 'native' : undefined);
    const info = await initBackend(backend ? { backend } : {});
    const rows: Row[] = [];
    for (const net of o.nets) {
      const vs = variants(net, o);
      // [batch][variant] -> per-round medians; all single runs for the fastest.
      const perRound = new Map<string, number[]>();
      const fastest = new Map<string, number>();
      const loads: number[] = [];
      const key = (b: number, v: string): string => `${b}|${v}`;
      const inputs = new Map(
        o.batches.map((b) => [b, tf.randomUniform([b, ...NET_INPUT[net]!], 0, 1, 'float32', 0)]),
      );
      try {
        for (const b of o.batches)
          for (const v of vs)
            for (let i = 0; i < Math.max(1, o.warmup); i++) await predictMs(v.model, inputs.get(b)!);
        for (let r = 0; r < o.rounds; r++) {
          loads.push(loadavg()[0]!);
          for (const b of o.batches) {
            for (const v of roundOrder(vs, r)) {
              const x = inputs.get(b)!;
              for (let i = 0; i < o.warmup; i++) await predictMs(v.model, x);
              const times: number[] = [];
              for (let i = 0; i < o.reps; i++) times.push(await predictMs(v.model, x));
              const k = key(b, v.name);
              perRound.set(k, [...(perRound.get(k) ?? []), median(times)]);
              fastest.set(k, Math.min(fastest.get(k) ?? Infinity, ...times));
            }
          }
          console.error(
            `latency bench: ${net} round ${r + 1}/${o.rounds} done (load ${loads.at(-1)!.toFixed(2)})`,
          );
        }
      } finally {
        tf.dispose([...inputs.values()]);
      }
      for (const b of o.batches) {
        const base = perRound.get(key(b, 'original'))!;
        for (const v of vs) {
          const ms = perRound.get(key(b, v.name))!;
          const s = spread(ms);
          const speedup = spread(pairedRatios(base, ms));
          rows.push({
            net,
            model: v.name,
            backend: info.name,
            batch: b,
            rounds: o.rounds,
            repsPerRound: o.reps,
            ms: significant(s.median),
            msMin: significant(s.min),
            msMax: significant(s.max),
            fastestMs: significant(fastest.get(key(b, v.name))!),
            speedup: significant(speedup.median, 3),
            speedupMin: significant(speedup.min, 3),
            speedupMax: significant(speedup.max, 3),
            macsRatio: v.macsRatio === null ? null : significant(v.macsRatio, 3),
            paramsRatio: v.paramsRatio === null ? null : significant(v.paramsRatio, 3),
            rankFraction: v.fraction === null ? null : significant(v.fraction, 3),
            loadAverage: Math.round(median(loads) * 100) / 100,
            note:
              [v.note, o.rounds < 3 ? `${o.rounds} round(s): a check, not a measurement` : null]
                .filter(Boolean)
                .join('; ') || null,
          });
        }
      }
      for (const v of vs) v.model.dispose();
    }
    return rows;
  },
};
