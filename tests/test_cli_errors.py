"""Bad input on the command line: exit status 2, ONE line on stderr naming the problem, never a traceback."""

import pytest
from typer.testing import CliRunner

from layercalc.cli import get_app

runner = CliRunner()

FILES = {
    "ok.yaml": "input: [3, 4, 4]\nlayers:\n  - {type: relu}\n",
    "badyaml.yaml": "input: [1, 28, 28]\nlayers:\n  - {type: conv2d, out_channels: 8, kernel_size: 3\n",
    "bad.json": '{"input": [1, 28, 28], "layers": [}',
    "list.yaml": "[1, 2]\n",
    "scalar.yaml": "42\n",
    "empty.yaml": "",
    "typo.yaml": "input: [1, 28, 28]\nlayers:\n  - {type: conv2d, out_channel: 8, kernel_size: 3}\n",
    "badtype.yaml": "input: [1, 28, 28]\nlayers:\n  - {type: conv2x, out_channels: 8, kernel_size: 3}\n",
    "wiring.yaml": "input: [1, 28, 28]\nlayers:\n  - {type: linear, out_features: 8, inputs: nope}\n",
    "shape.yaml": "input: [3, 4, 4]\nlayers:\n  - {name: big, type: conv2d, out_channels: 2, kernel_size: 5}\n",
    "noinput.yaml": "layers:\n  - {type: relu}\n",
    "cycle.yaml": "input: [4]\nlayers:\n  - {name: a, type: relu, inputs: b}\n  - {name: b, type: relu, inputs: a}\n",
    "notnpy.npy": "this is not an array",
    "conv.yaml": "input: [3, 8, 8]\nlayers:\n  - {type: conv2d, out_channels: 2, kernel_size: 5}\n",
}

