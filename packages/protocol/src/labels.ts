/**
 * Short text forms of config parts, one spelling each, shared by the store's indexed columns (so
 * `--where rank_policy=ratio=4` matches), the scheduler's trial labels and the CLI.
 */
import { allocationBudget, type RankPolicy } from './trial-config.js';

/**
 * `rank=8`, `ranks=4x8`, `fraction=0.5`, `ratio=4`, `model-ratio=4`, `energy=0.9`, `vbmf`: the
 * policy kind, then its value; an allocation `alloc-error:params=4` (criterion, budget basis, ratio). This is the value of the store's rank_policy column, so changing a
 * spelling here needs a migration of stored rows.
 */
export function rankPolicyLabel(p: RankPolicy): string {
  switch (p.kind) {
    case 'rank':
      return `rank=${p.rank}`;
    case 'ranks':
      return `ranks=${p.ranks[0]}x${p.ranks[1]}`;
    case 'fraction':
      return `fraction=${p.fraction}`;
    case 'ratio':
      return `ratio=${p.ratio}`;
    case 'model-ratio':
      return `model-ratio=${p.ratio}`;
    case 'energy':
      return `energy=${p.threshold}`;
    case 'vbmf':
      return 'vbmf';
    case 'allocate': {
      const b = allocationBudget(p.target);
      return `alloc-${p.by}:${b.kind}=${b.ratio}`;
    }
  }
}
