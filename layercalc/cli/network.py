"""Commands on whole networks: ``summary``, ``convert``, ``schema``, ``zoo`` (``verify``, ``run``: .execute). SPEC is a
YAML/JSON spec, a model file of another tool (see ``layercalc.importers``), ``-`` for standard input, or
``zoo:NAME``. Each loads the network, calls the library and renders."""

import re
import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import LayerCalcError, SpecError
from .options import Numbers, _check_choice, _spec_error, parse_shape

# deferred imports (sources, spec, graph, formatting, explain, names, zoo, executor, verify, weights):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)


def load_network(spec: str, batch: Optional[int] = None, input_shape: Optional[str] = None,
                 dtype: Optional[str] = None, layout: Optional[str] = None):
    """A ``Network`` from a path, ``-`` (stdin) or ``zoo:NAME``, with command-line overrides applied."""
    from .. import sources

    with spec_context(spec):
        return _load_network(sources, spec, batch, input_shape, dtype, layout)


class spec_context:
    """Prefix errors raised while reading or analyzing a spec with where the spec came from (once)."""

    def __init__(self, spec: str) -> None:
        self.origin = "<stdin>" if spec == "-" else spec

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, LayerCalcError) and not str(exc).startswith(("--", self.origin)):
            raise type(exc)(f"{self.origin}: {exc}") from None
        return False


def _load_network(sources, spec: str, batch, input_shape, dtype, layout):
    if spec == "-":
        net = sources.from_parsed(sources.parse_text(_read_stdin(), "<stdin>"), "<stdin>")
    elif spec.startswith("zoo:"):
        try:
            net = sources.load(spec)
        except ImportError as exc:
            raise _spec_error(f"{spec}: the model zoo is not available in this installation ({exc})") from None
    else:
        net = sources.load(spec)
    overrides: dict[str, Any] = {}
    if batch is not None:
        overrides["batch"] = batch
    if input_shape is not None:
        overrides["input"] = parse_shape(input_shape, "--input")
    if dtype is not None:
        overrides["dtype"] = dtype
    if layout is not None:
        overrides["layout"] = layout
    return _with_overrides(net, overrides) if overrides else net


def _read_stdin() -> str:
    """Standard input as strict UTF-8 and at most ``spec.MAX_SPEC_BYTES``, like a spec file: Python's text stdin may
    decode with surrogateescape and hand the YAML parser text it cannot encode."""
    from ..spec import read_capped

    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:                                # `layercalc summary - <&-`: Python sets sys.stdin to None
        raise _spec_error("<stdin>: cannot read: standard input is closed")
    try:
        return read_capped(buffer, "<stdin>")
    except OSError as exc:
        import errno
        reason = "standard input is closed" if exc.errno == errno.EBADF else exc.strerror or exc
        raise _spec_error(f"<stdin>: cannot read: {reason}") from None
    except ValueError as exc:                         # a closed file object
        if isinstance(exc, LayerCalcError):
            raise
        raise _spec_error(f"<stdin>: cannot read: {exc}") from None


def _with_overrides(net, overrides: dict):
    """Re-validate the network with some top-level fields replaced (the layers are kept as built)."""
    from pydantic import ValidationError

    from ..graph import Network

    data = {**{k: getattr(net, k) for k in ("name", "input", "batch", "layout", "dtype")}, **overrides,
            "layers": list(net.layers)}
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        detail = Network.describe_error(exc, data)
        raise SpecError(re.sub(r"field '(\w+)'", r"--\1", detail)) from None


SpecArg = Annotated[str, typer.Argument(help="YAML/JSON spec file, model file (.keras, Keras JSON, Hugging Face "
                                             "config.json, .onnx), - for stdin, or zoo:NAME", metavar="SPEC")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", "-b", min=1, metavar="N",
                                                  help="batch size (overrides the spec)")]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", metavar="SHAPE",
                                                 help="input shape without batch, e.g. 3x224x224 (overrides the spec)")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", metavar="DTYPE",
                                                 help="float32, float64, float16, bfloat16, int32, int8, uint8 "
                                                      "(overrides the spec)")]


