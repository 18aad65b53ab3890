"""How long analysis takes: a 10,000-layer chain and a ResNet-50-sized DAG (target: well under 1 s per 10,000 layers).

Run: python bench/bench_analyze.py [--layers 10000] [--repeat 5]
Prints the median wall time of validation (spec → Network) and analysis (Network → Report), per layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import layercalc


def chain_spec(n_layers: int) -> dict:
    """conv 3×3 (pad 1) / batchnorm / relu repeated: shapes stay 16×32×32 so any depth is valid."""
    pattern = [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False},
               {"type": "batchnorm2d"}, {"type": "relu"}]
    return {"input": [16, 32, 32], "layers": [dict(pattern[i % 3]) for i in range(n_layers)]}


def resnet50_spec() -> dict:
    """torchvision's ResNet-50 written out flat: 53 convs, 53 BNs, 16 residual adds, relus — ~175 layers."""
    layers = [{"name": "conv1", "type": "conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3,
               "bias": False}, {"name": "bn1", "type": "batchnorm2d"}, {"name": "relu", "type": "relu"},
              {"name": "maxpool", "type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]
    previous = "maxpool"
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            s = stride if b == 0 else 1
            layers += [
                {"name": f"{p}.conv1", "type": "conv2d", "out_channels": width, "kernel_size": 1, "bias": False,
                 "inputs": [previous]},
                {"name": f"{p}.bn1", "type": "batchnorm2d"}, {"name": f"{p}.relu1", "type": "relu"},
                {"name": f"{p}.conv2", "type": "conv2d", "out_channels": width, "kernel_size": 3, "stride": s,
                 "padding": 1, "bias": False},
                {"name": f"{p}.bn2", "type": "batchnorm2d"}, {"name": f"{p}.relu2", "type": "relu"},
                {"name": f"{p}.conv3", "type": "conv2d", "out_channels": 4 * width, "kernel_size": 1, "bias": False},
                {"name": f"{p}.bn3", "type": "batchnorm2d"}]
            skip = previous
            if b == 0:
                layers += [{"name": f"{p}.downsample.0", "type": "conv2d", "out_channels": 4 * width,
                            "kernel_size": 1, "stride": s, "bias": False, "inputs": [previous]},
                           {"name": f"{p}.downsample.1", "type": "batchnorm2d"}]
                skip = f"{p}.downsample.1"
            layers += [{"name": f"{p}.add", "type": "add", "inputs": [f"{p}.bn3", skip]},
                       {"name": f"{p}.relu3", "type": "relu"}]
            previous = f"{p}.relu3"
    layers += [{"name": "avgpool", "type": "adaptive_avgpool2d", "output_size": 1},
               {"name": "flatten", "type": "flatten"},
               {"name": "fc", "type": "linear", "out_features": 1000}]
    return {"name": "resnet50", "input": [3, 224, 224], "layers": layers}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(label: str, spec: dict, repeat: int) -> None:
    load_s, network = timed(lambda: layercalc.load(spec), repeat)
    analyze_s, report = timed(network.analyze, repeat)
    n = len(report.layers)
    print(f"{label:<28} {n:>6} layers   load {load_s * 1e3:8.1f} ms   analyze {analyze_s * 1e3:8.1f} ms   "
          f"total {(load_s + analyze_s) * 1e3:8.1f} ms   {(load_s + analyze_s) / n * 1e6:6.1f} µs/layer")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench(f"chain of {args.layers}", chain_spec(args.layers), args.repeat)
    report = bench("ResNet-50 DAG (flat)", resnet50_spec(), args.repeat)
    print(f"  (ResNet-50 check: params {report.totals.params:,}, macs {report.totals.macs:,})")


if __name__ == "__main__":
    main()
