"""The NumPy executor on whole networks (branches, NHWC, .npz weights) against PyTorch 2.13, and its plumbing:
weight checking, PyTorch-like initialization, memory estimate and refusal, input handling, in-place safety."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import ResourceError, ShapeError, SpecError, executor, sources
from layercalc.formatting import human_bytes
from layercalc.weights import init_params

torch.set_num_threads(2)
F32 = dict(rtol=1e-4, atol=1e-5)


def randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, so BatchNorm is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)


def state_dict_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- residual block

class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock with a downsampling shortcut (module names = the spec's layer names)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.fc = nn.Linear(cout, 5)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        y = F.relu(y + self.downsample(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def residual_spec(cin=4, cout=8, stride=2, size=9, batch=2, layout="NCHW") -> dict:
    return {"name": "residual", "input": [cin, size, size] if layout == "NCHW" else [size, size, cin],
            "batch": batch, "layout": layout, "layers": [
                {"name": "conv1", "type": "conv2d", "out_channels": cout, "kernel_size": 3, "stride": stride,
                 "padding": 1, "bias": False},
                {"name": "bn1", "type": "batchnorm2d"}, {"name": "relu1", "type": "relu"},
                {"name": "conv2", "type": "conv2d", "out_channels": cout, "kernel_size": 3, "padding": 1,
                 "bias": False},
                {"name": "bn2", "type": "batchnorm2d"},
                {"name": "downsample.0", "type": "conv2d", "out_channels": cout, "kernel_size": 1, "stride": stride,
                 "bias": False, "inputs": ["input"]},
                {"name": "downsample.1", "type": "batchnorm2d"},
                {"name": "add", "type": "add", "inputs": ["bn2", "downsample.1"]},
                {"name": "relu2", "type": "relu"},
                {"name": "pool", "type": "adaptive_avgpool2d", "output_size": 1},
                {"name": "flatten", "type": "flatten"},
                {"name": "fc", "type": "linear", "out_features": 5}]}


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    module = BasicBlock(4, 8, 2)
    randomize_batchnorm(module, 1)
    return module.eval()


def test_residual_block_matches_torch(block):
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 9)).astype(np.float32)
    y = layercalc.load(residual_spec()).run(x=x, weights=state_dict_arrays(block))
    with torch.no_grad():
        np.testing.assert_allclose(y, block(torch.from_numpy(x)).numpy(), **F32)


def test_residual_block_float64_matches_torch(block):
    x = np.random.default_rng(1).standard_normal((3, 4, 9, 9))
    module = BasicBlock(4, 8, 2).double()
    module.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in block.state_dict().items()})
    y = layercalc.load(residual_spec(batch=3)).run(x=x, weights=state_dict_arrays(module), dtype="float64")
    assert y.dtype == np.float64
    with torch.no_grad():
        np.testing.assert_allclose(y, module.eval()(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12)


def test_weights_from_a_torch_state_dict_npz(block, tmp_path):
    """A state_dict saved with np.savez (num_batches_tracked included; dotted layer names) loads as is."""
    path = tmp_path / "block.npz"
    np.savez(path, **state_dict_arrays(block))
    loaded = sources.read_weights(path)
    assert set(loaded) == {"conv1", "bn1", "conv2", "bn2", "downsample.0", "downsample.1", "fc"}
    assert set(loaded["downsample.1"]) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    x = np.random.default_rng(2).standard_normal((2, 4, 9, 9)).astype(np.float32)
    for weights in (path, str(path), loaded):
        y = layercalc.load(residual_spec()).run(x=x, weights=weights)
        with torch.no_grad():
            np.testing.assert_allclose(y, block(torch.from_numpy(x)).numpy(), **F32)


def test_nhwc_network_matches_torch(block):
    """The same block in NHWC layout: same PyTorch-layout weights, channels-last input and output."""
    x = np.random.default_rng(3).standard_normal((2, 4, 9, 9)).astype(np.float32)
    y = layercalc.load(residual_spec(layout="NHWC")).run(x=x.transpose(0, 2, 3, 1), weights=state_dict_arrays(block))
    with torch.no_grad():
        np.testing.assert_allclose(y, block(torch.from_numpy(x)).numpy(), **F32)


def test_nhwc_flatten_is_keras_order():
    """NHWC flatten follows Keras (channels fastest): torch equivalent is permute-then-flatten."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    w_conv, w_fc = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((6, 64))
    spec = {"input": [5, 5, 3], "batch": 2, "layout": "NHWC", "layers": [
        {"name": "c", "type": "conv2d", "out_channels": 4, "kernel_size": 2, "bias": False},
        {"name": "f", "type": "flatten"}, {"name": "d", "type": "dense", "units": 6, "use_bias": False}]}
    y = layercalc.load(spec).run(x=x, weights={"c": {"weight": w_conv}, "d": {"weight": w_fc}})
    t = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w_conv).float())
    expected = F.linear(t.permute(0, 2, 3, 1).flatten(1), torch.from_numpy(w_fc).float())
    np.testing.assert_allclose(y, expected.numpy(), **F32)


