"""Receptive fields against PyTorch: which input positions each output position really depends on.

The oracle: a chain of linear 1-d layers (conv and transposed conv with all-one weights and no bias, average
pooling, adaptive average pooling) run on the identity matrix as a batch of one-hot inputs. Output ``o`` of
example ``i`` is non-zero exactly when output position ``o`` depends on input position ``i`` (every weight is
positive, so nothing cancels). The receptive field is the span, first to last, of those positions, and the
largest span over all output positions is what layercalc must report — or, past a layer whose outputs are not
evenly spaced over its input, report nothing and say why.

Examples are derandomized; ``LAYERCALC_ORACLE_SCALE=20`` runs 20 times more, freshly random.

The second half checks, against the gradient of one output position with respect to the input (its nonzero
entries: the pixels that position depends on), what the arithmetic alone cannot: a field that is the whole input
(past a global pool, a squeeze-and-excitation gate, attention), the jump past a broadcast gate, and a linear layer
over an NHWC network's channels.
"""

from __future__ import annotations

import os

import pytest
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


# ------------------------------------------------------------------------------------ whole input, merges, layouts
# The oracle here: the gradient of one output position with respect to the input. The input pixels with a nonzero
# gradient are the ones that position depends on (all-one kernels and a positive input: nothing cancels).

def gradient_support(forward, input_shape: tuple[int, ...], position: tuple[int, ...]) -> torch.Tensor:
    """A boolean mask over the input (batch and channels summed out): where d output[position] / d input ≠ 0."""
    x = (torch.rand(input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5)
    x.requires_grad_(True)
    gradient, = torch.autograd.grad(forward(x)[position], x)
    return gradient.abs().sum(dim=(0, 1)) != 0 if gradient.dim() > 2 else gradient.abs().sum(dim=0) != 0


def ones_conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dims: int = 2) -> nn.Module:
    conv = (nn.Conv2d if dims == 2 else nn.Conv1d)(cin, cout, k, stride, padding, bias=False).double()
    nn.init.ones_(conv.weight)
    return conv


def span(mask: torch.Tensor, dim: int) -> tuple[int, int]:
    """First and last index along ``dim`` where the mask holds."""
    rows = mask.nonzero()[:, dim]
    return int(rows.min()), int(rows.max())


