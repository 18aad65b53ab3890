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

from pathlib import Path

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


@pytest.mark.parametrize("size", [[64, 64], [60, 52]])
def test_fcn_resnet50_executor_matches_torchvision(tmp_path, size):
    """torchvision resizes the logits to the image's size (F.interpolate(size=input_shape)), so does the spec
    (size_from): 64×64, and 60×52, no multiple of the output stride 8 (the backbone gives 8×7, and a scale factor
    of 8 would give 64×56)."""
    network = layercalc.load("zoo:fcn_resnet50").replace(input=[3, *size])
    got = executor_matches_torch(network, fcn_resnet50("cpu"), [3, *size], tmp_path, output=lambda y: y["out"])
    assert got.shape == (1, 21, *size)
    assert network.analyze().layer("upsample").inputs == ["classifier.4", "input"]


# ------------------------------------------------------- every torchvision zoo network on torchvision's own terms

ZOO = Path(layercalc.__file__).resolve().parent / "zoo"

#: the zoo's networks whose source is torchvision (the first line of their file says "torchvision's definition"),
#: each built by torchvision's function of the same name; fcn_resnet50 (a segmentation model, 520×520) is above
CLASSIFIERS = ["alexnet", "vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
               "shufflenet_v2_x1_0", "vit_b_16", "swin_t", "convnext_tiny"]
IMAGENET = [3, 224, 224]        # torchvision's input for its classifiers: channels first, as every one takes it

#: float32 agreement of the NumPy executor with torchvision's own float32 forward pass, relative to the largest
#: logit. float32 keeps 24 bits (ε ≈ 1.2e-7); these networks sum up to 25,088 products per output (VGG's first
#: classifier layer) through up to 100+ layers, in another order than torch's kernels. Measured on these models with
#: the weights drawn below: torch's own float32 logits differ from its float64 logits by up to 1.0e-6 of the largest
#: logit (VGG-16), and layercalc's by up to 1.4e-6 (VGG-19); 1e-5 leaves a margin of 7, while a wiring mistake
#: (a layer scale not applied, a permute missing, a weight transposed) moves logits by a fraction of their range.
FLOAT32_REL = 1e-5


def test_the_torchvision_list_is_every_torchvision_file():
    """A network added to the zoo from torchvision is in this test's list (the list cannot silently miss one)."""
    from_torchvision = {path.stem for path in ZOO.glob("*.yaml")
                        if "torchvision" in path.read_text().splitlines()[0]}
    assert from_torchvision == {*CLASSIFIERS, "fcn_resnet50"}


def build_classifier(name: str, device: str = "meta"):
    with torch.device(device):
        return getattr(torchvision().models, name)(weights=None).eval()


@pytest.fixture(scope="module")
def classifier_reports():
    return {name: layercalc.load(f"zoo:{name}").analyze() for name in CLASSIFIERS}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_takes_torchvision_input(classifier_reports, name):
    """The spec's input is torchvision's [N, 3, 224, 224] (channels first); params and logits' shape are
    torchvision's, and 2·MACs is FlopCounterMode's count of torchvision's forward pass on that input."""
    report = classifier_reports[name]
    model = build_classifier(name)
    assert (report.layout, report.input_shape) == ("NCHW", [1, *IMAGENET])
    _, _, flops, _ = torch_trace(model, IMAGENET, [])
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert 2 * report.totals.macs == flops
    with torch.no_grad():
        logits = build_classifier(name)(torch.empty(1, *IMAGENET, device="meta"))
    assert report.layers[-1].output_shape == list(logits.shape) == [1, 1000]


#: the totals the golden reports recorded for convnext_tiny and swin_t when they were written channels-last (before
#: this rewrite): params, buffers, MACs, FLOPs — the permutes added since move values, they compute nothing
CHANNELS_LAST_TOTALS = {"convnext_tiny": (28_589_128, 0, 4_455_531_264, 8_995_599_576),
                        "swin_t": (28_288_354, 0, 4_490_566_656, 9_071_303_328)}


@pytest.mark.parametrize("name", sorted(CHANNELS_LAST_TOTALS))
def test_channels_first_rewrite_keeps_the_counts(classifier_reports, name):
    totals = classifier_reports[name].totals
    assert (totals.params, totals.buffers, totals.macs, totals.flops) == CHANNELS_LAST_TOTALS[name]


def test_swin_buffers_are_not_its_derived_index(classifier_reports):
    """torchvision lists relative_position_index (one [49·49] int64 index per block, 12 blocks) among its buffers:
    28,812 numbers that follow from the window size; layercalc's buffers are state (BatchNorm statistics), so it
    counts none, and loads the index only to check it (tests/test_zoo_swin.py)."""
    buffers = dict(build_classifier("swin_t").named_buffers())
    assert sum(b.numel() for b in buffers.values()) == 12 * 49 * 49 == 28_812
    assert all(key.endswith("relative_position_index") for key in buffers)
    assert classifier_reports["swin_t"].totals.buffers == 0


