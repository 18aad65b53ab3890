"""The ``sub`` and ``div`` layer types (layercalc/layers/merge.py), ONNX Sub/Div read as them, and Keras' Subtract
and Rescaling classes.

Oracles: ``torch.sub`` / ``torch.div`` (output shapes under broadcasting, and values through the NumPy executor),
PyTorch models exported to ONNX and run by torch, Keras 3 (torch backend) models' ``count_params``, output shapes
and ``predict``. FLOPs are derived by hand in each test: one subtract or divide per output element (the rescaling
type: one multiply unless scale is 1, one add unless offset is 0).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from oracle_helpers import keras_on_torch

import layercalc
from layercalc import LayerCalcError
from layercalc.errors import NumericError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

OPS = {"sub": torch.sub, "div": torch.div}


def two_operand_net(op: str, x_shape, p_shape, p_first: bool, fresh: bool, layout: str = "NCHW", batch: int = 2):
    """A network computing ``x op p`` (or ``p op x``) where p is a ``parameter`` layer of shape ``p_shape``
    (expanded over the batch); with ``fresh`` x first goes through a sigmoid, so the operand is an array that dies
    at the layer (the executor lets the layer write into it)."""
    layers: list[dict] = [{"name": "p", "type": "parameter", "shape": list(p_shape), "inputs": []}]
    x_name = "input"
    if fresh:
        layers.append({"name": "r", "type": "sigmoid", "inputs": ["input"]})
        x_name = "r"
    operands = ["p", x_name] if p_first else [x_name, "p"]
    layers.append({"name": "out", "type": op, "inputs": operands})
    return {"input": list(x_shape), "batch": batch, "layout": layout, "layers": layers}


# (x without batch, p without batch, layout): broadcasting in either direction, and a channels-last network
SHAPES = [
    ([3, 4, 5], [3, 1, 5], "NCHW"),        # p broadcast along one dim
    ([3, 1, 5], [3, 4, 1], "NCHW"),        # both operands broadcast: output [N, 3, 4, 5]
    ([1, 4, 1], [2, 4, 6], "NCHW"),        # x broadcast up to p's sizes
    ([4, 5, 3], [1, 1, 3], "NHWC"),        # a per-channel operand, channels last
    ([6], [6], "NCHW"),                    # same shape
]


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("x_shape, p_shape, layout", SHAPES)
@pytest.mark.parametrize("p_first", [False, True])
@pytest.mark.parametrize("fresh", [False, True])
def test_sub_div_against_torch(op, x_shape, p_shape, layout, p_first, fresh):
    batch = 2
    rng = np.random.default_rng(len(x_shape) + 10 * p_first + 100 * fresh)
    x = rng.standard_normal((batch, *x_shape))
    p = rng.standard_normal(p_shape)
    if op == "div":                                      # divisors away from 0 (either operand may be one)
        x = np.sign(x) * (np.abs(x) + 0.5)
        p = np.sign(p) * (np.abs(p) + 0.5)
    tx, tp = torch.from_numpy(x), torch.from_numpy(p)[None]
    if fresh:
        tx = torch.sigmoid(tx)                           # in (0, 1): never a zero divisor
    expected = OPS[op](tp, tx) if p_first else OPS[op](tx, tp)

    net = layercalc.load(two_operand_net(op, x_shape, p_shape, p_first, fresh, layout, batch))
    report = net.analyze()
    layer = report.layers[-1]
    assert layer.type == op
    assert layer.output_shape == list(expected.shape)
    # by hand: one subtract (divide) per output element; no parameters, no multiply-accumulates
    assert layer.flops == math.prod(expected.shape)
    assert layer.params == 0 and layer.macs == 0
    got = net.run(x, weights={"p": {"weight": p}}, dtype="float64")
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_sub_div_flops_by_hand():
    # [2, 3, 4, 5] − [2, 3, 1, 5] → [2, 3, 4, 5]: 2·3·4·5 = 120 subtracts; the same quotient: 120 divides
    for op in OPS:
        report = layercalc.load(two_operand_net(op, [3, 4, 5], [3, 1, 5], False, False)).analyze()
        assert report.layers[-1].flops == 120 and report.totals.flops == 120


def test_operand_order_matters():
    """first − second and first / second, not the other way round (sub is not an add, div not a mul): x = 6,
    p = 2 give x − p = 4, p − x = −4, x / p = 3, p / x = 1/3."""
    x, weights = np.full((1, 2), 6.0), {"p": {"weight": np.full(2, 2.0)}}
    for op, x_first, p_first in (("sub", 4.0, -4.0), ("div", 3.0, 1 / 3)):
        for first, expected in ((False, x_first), (True, p_first)):
            net = layercalc.load(two_operand_net(op, [2], [2], first, False, batch=1))
            np.testing.assert_allclose(net.run(x, weights=weights), np.full((1, 2), expected), rtol=1e-6)


@pytest.mark.parametrize("op", sorted(OPS))
def test_shapes_torch_refuses_are_refused(op):
    # [3, 4] against [2, 4]: torch cannot broadcast 3 against 2
    with pytest.raises(RuntimeError):
        OPS[op](torch.ones(1, 3, 4), torch.ones(1, 2, 4))
    with pytest.raises(LayerCalcError, match=rf"layers\[1\] 'out' \({op}\).*cannot {op} shapes \[1, 3, 4\], "
                                             r"\[1, 2, 4\]"):
        layercalc.load(two_operand_net(op, [3, 4], [2, 4], False, False, batch=1)).analyze()


@pytest.mark.parametrize("op", sorted(OPS))
def test_exactly_two_inputs(op):
    spec = {"input": [4], "layers": [{"name": "a", "type": "relu"}, {"name": "b", "type": "tanh", "inputs": "input"},
                                     {"type": op, "inputs": ["a", "b", "input"]}]}
    with pytest.raises(LayerCalcError, match="3"):
        layercalc.load(spec).analyze()


def test_div_by_zero_is_an_error():
    net = layercalc.load(two_operand_net("div", [4], [4], False, False, batch=1))
    with pytest.raises(NumericError, match=r"'out' \(div\).*division by zero.*'p'.*1 zero"):
        net.run(np.ones((1, 4)), weights={"p": {"weight": np.array([1.0, 2.0, 0.0, 3.0])}})


def test_spec_type_names():
    # Keras' Subtract class is the sub type (Keras has no Divide layer)
    spec = {"input": [4], "layers": [{"name": "a", "type": "relu"}, {"name": "b", "type": "Subtract",
                                                                     "inputs": ["input", "a"]}]}
    assert layercalc.load(spec).analyze().layers[-1].type == "sub"


# ------------------------------------------------------------------------------------------------------ ONNX

class SubDiv(torch.nn.Module):
    """Sub and Div of two computed tensors (broadcasting, both orders), of an initializer, and of constants."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.randn(1, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):                               # x: [N, 3, 4]
        y = torch.sigmoid(x) + 0.5                      # positive: a safe divisor
        m = x.mean(dim=1, keepdim=True)                 # [N, 1, 4]
        a = x - y                                       # Sub of two computed tensors
        b = a / y                                       # Div of two computed tensors
        c = m - b                                       # broadcast first operand
        d = c / (m * m + 1.0)                           # broadcast divisor
        e = self.p - d                                  # the initializer first
        f = d / self.p                                  # the initializer as the divisor
        g = (e - f) / 4.0                               # rescaling by 1/4
        h = 3.0 - g                                     # rescaling: scale −1, offset 3
        return h - 1.5                                  # rescaling: offset −1.5


