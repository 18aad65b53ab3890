"""The executor benchmark's own measuring helpers (bench/bench_executor.py), so its printed figures stay honest: the
"products alone" ceiling replays exactly the matrix products the executor performed, and the two sides of a timing
run in turns. (The benchmark's figures themselves are measured by running it, never asserted here.)"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import layercalc
from layercalc import kernels

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "bench_executor.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_executor", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conv_products_are_the_products_the_executor_performed(bench):
    # a 3×3 conv, pad 1, on 1×3×10×10: 100 positions, depth 3·9 = 27, 8 columns; then a 1×1 stride-2 conv
    # (im2col of a strided view: 5·5 = 25 positions, depth 8, 4 columns); the linear layer is no conv.
    net = layercalc.load({"input": [3, 10, 10], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "relu"},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 1, "stride": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 5}]})
    products = bench.conv_products(net, None, None)
    assert [p[:3] for p in products] == [(100, 27, 8), (25, 8, 4)]
    assert products[0][-1] != products[1][-1]                           # each product names its layer
    assert kernels.np is np                              # the recording stand-in is gone after the run
    # a map too big for one im2col chunk (300·300 positions × depth 27 × 4 bytes > 8 MiB): one product per chunk
    # of rows, and the chunks' rows add up to the positions
    big = layercalc.load({"input": [3, 300, 300], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}]})
    chunked = bench.conv_products(big, None, None)
    assert 300 * 300 * 27 * 4 > kernels.WORKSPACE_BYTES and len(chunked) > 1
    assert all(depth == 27 and cols == 8 for _, depth, cols, *_ in chunked)
    assert len({layer for *_, layer in chunked}) == 1                 # all chunks of the one layer
    assert sum(rows for rows, *_ in chunked) == 300 * 300


def test_product_rates_are_rates(bench):
    products = [(64, 64, 64, np.dtype(np.float32), "a"), (64, 64, 64, np.dtype(np.float32), "b")]
    assert 0 < bench.products_gflops(products) < 1e5
    assert 0 < bench.products_in_sequence_gflops(products) < 1e5


def test_alternating_times_runs_the_sides_in_turns(bench):
    calls = []
    times = bench.alternating_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] + ["a", "b"] * 3                # one warm-up each, then a, b, a, b, …
    assert [len(v) for v in times.values()] == [3, 3]


def test_spread_reads_median_and_range(bench):
    assert bench.spread([50.0, 70.0, 61.0]) == "61% (50–70)"
