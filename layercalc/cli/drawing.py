"""``layercalc draw SPEC`` (the graph as Graphviz DOT, Mermaid or SVG: :mod:`layercalc.drawing`) and ``layercalc
chart SPEC`` (terminal bars of each layer's or folded block's MACs or params). The commands parse, call, print."""

from typing import Annotated, Optional

import typer

from .network import (
    BatchOpt,
    BatchSweepOpt,
    InputOpt,
    InputSweepOpt,
    SpecArg,
    SweepOpt,
    load_network,
    load_network_sweep,
    spec_context,
)
from .options import _check_choice, _spec_error, write_output

# deferred imports (drawing, sweep, terminal):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)

#: the format a file name asks for (``-o graph.svg``) when --format is not given
_BY_SUFFIX = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid", ".svg": "svg"}

ExpandOpt = Annotated[bool, typer.Option("--expand", help="every layer its own node (default: repeated blocks "
                                                          "folded into one node ×N)")]


def draw_command(
    spec: SpecArg,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", metavar="dot|mermaid|svg",
                                               help="Graphviz DOT (default), Mermaid, or SVG drawn by Graphviz' "
                                                    "dot (default from -o's suffix: .dot .gv .mmd .svg)")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE",
                                                  help="write here (default: standard output)")] = None,
    show_shapes: Annotated[bool, typer.Option("--show-shapes/--no-show-shapes",
                                              help="each node's output shape (default on)")] = True,
    expand: ExpandOpt = False,
    direction: Annotated[str, typer.Option("--direction", "-d", metavar="TB|LR",
                                           help="top to bottom (TB, default) or left to right (LR)")] = "TB",
    batch: BatchOpt = None,
    input_shape: InputOpt = None,
) -> None:
    """Draw the network's graph: each node a layer (or a folded run of repeated blocks) with its output shape,
    params and MACs. DOT and Mermaid are text (paste Mermaid into a ```mermaid block); SVG needs Graphviz."""
    from ..drawing import build_graph, to_dot, to_mermaid, to_svg

    if fmt is None:
        suffix = "" if output is None else output[output.rfind("."):].lower() if "." in output else ""
        fmt = _BY_SUFFIX.get(suffix, "dot")
    fmt = _check_choice(fmt, ("dot", "mermaid", "svg"), "--format")
    direction = _check_choice(direction, ("tb", "lr"), "--direction").upper()
    net = load_network(spec, batch, input_shape)
    with spec_context(spec):
        graph = build_graph(net, net.analyze(), expand)
    if fmt == "mermaid":
        text = to_mermaid(graph, show_shapes, direction)
    else:
        text = to_dot(graph, show_shapes, direction)
        if fmt == "svg":
            text = to_svg(text)
    write_output(text, output)


def chart_command(
    spec: SpecArg,
    by: Annotated[Optional[str], typer.Option(
        "--by", metavar="FIGURE", help="the cost drawn: macs (default) or params per layer; for a sweep any of its "
                                       "figures (flops, the default, macs, flops_per_token, peak_activation_bytes, "
                                       "…)")] = None,
    expand: ExpandOpt = False,
    batch: BatchSweepOpt = None,
    input_shape: InputSweepOpt = None,
    sweep: SweepOpt = None,
) -> None:
    """Terminal bars of each layer's (or folded block's) MACs or params and its share of the total; with a list of
    values (--input 512,1024,2048, --batch 1,8,32, --sweep) one bar per value of a total (--by)."""
    from ..drawing import build_graph, cost_chart
    from ..terminal import terminal_width

    net, _, asked = load_network_sweep(spec, batch, input_shape, sweep)
    if asked is not None:
        if expand:
            raise _spec_error("--expand cannot be combined with a sweep (a sweep draws one bar per value)")
        from ..sweep import sweep as sweep_totals
        with spec_context(spec):
            result = sweep_totals(net, asked[1], over=asked[0])
            print(result.chart(by or "flops", terminal_width()))
        return
    by = _check_choice(by or "macs", ("macs", "params"), "--by")
    with spec_context(spec):
        graph = build_graph(net, net.analyze(), expand)
    print(cost_chart(graph, by, terminal_width()))
