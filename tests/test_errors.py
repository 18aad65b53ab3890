"""Bad input gets one clear line naming the layer, the field, the values and why — never a silent number."""

import pytest

import layercalc
from layercalc import GraphError, LayerCalcError, ShapeError, SpecError

C28 = [1, 28, 28]


def conv(**fields):
    return {"type": "conv2d", "out_channels": 8, "kernel_size": 3, **fields}


CASES = [
    # (input, layers, error class, fragments that must all appear in the message)
    (C28, [{"type": "conv2d", "out_channel": 32, "kernel_size": 3}], SpecError,
     ["layers[0] (conv2d)", "unknown field 'out_channel'", "did you mean 'out_channels'"]),
    (C28, [{"type": "conv2", "out_channels": 32, "kernel_size": 3}], SpecError,
     ["unknown layer type 'conv2'", "did you mean 'conv2d'"]),
    (C28, [conv(padding="full")], SpecError, ["field 'padding'", "'full'", "'same', 'valid'"]),
    (C28, [conv(kernel_size=0)], SpecError, ["field 'kernel_size'", "got 0"]),
    (C28, [conv(kernel_size=[3, 3, 3])], SpecError, ["kernel_size needs 1 or 2 values", "[3, 3, 3]"]),
    (C28, [conv(stride=-1)], SpecError, ["field 'stride'", "got -1"]),
    (C28, [conv(out_channels=6, groups=4)], SpecError, ["out_channels 6 is not divisible by groups 4"]),
    ([64, 3, 3], [{"type": "relu"}] * 3 + [conv(name="conv2", out_channels=32, kernel_size=5)], ShapeError,
     ["layers[3] 'conv2' (conv2d)", "kernel 5×5", "needs at least 5×5 input after padding, got 3×3",
      "input [1, 64, 3, 3]", "padding 0"]),
    ([3, 28, 28], [conv(groups=2, out_channels=8)], ShapeError, ["in_channels 3", "not divisible by groups 2"]),
    ([3, 28, 28], [conv(in_channels=1)], ShapeError, ["in_channels is 1 but the input [1, 3, 28, 28] has 3"]),
    ([3, 28, 28], [{"type": "linear", "out_features": 4, "in_features": 10}], ShapeError,
     ["in_features is 10", "has 28"]),
    ([3, 28, 28], [{"type": "conv1d", "out_channels": 4, "kernel_size": 3}], ShapeError,
     ["needs a 3-d input [N, C, L], got 4-d [1, 3, 28, 28]"]),
    ([3, 28, 28], [{"type": "maxpool2d", "kernel_size": 2, "padding": 2}], ShapeError,
     ["padding 2×2 must be at most half the kernel 2×2"]),
    ([3, 28, 28], [{"type": "reshape", "shape": [5, -1]}], ShapeError, ["2352", "not divisible by 5"]),
    ([3, 28, 28], [{"type": "conv_transpose2d", "out_channels": 3, "kernel_size": 3, "stride": 2,
                    "output_padding": 2}], SpecError, ["output_padding [2, 2] must be smaller than either stride"]),
    ([3, 28, 28], [{"kernel_size": 3}], SpecError, ["missing field 'type'"]),
    ([3, 28, 28], [conv(padding_mode="reflect", padding=28)], ShapeError, ["padding_mode 'reflect'", "28"]),
    ([3, 28, 28], [conv(padding_mode="mirror")], SpecError, ["field 'padding_mode'", "'mirror'"]),
    ([3, 28, 28], [{"type": "flatten", "start_dim": 5}], ShapeError, ["start_dim 5 is out of range"]),
    ([3, 28, 28], [{"type": "flatten", "start_dim": 3, "end_dim": 1}], ShapeError, ["comes after end_dim"]),
    ([3, 28, 28], [{"type": "softmax", "dim": 4}], ShapeError, ["dim 4 is out of range"]),
    ([3, 28, 28], [{"type": "layernorm", "normalized_shape": [27]}], ShapeError, ["normalized_shape [27]"]),
    ([3, 28, 28], [{"type": "groupnorm", "num_groups": 2}], ShapeError, ["not divisible by num_groups 2"]),
    ([3, 28, 28], [{"type": "batchnorm1d"}], ShapeError, ["needs a 2-d or 3-d input, got 4-d"]),
    ([3, 28, 28], [{"type": "batchnorm2d", "num_features": 4}], ShapeError, ["num_features is 4", "has 3"]),
    ([3, 5, 5], [{"type": "avgpool2d", "kernel_size": 7}], ShapeError, ["window 7×7", "got 5×5"]),
    ([3, 5, 5], [{"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 1, "padding": 3}], ShapeError,
     ["output size", "< 1"]),
    ([3, 8, 8], [{"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same",
                  "output_padding": 1}], ShapeError, ["output_padding", "'same'"]),
    ([3, 8, 8], [{"type": "global_avgpool"}, {"type": "global_avgpool"}], ShapeError, ["needs an input with spatial"]),
    ([3, 8, 8], [{"type": "dropout", "p": 1.5}], SpecError, ["field 'p'", "1.5"]),
    ([10], [{"type": "zero_pad", "padding": 1}], ShapeError, ["needs an input with spatial dims"]),
    ([3, 8, 8], [{"type": "zero_pad", "padding": [1, 2, 3]}], ShapeError, ["padding needs 1 or 2 values"]),
]


@pytest.mark.parametrize("input_shape, layers, error, fragments", CASES)
def test_bad_layer_gives_one_clear_line(input_shape, layers, error, fragments):
    with pytest.raises(error) as info:
        layercalc.load({"input": input_shape, "layers": layers}).analyze()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("spec, fragments", [
    ({"input": [3, 0, 28], "layers": [{"type": "relu"}]}, ["field 'input'", "[3, 0, 28]"]),
    ({"inputs": [3, 28, 28], "layers": [{"type": "relu"}]}, ["unknown field 'inputs'", "did you mean 'input'"]),
    ({"input": [3], "layers": "relu"}, ["field 'layers'"]),
    ({"input": [3], "layers": []}, ["field 'layers'"]),
    ({"input": [3], "layout": "NWHC", "layers": [{"type": "relu"}]}, ["field 'layout'", "'NWHC'"]),
    ({"input": [3], "batch": 0, "layers": [{"type": "relu"}]}, ["field 'batch'", "got 0"]),
])
def test_bad_spec_fields(spec, fragments):
    with pytest.raises(SpecError) as info:
        layercalc.load(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_spec_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="a spec must be a mapping"):
        layercalc.load(str(path))


def test_invalid_yaml_and_json_name_the_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("input: [1, 28\nlayers: []\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        layercalc.load(str(bad_yaml))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"input": [1, 28], }')
    with pytest.raises(SpecError, match=r"invalid JSON at line 1"):
        layercalc.load(str(bad_json))


def test_missing_file():
    with pytest.raises(SpecError, match="no such file"):
        layercalc.load("does/not/exist.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    # A YAML tag that would construct a Python object must be refused, not executed.
    path = tmp_path / "evil.yaml"
    path.write_text("input: !!python/object/apply:os.system ['echo pwned']\nlayers: [{type: relu}]\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        layercalc.load(str(path))


def test_every_error_is_a_layercalc_error():
    for cls in (SpecError, ShapeError, GraphError):
        assert issubclass(cls, LayerCalcError)


def test_a_missing_type_lists_every_type_not_only_the_families_loaded_so_far():
    # the families load lazily (a spec of convs imports no attention family): the message must still list every
    # registered type — it listed the 44 of the start-up families, leaving out e.g. batchnorm2d and lstm
    import subprocess
    import sys
    code = ("import layercalc\n"
            "try:\n"
            "    layercalc.load({'input': [16], 'layers': [{'repeat': 2, 'layers': []}]})\n"
            "except layercalc.LayerCalcError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "missing field 'type'" in out
    for type_name in ("batchnorm2d", "lstm", "multi_head_attention", "conv2d"):
        assert type_name in out, type_name