SQUEEZE_EXCITE = [  # conv s2 → adaptive_avgpool 1 → sigmoid → mul → conv k3 → conv k3, on 32×32 (issue 19)
    {"type": "conv2d", "name": "conv", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
    {"type": "adaptive_avgpool2d", "name": "squeeze", "output_size": 1},
    {"type": "sigmoid", "name": "gate"},
    {"type": "mul", "name": "excite", "inputs": ["conv", "gate"]},
    {"type": "conv2d", "name": "after1", "out_channels": 1, "kernel_size": 3, "padding": 1, "bias": False},
    {"type": "conv2d", "name": "after2", "out_channels": 1, "kernel_size": 3, "padding": 1, "bias": False}]


def squeeze_excite_torch(detach_gate: bool):
    conv, after1, after2 = ones_conv(1, 1, 3, 2, 1), ones_conv(1, 1, 3, 1, 1), ones_conv(1, 1, 3, 1, 1)

    def forward(x):
        y = conv(x)
        gate = torch.sigmoid(nn.functional.adaptive_avg_pool2d(y, 1))
        excite = y * (gate.detach() if detach_gate else gate)
        first = after1(excite)
        return {"excite": excite, "after1": first, "after2": after2(first)}
    return forward


@pytest.mark.parametrize("name", ["excite", "after1", "after2"])
def test_a_squeeze_excitation_gate_makes_the_field_the_whole_input_and_keeps_the_features_jump(name):
    # Every output position after the gate depends on every input pixel (the gate averages all of them): torch's
    # gradient support is the whole 32×32 input — not the 97 and 161 of the gate's field and jump carried on.
    entry = analyze_2d([1, 32, 32], SQUEEZE_EXCITE).layer(name)
    support = gradient_support(lambda x: squeeze_excite_torch(False)(x)[name], (1, 1, 32, 32), (0, 0, 8, 8))
    assert bool(support.all())
    assert entry.receptive_field == [32, 32]
    # The jump is the distance between neighbouring output positions on the feature path (the gate is the same
    # for all of them): with the gate held constant, positions 8 and 9 depend on input regions 2 pixels apart.
    local = squeeze_excite_torch(True)
    at_8 = gradient_support(lambda x: local(x)[name], (1, 1, 32, 32), (0, 0, 8, 8))
    at_9 = gradient_support(lambda x: local(x)[name], (1, 1, 32, 32), (0, 0, 9, 9))
    shift = [span(at_9, d)[0] - span(at_8, d)[0] for d in (0, 1)]
    assert entry.jump == shift == [2, 2]
    assert entry.whole_input


def analyze_2d(input_: list[int], layers: list[dict], layout: str = "NCHW"):
    return layercalc.load({"input": input_, "layout": layout, "layers": layers}).analyze()


def test_after_a_global_pool_every_output_sees_the_whole_input_and_the_head_too():
    layers = [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
              {"type": "global_avgpool", "name": "pool"}, {"type": "linear", "name": "fc", "out_features": 3}]
    report = analyze_2d([1, 32, 32], layers)
    conv = ones_conv(1, 2, 3, 2, 1)
    fc = nn.Linear(2, 3).double()
    support = gradient_support(lambda x: fc(conv(x).mean(dim=(2, 3))), (1, 1, 32, 32), (0, 1))
    assert bool(support.all())
    for name in ("pool", "fc"):
        assert report.layer(name).receptive_field == [32, 32]
        assert report.layer(name).whole_input


def test_a_global_pool_whose_input_misses_the_last_row_is_not_the_whole_input():
    # conv k3 s2 without padding on 32: windows at 0, 2, …, 28 end at 30; row and column 31 are never read, so the
    # pooled output depends on rows 0..30: a field of 31, not the whole input
    layers = [{"type": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "bias": False},
              {"type": "global_avgpool", "name": "pool"}]
    entry = analyze_2d([1, 32, 32], layers).layer("pool")
    conv = ones_conv(1, 1, 3, 2)
    support = gradient_support(lambda x: conv(x).mean(dim=(2, 3)), (1, 1, 32, 32), (0, 0))
    assert [span(support, d) for d in (0, 1)] == [(0, 30), (0, 30)]
    assert entry.receptive_field == [31, 31]
    assert not entry.whole_input


def test_a_linear_over_the_channels_of_an_nhwc_network_keeps_the_field():
    # NHWC: conv k3 → linear over channels (a 1×1 conv, per position) → conv k3: field 5, jump 1 at the end
    layers = [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias": False},
              {"type": "linear", "name": "mix", "out_features": 3, "bias": False},
              {"type": "conv2d", "name": "last", "out_channels": 1, "kernel_size": 3, "bias": False}]
    report = analyze_2d([16, 16, 1], layers, "NHWC")
    first, mix, last = ones_conv(1, 2, 3), nn.Linear(2, 3, bias=False).double(), ones_conv(3, 1, 3)
    nn.init.ones_(mix.weight)

    def forward(x):                      # torch's NCHW order; the linear on the channels, as Keras' Dense on NHWC
        return last(mix(first(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    support = gradient_support(forward, (1, 1, 16, 16), (0, 0, 5, 5))
    assert [span(support, d) for d in (0, 1)] == [(5, 9), (5, 9)]
    assert (report.layer("mix").receptive_field, report.layer("mix").jump) == ([3, 3], [1, 1])
    assert (report.layer("last").receptive_field, report.layer("last").jump) == ([5, 5], [1, 1])


def test_self_attention_over_an_nhwc_sequence_sees_the_whole_input():
    layers = [{"type": "conv1d", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False},
              {"type": "multi_head_attention", "name": "attention", "num_heads": 2}]
    entry = analyze_2d([20, 1], layers, "NHWC").layer("attention")
    torch.manual_seed(0)
    conv, attention = ones_conv(1, 4, 3, 1, 1, dims=1), nn.MultiheadAttention(4, 2, batch_first=True).double()

    def forward(x):
        tokens = conv(x.permute(0, 2, 1)).permute(0, 2, 1)            # [N, L, C]
        return attention(tokens, tokens, tokens, need_weights=False)[0]
    support = gradient_support(forward, (1, 20, 1), (0, 3, 0))
    assert bool(support.all())
    assert entry.receptive_field == [20]
    assert entry.whole_input


def test_whole_input_is_printed_in_the_table_the_explanation_and_documented_in_the_schema():
    from layercalc.explain import explain_layer
    from layercalc.formatting import render_report
    from layercalc.report import LayerReport

    net = layercalc.load({"input": [1, 32, 32], "layers": SQUEEZE_EXCITE})
    table = render_report(net.analyze(), "table", ["name", "receptive_field", "jump"])
    assert [line.split()[1:] for line in table.splitlines() if line.split()[:1] == ["after2"]] == \
        [["whole", "input", "2×2"]]
    step = net.resolve()[-1]
    lines = explain_layer(step.layer, step.input_shapes, step.facts, input_rf=([32, 32], [2, 2]))
    assert any(line.startswith("receptive field = whole input (32×32)") for line in lines)
    assert not any("⚠" in line for line in lines)
    assert "whole input" in LayerReport.model_json_schema()["properties"]["whole_input"]["description"]


def test_a_broadcast_gate_that_does_not_see_the_whole_input_ends_the_field():
    # The gate pools a map that misses row 31 (its span is 0..30, not the whole input): output positions see their
    # own region plus that fixed span, a union that rf + (k − 1)·jump cannot carry on. The gate's field and jump
    # taken as the merge's gave 31 + 2·30 = 91 rows at the next conv, more than the 32-pixel input.
    layers = [{"type": "conv2d", "name": "conv", "out_channels": 1, "kernel_size": 3, "stride": 2, "bias": False},
              {"type": "global_avgpool", "name": "pool", "keepdims": True}, {"type": "sigmoid", "name": "gate"},
              {"type": "mul", "name": "excite", "inputs": ["conv", "gate"]},
              {"type": "conv2d", "name": "after", "out_channels": 1, "kernel_size": 3, "bias": False}]
    report = analyze_2d([1, 32, 32], layers)
    conv, after = ones_conv(1, 1, 3, 2), ones_conv(1, 1, 3)

    def forward(x):
        y = conv(x)
        return after(y * torch.sigmoid(y.mean(dim=(2, 3), keepdim=True)))
    support = gradient_support(forward, (1, 1, 32, 32), (0, 0, 6, 6))
    assert span(support, 0) == (0, 30)
    assert report.layer("excite").receptive_field is None and report.layer("after").receptive_field is None
    assert any("gate is broadcast along a spatial dim" in note for note in report.layer("excite").notes)


def test_a_layer_that_reads_only_its_inputs_shape_does_not_carry_the_whole_input():
    layers = [{"type": "conv1d", "out_channels": 4, "kernel_size": 3, "padding": 1},
              {"type": "multi_head_attention", "name": "attention", "num_heads": 2},
              {"type": "position_embedding", "name": "positions", "num_embeddings": 32, "embedding_dim": 4}]
    report = analyze_2d([20, 1], layers, "NHWC")
    assert report.layer("attention").whole_input
    # rows 0..19 of the table whatever the input holds: the output depends on no input pixel
    assert not report.layer("positions").whole_input and report.layer("positions").receptive_field is None
