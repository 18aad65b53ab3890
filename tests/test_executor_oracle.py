"""The NumPy executor against PyTorch 2.13 as the numerical oracle, one layer type at a time.

Each test draws a layer configuration, random weights and a random input, runs the layer through
``Network.run`` and through torch with the *same* weights, and compares the outputs (float32: rtol 1e-4 /
atol 1e-5; float64: rtol 1e-9 / atol 1e-11). Configurations layercalc rejects are skipped (``assume``): accepting
and rejecting is the analysis' business and is tested against torch elsewhere.

Where layercalc follows Keras and torch has no direct equivalent (``padding: same`` with stride > 1, asymmetric
padding pairs, Keras ``same`` for transposed convs, avg pooling that excludes asymmetric padding), the torch side
applies the padding explicitly with ``F.pad`` from pads this file derives itself with TensorFlow's rule.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import LayerCalcError

torch.set_num_threads(2)

TOLERANCE = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-9, atol=1e-11)}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def examples(count: int) -> settings:
    return settings(max_examples=count, derandomize=True, database=None)


# ---------------------------------------------------------------------------------------------------- plumbing

def lc_run(input_shape, layer: dict, x: np.ndarray, weights=None, dtype="float32", layout="NCHW"):
    """Run one layer named 'L' through layercalc; ``None`` when layercalc rejects the configuration."""
    spec = {"input": list(input_shape[1:]), "batch": input_shape[0], "layout": layout,
            "layers": [dict(layer, name="L")]}
    try:
        net = layercalc.load(spec)
        net.resolve()
    except LayerCalcError:
        return None
    return net.run(x=x, weights={"L": weights} if weights else None, dtype=dtype)


def tt(array: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(TORCH_DTYPE[dtype])


def assert_close(actual: np.ndarray, expected: torch.Tensor, dtype: str, context) -> None:
    expected = expected.detach().numpy()
    assert actual.shape == expected.shape, f"{context}: shape {actual.shape} vs torch {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{context}: dtype {actual.dtype}"
    np.testing.assert_allclose(actual, expected, err_msg=str(context), **TOLERANCE[dtype])


def per_dim(value, rank: int) -> list[int]:
    return [value] * rank if isinstance(value, int) else list(value)


def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(n/s); total padding max((out−1)·s + d·(k−1) + 1 − n, 0), odd pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def torch_pad(pairs) -> list[int]:
    """[(before, after) per spatial dim] → F.pad's argument (last dim first)."""
    return [v for before, after in reversed(pairs) for v in (before, after)]


def pad_pairs(padding, sizes, kernel, stride, dilation) -> list[tuple[int, int]]:
    rank = len(sizes)
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        return [tf_same(n, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation)]
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if all(isinstance(p, int) for p in padding):
        return [(p, p) for p in padding]
    return [tuple(p) for p in padding]


dtypes = st.sampled_from(["float32", "float32", "float64"])


def padding_forms(rank: int, high: int = 2):
    return st.one_of(st.integers(0, high), st.lists(st.integers(0, high), min_size=rank, max_size=rank),
                     st.sampled_from(["same", "valid"]),
                     st.lists(st.lists(st.integers(0, high), min_size=2, max_size=2), min_size=rank, max_size=rank))


# -------------------------------------------------------------------------------------------------- convolution

@st.composite
def conv_cases(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    kind = draw(st.sampled_from(["dense", "dense", "grouped", "depthwise"]))
    if kind == "dense":
        groups, cin, cout = 1, draw(st.integers(1, 6)), draw(st.integers(1, 6))
    elif kind == "grouped":
        groups = draw(st.integers(2, 3))
        cin, cout = groups * draw(st.integers(2, 3)), groups * draw(st.integers(1, 3))
    else:
        cin = groups = draw(st.integers(1, 5))
        cout = cin * draw(st.integers(1, 2))
    high = {1: 24, 2: 11, 3: 6}[rank]
    sizes = draw(st.lists(st.integers(3, high), min_size=rank, max_size=rank))
    layer = {"type": f"conv{rank}d", "out_channels": cout, "groups": groups,
             "kernel_size": draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)),
             "stride": draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)),
             "dilation": draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank)),
             "padding": draw(padding_forms(rank)), "bias": draw(st.booleans()),
             "padding_mode": draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))}
    return rank, draw(st.integers(1, 3)), cin, sizes, layer, draw(dtypes), draw(st.integers(0, 2**31))


