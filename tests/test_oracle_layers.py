"""Every layer kind against PyTorch 2.13 as the oracle, on hypothesis-generated single-layer configurations.

For each configuration both sides must agree on accept/reject (layercalc by raising a ``LayerCalcError``), and
when both accept: the output shape (batch included), the learnable parameters, the BatchNorm buffers and, for conv
/ transposed conv / linear, ``2 · macs == FlopCounterMode`` total. Configurations include invalid ones on purpose
(inputs too small, channels not divisible by groups, pooling padding over half the kernel, output_padding too
large, reflect padding as large as the input, mismatched declared sizes, out-of-range dims).

Where layercalc deliberately accepts what torch refuses (``padding="same"`` with stride > 1, asymmetric padding,
Keras ``"same"`` for transposed convolutions) the agreement tests leave those out; they are checked separately
against torch with the padding applied explicitly by ``F.pad`` and against hand computations.

Examples are derandomized (the same cases every run, about 1,500 in all). ``LAYERCALC_ORACLE_SCALE=20`` multiplies
the example counts and draws fresh random cases: a deeper hunt for disagreements, minutes instead of seconds.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_helpers import (
    TorchResult,
    accepted,
    analyze,
    as_torch,
    assert_same_verdict,
    lc_layer,
    network,
    resolved_geometry,
    torch_run,
    torch_shape,
)

from layercalc import LayerCalcError

SCALE = int(os.environ.get("LAYERCALC_ORACLE_SCALE", "1"))


def examples(count: int) -> settings:
    """Hypothesis settings: ``count`` derandomized examples (or SCALE times more, random, for a deep hunt)."""
    return settings(max_examples=count * SCALE, derandomize=SCALE == 1, database=None, deadline=None)


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
ADAPTIVE = {"avg": {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
            "max": {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}}
#: largest spatial size drawn per rank: small enough for fast forwards, small enough that kernels often do not fit
MAX_SIZE = {1: 16, 2: 9, 3: 5}


# ------------------------------------------------------------------------------------------------- strategies

def per_dim(rank: int, low: int, high: int):
    """An int, or one int per spatial dim (a list, as a spec would hold)."""
    return st.one_of(st.integers(low, high), st.lists(st.integers(low, high), min_size=rank, max_size=rank))


def expand(value, rank: int) -> list[int]:
    return [value] * rank if isinstance(value, int) else list(value)


@st.composite
def spatial_shape(draw, rank: int):
    return draw(st.lists(st.integers(1, MAX_SIZE[rank]), min_size=rank, max_size=rank))


@st.composite
def channel_groups(draw):
    """(in_channels, out_channels, groups), sometimes breaking divisibility by groups on purpose."""
    if draw(st.booleans()):                                  # depthwise (or depthwise-multiplier)
        cin = draw(st.integers(1, 5))
        groups, cout = cin, cin * draw(st.integers(1, 2))
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    broken = draw(st.sampled_from([None] * 8 + ["in", "out"]))
    if broken == "in" and groups > 1:
        cin += 1
    if broken == "out" and groups > 1:
        cout += 1
    return cin, cout, groups


@st.composite
def conv_configs(draw):
    rank = draw(st.sampled_from([1, 2, 3]))
    cin, cout, groups = draw(channel_groups())
    layer = {"type": f"conv{rank}d", "out_channels": cout, "groups": groups,
             "kernel_size": draw(per_dim(rank, 1, 4)), "stride": draw(per_dim(rank, 1, 3)),
             "dilation": draw(per_dim(rank, 1, 3)), "bias": draw(st.booleans()),
             "padding": draw(st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=rank, max_size=rank),
                                       st.sampled_from(["same", "valid"]))),
             "padding_mode": draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))}
    if layer["padding"] == "same":
        layer["stride"] = 1            # torch refuses 'same' with stride > 1 (layercalc's Keras rule: tested below)
    declared = draw(st.sampled_from(["none", "none", "right", "wrong"]))
    if declared != "none":                 # torch is built with the declared count, then fed the real input
        layer["in_channels"] = cin if declared == "right" else cin + 1
    return rank, cin, draw(spatial_shape(rank)), draw(st.integers(1, 2)), layer


# ------------------------------------------------------------------------------------------------ convolutions

def torch_conv(rank, cin, layer):
    cin = layer.get("in_channels", cin)
    return lambda: CONV[rank](cin, layer["out_channels"], as_torch(layer["kernel_size"]),
                              stride=as_torch(layer["stride"]), padding=as_torch(layer["padding"]),
                              dilation=as_torch(layer["dilation"]), groups=layer["groups"], bias=layer["bias"],
                              padding_mode=layer["padding_mode"])


def assert_matches(lc, th: TorchResult, macs_counted: bool = True):
    assert lc.output_shape == th.shape
    assert lc.params == th.params
    assert lc.buffers == th.buffers
    if macs_counted:
        assert 2 * lc.macs == th.flops


@examples(150)
@given(conv_configs())
def test_conv_matches_torch(config):
    rank, cin, spatial, batch, layer = config
    lc = lc_layer([cin, *spatial], layer, batch)
    th = torch_run(torch_conv(rank, cin, layer), [batch, cin, *spatial])
    if assert_same_verdict(lc, th, (cin, spatial, layer)):
        assert_matches(lc, th)


@examples(80)
@given(st.sampled_from([1, 2, 3]), st.sampled_from(["reflect", "replicate", "circular"]), st.booleans(), st.data())
def test_padding_modes_match_torch_on_small_inputs(rank, mode, asymmetric, data):
    """Reflect needs padding < input size, circular ≤ input size, replicate anything: inputs of 1..4 and
    padding up to 4 put every case on both sides of those limits."""
    spatial = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    layer = {"type": f"conv{rank}d", "out_channels": 2, "groups": 1, "kernel_size": data.draw(per_dim(rank, 1, 2)),
             "stride": 1, "dilation": 1, "bias": True, "padding_mode": mode}
    if asymmetric:
        pairs = data.draw(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=rank, max_size=rank))
        layer["padding"] = [list(p) for p in pairs]
        build, forward = conv_after_pad(rank, 2, layer, pairs, mode)
        th = torch_run(build, [1, 2, *spatial], forward)
    else:
        layer["padding"] = data.draw(per_dim(rank, 0, 4))
        th = torch_run(torch_conv(rank, 2, layer), [1, 2, *spatial])
    lc = lc_layer([2, *spatial], layer)
    if assert_same_verdict(lc, th, (spatial, layer)):
        assert_matches(lc, th)


@st.composite
def conv_transpose_configs(draw):
    rank = draw(st.sampled_from([1, 2, 3]))
    cin, cout, groups = draw(channel_groups())
    layer = {"type": f"conv_transpose{rank}d", "out_channels": cout, "groups": groups,
             "kernel_size": draw(per_dim(rank, 1, 4)), "stride": draw(per_dim(rank, 1, 3)),
             "dilation": draw(per_dim(rank, 1, 3)), "bias": draw(st.booleans()),
             "padding": draw(per_dim(rank, 0, 4)), "output_padding": draw(per_dim(rank, 0, 2))}
    sizes = draw(st.lists(st.integers(1, {1: 8, 2: 5, 3: 3}[rank]), min_size=rank, max_size=rank))
    return rank, cin, sizes, draw(st.integers(1, 2)), layer


@examples(120)
@given(conv_transpose_configs())
def test_conv_transpose_matches_torch(config):
    rank, cin, spatial, batch, layer = config
    lc = lc_layer([cin, *spatial], layer, batch)
    build = lambda: CONV_T[rank](cin, layer["out_channels"], as_torch(layer["kernel_size"]),  # noqa: E731
                                 stride=as_torch(layer["stride"]), padding=as_torch(layer["padding"]),
                                 output_padding=as_torch(layer["output_padding"]), groups=layer["groups"],
                                 bias=layer["bias"], dilation=as_torch(layer["dilation"]))
    th = torch_run(build, [batch, cin, *spatial])
    if assert_same_verdict(lc, th, (cin, spatial, layer)):
        assert_matches(lc, th)


def test_conv_transpose_rejects_non_zero_padding_mode_like_torch():
    with pytest.raises(ValueError):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    assert not accepted(lc_layer([2, 8, 8], {"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3,
                                             "padding_mode": "reflect"}))


# ---------------------------------------------------------- padding layercalc accepts and torch does not

def tf_same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME rule, written out here independently: output ceil(n/s); the odd pixel goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def torch_pad_arg(pairs) -> list[int]:
    """((before, after) per dim, first dim first) → F.pad's flat list, last dim first."""
    return [p for before_after in reversed(pairs) for p in before_after]


