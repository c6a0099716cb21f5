import { Tensor, createRng } from '@flatrank/core';

export function randn(shape: number[], seed: number, scale = 1): Tensor {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(
    Float64Array.from({ length: n }, () => rng.normal() * scale),
    shape,
  );
}

export function norm(t: Tensor | ArrayLike<number>): number {
  const d = t instanceof Tensor ? t.data : t;
  let s = 0;
  for (let i = 0; i < d.length; i++) s += d[i]! * d[i]!;
  return Math.sqrt(s);
}

export function maxAbsDiff(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < a.size; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

export interface RefConv {
  kind: 'conv2d' | 'depthwise' | 'dense';
  kernel: Tensor;
  strides: [number, number];
  padding: 'same' | 'valid';
  bias?: Tensor | null;
}

/**
 * Reference convolution, NHWC input [N, H, W, C], TF semantics: 'same' pads (out - 1) * s + k - in
 * in total with the smaller half before; 'valid' pads nothing. conv2d kernel HWIO [kh, kw, C, O];
 * depthwise [kh, kw, C, 1]; dense [C, O] on [N, C].
 */
export function refConv(x: Tensor, l: RefConv): Tensor {
  if (l.kind === 'dense') {
    const [n, c] = x.shape as [number, number];
    const o = l.kernel.shape[1]!;
    const out = new Float64Array(n * o);
    for (let b = 0; b < n; b++)
      for (let q = 0; q < o; q++) {
        let s = l.bias ? l.bias.data[q]! : 0;
        for (let p = 0; p < c; p++) s += x.data[b * c + p]! * l.kernel.data[p * o + q]!;
        out[b * o + q] = s;
      }
    return new Tensor(out, [n, o]);
  }
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const [kh, kw] = l.kernel.shape as [number, number];
  const o = l.kind === 'depthwise' ? c : l.kernel.shape[3]!;
  const [sh, sw] = l.strides;
  const outH = l.padding === 'same' ? Math.ceil(h / sh) : Math.floor((h - kh) / sh) + 1;
  const outW = l.padding === 'same' ? Math.ceil(w / sw) : Math.floor((w - kw) / sw) + 1;
  const padTop = l.padding === 'same' ? Math.floor(Math.max((outH - 1) * sh + kh - h, 0) / 2) : 0;
  const padLeft = l.padding === 'same' ? Math.floor(Math.max((outW - 1) * sw + kw - w, 0) / 2) : 0;
  const out = new Float64Array(n * outH * outW * o);
  const k = l.kernel.data;
  for (let b = 0; b < n; b++)
    for (let y = 0; y < outH; y++)
      for (let xx = 0; xx < outW; xx++)
        for (let q = 0; q < o; q++) {
          let s = l.bias ? l.bias.data[q]! : 0;
          for (let i = 0; i < kh; i++) {
            const iy = y * sh + i - padTop;
            if (iy < 0 || iy >= h) continue;
            for (let j = 0; j < kw; j++) {
              const ix = xx * sw + j - padLeft;
              if (ix < 0 || ix >= w) continue;
              const base = ((b * h + iy) * w + ix) * c;
              if (l.kind === 'depthwise') s += x.data[base + q]! * k[(i * kw + j) * c + q]!;
              else for (let p = 0; p < c; p++) s += x.data[base + p]! * k[((i * kw + j) * c + p) * o + q]!;
            }
          }
          out[((b * outH + y) * outW + xx) * o + q] = s;
        }
  return new Tensor(out, [n, outH, outW, o]);
}
