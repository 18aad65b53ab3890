"""The `layercalc` command, driven through typer's CliRunner (and a few real runs of the installed command).

Every expected figure is derived by hand in the test (or is a published figure: Keras' MNIST CNN has 93,322
parameters; fvcore/thop count its MACs as 2,794,240 — /work/shared/README.md).
"""

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import layercalc
from layercalc.cli import get_app

ROOT = Path(__file__).resolve().parent.parent
MNIST_CNN = str(ROOT / "examples" / "mnist_cnn.yaml")
MNIST_CNN_KERAS = str(ROOT / "examples" / "mnist_cnn_keras.yaml")
runner = CliRunner()


def run(*args, input=None, code=0):
    # --wide: these tests read whole lines; fitting them to the terminal is tests/test_widths.py's
    result = runner.invoke(get_app(), [*map(str, args), "--wide"], input=input)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def field(output: str, label: str) -> str:
    """The value printed after ``label`` in a calculator's answer."""
    match = re.search(rf"^\s+{re.escape(label)}\s+(.+)$", output, re.MULTILINE)
    assert match, (label, output)
    return match.group(1).strip()


def number(text: str) -> int:
    return int(text.split()[0].replace(",", ""))


# ------------------------------------------------------------------------------------------------ calculators

def test_conv2d_mnist_first_layer():
    # 1×28×28, 32 filters 3×3, stride 1, no padding: 28 − 3 + 1 = 26 per side.
    # params: 3·3·1 weights per filter · 32 + 32 biases = 320.
    # MACs: 26·26 positions · 32 channels · 9 = 194,688. FLOPs: 2·194,688 + 26·26·32 bias adds = 411,008.
    # memory: 32·26·26 floats · 4 bytes = 86,528 B; receptive field 3×3.
    out = run("conv2d", "--input", "1x28x28", "--out-channels", 32, "--kernel-size", 3, "-s", 1, "-p", 0).stdout
    assert field(out, "input shape").startswith("[1, 1, 28, 28]")
    assert field(out, "output shape") == "[1, 32, 26, 26]"
    assert number(field(out, "params")) == 320
    assert number(field(out, "MACs")) == 194_688
    assert number(field(out, "FLOPs")) == 411_008
    assert "output 86,528 B" in field(out, "memory") and "params 1,280 B" in field(out, "memory")
    assert field(out, "receptive field").startswith("3×3")


def test_conv2d_shape_forms_tuple_fields_and_bias():
    # 3,32,20 input (comma form), kernel 5×3, stride 1×2, padding 2×1, no bias:
    # H: floor((32 + 4 − 4 − 1)/1) + 1 = 32;  W: floor((20 + 2 − 2 − 1)/2) + 1 = 10.
    # params: 5·3·3·8 = 360 (no bias). MACs: 32·10·8·45 = 115,200.
    out = run("conv2d", "-i", "3,32,20", "--out-channels", 8, "-k", "5x3", "-s", "1x2", "-p", "2x1",
              "--no-bias").stdout
    assert field(out, "output shape") == "[1, 8, 32, 10]"
    assert number(field(out, "params")) == 360
    assert number(field(out, "MACs")) == 115_200


def test_conv2d_groups_dilation_batch():
    # depthwise 3×3 on 16×10×10 with dilation 2 and batch 4: span 5, out 10 − 5 + 1 = 6.
    # params 16·(1·9) + 16 = 160. MACs 4·6·6·16·9 = 20,736.
    out = run("conv2d", "-i", "16x10x10", "--out-channels", 16, "-k", 3, "-d", 2, "-g", 16, "--batch", 4).stdout
    assert field(out, "output shape") == "[4, 16, 6, 6]"
    assert number(field(out, "params")) == 160
    assert number(field(out, "MACs")) == 20_736


def test_padding_same_and_valid():
    # SAME, 28, kernel 5, stride 2: ceil(28/2) = 14. VALID: floor((28 − 5)/2) + 1 = 12.
    same = run("conv2d", "-i", "1x28x28", "--filters", 4, "-k", 5, "-s", 2, "-p", "same").stdout
    valid = run("conv2d", "-i", "1x28x28", "--filters", 4, "-k", 5, "-s", 2, "-p", "valid").stdout
    assert field(same, "output shape") == "[1, 4, 14, 14]"
    assert field(valid, "output shape") == "[1, 4, 12, 12]"
    assert "H (1, 2), W (1, 2)" in same            # 3 pixels of padding: 1 before, 2 after


def test_asymmetric_padding_before_after_per_dim():
    # H padded 1 before, 2 after: 28 + 3 − 3 + 1 = 29; W padded 0 before, 1 after: 28 + 1 − 3 + 1 = 27
    out = run("conv2d", "-i", "1x28x28", "--filters", 4, "-k", 3, "-p", "[[1, 2], [0, 1]]", "-e").stdout
    assert field(out, "output shape") == "[1, 4, 29, 27]"
    assert "H_out = floor((28 + (1 + 2) − 1·(3 − 1) − 1) / 1) + 1 = 29" in out
    assert "W_out = floor((28 + (0 + 1) − 1·(3 − 1) − 1) / 1) + 1 = 27" in out


def test_nhwc_layout_and_dtype():
    # Keras-style 28×28×1 input: channels last; float16 → 2 bytes: 26·26·32·2 = 43,264 B.
    out = run("conv2d", "-i", "28x28x1", "--filters", 32, "-k", 3, "--layout", "NHWC", "--dtype", "float16").stdout
    assert field(out, "output shape") == "[1, 26, 26, 32]"
    assert "output 43,264 B" in field(out, "memory")


def test_transposed_conv():
    # 16×7×7 → out 8, kernel 3, stride 2, padding 1, output_padding 1: (7 − 1)·2 − 2 + 2 + 1 + 1 = 14.
    # params: 16·8·9 + 8 = 1,160. MACs on input positions: 7·7·16·8·9 = 56,448.
    out = run("conv_transpose2d", "-i", "16x7x7", "--out-channels", 8, "-k", 3, "-s", 2, "-p", 1,
              "--output-padding", 1).stdout
    assert field(out, "output shape") == "[1, 8, 14, 14]"
    assert number(field(out, "params")) == 1_160
    assert number(field(out, "MACs")) == 56_448


def test_pooling_linear_norms():
    # maxpool 2×2 on 32×26×26 → 13×13; FLOPs 32·13·13·4 = 21,632.
    out = run("maxpool2d", "-i", "32x26x26", "-k", 2).stdout
    assert field(out, "output shape") == "[1, 32, 13, 13]" and number(field(out, "FLOPs")) == 21_632
    # ceil mode on 5: ceil(3/2) + 1 = 3
    assert field(run("maxpool1d", "-i", "4x5", "-k", 2, "--ceil-mode").stdout, "output shape") == "[1, 4, 3]"
    # Keras alias --units: 784 → 512: 784·512 + 512 = 401,920 params, 401,408 MACs
    out = run("dense", "-i", "784", "--units", 512).stdout
    assert number(field(out, "params")) == 401_920 and number(field(out, "MACs")) == 401_408
    # batchnorm over 16 channels: 32 params, 32 buffers
    out = run("batchnorm2d", "-i", "16x8x8").stdout
    assert number(field(out, "params")) == 32 and number(field(out, "buffers")) == 32
    # adaptive 7×7 → 1×1 over 512 channels; global pool drops the spatial dims
    assert field(run("adaptive_avgpool2d", "-i", "512x7x7", "--output-size", 1).stdout,
                 "output shape") == "[1, 512, 1, 1]"
    assert field(run("global_avgpool", "-i", "512x7x7").stdout, "output shape") == "[1, 512]"
    # reshape with -1: 2·3·4 = 24 values → [4, 6]
    assert field(run("reshape", "-i", "2x3x4", "--shape", "4x-1").stdout, "output shape") == "[1, 4, 6]"


