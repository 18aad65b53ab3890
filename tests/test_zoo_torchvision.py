"""Zoo networks against torchvision 0.28.0's own model definitions (imported through ``torchvision_oracle``).

For ``fcn_resnet50`` (``torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)``: 21
classes, no aux classifier): total params, the output shape, and for every torchvision module whose name is a
layercalc layer name its output shape (forward hook) and parameter count; every state_dict key maps onto a layer;
layer by layer and in total, ``FlopCounterMode`` = 2 × layercalc MACs. The analysis-side torch passes run on the
``meta`` device (shapes and FLOP counts without arithmetic), so the 520×520 evaluation size costs nothing; the
NumPy executor is compared with torchvision's forward pass on the same weights at 64×64, in float64.

The helpers here are shared with ``tests/test_heldout_torchvision.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from oracle_helpers import state_dict_maps_onto_layers  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

import layercalc  # noqa: E402

torch.set_num_threads(2)

#: float64 comparison of whole networks: rtol as tests/test_executor_oracle.py; the absolute floor scales with the
#: output's magnitude, because values near zero are differences of large partial sums after ~50 layers
RTOL = 1e-9
ATOL_SCALE = 1e-11


# ---------------------------------------------------------------------------------------------------- helpers

def torch_trace(model: nn.Module, input_shape, names) -> tuple[dict[str, list[int]], dict[str, int], int, dict]:
    """One forward pass on the meta device: output shapes of the modules called ``names`` (last call wins),
    FlopCounterMode's count per module name and in total, and its total per operator.

    Only named modules are hooked: torchvision's containers may return dicts (IntermediateLayerGetter) or tuples.
    """
    model = model.to("meta").eval()
    modules = dict(model.named_modules())
    shapes: dict[str, list[int]] = {}
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, list(o.shape)))
             for name in names if name in modules]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.empty(1, *input_shape, device="meta"))
    for hook in hooks:
        hook.remove()
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per_module = {name: sum(counts.get(f"{root}.{name}", {}).values()) for name in modules if name}
    return shapes, per_module, counter.get_total_flops(), dict(counts.get("Global", {}))


def compare_layer_by_layer(model: nn.Module, report, input_shape) -> int:
    """Shapes, params and (for leaf modules) 2·MACs of every torch module whose name is a layercalc layer name;
    every leaf module holding parameters must have its layercalc twin. Returns how many modules were compared.

    ``model`` is moved to the meta device: build it again for anything that needs values."""
    layers = {entry.name: entry for entry in report.layers}
    params = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_modules()}
    leaves = {name for name, module in model.named_modules() if name and not list(module.children())}
    missing = [name for name in leaves if params[name] and name not in layers]
    assert not missing, f"modules with parameters but no layercalc layer of that name: {missing[:5]}"
    shapes, flops, _, _ = torch_trace(model, input_shape, layers)
    compared = 0
    for name, shape in shapes.items():
        entry = layers[name]
        assert entry.output_shape == shape, f"{name}: layercalc {entry.output_shape} vs torch {shape}"
        assert entry.params == params[name], f"{name}: layercalc {entry.params} params vs torch {params[name]}"
        if name in leaves:
            assert 2 * entry.macs == flops[name], f"{name}: layercalc 2·{entry.macs} MACs vs torch {flops[name]}"
        compared += 1
    return compared


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters away from the identity, so that a BatchNorm wired or folded wrongly
    changes the output (torchvision initializes them to mean 0, var 1, weight 1, bias 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -0.1, 0.1), (module.running_var, 0.5, 1.5),
                                          (module.weight, 0.5, 1.5), (module.bias, -0.1, 0.1)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


def executor_matches_torch(network, model: nn.Module, input_shape, tmp_path, output=lambda y: y, seed=0):
    """The torch model's state_dict saved as .npz under its own keys, loaded into the spec as is, and the NumPy
    executor's float64 output compared with torch's float64 forward pass on the same input."""
    model = randomize_batchnorm(model, seed).double().eval()
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        expected = output(model(x)).numpy()
    path = tmp_path / "weights.npz"
    np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})
    got = network.run(x=x.numpy(), weights=str(path), dtype="float64")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL_SCALE * np.abs(expected).max())
    return got


# ------------------------------------------------------------------------------------------------ fcn_resnet50

def fcn_resnet50(device: str = "meta"):
    """torchvision's model, on the meta device (no values: the analysis tests need none) unless asked."""
    with torch.device(device):
        return torchvision().models.segmentation.fcn_resnet50(weights=None, weights_backbone=None).eval()


