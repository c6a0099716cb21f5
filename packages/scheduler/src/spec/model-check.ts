/**
 * Spec-time checks of a grid point's compression against its model's layer shapes: target
 * selection, schemes, tiles, ranks and ratios are planned exactly as a trial would plan them
 * before training (the decomposers' TF.js-free layer table), so an impossible rank is a SpecError
 * naming the spec line instead of a failed trial.
 */
import { modelLayers, planModelCompression, type ModelLayer } from '@flatrank/decomposers';
import { canonicalJson, ValidationError, type TrialConfig } from '@flatrank/protocol';
import { specError, type Spec } from './load.js';

/** canonical JSON of (model, dataset, compression) -> null (fine) or the error it gave. */
export type CompressionCheckCache = Map<string, ValidationError | null>;

const layerTables = new Map<string, ModelLayer[]>();

function layersOf(config: TrialConfig): ModelLayer[] {
  const k = `${config.model}/${config.dataset.name}`;
  let layers = layerTables.get(k);
  if (!layers) layerTables.set(k, (layers = modelLayers(config.model, config.dataset.name)));
  return layers;
}

/** The compression field a decomposers error is about ('rank.ratio' -> 'compression.rank'). */
function configFieldOf(field: string): string {
  const head = field.replace(/^compression\./, '').split(/[.[]/)[0]!;
  if (head === 'rank' || head === 'ranks') return 'compression.rank';
  if (head === 'tile' || head === 'scheme' || head === 'layers') return `compression.${head}`;
  return 'compression';
}

/**
 * Plans the point's compression over its model's layers (cached: most points share one). Throws a
 * SpecError at `blame(configField)` (the grid axis or method field that set it) when a trial of
 * this point would fail before training.
 */
export function checkPointCompression(
  spec: Spec,
  cache: CompressionCheckCache,
  config: TrialConfig,
  point: {
    methodId: string;
    label: string;
    blame(configField: string): Array<string | number>;
  },
): void {
  if (config.compression === null) return;
  const key = canonicalJson([config.model, config.dataset.name, config.compression]);
  let error = cache.get(key);
  if (error === undefined) {
    error = null;
    try {
      planModelCompression(layersOf(config), config.compression);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      error = e;
    }
    cache.set(key, error);
  }
  if (error === null) return;
  const configField = configFieldOf(error.field);
  throw specError(
    spec,
    point.blame(configField),
    `grid point "${point.label}" (${config.model} on ${config.dataset.name}): ${error.message}`,
    {
      cause: error,
      context: { point: point.label, configField, layer: error.context['layer'], code: error.code },
    },
  );
}