@examples(150)
@given(conv_cases())
def test_conv_matches_torch(case):
    rank, batch, cin, sizes, layer, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cin, *sizes))
    k = layer["kernel_size"]
    weights = {"weight": rng.standard_normal((layer["out_channels"], cin // layer["groups"], *k))}
    if layer["bias"]:
        weights["bias"] = rng.standard_normal(layer["out_channels"])
    y = lc_run(x.shape, layer, x, weights, dtype)
    assume(y is not None)
    pairs = pad_pairs(layer["padding"], sizes, k, layer["stride"], layer["dilation"])
    mode = {"zeros": "constant"}.get(layer["padding_mode"], layer["padding_mode"])
    xt = F.pad(tt(x, dtype), torch_pad(pairs), mode=mode)
    conv = getattr(F, f"conv{rank}d")
    expected = conv(xt, tt(weights["weight"], dtype), tt(weights["bias"], dtype) if layer["bias"] else None,
                    stride=layer["stride"], dilation=layer["dilation"], groups=layer["groups"])
    assert_close(y, expected, dtype, case)


@pytest.mark.parametrize("rank, sizes, cout", [
    (2, (3, 4), 40),      # 12 output positions < 40 channels: the weight is used in PyTorch order, im2col gathers
    (2, (9, 11), 40),     # 99 positions ≥ 40: the weight is copied kernel-major in blocks of 16 (40 = 16+16+8)
    (3, (3, 3, 2), 33),   # both orders in 3-d
    (3, (4, 5, 4), 33),
    (1, (5,), 20),
    (1, (40,), 20),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_both_im2col_orders_match_torch(rank, sizes, cout, dtype):
    """Dense convolution picks its im2col column order from the layer's size: few output positions → channel-major
    columns with the weight as given; many → kernel-major columns with a reordered weight. Both against torch,
    with a kernel that is not square, a stride, a dilation and more output channels than one copy block."""
    rng = np.random.default_rng(rank * 100 + cout + sum(sizes))
    cin, batch = 5, 2
    kernel, stride, dilation = [3, 2, 2][:rank], [1, 2, 1][:rank], [2, 1, 1][:rank]
    layer = {"type": f"conv{rank}d", "out_channels": cout, "kernel_size": kernel, "stride": stride,
             "dilation": dilation, "padding": 1}
    x = rng.standard_normal((batch, cin, *sizes))
    weights = {"weight": rng.standard_normal((cout, cin, *kernel)), "bias": rng.standard_normal(cout)}
    y = lc_run(x.shape, layer, x, weights, dtype)
    conv = getattr(F, f"conv{rank}d")
    expected = conv(tt(x, dtype), tt(weights["weight"], dtype), tt(weights["bias"], dtype), stride=stride,
                    padding=1, dilation=dilation)
    assert_close(y, expected, dtype, (rank, sizes, cout))


@examples(40)
@given(st.sampled_from([1, 2, 3]), st.integers(1, 3), st.sampled_from(["zeros", "reflect", "circular", "replicate"]),
       st.integers(0, 2**31))
def test_conv_module_with_symmetric_padding_matches_torch_module(rank, padding, mode, seed):
    """The same through torch's own module (its padding_mode implementation, default initialization copied)."""
    torch.manual_seed(seed % 1000)
    module = getattr(nn, f"Conv{rank}d")(4, 6, 3, stride=2, padding=padding, padding_mode=mode, groups=2).eval()
    x = np.random.default_rng(seed).standard_normal((2, 4, *([7] * rank))).astype(np.float32)
    layer = {"type": f"conv{rank}d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": padding,
             "padding_mode": mode, "groups": 2}
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    y = lc_run(x.shape, layer, x, weights)
    with torch.no_grad():
        assert_close(y, module(torch.from_numpy(x)), "float32", (rank, padding, mode))



@pytest.mark.parametrize("rank, sizes, kernel, stride, dilation", [
    (2, (9, 7), (3, 2), (2, 1), (1, 2)),
    (2, (6, 6), (3, 3), (1, 1), (1, 1)),
    (1, (13,), (4,), (3,), (2,)),
    (3, (5, 4, 6), (2, 3, 2), (1, 2, 1), (2, 1, 1)),
])
@pytest.mark.parametrize("budget", [None, 1, 600])
def test_channel_major_im2col_by_kernel_offset_matches_torch(monkeypatch, rank, sizes, kernel, stride, dilation,
                                                             budget):
    """Few output positions (≤ 140) for many output channels (160): the im2col columns are channel-major and filled
    one kernel offset at a time from strided slices. With a tiny workspace budget the output is made a few rows
    (``budget=600``) or a single row (``budget=1``) at a time, so the slices start inside the image (the row offset
    of the chunk times the stride). Against torch's convolution, with padding, stride, dilation and batch 2."""
    from layercalc import kernels
    if budget is not None:
        monkeypatch.setattr(kernels.chunk_plan, "__defaults__", (budget,))
        monkeypatch.setattr(kernels.chunk_bytes, "__defaults__", (budget,))
    rng = np.random.default_rng(sum(sizes) + rank)
    cin, cout, batch = 3, 160, 2
    layer = {"type": f"conv{rank}d", "out_channels": cout, "kernel_size": list(kernel), "stride": list(stride),
             "dilation": list(dilation), "padding": 1}
    x = rng.standard_normal((batch, cin, *sizes))
    weights = {"weight": rng.standard_normal((cout, cin, *kernel)), "bias": rng.standard_normal(cout)}
    for dtype in ("float32", "float64"):
        y = lc_run(x.shape, layer, x, weights, dtype)
        expected = getattr(F, f"conv{rank}d")(tt(x, dtype), tt(weights["weight"], dtype), tt(weights["bias"], dtype),
                                              stride=list(stride), padding=1, dilation=list(dilation))
        assert batch * math.prod(expected.shape[2:]) < cout          # the channel-major order is the one tested
        assert_close(y, expected, dtype, (rank, sizes, budget))


def test_workspace_left_by_an_earlier_run_is_never_read(monkeypatch):
    """The im2col buffer is handed from one run to the next. Fill the spare buffer with NaN bytes: a conv network
    (both im2col orders, a grouped conv, a transposed conv) must still match torch exactly as from a fresh buffer."""
    from layercalc import kernels
    rng = np.random.default_rng(7)
    spec = {"input": [4, 10, 9], "batch": 2, "layers": [
        {"type": "conv2d", "name": "a", "out_channels": 6, "kernel_size": 3, "padding": 1},          # kernel-major
        {"type": "conv2d", "name": "b", "out_channels": 80, "kernel_size": 3, "stride": 3},         # channel-major
        {"type": "conv2d", "name": "c", "out_channels": 8, "kernel_size": 2, "groups": 4},
        {"type": "conv_transpose2d", "name": "d", "out_channels": 3, "kernel_size": 3, "stride": 2}]}
    for layer in spec["layers"]:
        layer["bias"] = False
    net = layercalc.load(spec)
    shapes = {"a": (6, 4, 3, 3), "b": (80, 6, 3, 3), "c": (8, 20, 2, 2), "d": (8, 3, 3, 3)}
    weights = {name: {"weight": rng.standard_normal(shape)} for name, shape in shapes.items()}
    x = rng.standard_normal((2, 4, 10, 9))
    net.run(x=x, weights=weights, dtype="float64")                   # leaves its buffer behind
    assert len(kernels._spare_buffers) == 1
    kernels._spare_buffers[0][:] = 0xFF                              # every float64 in it is now NaN
    y = net.run(x=x, weights=weights, dtype="float64")
    t = {name: torch.from_numpy(w["weight"]) for name, w in weights.items()}
    with torch.no_grad():
        ref = F.conv2d(torch.from_numpy(x), t["a"], padding=1)
        ref = F.conv2d(ref, t["b"], stride=3)
        ref = F.conv2d(ref, t["c"], groups=4)
        ref = F.conv_transpose2d(ref, t["d"], stride=2)
    assert_close(y, ref, "float64", "after a NaN-filled spare workspace")

@st.composite
def conv_transpose_cases(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    stride = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilation = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    padding = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"]),
                             st.lists(st.lists(st.integers(0, 2), min_size=2, max_size=2), min_size=rank,
                                      max_size=rank)))
    if padding == "same":
        output_padding = [0] * rank
    layer = {"type": f"conv_transpose{rank}d", "out_channels": cout, "groups": groups,
             "kernel_size": draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)),
             "stride": stride, "dilation": dilation, "output_padding": output_padding, "padding": padding,
             "bias": draw(st.booleans())}
    sizes = draw(st.lists(st.integers(1, {1: 12, 2: 7, 3: 4}[rank]), min_size=rank, max_size=rank))
    return rank, draw(st.integers(1, 3)), cin, sizes, layer, draw(dtypes), draw(st.integers(0, 2**31))


def transposed_reference(x, w, b, layer, sizes):
    """PyTorch's full transposed conv (no padding), then cropped (before, after) and extended by output_padding
    (zeros past the full result), then the bias: PyTorch's definition, written for any crop pair."""
    rank = len(sizes)
    k, s, d = layer["kernel_size"], layer["stride"], layer["dilation"]
    full = getattr(F, f"conv_transpose{rank}d")(x, w, None, stride=s, dilation=d, groups=layer["groups"])
    padding, op = layer["padding"], list(layer["output_padding"])
    if padding == "same":          # Keras: output n·s; crop the surplus (odd pixel after), or append zeros
        crop, op = [], []
        for n, kk, ss, dd in zip(sizes, k, s, d):
            surplus = dd * (kk - 1) + 1 - ss
            crop.append((surplus // 2, surplus - surplus // 2) if surplus >= 0 else (0, 0))
            op.append(max(-surplus, 0))
    elif padding == "valid":       # no crop; the cases always state output_padding, which Keras then uses as given
        crop = [(0, 0)] * rank
    elif isinstance(padding, int):
        crop = [(padding, padding)] * rank
    else:
        crop = [tuple(p) for p in padding]
    y = full
    for dim, ((before, after), extra) in enumerate(zip(crop, op)):
        axis = 2 + dim
        length = y.shape[axis]
        keep = length - before - after + extra
        stop = min(before + keep, length)
        y = y.narrow(axis, before, stop - before)
        if before + keep > length:
            shape = list(y.shape)
            shape[axis] = before + keep - length
            y = torch.cat([y, torch.zeros(shape, dtype=y.dtype)], dim=axis)
    if b is not None:
        y = y + b.reshape(1, -1, *([1] * rank))
    return y


@examples(120)
@given(conv_transpose_cases())
def test_conv_transpose_matches_torch(case):
    rank, batch, cin, sizes, layer, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cin, *sizes))
    weights = {"weight": rng.standard_normal((cin, layer["out_channels"] // layer["groups"], *layer["kernel_size"]))}
    if layer["bias"]:
        weights["bias"] = rng.standard_normal(layer["out_channels"])
    y = lc_run(x.shape, layer, x, weights, dtype)
    assume(y is not None)
    w, b = tt(weights["weight"], dtype), tt(weights["bias"], dtype) if layer["bias"] else None
    expected = transposed_reference(tt(x, dtype), w, b, layer, sizes)
    assert_close(y, expected, dtype, case)
    if isinstance(layer["padding"], int):       # and through torch's own padding/output_padding
        direct = getattr(F, f"conv_transpose{rank}d")(
            tt(x, dtype), w, b, stride=layer["stride"], padding=layer["padding"],
            output_padding=layer["output_padding"], groups=layer["groups"], dilation=layer["dilation"])
        assert_close(y, direct, dtype, case)


# ------------------------------------------------------------------------------------------------------ pooling

@st.composite
def pool_cases(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    layer = {"type": f"{kind}pool{rank}d", "kernel_size": kernel,
             "stride": draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)),
             "ceil_mode": draw(st.booleans())}
    if draw(st.booleans()):
        layer["padding"] = "same"
        layer["ceil_mode"] = False
    else:
        layer["padding"] = [draw(st.integers(0, k // 2)) for k in kernel]
    if kind == "max":
        layer["dilation"] = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    else:
        layer["count_include_pad"] = draw(st.sampled_from([None, True, False]))
        if rank > 1 and draw(st.booleans()):
            layer["divisor_override"] = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, {1: 20, 2: 10, 3: 6}[rank]), min_size=rank, max_size=rank))
    return rank, kind, draw(st.integers(1, 2)), draw(st.integers(1, 3)), sizes, layer, draw(dtypes), \
        draw(st.integers(0, 2**31))


@examples(150)
@given(pool_cases())
def test_pooling_matches_torch(case):
    rank, kind, batch, channels, sizes, layer, dtype, seed = case
    x = np.random.default_rng(seed).standard_normal((batch, channels, *sizes))
    y = lc_run(x.shape, layer, x, dtype=dtype)
    assume(y is not None)
    xt = tt(x, dtype)
    k, s = layer["kernel_size"], layer["stride"]
    if kind == "max":
        d = layer["dilation"]
        if layer["padding"] == "same":      # Keras: padded positions never win
            xt = F.pad(xt, torch_pad([tf_same(n, kk, ss, dd) for n, kk, ss, dd in zip(sizes, k, s, d)]),
                       value=-math.inf)
            padding = 0
        else:
            padding = layer["padding"]
        expected = getattr(F, f"max_pool{rank}d")(xt, k, s, padding=padding, dilation=d, ceil_mode=layer["ceil_mode"])
    elif layer["padding"] == "same":         # Keras: the mean over the real values of each window
        pads = torch_pad([tf_same(n, kk, ss) for n, kk, ss in zip(sizes, k, s)])
        pool = getattr(F, f"avg_pool{rank}d")
        include = layer["count_include_pad"] is True
        summed = pool(F.pad(xt, pads), k, s) * math.prod(k)
        counts = pool(F.pad(torch.ones_like(xt) if not include else torch.ones_like(xt), pads,
                            value=1.0 if include else 0.0), k, s) * math.prod(k)
        expected = summed / (layer["divisor_override"] if layer.get("divisor_override") else counts)
    else:
        extra = {"divisor_override": layer["divisor_override"]} if layer.get("divisor_override") else {}
        include = layer["count_include_pad"] is not False
        expected = getattr(F, f"avg_pool{rank}d")(xt, k, s, padding=layer["padding"], ceil_mode=layer["ceil_mode"],
                                                  count_include_pad=include, **extra)
    assert_close(y, expected, dtype, case)


@examples(80)
@given(st.sampled_from([1, 2, 3]), st.sampled_from(["avg", "max"]), st.data(), dtypes, st.integers(0, 2**31))
def test_adaptive_pooling_matches_torch(rank, kind, data, dtype, seed):
    sizes = data.draw(st.lists(st.integers(1, {1: 30, 2: 12, 3: 6}[rank]), min_size=rank, max_size=rank))
    output = data.draw(st.lists(st.one_of(st.none(), st.integers(1, 9)), min_size=rank, max_size=rank))
    x = np.random.default_rng(seed).standard_normal((2, 3, *sizes))
    y = lc_run(x.shape, {"type": f"adaptive_{kind}pool{rank}d", "output_size": output}, x, dtype=dtype)
    assert y is not None
    torch_output = output if rank > 1 else [output[0] or sizes[0]]     # 1-d torch takes no None
    expected = getattr(F, f"adaptive_{kind}_pool{rank}d")(tt(x, dtype), torch_output)
    assert_close(y, expected, dtype, (sizes, output))


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_global_pooling_matches_torch(kind, keepdims, layout):
    x = np.random.default_rng(3).standard_normal((2, 5, 6, 7)).astype(np.float32)
    given = x if layout == "NCHW" else x.transpose(0, 2, 3, 1)
    y = lc_run(given.shape, {"type": f"global_{kind}pool", "keepdims": keepdims}, given, layout=layout)
    reduce = torch.mean if kind == "avg" else torch.amax
    expected = reduce(torch.from_numpy(x), dim=(2, 3), keepdim=keepdims)
    if keepdims and layout == "NHWC":
        expected = expected.permute(0, 2, 3, 1)
    assert_close(y, expected, "float32", (kind, keepdims, layout))


# ------------------------------------------------------------------------------------------ dense and reshaping

@examples(60)
@given(st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(1, 40), st.integers(1, 40), st.booleans(),
       dtypes, st.integers(0, 2**31))
def test_linear_on_any_leading_dims_matches_torch(middle, fin, fout, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *middle, fin))
    weights = {"weight": rng.standard_normal((fout, fin))}
    if bias:
        weights["bias"] = rng.standard_normal(fout)
    y = lc_run(x.shape, {"type": "linear", "out_features": fout, "bias": bias}, x, weights, dtype)
    expected = F.linear(tt(x, dtype), tt(weights["weight"], dtype), tt(weights["bias"], dtype) if bias else None)
    assert_close(y, expected, dtype, (middle, fin, fout))


@examples(40)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.data())
def test_flatten_and_reshape_match_torch(shape, data):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rank = len(shape)
    start = data.draw(st.integers(-rank, rank - 1))
    end = data.draw(st.integers(-rank, rank - 1))
    y = lc_run(x.shape, {"type": "flatten", "start_dim": start, "end_dim": end}, x)
    if start % rank <= end % rank:
        assert_close(y, torch.flatten(torch.from_numpy(x), start, end), "float32", (shape, start, end))
    target = [-1, *reversed(shape[1:])][:max(1, rank - 1)]
    y = lc_run(x.shape, {"type": "reshape", "shape": target}, x)
    assert_close(y, torch.from_numpy(x).reshape(shape[0], *target), "float32", (shape, target))


@examples(30)
@given(st.sampled_from([1, 2, 3]), st.data())
def test_zero_pad_matches_torch(rank, data):
    pairs = data.draw(st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=2), min_size=rank, max_size=rank))
    x = np.random.default_rng(1).standard_normal((2, 3, *([4] * rank))).astype(np.float32)
    y = lc_run(x.shape, {"type": "zero_pad", "padding": pairs}, x)
    assert_close(y, F.pad(torch.from_numpy(x), torch_pad(pairs)), "float32", pairs)


