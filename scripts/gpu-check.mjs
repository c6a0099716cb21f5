#!/usr/bin/env node
// `npm run gpu-check [-- --small] [-- --out FILE]`: what a machine's GPUs give flatrank's webgpu
// backend, in one command and one JSON file. Four parts:
//   1. the WebGPU adapters Dawn finds (and nvidia-smi's GPUs when it answers);
//   2. the webgpu op tests (forward + gradient of every op the models train with, vs cpu);
//   3. a ResNet-20 training of 200 steps (batch 128, embedded MNIST) on every GPU at once, one
//      `flatrank train --backend webgpu` worker per GPU, pinned the way `--gpus auto` pins sweeps;
//   4. the training bench's webgpu rows (ResNet-20 / 32 / 56 images/s at batch 128) with PyTorch
//      on CUDA beside them when python3's torch sees a GPU.
// Sized for < 5 minutes on one GPU. `--small` (implied when Dawn finds only software adapters,
// e.g. Mesa's llvmpipe on a machine without a GPU) shrinks everything so that it finishes on a CPU
// rasteriser: 10 steps at batch 16, ResNet-20 only, and says that no GPU was measured.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir, hostname, loadavg, cpus } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout, clearTimeout } from 'node:timers';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const option = (name, dflt) => {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return dflt;
  return argv[i].includes('=') ? argv[i].slice(name.length + 1) : argv[i + 1];
};
for (const a of argv)
  if (
    a.startsWith('--') &&
    !['--small', '--out', '--skip-op-tests'].some((k) => a === k || a.startsWith(`${k}=`))
  ) {
    console.error(`gpu-check: unknown option ${a}; allowed: --small, --out FILE, --skip-op-tests`);
    process.exit(2);
  }
const outFile = resolve(option('--out', 'gpu-check.json'));
const t0 = Date.now();
const log = (s) => console.log(s);
// Mesa's EGL needs this without a display (Dawn's GL ES backend); harmless elsewhere.
const env = { ...process.env };
if (!env.EGL_PLATFORM && !env.DISPLAY && !env.WAYLAND_DISPLAY) env.EGL_PLATFORM = 'surfaceless';

