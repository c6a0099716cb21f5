import { ShapeError, ValidationError } from '@flatrank/protocol';

export type DType = 'float32' | 'float64';
export type TypedArray = Float32Array | Float64Array;

export const DTYPES: readonly DType[] = ['float32', 'float64'];

/** Product of the dimensions (1 for a scalar shape []). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Throws a ShapeError unless every dimension is a non-negative safe integer. */
export function checkShape(shape: readonly number[], field = 'shape'): void {
  if (!Array.isArray(shape))
    throw new ShapeError(field, `${field} must be an array of non-negative integers`);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new ShapeError(field, `${field}[${i}] must be a non-negative integer, got ${String(d)}`, {
        context: { shape: [...shape] },
      });
    }
  }
}

export function checkDType(dtype: unknown, field = 'dtype'): asserts dtype is DType {
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new ValidationError(
      field,
      `${field} must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`,
    );
  }
}

export function allocate(dtype: DType, n: number): TypedArray {
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
}

export function dtypeOf(data: TypedArray): DType {
  return data instanceof Float32Array ? 'float32' : 'float64';
}

function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** A dense row-major tensor: a shape plus a Float32Array or Float64Array of exactly prod(shape) values. */
export class Tensor {
  readonly shape: readonly number[];
  readonly data: TypedArray;
  readonly dtype: DType;
  private readonly strides: readonly number[];

  constructor(data: TypedArray, shape: readonly number[]) {
    if (!(data instanceof Float32Array || data instanceof Float64Array)) {
      throw new ValidationError('data', 'Tensor data must be a Float32Array or a Float64Array');
    }
    checkShape(shape);
    const size = shapeSize(shape);
    if (size !== data.length) {
      throw new ShapeError(
        'shape',
        `shape [${shape.join(', ')}] holds ${size} values but data has ${data.length}`,
        {
          context: { shape: [...shape], length: data.length },
        },
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtypeOf(data);
    this.strides = Object.freeze(rowMajorStrides(shape));
  }

  static zeros(shape: readonly number[], dtype: DType = 'float64'): Tensor {
    checkShape(shape);
    checkDType(dtype);
    return new Tensor(allocate(dtype, shapeSize(shape)), shape);
  }

  /**
   * From flat values (shape defaults to [length]) or from a nested 2-D array (shape inferred; all rows
   * must have the same length).
   */
  static from(
    values: ArrayLike<number> | number[][],
    shape?: readonly number[],
    dtype: DType = 'float64',
  ): Tensor {
    checkDType(dtype);
    let flat: ArrayLike<number>;
    let inferred: number[];
    if (Array.isArray(values) && values.length > 0 && Array.isArray(values[0])) {
      const rows = values as number[][];
      const cols = rows[0]!.length;
      const out = allocate(dtype, rows.length * cols);
      rows.forEach((row, i) => {
        if (!Array.isArray(row) || row.length !== cols) {
          throw new ShapeError(
            'values',
            `row ${i} has ${Array.isArray(row) ? row.length : 'no'} entries; every row must have ${cols}`,
          );
        }
        for (let j = 0; j < cols; j++) out[i * cols + j] = row[j]!;
      });
      flat = out;
      inferred = [rows.length, cols];
    } else {
      flat = values as ArrayLike<number>;
      inferred = [flat.length];
    }
    const data = allocate(dtype, flat.length);
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i];
      if (typeof v !== 'number')
        throw new ValidationError('values', `values[${i}] must be a number, got ${typeof v}`);
      data[i] = v;
    }
    return new Tensor(data, shape ?? inferred);
  }

  get size(): number {
    return this.data.length;
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Same data, new shape (-1 is not supported: pass the full shape). */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.data, shape);
  }

  private offset(index: readonly number[]): number {
    if (index.length !== this.shape.length) {
      throw new ShapeError(
        'index',
        `index has ${index.length} coordinates; the tensor has rank ${this.shape.length}`,
      );
    }
    let off = 0;
    for (let i = 0; i < index.length; i++) {
      const v = index[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= this.shape[i]!) {
        throw new ShapeError('index', `index[${i}] = ${v} is out of range [0, ${this.shape[i]! - 1}]`);
      }
      off += v * this.strides[i]!;
    }
    return off;
  }

  get(...index: number[]): number {
    return this.data[this.offset(index)]!;
  }

  set(value: number, ...index: number[]): void {
    this.data[this.offset(index)] = value;
  }

  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape);
  }

  astype(dtype: DType): Tensor {
    checkDType(dtype);
    if (dtype === this.dtype) return this.clone();
    const out = allocate(dtype, this.size);
    out.set(this.data);
    return new Tensor(out, this.shape);
  }

  /** Nested arrays (for small tensors in tests and printing). */
  toArray(): unknown {
    const build = (dim: number, base: number): unknown => {
      const n = this.shape[dim]!;
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const off = base + i * this.strides[dim]!;
        out.push(dim === this.shape.length - 1 ? this.data[off] : build(dim + 1, off));
      }
      return out;
    };
    return this.shape.length === 0 ? this.data[0] : build(0, 0);
  }
}

/** Throws a ShapeError unless t is 2-D. */
export function assertMatrix(t: Tensor, field: string): void {
  if (!(t instanceof Tensor)) throw new ValidationError(field, `${field} must be a Tensor`);
  if (t.rank !== 2) {
    throw new ShapeError(field, `${field} must be a 2-D matrix, got shape [${t.shape.join(', ')}]`, {
      context: { shape: [...t.shape] },
    });
  }
}

/** The common dtype of an operation: float32 only when every input is float32. */
export function resultDType(...ts: Tensor[]): DType {
  return ts.every((t) => t.dtype === 'float32') ? 'float32' : 'float64';
}