FCN_INPUT = [3, 520, 520]       # torchvision's evaluation size (SemanticSegmentation(resize_size=520))


@pytest.fixture(scope="module")
def fcn_report():
    report = layercalc.load("zoo:fcn_resnet50").analyze()
    assert report.input_shape == [1, *FCN_INPUT]
    return report


def test_fcn_resnet50_params_and_output(fcn_report):
    model = fcn_resnet50()
    assert fcn_report.totals.params == sum(p.numel() for p in model.parameters()) == 32_957_013
    assert fcn_report.totals.buffers == sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n)
    with torch.no_grad():
        out = model(torch.empty(1, *FCN_INPUT, device="meta"))["out"]
    assert fcn_report.layers[-1].output_shape == list(out.shape) == [1, 21, 520, 520]


def test_fcn_resnet50_layer_by_layer(fcn_report):
    # conv1, bn1, maxpool, 16 bottlenecks × (3 conv + 3 bn) + 4 downsample pairs, the head's 5 modules
    assert compare_layer_by_layer(fcn_resnet50(), fcn_report, FCN_INPUT) >= 4 + 16 * 6 + 4 * 2 + 5


def test_fcn_resnet50_state_dict_keys(fcn_report):
    state_dict_maps_onto_layers(fcn_resnet50(), fcn_report)


def test_fcn_resnet50_macs_against_flop_counter(fcn_report):
    """FlopCounterMode counts 2 per conv MAC (bias excluded) and nothing for upsample_bilinear2d; layercalc counts
    the bilinear resize's 7 operations per output element in ``flops`` and none in ``macs`` (docs/conventions.md),
    so 2 × MACs is FlopCounterMode's total exactly, and convolution is the only operator it counted."""
    _, _, total, per_op = torch_trace(fcn_resnet50(), FCN_INPUT, [])
    assert [str(op) for op in per_op] == ["aten.convolution"]
    assert 2 * fcn_report.totals.macs == total
    upsample = fcn_report.layer("upsample")
    assert upsample.macs == 0 and upsample.flops == 7 * 21 * 520 * 520


def test_fcn_resnet50_dilation_follows_make_layer(fcn_report):
    """replace_stride_with_dilation=[False, True, True]: each dilated stage's first block keeps the previous
    dilation (torchvision's ``_make_layer`` passes ``previous_dilation`` to it)."""
    modules = dict(fcn_resnet50().named_modules())
    spec = {layer.name: layer for layer in layercalc.load("zoo:fcn_resnet50").layers}
    for name in ["backbone.layer2.0.conv2", "backbone.layer3.0.conv2", "backbone.layer3.1.conv2",
                 "backbone.layer4.0.conv2", "backbone.layer4.2.conv2", "backbone.layer4.0.downsample.0"]:
        conv = modules[name]
        layer = spec[name]
        assert (tuple(layer.dilation), tuple(layer.stride)) == (conv.dilation, conv.stride), name
    assert fcn_report.layer("backbone.layer4.2.relu3").output_shape == [1, 2048, 65, 65]   # output stride 8


def test_fcn_resnet50_executor_matches_torchvision(tmp_path):
    """64×64 (a multiple of the output stride 8, so the spec's scale_factor 8 is torchvision's size=input)."""
    network = layercalc.load("zoo:fcn_resnet50").replace(input=[3, 64, 64])
    got = executor_matches_torch(network, fcn_resnet50("cpu"), [3, 64, 64], tmp_path, output=lambda y: y["out"])
    assert got.shape == (1, 21, 64, 64)
