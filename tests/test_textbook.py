"""Textbook and interview cases, each derived by hand in the test."""

import pytest

import layercalc
from layercalc import Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU


def analyze(input_shape, *layers, **spec):
    return layercalc.load({"input": list(input_shape), "layers": list(layers), **spec}).analyze()


def test_conv_3x3_on_mnist():
    # 28×28×1 through 32 filters of 3×3, stride 1, no padding: (28 − 3)/1 + 1 = 26;
    # params (3·3·1)·32 + 32 = 320; MACs = 26·26 positions · 32 filters · 9 weights = 194,688.
    r = analyze([1, 28, 28], {"type": "conv2d", "out_channels": 32, "kernel_size": 3})
    layer = r.layers[0]
    assert layer.output_shape == [1, 32, 26, 26]
    assert layer.params == 3 * 3 * 1 * 32 + 32 == 320
    assert layer.macs == 26 * 26 * 32 * 9 == 194_688
    assert layer.flops == 2 * 194_688 + 26 * 26 * 32          # + one bias add per output element
    assert layer.receptive_field == [3, 3]


def test_keras_mnist_cnn_shapes_and_params():
    # Keras' classic example: Conv 32·3×3 → MaxPool 2 → Conv 64·3×3 → MaxPool 2 → Conv 64·3×3 → Flatten → Dense 64
    # → Dense 10. Params: 320 + (9·32·64 + 64 = 18,496) + (9·64·64 + 64 = 36,928) + (576·64 + 64 = 36,928)
    # + (64·10 + 10 = 650) = 93,322.
    r = layercalc.load("examples/mnist_cnn.yaml").analyze()
    shapes = [layer.output_shape[1:] for layer in r.layers if layer.type in ("conv2d", "maxpool2d", "flatten")]
    assert shapes == [[32, 26, 26], [32, 13, 13], [64, 11, 11], [64, 5, 5], [64, 3, 3], [576]]
    assert [layer.params for layer in r.layers if layer.params] == [320, 18_496, 36_928, 36_928, 650]
    assert r.totals.params == 93_322
    # conv MACs: 26²·32·9 + 11²·64·288 + 3²·64·576 = 194,688 + 2,230,272 + 331,776; dense: 576·64 + 64·10
    assert r.totals.macs == 194_688 + 2_230_272 + 331_776 + 36_864 + 640 == 2_794_240


def test_keras_mnist_cnn_nhwc_gives_the_same_params_and_keras_shapes():
    r = analyze([28, 28, 1],
                {"type": "conv2d", "filters": 32, "kernel_size": 3}, {"type": "maxpool2d", "pool_size": 2},
                {"type": "conv2d", "filters": 64, "kernel_size": 3}, {"type": "maxpool2d", "pool_size": 2},
                {"type": "conv2d", "filters": 64, "kernel_size": 3}, {"type": "flatten"},
                {"type": "dense", "units": 64}, {"type": "dense", "units": 10}, layout="NHWC")
    assert r.layers[0].output_shape == [1, 26, 26, 32]
    assert r.layers[3].output_shape == [1, 5, 5, 64]
    assert r.layers[5].output_shape == [1, 576]
    assert r.totals.params == 93_322


def test_mnist_mlp():
    # 784·512 + 512 = 401,920; 512·10 + 10 = 5,130; total 407,050.
    r = layercalc.load("examples/mnist_mlp.yaml").analyze()
    assert r.totals.params == 784 * 512 + 512 + 512 * 10 + 10 == 407_050
    assert r.totals.macs == 784 * 512 + 512 * 10 == 406_528          # fvcore's and thop's total


def test_dense_784_to_500():
    r = analyze([28 * 28], {"type": "dense", "units": 500})
    assert r.totals.params == 28 * 28 * 500 + 500 == 392_500


def test_vgg16_first_dense_layer():
    # 7·7·512 = 25,088 inputs → 4,096 units: 25,088·4,096 + 4,096 = 102,764,544.
    r = analyze([512, 7, 7], {"type": "flatten"}, {"type": "linear", "out_features": 4096})
    assert r.layers[0].output_shape == [1, 25_088]
    assert r.layers[1].params == 25_088 * 4_096 + 4_096 == 102_764_544


def test_same_max_pooling_nhwc():
    # Keras: [28, 28, 32] through 2×2 max pooling, stride 2, SAME → ceil(28/2) = 14; no padding needed.
    r = analyze([28, 28, 32], {"type": "maxpool2d", "pool_size": 2, "strides": 2, "padding": "same"}, layout="NHWC")
    assert r.layers[0].output_shape == [1, 14, 14, 32]


def test_same_padding_with_stride_2_follows_keras():
    # 224 through a 7×7 conv, stride 2, SAME: out = ceil(224/2) = 112; total padding (112−1)·2 + 7 − 224 = 5,
    # 2 before and the odd pixel after (3) — TensorFlow's rule.
    r = analyze([3, 224, 224], {"type": "conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": "same"})
    layer = r.layers[0]
    assert layer.output_shape == [1, 64, 112, 112]
    assert "H (2, 3), W (2, 3)" in layer.notes[0]
    assert any("PyTorch refuses" in n for n in layer.notes)


