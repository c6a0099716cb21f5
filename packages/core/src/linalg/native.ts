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
  syevd(a: Float64Array, n: number, w: Float64Array): number;
  qr(a: Float64Array, m: number, n: number, q: Float64Array, r: Float64Array): number;
  gels(a: Float64Array, m: number, n: number, b: Float64Array, nrhs: number): number;
  config(): { threads: number; openblas: string };
}

let loaded: NativeLinalg | null | undefined;
let loadError: string | undefined;

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
