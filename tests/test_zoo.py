"""The model zoo against published figures.

Sources:
- torchvision model documentation / weight metadata (``Weights.meta``: ``num_params`` and ``_ops``, the "GFLOPS"
  column, which counts multiply-adds of conv and linear layers = layercalc's MACs), e.g.
  https://pytorch.org/vision/stable/models.html and the per-model pages (AlexNet_Weights.IMAGENET1K_V1, …).
- Keras' classic MNIST examples: the MLP 784→512→10 has 407,050 params; TensorFlow's CNN tutorial network on MNIST
  (28×28×1) has 93,322 and its first conv outputs (None, 26, 26, 32).
- LeNet-5 as defined in zoo/lenet5.yaml: derived by hand below.
"""

import pytest

import layercalc
from layercalc import SpecError, zoo

# name: (params, GMACs as published by torchvision ("GFLOPS" column))
TORCHVISION = {
    "alexnet": (61_100_840, 0.714),
    "vgg11": (132_863_336, 7.609),
    "vgg16": (138_357_544, 15.47),
    "vgg19": (143_667_240, 19.63),
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "mobilenet_v2": (3_504_872, 0.301),
}


@pytest.fixture(scope="module")
def reports():
    return {name: zoo.load(name).analyze() for name in zoo.list_models()}


#: torchvision models that permute to channels-last inside (their permutes are layers of the spec): name →
#: (params, GMACs)
TORCHVISION_PERMUTING = {"convnext_tiny": (28_589_128, 4.456), "swin_t": (28_288_354, 4.491)}


#: torchvision models whose published GFLOPS has too few digits for the 0.5 % check: name → params, checked
#: against a PyTorch build instead (below)
TORCHVISION_OTHER = {"shufflenet_v2_x1_0": 2_278_604}

#: torchvision segmentation models, input 3×520×520 (their evaluation size), per-pixel logits: name → classes. Layer
#: by layer against torchvision's own definition in tests/test_zoo_torchvision.py
TORCHVISION_SEGMENTATION = {"fcn_resnet50": 21}


def test_the_zoo_holds_the_promised_models():
    transformers = ["vit_b_16", "gpt2", "bert_base", "llama2_7b", "llama3_8b", "mistral_7b"]  # test_zoo_transformers
    assert zoo.list_models() == sorted(["mnist_mlp", "mnist_cnn", "lenet5", *TORCHVISION, *TORCHVISION_PERMUTING,
                                        *TORCHVISION_OTHER, *TORCHVISION_SEGMENTATION, *transformers])


