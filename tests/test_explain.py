"""Worked explanations: the user's numbers substituted into the formulas, results derived by hand here."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layercalc
from layercalc.explain import (
    Unread,
    coverage_note,
    explain_layer,
    explain_length,
    explain_size,
    explain_transposed_length,
    read_marks,
    unread_runs,
)

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.y*ml"))


def explain_one(input_shape, layer, layout="NCHW", batch=1):
    net = layercalc.load({"input": input_shape, "batch": batch, "layout": layout, "layers": [layer]})
    step = net.resolve()[0]
    rank = len(input_shape) - 1
    return "\n".join(explain_layer(step.layer, step.input_shapes, step.facts, net.channels_last, 4,
                                   ([1] * rank, [1] * rank)))


def test_conv_formula_substituted():
    # 28×28, 3×3, stride 1, no padding: floor((28 + 0 − 2 − 1)/1) + 1 = 26; params 3·3·1·32 + 32 = 320;
    # MACs 26·26·32·9 = 194,688; FLOPs 2·194,688 + 26·26·32 = 411,008.
    text = explain_one([1, 28, 28], {"type": "conv2d", "out_channels": 32, "kernel_size": 3})
    assert "H_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 26" in text
    assert "W_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 26" in text
    assert "params = (3·3·1)·32 + 32 = 320" in text
    assert "= 1·26·26·32·(3·3·1) = 194,688" in text
    assert "2·194,688 + 21,632 = 411,008" in text
    assert "1·32·26·26 elements × 4 bytes = 86,528" in text
    assert "= 1 + (1·(3 − 1))·1 = 3" in text
    assert "⚠" not in text


def test_uneven_stride_names_the_uncovered_row_and_column():
    # 28 wide, kernel 3, stride 2: windows start at 0, 2, …, 24 and the last ends at 26; row/column 27 is unread.
    text = explain_one([1, 28, 28], {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2})
    assert "H_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 13" in text
    assert "input row 27 (of 0..27) is never covered" in text
    assert "input column 27 (of 0..27) is never covered" in text


def test_uneven_stride_several_positions():
    # 30 long, kernel 2, stride 4: (30 − 2) = 28, 28 % 4 = 0: the last window [28, 29] reaches the end, so no
    # border is lost; but each window reads 2 of every 4 positions: 2..3, 6..7, …, 26..27 (7 gaps · 2 = 14) are
    # never read.
    lines = explain_length(30, 2, 4)
    assert not any("never covered" in line for line in lines)
    gap = next(line for line in lines if "never read" in line)
    assert "stride 4 > kernel span 2: 2 positions between neighbouring windows are skipped" in gap
    assert "input positions 2..3, 6..7, 10..11, 14..15, …, 26..27 (14 in all) (of 0..29)" in gap
    # 31 long, kernel 2, stride 4: span 29, 29 % 4 = 1: last window [28, 29], position 30 unread.
    assert any("input position 30 (of 0..30)" in line for line in explain_length(31, 2, 4))
    # 33 long, kernel 2, stride 4: span 31, 31 % 4 = 3: positions 30..32 unread.
    assert any("input positions 30..32" in line for line in explain_length(33, 2, 4))


def test_same_padding_split():
    # SAME, 28 wide, kernel 5, stride 2: out = ceil(28/2) = 14; total = (14 − 1)·2 + 5 − 28 = 3 → 1 before, 2 after.
    text = explain_one([1, 28, 28], {"type": "conv2d", "out_channels": 4, "kernel_size": 5, "stride": 2,
                                     "padding": "same"})
    assert "total padding = max((14 − 1)·2 + 1·(5 − 1) + 1 − 28, 0) = 3 → 1 before, 2 after" in text
    assert "H_out = floor((28 + (1 + 2) − 1·(5 − 1) − 1) / 2) + 1 = 14" in text


def test_transposed_conv():
    # 7 → 14: (7 − 1)·2 − 2·1 + (3 − 1) + 1 + 1 = 14. params 16·8·3·3 + 8 = 1,160.
    # MACs on input positions: 7·7·16·8·9 = 56,448.
    text = explain_one([16, 7, 7], {"type": "conv_transpose2d", "out_channels": 8, "kernel_size": 3, "stride": 2,
                                    "padding": 1, "output_padding": 1})
    assert "H_out = (7 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 14" in text
    assert "= 16·8·3·3 + 8 = 1,160" in text
    assert "= 1·7·7·16·8·3·3 = 56,448" in text
    assert "⚠" not in text


def test_pooling_and_ceil_mode():
    # 5 wide, window 2, stride 2: floor(3/2) + 1 = 2; ceil(3/2) + 1 = 3 (the last window hangs over).
    text = explain_one([3, 5, 5], {"type": "maxpool2d", "kernel_size": 2, "ceil_mode": True})
    assert "H_out = ceil((5 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 3" in text
    # FLOPs: one compare per window element: 1·3·3·3·2·2 = 108
    assert "= 1·3·3·3·2·2 = 108" in text
    # 4 wide, window 2, stride 2, padding 1, ceil: ceil(4/2) + 1 = 3, and the 3rd window would start at 4 ≥ 4 + 1?
    # no: 4 < 5, kept. With 3 wide: ceil((3 + 2 − 2)/2) + 1 = 3, the last starts at 4 ≥ 3 + 1 = 4 → dropped → 2.
    lines = explain_length(3, 2, 2, 1, 1, ceil_mode=True)
    assert lines[0].endswith("= 3")
    assert "PyTorch drops it → L_out = 2" in lines[1]


def test_adaptive_pooling_windows():
    # 5 → 3: windows [floor(i·5/3), ceil((i+1)·5/3)) = [0,2) [1,4) [3,5), sizes 2, 3, 2.
    text = explain_one([2, 5, 6], {"type": "adaptive_avgpool2d", "output_size": [3, 2]})
    assert "H: 5 → 3: windows [0,2) [1,4) [3,5), sizes 2, 3, 2" in text
    assert "W: 6 → 2: 6 / 2 = 3: equal windows" in text
    # FLOPs: N·C·(2+3+2)·(3+3) = 1·2·7·6 = 84
    assert "= 1·2·7·6 = 84" in text


def test_linear():
    # 784 → 512: params 784·512 + 512 = 401,920; MACs 1·784·512 = 401,408.
    text = explain_one([784], {"type": "linear", "out_features": 512})
    assert "params = in·out + out = 784·512 + 512 = 401,920" in text
    assert "1·784·512 = 401,408" in text


def test_norms():
    # BatchNorm over 16 channels: params 2·16 = 32 (γ, β); buffers 32; FLOPs 2·(1·16·8·8) = 2,048.
    text = explain_one([16, 8, 8], {"type": "batchnorm2d"})
    assert "params = 2·C (γ and β) = 2·16 = 32" in text
    assert "buffers = 2·C (running mean and variance) = 2·16 = 32" in text
    assert "= 2,048" in text
    # LayerNorm over the last dim 64 of [1, 10, 64]: params 2·64 = 128.
    assert "= 128" in explain_one([10, 64], {"type": "layernorm"})
    # GroupNorm: 32 channels in 8 groups: params 2·32 = 64.
    text = explain_one([32, 4, 4], {"type": "groupnorm", "num_groups": 8})
    assert "2·32 = 64" in text and "⚠" not in text


def test_other_types_get_one_line():
    assert "relu: shape unchanged, 1 per element · 1·3·4·4 = 48" in explain_one([3, 4, 4], {"type": "relu"})
    assert "multiplied into one → [1, 800]" in explain_one([32, 5, 5], {"type": "flatten"})
    assert "H: 28 + 2 + 2 = 32" in explain_one([1, 28, 28], {"type": "zero_pad", "padding": 2})


def test_size_explanations():
    lines = explain_size(28, 3, 2)
    assert lines[0].startswith("L_out = floor((L_in + 2·padding")
    assert "L_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 13" in lines
    assert explain_transposed_length(16, 2, 2)[0] == "L_out = (16 − 1)·2 − 2·0 + 1·(2 − 1) + 0 + 1 = 32"


def _networks():
    yield from ((p.name, layercalc.load(p)) for p in EXAMPLES)
    try:
        from layercalc import zoo
    except ImportError:
        return
    for name in zoo.list_models():
        yield f"zoo:{name}", zoo.load(name)


def test_explanations_agree_with_the_calculator_on_every_example_and_zoo_network():
    """Each figure the explanation computes is compared with the calculator's; a mismatch adds a ⚠ line."""
    from layercalc.network_explain import explain_network

    checked = 0
    for label, net in _networks():
        lines = explain_network(net, net.analyze())
        bad = [line for line in lines if "⚠" in line]
        assert not bad, (label, bad[:3])
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("layer", [
    {"type": "conv1d", "out_channels": 6, "kernel_size": 5, "stride": 3, "padding": 2, "dilation": 2, "groups": 3},
    {"type": "conv_transpose1d", "out_channels": 4, "kernel_size": 4, "stride": 3, "padding": "same"},
    {"type": "avgpool1d", "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "softmax", "dim": 1},
    {"type": "global_avgpool"},
])
def test_no_disagreement_on_varied_1d_layers(layer):
    assert "⚠" not in explain_one([6, 29], layer)


# ------------------------------------------------------------------------------------- coverage, by brute force

def _torch_output_length(n, k, s, pb, pa, d, ceil_mode):
    """torch.nn.MaxPool1d / Conv1d documentation, with PyTorch's rule that a ceil-mode window may not start in
    the right padding (aten/src/ATen/native/Pool.h: pooling_output_shape_pad_lr)."""
    span = n + pb + pa - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + pb:
        out -= 1
    return out


def _never_read(n, k, s, pb, pa, d, ceil_mode=False):
    """Walk every window and every tap: the input positions nobody reads."""
    read = set()
    for o in range(_torch_output_length(n, k, s, pb, pa, d, ceil_mode)):
        for j in range(k):
            read.add(o * s + j * d - pb)
    return [i for i in range(n) if i not in read]


@settings(max_examples=150)
@given(n=st.integers(1, 60), k=st.integers(1, 6), s=st.integers(1, 7), pb=st.integers(0, 3), pa=st.integers(0, 3),
       d=st.integers(1, 3), ceil_mode=st.booleans())
def test_unread_positions_match_a_walk_over_every_window(n, k, s, pb, pa, d, ceil_mode):
    if ceil_mode:                               # PyTorch: pooling padding at most half the kernel
        pb = pa = min(pb, k // 2)
    if _torch_output_length(n, k, s, pb, pa, d, ceil_mode) < 1:
        return
    runs = unread_runs(n, k, s, pb, pa, d, ceil_mode)
    never = _never_read(n, k, s, pb, pa, d, ceil_mode)
    assert [i for a, b in runs for i in range(a, b + 1)] == never
    summary = Unread(read_marks(n, k, s, pb, pa, d, ceil_mode), 0, n)    # the short form used for long inputs
    assert summary.count == len(never)
    if never:
        assert summary.first[0][0] == never[0] and summary.last[1] == never[-1]
    text = " ".join(explain_length(n, k, s, pb, pa, d, ceil_mode))
    assert ("never" in text) == bool(runs)      # the explanation mentions lost positions exactly when there are


def test_dilation_holes_and_few_windows():
    # 9 long, kernel 3, dilation 2 (taps 0, 2, 4), stride 2: windows at 0 and 2 read 0, 2, 4, 6, 8 only.
    lines = explain_length(9, 3, 2, dilation=2)
    assert any("dilation 2 leaves holes" in line and "input positions 1, 3, 5, 7 (of 0..8) are never read" in line
               for line in lines)
    # 5 long, kernel 2, stride 2: windows at 0 and 2 — both listed, not "0, 2, …, 2"; position 4 unread.
    line = next(line for line in explain_length(5, 2, 2) if "never covered" in line)
    assert "windows start at 0, 2 (padded coordinates) and the last ends at 3" in line
    assert coverage_note(5, 2, 2) == "input position 4 (of 0..4) is never covered by any window"
    assert coverage_note(6, 2, 2) == ""


def test_no_affine_norms_say_zero_params_once():
    assert "params = 0 (affine=False: no γ, β)" in explain_one([3, 4, 4], {"type": "batchnorm2d", "affine": False})
    text = explain_one([4, 4], {"type": "layernorm", "elementwise_affine": False})
    assert "params = 0 (elementwise_affine=False" in text and "⚠" not in text
