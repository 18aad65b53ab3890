"""The network report as people see it (issue 20): the table fits the terminal, repeated blocks are folded, notes
are said once, each framework in its own terms, and the report prints itself in Python and Jupyter."""

import ast
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc.cli import get_app
from layercalc.notes import is_routine
from layercalc.terminal import UNLIMITED, widest_line

ROOT = Path(__file__).resolve().parent.parent

#: Meta's published Llama-3-8B config.json (the keys that decide the counts)
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
             "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "hidden_act": "silu",
             "tie_word_embeddings": False}
#: the parameters of Meta-Llama-3-8B as its safetensors index counts them
LLAMA3_8B_PARAMS = 8_030_261_248


def summary(*args, columns: int = 80) -> str:
    result = CliRunner().invoke(get_app(), ["summary", *map(str, args)], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def write_config(tmp_path, config) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


# ----------------------------------------------------------------------------------------- fit and fold

def test_llama3_8b_config_fits_one_screen_with_the_same_totals(tmp_path):
    path = write_config(tmp_path, LLAMA3_8B)
    out = summary(path)
    lines = out.rstrip("\n").split("\n")
    assert len(lines) <= 40 and widest_line(out) <= 80, out
    assert f"Totals: params {LLAMA3_8B_PARAMS:,} · " in out
    report = json.loads(summary(path, "--format", "json"))
    assert report["totals"]["params"] == LLAMA3_8B_PARAMS
    # one row for the 32 decoder layers, with ONE layer's figures: 4·4096² − 2·(32 − 8)·128·4096 attention
    # (k and v of 8 heads) + 3·4096·14336 MLP + 2·4096 norms = 218,112,000
    row = next(line for line in lines if line.startswith("model.layers.0–31 (×32)"))
    assert "218 M" in row or "218,112,000" in row
    per_layer = 4 * 4096 ** 2 - 2 * 24 * 128 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    assert per_layer == 218_112_000
    assert sum(e["params"] for e in report["layers"] if e["name"].startswith("model.layers.0.")) == per_layer
    # the causal-mask note of the 32 attention layers said once, with the range
    assert sum("causal mask" in line for line in lines) == 1
    assert any(line.startswith("  model.layers.0–31.self_attn (32 layers): causal mask") for line in lines)
    # what was assumed, up front in the header: the class, the length and where it came from, the config's dtype;
    # no layout for a token model
    head = " ".join(out.split("\n\n", 1)[0].split())
    assert "LlamaForCausalLM" in head and "2048 tokens (min(max_position_embeddings 8192, 2048))" in head
    assert "bfloat16 (2 bytes/element, the config's torch_dtype)" in head and "NCHW" not in head
    # --expand: every layer, the same totals
    expanded = summary(path, "--expand", "--wide")
    assert "model.layers.31.mlp.down_proj" in expanded and f"Totals: params {LLAMA3_8B_PARAMS:,} · " in expanded


def test_config_without_architectures_says_the_base_model(tmp_path):
    config = {k: v for k, v in LLAMA3_8B.items() if k != "architectures"}
    head = summary(write_config(tmp_path, dict(config, num_hidden_layers=2))).split("\n\n", 1)[0]
    assert "LlamaModel (no architectures in the config: the base model)" in " ".join(head.split())


def test_a_repeat_spec_folds_into_one_row_per_block(tmp_path):
    # 4 copies of linear 16 → 16 (16·16 + 16 = 272 params, 256 MACs) + relu, then a head 16 → 3 (51 params)
    spec = {"input": [16], "blocks": {"mlp": {"layers": [{"name": "fc", "type": "linear", "out_features": 16},
                                                         {"name": "act", "type": "relu"}]}},
            "layers": [{"repeat": 4, "name": "blk", "block": "mlp"},
                       {"name": "head", "type": "linear", "out_features": 3}]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    out = summary(path, "--wide")
    rows = {line.split()[0]: line.split() for line in out.split("\n") if line and line[0] in "bh├└"}
    assert rows["blk.0–3"][1:3] == ["(×4)", "2"]              # name, ×4, "2 layers"
    head_row = next(line for line in out.split("\n") if line.startswith("blk.0–3"))
    assert " 272 " in head_row and " 256 " in head_row       # one copy's params and MACs
    assert "├─ fc" in out and "└─ act" in out and "head" in rows
    assert "blk.2.fc" not in out
    assert "Totals: params 1,139 · " in out                     # 4·272 + 51
    assert "blk.2.fc" in summary(path, "--expand")


def test_copies_that_differ_are_not_folded(tmp_path):
    # the same block at two widths: no figure may be claimed for both
    spec = {"input": [8], "layers": [{"name": "s.0.fc", "type": "linear", "out_features": 8},
                                     {"name": "s.1.fc", "type": "linear", "out_features": 4}]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    out = summary(path, "--wide")
    assert "(×" not in out
    assert "s.0.fc" in out and "s.1.fc" in out


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("args", [("zoo:resnet50",), ("zoo:gpt2", "--depth", "1"), ("zoo:bert_base",),
                                  ("zoo:vit_b_16",), ("examples/mnist_cnn_keras.yaml",)])
def test_default_summary_fits_the_width(args, columns, monkeypatch):
    pytest.importorskip("layercalc.zoo")
    monkeypatch.chdir(ROOT)
    out = summary(*args, columns=columns)
    assert widest_line(out) <= columns, [line for line in out.split("\n") if len(line) > columns][:3]


def test_wide_gives_every_column_and_exact_numbers():
    pytest.importorskip("layercalc.zoo")
    out = summary("zoo:resnet50", "--wide")
    assert "output bytes" in out and "4,089,184,256" in out    # torchvision's 4.09 GMACs, exact
    assert widest_line(out) > 80


def test_csv_and_markdown_stay_complete():
    pytest.importorskip("layercalc.zoo")
    report = layercalc.load("zoo:resnet18").analyze()
    csv_rows = summary("zoo:resnet18", "--format", "csv").strip().split("\n")
    assert len(csv_rows) == 1 + len(report.layers)
    markdown = summary("zoo:resnet18", "--format", "markdown")
    assert "11,689,512" in markdown and "layer4.1.conv2" in markdown


# ----------------------------------------------------------------------------------------- notes

def test_resnet18_notes_take_at_most_five_lines_and_all_are_available():
    pytest.importorskip("layercalc.zoo")
    report = layercalc.load("zoo:resnet18").analyze()
    every = [(entry.name, note) for entry in report.layers for note in entry.notes]
    out = summary("zoo:resnet18")
    block = out.split("\n\nNotes (", 1)[1].split("\n\n", 1)[0].split("\n")
    assert len(block) <= 5 and block[0].startswith(f"{len(every)}: ")
    full = summary("zoo:resnet18", "--notes", "all", "--wide")
    for name, note in every:
        assert f"{name} (" in full and note in full
    assert "reporting the largest in each dim" not in out           # routine: counted, not printed


def test_routine_notes_are_marked_where_they_are_written():
    # conv k7 s2 p3 on 224: (224 + 6 − 7) = 223 is odd, the last padded position is never read: nothing lost;
    # conv k3 s2 p0 on 28: 25 is odd, input row 27 is never read: said
    padding_only = layercalc.load({"input": [1, 224, 224], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 7, "stride": 2, "padding": 3}]}).analyze()
    assert padding_only.layers[0].notes and all(is_routine(n) for n in padding_only.layers[0].notes)
    lost = layercalc.load({"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2}]}).analyze()
    assert lost.layers[0].notes and not any(is_routine(n) for n in lost.layers[0].notes)
    assert json.loads(lost.model_dump_json())["layers"][0]["notes"] == list(lost.layers[0].notes)


def test_conventions_one_line_by_default_in_full_on_request():
    out = summary(ROOT / "examples" / "mnist_cnn.yaml")
    assert "Conventions: what each figure counts: --conventions, or docs/conventions.md" in out
    assert "macs: multiply-accumulates" not in out
    assert "macs: multiply-accumulates" in summary(ROOT / "examples" / "mnist_cnn.yaml", "--conventions")


# ----------------------------------------------------------------------------------------- Keras' terms

def _table_column(out: str, header: str) -> dict[str, str]:
    """name → the cell under ``header`` in a summary table (cells sliced at the rule's dashes)."""
    lines = out.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("name "))
    spans = [m.span() for m in re.finditer(r"-+", lines[at + 1])]
    titles = [lines[at][a:b].strip() for a, b in spans]
    a, b = spans[titles.index(header)]
    cells = {}
    for line in lines[at + 2:]:
        if line.startswith("-"):
            break
        cells[line[spans[0][0]:spans[0][1]].strip()] = line[a:b].strip()
    return cells


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("kind", ["mnist", "resnet_tiny", "separable", "text", "attention"])
def test_keras_param_count_per_row_is_keras_own(kind, tmp_path):
    from oracle_helpers import keras_on_torch
    from test_import_keras import MODELS

    keras = keras_on_torch()
    model = MODELS[kind](keras)
    path = tmp_path / f"{kind}.json"
    path.write_text(model.to_json())
    out = summary(path, "--expand", "--wide")
    counts = _table_column(out, "Param #")
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        assert counts[layer.name] == f"{layer.count_params():,}", layer.name
    shapes = _table_column(out, "output shape")
    for layer in model.layers[1:]:
        expected = "(" + ", ".join(["None", *map(str, layer.output.shape[1:])]) + ")"
        assert shapes[layer.name] == expected, layer.name


def test_batchnorm_param_count_includes_its_moving_statistics(tmp_path):
    # BatchNormalization on 64 channels: gamma, beta (128 trainable) + moving mean and variance: Keras shows 256
    spec = {"input": [8, 8, 64], "layout": "NHWC", "layers": [{"name": "bn", "type": "batchnorm2d"}]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    assert _table_column(summary(path, "--wide"), "Param #")["bn"] == "256"


# ----------------------------------------------------------------------------------------- safe text

def test_control_characters_in_names_are_escaped(tmp_path):
    # (a layer's name with control characters is refused when the spec is read; the network's name is shown)
    spec = {"name": "evil\x1b[31mred\x07\u202e", "input": [4], "layers": [{"type": "linear", "out_features": 2}]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    for args in ((), ("--expand", "--notes", "all"), ("--format", "markdown")):
        out = summary(path, *args)
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
    assert "Network: evil\\x1b[31mred\\x07\\u202e" in summary(path)
    config = dict(LLAMA3_8B, num_hidden_layers=1, _name_or_path="meta\x1b]0;pwned\x07")
    out = summary(write_config(tmp_path, config))
    assert "\x1b" not in out and "\x07" not in out


# ----------------------------------------------------------------------------------------- Python

class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        if data.strip():
            self.cells.append(data.strip())


def test_report_prints_as_a_table_and_as_html():
    report = layercalc.load(str(ROOT / "examples" / "mnist_cnn.yaml")).analyze()
    text = str(report)
    assert text.startswith("Network: mnist-cnn") and "conv2d_3" in text and "93,322" in text
    assert "LayerReport(" not in repr(report) and "params=93,322" in repr(report)
    table = report.table(columns=["name", "params"], width=UNLIMITED, expand=True)
    assert table.split("\n")[2].split() == ["name", "params"]
    parser = _Cells()
    parser.feed(report._repr_html_())
    assert "table" in parser.tags and "tfoot" in parser.tags
    assert "93,322" in parser.cells and "2,794,240" in parser.cells          # Keras' published figures


def test_type_checking_block_names_every_layer_class():
    import layercalc.layers as layers

    tree = ast.parse((ROOT / "layercalc" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    typed = {alias.asname or alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    exported = {name for name in layercalc._layer_model_names(layers) if hasattr(layers, name)}
    missing = exported - set(typed)
    assert not missing, f"add to layercalc/__init__.py's TYPE_CHECKING block: {sorted(missing)}"
    for name in exported:
        assert f"layercalc{'.' + typed[name] if typed[name] else ''}" == getattr(layers, name).__module__, name


def test_mypy_catches_a_misspelled_layer_field(tmp_path):
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from layercalc import Conv2d\n\nConv2d(out_chanels=3)\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "c"),
                           str(snippet)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MYPYPATH": str(ROOT)})
    assert 'Unexpected keyword argument "out_chanels" for "Conv2d"' in done.stdout, done.stdout + done.stderr


def test_explain_network_is_library_code_the_cli_prints():
    from layercalc.network_explain import explain_network

    net = layercalc.load(str(ROOT / "examples" / "mnist_cnn.yaml"))
    lines = explain_network(net, net.analyze())
    assert lines[0].startswith("[0] conv2d_0 (conv2d): [1, 1, 28, 28] → [1, 32, 26, 26]")
    assert "\n".join(lines) in summary(ROOT / "examples" / "mnist_cnn.yaml", "--explain", "--wide")
    # at 80 columns the same lines, each worked formula broken before its "=" steps to fit
    out = summary(ROOT / "examples" / "mnist_cnn.yaml", "--explain")
    assert max(map(len, out.splitlines())) <= 80
    assert ("    MACs = N·H_out·W_out·C_out·(kH·kW·C_in/groups) = 1·26·26·32·(3·3·1)\n"
            "        = 194,688\n") in out


def test_depth_is_a_tree_with_subtotals_and_folded_copies():
    pytest.importorskip("layercalc.zoo")
    report = layercalc.load("zoo:resnet18").analyze()
    out = summary("zoo:resnet18", "--depth", "2", "--wide")
    lines = out.split("\n")
    # layer2: 16 layers, its subtotal the sum of its layers; its blocks 0 (with the downsample) and 1 under it
    layer2 = sum(e.params for e in report.layers if e.name.startswith("layer2."))
    row = next(line for line in lines if line.startswith("layer2 "))
    assert "16 layers" in row and f" {layer2:,} " in row
    block0 = sum(e.params for e in report.layers if e.name.startswith("layer2.0."))
    assert any(line.startswith("├─ 0 ") and f" {block0:,} " in line for line in lines)
    # layer1's two blocks are copies: one row, one copy's figures (2·36,864 + 2·128 = 73,984)
    assert any(line.startswith("└─ 0–1 (×2)") and " 73,984 " in line for line in lines)
    assert f"Totals: params {report.totals.params:,} · " in out


def test_training_view_at_80_columns_keeps_backward_flops_and_saved_bytes():
    """Too wide for every training column: the split of the backward MACs goes before the backward FLOPs (their
    sum, 2 per MAC) and the saved bytes, the view's own figures."""
    out = summary("zoo:resnet18", "--train")
    header = next(line for line in out.splitlines() if line.startswith("name "))
    assert "bwd FLOPs" in header and "saved bytes" in header and "grad-w MACs" not in header
    assert max(map(len, out.splitlines())) <= 80
    wide = summary("zoo:resnet18", "--train", columns=160)
    assert "grad-w MACs" in next(line for line in wide.splitlines() if line.startswith("name "))
