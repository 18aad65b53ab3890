"""Commands on whole networks: ``summary``, ``convert``, ``schema``, ``zoo`` (``verify``, ``run``: .execute). SPEC is a
YAML/JSON spec, a model file of another tool (see ``layercalc.importers``), ``-`` for standard input, or
``zoo:NAME``. Each loads the network, calls the library and renders."""

import json
import re
import sys
from typing import Annotated, Any, Optional, Union

import typer

from ..errors import LayerCalcError, SpecError, safe_text
from .options import (
    Numbers,
    _check_choice,
    _shown,
    _spec_error,
    parse_shape,
    parse_sweep,
    read_batch,
    read_input,
    write_output,
)

# deferred imports (sources, spec, graph, formatting, display, network_explain, sweep, terminal, zoo, saved, training):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)


def load_network(spec: str, batch: Optional[int] = None, input_shape: Union[str, list[str], None] = None,
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
    return _apply_overrides(net, batch, input_shape, dtype, layout)


def _apply_overrides(net, batch, input_shape, dtype, layout):
    overrides: dict[str, Any] = {}
    if batch is not None:
        overrides["batch"] = batch
    shapes = [input_shape] if isinstance(input_shape, str) else list(input_shape or [])
    if len(shapes) == 1 and len(net.input_shapes()) == 1:
        overrides["input"] = one_input(shapes[0], net)
    elif shapes:                                       # one --input per network input (T5: encoder, decoder ids)
        net = net.replace_inputs([parse_shape(shape, "--input") for shape in shapes], "--input")
    if dtype is not None:
        overrides["dtype"] = dtype
    if layout is not None:
        overrides["layout"] = layout
    return _with_overrides(net, overrides) if overrides else net


def one_input(text: str, net) -> list[int]:
    """``--input`` for a command that analyzes one network: a shape, never a sweep (options.read_input's rules)."""
    how, value = read_input(text, len(net.input))
    if how == "sweep":
        raise _spec_error(f"--input: {_shown(text)} reads as a sweep of {len(value)} values, which summary and chart "
                          f"take; give one shape here (with x: 1x28x28)")
    return value


#: what a sweep asked for: the axis (input, batch or another input's name) and its values
SweepAsk = tuple[str, list]


def load_network_sweep(spec: str, batch: Optional[str] = None, input_shape: Union[str, list[str], None] = None,
                       sweep: Optional[str] = None, dtype: Optional[str] = None) -> tuple[Any, Any, Optional[SweepAsk]]:
    """:func:`load_network_assumed` for the commands that sweep (summary, chart): ``--batch`` and ``--input`` may be
    a list of values, ``--sweep [AXIS=]LIST`` names one (options.read_input and read_batch say how a comma list is
    read). Returns the network with the fixed overrides applied, what was assumed, and the sweep asked for (or
    None). One sweep at a time; a sweep and a fixed value of the same axis are refused."""
    net, assumed = load_network_assumed(spec, None, None, dtype)
    asked: list[tuple[str, str, list]] = []
    if sweep is not None:
        over, values = parse_sweep(sweep)
        asked.append((f"--sweep {over}=…", over, values))
    fixed: dict[str, Any] = {}
    if batch is not None:
        value = read_batch(batch)
        if isinstance(value, list):
            asked.append(("--batch", "batch", value))
        else:
            fixed["batch"] = value
    shapes = [input_shape] if isinstance(input_shape, str) else list(input_shape or [])
    if len(shapes) > 1 or (shapes and len(net.input_shapes()) > 1):
        with spec_context(spec):                       # one --input per network input (T5): shapes, never a sweep
            net = _apply_overrides(net, None, shapes, None, None)
    elif shapes:
        with spec_context(spec):
            how, shape = read_input(shapes[0], len(net.input))
        if how == "sweep":
            asked.append(("--input", "input", shape))
        else:
            fixed["input"] = shape
    if len(asked) > 1:
        raise _spec_error(f"{' and '.join(a[0] for a in asked)} each ask for a sweep: one sweep at a time (sweep one "
                          f"axis; give the other one value)")
    if asked and asked[0][1] in fixed:
        option, given = ("--batch", batch) if asked[0][1] == "batch" else ("--input", input_shape)
        raise _spec_error(f"{asked[0][0]} sweeps {asked[0][1]}, which {option} {_shown(given)} also sets: give one "
                          f"of them")
    if fixed:
        with spec_context(spec):
            net = _with_overrides(net, fixed)
    return net, _input_assumptions(net, assumed, bool(shapes)), ((asked[0][1], asked[0][2]) if asked else None)


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
InputOpt = Annotated[Optional[list[str]], typer.Option(
    "--input", "-i", metavar="SHAPE", help="input shape without batch, e.g. 3x224x224 (overrides the spec); once per "
                                           "input for a network with several (T5: --input 16 --input 8)")]
BatchSweepOpt = Annotated[Optional[str], typer.Option(
    "--batch", "-b", metavar="N|LIST", help="batch size (overrides the spec); a list (1,8,32) sweeps it")]
InputSweepOpt = Annotated[Optional[list[str]], typer.Option(
    "--input", "-i", metavar="SHAPE|LIST", help="input shape without batch, e.g. 3x224x224 (overrides the spec); "
                                               "a list sweeps it: 512,1024,2048 for an input of one size (tokens), "
                                               "3x224x224,3x320x320 for shapes; once per input for a network with "
                                               "several (T5: --input 16 --input 8)")]
SweepOpt = Annotated[Optional[str], typer.Option(
    "--sweep", metavar="[AXIS=]LIST", help="the totals at each value: --sweep 128,256 (the input's size), --sweep "
                                          "batch=1,8,32, --sweep 3x224x224,3x320x320, --sweep NAME=… (another "
                                          "input); a comma here always separates values")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", metavar="DTYPE",
                                                 help="float32, float64, float16, bfloat16, int32, int8, uint8 "
                                                      "(overrides the spec)")]


