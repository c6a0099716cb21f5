// Float64 matrix-multiply kernel for the pure-JS factorisations (QR panels, reflector application,
// bidiagonalisation). GotoBLAS layout: blocks of A and B are packed into contiguous 4-row / 4-column
// micro-panels and a 4x4 register-blocked micro-kernel accumulates 16 products per 8 loads. V8 keeps
// the 16 accumulators in registers, which makes this ~1.5x faster than the row-streaming kernel of
// ops.ts (6.5 vs 4.3 GFlop/s on the development machine), and it accumulates into C in place (with a
// scale), so reflector updates need no temporary product and no subtraction pass.

const MR = 4;
const NR = 4;
/** Depth of a packed block: a 4 x KC A micro-panel plus a KC x 4 B micro-panel stay in L1 (16 KiB). */
const KC = 256;
/** Rows of A packed at once (MC x KC doubles = 256 KiB, in L2). */
const MC = 128;
/** Columns of B packed at once (KC x NC doubles = 1 MiB). */
const NC = 512;

// Packing buffers, reused across calls (the kernels are synchronous and never re-entered).
let packA = new Float64Array(MC * KC);
let packB = new Float64Array(KC * NC);
const edgeAcc = new Float64Array(MR * NR);

/**
 * C[cOff + i*ldc + j] += alpha * sum_p op(A)[i][p] op(B)[p][j] for i < m, j < n, p < k.
 * A is stored m x k (A[aOff + i*lda + p]), or k x m when `aTrans` (A[aOff + p*lda + i]);
 * B is stored k x n (B[bOff + p*ldb + j]), or n x k when `bTrans` (B[bOff + j*ldb + p]).
 */
export function gemmAcc(
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float64Array,
  aOff: number,
  lda: number,
  aTrans: boolean,
  B: Float64Array,
  bOff: number,
  ldb: number,
  bTrans: boolean,
  C: Float64Array,
  cOff: number,
  ldc: number,
): void {
  if (m <= 0 || n <= 0 || k <= 0 || alpha === 0) return;
  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = Math.min(NC, n - j0);
    const ncp = Math.ceil(nc / NR) * NR;
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = Math.min(KC, k - p0);
      if (packB.length < kc * ncp) packB = new Float64Array(kc * ncp);
      packPanelsB(B, bOff, ldb, bTrans, p0, kc, j0, nc, packB);
      for (let i0 = 0; i0 < m; i0 += MC) {
        const mc = Math.min(MC, m - i0);
        const mcp = Math.ceil(mc / MR) * MR;
        if (packA.length < kc * mcp) packA = new Float64Array(kc * mcp);
        packPanelsA(A, aOff, lda, aTrans, i0, mc, p0, kc, alpha, packA);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          const bp = jr * kc;
          for (let ir = 0; ir < mc; ir += MR) {
            const mr = Math.min(MR, mc - ir);
            const c = cOff + (i0 + ir) * ldc + j0 + jr;
            if (mr === MR && nr === NR) micro4x4(packA, ir * kc, packB, bp, kc, C, c, ldc);
            else microEdge(packA, ir * kc, packB, bp, kc, C, c, ldc, mr, nr);
          }
        }
      }
    }
  }
}

/** Rows i0..i0+mc-1, depth p0..p0+kc-1 of alpha op(A) into 4-row panels: dst[ir*kc + p*4 + r]. */
function packPanelsA(
  A: Float64Array,
  aOff: number,
  lda: number,
  aTrans: boolean,
  i0: number,
  mc: number,
  p0: number,
  kc: number,
  alpha: number,
  dst: Float64Array,
): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const base = ir * kc;
    const mr = Math.min(MR, mc - ir);
    for (let r = 0; r < MR; r++) {
      if (r >= mr) {
        for (let p = 0; p < kc; p++) dst[base + p * MR + r] = 0;
        continue;
      }
      const i = i0 + ir + r;
      if (aTrans) {
        let src = aOff + p0 * lda + i;
        for (let p = 0; p < kc; p++, src += lda) dst[base + p * MR + r] = alpha * A[src]!;
      } else {
        const src = aOff + i * lda + p0;
        for (let p = 0; p < kc; p++) dst[base + p * MR + r] = alpha * A[src + p]!;
      }
    }
  }
}

