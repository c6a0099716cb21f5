import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { TypedArray } from '../tensor.js';

/** The functions of native/flatrank_linalg.cc (OpenBLAS + LAPACKE). Each returns LAPACK's info. */
export interface NativeLinalg {
  gemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: TypedArray,
    lda: number,
    b: TypedArray,
    ldb: number,
    c: TypedArray,
    ldc: number,
  ): void;
  gesdd(a: Float64Array, m: number, n: number, s: Float64Array, u: Float64Array, vt: Float64Array): number;
  /** dgesdd with jobz = 'N' (singular values only); absent from addons built before it was added. */
  gesddValues?(a: Float64Array, m: number, n: number, s: Float64Array): number;
  syevd(a: Float64Array, n: number, w: Float64Array): number;
  qr(a: Float64Array, m: number, n: number, q: Float64Array, r: Float64Array): number;
  gels(a: Float64Array, m: number, n: number, b: Float64Array, nrhs: number): number;
  config(): { threads: number; openblas: string };
  threads(n: number): number;
}

let loaded: NativeLinalg | null | undefined;
let loadError: string | undefined;
let maxThreads = 1;

/** Below this many m*n*min(m,n) a factorisation runs on one OpenBLAS thread (2^24: a 256x1024 SVD). */
const SINGLE_THREAD_WORK = 2 ** 24;

/**
 * Runs a LAPACK call with one OpenBLAS thread for small problems and all of them for big ones: thread
 * start-up and spinning cost more than they save below ~2^24 flops, badly so on a busy machine.
 */
export function withThreads<T>(native: NativeLinalg, work: number, fn: () => T): T {
  const want = work < SINGLE_THREAD_WORK ? 1 : maxThreads;
  if (want !== maxThreads) native.threads(want);
  try {
    return fn();
  } finally {
    if (want !== maxThreads) native.threads(maxThreads);
  }
}

/** Path of the addon that `npm install` builds (same relative location from src/ and dist/). */
export function nativeAddonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return join(here, '..', '..', 'native', 'build', 'Release', 'flatrank_linalg.node');
}

/**
 * The native addon, or null when it is not built, fails to load, or FLATRANK_LINALG=js forces the
 * pure-JS path. Loaded lazily on first use so importing @flatrank/core never touches native code.
 */
export function getNative(): NativeLinalg | null {
  if (process.env.FLATRANK_LINALG === 'js') return null;
  if (loaded !== undefined) return loaded;
  try {
    const file = nativeAddonPath();
    if (!existsSync(file)) {
      loadError = `not built (${file} is missing; build it with: npm run install -w @flatrank/core)`;
      loaded = null;
    } else {
      loaded = createRequire(import.meta.url)(file) as NativeLinalg;
      if (typeof loaded.threads !== 'function') {
        // An addon built from an older source: rebuild rather than guess.
        loadError = `stale build at ${file} (rebuild with: npm run install -w @flatrank/core)`;
        loaded = null;
      } else {
        maxThreads = loaded.threads(0);
      }
    }
  } catch (e) {
    loadError = e instanceof Error ? e.message : String(e);
    loaded = null;
  }
  return loaded;
}

/** Why the native addon is unavailable (undefined when it loaded or was never tried). */
export function nativeLoadError(): string | undefined {
  if (process.env.FLATRANK_LINALG === 'js') return 'disabled by FLATRANK_LINALG=js';
  return loadError;
}
