"""A layer type of a user's own (examples/custom_layer.py, LayerScale), from outside the package: through the library,
the conformance check, the JSON Schema, the command line (``--plugin``, ``LAYERCALC_PLUGINS``) and an installed
package's entry point. Expected figures are derived by hand in each test.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import layercalc
from layercalc import LayerCalcError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_layer.py"
SPEC = ROOT / "examples" / "custom_layer_specs" / "conv_layer_scale.yaml"


@pytest.fixture(scope="module")
def layer_scale():
    """The example module, imported for this file's tests and forgotten after them (the schema and the command
    list of later tests hold only the built-in types)."""
    from layercalc.layers import unregister_layer

    spec = importlib.util.spec_from_file_location("custom_layer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_layer_example"] = module
    spec.loader.exec_module(module)
    yield module.LayerScale
    unregister_layer(module.LayerScale)
    del sys.modules["custom_layer_example"]


def cli(*args: str, env_extra: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "layercalc", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


# conv1 3→16, 3×3 pad 1 on 32×32: 16·3·9 + 16 = 448 params; scale1 16 (one γ per channel); conv2 16→32 stride 2:
# 32·16·9 + 32 = 4,640; scale2 32; fc 32→10: 330. Total 448 + 16 + 4,640 + 32 + 330 = 5,466.
SPEC_PARAMS = 16 * 3 * 9 + 16 + 16 + 32 * 16 * 9 + 32 + 32 + 32 * 10 + 10


def test_library_spec_and_python_api(layer_scale):
    report = layercalc.load(str(SPEC)).analyze()
    assert report.totals.params == SPEC_PARAMS == 5_466
    scale1 = report.layer("scale1")
    # 1 FLOP (a multiply) per element on [1, 16, 32, 32]
    assert scale1.params == 16 and scale1.flops == 16 * 32 * 32 and scale1.output_shape == [1, 16, 32, 32]
    net = layercalc.Network(input=[4, 5], layers=[layer_scale(dim=4)])
    assert net.analyze().totals.params == 4
    with pytest.raises(LayerCalcError, match="dim 3 must be the input's 4 channels"):
        layercalc.Network(input=[4, 5], layers=[layer_scale(dim=3)]).analyze()


def test_conformance_and_schema(layer_scale):
    from layercalc.conformance import check_layer_type

    result = check_layer_type(layer_scale, {"dim": 6}, [[6, 3, 3]])
    assert result.ran and result.allocated_params == 6 and result.output_shape == (2, 6, 3, 3)
    assert check_layer_type(layer_scale, {}, [[3, 3, 6]], channels_last=True).allocated_params == 6
    schema = layercalc.schema()
    assert "layer_scale" in schema["$defs"]["Layer"]["discriminator"]["mapping"]


def test_the_executor_runs_it_and_matches_torch(layer_scale):
    torch = pytest.importorskip("torch")
    import numpy as np

    class TorchLayerScale(torch.nn.Module):           # timm's LayerScale on channels-first images
        def __init__(self, dim: int, init_values: float = 1e-5):
            super().__init__()
            self.gamma = torch.nn.Parameter(init_values * torch.ones(dim))

        def forward(self, x):
            return x * self.gamma.view(1, -1, 1, 1)

    net = layercalc.Network(input=[3, 4, 4], layers=[layer_scale(name="scale")])
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    gamma = np.array([0.1, -0.2, 0.3], np.float32)
    ours = net.run(x=x, weights={"scale": {"gamma": gamma}})
    module = TorchLayerScale(3)
    with torch.no_grad():
        module.gamma.copy_(torch.from_numpy(gamma))
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert sum(p.numel() for p in module.parameters()) == net.analyze().totals.params == 3
    # without weights, γ starts at init_values, as the module's
    start = layercalc.Network(input=[3, 4, 4], layers=[layer_scale(init_values=0.5)]).run(x=x)
    np.testing.assert_allclose(start, x * 0.5, rtol=1e-6)


def test_command_line_with_plugin_option():
    result = cli("--plugin", str(EXAMPLE), "summary", str(SPEC), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["params"] == SPEC_PARAMS
    # its own calculator, with the worked formulas
    result = cli("--plugin", str(EXAMPLE), "layer_scale", "--input", "16x8x8", "--dim", "16", "--explain")
    assert result.returncode == 0, result.stderr
    assert "params = γ: one per channel = 16" in result.stdout and "1 per element" in result.stdout
    # verify runs it: every shape and MAC count matches
    result = cli("--plugin", str(EXAMPLE), "verify", str(SPEC), "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every output shape and MAC count matches" in result.stdout
    result = cli("--plugin", str(EXAMPLE), "schema")
    assert '"layer_scale"' in result.stdout


def test_command_line_with_environment_variable_and_without():
    result = cli("summary", str(SPEC), env_extra={"LAYERCALC_PLUGINS": str(EXAMPLE)})
    assert result.returncode == 0, result.stderr
    assert f"{SPEC_PARAMS:,}" in result.stdout
    # without the plugin the type is unknown: one line, exit 2
    result = cli("summary", str(SPEC), env_extra={"LAYERCALC_PLUGINS": ""})
    assert result.returncode == 2 and "unknown layer type 'layer_scale'" in result.stderr
    assert result.stderr.count("\n") == 1
    result = cli("--plugin", "/nonexistent/plugin.py", "summary", str(SPEC))
    assert result.returncode == 2 and "/nonexistent/plugin.py" in result.stderr and result.stderr.count("\n") == 1


def test_an_installed_package_registers_through_its_entry_point(tmp_path):
    # an installed distribution: a module and its metadata with a layercalc.layers entry point
    shutil.copy(EXAMPLE, tmp_path / "my_layers.py")
    info = tmp_path / "my_layers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-layers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[layercalc.layers]\nmy_layers = my_layers\n")
    env = {"PYTHONPATH": str(tmp_path), "LAYERCALC_PLUGINS": ""}
    result = cli("summary", str(SPEC), "--format", "json", env_extra=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["params"] == SPEC_PARAMS


def test_a_type_without_forward_is_analysis_only(tmp_path):
    code = '''
from typing import Literal
from layercalc.layers import LayerBase, register_layer
from layercalc.rules import Facts

@register_layer
class Double(LayerBase):
    type: Literal["double_it"] = "double_it"
    def infer(self, inputs, ctx):
        return Facts(output_shape=inputs[0].shape, flops=inputs[0].shape[0])
'''
    plugin = tmp_path / "double.py"
    plugin.write_text(code)
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [4]\nlayers:\n  - {name: d, type: double_it}\n")
    assert cli("--plugin", str(plugin), "summary", str(spec)).returncode == 0
    result = cli("--plugin", str(plugin), "verify", str(spec), "--no-progress")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "layers[0] 'd' (double_it): layer type 'double_it' has no forward step" in result.stderr


def test_register_layer_refuses_what_cannot_work():
    from typing import Literal

    from layercalc.layers import LayerBase, register_layer

    class NoRule(LayerBase):
        type: Literal["no_rule_example"] = "no_rule_example"

    with pytest.raises(LayerCalcError, match="has no infer"):
        register_layer(NoRule)

    class Clash(LayerBase):
        type: Literal["relu"] = "relu"

        def infer(self, inputs, ctx):
            raise AssertionError

    with pytest.raises(LayerCalcError, match="'relu' .* is already registered by layercalc.layers.activation.ReLU"):
        register_layer(Clash)