# ------------------------------------------------------------------------------------------ concat / SE / multi-out

class InceptionLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(6, 4, 1)
        self.b2 = nn.Conv2d(6, 5, 3, padding=1)
        self.b3 = nn.Conv2d(6, 3, 1)
        self.se = nn.Conv2d(12, 12, 1)
        self.up = nn.ConvTranspose2d(12, 2, 2, stride=2)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        pooled = F.max_pool2d(x, 3, 1, 1)
        y = torch.cat([F.relu(self.b1(x)), F.relu(self.b2(x)), F.relu(self.b3(pooled))], dim=1)
        gate = torch.sigmoid(self.se(F.adaptive_avg_pool2d(y, 1)))
        y = y * gate
        return self.up(y), self.head(y.mean(dim=(2, 3)))


CONCAT_SPEC = {"name": "inception", "input": [6, 8, 8], "batch": 2, "layers": [
    {"name": "b1", "type": "conv2d", "out_channels": 4, "kernel_size": 1, "inputs": ["input"]},
    {"name": "r1", "type": "relu"},
    {"name": "b2", "type": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": "same", "inputs": ["input"]},
    {"name": "r2", "type": "relu"},
    {"name": "pool", "type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1, "inputs": ["input"]},
    {"name": "b3", "type": "conv2d", "out_channels": 3, "kernel_size": 1},
    {"name": "r3", "type": "relu"},
    {"name": "cat", "type": "concat", "inputs": ["r1", "r2", "r3"]},
    {"name": "squeeze", "type": "global_avgpool", "keepdims": True},
    {"name": "se", "type": "conv2d", "out_channels": 12, "kernel_size": 1},
    {"name": "gate", "type": "sigmoid"},
    {"name": "scaled", "type": "mul", "inputs": ["cat", "gate"]},
    {"name": "up", "type": "conv_transpose2d", "out_channels": 2, "kernel_size": 2, "stride": 2},
    {"name": "avg", "type": "global_avgpool", "inputs": ["scaled"]},
    {"name": "head", "type": "linear", "out_features": 3}]}


def test_concat_and_gate_block_with_two_outputs_matches_torch():
    torch.manual_seed(5)
    module = InceptionLike().eval()
    x = np.random.default_rng(5).standard_normal((2, 6, 8, 8)).astype(np.float32)
    out = layercalc.load(CONCAT_SPEC).run(x=x, weights=state_dict_arrays(module))
    assert set(out) == {"up", "head"}
    with torch.no_grad():
        up, head = module(torch.from_numpy(x))
    np.testing.assert_allclose(out["up"], up.numpy(), **F32)
    np.testing.assert_allclose(out["head"], head.numpy(), **F32)


def test_in_place_layers_never_corrupt_a_shared_tensor():
    """c feeds an identity (a view of c) and a relu; the relu runs at c's last use but must not overwrite c,
    which the identity's output still shows. Expected: c + relu(c)."""
    spec = {"input": [3, 6, 6], "layers": [
        {"name": "c", "type": "conv2d", "out_channels": 4, "kernel_size": 3},
        {"name": "i", "type": "identity"},
        {"name": "r", "type": "relu", "inputs": ["c"]},
        {"name": "sum", "type": "add", "inputs": ["i", "r"]}]}
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y = layercalc.load(spec).run(x=x, weights={"c": {"weight": w, "bias": b}})
    c = F.conv2d(torch.from_numpy(x), torch.from_numpy(w).float(), torch.from_numpy(b).float())
    np.testing.assert_allclose(y, (c + F.relu(c)).numpy(), **F32)


def test_the_callers_input_is_never_modified():
    spec = {"input": [5], "layers": [{"type": "relu"}, {"type": "batchnorm1d"}]}
    x = np.array([[-1.0, 2.0, -3.0, 4.0, 0.5]], dtype=np.float32)
    before = x.copy()
    y = layercalc.load(spec).run(x=x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(y, np.maximum(before, 0) / np.sqrt(1 + 1e-5), rtol=1e-6)


# --------------------------------------------------------------------------------------------- input handling

def test_input_batch_overrides_the_spec_and_bad_shapes_are_refused():
    net = layercalc.load({"input": [4], "batch": 1, "layers": [{"type": "linear", "out_features": 2}]})
    assert net.run(x=np.ones((7, 4))).shape == (7, 2)
    with pytest.raises(ShapeError, match=r"expected an array of shape \[batch, 4\].*got \[7, 5\]"):
        net.run(x=np.ones((7, 5)))
    assert net.run().shape == (1, 2)
    assert net.run(dtype="float64").dtype == np.float64
    with pytest.raises(SpecError, match="float32 or float64"):
        net.run(dtype="float16")


def test_same_seed_same_result_and_other_seed_differs():
    net = layercalc.load("examples/mnist_cnn.yaml")
    np.testing.assert_array_equal(net.run(seed=3), net.run(seed=3))
    assert not np.allclose(net.run(seed=3), net.run(seed=4))


# ------------------------------------------------------------------------------------------- initialization

@pytest.mark.parametrize("layer, torch_module", [
    ({"type": "conv2d", "out_channels": 64, "kernel_size": 3}, lambda: nn.Conv2d(16, 64, 3)),
    ({"type": "conv_transpose2d", "out_channels": 64, "kernel_size": 3, "groups": 2},
     lambda: nn.ConvTranspose2d(16, 64, 3, groups=2)),
    ({"type": "linear", "out_features": 300}, lambda: nn.Linear(16, 300)),
])
def test_default_initialization_has_torchs_bounds(layer, torch_module):
    """Kaiming-uniform like PyTorch: weights and biases uniform in ±1/√fan_in (fan_in from the weight's dim 1
    and kernel, as torch computes it). Compared with the range torch's own initialization spans."""
    spatial = [8, 8] if layer["type"] != "linear" else []
    net = layercalc.load({"input": [16, *spatial], "layers": [layer]})
    step = net.resolve()[0]
    params = init_params(step, {}, seed=0, dtype=np.float32, channels_last=False)
    module = torch_module()
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)      # torch's own rule
    bound = 1 / math.sqrt(fan_in)
    for name, tensor in module.named_parameters():
        ours, theirs = params[name], tensor.detach().numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.abs(theirs).max() <= bound                               # the rule is torch's
        assert 0.9 * bound <= np.abs(ours).max() <= bound, name            # ≥ 64 draws reach past 0.9·bound
        assert abs(ours.mean()) < 0.1 * bound, name
        assert abs(ours.std() - bound / math.sqrt(3)) < 0.15 * bound, name  # std of U(−b, b) is b/√3


def test_default_batchnorm_state_is_torchs():
    """Running mean 0, var 1, weight 1, bias 0: y = x / √(1 + eps)."""
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = layercalc.load({"input": [3, 4, 4], "batch": 2, "layers": [{"type": "batchnorm2d"}]}).run(x=x)
    with torch.no_grad():
        expected = nn.BatchNorm2d(3).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------- weight errors

def test_wrong_weight_shape_names_layer_key_and_both_shapes():
    net = layercalc.load(residual_spec())
    with pytest.raises(SpecError) as info:
        net.run(weights={"conv2": {"weight": np.zeros((8, 4, 3, 3))}})
    message = str(info.value)
    assert "\n" not in message
    for part in ("layers[3] 'conv2' (conv2d)", "'conv2.weight'", "[8, 4, 3, 3]", "[8, 8, 3, 3]"):
        assert part in message


def test_unknown_layer_and_unknown_key_are_refused():
    net = layercalc.load(residual_spec())
    with pytest.raises(SpecError, match=r"no layer named 'conv3'.*did you mean"):
        net.run(weights={"conv3.weight": np.zeros((8, 8, 3, 3))})
    with pytest.raises(SpecError, match=r"'conv1.bias'.*accepted: conv1.weight"):
        net.run(weights={"conv1": {"bias": np.zeros(8)}})
    with pytest.raises(SpecError, match=r"'relu1.weight'.*no parameters"):
        net.run(weights={"relu1.weight": np.zeros(8)})


def test_bad_weight_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="no such weights file"):
        sources.read_weights(tmp_path / "missing.npz")
    np.savez(tmp_path / "flat.npz", weight=np.zeros(3))
    with pytest.raises(SpecError, match=r"key 'weight' is not '<layer_name>.<param>'"):
        sources.read_weights(tmp_path / "flat.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(SpecError, match="cannot read weights"):
        sources.read_weights(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(SpecError, match="single array"):
        sources.read_weights(tmp_path / "single.npy")


# ---------------------------------------------------------------------------------------------------- memory

def test_run_over_the_memory_limit_is_refused_before_starting():
    net = layercalc.load(residual_spec(batch=4))
    with pytest.raises(ResourceError) as info:
        net.run(max_memory=10_000)
    message = str(info.value)
    assert "\n" not in message and "exceeds the limit of 9.77 KiB" in message and "estimated peak memory" in message
    with pytest.raises(ResourceError):
        executor.run(net, max_memory="1K")
    assert executor.run(net, max_memory="1G").shape == (4, 5)


def test_huge_network_is_refused_under_the_default_limit():
    """A VGG-like layer on a 100,000-image batch needs terabytes: refused, never attempted."""
    spec = {"input": [64, 224, 224], "batch": 100_000, "layers": [
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}]}
    with pytest.raises(ResourceError, match="exceeds the limit"):
        layercalc.load(spec).run()


def test_parse_bytes():
    assert executor.parse_bytes("512M") == 512 * 2**20
    assert executor.parse_bytes("2GB") == 2 * 10**9
    assert executor.parse_bytes(" 1.5 GiB ") == 3 * 2**29
    for bad in ("lots", "-1G", "0", "3 parsecs"):
        with pytest.raises(SpecError):
            executor.parse_bytes(bad)


@pytest.mark.parametrize("spec", [
    residual_spec(cin=16, cout=64, size=56, batch=4),
    CONCAT_SPEC,
    {"input": [8, 40, 40], "batch": 2, "layers": [
        {"type": "conv2d", "out_channels": 32, "kernel_size": 5, "padding": 2, "groups": 4},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1, "groups": 32},
        {"type": "conv_transpose2d", "out_channels": 16, "kernel_size": 4, "stride": 2, "padding": 1},
        {"type": "avgpool2d", "kernel_size": 3, "ceil_mode": True}, {"type": "gelu"}]},
])
def test_memory_estimate_bounds_the_measured_peak(spec):
    """tracemalloc sees NumPy's allocations: the measured peak stays under the estimate, and the estimate is
    not wildly pessimistic."""
    net = layercalc.load(spec)
    steps = net.resolve()
    weights = {s.name: init_params(s, {}, 0, np.float32, False) for s in steps}
    weights = {k: v for k, v in weights.items() if v}
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    estimate = executor.estimate_memory(steps, net.input_shape, np.float32, False, weights)
    executor.run(net, x=x, weights=weights)     # first-use costs (imports, erf's tables) are not the run's
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        executor.run(net, x=x, weights=weights)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    held = sum(v.nbytes for p in weights.values() for v in p.values())
    # the weights and the input exist before the run: tracemalloc counts only what the run adds, including the
    # Python objects of the analysis (a few hundred KiB, not counted by the estimate)
    assert peak <= estimate.total - held + 2**18, (peak, estimate)
    assert estimate.total - held <= 6 * peak + 2**20, (peak, estimate)


def test_memory_estimate_bounds_the_peak_when_weights_are_made_per_layer():
    """No weights passed in: each layer's are initialized when it runs (the estimate counts them as that layer's
    temporaries), and the text says so instead of reporting 'weights 0 B'."""
    net = layercalc.load(residual_spec(cin=16, cout=64, size=56, batch=4))
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    estimates = []
    executor.execute(net, x=x, on_estimate=estimates.append)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        executor.run(net, x=x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    estimate = estimates[0]
    assert estimate.weights == 0
    assert peak <= estimate.total + 2**18, (peak, estimate)
    assert estimate.total <= 6 * peak + 2**20, (peak, estimate)
    text = estimate.describe()
    assert "0 B" not in text and "no weights passed in" in text and "\n" not in text
    given = {s.name: init_params(s, {}, 0, np.float32, False) for s in net.resolve()}
    held = sum(v.nbytes for p in given.values() for v in p.values())
    estimate = executor.estimate_memory(net.resolve(), net.input_shape, np.float32, False, given)
    assert estimate.weights == held and f"weights held for the run (passed in, or shared by tied layers) {human_bytes(held)}" in estimate.describe()


def test_default_limit_is_a_fraction_of_available_memory():
    limit = executor.default_memory_limit()
    assert 0 < limit <= executor.available_memory()
    total = os_total_memory()
    assert limit <= total


def os_total_memory() -> int:
    import os
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ---------------------------------------------------------------------------------------------- kernel bits

def test_chunked_im2col_gives_the_same_result(monkeypatch):
    """A tiny workspace budget forces chunking by images and by rows: same output as one chunk."""
    from layercalc import kernels
    spec = {"input": [5, 13, 11], "batch": 3, "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1, "stride": [2, 1]},
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "groups": 3},
        {"type": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2}]}
    net = layercalc.load(spec)
    whole = net.run(seed=1)
    for budget in (5 * 9 * 4 * 11 * 3, 5 * 9 * 4 * 11, 64):
        monkeypatch.setattr(kernels, "WORKSPACE_BYTES", budget)
        monkeypatch.setattr(kernels.chunk_plan, "__defaults__", (budget,))
        monkeypatch.setattr(kernels.chunk_bytes, "__defaults__", (budget,))
        np.testing.assert_allclose(net.run(seed=1), whole, rtol=1e-6, atol=1e-6)