/** Columns j0..j0+nc-1, depth p0..p0+kc-1 of op(B) into 4-column panels: dst[jr*kc + p*4 + c]. */
function packPanelsB(
  B: Float64Array,
  bOff: number,
  ldb: number,
  bTrans: boolean,
  p0: number,
  kc: number,
  j0: number,
  nc: number,
  dst: Float64Array,
): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const base = jr * kc;
    const nr = Math.min(NR, nc - jr);
    if (!bTrans && nr === NR) {
      let src = bOff + p0 * ldb + j0 + jr;
      for (let p = 0; p < kc; p++, src += ldb) {
        const d = base + p * NR;
        dst[d] = B[src]!;
        dst[d + 1] = B[src + 1]!;
        dst[d + 2] = B[src + 2]!;
        dst[d + 3] = B[src + 3]!;
      }
      continue;
    }
    for (let c = 0; c < NR; c++) {
      if (c >= nr) {
        for (let p = 0; p < kc; p++) dst[base + p * NR + c] = 0;
        continue;
      }
      const j = j0 + jr + c;
      if (bTrans) {
        const src = bOff + j * ldb + p0;
        for (let p = 0; p < kc; p++) dst[base + p * NR + c] = B[src + p]!;
      } else {
        let src = bOff + p0 * ldb + j;
        for (let p = 0; p < kc; p++, src += ldb) dst[base + p * NR + c] = B[src]!;
      }
    }
  }
}

function micro4x4(
  ap: Float64Array,
  ao: number,
  bp: Float64Array,
  bo: number,
  kc: number,
  C: Float64Array,
  co: number,
  ldc: number,
): void {
  let c00 = 0,
    c01 = 0,
    c02 = 0,
    c03 = 0;
  let c10 = 0,
    c11 = 0,
    c12 = 0,
    c13 = 0;
  let c20 = 0,
    c21 = 0,
    c22 = 0,
    c23 = 0;
  let c30 = 0,
    c31 = 0,
    c32 = 0,
    c33 = 0;
  for (let p = 0; p < kc; p++, ao += MR, bo += NR) {
    const b0 = bp[bo]!,
      b1 = bp[bo + 1]!,
      b2 = bp[bo + 2]!,
      b3 = bp[bo + 3]!;
    const a0 = ap[ao]!,
      a1 = ap[ao + 1]!,
      a2 = ap[ao + 2]!,
      a3 = ap[ao + 3]!;
    c00 += a0 * b0;
    c01 += a0 * b1;
    c02 += a0 * b2;
    c03 += a0 * b3;
    c10 += a1 * b0;
    c11 += a1 * b1;
    c12 += a1 * b2;
    c13 += a1 * b3;
    c20 += a2 * b0;
    c21 += a2 * b1;
    c22 += a2 * b2;
    c23 += a2 * b3;
    c30 += a3 * b0;
    c31 += a3 * b1;
    c32 += a3 * b2;
    c33 += a3 * b3;
  }
  C[co] = C[co]! + c00;
  C[co + 1] = C[co + 1]! + c01;
  C[co + 2] = C[co + 2]! + c02;
  C[co + 3] = C[co + 3]! + c03;
  co += ldc;
  C[co] = C[co]! + c10;
  C[co + 1] = C[co + 1]! + c11;
  C[co + 2] = C[co + 2]! + c12;
  C[co + 3] = C[co + 3]! + c13;
  co += ldc;
  C[co] = C[co]! + c20;
  C[co + 1] = C[co + 1]! + c21;
  C[co + 2] = C[co + 2]! + c22;
  C[co + 3] = C[co + 3]! + c23;
  co += ldc;
  C[co] = C[co]! + c30;
  C[co + 1] = C[co + 1]! + c31;
  C[co + 2] = C[co + 2]! + c32;
  C[co + 3] = C[co + 3]! + c33;
}

/** A partial tile at the bottom or right edge: the padded panels give zeros, only mr x nr is stored. */
function microEdge(
  ap: Float64Array,
  ao: number,
  bp: Float64Array,
  bo: number,
  kc: number,
  C: Float64Array,
  co: number,
  ldc: number,
  mr: number,
  nr: number,
): void {
  const acc = edgeAcc.fill(0);
  for (let p = 0; p < kc; p++) {
    const a = ao + p * MR;
    const b = bo + p * NR;
    for (let r = 0; r < MR; r++) {
      const ar = ap[a + r]!;
      for (let c = 0; c < NR; c++) acc[r * NR + c] = acc[r * NR + c]! + ar * bp[b + c]!;
    }
  }
  for (let r = 0; r < mr; r++)
    for (let c = 0; c < nr; c++) C[co + r * ldc + c] = C[co + r * ldc + c]! + acc[r * NR + c]!;
}
