# The PyTorch peer of the training bench (training.ts): one SGD-momentum training step of the same
# net (same layers, option-A shortcuts, NCHW) at the same batch, under the same warm-up and timing
# protocol, in a process of its own. Prints one result line (the prefix the bench looks for, then
# JSON): every timed step's wall and process-CPU seconds, the threads, the version and the peak RSS.
#   python3 torch-peer.py NET BATCH WARMUP WARMUP_S STEPS SECONDS MAX_STEPS [DEVICE]
import json, os, resource, sys, time

PREFIX = '@@flatrank-bench-result '
try:
    import torch, torch.nn as nn, torch.nn.functional as F
except Exception as e:  # reported as the row's note
    print(PREFIX + json.dumps({'ok': False, 'error': f'import torch failed: {e}'}), flush=True)
    sys.exit(1)

# Same cores as the flatrank backends: Debian's torch defaults to 1 thread here; compare at all.
torch.set_num_threads(os.cpu_count() or 1)
net, batch = sys.argv[1], int(sys.argv[2])
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


make = {'lenet5': (LeNet5, (1, 28, 28)), 'resnet8': (lambda: ResNet(1), (3, 32, 32)),
        'resnet20': (lambda: ResNet(3), (3, 32, 32)), 'resnet32': (lambda: ResNet(5), (3, 32, 32)),
        'resnet56': (lambda: ResNet(9), (3, 32, 32))}
if net not in make:
    print(PREFIX + json.dumps({'ok': False, 'error': f'no PyTorch peer for {net}'}), flush=True)
    sys.exit(1)
ctor, shape = make[net]; m = ctor().to(dev); m.train()
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, *shape, device=dev); y = torch.randint(0, 10, (batch,), device=dev)


def step():
    opt.zero_grad(); loss = F.cross_entropy(m(x), y); loss.backward(); opt.step(); sync()


w0 = time.perf_counter(); i = 0
while i < warmup or time.perf_counter() - w0 < warmup_s:
    step(); i += 1
ts, cs = [], []; t0 = time.perf_counter()
while len(ts) < max_steps and (len(ts) < steps or time.perf_counter() - t0 < seconds):
    s0, c0 = time.perf_counter(), time.process_time(); step()
    ts.append(time.perf_counter() - s0); cs.append(time.process_time() - c0)
name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'
# ru_maxrss is KiB on Linux but bytes on macOS; the bench reads KiB.
max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == 'darwin' else 1)
print(PREFIX + json.dumps({'ok': True, 'result': {
    'stepSeconds': ts, 'cpuSeconds': cs, 'threads': torch.get_num_threads(), 'version': torch.__version__,
    'device': name, 'batch': batch, 'maxRssKb': max_rss_kb}}), flush=True)
