/**
 * `npm run bench -- training [--json FILE]`: training throughput (images/s) of one SGD-with-momentum
 * step (flatrank's MomentumSgd, as trials run it) at batch 128 for LeNet-5 (28x28x1) and ResNet-20 / ResNet-32 (32x32x3) on every installed
 * TF.js backend, side by side with PyTorch on CPU in the same run when `import torch` works
 * (Debian: `apt-get install python3-torch`; the bench installs nothing), and the ratio to PyTorch.
 *
 * Protocol (the same for every backend and for PyTorch): warm up for at least --warmup steps and
 * --warmup-seconds (the first steps build oneDNN primitives and JIT-compile; a three-step warm-up
 * under-reported LeNet-5 by 30 %), then time steps until both --steps and --seconds are reached
 * (at most --max-steps) and report the median step. Nets are measured one at a time: PyTorch, then
 * each backend, so that the machine's load is as alike as possible for the rows compared.
 *
 * Options (with '=': the root runner treats bare words as suite names):
 * --nets=lenet5,resnet20,resnet32  --backends=native,wasm,cpu  --batch=128  --warmup=3
 * --warmup-seconds=2  --steps=5  --seconds=3  --max-steps=300  --no-torch
 * --torch-device=cpu|cuda (PyTorch's device; cuda for the GPU check)
 * --compare-bn (adds native and wasm ResNet rows with variant 'tfjs-layers-bn': tfjs-layers' unfused
 * training batch norm, the peer of the fused kernels)  --cpu-resnets (time the plain cpu backend's ResNets at
 * batch 2; skipped by default: ~0.06 images/s, 35 s a step).
 *
 * webgpu rows name their adapter; on a software adapter (llvmpipe: Mesa's CPU rasteriser, what this
 * project's GPU-less machines have) they are timed like the cpu backend, at batch 16 for two steps,
 * and say that they measured no GPU.
 *
 * On a shared machine wall-clock rates drop with the load; each row also reports the rate per
 * second of this process's CPU time (user + system) and the 1-minute load average at the time.
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendName, ModelName } from '@flatrank/protocol';
import { activeWebgpuAdapter } from '@flatrank/backend-webgpu';
import {
  MomentumSgd,
  buildModel,
  checkTrainingMemory,
  initBackend,
  installedBackends,
  setFusedBatchNorm,
} from '@flatrank/trainers';

const run = promisify(execFile);

type Row = Record<string, string | number | boolean | null>;

const NET_INPUT: Partial<Record<ModelName, [number, number, number]>> = {
  lenet5: [28, 28, 1],
  resnet8: [32, 32, 3],
  resnet20: [32, 32, 3],
  resnet32: [32, 32, 3],
  resnet56: [32, 32, 3],
};

/** Floors the wasm backend must clear at batch 128 (measured reference: 1,108 / 22.7 images/s). */
const WASM_FLOORS: Partial<Record<ModelName, number>> = { lenet5: 1000, resnet20: 20 };

/** How long to warm up and to time (shared with the PyTorch script). */
interface Protocol {
  warmup: number;
  warmupSeconds: number;
  steps: number;
  seconds: number;
  maxSteps: number;
}

interface Options extends Protocol {
  nets: ModelName[];
  backends: BackendName[] | null;
  batch: number;
  torch: boolean;
  compareBn: boolean;
  cpuResnets: boolean;
  torchDevice: 'cpu' | 'cuda';
}

