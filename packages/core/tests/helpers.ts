import { expect } from 'vitest';
import { Tensor, createRng, matmul, transpose } from '../src/index.js';

export function randomMatrix(m: number, n: number, seed = 1): Tensor {
  const rng = createRng(seed);
  const t = Tensor.zeros([m, n]);
  for (let i = 0; i < t.size; i++) t.data[i] = rng.normal();
  return t;
}

/** Naive triple loop, the definition of the matrix product. */
export function naiveMatmul(a: Tensor, b: Tensor): Tensor {
  const [m, k] = a.shape as [number, number];
  const n = b.shape[1]!;
  const c = Tensor.zeros([m, n]);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a.data[i * k + p]! * b.data[p * n + j]!;
      c.data[i * n + j] = s;
    }
  return c;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

export function identity(n: number): Tensor {
  const t = Tensor.zeros([n, n]);
  for (let i = 0; i < n; i++) t.data[i * n + i] = 1;
  return t;
}

/** max |Q^T Q - I|: how far the columns of q are from orthonormal. */
export function orthogonalityError(q: Tensor): number {
  return maxAbsDiff(matmul(q, q, { transposeA: true }).data, identity(q.shape[1]!).data);
}

export function diag(values: ArrayLike<number>): Tensor {
  const n = values.length;
  const t = Tensor.zeros([n, n]);
  for (let i = 0; i < n; i++) t.data[i * n + i] = values[i]!;
  return t;
}

/** U diag(S) V^T. */
export function reconstruct(u: Tensor, s: ArrayLike<number>, v: Tensor): Tensor {
  return matmul(matmul(u, diag(s)), transpose(v));
}

/** Runs fn with FLATRANK_LINALG set (or unset), restoring it afterwards. */
export function withLinalgEnv<T>(value: string | undefined, fn: () => T): T {
  const prev = process.env.FLATRANK_LINALG;
  if (value === undefined) delete process.env.FLATRANK_LINALG;
  else process.env.FLATRANK_LINALG = value;
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env.FLATRANK_LINALG;
    else process.env.FLATRANK_LINALG = prev;
  }
}
