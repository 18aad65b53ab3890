"""ONNX weights (layercalc.importers.onnx.weights_from_onnx, ``--weights model.onnx``): the file's initializers run
through layercalc's NumPy executor.

Oracles: PyTorch's output for the module the file was exported from (on the same input), and ONNX's reference
implementation (onnx.reference.ReferenceEvaluator) for graphs written by hand with onnx.helper.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from torch import nn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_import_onnx import MHA, HandAttention, SmallCNN, Tied, UpNet, export, randomize_batchnorm  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402
from layercalc.cli import app  # noqa: E402
from layercalc.importers.onnx import weights_from_onnx  # noqa: E402

runner = CliRunner()


def assert_close(actual, expected):
    """float32 on both sides: relative 1e-4, absolute 1e-5 of the output's scale (sums of many products)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))


def run_with_file_weights(model, x, path, **export_kwargs):
    """Export ``model``, run the file through layercalc with the file's own weights; returns (layercalc, torch)."""
    export(model, x, path, **export_kwargs)
    with torch.no_grad():
        expected = model(x).numpy()
    weights = weights_from_onnx(path)
    actual = layercalc.load(path).run(x.numpy(), weights=weights)
    return np.asarray(actual), expected, weights


# --------------------------------------------------------------------------------------------------- CNNs

@pytest.mark.parametrize("folding", [True, False])
def test_small_cnn_batchnorm(tmp_path, folding):
    """Folded (the BatchNorm inside the conv's weight and bias) and kept (BatchNormalization's scale, B, mean and
    var → weight, bias, running_mean, running_var)."""
    model = randomize_batchnorm(SmallCNN()).eval()
    x = torch.randn(2, 3, 28, 28)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "cnn.onnx", do_constant_folding=folding)
    assert_close(actual, expected)
    if folding:
        assert "features.1" not in weights
    else:
        bn = model.features[1]
        assert set(weights["features.1"]) == {"weight", "bias", "running_mean", "running_var"}
        np.testing.assert_array_equal(weights["features.1"]["running_var"], bn.running_var.numpy())
        np.testing.assert_array_equal(weights["features.1"]["weight"], bn.weight.detach().numpy())


def test_untrained_batchnorm_kept_shared_ones_and_zeros(tmp_path):
    """Untrained, the exporter stores a BatchNorm's ones (scale, var) and zeros (B, mean) once: the layer reads them
    as its running statistics (affine: false, exact for ones and zeros) and runs as torch does."""
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 28, 28)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "cnn.onnx", do_constant_folding=False)
    assert_close(actual, expected)
    assert set(weights["features.1"]) == {"running_mean", "running_var"}


def test_batchnorm_scale_shared_with_its_variance_is_refused(tmp_path):
    """A scale equal to the running variance (and B to the mean) but not ones and zeros: stored once, counted once
    (affine: false) — the weights cannot run that layer exactly, so they are refused naming it."""
    model = SmallCNN().eval()
    bn = model.features[1]
    with torch.no_grad():
        bn.running_var.copy_(torch.rand(16) + 0.5)
        bn.running_mean.copy_(torch.randn(16))
        bn.weight.copy_(bn.running_var)
        bn.bias.copy_(bn.running_mean)
    path = export(model, torch.randn(1, 3, 28, 28), tmp_path / "cnn.onnx", do_constant_folding=False)
    with pytest.raises(LayerCalcError) as info:
        weights_from_onnx(path)
    message = str(info.value)
    assert "'features.1' (batchnorm2d)" in message and "affine: false" in message and "\n" not in message


@pytest.mark.parametrize("trained", [True, False])
def test_torchvision_resnet18(tmp_path, trained):
    """Trained-like (distinct folded biases) and untrained (the folded zero biases stored once: one parameter layer
    per width, added after each conv)."""
    tv = torchvision()
    model = tv.models.resnet18().eval()
    if trained:
        randomize_batchnorm(model)
    x = torch.randn(1, 3, 64, 64)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "resnet18.onnx")
    assert_close(actual, expected)
    np.testing.assert_array_equal(weights["fc"]["weight"], model.fc.weight.detach().numpy())
    if not trained:
        net = layercalc.load(tmp_path / "resnet18.onnx")
        shared = [s.name for s in net.resolve() if s.layer.type_name == "parameter"]
        assert len(shared) == 4 and all(not weights[name]["weight"].any() for name in shared)


