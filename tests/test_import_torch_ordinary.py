"""layercalc.from_torch on the PyTorch code people write (issue 22 §3): arithmetic with Python numbers, clamp, F.pad,
the functional norms and activations with the module's own parameters, torch.cat of branches, reductions.

Oracles, for every module: ``sum(p.numel() for p in model.parameters())``; FlopCounterMode = 2·MACs (it counts
matrix products and convolutions: the element-wise ops count 0 there, and their FLOPs are derived by hand below from
docs/conventions.md's rows); the output shape torch computes; the module's own output, reproduced by layercalc's
executor on the module's state_dict.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402


def flops(model, *xs) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*xs)
    return counter.get_total_flops()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_as_torch(model, size, weights=None, rtol=1e-5, atol=1e-5):
    """params, MACs, output shape and the executor's output equal torch's; returns the report."""
    torch.manual_seed(0)
    model = model.eval()
    net = layercalc.from_torch(model, size)
    report = net.analyze()
    x = torch.randn(size)
    with torch.no_grad():
        expected = model(x).numpy()
    assert report.totals.params == n_params(model)
    assert 2 * report.totals.macs == flops(model, x)
    assert report.layers[-1].output_shape == list(expected.shape)
    got = net.run(x=x.numpy(), weights=model.state_dict() if weights is None else weights)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * max(1.0, float(np.abs(expected).max())))
    return report


# ----------------------------------------------------------------------------------- arithmetic with numbers

class ScalarArithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        h = self.fc(x)
        a = h * 0.5 + 1                  # rescaling 0.5, rescaling +1
        b = 1 - a                        # rescaling −1, +1
        c = -b / 2                       # rescaling −1; rescaling 0.5
        d = c ** 2 + x.size(-1) ** -0.5  # pow 2; rescaling + 8^−0.5 (a number computed from a size)
        return 3 * d - 2                 # rescaling 3; rescaling −2


def test_arithmetic_with_numbers_is_rescaling_and_pow():
    report = assert_as_torch(ScalarArithmetic(), (2, 8))
    assert [(e.type, e.flops) for e in report.layers[1:]] == [
        ("rescaling", 16), ("rescaling", 16), ("rescaling", 32), ("rescaling", 16), ("rescaling", 16),
        ("pow", 16), ("rescaling", 16), ("rescaling", 16), ("rescaling", 16)]     # by hand: 1 per op, 2·8 elements
    scaled = [(e.scale, e.offset) for e in layercalc.from_torch(ScalarArithmetic(), (2, 8)).layers[1:6]]
    assert scaled == [(0.5, 0.0), (1.0, 1.0), (-1.0, 1.0), (-1.0, 0.0), (0.5, 0.0)]


class Powers(nn.Module):
    def forward(self, x):
        y = torch.sigmoid(x) + 0.5                    # positive: every power is defined
        return torch.sqrt(y) + torch.rsqrt(y) + torch.square(x) + torch.pow(y, 3) + y.pow(-1.5)


def test_powers():
    report = assert_as_torch(Powers(), (2, 3, 4))
    assert [e.exponent for e in layercalc.from_torch(Powers(), (2, 3, 4)).layers if e.type_name == "pow"] == [
        0.5, -0.5, 2.0, 3.0, -1.5]
    assert sum(e.flops for e in report.layers if e.type == "pow") == 5 * 24


class Clamps(nn.Module):
    def forward(self, x):
        return torch.clamp(x, min=-1, max=0.8) + x.clip(max=0.5) + x.clamp(min=0.1) + F.hardtanh(x) + \
            F.hardtanh(x, -2.0, 2.0)


def test_clamp_clip_and_hardtanh():
    report = assert_as_torch(Clamps(), (2, 10))
    bounds = [(e.min, e.max) for e in layercalc.from_torch(Clamps(), (2, 10)).layers if e.type_name == "clamp"]
    assert bounds == [(-1.0, 0.8), (None, 0.5), (0.1, None), (-1.0, 1.0), (-2.0, 2.0)]
    # by hand: a compare per bound per element: (2 + 1 + 1 + 2 + 2)·20
    assert sum(e.flops for e in report.layers if e.type == "clamp") == 8 * 20


class Reciprocal(nn.Module):
    def forward(self, x):
        return 2 / x


class TensorPower(nn.Module):
    def forward(self, x):
        return x ** x


@pytest.mark.parametrize("model, message", [
    (Reciprocal(), "node 1 'truediv' .*2 / a tensor \\(a reciprocal\\) has no layer type"),
    (TensorPower(), "node 1 'pow_1' .*a power with a tensor exponent has no layer type"),
])
def test_what_has_no_layer_type_is_refused(model, message):
    with pytest.raises(LayerCalcError, match=message):
        layercalc.from_torch(model, (1, 4))


# -------------------------------------------------------------------------------------------------- padding

class Padded(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 2))) + self.conv(F.pad(x, (2, 1, 0, 0)))   # W only; torch's pairs: last dim


def test_f_pad_with_zeros():
    report = assert_as_torch(Padded(), (1, 3, 6, 7))
    assert [e.type for e in report.layers[:2]] == ["zero_pad", "conv2d"]


class OtherPads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 1), mode="reflect")) + self.conv(F.pad(x, (2, 0), mode="replicate")) + \
            self.conv(F.pad(x, (0, 2), mode="circular")) + self.conv(F.pad(x, (1, 1), value=-0.5))


def test_f_pad_other_modes_and_values():
    report = assert_as_torch(OtherPads(), (2, 3, 6))
    assert [(e.type, getattr(e, "mode", None)) for e in layercalc.from_torch(OtherPads(), (2, 3, 6)).layers
            if "pad" in e.type_name] == [("pad", "reflect"), ("pad", "replicate"), ("pad", "circular"),
                                          ("pad", "constant")]
    assert sum(e.flops for e in report.layers if e.type == "pad") == 0        # data movement


class PadTooWide(nn.Module):
    def forward(self, x):
        return F.pad(x, (6, 0), mode="reflect")


def test_a_reflection_wider_than_the_input_is_refused():
    with pytest.raises(LayerCalcError, match="does not run on an input of \\[1, 3, 6\\] .*Padding size should "
                                             "be less than") as caught:          # torch's own refusal, one line
        layercalc.from_torch(PadTooWide(), (1, 3, 6))
    assert "\n" not in str(caught.value)
    with pytest.raises(LayerCalcError, match="needs padding smaller than the input size"):     # layercalc's rule
        layercalc.load({"input": [3, 6], "layers": [{"type": "pad", "padding": [[6, 0]], "mode": "reflect"}]}
                       ).analyze()


# -------------------------------------------------------------------- functional norms, linear, activations

class OwnNorm(nn.Module):
    """A LayerNorm written by hand on the module's own parameters (the names a state_dict loads by)."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d) + 0.5)
        self.bias = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, 1e-6)


