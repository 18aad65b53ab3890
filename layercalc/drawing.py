"""Pictures of a network: its graph as Graphviz DOT, as Mermaid (text, no binary dependency) and as SVG (through
Graphviz' ``dot`` program where it is installed), and a per-layer cost chart as terminal bars.

Like Keras' ``plot_model``: each node shows a layer's name and type, optionally its output shape
(``show_shapes``), and its params and MACs; ``direction`` is ``TB`` (top to bottom) or ``LR``. Repeated blocks are
folded by default — the runs :func:`layercalc.blocks.fold` finds (``layer1.0`` … ``layer1.1``, ``h.0`` … ``h.11``:
the same layers with the same wiring), each drawn as one node ``layer1 ×2`` carrying the run's totals; ``expand``
draws every layer.

Everything is computed from ``network.analyze()``'s report: the figures on a node are the report's, summed over
the layers a folded node stands for.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Optional

from .blocks import fold
from .errors import LayerCalcError, SpecError
from .names import split_output
from .terminal import UNLIMITED, wrap

INPUT = "input"
DIRECTIONS = ("TB", "LR")
#: Graphviz may take long on a huge graph: past this many seconds the SVG is refused (the DOT text still works)
DOT_TIMEOUT = 120


@dataclass
class Node:
    """One box of the picture: a layer, or a folded run of identical blocks (``repeat`` > 1)."""
    id: str
    name: str
    type: str                                      #: the layer type, or the block's name for a folded run
    output_shape: list[int]
    params: int = 0
    macs: int = 0
    repeat: int = 1
    layers: list[str] = field(default_factory=list)   #: the report's layer names this node stands for


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    edges: list[tuple[str, str]]                   #: (from node id, to node id), each once, in first-seen order


def build_graph(network: Any, report: Any = None, expand: bool = False) -> Graph:
    """The nodes and edges to draw: the network's input, then one node per layer (``expand``) or per layer and
    folded run of repeated blocks."""
    report = report if report is not None else network.analyze()
    entries = sorted(report.layers, key=lambda e: e.index)
    groups = [([e], None) for e in entries] if expand else _folded_groups(network, entries)
    nodes = [Node("n0", INPUT, INPUT, list(report.input_shape))]
    owner: dict[str, str] = {INPUT: "n0"}
    for i, (group, run) in enumerate(groups, 1):
        first, last = group[0], group[-1]
        if run is None:
            node = Node(f"n{i}", first.name, first.type, list(first.output_shape), first.params, first.macs,
                        layers=[first.name])
        else:
            base, repeat, block = run
            node = Node(f"n{i}", base, block, list(last.output_shape), sum(e.params for e in group),
                        sum(e.macs for e in group), repeat, [e.name for e in group])
        nodes.append(node)
        for entry in group:
            owner[entry.name] = node.id
    edges: dict[tuple[str, str], None] = {}
    for entry in entries:
        target = owner[entry.name]
        for source in entry.inputs:
            start = owner.get(split_output(source)[0])
            if start is not None and start != target:
                edges[start, target] = None
    return Graph(report.name or "network", nodes, list(edges))


#: a folded run: (its name, the number of copies, the block's name)
Run = tuple[str, int, str]


def _folded_groups(network: Any, entries: list[Any]) -> list[tuple[list[Any], Optional[Run]]]:
    """The report's layers cut into runs: a layer alone (run None), or the layers of one ``repeat`` that
    :func:`~layercalc.blocks.fold` finds in the flat spec (only a fold that expands back to the same layers)."""
    alone: list[tuple[list[Any], Optional[Run]]] = [([e], None) for e in entries]
    flat = []
    for entry in entries:
        data = network.layers[entry.index].model_dump(mode="json", exclude_none=True)
        data.update(name=entry.name, inputs=list(entry.inputs))
        flat.append(data)
    try:
        folded = fold({"input": list(network.input), "layers": flat})
    except LayerCalcError:                       # nothing to fold that expands back exactly: every layer alone
        return alone
    blocks = folded.get("blocks", {})
    groups: list[tuple[list[Any], Optional[Run]]] = []
    at = 0
    for item in folded["layers"]:
        if "repeat" in item and item.get("block") in blocks:
            size = item["repeat"] * len(blocks[item["block"]]["layers"])
            groups.append((entries[at:at + size], (str(item["name"]), int(item["repeat"]), str(item["block"]))))
            at += size
        else:
            groups.append(([entries[at]], None))
            at += 1
    if at != len(entries):                                  # fold keeps every layer; anything else: unfolded
        return alone
    return _instances(groups)


def _instances(groups: list[tuple[list[Any], Optional[Run]]]) -> list[tuple[list[Any], Optional[Run]]]:
    """Consecutive single layers of one block instance (``layer2.0.conv1`` … ``layer2.0.downsample.1``: named
    ``P.k.<rest>``) drawn as one node ``layer2.0`` ×1, as a repeat's copies are: a stage's first block, which
    differs from the rest (a stride, a downsample), then reads like the repeat after it."""
    def instance(entries: list[Any], run: Optional[Run]) -> Optional[str]:
        parts = entries[0].name.split(".")
        if run is not None or len(parts) < 3 or not parts[1].isdigit():
            return None
        return ".".join(parts[:2])

    out: list[tuple[list[Any], Optional[Run]]] = []
    i = 0
    while i < len(groups):
        prefix = instance(*groups[i])
        j = i + 1
        while prefix is not None and j < len(groups) and instance(*groups[j]) == prefix:
            j += 1
        if prefix is not None and j - i >= 2:
            out.append(([e for entries, _ in groups[i:j] for e in entries], (prefix, 1, "block")))
        else:
            out += groups[i:j]
        i = j
    return out


# ------------------------------------------------------------------------------------------------------ labels

def node_lines(node: Node, show_shapes: bool = True) -> list[str]:
    """A node's label, line by line: ``conv1: conv2d``, its output shape, ``params 9.41 K · MACs 118 M``."""
    from .formatting import count, shape_text

    if node.type == INPUT:
        return [INPUT] + ([shape_text(node.output_shape)] if show_shapes else [])
    head = f"{node.name}: {node.type}"
    if node.repeat > 1:
        head = f"{node.name} ×{node.repeat} ({len(node.layers) // node.repeat} layers each)"
    if len(node.layers) > 1 and node.repeat == 1:          # one block instance: how many layers it holds
        head = f"{node.name} ({len(node.layers)} layers)"
    lines = [head]
    if show_shapes:
        lines.append(shape_text(node.output_shape))
    costs = []
    if node.params:
        costs.append(f"params {count(node.params, 'human')}")
    if node.macs:
        costs.append(f"MACs {count(node.macs, 'human')}")
    if costs:
        lines.append(" · ".join(costs))
    return lines


