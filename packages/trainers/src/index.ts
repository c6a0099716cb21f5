// Backends, data, models (trainers-platform).
export * from './backend/index.js';
export * from './data/index.js';
export * from './models/index.js';
