"""`layercalc draw` and `layercalc chart` (issue 20, item 5): the graph as DOT (parsed here, and by Graphviz when
installed), as well-formed Mermaid, as SVG; folded repeats carrying their blocks' totals; a cost chart that fits."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import drawing
from layercalc.cli import get_app
from layercalc.drawing import build_graph, cost_chart, to_dot, to_mermaid

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
HOSTILE = {"name": 'odd "net" <1>', "input": [3, 8, 8], "layers": [
    {"name": 'conv "a" <b> #1 \\ end', "type": "conv2d", "out_channels": 4, "kernel_size": 3},
    {"name": "relu", "type": "relu"}]}


# ------------------------------------------------------------------------------------ a DOT reader (the subset)

_STRING = r'"(?:[^"\\]|\\.)*"'
_ATTRS = rf"\[(?:\s*\w+\s*=\s*(?:{_STRING}|[\w#.,]+)\s*,?)*\s*\]"


def parse_dot(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Nodes (id → label, unescaped) and edges of the DOT this module writes; fails on anything else."""
    lines = text.rstrip("\n").split("\n")
    assert re.fullmatch(rf"digraph {_STRING} \{{", lines[0]), lines[0]
    assert lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges = []
    for line in lines[1:-1]:
        line = line.strip()
        if re.fullmatch(r"rankdir=(TB|LR);", line) or re.fullmatch(rf"(node|edge) {_ATTRS};", line):
            continue
        edge = re.fullmatch(r"(\w+) -> (\w+);", line)
        if edge:
            assert edge[1] in nodes and edge[2] in nodes, line          # declared before use
            edges.append((edge[1], edge[2]))
            continue
        node = re.fullmatch(rf"(\w+) ({_ATTRS});", line)
        assert node, line
        label = re.search(rf"label=({_STRING})", node[2])
        assert label, line
        nodes[node[1]] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], label[1][1:-1])
    return nodes, edges


def check_mermaid(text: str, direction: str = "TB") -> tuple[dict[str, str], list[tuple[str, str]]]:
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == f"flowchart {direction}"
    nodes: dict[str, str] = {}
    edges = []
    for line in lines[1:]:
        edge = re.fullmatch(r"  (\w+) --> (\w+)", line)
        if edge:
            assert edge[1] in nodes and edge[2] in nodes, line
            edges.append((edge[1], edge[2]))
            continue
        node = re.fullmatch(r'  (\w+)(\(\[|\[\[|\[)"([^"<>`]*(?:<br/>[^"<>`]*)*)"(\]\)|\]\]|\])', line)
        assert node, line
        assert {"([": "])", "[[": "]]", "[": "]"}[node[2]] == node[4], line
        assert not edges, "a node declared after the edges"
        nodes[node[1]] = node[3]
    return nodes, edges


# ------------------------------------------------------------------------------------------------------ tests

def test_folded_repeats_carry_their_blocks_totals():
    net = layercalc.load("zoo:resnet18")
    report = net.analyze()
    graph = build_graph(net, report)
    layer1 = next(n for n in graph.nodes if n.name == "layer1")
    # a basic block: two 3×3 convs 64→64 on 56×56 (3·3·64·64 = 36,864 params, 56·56·64·(3·3·64) MACs each) and
    # two BatchNorms (2·64 params each)
    conv_params, conv_macs = 3 * 3 * 64 * 64, 56 * 56 * 64 * (3 * 3 * 64)
    assert layer1.repeat == 2 and len(layer1.layers) == 14
    assert layer1.params == 2 * (2 * conv_params + 2 * 2 * 64)          # 147,968
    assert layer1.macs == 2 * 2 * conv_macs                             # 462,422,016
    assert sum(n.params for n in graph.nodes) == report.totals.params == 11_689_512   # torchvision's count
    assert sum(n.macs for n in graph.nodes) == report.totals.macs
    assert len(graph.nodes) < 20 < len(report.layers)


def test_gpt2_draws_its_twelve_blocks_as_one_node():
    net = layercalc.load("zoo:gpt2")
    graph = build_graph(net)
    blocks = [n for n in graph.nodes if n.repeat > 1]
    assert [(n.name, n.repeat) for n in blocks] == [("transformer.h", 12)]
    # one GPT-2 block: ln_1 2·768, c_attn 768·2304 + 2304, c_proj 768·768 + 768, ln_2 2·768,
    # mlp c_fc 768·3072 + 3072, mlp c_proj 3072·768 + 768 = 7,087,872
    per_block = 2 * 768 + (768 * 2304 + 2304) + (768 * 768 + 768) + 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768)
    assert blocks[0].params == 12 * per_block


def test_expand_draws_every_layer_and_the_skip_connections():
    net = layercalc.load("examples/residual_small.yaml")
    report = net.analyze()
    graph = build_graph(net, report, expand=True)
    assert len(graph.nodes) == len(report.layers) + 1
    ids = {n.name: n.id for n in graph.nodes}
    wired = {(a, b) for a, b in graph.edges}
    for entry in report.layers:                              # every input of every layer is an edge
        for source in entry.inputs:
            assert (ids[source.split(":")[0]], ids[entry.name]) in wired
    assert len(graph.edges) == sum(len(e.inputs) for e in report.layers)


