"""How fast the NumPy executor runs real networks, next to PyTorch's CPU forward on the identical architecture.

Run: python bench/bench_executor.py [--repeat 5] [--models resnet50 vgg16] [--batches 1 8]

Same machine, same thread count (2) for both: torch.set_num_threads(2) and OpenBLAS/OpenMP threads = 2 (set before
NumPy is imported). Both sides get the same weights (torch's initialization, BatchNorm statistics randomized), and
the outputs are compared as a sanity check. Prints, per network and batch:
- median forward time of layercalc and of torch, run in turns (a slow spell of the machine hits both alike), and
  the ratio layercalc / torch (target ≤ 1.5);
- the conv layers' achieved GFLOP/s (2 · conv MACs / time spent in conv layers, timed per layer) as a % of a 2048²
  float32 matmul's GFLOP/s measured just before, round by round (target ≥ 60 %), and the same figure for torch's
  own Conv2d modules (timed with forward hooks) in the same round, so the target can be read against what the
  peer reaches on the same machine at the same moment;
- peak memory of the run (tracemalloc: NumPy's allocations, in a separate run) against the executor's estimate.
This is a benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import collections  # noqa: E402
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

def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating_times(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Wall times of each function, run in turns (a, b, a, b, …) after one warm-up each (first-touch page faults,
    BLAS buffers): a slow spell of the machine then hits both sides alike instead of one side's whole series."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            times[key].append(timed(fn))
    return times


def matmul_gflops(size: int = 2048, repeat: int = 3) -> float:
    """float32 GFLOP/s of a size² matrix product (the best of ``repeat`` after a warm-up)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    seconds = min(timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeat))
    return 2 * size ** 3 / seconds / 1e9


def conv_time(net, x, weights) -> tuple[float, int]:
    """(seconds spent in conv layers, their MACs) of one run, timed layer by layer: each layer's time runs from
    the end of the previous one (the first from the end of the set-up: analysis, weight checks, memory estimate,
    which are no layer's work)."""
    spent, macs, last = [0.0], [0], [0.0]

    def on_estimate(estimate):
        last[0] = time.perf_counter()

    def on_layer(done, total, step, output, layer_macs):
        now = time.perf_counter()
        if step.layer.type.startswith("conv"):
            spent[0] += now - last[0]
            macs[0] += layer_macs
        last[0] = now

    executor.execute(net, x=x, weights=weights, on_layer=on_layer, on_estimate=on_estimate)
    return spent[0], macs[0]


def torch_conv_time(module: nn.Module, xt: torch.Tensor) -> tuple[float, int]:
    """(seconds spent in torch's Conv2d modules, their MACs) of one forward pass, timed with forward pre/post hooks
    on every Conv2d: the same measurement for the peer, so the two conv rates compare."""
    spent, macs, started = [0.0], [0], {}

    def before(conv, inputs):
        started[conv] = time.perf_counter()

    def after(conv, inputs, output):
        spent[0] += time.perf_counter() - started[conv]
        macs[0] += output.numel() * conv.in_channels // conv.groups * math.prod(conv.kernel_size)

    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    handles = [h for m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    try:
        with torch.inference_mode():
            module(xt)
    finally:
        for handle in handles:
            handle.remove()
    return spent[0], macs[0]


class _RecordingNumPy:
    """Stands in for ``numpy`` inside ``layercalc.kernels`` during one run, recording the operand shapes of every
    ``np.matmul`` the kernels call (chunk by chunk, as performed) and passing everything through unchanged."""

    def __init__(self, log: list):
        self._log = log

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, *args, **kwargs):
        self._log.append((a.shape, b.shape, a.dtype))
        return np.matmul(a, b, *args, **kwargs)


def conv_products(net, x, weights) -> list[tuple]:
    """The matrix products of the conv layers of one run, as the executor performs them, in order:
    (rows, depth, columns, dtype, layer name)."""
    log: list = []
    products: list = []

    def on_layer(done, total, step, output, layer_macs):
        if step.layer.type.startswith("conv"):
            for a, b, dtype in log:
                products.append((math.prod(a[:-1]), a[-1], b[-1], dtype, step.name))
        log.clear()

    kernels.np = _RecordingNumPy(log)
    try:
        executor.execute(net, x=x, weights=weights, on_layer=on_layer)
    finally:
        kernels.np = np
    return products


def products_gflops(products) -> float:
    """GFLOP/s of the same matrix products run alone, each repeated with its operands hot in the cache (the best of
    three): what the BLAS reaches on the network's own shapes with nothing else to do, the ceiling of the conv
    rate for an im2col executor on this BLAS."""
    seconds, flops = 0.0, 0
    for (rows, depth, cols, dtype), count in collections.Counter(p[:4] for p in products).items():
        rng = np.random.default_rng(0)
        a = rng.standard_normal((rows, depth), dtype=dtype)
        b = rng.standard_normal((depth, cols), dtype=dtype)
        out = np.empty((rows, cols), dtype=dtype)
        np.matmul(a, b, out=out)
        seconds += count * min(timed(lambda a=a, b=b, out=out: np.matmul(a, b, out=out)) for _ in range(3))
        flops += count * 2 * rows * depth * cols
    return flops / seconds / 1e9


