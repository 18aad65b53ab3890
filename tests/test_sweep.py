"""Sweeps (issue 21 §4): the totals at several input sizes or batch sizes in one call — `layercalc.sweep.sweep`,
`summary`/`chart` with `--input 512,1024`, `--batch 1,8,32`, `--sweep [AXIS=]LIST`.

Each row must be the analysis of the network at that one value (compared with a separate `analyze()` and a
separate `summary -f json`), and the growth with the sequence length is checked against a hand derivation of
attention's FLOPs (docs/conventions.md, "Attention"). The reading rules of a comma list (a shape, a number with
thousands separators, a sweep) are checked both ways, and every text that reads two ways is refused in one line.
"""

import json

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc.cli import get_app
from layercalc.errors import SpecError
from layercalc.report import Totals
from layercalc.sweep import FIGURES, MAX_VALUES, sweep

runner = CliRunner()

#: a language model of two layers whose FLOPs are derived by hand below: token ids → 32 features → self-attention
TINY_LM = {"name": "tiny_lm", "input": [8], "layers": [
    {"type": "embedding", "num_embeddings": 50, "embedding_dim": 32},
    {"type": "multi_head_attention", "num_heads": 4}]}


def invoke(*args):
    return runner.invoke(get_app(False), [*args])


# ------------------------------------------------------------------------------------------- rows = single analyses

@pytest.mark.parametrize("source, over, values, field", [
    ("zoo:gpt2", "input", [64, 128, 1024], "input"),
    ("zoo:gpt2", "batch", [1, 3, 8], "batch"),
    ("zoo:resnet18", "input", [[3, 224, 224], [3, 160, 192]], "input"),
    ("zoo:resnet18", "batch", [2, 5], "batch"),
])
def test_each_row_is_the_analysis_at_that_value(source, over, values, field):
    net = layercalc.load(source)
    result = sweep(net, values, over=over)
    assert [row.value for row in result.rows] == values
    for value, row in zip(values, result.rows):
        alone = net.replace(**{field: value if isinstance(value, list) or field == "batch" else [value]}).analyze()
        assert row.totals.model_dump() == alone.totals.model_dump()
        assert row.input_shape == alone.input_shape and row.batch == alone.batch


def test_attention_flops_grow_as_derived_by_hand():
    # embedding: a lookup, 0 FLOPs. multi_head_attention, E = 32, H = 4 heads of d = 8, L tokens, batch 1:
    #   projections q, k, v, out: 4·L·E² MACs → 2·4·L·E² FLOPs, + 4·L·E bias adds
    #   QKᵀ and A·V: H·L²·(d + d) MACs → 4·H·L²·d FLOPs; scaling 1 and softmax 5 per score: 6·H·L²
    #   FLOPs(L) = 8·L·32² + 4·L·32 + 4·L²·(4·8 + 6) = 8,320·L + 152·L²
    result = sweep(layercalc.load(TINY_LM), [8, 16, 24, 100])
    for row in result.rows:
        length = row.value
        assert row.totals.flops == 8320 * length + 152 * length ** 2
        assert row.tokens == length
        assert row.per_token("flops") == 8320 + 152 * length           # per token: linear in L
    # the step between two lengths, exactly: FLOPs(24) − FLOPs(16) = 8,320·8 + 152·(24² − 16²)
    assert result.rows[2].totals.flops - result.rows[1].totals.flops == 8320 * 8 + 152 * (24 ** 2 - 16 ** 2)


def test_gpt2_attention_is_the_quadratic_term():
    # GPT-2 small: 12 layers of 12 heads of 64. Only attention's scores grow as L²: per layer and head, QKᵀ and
    # A·V are (64 + 64) MACs per score, and a score costs 2·128 + 1 (scale) + 5 (softmax) = 262 FLOPs. Everything
    # else is linear in L, so the second difference at L = 256, 512, 768 is 2·Δ²·(the L² coefficient):
    result = sweep(layercalc.load("zoo:gpt2"), [256, 512, 768])
    flops = [row.totals.flops for row in result.rows]
    macs = [row.totals.macs for row in result.rows]
    assert flops[0] + flops[2] - 2 * flops[1] == 2 * 256 ** 2 * (12 * 12 * 262) == 4_945_084_416
    assert macs[0] + macs[2] - 2 * macs[1] == 2 * 256 ** 2 * (12 * 12 * 128)


def test_a_batch_sweep_is_linear_and_per_token_is_constant():
    result = sweep(layercalc.load("zoo:gpt2").replace(input=[64]), [1, 4], over="batch")
    one, four = result.rows
    for key in ("macs", "flops", "activation_bytes", "peak_activation_bytes"):
        assert getattr(four.totals, key) == 4 * getattr(one.totals, key)
    assert four.totals.params == one.totals.params
    assert one.tokens == 64 and four.tokens == 256
    assert one.per_token("flops") == four.per_token("flops")


