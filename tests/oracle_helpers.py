"""Shared plumbing for the PyTorch-oracle tests: run one layer through layercalc and through torch, and say
whether each side accepted it.

layercalc is driven the way a user drives it (a spec mapping → ``layercalc.load`` → ``.analyze()``), so errors
raised while loading (``SpecError``) and while analysing (``ShapeError``) both count as a rejection. Only a
``LayerCalcError`` counts: any other exception escaping layercalc is a bug and propagates.

torch is driven the same way as a user would: build the module, run a forward pass on zeros. Construction and
forward errors both count as a rejection.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import torch
from hypothesis import event
from torch.utils.flop_counter import FlopCounterMode

import layercalc
from layercalc import LayerCalcError

#: what torch raises for configurations it refuses (bad arguments at construction, bad shapes at forward)
TORCH_REJECTIONS = (RuntimeError, ValueError, IndexError)


class EmptyOutput(Exception):
    """torch returned a tensor with a zero-size dim (e.g. a transposed conv cropped to nothing) instead of raising;
    no network wants that, and layercalc refuses it, so the oracle counts it as a rejection."""


# --------------------------------------------------------------------------------------------------- layercalc

def network(input_shape, layers, batch: int = 1, layout: str = "NCHW") -> dict:
    """A spec mapping: ``input_shape`` excludes the batch dim, as in layercalc specs."""
    return {"input": list(input_shape), "batch": batch, "layout": layout,
            "layers": layers if isinstance(layers, list) else [layers]}


def analyze(spec: dict):
    """The full report of a spec (raises ``LayerCalcError`` when layercalc rejects it)."""
    return layercalc.load(spec).analyze()


def lc_layer(input_shape, layer: dict, batch: int = 1, layout: str = "NCHW", name: Optional[str] = None):
    """The report entry of one layer (the last one, or the one called ``name``), or the LayerCalcError raised."""
    try:
        report = analyze(network(input_shape, layer, batch, layout))
    except LayerCalcError as exc:
        return exc
    if name is None:
        return report.layers[-1]
    return next(entry for entry in report.layers if entry.name == name)


def resolved_geometry(input_shape, layer: dict, batch: int = 1) -> dict:
    """The resolved geometry (``pads``, ``crop``, …) layercalc computed for a one-layer network."""
    steps = layercalc.load(network(input_shape, layer, batch)).resolve()
    return steps[-1].facts.geometry


# ------------------------------------------------------------------------------------------------------- torch

@dataclass
class TorchResult:
    shape: list[int]
    params: int
    buffers: int      # running statistics only: num_batches_tracked is a counter, not state layercalc counts
    flops: int        # FlopCounterMode total (2 per multiply-accumulate of conv / linear; 0 for everything else)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_buffers(module: torch.nn.Module) -> int:
    return sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))


def torch_run(build: Callable[[], torch.nn.Module], x_shape, forward: Optional[Callable] = None):
    """Build the module and run it on zeros of ``x_shape`` inside a FlopCounterMode.

    Returns a ``TorchResult``, or the exception torch raised (construction or forward). ``forward(module, x)``
    replaces ``module(x)`` when the test needs extra work around the call (an explicit ``F.pad``, …).
    """
    try:
        module = build()
        module.eval()
        x = torch.zeros(*x_shape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            y = forward(module, x) if forward is not None else module(x)
    except TORCH_REJECTIONS as exc:
        return exc
    if 0 in y.shape:
        return EmptyOutput(f"torch returned an empty tensor of shape {list(y.shape)}")
    return TorchResult(list(y.shape), count_params(module), count_buffers(module), counter.get_total_flops())


def torch_shape(fn: Callable[[], torch.Tensor]):
    """The shape ``fn()`` returns, or the exception torch raised."""
    try:
        with torch.no_grad():
            shape = list(fn().shape)
    except TORCH_REJECTIONS as exc:
        return exc
    return EmptyOutput(f"torch returned an empty tensor of shape {shape}") if 0 in shape else shape


def accepted(outcome: Any) -> bool:
    return not isinstance(outcome, BaseException)


def assert_same_verdict(lc, th, context: Any) -> bool:
    """Both accept or both reject; returns True when both accepted (so the caller compares the figures)."""
    event("both accept" if accepted(lc) else f"both reject: {type(th).__name__}")  # --hypothesis-show-statistics
    assert accepted(lc) == accepted(th), (
        f"{context}\n  layercalc: {lc if not accepted(lc) else 'accepted ' + str(lc.output_shape)}"
        f"\n  torch:     {th if not accepted(th) else 'accepted ' + str(getattr(th, 'shape', th))}")
    return accepted(lc)


def hf_counts(model: torch.nn.Module, *inputs) -> tuple[int, int]:
    """A Hugging Face model's parameters (tied tensors once, as ``parameters()`` yields them) and FlopCounterMode's
    total for one forward pass on ``inputs`` (2 per multiply-accumulate of the matmuls; build the model with
    ``attn_implementation="eager"`` so attention runs as matmuls it counts)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def as_torch(value):
    """layercalc spec values → torch constructor values (lists become tuples)."""
    return tuple(value) if isinstance(value, list) else value


def numel(shape) -> int:
    return math.prod(shape)


def keras_on_torch():
    """Keras on the torch backend (a test oracle of the test extras), or skip the test."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs another backend here")
    return keras


def state_dict_maps_onto_layers(model: torch.nn.Module, report, label: str = "") -> None:
    """Every state_dict key ``<module>.<tensor>`` names a layercalc layer of ``report``, whose params and buffers
    agree (so the module's weights load into the executor as they are); ``label`` prefixes the messages."""
    layers = {entry.name: entry for entry in report.layers}
    per_layer_params: dict[str, int] = {}
    per_layer_buffers: dict[str, int] = {}
    for key, tensor in model.state_dict().items():
        module_name, _, attribute = key.rpartition(".")
        if attribute == "num_batches_tracked":       # a step counter, not counted by layercalc
            continue
        assert module_name in layers, f"{label}state_dict key {key!r} has no layer {module_name!r}"
        target = per_layer_buffers if attribute in ("running_mean", "running_var") else per_layer_params
        target[module_name] = target.get(module_name, 0) + tensor.numel()
    for name, entry in layers.items():
        assert (entry.params, entry.buffers) == (per_layer_params.get(name, 0), per_layer_buffers.get(name, 0)), name
