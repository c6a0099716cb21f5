import { flatrankProject } from '../../vitest.shared';

export default flatrankProject('backend-native');
