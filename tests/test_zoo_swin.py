"""zoo:swin_t against torchvision 0.28.0's ``swin_t()`` (random weights): params exactly (28,288,354, the published
count), every module's parameters and output shape, FlopCounterMode = 2·MACs (the convs, linears and attention's
batched products), and the NumPy executor's logits on torchvision's own weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

from layercalc import zoo  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torchvision().models.swin_t().eval()


@pytest.fixture(scope="module")
def report():
    return zoo.load("swin_t").analyze()


def test_params_and_macs(model, report):
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 28_288_354
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert 2 * report.totals.macs == counter.get_total_flops()
    assert report.layers[-1].output_shape == [1, 1000]


def test_module_by_module(model, report):
    """Every torchvision module that is a layercalc layer: its output shape (NHWC after features.0's permute, as
    the zoo spec runs; the first conv's output is NCHW in torchvision) and its parameters."""
    ours = {layer.name: layer for layer in report.layers}
    shapes = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, module in model.named_modules() if name in ours]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    compared = 0
    for name, module in model.named_modules():
        if name not in ours:
            continue
        shape = shapes[name]
        if name == "features.0.0":
            shape = (shape[0], shape[2], shape[3], shape[1])
        if name == "avgpool":                              # AdaptiveAvgPool2d(1) keeps 1×1; its Flatten follows
            shape = shape[:2]
        assert list(shape) == ours[name].output_shape, name
        assert sum(p.numel() for p in module.parameters()) == ours[name].params, name
        compared += 1
    # 12 blocks (norm1, attn, norm2, mlp.0, mlp.1, mlp.3), 3 patch mergings (norm, reduction), the stem's conv and
    # norm, and norm, avgpool, head
    assert compared == 12 * 6 + 3 * 2 + 2 + 3
    # every parameter of the model belongs to a module that is a layer (so the weights map onto the spec)
    owners = {key.rsplit(".", 1)[0] for key, _ in model.named_parameters()}
    assert {o.removesuffix(".qkv").removesuffix(".proj") for o in owners} <= set(ours)


def test_executor_reproduces_torchvision(model):
    """The executor on torchvision's state_dict as it is (``features.1.0.attn.qkv.weight`` is the attention layer's
    ``qkv_weight``: the longest prefix that names a layer), the relative_position_index buffers left out (derived
    from the window size)."""
    weights = {key: value.numpy() for key, value in model.state_dict().items()
               if not key.endswith("relative_position_index")}
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model(x).numpy()
    got = zoo.load("swin_t").run(x=x.permute(0, 2, 3, 1).numpy(), weights=weights)
    assert got.shape == expected.shape == (1, 1000)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