def summary_command(
    spec: SpecArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="table|markdown|csv|json",
                                     help="output format; json is the Report model, exact integers")] = "table",
    columns: Annotated[Optional[str], typer.Option(
        "--columns", "-c", metavar="LIST",
        help="comma-separated: index, name, type, inputs, input_shape, output_shape, params, buffers, macs, flops, "
             "param_memory, memory, receptive_field, jump, notes (or all). Default: name, type, output_shape, "
             "params, macs, flops, memory")] = None,
    depth: Annotated[Optional[int], typer.Option("--depth", min=1, help="group rows by dotted-name prefix "
                                                 "(layer3.2.conv1 → layer3 at depth 1), with subtotals")] = None,
    numbers: Numbers = "exact",
    batch: BatchOpt = None,
    input_shape: InputOpt = None,
    dtype: DtypeOpt = None,
    keras_shapes: Annotated[bool, typer.Option("--keras-shapes", help="shapes as (None, 26, 26, 32), Keras-style")]
    = False,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="worked formulas for every layer")] = False,
) -> None:
    """Per-layer table of a whole network (shapes, params, MACs, FLOPs, memory) with totals and conventions.

    `--format json` prints `Report.model_dump(mode="json")` exactly (the documented schema); --columns, --depth and
    --explain apply to the table and markdown forms (and --columns/--depth to csv).
    """
    from ..formatting import parse_columns, render_report

    fmt = _check_choice(fmt, ("table", "markdown", "csv", "json"), "--format")
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    if fmt == "json":
        given = [name for name, value in (("--columns", columns), ("--depth", depth), ("--explain", explain),
                                          ("--keras-shapes", keras_shapes)) if value]
        if given:
            raise _spec_error(f"{', '.join(given)} cannot be combined with --format json (the JSON is the whole "
                              f"report, every layer and field)")
    if fmt == "csv" and explain:
        raise _spec_error("--explain cannot be combined with --format csv")
    keys = parse_columns(columns)
    net = load_network(spec, batch, input_shape, dtype)
    with spec_context(spec):
        report = net.analyze()
    print(render_report(report, fmt, keys, depth, numbers, keras_shapes))
    if explain:
        text = "\n".join(explain_network(net, report))
        print("\n```\n" + text + "\n```" if fmt == "markdown" else "\n" + text)


def explain_network(net, report) -> list[str]:
    """Every layer's worked formulas, in execution order."""
    from ..explain import explain_layer
    from ..formatting import shape_text
    from ..names import split_output

    by_name = {entry.name: entry for entry in report.layers}
    rank = len(net.input) - 1
    lines = []
    for step in net.resolve():
        source = step.inputs[0] if step.inputs else None
        if source is None:                             # a layer without inputs (a learnable tensor)
            input_rf = None
        elif source == "input":
            input_rf = ([1] * rank, [1] * rank) if rank >= 1 else None
        else:
            producer = by_name[split_output(source)[0]]
            input_rf = (producer.receptive_field, producer.jump) if producer.receptive_field else None
        ins = ", ".join(shape_text(s) for s in step.input_shapes)
        lines.append(f"[{step.index}] {step.name} ({step.layer.type_name}): {ins} → "
                     f"{shape_text(step.facts.output_shape)}")
        lines += ["    " + line for line in explain_layer(step.layer, step.input_shapes, step.facts,
                                                          net.channels_last, report.dtype_bytes, input_rf)]
    return lines


def convert_command(
    source: Annotated[str, typer.Argument(
        help="a .keras file, Keras model JSON, Hugging Face config.json, .onnx file, spec file, - for stdin, or "
             "zoo:NAME", metavar="SOURCE")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE",
                                                  help="write the spec here (default: standard output)")] = None,
) -> None:
    """Write a model made by another tool as a layercalc YAML spec, to read, edit and run like any spec."""
    from .. import sources

    with spec_context(source):
        if source == "-":
            text = sources.convert(sources.parse_text(_read_stdin(), "<stdin>"))
        else:
            text = sources.convert(source)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise _spec_error(f"--output {output}: cannot write: {exc.strerror or exc}") from None


def schema_command() -> None:
    """Print the JSON Schema of the spec format (for editors and design tools)."""
    import json

    from ..spec import schema
    print(json.dumps(schema(), indent=2, ensure_ascii=False))


def zoo_command(numbers: Numbers = "exact") -> None:
    """List the bundled networks with their params and MACs (use them as `zoo:NAME` wherever a SPEC goes)."""
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    try:
        from .. import zoo
    except ImportError as exc:
        raise _spec_error(f"the model zoo is not available in this installation ({exc})") from None
    from tabulate import tabulate

    from ..formatting import count, shape_text

    rows = []
    for name in zoo.list_models():
        report = zoo.load(name).analyze()
        rows.append([name, shape_text(report.input_shape[1:]), str(len(report.layers)),
                     count(report.totals.params, numbers), count(report.totals.macs, numbers)])
    print(tabulate(rows, headers=["name", "input", "layers", "params", "MACs"], tablefmt="simple",
                   colalign=["left", "left", "right", "right", "right"], disable_numparse=True))
    print("\nuse as SPEC: layercalc summary zoo:NAME")
