// Target selection is shape-only and lives with the decomposers, so that spec-time checks (the
// scheduler, which never loads TensorFlow.js) select exactly the layers a trial decomposes.
export { selectTargets, type TargetableLayer } from '@flatrank/decomposers';
