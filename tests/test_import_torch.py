"""layercalc.from_torch against PyTorch itself: torchvision's models and hand-built modules traced with torch.fx.

Oracles: ``sum(p.numel() for p in model.parameters())``; FlopCounterMode = 2·MACs (conv, linear, matmul), with
attention that runs on a path FlopCounterMode counts as 0 (nn.MultiheadAttention's eval fast path) added from its
formula, written out in the test; the module's own output on its own ``state_dict``, through layercalc's executor.
Every imported layer's output shape is also checked against torch's by from_torch itself (a mismatch is refused).
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402


def flops(model, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def vit_attention_macs(layers: int, heads: int, tokens: int, width: int) -> int:
    """nn.MultiheadAttention per layer: q, k, v and out projections 4·L·E², QKᵀ and A·V 2·H·L²·(E/H)."""
    return layers * (4 * tokens * width * width + 2 * heads * tokens * tokens * (width // heads))


CNNS = ["resnet18", "mobilenet_v2", "vgg11", "shufflenet_v2_x1_0", "squeezenet1_1", "densenet121",
        "efficientnet_b0", "mobilenet_v3_large", "regnet_y_400mf", "convnext_tiny", "swin_t"]


@pytest.mark.parametrize("name", CNNS + ["vit_b_16"])
def test_torchvision_models(name):
    torch.manual_seed(0)
    model = getattr(torchvision().models, name)().eval()
    report = layercalc.from_torch(model, (1, 3, 224, 224)).analyze()
    assert report.totals.params == n_params(model)
    counted = flops(model, torch.zeros(1, 3, 224, 224))
    if name == "vit_b_16":      # the encoder's nn.MultiheadAttention runs its fused fast path: counted 0 in eval
        counted += 2 * vit_attention_macs(12, 12, 197, 768)
    assert 2 * report.totals.macs == counted
    assert report.layers[-1].output_shape == [1, 1000]
    # module names are layer names: every parameter of the model belongs to a layer (its state_dict keys map)
    from layercalc.weights import split_weight_key
    names = {entry.name for entry in report.layers}
    assert all(split_weight_key(key, names)[0] in names for key, _ in model.named_parameters())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "densenet121", "convnext_tiny"])
def test_the_state_dict_runs_in_the_executor(name):
    """The module's state_dict as it is (BatchNorm statistics randomized so they matter): the executor's logits are
    torch's."""
    torch.manual_seed(1)
    model = getattr(torchvision().models, name)().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        x = torch.randn(1, 3, 64, 64)
        expected = model(x).numpy()
    net = layercalc.from_torch(model, (1, 3, 64, 64))
    got = net.run(x=x.numpy(), weights={k: v.numpy() for k, v in model.state_dict().items()})
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