class OwnLinear(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) / i ** 0.5)
        self.bias = nn.Parameter(torch.randn(o))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class OwnRMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, eps=1e-6)


class FunctionalBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.up, self.rms = OwnNorm(16), OwnLinear(16, 32), OwnRMSNorm(32)

    def forward(self, x):
        h = F.gelu(self.up(self.norm(x)), approximate="tanh")
        h = self.rms(h)
        h = F.silu(h) + torch.sigmoid(h) + torch.tanh(h) + F.relu(h) + h.sigmoid() + F.leaky_relu(h, 0.1) + \
            F.hardswish(h) + F.relu6(h) + F.gelu(h)
        return F.softmax(h, dim=-1)


def test_functional_norms_linear_and_activations_on_the_modules_parameters():
    report = assert_as_torch(FunctionalBlock(), (2, 5, 16))
    assert [e.type for e in report.layers[:4]] == ["layernorm", "linear", "gelu", "rmsnorm"]
    assert [e.name for e in report.layers[:2]] + [report.layers[3].name] == ["norm", "up", "rms"]
    # MACs: the linear only, 2·5·16·32 (= FlopCounterMode / 2, asserted above)
    assert report.totals.macs == 2 * 5 * 16 * 32


class GroupNormed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)       # its parameters, given to the functional form

    def forward(self, x):
        return F.group_norm(self.conv(x), 4, self.gn.weight, self.gn.bias, 1e-5)


def test_functional_group_norm():
    assert_as_torch(GroupNormed(), (2, 3, 6, 6))


