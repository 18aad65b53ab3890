"""Input that used to be coerced, crash or mislead (audit findings F6–F13) is refused with ONE clear line.

Every refusal is checked the same way: exit status 2 from the CLI (a ``LayerCalcError`` from the library), a
single line, no traceback and no "internal error", and the line names where (layer / option / field) and the
value received. The expected fragments are written by hand from the rule each finding states, not copied from
the program's output. Values that are legitimate (``3.0`` for 3, ``1e-5`` for an eps, YAML merge keys, Keras
names) are checked to keep working, with their figures derived by hand.
"""

import subprocess
import sys

import jsonschema
import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError, SpecError
from layercalc.cli import get_app
from layercalc.spec import MAX_DEPTH, parse_text

runner = CliRunner()

DEEP = 5000                     # far past Python's recursion limit (1000)
DEEP_YAML = "input: [1, 28, 28]\nlayers: [{type: relu, inputs: " + "[" * DEEP + "]" * DEEP + "}]\n"
DEEP_JSON = '{"input": [1], "layers": [{"type": "relu", "inputs": ' + "[" * DEEP + "]" * DEEP + "}]}"

FILES = {
    # F8
    "deep.yaml": DEEP_YAML,
    "deep.json": DEEP_JSON,
    "self.yaml": "input: [4]\nlayers: [{type: relu, inputs: &a [*a]}]\n",
    # F9
    "kbool.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 3, kernel_size: true}]\n",
    "padbool.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 2, kernel_size: 3, "
                    "padding: [[true, 1], [1, 1]]}]\n",
    "inputbool.yaml": "input: [true, 28, 28]\nlayers: [{type: relu}]\n",
    "inputstr.yaml": "input: ['1', '28', '28']\nlayers: [{type: relu}]\n",
    "kstr.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 3, kernel_size: '3'}]\n",
    "kfrac.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 3, kernel_size: 2.5}]\n",
    "ochuge.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 1.0e+30, kernel_size: 3}]\n",
    "batchbool.yaml": "input: [3]\nbatch: true\nlayers: [{type: relu}]\n",
    "biasint.yaml": "input: [1, 8, 8]\nlayers: [{type: conv2d, out_channels: 2, kernel_size: 3, bias: 0}]\n",
    "octal.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 8, kernel_size: 010}]\n",
    "base60.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 8, kernel_size: 1:30}]\n",
    # F10
    "lrnan.yaml": "input: [1, 28, 28]\nlayers: [{type: leaky_relu, negative_slope: .nan}]\n",
    "bninf.yaml": "input: [1, 28, 28]\nlayers: [{type: batchnorm2d, eps: .inf}]\n",
    "mominf.yaml": "input: [1, 28, 28]\nlayers: [{type: batchnorm2d, momentum: -.inf}]\n",
    "dupkey.yaml": "input: [1, 28, 28]\nlayers: [{repeat: 2, repeat: 3, type: relu}]\n",
    "dupkey.json": '{"input": [4], "layers": [{"repeat": 2, "repeat": 3, "type": "relu"}]}',
    # F11
    "bothalias.yaml": "input: [1, 28, 28]\nlayers: [{type: conv2d, filters: 2, out_channels: 3, kernel_size: 3}]\n",
    "bothstride.yaml": "input: [1, 28, 28]\nlayers: [{type: maxpool2d, kernel_size: 2, stride: 2, strides: 3}]\n",
    # F12
    "zpadneg.yaml": "input: [1, 28, 28]\nlayers: [{type: zero_pad, padding: -1}]\n",
    "zpadsame.yaml": "input: [1, 28, 28]\nlayers: [{type: zero_pad, padding: same}]\n",
    # F13
    "blockfloatname.yaml": "input: [1, 28, 28]\nblocks: {b: {layers: [{type: relu, name: 1.5}]}}\n"
                           "layers: [{block: b, name: x}]\n",
    "blocklistname.yaml": "input: [1, 28, 28]\nblocks: {b: {params: {n: 2}, layers: [{type: relu, name: $n}]}}\n"
                          "layers: [{block: b, name: x, args: {n: [1]}}]\n",
}