def conv_after_pad(rank, cin, layer, pairs, mode="zeros"):
    """torch: explicit F.pad, then the conv with padding 0 (FlopCounterMode sees only the conv)."""
    cin = layer.get("in_channels", cin)
    build = lambda: CONV[rank](cin, layer["out_channels"], as_torch(layer["kernel_size"]),  # noqa: E731
                               stride=as_torch(layer["stride"]), dilation=as_torch(layer["dilation"]),
                               groups=layer["groups"], bias=layer["bias"], padding=0)
    pad_mode = "constant" if mode == "zeros" else mode
    return build, lambda m, x: m(F.pad(x, torch_pad_arg(pairs), mode=pad_mode))


@examples(80)
@given(conv_configs(), st.data())
def test_conv_asymmetric_padding_matches_torch_with_explicit_pad(config, data):
    rank, cin, spatial, batch, layer = config
    pairs = data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=rank, max_size=rank))
    layer = {**layer, "padding": [list(p) for p in pairs], "stride": data.draw(per_dim(rank, 1, 3))}
    lc = lc_layer([cin, *spatial], layer, batch)
    build, forward = conv_after_pad(rank, cin, layer, pairs, layer["padding_mode"])
    th = torch_run(build, [batch, cin, *spatial], forward)
    if assert_same_verdict(lc, th, (cin, spatial, layer)):
        assert_matches(lc, th)