def test_merge_layers_take_repeated_inputs():
    # add with broadcasting: [1,3,4,4] + [1,3,4,4] + [1,3,1,1] → [1,3,4,4]; FLOPs (3 − 1)·48 = 96
    out = run("add", "-i", "3x4x4", "-i", "3x4x4", "-i", "3x1x1").stdout
    assert field(out, "output shape") == "[1, 3, 4, 4]" and number(field(out, "FLOPs")) == 96
    # concat along channels: 3 + 5 = 8
    assert field(run("concat", "-i", "3x4x4", "-i", "5x4x4").stdout, "output shape") == "[1, 8, 4, 4]"
    assert field(run("mul", "-i", "8x1x1", "-i", "8x6x6").stdout, "output shape") == "[1, 8, 6, 6]"


def test_calculator_says_which_convention_each_count_follows():
    # 3×3 conv 1 → 32 on 28×28: MACs 26·26·32·9 = 194,688; bias adds 26·26·32 = 21,632;
    # FLOPs 2·194,688 + 21,632 = 411,008, where torch.utils.flop_counter would count 2·MACs = 389,376
    out = run("conv2d", "-i", "1x28x28", "--filters", 32, "-k", 3).stdout
    assert field(out, "MACs") == "194,688 (multiply-accumulates, bias excluded)"
    assert field(out, "FLOPs") == ("411,008 (2 per MAC + bias adds + element ops; "
                                   "torch.utils.flop_counter counts 2·MACs = 389,376)")
    # no bias and no element ops: the two conventions agree, so no second figure is given
    out = run("linear", "-i", 10, "--out-features", 3, "--no-bias").stdout
    assert field(out, "FLOPs") == "60 (2 per MAC + bias adds + element ops)"


def test_numbers_human_and_json():
    # VGG-style 3×3 conv 256 → 256 on 56×56: MACs 56·56·256·256·9 = 1,849,688,064 → "1.85 G"
    out = run("conv2d", "-i", "256x56x56", "--filters", 256, "-k", 3, "-p", 1, "--numbers", "human").stdout
    assert field(out, "MACs").startswith("1.85 G (")
    data = json.loads(run("conv2d", "-i", "256x56x56", "--filters", 256, "-k", 3, "-p", 1, "--json").stdout)
    assert data["macs"] == 1_849_688_064 and data["params"] == 256 * 256 * 9 + 256
    assert data["output_shape"] == [1, 256, 56, 56]


def test_every_layer_type_has_a_command():
    commands = get_app().registered_commands
    names = {c.name for c in commands}
    assert set(layercalc.LAYER_TYPES) <= names
    help_text = run("--help").stdout
    for name in ("conv2d", "conv_transpose3d", "adaptive_maxpool1d", "groupnorm", "concat"):
        assert name in help_text


@settings(max_examples=40)
@given(n=st.integers(1, 40), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3),
       cin=st.integers(1, 4), cout=st.integers(1, 5))
def test_conv1d_command_matches_pytorch_formula(n, k, s, p, d, cin, cout):
    # torch.nn.Conv1d documentation: L_out = floor((L + 2p − d(k − 1) − 1)/s + 1); params cin·k·cout + cout.
    out_len = math.floor((n + 2 * p - d * (k - 1) - 1) / s + 1)
    assume(out_len >= 1)
    out = run("conv1d", "-i", f"{cin}x{n}", "--out-channels", cout, "-k", k, "-s", s, "-p", p, "-d", d).stdout
    assert field(out, "output shape") == f"[1, {cout}, {out_len}]"
    assert number(field(out, "params")) == cin * k * cout + cout
    assert number(field(out, "MACs")) == out_len * cout * cin * k


# --------------------------------------------------------------------------------------------------- --explain

def test_calculator_explain_shows_substituted_formulas():
    out = run("conv2d", "--input", "1x28x28", "--out-channels", 32, "--kernel-size", 3, "--explain").stdout
    assert "H_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 26" in out
    assert "params = (3·3·1)·32 + 32 = 320" in out
    assert "1·26·26·32·(3·3·1) = 194,688" in out


def test_explain_uncovered_border_and_same_padding():
    out = run("conv2d", "-i", "1x28x28", "--filters", 4, "-k", 3, "-s", 2, "-e").stdout
    assert "input row 27 (of 0..27) is never covered" in out          # windows end at 26 (see test_explain)
    out = run("maxpool2d", "-i", "1x28x28", "-k", 5, "-s", 2, "-p", "same", "-e").stdout
    assert "1 before, 2 after" in out                                  # (14 − 1)·2 + 5 − 28 = 3


def test_summary_explain():
    out = run("summary", MNIST_CNN, "--explain").stdout
    # second conv: 32×13×13 → 64 filters 3×3: 11×11; params (3·3·32)·64 + 64 = 18,496
    assert "H_out = floor((13 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 11" in out
    assert "params = (3·3·32)·64 + 64 = 18,496" in out
    # receptive field after conv(3) → pool(2) → conv(3): 1 + 2 = 3; 3 + 1 = 4 (jump 2); 4 + 2·2 = 8
    assert "= 4 + (1·(3 − 1))·2 = 8" in out