def test_shufflenet_v2_against_torch():
    """torchvision's ShuffleNetV2 ×1.0 rebuilt in PyTorch: params, buffers and the conv/linear MACs (FlopCounterMode
    = 2·MACs), and the published 2,278,604 parameters."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    def conv_bn(cin, cout, k, stride=1, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + [nn.ReLU()] if relu else layers

    class Unit(nn.Module):
        def __init__(self, inp, oup, stride):
            super().__init__()
            half, self.stride = oup // 2, stride
            if stride > 1:
                self.branch1 = nn.Sequential(*conv_bn(inp, inp, 3, stride, inp, relu=False), *conv_bn(inp, half, 1))
            self.branch2 = nn.Sequential(*conv_bn(inp if stride > 1 else half, half, 1),
                                         *conv_bn(half, half, 3, stride, half, relu=False), *conv_bn(half, half, 1))

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            n, c, h, w = out.shape
            return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    stages, cin = [], 24
    for repeats, cout in zip([4, 8, 4], [116, 232, 464]):
        stages += [Unit(cin, cout, 2)] + [Unit(cout, cout, 1) for _ in range(repeats - 1)]
        cin = cout
    body = nn.Sequential(*conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1), *stages, *conv_bn(464, 1024, 1))
    fc = nn.Linear(1024, 1000)
    report = zoo.load("shufflenet_v2_x1_0").analyze()
    params = sum(p.numel() for p in body.parameters()) + sum(p.numel() for p in fc.parameters())
    assert report.totals.params == params == TORCHVISION_OTHER["shufflenet_v2_x1_0"]
    assert report.totals.buffers == sum(b.numel() for name, b in body.named_buffers() if "running" in name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fc(body.eval()(torch.zeros(1, 3, 224, 224)).mean([2, 3]))
    assert 2 * report.totals.macs == counter.get_total_flops()
    assert report.layers[-1].output_shape == [1, 1000]


@pytest.mark.parametrize("name", list(TORCHVISION_PERMUTING))
def test_permuting_torchvision_models(reports, name):
    params, gmacs = TORCHVISION_PERMUTING[name]
    report = reports[name]
    assert report.totals.params == params
    assert abs(report.totals.macs / 1e9 - gmacs) / gmacs < 0.005
    assert report.layout == "NCHW"
    assert report.input_shape == [1, 3, 224, 224] and report.layers[-1].output_shape == [1, 1000]


def test_convnext_tiny_against_torch():
    """torchvision's ConvNeXt-T rebuilt in PyTorch (NCHW, its permutes and LayerNorm2d): params exactly, and the
    conv and linear multiply-adds as FlopCounterMode counts them (2 per MAC)."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    class LayerNorm2d(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
            self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

        def forward(self, x):
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            y = self.fc2(nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)
            return x + self.layer_scale * y

    layers, dims = [nn.Conv2d(3, 96, 4, stride=4), LayerNorm2d(96, eps=1e-6)], [96, 192, 384, 768]
    for i, (depth, dim) in enumerate(zip([3, 3, 9, 3], dims)):
        if i:
            layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
        layers += [Block(dim) for _ in range(depth)]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(768, eps=1e-6),
                          nn.Linear(768, 1000)).eval()
    report = zoo.load("convnext_tiny").analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 28_589_128
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert 2 * report.totals.macs == counter.get_total_flops()


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_params_equal_and_macs_within_half_a_percent_of_torchvision(reports, name):
    params, gmacs = TORCHVISION[name]
    totals = reports[name].totals
    assert totals.params == params
    assert abs(totals.macs / 1e9 - gmacs) / gmacs < 0.005, f"{name}: {totals.macs / 1e9:.4f} vs {gmacs}"


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_models_take_imagenet_input_and_give_1000_logits(reports, name):
    report = reports[name]
    assert report.input_shape == [1, 3, 224, 224]
    assert report.outputs == [report.layers[-1].name]
    assert report.layers[-1].output_shape == [1, 1000]


# FlopCounterMode totals measured with PyTorch 2.13.0 on torchvision's models (/work/shared/README.md): 2 × MACs.
FLOP_COUNTER = {"alexnet": 1_428_376_960, "vgg16": 30_940_528_640, "resnet18": 3_628_146_688,
                "resnet50": 8_178_368_512, "mobilenet_v2": 601_548_544}


@pytest.mark.parametrize("name", list(FLOP_COUNTER))
def test_macs_are_exactly_half_of_torch_flop_counter(reports, name):
    assert 2 * reports[name].totals.macs == FLOP_COUNTER[name]


def test_fcn_resnet50_against_published_figures(reports):
    """torchvision publishes FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1 with its aux classifier (aux_loss=True):
    num_params 35,322,218 and _ops 152.717 GFLOPS (multiply-adds) at 520×520. The zoo entry has no aux classifier:
    adding FCNHead(1024, 21) on layer3's 1024×65×65 output by hand gives the published figures."""
    report = reports["fcn_resnet50"]
    assert report.input_shape == [1, 3, 520, 520]
    assert report.layers[-1].output_shape == [1, TORCHVISION_SEGMENTATION["fcn_resnet50"], 520, 520]
    assert report.layer("backbone.layer3.5.relu3").output_shape == [1, 1024, 65, 65]
    aux_params = 256 * 1024 * 9 + 2 * 256 + (21 * 256 + 21)           # conv3x3 (no bias), BN, conv1x1 + bias
    aux_macs = 65 * 65 * (256 * 1024 * 9 + 21 * 256)
    assert report.totals.params + aux_params == 35_322_218
    assert abs((report.totals.macs + aux_macs) / 1e9 - 152.717) < 0.0005