# -------------------------------------------------------------------------------------------------- normalization

@examples(60)
@given(st.sampled_from([(1, 2), (1, 3), (2, 4), (3, 5)]), st.booleans(), st.booleans(), dtypes, st.integers(0, 2**31))
def test_batchnorm_inference_matches_torch(kind_rank, affine, track, dtype, seed):
    kind, rank = kind_rank
    rng = np.random.default_rng(seed)
    shape = (3, 4, *([5] * (rank - 2)))
    x = rng.standard_normal(shape) * 3 + 1
    module = getattr(nn, f"BatchNorm{kind}d")(4, eps=1e-3, affine=affine, track_running_stats=track)
    module = module.to(TORCH_DTYPE[dtype])       # before loading: float64 statistics must not pass through float32
    weights = {}
    if affine:
        weights["weight"], weights["bias"] = rng.standard_normal(4), rng.standard_normal(4)
    if track:
        weights["running_mean"], weights["running_var"] = rng.standard_normal(4), rng.uniform(0.2, 3, 4)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    module = module.eval()
    y = lc_run(x.shape, {"type": f"batchnorm{kind}d", "eps": 1e-3, "affine": affine, "track_running_stats": track},
               x, weights, dtype)
    with torch.no_grad():
        assert_close(y, module(tt(x, dtype)), dtype, (kind_rank, affine, track))


