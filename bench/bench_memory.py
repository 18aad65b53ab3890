"""Does the executor's memory estimate bound the memory a run really allocates, for every layer kind?

Run: python bench/bench_memory.py [--mib 64] [--kinds gelu conv2d …]

For each layer type of ``layercalc.layers.LAYER_TYPES`` (and a few variants: grouped and depthwise convolution,
channels-last layout, float64, the tanh GELU), a small network is built whose input is about ``--mib`` MiB, so
the arrays dominate everything else the run allocates. The network runs once to warm up (first-use costs such as
erf's tables are not the run's), then again under tracemalloc (NumPy reports its array allocations to it) with no
input and no weights passed in: the executor makes both, so everything the run holds is counted on both sides.
Prints, per kind: the estimated peak, the measured peak and the ratio measured / (estimate + 256 KiB): the
estimate counts arrays, and the run also allocates a few tens of KiB of Python objects (the resolved steps, NumPy's
reduction buffers), which the allowance covers. Exits with status 1 if any ratio is above 1.0: a run the memory
limit accepts could then be killed for lack of memory.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tracemalloc

import layercalc
from layercalc import executor, kernels
from layercalc.layers import LAYER_TYPES

#: elements per example in each spatial rank, before scaling by the batch (channels, then spatial sizes)
#: what the run allocates besides arrays (Python objects of the resolved steps, NumPy's reduction buffers)
ALLOWANCE = 2**18

_SPATIAL = {1: [16, 4096], 2: [16, 64, 64], 3: [8, 16, 32, 32]}


def _rank(kind: str) -> int:
    return int(kind[-2]) if kind[-2:] in ("1d", "2d", "3d") else 2


def layer_specs() -> dict[str, tuple[list[int], list[dict], str]]:
    """``label → (input shape of one example, layers, layout)``: one network per layer kind (and variants)."""
    specs: dict[str, tuple[list[int], list[dict], str]] = {}
    for kind in LAYER_TYPES:
        rank = _rank(kind)
        shape = list(_SPATIAL[rank])
        channels = shape[0]
        if kind.startswith("conv_transpose"):
            layers = [{"type": kind, "out_channels": channels, "kernel_size": 4, "stride": 2, "padding": 1}]
        elif kind.startswith("conv"):
            layers = [{"type": kind, "out_channels": channels, "kernel_size": 3, "padding": 1}]
        elif kind.startswith("maxpool"):
            layers = [{"type": kind, "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}]
        elif kind.startswith("avgpool"):
            layers = [{"type": kind, "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}]
        elif kind.startswith("adaptive"):
            layers = [{"type": kind, "output_size": 7}]
        elif kind in ("linear", "dense"):
            shape = [1024]
            layers = [{"type": kind, "out_features": 1024}]
        elif kind == "reshape":
            layers = [{"type": kind, "shape": [shape[0] * shape[1], -1]}]
        elif kind == "zero_pad":
            layers = [{"type": kind, "padding": 2}]
        elif kind == "layernorm":
            layers = [{"type": kind, "normalized_shape": shape[1:]}]
        elif kind == "groupnorm":
            layers = [{"type": kind, "num_groups": 4}]
        elif kind in ("add", "mul", "concat"):
            layers = [{"name": "a", "type": "relu", "inputs": ["input"]},
                      {"name": "b", "type": "sigmoid", "inputs": ["input"]},
                      {"name": "merge", "type": kind, "inputs": ["a", "b"]}]
        elif kind == "softmax":
            layers = [{"type": kind, "dim": 1}]
        elif kind in ("multi_head_attention", "multihead_attention"):
            shape = [64, 64]                           # 64 positions of 64 features: 4·64·64 scores per example
            layers = [{"type": kind, "num_heads": 4, "causal": True}]
        elif kind in ("scaled_dot_product_attention", "matmul"):   # q = k = v: 16 heads of 64 positions, 64 features
            layers = [{"type": kind, "inputs": ["input"] * (3 if kind == "scaled_dot_product_attention" else 2)}]
        elif kind in ("embedding", "position_embedding"):
            shape = [4096]                             # token ids; 4096 rows of 64
            layers = [{"type": kind, "num_embeddings": 4096, "embedding_dim": 64}]
        elif kind == "parameter":
            layers = [{"type": kind, "shape": shape}]
        elif kind in ("lstm", "gru", "rnn", "simple_rnn"):
            shape = [256, 64]                          # 256 steps of 64 features
            layers = [{"type": kind, "hidden_size": 64, "num_layers": 2, "bidirectional": True}]
        elif kind in ("permute",):
            layers = [{"type": kind, "dims": [0, 2, 3, 1]}]
        elif kind == "transpose":
            layers = [{"type": kind, "dim0": 2, "dim1": 3}]
        elif kind == "slice":
            layers = [{"type": kind, "dim": 2, "start": 1, "step": 2}]
        elif kind == "select":
            layers = [{"type": kind, "dim": 2, "index": 0}]
        elif kind == "roll":
            layers = [{"type": kind, "shifts": 3, "dims": 3}]
        elif kind == "pixel_shuffle":
            layers = [{"type": kind, "upscale_factor": 2}]
        elif kind == "pixel_unshuffle":
            layers = [{"type": kind, "downscale_factor": 2}]
        elif kind == "channel_shuffle":
            layers = [{"type": kind, "groups": 4}]
        elif kind in ("mean", "sum"):
            layers = [{"type": kind, "dim": [2, 3]}]
        elif kind == "split":
            layers = [{"type": kind, "sizes": 5, "dim": 1}]
        elif kind == "chunk":
            layers = [{"type": kind, "chunks": 3, "dim": 1}]
        elif kind in ("upsample", "interpolate"):
            layers = [{"type": kind, "scale_factor": 2, "mode": "bilinear"}]
        else:
            layers = [{"type": kind}]
        specs[kind] = (shape, layers, "NCHW")
    specs["conv2d groups=4"] = ([16, 64, 64], [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                                "padding": 1, "groups": 4}], "NCHW")
    specs["conv2d depthwise"] = ([16, 64, 64], [{"type": "conv2d", "out_channels": 32, "kernel_size": 3,
                                                 "padding": 1, "groups": 16}], "NCHW")
    specs["conv2d stride 2"] = ([16, 64, 64], [{"type": "conv2d", "out_channels": 64, "kernel_size": 3,
                                                "stride": 2, "padding": 1}], "NCHW")
    specs["conv2d reflect"] = ([16, 64, 64], [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                               "padding": 1, "padding_mode": "reflect"}], "NCHW")
    specs["conv_transpose2d groups=2"] = ([16, 64, 64], [{"type": "conv_transpose2d", "out_channels": 16,
                                                          "kernel_size": 3, "stride": 2, "groups": 2}], "NCHW")
    specs["conv2d NHWC"] = ([64, 64, 16], [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                            "padding": 1}], "NHWC")
    specs["avgpool2d NHWC"] = ([64, 64, 16], [{"type": "avgpool2d", "kernel_size": 2}], "NHWC")
    specs["groupnorm NHWC"] = ([64, 64, 16], [{"type": "groupnorm", "num_groups": 4}], "NHWC")
    specs["layernorm NHWC"] = ([64, 64, 16], [{"type": "layernorm", "normalized_shape": [16]}], "NHWC")
    specs["adaptive_avgpool2d up"] = ([16, 64, 64], [{"type": "adaptive_avgpool2d", "output_size": 100}], "NCHW")
    specs["adaptive_maxpool2d up"] = ([16, 64, 64], [{"type": "adaptive_maxpool2d", "output_size": 100}], "NCHW")
    specs["adaptive_maxpool2d 63"] = ([16, 64, 64], [{"type": "adaptive_maxpool2d", "output_size": 63}], "NCHW")
    specs["multi_head_attention gqa"] = ([64, 64], [{"type": "multi_head_attention", "num_heads": 8,
                                                      "num_kv_heads": 2, "add_bias_kv": True}], "NCHW")
    specs["gelu tanh"] = ([16, 64, 64], [{"type": "gelu", "approximate": "tanh"}], "NCHW")
    specs["batchnorm2d batch stats"] = ([16, 64, 64], [{"type": "batchnorm2d", "track_running_stats": False}],
                                        "NCHW")
    specs["add 3 inputs"] = ([16, 64, 64], [{"name": "a", "type": "relu", "inputs": ["input"]},
                                            {"name": "b", "type": "sigmoid", "inputs": ["input"]},
                                            {"name": "merge", "type": "add", "inputs": ["a", "b", "input"]}],
                             "NCHW")
    return specs


def build(label: str, mib: float, dtype: str = "float32") -> layercalc.Network:
    """The network of ``label`` with a batch that makes its input about ``mib`` MiB."""
    shape, layers, layout = layer_specs()[label]
    itemsize = 8 if dtype == "float64" else 4
    batch = max(1, round(mib * 2**20 / (math.prod(shape) * itemsize)))
    return layercalc.load({"name": label, "input": shape, "batch": batch, "layout": layout, "dtype": dtype,
                           "layers": layers})


def measure(net, dtype=None) -> tuple[int, int]:
    """``(estimated peak, measured peak)`` in bytes of one run of ``net`` with the input and weights made by the
    run itself (tracemalloc: NumPy's allocations and the run's Python objects), after a warm-up run."""
    executor.run(net, dtype=dtype)                      # imports, erf's tables: first-use costs, not the run's
    kernels.drop_spare_workspace()                      # the run allocates its own im2col buffer
    gc.collect()
    estimates: list[executor.MemoryEstimate] = []
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        outputs = executor.execute(net, dtype=dtype, on_estimate=estimates.append)
        peak = tracemalloc.get_traced_memory()[1] - base
        del outputs
    finally:
        tracemalloc.stop()
    return estimates[0].total, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=64, help="input size of each network (MiB)")
    parser.add_argument("--kinds", nargs="+", default=None, help="labels to run (default: all)")
    args = parser.parse_args(argv)
    labels = args.kinds or list(layer_specs())
    runs = [(label, "float32") for label in labels]
    if args.kinds is None:
        runs += [("gelu", "float64"), ("softmax", "float64"), ("conv2d", "float64")]
    header = (f"{'layer kind':28s} {'dtype':8s} {'estimate MiB':>13s} {'measured MiB':>13s} "
              f"{'measured/(estimate + 256 KiB)':>31s}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for label, dtype in runs:
        net = build(label, args.mib, dtype)
        estimate, peak = measure(net)
        ratio = peak / (estimate + ALLOWANCE)
        worst = max(worst, ratio)
        flag = "   OVER THE ESTIMATE" if ratio > 1.0 else ""
        print(f"{label:28s} {dtype:8s} {estimate / 2**20:13.1f} {peak / 2**20:13.1f} {ratio:31.3f}{flag}",
              flush=True)
    verdict = "the estimate bounds every run" if worst <= 1.0 else "FAIL"
    print(f"\nlargest measured/(estimate + 256 KiB): {worst:.3f} ({verdict})")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