def test_mnist_mlp(reports):
    report = reports["mnist_mlp"]
    assert report.totals.params == 407_050 == (784 * 512 + 512) + (512 * 10 + 10)
    assert report.totals.macs == 784 * 512 + 512 * 10
    assert report.layers[-1].output_shape == [1, 10]


def test_mnist_cnn_keras_layout(reports):
    report = reports["mnist_cnn"]
    assert report.layout == "NHWC"
    assert report.totals.params == 93_322
    # Keras' model.summary(): (None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64), (None, 5, 5, 64),
    # (None, 3, 3, 64), (None, 576), (None, 64), (None, 10)
    shapes = {e.name: e.output_shape[1:] for e in report.layers}
    assert shapes["conv2d"] == [26, 26, 32]
    assert shapes["max_pooling2d"] == [13, 13, 32]
    assert shapes["conv2d_1"] == [11, 11, 64]
    assert shapes["max_pooling2d_1"] == [5, 5, 64]
    assert shapes["conv2d_2"] == [3, 3, 64]
    assert shapes["flatten"] == [576]
    assert shapes["dense_1"] == [10]
    # 5,588,480 FLOPs from FlopCounterMode on the same network (/work/shared/README.md) = 2 × MACs
    assert 2 * report.totals.macs == 5_588_480


def test_lenet5_by_hand(reports):
    report = reports["lenet5"]
    c1 = 6 * 1 * 25 + 6            # 156
    c3 = 16 * 6 * 25 + 16          # 2,416
    c5 = 120 * 16 * 25 + 120       # 48,120
    f6 = 84 * 120 + 84             # 10,164
    out = 10 * 84 + 10             # 850
    assert report.totals.params == c1 + c3 + c5 + f6 + out == 61_706
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
    assert report.totals.macs == macs == 416_520
    assert report.layer("c5").output_shape == [1, 120, 1, 1]


def test_resnet_names_follow_torchvision(reports):
    names = {e.name for e in reports["resnet50"].layers}
    for expected in ["conv1", "bn1", "layer1.0.conv1", "layer1.0.downsample.0", "layer1.0.downsample.1",
                     "layer3.5.conv3", "layer4.2.bn3", "fc"]:
        assert expected in names
    assert "layer1.1.downsample.0" not in names
    # ResNet-18's layer1 keeps 64 channels at stride 1: no projection shortcut there (torchvision)
    r18 = {e.name for e in reports["resnet18"].layers}
    assert "layer1.0.downsample.0" not in r18 and "layer2.0.downsample.0" in r18


def test_resnet_v1_5_puts_the_stride_on_the_3x3(reports):
    report = reports["resnet50"]
    assert report.layer("layer2.0.conv1").output_shape == [1, 128, 56, 56]
    assert report.layer("layer2.0.conv2").output_shape == [1, 128, 28, 28]


def test_mobilenet_v2_names(reports):
    names = {e.name for e in reports["mobilenet_v2"].layers}
    for expected in ["features.0.0", "features.1.conv.0.0", "features.1.conv.1", "features.2.conv.0.0",
                     "features.2.conv.3", "features.17.conv.3", "features.18.0", "classifier.1"]:
        assert expected in names


def test_resnet50_spec_is_short():
    lines = zoo.spec_path("resnet50").read_text().splitlines()
    assert len(lines) < 60


def test_zoo_prefix_in_load_and_unknown_names():
    assert layercalc.load("zoo:lenet5").name == "lenet5"
    with pytest.raises(SpecError, match=r"zoo:resnet5: no such model in the zoo; did you mean 'resnet50'"):
        layercalc.load("zoo:resnet5")
    with pytest.raises(SpecError, match=r"zoo:xyz: no such model.*available: alexnet, bert_base, convnext_tiny, fcn_resnet50, gpt2"):
        zoo.load("xyz")


def test_zoo_specs_ship_as_package_data():
    path = zoo.spec_path("alexnet")
    assert path.name == "alexnet.yaml" and path.parent.name == "zoo" and path.parent.parent.name == "layercalc"
