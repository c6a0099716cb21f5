export { partialTucker, tuckerReconstruct, TUCKER_ALGORITHMS } from './tucker.js';
export type { TuckerResult, PartialTuckerOptions } from './tucker.js';
export { cpAls, cpReconstruct, maxCpRank, CP_INITS } from './cp.js';
export type { CpResult, CpAlsOptions, CpInit, CpWarmStart } from './cp.js';
export { evbFreeEnergy, evbmf } from './evbmf.js';
export type { EvbmfResult } from './evbmf.js';
export { minimizeBounded } from './minimize.js';
