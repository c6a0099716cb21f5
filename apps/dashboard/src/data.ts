/**
 * What the dashboard's JSON endpoints answer, read through one read-only store connection. The
 * sweep report is @flatrank/report's (loadSweepFrom + buildReport + plotData: the code behind
 * `flatrank report` / `flatrank plot`), kept per sweep until the database changes.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { relative, resolve, sep, isAbsolute } from 'node:path';
import { ValidationError, canonicalJson, type TrialConfig } from '@flatrank/protocol';
import type { ResultsStore } from '@flatrank/store';
import {
  changedConfigKeys,
  configAxes,
  flattenConfig,
  trialDetail,
  type TrialAxes,
  type SweepOverview,
  type SweepTrialFilter,
  type SweepTrialPage,
  type TrialDetail,
} from '@flatrank/store';
import { buildReport, loadSweepFrom, plotData, type PlotData, type Report } from '@flatrank/report';

export interface SweepListEntry extends SweepOverview {
  /**
   * Estimated ms until the current points are done: mean succeeded duration x (pending + running) /
   * running trials (the parallelism the sweep has now); null when nothing runs or nothing finished.
   */
  etaMs: number | null;
}

export interface SweepPage {
  sweep: SweepListEntry;
  /** The spec as written (YAML text). */
  specText: string;
  /** The same object `flatrank report --format json` prints. */
  report: Report;
  /** The same data `flatrank plot` draws. */
  plot: PlotData;
  /** For each plot series, for each of its points: the index of its report row (for hover details). */
  plotRows: PlotPointRows;
  /**
   * For each report row, the trial columns its trials share (as the trial list filters them: e.g.
   * rankPolicy `ratio=2` where the report says `ratio 2x`), so the page's filters select the same
   * trials in the list and the parallel coordinates as in the table; null for a row of no group.
   */
  rowAxes: Array<RowAxes | null>;
}

/** A report row's trial columns: everything but the seed, which is what its trials differ in. */
export type RowAxes = Omit<TrialAxes, 'seed'>;

export type PlotPointRows = number[][];

export interface MetricSeries {
  phase: string;
  name: string;
  steps: number[];
  epochs: number[];
  values: Array<number | null>;
}

export interface TrialPage extends Omit<TrialDetail, 'metrics'> {
  /** The latest attempt's metrics, one series per phase / name, in step order. */
  series: MetricSeries[];
  /** Steps at which a distortion replaced the kernels by their low-rank reconstruction. */
  distortionSteps: number[];
  /** Whether the trial's log file was found under the runs directory. */
  hasLog: boolean;
  /** The config as canonical JSON (sorted keys: the text its key is the hash of). */
  configJson: string;
}

export interface ComparePage {
  trials: TrialPage[];
  /** Flattened config keys whose values differ between the trials (as `runs --only-changed`). */
  changedKeys: string[];
  /** Per trial, the values of changedKeys. */
  values: Array<Record<string, unknown>>;
}

export interface DashboardDataOptions {
  /** Where `flatrank run` wrote logs and checkpoints (its --runs-dir); for the trial log. */
  runsDir?: string;
  /** Bytes of a log file's tail the log endpoint returns. */
  logTailBytes?: number;
}

const DISTORTION_METRIC = 'distortion_error';

export class DashboardData {
  private readonly reports = new Map<string, { revision: string; page: SweepPage }>();
  private readonly runsDir: string;
  private readonly logTailBytes: number;

  constructor(
    readonly store: ResultsStore,
    opts: DashboardDataOptions = {},
  ) {
    this.runsDir = resolve(opts.runsDir ?? 'runs');
    this.logTailBytes = opts.logTailBytes ?? 256 * 1024;
  }

  sweeps(): SweepListEntry[] {
    return this.store.sweepOverviews().map(withEta);
  }

  private sweepRow(name: string): SweepListEntry {
    const s = this.sweeps().find((o) => o.name === name);
    if (!s) throw notFound('sweep', `no sweep named ${JSON.stringify(name)} in ${this.store.path}`);
    return s;
  }

  /**
   * The sweep's revision (SweepOverview.revision): what its report and trial lists are kept by, so
   * a study's heartbeats and metrics (or another sweep's trials) do not rebuild a 10k-trial report.
   */
  revision(name: string): string {
    return this.sweepRow(name).revision;
  }

  sweep(name: string): SweepPage {
    const sweep = this.sweepRow(name);
    const hit = this.reports.get(name);
    if (hit && hit.revision === sweep.revision) return { ...hit.page, sweep };
    const loaded = loadSweepFrom(this.store, name);
    const report = buildReport(loaded.trials, { sweep: loaded.sweep, reproduces: loaded.reproduces });
    const plot = plotData(report);
    // A row's `group` is a prefix of its group's key (all rows' prefixes have one length).
    const prefix = report.rows[0]?.group.length ?? 0;
    const configOf = new Map<string, TrialConfig>();
    for (const [key, group] of loaded.trials.groups) configOf.set(key.slice(0, prefix), group.config);
    const rowAxes = report.rows.map((r): RowAxes | null => {
      const config = configOf.get(r.group);
      if (!config) return null;
      const { seed: _seed, ...axes } = configAxes(config);
      return axes;
    });
    const page: SweepPage = {
      sweep,
      specText: this.store.getSweep(name)?.specText ?? '',
      report,
      plot,
      plotRows: pointRows(report, plot),
      rowAxes,
    };
    this.reports.set(name, { revision: sweep.revision, page });
    return page;
  }

