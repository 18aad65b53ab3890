"""ONNX import (layercalc.importers.onnx): models built in PyTorch, exported with torch.onnx.export, read back.

Oracles: the file's own initializers (parameters), PyTorch's parameter count and FlopCounterMode (MACs = FLOPs / 2),
ONNX shape inference (every node's output shape) and PyTorch's output shape. Attention's MACs are derived in the
test from the module's formula where FlopCounterMode cannot see them (SDPA on CPU counts 0).
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings

import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402
from layercalc.cli import app  # noqa: E402
from layercalc.importers import onnx as onnx_importer  # noqa: E402

runner = CliRunner()


# ------------------------------------------------------------------------------------------------ helpers

def export(model, x, path, **kwargs):
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    return path


def initializer_count(path) -> int:
    """Elements of every initializer that is not a shape constant (integer tensors: shapes, axes, indices)."""
    model = onnx.load(str(path), load_external_data=False)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
    return sum(math.prod(i.dims) for i in model.graph.initializer if i.data_type in floats)


def torch_macs(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def randomize_batchnorm(model):
    """Distinct BatchNorm values, so that the exporter's folded conv biases differ (untrained ones are all zero,
    and the exporter stores equal tensors once)."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen))
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=gen))
            m.bias.data.copy_(torch.randn(c, generator=gen))
    return model


def check_node_shapes(path):
    """Every ONNX value a layer computes: layercalc's output shape equals ONNX shape inference's, the batch moved
    to the front (layercalc works per example); returns how many were compared."""
    model = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    onnx_shapes = {}
    for v in (*inferred.graph.value_info, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            onnx_shapes[v.name] = tuple(d.dim_value for d in dims)
    imp = onnx_importer.Importer(model, str(path))
    spec = imp.spec()
    report = layercalc.load(spec).analyze()
    by_name = {layer.name: layer for layer in report.layers}
    compared = 0
    for value, act in imp.acts.items():
        layer = by_name.get(act.tensor.split(":")[0])
        if layer is None:
            continue
        if value in onnx_shapes:
            assert act.shape == onnx_shapes[value], value
        shape = layer.output_shapes[int(act.tensor.split(":")[1])] if ":" in act.tensor else layer.output_shape
        assert tuple(shape) == act.t_shape(imp.batch), (value, act)
        compared += 1
    return compared


# --------------------------------------------------------------------------------------------------- CNNs

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, stride=2, padding=2, dilation=2, groups=4), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
        self.classifier = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_small_cnn_batchnorm_folded(tmp_path):
    model = randomize_batchnorm(SmallCNN()).eval()
    x = torch.randn(2, 3, 28, 28)
    path = export(model, x, tmp_path / "cnn.onnx")
    report = layercalc.load(path).analyze()
    # eval-mode export folds each BatchNorm into the conv before it: the conv gets a bias (C_out more), the
    # BatchNorm's 2·C parameters and 2·C running statistics are gone
    torch_params = sum(p.numel() for p in model.parameters())
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    folded = torch_params - sum(2 * m.num_features for m in bn) + sum(m.out_channels for m in convs if m.bias is None)
    assert report.totals.params == initializer_count(path) == folded
    assert report.totals.buffers == 0
    assert report.totals.macs == torch_macs(model, x)
    assert list(report.layers[-1].output_shape) == list(model(x).shape)
    assert check_node_shapes(path) >= 8
    types = [layer.type for layer in report.layers]
    assert "batchnorm2d" not in types and types.count("conv2d") == 2


def test_small_cnn_batchnorm_kept(tmp_path):
    """Without constant folding the exporter keeps BatchNormalization: its scale and bias are parameters, its
    running statistics buffers, as PyTorch counts them."""
    model = randomize_batchnorm(SmallCNN()).eval()
    x = torch.randn(1, 3, 28, 28)
    path = export(model, x, tmp_path / "cnn.onnx", do_constant_folding=False)
    report = layercalc.load(path).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert report.totals.params + report.totals.buffers == initializer_count(path)
    assert report.totals.macs == torch_macs(model, x)
    assert [layer.type for layer in report.layers].count("batchnorm2d") == 2


