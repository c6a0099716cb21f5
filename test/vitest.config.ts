import { flatrankProject } from '../vitest.shared';

export default flatrankProject('e2e', { testTimeout: 300_000 });
