/**
 * Test helpers for the native backend and for code that runs on it (the `./testing` entry point,
 * as tfjs-core ships test_util): run the same computation on 'cpu' and 'native' and compare, and
 * count addon calls so a test fails if everything silently fell back to the cpu kernels. Never
 * imported by runtime code.
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { loadNativeAddon, type NativeAddon } from './addon.js';
import { nativeBackendStatus, registerNativeBackend } from './backend.js';

/** The build prerequisites are present, so the addon must have been built (the tests then require it). */
export const nativeExpected =
  existsSync('/usr/include/dnnl.hpp') || existsSync('/usr/include/oneapi/dnnl/dnnl.hpp');

export async function setupNative(): Promise<{ available: boolean; calls: Map<string, number> }> {
  const available = await registerNativeBackend();
  const calls = new Map<string, number>();
  if (available) countCalls(loadNativeAddon().addon!, calls);
  return { available, calls };
}

export function nativeDetail(): string {
  return nativeBackendStatus().detail;
}

function countCalls(addon: NativeAddon, calls: Map<string, number>): void {
  const a = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const k of Object.keys(a)) {
    const f = a[k]!;
    if ((f as { counted?: boolean }).counted) continue;
    const wrapped = (...args: unknown[]) => {
      calls.set(k, (calls.get(k) ?? 0) + 1);
      return f(...args);
    };
    (wrapped as { counted?: boolean }).counted = true;
    a[k] = wrapped;
  }
}

/** Runs f on a backend; returns copies of its outputs. */
export async function runOn(backend: string, f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const r = f();
    return (Array.isArray(r) ? r : [r]).map((t) => Float32Array.from(t.dataSync() as Float32Array));
  });
}

/** Largest |a-b| relative to max(1, max|b|) over all outputs, or the first length mismatch. */
export function maxRelDiff(a: Float32Array[], b: Float32Array[]): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) return Infinity;
    let scale = 1;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < x.length; j++) {
      const d = Math.abs(x[j]! - y[j]!) / scale;
      if (!(d <= worst))
        worst = Number.isNaN(d) ? (Number.isNaN(x[j]!) && Number.isNaN(y[j]!) ? worst : Infinity) : d;
    }
  }
  return worst;
}

/** Compares f on native against cpu; returns a failure line or null. */
export async function compareBackends(
  label: string,
  f: () => tf.Tensor | tf.Tensor[],
  tol = 2e-5,
): Promise<string | null> {
  const ref = await runOn('cpu', f);
  let got: Float32Array[];
  try {
    got = await runOn('native', f);
  } catch (e) {
    return `${label}: native threw ${(e as Error).message}`;
  }
  const d = maxRelDiff(got, ref);
  return d <= tol ? null : `${label}: max relative difference ${d}`;
}

/** Deterministic input in [-1, 1). */
export function rand(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

/**
 * Value and gradients of sum(f(xs) * r) w.r.t. every input, r a fixed random projection, so the
 * incoming gradient is not all ones.
 */
export function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed = 99): tf.Tensor[] {
  const y = f(...xs);
  const r = rand(y.shape, seed);
  const g = tf.grads((...ins: tf.Tensor[]) => tf.sum(tf.mul(f(...ins), r)))(xs);
  return [y, ...g];
}