# Every calculator with --explain: one layer per type, each expected figure derived by hand in the comment
# (formulas: PyTorch's documentation for shapes; docs/conventions.md for the per-element FLOP costs).
EXPLAIN_CASES = {
    # L: floor((10 − 2 − 1)/2) + 1 = 4; windows 0, 2, 4, 6 end at 8: position 9 unread; params (3·3)·4 + 4 = 40
    "conv1d": ("-i 3x10 --out-channels 4 -k 3 -s 2",
               ["L_out = floor((10 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 4", "input position 9 (of 0..9) is never covered",
                "params = (3·3)·4 + 4 = 40"]),
    # 28, k 3, stride 1: 26; (3·3·1)·32 + 32 = 320
    "conv2d": ("-i 1x28x28 --out-channels 32 -k 3", ["H_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 26",
                                                    "params = (3·3·1)·32 + 32 = 320"]),
    # D: floor((5 + 2 − 2 − 1)/2) + 1 = 3; params (27·2)·4 + 4 = 220
    "conv3d": ("-i 2x5x6x7 --out-channels 4 -k 3 -s 2 -p 1",
               ["D_out = floor((5 + 2·1 − 1·(3 − 1) − 1) / 2) + 1 = 3", "params = (3·3·3·2)·4 + 4 = 220"]),
    # Keras 'same' transposed: out 10·2 = 20; full (10 − 1)·2 + 3 = 21 → crop 1, after; MACs on input 10·3·4·3 = 360
    "conv_transpose1d": ("-i 3x10 --out-channels 4 -k 3 -s 2 -p same",
                         ["L: (0, 1)", "L_out = (10 − 1)·2 − (0 + 1) + 1·(3 − 1) + 0 + 1 = 20", "= 1·10·3·4·3 = 360"]),
    # (7 − 1)·2 − 2 + 2 + 1 + 1 = 14; params 16·8·9 + 8 = 1,160
    "conv_transpose2d": ("-i 16x7x7 --out-channels 8 -k 3 -s 2 -p 1 --output-padding 1",
                         ["H_out = (7 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 14", "= 16·8·3·3 + 8 = 1,160"]),
    # (3 − 1)·2 + (2 − 1) + 1 = 6; params 2·4·8 + 4 = 68
    "conv_transpose3d": ("-i 2x3x3x3 --out-channels 4 -k 2 -s 2",
                         ["D_out = (3 − 1)·2 − 2·0 + 1·(2 − 1) + 0 + 1 = 6", "= 2·4·2·2·2 + 4 = 68"]),
    # Keras' depthwise conv = conv with groups = C_in, C_out = C_in·m: 'same', stride 2 on 7×6 → 4×3;
    # params (3·3·1)·6 + 6 = 60; MACs 4·3·6·9 = 648
    "depthwise_conv2d": ("-i 3x7x6 -k 3 --depth-multiplier 2 -s 2 -p same",
                         ["C_out = C_in·depth_multiplier = 3·2 = 6", "H_out = ceil(7 / 2) = 4", "= 60", "= 648"]),
    # NHWC [9, 4], kernel 3: L 7; params 3·4 + 4 = 16; MACs 7·4·3 = 84
    "depthwise_conv1d": ("-i 9x4 --layout NHWC -k 3", ["L_out = floor((9 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 7",
                                                      "params = (3·1)·4 + 4 = 16", "= 84"]),
    # depthwise 3×3 (m 2: 6 channels) then 1×1 to 5: params 9·6 + 6·5 + 5 = 89; MACs 12·6·9 + 12·6·5 = 1,008
    "separable_conv2d": ("-i 3x7x6 --filters 5 -k 3 --depth-multiplier 2 -p same -s 2",
                         ["= depthwise 3·3·6 + pointwise 6·5 + bias 5 = 89", "= 12·6·9 + 12·6·5 = 1,008"]),
    # NHWC [9, 3], kernel 2: L 8; params 2·3 + 3·4 = 18 (no bias); MACs 8·3·2 + 8·3·4 = 144
    "separable_conv1d": ("-i 9x3 --layout NHWC --out-channels 4 -k 2 --no-bias",
                         ["= depthwise 2·3 + pointwise 3·4 = 18", "= 8·3·2 + 8·3·4 = 144", "2·144 + 0 = 288"]),
    # ceil((10 − 3)/2) + 1 = 5 (floor: 4); FLOPs 3·5·3 = 45
    "maxpool1d": ("-i 3x10 -k 3 -s 2 --ceil-mode",
                  ["L_out = ceil((10 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 5", "floor would give 4", "= 1·3·5·3 = 45"]),
    # ceil((5 + 2 − 2)/2) + 1 = 4, but window 4 would start at 6 ≥ 5 + 1: dropped → 3
    "maxpool2d": ("-i 3x5x5 -k 2 -s 2 -p 1 --ceil-mode",
                  ["H_out = ceil((5 + 2·1 − 1·(2 − 1) − 1) / 2) + 1 = 4", "PyTorch drops it → H_out = 3"]),
    # 4 → 2 per axis; FLOPs 1·1·2·2·2·(2·2·2) = 64
    "maxpool3d": ("-i 1x4x4x4 -k 2", ["D_out = floor((4 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 2", "= 1·1·2·2·2·2·2·2 = 64"]),
    # floor((6 + 2 − 3)/2) + 1 = 3; padded 8, last window ends at 6: only padding skipped; FLOPs 2·3·3 = 18
    "avgpool1d": ("-i 2x6 -k 3 -s 2 -p 1", ["L_out = floor((6 + 2·1 − 1·(3 − 1) − 1) / 2) + 1 = 3",
                                            "only padding is skipped", "padded zeros included", "= 1·2·3·3 = 18"]),
    "avgpool2d": ("-i 1x6x6 -k 3 -s 2 -p 1 --no-count-include-pad", ["only the real input values"]),
    # 2 → 1 per axis; FLOPs 8
    "avgpool3d": ("-i 1x2x2x2 -k 2", ["W_out = floor((2 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 1", "= 1·1·1·1·1·2·2·2 = 8"]),
    # windows [floor(10i/4), ceil(10(i+1)/4)): [0,3) [2,5) [5,8) [7,10); FLOPs 2·12 = 24
    "adaptive_avgpool1d": ("-i 2x10 --output-size 4", ["L: 10 → 4: windows [0,3) [2,5) [5,8) [7,10), sizes 3, 3, 3, 3",
                                                       "= 1·2·12 = 24"]),
    "adaptive_avgpool2d": ("-i 2x5x6 --output-size 3x2", ["H: 5 → 3: windows [0,2) [1,4) [3,5), sizes 2, 3, 2"]),
    "adaptive_avgpool3d": ("-i 1x4x4x4 --output-size 2", ["D: 4 → 2: 4 / 2 = 2: equal windows", "= 1·1·4·4·4 = 64"]),
    "adaptive_maxpool1d": ("-i 1x7 --output-size 7", ["7 / 7 = 1: equal windows", "= 1·1·7 = 7"]),
    # 5 → 3: sizes 2, 3, 2 on both axes: FLOPs 7·7 = 49
    "adaptive_maxpool2d": ("-i 1x5x5 --output-size 3", ["= 1·1·7·7 = 49"]),
    "adaptive_maxpool3d": ("-i 1x2x2x2 --output-size 1", ["= 1·1·2·2·2 = 8"]),
    "global_avgpool": ("-i 3x4x4", ["mean over every spatial position", "= 1·3·4·4 = 48"]),
    "global_maxpool": ("-i 3x4x4", ["maximum over every spatial position", "= 1·3·4·4 = 48"]),
    # [5, 20] rows: 5·20·7 = 700 MACs, 140 params without bias
    "linear": ("-i 5x20 --out-features 7 --no-bias", ["params = in·out = 20·7 = 140", "5·20·7 = 700"]),
    "dense": ("-i 784 --units 10", ["784·10 + 10 = 7,850"]),
    "flatten": ("-i 3x4x5", ["→ [1, 60]"]),
    "reshape": ("-i 3x4x5 --shape 4x-1", ["→ [1, 4, 15]"]),
    "zero_pad": ("-i 3x4x5 --padding [[1,2],[0,3]]", ["H: 4 + 1 + 2 = 7; W: 5 + 0 + 3 = 8"]),
    # reflection: H 4 + 1 + 1 = 6, no arithmetic
    "pad": ("-i 3x4x5 --padding 1 --mode reflect", ["padding (reflect): H: 4 + 1 + 1 = 6; W: 5 + 1 + 1 = 7"]),
    "batchnorm1d": ("-i 3x10", ["2·C (γ and β) = 2·3 = 6", "· 1·3·10 = 60"]),
    "batchnorm2d": ("-i 16x8x8", ["= 2·16 = 32", "= 2,048"]),
    "batchnorm3d": ("-i 2x2x2x2 --no-affine", ["params = 0 (affine=False", "· 1·2·2·2·2 = 32"]),
    # Keras' BatchNormalization(center=False) on [4, 5, 3]: γ only, 3 params, 6 buffers; FLOPs 2·60 = 120
    "batchnorm": ("-i 4x5x3 --layout NHWC --axis -1 --no-center",
                  ["params = 1·C (γ) = 1·3 = 3", "= 2·3 = 6", "· 1·4·5·3 = 120"]),
    # LayerNorm over the last dim 5 of [1, 3, 4, 5]: 12 groups; FLOPs 60·(4 + 2 + 2) + 12·4 = 528
    "layernorm": ("-i 3x4x5", ["12 group(s) of 5 values", "params = 2·5 (γ and β) = 10", "= 528"]),
    # 6 channels, 3 groups: params 12; FLOPs 96·8 + 3·4 = 780
    "groupnorm": ("-i 6x4x4 --num-groups 3", ["2·6 = 12", "96·8 + 3·4 = 780"]),
    "dropout": ("-i 10", ["identity at inference"]),
    "relu": ("-i 10", ["1 per element · 1·10 = 10"]),
    "relu6": ("-i 10", ["2 per element · 1·10 = 20"]),
    "leaky_relu": ("-i 10", ["2 per element · 1·10 = 20"]),
    # one slope per channel: 3; compare and multiply per element: 2·3·4·4 = 96
    "prelu": ("-i 3x4x4 --num-parameters 3", ["params = slopes [3] (one per channel) = 3", "1·3·4·4 = 96"]),
    "augmentation": ("-i 3x4x4 --kind RandomFlip", ["identity at inference", "params 0, FLOPs 0"]),
    # Keras' Normalization on the last axis (5): buffers 2·5 + 1; FLOPs 2·60 + 2·5 = 130
    "normalization": ("-i 3x4x5", ["= 2·5 + 1", "= 11", "· 1·3·4·5 + 2 per statistic (√ and max) · 5 = 130"]),
    # bilinear to 4×6: 7 FLOPs per output, 7·3·4·6 = 504
    "resizing": ("-i 3x8x8 --size 4x6 --mode bilinear", ["H_out = size = 4", "W_out = size = 6", "= 504"]),
    # rows from (8 − 4) // 2 = 2, columns from (8 − 6) // 2 = 1
    "center_crop": ("-i 3x8x8 --size 4x6", ["rows 2…5 of 8", "columns 1…6 of 8"]),
    "sigmoid": ("-i 10", ["3 per element · 1·10 = 30"]),
    "tanh": ("-i 10", ["1 per element · 1·10 = 10"]),
    "gelu": ("-i 10 --approximate tanh", ["9 per element · 1·10 = 90"]),
    "silu": ("-i 10", ["4 per element · 1·10 = 40"]),
    "swish": ("-i 10", ["4 per element · 1·10 = 40"]),
    "hardswish": ("-i 10", ["5 per element · 1·10 = 50"]),
    "hardsigmoid": ("-i 10", ["4 per element · 1·10 = 40"]),
    "softmax": ("-i 3x10", ["5 per element · 1·3·10 = 150"]),
    "identity": ("-i 10", ["identity at inference"]),
    # x·0.5 − 1: a multiply and an add per element, 2·30 = 60
    "rescaling": ("-i 3x10 --scale 0.5 --offset -1", ["x·0.5 − 1: 2 per element", "· 1·3·10 = 60"]),
    # an operation kept by from_torch's unknown="count-zero": the traced shape, counted as zero
    "opaque": ("-i 3x4 --shape 5x2 --op torch.det", ["output [1, 5, 2] as traced; params, MACs and FLOPs counted "
                                                     "as 0"]),
    # x², clamp to [−1, 1] (two compares), clip below 1 (one compare)
    "pow": ("-i 3x10 --exponent 2", ["1 per element · 1·3·10 = 30"]),
    # a causal mask added to scores [1, 2, 4, 4]: one add per score, 32
    "attention_mask": ("-i 2x4x4", ["keys after each query set to −∞ (added)", "1 per score (an add) · 1·2·4·4 = 32"]),
    "clamp": ("-i 10 --min -1 --max 1", ["2 per element · 1·10 = 20"]),
    "softcap": ("-i 3x10 --cap 30", ["cap·tanh(x/cap), cap 30: divide, tanh, multiply = 3 per element · 1·3·10 = 90"]),
    "clip": ("-i 10 --max 1", ["1 per element · 1·10 = 10"]),
    # Keras' Activation('softmax'): as softmax, 5 per element · 20 = 100
    "activation": ("-i 4x5 --activation softmax", ["softmax along dim 2", "5 per element · 1·4·5 = 100"]),
    # three inputs, broadcast to [1, 3, 4, 4]: (3 − 1)·48 = 96 adds
    "add": ("-i 3x4x4 -i 3x4x4 -i 3x1x1", ["(inputs − 1)·elements = 2·48 = 96"]),
    "mul": ("-i 3x4x4 -i 3x1x1", ["(inputs − 1)·elements = 1·48 = 48"]),
    # one subtract (divide) per element of the broadcast output [1, 3, 4, 4]: 48
    "sub": ("-i 3x4x4 -i 3x1x4", ["[1, 3, 4, 4] − [1, 3, 1, 4] (broadcast) → [1, 3, 4, 4]",
                                  "1 per output element · 1·3·4·4 = 48"]),
    "div": ("-i 3x1x4 -i 1x4x1", ["[1, 3, 1, 4] / [1, 1, 4, 1] (broadcast) → [1, 3, 4, 4]",
                                  "1 per output element · 1·3·4·4 = 48"]),
    "concat": ("-i 3x4x4 -i 5x4x4", ["concat along dim 1: 3 + 5 = 8 → [1, 8, 4, 4]"]),
    # RMSNorm over 16: params 16; FLOPs 48·(3 + 1) + 3·3 = 201
    "rmsnorm": ("-i 3x16", ["params = prod(normalized_shape) (γ) = 16", "48·4 + 3·3 = 201"]),
    # BERT's token embedding: 30,522·768 = 23,440,896
    "embedding": ("-i 128 --num-embeddings 30522 --embedding-dim 768", ["30522·768 = 23,440,896", "a lookup"]),
    "parameter": ("--shape 197x768", ["prod(shape) = 197·768 = 151,296"]),
    "extra_input": ("--shape 10", ["another network input [1, 10]: params 0, MACs 0, FLOPs 0"]),
    # GPT-2's wpe: 1,024·768 = 786,432, whatever the sequence length
    "position_embedding": ("-i 64 --num-embeddings 1024 --embedding-dim 768", ["1024·768 = 786,432"]),
    # 12 heads of 64 over 10 positions: 3·12·10·64 = 23,040
    "rotary_embedding": ("-i 12x10x64", ["· 1·12·10·64 = 23,040"]),
    "rope": ("-i 10x8 --rotary-dim 4", ["· 1·10·4 = 120"]),
    # nn.MultiheadAttention(512, 8): 4·512² + 4·512 = 1,050,624; QKᵀ 8 heads · 10·10 scores · 64 = 51,200
    "multi_head_attention": ("-i 10x512 --embed-dim 512 --num-heads 8",
                             ["params = 4·d² + 4·d = 4·512² + 4·512 = 1,050,624", "= 1·8·10·10·64 = 51,200"]),
    # 4 query heads share 1 key/value head of 16: k projection 1·6·64·16 = 6,144
    "multihead_attention": ("-i 6x64 --num-heads 4 --num-kv-heads 1", ["multi-query", "= 1·6·64·16 = 6,144"]),
    # 2 heads, 5 queries, 7 keys, E 8, E_v 3: 2·5·7·(8 + 3) = 770 MACs
    "scaled_dot_product_attention": ("-i 2x5x8 -i 2x7x8 -i 2x7x3", ["= 2·5·7·8 + 2·5·7·3 = 770"]),
    # T5's bias table, 32 buckets × 4 heads = 128 params, a lookup for 10·10 (query, key) pairs
    "relative_position_bias": ("-i 10x8 --num-heads 4", ["num_buckets·num_heads = 32·4 = 128", "MACs = 0, FLOPs = 0"]),
    # [1, 3, 4] @ [1, 4, 5]: 3·4·5 = 60
    "matmul": ("-i 3x4 -i 4x5", ["1·3·4·5 = 60", "2·MACs = 2·60 = 120"]),
    # Swin on an 8×8 map of C 32, windows 4×4 (4 windows of T 16), 2 heads of 16: params 3·32² + 3·32 + 32² + 32
    # + (2·4 − 1)²·2 = 4,322; MACs qkv 64·32·96 = 196,608 + QKᵀ and A·V 2·4·2·16²·16 = 65,536 + proj 64·32² = 65,536
    "shifted_window_attention": ("-i 8x8x32 --num-heads 2 --window-size 4 --shift-size 2",
                                 ["= 4,322", "1·4·16 = 64: 196,608", "= 327,680", "shifted by [2, 2]"]),
    "window_attention": ("-i 8x8x32 --num-heads 2 --window-size 4", ["= 4,322", "2·1·4·2·16²·16 = 65,536"]),
    # tensor operations: no arithmetic for the moves; mean 3·8·8 = 192; sum 64 outputs · (3 − 1) adds = 128
    "permute": ("-i 3x8x8 --dims 0x2x3x1", ["output dim k is input dim dims[k] = [0, 2, 3, 1]"]),
    "transpose": ("-i 3x8x8 --dim0 2 --dim1 3", ["dims 2 and 3 swapped"]),
    "slice": ("-i 3x8x8 --dim 2 --start 1 --step 2", ["ceil((8 − 1) / 2) = 4 kept"]),
    "select": ("-i 197x768 --dim 1 --index 0", ["select index 0 of dim 1 (size 197)"]),
    "roll": ("-i 3x8x8 --shifts 2 --dims 3", ["input index (i − 2) mod 8"]),
    "pixel_shuffle": ("-i 8x4x4 --upscale-factor 2", ["C = 8/2² = 2"]),
    "pixel_unshuffle": ("-i 2x8x8 --downscale-factor 2", ["C = 2·2² = 8"]),
    "channel_shuffle": ("-i 6x2x2 --groups 3", ["[3, 2], transposed to [2, 3]"]),
    # torch.split(x, 2, dim=1) on 5 channels: 2 + 2 + 1; torch.chunk(x, 4, dim=1) on 6: pieces of 2, so only 3
    "split": ("-i 5x4 --sizes 2 --dim 1", ["5 = 2 + 2 + 1 → [1, 2, 4], [1, 2, 4], [1, 1, 4]"]),
    "chunk": ("-i 6x4 --chunks 4 --dim 1", ["6 = 2 + 2 + 2 → [1, 2, 4], [1, 2, 4], [1, 2, 4]"]),
    "mean": ("-i 3x8x8 --dim 2x3", ["= numel(input) = 1·3·8·8 = 192"]),
    "sum": ("-i 3x8x8 --dim 1", ["outputs·(R − 1) adds = 64·(3 − 1) = 128"]),
    # bilinear ×2: 7 FLOPs per output element, 7·3·16·16 = 5,376; linear: 3 per element
    "upsample": ("-i 3x8x8 --scale-factor 2 --mode bilinear", ["H_out = floor(H·scale_factor) = floor(8·2) = 16",
                                                              "7·1·3·16·16 = 5,376"]),
    "interpolate": ("-i 3x10 --size 15 --mode linear", ["L_out = size = 15", "3·1·3·15 = 135"]),
    "upsampling1d": ("-i 3x10 --size 3", ["L_out = L·size = 10·3 = 30"]),
    "upsampling2d": ("-i 3x4x5 --size 2x3 --interpolation bilinear", ["W_out = W·size = 5·3 = 15",
                                                                       "7·1·3·8·15 = 2,520"]),
    "upsampling3d": ("-i 2x2x3x4", ["D_out = D·size = 2·2 = 4"]),
    # i = 16, h = 32: PyTorch 4·(h·i + h² + 2h) = 6,400; MACs 10·4·32·48 = 61,440
    "lstm": ("-i 10x16 --hidden-size 32", ["4·(h·i + h² + 2h) = 4·(32·16 + 32² + 2·32) = 6,400", "= 61,440"]),
    # Keras GRU, reset_after=False: 3·(h·i + h² + h) = 4,704
    "gru": ("-i 10x16 --units 32 --convention keras --no-reset-after",
            ["3·(h·i + h² + h) = 3·(32·16 + 32² + 32) = 4,704"]),
    "rnn": ("-i 10x16 --hidden-size 32", ["h·i + h² + 2h = 32·16 + 32² + 2·32 = 1,600"]),
    "simple_rnn": ("-i 10x16 --units 32 --convention keras", ["h·i + h² + h = 32·16 + 32² + 32 = 1,568"]),
    # 8 gated experts of 64 on d 32, 2 per token: router 32·8 + 8·3·32·64 = 49,408; a token uses 256 + 2·6,144 =
    # 12,544; 16 tokens: 200,704 MACs, every expert 16·(256 + 8·6,144) = 790,528
    "moe": ("-i 16x32 --num-experts 8 --top-k 2 --intermediate-size 64",
            ["= 49,408", "= 12,544", "= 200,704", "790,528"]),
    "mixture_of_experts": ("-i 4x8 --num-experts 4 --top-k 1 --intermediate-size 6 --experts mlp",
                           ["8·4 + experts E·m·d·F 4·2·8·6 = 416", "4·(8·4 + 1·2·8·6) = 512"]),
    # DeepSeek-style latent attention, d 40, 4 heads of 8 + 4 (rotated), v 10, ranks 24 and 16: projections
    # 40·24 + 24·48 + 40·20 + 16·72 + 40·40 = 5,664, + norms 24 + 16; MACs 6·5,664 + 4·6²·(12 + 10) = 37,152
    "latent_attention": ("-i 6x40 --num-heads 4 --q-lora-rank 24 --kv-lora-rank 16 --qk-nope-head-dim 8 "
                         "--qk-rope-head-dim 4 --v-head-dim 10", ["= 5,704", "= 37,152"]),
    "mla": ("-i 6x40 --num-heads 4 --kv-lora-rank 16 --qk-nope-head-dim 8 --qk-rope-head-dim 4 --v-head-dim 10",
            ["q_proj 40·48", "= 32,832 + 1·4·6²·22"]),
}


