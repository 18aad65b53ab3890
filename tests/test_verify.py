"""``verify``: the executed shapes and MACs agree with the analysis on every example and zoo network, the
executed MAC count is the hand-derived one, and a deliberately wrong report is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

import layercalc
from layercalc import layers as L
from layercalc.graph import Network
from layercalc.verify import verify

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.y*ml")) + \
    sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.json"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_verify_passes_on_every_example(path):
    net = layercalc.load(path)
    result = verify(net)
    assert result.ok, [c for c in result.checks if not c.ok]
    assert [c.name for c in result.checks] == [s.name for s in net.resolve()]
    assert all(c.ok for c in result.checks) and result.seconds > 0


def zoo_models() -> list[str]:
    try:
        from layercalc import zoo
    except ImportError:
        return []
    return zoo.list_models()


#: zoo networks too large to execute in the test suite (billions of parameters drawn at random, trillions of MACs);
#: their figures are checked against Hugging Face's models in tests/test_zoo_transformers.py
TOO_LARGE_TO_RUN = {"llama2_7b", "llama3_8b", "mistral_7b"}


@pytest.mark.parametrize("name", [name for name in zoo_models() if name not in TOO_LARGE_TO_RUN])
def test_verify_passes_on_every_zoo_network(name):
    from layercalc import zoo
    net = zoo.load(name)
    if net.input == [net.input[0]] and any(layer.index_count() for layer in net.layers):
        net = net.replace(input=[16])                 # token models: 16 tokens are enough to check every layer
    result = verify(net)
    assert result.ok, [c for c in result.checks if not c.ok][:3]


# ------------------------------------------------------------------------------------------------ hand counts

def one_layer(input_shape, layer, batch=1, layout="NCHW"):
    return layercalc.load({"input": input_shape, "batch": batch, "layout": layout, "layers": [layer]})


@pytest.mark.parametrize("input_shape, layer, batch, macs, shape", [
    # conv 3→8, 3×3 on 10×10 → 8×8: 64 positions · 8 outputs · 3·9 weights each
    ([3, 10, 10], {"type": "conv2d", "out_channels": 8, "kernel_size": 3}, 2, 2 * 64 * 8 * 27, [2, 8, 8, 8]),
    # grouped: 4 groups, each output reads 2 channels · 9
    ([8, 6, 6], {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "groups": 4, "padding": 1}, 1,
     36 * 8 * 2 * 9, [1, 8, 6, 6]),
    # depthwise with multiplier 2: each of 12 outputs reads 1 channel · 9, at 2×2 positions ((6 − 3)//2 + 1)
    ([6, 6, 6], {"type": "conv2d", "out_channels": 12, "kernel_size": 3, "groups": 6, "stride": 2}, 1,
     4 * 12 * 9, [1, 12, 2, 2]),
    # transposed 4→2, 3×3, stride 2 on 5×5: each of 25 input positions · 4 channels meets 2·9 weights
    ([4, 5, 5], {"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1}, 1,
     25 * 4 * 2 * 9, [1, 2, 9, 9]),
    # linear on [N, 7, 5] → 2·7 rows of 5 inputs · 3 outputs
    ([7, 5], {"type": "linear", "out_features": 3}, 2, 14 * 5 * 3, [2, 7, 3]),
    # conv1d with 'same' padding and dilation: 20 positions · 4 outputs · 2·3
    ([2, 20], {"type": "conv1d", "out_channels": 4, "kernel_size": 3, "dilation": 2, "padding": "same"}, 1,
     20 * 4 * 6, [1, 4, 20]),
    # pooling performs no multiply-accumulate
    ([3, 8, 8], {"type": "maxpool2d", "kernel_size": 2}, 1, 0, [1, 3, 4, 4]),
])
def test_executed_macs_are_the_hand_count(input_shape, layer, batch, macs, shape):
    result = verify(one_layer(input_shape, layer, batch))
    check = result.checks[0]
    assert check.actual_macs == macs
    assert check.actual_shape == shape
    assert result.ok


def test_progress_is_called_after_each_layer():
    net = layercalc.load("examples/mnist_cnn.yaml")
    calls = []
    verify(net, progress=lambda done, total, name: calls.append((done, total, name)))
    names = [s.name for s in net.resolve()]
    assert calls == [(i + 1, len(names), name) for i, name in enumerate(names)]


# --------------------------------------------------------------------------------------- a wrong report fails

def corrupt_report(monkeypatch, layer_name, **changes):
    original = Network.analyze

    def analyze(self, steps=None):
        report = original(self, steps)
        entry = report.layer(layer_name)
        for key, value in changes.items():
            setattr(entry, key, value(getattr(entry, key)))
        return report

    monkeypatch.setattr(Network, "analyze", analyze)


def test_a_wrong_shape_in_the_report_fails(monkeypatch):
    net = layercalc.load("examples/mnist_cnn.yaml")
    name = net.layer_names()[3]
    corrupt_report(monkeypatch, name, output_shape=lambda s: [*s[:-1], s[-1] + 1])
    result = verify(net)
    assert not result.ok
    assert [c.name for c in result.failures] == [name]
    assert not result.failures[0].shape_ok and result.failures[0].macs_ok


def test_wrong_macs_in_the_report_fail(monkeypatch):
    net = layercalc.load("examples/mnist_cnn.yaml")
    name = net.layer_names()[0]
    corrupt_report(monkeypatch, name, macs=lambda m: m + 1)
    result = verify(net)
    assert not result.ok and [c.name for c in result.failures] == [name]
    assert result.failures[0].shape_ok and not result.failures[0].macs_ok


def test_a_wrong_rule_is_caught(monkeypatch):
    """Corrupt the analysis itself (a conv rule whose output shape and MACs are off): the executor computes
    sizes and counts from the arrays, so verify disagrees."""
    original = L.Conv2d.infer

    def wrong_conv(layer, inputs, ctx):
        facts = original(layer, inputs, ctx)
        n, c, h, w = facts.output_shape
        facts.output_shape = (n, c, h - 1, w)
        facts.macs = facts.macs // h * (h - 1)
        return facts

    monkeypatch.setattr(L.Conv2d, "infer", wrong_conv)
    net = layercalc.load({"input": [1, 12, 12], "layers": [
        {"name": "c", "type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"name": "r", "type": "relu"}]})
    result = verify(net)
    assert not result.ok
    conv = result.checks[0]
    assert conv.expected_shape == [1, 4, 9, 10] and conv.actual_shape == [1, 4, 10, 10]
    assert conv.actual_macs == 100 * 4 * 9 and conv.expected_macs == 90 * 4 * 9
