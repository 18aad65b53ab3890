"""Tensor operations (layercalc/layers/tensor_ops.py and resample.py) against PyTorch as the oracle: output shapes on
hypothesis-generated configurations, forward outputs compared numerically (torch.permute/transpose/roll, slicing,
torch.select, F.interpolate, nn.PixelShuffle/PixelUnshuffle/ChannelShuffle, torch.mean/sum), params and MACs 0,
FLOPs by hand, receptive fields by hand, and bad configurations refused in one line."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import layercalc
from layercalc import LayerCalcError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec(input_shape, layers, layout="NCHW", batch=2):
    return {"input": list(input_shape), "batch": batch, "layout": layout,
            "layers": layers if isinstance(layers, list) else [layers]}


def lc(input_shape, layer, layout="NCHW", batch=2):
    """(report entry of the last layer, network) or the LayerCalcError raised."""
    try:
        net = layercalc.load(spec(input_shape, layer, layout, batch))
        return net.analyze().layers[-1], net
    except LayerCalcError as exc:
        return exc, None


def run_both(input_shape, layer, torch_fn, layout="NCHW", dtype="float64", batch=2, seed=0):
    """Run the one-layer network and ``torch_fn`` on the same input; both outputs as arrays (or the error)."""
    entry, net = lc(input_shape, layer, layout, batch)
    x = np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(dtype)
    try:
        with torch.no_grad():
            expected = torch_fn(torch.from_numpy(x.copy()))
    except (RuntimeError, ValueError, IndexError, NotImplementedError) as exc:
        expected = exc
    if isinstance(entry, LayerCalcError):
        return entry, expected, None
    got = net.run(x=x, dtype=dtype)
    return entry, expected, got


def check(entry, expected, got, rtol=1e-12, atol=1e-12):
    assert not isinstance(entry, Exception), f"layercalc refused: {entry}"
    assert not isinstance(expected, Exception), f"torch refused: {expected}"
    assert entry.output_shape == list(expected.shape)
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), rtol=rtol, atol=atol)
    assert entry.params == 0 and entry.macs == 0


def refused(entry, *words):
    assert isinstance(entry, LayerCalcError), f"accepted: {entry}"
    text = str(entry)
    assert "\n" not in text
    for word in words:
        assert word in text, text


shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4)        # one example, batch excluded


# ------------------------------------------------------------------------------------------ permute, transpose

@SETTINGS
@given(shape=shapes, data=st.data())
def test_permute_matches_torch(shape, data):
    rank = len(shape) + 1
    rest = data.draw(st.permutations(list(range(1, rank))))
    negative = data.draw(st.booleans())
    dims = [0] + [d - rank if negative else d for d in rest]
    entry, expected, got = run_both(shape, {"type": "permute", "dims": dims}, lambda x: x.permute(*dims))
    check(entry, expected, got)
    assert entry.flops == 0


@SETTINGS
@given(shape=shapes, data=st.data())
def test_transpose_matches_torch(shape, data):
    rank = len(shape) + 1
    a = data.draw(st.integers(-(rank - 1), rank - 1).filter(lambda d: d % rank != 0))
    b = data.draw(st.integers(-(rank - 1), rank - 1).filter(lambda d: d % rank != 0))
    entry, expected, got = run_both(shape, {"type": "transpose", "dim0": a, "dim1": b},
                                    lambda x: x.transpose(a, b))
    check(entry, expected, got)


def test_permute_and_transpose_refusals():
    refused(lc([3, 4, 5], {"type": "permute", "dims": [1, 0, 2, 3]})[0], "moves the batch dim")
    refused(lc([3, 4, 5], {"type": "permute", "dims": [0, 1, 1, 3]})[0], "not a permutation")
    refused(lc([3, 4, 5], {"type": "permute", "dims": [0, 1, 2]})[0], "must list all 4 dims")
    refused(lc([3, 4], {"type": "permute", "dims": [2, 1]})[0], "Keras' Permute dims [2, 1]", "[0, 2, 1]")
    refused(lc([3, 4, 5], {"type": "permute", "dims": [0, 1, 2, 4]})[0], "out of range")
    refused(lc([3, 4, 5], {"type": "transpose", "dim0": 0, "dim1": 2})[0], "moves the batch dim")
    refused(lc([3, 4, 5], {"type": "transpose", "dim0": 1, "dim1": 5})[0], "dim1 5 is out of range")


# ----------------------------------------------------------------------------------------------- slice, select

index = st.one_of(st.none(), st.integers(-7, 7))


@SETTINGS
@given(shape=shapes, data=st.data())
def test_slice_matches_torch(shape, data):
    rank = len(shape) + 1
    dims = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    starts = [data.draw(index) for _ in dims]
    stops = [data.draw(index) for _ in dims]
    steps = [data.draw(st.integers(1, 3)) for _ in dims]

    def torch_slice(x):
        key = [slice(None)] * rank
        for d, a, b, s in zip(dims, starts, stops, steps):
            key[d] = slice(a, b, s)
        y = x[tuple(key)]
        if 0 in y.shape:
            raise ValueError("selects nothing")                    # torch returns an empty tensor
        return y

    layer = {"type": "slice", "dim": dims, "start": starts, "stop": stops, "step": steps}
    entry, expected, got = run_both(shape, layer, torch_slice)
    if isinstance(expected, Exception):
        refused(entry, "selects nothing")
    else:
        check(entry, expected, got)


@SETTINGS
@given(shape=shapes, data=st.data())
def test_select_matches_torch(shape, data):
    rank = len(shape) + 1
    dim = data.draw(st.integers(1, rank - 1))
    i = data.draw(st.integers(-6, 6))
    entry, expected, got = run_both(shape, {"type": "select", "dim": dim, "index": i}, lambda x: x.select(dim, i))
    if isinstance(expected, Exception):
        refused(entry, f"index {i} is out of range")
    else:
        check(entry, expected, got)


def test_vit_class_token():
    # ViT: [N, 197, 768] → x[:, 0] → [N, 768]
    entry, _ = lc([197, 768], {"type": "select", "dim": 1, "index": 0})
    assert entry.output_shape == [2, 768] and entry.flops == 0


def test_slice_and_select_refusals():
    refused(lc([3, 4], {"type": "slice", "dim": 0, "start": 1})[0], "batch dim 0")
    refused(lc([3, 4], {"type": "slice", "dim": 2, "start": 4})[0], "slice [4:] of dim 2 (size 4)", "selects nothing")
    refused(lc([3, 4], {"type": "slice", "dim": [1, 2], "start": [0, 1, 2]})[0], "start has 3 values")
    refused(lc([3, 4], {"type": "slice", "dim": 1, "step": 0})[0], "step")
    refused(lc([3, 4], {"type": "slice", "dim": [1, -2]})[0], "more than once")
    refused(lc([3, 4], {"type": "select", "dim": 0, "index": 0})[0], "batch dim 0")
    refused(lc([3, 4], {"type": "select", "dim": 1, "index": 3})[0], "index 3 is out of range", "-3..2")


# ------------------------------------------------------------------------------------------------------- roll

@SETTINGS
@given(shape=shapes, data=st.data())
def test_roll_matches_torch(shape, data):
    rank = len(shape) + 1
    dims = data.draw(st.lists(st.integers(-(rank - 1), rank - 1).filter(lambda d: d % rank), min_size=1,
                              max_size=3))
    shifts = [data.draw(st.integers(-9, 9)) for _ in dims]
    entry, expected, got = run_both(shape, {"type": "roll", "shifts": shifts, "dims": dims},
                                    lambda x: torch.roll(x, shifts, dims))
    check(entry, expected, got)


def test_roll_refusals_and_field():
    refused(lc([3, 4], {"type": "roll", "shifts": 1, "dims": 0})[0], "batch dim 0")
    refused(lc([3, 4], {"type": "roll", "shifts": [1, 2], "dims": 1})[0], "same length")
    # Swin's shift on H, W ends the field; a roll of the channels keeps it
    entry, _ = lc([3, 8, 8], [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                              {"type": "roll", "shifts": [-2, -2], "dims": [2, 3]}])
    assert entry.receptive_field is None and "circular shift" in entry.notes[0]
    entry, _ = lc([3, 8, 8], [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                              {"type": "roll", "shifts": 1, "dims": 1}])
    assert entry.receptive_field == [3, 3]


# -------------------------------------------------------------------------------------- pixel and channel shuffle

@SETTINGS
@given(r=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), extra=st.integers(0, 2))
def test_pixel_shuffle_matches_torch(r, c, h, w, extra):
    channels = c * r * r + extra                              # extra > 0: not divisible (unless r = 1)
    entry, expected, got = run_both([channels, h, w], {"type": "pixel_shuffle", "upscale_factor": r},
                                    torch.nn.PixelShuffle(r))
    if isinstance(expected, Exception):
        refused(entry, "not divisible by upscale_factor²")
    else:
        check(entry, expected, got)


@SETTINGS
@given(r=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7))
def test_pixel_unshuffle_matches_torch(r, c, h, w):
    entry, expected, got = run_both([c, h, w], {"type": "pixel_unshuffle", "downscale_factor": r},
                                    torch.nn.PixelUnshuffle(r))
    if isinstance(expected, Exception):
        refused(entry, "not divisible by downscale_factor")
    else:
        check(entry, expected, got)


@SETTINGS
@given(g=st.integers(1, 4), c=st.integers(1, 4), extra=st.integers(0, 1), spatial=st.lists(st.integers(1, 4),
       min_size=1, max_size=2), nhwc=st.booleans())
def test_channel_shuffle_matches_torch(g, c, extra, spatial, nhwc):
    channels = g * c + extra
    shuffle = torch.nn.ChannelShuffle(g)
    rank = len(spatial) + 2
    if nhwc:
        shape = [*spatial, channels]
        to_first = [0, rank - 1, *range(1, rank - 1)]
        to_last = [0, *range(2, rank), 1]
        fn = lambda x: shuffle(x.permute(*to_first)).permute(*to_last)   # noqa: E731
    else:
        shape, fn = [channels, *spatial], shuffle
    entry, expected, got = run_both(shape, {"type": "channel_shuffle", "groups": g}, fn,
                                    layout="NHWC" if nhwc else "NCHW")
    if isinstance(expected, Exception):
        refused(entry, "not divisible by groups")
    else:
        check(entry, expected, got)


def test_shuffle_refusals():
    refused(lc([12, 3, 3], {"type": "pixel_shuffle", "upscale_factor": 2}, layout="NHWC")[0], "NHWC",
            "depth_to_space")
    refused(lc([4, 3], {"type": "pixel_shuffle", "upscale_factor": 2})[0], "at least a 4-d input")
    refused(lc([6], {"type": "channel_shuffle", "groups": 2})[0], "more than 2 dims")


# ------------------------------------------------------------------------------------------------- reductions

@SETTINGS
@given(shape=shapes, data=st.data(), reduction=st.sampled_from(["mean", "sum"]), keepdim=st.booleans())
def test_reductions_match_torch(shape, data, reduction, keepdim):
    rank = len(shape) + 1
    dims = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    fn = (lambda x: x.mean(dims, keepdim=keepdim)) if reduction == "mean" else (lambda x: x.sum(dims, keepdim=keepdim))
    entry, expected, got = run_both(shape, {"type": reduction, "dim": dims, "keepdim": keepdim}, fn)
    check(entry, expected, got, rtol=1e-10)
    n_in = 2 * math.prod(shape)
    n_out = expected.numel()
    # by hand: R − 1 adds per output (sum), plus one divide (mean)
    assert entry.flops == (n_in if reduction == "mean" else n_in - n_out)


def test_reduction_refusals_and_fields():
    refused(lc([3, 4], {"type": "mean", "dim": [0, 1]})[0], "batch dim 0")
    refused(lc([3, 4], {"type": "sum", "dim": [1, -2]})[0], "more than once")
    conv = {"type": "conv2d", "out_channels": 4, "kernel_size": 3}
    # mean over H, W: global average pooling's field (the whole 8×8 input)
    entry, _ = lc([3, 8, 8], [conv, {"type": "mean", "dim": [2, 3]}])
    assert entry.receptive_field == [8, 8] and entry.output_shape == [2, 4]
    # keepdim over W only: the field widens along W
    entry, _ = lc([3, 8, 8], [conv, {"type": "sum", "dim": 3, "keepdim": True}])
    assert entry.receptive_field == [3, 8]
    # the channels reduced without keepdim: H becomes the channel dim → no field, with a note
    entry, _ = lc([3, 8, 8], [conv, {"type": "mean", "dim": 1}])
    assert entry.receptive_field is None and "no longer" in entry.notes[0]


# ------------------------------------------------------------------------------------------------- upsampling

def _interp_cases():
    cases = []
    shapes_by_rank = {1: [[2, 5], [1, 1], [3, 100]], 2: [[2, 4, 5], [1, 1, 3], [2, 7, 3]], 3: [[1, 3, 2, 4]]}
    modes = {1: ["nearest", "nearest-exact", "linear"], 2: ["nearest", "nearest-exact", "bilinear"],
             3: ["nearest", "nearest-exact", "trilinear"]}
    factors = [2, 3, 0.5, 1.5, 1 / 3, 0.29, 2.5, 1.09, 1.0, 0.7]
    for rank, shape_list in shapes_by_rank.items():
        for shape, mode in itertools.product(shape_list, modes[rank]):
            aligns = [None, False, True] if "linear" in mode else [None]
            for align in aligns:
                for f in factors:
                    if all(math.floor(n * f) >= 1 for n in shape[1:]):
                        for recompute in (None, True):
                            cases.append((shape, mode, align, {"scale_factor": f,
                                                               "recompute_scale_factor": recompute}))
                for size in ([1] * rank, [n * 2 for n in shape[1:]], [n + 3 for n in shape[1:]],
                             [max(1, n - 1) for n in shape[1:]], shape[1:]):
                    cases.append((shape, mode, align, {"size": size}))
    return cases


INTERP_CASES = _interp_cases()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_upsample_grid_matches_interpolate(dtype):
    """Every mode × align_corners × scale_factor (recomputed or not) / size, on 1-, 2- and 3-d inputs."""
    compared = 0
    for shape, mode, align, sizing in INTERP_CASES:
        layer = {"type": "upsample", "mode": mode, **{k: v for k, v in sizing.items() if v is not None}}
        if align is not None:
            layer["align_corners"] = align

        def fn(x, sizing=sizing, mode=mode, align=align):
            return F.interpolate(x, mode=mode, align_corners=align, **sizing)

        entry, expected, got = run_both(shape, layer, fn, dtype=dtype)
        tol = 1e-5 if dtype == "float32" else 1e-12
        check(entry, expected, got, rtol=tol, atol=tol)
        rank = len(shape) - 1
        per = 0 if mode.startswith("nearest") else 2 ** (rank + 1) - 1
        assert entry.flops == per * math.prod(entry.output_shape)
        compared += 1
    assert compared == len(INTERP_CASES) > 500


@SETTINGS
@given(rank=st.integers(1, 3), data=st.data())
def test_upsample_random_configurations(rank, data):
    shape = [data.draw(st.integers(1, 3))] + [data.draw(st.integers(1, 9)) for _ in range(rank)]
    mode = data.draw(st.sampled_from(["nearest", "nearest-exact", ["linear", "bilinear", "trilinear"][rank - 1]]))
    if data.draw(st.booleans()):
        sizing = {"size": [data.draw(st.integers(1, 12)) for _ in range(rank)]}
    else:
        sizing = {"scale_factor": [data.draw(st.floats(0.1, 4.0)) for _ in range(rank)]}
    align = data.draw(st.sampled_from([None, False, True])) if "linear" in mode else None
    layer = {"type": "upsample", "mode": mode, **sizing}
    if align is not None:
        layer["align_corners"] = align
    entry, expected, got = run_both(shape, layer, lambda x: F.interpolate(x, mode=mode, align_corners=align,
                                                                          **sizing), dtype="float32")
    if isinstance(expected, Exception):
        refused(entry, "size < 1")
    else:
        check(entry, expected, got, rtol=1e-5, atol=1e-5)


def test_upsample_nhwc_matches_interpolate():
    entry, expected, got = run_both([4, 5, 3], {"type": "upsample", "scale_factor": 1.5, "mode": "bilinear"},
                                    lambda x: F.interpolate(x.permute(0, 3, 1, 2), scale_factor=1.5,
                                                            mode="bilinear").permute(0, 2, 3, 1), layout="NHWC")
    check(entry, expected, got)


@pytest.mark.parametrize("layout, image, mode", [("NCHW", [3, 37, 45], "bilinear"), ("NCHW", [2, 20, 9], "nearest"),
                                                  ("NHWC", [37, 45, 3], "bilinear")])
def test_upsample_size_from_another_input_matches_interpolate(layout, image, mode):
    """torchvision's FCN: ``F.interpolate(x, size=input.shape[-2:], mode="bilinear", align_corners=False)`` on the
    head's stride-8 output — the size read from the image, whatever it is (37×45 is no multiple of 8: a scale factor
    of 8 would give 40×48). Here a stride-4 conv then the resize to the network input's size; FLOPs 7 per output
    element (bilinear: 4 multiplies, 3 adds), 0 for nearest."""
    channels_last = layout == "NHWC"
    conv = {"name": "head", "type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 4}
    resize = {"name": "up", "type": "upsample", "mode": mode, "inputs": ["head", "input"], "size_from": 1}
    if mode == "bilinear":
        resize["align_corners"] = False
    net = layercalc.load(spec(image, [conv, resize], layout))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *image))
    cin = image[-1] if channels_last else image[0]
    weight, bias = rng.standard_normal((5, cin, 3, 3)), rng.standard_normal(5)
    got = net.run(x=x, weights={"head.weight": weight, "head.bias": bias}, dtype="float64")
    t = torch.from_numpy(x.transpose(0, 3, 1, 2) if channels_last else x)
    with torch.no_grad():
        y = F.conv2d(t, torch.from_numpy(weight), torch.from_numpy(bias), stride=4)
        expected = F.interpolate(y, size=t.shape[-2:], mode=mode, **({"align_corners": False}
                                                                       if mode == "bilinear" else {})).numpy()
    if channels_last:
        expected = expected.transpose(0, 2, 3, 1)
    entry = net.analyze().layer("up")
    assert entry.output_shape == list(expected.shape) and entry.inputs == ["head", "input"]
    assert entry.flops == (7 if mode == "bilinear" else 0) * expected.size
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # the other order: the reference first (size_from 0), the resized input second
    swapped = spec(image, [conv, {**resize, "inputs": ["input", "head"], "size_from": 0}], layout)
    np.testing.assert_array_equal(layercalc.load(swapped).run(x=x, weights={"head.weight": weight,
                                                                            "head.bias": bias}, dtype="float64"), got)


def test_upsample_size_from_refusals():
    conv = {"name": "head", "type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 4}
    up = {"type": "upsample", "size_from": 1}
    refused(lc([3, 16, 16], [conv, up])[0], "size_from 1 needs two inputs", "got 1")
    refused(lc([3, 16, 16], [conv, {"type": "upsample", "size": 8, "inputs": ["head", "input"]}])[0],
            "takes one input, got 2")
    refused(lc([3, 16, 16], [conv, {**up, "size": 4, "inputs": ["head", "input"]}])[0],
            "exactly one of size, scale_factor and size_from (got size 4 and size_from 1)")
    refused(lc([3, 16, 16], [conv, {**up, "size_from": 2, "inputs": ["head", "input"]}])[0], "size_from")
    refused(lc([3, 16, 16], [conv, {**up, "size_from": True, "inputs": ["head", "input"]}])[0], "boolean")
    refused(lc([3, 16, 16], [conv, {"name": "flat", "type": "flatten", "inputs": "input"},
                             {**up, "inputs": ["head", "flat"]}])[0], "has 0 spatial dims, the resized one 2")
    refused(lc([3, 16, 16], [conv, {**up, "recompute_scale_factor": True, "inputs": ["head", "input"]}])[0],
            "recompute_scale_factor is only meaningful with scale_factor, not with size_from")


def test_output_size_is_floored_in_double_precision():
    # 100·0.29 = 28.999999999999996 in doubles: PyTorch gives 28, and so does layercalc
    entry, _ = lc([1, 100], {"type": "upsample", "scale_factor": 0.29})
    assert entry.output_shape == [2, 1, 28]
    assert list(F.interpolate(torch.zeros(1, 1, 100), scale_factor=0.29).shape) == [1, 1, 28]


@pytest.mark.parametrize("factors, interpolation", [([2, 3], "nearest"), ([3, 1], "bilinear"), ([1, 2], "bilinear")])
def test_keras_upsampling2d(factors, interpolation):
    fh, fw = factors
    if interpolation == "nearest":       # Keras: ops.repeat along H, then W
        fn = lambda x: x.repeat_interleave(fh, dim=2).repeat_interleave(fw, dim=3)  # noqa: E731
    else:                                # Keras: image.resize to H·fh × W·fw, half-pixel centres
        fn = lambda x: F.interpolate(x, size=(x.shape[2] * fh, x.shape[3] * fw), mode="bilinear",  # noqa: E731
                                     align_corners=False)
    entry, expected, got = run_both([3, 4, 5], {"type": "upsampling2d", "size": factors,
                                                "interpolation": interpolation}, fn)
    check(entry, expected, got)
    assert entry.flops == (0 if interpolation == "nearest" else 7 * math.prod(entry.output_shape))


def test_keras_upsampling1d_and_3d():
    entry, expected, got = run_both([5, 2], {"type": "upsampling1d", "size": 3},
                                    lambda x: x.repeat_interleave(3, dim=1), layout="NHWC")
    check(entry, expected, got)
    entry, expected, got = run_both([2, 2, 3, 2], {"type": "upsampling3d", "size": [1, 2, 3]},
                                    lambda x: x.repeat_interleave(2, 3).repeat_interleave(3, 4))
    check(entry, expected, got)


def test_upsample_refusals():
    refused(lc([3, 4, 4], {"type": "upsample", "size": 8, "scale_factor": 2})[0],
            "exactly one of size, scale_factor and size_from (got size 8 and scale_factor 2.0)")
    refused(lc([3, 4, 4], {"type": "upsample"})[0], "exactly one of size, scale_factor and size_from")
    refused(lc([3, 4, 4], {"type": "upsample", "scale_factor": 2, "align_corners": True})[0],
            "align_corners can only be set with the linear modes")
    refused(lc([3, 4, 4], {"type": "upsample", "scale_factor": 2, "mode": "linear"})[0], "needs a 3-d input")
    refused(lc([3, 4, 4], {"type": "upsample", "scale_factor": 0.1})[0], "size < 1")
    refused(lc([3, 4, 4], {"type": "upsample", "size": 8, "recompute_scale_factor": True})[0], "only meaningful")
    refused(lc([3, 4, 4], {"type": "upsample", "size": [8, 8, 8]})[0], "1 or 2 values")
    refused(lc([3, 4, 4], {"type": "upsample", "scale_factor": 2, "mode": "bicubic"})[0], "mode")
    refused(lc([3], {"type": "upsample", "scale_factor": 2})[0], "3-d, 4-d or 5-d input")


# ------------------------------------------------------------------------------------------- receptive fields

def test_receptive_fields_by_hand():
    conv = {"type": "conv2d", "out_channels": 4, "kernel_size": 3}
    # swapping H and W permutes the field (here a 3×1 conv makes it non-square)
    tall = {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 1]}
    entry, _ = lc([3, 8, 8], [tall, {"type": "transpose", "dim0": 2, "dim1": 3}])
    assert entry.receptive_field == [1, 3]
    # NCHW → NHWC order in an NCHW network: channels land in a spatial dim, the field ends with a note
    entry, _ = lc([3, 8, 8], [conv, {"type": "permute", "dims": [0, 2, 3, 1]}])
    assert entry.receptive_field is None and "no longer the input's" in entry.notes[0]
    # a strided slice is a 1-wide window with stride 2: field kept, jump doubled; a 3×3 conv after it sees 5
    entry, _ = lc([3, 9, 9], [conv, {"type": "slice", "dim": [2, 3], "start": 1, "step": 2}, conv])
    assert entry.receptive_field == [3 + 2 * 2, 3 + 2 * 2] and entry.jump == [2, 2]
    # pixel_unshuffle(2): a 2×2 window with stride 2 → conv 3×3 after it: 1 + 1 = 2, then 2 + 2·2 = 6
    entry, _ = lc([2, 8, 8], [{"type": "pixel_unshuffle", "downscale_factor": 2}, conv])
    assert entry.receptive_field == [6, 6] and entry.jump == [2, 2]
    # pixel_shuffle(2): one input position per output, jump 1/2, and later layers report none
    net = layercalc.load(spec([8, 4, 4], [conv, {"type": "pixel_shuffle", "upscale_factor": 2}, conv]))
    layers = net.analyze().layers
    assert layers[1].receptive_field == [3, 3] and layers[1].jump == [0.5, 0.5]
    assert layers[2].receptive_field is None and "pixel_shuffle" in layers[2].notes[-1]
    # bilinear ×2: two neighbouring inputs per dim (3 + 1), jump 1/2; nearest: one (3)
    entry, _ = lc([3, 8, 8], [conv, {"type": "upsample", "scale_factor": 2, "mode": "bilinear"}])
    assert entry.receptive_field == [4, 4] and entry.jump == [0.5, 0.5]
    entry, _ = lc([3, 8, 8], [conv, {"type": "upsample", "scale_factor": 2}])
    assert entry.receptive_field == [3, 3]
    # size equal to the input: PyTorch copies, the field goes on
    entry, _ = lc([3, 8, 8], [conv, {"type": "upsample", "size": 6, "mode": "bilinear"}, conv])
    assert entry.receptive_field == [5, 5]
    # select of a spatial dim: the other keeps its field, with a note
    entry, _ = lc([3, 8, 8], [tall, {"type": "select", "dim": 3, "index": 0}])
    assert entry.receptive_field == [3] and "gone" in entry.notes[0]


# ---------------------------------------------------------------------------------------------- FlopCounterMode

def test_flop_counter_mode_counts_zero_for_these_ops():
    """What docs/conventions.md says FlopCounterMode reports for the tensor operations: 0 for every one."""
    x = torch.randn(1, 8, 6, 6)
    ops = [lambda: x.permute(0, 2, 3, 1).contiguous(), lambda: x.transpose(2, 3).contiguous(),
           lambda: x[:, :, 1:5:2].contiguous(), lambda: x[:, 0].contiguous(), lambda: torch.roll(x, (1, 2), (2, 3)),
           lambda: F.interpolate(x, scale_factor=2), lambda: F.interpolate(x, scale_factor=2, mode="bilinear"),
           lambda: F.interpolate(torch.randn(1, 2, 4, 4, 4), scale_factor=2, mode="trilinear"),
           lambda: F.pixel_shuffle(x, 2), lambda: F.pixel_unshuffle(x, 2), lambda: torch.nn.ChannelShuffle(2)(x),
           lambda: x.mean((2, 3)), lambda: x.sum(1)]
    for op in ops:
        with FlopCounterMode(display=False) as counter:
            op()
        assert counter.get_total_flops() == 0


def test_explanations_agree():
    from layercalc.explain import explain_layer
    cases = [([3, 8, 8], {"type": "upsample", "scale_factor": 1.5, "mode": "bilinear"}),
             ([3, 8, 8], {"type": "upsampling2d", "size": 2}), ([3, 8, 8], {"type": "mean", "dim": [2, 3]}),
             ([3, 8, 8], {"type": "sum", "dim": 1}), ([8, 4, 4], {"type": "pixel_shuffle", "upscale_factor": 2}),
             ([3, 8, 8], {"type": "slice", "dim": 2, "start": 1, "step": 3}),
             ([3, 8, 8], {"type": "roll", "shifts": 2, "dims": 3}), ([6, 2, 2], {"type": "channel_shuffle",
                                                                               "groups": 3})]
    for shape, layer in cases:
        net = layercalc.load(spec(shape, layer))
        step = net.resolve()[0]
        lines = explain_layer(step.layer, step.input_shapes, step.facts)
        assert not any("please report this bug" in line for line in lines), lines
