// @flatrank/testing: fakes shared by the tests of every package (never a runtime dependency).
export * from './temp-db.js';
export * from './fakes.js';
export * from './redis.js';
export * from './dashboard-db.js';
export * from './sandbox.js';
export * from './processes.js';
export * from './rank-db.js';