@st.composite
def keras_same_configs(draw):
    rank = draw(st.sampled_from([1, 2, 3]))
    cin, cout, groups = draw(channel_groups().filter(lambda c: c[0] % c[2] == 0 and c[1] % c[2] == 0))
    layer = {"type": f"conv{rank}d", "out_channels": cout, "groups": groups, "padding": "same",
             "kernel_size": draw(per_dim(rank, 1, 5)), "stride": draw(per_dim(rank, 2, 4)),
             "dilation": draw(per_dim(rank, 1, 2)), "bias": draw(st.booleans())}
    return rank, cin, draw(spatial_shape(rank)), layer


@examples(80)
@given(keras_same_configs())
def test_keras_same_with_stride_matches_tensorflow_rule(config):
    rank, cin, spatial, layer = config
    k, s, d = (expand(layer[f], rank) for f in ("kernel_size", "stride", "dilation"))
    pairs = [tf_same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(spatial, k, s, d)]
    lc = lc_layer([cin, *spatial], layer)
    assert accepted(lc), lc
    # hand computation: Keras' output is ceil(n / stride) whatever the kernel
    assert lc.output_shape == [1, layer["out_channels"], *(math.ceil(n / ss) for n, ss in zip(spatial, s))]
    assert list(resolved_geometry([cin, *spatial], layer)["pads"]) == pairs
    build, forward = conv_after_pad(rank, cin, layer, pairs)
    th = torch_run(build, [1, cin, *spatial], forward)
    assert_matches(lc, th)


