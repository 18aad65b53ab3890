"""Held-out architectures: torchvision 0.28.0 models that are not in the zoo, written as layercalc specs
(``tests/heldout/*.yaml``) from torchvision's source, by someone other than the zoo's author, and compared with the
torchvision models themselves.

Per model: total params (= the sum over torchvision's parameters); for every torchvision module whose name is a
layercalc layer name, its output shape, its parameter count and, for leaf modules, FlopCounterMode's count =
2 × layercalc MACs; every state_dict key names a layercalc layer; total MACs = FlopCounterMode / 2, and
FlopCounterMode counted only the operators whose MACs layercalc counts. Shapes and counts come from torch passes on
the meta device (no arithmetic); for a few models the NumPy executor runs with torchvision's weights (BatchNorm
statistics randomized) at a small input and is compared with torchvision's float64 forward pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from oracle_helpers import state_dict_maps_onto_layers  # noqa: E402
from test_zoo_torchvision import compare_layer_by_layer, executor_matches_torch, torch_trace  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

import layercalc  # noqa: E402

HELDOUT = Path(__file__).resolve().parent / "heldout"

#: name (torchvision's builder, called with weights=None) → layercalc layers compared at least, by hand from the
#: torchvision module tree (leaf modules that run in eval mode)
MODELS = {
    "squeezenet1_1": 8 * 6 + 9,                 # 8 Fire modules × 6, 3 pools, features.0-1, head 4
    "resnext50_32x4d": 16 * 6 + 4 * 2 + 5,      # 16 bottlenecks × (3 conv + 3 bn), 4 projections × 2, stem 4, fc
    "wide_resnet50_2": 16 * 6 + 4 * 2 + 5,
    # stem 3, features.1 5, 6 blocks without SE × 8, 8 with SE × 13, last conv 3, avgpool, head 4
    "mobilenet_v3_large": 3 + 5 + 6 * 8 + 8 * 13 + 3 + 1 + 4,
    # stem 3, features.1.0 10, 6 stage-first MBConvs × 13, 9 residual ones × 14 (stochastic_depth runs only there),
    # last conv 3, avgpool, head 2
    "efficientnet_b0": 3 + 10 + 6 * 13 + 9 * 14 + 3 + 1 + 2,
    # stem 4, 58 dense layers × 6, 3 transitions × 4, norm5, classifier
    "densenet121": 4 + 58 * 6 + 3 * 4 + 1 + 1,
    # stem 3 BasicConv2d × 2 + 2 pools, 9 Inception × (6 BasicConv2d × 2 + pool), maxpool3/4, avgpool, dropout, fc
    "googlenet": 3 * 2 + 2 + 9 * 13 + 5,
    # stem 3, 16 blocks × (a 3, b 3, se 5, c 2, activation), 4 projections × 2, avgpool, fc
    "regnet_y_400mf": 3 + 16 * 14 + 4 * 2 + 2,
}

#: builder arguments besides weights=None: GoogLeNet's aux heads only run in training (googlenet() with weights
#: drops them too); init_weights=True is its default, passed to silence the FutureWarning about it
BUILDER_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True}}

#: the operators whose count FlopCounterMode reports, all of them conv/linear products (2 per MAC, bias excluded):
#: anything else it counted would be outside layercalc's MACs and would have to be explained here
PRODUCTS = {"aten.convolution", "aten.addmm", "aten.mm"}

#: models whose executor output is compared with torchvision's (input without batch)
EXECUTED = {name: [3, 64, 64] for name in ["squeezenet1_1", "mobilenet_v3_large", "efficientnet_b0", "densenet121",
                                           "googlenet", "regnet_y_400mf"]}


#: RegNet's BlockParams computes the stage widths with torch ops and .tolist(), which needs values: built on the CPU
BUILT_ON_CPU = {"regnet_y_400mf"}


def build(name: str, device: str = "meta"):
    """The torchvision model, on the meta device (no values: the analysis tests need none) unless asked."""
    with torch.device("cpu" if name in BUILT_ON_CPU else device):
        model = getattr(torchvision().models, name)(weights=None, **BUILDER_ARGS.get(name, {})).eval()
    return model.to(device)


def test_every_spec_has_a_model():
    assert sorted(p.stem for p in HELDOUT.glob("*.yaml")) == sorted(MODELS)


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    name = request.param
    network = layercalc.load(HELDOUT / f"{name}.yaml")
    return name, network, network.analyze()


def test_params(case):
    name, _, report = case
    model = build(name)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n)


def test_layer_by_layer(case):
    name, network, report = case
    assert compare_layer_by_layer(build(name), report, network.input) >= MODELS[name]


def test_state_dict_keys(case):
    name, _, report = case
    state_dict_maps_onto_layers(build(name), report)


def test_macs_against_flop_counter(case):
    name, network, report = case
    _, _, total, per_op = torch_trace(build(name), network.input, [])
    assert {str(op) for op in per_op} <= PRODUCTS, per_op
    assert 2 * report.totals.macs == total
    assert report.layers[-1].output_shape == [1, 1000]


@pytest.mark.parametrize("name", sorted(EXECUTED))
def test_executor_matches_torchvision(name, tmp_path):
    network = layercalc.load(HELDOUT / f"{name}.yaml").replace(input=EXECUTED[name])
    executor_matches_torch(network, build(name, "cpu"), EXECUTED[name], tmp_path)
