"""Receptive fields against PyTorch: which input positions each output position really depends on.

The oracle: a chain of linear 1-d layers (conv and transposed conv with all-one weights and no bias, average
pooling, adaptive average pooling) run on the identity matrix as a batch of one-hot inputs. Output ``o`` of
example ``i`` is non-zero exactly when output position ``o`` depends on input position ``i`` (every weight is
positive, so nothing cancels). The receptive field is the span, first to last, of those positions, and the
largest span over all output positions is what layercalc must report — or, past a layer whose outputs are not
evenly spaced over its input, report nothing and say why.

Examples are derandomized; ``LAYERCALC_ORACLE_SCALE=20`` runs 20 times more, freshly random.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import LayerCalcError

SCALE = int(os.environ.get("LAYERCALC_ORACLE_SCALE", "1"))


def examples(count: int) -> settings:
    return settings(max_examples=count * SCALE, derandomize=SCALE == 1, database=None, deadline=None)


def torch_layer(spec: dict) -> nn.Module:
    """The torch module of a layercalc layer spec (layercalc's defaults where the spec leaves a field out)."""
    kind, k = spec["type"], spec.get("kernel_size")
    padding, dilation = spec.get("padding", 0), spec.get("dilation", 1)
    if kind == "conv1d":
        module = nn.Conv1d(1, 1, k, spec.get("stride", 1), padding, dilation, bias=False)
    elif kind == "conv_transpose1d":
        module = nn.ConvTranspose1d(1, 1, k, spec.get("stride", 1), padding, dilation=dilation, bias=False)
    elif kind == "avgpool1d":
        return nn.AvgPool1d(k, spec.get("stride", k), padding)
    elif kind == "adaptive_avgpool1d":
        return nn.AdaptiveAvgPool1d(spec["output_size"])
    else:
        raise AssertionError(kind)
    nn.init.ones_(module.weight)
    return module


def measured_spans(length: int, layers: list[dict]) -> list[int]:
    """Per output position: last − first + 1 of the input positions it depends on (0 if none)."""
    with torch.no_grad():
        y = nn.Sequential(*map(torch_layer, layers)).double()(torch.eye(length, dtype=torch.float64)[:, None, :])
    depends = y[:, 0, :] != 0                                    # [input position, output position]
    spans = []
    for o in range(depends.shape[1]):
        rows = depends[:, o].nonzero().flatten()
        spans.append(int(rows.max() - rows.min() + 1) if len(rows) else 0)
    return spans


@st.composite
def chains(draw):
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv1d", "conv_transpose1d", "avgpool1d", "adaptive_avgpool1d"]))
        if kind == "adaptive_avgpool1d":
            layers.append({"type": kind, "output_size": draw(st.integers(1, 30))})
            continue
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 4))
        layer = {"type": kind, "kernel_size": k, "stride": s,
                 "padding": draw(st.integers(0, k // 2 if kind == "avgpool1d" else 2)),
                 "dilation": 1 if kind == "avgpool1d" else draw(st.integers(1, 3))}
        if kind != "avgpool1d":
            layer["out_channels"] = 1
        if kind == "avgpool1d":
            del layer["dilation"]
        layers.append(layer)
    return draw(st.integers(30, 90)), layers


def analyze(length: int, layers: list[dict]):
    spec = [{**layer, "bias": False} if "conv" in layer["type"] else layer for layer in layers]
    return layercalc.load({"input": [1, length], "layers": spec}).analyze()


@examples(200)
@given(chains())
def test_reported_field_is_the_widest_dependency_span(chain):
    length, layers = chain
    try:
        report = analyze(length, layers)
    except LayerCalcError:
        assume(False)
    spans = measured_spans(length, layers)
    last = report.layers[-1]
    assert last.output_shape == [1, 1, len(spans)]
    if last.receptive_field is None:
        # only past a layer that leaves output positions unevenly spaced, and the first such layer says why
        assert any(layer.type in ("conv_transpose1d", "adaptive_avgpool1d") for layer in report.layers[:-1])
        assert any("receptive field not reported past" in note for layer in report.layers for note in layer.notes)
        event("not reported, with the reason")
        return
    # the arithmetic field ignores the input's ends (a window hanging into padding still counts its full width),
    # so positions deep inside the input attain it and border positions may see less — never more
    assert max(spans) <= last.receptive_field[0]
    # (when the field is as wide as the input, every position's windows reach into padding, which the
    # arithmetic counts and the dependency sets do not; those chains cannot check equality)
    assume(last.receptive_field[0] <= length // 3)
    interior = spans[len(spans) // 4: len(spans) - len(spans) // 4]
    assume(len(interior) >= 8)
    assert max(interior) == last.receptive_field[0]
    event("field compared with the widest span")


def test_dilated_transposed_conv_sees_one_input_when_its_taps_fall_in_different_classes():
    # kernel 2, stride 2, dilation 3: taps at offsets 0 and 3. Output o gets input i when o = 2i or o = 2i + 3;
    # for a given o only one of the two has the right parity, so every output depends on exactly 1 input.
    layers = [{"type": "conv_transpose1d", "out_channels": 1, "kernel_size": 2, "stride": 2, "dilation": 3,
               "padding": 0}]
    assert analyze(20, layers).layers[0].receptive_field == [1]
    assert max(measured_spans(20, layers)) == 1


def test_field_is_not_reported_after_a_transposed_conv_even_when_the_jump_is_whole_again():
    # conv k4 s3 p1 (field 4, jump 3), then a k2 s3 transposed conv: jump 3/3 = 1, but output positions 3i and
    # 3i+1 come from input i and 3i+2 from none, so a following k3 s2 window can span two inputs 3 pixels apart:
    # 4 + 3 = 7 at most, not the 4 + (3 − 1)·1 = 6 that "rf + (k − 1)·jump" would give. Not reported, with why.
    layers = [{"type": "conv1d", "out_channels": 1, "kernel_size": 4, "stride": 3, "padding": 1, "dilation": 1},
              {"type": "conv_transpose1d", "out_channels": 1, "kernel_size": 2, "stride": 3, "padding": 0,
               "dilation": 1},
              {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1}]
    assert max(measured_spans(57, layers)) == 7
    report = analyze(57, layers)
    assert report.layers[1].receptive_field == [4]          # its own field is exact: one input under each output
    assert report.layers[2].receptive_field is None
    assert any("transposed conv with stride > 1" in note for note in report.layers[2].notes)


def test_uneven_adaptive_windows_end_the_field_and_even_ones_do_not():
    # 21 → 6: windows [0,4) [3,7) [7,11) [10,14) [14,18) [17,21) start 3 or 4 apart, so a 2-wide pool after them
    # spans 4 + 4 = 8 at most (not 4 + 3.5). The adaptive layer's own field (its widest window, 4) is exact.
    uneven = [{"type": "adaptive_avgpool1d", "output_size": 6}, {"type": "avgpool1d", "kernel_size": 2, "stride": 1}]
    assert max(measured_spans(21, uneven)) == 8
    report = analyze(21, uneven)
    assert report.layers[0].receptive_field == [4]
    assert report.layers[1].receptive_field is None
    assert any("21 → 6" in note for note in report.layers[1].notes)
    # 24 → 6 is a plain pooling (kernel = stride = 4): the field continues, 4 + (2 − 1)·4 = 8
    even = [{"type": "adaptive_avgpool1d", "output_size": 6}, {"type": "avgpool1d", "kernel_size": 2, "stride": 1}]
    assert analyze(24, even).layers[1].receptive_field == [8]
    assert max(measured_spans(24, even)) == 8