def test_explain_cases_cover_every_layer_type():
    assert set(EXPLAIN_CASES) == set(layercalc.LAYER_TYPES)


@pytest.mark.parametrize("type_name", sorted(EXPLAIN_CASES))
def test_every_calculator_explains(type_name):
    args, fragments = EXPLAIN_CASES[type_name]
    out = run(type_name, *args.split(), "--explain").stdout
    how = out.split("\nhow:\n", 1)[1]
    for fragment in fragments:
        assert fragment in how, (fragment, how)
    assert "output bytes = " in how and "⚠" not in how


def test_attention_with_a_score_bias_explains_its_flops():
    # T5-style: E 8, 4 heads of 2, 5 positions, the score bias [1, 4, 5, 5] added: projections 4·5·8·8 = 1,280 +
    # QKᵀ, A·V 2·4·5·5·2 = 400 = 1,680 MACs; FLOPs 2·1,680 + bias adds 4·40 + scaling 100 + score bias 100 +
    # softmax 500 = 4,220
    out = run("multi_head_attention", "-i", "5x8", "-i", "4x5x5", "--num-heads", "4", "--score-bias", "--scale", "1",
              "--explain").stdout
    how = " ".join(out.split("\nhow:\n", 1)[1].split())
    assert "score bias [1, 4, 5, 5] (the last input)" in how and "= 1,680" in how and "= 4,220" in how