class TinyLM(nn.Module):
    """Token ids → embedding → nn.TransformerEncoder → LayerNorm → a head tied to the embedding."""

    def __init__(self, norm_first: bool, activation: str):
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0, norm_first=norm_first,
                                           activation=activation)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(32), enable_nested_tensor=False)
        self.head = nn.Linear(32, 100, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)))


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_with_a_tied_head(norm_first, activation):
    torch.manual_seed(2)
    model = TinyLM(norm_first, activation).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # every parameter is used: no warning
        net = layercalc.from_torch(model, (2, 16))
    report = net.analyze()
    assert report.totals.params == n_params(model)     # the tied weight once, as parameters() counts it
    assert report.layer("head").params == 0
    # by hand: embedding lookup 0; per layer attention 4·N·L·E² + 2·N·H·L²·d, feed-forward 2·N·L·E·F; head N·L·E·V
    n_, length, e, f, v = 2, 16, 32, 64, 100
    per_layer = 4 * n_ * length * e * e + 2 * n_ * 4 * length * length * (e // 4) + 2 * n_ * length * e * f
    assert report.totals.macs == 2 * per_layer + n_ * length * e * v
    x = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        expected = model(x).numpy()
    # the state_dict names the tied tensor twice (embed.weight, head.weight): the same values, so accepted
    got = net.run(x=x.numpy(), weights={k: t.numpy() for k, t in model.state_dict().items()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.fc(out[:, -1])


def test_lstm_last_step_classifier():
    torch.manual_seed(3)
    model = Recurrent().eval()
    net = layercalc.from_torch(model, (4, 7))
    report = net.analyze()
    # PyTorch's LSTM per layer and direction 4·(h·i + h² + 2h): layer 1 i = 8, layer 2 i = 2·16
    lstm = 2 * 4 * (16 * 8 + 16 * 16 + 2 * 16) + 2 * 4 * (16 * 32 + 16 * 16 + 2 * 16)
    assert report.layer("lstm").params == lstm == n_params(model.lstm)
    assert report.totals.params == n_params(model)
    x = torch.randint(0, 50, (4, 7))
    with torch.no_grad():
        expected = model(x).numpy()
    got = net.run(x=x.numpy(), weights=model.state_dict())         # torch tensors as they are
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_unused_parameters_are_said_not_counted():
    """GoogLeNet's auxiliary heads never run in eval mode: not in the network, and from_torch says so."""
    model = torchvision().models.googlenet(aux_logits=True, init_weights=False).eval()
    with pytest.warns(UserWarning, match="not used by its forward pass .eval mode.* aux1"):
        report = layercalc.from_torch(model, (1, 3, 224, 224)).analyze()
    unused = n_params(model.aux1) + n_params(model.aux2)
    assert report.totals.params == n_params(model) - unused


class Det(nn.Module):
    def forward(self, x):
        return torch.det(x)


class Scaled(nn.Module):
    """Scaled by a buffer: a constant tensor whose values are data, not a number layercalc can hold."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("scale", torch.full((4,), 2.0))

    def forward(self, x):
        return self.fc(x) * self.scale


class Branchy(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class Elu(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(x)


@pytest.mark.parametrize("model, size, message", [
    (Det(), (1, 3, 3), "node 1 'det' \\(call_function det\\): det has no layercalc layer type"),
    (Scaled(), (1, 4), "node 3 'mul' .*reads the tensor attribute 'scale', which is not a learnable parameter"),
    (Branchy(), (1, 4), "torch.fx cannot trace Branchy"),
    (Elu(), (1, 4), "node 1 'act' \\(module act\\): module class torch.nn.ELU has no layercalc layer type"),
    (nn.Linear(3, 4), (1, 5), "does not run on an input of \\[1, 5\\]"),
    (nn.Linear(3, 4), (3,), "must hold the batch size and at least one more"),
])
def test_refusals_name_the_node(model, size, message):
    with pytest.raises(LayerCalcError, match=message):
        layercalc.from_torch(model, size)


class Standardize(nn.Module):
    """(x − μ) / σ with μ and σ computed from x: the functional sub and div."""

    def forward(self, x):
        centred = x - x.mean(dim=1, keepdim=True)
        return centred / (x.sum(dim=1, keepdim=True) + x)


def test_sub_and_div_run_as_torch_computes_them():
    model = Standardize()
    net = layercalc.from_torch(model, (2, 5))
    assert [entry.type for entry in net.analyze().layers] == ["mean", "sub", "sum", "add", "div"]
    x = torch.rand(2, 5) + 0.5
    np.testing.assert_allclose(net.run(x=x.numpy()), model(x).numpy(), rtol=1e-6)


def test_the_interview_numbers():
    """A dense layer on 28·28 inputs with 500 units: 392,500 parameters; VGG16's FC1 maps 7·7·512 to 4,096."""
    assert layercalc.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(784, 500)),
                                (1, 28, 28)).analyze().totals.params == 784 * 500 + 500 == 392_500
    fc1 = layercalc.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 512, 4096)), (1, 512, 7, 7))
    assert fc1.analyze().totals.params == 25_088 * 4_096 + 4_096


@pytest.mark.parametrize("name, stages", [("resnet50", ["layer1", "layer2", "layer3", "layer4"]),
                                          ("efficientnet_b0", None)])
def test_the_traced_network_as_a_spec_with_its_repeated_blocks_written_once(name, stages):
    """What `layercalc convert` writes: identical consecutive blocks (ResNet-50's layer1.1–layer1.2 …) folded into
    one block and a repeat; it reads back to the same report, layer by layer."""
    from layercalc.blocks import fold
    from layercalc.importers.torch import spec_from_torch
    from layercalc.spec import parse_text, to_yaml

    model = getattr(torchvision().models, name)().eval()
    flat = spec_from_torch(model, (1, 3, 224, 224))
    folded = fold(flat)
    assert len(folded["layers"]) < len(flat["layers"]) / 2 or name != "resnet50"
    if stages:
        assert list(folded["blocks"]) == stages
        assert {"repeat": 2, "name": "layer1", "block": "layer1", "start": 1} in folded["layers"]
    text = to_yaml(folded)
    again = layercalc.load(parse_text(text, f"{name}.yaml")).analyze()
    assert again.model_dump() == layercalc.load(flat).analyze().model_dump()
    assert again.totals.params == n_params(model)