function parse(args: string[]): Options {
  const o: Options = {
    nets: ['lenet5', 'resnet20', 'resnet32'],
    backends: null,
    batch: 128,
    warmup: 3,
    warmupSeconds: 2,
    steps: 5,
    seconds: 3,
    maxSteps: 300,
    torch: true,
    compareBn: false,
    cpuResnets: false,
    torchDevice: 'cpu',
  };
  const num = (k: string, v: string, min: number): number => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < min)
      throw new Error(`training bench: ${k} must be a number >= ${min}, got '${v}'`);
    return x;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [k, inline] = a.includes('=')
      ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
      : [a, undefined];
    // The root runner passes only --flags through (bare words name suites): use --nets=a,b.
    const val = () => inline ?? (args[i + 1] && !args[i + 1]!.startsWith('--') ? args[++i]! : '');
    if (k === '--nets') o.nets = val().split(',').filter(Boolean) as ModelName[];
    else if (k === '--backends') o.backends = val().split(',').filter(Boolean) as BackendName[];
    else if (k === '--batch') o.batch = num(k, val(), 1);
    else if (k === '--warmup') o.warmup = num(k, val(), 0);
    else if (k === '--warmup-seconds') o.warmupSeconds = num(k, val(), 0);
    else if (k === '--steps') o.steps = num(k, val(), 1);
    else if (k === '--seconds') o.seconds = num(k, val(), 0);
    else if (k === '--max-steps') o.maxSteps = num(k, val(), 1);
    else if (k === '--no-torch') o.torch = false;
    else if (k === '--compare-bn') o.compareBn = true;
    else if (k === '--cpu-resnets') o.cpuResnets = true;
    else if (k === '--torch-device') {
      const d = val();
      if (d !== 'cpu' && d !== 'cuda')
        throw new Error(`training bench: --torch-device must be cpu or cuda, got '${d}'`);
      o.torchDevice = d;
    }
  }
  const unknown = o.nets.filter((n) => !NET_INPUT[n]);
  if (unknown.length)
    throw new Error(
      `training bench: --nets: unknown ${unknown.join(', ')}; allowed: ${Object.keys(NET_INPUT).join(', ')}`,
    );
  return o;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median wall and process-CPU seconds of one SGD-momentum step of `net` at `batch` on the active backend. */
async function timeSteps(
  net: ModelName,
  batch: number,
  p: Protocol,
): Promise<{ wall: number; cpu: number; steps: number }> {
  const shape = NET_INPUT[net]!;
  const model = buildModel(net, { inputShape: shape, numClasses: 10, seed: 0 });
  checkTrainingMemory(model, batch, { modelName: net });
  const x = tf.randomNormal([batch, ...shape], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', 2), 10);
  // flatrank's own optimizer (what trials train with), like PyTorch's SGD below: lr 0.01,
  // momentum 0.9, no weight decay.
  const vars = model.trainableWeights.map((w) => ({
    variable: w.read() as tf.Variable,
    decay: false,
    name: w.originalName,
  }));
  const opt = new MomentumSgd(vars, { momentum: 0.9, nesterov: false, weightDecay: 0 });
  const step = async (): Promise<void> => {
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
      vars.map((v) => v.variable),
    );
    opt.step(grads, 0.01);
    await value.data(); // forces the step to finish on async backends
    tf.dispose([value, ...Object.values(grads)]);
  };
  try {
    const w0 = performance.now();
    for (let i = 0; i < p.warmup || (performance.now() - w0) / 1000 < p.warmupSeconds; i++) await step();
    const wall: number[] = [];
    const cpu: number[] = [];
    const t0 = performance.now();
    while (
      wall.length < p.maxSteps &&
      (wall.length < p.steps || (performance.now() - t0) / 1000 < p.seconds)
    ) {
      const s0 = performance.now();
      const c0 = process.cpuUsage();
      await step();
      const c = process.cpuUsage(c0);
      wall.push((performance.now() - s0) / 1000);
      cpu.push((c.user + c.system) / 1e6);
    }
    return { wall: median(wall), cpu: median(cpu), steps: wall.length };
  } finally {
    tf.dispose([x, y]);
    opt.dispose();
    model.dispose();
  }
}

// ---- PyTorch reference (same nets, same protocol) ----------------------------------------------