def test_torchvision_resnet18_batchnorm_kept_untrained(tmp_path):
    """Not folded and untrained: every BatchNorm of a width reads the same initializers, tied to the first."""
    tv = torchvision()
    model = tv.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "r.onnx", do_constant_folding=False)
    assert_close(actual, expected)
    net = layercalc.load(tmp_path / "r.onnx")
    tied = [s.name for s in net.resolve() if s.layer.tied_to is not None]
    assert len(tied) == 20 - 4 and not set(tied) & set(weights)         # 20 BatchNorms, 4 widths


# ------------------------------------------------------------------------------------ linear, attention, tied

class LinearAndMatMul(nn.Module):
    """nn.Linear exports as Gemm (transB=1); x @ W + b as MatMul + Add ([in, out]: read transposed); a parameter
    added, multiplied and subtracted (parameter layers)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 16)
        self.w = nn.Parameter(torch.randn(16, 8))
        self.b = nn.Parameter(torch.randn(8))
        self.scale = nn.Parameter(torch.randn(5, 8))
        self.offset = nn.Parameter(torch.randn(8))

    def forward(self, x):
        y = torch.relu(self.fc(x)) @ self.w + self.b
        return y * self.scale - self.offset


def test_linear_and_matmul(tmp_path):
    model = LinearAndMatMul().eval()
    x = torch.randn(3, 5, 12)
    actual, expected, _ = run_with_file_weights(model, x, tmp_path / "lin.onnx")
    assert_close(actual, expected)


def test_tied_weight_goes_to_its_owner_only(tmp_path):
    model = Tied().eval()
    x = torch.randn(3, 16)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "tied.onnx")
    assert_close(actual, expected)
    net = layercalc.load(tmp_path / "tied.onnx")
    tied = [s for s in net.resolve() if s.layer.tied_to is not None]
    assert len(tied) == 1 and tied[0].name not in weights and tied[0].layer.tied_to in weights


def test_resize_and_transposed_conv(tmp_path):
    model = UpNet().eval()
    x = torch.randn(2, 3, 8, 8)
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "up.onnx")
    assert_close(actual, expected)
    np.testing.assert_array_equal(weights["out"]["weight"], model.out.weight.detach().numpy())   # [in, out, k, k]


@pytest.mark.parametrize("opset", [17, 18])
def test_hand_written_attention_layernorm_gelu(tmp_path, opset):
    model = HandAttention().eval()
    x = torch.randn(2, 10, 32)
    actual, expected, _ = run_with_file_weights(model, x, tmp_path / "att.onnx", opset_version=opset)
    assert_close(actual, expected)


def test_multihead_attention(tmp_path):
    """nn.MultiheadAttention, mapped op by op: in_proj as a MatMul of its transposed copy + Add, out_proj a Gemm."""
    model = MHA().eval()
    x = torch.randn(2, 10, 32)
    actual, expected, _ = run_with_file_weights(model, x, tmp_path / "mha.onnx")
    assert_close(actual, expected)


class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)

    def forward(self, x):
        return self.inorm(self.gn(self.conv(x)))


def test_group_and_instance_norm(tmp_path):
    model = Norms().eval()
    with torch.no_grad():
        for p in (model.gn.weight, model.gn.bias, model.inorm.weight, model.inorm.bias):
            p.copy_(torch.randn_like(p))
    x = torch.randn(2, 3, 10, 10)
    actual, expected, _ = run_with_file_weights(model, x, tmp_path / "norms.onnx")
    assert_close(actual, expected)


class Tokens(nn.Module):
    """An embedding (Gather on an initializer), a class token (Expand of an initializer), Concat."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        x = torch.cat([self.cls.expand(ids.shape[0], -1, -1), self.emb(ids)], 1)
        return self.head(x)


def test_embedding_and_class_token(tmp_path):
    model = Tokens().eval()
    x = torch.randint(0, 20, (2, 6))
    actual, expected, weights = run_with_file_weights(model, x, tmp_path / "tok.onnx")
    assert_close(actual, expected)
    np.testing.assert_array_equal(weights["emb"]["weight"], model.emb.weight.detach().numpy())


