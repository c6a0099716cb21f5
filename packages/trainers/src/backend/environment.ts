/** The reproducibility record of the process that runs a trial (docs/architecture.md). */
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlatrankError, type RunEnvironment } from '@flatrank/protocol';
import { gitState, packageVersion } from './device.js';
import { currentBackend, type BackendInfo } from './registry.js';

const VERSIONED_PACKAGES = [
  '@flatrank/trainers',
  '@tensorflow/tfjs-core',
  '@tensorflow/tfjs-layers',
  '@tensorflow/tfjs-backend-cpu',
  '@tensorflow/tfjs-backend-wasm',
  '@tensorflow/tfjs-node',
  '@tensorflow/tfjs-node-gpu',
  '@tensorflow/tfjs-backend-webgpu',
  'webgpu',
  'better-sqlite3',
] as const;

let cachedGit: { commit: string | null; dirty: boolean | null } | null = null;

/**
 * Describes this process for the 'started' event. `backend` defaults to the one chosen by the last
 * initBackend(). Git facts come from the checkout containing this package (null outside one).
 */
export function runEnvironment(backend: BackendInfo | null = currentBackend()): RunEnvironment {
  if (!backend)
    throw new FlatrankError(
      'BACKEND_NOT_INITIALISED',
      'runEnvironment: call initBackend() first (no TF.js backend is active)',
    );
  cachedGit ??= gitState(dirname(fileURLToPath(import.meta.url)));
  const packageVersions: Record<string, string> = {};
  for (const p of VERSIONED_PACKAGES) {
    const v = packageVersion(p);
    if (v) packageVersions[p === '@flatrank/trainers' ? 'flatrank' : p] = v;
  }
  const cuda = process.env['CUDA_VISIBLE_DEVICES'];
  return {
    gitCommit: cachedGit.commit,
    gitDirty: cachedGit.dirty,
    packageVersions,
    nodeVersion: process.version,
    backend: backend.name,
    backendVersion: backend.version,
    device: backend.device,
    host: hostname(),
    cudaVisibleDevices: cuda === undefined ? null : cuda,
    pid: process.pid,
  };
}