const TORCH_SCRIPT = String.raw`
import json, os, sys, time, statistics
import torch, torch.nn as nn, torch.nn.functional as F
# Same cores as our backends: Debian's torch defaults to 1 thread here; the comparison is at 2.
torch.set_num_threads(os.cpu_count() or 1)
nets, batch = sys.argv[1].split(','), int(sys.argv[2])
warmup, warmup_s, steps, seconds, max_steps = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
dev = torch.device(sys.argv[8] if len(sys.argv) > 8 else 'cpu')
sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
torch.manual_seed(0)
class LeNet5(nn.Module):
    def __init__(s):
        super().__init__(); s.c1 = nn.Conv2d(1, 6, 5, padding=2); s.c2 = nn.Conv2d(6, 16, 5)
        s.f1 = nn.Linear(400, 120); s.f2 = nn.Linear(120, 84); s.f3 = nn.Linear(84, 10)
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.c1(x)), 2); x = F.max_pool2d(F.relu(s.c2(x)), 2)
        x = x.flatten(1); return s.f3(F.relu(s.f2(F.relu(s.f1(x)))))
class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.pad = cout - cin; s.stride = stride
    def forward(s, x):
        out = s.b2(s.c2(F.relu(s.b1(s.c1(x)))))
        sc = x
        if s.stride != 1 or s.pad:  # option A: subsample + zero channels
            sc = F.pad(x[:, :, ::s.stride, ::s.stride], (0, 0, 0, 0, s.pad // 2, s.pad - s.pad // 2))
        return F.relu(out + sc)
class ResNet(nn.Module):
    def __init__(s, n):
        super().__init__(); s.c = nn.Conv2d(3, 16, 3, 1, 1, bias=False); s.b = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, w in enumerate([16, 32, 64]):
            for k in range(n):
                layers.append(Block(cin, w, 2 if i > 0 and k == 0 else 1)); cin = w
        s.layers = nn.Sequential(*layers); s.fc = nn.Linear(64, 10)
    def forward(s, x):
        x = s.layers(F.relu(s.b(s.c(x)))); return s.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
make = {'lenet5': (LeNet5, (1, 28, 28)), 'resnet8': (lambda: ResNet(1), (3, 32, 32)), 'resnet20': (lambda: ResNet(3), (3, 32, 32)),
        'resnet32': (lambda: ResNet(5), (3, 32, 32)), 'resnet56': (lambda: ResNet(9), (3, 32, 32))}
for net in nets:
    if net not in make: continue
    ctor, shape = make[net]; m = ctor().to(dev); m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=dev); y = torch.randint(0, 10, (batch,), device=dev)
    def step():
        opt.zero_grad(); loss = F.cross_entropy(m(x), y); loss.backward(); opt.step(); sync()
    w0 = time.perf_counter(); i = 0
    while i < warmup or time.perf_counter() - w0 < warmup_s: step(); i += 1
    ts, cs = [], []; t0 = time.perf_counter()
    while len(ts) < max_steps and (len(ts) < steps or time.perf_counter() - t0 < seconds):
        s0, c0 = time.perf_counter(), time.process_time(); step()
        ts.append(time.perf_counter() - s0); cs.append(time.process_time() - c0)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'
    print(json.dumps({'net': net, 'seconds': statistics.median(ts), 'cpuSeconds': statistics.median(cs), 'steps': len(ts), 'threads': torch.get_num_threads(), 'version': torch.__version__, 'device': name}), flush=True)
`;

interface TorchResult {
  seconds: number;
  steps: number;
  cpuSeconds: number;
  threads: number;
  version: string;
  device: string;
}

/** The first python3 that can import torch (pyenv shims often cannot; Debian's /usr/bin/python3 may). */
async function findTorchPython(): Promise<string | null> {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      await run(py, ['-c', 'import torch'], { timeout: 60_000 });
      return py;
    } catch {
      // try the next one
    }
  }
  return null;
}

async function torchRows(
  python: string,
  nets: ModelName[],
  o: Options,
): Promise<Map<ModelName, TorchResult>> {
  const { stdout } = await run(
    python,
    [
      '-c',
      TORCH_SCRIPT,
      nets.join(','),
      String(o.batch),
      ...[o.warmup, o.warmupSeconds, o.steps, o.seconds, o.maxSteps].map(String),
      o.torchDevice,
    ],
    {
      timeout: 30 * 60_000,
      maxBuffer: 1 << 20,
    },
  );
  const out = new Map<ModelName, TorchResult>();
  for (const line of stdout.split('\n').filter((l) => l.startsWith('{'))) {
    const r = JSON.parse(line) as TorchResult & { net: ModelName };
    out.set(r.net, r);
  }
  return out;
}