def test_no_tokens_no_per_token_figures():
    result = sweep(layercalc.load("zoo:resnet18"), [1, 2], over="batch")
    assert all(row.tokens is None for row in result.rows)
    assert not any(key.endswith("_per_token") for key, _, _ in result.columns())
    assert "per_token" not in result.to_dict()["rows"][0]


def test_another_input_is_swept_by_its_name():
    spec = {"input": [6, 16], "layers": [
        {"type": "extra_input", "name": "memory", "shape": [10, 16]},
        {"type": "multi_head_attention", "num_heads": 2, "inputs": ["input", "memory"]}]}
    net = layercalc.load(spec)
    result = sweep(net, [[10, 16], [20, 16]], over="memory")
    for value, row in zip([10, 20], result.rows):
        layers = [net.layers[0].replace(shape=[value, 16]), net.layers[1]]
        assert row.totals.model_dump() == net.replace(layers=layers).analyze().totals.model_dump()
    assert result.rows[1].totals.macs > result.rows[0].totals.macs
    with pytest.raises(SpecError, match="is not one of input, batch, memory"):
        sweep(net, [1], over="decoder")


def test_the_network_is_not_read_again_per_value(monkeypatch):
    import layercalc.sources as sources
    import layercalc.spec as spec
    net = layercalc.load("zoo:gpt2")

    def refuse(*args, **kwargs):
        raise AssertionError("the sweep read a source again")
    monkeypatch.setattr(sources, "load", refuse)
    monkeypatch.setattr(spec, "from_data", refuse)
    assert len(sweep(net, [16, 32, 48]).rows) == 3


@pytest.mark.parametrize("values, over, message", [
    ([], "input", "empty list"),
    (list(range(1, MAX_VALUES + 2)), "batch", f"at most {MAX_VALUES}"),
    ([0], "batch", "whole number ≥ 1"),
    ([True], "batch", "whole number ≥ 1"),
    ([2.5], "input", "whole number ≥ 1"),
    ([224], "input", "give each value as a whole shape"),
    ([[3, 224, 224]], "depth", "is not one of input, batch"),
])
def test_bad_sweeps_are_one_line(values, over, message):
    net = layercalc.load("zoo:resnet18")
    with pytest.raises(SpecError, match=message) as info:
        sweep(net, values, over=over)
    assert "\n" not in str(info.value)


def test_a_value_the_network_cannot_take_names_the_value():
    with pytest.raises(layercalc.ShapeError, match=r"^sweep over input at 2,048: .*1024 positions"):
        sweep(layercalc.load("zoo:gpt2"), [512, 2048])


def test_figures_are_totals_fields():
    # a figure is one line of FIGURES naming a Totals field; the JSON holds every field whatever FIGURES lists
    assert {f.key for f in FIGURES} <= set(Totals.model_fields)
    data = sweep(layercalc.load(TINY_LM), [8, 16]).to_dict()
    for row in data["rows"]:
        assert set(row["totals"]) == set(Totals.model_fields)


# --------------------------------------------------------------------------------------------------- reading rules