  trials(name: string, filter: SweepTrialFilter): SweepTrialPage {
    return this.store.sweepTrialPage(this.sweepRow(name).id, filter);
  }

  trial(keyOrPrefix: string): TrialPage {
    let detail: TrialDetail;
    try {
      detail = trialDetail(this.store, keyOrPrefix);
    } catch (e) {
      if (e instanceof ValidationError && e.code === 'NOT_FOUND')
        throw notFound('trial', `no trial with key or prefix ${JSON.stringify(keyOrPrefix)}`);
      throw e;
    }
    const { metrics, ...rest } = detail;
    const byName = new Map<string, MetricSeries>();
    const distortionSteps: number[] = [];
    for (const m of metrics) {
      const id = `${m.phase}/${m.name}`;
      let s = byName.get(id);
      if (!s) byName.set(id, (s = { phase: m.phase, name: m.name, steps: [], epochs: [], values: [] }));
      s.steps.push(m.step);
      s.epochs.push(m.epoch);
      s.values.push(m.value);
      if (m.name === DISTORTION_METRIC) distortionSteps.push(m.step);
    }
    return {
      ...rest,
      series: [...byName.values()],
      distortionSteps,
      hasLog: this.logPath(detail) !== null,
      configJson: canonicalJson(detail.trial.config),
    };
  }

  compare(keys: readonly string[]): ComparePage {
    const trials = keys.map((k) => this.trial(k));
    if (new Set(trials.map((t) => t.trial.key)).size !== trials.length)
      throw new ValidationError('keys', 'keys: two of the given prefixes name the same trial');
    const configs = trials.map((t) => t.trial.config);
    const changedKeys = changedConfigKeys(configs);
    const values = configs.map((c) => {
      const flat = flattenConfig(c);
      return Object.fromEntries(changedKeys.map((k) => [k, flat[k] ?? null]));
    });
    return { trials, changedKeys, values };
  }

  /** The trial's log file: `<runsDir>/<sweep>/<key[0:16]>/trial.log`, as the scheduler writes it. */
  private logPath(detail: Pick<TrialDetail, 'trial' | 'sweeps'>): string | null {
    for (const sweep of detail.sweeps) {
      const file = resolve(this.runsDir, sweep, detail.trial.key.slice(0, 16), 'trial.log');
      // A sweep name is data from the database: never follow it out of the runs directory.
      const rel = relative(this.runsDir, file);
      if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) continue;
      if (existsSync(file) && statSync(file).isFile()) return file;
    }
    return null;
  }

  /** The last logTailBytes of the trial's log (null when there is none). */
  trialLog(keyOrPrefix: string): { text: string; truncated: boolean } | null {
    const t = this.trial(keyOrPrefix);
    const file = this.logPath(t);
    if (!file) return null;
    const size = statSync(file).size;
    const length = Math.min(size, this.logTailBytes);
    const buf = Buffer.alloc(length);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return { text: buf.toString('utf8'), truncated: length < size };
  }
}

export class NotFoundError extends ValidationError {
  constructor(field: string, message: string) {
    super(field, message, { code: 'NOT_FOUND' });
  }
}

function notFound(field: string, message: string): NotFoundError {
  return new NotFoundError(field, message);
}

/**
 * Which report row each plotted point is: plotData draws a row at (mean params ratio, else its target;
 * mean final accuracy x 100 ± std x 100) in the series of its label, so the row of a point is the
 * unused row with that label and exactly those numbers (the same doubles from the same computation).
 */
function pointRows(report: Report, plot: PlotData): PlotPointRows {
  const used = new Set<number>();
  const labelOf = (r: Report['rows'][number]) =>
    `${r.method} ${r.decomposition ?? ''}${r.variant ? ` ${r.variant}` : ''}`.trim();
  return plot.series.map((series) =>
    series.points.map((p) => {
      if (series.published) return -1;
      const i = report.rows.findIndex(
        (r, j) =>
          !used.has(j) &&
          !r.isBaseline &&
          labelOf(r) === series.label &&
          (r.paramsRatio.mean ?? r.targetRatio) === p.x &&
          r.accuracyFinal.mean !== null &&
          r.accuracyFinal.mean * 100 === p.y &&
          (r.accuracyFinal.std === null ? p.err === null : r.accuracyFinal.std * 100 === p.err),
      );
      used.add(i);
      return i;
    }),
  );
}

function withEta(o: SweepOverview): SweepListEntry {
  const c = o.counts;
  const left = c.pending + c.running;
  const etaMs =
    o.succeededMeanMs === null || c.running === 0 || left === 0
      ? null
      : (o.succeededMeanMs * left) / c.running;
  return { ...o, etaMs };
}
