/**
 * Which layers a compression targets (LayerSelection of the trial config):
 * - all-but-first: every conv except the first one (the paper's default) [+ the dense layers];
 * - names: exactly the named conv / dense layers;
 * - filter: the convs matching every given property (e.g. the 64->64 3x3 convs).
 */
import { UnknownNameError, ValidationError, type LayerSelection } from '@flatrank/protocol';

/** What target selection needs to know about a layer (a subset of the models' ConvLayerInfo). */
export interface TargetableLayer {
  name: string;
  kind: 'conv' | 'dense';
  /** conv: HWIO [kh, kw, S, T]; dense: [in, out]. */
  kernelShape: number[];
  strides: number[];
  isFirst: boolean;
}

export function selectTargets<L extends TargetableLayer>(
  layers: readonly L[],
  selection: LayerSelection,
  field = 'compression.layers',
): L[] {
  switch (selection.kind) {
    case 'all-but-first':
      return layers.filter((l) => (l.kind === 'conv' ? !l.isFirst : selection.includeFc));
    case 'names': {
      const byName = new Map(layers.map((l) => [l.name, l]));
      const seen = new Set<string>();
      return selection.names.map((n, i) => {
        const l = byName.get(n);
        if (!l)
          throw new UnknownNameError(
            `${field}.names[${i}]`,
            n,
            layers.map((x) => x.name),
          );
        if (seen.has(n))
          throw new ValidationError(
            `${field}.names[${i}]`,
            `${field}.names[${i}]: layer ${JSON.stringify(n)} is listed twice`,
          );
        seen.add(n);
        return l;
      });
    }
    case 'filter': {
      const out = layers.filter((l) => {
        if (l.kind !== 'conv') return false;
        const [kh, kw, s, t] = l.kernelShape as [number, number, number, number];
        if (selection.inChannels !== undefined && s !== selection.inChannels) return false;
        if (selection.outChannels !== undefined && t !== selection.outChannels) return false;
        if (
          selection.kernelSize !== undefined &&
          (kh !== selection.kernelSize || kw !== selection.kernelSize)
        )
          return false;
        if (selection.stride !== undefined && l.strides.some((x) => x !== selection.stride)) return false;
        return true;
      });
      if (out.length === 0)
        throw new ValidationError(
          field,
          `${field}: the filter ${JSON.stringify(selection)} matches no conv layer (convs: ${layers
            .filter((l) => l.kind === 'conv')
            .map((l) => `${l.name} [${l.kernelShape}] stride ${l.strides[0]}`)
            .join('; ')})`,
        );
      return out;
    }
  }
}
