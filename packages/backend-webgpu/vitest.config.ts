import { flatrankProject } from '../../vitest.shared';

// llvmpipe compiles every WGSL pipeline on the CPU: the first use of a kernel takes seconds.
export default flatrankProject('backend-webgpu', { testTimeout: 120_000 });
