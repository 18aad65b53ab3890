"""Every example in examples/ is loaded and analyzed (or run), and checked against figures derived by hand here.

Conv params = out·(in/groups)·kh·kw + out (bias); BatchNorm = 2·C; linear = in·out + out; transposed conv params
= in·out·kh·kw + out. MACs = output positions × out channels × in channels × kernel area (conv), in·out (linear).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import layercalc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def conv(cin, cout, k, bias=True):
    return cout * cin * k * k + (cout if bias else 0)


def bn(c):
    return 2 * c


def basic_block(cin, planes, projection):
    total = conv(cin, planes, 3, False) + bn(planes) + conv(planes, planes, 3, False) + bn(planes)
    return total + (conv(cin, planes, 1, False) + bn(planes) if projection else 0)


def double_conv(cin, c):
    return conv(cin, c, 3) + conv(c, c, 3)


def check_mnist_mlp(report):
    assert report.totals.params == 407_050 == (784 * 512 + 512) + (512 * 10 + 10)
    assert report.totals.macs == 784 * 512 + 512 * 10
    assert [e.output_shape for e in report.layers] == [[1, 512], [1, 512], [1, 512], [1, 10], [1, 10]]


def check_mnist_cnn(report):
    params = conv(1, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3) + (3 * 3 * 64 * 64 + 64) + (64 * 10 + 10)
    assert report.totals.params == params == 93_322
    assert report.layers[0].output_shape == [1, 32, 26, 26]
    assert report.layers[8].output_shape == [1, 576]


def check_mnist_cnn_keras(report):
    """Keras' summary: (None, 26, 26, 32) … (None, 576); here with batch 32, channels last."""
    assert report.layout == "NHWC" and report.batch == 32
    assert report.totals.params == 93_322
    shapes = {e.name: e.output_shape for e in report.layers}
    assert shapes["conv2d"] == [32, 26, 26, 32]
    assert shapes["max_pooling2d"] == [32, 13, 13, 32]
    assert shapes["conv2d_1"] == [32, 11, 11, 64]
    assert shapes["max_pooling2d_1"] == [32, 5, 5, 64]
    assert shapes["conv2d_2"] == [32, 3, 3, 64]
    assert shapes["flatten"] == [32, 576]
    assert shapes["dense_1"] == [32, 10]
    macs = 26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 3 * 3 * 64 * 64 * 9 + 576 * 64 + 64 * 10
    assert report.totals.macs == 32 * macs


def check_residual_small(report):
    params = (conv(3, 16, 3, False) + bn(16) + basic_block(16, 16, projection=False)
              + basic_block(16, 32, projection=True) + 32 * 10 + 10)
    assert report.totals.params == params == 19_994
    assert report.layer("res1_add").inputs == ["res1_bn2", "stem_relu"]
    assert report.layer("res2_add").output_shape == [1, 32, 16, 16]          # (32 + 2 − 3)//2 + 1 = 16
    assert report.layer("res2_proj").output_shape == [1, 32, 16, 16]         # (32 − 1)//2 + 1 = 16
    assert report.layer("fc").output_shape == [1, 10]
    macs = (32 * 32 * 16 * 27 + 2 * 32 * 32 * 16 * 144            # stem, res1
            + 16 * 16 * 32 * 144 + 16 * 16 * 32 * 288 + 16 * 16 * 32 * 16 + 320)   # res2 convs, projection, fc
    assert report.totals.macs == macs