#: torchvision modules whose output layercalc writes otherwise, and why: torch module → (layercalc layer, how
#: torch's shape becomes layercalc's)
CONVNEXT_TWINS = {
    # LayerNorm2d: permute, LayerNorm, permute inside one module; its output is the second permute's
    **{norm: (f"{norm}.nchw", None) for norm in ["features.0.1", "features.2.0", "features.4.0", "features.6.0"]},
    # AdaptiveAvgPool2d(1) keeps a 1×1 map; global_avgpool drops it (the LayerNorm2d on it is classifier.0's)
    "avgpool": ("avgpool", lambda shape: shape[:2]), "classifier.0": ("classifier.0", lambda shape: shape[:2])}
TWINS = {"convnext_tiny": CONVNEXT_TWINS, "swin_t": {"avgpool": ("avgpool", lambda shape: shape[:2])},
         "vit_b_16": {}}


#: torchvision modules compared, counted by hand from its module tree: ConvNeXt 18 blocks × 7 (block.0–block.6) +
#: stem 2 + 3 downsamples × 2 + avgpool, classifier.0, classifier.2; Swin 12 blocks × 6 (norm1, attn, norm2, mlp.0,
#: mlp.1, mlp.3) + 3 patch mergings × 2 (norm, reduction) + features.0.0–0.2 + norm, permute, avgpool, head; ViT 12
#: blocks × 6 (ln_1, self_attention, ln_2, mlp.0, mlp.1, mlp.3) + conv_proj, encoder.ln, heads.head
COMPARED = {"convnext_tiny": 18 * 7 + 2 + 3 * 2 + 3, "swin_t": 12 * 6 + 3 * 2 + 3 + 4, "vit_b_16": 12 * 6 + 3}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_permuting_models_layer_by_layer(classifier_reports, name):
    """Every torchvision module that is a layercalc layer (or has the twin named above): output shape and
    parameters, on torchvision's input; the permutes are torchvision's own modules (ConvNeXt's block.1 and block.6,
    Swin's features.0.1 and permute) and give its shapes. Every module holding parameters is a layer (or, for
    attention's projections, inside one)."""
    layers = {entry.name: entry for entry in classifier_reports[name].layers}
    model = build_classifier(name)
    modules = dict(model.named_modules())
    twins = TWINS[name]
    shapes: dict[str, list[int]] = {}

    def record(module_name):
        def hook(module, inputs, output):         # MultiheadAttention returns (output, weights)
            shapes[module_name] = list((output[0] if isinstance(output, tuple) else output).shape)
        return hook

    hooks = [module.register_forward_hook(record(module_name)) for module_name, module in modules.items()
             if twins.get(module_name, (module_name, None))[0] in layers]
    with torch.no_grad():
        model(torch.empty(1, *IMAGENET, device="meta"))
    for hook in hooks:
        hook.remove()
    for module_name, shape in shapes.items():
        layer, convert = twins.get(module_name, (module_name, None))
        assert layers[layer].output_shape == (convert(shape) if convert else shape), module_name
        if module_name in layers:
            assert layers[module_name].params == sum(p.numel() for p in modules[module_name].parameters()), \
                module_name
    assert len(shapes) == COMPARED[name]
    leaves = [m for m, module in modules.items() if m and not list(module.children()) and list(module.parameters())]
    assert leaves and all(m in layers or m.rsplit(".", 1)[0] in layers for m in leaves)


def randomize_constants(model: nn.Module, seed: int) -> nn.Module:
    """Tensors torchvision initializes to a constant (biases 0, norms' weights 1, ConvNeXt's layer scale 1e-6,
    ViT's class token and head 0) moved off it, so that each one's place in the network matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.parameters():
            flat = tensor.reshape(-1)
            if bool((flat == flat[0]).all()):
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return model


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_state_dict_as_saved_runs_to_torchvision_logits(name, tmp_path):
    """torchvision's model (random weights, BatchNorm statistics and constant-initialized tensors moved off their
    start) → ``{k: v.numpy() for k, v in state_dict().items()}`` → np.savez → ``layercalc run zoo:NAME --weights
    w.npz --input x.npy``: every layer takes its weights from the file, and the logits are torchvision's."""
    from typer.testing import CliRunner

    from layercalc.cli import get_app

    torch.manual_seed(0)
    model = randomize_constants(randomize_batchnorm(build_classifier(name, "cpu"), 0), 1).eval()
    x = torch.randn(1, *IMAGENET, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x).numpy()
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    np.save(tmp_path / "x.npy", x.numpy())
    result = CliRunner().invoke(get_app(), ["run", f"zoo:{name}", "--weights", str(tmp_path / "w.npz"), "--input",
                                            str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                                            "--wide"])  # the line is read whole (not wrapped to 80 columns)
    assert result.exit_code == 0, result.output
    assert f"weights: from {tmp_path / 'w.npz'} for all " in result.output      # none drawn from the seed
    got = np.load(tmp_path / "y.npy")
    assert got.shape == expected.shape == (1, 1000)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_REL * np.abs(expected).max())