def test_explain_and_json_do_not_mix():
    # the JSON must stay parseable by the programs that read it
    result = runner.invoke(get_app(), ["relu", "-i", "10", "--json", "--explain"])
    assert result.exit_code == 2 and "--explain cannot be combined with --json" in result.stderr


# ---------------------------------------------------------------------------------------------------- size

@pytest.mark.parametrize("args, expected", [
    (["28", "-k", "3"], 26),                                      # 28 − 3 + 1
    (["224", "-k", "7", "-s", "2", "-p", "3"], 112),              # floor((224 + 6 − 7)/2) + 1 = 112
    (["28", "-k", "3", "-d", "2"], 24),                           # span 5: 28 − 5 + 1
    (["28", "-k", "3", "-s", "2", "-p", "same"], 14),             # ceil(28/2)
    (["28", "-k", "3", "-p", "valid"], 26),
    (["5", "-k", "2", "-s", "2", "--ceil"], 3),                   # ceil((5 − 2)/2) + 1
    (["3", "-k", "2", "-s", "2", "-p", "1", "--ceil"], 2),        # 3rd window would start in the padding
    (["7", "-k", "3", "-s", "2", "-p", "1", "--transposed", "--output-padding", "1"], 14),  # 12 − 2 + 2 + 1 + 1
    (["16", "-k", "2", "-s", "2", "-t"], 32),                     # (16 − 1)·2 + 1 + 1
    (["7", "-k", "3", "-s", "2", "-p", "same", "-t"], 14),        # Keras: 7·2
])
def test_size(args, expected):
    assert run("size", *args, "--quiet").stdout.strip() == str(expected)
    line = run("size", *args).stdout.strip().splitlines()
    assert len(line) == 1 and re.search(rf"(= |→ ){expected}\b", line[0])