@examples(40)
@given(st.sampled_from([1, 2, 3]), st.data())
def test_keras_same_pooling_output_is_ceil_of_input_over_stride(rank, data):
    spatial = data.draw(spatial_shape(rank))
    kind = data.draw(st.sampled_from(["max", "avg"]))
    k, s = data.draw(per_dim(rank, 1, 4)), data.draw(per_dim(rank, 1, 3))
    layer = {"type": f"{kind}pool{rank}d", "kernel_size": k, "stride": s, "padding": "same"}
    lc = lc_layer([2, *spatial], layer)
    k, s = expand(k, rank), expand(s, rank)
    assert lc.output_shape == [1, 2, *(math.ceil(n / ss) for n, ss in zip(spatial, s))]
    # torch, padding by hand (−inf for max so padded positions are never chosen, 0 for avg)
    pairs = [tf_same_pads(n, kk, ss, 1) for n, kk, ss in zip(spatial, k, s)]
    fill = -math.inf if kind == "max" else 0.0
    pool = (MAXPOOL if kind == "max" else AVGPOOL)[rank](tuple(k), tuple(s))
    shape = torch_shape(lambda: pool(F.pad(torch.zeros(1, 2, *spatial), torch_pad_arg(pairs), value=fill)))
    assert lc.output_shape == shape


@st.composite
def keras_same_transposed_configs(draw):
    rank = draw(st.sampled_from([1, 2, 3]))
    layer = {"type": f"conv_transpose{rank}d", "out_channels": draw(st.integers(1, 3)), "padding": "same",
             "kernel_size": draw(per_dim(rank, 1, 5)), "stride": draw(per_dim(rank, 1, 3)),
             "dilation": draw(per_dim(rank, 1, 2)), "bias": draw(st.booleans())}
    sizes = draw(st.lists(st.integers(1, {1: 8, 2: 5, 3: 3}[rank]), min_size=rank, max_size=rank))
    return rank, draw(st.integers(1, 3)), sizes, layer


@examples(60)
@given(keras_same_transposed_configs())
def test_keras_same_transposed_is_input_times_stride(config):
    """Keras' transposed 'same' is the transpose of a 'same' conv from n·s down to n: crop that conv's padding
    from torch's full (padding 0) output; where the kernel is narrower than the stride, the last positions of the
    n·s output are never written (zeros after)."""
    rank, cin, spatial, layer = config
    k, s, d = (expand(layer[f], rank) for f in ("kernel_size", "stride", "dilation"))
    lc = lc_layer([cin, *spatial], layer)
    assert accepted(lc), lc
    assert lc.output_shape == [1, layer["out_channels"], *(n * ss for n, ss in zip(spatial, s))]
    module = CONV_T[rank](cin, layer["out_channels"], tuple(k), stride=tuple(s), dilation=tuple(d),
                          bias=layer["bias"])
    th = torch_run(lambda: module, [1, cin, *spatial])
    assert lc.params == th.params and 2 * lc.macs == th.flops
    geometry = resolved_geometry([cin, *spatial], layer)
    for axis, (n, full, kk, ss, dd) in enumerate(zip(spatial, th.shape[2:], k, s, d)):
        before, after = tf_same_pads(n * ss, kk, ss, dd)      # the forward conv's SAME padding
        unwritten = max(n * ss - (full - before - after), 0)
        assert tuple(geometry["crop"][axis]) == (before, after)
        assert geometry["output_padding"][axis] == unwritten
        assert full - before - after + unwritten == n * ss