# --------------------------------------------------------------------- issue 19: modules known by what they are

class Linear(nn.Module):
    """A user's own module that happens to be called Linear (and has in_features, out_features and bias, as torch's
    does): 8·4 + 4·4 = 48 parameters and two matrix products, not torch's 32-parameter linear layer."""

    def __init__(self):
        super().__init__()
        self.in_features, self.out_features, self.bias = 8, 4, None
        self.weight = nn.Parameter(torch.randn(4, 8))
        self.mix = nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        return (x @ self.weight.t()) @ self.mix


class DoubledLinear(nn.Linear):
    """torch's Linear with its own forward: computes something else."""

    def forward(self, x):
        return super().forward(x) * 2


class PlainLinear(nn.Linear):
    """torch's Linear under another name, forward inherited: the same layer."""


class LinearWithAnExtra(nn.Linear):
    """forward inherited, but a parameter Linear does not have: its rule would count 36 of 39."""

    def __init__(self):
        super().__init__(8, 4)
        self.extra = nn.Parameter(torch.zeros(3))


def test_a_users_module_named_like_torchs_is_not_counted_as_torchs():
    model = nn.Sequential(Linear())
    assert n_params(model) == 48
    try:
        params = layercalc.from_torch(model, (1, 8)).analyze().totals.params
    except LayerCalcError as exc:                    # traced into: its ops refused by name, never a guess
        assert "node" in str(exc) and "Linear" not in str(exc).split(":")[1]
    else:
        assert params == 48


def test_a_subclass_with_its_own_forward_is_traced_into():
    """Traced into: F.linear on its parameters, then the doubling — not counted as a plain linear layer."""
    model = nn.Sequential(DoubledLinear(8, 4)).eval()
    net = layercalc.from_torch(model, (2, 8))
    assert [(entry.type, entry.params) for entry in net.analyze().layers] == [("linear", 36), ("rescaling", 0)]
    x = torch.randn(2, 8)
    with torch.no_grad():
        np.testing.assert_allclose(net.run(x=x.numpy(), weights=model.state_dict()), model(x).numpy(), rtol=1e-6)


def test_a_subclass_that_inherits_forward_is_its_base_class():
    model = nn.Sequential(PlainLinear(8, 4)).eval()
    net = layercalc.from_torch(model, (2, 8))
    assert [(entry.type, entry.params) for entry in net.analyze().layers] == [("linear", n_params(model))]
    x = torch.randn(2, 8)
    with torch.no_grad():
        np.testing.assert_allclose(net.run(x=x.numpy(), weights=model.state_dict()), model(x).numpy(), rtol=1e-6)


def test_a_module_whose_parameters_its_layer_type_does_not_hold_is_refused():
    with pytest.raises(LayerCalcError, match="module 0 .*LinearWithAnExtra. has 39 parameters but its layer type "
                                             "counts 36"):
        layercalc.from_torch(nn.Sequential(LinearWithAnExtra()), (1, 8))


class Rescaled(nn.Linear):
    """A user's own linear layer (its own forward) in a TransformerEncoderLayer's place of linear1: the layer's rule
    reads torch's parts, not this."""

    def forward(self, x):
        return super().forward(x) * 3


def test_a_transformer_layer_with_a_replaced_part_is_refused():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0).eval()
    layer.linear1 = Rescaled(16, 32)
    with pytest.raises(LayerCalcError, match="linear1 is a .*Rescaled, not torch's Linear"):
        layercalc.from_torch(nn.Sequential(layer), (1, 4, 16))


def test_gelu_tanh_in_a_transformer_layer_is_kept():
    """nn.GELU('tanh') as a TransformerEncoderLayer's activation: the tanh form (its FLOPs differ, its values too)."""
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0,
                                       activation=nn.GELU(approximate="tanh")).eval()
    net = layercalc.from_torch(nn.Sequential(layer), (1, 4, 16))
    gelu = [entry for entry in net.layers if entry.type_name == "gelu"]
    assert [g.approximate for g in gelu] == ["tanh"]
    x = torch.randn(1, 4, 16)
    expected = layer(x).detach().numpy()    # with autograd on: eval's fused fast path computes the erf form anyway
    got = net.run(x=x.numpy(), weights={f"0.{k}": v for k, v in layer.state_dict().items()})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@torch.fx.wrap
def relu(x):
    """A user's function named like torch's, kept whole by torch.fx.wrap: it is not torch.relu."""
    return x.clamp(min=0) * 10