@pytest.mark.parametrize("args, note", [
    # 28, k 3, s 2: windows start 0, 2, …, 24 and end at 26: position 27 is never read (the floor in the formula)
    (["28", "-k", "3", "-s", "2"], "input position 27 (of 0..27) is never covered by any window"),
    # 10, k 2, s 3: windows [0,1] [3,4] [6,7]: 2 and 5 fall between windows, 8..9 after the last
    (["10", "-k", "2", "-s", "3"], "input positions 2, 5, 8..9 (of 0..9) are never covered by any window"),
    # 9, k 3, d 2 (taps 0, 2, 4), s 2: windows at 0 and 2 read only the even positions
    (["9", "-k", "3", "-d", "2", "-s", "2"], "input positions 1, 3, 5, 7 (of 0..8) are never covered"),
    # 8, k 2, s 2: the windows tile the input exactly; 224, k 7, s 2, p 3: only a padded position is skipped
    (["8", "-k", "2", "-s", "2"], None),
    (["224", "-k", "7", "-s", "2", "-p", "3"], None),
])
def test_size_one_line_says_what_happens_to_the_border(args, note):
    lines = run("size", *args).stdout.strip().splitlines()
    assert len(lines) == 1
    if note is None:
        assert "never" not in lines[0]
    else:
        assert note in lines[0] and "; input position" in lines[0]


def test_size_explain():
    out = run("size", "28", "-k", "3", "-s", "2", "--explain").stdout
    assert "L_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 13" in out
    assert "input position 27 (of 0..27) is never covered" in out


# ---------------------------------------------------------------------------------------------------- solve

def _solve_rows(out: str) -> list[dict]:
    lines = out.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("kernel"))
    headers = lines[start].split()[:-1]
    return [dict(zip(headers, map(int, line.split()[:len(headers)]))) for line in lines[start + 1:]]


def test_solve_resnet_stem():
    out = run("solve", "--input", 224, "--output", 112, "-k", 7).stdout
    rows = _solve_rows(out)
    assert rows[0] == {"kernel": 7, "stride": 2, "padding": 3, "dilation": 1}
    for r in rows:   # every answer plugged back: floor((224 + 2p − d·6 − 1)/s) + 1 = 112
        assert (224 + 2 * r["padding"] - r["dilation"] * 6 - 1) // r["stride"] + 1 == 112


@settings(max_examples=40)
@given(n=st.integers(2, 128), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3))
def test_solve_command_answers_plug_back(n, k, s, p):
    assume(p < k)
    out_len = (n + 2 * p - (k - 1) - 1) // s + 1
    assume(out_len >= 2)
    rows = _solve_rows(run("solve", "-i", n, "-o", out_len, "-d", 1, "--limit", 0).stdout)
    assert {"kernel": k, "stride": s, "padding": p, "dilation": 1} in rows
    for r in rows:
        assert (n + 2 * r["padding"] - (r["kernel"] - 1) - 1) // r["stride"] + 1 == out_len


