"""Issue 11: the meant number or a clear refusal on every input, bounded work, one error type.

Each test targets one mechanism (how specs and options are read, how descriptions are built, how messages are
printed) with inputs of the kinds a hostile corpus holds; the expected figures are derived by hand in the test.
"""

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError, SpecError
from layercalc.cli import get_app
from layercalc.spec import MAX_DEPTH, MAX_SPEC_BYTES, parse_text

runner = CliRunner()


def cli(*args: str, stdin: str | None = None):
    return runner.invoke(get_app(), list(args), input=stdin)


def one_line_error(result, *fragments: str) -> str:
    """Exit 2, one line on stderr, no traceback, and every fragment in it."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    err = result.stderr
    assert err.startswith("layercalc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + result.stdout and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def process(args: list[str], stdin=None, timeout: float = 30) -> subprocess.CompletedProcess:
    """The real command in its own process (closed descriptors, /dev/full and /dev/zero need one)."""
    return subprocess.run([sys.executable, "-m", "layercalc", *args], stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------- one error type

def test_layercalc_error_is_a_value_error():
    assert issubclass(LayerCalcError, ValueError)


@pytest.mark.parametrize("build, fragments", [
    (lambda: layercalc.Network(batch=0, input=[1, 8], layers=[{"type": "relu"}]), ["field 'batch'", "got 0"]),
    (lambda: layercalc.Network(input="1x8x8", layers=[{"type": "relu"}]), ["field 'input'", "'1x8x8'"]),
    (lambda: layercalc.Conv2d(kernel_size=0, out_channels=4), ["(conv2d)", "field 'kernel_size'", "got 0"]),
    (lambda: layercalc.Linear(out_features=-3), ["(linear)", "field 'out_features'", "got -3"]),
    (lambda: layercalc.Network(input=[1, 8], layers=["relu"]), ["layers[0]", "'relu'"]),
    (lambda: layercalc.load(None), ["load: got NoneType"]),
    (lambda: layercalc.load(5), ["load: got int 5"]),
    (lambda: layercalc.load(b"input: [1]"), ["load: got bytes"]),
])
def test_python_callers_get_one_error_type_with_the_cli_line(build, fragments):
    with pytest.raises(LayerCalcError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_descriptions_cannot_be_changed_after_validation():
    net = layercalc.load("zoo:mnist_mlp")
    with pytest.raises(LayerCalcError, match="cannot set 'batch'"):
        net.batch = -4
    with pytest.raises(LayerCalcError, match="cannot set 'out_features'"):
        net.layers[0].out_features = -3
    # what was built is unchanged: 784·512 + 512 + 512·10 + 10 = 407,050
    assert net.analyze().totals.params == 784 * 512 + 512 + 512 * 10 + 10
    # a validated copy instead: batch 4 → four times the MACs (784·512 + 512·10 per example)
    assert net.replace(batch=4).analyze().totals.macs == 4 * (784 * 512 + 512 * 10)
    with pytest.raises(LayerCalcError, match="field 'batch'"):
        net.replace(batch=-4)
    conv = layercalc.Conv2d(out_channels=4, kernel_size=3)
    assert conv.replace(stride=2).stride == (2, 2)


def test_lists_edited_in_place_are_checked_before_use():
    net = layercalc.load({"input": [1, 8, 8], "layers": [{"type": "relu"}]})
    net.input[0] = -4
    with pytest.raises(LayerCalcError, match="field 'input'"):
        net.analyze()
    net = layercalc.load({"input": [1, 8, 8], "layers": [{"type": "relu"}]})
    net.layers.append("junk")
    with pytest.raises(LayerCalcError, match=r"layers\[1\]"):
        net.analyze()


# ------------------------------------------------------------------------------------------ YAML: plain data

@pytest.mark.parametrize("text, fragments", [
    ("a: !!set {5, 3}\n", ["!!set", "not plain data"]),
    ("a: !!omap [{x: 1}]\n", ["!!omap", "not plain data"]),
    ("a: !!pairs [{x: 1}]\n", ["!!pairs", "not plain data"]),
    ("a: !!binary aGVsbG8=\n", ["!!binary", "not plain data"]),
    ("a: 2026-11-30\n", ["!!timestamp", "not plain data", "quote"]),
    ("a: 1_0\n", ["1_0", "YAML 1.1", "10"]),
    ("a: 0b1000\n", ["0b1000", "YAML 1.1", "8"]),
    ("a: 1_000.5\n", ["1_000.5", "underscores"]),
    ("a: yes\n", ["yes", "YAML 1.1", "true or false"]),
    ("a: off\n", ["off", "true or false"]),
    ("a: " + "9" * 5000 + "\n", ["5,000 digits"]),
])
def test_yaml_beyond_plain_data_is_refused(text, fragments):
    with pytest.raises(SpecError) as info:
        parse_text(text, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: invalid YAML at line 1")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_set_in_a_layer_is_refused_not_read_in_hash_order():
    # `kernel_size: !!set {5, 3}` used to run as 3×5; `inputs: !!set {b, a}` took its order from the hash seed
    result = cli("summary", "-", stdin="input: [1, 8, 8]\nlayers:\n  - {type: conv2d, out_channels: 2, "
                                       "kernel_size: !!set {5, 3}}\n")
    one_line_error(result, "<stdin>: invalid YAML at line 3", "!!set")


def test_plain_yaml_forms_still_load():
    data = parse_text("a: true\nb: False\nc: 0x10\nd: 1e-3\ne: 'yes'\nf: '2026-11-30'\ng: ~\nh: 1.5\n")
    assert data == {"a": True, "b": False, "c": 16, "d": 0.001, "e": "yes", "f": "2026-11-30", "g": None, "h": 1.5}


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": ' + "9" * 5000 + "}"])
def test_json_numbers_are_json_numbers(text):
    with pytest.raises(SpecError, match="s.json: invalid JSON"):
        parse_text(text, "s.json")


def test_deep_nesting_gets_layercalcs_message_whatever_the_yaml_parser():
    # libyaml (PyYAML ≥ 6.0.4) refuses past 1,000 levels with its own words, before layercalc's composer sees
    # level 100 (its scanner reads ahead); the pure-Python parser has no such limit, so the composer finds it
    import yaml

    from layercalc import spec

    text = "input: [4]\nlayers:\n  - {type: relu, inputs: " + "[" * 2000 + "]" * 2000 + "}\n"
    with pytest.raises(spec._TooDeep) as info:
        yaml.load(text, Loader=spec._spec_loader(with_libyaml=False))
    assert info.value.path[:3] == ("layers", 0, "inputs")
    for depth in (150, 2000):                         # below and above libyaml's own limit
        text = "input: [4]\nlayers:\n  - {type: relu, inputs: " + "[" * depth + "]" * depth + "}\n"
        with pytest.raises(SpecError) as info:
            parse_text(text, "deep.yaml")
        assert str(info.value) == (f"deep.yaml: layers[0] (relu): field 'inputs': lists and mappings nested more "
                                   f"than {MAX_DEPTH} levels deep (or containing themselves); a spec never needs "
                                   f"that many")


# --------------------------------------------------------------------------------------- bounded reading

def test_reading_is_capped(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("input: [1, 8]\nlayers:\n" + "  - {type: relu}\n" * (MAX_SPEC_BYTES // 16 + 1))
    start = time.perf_counter()
    one_line_error(cli("summary", str(big)), "big.yaml: larger than 1 MiB")
    assert time.perf_counter() - start < 10          # refused before parsing: not a timing test, a hang guard


def test_dev_zero_and_endless_stdin_are_refused():
    result = process(["summary", "/dev/zero"])
    assert result.returncode == 2 and "larger than 1 MiB" in result.stderr and result.stderr.count("\n") == 1
    with open("/dev/zero", "rb") as zero:
        result = process(["summary", "-"], stdin=zero)
    assert result.returncode == 2 and "<stdin>: larger than 1 MiB" in result.stderr


def test_closed_stdin_is_a_clear_error():
    # closed before Python starts (sys.stdin is None) and closed under a running Python (reads fail with EBADF)
    result = subprocess.run(f"{sys.executable} -m layercalc summary - <&-", shell=True, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "layercalc: error: <stdin>: cannot read: standard input is closed\n"
    result = subprocess.run([sys.executable, "-c", "import os, sys; os.close(0); from layercalc.cli import main; "
                             "main(['summary', '-'])"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "layercalc: error: <stdin>: cannot read: standard input is closed\n"


def test_writing_to_a_full_disk_is_a_clear_error():
    with open("/dev/full", "w") as full:
        for args in (["summary", "zoo:resnet50"], ["size", "28", "-k", "3"]):
            result = subprocess.run([sys.executable, "-m", "layercalc", *args], stdout=full, stderr=subprocess.PIPE,
                                    text=True, timeout=60)
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith("layercalc: error: cannot write the output") and \
                result.stderr.count("\n") == 1, result.stderr


ALIAS_BOMB = "".join(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))


@pytest.mark.parametrize("text", [
    # top level: 9**8 = 43 million references to one list
    "bomb:\n  - &a0 [x, x, x, x, x, x, x, x, x]\n" + ALIAS_BOMB + "input: [1, 8]\nlayers: [{type: relu}]\n",
    # inside a layer mapping, where the block-reference walk used to visit every copy
    "input: [1, 8]\nlayers:\n  - type: relu\n    inputs:\n      - &a0 [x, x, x, x, x, x, x, x, x]\n"
    + ALIAS_BOMB.replace("  - ", "      - "),
])
def test_alias_bombs_are_refused_before_any_walk(text):
    start = time.perf_counter()
    with pytest.raises(SpecError, match="aliases expanded the spec holds more than 1,000,000 values"):
        layercalc.load(parse_text(text))
    assert time.perf_counter() - start < 10


def test_a_written_out_layer_list_has_the_repeat_limit():
    from layercalc.blocks import MAX_LAYERS

    layer = {"type": "relu"}
    start = time.perf_counter()
    with pytest.raises(SpecError, match=f"at most {MAX_LAYERS:,} layers"):
        layercalc.load({"input": [1, 8], "layers": [layer] * (MAX_LAYERS + 1)})
    assert time.perf_counter() - start < 10


def test_deeply_nested_blocks_are_an_error_not_a_recursion_error():
    from layercalc.blocks import MAX_BLOCK_NESTING

    depth = 400                                       # far past Python's recursion limit in frames
    blocks = {f"b{i}": {"layers": [{"block": f"b{i + 1}", "name": "x"}]} for i in range(depth)}
    blocks[f"b{depth}"] = {"layers": [{"type": "relu"}]}
    with pytest.raises(SpecError, match=f"blocks nested more than {MAX_BLOCK_NESTING} levels"):
        layercalc.load({"input": [1, 8], "blocks": blocks, "layers": [{"block": "b0", "name": "top"}]})
    # within the limit it works: 10 levels, one relu, named top.x.x.….relu_0
    blocks = {f"b{i}": {"layers": [{"block": f"b{i + 1}", "name": "x"}]} for i in range(10)}
    blocks["b10"] = {"layers": [{"type": "relu"}]}
    report = layercalc.load({"input": [1, 8], "blocks": blocks, "layers": [{"block": "b0", "name": "top"}]}).analyze()
    assert report.layers[0].name == "top." + "x." * 10 + "relu_0"


def test_block_arguments_that_multiply_are_refused():
    # each level passes its argument twice to the next: 2**30 copies of one list after 30 levels
    blocks = {f"b{i}": {"params": {"v": None}, "layers": [{"block": f"b{i + 1}", "name": "x",
                                                            "args": {"v": ["$v", "$v"]}}]} for i in range(30)}
    blocks["b30"] = {"params": {"v": None}, "layers": [{"type": "relu", "name": "r"}]}
    start = time.perf_counter()
    with pytest.raises(SpecError, match="block arguments copy more than 1,000,000 values"):
        layercalc.load({"input": [1, 8], "blocks": blocks,
                        "layers": [{"block": "b0", "name": "top", "args": {"v": [1] * 100}}]})
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------------------------- numbers past any size

@pytest.mark.parametrize("args, fragments", [
    (["conv2d", "-i", "1x28x28", "--out-channels", "9" * 5000, "-k", "3"], ["--out-channels", "5,000 digits"]),
    (["summary", "zoo:vgg16", "--batch", "9" * 5000], ["--batch", "5,000 digits"]),
    (["conv2d", "-i", "1x" + "9" * 5000, "--out-channels", "2", "-k", "3"], ["--input", "5,000 digits"]),
    (["size", "9" * 5000, "-k", "3"], ["5,000 digits"]),
    (["conv2d", "-i", "1x28x28", "--out-channels", "99999999999999999999", "-k", "3"],
     ["--out-channels", "larger than any size"]),
])
def test_huge_numbers_on_the_command_line_are_refused(args, fragments):
    err = one_line_error(cli(*args), *fragments)
    assert len(err) < 400


def test_huge_numbers_in_a_spec_are_refused():
    result = cli("summary", "-", stdin="input: [1, " + "9" * 5000 + "]\nlayers: [{type: relu}]\n")
    one_line_error(result, "5,000 digits")
    with pytest.raises(LayerCalcError, match="larger than any size"):
        layercalc.load({"input": [1, 10 ** 400], "layers": [{"type": "relu"}]})


def test_human_numbers_past_a_float():
    # 25 sizes of 10**18: a relu's output has 10**450 elements, more than a float can hold (~1.8e308)
    from layercalc.formatting import human
    assert human(10 ** 450) == "1e450" and human(123_456 * 10 ** 20) == "1.23e25" and human(4089184256) == "4.09 G"
    result = cli("summary", "-", "--numbers", "human",
                 stdin=json.dumps({"input": [10 ** 18] * 25, "layers": [{"type": "relu"}]}))
    assert result.exit_code == 0, result.stderr
    assert "1e450" in result.stdout


# ------------------------------------------------------------------------------------------- printed back

def test_control_characters_in_names_are_refused_and_shown_escaped():
    result = cli("summary", "-", stdin='input: [1, 8]\nlayers:\n  - {type: relu, name: "a\\e[2Jb"}\n')
    err = one_line_error(result, "field 'name'", "printable")
    assert "\x1b" not in err and "\\x1b[2J" in err
    result = cli("summary", "-", stdin='input: [1, 8]\nlayers:\n  - {type: "re\\e[31mlu"}\n')
    err = one_line_error(result, "unknown layer type")
    assert "\x1b" not in err


def test_a_huge_value_makes_a_short_error_line():
    with pytest.raises(LayerCalcError) as info:
        layercalc.load({"input": [1, 8], "layers": [{"type": "relu", "name": "n" * 10_000_000}]})
    message = str(info.value)
    assert len(message) < 400 and "at most 200 characters, got 10,000,000" in message
    result = cli("summary", "-", stdin=json.dumps({"input": [1, 8], "layers": [{"type": "x" * 1_000_000}]}))
    err = one_line_error(result, "unknown layer type")
    assert len(err) < 400 and "1,000,002 characters" in err


# --------------------------------------------------------------------------------- the meant number

def test_a_star_multiplies_within_one_size():
    # 28*28 = 784 inputs to 500 units: 784·500 + 500 = 392,500 params (the classic question)
    result = cli("linear", "-i", "28*28", "--out-features", "500", "--json")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["input_shapes"] == [[1, 784]] and entry["params"] == 28 * 28 * 500 + 500 == 392_500
    # VGG16's FC1: 7·7·512 = 25,088 inputs to 4,096 units: 25,088·4,096 + 4,096 = 102,764,544
    entry = json.loads(cli("linear", "-i", "7*7*512", "--out-features", "4096", "--json").stdout)
    assert entry["params"] == 7 * 7 * 512 * 4096 + 4096 == 102_764_544
    # x still separates dims, and * works inside one of them: [1, 784]
    entry = json.loads(cli("linear", "-i", "1x28*28", "--out-features", "10", "--json").stdout)
    assert entry["input_shapes"] == [[1, 1, 784]]


def test_a_dense_layer_on_a_multi_dimensional_input_says_what_it_does():
    result = cli("linear", "-i", "28x28", "--out-features", "500")
    assert result.exit_code == 0
    # applied to the last dim: 28·500 + 500 = 14,500 params, and the note says what was probably meant
    assert "14,500" in result.stdout
    assert "28 input features at each of 28 positions" in result.stdout and "28·28 = 784" in result.stdout
    assert "--input 28*28" in result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["summary", "zoo:resnet50", "--input", "224x224x3"], ["in_channels is 3", "has 224", "did you mean 3x224x224?"]),
    (["summary", "zoo:vgg16", "--input", "224x224x3"], ["in_channels is 3", "did you mean 3x224x224?"]),
    (["summary", "zoo:mobilenet_v2", "--input", "224x224x3"], ["did you mean 3x224x224?"]),
    (["summary", "zoo:mnist_cnn", "--input", "1x28x28"], ["NHWC", "did you mean 28x28x1?"]),
    (["summary", "zoo:mnist_mlp", "--input", "28x28"], ["in_features is 784", "28*28"]),
])
def test_zoo_networks_refuse_another_channel_count(args, fragments):
    one_line_error(cli(*args), *fragments)


def test_zoo_networks_still_take_other_image_sizes():
    # ResNet-50 is fully convolutional up to its adaptive pool: a 3×160×160 input keeps every parameter
    report = layercalc.load("zoo:resnet50")
    assert cli("summary", "zoo:resnet50", "--input", "3x160x160", "--format", "json").exit_code == 0
    assert report.analyze().totals.params == 25_557_032


def test_long_lists_are_refused_with_short_messages():
    # NumPy holds at most 64 dims (batch included): a 100,000-dim input or reshape is refused, and the message
    # shows a cut value, not 300,000 characters of it
    for spec in ({"input": [1] * 100_000, "layers": [{"type": "relu"}]},
                 {"input": [1, 8, 8], "layers": [{"type": "reshape", "target_shape": [1] * 100_000}]},
                 {"input": [1, 8, 8], "layers": [{"type": "conv2d", "out_channels": 1, "kernel_size": [1] * 100_000}]}):
        with pytest.raises(LayerCalcError) as info:
            layercalc.load(spec).analyze()
        assert len(str(info.value)) < 400, str(info.value)[:500]
    # 63 dims plus the batch still analyze: a relu on [1, 1, …, 2] keeps the shape
    report = layercalc.load({"input": [1] * 62 + [2], "layers": [{"type": "relu"}]}).analyze()
    assert report.layers[0].output_shape == [1] * 63 + [2]
