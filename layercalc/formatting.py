"""Rendering reports for people and for programs: tables, markdown, CSV, JSON, human numbers, ``--depth`` groups.

Conventions:
- ``numbers="exact"`` prints ``1,234,567``; ``numbers="human"`` prints ``1.23 M`` / ``4.09 G`` (SI prefixes, three
  significant digits) for counts and ``1.18 MiB`` (binary prefixes) for bytes. CSV and JSON always hold exact
  integers, whatever ``numbers`` says.
- Shapes print as ``[1, 32, 26, 26]``; with ``keras=True`` as ``(None, 26, 26, 32)`` (Keras' ``model.summary()``
  style: the batch shown as ``None``). In CSV they are written ``1x32x26x26``.
- ``--depth N`` groups layers by the first N components of their dotted names (``layer3.2.conv1`` → ``layer3``
  at depth 1, ``layer3.2`` at depth 2), like torchinfo's ``depth``: one row per group with the group's subtotals
  (params, buffers, MACs, FLOPs, bytes summed; output shape = the group's last layer's), so the rows still add up
  to the totals.

tabulate is imported only when a text table is rendered.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import SpecError, did_you_mean

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


def shape_text(shape, keras: bool = False) -> str:
    """``[1, 32, 26, 26]``, or Keras-style ``(None, 26, 26, 32)``.

    >>> shape_text([1, 26, 26, 32]), shape_text([8, 26, 26, 32], keras=True), shape_text([8, 10], keras=True)
    ('[1, 26, 26, 32]', '(None, 26, 26, 32)', '(None, 10)')
    """
    if shape is None:
        return ""
    if keras:
        return "(" + ", ".join(["None", *(str(s) for s in shape[1:])]) + ")"
    return "[" + ", ".join(str(s) for s in shape) + "]"


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
    members: int = 1

    @classmethod
    def of_layer(cls, entry) -> Row:
        shown_type = f"{entry.type}+{entry.activation}" if entry.activation else entry.type    # conv2d+relu
        return cls(entry.index, entry.name, shown_type, list(entry.inputs), [list(s) for s in entry.input_shapes],
                   list(entry.output_shape), entry.params, entry.buffers, entry.macs, entry.flops,
                   entry.param_bytes, entry.activation_bytes,
                   "whole input" if entry.whole_input else entry.receptive_field, entry.jump, list(entry.notes))


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
            members=len(members)))
    return out


# ------------------------------------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str                              # "count" | "bytes" | "shape" | "shapes" | "text" | "dims"
    get: Callable[[Row], Any]
    total: bool = False                    # summed in the totals row


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
]}

COLUMN_ALIASES = {
    "#": "index", "input": "input_shape", "input_shapes": "input_shape", "in": "input_shape",
    "output": "output_shape", "out": "output_shape", "shape": "output_shape",
    "param_bytes": "param_memory", "param_mem": "param_memory", "activation_bytes": "memory",
    "activations": "memory", "output_bytes": "memory", "mem": "memory", "rf": "receptive_field",
    "mac": "macs", "flop": "flops", "note": "notes",
}

DEFAULT_COLUMNS = ["name", "type", "output_shape", "params", "macs", "flops", "memory"]


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
        if word == "all":
            keys += [k for k in COLUMNS if k not in keys]
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


def cell(column: Column, row: Row, numbers: str, keras: bool) -> str:
    value = column.get(row)
    if column.kind == "count":
        return count(value, numbers)
    if column.kind == "bytes":
        return nbytes(value, numbers)
    if column.kind == "shape":
        return shape_text(value, keras)
    if column.kind == "shapes":
        return ", ".join(shape_text(s, keras) for s in value)
    if column.kind == "dims":
        return dims_text(value)
    return "" if value is None else str(value)


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
                  numbers: str = "exact", keras: bool = False) -> str:
    """The whole ``summary`` output in one of table / markdown / csv / json."""
    if fmt == "json":
        return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False)
    keys = columns or list(DEFAULT_COLUMNS)
    cols = [COLUMNS[k] for k in keys]
    rows = group_rows(report.layers, depth)
    if fmt == "csv":
        return render_csv(rows, cols)
    table = render_table(rows, cols, numbers, keras, totals=report.totals, markdown=fmt == "markdown")
    notes = notes_text(report, markdown=fmt == "markdown")
    return table + "\n\n" + (notes + "\n\n" if notes else "") + footer(report, numbers, markdown=fmt == "markdown")


def notes_text(report, markdown: bool = False) -> str:
    """Every layer's notes (border positions never read, 'same' padding applied, ceil_mode windows, merges of
    unaligned receptive fields): what a table cannot show and a reader must not miss."""
    lines = [f"{entry.name} ({entry.type}): {note}" for entry in report.layers for note in entry.notes]
    if not lines:
        return ""
    return "\n".join(["- Notes:" if markdown else "Notes:"] + [f"  - {line}" if markdown else f"  {line}"
                                                              for line in lines])


def render_csv(rows: list[Row], cols: list[Column]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in cols])
    for row in rows:
        writer.writerow([csv_cell(c, row) for c in cols])
    return buffer.getvalue().rstrip("\n")


def _totals_value(column: Column, totals) -> Optional[int]:
    return {"params": totals.params, "buffers": totals.buffers, "macs": totals.macs, "flops": totals.flops,
            "param_memory": totals.param_bytes, "memory": totals.activation_bytes}.get(column.key)


def render_table(rows: list[Row], cols: list[Column], numbers: str = "exact", keras: bool = False, totals=None,
                 markdown: bool = False) -> str:
    from tabulate import SEPARATING_LINE, tabulate

    body: list[list[str] | str] = [[cell(c, row, numbers, keras) for c in cols] for row in rows]
    if totals is not None and any(c.total for c in cols):
        label_at = 0 if not cols[0].total else None
        total_row = []
        for i, c in enumerate(cols):
            value = _totals_value(c, totals)
            if value is not None:
                total_row.append(count(value, numbers) if c.kind == "count" else nbytes(value, numbers))
            else:
                total_row.append("total" if i == label_at else "")
        if markdown:
            total_row = [f"**{v}**" if v else "" for v in total_row]
        else:
            body.append(SEPARATING_LINE)      # tabulate's rule line (≥ 0.9): as wide as every column
        body.append(total_row)
    align = ["right" if c.kind in ("count", "bytes") or c.key == "index" else "left" for c in cols]
    return tabulate(body, headers=[c.header for c in cols], tablefmt="github" if markdown else "simple",
                    colalign=align, disable_numparse=True)


def footer(report, numbers: str = "exact", markdown: bool = False) -> str:
    """Totals and the conventions the figures follow."""
    t = report.totals
    n = lambda v: count(v, numbers)              # noqa: E731
    b = lambda v: human_bytes(v) if numbers == "human" else f"{exact(v)} B"   # noqa: E731
    lines = [
        f"Network: {report.name or '(unnamed)'} · input {shape_text(report.input_shape)} · {report.layout} · "
        f"{report.dtype} ({report.dtype_bytes} bytes/element) · batch {report.batch} · outputs: "
        f"{', '.join(report.outputs)}",
        f"Totals: params {n(t.params)} · buffers {n(t.buffers)} · MACs {n(t.macs)} · FLOPs {n(t.flops)}",
        f"Memory: params {b(t.param_bytes)} · buffers {b(t.buffer_bytes)} · input {b(t.input_bytes)} · "
        f"all layer outputs {b(t.activation_bytes)} · peak live activations {b(t.peak_activation_bytes)}",
        "Conventions:",
    ]
    keras = getattr(report, "keras_params", None)
    if keras is not None:                        # a Keras-layout network: the totals as model.summary() prints them
        lines.insert(2, f"Keras: Total params {n(keras.total)} · Trainable params {n(keras.trainable)} · "
                        f"Non-trainable params {n(keras.non_trainable)}")
    conv = [f"{key}: {text}" for key, text in report.conventions.items()]
    if markdown:
        return "\n".join([f"- {line}" for line in lines[:-1]] + ["- Conventions:"] + [f"  - {c}" for c in conv])
    return "\n".join(lines + [f"  {c}" for c in conv])
