// @flatrank/store: the SQLite results store (the only package that imports better-sqlite3).
export { DEFAULT_DB, resolveDbPath } from './paths.js';
export { ResultsStore } from './store.js';
export { configAxes, MEMBERSHIPS } from './rows.js';
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
} from './rows.js';
export { createDatabaseAtVersion, databaseFault, describeDatabaseFile } from './connection.js';
export type { OpenOptions } from './connection.js';
export { SCHEMA_VERSION, OLDEST_READABLE_VERSION, FLATRANK_APPLICATION_ID } from './schema.js';
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
  runUserQueryWithTimeout,
  DEFAULT_QUERY_TIMEOUT_MS,
} from './query.js';
export type {
  Row,
  Cell,
  RunsFilter,
  TrialDetail,
  TrialAllocation,
  QueryResult,
  WhereClause,
} from './query.js';
export type {
  ReportTrialRow,
  ReportStartRow,
  ReportSummaryRow,
  ReportLayerRow,
  ReportRankLayerRow,
  ReportAllocationRow,
} from './report-rows.js';
export {
  SWEEP_TRIAL_COLUMNS,
  SWEEP_TRIAL_SORTS,
  SWEEP_TRIAL_RANGE_COLUMNS,
  MAX_SWEEP_TRIAL_PAGE,
} from './dashboard-reads.js';
export type {
  SweepOverview,
  SweepTrialFilter,
  SweepTrialPage,
  SweepTrialColumn,
  SweepTrialRange,
  SweepTrialRangeColumn,
} from './dashboard-reads.js';