CASES = [
    # (arguments, stdin, fragments that must all appear in the one line)
    # --- F6: a JSON number that overflows to infinity, in every kind of integer option
    ("conv2d -i 1x28x28 --out-channels 32 -k [1e400]", None, ["--kernel-size", "'[1e400]'", "inf is not a whole"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 3 -s [1e400]", None, ["--stride", "'[1e400]'", "inf"]),
    ("conv2d -i [1,1e400,28] --out-channels 32 -k 3", None, ["--input", "'[1,1e400,28]'", "inf"]),
    ("adaptive_avgpool2d -i 3x8x8 --output-size [1e400,2]", None, ["--output-size", "'[1e400,2]'", "inf"]),
    ("reshape -i 3x4 --shape [-1e400]", None, ["--shape", "'[-1e400]'", "-inf"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 3 -p [[1e400,1],[1,1]]", None, ["--padding", "inf"]),
    # --- F8 / F10: non-finite floats named by the option
    ("leaky_relu -i 6 --negative-slope nan", None, ["leaky_relu", "--negative-slope", "got nan", "finite"]),
    ("batchnorm2d -i 3x4x4 --eps inf", None, ["batchnorm2d", "--eps", "got inf", "finite"]),
    ("batchnorm2d -i 3x4x4 --momentum nan", None, ["--momentum", "got nan", "finite"]),
    ("dropout -i 3 --p nan", None, ["--p", "got nan", "finite"]),
    ("leaky_relu -i 6 --negative-slope 1_0.5", None, ["--negative-slope", "'1_0.5'", "not a number"]),
    # --- F9: no truncation, no booleans, digits only
    ("conv2d -i [1,28,28.5] --out-channels 32 -k 3", None, ["--input", "'[1,28,28.5]'", "28.5 is not a whole"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k [2.9]", None, ["--kernel-size", "'[2.9]'", "2.9 is not a whole"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k [true]", None, ["--kernel-size", "'[true]'", "true is a boolean"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 3 -d [false]", None, ["--dilation", "false is a boolean"]),
    ("conv2d -i [true,28,28] --out-channels 32 -k 3", None, ["--input", "true is a boolean"]),
    ("conv2d -i 1_0x28x28 --out-channels 32 -k 3", None, ["--input", "'1_0x28x28'", "'1_0' is not a whole"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 1_0", None, ["--kernel-size", "'1_0'"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 3 -p [[true,1],[1,1]]", None,
     ["--padding", "[[True, 1], [1, 1]]", "True is a boolean"]),
    ("softmax -i 3x4 --dim 1_0", None, ["--dim", "'1_0'", "not a whole number"]),
    ("conv2d -i 1x28x28 --out-channels 32 -k 3 --batch 1_0", None, ["--batch", "'1_0'", "not an integer"]),
    ("size 1_0 -k 3", None, ["'N'", "'1_0' is not an integer"]),
    ("conv2d -i [] --out-channels 32 -k 3", None, ["--input", "'[]' is not a shape"]),
    ("summary kbool.yaml", None, ["kbool.yaml: layers[0] (conv2d)", "field 'kernel_size'", "got True",
                                  "True is a boolean, not a whole number"]),
    ("summary padbool.yaml", None, ["layers[0] (conv2d)", "field 'padding'", "got [[True, 1], [1, 1]]",
                                    "True is a boolean"]),
    ("summary inputbool.yaml", None, ["field 'input'", "got [True, 28, 28]", "True is a boolean"]),
    ("summary inputstr.yaml", None, ["field 'input'", "got ['1', '28', '28']", "'1' is a string"]),
    ("summary kstr.yaml", None, ["layers[0] (conv2d)", "field 'kernel_size'", "got '3'", "'3' is a string"]),
    ("summary kfrac.yaml", None, ["field 'kernel_size'", "got 2.5", "2.5 is not a whole number"]),
    ("summary ochuge.yaml", None, ["field 'out_channels'", "got 1e+30", "too large to be an exact whole number"]),
    ("summary batchbool.yaml", None, ["field 'batch'", "got True", "True is a boolean"]),
    ("summary biasint.yaml", None, ["layers[0] (conv2d)", "field 'bias'", "got 0", "not a boolean"]),
    ("summary octal.yaml", None, ["octal.yaml: invalid YAML at line 2", "010", "leading zero", "8"]),
    ("summary base60.yaml", None, ["base60.yaml: invalid YAML at line 2", "1:30", "base-60", "90"]),
    ("summary -", "input: [1, 28, 28]\nlayers: [{type: conv2d, out_channels: 3, kernel_size: true}]\n",
     ["<stdin>: layers[0] (conv2d)", "field 'kernel_size'", "got True"]),
    # --- F10: NaN and infinities in float fields; duplicate keys
    ("summary lrnan.yaml", None, ["layers[0] (leaky_relu)", "field 'negative_slope'", "got nan", "finite"]),
    ("summary bninf.yaml", None, ["layers[0] (batchnorm2d)", "field 'eps'", "got inf", "finite"]),
    ("summary mominf.yaml", None, ["layers[0] (batchnorm2d)", "field 'momentum'", "got -inf", "finite"]),
    ("summary dupkey.yaml", None, ["dupkey.yaml: invalid YAML at line 2", "duplicate key 'repeat'", "2", "3"]),
    ("summary dupkey.json", None, ["dupkey.json: invalid JSON", "duplicate key 'repeat'", "values 2 and 3"]),
    ("summary -", '{"input": [4], "layers": [{"type": "relu", "type": "relu"}]}',
     ["<stdin>: invalid YAML", "duplicate key 'type'"]),
    # --- F11: a field and its Keras name
    ("summary bothalias.yaml", None, ["layers[0] (conv2d)", "'out_channels' and 'filters'", "same field",
                                      "out_channels 3", "filters 2"]),
    ("summary bothstride.yaml", None, ["layers[0] (maxpool2d)", "'stride' and 'strides'", "stride 2", "strides 3"]),
    # --- F12: zero_pad says what it accepts, without pydantic's internals
    ("zero_pad -i 3x4x5 --padding same", None, ["zero_pad", "--padding", "got 'same'", "non-negative int",
                                                "[[before, after], ...]"]),
    ("zero_pad -i 3x4x5 --padding [[1,2],[3]]", None, ["zero_pad", "--padding", "[[1, 2], [3]]"]),
    ("summary zpadneg.yaml", None, ["layers[0] (zero_pad)", "field 'padding'", "got -1", "≥ 0", "non-negative int"]),
    ("summary zpadsame.yaml", None, ["layers[0] (zero_pad)", "field 'padding'", "got 'same'", "explicit amounts"]),
    # --- F13: a layer name inside a block
    ("summary blockfloatname.yaml", None, ["layers[0] 'x' (block 'b') layers[0] (relu)", "'name' must be a string",
                                           "got 1.5"]),
    ("summary blocklistname.yaml", None, ["layers[0] 'x' (block 'b') layers[0] (relu)", "'name' must be a string",
                                          "got [1]"]),
    # --- F8: nesting
    ("summary deep.yaml", None, ["deep.yaml: layers[0] (relu)", "field 'inputs'", f"more than {MAX_DEPTH} levels"]),
    ("summary deep.json", None, ["deep.json: invalid JSON", "nested too deeply"]),
    ("summary self.yaml", None, ["self.yaml: layers[0] (relu)", "field 'inputs'", "containing themselves"]),
    ("summary -", DEEP_YAML, ["<stdin>: layers[0] (relu)", "field 'inputs'", "nested more than"]),
    ("conv2d -i 1x28x28 --out-channels 3 -k " + "[" * DEEP + "]" * DEEP, None, ["--kernel-size", "nested too deeply"]),
]


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strict")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def assert_one_clear_line(result, fragments, context=""):
    assert result.exit_code == 2, (context, result.exit_code, result.stdout, result.stderr, result.exception)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    assert "internal error" not in err, err
    assert err.startswith("layercalc: error: ") and err.count("\n") == 1, err
    assert "constrained-int" not in err and "function-before" not in err, err    # no pydantic internals
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("command, stdin, fragments", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_exits_2_with_one_clear_line(command, stdin, fragments, spec_dir, monkeypatch):
    monkeypatch.chdir(spec_dir)
    result = runner.invoke(get_app(), command.split(" "), input=stdin)
    assert_one_clear_line(result, fragments, command)


# ----------------------------------------------------------------------------------------- F7: bytes on stdin

@pytest.mark.parametrize("command", ["summary", "verify", "run"])
def test_non_utf8_stdin_is_a_clean_read_error(command):
    result = runner.invoke(get_app(), [command, "-"], input=b"\xff\xfe\x00")
    # the same words a binary spec file gets: "cannot read" and the decoder's reason (byte 0xff at position 0)
    assert_one_clear_line(result, ["<stdin>: cannot read", "can't decode byte 0xff in position 0"], command)


def test_non_utf8_stdin_in_a_real_process():
    # The audit's crash came from the interpreter's own stdin (surrogateescape), which CliRunner does not use.
    code = "from layercalc.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "summary", "-"], input=b"\xff\xfe\x00", capture_output=True,
                          timeout=60, env={"PYTHONIOENCODING": "utf-8:surrogateescape", "PATH": ""})
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith("layercalc: error: <stdin>: cannot read:") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err


def test_text_that_is_not_unicode_is_refused_by_the_parser_too():
    # what surrogateescape decoding hands over: lone surrogates; the C YAML parser would raise UnicodeEncodeError
    with pytest.raises(SpecError, match=r"^<stdin>: cannot read: not UTF-8 text"):
        parse_text("\udcff\udcfe", "<stdin>")


# ------------------------------------------------------------------------------------------- library (F8–F13)

C28 = [1, 28, 28]


def load_error(spec) -> str:
    with pytest.raises(LayerCalcError) as info:
        layercalc.load(spec).analyze()
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("spec, fragments", [
    # integer fields: booleans, strings, fractions, huge floats; also inside lists and at the top level
    ({"input": C28, "layers": [{"type": "conv2d", "out_channels": True, "kernel_size": 3}]},
     ["layers[0] (conv2d)", "field 'out_channels'", "got True", "boolean"]),
    ({"input": C28, "layers": [{"type": "conv2d", "filters": "8", "kernel_size": 3}]},
     ["field 'filters'", "got '8'", "string"]),
    ({"input": C28, "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": [3, True]}]},
     ["field 'kernel_size'", "got [3, True]", "True is a boolean"]),
    ({"input": C28, "layers": [{"type": "maxpool2d", "pool_size": 2, "strides": "2"}]},
     ["layers[0] (maxpool2d)", "field 'strides'", "got '2'", "string"]),
    ({"input": C28, "layers": [{"type": "adaptive_avgpool2d", "output_size": [True, None]}]},
     ["field 'output_size'", "True is a boolean"]),
    ({"input": [6, 4, 4], "layers": [{"type": "groupnorm", "num_groups": 2.5}]},
     ["layers[0] (groupnorm)", "field 'num_groups'", "got 2.5", "not a whole number"]),
    ({"input": [3, 4], "layers": [{"type": "flatten", "start_dim": False}]},
     ["layers[0] (flatten)", "field 'start_dim'", "got False", "boolean"]),
    ({"input": [3, 4], "layers": [{"type": "softmax", "axis": "1"}]}, ["field 'axis'", "got '1'", "string"]),
    ({"input": [3, 4], "layers": [{"type": "reshape", "shape": [4, 3.5]}]}, ["field 'shape.1'", "got 3.5"]),
    ({"input": [3, 4, 4], "layers": [{"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2,
                                      "output_padding": True}]}, ["field 'output_padding'", "True is a boolean"]),
    ({"input": [3, 4], "layers": [{"type": "linear", "units": 2 ** 60 * 1.0}]},
     ["layers[0] (linear)", "field 'units'", "too large to be an exact whole number"]),
    ({"input": [3, 28.5], "layers": [{"type": "relu"}]}, ["field 'input'", "got [3, 28.5]", "28.5"]),
    ({"input": [3], "batch": "2", "layers": [{"type": "relu"}]}, ["field 'batch'", "got '2'", "string"]),
    # float fields: NaN and infinities, booleans
    ({"input": [3, 4], "layers": [{"type": "layernorm", "eps": float("inf")}]},
     ["layers[0] (layernorm)", "field 'eps'", "got inf", "finite"]),
    ({"input": [6, 4, 4], "layers": [{"type": "groupnorm", "num_groups": 2, "eps": float("nan")}]},
     ["layers[0] (groupnorm)", "field 'eps'", "got nan"]),
    ({"input": [3, 4], "layers": [{"type": "leaky_relu", "alpha": float("-inf")}]},
     ["layers[0] (leaky_relu)", "field 'alpha'", "got -inf", "finite"]),
    ({"input": [3, 4], "layers": [{"type": "dropout", "rate": True}]}, ["field 'rate'", "got True", "boolean"]),
    # on/off fields: true/false only
    ({"input": [3, 4, 4], "layers": [{"type": "maxpool2d", "kernel_size": 2, "ceil_mode": "yes"}]},
     ["layers[0] (maxpool2d)", "field 'ceil_mode'", "got 'yes'", "not a boolean"]),
    # F11, F12, F13 through the Python API
    ({"input": [3, 4], "layers": [{"type": "linear", "units": 2, "out_features": 5, "name": "fc"}]},
     ["layers[0] 'fc' (linear)", "'out_features' and 'units'", "out_features 5", "units 2"]),
    ({"input": [3, 4, 4], "layers": [{"type": "zero_pad", "padding": [[1, -2], [0, 0]]}]},
     ["layers[0] (zero_pad)", "field 'padding'", "got [[1, -2], [0, 0]]", "-2 must be ≥ 0"]),
    ({"input": [3, 4, 4], "blocks": {"b": {"layers": [{"type": "relu", "name": True}]}},
      "layers": [{"block": "b", "name": "x"}]},
     ["(block 'b') layers[0] (relu)", "'name' must be a string", "got True"]),
])
def test_library_refuses_with_one_line(spec, fragments):
    message = load_error(spec)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_deep_nesting_from_python_is_refused_not_a_recursion_error():
    value: list = []
    for _ in range(DEEP):
        value = [value]
    message = load_error({"input": [4], "layers": [{"type": "relu", "inputs": value}]})
    assert "layers[0] (relu): field 'inputs'" in message and f"more than {MAX_DEPTH} levels" in message


def test_block_expansion_walks_deep_values_without_recursion():
    from layercalc.blocks import _strings
    value: list = ["$x"]
    for _ in range(DEEP):
        value = [value]
    assert list(_strings(value)) == ["$x"]


def test_duplicate_key_message_names_both_values():
    with pytest.raises(SpecError) as info:
        parse_text("input: [4]\nlayers:\n  - {type: relu, name: a, name: b}\n", "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: invalid YAML at line 3")
    assert "duplicate key 'name'" in message and "a (line 3" in message and "b (line 3" in message


# ------------------------------------------------------------------------------------ what must keep working

def test_an_integral_float_is_the_same_whole_number():
    # conv2d 1 → 3 channels, 3×3, bias: 3·1·3·3 + 3 = 30 params; 28 − 3 + 1 = 26
    report = layercalc.load({"input": [1.0, 28, 28], "batch": 2.0,
                             "layers": [{"type": "conv2d", "out_channels": 3.0, "kernel_size": 3.0}]}).analyze()
    assert report.layers[0].params == 30
    assert report.layers[0].output_shape == [2, 3, 26, 26]


def test_integral_float_on_the_command_line():
    result = runner.invoke(get_app(), ["conv2d", "-i", "[1, 28.0, 28]", "--out-channels", "3", "-k", "[3.0]",
                                       "--json"])
    assert result.exit_code == 0, result.stderr
    import json
    entry = json.loads(result.stdout)
    assert entry["params"] == 30 and entry["input_shapes"] == [[1, 1, 28, 28]]
    assert entry["output_shape"] == [1, 3, 26, 26]


def test_numpy_numbers_from_python_callers():
    import numpy as np

    # NumPy integers and integral floats are the numbers they hold; a NumPy boolean is not a kernel size
    layer = layercalc.load({"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": np.int64(2),
                                                             "kernel_size": np.float32(3)}]}).layers[0]
    assert layer.out_channels == 2 and layer.kernel_size == (3, 3) and type(layer.kernel_size[0]) is int
    message = load_error({"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2,
                                                          "kernel_size": np.bool_(True)}]})
    assert "field 'kernel_size'" in message and "not a whole number" in message


def test_exponent_floats_without_a_dot_are_floats_in_yaml():
    data = parse_text("input: [4]\nlayers: [{type: batchnorm1d, eps: 1e-3, momentum: 2E-1}]\n", "s.yaml")
    assert data["layers"][0]["eps"] == 0.001 and data["layers"][0]["momentum"] == 0.2
    layer = layercalc.load(data).layers[0]
    assert layer.eps == 0.001 and layer.momentum == 0.2
    # quoted, it stays text (and a number field refuses it)
    assert parse_text("a: '1e-3'\n")["a"] == "1e-3"


def test_yaml_number_forms_that_mean_one_thing_still_load():
    # YAML 1.2 and YAML 1.1 (PyYAML) agree on these; `1_000` and `0b11` are text in YAML 1.2 and are refused
    # (tests/test_spec_reading.py)
    data = parse_text("a: 0x10\nb: 0\nc: -0\nf: 1.5e3\ng: -7\nh: true\ni: False\n")
    assert data == {"a": 16, "b": 0, "c": 0, "f": 1500.0, "g": -7, "h": True, "i": False}


def test_yaml_merge_keys_may_override_without_being_duplicates():
    text = ("input: [3, 10]\nlayers:\n"
            "  - &conv {type: conv1d, out_channels: 2, kernel_size: 3}\n"
            "  - {<<: *conv, kernel_size: 5}\n")
    report = layercalc.load(parse_text(text)).analyze()
    # conv1d 3 → 2, k 3: 10 − 3 + 1 = 8; then 2 → 2, k 5: 8 − 5 + 1 = 4; params 2·3·3 + 2 = 20 and 2·2·5 + 2 = 22
    assert [layer.output_shape for layer in report.layers] == [[1, 2, 8], [1, 2, 4]]
    assert [layer.params for layer in report.layers] == [20, 22]


def test_yaml_stays_safe():
    with pytest.raises(SpecError, match="invalid YAML"):
        parse_text("input: !!python/object/apply:os.system ['echo pwned']\nlayers: [{type: relu}]\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        parse_text("input: !!python/name:os.system\n")


def test_keras_names_alone_still_work():
    report = layercalc.load({"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": 1, "use_bias": False},
        {"type": "maxpool2d", "pool_size": 2}]}).analyze()
    # 4·1·3·3 = 36 params without bias; 26 → 13 after the 2×2 pool
    assert report.layers[0].params == 36 and report.layers[1].output_shape == [1, 4, 13, 13]


def test_block_layer_named_by_a_number_still_works():
    report = layercalc.load({"input": [4], "blocks": {"b": {"layers": [{"type": "relu", "name": 0}]}},
                             "layers": [{"block": "b", "name": "x"}]}).analyze()
    assert report.layers[0].name == "x.0"


def test_schema_says_integer_and_refuses_booleans_and_strings():
    schema = layercalc.schema()
    validator = jsonschema.Draft202012Validator(schema)
    conv = schema["$defs"]["Conv2d"]["properties"]
    assert {"minimum": 1, "type": "integer"} in conv["kernel_size"]["anyOf"]
    good = {"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3}]}
    assert list(validator.iter_errors(good)) == []
    for bad_layer in ({"type": "conv2d", "out_channels": 8, "kernel_size": True},
                      {"type": "conv2d", "out_channels": "8", "kernel_size": 3},
                      {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "bias": 0}):
        bad = {**good, "layers": [bad_layer]}
        assert list(validator.iter_errors(bad)), bad_layer         # the schema refuses it
        with pytest.raises(LayerCalcError):                          # and so does the loader
            layercalc.load(bad)
    assert list(validator.iter_errors({**good, "input": [True, 28, 28]}))
    with pytest.raises(LayerCalcError):
        layercalc.load({**good, "input": [True, 28, 28]})


def test_network_built_in_python_takes_input_and_batch_as_written():
    # the same rule as the spec path: `True` is not a size of 1 and "2" is not a batch of 2; 28.0 is 28. Python
    # callers get the library's one error type (issue 11), with the CLI's one-line message.
    with pytest.raises(LayerCalcError, match="True is a boolean, not a whole number"):
        layercalc.Network(input=[True, 28, 28], layers=[{"type": "relu"}])
    with pytest.raises(LayerCalcError, match="'2' is a string, not a whole number"):
        layercalc.Network(input=[1, 28, 28], batch="2", layers=[{"type": "relu"}])
    net = layercalc.Network(input=[1, 28.0, 28], batch=2.0, layers=[{"type": "relu"}])
    assert net.input == [1, 28, 28] and net.batch == 2 and net.analyze().layers[0].output_shape == [2, 1, 28, 28]


def test_numpy_booleans_and_decimals_from_python_callers_are_the_values_they_hold():
    import decimal

    import numpy as np

    # bias False: 2·3·3·3 = 54 weights; affine True: weight + bias of 2 channels = 4
    report = layercalc.load({"input": [3, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias": np.bool_(False)},
        {"type": "batchnorm2d", "eps": decimal.Decimal("0.001"), "affine": np.True_}]}).analyze()
    assert [layer.params for layer in report.layers] == [54, 4]
    with pytest.raises(SpecError, match=r"Decimal\('NaN'\) is not a finite number"):
        layercalc.load({"input": [3, 8, 8], "layers": [{"type": "batchnorm2d", "eps": decimal.Decimal("NaN")}]})