#: the training view of ``summary`` (its columns, totals and --explain lines: the backward pass)
TrainOpt = Annotated[bool, typer.Option(
    "--train", help="the training view: each layer's backward MACs (input and weight gradients) and FLOPs, the "
                    "training step's totals (forward + backward, per token for token ids); with --explain, the "
                    "backward formulas")]


NumbersAuto = Annotated[Optional[str], typer.Option(
    "--numbers", metavar="exact|human", help="exact (1,234,567) or human (1.23 M); default: exact where it fits the "
                                            "width, else human; CSV/JSON always exact")]


def summary_command(
    spec: SpecArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="table|markdown|csv|json",
                                     help="output format; json is the Report model, exact integers")] = "table",
    columns: Annotated[Optional[str], typer.Option(
        "--columns", "-c", metavar="LIST",
        help="comma-separated: index, name, type, inputs, input_shape, output_shape, params, buffers, macs, flops, "
             "param_memory, memory, receptive_field, jump, notes, param_count (Keras' Param #) (or all); the "
             "backward's: backward_input_macs, backward_weight_macs, backward_flops. Default: name, type, "
             "output_shape, params (param_count for a Keras model), macs, flops, memory; with --train: name, type, "
             "output_shape, macs and the backward's")] = None,
    depth: Annotated[Optional[int], typer.Option("--depth", min=1, help="group rows by dotted-name prefix "
                                                 "(layer3.2.conv1 → layer3 at depth 1), with subtotals")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="every layer on its own row (default: repeated blocks "
                                                          "folded into one row ×N)")] = False,
    notes: Annotated[str, typer.Option("--notes", metavar="default|all|none",
                                       help="all: every note of every layer (default: routine notes counted, "
                                            "repeated notes said once)")] = "default",
    conventions: Annotated[bool, typer.Option("--conventions", help="print what each figure counts in full")]
    = False,
    numbers: NumbersAuto = None,
    batch: BatchSweepOpt = None,
    input_shape: InputSweepOpt = None,
    sweep: SweepOpt = None,
    dtype: DtypeOpt = None,
    keras_shapes: Annotated[Optional[bool], typer.Option(
        "--keras-shapes/--torch-shapes", help="shapes as (None, 26, 26, 32), Keras-style, with Keras' Param # "
                                             "(default: for an NHWC network)")] = None,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="worked formulas for every layer")] = False,
    train: TrainOpt = False,
    past: Annotated[Optional[int], typer.Option(
        "--past", min=0, metavar="P", help="a decode step after P cached tokens: the table is the step's (k new "
                                           "tokens whose attention reads P + k keys), with prefill (the P-token "
                                           "prompt) vs decode: FLOPs, bytes read, intensity, KV cache")] = None,
    new_tokens: Annotated[Optional[int], typer.Option(
        "--new-tokens", min=1, metavar="K", help="tokens decoded in the step (with --past; default 1)")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", metavar="sgd|momentum|adam|adamw",
                                           help="with --train: the optimizer whose state is counted")] = "adam",
    precision: Annotated[str, typer.Option("--precision", metavar="fp32|bf16-mixed|fp16-mixed",
                                           help="with --train: fp32, or 16-bit weights, gradients and activations "
                                                "with fp32 master weights")] = "fp32",
    recompute: Annotated[bool, typer.Option("--recompute", help="with --train: full activation recomputation "
                                                                "(each repeated block checkpointed)")] = False,
) -> None:
    """Per-layer table of a whole network (shapes, params, MACs, FLOPs, memory) with totals and conventions.

    The table fits the terminal (--wide: no limit): repeated blocks are folded into one row ×N (--expand: every
    layer), notes said once (--notes all: each). A list of values (--input 512,1024,2048, --batch 1,8,32,
    --sweep) prints the totals at each value instead: one row per value, in every format. `--format json` prints
    `Report.model_dump(mode="json")` exactly (the documented schema); markdown and csv hold every layer with exact
    numbers; --columns, --depth and --explain apply to the table and markdown forms (and --columns/--depth to csv).
    --past P: the decode step of a generative network (--new-tokens K new tokens over P cached; the sequence length
    is P and K, not --input's) and prefill vs decode side by side; in JSON the step's report with a "serving" key.
    """
    from .. import terminal
    from ..formatting import FORMATS, NOTES_MODES, parse_columns, render_report

    fmt = _check_choice(fmt, FORMATS, "--format")
    numbers = "auto" if numbers is None else _check_choice(numbers, ("exact", "human"), "--numbers")
    notes = _check_choice(notes, NOTES_MODES, "--notes")
    if fmt == "json":
        given = [name for name, value in (("--columns", columns), ("--depth", depth), ("--explain", explain),
                                          ("--keras-shapes", keras_shapes is not None)) if value]
        if given:
            raise _spec_error(f"{', '.join(given)} cannot be combined with --format json (the JSON is the whole "
                              f"report, every layer and field)")
    if fmt == "csv" and explain:
        raise _spec_error("--explain cannot be combined with --format csv")
    if new_tokens is not None and past is None:
        raise _spec_error("--new-tokens needs --past (the cached tokens the new ones follow)")
    if train and past is not None:
        raise _spec_error("--train cannot be combined with --past (a decode step is inference: no backward pass)")
    keys = parse_columns(columns) if columns is not None else None
    training_keys = [key for key in keys or [] if key in ("saved", "backward_input_macs", "backward_weight_macs",
                                                          "backward_flops")]
    if training_keys and past is not None:
        raise _spec_error(f"--columns {', '.join(training_keys)} cannot be combined with --past (a decode step is "
                          f"inference: no backward pass, nothing saved for one)")
    if not train and (optimizer != "adam" or precision != "fp32" or recompute):
        raise _spec_error("--optimizer, --precision and --recompute describe a training step: add --train")
    net, assumed, asked = load_network_sweep(spec, batch, input_shape, sweep, dtype)
    if asked is not None:
        given = [name for name, value in (("--columns", columns), ("--depth", depth), ("--explain", explain),
                                          ("--expand", expand), ("--notes", notes != "default"),
                                          ("--conventions", conventions), ("--train", train),
                                          ("--past", past is not None),
                                          ("--keras-shapes", keras_shapes is not None)) if value]
        if given:
            raise _spec_error(f"{', '.join(given)} cannot be combined with a sweep (they shape one network's table; "
                              f"a sweep has a row per value)")
        from ..sweep import sweep as sweep_totals
        with spec_context(spec):
            result = sweep_totals(net, asked[1], over=asked[0])
        print(result.render(fmt, numbers, terminal.terminal_width()))
        return
    serving = None
    training = None
    with spec_context(spec):
        if past is None:
            steps = net.resolve()
            report = net.analyze(steps)
            training = training_view(net, steps, report, optimizer, precision, recompute) if train else None
        else:
            serving = net.serving(past, new_tokens or 1)
            report = serving.decode_report
            assumed = decode_assumptions(assumed, serving)
    if serving is not None and fmt == "json":
        print(json.dumps({**report.model_dump(mode="json"), "serving": serving.model_dump(mode="json")}, indent=2,
                         ensure_ascii=False))
        return
    if training is not None and fmt == "json":
        print(json.dumps({**report.model_dump(mode="json"), "training": training[1].model_dump(mode="json")},
                         indent=2, ensure_ascii=False))
        return
    shown = training[0] if training is not None else report
    width = terminal.terminal_width()                                    # --wide/--width: the CLI's own
    print(render_report(shown, fmt, keys, depth, numbers, keras_shapes, width=width, expand=expand,
                        notes=notes, conventions=conventions, assumed=assumed, train=train))
    if training is not None and fmt != "csv":
        print("\n" + training_text(training[1], numbers, width, fmt == "markdown"))
    if serving is not None and fmt != "csv":
        text = serving.table("auto" if numbers == "auto" else numbers, width)
        print("\n```\n" + text + "\n```" if fmt == "markdown" else "\n" + text)
    if explain:
        net_shown = net if serving is None else serving.decode_network
        saved = training[2] if training is not None else None
        lines = explain_network(net_shown, report, train, past or 0, saved,
                                None if serving is None else serving.decode_steps)
        text = "\n".join(terminal.wrap_formula(line.lstrip(" "), width, line[: len(line) - len(line.lstrip(" "))])
                         for line in lines)
        print("\n```\n" + text + "\n```" if fmt == "markdown" else "\n" + text)