def check_resnet20_blocks(report):
    """ResNet-20 with projection shortcuts: 272,474 params (He et al.'s 0.27M)."""
    params = (conv(3, 16, 3, False) + bn(16)
              + 3 * basic_block(16, 16, False)
              + basic_block(16, 32, True) + 2 * basic_block(32, 32, False)
              + basic_block(32, 64, True) + 2 * basic_block(64, 64, False)
              + 64 * 10 + 10)
    assert report.totals.params == params == 272_474
    names = [e.name for e in report.layers]
    assert sum(1 for e in report.layers if e.type == "conv2d") == 19 + 2    # 19 3×3 convs + 2 projections
    assert "stage2.0.shortcut.0" in names and "stage2.1.shortcut.0" not in names
    assert report.layer("stage1.2.relu2").output_shape == [1, 16, 32, 32]
    assert report.layer("stage2.0.relu2").output_shape == [1, 32, 16, 16]
    assert report.layer("stage3.2.relu2").output_shape == [1, 64, 8, 8]
    assert report.layer("stage2.1.add").inputs == ["stage2.1.bn2", "stage2.0.relu2"]
    assert report.layer("pool").inputs == ["stage3.2.relu2"]


def check_unet_small(report):
    params = (double_conv(1, 16) + double_conv(16, 32) + double_conv(32, 64)
              + (64 * 32 * 4 + 32) + double_conv(64, 32)           # up2 (transposed 2×2), dec2 on the concat
              + (32 * 16 * 4 + 16) + double_conv(32, 16)           # up1, dec1
              + conv(16, 2, 1))
    assert report.totals.params == params == 116_770
    shapes = {e.name: e.output_shape for e in report.layers}
    assert shapes["bottom.relu2"] == [1, 64, 16, 16]
    assert shapes["up2"] == [1, 32, 32, 32]                  # (16 − 1)·2 + 2 = 32
    assert shapes["cat2"] == [1, 64, 32, 32]
    assert shapes["cat1"] == [1, 32, 64, 64]
    assert shapes["head"] == [1, 2, 64, 64]
    assert report.layer("cat1").inputs == ["up1", "enc1.relu2"]
    # transposed convs are counted on input positions: 16·16 inputs × 64 in × 32 out × 4 taps
    assert report.layer("up2").macs == 16 * 16 * 64 * 32 * 4
    assert report.layer("up1").macs == 32 * 32 * 32 * 16 * 4


CHECKS = {
    "mnist_mlp.yaml": check_mnist_mlp,
    "mnist_cnn.yaml": check_mnist_cnn,
    "mnist_cnn_keras.yaml": check_mnist_cnn_keras,
    "residual_small.yaml": check_residual_small,
    "resnet20_blocks.yaml": check_resnet20_blocks,
    "unet_small.yaml": check_unet_small,
}


def test_every_yaml_example_has_a_check():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(CHECKS)


@pytest.mark.parametrize("filename", sorted(CHECKS))
def test_yaml_example(filename):
    report = layercalc.load(EXAMPLES / filename).analyze()
    CHECKS[filename](report)


def run_script(*args):
    result = subprocess.run([sys.executable, str(EXAMPLES / "api_example.py"), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_api_example_prints_the_report_as_json():
    report = run_script()
    layers = {e["name"]: e for e in report["layers"]}
    batch = 8
    assert report["input_shape"] == [batch, 3, 32, 32]
    assert layers["stem"]["output_shape"] == [batch, 16, 16, 16]          # (32 + 2 − 3)//2 + 1
    assert layers["merge"]["output_shape"] == [batch, 24 + 8, 16, 16]
    assert layers["pool"]["output_shape"] == [batch, 32]
    assert layers["classifier"]["output_shape"] == [batch, 10]
    params = conv(3, 16, 3, False) + bn(16) + conv(16, 24, 3) + conv(16, 8, 1) + 32 * 10 + 10
    macs = batch * (16 * 16 * 16 * 27 + 16 * 16 * 24 * 144 + 16 * 16 * 8 * 16 + 320)
    assert report["totals"]["params"] == params == 4_410
    assert report["totals"]["macs"] == macs
    assert report["totals"]["buffers"] == 32                                # stem_bn running mean + var


def test_api_example_totals_flag():
    totals = run_script("--totals")
    assert totals["params"] == 4_410
