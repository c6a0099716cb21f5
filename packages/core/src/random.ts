import { ValidationError } from '@flatrank/protocol';

/** A deterministic pseudo-random source. */
export interface Rng {
  /** Uniform in [0, 1) with 53 random bits. */
  next(): number;
  /** Standard normal N(0, 1). */
  normal(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

/** SplitMix32 step: spreads a seed's bits over the generator state (avoids weak all-zero states). */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * xoshiro128** seeded through SplitMix32: small, fast, and identical on every platform, so a seed fully
 * determines factor initialisations and random projections. Normals by the Box-Muller transform.
 */
export function createRng(seed: number): Rng {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    throw new ValidationError('seed', `seed must be a safe integer, got ${String(seed)}`);
  }
  // Fold both 32-bit halves of the seed in so seeds beyond 2^32 still differ.
  const st = { s: (seed | 0) ^ Math.imul(Math.floor(seed / 0x100000000) | 0, 0x27d4eb2d) };
  let a = splitmix32(st),
    b = splitmix32(st),
    c = splitmix32(st),
    d = splitmix32(st);
  if ((a | b | c | d) === 0) a = 1;
  const u32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  const next = (): number => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992;
  let spare: number | null = null;
  return {
    next,
    normal(): number {
      if (spare !== null) {
        const s = spare;
        spare = null;
        return s;
      }
      let u = 0;
      while (u === 0) u = next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    int(n: number): number {
      if (!Number.isSafeInteger(n) || n <= 0)
        throw new ValidationError('n', `int(n): n must be a positive integer, got ${String(n)}`);
      return Math.floor(next() * n);
    },
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