class BranchesAndReductions(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(3, 2, 5, padding=2)

    def forward(self, x):
        y = torch.cat([self.a(x), F.relu(self.b(x)), self.c(x) * 2], dim=1)
        return y.mean(dim=(2, 3)) + torch.sum(y, dim=[2, 3]) * 0.01 + y.mean(-1).mean(-1, keepdim=False)


def test_cat_of_branches_and_reductions():
    report = assert_as_torch(BranchesAndReductions(), (2, 3, 8, 8))
    assert report.layers[-1].output_shape == [2, 11]


class SharedParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = OwnNorm(8)

    def forward(self, x):
        return self.norm(x) + F.layer_norm(x, (8,), self.norm.weight, self.norm.bias)


def test_a_parameter_held_by_two_function_calls_is_refused():
    with pytest.raises(LayerCalcError, match="is a parameter another layer holds"):
        layercalc.from_torch(SharedParameter(), (1, 8))


# ------------------------------------------------------------------------- unknown="count-zero": an opt-in

class WithUnknowns(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act, self.fc2 = nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 2)

    def forward(self, x):
        h = torch.exp(self.act(self.fc(x))) + F.elu(x)
        return self.fc2(torch.cumsum(h, dim=1))


def test_unknown_operations_are_refused_by_default():
    with pytest.raises(LayerCalcError, match="node 2 'act' \\(module act\\): module class torch.nn.PReLU has no"):
        layercalc.from_torch(WithUnknowns(), (2, 4))


def test_count_zero_keeps_the_traced_shape_counts_zero_and_lists_every_node():
    model = WithUnknowns().eval()
    with pytest.warns(UserWarning) as caught:
        net = layercalc.from_torch(model, (2, 4), unknown="count-zero")
    message = " ".join(str(w.message) for w in caught)
    assert "4 operations of WithUnknowns" in message and "counted as ZERO" in message
    for listed in ("act (module act, 1 parameter not counted", "exp (call_function exp", "elu (call_function elu",
                   "cumsum (call_function cumsum"):
        assert listed in message
    report = net.analyze()
    assert [(e.name, e.type) for e in report.layers] == [
        ("fc", "linear"), ("act", "opaque"), ("exp", "opaque"), ("elu", "opaque"), ("add", "add"),
        ("cumsum", "opaque"), ("fc2", "linear")]
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert report.layers[-1].output_shape == list(model(x).shape)
    # counted: the linears only, the PReLU's slope said to be left out (torch: 20 + 1 + 10)
    assert report.totals.params == n_params(model) - 1 == 30
    assert 2 * report.totals.macs == flops(model, x)
    assert all(e.flops == 0 and "does not model" in " ".join(e.notes) for e in report.layers if e.type == "opaque")
    with pytest.raises(LayerCalcError, match="layer type 'opaque' has no forward step"):
        net.run(x=x.numpy())


def test_unknown_takes_refuse_or_count_zero_only():
    with pytest.raises(LayerCalcError, match="unknown='zero': 'refuse' .* or 'count-zero'"):
        layercalc.from_torch(WithUnknowns(), (2, 4), unknown="zero")


# ------------------------------------------------------------------------------------- models with several inputs

class ImageAndFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1)
        self.side, self.head = nn.Linear(10, 8), nn.Linear(16, 5)

    def forward(self, image, features):
        a = torch.flatten(self.pool(torch.relu(self.conv(image))), 1)
        return self.head(torch.cat([a, torch.relu(self.side(features))], dim=1))


def test_a_model_with_two_inputs():
    model = ImageAndFeatures().eval()
    net = layercalc.from_torch(model, [(2, 3, 32, 32), (2, 10)])
    report = net.analyze()
    image, features = torch.randn(2, 3, 32, 32), torch.randn(2, 10)
    assert report.totals.params == n_params(model)
    assert 2 * report.totals.macs == flops(model, image, features)
    with torch.no_grad():
        assert report.layers[-1].output_shape == list(model(image, features).shape)
    assert net.input == [3, 32, 32]
    assert [(e.name, e.type, e.output_shape) for e in report.layers[:1]] == [("features", "extra_input", [2, 10])]
    # a run feeds each input its array: the module's output on them (the weights are the module's)
    with torch.no_grad():
        expected = model(image, features).numpy()
    out = net.run(x=[image.numpy(), features.numpy()], weights=model.state_dict())
    assert np.allclose(out, expected, atol=1e-5)
    out = net.run(x={"input": image.numpy(), "features": features.numpy()}, weights=model.state_dict())
    assert np.allclose(out, expected, atol=1e-5)
    with pytest.raises(LayerCalcError, match=r"got 1 arrays; the network has 2 inputs: input \[3, 32, 32\], "
                                             r"features \[10\]"):
        net.run(x=[image.numpy()])


