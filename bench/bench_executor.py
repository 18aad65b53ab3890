"""How fast the NumPy executor runs real networks, next to PyTorch's CPU forward on the identical architecture.

Run: python bench/bench_executor.py [--repeat 5] [--models resnet50 vgg16] [--batches 1 8]

Same machine, same thread count (2) for both: torch.set_num_threads(2) and OpenBLAS/OpenMP threads = 2 (set before
NumPy is imported). Both sides get the same weights (torch's initialization, BatchNorm statistics randomized), and
the outputs are compared as a sanity check. Prints, per network and batch:
- median forward time of layercalc and of torch, and the ratio layercalc / torch (target ≤ 1.5);
- the conv layers' achieved GFLOP/s (2 · conv MACs / time spent in conv layers, timed per layer in a separate run)
  next to a 2048² float32 matmul's GFLOP/s measured in the same run, at its start and end (target ≥ 60 % of the
  higher of the two), and the same figure for torch's own Conv2d modules (timed with forward hooks), so the
  target can be read against what the peer reaches on the same machine;
- peak memory of the run (tracemalloc: NumPy's allocations, in a separate run) against the executor's estimate.
This is a benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import layercalc  # noqa: E402
from layercalc import executor, kernels  # noqa: E402

torch.set_num_threads(2)


# --------------------------------------------------------------------------------- torch twins of the zoo models

class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, down: bool):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False),
                                        nn.BatchNorm2d(4 * width)) if down else None

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (v1.5), same module names."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1, b == 0))
                cin = 4 * width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG16(nn.Module):
    """torchvision's VGG-16 (configuration D), same module names."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


TORCH_MODELS = {"resnet50": ResNet50, "vgg16": VGG16}


def torch_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = TORCH_MODELS[name]()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def layercalc_model(name: str) -> layercalc.Network:
    return layercalc.load(f"zoo:{name}")


# ------------------------------------------------------------------------------------------------- measurements

def median_time(fn, repeat: int) -> float:
    fn()                                    # warm-up (first-touch page faults, BLAS buffers)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(size: int = 2048, repeat: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    seconds = min(median_time(lambda: np.matmul(a, b, out=out), repeat) for _ in range(2))
    return 2 * size ** 3 / seconds / 1e9


def conv_rate(net, x, weights) -> tuple[float, float, int]:
    """(seconds spent in conv layers, total seconds, conv MACs) of one run, timed layer by layer: each layer's
    time runs from the end of the previous one (the first from the end of the set-up: analysis, weight checks,
    memory estimate, which are no layer's work)."""
    spent = {"conv": 0.0, "all": 0.0}
    macs = [0]
    last = [0.0]

    def on_estimate(estimate):
        last[0] = time.perf_counter()

    def on_layer(done, total, step, output, layer_macs):
        now = time.perf_counter()
        if step.layer.type.startswith("conv"):
            spent["conv"] += now - last[0]
            macs[0] += layer_macs
        last[0] = now

    executor.execute(net, x=x, weights=weights)          # warm-up
    best = None
    for _ in range(3):
        spent.update(conv=0.0)
        macs[0] = 0
        start = time.perf_counter()
        executor.execute(net, x=x, weights=weights, on_layer=on_layer, on_estimate=on_estimate)
        total = time.perf_counter() - start
        if best is None or spent["conv"] < best[0]:
            best = (spent["conv"], total, macs[0])
    return best


def torch_conv_rate(module: nn.Module, xt: torch.Tensor) -> tuple[float, int]:
    """(seconds spent in torch's Conv2d modules, their MACs) of one forward pass, timed with forward pre/post
    hooks on every Conv2d, the best of three: the same measurement for the peer, so the two conv rates compare."""
    spent, macs, started = [0.0], [0], {}

    def before(conv, inputs):
        started[conv] = time.perf_counter()

    def after(conv, inputs, output):
        spent[0] += time.perf_counter() - started[conv]
        macs[0] += output.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size)

    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    handles = [h for m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    best = None
    try:
        with torch.inference_mode():
            module(xt)                                      # warm-up
            for _ in range(3):
                spent[0], macs[0] = 0.0, 0
                module(xt)
                if best is None or spent[0] < best[0]:
                    best = (spent[0], macs[0])
    finally:
        for handle in handles:
            handle.remove()
    return best


def peak_memory(net, x, weights) -> tuple[int, executor.MemoryEstimate]:
    """NumPy bytes allocated by one run at its peak (tracemalloc), and the executor's estimate of the same."""
    estimates = []
    kernels.drop_spare_workspace()      # the run allocates its own im2col buffer, so the peak includes it
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        executor.execute(net, x=x, weights=weights, on_estimate=estimates.append)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, estimates[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()

    print(f"numpy {np.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    rate = matmul_gflops()
    print(f"float32 matmul 2048²: {rate:.1f} GFLOP/s (measured again at the end; % matmul uses the higher)\n")
    rows = []
    header = (f"{'model':10s} {'batch':>5s} {'layercalc':>10s} {'torch':>9s} {'ratio':>6s} {'conv GFLOP/s':>13s} "
              f"{'% matmul':>9s} {'torch conv':>11s} {'% matmul':>9s} {'peak MiB':>9s} {'estimate':>9s}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        module = torch_model(name)
        weights = {k: v.numpy() for k, v in module.state_dict().items()}
        for batch in args.batches:
            net = layercalc_model(name).model_copy(update={"batch": batch})
            x = np.random.default_rng(batch).standard_normal(net.input_shape, dtype=np.float32)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                expected = module(xt).numpy()
            got = executor.run(net, x=x, weights=weights)
            error = float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-30))
            ours = median_time(lambda: executor.run(net, x=x, weights=weights), args.repeat)
            with torch.inference_mode():
                theirs = median_time(lambda: module(xt), args.repeat)
            conv_seconds, _, conv_macs = conv_rate(net, x, weights)
            conv_gflops = 2 * conv_macs / conv_seconds / 1e9
            torch_seconds, torch_macs = torch_conv_rate(module, xt)
            assert torch_macs == conv_macs, (torch_macs, conv_macs)   # the same convolutions on both sides
            torch_gflops = 2 * torch_macs / torch_seconds / 1e9
            peak, estimate = peak_memory(net, x, weights)
            held = sum(v.nbytes for v in weights.values())
            print(f"{name:10s} {batch:5d} {ours * 1000:8.1f}ms {theirs * 1000:7.1f}ms {ours / theirs:6.2f} "
                  f"{conv_gflops:13.1f} {100 * conv_gflops / rate:8.0f}% {torch_gflops:11.1f} "
                  f"{100 * torch_gflops / rate:8.0f}% {peak / 2**20:9.1f} "
                  f"{(estimate.total - held) / 2**20:9.1f}   (max rel. diff vs torch {error:.1e})", flush=True)
            rows.append((name, batch, conv_gflops, torch_gflops))
    again = matmul_gflops()
    print(f"\nfloat32 matmul 2048² at the end: {again:.1f} GFLOP/s")
    if again > rate:
        rate = again
        print("conv GFLOP/s as % of the higher matmul rate: "
              + ", ".join(f"{name} b{batch} {100 * g / rate:.0f}% (torch {100 * tg / rate:.0f}%)"
                          for name, batch, g, tg in rows))
    print("peak/estimate: bytes the run allocates beyond the weights and input it is given (tracemalloc), and the "
          "executor's estimate of the same.")


if __name__ == "__main__":
    main()