@settings(max_examples=40)
@given(n=st.integers(2, 64), k=st.integers(1, 5), s=st.integers(1, 4), ceil_mode=st.booleans())
def test_solve_pooling_and_transposed_answers_plug_back(n, k, s, ceil_mode):
    # pooling with ceil_mode (torch.nn.MaxPool1d docs plus PyTorch's rule that the last window may not start in the
    # right padding) or a transposed convolution ((n − 1)·s − 2p + d(k − 1) + output_padding + 1): the wanted
    # output comes from a known (k, s) with no padding, so at least that answer must be listed, and every answer
    # listed must reproduce the output.
    def pool(n, k, s, p, d):
        span = n + 2 * p - d * (k - 1) - 1
        out = -(-span // s) + 1
        return out - 1 if (out - 1) * s >= n + p else out

    def transposed(n, k, s, p, d, op):
        return (n - 1) * s - 2 * p + d * (k - 1) + op + 1

    if ceil_mode:
        assume(n >= k)
        wanted = pool(n, k, s, 0, 1)
        rows = _solve_rows(run("solve", "-i", n, "-o", wanted, "--ceil", "--limit", 0).stdout)
        if wanted > 1:
            assert {"kernel": k, "stride": s, "padding": 0, "dilation": 1} in rows
        else:     # a single window: every stride from some value on gives 1; only the smallest is listed
            assert any(r["kernel"] == k and r["padding"] == 0 and r["dilation"] == 1 and r["stride"] <= s
                       for r in rows)
        assert all(pool(n, r["kernel"], r["stride"], r["padding"], r["dilation"]) == wanted for r in rows)
        assert all(r["padding"] <= r["kernel"] // 2 for r in rows)         # PyTorch refuses more
    else:
        wanted = transposed(n, k, s, 0, 1, 0)
        rows = _solve_rows(run("solve", "-i", n, "-o", wanted, "-t", "-k", k, "--limit", 0).stdout)
        assert {"kernel": k, "stride": s, "padding": 0, "dilation": 1, "output_padding": 0} in rows
        for r in rows:
            assert transposed(n, r["kernel"], r["stride"], r["padding"], r["dilation"], r["output_padding"]) == wanted
            assert r["output_padding"] < max(r["stride"], r["dilation"])   # PyTorch's rule


def test_solve_help_documents_the_bounds():
    text = " ".join(run("solve", "--help").stdout.split())
    for bound in ("kernel 1..11", "stride 1..8", "dilation 1..4", "padding 0..dilation·(kernel − 1)"):
        assert bound in text


def test_solve_transposed_and_none():
    rows = _solve_rows(run("solve", "-i", 7, "-o", 14, "-k", 3, "-s", 2, "-d", 1, "--transposed").stdout)
    assert rows == [{"kernel": 3, "stride": 2, "padding": 1, "dilation": 1, "output_padding": 1}]
    out = run("solve", "-i", 10, "-o", 20, "-k", 3, "-s", 1, "-d", 1).stdout     # exit status 0, see docstring
    assert out.startswith("no combination gives 10 → 20") and "nearest reachable: 12" in out


# -------------------------------------------------------------------------------------------------- summary

def test_summary_table_mnist_cnn():
    out = run("summary", MNIST_CNN, "--wide").stdout
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "93,322" in total and "2,794,240" in total                 # published figures
    out = runner.invoke(get_app(), ["summary", str(MNIST_CNN), "--width", "80"]).stdout   # exact numbers fit
    # at 80 columns without the output bytes
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "93,322" in total and "output bytes" not in out and "Totals: params 93,322 · " in out
    assert "Conventions:" in out and "--conventions" in out          # one line pointing to the full text
    assert "macs:" in run("summary", MNIST_CNN, "--conventions").stdout
    assert "[1,64,11,11]" in out                                      # 13 − 3 + 1 (written compactly to fit)


def test_summary_totals_rule_spans_every_column():
    # the rule above the totals is drawn like the one under the headers: as wide as each column
    lines = run("summary", MNIST_CNN).stdout.splitlines()
    total_at = next(i for i, line in enumerate(lines) if line.startswith("total"))
    header_at = next(i for i, line in enumerate(lines) if line.startswith("name "))
    assert lines[total_at - 1] == lines[header_at + 1] and set(lines[header_at + 1]) == {"-", " "}


def test_pooling_notes_in_ceil_mode_and_with_same_padding():
    # kernel 1, stride 4, ceil mode on 10: windows start at 0, 4, 8 and 12 (12 ≥ 10 + 0 starts past the input:
    # PyTorch drops it), so 1..3 and 5..7 fall between windows and 9 comes after the last one
    notes = run("maxpool1d", "-i", "1x10", "-k", 1, "-s", 4, "--ceil-mode").stdout
    assert "input positions 1..3, 5..7 (6 in all) fall between the windows' taps" in notes
    assert "input position 9 after the last window is never read (ceil_mode drops" in notes
    # 'same' is TensorFlow's pooling padding: 7 → ceil(7/2) = 4 needs (4 − 1)·2 + 3 − 7 = 2 padded, 1 each side
    out = run("maxpool2d", "-i", "3x7x7", "-k", 3, "-s", 2, "-p", "same").stdout
    assert field(out, "output shape") == "[1, 3, 4, 4]"
    assert "PyTorch's pooling layers have no 'same' padding" in out and "H (1, 1), W (1, 1)" in out


def test_padding_help_lists_only_the_forms_each_layer_accepts():
    # conv and pooling take 'same'/'valid'; zero_pad takes amounts only (and refuses 'same')
    assert "same, valid, N, NxM" in run("conv2d", "--help").stdout
    zero_pad_help = run("zero_pad", "--help").stdout
    assert "N, NxM or [[before, after], ...]" in zero_pad_help and "same" not in zero_pad_help


def test_transposed_valid_follows_keras_unless_output_padding_is_stated():
    # Keras' deconv_output_length, 'valid': L·s + max(span − s, 0) when output_padding is None, else
    # (L − 1)·s + span + output_padding. Kernel 1, stride 2 on 14: 28 by the first rule, 27 with output_padding 0.
    assert field(run("conv_transpose1d", "-i", "1x14", "--out-channels", 1, "-k", 1, "-s", 2, "-p", "valid").stdout,
                 "output shape") == "[1, 1, 28]"
    assert field(run("conv_transpose1d", "-i", "1x14", "--out-channels", 1, "-k", 1, "-s", 2, "-p", "valid",
                     "--output-padding", 0).stdout, "output shape") == "[1, 1, 27]"
    # size says the same; kernel 2, stride 3: 14·3 + 0 = 42; kernel 3, stride 2: 14·2 + 1 = 29 (no extra)
    for args, expected in [((1, 2), "28"), ((2, 3), "42"), ((3, 2), "29")]:
        k, s = args
        assert run("size", 14, "-k", k, "-s", s, "-p", "valid", "--transposed", "-q").stdout.strip() == expected
    assert run("size", 14, "-k", 1, "-s", 2, "-p", "valid", "--transposed", "--output-padding", 0,
               "-q").stdout.strip() == "27"
    assert run("size", 28, "-k", 3, "-p", "+1", "-q").stdout.strip() == "28"      # 28 + 2 − 3 + 1


def test_summary_receptive_field_column():
    # conv 3 → pool 2 → conv 3 → pool 2 → conv 3: rf 3, 4 (jump 2), 4 + 2·2 = 8, 8 + 1·2 = 10 (jump 4),
    # 10 + 2·4 = 18
    out = run("summary", MNIST_CNN, "--columns", "name,rf,jump").stdout
    lines = out.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("name "))
    rows = {line.split()[0]: line.split()[1:] for line in lines[header_at + 2:header_at + 14]}
    assert rows["conv2d_3"] == ["8×8", "2×2"] and rows["maxpool2d_5"] == ["10×10", "4×4"]
    assert rows["conv2d_6"] == ["18×18", "4×4"]


def test_summary_zoo_spec_and_human_numbers():
    pytest.importorskip("layercalc.zoo")
    out = run("summary", "zoo:resnet18", "--numbers", "human").stdout
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "11.7 M" in total and "1.81 G" in total            # torchvision: 11,689,512 params, 1.814 GFLOPS (MACs)


def test_summary_json_is_the_report():
    data = json.loads(run("summary", MNIST_CNN, "--format", "json").stdout)
    expected = layercalc.load(MNIST_CNN).analyze().model_dump(mode="json")
    assert data == expected
    assert data["totals"]["params"] == 93_322 and data["totals"]["macs"] == 2_794_240


def test_summary_csv_parses():
    out = run("summary", MNIST_CNN, "--format", "csv", "--columns", "name,output_shape,params,macs,rf").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 12
    assert sum(int(r["params"]) for r in rows) == 93_322
    assert sum(int(r["macs"]) for r in rows) == 2_794_240
    assert rows[0]["output_shape"] == "1x32x26x26" and rows[0]["receptive_field"] == "3x3"


def test_summary_markdown_table():
    out = run("summary", MNIST_CNN, "--format", "markdown", "--numbers", "human").stdout
    table = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:3] == ["name", "type", "output shape"]
    assert set(table[1].replace("|", "").strip()) <= set("-: ")
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert len(body) == 12 + 1                                         # layers + totals
    assert body[-1][header.index("params")] == "**93.3 K**"
    assert body[-1][header.index("MACs")] == "**2.79 M**"


def test_summary_stdin_yaml_and_json():
    spec = {"input": [784], "layers": [{"type": "linear", "out_features": 512}, {"type": "relu"},
                                        {"type": "linear", "out_features": 10}]}
    # 784·512 + 512 + 512·10 + 10 = 407,050 (Keras' MNIST MLP)
    data = json.loads(run("summary", "-", "-f", "json", input=json.dumps(spec)).stdout)
    assert data["totals"]["params"] == 407_050
    yaml_text = "input: [784]\nlayers:\n  - {type: dense, units: 512}\n  - {type: dense, units: 10}\n"
    assert "407,050" in run("summary", "-", input=yaml_text).stdout


def test_summary_overrides():
    # --input 1x32x32: first conv 30×30; --batch 8 multiplies MACs: 8·2,794,240 would not hold (sizes change), so
    # check batch on the unchanged input: 8 · 2,794,240 = 22,353,920
    out = run("summary", MNIST_CNN, "--input", "1x32x32", "-c", "name,output").stdout
    assert "[1, 32, 30, 30]" in out
    data = json.loads(run("summary", MNIST_CNN, "--batch", 8, "-f", "json").stdout)
    assert data["totals"]["macs"] == 8 * 2_794_240 and data["batch"] == 8
    data = json.loads(run("summary", MNIST_CNN, "--dtype", "float16", "-f", "json").stdout)
    assert data["totals"]["param_bytes"] == 2 * 93_322


def test_summary_keras_shapes():
    # an NHWC (Keras) network is shown in Keras' terms by default; --torch-shapes gives the spec's batch 32
    out = run("summary", MNIST_CNN_KERAS, "--wide").stdout
    assert "(None, 26, 26, 32)" in out and "(None, 10)" in out
    plain = run("summary", MNIST_CNN_KERAS, "--torch-shapes", "--wide").stdout
    assert "[32, 26, 26, 32]" in plain


