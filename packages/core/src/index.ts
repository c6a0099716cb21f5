export { Tensor, DTYPES, shapeSize } from './tensor.js';
export type { DType, TypedArray } from './tensor.js';
export {
  matmul,
  transpose,
  permute,
  unfold,
  fold,
  modeProduct,
  khatriRao,
  gram,
  frobeniusNorm,
  relativeError,
} from './ops.js';
export {
  svd,
  singularValues,
  eigSym,
  qr,
  lstsq,
  linalgBackend,
  linalgInfo,
  SVD_METHODS,
} from './linalg/index.js';
export type { SvdResult, SvdOptions, SvdMethod } from './linalg/index.js';
export { createRng } from './random.js';
export type { Rng } from './random.js';
export { readNpy, writeNpy } from './npy.js';
export * from './decompositions/index.js';