export default {
  name: 'training',
  description:
    'training images/s (one SGD-momentum step, median after a timed warm-up) per net x installed backend, with PyTorch CPU side by side and the ratio when python3-torch is installed',
  async run(args: string[]): Promise<Row[]> {
    const o = parse(args);
    const rows: Row[] = [];
    const installed = await installedBackends();
    const backends = (o.backends ?? installed).filter((b) => installed.includes(b));
    const python = o.torch ? await findTorchPython() : null;
    let torchNote: string | null = o.torch
      ? python
        ? null
        : 'PyTorch not importable by python3 or /usr/bin/python3 (apt-get install python3-torch)'
      : null;

    for (const net of o.nets) {
      let t: TorchResult | null = null;
      if (python) {
        try {
          t = (await torchRows(python, [net], o)).get(net) ?? null;
        } catch (e) {
          torchNote = `PyTorch run failed: ${(e as Error).message.split('\n')[0]}`;
        }
      }
      const torchIps = t ? o.batch / t.seconds : null;
      const torchIpcs = t ? o.batch / t.cpuSeconds : null;
      if (o.torch)
        rows.push({
          net,
          backend: 'pytorch',
          variant: null,
          version: t?.version ?? null,
          threads: t?.threads ?? null,
          inputShape: NET_INPUT[net]!.join('x'),
          batch: o.batch,
          imagesPerSecond: torchIps === null ? null : round(torchIps),
          imagesPerCpuSecond: torchIpcs === null ? null : round(torchIpcs),
          msPerStep: t ? round(t.seconds * 1000) : null,
          steps: t?.steps ?? null,
          loadAverage: round(loadavg()[0]!),
          pytorchImagesPerSecond: torchIps === null ? null : round(torchIps),
          ratioToPytorch: t ? 1 : null,
          ratioToPytorchCpuTime: t ? 1 : null,
          floor: null,
          meetsFloor: null,
          note: t
            ? `reference (same nets, option-A shortcuts, NCHW) on ${t.device}`
            : (torchNote ?? 'not measured'),
        });
      for (const backend of backends) {
        const info = await initBackend({ backend });
        const variants: Array<string | null> =
          (backend === 'native' || backend === 'wasm') && o.compareBn && net !== 'lenet5'
            ? [null, 'tfjs-layers-bn']
            : [null];
        for (const variant of variants) {
          const base: Row = {
            net,
            backend,
            variant,
            version: info.version,
            threads: info.threads,
            inputShape: NET_INPUT[net]!.join('x'),
          };
          // A software WebGPU adapter (llvmpipe) rasterises on the CPU: timed like the cpu backend.
          const adapter = backend === 'webgpu' ? activeWebgpuAdapter() : null;
          if (adapter) base['adapter'] = adapter.name;
          const software = adapter?.software ?? null;
          // The plain cpu backend is ~100x slower than wasm: a small batch, one step, ResNets only on request.
          const slow = backend === 'cpu' || software !== null;
          if (backend === 'cpu' && net !== 'lenet5' && !o.cpuResnets) {
            rows.push({
              ...base,
              batch: null,
              imagesPerSecond: null,
              note: 'skipped: the cpu backend trains a ResNet at ~0.06 images/s (35 s a step at batch 2); --cpu-resnets times it',
            });
            continue;
          }
          const batch = software ? Math.min(o.batch, 16) : slow ? (net === 'lenet5' ? 16 : 2) : o.batch;
          const protocol: Protocol = slow
            ? { warmup: 1, warmupSeconds: 0, steps: 2, seconds: 0, maxSteps: 2 }
            : o;
          // The tfjs-layers variant turns the fused kernel off for its row; the main rows keep the
          // process's setting (FLATRANK_FUSED_BATCH_NORM=0 turns it off everywhere).
          const fusedBefore = variant === 'tfjs-layers-bn' ? setFusedBatchNorm(false) : null;
          try {
            const s = await timeSteps(net, batch, protocol);
            const ips = batch / s.wall;
            const ipcs = batch / s.cpu;
            const floor = backend === 'wasm' && batch === 128 ? (WASM_FLOORS[net] ?? null) : null;
            const comparable = batch === o.batch;
            rows.push({
              ...base,
              batch,
              imagesPerSecond: round(ips),
              imagesPerCpuSecond: round(ipcs),
              msPerStep: round(s.wall * 1000),
              steps: s.steps,
              loadAverage: round(loadavg()[0]!),
              pytorchImagesPerSecond: torchIps === null ? null : round(torchIps),
              ratioToPytorch: torchIps !== null && comparable ? round(ips / torchIps) : null,
              ratioToPytorchCpuTime: torchIpcs !== null && comparable ? round(ipcs / torchIpcs) : null,
              floor,
              meetsFloor: floor === null ? null : ips >= floor,
              note: software
                ? `software adapter ${adapter!.name} (${software}): measures the CPU rasteriser, not a GPU; batch ${batch}, ${s.steps} steps`
                : comparable
                  ? null
                  : `batch ${batch}, ${s.steps} steps (the cpu backend is too slow for ${o.batch})`,
            });
          } catch (e) {
            rows.push({ ...base, batch, imagesPerSecond: null, note: `failed: ${(e as Error).message}` });
          } finally {
            if (fusedBefore !== null) setFusedBatchNorm(fusedBefore);
          }
          console.error(
            `training bench: ${net} on ${backend}${variant ? ` (${variant})` : ''}: ${JSON.stringify(rows.at(-1)?.['imagesPerSecond'])} images/s` +
              (torchIps !== null ? ` (PyTorch ${round(torchIps)})` : ''),
          );
        }
      }
    }
    return rows;
  },
};

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
