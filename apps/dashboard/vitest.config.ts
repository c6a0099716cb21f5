import { flatrankProject } from '../../vitest.shared';

export default flatrankProject('dashboard', { testTimeout: 60_000 });
