"""PReLU as a built-in layer type (``prelu``): ``torch.nn.PReLU`` and ``F.prelu`` through ``from_torch``, Keras'
``PReLU`` (``shared_axes``) through the Keras importer, and the executor — each against the framework itself
(parameter counts, output values), with the slopes moved away from their initial value so that they matter."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from oracle_helpers import keras_on_torch  # noqa: E402
from test_import_keras import check_against_keras  # noqa: E402
from torch import nn  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class ConvPrelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = nn.PReLU(6)                      # one slope per channel (dim 1)
        self.fc = nn.Linear(6 * 5 * 5, 7)
        self.act2 = nn.PReLU(init=0.1)               # one shared slope
        self.head = nn.Module()                       # holds the functional form's slopes: state_dict head.weight
        self.head.weight = nn.Parameter(torch.tensor([0.3, -0.2, 0.5, 0.05, 1.5, 0.0, 0.7]))

    def forward(self, x):
        h = self.act2(self.fc(torch.flatten(self.act1(self.conv(x)), 1)))
        return F.prelu(h - 0.1, self.head.weight)     # the functional form, on the module's own parameter


def test_from_torch_counts_and_runs_as_torch():
    torch.manual_seed(0)
    model = ConvPrelu().eval()
    with torch.no_grad():                             # slopes that differ per channel and from the init
        model.act1.weight.copy_(torch.linspace(-0.5, 0.8, 6))
    net = layercalc.from_torch(model, (2, 3, 5, 5))
    report = net.analyze()
    assert [e.type for e in report.layers if e.type == "prelu"] == ["prelu"] * 3
    # params: conv 6·3·9 + 6 = 168, act1 6, fc 150·7 + 7 = 1,057, act2 1, head 7 — as torch counts them
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 168 + 6 + 1057 + 1 + 7
    assert [report.layer(name).params for name in ("act1", "act2", "head")] == [6, 1, 7]
    # 2 FLOPs per element (compare, multiply): act1 on [2, 6, 5, 5]
    assert report.layer("act1").flops == 2 * 2 * 6 * 5 * 5
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = model(x).numpy()
    got = net.run(x=x.numpy(), weights=model.state_dict())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert (got < 0).any()                            # negative outputs: the slopes were applied


def test_the_initial_slope_is_torchs():
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(4, init=0.3)).eval()
    net = layercalc.from_torch(model, (3, 4))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("1.")}   # the slopes left out
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.run(x=x, weights=weights), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fields, shape, message", [
    ({"num_parameters": 4}, [3, 5, 5], "num_parameters 4 must be 1 or the input's 3 channels"),
    ({"shared_axes": [4]}, [3, 5, 5], "shared_axes \\[4\\]: the input \\[1, 3, 5, 5\\] has dims 1…3"),
    ({"shared_axes": [1], "num_parameters": 3}, [3, 5, 5], "not both"),
])
def test_bad_slopes_are_one_line(fields, shape, message):
    with pytest.raises(LayerCalcError, match=message) as info:
        layercalc.load({"input": shape, "layers": [{"type": "prelu", **fields}]}).analyze()
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def keras():
    return keras_on_torch()


def test_keras_prelu_with_and_without_shared_axes(keras, tmp_path):
    L = keras.layers
    rng = np.random.default_rng(1)
    model = keras.Sequential([
        keras.Input((6, 5, 3)), L.Conv2D(4, 3, padding="same"),
        L.PReLU(shared_axes=[1, 2]),                  # one slope per channel: (1, 1, 4)
        L.Conv2D(2, 3), L.PReLU(),                    # one per element: (4, 3, 2)
        L.Flatten(), L.Dense(3), L.PReLU(shared_axes=1)])
    for layer in model.layers:
        if isinstance(layer, L.PReLU):
            layer.alpha.assign(rng.uniform(-0.5, 1.0, size=layer.alpha.shape).astype("float32"))
    path = tmp_path / "prelu.keras"
    model.save(path)
    report = layercalc.load(path).analyze()
    check_against_keras(report, model, keras)
    assert [e.params for e in report.layers if e.type == "prelu"] == [4, 4 * 3 * 2, 1]
    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = layercalc.load(path).replace(batch=2).run(x, weights=str(path))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
