"""`layercalc verify` and `layercalc run`: thin shells over layercalc.verify and layercalc.executor."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layercalc.cli import get_app

pytest.importorskip("layercalc.verify")
pytest.importorskip("layercalc.executor")

ROOT = Path(__file__).resolve().parent.parent
MNIST_CNN = str(ROOT / "examples" / "mnist_cnn.yaml")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(get_app(), [str(a) for a in args])


def test_verify_example_passes():
    result = invoke("verify", MNIST_CNN, "--no-progress")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    rows = [line for line in result.stdout.splitlines() if line.rstrip().endswith(("✓", "✗"))]
    assert len(rows) == 12 and all(r.rstrip().endswith("✓") for r in rows)
    assert "every output shape and MAC count matches" in result.stdout


def test_verify_fails_with_exit_1_on_a_wrong_report(monkeypatch):
    """Corrupt the analysis of one layer (its MACs): the executed count no longer matches."""
    from layercalc.graph import Network

    real_analyze = Network.analyze

    def corrupted(self, steps=None):
        report = real_analyze(self, steps)
        report.layers[3].macs += 1
        return report

    monkeypatch.setattr(Network, "analyze", corrupted)
    result = invoke("verify", MNIST_CNN, "--no-progress")
    assert result.exit_code == 1
    bad = [line for line in result.stdout.splitlines() if line.rstrip().endswith("✗")]
    assert len(bad) == 1 and "conv2d_3" in bad[0]
    assert "1 layer(s) differ (conv2d_3)" in result.stdout


def test_verify_batch_and_memory_limit():
    result = invoke("verify", MNIST_CNN, "--batch", 3, "--no-progress")
    assert result.exit_code == 0 and "[3, 10]" in result.stdout
    result = invoke("verify", MNIST_CNN, "--max-memory", "1K")
    assert result.exit_code == 2 and result.stderr.startswith("layercalc: error: ")
    assert "Traceback" not in result.stderr


def test_run_linear_layer_against_numpy(tmp_path):
    # y = x·Wᵀ + b, computed here with NumPy from the same arrays the command loads.
    spec = {"input": [3], "layers": [{"name": "fc", "type": "linear", "out_features": 2}]}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    w = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=np.float32)
    b = np.array([0.25, -2.0], dtype=np.float32)
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]], dtype=np.float32)        # batch 2
    np.savez(tmp_path / "w.npz", **{"fc.weight": w, "fc.bias": b})
    np.save(tmp_path / "x.npy", x)
    result = invoke("run", tmp_path / "net.json", "--input", tmp_path / "x.npy", "--weights", tmp_path / "w.npz",
                    "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    y = np.load(tmp_path / "y.npy")
    # row 0: [1+2+3+0.25, −1+0.5+0−2] = [6.25, −2.5]; row 1: [2−3+0.25, −2+0−2] = [−0.75, −4]
    np.testing.assert_allclose(y, [[6.25, -2.5], [-0.75, -4.0]], rtol=1e-6)
    assert "fc: shape [2, 2]" in result.stdout


def test_run_several_outputs_need_npz(tmp_path):
    spec = {"input": [4], "layers": [{"name": "a", "type": "relu"}, {"name": "b", "type": "tanh", "inputs": "input"}]}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    result = invoke("run", tmp_path / "net.json", "--output", tmp_path / "out.npy")
    assert result.exit_code == 2 and "give a .npz path" in result.stderr
    result = invoke("run", tmp_path / "net.json", "--output", tmp_path / "out.npz", "--seed", 3)
    assert result.exit_code == 0
    with np.load(tmp_path / "out.npz") as archive:
        a, b = archive["a"], archive["b"]
    assert a.shape == b.shape == (1, 4)
    # relu and tanh of the same random input: relu(x) ≥ 0 and tanh keeps the sign
    assert (a >= 0).all() and np.array_equal(a > 0, b > 0)


def test_run_bad_weights_and_input_shape(tmp_path):
    spec = {"input": [3], "layers": [{"name": "fc", "type": "linear", "out_features": 2}]}
    (tmp_path / "net.json").write_text(json.dumps(spec))
    np.savez(tmp_path / "w.npz", **{"fc.weight": np.zeros((5, 5), np.float32)})
    result = invoke("run", tmp_path / "net.json", "--weights", tmp_path / "w.npz")
    assert result.exit_code == 2 and "Traceback" not in result.stderr and "fc" in result.stderr
    np.save(tmp_path / "x.npy", np.zeros((1, 7), np.float32))
    result = invoke("run", tmp_path / "net.json", "--input", tmp_path / "x.npy")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def test_verify_refuses_a_network_too_large_for_memory_with_exit_2(tmp_path):
    """A VGG-sized first layer on 100,000 images needs terabytes: under the default limit (a fraction of the
    available memory) the run is refused before it starts, with one line on stderr and exit status 2."""
    spec = tmp_path / "huge.yaml"
    spec.write_text("input: [3, 224, 224]\nlayers:\n  - {type: conv2d, out_channels: 64, kernel_size: 3, padding: 1}\n")
    for command in (["verify", spec, "--batch", 100000, "--no-progress"],
                    ["run", spec, "--batch", 100000, "--output", tmp_path / "out.npy"]):
        result = invoke(*command)
        assert result.exit_code == 2, (command, result.stdout, result.stderr)
        assert "exceeds the limit" in result.stderr and result.stderr.count("\n") == 1
        assert not (tmp_path / "out.npy").exists()