@examples(40)
@given(keras_same_transposed_configs())
def test_keras_valid_transposed_length_is_keras_deconv_output_length(config):
    """Keras' ``deconv_output_length`` for padding 'valid' (no output_padding): ``L·s + max(span − s, 0)`` with
    span = d·(k − 1) + 1. Torch has no 'valid' here; its padding-0 output (L − 1)·s + span is the same unless the
    span is narrower than the stride, where Keras' extra positions are torch's output_padding = s − span."""
    rank, cin, spatial, layer = config
    layer = {**layer, "padding": "valid"}
    k, s, d = (expand(layer[f], rank) for f in ("kernel_size", "stride", "dilation"))
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    keras = [n * ss + max(span - ss, 0) for n, ss, span in zip(spatial, s, spans)]
    lc = lc_layer([cin, *spatial], layer)
    assert accepted(lc), lc
    assert lc.output_shape == [1, layer["out_channels"], *keras]
    extra = tuple(max(ss - span, 0) for ss, span in zip(s, spans))
    module = CONV_T[rank](cin, layer["out_channels"], tuple(k), stride=tuple(s), dilation=tuple(d),
                          output_padding=extra, bias=layer["bias"])
    th = torch_run(lambda: module, [1, cin, *spatial])
    assert lc.output_shape == th.shape and lc.params == th.params and 2 * lc.macs == th.flops


# ------------------------------------------------------------------------------------------------------ pooling

@st.composite
def pool_configs(draw, kind: str):
    rank = draw(st.sampled_from([1, 2, 3]))
    # padding mostly ≤ 1 so that about half the cases are valid; 2 is over half of kernels 1..3 (refused)
    layer = {"type": f"{kind}pool{rank}d", "kernel_size": draw(per_dim(rank, 1, 4)),
             "padding": draw(st.one_of(per_dim(rank, 0, 1), per_dim(rank, 0, 1), per_dim(rank, 0, 2),
                                       st.just("valid"))),
             "ceil_mode": draw(st.booleans())}
    if draw(st.booleans()):
        layer["stride"] = draw(per_dim(rank, 1, 3))
    if kind == "max":
        layer["dilation"] = draw(per_dim(rank, 1, 3))
    else:
        layer["count_include_pad"] = draw(st.booleans())
        # torch's AvgPool1d has no divisor_override (layercalc accepts one; it changes no figure it reports)
        layer["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5))) if rank > 1 else None
    return rank, draw(st.integers(1, 3)), draw(spatial_shape(rank)), layer


def torch_pool(kind, rank, layer):
    padding = 0 if layer["padding"] == "valid" else as_torch(layer["padding"])
    common = dict(kernel_size=as_torch(layer["kernel_size"]), stride=as_torch(layer.get("stride")),
                  padding=padding, ceil_mode=layer["ceil_mode"])
    if kind == "max":
        return lambda: MAXPOOL[rank](dilation=as_torch(layer["dilation"]), **common)
    if rank == 1:
        return lambda: AVGPOOL[rank](count_include_pad=layer["count_include_pad"], **common)
    return lambda: AVGPOOL[rank](count_include_pad=layer["count_include_pad"],
                                 divisor_override=layer["divisor_override"], **common)


@pytest.mark.parametrize("kind", ["max", "avg"])
@examples(100)
@given(data=st.data())
def test_pooling_matches_torch(kind, data):
    rank, channels, spatial, layer = data.draw(pool_configs(kind))
    lc = lc_layer([channels, *spatial], layer, batch=2)
    th = torch_run(torch_pool(kind, rank, layer), [2, channels, *spatial])
    if assert_same_verdict(lc, th, (channels, spatial, layer)):
        assert_matches(lc, th, macs_counted=False)
        assert lc.macs == 0 and th.flops == 0


@st.composite
def adaptive_configs(draw):
    rank = draw(st.sampled_from([1, 2, 3]))
    spatial = draw(spatial_shape(rank))
    size = st.integers(1, 2 * MAX_SIZE[rank])             # larger than the input too
    entry = st.one_of(size, st.none()) if rank > 1 else size      # torch's 1-d adaptive pools take no None
    output = draw(st.one_of(size, st.lists(entry, min_size=rank, max_size=rank)))
    return rank, draw(st.sampled_from(["avg", "max"])), spatial, output


@examples(80)
@given(adaptive_configs())
def test_adaptive_pooling_matches_torch(config):
    rank, kind, spatial, output = config
    lc = lc_layer([3, *spatial], {"type": f"adaptive_{kind}pool{rank}d", "output_size": output})
    th = torch_run(lambda: ADAPTIVE[kind][rank](as_torch(output)), [1, 3, *spatial])
    if assert_same_verdict(lc, th, (spatial, output)):
        assert_matches(lc, th, macs_counted=False)


@examples(30)
@given(st.integers(1, 3), st.booleans(), st.sampled_from(["avg", "max"]), st.data())
def test_global_pooling_matches_torch_reduction(rank, keepdims, kind, data):
    spatial = data.draw(spatial_shape(rank))
    lc = lc_layer([3, *spatial], {"type": f"global_{kind}pool", "keepdims": keepdims}, batch=2)
    dims = tuple(range(2, 2 + rank))
    reduce = torch.mean if kind == "avg" else torch.amax
    assert lc.output_shape == torch_shape(lambda: reduce(torch.zeros(2, 3, *spatial), dim=dims, keepdim=keepdims))


# ---------------------------------------------------------------------------------------- dense and reshaping

@examples(60)
@given(st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(1, 12), st.integers(1, 12),
       st.booleans(), st.sampled_from(["none", "right", "wrong"]), st.integers(1, 3))
def test_linear_matches_torch(leading, features, out_features, bias, declared, batch):
    """Linear on [N, F], [N, L, F] and [N, A, L, F]; a wrongly declared in_features must be refused."""
    layer = {"type": "linear", "out_features": out_features, "bias": bias}
    torch_in = features
    if declared != "none":
        torch_in = features if declared == "right" else features + 1
        layer["in_features"] = torch_in
    lc = lc_layer([*leading, features], layer, batch)
    th = torch_run(lambda: nn.Linear(torch_in, out_features, bias=bias), [batch, *leading, features])
    if assert_same_verdict(lc, th, (leading, features, layer)):
        assert_matches(lc, th)


@examples(60)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_flatten_matches_torch(dims, data):
    rank = len(dims) + 1
    start_dim, end_dim = (data.draw(st.integers(-rank - 1, rank)) for _ in range(2))   # one past each end too
    lc = lc_layer(dims, {"type": "flatten", "start_dim": start_dim, "end_dim": end_dim}, batch=2)
    th = torch_shape(lambda: nn.Flatten(start_dim, end_dim)(torch.zeros(2, *dims)))
    if assert_same_verdict(lc, th, (dims, start_dim, end_dim)):
        assert lc.output_shape == th


@examples(50)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3),
       st.lists(st.sampled_from([-1, -1, 0, 1, 2, 3, 4, 6, 8, 12]), min_size=1, max_size=3))