def test_dot_is_well_formed_and_escapes_labels():
    net = layercalc.load(HOSTILE)
    text = to_dot(build_graph(net), direction="LR")
    nodes, edges = parse_dot(text)
    assert nodes["n1"].startswith('conv "a" <b> #1 \\ end: conv2d\n[1, 4, 6, 6]')
    # conv 3·3·3·4 + 4 = 112 params; 6·6·4·27 = 3,888 MACs
    assert nodes["n1"].endswith("params 112 · MACs 3.89 K") and edges == [("n0", "n1"), ("n1", "n2")]
    assert "rankdir=LR;" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")
@pytest.mark.parametrize("spec", ["zoo:resnet18", "examples/residual_small.yaml", "hostile"])
def test_graphviz_reads_the_dot(spec):
    net = layercalc.load(HOSTILE if spec == "hostile" else spec)
    done = subprocess.run(["dot", "-Tsvg"], input=to_dot(build_graph(net)), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "<svg" in done.stdout, done.stderr
    assert "Warning" not in done.stderr and "syntax error" not in done.stderr


def test_mermaid_is_well_formed_and_escapes_labels():
    net = layercalc.load(HOSTILE)
    nodes, edges = check_mermaid(to_mermaid(build_graph(net), direction="LR"), "LR")
    assert nodes["n1"].startswith("conv #quot;a#quot; #lt;b#gt; #35;1 \\ end: conv2d<br/>[1, 4, 6, 6]")
    assert edges == [("n0", "n1"), ("n1", "n2")]
    nodes, edges = check_mermaid(to_mermaid(build_graph(layercalc.load("zoo:resnet18"))))
    assert nodes["n5"].startswith("layer1 ×2 (7 layers each)") and len(edges) == len(nodes) - 1


def test_no_shapes():
    text = to_mermaid(build_graph(layercalc.load("examples/mnist_cnn.yaml")), show_shapes=False)
    assert "[1, 32, 26, 26]" not in text and "conv2d_0: conv2d<br/>params 320 · MACs 195 K" in text


def test_draw_command_formats_and_files(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    mermaid = runner.invoke(get_app(), ["draw", "examples/mnist_cnn.yaml", "-f", "mermaid"])
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart TB\n")
    out = tmp_path / "g.mmd"
    assert runner.invoke(get_app(), ["draw", "examples/mnist_cnn.yaml", "-o", str(out)]).exit_code == 0
    assert out.read_text() == mermaid.stdout                    # the format read from the suffix
    dot = runner.invoke(get_app(), ["draw", "examples/mnist_cnn.yaml", "--direction", "lr"])
    assert dot.exit_code == 0 and parse_dot(dot.stdout)[1][0] == ("n0", "n1") and "rankdir=LR" in dot.stdout
    bad = runner.invoke(get_app(), ["draw", "examples/mnist_cnn.yaml", "-f", "png"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "dot, mermaid, svg" in bad.stderr


def test_svg_without_graphviz_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    result = runner.invoke(get_app(), ["draw", str(ROOT / "examples/mnist_cnn.yaml"), "-f", "svg"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "Graphviz' dot program" in result.stderr and "--format dot or mermaid" in result.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")
def test_svg_with_graphviz(tmp_path):
    out = tmp_path / "g.svg"
    result = runner.invoke(get_app(), ["draw", "zoo:resnet18", "-o", str(out)])
    assert result.exit_code == 0 and "<svg" in out.read_text() and "layer1 ×2" in out.read_text()


def test_chart_bars_and_shares():
    graph = build_graph(layercalc.load("zoo:gpt2"))
    text = cost_chart(graph, "params", 80)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80 and lines[0] == "params by layer and repeated block (total 124 M)"
    shares = [float(m) for m in re.findall(r"(\d+\.\d)%$", text, re.M)]
    assert abs(sum(shares) - 100) < 0.5
    blocks = next(line for line in lines if line.startswith("transformer.h ×12"))
    assert blocks.endswith("85.1 M   68.3%")                     # 12·7,087,872 / 124,439,808
    assert lines[-1] == "(2 layers with no params not shown)"     # the embeddings' add, the tied lm_head
    assert drawing.bar(0.5, 4) == "██"


def test_chart_command_fits_narrow_terminals():
    for width in (40, 60, 100):
        result = runner.invoke(get_app(), ["chart", "zoo:resnet50", "--width", str(width)])
        assert result.exit_code == 0 and max(map(len, result.stdout.splitlines())) <= width, width


def test_the_readme_pictures_are_what_the_commands_print():
    readme = (ROOT / "README.md").read_text()
    mermaid = re.search(r"```mermaid\n(.*?)```", readme, re.S)[1]
    assert runner.invoke(get_app(), ["draw", "zoo:gpt2", "-f", "mermaid"]).stdout == mermaid
    check_mermaid(mermaid)
    chart = re.search(r"\$ layercalc chart zoo:resnet18\n(.*?)```", readme, re.S)[1]
    assert runner.invoke(get_app(), ["chart", "zoo:resnet18"], env={"COLUMNS": "80"}).stdout == chart