@pytest.mark.parametrize("size, message", [
    ([(2, 3, 32, 32)], "forward takes 2 tensors \\(image, features\\) but input_size gives 1: give one size per "
                       "input"),
    ([(2, 3, 32, 32), (1, 10)], "the inputs have batch sizes \\[1, 2\\]; a network has one batch size"),
    ([(2, 3, 32, 32), torch.zeros(2, 10)], "input_size is a Tensor of shape \\[2, 10\\], not a size: pass the "
                                           "tensor's .shape"),
    ([(2, 3, 32, 32), (2, 10.0)], "10.0 \\(float\\) is not a whole number"),
])
def test_several_inputs_are_checked(size, message):
    with pytest.raises(LayerCalcError, match=message):
        layercalc.from_torch(ImageAndFeatures(), size)


# ----------------------------------------------------------------------------------------- in-place operations

class InPlaceResultUsed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        y += 1                            # iadd: y is the result
        return y.mul_(2).clamp_(min=0)    # results used: followed


class InPlaceAliasRead(nn.Module):
    """An alias of the changed tensor read afterwards: torch's output has the change, the graph names the old node."""

    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(4, 4), nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.fc(x)
        self.act(y)
        return y


class InPlaceMethodAliasRead(nn.Module):
    def forward(self, x):
        y = x * 2
        y.add_(1)
        return y


def test_in_place_operations_whose_result_is_used():
    assert_as_torch(InPlaceResultUsed(), (2, 4))


@pytest.mark.parametrize("model, message", [
    (InPlaceAliasRead(), "node 2 'act' \\(module act\\): changes 'fc' in place, which 'output' reads afterwards"),
    (InPlaceMethodAliasRead(), "node 2 'add_' .*changes 'mul' in place, which 'output' reads afterwards"),
])
def test_an_in_place_change_read_through_another_name_is_refused(model, message):
    with pytest.raises(LayerCalcError, match=message):
        layercalc.from_torch(model, (2, 4))


class ExpandedParameter(nn.Module):
    """``self.p.expand(n, 3, 4)``: the parameter layer is written, then the expand is refused (it is not over the
    batch alone): with count-zero the half-written parameter layer is undone and the expand is one opaque node."""

    def __init__(self):
        super().__init__()
        self.fc, self.p = nn.Linear(4, 4), nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.fc(x) + self.p.expand(x.size(0), 3, 4).sum(1)


def test_count_zero_undoes_a_node_written_half_way():
    with pytest.warns(UserWarning, match="expand \\(call_method expand, 4 parameters not counted"):
        report = layercalc.from_torch(ExpandedParameter(), (2, 4), unknown="count-zero").analyze()
    assert [(e.name, e.type) for e in report.layers] == [("fc", "linear"), ("expand", "opaque"), ("sum_1", "sum"),
                                                         ("add", "add")]
    assert report.totals.params == 20


class SoftmaxWithoutDim(nn.Module):
    def forward(self, x):
        return F.softmax(x, dim=None)       # torch picks dim 0 for a 3-d input: the batch


def test_softmax_without_dim_is_refused():
    with pytest.raises(LayerCalcError, match="softmax without dim picks a dim by the input's rank"):
        layercalc.from_torch(SoftmaxWithoutDim(), (2, 3, 4))


# ------------------------------------------------------------------------- a forgotten batch size: one line

def test_a_missing_batch_size_is_one_line_with_the_fix_and_no_torch_log(capfd):
    """Conv2d runs on an unbatched [3, 16, 16] (torch allows it), so the failure shows only at the Linear after
    Flatten: [8, 196] against 1,568 inputs. torch's fake-tensor dispatcher logs a whole traceback to stderr before
    it raises; the user sees one line naming the input and the fix, and nothing else."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 14 * 14, 2))
    with pytest.raises(LayerCalcError) as caught:
        layercalc.from_torch(model, (3, 16, 16))
    message = str(caught.value)
    assert "\n" not in message
    assert "does not run on an input of [3, 16, 16]" in message and "pass (1, 3, 16, 16)" in message
    assert capfd.readouterr().err == ""
    assert layercalc.from_torch(model, (1, 3, 16, 16)).analyze().totals.params == 8 * 3 * 9 + 8 + 1568 * 2 + 2
