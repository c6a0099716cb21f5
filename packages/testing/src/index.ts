export {};
export * from './temp-db.js';
