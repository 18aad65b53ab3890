"""Layers with several outputs (``split``, ``chunk``), named ``NAME:0``, ``NAME:1``, … by later layers — against
torch.split / torch.chunk, and ShuffleNetV2's channel-split unit rebuilt in PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import LayerCalcError
from layercalc.verify import verify

torch = pytest.importorskip("torch")


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 12), piece=st.integers(1, 12), chunks=st.integers(1, 12), other=st.integers(1, 3))
def test_split_and_chunk_match_torch(length, piece, chunks, other):
    x = np.random.default_rng(length).standard_normal((2, length, other))
    for spec_layer, expected in (({"type": "split", "sizes": piece, "dim": 1}, torch.split(torch.from_numpy(x), piece, 1)),
                                 ({"type": "chunk", "chunks": chunks, "dim": 1},
                                  torch.chunk(torch.from_numpy(x), chunks, 1))):
        net = layercalc.load({"input": [length, other], "batch": 2, "layers": [{"name": "s", **spec_layer}]})
        report = net.analyze()
        assert report.layers[0].output_shapes == [list(t.shape) for t in expected]
        assert report.outputs == [f"s:{i}" for i in range(len(expected))]
        outputs = net.run(x=x, dtype="float64")
        if len(expected) == 1:                     # one network output: run returns the array itself
            outputs = {"s:0": outputs}
        for i, piece_array in enumerate(expected):
            np.testing.assert_array_equal(outputs[f"s:{i}"], piece_array.numpy())


def test_split_by_sizes_must_add_up():
    spec = {"input": [6], "layers": [{"type": "split", "sizes": [2, 3], "dim": 1}]}
    with pytest.raises(LayerCalcError, match=r"sizes \[2, 3\] add up to 5, not to the 6 of dim 1"):
        layercalc.load(spec).analyze()


def test_outputs_must_be_named_with_their_index():
    layers = [{"name": "s", "type": "chunk", "chunks": 2, "dim": 1}, {"name": "r", "type": "relu", "inputs": ["s"]}]
    with pytest.raises(LayerCalcError, match="'s': the layer has 2 outputs: name one of them, s:0 … s:1"):
        layercalc.load({"input": [4], "layers": layers}).analyze()
    layers[1]["inputs"] = ["s:5"]
    with pytest.raises(LayerCalcError, match="the layer has 2 outputs, s:0 … s:1"):
        layercalc.load({"input": [4], "layers": layers}).analyze()
    with pytest.raises(LayerCalcError, match="may not end in ':' and digits"):
        layercalc.load({"input": [4], "layers": [{"name": "x:1", "type": "relu"}]})


class ShuffleUnit(torch.nn.Module):
    """ShuffleNetV2's stride-1 unit (torchvision InvertedResidual): split the channels, transform one half,
    concatenate, shuffle."""

    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.branch2 = torch.nn.Sequential(
            torch.nn.Conv2d(half, half, 1, bias=False), torch.nn.BatchNorm2d(half), torch.nn.ReLU(),
            torch.nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False), torch.nn.BatchNorm2d(half),
            torch.nn.Conv2d(half, half, 1, bias=False), torch.nn.BatchNorm2d(half), torch.nn.ReLU())

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def test_shufflenet_unit_against_torch():
    channels = 8
    model = ShuffleUnit(channels).eval()
    spec = {"input": [channels, 6, 6], "layers": [
        {"name": "split", "type": "chunk", "chunks": 2, "dim": 1},
        {"name": "branch2.0", "type": "conv2d", "out_channels": 4, "kernel_size": 1, "bias": False,
         "inputs": ["split:1"]},
        {"name": "branch2.1", "type": "batchnorm2d"}, {"name": "branch2.2", "type": "relu"},
        {"name": "branch2.3", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 4,
         "bias": False},
        {"name": "branch2.4", "type": "batchnorm2d"},
        {"name": "branch2.5", "type": "conv2d", "out_channels": 4, "kernel_size": 1, "bias": False},
        {"name": "branch2.6", "type": "batchnorm2d"}, {"name": "branch2.7", "type": "relu"},
        {"name": "cat", "type": "concat", "inputs": ["split:0", "branch2.7"]},
        {"name": "shuffle", "type": "channel_shuffle", "groups": 2}]}
    net = layercalc.load(spec)
    report = net.analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    x = np.random.default_rng(0).standard_normal((1, channels, 6, 6)).astype(np.float32)
    weights = {}
    for key, value in model.state_dict().items():
        layer, param = key.rsplit(".", 1)
        if param != "num_batches_tracked":
            weights.setdefault(layer, {})[param] = value.numpy()
    np.testing.assert_allclose(net.run(x=x, weights=weights), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert verify(net).ok


def test_the_naming_note_only_where_an_output_is_read_by_no_layer():
    """Every output read (ShuffleNet's units read split:0 and split:1): no note. An output no layer reads becomes a
    network output, and the note names it and says how later layers name the outputs (the graph knows the readers;
    the layer does not)."""
    both = {"input": [8, 4], "layers": [{"name": "s", "type": "chunk", "chunks": 2, "dim": 1},
                                        {"name": "sum", "type": "add", "inputs": ["s:0", "s:1"]}]}
    assert layercalc.load(both).analyze().layer("s").notes == []
    one = {"input": [8, 4], "layers": [{"name": "s", "type": "chunk", "chunks": 3, "dim": 1},
                                       {"name": "r", "type": "relu", "inputs": "s:1"}]}
    report = layercalc.load(one).analyze()
    assert report.layer("s").notes == ["outputs s:0, s:2 of 3 read by no layer (a network output); later layers "
                                       "name them s:0 … s:2"]
    assert report.outputs == ["s:0", "s:2", "r"]
    shufflenet = layercalc.load("zoo:shufflenet_v2_x1_0").analyze()
    assert not [n for entry in shufflenet.layers for n in entry.notes if "read by no layer" in n or "name them" in n]
