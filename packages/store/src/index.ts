// @flatrank/store: the SQLite results store (the only package that imports better-sqlite3).
export { DEFAULT_DB, resolveDbPath } from './paths.js';
export { ResultsStore, configAxes, MEMBERSHIPS } from './store.js';
export type {
  ClaimedTrial,
  ClaimOptions,
  TrialRow,
  TrialAxes,
  TrialInsert,
  SweepRow,
  ApplyStats,
  Membership,
  SyncResult,
} from './store.js';
export { createDatabaseAtVersion } from './connection.js';
export type { OpenOptions } from './connection.js';
export { SCHEMA_VERSION, FLATRANK_APPLICATION_ID, MIGRATIONS, migrate } from './schema.js';
export type { Migration } from './schema.js';
export {
  WHERE_AXES,
  RUN_COLUMNS,
  parseWhere,
  listRuns,
  listRunsOnlyChanged,
  changedConfigKeys,
  flattenConfig,
  trialDetail,
  exportRows,
  runUserQuery,
} from './query.js';
export type { Row, Cell, RunsFilter, TrialDetail, QueryResult, WhereClause } from './query.js';
export { iterateReportTrials, reportStartLookup } from './report-rows.js';
export type { ReportTrialRow, ReportStartRow } from './report-rows.js';
export { OUTPUT_FORMATS, parseFormat, formatRows, formatTable, formatCsv, formatJson } from './format.js';
export type { OutputFormat, FormatRow } from './format.js';