CASES = [
    # (arguments, stdin, fragments that must all appear in the one-line message)
    # --- calculators: malformed values
    ("conv2d -i 1x28xa --filters 3 -k 3", None, ["--input", "'1x28xa'", "'a' is not a whole number"]),
    ("conv2d -i 1x0x28 --filters 3 -k 3", None, ["--input", "every size must be ≥ 1, got 0"]),
    ("conv2d -i  --filters 3 -k 3", None, ["--input", "is not a shape"]),
    ("conv2d -i 1x28x28 --filters 3 -k 0", None, ["conv2d", "--kernel-size", "got 0"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3x3x3", None, ["kernel_size needs 1 or 2 values", "[3, 3, 3]"]),
    ("conv2d -i 1x28x28 --filters 3 -k three", None, ["--kernel-size", "'three'"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 -p full", None, ["--padding", "'full'", "same, valid"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 -p [[1,2]", None, ["--padding", "not a valid list"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --padding-mode mirror", None, ["--padding-mode", "'mirror'", "reflect"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 -g 2", None, ["out_channels 3 is not divisible by groups 2"]),
    ("conv2d -i 3x28x28 --filters 4 -k 3 -g 2", None, ["in_channels 3", "not divisible by groups 2"]),
    ("conv2d -i 1x2x2 --filters 3 -k 3", None, ["conv2d: kernel 3×3", "got 2×2"]),
    ("conv2d -i 1x28x28 -k 3", None, ["missing option", "--out-channels"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --kernel 3", None, ["no such option", "--kernel"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --bias=yes", None, ["--bias", "does not take a value"]),
    ("conv2d -i 3x4x4 -i 3x4x4 --filters 2 -k 3", None, ["takes exactly 1 --input", "got 2"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --layout XYZ", None, ["--layout", "'XYZ'", "NHWC"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --dtype float8", None, ["--dtype", "'float8'", "float32"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --batch 0", None, ["--batch", "0 must be ≥ 1"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 --numbers big", None, ["--numbers", "'big'", "exact, human"]),
    ("conv2 -i 3", None, ["no such command 'conv2'", "conv2d"]),
    ("conv1d -i 3x4x4 --filters 2 -k 3", None, ["conv1d: needs a 3-d input [N, C, L]", "4-d [1, 3, 4, 4]"]),
    ("conv_transpose2d -i 3x4x4 --filters 2 -k 3 -s 2 --output-padding 2", None,
     ["output_padding [2, 2] must be smaller than either stride"]),
    ("linear -i 10 --out-features 5 --in-features 3", None, ["in_features is 3", "has 10"]),
    ("softmax -i 3x4 --dim 5", None, ["dim 5 is out of range"]),
    ("dropout -i 3 --p 1.5", None, ["--p", "1.5", "less than 1"]),
    ("dropout -i 3 --rate abc", None, ["--p", "'abc' is not a number"]),
    ("reshape -i 3x4 --shape 5x-1", None, ["shape [5, -1]", "12 is not divisible by 5"]),
    ("adaptive_avgpool2d -i 3x4x4 --output-size 2xabc", None, ["--output-size", "'2xabc'"]),
    ("maxpool2d -i 3x28x28 -k 2 -p 2", None, ["padding 2×2 must be at most half the kernel 2×2"]),
    ("batchnorm1d -i 3x4x4", None, ["batchnorm1d: needs a 2-d or 3-d input", "4-d"]),
    ("groupnorm -i 6x4x4 --num-groups 4", None, ["channels 6", "not divisible by num_groups 4"]),
    ("add -i 3x4", None, ["add: takes at least 2 --input shapes, got 1"]),
    ("add -i 3x4 -i 3x5", None, ["cannot add shapes [1, 3, 4], [1, 3, 5]", "sizes must match"]),
    ("concat -i 3x4x4 -i 3x5x5", None, ["cannot concat", "every other dim must match"]),
    # --- size / solve
    ("size 28", None, ["size", "missing option", "--kernel-size"]),
    ("size 0 -k 3", None, ["'N'", "0 must be ≥ 1"]),
    ("size abc -k 3", None, ["'N'", "'abc' is not an integer"]),
    ("size 28 -k 3 -p x", None, ["--padding", "'x' is not a whole number"]),
    ("size 28 -k 3 -p -1", None, ["--padding", "must be ≥ 0"]),
    ("size 3 -k 5", None, ["kernel span 5", "padded input 3"]),
    ("size 28 -k 3 --output-padding 1", None, ["--output-padding only applies with --transposed"]),
    ("size 28 -k 3 -t --output-padding 2", None, ["--output-padding 2 must be smaller than the stride 1"]),
    ("size 1 -k 3 -p 2 -s 1 -t", None, ["output length", "< 1"]),
    ("solve -i 0 -o 3", None, ["--input", "0 must be ≥ 1"]),
    ("solve -i 10", None, ["missing option", "--output"]),
    ("solve -i 10 -o 5 --output-padding 1", None, ["output_padding only applies to a transposed"]),
    # --- specs
    ("summary nothere.yaml", None, ["nothere.yaml: no such file"]),
    ("summary {dir}", None, ["is a directory"]),
    ("summary badyaml.yaml", None, ["badyaml.yaml: invalid YAML at line 4"]),
    ("summary bad.json", None, ["bad.json: invalid JSON at line 1 column 35"]),
    ("summary list.yaml", None, ["list.yaml: a spec must be a mapping", "got list"]),
    ("summary scalar.yaml", None, ["a spec must be a mapping", "got int"]),
    ("summary empty.yaml", None, ["a spec must be a mapping", "got NoneType"]),
    ("summary typo.yaml", None, ["typo.yaml: layers[0] (conv2d)", "unknown field 'out_channel'",
                                 "did you mean 'out_channels'"]),
    ("summary badtype.yaml", None, ["unknown layer type 'conv2x'", "did you mean 'conv2d'"]),
    ("summary wiring.yaml", None, ["unknown input 'nope'", "(known: input)"]),
    ("summary cycle.yaml", None, ["cycle"]),
    ("summary shape.yaml", None, ["shape.yaml: layers[0] 'big' (conv2d): kernel 5×5", "got 4×4"]),
    ("summary noinput.yaml", None, ["missing required field 'input'"]),
    ("summary -", "input: [3\n", ["<stdin>: invalid YAML"]),
    ("summary -", "- 1\n- 2\n", ["<stdin>: a spec must be a mapping", "got list"]),
    ("summary -", "input: [3, 4]\nlayers:\n  - {type: conv2d, out_channels: 2, kernel_size: 3}\n",
     ["<stdin>: layers[0]", "needs a 4-d input"]),
    ("summary zoo:resnet51", None, ["zoo:resnet51: no such model in the zoo", "resnet50"]),
    ("summary", None, ["summary", "missing argument 'SPEC'"]),
    ("summary ok.yaml extra", None, ["unexpected extra argument", "extra"]),
    ("summary ok.yaml --format xml", None, ["--format", "'xml'", "table, markdown, csv, json"]),
    ("summary ok.yaml --columns name,prams", None, ["--columns", "unknown column 'prams'", "did you mean 'params'"]),
    ("summary ok.yaml --depth 0", None, ["--depth", "0 must be ≥ 1"]),
    ("summary ok.yaml -f json --depth 1", None, ["--depth cannot be combined with --format json"]),
    ("summary ok.yaml -f csv --explain", None, ["--explain cannot be combined with --format csv"]),
    ("summary ok.yaml --input 0x3", None, ["--input", "every size must be ≥ 1"]),
    ("summary conv.yaml --input 3x2x2", None, ["conv.yaml: layers[0]", "kernel 5×5", "got 2×2"]),
    ("summary ok.yaml --dtype float8", None, ["--dtype", "'float8'"]),
    ("summary ok.yaml --batch -3", None, ["--batch", "must be ≥ 1"]),
    ("run ok.yaml --input nothere.npy", None, ["--input", "nothere.npy: no such file"]),
    ("run ok.yaml --input notnpy.npy", None, ["--input", "notnpy.npy", "not a readable .npy"]),
    ("run ok.yaml --dtype int8", None, ["--dtype", "'int8'", "float32, float64"]),
    ("verify nothere.yaml", None, ["nothere.yaml: no such file"]),
    ("zoo --numbers x", None, ["--numbers", "'x'"]),
    # --- option combinations and other forms
    ("relu -i 10 --json --explain", None, ["--explain cannot be combined with --json"]),
    ("size 28 -k 3 -p 1x2", None, ["--padding", "'1x2'", "one dimension"]),
    ("size 28 -k 3 --ceil -t", None, ["--ceil applies to pooling"]),
    ("size 28 -k 3 -s 0", None, ["--stride", "0 must be ≥ 1"]),
    ("solve -i 10 -o 5 -t --ceil", None, ["ceil mode applies to pooling"]),
    ("solve -i 10 -o 5 --max-kernel 0", None, ["--max-kernel", "0 must be ≥ 1"]),
    ("summary ok.yaml -f json --explain", None, ["--explain cannot be combined with --format json"]),
    ("summary ok.yaml --numbers big", None, ["--numbers", "'big'"]),
    ("summary ok.yaml --depth x", None, ["--depth", "'x' is not an integer"]),
    ("conv2d -i 1x28x28x --filters 3 -k 3", None, ["--input", "'1x28x28x' is not a shape"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 -d 0", None, ["--dilation", "got 0"]),
    ("conv2d -i 1x28x28 --filters 3 -k 3 -p [[1,2],[3]]", None, ["--padding", "[[1, 2], [3]]"]),
    ("maxpool1d -i 3x10 -k 2 --ceil-mode -p 2", None, ["padding 2 must be at most half the kernel 2"]),
    ("linear -i 10", None, ["missing option", "--out-features"]),
    ("verify ok.yaml --max-memory lots", None, ["--max-memory", "'lots'", "512M"]),
    ("schema extra", None, ["unexpected extra argument", "extra"]),
    ("--versio", None, ["no such option: --versio", "--version"]),
    # --- an option given twice: click would keep the last silently
    ("conv2d -i 1x28x28 --filters 2 --out-channels 3 -k 3", None,
     ["--filters and --out-channels set the same option (out_channels)", "give one of them"]),
    ("conv2d -i 1x28x28 --filters 2 -k 3 -k 5", None, ["option -k given twice"]),
    ("conv2d -i 1x28x28 --filters 2 -k 3 --kernel-size=5", None, ["-k and --kernel-size set the same option"]),
    ("linear -i 10 --out-features 3 --bias --no-bias", None, ["--bias and --no-bias set the same option (bias)"]),
    ("size 28 -k 3 -s 2 -s 3", None, ["option -s given twice"]),
    ("summary ok.yaml --columns ,", None, ["--columns", "no column named", "available: "]),
]


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("specs")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "adir").mkdir()
    return folder


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("command, stdin, fragments", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_exits_2_with_one_clear_line(command, stdin, fragments, spec_dir, monkeypatch):
    monkeypatch.chdir(spec_dir)
    args = [a.replace("{dir}", str(spec_dir / "adir")) for a in command.split(" ")]
    if command.startswith("conv2d -i  "):
        args = ["conv2d", "-i", "", "--filters", "3", "-k", "3"]
    result = runner.invoke(get_app(), args, input=stdin)
    assert result.exit_code == 2, (command, result.exit_code, result.stdout, result.stderr, result.exception)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    assert err.startswith("layercalc: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_debug_shows_the_traceback(spec_dir, monkeypatch):
    monkeypatch.chdir(spec_dir)
    result = runner.invoke(get_app(), ["summary", "shape.yaml", "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "layercalc: error: shape.yaml" in result.stderr


def test_internal_bug_exits_1_with_a_pointer_to_debug(monkeypatch):
    import layercalc.solving as solve_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(solve_module, "solve", broken)
    result = runner.invoke(get_app(), ["solve", "-i", "10", "-o", "5"])
    assert result.exit_code == 1
    assert result.stderr.startswith("layercalc: error: internal error: ZeroDivisionError: simulated bug")
    assert "--debug" in result.stderr and "Traceback" not in result.stderr


def test_no_arguments_prints_help():
    result = runner.invoke(get_app(), [])
    assert result.exit_code == 0 and "Usage: layercalc" in result.stdout