def test_hand_written_gemm_transb0_and_transposed_initializer(tmp_path):
    """Gemm with transB=0 (B is [in, out]), Gemm with transB=1 of a Transpose of an initializer, a bias stored
    [1, out] and a Mul by an initializer; the oracle is ONNX's reference implementation."""
    rng = np.random.default_rng(0)
    arrays = {"b1": rng.standard_normal((6, 4)), "c1": rng.standard_normal(4), "w2": rng.standard_normal((4, 3)),
              "c2": rng.standard_normal((1, 3)), "s": rng.standard_normal(3)}
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    nodes = [helper.make_node("Gemm", ["x", "b1", "c1"], ["h"], name="fc1", transB=0),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Transpose", ["w2"], ["w2t"], name="t", perm=[1, 0]),
             helper.make_node("Gemm", ["r", "w2t", "c2"], ["g"], name="fc2", transB=1),
             helper.make_node("Mul", ["g", "s"], ["y"], name="scale")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "gemm.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((2, 6)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    actual = layercalc.load(path).run(x, weights=weights_from_onnx(path))
    assert_close(actual, expected)


# --------------------------------------------------------------------------------------------------- CLI

def test_cli_verify_and_run_with_the_file_weights(tmp_path):
    model = randomize_batchnorm(SmallCNN()).eval()
    x = torch.randn(2, 3, 28, 28)
    path = str(export(model, x, tmp_path / "cnn.onnx", do_constant_folding=False))
    result = runner.invoke(app, ["verify", path, "--weights", path, "--wide"])
    assert result.exit_code == 0, result.output
    assert f"weights: from {path} for all 5 layers with parameters" in result.output
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "y.npy"
    result = runner.invoke(app, ["run", path, "--weights", path, "-i", str(tmp_path / "x.npy"), "-o", str(out), "--wide"])
    assert result.exit_code == 0, result.output
    assert f"weights: from {path} for all 5 layers" in result.output
    with torch.no_grad():
        assert_close(np.load(out), model(x).numpy())
    # without --weights the run stays random, and says so
    result = runner.invoke(app, ["run", path, "-i", str(tmp_path / "x.npy"), "--wide"])
    assert result.exit_code == 0 and "weights: random (seed 0)" in result.output


def test_weights_python_api_takes_the_path(tmp_path):
    model = Tied().eval()
    x = torch.randn(3, 16)
    path = export(model, x, tmp_path / "tied.onnx")
    with torch.no_grad():
        assert_close(layercalc.load(path).run(x.numpy(), weights=str(path)), model(x).numpy())


# ------------------------------------------------------------------------------------------------ errors

def test_weights_of_another_model(tmp_path):
    cnn = str(export(SmallCNN(), torch.randn(1, 3, 28, 28), tmp_path / "cnn.onnx"))
    mha = str(export(MHA(), torch.randn(2, 10, 32), tmp_path / "mha.onnx"))
    with pytest.raises(LayerCalcError) as info:
        weights_from_onnx(mha, network=cnn)
    message = str(info.value)
    assert "no layer named 'mha.in_proj_bias'" in message and "\n" not in message
    result = runner.invoke(app, ["run", cnn, "--weights", mha])
    assert result.exit_code == 2 and "'mha.in_proj_bias'" in result.output
    assert len(result.output.strip().splitlines()) == 1

    class Wider(SmallCNN):            # the same layer names, a classifier of another size
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(32 * 4 * 4, 12)
    wider = str(export(Wider(), torch.randn(1, 3, 28, 28), tmp_path / "wider.onnx"))
    result = runner.invoke(app, ["verify", cnn, "--weights", wider])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "'classifier' (linear)" in line and "[12, 512]" in line and "[10, 512]" in line
    assert len(line.splitlines()) == 1


def test_missing_onnx_package_one_line(tmp_path):
    path = export(nn.Linear(4, 2), torch.randn(1, 4), tmp_path / "m.onnx")
    spec = {"input": [4], "layers": [{"type": "linear", "out_features": 2}]}
    code = textwrap.dedent(f"""
        import sys
        sys.modules["onnx"] = None
        import numpy as np
        import layercalc
        from layercalc.importers.onnx import weights_from_onnx
        for attempt in (lambda: weights_from_onnx({str(path)!r}),
                        lambda: layercalc.load({spec!r}).run(np.ones((1, 4), np.float32), weights={str(path)!r})):
            try:
                attempt()
            except layercalc.LayerCalcError as e:
                print(type(e).__name__ + ": " + str(e))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = f"SpecError: {path}: reading ONNX files needs the onnx package: pip install 'layercalc[onnx]'"
    assert out.strip().splitlines() == [line, line]
