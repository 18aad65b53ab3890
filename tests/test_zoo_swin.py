"""zoo:swin_t against torchvision 0.28.0's ``swin_t()`` (random weights): params exactly (28,288,354, the published
count), every module's parameters and output shape, FlopCounterMode = 2·MACs (the convs, linears and attention's
batched products), and its relative_position_index buffers: loaded from a state_dict only to be checked (the NumPy
executor's logits on the whole state_dict, through ``layercalc run``: tests/test_zoo_torchvision.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

from layercalc import LayerCalcError, zoo  # noqa: E402


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
    """Every torchvision module that is a layercalc layer: its output shape (NCHW until features.0.1, torchvision's
    Permute, then NHWC as torchvision runs its blocks) and its parameters."""
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
        if name == "avgpool":                              # AdaptiveAvgPool2d(1) keeps 1×1; its Flatten follows
            shape = shape[:2]
        assert list(shape) == ours[name].output_shape, name
        assert sum(p.numel() for p in module.parameters()) == ours[name].params, name
        compared += 1
    # 12 blocks (norm1, attn, norm2, mlp.0, mlp.1, mlp.3), 3 patch mergings (norm, reduction), the stem's conv,
    # permute and norm, and norm, permute, avgpool, head
    assert compared == 12 * 6 + 3 * 2 + 3 + 4
    assert ours["features.0.0"].output_shape == [1, 96, 56, 56] and ours["features.0.1"].output_shape == [1, 56, 56, 96]
    # every parameter of the model belongs to a module that is a layer (so the weights map onto the spec)
    owners = {key.rsplit(".", 1)[0] for key, _ in model.named_parameters()}
    assert {o.removesuffix(".qkv").removesuffix(".proj") for o in owners} <= set(ours)


def test_relative_position_index_is_checked_not_counted(model, tmp_path):
    """torchvision's state_dict holds each block's relative_position_index ([49·49] int64, a function of the window
    size): loaded as is, it is compared with the index the layer derives, and a different one (a file made for
    another window size, or damaged) is refused in one line naming the layer; left out, the run is the same."""
    network = zoo.load("swin_t")
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    index = state["features.1.0.attn.relative_position_index"]
    assert index.shape == (49 * 49,) and index.dtype == np.int64
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.savez(tmp_path / "w.npz", **state)
    got = network.run(x=x, weights=str(tmp_path / "w.npz"))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    without = network.run(x=x, weights={k: v for k, v in state.items() if not k.endswith("relative_position_index")})
    np.testing.assert_array_equal(without, got)
    wrong = dict(state)
    wrong["features.1.0.attn.relative_position_index"] = index[::-1].copy()
    with pytest.raises(LayerCalcError, match=r"'features\.1\.0\.attn' \(shifted_window_attention\): "
                                             r"'features\.1\.0\.attn\.relative_position_index' \(shape \[2401\]\) "
                                             r"is not the \[2401\] relative_position_index"):
        network.run(x=x, weights=wrong)
    np.savez(tmp_path / "short.npz", **{**state, "features.1.0.attn.relative_position_index": index[:10]})
    with pytest.raises(LayerCalcError, match=r"\(shape \[10\]\) is not the \[2401\]"):
        network.run(x=x, weights=str(tmp_path / "short.npz"))