def test_reshape_matches_torch(dims, target):
    lc = lc_layer(dims, {"type": "reshape", "shape": target}, batch=2)
    th = torch_shape(lambda: torch.zeros(2, *dims).reshape(2, *target))
    if assert_same_verdict(lc, th, (dims, target)):
        assert lc.output_shape == th


@examples(50)
@given(st.integers(1, 3), st.data())
def test_zero_pad_matches_torch(rank, data):
    spatial = data.draw(spatial_shape(rank))
    padding = data.draw(st.one_of(
        st.integers(0, 3), st.lists(st.integers(0, 3), min_size=rank, max_size=rank),
        st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=2), min_size=rank, max_size=rank)))
    if isinstance(padding, int):
        pairs = [(padding, padding)] * rank
    else:
        pairs = [tuple(p) if isinstance(p, list) else (p, p) for p in padding]
    lc = lc_layer([2, *spatial], {"type": "zero_pad", "padding": padding})
    assert lc.output_shape == torch_shape(lambda: F.pad(torch.zeros(1, 2, *spatial), torch_pad_arg(pairs)))


# ------------------------------------------------------------------------------------------------ normalization

@examples(80)
@given(st.sampled_from([1, 2, 3]), st.integers(1, 5), st.booleans(), st.booleans(),
       st.sampled_from(["none", "none", "right", "wrong"]), st.data())
