import { flatrankProject } from '../../vitest.shared';

export default flatrankProject('backend-wasm');