def test_onnx_sub_div_values_equal_torch(tmp_path):
    pytest.importorskip("onnx")
    from test_import_onnx import check_node_shapes, export

    model = SubDiv().eval()
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    path = export(model, x, tmp_path / "subdiv.onnx")
    ops = [n.op_type for n in __import__("onnx").load(str(path)).graph.node]
    assert ops.count("Sub") >= 5 and ops.count("Div") >= 4
    assert check_node_shapes(path) > 0

    net = layercalc.load(path)
    report = net.analyze()
    types = [layer.type for layer in report.layers]
    # two computed tensors, or one and the initializer: sub (a, c, e, e − f) and div (b, d, f) layers; a scalar
    # constant: rescaling (+ 0.5, + 1.0, / 4.0, 3.0 −, − 1.5)
    assert types.count("sub") == 4 and types.count("div") == 3, types
    assert types.count("rescaling") == 5, types
    for layer in report.layers:
        if layer.type in ("sub", "div"):
            assert layer.flops == math.prod(layer.output_shape)        # one operation per output element
    assert report.totals.params == model.p.numel()

    # the executor, with the file's parameter: the parameter layer holds self.p placed to broadcast over [N, 3, 4]
    (param,) = [layer for layer in net.layers if layer.type_name == "parameter"]
    weight = model.p.detach().numpy().astype(np.float64).reshape(param.shape)
    got = net.run(x.numpy().astype(np.float64), weights={param.name: {"weight": weight}}, dtype="float64")
    with torch.no_grad():
        expected = model.double()(x.double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------------ Keras

@pytest.fixture(scope="module")
def keras():
    return keras_on_torch()


def test_keras_rescaling(keras):
    L = keras.layers
    model = keras.Sequential([keras.Input((4, 5, 3)), L.Rescaling(1 / 255.0), L.Rescaling(2.0, offset=-1.0)])
    net = layercalc.load(json.loads(model.to_json()))
    report = net.analyze()
    assert [layer.type for layer in report.layers] == ["rescaling", "rescaling"]
    assert report.layers[-1].output_shape == [1, *model.output_shape[1:]]
    assert report.totals.params == model.count_params() == 0
    # by hand: 4·5·3 = 60 elements; the first only multiplies (offset 0), the second multiplies and adds
    assert [layer.flops for layer in report.layers] == [60, 120]
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 5, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = net.replace(batch=2).run(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_keras_rescaling_per_channel_scale_is_refused(keras):
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Rescaling([1.0, 2.0, 3.0])])
    with pytest.raises(LayerCalcError, match=r"'scale'.*\[1\.0, 2\.0, 3\.0\]"):
        layercalc.load(json.loads(model.to_json()))


def test_keras_subtract(keras):
    from test_import_keras import keras_weights

    L = keras.layers
    x0 = keras.Input((6,))
    a, b = L.Dense(4)(x0), L.Dense(4, use_bias=False)(x0)
    model = keras.Model(x0, L.Subtract()([b, a]))
    net = layercalc.load(json.loads(model.to_json()))
    report = net.analyze()
    assert report.layers[-1].type == "sub" and report.layers[-1].flops == 4        # 4 subtracts per example
    assert report.layers[-1].output_shape == [1, *model.output_shape[1:]]
    assert report.totals.params == model.count_params()
    x = np.random.default_rng(1).standard_normal((3, 6))
    expected = keras.ops.convert_to_numpy(model(x.astype("float32"))).astype(np.float64)
    got = net.replace(batch=3, dtype="float64").run(x, weights=keras_weights(model, keras))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