class CallsOwnRelu(nn.Module):
    def forward(self, x):
        return relu(x)


def test_a_users_function_named_like_torchs_is_not_torchs():
    with pytest.raises(LayerCalcError, match="test_import_torch.relu is not torch's relu"):
        layercalc.from_torch(CallsOwnRelu(), (1, 4))


# ------------------------------------------------------------------------ issue 19: input_size taken as given

@pytest.mark.parametrize("size, message", [
    ((1, 3.7), "input_size \\(1, 3.7\\): 3.7 \\(float\\) is not a whole number"),
    ((True, 8), "input_size \\(True, 8\\): True \\(bool\\) is not a whole number"),
    ("18", "input_size '18' \\(str\\) must be a sequence of sizes"),
    (8, "input_size 8 \\(int\\) must be a sequence of sizes"),
    ((0, 8), "input_size \\[0, 8\\] must hold the batch size and at least one more size, each ≥ 1"),
    ((1, -8), "input_size \\[1, -8\\] must hold"),
    ((1, torch.tensor(8)), "tensor\\(8\\) \\(Tensor\\) is not a whole number"),
])
def test_input_size_is_whole_numbers_only(size, message):
    with pytest.raises(LayerCalcError, match=message):
        layercalc.from_torch(nn.Linear(8, 4), size)


def test_a_tensor_given_as_the_size_says_pass_its_shape():
    x = torch.zeros(1, 8)
    with pytest.raises(LayerCalcError, match="input_size is a Tensor of shape \\[1, 8\\], not a size: pass the "
                                             "tensor's .shape"):
        layercalc.from_torch(nn.Linear(8, 4), x)
    assert layercalc.from_torch(nn.Linear(8, 4), x.shape).analyze().totals.params == 36    # torch.Size: accepted


def test_a_missing_batch_dim_is_said_in_one_line():
    """torch runs Conv2d on [3, 32, 32] as one unbatched example; read batch first, that is 3 examples of [32, 32]."""
    with pytest.raises(LayerCalcError, match="Conv2d receives \\[3, 32, 32\\], one example without a batch dim .* "
                                             "e.g. \\(1, 3, 32, 32\\)") as caught:
        layercalc.from_torch(nn.Sequential(nn.Conv2d(3, 8, 3)), (3, 32, 32))
    assert "\n" not in str(caught.value)
    with pytest.raises(LayerCalcError, match="Conv2d receives \\[3, 32, 32\\]"):
        layercalc.from_torch(nn.Conv2d(3, 8, 3), (3, 32, 32))


# --------------------------------------------------------------------------- issue 19: a bare module at the root

@pytest.mark.parametrize("module, size", [
    (nn.Linear(8, 4), (1, 8)),
    (nn.Conv2d(3, 8, 3, stride=2), (2, 3, 16, 16)),
    (nn.LayerNorm(6), (2, 5, 6)),
    (nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0), (1, 4, 16)),
])
def test_a_bare_module_is_one_layer_named_by_its_class(module, size):
    torch.manual_seed(5)
    module = module.eval()
    net = layercalc.from_torch(module, size)
    report = net.analyze()
    x = torch.randn(size)
    assert report.totals.params == n_params(module)
    assert 2 * report.totals.macs == flops(module, x) or isinstance(module, nn.TransformerEncoderLayer)
    with torch.no_grad():
        expected = module(x).numpy()
    assert report.layers[-1].output_shape == list(expected.shape)
    name = type(module).__name__
    assert report.layers[0].name.startswith(name)
    got = net.run(x=x.numpy(), weights={f"{name}.{k}": v for k, v in module.state_dict().items()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ issue 19: bfloat16 and float16 weights

class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.norm(self.conv(x))), 1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_state_dict_loads_exactly(dtype):
    """The state_dict of a bf16 (or fp16) module as it is: the executor's output is that of the module whose
    float32 weights are the bf16 values (bf16 → float32 is exact)."""
    torch.manual_seed(6)
    model = Small().eval()
    half = model.to(dtype).state_dict()
    assert half["conv.weight"].dtype == dtype
    rounded = Small().eval()
    rounded.load_state_dict({k: v.float() for k, v in half.items()})
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = rounded(x).numpy()
    net = layercalc.from_torch(rounded, (2, 3, 8, 8))
    got = net.run(x=x.numpy(), weights=half)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    nested = net.run(x=x.to(dtype).float().numpy(), weights={"conv": {k: v for k, v in
                                                                     model.conv.state_dict().items()}})
    assert nested.shape == expected.shape