def test_batchnorm_matches_torch(kind, channels, affine, track, declared, data):
    """BatchNorm1d on [N, C] and [N, C, L], 2d on 4-d, 3d on 5-d input; any other rank is refused."""
    fitting = {1: [0, 1], 2: [2], 3: [3]}[kind]
    spatial_rank = data.draw(st.sampled_from(fitting * 3 + [0, 1, 2, 3]))   # mostly the right rank
    spatial = data.draw(st.lists(st.integers(1, 4), min_size=spatial_rank, max_size=spatial_rank))
    if declared == "wrong" and not (affine or track):
        declared = "right"   # without weights or running stats torch never looks at num_features: nothing to check
    features = channels + 1 if declared == "wrong" else channels
    layer = {"type": f"batchnorm{kind}d", "affine": affine, "track_running_stats": track}
    if declared != "none":
        layer["num_features"] = features
    lc = lc_layer([channels, *spatial], layer, batch=2)   # batch 2: torch needs > 1 value per channel for batch stats
    module = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[kind]
    th = torch_run(lambda: module(features, affine=affine, track_running_stats=track), [2, channels, *spatial])
    if assert_same_verdict(lc, th, (channels, spatial, layer)):
        assert_matches(lc, th)
        assert lc.buffers == (2 * channels if track else 0)


@st.composite
def layernorm_configs(draw):
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    count = draw(st.integers(1, len(dims)))                # trailing dims, batch excluded
    normalized = dims[-count:]
    if draw(st.integers(0, 4)) == 0:                       # a mismatch on purpose
        i = draw(st.integers(0, count - 1))
        normalized = [*normalized[:i], normalized[i] + 1, *normalized[i + 1:]]
    form = draw(st.sampled_from(["list", "int", "default"]))
    if form == "int" and count == 1:
        normalized_spec = normalized[0]
    elif form == "default" and count == 1 and normalized == dims[-1:]:
        normalized_spec = None
    else:
        normalized_spec = normalized
    return dims, normalized, normalized_spec, draw(st.booleans()), draw(st.booleans())


@examples(60)
@given(layernorm_configs())
def test_layernorm_matches_torch(config):
    dims, normalized, normalized_spec, affine, bias = config
    layer = {"type": "layernorm", "elementwise_affine": affine, "bias": bias}
    if normalized_spec is not None:
        layer["normalized_shape"] = normalized_spec
    lc = lc_layer(dims, layer, batch=2)
    th = torch_run(lambda: nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias), [2, *dims])
    if assert_same_verdict(lc, th, (dims, layer)):
        assert_matches(lc, th, macs_counted=False)


@examples(50)
@given(st.integers(1, 8), st.integers(1, 9), st.lists(st.integers(1, 4), max_size=3), st.booleans())
def test_groupnorm_matches_torch(channels, groups, spatial, affine):
    lc = lc_layer([channels, *spatial], {"type": "groupnorm", "num_groups": groups, "affine": affine}, batch=2)
    th = torch_run(lambda: nn.GroupNorm(groups, channels, affine=affine), [2, channels, *spatial])
    if assert_same_verdict(lc, th, (channels, spatial, groups)):
        assert_matches(lc, th, macs_counted=False)


# ------------------------------------------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": lambda layer: nn.ReLU(), "relu6": lambda layer: nn.ReLU6(),
    "leaky_relu": lambda layer: nn.LeakyReLU(layer.get("negative_slope", 0.01)),
    "sigmoid": lambda layer: nn.Sigmoid(), "tanh": lambda layer: nn.Tanh(),
    "gelu": lambda layer: nn.GELU(approximate=layer.get("approximate", "none")),
    "silu": lambda layer: nn.SiLU(), "swish": lambda layer: nn.SiLU(),
    "hardswish": lambda layer: nn.Hardswish(), "hardsigmoid": lambda layer: nn.Hardsigmoid(),
    "softmax": lambda layer: nn.Softmax(dim=layer["dim"]), "identity": lambda layer: nn.Identity(),
    "dropout": lambda layer: nn.Dropout(layer.get("p", 0.5)),
}


