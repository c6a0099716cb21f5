/**
 * The native backend recycles kernel output buffers; recycling must never touch memory that user
 * code or another live tensor can still see.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { NativeBackend } from '../src/buffers.js';
import { nativeExpected, rand, setupNative } from '../src/testing.js';

beforeAll(async () => {
  await setupNative();
});

function backend(): NativeBackend {
  const b = tf.backend();
  if (!(b instanceof NativeBackend)) throw new Error('not the native backend');
  return b;
}

/** Churns many outputs of the given size through the pool. */
function churn(shape: number[]): void {
  for (let i = 0; i < 20; i++) tf.tidy(() => tf.relu(tf.add(rand(shape, 100 + i), 1)));
}

describe.skipIf(!nativeExpected)('native buffer recycling', () => {
  test('buffers of disposed intermediates are reused', async () => {
    await tf.setBackend('native');
    const before = { ...backend().poolStats };
    churn([64, 64]);
    expect(backend().poolStats.reused).toBeGreaterThan(before.reused);
    expect(backend().poolStats.recycled).toBeGreaterThan(before.recycled);
  });

  test('values handed out by dataSync() are never recycled', async () => {
    await tf.setBackend('native');
    const t = tf.relu(rand([64, 64], 1));
    const v = t.dataSync() as Float32Array;
    const copy = Float32Array.from(v);
    t.dispose();
    churn([64, 64]);
    expect(v).toEqual(copy);
  });

  test('views of a buffer (cpu kernels returning subarrays) keep it alive', async () => {
    await tf.setBackend('native');
    // The same values computed separately (reading parent itself would mark its buffer escaped).
    const expected = Float32Array.from(
      tf.tidy(() => tf.add(rand([8, 512], 2), 0).dataSync() as Float32Array),
    );
    const parent = tf.add(rand([8, 512], 2), 0); // native output, 4096 floats
    const parts = tf.split(parent, 2, 0); // cpu kernel: subarray views of the parent's buffer
    const valuesOf = (t: tf.Tensor) => backend().data.get(t.dataId)!.values as Float32Array;
    expect(valuesOf(parts[0]!).buffer).toBe(valuesOf(parent).buffer);
    parent.dispose();
    churn([8, 512]);
    const got = new Float32Array([
      ...(parts[0]!.dataSync() as Float32Array),
      ...(parts[1]!.dataSync() as Float32Array),
    ]);
    expect(got).toEqual(expected);
    tf.dispose(parts);
  });
});