@examples(40)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=4), st.data(), dtypes, st.integers(0, 2**31))
def test_layernorm_matches_torch(shape, data, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 0.5
    count = data.draw(st.integers(1, len(shape) - 1))
    normalized = shape[len(shape) - count:]
    affine, bias = data.draw(st.booleans()), data.draw(st.booleans())
    weights = {}
    if affine:
        weights["weight"] = rng.standard_normal(normalized)
        if bias:
            weights["bias"] = rng.standard_normal(normalized)
    y = lc_run(x.shape, {"type": "layernorm", "normalized_shape": normalized, "elementwise_affine": affine,
                         "bias": bias}, x, weights, dtype)
    expected = F.layer_norm(tt(x, dtype), normalized, tt(weights["weight"], dtype) if affine else None,
                            tt(weights["bias"], dtype) if affine and bias else None)
    assert_close(y, expected, dtype, (shape, normalized))


@examples(40)
@given(st.sampled_from([1, 2, 3, 6]), st.integers(0, 2), st.booleans(), st.sampled_from(["NCHW", "NHWC"]), dtypes,
       st.integers(0, 2**31))
def test_groupnorm_matches_torch(groups, spatial_rank, affine, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, *([4] * spatial_rank)))
    weights = {"weight": rng.standard_normal(6), "bias": rng.standard_normal(6)} if affine else {}
    given = np.moveaxis(x, 1, -1) if layout == "NHWC" else x
    y = lc_run(given.shape, {"type": "groupnorm", "num_groups": groups, "affine": affine}, given, weights, dtype,
               layout)
    expected = F.group_norm(tt(x, dtype), groups, tt(weights["weight"], dtype) if affine else None,
                            tt(weights["bias"], dtype) if affine else None)
    if layout == "NHWC":
        expected = torch.movedim(expected, 1, -1)
    assert_close(y, expected, dtype, (groups, spatial_rank, layout))