def test_summary_depth_groups_with_subtotals(tmp_path):
    # two blocks of conv(3×3, pad 1) + relu on 4×8×8; block1: 4 → 8 channels: 9·4·8 + 8 = 296 params;
    # block2: 8 → 8: 9·8·8 + 8 = 584 params; head linear 8·8·8 = 512 → 10: 5,130 params.
    spec = {"input": [4, 8, 8], "layers": [
        {"name": "block1.conv", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "block1.relu", "type": "relu"},
        {"name": "block2.conv", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "block2.relu", "type": "relu"},
        {"name": "flatten", "type": "flatten"},
        {"name": "head", "type": "linear", "out_features": 10}]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    rows = list(csv.DictReader(io.StringIO(run("summary", path, "--depth", 1, "-f", "csv",
                                                "-c", "name,type,output_shape,params").stdout)))
    assert [(r["name"], int(r["params"])) for r in rows] == [("block1", 296), ("block2", 584), ("flatten", 0),
                                                            ("head", 5_130)]
    assert rows[0]["type"] == "group (2 layers)" and rows[1]["output_shape"] == "1x8x8x8"


def test_summary_zoo_depth_adds_up_to_published_params():
    pytest.importorskip("layercalc.zoo")
    out = run("summary", "zoo:resnet50", "--depth", "1", "-f", "csv", "-c", "name,params").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows][4:8] == ["layer1", "layer2", "layer3", "layer4"]
    assert sum(int(r["params"]) for r in rows) == 25_557_032           # torchvision's published count


def test_schema_and_version_and_zoo():
    schema = json.loads(run("schema").stdout)
    assert "layers" in schema["properties"] and "input" in schema["properties"]
    assert run("--version").stdout.strip() == f"layercalc {layercalc.__version__}"
    pytest.importorskip("layercalc.zoo")
    out = run("zoo").stdout
    assert re.search(r"resnet50\s.*25,557,032", out)                  # published
    assert re.search(r"vgg16\s.*138,357,544", out)


def test_shell_completion_is_offered():
    out = run("--help").stdout
    assert "--install-completion" in out and "--show-completion" in out


def test_progress_bar_only_when_enabled_and_after_a_moment(capsys):
    from layercalc.cli import Progress

    quiet = Progress(enabled=False, delay=0.0)               # not a terminal: never drawn
    quiet(1, 2, "conv1")
    quiet.close()
    patient = Progress(enabled=True, delay=3600.0)           # a terminal, but the run is quick: not drawn either
    patient(1, 2, "conv1")
    patient.close()
    assert capsys.readouterr().err == ""
    bar = Progress(enabled=True, delay=0.0)                  # rich's bar, drawn on stderr
    bar(1, 2, "conv1")
    bar(2, 2, "fc\x1b[2J")                                   # a layer name cannot write terminal escapes
    bar.close()
    out = capsys.readouterr()
    assert out.out == ""
    assert "1/2" in out.err and "conv1" in out.err and "fc\\x1b[2J" in out.err and "fc\x1b[2J" not in out.err
    assert out.err.endswith("\x1b[2K")                       # transient: erased at the end


# ------------------------------------------------------------------------------------- the installed command

LAYERCALC = shutil.which("layercalc")


@pytest.mark.skipif(LAYERCALC is None, reason="layercalc is not installed on PATH")
def test_installed_command_end_to_end():
    done = subprocess.run([LAYERCALC, "size", "28", "-k", "3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().endswith("= 26")
    done = subprocess.run([LAYERCALC, "summary", "-", "-f", "json"], input=Path(MNIST_CNN).read_text(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["params"] == 93_322
    done = subprocess.run([LAYERCALC, "conv2d", "-i", "1x2x2", "--filters", "3", "-k", "3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("layercalc: error: conv2d: kernel 3×3")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(LAYERCALC is None, reason="layercalc is not installed on PATH")
def test_installed_command_border_note_csv_and_version():
    # 28, k 3, s 2: floor(25/2) + 1 = 13, and input position 27 is never read
    done = subprocess.run([LAYERCALC, "size", "28", "-k", "3", "-s", "2", "--wide"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "= 13; input position 27 (of 0..27) is never covered" in done.stdout
    done = subprocess.run([LAYERCALC, "summary", MNIST_CNN, "-f", "csv"], capture_output=True, text=True, timeout=60)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert done.returncode == 0 and sum(int(r["params"]) for r in rows) == 93_322      # Keras' published count
    done = subprocess.run([LAYERCALC, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"layercalc {layercalc.__version__}"


@pytest.mark.skipif(LAYERCALC is None, reason="layercalc is not installed on PATH")
def test_installed_command_completes_commands_and_generated_options():
    import os

    def complete(words, index):
        env = {**os.environ, "_LAYERCALC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(index)}
        done = subprocess.run([LAYERCALC], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert {"conv1d", "conv2d", "conv_transpose2d"} <= set(complete("layercalc conv", 1))
    assert complete("layercalc conv2d --ker", 2) == ["--kernel-size"]      # generated from the model's field


@pytest.mark.skipif(LAYERCALC is None, reason="layercalc is not installed on PATH")
def test_installed_command_debug_shows_traceback_and_pipe_closes_quietly():
    done = subprocess.run([LAYERCALC, "summary", "missing.yaml", "--debug"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "Traceback" in done.stderr and "missing.yaml: no such file" in done.stderr
    pipe = subprocess.run(f"'{LAYERCALC}' summary zoo:resnet50 2>&1 | head -1", shell=True, capture_output=True,
                          text=True, timeout=60) if (ROOT / "layercalc" / "zoo").exists() else None
    if pipe is not None:
        assert "Traceback" not in pipe.stdout and pipe.stdout.startswith("Network: resnet50")


def test_python_dash_m_style_entry_point():
    done = subprocess.run([sys.executable, "-c", "import sys; from layercalc.cli import main; sys.argv = "
                           "['layercalc', 'size', '224', '-k', '7', '-s', '2', '-p', '3', '-q']; main()"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "112"


def test_summary_table_shows_the_layers_notes():
    # 28 rows, kernel 3, stride 2: windows start at 0, 2, …, 24 and end at 26, so row 27 is never read
    spec = "input: [1, 28, 28]\nlayers:\n  - {type: conv2d, out_channels: 4, kernel_size: 3, stride: 2}\n"
    result = runner.invoke(get_app(), ["summary", "-"], input=spec)
    assert result.exit_code == 0
    notes = result.stdout.split("Notes (2; each: --notes all):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(notes) == 2                                  # W's note is H's at another axis: said once
    assert notes[0].startswith("  conv2d_0 (conv2d) and 1 more alike: H: (input 28 + padding 0")
    result = runner.invoke(get_app(), ["summary", "-", "--notes", "all", "--wide"], input=spec)
    notes = result.stdout.split("Notes:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(notes) == 2                                  # one per axis
    assert "conv2d_0 (conv2d): H:" in notes[0] and "input row 27 (of 0..27) is never read" in notes[0]
    markdown = runner.invoke(get_app(), ["summary", "-", "--format", "markdown"], input=spec).stdout
    assert "- Notes:" in markdown and "input column 27 (of 0..27) is never read" in markdown


def test_calculator_of_several_outputs_states_every_shape_and_the_dtype_element_size():
    # chunk of 8 rows into 3 along dim 1 (torch.chunk: ceil(8/3) = 3 rows each, the last gets 2):
    # outputs [1, 3, 4], [1, 3, 4], [1, 2, 4] = 12 + 12 + 8 = 32 elements × 4 bytes (float32) = 128 B.
    # The element size is the dtype's (it printed 128 // 12 = 10 bytes/element before).
    out = run("chunk", "-i", "8x4", "--chunks", 3, "--dim", 1).stdout
    assert field(out, "output shapes") == "[1, 3, 4]  [1, 3, 4]  [1, 2, 4]"
    assert field(out, "memory") == "output 128 B (float32, 4 bytes/element)"
    out16 = run("chunk", "-i", "8x4", "--chunks", 3, "--dim", 1, "--dtype", "float16").stdout
    assert field(out16, "memory") == "output 64 B (float16, 2 bytes/element)"