def training_view(net, steps, report, optimizer: str, precision: str, recompute: bool):
    """``--train``: the report with each layer's saved bytes in the activations' dtype (the table's ``saved``
    column), the training memory, and the saved-tensor account (for ``--explain``)."""
    from ..graph import gradient_flow
    from ..saved import saved_tensors
    from ..training import activation_itemsize, training_memory

    account = saved_tensors(steps, gradient_flow(steps), activation_itemsize(precision), net.channels_last)
    memory = training_memory(net, optimizer, precision, recompute, steps, account)
    layers = [entry.model_copy(update={"saved_bytes": kept.bytes}) for entry, kept in zip(report.layers,
                                                                                         account.layers)]
    totals = report.totals.model_copy(update={"saved_bytes": account.total})
    return report.model_copy(update={"layers": layers, "totals": totals}), memory, account


def training_text(memory, numbers: Optional[str], width: int, markdown: bool) -> str:
    """The Training memory section, as the table's numbers are shown (exact unless --numbers human)."""
    from ..formatting import training_section
    from ..terminal import UNLIMITED

    text = training_section(memory, "human" if numbers == "human" else "exact", UNLIMITED if markdown else width)
    return "\n".join("- " + line.strip() if markdown else line for line in text.split("\n"))


def decode_assumptions(assumed, serving):
    """The header's account of a decode step: what the table counts (the sequence lengths are --past and
    --new-tokens, not the source's default input; the other inputs as the step has them)."""
    import dataclasses

    from ..display import Assumptions

    assumed = assumed or Assumptions()
    assumed = dataclasses.replace(assumed, input=None, more=[serving.describe(), *assumed.more])
    return _input_assumptions(serving.decode_network, assumed, True)