# ------------------------------------------------------------------------------------------------------ DOT

def _dot_string(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, line breaks as ``\\n`` (centred lines)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(graph: Graph, show_shapes: bool = True, direction: str = "TB") -> str:
    """Graphviz DOT text of the graph (``dot -Tsvg`` draws it)."""
    direction = _direction(direction)
    out = [f"digraph {_dot_string(graph.name)} {{",
           f"  rankdir={direction};",
           '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for node in graph.nodes:
        attributes = [f"label={_dot_string(chr(10).join(node_lines(node, show_shapes)))}"]
        if node.type == INPUT:
            attributes.append('shape=oval, fillcolor="#e8f0fe"')
        elif node.repeat > 1:
            attributes.append('peripheries=2, fillcolor="#fff4e0"')
        elif len(node.layers) > 1:
            attributes.append('fillcolor="#fff4e0"')
        out.append(f"  {node.id} [{', '.join(attributes)}];")
    out += [f"  {a} -> {b};" for a, b in graph.edges]
    out.append("}")
    return "\n".join(out) + "\n"


def _direction(direction: str) -> str:
    upper = str(direction).upper()
    if upper not in DIRECTIONS:
        raise SpecError(f"direction: {direction!r} is not one of TB (top to bottom), LR (left to right)")
    return upper


# ------------------------------------------------------------------------------------------------------ Mermaid

def _mermaid_text(text: str) -> str:
    """Text inside a Mermaid ``["…"]`` label: its special characters as Mermaid's entity codes (``#quot;``)."""
    codes = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;", "\n": " "}
    return "".join(codes.get(ch, ch) for ch in text)


def to_mermaid(graph: Graph, show_shapes: bool = True, direction: str = "TB") -> str:
    """Mermaid flowchart text of the graph (GitHub and many editors render it in a ```mermaid block)."""
    out = [f"flowchart {_direction(direction)}"]
    for node in graph.nodes:
        label = "<br/>".join(_mermaid_text(line) for line in node_lines(node, show_shapes))
        left, right = ("([", "])") if node.type == INPUT else ("[[", "]]") if len(node.layers) > 1 else ("[", "]")
        out.append(f'  {node.id}{left}"{label}"{right}')
    out += [f"  {a} --> {b}" for a, b in graph.edges]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------------ SVG

def to_svg(dot_text: str) -> str:
    """The DOT text drawn as SVG by Graphviz' ``dot`` program; a one-line error when it is not installed."""
    program = shutil.which("dot")
    if program is None:
        raise SpecError("SVG needs Graphviz' dot program, which is not installed (apt install graphviz, brew "
                        "install graphviz, or graphviz.org); --format dot or mermaid need nothing")
    try:
        done = subprocess.run([program, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                              timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SpecError(f"Graphviz' dot took more than {DOT_TIMEOUT} s to lay out the graph; draw it folded "
                        f"(without --expand) or write --format dot and lay it out yourself") from None
    except OSError as exc:
        raise SpecError(f"Graphviz' dot could not run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise SpecError(f"Graphviz' dot failed (exit {done.returncode}): {first[:300]}")
    return done.stdout


# ------------------------------------------------------------------------------------------------------ chart

BAR_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``fraction`` (0..1) of ``width`` cells, in eighths of a cell.

    >>> bar(0.5, 4), bar(1.0, 2), bar(0.0, 3), bar(1 / 16, 4)
    ('██', '██', '', '▎')
    """
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (BAR_EIGHTHS[rest] if rest else "")


def cost_chart(graph: Graph, by: str = "macs", width: int = 80, name_width: Optional[int] = None) -> str:
    """One row per node with a cost: its name, a bar scaled to the largest, the figure and its share of the total.
    Nodes without any of it are counted in a closing line, not drawn."""
    from .formatting import count

    if by not in ("macs", "params"):
        raise SpecError(f"by: {by!r} is not one of macs, params")
    nodes = [n for n in graph.nodes if n.type != INPUT]
    total = sum(getattr(n, by) for n in nodes)
    shown = [n for n in nodes if getattr(n, by)]
    what = "MACs" if by == "macs" else "params"
    if not shown:
        return f"no layer has {what} (total 0)"

    def label(node: Node) -> str:
        return f"{node.name} ×{node.repeat}" if node.repeat > 1 else node.name + (".*" if len(node.layers) > 1 else "")

    names = max(len(label(n)) for n in shown)
    name_width = min(names, name_width or (names if width >= UNLIMITED else max(12, width // 3)))
    figures = [count(getattr(n, by), "human") for n in shown]
    figure_width = max(map(len, figures))
    bar_width = max(10, min(60, width - name_width - figure_width - 12)) if width < UNLIMITED else 60
    largest = max(getattr(n, by) for n in shown)
    lines = [wrap(f"{what} by {'layer' if all(n.repeat == 1 for n in nodes) else 'layer and repeated block'} "
                  f"(total {count(total, 'human')})", width)]
    for node, figure in zip(shown, figures):
        name = label(node)
        if len(name) > name_width:
            head = (name_width - 1) // 3
            name = name[:head] + "…" + name[len(name) - (name_width - 1 - head):]
        share = 100 * getattr(node, by) / total
        lines.append(f"{name.ljust(name_width)}  {bar(getattr(node, by) / largest, bar_width).ljust(bar_width)}  "
                     f"{figure.rjust(figure_width)}  {share:5.1f}%")
    left_out = len(nodes) - len(shown)
    if left_out:
        lines.append(wrap(f"({left_out} {'layers' if left_out > 1 else 'layer'} with no {what} not shown)", width))
    return "\n".join(lines)