function run(cmd, args, extraEnv = {}, timeoutMs = 20 * 60_000) {
  return new Promise((res) => {
    const child = spawn(cmd, args, {
      cwd: root,
      env: { ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

// ---- 1. adapters ---------------------------------------------------------------------------------
const webgpu = await import('@flatrank/backend-webgpu');
const scheduler = await import('@flatrank/scheduler');
const probe = await webgpu.probeWebgpu(env);
const adapters = probe.ok ? probe.adapters : [];
const nvidia = await scheduler.discoverNvidiaGpus();
log(`== adapters (Dawn backends ${webgpu.dawnBackendsFor(env).join(', ')})`);
if (!probe.ok) log(`   none: ${probe.reason}`);
for (const a of adapters) log(`   ${a.index}: ${webgpu.describeAdapter(a)}`);
if (nvidia.length)
  log(`   nvidia-smi: ${nvidia.map((g) => `${g.index} ${g.name} ${g.pciBusId ?? ''}`).join('; ')}`);
const hardware = adapters.filter((a) => !a.software);
const softwareOnly = adapters.length > 0 && hardware.length === 0;
const small = flag('--small') || softwareOnly;
if (softwareOnly)
  log(
    `   ONLY SOFTWARE ADAPTERS: every number below measures ${adapters[0].name} (${adapters[0].software}), a CPU rasteriser, not a GPU; --small sizes`,
  );
const report = {
  kind: 'flatrank-gpu-check-1',
  date: new Date().toISOString(),
  host: { hostname: hostname(), cpus: cpus().length, cpu: cpus()[0]?.model ?? null, node: process.version },
  loadAverageAtStart: loadavg()[0],
  small,
  measuredSoftwareAdapter: softwareOnly,
  note: softwareOnly
    ? `no hardware GPU: measured the software adapter ${adapters[0].name} (${adapters[0].software})`
    : hardware.length
      ? null
      : 'no WebGPU adapter',
  adapters,
  nvidiaSmi: nvidia,
  opTests: null,
  training: [],
  bench: null,
  seconds: null,
};
const save = () => {
  report.seconds = (Date.now() - t0) / 1000;
  writeFileSync(`${outFile}.tmp`, JSON.stringify(report, null, 2) + '\n');
  renameSync(`${outFile}.tmp`, outFile);
};
if (!adapters.length) {
  save();
  log(`gpu-check: no WebGPU adapter (${probe.ok ? '' : probe.reason}); wrote ${outFile}`);
  process.exit(4);
}

const work = mkdtempSync(join(tmpdir(), 'flatrank-gpu-check-'));
try {
  // ---- 2. op tests -------------------------------------------------------------------------------
  if (!flag('--skip-op-tests')) {
    log('== webgpu op tests (forward + gradient vs cpu)');
    const json = join(work, 'ops.json');
    const r = await run(process.execPath, [
      join(root, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--project',
      'backend-webgpu',
      'tests/ops.test.ts',
      '--reporter=json',
      `--outputFile=${json}`,
    ]);
    let results = [];
    try {
      results = JSON.parse(readFileSync(json, 'utf8')).testResults.flatMap((f) => f.assertionResults);
    } catch {
      // the run failed before writing its report: recorded as failed below
    }
    const failed = results.filter((t) => t.status === 'failed');
    report.opTests = {
      exitCode: r.code,
      passed: results.filter((t) => t.status === 'passed').length,
      failed: failed.map((t) => ({
        name: t.title,
        message: (t.failureMessages ?? []).join('\n').slice(0, 500),
      })),
      skipped: results.filter((t) => t.status === 'skipped' || t.status === 'pending').length,
    };
    log(`   ${report.opTests.passed} passed, ${failed.length} failed, ${report.opTests.skipped} skipped`);
    save();
  }

  // ---- 3. ResNet-20 training, one pinned worker per GPU, all at once -------------------------------
  const steps = small ? 10 : 200;
  const batch = small ? 16 : 128;
  const plan = await scheduler.planSlots({ gpus: 'auto', workersPerGpu: 1, cpuWorkers: 1 });
  const gpuSlots = plan.slots.filter((s) => s.id.startsWith('gpu'));
  // Without a hardware GPU: one worker on the software adapter, unpinned.
  const slots = gpuSlots.length
    ? gpuSlots
    : [{ id: 'software', cudaVisibleDevices: '', device: adapters[0].name, env: {} }];
  log(
    `== ResNet-20, ${steps} steps at batch ${batch}, ${slots.length} worker(s) in parallel: ${plan.reason}`,
  );
  for (const w of plan.warnings) log(`   warning: ${w}`);
  const config = join(work, 'resnet20.json');
  writeFileSync(
    config,
    JSON.stringify({
      model: 'resnet20',
      dataset: { name: 'mnist', trainLimit: Math.min(8000, steps * batch), testLimit: small ? 64 : 1000 },
      training: { epochs: 1, batchSize: batch, lr: 0.05, maxSteps: steps },
      method: 'baseline',
      seed: 0,
    }),
  );
  const cli = join(root, 'apps', 'cli', 'bin', 'flatrank.mjs');
  const runs = await Promise.all(
    slots.map(async (slot) => {
      const s0 = Date.now();
      const r = await run(
        process.execPath,
        [cli, 'train', config, '--backend', 'webgpu', '--json', '--out', join(work, slot.id)],
        { CUDA_VISIBLE_DEVICES: slot.cudaVisibleDevices, CUDA_DEVICE_ORDER: 'PCI_BUS_ID', ...slot.env },
      );
      let summary = null;
      try {
        summary = JSON.parse(r.stdout.trim().split('\n').at(-1));
      } catch {
        // failed: the stderr tail says why
      }
      const started = /started on webgpu .*?\((WebGPU .*)\), node/.exec(r.stderr)?.[1] ?? null;
      return {
        slot: slot.id,
        pin: slot.env,
        device: started,
        exitCode: r.code,
        seconds: (Date.now() - s0) / 1000,
        steps: summary?.steps ?? null,
        accuracyFinal: summary?.accuracyFinal ?? null,
        trialWallSeconds: summary?.wallSeconds ?? null,
        // Whole trial (data, build, eval, latency included), so a floor on the training rate.
        imagesPerSecondWholeTrial: summary ? round((summary.steps * batch) / summary.wallSeconds) : null,
        error:
          r.code === 0
            ? null
            : r.stderr
                .split('\n')
                .filter((l) => l && !l.startsWith('Warning:'))
                .slice(-5)
                .join('\n'),
      };
    }),
  );
  report.training = runs;
  for (const r of runs)
    log(
      `   ${r.slot}: exit ${r.exitCode}, ${r.steps ?? '-'} steps in ${r.trialWallSeconds?.toFixed(1) ?? '-'} s (${r.imagesPerSecondWholeTrial ?? '-'} images/s over the whole trial), accuracy ${r.accuracyFinal ?? '-'} on ${r.device ?? '?'}${r.error ? `\n     ${r.error}` : ''}`,
    );
  save();

  // ---- 4. training bench rows ---------------------------------------------------------------------
  let torchCuda = null;
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      torchCuda =
        execFileSync(py, ['-c', 'import torch; print(torch.cuda.is_available())'], {
          encoding: 'utf8',
          timeout: 60_000,
          stdio: ['ignore', 'pipe', 'ignore'],
        }).trim() === 'True';
      break;
    } catch {
      // no torch for this python
    }
  }
  const nets = small ? 'resnet20' : 'resnet20,resnet32,resnet56';
  const benchJson = join(work, 'bench.json');
  const benchArgs = [
    join(root, 'scripts', 'bench.mjs'),
    'training',
    '--json',
    benchJson,
    '--backends=webgpu',
    `--nets=${nets}`,
    `--batch=${batch}`,
  ];
  if (small) benchArgs.push('--warmup=1', '--warmup-seconds=0', '--steps=2', '--seconds=0');
  benchArgs.push(torchCuda ? '--torch-device=cuda' : '--no-torch');
  log(
    `== training bench: webgpu ${nets} at batch ${batch}${torchCuda ? ', PyTorch CUDA beside it' : ' (PyTorch sees no GPU: no CUDA reference)'}`,
  );
  const b = await run(process.execPath, benchArgs);
  let rows = null;
  try {
    rows = JSON.parse(readFileSync(benchJson, 'utf8'));
  } catch {
    // recorded as failed
  }
  report.bench = {
    exitCode: b.code,
    torchCuda,
    rows,
    error:
      b.code === 0
        ? null
        : b.stderr
            .split('\n')
            .filter((l) => l && !l.startsWith('Warning:'))
            .slice(-5)
            .join('\n'),
  };
  for (const r of rows ?? [])
    log(
      `   ${r.net} ${r.backend}${r.adapter ? ` (${r.adapter})` : ''}: ${r.imagesPerSecond ?? '-'} images/s at batch ${r.batch ?? '-'}${r.note ? `; ${r.note}` : ''}`,
    );
  save();
} finally {
  rmSync(work, { recursive: true, force: true });
}
const ok =
  (report.opTests === null || (report.opTests.exitCode === 0 && report.opTests.failed.length === 0)) &&
  report.training.every((r) => r.exitCode === 0) &&
  report.bench?.exitCode === 0;
log(
  `gpu-check: ${ok ? 'ok' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(0)} s${softwareOnly ? ', on a SOFTWARE adapter (no GPU measured)' : ''}; wrote ${outFile}`,
);
process.exit(ok ? 0 : 1);

function round(x) {
  return Math.round(x * 100) / 100;
}