def test_valid_padding_is_zero_padding():
    r = analyze([3, 32, 32], {"type": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": "valid"})
    assert r.layers[0].output_shape == [1, 8, 28, 28]          # 32 − 5 + 1


def test_uneven_stride_floors_and_names_the_uncovered_border():
    # 28 through a 3×3 conv, stride 2: (28 − 3)/2 = 12.5 → 12, + 1 = 13 windows starting at 0, 2, …, 24;
    # the last window ends at 26, so row/column 27 is never read.
    r = analyze([1, 28, 28], {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2})
    layer = r.layers[0]
    assert layer.output_shape == [1, 4, 13, 13]
    assert len(layer.notes) == 2
    assert all("never read" in n and "27" in n for n in layer.notes)


def test_no_border_note_when_the_stride_divides():
    r = analyze([1, 28, 28], {"type": "maxpool2d", "kernel_size": 2})
    assert r.layers[0].output_shape == [1, 1, 14, 14]
    assert r.layers[0].notes == []


def test_ceil_mode_pooling_adds_a_window():
    # 13 through 2×2/2: floor((13 − 2)/2) + 1 = 6; ceil mode: ceil(11/2) + 1 = 7 (the 7th window starts at 12, in
    # the input) — GoogLeNet's pools.
    r = analyze([8, 13, 13], {"type": "maxpool2d", "kernel_size": 2, "ceil_mode": True})
    assert r.layers[0].output_shape == [1, 8, 7, 7]
    assert "ceil_mode" in r.layers[0].notes[0]


def test_resnet_stem_and_receptive_field():
    # conv 7×7/2 pad 3: 224 → 112, RF 7, jump 2; maxpool 3×3/2 pad 1: 112 → 56, RF 7 + 2·2 = 11, jump 4.
    r = analyze([3, 224, 224],
                {"type": "conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3, "bias": False},
                {"type": "batchnorm2d"}, {"type": "relu"},
                {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1})
    conv, bn, _, pool = r.layers
    assert conv.output_shape == [1, 64, 112, 112] and conv.params == 7 * 7 * 3 * 64 == 9_408
    assert conv.macs == 112 * 112 * 64 * 147 == 118_013_952
    assert bn.params == 128 and bn.buffers == 128                # γ, β learnable; running mean, var buffers
    assert pool.output_shape == [1, 64, 56, 56]
    assert (conv.receptive_field, conv.jump) == ([7, 7], [2.0, 2.0])
    assert (pool.receptive_field, pool.jump) == ([11, 11], [4.0, 4.0])


def test_dilated_conv_receptive_field():
    # Three 3×3 convs with dilation 1, 2, 4 (stride 1): RF 3, 3 + 2·2 = 7, 7 + 2·4 = 15.
    r = analyze([1, 64, 64], *({"type": "conv2d", "out_channels": 1, "kernel_size": 3, "dilation": d, "padding": d}
                               for d in (1, 2, 4)))
    assert [layer.receptive_field for layer in r.layers] == [[3, 3], [7, 7], [15, 15]]
    assert all(layer.output_shape == [1, 1, 64, 64] for layer in r.layers)


def test_depthwise_separable_conv():
    # Depthwise 3×3 on 32 channels: 32·9 weights (no bias); pointwise 32→64: 32·64. MACs per 112² position.
    r = analyze([32, 112, 112],
                {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1, "groups": 32, "bias": False},
                {"type": "conv2d", "out_channels": 64, "kernel_size": 1, "bias": False})
    dw, pw = r.layers
    assert dw.params == 32 * 9 and pw.params == 32 * 64
    assert dw.macs == 112 * 112 * 32 * 9 and pw.macs == 112 * 112 * 64 * 32


def test_transposed_conv_counts_on_input_positions():
    # 7×7×64 → ConvTranspose 32·3×3, stride 2, padding 1, output_padding 1: (7−1)·2 − 2 + 3 + 1 = 14.
    # Each of the 7·7·64 input values is multiplied by 32·9 weights: 7·7·64·32·9 = 903,168 MACs
    # (not 14·14·32·64·9 = 3,612,672: 4× too many, counters that count on output positions get this wrong).
    r = analyze([64, 7, 7], {"type": "conv_transpose2d", "out_channels": 32, "kernel_size": 3, "stride": 2,
                             "padding": 1, "output_padding": 1})
    layer = r.layers[0]
    assert layer.output_shape == [1, 32, 14, 14]
    assert layer.params == 64 * 32 * 9 + 32
    assert layer.macs == 7 * 7 * 64 * 32 * 9 == 903_168


def test_linear_on_sequence_applies_to_last_dim():
    # [N=2, L=10, F=16] → 32 features: 2·10 rows · 16·32 MACs.
    r = analyze([10, 16], {"type": "linear", "out_features": 32}, batch=2)
    assert r.layers[0].output_shape == [2, 10, 32]
    assert r.layers[0].macs == 2 * 10 * 16 * 32
    assert r.layers[0].params == 16 * 32 + 32


def test_batch_scales_macs_not_params():
    one = analyze([3, 32, 32], {"type": "conv2d", "out_channels": 16, "kernel_size": 3})
    eight = analyze([3, 32, 32], {"type": "conv2d", "out_channels": 16, "kernel_size": 3}, batch=8)
    assert eight.totals.params == one.totals.params
    assert eight.totals.macs == 8 * one.totals.macs
    assert eight.layers[0].output_shape == [8, 16, 30, 30]


def test_python_api_builds_the_same_network():
    net = Network(input=[1, 28, 28], layers=[
        Conv2d(out_channels=32, kernel_size=3), ReLU(), MaxPool2d(kernel_size=2), Flatten(), Linear(out_features=10)])
    r = net.analyze()
    assert r.layers[-1].params == 32 * 13 * 13 * 10 + 10
    assert r.layers[-1].output_shape == [1, 10]


def test_memory_figures():
    # float32: 4 bytes; conv output 32·26·26 = 21,632 elements; params 320 → 1,280 bytes.
    r = analyze([1, 28, 28], {"type": "conv2d", "out_channels": 32, "kernel_size": 3})
    assert r.layers[0].activation_bytes == 32 * 26 * 26 * 4
    assert r.layers[0].param_bytes == 320 * 4
    half = analyze([1, 28, 28], {"type": "conv2d", "out_channels": 32, "kernel_size": 3}, dtype="float16")
    assert half.layers[0].activation_bytes == 32 * 26 * 26 * 2


def test_huge_inputs_stay_exact_ints():
    # A linear layer on 10¹² rows: the count exceeds 2⁶³ and must stay an exact int.
    r = analyze([10**12, 4096], {"type": "linear", "out_features": 4096, "bias": False}, batch=10**6)
    assert r.totals.macs == 10**6 * 10**12 * 4096 * 4096
    assert isinstance(r.totals.macs, int) and r.totals.macs > 2**63


@pytest.mark.parametrize("kind, per_element", [("relu", 1), ("relu6", 2), ("sigmoid", 3), ("hardswish", 5),
                                               ("softmax", 5), ("identity", 0)])
def test_elementwise_flops_follow_the_documented_table(kind, per_element):
    r = analyze([10, 4, 4], {"type": kind})
    assert r.layers[0].flops == per_element * 160
    assert r.layers[0].macs == 0


def test_same_padding_note_names_each_side():
    # TF/Keras SAME, 28 → ceil(28/2) = 14; total padding (14 − 1)·2 + 3 − 28 = 1, the odd pixel goes after
    report = layercalc.load({"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": "same"}]}).analyze()
    assert report.layers[0].output_shape == [1, 1, 14, 14]
    assert "'same' padding applied (before, after): H (0, 1), W (0, 1)" in report.layers[0].notes


def test_stride_wider_than_kernel_says_which_positions_fall_between_windows():
    # kernel 2, stride 4 on 30 inputs: windows start at 0, 4, …, 28 and read {w, w+1}; 2–3, 6–7, …, 26–27 are skipped
    report = layercalc.load({"input": [1, 30], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 2, "stride": 4}]}).analyze()
    assert report.layers[0].output_shape == [1, 1, 8]              # floor((30 − 2) / 4) + 1
    (note,) = report.layers[0].notes
    assert "2..3, 6..7" in note and "26..27 (14 in all)" in note   # 7 gaps of 2 positions


def test_dilation_holes_that_no_window_fills_are_reported():
    # kernel 3, dilation 2, stride 2 on 9 inputs: every window reads even positions only
    report = layercalc.load({"input": [1, 9], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "stride": 2, "dilation": 2}]}).analyze()
    assert report.layers[0].output_shape == [1, 1, 3]              # floor((9 − 5) / 2) + 1
    assert any("1, 3, 5, 7 (4 in all)" in note for note in report.layers[0].notes)


def test_overlapping_windows_leave_no_gap_note():
    report = layercalc.load({"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2}]}).analyze()
    assert not any("between the windows" in note for note in report.layers[0].notes)
    assert any("input row 27 (of 0..27) is never read" in note for note in report.layers[0].notes)   # the tail: row 27 only


def test_a_single_dilated_window_leaves_its_holes_unread():
    # kernel 3, dilation 2, stride 1 on 5 inputs: one window (5 − 4 = 1 position) with taps 0, 2, 4
    report = layercalc.load({"input": [1, 5], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "dilation": 2}]}).analyze()
    assert report.layers[0].output_shape == [1, 1, 1]
    assert any("input positions 1, 3 (2 in all)" in note for note in report.layers[0].notes)