@st.composite
def activation_configs(draw):
    kind = draw(st.sampled_from(sorted(ACTIVATIONS) + ["softmax"] * 3))   # softmax: the one with a dim to check
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    layer = {"type": kind}
    if kind == "softmax":
        layer["dim"] = draw(st.integers(-len(dims) - 2, len(dims) + 1))     # out-of-range dims on purpose
    if kind == "gelu":
        layer["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    if kind == "leaky_relu":
        layer["negative_slope"] = draw(st.sampled_from([0.01, 0.2]))
    if kind == "dropout":
        layer["p"] = draw(st.sampled_from([0.0, 0.1, 0.5]))
    return dims, layer


@examples(70)
@given(activation_configs())
def test_activations_match_torch(config):
    dims, layer = config
    lc = lc_layer(dims, layer, batch=2)
    th = torch_run(lambda: ACTIVATIONS[layer["type"]](layer), [2, *dims])
    if assert_same_verdict(lc, th, (dims, layer)):
        assert_matches(lc, th, macs_counted=False)
        assert lc.macs == 0 and th.flops == 0


# ------------------------------------------------------------------------------------------------------ merges

@st.composite
def merge_configs(draw):
    op = draw(st.sampled_from(["add", "mul", "concat"]))
    branches = draw(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
                             min_size=2, max_size=3))
    layer = {"type": op, "name": "merge", "inputs": [f"b{i}" for i in range(len(branches))]}
    if op == "concat" and draw(st.booleans()):
        layer["dim"] = draw(st.sampled_from([-5, -3, -2, -1, 1, 2, 3, 4]))   # 0 and -4 (batch) excluded
    return op, branches, layer


@examples(60)
@given(merge_configs())
def test_merges_broadcast_like_torch(config):
    """Branches of shape [N, c, h, w] (an adaptive pool to h×w, then a 1×1 conv to c channels), merged."""
    op, branches, merge = config
    layers = []
    for i, (c, h, w) in enumerate(branches):
        layers += [{"type": "adaptive_avgpool2d", "name": f"p{i}", "inputs": "input", "output_size": [h, w]},
                   {"type": "conv2d", "name": f"b{i}", "inputs": f"p{i}", "out_channels": c, "kernel_size": 1}]
    try:
        lc = analyze(network([4, 5, 5], layers + [merge], batch=2)).layer("merge")
    except LayerCalcError as exc:
        lc = exc
    tensors = [torch.zeros(2, c, h, w) for c, h, w in branches]
    if op == "concat":
        th = torch_shape(lambda: torch.cat(tensors, dim=merge.get("dim", 1)))
    elif op == "add":
        th = torch_shape(lambda: sum(tensors[1:], tensors[0]))
    else:
        th = torch_shape(lambda: math.prod(tensors[1:], start=tensors[0]))
    if assert_same_verdict(lc, th, (branches, merge)):
        assert lc.output_shape == th


# --------------------------------------------------------------------------------------------------- NHWC layout

@examples(40)
@given(conv_configs().filter(lambda c: c[0] == 2), st.sampled_from(["conv", "maxpool"]))
def test_channels_last_is_the_permuted_nchw_result(config, kind):
    _, cin, spatial, batch, layer = config
    if kind == "maxpool":
        layer = {"type": "maxpool2d", "kernel_size": layer["kernel_size"], "stride": layer["stride"]}
        th = torch_run(lambda: nn.MaxPool2d(as_torch(layer["kernel_size"]), as_torch(layer["stride"])),
                       [batch, cin, *spatial])
    else:
        th = torch_run(torch_conv(2, cin, layer), [batch, cin, *spatial])
    lc = lc_layer([*spatial, cin], layer, batch, layout="NHWC")
    if assert_same_verdict(lc, th, (cin, spatial, layer)):
        n, c, h, w = th.shape
        assert lc.output_shape == [n, h, w, c]
        assert lc.params == th.params and 2 * lc.macs == th.flops