def _torchvision():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from torchvision_oracle import torchvision
    return torchvision()


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_torchvision(tmp_path, arch):
    tv = _torchvision()
    model = randomize_batchnorm(getattr(tv.models, arch)()).eval()
    x = torch.randn(1, 3, 224, 224)
    path = export(model, x, tmp_path / f"{arch}.onnx")
    report = layercalc.load(path).analyze()
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    folded = (sum(p.numel() for p in model.parameters()) - sum(2 * m.num_features for m in bn)
              + sum(m.out_channels for m in convs if m.bias is None))
    assert report.totals.params == initializer_count(path) == folded
    assert report.totals.macs == torch_macs(model, x)
    assert list(report.layers[-1].output_shape) == [1, 1000]
    names = {layer.name for layer in report.layers}
    assert "fc" in names or "classifier.1" in names            # the weights' own names


def test_untrained_resnet_shared_zero_biases_counted_once(tmp_path):
    """Untrained, every folded conv bias is zero, and the exporter stores equal tensors once: the file holds fewer
    numbers than PyTorch's count, and layercalc counts what the file holds, with each conv's bias added from one
    parameter layer per channel count."""
    tv = _torchvision()
    model = tv.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    path = export(model, x, tmp_path / "resnet18.onnx")
    report = layercalc.load(path).analyze()
    assert report.totals.params == initializer_count(path)
    assert report.totals.macs == torch_macs(model, x) == 1_814_073_344      # torchvision: 1.814 GFLOPS
    shared = [layer for layer in report.layers if layer.type == "parameter"]
    assert sorted(math.prod(layer.output_shape) for layer in shared) == [64, 128, 256, 512]


# --------------------------------------------------------------------------------------------- attention