def test_workspace_is_handed_to_the_next_run_only_when_small_enough(monkeypatch):
    """A released buffer is reused by the next run that fits in it; a run needing more gets a new one; a buffer
    above SPARE_WORKSPACE_BYTES is let go; drop_spare_workspace frees the kept one."""
    from layercalc import kernels
    monkeypatch.setattr(kernels, "_spare_buffers", [])
    first = kernels.Workspace.for_run(1000)
    buffer = first._buffer
    first.release()
    assert first.nbytes == 0 and kernels._spare_buffers == [buffer]
    second = kernels.Workspace.for_run(800)                 # fits: the same memory again
    assert second._buffer is buffer and kernels._spare_buffers == []
    other = kernels.Workspace.for_run(500)                  # a concurrent run finds no spare: its own buffer
    assert other._buffer is not buffer and other.nbytes == 500
    second.release()
    bigger = kernels.Workspace.for_run(2000)                # does not fit: a new buffer of the size asked
    assert bigger._buffer is not buffer and bigger.nbytes == 2000
    monkeypatch.setattr(kernels, "SPARE_WORKSPACE_BYTES", 1500)
    bigger.release()                                        # above the limit: not kept
    assert kernels._spare_buffers == []
    other.release()
    assert len(kernels._spare_buffers) == 1
    kernels.drop_spare_workspace()
    assert kernels._spare_buffers == []


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_constant_padding_equals_numpys_pad(data):
    # pad_spatial builds constant padding by hand (speed); np.pad is the reference
    from layercalc.kernels import pad_spatial
    rank = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), *data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)),
             data.draw(st.integers(1, 3)))
    pads = [tuple(data.draw(st.lists(st.integers(0, 3), min_size=2, max_size=2))) for _ in range(rank)]
    value = data.draw(st.sampled_from([0.0, -np.inf, 2.5]))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = np.pad(x, [(0, 0), *pads, (0, 0)], mode="constant", constant_values=value)
    assert np.array_equal(pad_spatial(x, pads, "zeros", value), expected)