def products_in_sequence_gflops(products, repeat: int = 2) -> float:
    """GFLOP/s of the same matrix products run back to back in the network's order, with nothing between them (no
    im2col, no padding, no other layer): one right-hand matrix per conv layer, so that, as in a forward pass, the
    weights come from memory rather than the cache (ResNet-50's are 100 MB); the left operand and the result are
    shared per shape (in a forward pass they were just written, so they are in the cache). The best of ``repeat``:
    what an im2col executor could reach on this BLAS and this machine's memory if its copies cost nothing."""
    rng = np.random.default_rng(0)
    lefts, results, rights, plan = {}, {}, {}, []
    for rows, depth, cols, dtype, layer in products:
        if (rows, depth, dtype) not in lefts:
            lefts[rows, depth, dtype] = rng.standard_normal((rows, depth), dtype=dtype)
        if (rows, cols, dtype) not in results:
            results[rows, cols, dtype] = np.empty((rows, cols), dtype=dtype)
        if layer not in rights:
            rights[layer] = rng.standard_normal((depth, cols), dtype=dtype)
        plan.append((lefts[rows, depth, dtype], rights[layer], results[rows, cols, dtype]))

    def run():
        for a, b, out in plan:
            np.matmul(a, b, out=out)

    run()
    seconds = min(timed(run) for _ in range(repeat))
    return sum(2 * rows * depth * cols for rows, depth, cols, *_ in products) / seconds / 1e9


def conv_rates(net, x, weights, module, xt, rounds: int) -> tuple[list[float], ...]:
    """Per round: the 2048² matmul rate, then two conv-timed runs of each side, back to back, keeping the faster
    of each pair (the first one starts on caches the 48 MiB matmul has just flushed; inference in a loop runs on
    the caches its previous pass left). Returns (matmul GFLOP/s, our conv GFLOP/s, torch's conv GFLOP/s), one
    entry per round: each conv rate is read against the matmul rate of its own round, measured seconds before it,
    so the machine's slow and fast spells (which last seconds to minutes here) cancel out of the ratio. The fourth
    and fifth lists are the rates of our conv layers' own matrix products run alone (``products_gflops``) and in
    sequence (``products_in_sequence_gflops``), in the same rounds."""
    products = conv_products(net, x, weights)
    matmul, ours, theirs, alone, sequence = [], [], [], [], []
    for _ in range(rounds):
        matmul.append(matmul_gflops())
        alone.append(products_gflops(products))
        sequence.append(products_in_sequence_gflops(products))
        seconds, macs = min(conv_time(net, x, weights) for _ in range(2))
        torch_seconds, torch_macs = min(torch_conv_time(module, xt) for _ in range(2))
        assert torch_macs == macs, (torch_macs, macs)      # the same convolutions on both sides
        ours.append(2 * macs / seconds / 1e9)
        theirs.append(2 * torch_macs / torch_seconds / 1e9)
    return matmul, ours, theirs, alone, sequence


def spread(values) -> str:
    """'median (min–max)' of percentages."""
    return f"{statistics.median(values):.0f}% ({min(values):.0f}–{max(values):.0f})"


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
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, {args.repeat} rounds\n")
    header = (f"{'model':10s} {'batch':>5s} {'layercalc':>10s} {'torch':>9s} {'ratio':>6s} {'(range)':>11s} "
              f"{'matmul GF/s':>12s} {'conv GF/s':>10s} {'conv % matmul':>15s} {'torch conv % matmul':>20s} "
              f"{'products alone':>15s} {'in sequence':>15s} "
              f"{'peak MiB':>9s} {'estimate':>9s}")
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

            def torch_forward(module=module, xt=xt):
                with torch.inference_mode():
                    module(xt)

            def ours_forward(net=net, x=x, weights=weights):
                executor.run(net, x=x, weights=weights)

            times = alternating_times({"ours": ours_forward, "torch": torch_forward}, args.repeat)
            ours, theirs = statistics.median(times["ours"]), statistics.median(times["torch"])
            round_ratios = [a / b for a, b in zip(times["ours"], times["torch"])]
            matmul, conv, torch_conv, alone, sequence = conv_rates(net, x, weights, module, xt, args.repeat)
            ours_pct, torch_pct, alone_pct, sequence_pct = (
                [100 * rate / reference for rate, reference in zip(rates, matmul)]
                for rates in (conv, torch_conv, alone, sequence))
            peak, estimate = peak_memory(net, x, weights)
            held = sum(v.nbytes for v in weights.values())
            print(f"{name:10s} {batch:5d} {ours * 1000:8.1f}ms {theirs * 1000:7.1f}ms {ours / theirs:6.2f} "
                  f"{f'({min(round_ratios):.2f}–{max(round_ratios):.2f})':>11s} "
                  f"{statistics.median(matmul):12.1f} {statistics.median(conv):10.1f} {spread(ours_pct):>15s} "
                  f"{spread(torch_pct):>20s} {spread(alone_pct):>15s} {spread(sequence_pct):>15s} "
                  f"{peak / 2**20:9.1f} {(estimate.total - held) / 2**20:9.1f}"
                  f"   (max rel. diff vs torch {error:.1e})", flush=True)
    print("\nlayercalc, torch: median forward time over the rounds, the two run in turns; ratio = the ratio of the "
          "medians (range: of the rounds' ratios).\n"
          "conv % matmul: per round, 2 · conv MACs / time in conv layers (the faster of two back-to-back runs) against "
          "the 2048² matmul rate measured just before, median (min–max) over the rounds; the same for torch's Conv2d "
          "modules.\n"
          "products alone: the same matrix products our conv layers performed (chunk by chunk), each run alone with "
          "its operands hot in the cache, as a % of the same matmul rate: the BLAS's ceiling on these shapes; "
          "in sequence: the same products back to back in the network's order, one weight matrix per layer (so the "
          "weights come from memory, as in a forward pass) and nothing else between them: what an im2col executor "
          "would reach if its copies cost nothing.\n"
          "peak/estimate: bytes the run allocates beyond the weights and input it is given (tracemalloc), and the "
          "executor's estimate of the same.")


if __name__ == "__main__":
    main()
