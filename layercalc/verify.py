"""``layercalc verify``: run the real forward pass and check the analysis layer by layer.

For every layer, the output shape the executor produced is compared with the report's ``output_shape``, and the
multiply-accumulates the executor performed (counted from the dimensions of the matrix products and multiplies it
actually ran, see :mod:`layercalc.kernels`) with the report's ``macs``. The executor applies the analysis' resolved
geometry (padding, crop), but computes every size and count from the arrays, so a wrong formula in the analysis
shows up as a mismatch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from . import executor
from .sources import read_weights
from .weights import WeightSources, weight_sources


@dataclass
class LayerCheck:
    index: int
    name: str
    type: str
    expected_shape: list[int]
    actual_shape: list[int]
    expected_macs: int
    actual_macs: int

    @property
    def shape_ok(self) -> bool:
        return self.expected_shape == self.actual_shape

    @property
    def macs_ok(self) -> bool:
        return self.expected_macs == self.actual_macs

    @property
    def ok(self) -> bool:
        return self.shape_ok and self.macs_ok


@dataclass
class VerifyResult:
    ok: bool
    seconds: float
    checks: list[LayerCheck] = field(default_factory=list)
    #: the executor's memory estimate for the run (what ``--max-memory`` was compared with)
    estimate: Optional[executor.MemoryEstimate] = None
    #: layers in the report that the run never reached (empty unless something is badly wrong)
    missing: list[str] = field(default_factory=list)
    #: which layers ran with the weights given and which with random ones (``weights.describe()``: one line)
    weights: Optional[WeightSources] = None

    @property
    def failures(self) -> list[LayerCheck]:
        return [c for c in self.checks if not c.ok]


def verify(network, weights=None, seed: int = 0, progress: Optional[Callable[[int, int, str], None]] = None,
           dtype=None, max_memory=None, x=None) -> VerifyResult:
    """Execute ``network`` and compare every layer's output shape and MACs with ``network.analyze()``.

    ``progress(done, total, layer_name)`` is called after each layer. Raises what the executor raises (a
    ``ResourceError`` when the run would not fit in memory, a ``SpecError`` for bad weights, a
    ``NumericError`` when a layer's output overflows to inf/NaN: never a pass on meaningless numbers).
    """
    seed = executor.check_seed(seed)
    run_dtype = executor.resolve_dtype(network, dtype)
    limit = executor.memory_limit(max_memory)
    if x is not None:
        network, _ = executor._with_input(network, x, run_dtype)
    steps = network.resolve()                          # once: for the weights, the report and the run
    source = None
    if isinstance(weights, (str, os.PathLike)):        # read once, checked against the network's layers
        source = os.fspath(weights)
        weights = read_weights(weights, steps, network.channels_last, limit)
    sources = weight_sources(steps, network.channels_last, weights, seed, source)
    report = network.analyze(steps)
    expected = {entry.name: entry for entry in report.layers}
    checks: list[LayerCheck] = []

    def on_layer(done: int, total: int, step, output, macs: int) -> None:
        entry = expected[step.name]
        # a layer with several outputs: every one checked; the first that differs is the one reported
        wanted = entry.output_shapes or [entry.output_shape]
        made = [list(array.shape) for array in (output if entry.output_shapes else [output])]
        pair = next(((w, m) for w, m in zip(wanted, made) if w != m), (wanted[0], made[0]))
        if len(made) != len(wanted):
            pair = (wanted, made)
        checks.append(LayerCheck(index=step.index, name=step.name, type=step.layer.type_name,
                                 expected_shape=list(pair[0]), actual_shape=list(pair[1]),
                                 expected_macs=entry.macs, actual_macs=macs))
        if progress is not None:
            progress(done, total, step.name)

    estimates: list[executor.MemoryEstimate] = []
    start = time.perf_counter()
    executor.execute(network, x=x, weights=weights, seed=seed, dtype=dtype, max_memory=limit,
                     on_layer=on_layer, on_estimate=estimates.append, steps=steps)
    seconds = time.perf_counter() - start
    checked = {c.name for c in checks}
    missing = [entry.name for entry in report.layers if entry.name not in checked]
    return VerifyResult(ok=not missing and all(c.ok for c in checks), seconds=seconds, checks=checks,
                        estimate=estimates[0] if estimates else None, missing=missing, weights=sources)
