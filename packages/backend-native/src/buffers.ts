/**
 * The native backend's tensor storage: MathBackendCPU plus recycling of the output buffers the
 * native kernels allocate. Without it every kernel output is a fresh multi-megabyte ArrayBuffer
 * (page faults on first touch, and V8 collecting garbage every ~64 MB of them: measured 15 % of a
 * ResNet-20 step in the collector alone).
 *
 * A buffer goes back to the free list only when it is provably unreachable from user code: it was
 * allocated here, every tensor whose values view it (cpu kernels such as Slice return subarray
 * views of their input) has been disposed, and its values never escaped through readSync/read/
 * bufferSync (dataSync(), data(), arraySync() hand the backing array itself to the caller). An
 * escaped buffer is simply left to the garbage collector.
 */
import type { BackendTimingInfo, BackendValues, DataId, DataType } from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

/** Buffers smaller than this many floats are not worth tracking. */
const MIN_POOLED = 1024;

interface Entry {
  /** Live tensors (data ids) whose values view this buffer. */
  views: number;
  /** Handed to user code: never recycled. */
  escaped: boolean;
}

export class NativeBackend extends MathBackendCPU {
  private readonly owned = new WeakMap<ArrayBuffer, Entry>();
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  /** Reuse statistics (for tests and benchmarks). */
  readonly poolStats = { allocated: 0, reused: 0, recycled: 0 };
  /**
   * Tensors that are a fused ReLU's output (the batch norm + ReLU kernel's): rectifying them again
   * changes nothing, and the gradient kernel of the kernel that made them already masks, so the
   * Relu kernel and its gradient pass them through.
   */
  private readonly reluOutputs = new WeakSet<DataId>();

  markReluOutput(dataId: DataId): void {
    this.reluOutputs.add(dataId);
  }

  isReluOutput(dataId: DataId): boolean {
    return this.reluOutputs.has(dataId);
  }

  constructor(private readonly maxFreeBytes = 1024 ** 3) {
    super();
    // MathBackendCPU advertises tfjs-node on first use in Node; that advice does not apply here.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** A float32 array of length n for a kernel output; its contents are arbitrary (reused). */
  alloc(n: number): Float32Array {
    if (n < MIN_POOLED) return new Float32Array(n);
    const list = this.free.get(n * 4);
    let buf = list?.pop();
    if (buf) {
      this.freeBytes -= buf.byteLength;
      this.poolStats.reused++;
    } else {
      buf = new ArrayBuffer(n * 4);
      this.poolStats.allocated++;
    }
    this.owned.set(buf, { views: 0, escaped: false });
    return new Float32Array(buf);
  }

  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    const id = super.write(values, shape, dtype);
    this.track(values, 1);
    return id;
  }

  override move(
    dataId: DataId,
    values: BackendValues,
    shape: number[],
    dtype: DataType,
    refCount: number,
  ): void {
    super.move(dataId, values, shape, dtype, refCount);
    this.reluOutputs.delete(dataId); // new values under an old id
    this.track(values, 1);
  }

  /**
   * The kernel timer tf.profile() uses: wall time as MathBackendCPU measures it, plus the process
   * CPU time of the kernel (this thread and the addon's workers) as extra info, `cpuMs=<ms>`.
   */
  override async time(f: () => void): Promise<BackendTimingInfo> {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    f();
    const kernelMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const cpuMs = (c.user + c.system) / 1000;
    return { kernelMs, getExtraProfileInfo: () => `cpuMs=${cpuMs}` };
  }

  override readSync(dataId: DataId): BackendValues {
    const v = this.data.get(dataId)?.values;
    const e = v && ArrayBuffer.isView(v) ? this.owned.get(v.buffer as ArrayBuffer) : undefined;
    if (e) e.escaped = true;
    return super.readSync(dataId);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const v = this.data.get(dataId)?.values;
    const done = super.disposeData(dataId, force);
    if (done && !this.data.has(dataId)) this.reluOutputs.delete(dataId);
    if (done && v !== undefined && !this.data.has(dataId)) this.track(v, -1);
    return done;
  }

  override dispose(): void {
    this.free.clear();
    this.freeBytes = 0;
    super.dispose();
  }

  private track(values: BackendValues | undefined, delta: 1 | -1): void {
    if (!values || !ArrayBuffer.isView(values)) return;
    const buf = values.buffer as ArrayBuffer;
    const e = this.owned.get(buf);
    if (!e) return;
    e.views += delta;
    if (e.views > 0 || delta > 0) return;
    this.owned.delete(buf);
    if (e.escaped || this.freeBytes + buf.byteLength > this.maxFreeBytes) return;
    let list = this.free.get(buf.byteLength);
    if (!list) this.free.set(buf.byteLength, (list = []));
    list.push(buf);
    this.freeBytes += buf.byteLength;
    this.poolStats.recycled++;
  }
}