def explain_network(net, report, train: bool = False, past: int = 0, saved=None, steps=None) -> list[str]:
    """:func:`layercalc.network_explain.explain_network` (kept here for the CLI's callers; imported when called:
    the explanations are not loaded for other commands)."""
    from ..network_explain import explain_network as explain
    return explain(net, report, train=train, past=past, saved=saved, steps=steps)


def load_network_assumed(spec: str, batch: Optional[int] = None,
                         input_shape: Union[str, list[str], None] = None,
                         dtype: Optional[str] = None) -> tuple[Any, Any]:
    """:func:`load_network`, and what the source left open and was assumed (a Hugging Face config: the class
    built, the default sequence length and where it came from, the dtype), for the summary's header line. The
    file is read once (:func:`layercalc.sources.read_file`: a FIFO or ``<(…)`` has no second reading)."""
    from .. import sources

    if spec == "-" or spec.startswith("zoo:"):
        net, assumed = load_network(spec, batch, input_shape, dtype), None
    else:
        from ..spec import from_data

        with spec_context(spec):
            kind, parsed, data = sources.read_file(spec)
            net = from_data(data, spec)
            assumed = sources.config_assumptions(parsed, safe_text(spec), data) if kind == "huggingface" else None
            net = _apply_overrides(net, batch, input_shape, dtype, None)
    return net, _input_assumptions(net, assumed, bool(input_shape))


def _input_assumptions(net, assumed, input_given: bool):
    """The header's account of the inputs once the command line's are applied: the source's default length only
    when no --input was given; the network's other inputs (the header names the first), as they now are."""
    if input_given and assumed is not None:
        assumed.input = None                   # the length given, not the default the source's account explains
    if assumed is not None:
        assumed.more = [line for line in assumed.more if not line.startswith("other input")]
    others = list(net.input_shapes().items())[1:]
    if others:                                 # the header names the first input; the others are layers
        from ..display import Assumptions

        assumed = assumed or Assumptions()
        assumed.more.insert(0, "other input" + ("s " if len(others) > 1 else " ") + ", ".join(
            f"{name} {[net.batch, *shape]}" for name, shape in others))
    return assumed


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
    write_output(text, output)


def schema_command() -> None:
    """Print the JSON Schema of the spec format (for editors and design tools)."""

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