@pytest.mark.parametrize("args, values", [
    (["-i", "512,1024"], [512, 1024]),                  # a comma list that is no grouped number: a sweep
    (["-i", "16,32,64"], [16, 32, 64]),
    (["--sweep", "128,256"], [128, 256]),               # the explicit form: commas always separate values
    (["--sweep", "input=128,256"], [128, 256]),
])
def test_input_lists_of_a_token_input_are_sweeps(args, values):
    result = invoke("summary", "zoo:gpt2", *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["over"] == "input" and data["values"] == values
    for value, row in zip(values, data["rows"]):
        alone = json.loads(invoke("summary", "zoo:gpt2", "-i", str(value), "-f", "json").stdout)
        assert row["totals"] == alone["totals"] and row["input_shape"] == alone["input_shape"]


@pytest.mark.parametrize("args, shape", [
    (["-i", "25,088"], [1, 25088]),                     # 088 is no size: one number (issue 20), as before
    (["-i", "1,000"], [1, 1000]),
    (["-i", "2048"], [1, 2048]),
])
def test_grouped_numbers_stay_numbers(args, shape):
    spec = {"input": [100], "layers": [{"type": "linear", "out_features": 3}]}
    net = json.dumps(spec)
    result = runner.invoke(get_app(False), ["summary", "-", *args, "-f", "json"], input=net)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["input_shape"] == shape


def test_a_shaped_input_keeps_comma_shapes():
    result = invoke("summary", "zoo:mnist_cnn", "-i", "32,32,1", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["input_shape"] == [1, 32, 32, 1]


@pytest.mark.parametrize("args, fix", [
    (["-i", "128,256"], "write 128256 for the number or --sweep 128,256 for the sweep"),
    (["-i", "1,024,2,048"], "'024' starts with 0"),
    (["--batch", "128,256"], "write 128256 for the number or --sweep batch=128,256 for the sweep"),
    (["-i", "512,1024", "--batch", "1,8"], "one sweep at a time"),
    (["--sweep", "batch=1,8", "--batch", "4"], "give one of them"),
    (["--sweep", "=1,8"], "name the axis"),
    (["--sweep", "1,,8"], "values separated by commas"),
    (["-i", "512,1024", "--depth", "1"], "cannot be combined with a sweep"),
])
def test_what_reads_two_ways_or_cannot_be_read_is_one_line(args, fix):
    result = invoke("summary", "zoo:gpt2", *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and fix in result.stderr


def test_shape_sweeps_and_ambiguous_shape_lists():
    result = invoke("summary", "zoo:resnet18", "-i", "3x224x224,3x160x160", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["values"] == [[3, 224, 224], [3, 160, 160]]
    refused = invoke("summary", "zoo:resnet18", "-i", "3x2,240x224")    # 3×2240×224, or two shapes
    assert refused.exit_code == 2 and "--sweep 3x2,240x224 for the sweep" in refused.stderr


def test_batch_lists_and_grouped_batches():
    swept = json.loads(invoke("summary", "zoo:gpt2", "-i", "32", "--batch", "1,8,32", "-f", "json").stdout)
    assert swept["over"] == "batch" and [r["batch"] for r in swept["rows"]] == [1, 8, 32]
    grouped = invoke("summary", "zoo:mnist_mlp", "--batch", "1,024", "-f", "json")
    assert grouped.exit_code == 0 and json.loads(grouped.stdout)["batch"] == 1024


def test_commands_of_one_network_refuse_a_sweep_in_one_line():
    result = invoke("draw", "zoo:gpt2", "-i", "512,1024")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "reads as a sweep of 2 values" in result.stderr


# --------------------------------------------------------------------------------------------------- display

@pytest.mark.parametrize("args", [
    ["summary", "zoo:llama3_8b", "-i", "512,1024,2048,4096,8192"],
    ["summary", "zoo:gpt2", "-i", "64", "--batch", "1,8,32,128"],
    ["summary", "zoo:resnet50", "-i", "3x224x224,3x320x320,3x448x448"],
    ["chart", "zoo:llama3_8b", "-i", "512,1024,2048,4096,8192"],
    ["chart", "zoo:gpt2", "--sweep", "batch=1,8,32", "--by", "peak_activation_bytes"],
])
@pytest.mark.parametrize("width", [80, 120])
def test_the_sweep_fits_the_terminal(args, width, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= width


def test_the_table_says_constant_figures_once_and_the_chart_draws_each_value():
    table = invoke("summary", "zoo:gpt2", "--sweep", "128,256,512").stdout
    assert "at every value: params 124,439,808" in table
    assert table.count("124,439,808") == 1
    chart = invoke("chart", "zoo:gpt2", "--sweep", "128,256,512", "--by", "flops_per_token").stdout.splitlines()
    rows = [line for line in chart if line.lstrip().startswith(("128", "256", "512"))]
    assert len(rows) == 3 and rows[0].rstrip().endswith("×1")
    bars = [row.count("█") for row in rows]
    assert bars == sorted(bars) and bars[-1] > 0
    refused = invoke("chart", "zoo:gpt2", "-i", "64,1024", "--by", "loss")
    assert refused.exit_code == 2 and "flops_per_token" in refused.stderr


def test_csv_is_complete_and_exact():
    result = invoke("summary", "zoo:gpt2", "--sweep", "100,200", "-f", "csv")
    assert result.exit_code == 0, result.stderr
    head, *rows = [line.split(",") for line in result.stdout.strip().splitlines()]
    assert head[:4] == ["value", "batch", "input_shape", "tokens"]
    data = sweep(layercalc.load("zoo:gpt2"), [100, 200])
    for row, expected in zip(rows, data.rows):
        cells = dict(zip(head, row))
        assert int(cells["flops"]) == expected.totals.flops and int(cells["tokens"]) == expected.tokens
        assert float(cells["flops_per_token"]) == expected.totals.flops / expected.tokens


def test_the_readme_sweeps_are_what_the_cli_prints():
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Sweeps", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    parts = re.split(r"^\$ ", block, flags=re.M)[1:]
    assert len(parts) == 2
    for part in parts:
        command, shown = part.split("\n", 1)
        result = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), shlex.split(command)[1:])
        assert result.exit_code == 0, command
        assert result.stdout.rstrip() == shown.rstrip(), command
    code = re.search(r"```py\n(.*?)```", section, re.S).group(1)     # (```python: the README's first is tested
    #   by tests/test_readme.py)
    scope: dict = {"layercalc": layercalc}
    exec(compile(code, "README.md", "exec"), scope)
    rows = scope["rows"]
    assert (rows[1].totals.flops, rows[1].per_token("flops")) == (136687831040, 266968420)
    assert "rows[1].totals.flops, rows[1].per_token(\"flops\")                         # 136687831040, 266968420" \
        in code