class HandAttention(nn.Module):
    """Attention written out: q/k/v in one projection, heads by reshape/permute, scores / √d, softmax."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        n, length, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)).softmax(-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(n, length, d))
        return x + self.mlp(x)


def test_hand_written_attention_block(tmp_path):
    model = HandAttention().eval()
    x = torch.randn(2, 10, 32)
    path = export(model, x, tmp_path / "att.onnx")
    report = layercalc.load(path).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == initializer_count(path)
    assert report.totals.macs == torch_macs(model, x)        # matmuls and linears: FlopCounterMode sees them all
    types = [layer.type for layer in report.layers]
    assert types.count("matmul") == 2 and "softmax" in types and "rescaling" in types
    assert list(report.layers[-1].output_shape) == [2, 10, 32]
    assert check_node_shapes(path) >= 10


class MHA(nn.Module):
    def __init__(self, d=32, heads=4):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def test_multihead_attention(tmp_path):
    """nn.MultiheadAttention's export works on [L, N, E] and [L·N, E] (the batch off dim 0): mapped op by op, the
    batch moved back to the front. FlopCounterMode counts its SDPA as 0 on CPU, so the oracle is the formula:
    four projections N·L·E² each, QKᵀ and A·V N·H·L·L·(E/H) each."""
    n, length, e, heads = 2, 10, 32, 4
    model = MHA(e, heads).eval()
    x = torch.randn(n, length, e)
    path = export(model, x, tmp_path / "mha.onnx")
    report = layercalc.load(path).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 4 * e * e + 4 * e
    assert report.totals.params == initializer_count(path)
    assert report.totals.macs == 4 * n * length * e * e + 2 * n * heads * length * length * (e // heads)
    assert list(report.layers[-1].output_shape) == list(model(x).shape)
    assert check_node_shapes(path) >= 10


# ------------------------------------------------------------------------------------ resize, tied weights

class UpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        y = self.up(torch.relu(self.conv(x)))
        y = y + nn.functional.interpolate(y, size=(16, 16), mode="bilinear", align_corners=False)
        return self.out(y)


def test_resize_and_transposed_conv(tmp_path):
    model = UpNet().eval()
    x = torch.randn(1, 3, 8, 8)
    path = export(model, x, tmp_path / "up.onnx")
    report = layercalc.load(path).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == initializer_count(path)
    assert report.totals.macs == torch_macs(model, x)
    assert list(report.layers[-1].output_shape) == list(model(x).shape) == [1, 4, 32, 32]
    assert [layer.type for layer in report.layers].count("upsample") == 2
    assert check_node_shapes(path) >= 5


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))


def test_shared_weight_counted_once(tmp_path):
    model = Tied().eval()
    x = torch.randn(3, 16)
    path = export(model, x, tmp_path / "tied.onnx")
    report = layercalc.load(path).analyze()
    # PyTorch counts the shared module once; the file stores it once; its MACs count at every use
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == initializer_count(path)
    assert report.totals.macs == torch_macs(model, x) == 3 * (2 * 16 * 16 + 16 * 4)
    tied = [layer for layer in report.layers if layer.type == "linear" and layer.params == 0]
    assert len(tied) == 1


def test_dynamic_batch_and_static_rest(tmp_path):
    model = SmallCNN().eval()
    path = export(model, torch.randn(1, 3, 28, 28), tmp_path / "dyn.onnx",
                  input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    report = layercalc.load(path).analyze()
    assert report.layers[-1].output_shape == [1, 10]
    path = export(model, torch.randn(1, 3, 28, 28), tmp_path / "dyn2.onnx",
                  input_names=["x"], dynamic_axes={"x": {0: "batch", 2: "height"}})
    with pytest.raises(LayerCalcError, match=r"dim 2 is dynamic \(height\).*static"):
        layercalc.load(path)


# ------------------------------------------------------------------------------------------------ errors

class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x).exp()


def test_unsupported_operator_names_node_and_operator(tmp_path):
    path = export(Unsupported(), torch.randn(1, 4), tmp_path / "bad.onnx")
    node = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Exp"][0]
    with pytest.raises(LayerCalcError) as info:
        layercalc.load(path)
    message = str(info.value)
    assert f"node 1 {node.name!r} (Exp)" in message and "'Exp' is not supported" in message
    assert "\n" not in message
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 2
    assert "(Exp)" in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_onnx_package_one_line(tmp_path):
    path = export(nn.Linear(4, 2), torch.randn(1, 4), tmp_path / "m.onnx")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["onnx"] = None
        import layercalc
        try:
            layercalc.load({str(path)!r})
        except layercalc.LayerCalcError as e:
            print(type(e).__name__ + ": " + str(e))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == (f"SpecError: {path}: reading ONNX files needs the onnx package: "
                           f"pip install 'layercalc[onnx]'")


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf")
    with pytest.raises(LayerCalcError, match="not a readable ONNX model"):
        layercalc.load(path)


# --------------------------------------------------------------------------------------------------- CLI

def test_cli_summary_and_convert(tmp_path):
    model = randomize_batchnorm(SmallCNN()).eval()
    path = export(model, torch.randn(1, 3, 28, 28), tmp_path / "cnn.onnx")
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 0, result.output
    assert "classifier" in result.output
    out = tmp_path / "cnn.yaml"
    result = runner.invoke(app, ["convert", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    converted = layercalc.load(out).analyze()
    assert converted.totals.params == initializer_count(path)
    assert converted.totals.macs == torch_macs(model, torch.randn(1, 3, 28, 28))


# -------------------------------------------------------------------------------------- the rescaling type

def test_rescaling_layer():
    """x·scale + offset: 1 FLOP per element for each of the multiply and the add that is not trivial."""
    import numpy as np
    for scale, offset, per in ((0.5, 0.0, 1), (1.0, 2.0, 1), (-1.0, 3.0, 2), (1.0, 0.0, 0)):
        net = layercalc.load({"input": [3, 4], "layers": [{"type": "rescaling", "scale": scale, "offset": offset}]})
        report = net.analyze()
        assert report.totals.flops == per * 12 and report.totals.params == 0
        x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
        y = net.run(x)
        assert np.allclose(np.asarray(y), x * scale + offset)


def test_opset17_erf_gelu_is_one_gelu_layer(tmp_path):
    """Before opset 20 the exporter writes GELU as x·0.5·(1 + erf(x/√2)): five nodes read as one gelu layer."""
    model = HandAttention().eval()
    x = torch.randn(2, 10, 32)
    path = export(model, x, tmp_path / "att17.onnx", opset_version=17)
    assert "Erf" in {n.op_type for n in onnx.load(str(path)).graph.node}
    report = layercalc.load(path).analyze()
    gelu = [layer for layer in report.layers if layer.type == "gelu"]
    assert len(gelu) == 1 and gelu[0].output_shape == [2, 10, 128]
    assert gelu[0].flops == 5 * 2 * 10 * 128           # divide, erf, add, 2 multiplies per element
    assert report.totals.macs == torch_macs(model, x)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