# ---------------------------------------------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": ({}, F.relu), "relu6": ({}, F.relu6), "leaky_relu": ({"negative_slope": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
    "sigmoid": ({}, torch.sigmoid), "tanh": ({}, torch.tanh), "gelu": ({}, F.gelu),
    "gelu_tanh": ({"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh")), "silu": ({}, F.silu),
    "swish": ({}, F.silu), "hardswish": ({}, F.hardswish), "hardsigmoid": ({}, F.hardsigmoid),
    "softmax": ({"dim": 1}, lambda t: F.softmax(t, dim=1)), "identity": ({}, lambda t: t),
    "dropout": ({"p": 0.5}, lambda t: t),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(name, dtype):
    fields, reference = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    # wide range: both tails of sigmoid / erf / tanh, the kinks of relu6 / hardswish, and exact zeros
    x = np.concatenate([rng.standard_normal(400) * 4, np.linspace(-40, 40, 161), [0.0, -3.0, 3.0, 6.0]])
    x = x.reshape(1, 5, -1) if x.size % 5 == 0 else x[:x.size // 5 * 5].reshape(1, 5, -1)
    layer = {"type": "gelu" if name == "gelu_tanh" else name, **fields}
    y = lc_run(x.shape, layer, x, dtype=dtype)
    assert_close(y, reference(tt(x, dtype)), dtype, name)


def test_erf_is_accurate_to_float64():
    """The executor's own erf (NumPy has none) against math.erf, across every piece and beyond."""
    from layercalc.kernels import erf
    x = np.concatenate([np.linspace(-8, 8, 20001), [0.0, 1e-300, -1e-12, 5.9999, 6.0, 100.0]])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), expected, rtol=1e-14, atol=1e-15)   # a few ulp of 1
