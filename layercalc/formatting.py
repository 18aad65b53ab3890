"""Rendering reports for people and for programs: tables, markdown, CSV, JSON, human numbers, ``--depth`` groups.

Conventions:
- ``numbers="exact"`` prints ``1,234,567``; ``numbers="human"`` prints ``1.23 M`` / ``4.09 G`` (SI prefixes, three
  significant digits) for counts and ``1.18 MiB`` (binary prefixes) for bytes. CSV and JSON always hold exact
  integers, whatever ``numbers`` says.
- Shapes print as ``[1, 32, 26, 26]``; with ``keras=True`` as ``(None, 26, 26, 32)`` (Keras' ``model.summary()``
  style: the batch shown as ``None``). In CSV they are written ``1x32x26x26``.
- ``--depth N`` groups layers by the first N components of their dotted names (``layer3.2.conv1`` → ``layer3``
  at depth 1, ``layer3.2`` at depth 2), like torchinfo's ``depth``: in CSV and markdown one row per group with the
  group's subtotals (params, buffers, MACs, FLOPs, bytes summed; output shape = the group's last layer's), so the
  rows still add up to the totals; in the table a tree of every level down to N (``layercalc.display.depth_tree``).
- The table for a person (folded repeats, notes said once, fitted to the terminal's width) is described in
  :mod:`layercalc.display` and :func:`render_report`.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from . import terminal
from .display import (
    BACKWARD_KEYS,
    Assumptions,
    backward_sums,
    default_note_lines,
    depth_tree,
    fold_rows,
    share_text,
)
from .errors import SpecError, did_you_mean, safe_text

# ------------------------------------------------------------------------------------------------------- numbers

_SI = [(10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")]
_BINARY = [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")]


def exact(n: int) -> str:
    """``1234567`` → ``1,234,567``.

    >>> exact(1234567), exact(0)
    ('1,234,567', '0')
    """
    return f"{n:,}"


def _three_digits(value: float) -> str:
    text = f"{value:.3g}"
    return text if "e" not in text else f"{value:.0f}"


def human(n: int) -> str:
    """Three significant digits with an SI prefix; past 999 T, a power of ten (no float: any size of int).

    >>> human(93322), human(4089184256), human(512), human(1_500_000)
    ('93.3 K', '4.09 G', '512', '1.5 M')
    >>> human(123_456 * 10**20), human(10**400)
    ('1.23e25', '1e400')
    """
    if abs(n) >= 1000 * 10**12:
        return _power_of_ten(n)
    for scale, prefix in _SI:
        if abs(n) >= scale:
            return f"{_three_digits(n / scale)} {prefix}"
    return str(n)


def _power_of_ten(n: int) -> str:
    """``n`` as ``d.dde<exponent>`` with three significant digits, by integer arithmetic (truncated)."""
    sign, n = ("-" if n < 0 else ""), abs(n)
    exponent = int(n.bit_length() * 0.30102999566398120) - 1          # floor(log10(n)) or one less
    while n >= 10 ** (exponent + 1):
        exponent += 1
    digits = str(n // 10 ** max(exponent - 2, 0)).rstrip("0") or "0"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{exponent}"


def human_bytes(n: int) -> str:
    """Bytes with a binary prefix.

    >>> human_bytes(86528), human_bytes(100), human_bytes(3 * 2**30)
    ('84.5 KiB', '100 B', '3 GiB')
    """
    if abs(n) >= 1024 * 2**40:
        return f"{_power_of_ten(n)} B"
    for scale, prefix in _BINARY:
        if abs(n) >= scale:
            return f"{_three_digits(n / scale)} {prefix}"
    return f"{n} B"


def count(n: Optional[int], numbers: str = "exact") -> str:
    if n is None:
        return ""
    return human(n) if numbers == "human" else exact(n)


def nbytes(n: Optional[int], numbers: str = "exact") -> str:
    if n is None:
        return ""
    return human_bytes(n) if numbers == "human" else exact(n)


def shape_text(shape, keras: bool = False, compact: bool = False) -> str:
    """``[1, 32, 26, 26]``, or Keras-style ``(None, 26, 26, 32)``; ``compact`` leaves out the spaces (a table
    fitted to a narrow terminal).

    >>> shape_text([1, 26, 26, 32]), shape_text([8, 26, 26, 32], keras=True), shape_text([8, 10], keras=True)
    ('[1, 26, 26, 32]', '(None, 26, 26, 32)', '(None, 10)')
    >>> shape_text([1, 26, 26, 32], compact=True)
    '[1,26,26,32]'
    """
    if shape is None:
        return ""
    sep = "," if compact else ", "
    if keras:
        return "(" + sep.join(["None", *(str(s) for s in shape[1:])]) + ")"
    return "[" + sep.join(str(s) for s in shape) + "]"


def dims_text(values, sep: str = "×") -> str:
    if isinstance(values, str):                 # a receptive field that is the whole input, in words
        return values
    return sep.join(_plain(v) for v in values) if values is not None else ""


def _plain(v) -> str:
    """A receptive-field size or jump: ints exactly (any size), fractional jumps to 4 significant digits.

    >>> _plain(3), _plain(2 ** 60 + 1), _plain(0.5), _plain(1 / 3)
    ('3', '1152921504606846977', '0.5', '0.3333')
    """
    if isinstance(v, int):
        return str(v)
    return str(int(v)) if float(v).is_integer() else f"{float(v):.4g}"


# ------------------------------------------------------------------------------------------------------- rows

@dataclass
class Row:
    """One displayed row: a layer, or a ``--depth`` group of layers."""
    index: Optional[int]
    name: str
    type: str
    inputs: list[str]
    input_shapes: list[list[int]]
    output_shape: list[int]
    params: int
    buffers: int
    macs: int
    flops: int
    param_bytes: int
    activation_bytes: int
    receptive_field: Optional[list[int] | str] = None        # "whole input": the report's whole_input
    jump: Optional[list[int | float]] = None
    notes: list[str] = field(default_factory=list)
    saved_bytes: Optional[int] = None       # training: bytes first kept for backward by the layer (None: unknown)
    members: int = 1
    copies: int = 1                         # a folded row: the figures of one of this many copies (display.py)
    share: Optional[float] = None           # the row's share of the network's FLOPs, all copies (the % column)
    tree: bool = False                      # a member of a folded block, drawn under it
    # the backward pass (None: the layer's type does not state it)
    backward_input_macs: Optional[int] = 0
    backward_weight_macs: Optional[int] = 0
    backward_flops: Optional[int] = 0

    @classmethod
    def of_layer(cls, entry) -> Row:
        shown_type = f"{entry.type}+{entry.activation}" if entry.activation else entry.type    # conv2d+relu
        return cls(entry.index, entry.name, shown_type, list(entry.inputs), [list(s) for s in entry.input_shapes],
                   list(entry.output_shape), entry.params, entry.buffers, entry.macs, entry.flops,
                   entry.param_bytes, entry.activation_bytes,
                   "whole input" if entry.whole_input else entry.receptive_field, entry.jump, list(entry.notes),
                   saved_bytes=entry.saved_bytes,
                   backward_input_macs=entry.backward_input_macs, backward_weight_macs=entry.backward_weight_macs,
                   backward_flops=entry.backward_flops)


def group_prefix(name: str, depth: int) -> str:
    """The group a dotted name falls in at ``depth``.

    >>> group_prefix('layer3.2.conv1', 1), group_prefix('layer3.2.conv1', 2), group_prefix('fc', 1)
    ('layer3', 'layer3.2', 'fc')
    """
    return ".".join(name.split(".")[:depth])


def group_rows(layers, depth: Optional[int]) -> list[Row]:
    """One row per layer, or per dotted-name group at ``depth`` (subtotals; order of first appearance)."""
    rows = [Row.of_layer(entry) for entry in layers]
    if depth is None:
        return rows
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(group_prefix(row.name, depth), []).append(row)
    out = []
    for prefix, members in groups.items():
        if len(members) == 1 and members[0].name == prefix:
            out.append(members[0])
            continue
        first, last = members[0], members[-1]
        notes = [n for m in members for n in m.notes]
        out.append(Row(
            index=first.index, name=prefix, type=f"group ({len(members)} layers)", inputs=first.inputs,
            input_shapes=first.input_shapes, output_shape=last.output_shape,
            params=sum(m.params for m in members), buffers=sum(m.buffers for m in members),
            macs=sum(m.macs for m in members), flops=sum(m.flops for m in members),
            param_bytes=sum(m.param_bytes for m in members),
            activation_bytes=sum(m.activation_bytes for m in members),
            receptive_field=last.receptive_field, jump=last.jump,
            notes=[f"{len(notes)} note(s) inside; see --depth with a larger value"] if notes else [],
            saved_bytes=None if any(m.saved_bytes is None for m in members) else sum(m.saved_bytes or 0
                                                                                     for m in members),
            members=len(members), **_backward_fields(members)))
    return out


def _backward_fields(members: list[Row]) -> dict[str, Any]:
    """:func:`~layercalc.display.backward_sums` of a group's rows, as Row's keyword arguments."""
    return dict(backward_sums(members))


# ------------------------------------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str                              # "count" | "bytes" | "shape" | "shapes" | "text" | "dims"
    get: Callable[[Row], Any]
    total: bool = False                    # summed in the totals row
    missing: str = ""                      # what a None value reads as


COLUMNS: dict[str, Column] = {c.key: c for c in [
    Column("index", "#", "text", lambda r: r.index),
    Column("name", "name", "text", lambda r: r.name),
    Column("type", "type", "text", lambda r: r.type),
    Column("inputs", "inputs", "text", lambda r: ", ".join(r.inputs)),
    Column("input_shape", "input shape", "shapes", lambda r: r.input_shapes),
    Column("output_shape", "output shape", "shape", lambda r: r.output_shape),
    Column("params", "params", "count", lambda r: r.params, total=True),
    Column("buffers", "buffers", "count", lambda r: r.buffers, total=True),
    Column("macs", "MACs", "count", lambda r: r.macs, total=True),
    Column("flops", "FLOPs", "count", lambda r: r.flops, total=True),
    Column("param_memory", "param bytes", "bytes", lambda r: r.param_bytes, total=True),
    Column("memory", "output bytes", "bytes", lambda r: r.activation_bytes, total=True),
    Column("receptive_field", "receptive field", "dims", lambda r: r.receptive_field),
    Column("jump", "jump", "dims", lambda r: r.jump),
    Column("notes", "notes", "text", lambda r: "; ".join(r.notes)),
    # Keras' "Param #": every weight of the layer, trainable or not (BatchNorm's moving mean and variance too)
    Column("param_count", "Param #", "count", lambda r: r.params + r.buffers, total=True),
    # training: the tensors autograd keeps for the layer's backward that no earlier layer keeps (layercalc.saved)
    Column("saved", "saved bytes", "bytes", lambda r: r.saved_bytes, total=True),
    # the backward pass (--train): MACs of the gradients w.r.t. activations and parameters, and its FLOPs
    Column("backward_input_macs", "grad-in MACs", "count", lambda r: r.backward_input_macs, total=True,
           missing="unknown"),
    Column("backward_weight_macs", "grad-w MACs", "count", lambda r: r.backward_weight_macs, total=True,
           missing="unknown"),
    Column("backward_flops", "bwd FLOPs", "count", lambda r: r.backward_flops, total=True, missing="unknown"),
]}

#: the "% of FLOPs" column of the folded and --depth views (not a column of its own: a share needs the view)
SHARE = Column("share", "%", "share", lambda r: r.share)

COLUMN_ALIASES = {
    "#": "index", "input": "input_shape", "input_shapes": "input_shape", "in": "input_shape",
    "output": "output_shape", "out": "output_shape", "shape": "output_shape",
    "param_bytes": "param_memory", "param_mem": "param_memory", "activation_bytes": "memory",
    "activations": "memory", "output_bytes": "memory", "mem": "memory", "rf": "receptive_field",
    "mac": "macs", "flop": "flops", "note": "notes", "param_#": "param_count", "keras_params": "param_count",
    "saved_bytes": "saved", "saved_for_backward": "saved",
    "grad_in": "backward_input_macs", "grad_w": "backward_weight_macs", "bwd": "backward_flops",
    "backward": "backward_flops",
}

DEFAULT_COLUMNS = ["name", "type", "output_shape", "params", "macs", "flops", "memory"]
#: a Keras source's default table: Keras' Param # (params and buffers) in place of the PyTorch count
KERAS_COLUMNS = ["name", "type", "output_shape", "param_count", "macs", "flops", "memory"]

#: the training view's default table (``summary --train``): the forward MACs beside the backward's, by gradient
TRAIN_COLUMNS = ["name", "type", "output_shape", "macs", "backward_input_macs", "backward_weight_macs",
                 "backward_flops", "saved"]

#: the formats of ``summary --format`` (and :func:`render_report`): the CLI checks its option against this
FORMATS = ("table", "markdown", "csv", "json")

#: what ``--notes`` takes: the default view (routine notes counted, repeated ones said once), every note, none
NOTES_MODES = ("default", "all", "none")


def parse_columns(text: Optional[str]) -> list[str]:
    """``"name,params,rf"`` → column keys; ``all`` for every column; unknown names are a ``SpecError``.

    >>> parse_columns("name, Output,rf")
    ['name', 'output_shape', 'receptive_field']
    """
    if text is None:
        return list(DEFAULT_COLUMNS)
    if not text.replace(",", "").strip():
        raise SpecError(f"--columns: got {text!r}, no column named (available: {', '.join(COLUMNS)}, or all)")
    keys = []
    for raw in text.split(","):
        word = raw.strip().lower().replace("-", "_").replace(" ", "_")
        if not word:
            continue
        if word == "all":          # every column of the forward view (the backward's are named, or --train's)
            keys += [k for k in COLUMNS if k not in keys and k not in BACKWARD_KEYS]
            continue
        key = COLUMN_ALIASES.get(word, word)
        if key not in COLUMNS:
            raise SpecError(f"--columns: unknown column {raw.strip()!r}"
                            f"{did_you_mean(word, [*COLUMNS, *COLUMN_ALIASES]) or ''} "
                            f"(available: {', '.join(COLUMNS)}, or all)")
        if key not in keys:
            keys.append(key)
    if not keys:
        raise SpecError(f"--columns: no column named in {text!r} (available: {', '.join(COLUMNS)})")
    return keys


def cell(column: Column, row: Row, numbers: str, keras: bool, compact: bool = False) -> str:
    value = column.get(row)
    if column.key == "name" and row.copies > 1:
        return f"{safe_text(value)} (×{row.copies})"
    if column.kind == "share":
        return share_text(value)
    if column.kind == "count":
        return column.missing if value is None else count(value, numbers)
    if column.kind == "bytes":
        return nbytes(value, numbers)
    if column.kind == "shape":
        return shape_text(value, keras, compact)
    if column.kind == "shapes":
        return ", ".join(shape_text(s, keras, compact) for s in value)
    if column.kind == "dims":
        return dims_text(value)
    return "" if value is None else safe_text(str(value))     # a name from a spec: no terminal escapes


def csv_cell(column: Column, row: Row) -> Any:
    value = column.get(row)
    if column.kind == "shape":
        return dims_text(value, "x")
    if column.kind == "shapes":
        return " ".join(dims_text(s, "x") for s in value)
    if column.kind == "dims":
        return dims_text(value, "x")
    return "" if value is None else value


# ------------------------------------------------------------------------------------------------------- reports

def render_report(report, fmt: str = "table", columns: Optional[list[str]] = None, depth: Optional[int] = None,
                  numbers: str = "auto", keras: Optional[bool] = None, *, width: Optional[int] = None,
                  expand: bool = False, notes: str = "default", conventions: bool = False,
                  assumed: Optional[Assumptions] = None, train: bool = False) -> str:
    """The whole ``summary`` output in one of :data:`FORMATS`.

    ``table`` is the view for a person, fitted to ``width`` columns (None: :func:`terminal.terminal_width`, 80 off
    a terminal; :data:`terminal.UNLIMITED`: no limit): repeated blocks folded (``expand=True``: every layer; a
    ``depth``: one row per dotted-name group), notes said once (``notes="all"``: each; ``"none"``), the conventions
    as one line pointing to the full text (``conventions=True``: the full text). To fit, it switches to human
    numbers (``numbers="auto"``; ``"exact"``/``"human"`` are kept as asked), writes shapes without spaces, leaves
    out the less important of the default columns (``columns`` given: never) and shortens long names in the middle.
    ``keras`` (None: for an NHWC network, Keras' layout) shows Keras' view: shapes as ``(None, 26, 26, 32)`` and
    Keras' ``Param #`` per row. ``assumed`` (:class:`layercalc.display.Assumptions`) are the choices the source
    left open (the class built from a config, the default sequence length…), said in the header line.

    ``markdown``, ``csv`` and ``json`` are for programs and documents: every layer (or ``depth`` group), exact
    numbers (markdown: as ``numbers`` says), every note and convention, no width.

    ``train``: the training view — the backward columns by default (:data:`TRAIN_COLUMNS`) and the training-step
    totals after the totals (:func:`training_lines`).
    """
    with gc_paused():       # rows, cells and lines kept until the text is joined (see gc_paused)
        return _render_report(report, fmt, columns, depth, numbers, keras, width, expand, notes, conventions,
                              assumed, train)


def _render_report(report, fmt, columns, depth, numbers, keras, width, expand, notes, conventions, assumed,
                   train=False) -> str:
    if fmt not in FORMATS:
        raise SpecError(f"format: got {fmt!r}, expected one of {', '.join(FORMATS)}")
    if notes not in NOTES_MODES:
        raise SpecError(f"notes: got {notes!r}, expected one of {', '.join(NOTES_MODES)}")
    if fmt == "json":
        return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False)
    if keras is None:
        keras = report.layout == "NHWC"
    explicit = columns is not None
    keys = list(columns) if explicit else default_columns(keras and fmt != "csv", train)
    cols = [COLUMNS[k] for k in keys]
    base = group_rows(report.layers, depth)
    if fmt == "csv":
        return render_csv(base, cols)
    markdown = fmt == "markdown"
    if markdown:
        numbers = "exact" if numbers == "auto" else numbers
        table = render_table(base, cols, numbers, keras, totals=report.totals, markdown=True)
        parts = [header(report, assumed, markdown=True), table, notes_text(report, markdown=True),
                 footer(report, numbers, markdown=True, train=train)]
        return "\n\n".join(p for p in parts if p)
    width = terminal.terminal_width(width) if width is None or width < terminal.UNLIMITED else width
    total_flops = report.totals.flops
    same = [c for c in cols if c.key not in ("name", "index", "inputs", "notes")]

    def shown(row: Row) -> tuple:           # what copies must share to be folded: every figure shown
        return tuple(cell(c, row, "exact", keras) for c in same)

    if expand:
        rows = group_rows(report.layers, depth)
    elif depth is not None:
        rows = depth_tree(group_rows(report.layers, None), depth, shown, total_flops)
        cols = cols if explicit or train else cols + [SHARE]
    else:
        rows = fold_rows(base, shown, total_flops)
        cols = cols if explicit or train else cols + [SHARE]
    table, folded = fit_table(rows, cols, numbers, keras, report.totals, width, explicit)
    out = [wrap_line(header(report, assumed), width), table]
    if folded:
        out.append(terminal.wrap("(×N) rows: one copy's figures; every layer: --expand" if train else
                                 "(×N) rows: one copy's figures; %: share of all FLOPs; every layer: --expand",
                                 width))
    note_lines = (notes_lines_all(report, width) if notes == "all" else
                  [] if notes == "none" else default_note_lines(report.layers, width))
    if note_lines:
        out.append("\n".join(note_lines))
    out.append(footer(report, "exact" if numbers == "auto" else numbers, width=width, conventions=conventions,
                      train=train))
    return "\n\n".join(out)


class gc_paused:
    """Pause the cyclic garbage collector for a block that builds many objects it keeps until it returns (a dump's
    dicts and lists, a table's rows and cells): each collection would walk them all again, which made rendering
    grow faster than the network (100,000 layers: 3× the time per layer of 1,000; bench/bench_render.py).
    Nothing cyclic is made there, so nothing is left for it to collect; re-enabled after, as it was."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def wrap_line(text: str, width: int) -> str:
    return terminal.wrap_lines(text, width)


def header(report, assumed: Optional[Assumptions] = None, markdown: bool = False) -> str:
    """The one line said before the table: the network, what was assumed for its source (the class built from a
    config), its input (and where a default length came from), the layout where it means something (an input with
    channels and positions, not tokens), the dtype (and the source's own, when it is not the one counted), the batch
    and the outputs."""
    assumed = assumed or Assumptions()
    layout = [report.layout] if len(report.input_shape) > 2 else []          # [batch, tokens]: no layout
    declared = safe_text(assumed.declared_dtype or report.dtype)
    said = f"the config's {assumed.dtype_key}" if assumed.dtype_key else "the source"
    dtype = (f"{report.dtype} ({report.dtype_bytes} bytes/element" +
             (f"; {said} says {declared}: --dtype {declared})" if declared != report.dtype
              else f", {said})" if assumed.declared_dtype else ")"))
    parts = [f"Network: {safe_text(report.name) if report.name else '(unnamed)'}",
             *([safe_text(assumed.built)] if assumed.built else []),
             f"input {shape_text(report.input_shape)}" + (f" = {safe_text(assumed.input)}" if assumed.input else ""),
             *layout, dtype, f"batch {report.batch}", *(safe_text(m) for m in assumed.more),
             f"outputs: {', '.join(safe_text(o) for o in report.outputs)}"]
    return ("- " if markdown else "") + " · ".join(parts)


# ------------------------------------------------------------------------------------------------------- fitting

#: the default columns left out first when the table is too wide, in this order (the name is always kept); the
#: training view keeps its backward FLOPs and saved bytes longest, its split of the backward MACs (input and weight
#: gradients, whose sum the backward FLOPs hold) going first
DROP_ORDER = ("memory", "flops", "type", "share", "macs", "backward_weight_macs", "backward_input_macs", "saved",
              "output_shape")


def fit_table(rows: list[Row], cols: list[Column], numbers: str, keras: bool, totals, width: int,
              explicit: bool) -> tuple[str, bool]:
    """The table at most ``width`` wide if it can be (see :func:`render_report`); and whether it has folded rows."""
    folded = any(row.copies > 1 for row in rows)
    number_choices = ["exact", "human"] if numbers == "auto" else [numbers]
    cache: dict[tuple, list[str]] = {}

    def cells_of(c: Column, numbers_: str, compact: bool) -> list[str]:
        key = (c.key, numbers_ if c.kind in ("count", "bytes") else "", compact if "shape" in c.kind else False)
        if key not in cache:
            cache[key] = [cell(c, row, numbers_, keras, compact) for row in rows]
        return cache[key]

    def attempt(chosen: list[Column], numbers_: str, compact: bool) -> tuple[int, list[list[str]], list[str]]:
        columns = [cells_of(c, numbers_, compact) for c in chosen]
        total_row = _total_row(chosen, totals, numbers_, False)
        widths = [max([len(c.header), len(t), *map(len, cells)]) for c, cells, t in zip(chosen, columns, total_row)]
        return sum(widths) + 2 * (len(chosen) - 1), columns, total_row

    # exact numbers first (with shapes written compactly, then without the output bytes if need be), then human
    # numbers; the columns left out are then left out in DROP_ORDER
    first, last = number_choices[0], number_choices[-1]
    plans = [(first, False, ()), (first, True, ()), (first, True, ("memory",)), (last, True, ())]
    for numbers_, compact, without in plans:
        chosen = [c for c in cols if explicit or c.key not in without]
        size, columns, total_row = attempt(chosen, numbers_, compact)
        if size <= width:
            break
    dropped: list[Column] = []
    while size > width and not explicit:
        droppable = [key for key in DROP_ORDER if any(c.key == key for c in chosen)]
        if not droppable:
            break
        dropped += [c for c in chosen if c.key == droppable[0]]
        chosen = [c for c in chosen if c.key != droppable[0]]
        size, columns, total_row = attempt(chosen, numbers_, compact)
    for column in reversed(dropped[:-1]):        # a column dropped early may fit again beside what is left
        tried = [c for c in cols if c in chosen or c is column]
        tried_size, tried_columns, tried_total = attempt(tried, numbers_, compact)
        if tried_size <= width:
            chosen, size, columns, total_row = tried, tried_size, tried_columns, tried_total
    names = [k for k, c in enumerate(chosen) if c.key == "name"]
    if size > width and names:                    # long names shortened in the middle, to what is left
        k = names[0]
        longest = max(map(len, columns[k]), default=0)
        room = max(16, longest - (size - width))
        columns[k] = [middle_cut(text, room) for text in columns[k]]
    body = [list(values) for values in zip(*columns)] if columns else [[] for _ in rows]
    return _draw(chosen, body, total_row, markdown=False), folded


def middle_cut(text: str, room: int) -> str:
    """``text`` at most ``room`` characters, its middle replaced by ``…`` (a layer name's start and end say most).

    >>> middle_cut("model.layers.0.post_attention_layernorm", 24)
    'model.layers…n_layernorm'
    """
    if len(text) <= room:
        return text
    tail = (room - 1) // 2
    return text[: room - 1 - tail] + "…" + text[len(text) - tail:]


def _total_row(cols: list[Column], totals, numbers: str, markdown: bool) -> list[str]:
    if totals is None or not any(c.total for c in cols):
        return []
    label_at = 0 if not cols[0].total else None
    row = []
    for i, c in enumerate(cols):
        value = _totals_value(c, totals)
        if value is not None:
            row.append(count(value, numbers) if c.kind == "count" else nbytes(value, numbers))
        elif c.total and c.missing:                  # a total that is unknown (a layer's backward is)
            row.append(c.missing)
        elif c.kind == "share":
            row.append("100.0")
        else:
            row.append("total" if i == label_at else "")
    return [f"**{v}**" if v else "" for v in row] if markdown else row


def _totals_value(column: Column, totals) -> Optional[int]:
    return {"params": totals.params, "buffers": totals.buffers, "macs": totals.macs, "flops": totals.flops,
            "param_memory": totals.param_bytes, "memory": totals.activation_bytes,
            "param_count": totals.params + totals.buffers, "saved": totals.saved_bytes,
            **{key: getattr(totals, key, None) for key in BACKWARD_KEYS}}.get(column.key)


def _draw(cols: list[Column], body: list[list[str]], total_row: list[str], markdown: bool) -> str:
    """A table in the "simple" style (a header, a rule, the rows, a rule, the totals) or as GitHub markdown; in
    time linear in its cells."""
    right = [c.kind in ("count", "bytes", "share") or c.key == "index" for c in cols]
    rows = body + ([total_row] if total_row else [])
    widths = [max([len(c.header), *(len(r[k]) for r in rows)]) for k, c in enumerate(cols)]
    if markdown:
        widths = [max(w, 3) for w in widths]

    def line(values: list[str]) -> str:
        cells = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(cells) + " |" if markdown else "  ".join(cells).rstrip()

    rule = ("|" + "|".join((("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1))) for w, r in zip(widths, right))
            + "|") if markdown else "  ".join("-" * w for w in widths)
    lines = [line([c.header for c in cols]), rule]
    lines += [line(r) for r in body]
    if total_row:
        if not markdown:
            lines.append(rule)
        lines.append(line(total_row))
    return "\n".join(lines)


def render_table(rows: list[Row], cols: list[Column], numbers: str = "exact", keras: bool = False, totals=None,
                 markdown: bool = False) -> str:
    """Every row and column as given (no fitting): the markdown form, and tables of other commands."""
    body = [[cell(c, row, numbers, keras) for c in cols] for row in rows]
    return _draw(cols, body, _total_row(cols, totals, numbers, markdown), markdown)


def render_csv(rows: list[Row], cols: list[Column]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in cols])
    for row in rows:
        writer.writerow([csv_cell(c, row) for c in cols])
    return buffer.getvalue().rstrip("\n")


def notes_text(report, markdown: bool = False) -> str:
    """Every layer's notes, one line each (the markdown form; ``--notes all``)."""
    lines = [safe_text(f"{entry.name} ({entry.type}): {note}") for entry in report.layers for note in entry.notes]
    if not lines:
        return ""
    return "\n".join(["- Notes:" if markdown else "Notes:"] + [f"  - {line}" if markdown else f"  {line}"
                                                              for line in lines])


def notes_lines_all(report, width: int) -> list[str]:
    """Every note of every layer, each wrapped to ``width`` with a hanging indent."""
    text = notes_text(report)
    return [terminal.wrap_lines(text, width)] if text else []


def footer(report, numbers: str = "exact", markdown: bool = False, width: int = terminal.UNLIMITED,
           conventions: bool = True, train: bool = False) -> str:
    """Totals, and the conventions the figures follow: in full (``conventions``, and always in markdown) or as
    one line saying where they are; ``train``: the training step's totals too (:func:`training_lines`)."""
    t = report.totals
    n = lambda v: count(v, numbers)              # noqa: E731
    b = lambda v: human_bytes(v) if numbers == "human" else f"{exact(v)} B"   # noqa: E731
    lines = [
        f"Totals: params {n(t.params)} · buffers {n(t.buffers)} · MACs {n(t.macs)} · FLOPs {n(t.flops)}",
        f"Memory: params {b(t.param_bytes)} · buffers {b(t.buffer_bytes)} · input {b(t.input_bytes)} · "
        f"all layer outputs {b(t.activation_bytes)} · peak live activations {b(t.peak_activation_bytes)}"
        + (f" · KV cache {b(t.kv_cache_bytes)}" if getattr(t, "kv_cache_bytes", 0) else ""),
    ]
    if t.active_params != t.params or t.all_experts_macs != t.macs:
        # a mixture of experts: what one token uses, and what counting every expert would say
        lines.insert(1, f"Experts: active params {n(t.active_params)} of {n(t.params)} (router, top-k and shared "
                        f"experts) · MACs count the top-k run; all experts would be {n(t.all_experts_macs)}")
    keras = getattr(report, "keras_params", None)
    if keras is not None:                        # a Keras-layout network: the totals as model.summary() prints them
        lines.insert(1, f"Keras: Total params {n(keras.total)} · Trainable params {n(keras.trainable)} · "
                        f"Non-trainable params {n(keras.non_trainable)}")
    if train:
        lines[1:1] = training_lines(report, numbers)
    conv = [f"{key}: {text}" for key, text in report.conventions.items()]
    if markdown:
        return "\n".join([f"- {line}" for line in lines] + ["- Conventions:"] + [f"  - {c}" for c in conv])
    if conventions:
        lines += ["Conventions:"] + [f"  {c}" for c in conv]
    else:
        lines.append("Conventions: what each figure counts: --conventions, or docs/conventions.md")
    return terminal.wrap_lines("\n".join(lines), width)


def default_columns(keras: bool, train: bool) -> list[str]:
    """The summary's columns when none are asked for: the training view's (``--train``), Keras' (a Keras-layout
    network, in a table), or the default."""
    if train:
        return list(TRAIN_COLUMNS)
    return list(KERAS_COLUMNS if keras else DEFAULT_COLUMNS)


def training_lines(report, numbers: str = "exact") -> list[str]:
    """The training step's totals (``summary --train``): forward, backward (its input- and weight-gradient MACs)
    and their sum; per token when the input is token ids (the count used said); the layers whose backward is
    unknown named, instead of a total that would leave them out."""
    t = report.totals
    n = lambda v: count(v, numbers)              # noqa: E731
    if t.backward_flops is None:
        names = ", ".join(safe_text(name) for name in t.backward_unknown[:5])
        more = f" and {len(t.backward_unknown) - 5} more" if len(t.backward_unknown) > 5 else ""
        return [f"Backward: unknown: the type of {names}{more} does not state its backward pass (a plugin without "
                f"backward()), so there is no backward or training-step total"]
    lines = [f"Training step: forward FLOPs {n(t.flops)} + backward FLOPs {n(t.backward_flops)} = "
             f"{n(t.training_flops)} (optimizer update not included)",
             f"Backward MACs: input gradients {n(t.backward_input_macs)} · weight gradients "
             f"{n(t.backward_weight_macs)} (2·MACs = FlopCounterMode around loss.backward())"]
    if t.tokens:
        def per(value: float) -> str:
            if numbers != "exact":
                return human(round(value))
            return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"

        counted = "batch × positions" + (" of the decoded input" if "tokens" in report.conventions else "")
        lines.append(f"Per token ({t.tokens:,} tokens = {counted}): forward {per(t.flops_per_token)} · "
                     f"backward {per(t.backward_flops_per_token)} · training step "
                     f"{per(t.training_flops_per_token)} FLOPs")
    return lines


def render_html(report, columns: Optional[list[str]] = None) -> str:
    """The report as an HTML table (Jupyter's ``_repr_html_``): every layer, exact numbers, a totals row, and the
    header and totals lines; every text escaped."""
    from html import escape

    keras = report.layout == "NHWC"
    cols = [COLUMNS[k] for k in (columns or (KERAS_COLUMNS if keras else DEFAULT_COLUMNS))]
    rows = group_rows(report.layers, None)
    right = ' style="text-align:right"'

    def tr(values: list[str], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}{right if c.kind in ('count', 'bytes') else ''}>{escape(v)}</{tag}>"
                                for c, v in zip(cols, values)) + "</tr>"

    body = [tr([cell(c, row, "exact", keras) for c in cols]) for row in rows]
    total = _total_row(cols, report.totals, "exact", False)
    parts = [f"<p>{escape(header(report))}</p>", "<table>", "<thead>" + tr([c.header for c in cols], "th")
             + "</thead>", "<tbody>", *body, "</tbody>"]
    if total:
        parts.append("<tfoot>" + tr(total) + "</tfoot>")
    parts.append("</table>")
    parts += [f"<p>{escape(line)}</p>" for line in footer(report, conventions=False).split("\n")]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------------ training

#: how the optimizers and precisions are named in the training section
OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}
PRECISION_NAMES = {"fp32": "fp32: weights, gradients, activations 4 bytes",
                   "bf16-mixed": "bf16 mixed: weights, gradients, activations 2 bytes",
                   "fp16-mixed": "fp16 mixed: weights, gradients, activations 2 bytes"}
OPTIMIZER_STATE_TEXT = {"sgd": "SGD keeps none", "momentum": "a momentum buffer per param",
                        "adam": "2 moments per param, a step per tensor",
                        "adamw": "2 moments per param, a step per tensor"}


def training_section(memory, numbers: str = "exact", width: int = terminal.UNLIMITED) -> str:
    """The "Training memory" section of ``summary --train``: ``memory`` is a
    :class:`layercalc.training.TrainingMemory`; one figure a line, exact (``numbers`` "exact") or binary-prefixed;
    a figure that cannot be given says why."""
    b = lambda v: human_bytes(v) if numbers == "human" else f"{exact(v)} B"   # noqa: E731
    t = memory
    title = (f"Training memory ({OPTIMIZER_NAMES[t.optimizer]}; {PRECISION_NAMES[t.precision]}"
             + ("; full recomputation" if t.recompute else "") + "):")
    frozen = f", {count(t.frozen_params)} frozen" if t.frozen_params else ""
    rows = [("weights", t.weight_bytes, f"params and buffers{frozen}"),
            ("gradients", t.gradient_bytes, "one per trainable param")]
    if t.master_weight_bytes:
        rows.append(("master weights", t.master_weight_bytes, "fp32 copy of the trainable params"))
    rows.append(("optimizer state", t.optimizer_state_bytes, OPTIMIZER_STATE_TEXT[t.optimizer]))
    kept = "at their peak: each repeated block recomputed" if t.recompute else "kept for backward (saved column)"
    rows.append(("saved activations", t.saved_bytes, kept))
    rows.append(("backward transient", t.backward_transient_bytes, "largest gradients of one layer's backward"))
    rows.append(("peak", t.peak_bytes, "the sum: one training step"))
    texts = [(label, "not given" if value is None else b(value), why) for label, value, why in rows]
    label_width = max(len(label) for label, _, _ in texts)
    value_width = max(len(value) for _, value, _ in texts)
    lines = [title] + [f"  {label.ljust(label_width)}  {value.rjust(value_width)}  {why}" for label, value, why
                       in texts]
    if t.saved_bytes is None:
        listed = ", ".join(t.unknown[:3]) + (" …" if len(t.unknown) > 3 else "")
        lines.append(f"  not given: what {len(t.unknown)} layer(s) keep for backward is not modeled: {listed}")
    return terminal.wrap_lines("\n".join(lines), width)
