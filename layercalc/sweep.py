"""Sweeps: one network's totals at several batch sizes or input sizes (issue 21 §4) — how the FLOPs, the memory
and every other total grow from 512 to 4,096 tokens, or from batch 1 to 32, in one call.

>>> import layercalc
>>> from layercalc.sweep import sweep
>>> lm = layercalc.load({"input": [8], "layers": [{"type": "embedding", "num_embeddings": 100, "embedding_dim": 16},
...                                              {"type": "linear", "out_features": 100}]})
>>> result = sweep(lm, [8, 16], over="input")
>>> [(row.input_shape, row.tokens, row.totals.macs, row.per_token("macs")) for row in result.rows]
[([1, 8], 8, 12800, 1600), ([1, 16], 16, 25600, 1600)]

The network is read once (the caller's :class:`~layercalc.graph.Network`); each value is a validated copy of it
(``net.replace(batch=…)``, ``input=…``, or another input's ``shape``) analyzed as ``analyze()`` would: a row *is* the
single-value analysis (tests/test_sweep.py compares them). At most :data:`MAX_VALUES` values: each is one analysis.

What a row holds is generic: ``row.totals`` is the whole :class:`~layercalc.report.Totals` (the JSON carries every
field), and :data:`FIGURES` lists the totals the table, the CSV and the chart show — one line per figure. A figure
marked ``per_token`` also gets its value per token when the network's input is token ids (a layer reads it as
indices: an embedding), tokens = batch × sequence positions (the report's ``totals.tokens``: an encoder–decoder's are
its decoder's).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional, Union

from .drawing import bar
from .errors import LayerCalcError, SpecError, shown
from .formatting import count, exact, human, human_bytes, shape_text
from .graph import Network
from .report import Report, Totals
from .terminal import UNLIMITED, wrap

#: the most values one sweep analyzes: each one is a whole analysis (a 300-layer LLM: ~20 ms)
MAX_VALUES = 64


@dataclass(frozen=True)
class Figure:
    """A total a sweep shows: its :class:`~layercalc.report.Totals` field, its heading, its unit (``count`` or
    ``bytes``) and whether it is also given per token (a cost that grows with the tokens processed)."""
    key: str
    label: str
    unit: str = "count"
    per_token: bool = False


#: the totals a sweep's table, CSV and chart show, in this order: adding a figure is one line here (the JSON holds
#: every Totals field whatever this lists)
FIGURES: tuple[Figure, ...] = (
    Figure("params", "params"),
    Figure("macs", "MACs", per_token=True),
    Figure("flops", "FLOPs", per_token=True),
    Figure("param_bytes", "weights", "bytes"),
    Figure("activation_bytes", "activations", "bytes"),
    Figure("peak_activation_bytes", "peak act.", "bytes"),
)

#: the axes a sweep may vary besides another input's name
AXES = ("input", "batch")

Value = Union[int, Sequence[int]]


@dataclass
class SweepRow:
    """One value of the sweep and the network's totals there."""
    value: Union[int, list[int]]            #: the batch, the size (a 1-d input) or the shape swept to
    batch: int
    input_shape: list[int]                  #: the network input, batch included
    tokens: Optional[int]                   #: the report's totals.tokens: batch × positions of token ids, else None
    totals: Totals
    report: Report = field(repr=False)

    def figure(self, key: str) -> int:
        return getattr(self.totals, key)

    def per_token(self, key: str) -> Union[int, Fraction, None]:
        """``key``'s total per token, exact (an int when it divides, else a Fraction); None without tokens."""
        if self.tokens is None:
            return None
        share = Fraction(self.figure(key), self.tokens)
        return share.numerator if share.denominator == 1 else share


@dataclass
class Sweep:
    """The rows of a sweep over ``over`` (``input``, ``batch`` or the name of another input of the network)."""
    name: Optional[str]
    over: str
    values: list[Union[int, list[int]]]
    rows: list[SweepRow]
    figures: tuple[Figure, ...] = FIGURES

    @property
    def per_token(self) -> bool:
        return all(row.tokens is not None for row in self.rows)

    def columns(self) -> list[tuple[str, Figure, bool]]:
        """``(key, figure, per token?)`` of every figure shown: each figure, then its per-token form."""
        out = []
        for figure in self.figures:
            out.append((figure.key, figure, False))
            if figure.per_token and self.per_token:
                out.append((f"{figure.key}_per_token", figure, True))
        return out

    def value_of(self, row: SweepRow, key: str) -> Union[int, Fraction, None]:
        if key.endswith("_per_token"):
            return row.per_token(key[:-len("_per_token")])
        return row.figure(key)

    # ---------------------------------------------------------------------------------------------- renderers

    def to_dict(self) -> dict[str, Any]:
        """The sweep as JSON data, exact: each row's value, batch, input shape, tokens, every Totals field and the
        per-token figures (an int where it divides, else a float — ``totals / tokens`` exactly)."""
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {"value": row.value, "batch": row.batch, "input_shape": row.input_shape,
                                     "tokens": row.tokens,
                                     "totals": row.totals.model_dump(mode="json")}
            if row.tokens is not None:
                entry["per_token"] = {f.key: _json_number(row.per_token(f.key)) for f in self.figures if f.per_token}
            rows.append(entry)
        return {"name": self.name, "over": self.over, "values": self.values,
                "figures": [f.key for f in self.figures], "rows": rows}

    def render(self, fmt: str = "table", numbers: str = "auto", width: int = 80) -> str:
        """The sweep as ``layercalc summary`` prints it: ``table`` (fitted to ``width``), ``markdown``, ``csv`` or
        ``json`` (the last two complete and exact)."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        if fmt == "csv":
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(self.csv_rows())
            return out.getvalue().rstrip("\n")
        return self.table(width, numbers, markdown=fmt == "markdown")

    def csv_rows(self) -> list[list[Any]]:
        """A header and one row per value: the value, batch, input shape, tokens, every shown figure (exact)."""
        head = ["value", "batch", "input_shape", "tokens", *(key for key, _, _ in self.columns())]
        body: list[list[Any]] = [head]
        for row in self.rows:
            value = "x".join(map(str, row.value)) if isinstance(row.value, list) else row.value
            body.append([value, row.batch, "x".join(map(str, row.input_shape)),
                         "" if row.tokens is None else row.tokens,
                         *(_json_number(self.value_of(row, key)) for key, _, _ in self.columns())])
        return body

    def table(self, width: int = 80, numbers: str = "auto", markdown: bool = False) -> str:
        """A header line, the figures equal at every value said once, then one row per value — at most ``width``
        columns (``numbers`` ``auto``: exact where that fits, else human; markdown: exact, no limit)."""
        columns = self.columns()
        constant = [(key, f, tok) for key, f, tok in columns
                    if len({repr(self.value_of(row, key)) for row in self.rows}) == 1 and len(self.rows) > 1]
        varying = [c for c in columns if c not in constant]
        lines = [wrap(self.header(), width) if not markdown else f"- {self.header()}"]
        if constant:
            said = ", ".join(f"{_label(f, tok)} {_shown_number(self.value_of(self.rows[0], key), f, 'exact')}"
                             + (" bytes" if f.unit == "bytes" else "") for key, f, tok in constant)
            lines.append(wrap(f"at every value: {said}", width) if not markdown else f"- at every value: {said}")
        lines.append("")
        choices = ["exact"] if markdown else ["exact", "human"] if numbers == "auto" else [numbers]
        table = ""
        for choice in choices:
            table = self._grid(varying, choice, markdown)
            if markdown or max(map(len, table.splitlines())) <= width:
                break
        lines.append(table)
        if self.per_token:
            lines.append("")
            lines.append(wrap(f"tokens = batch × positions; per token = the total ÷ tokens{_rounded_note(self)}",
                              width) if not markdown else "per token = the total ÷ tokens (batch × positions)")
        return "\n".join(lines)

    def header(self) -> str:
        """``gpt2 at 3 sequence lengths · batch 1 · float32 (4 bytes/element)``: what varies and what does not."""
        first, n = self.rows[0].report, len(self.rows)
        if self.over == "batch":
            what, fixed = f"{n} batch sizes", [f"input {shape_text(first.input_shape[1:], compact=True)}"]
        elif self.over == "input":
            what = f"{n} sequence lengths" if self.per_token else f"{n} input sizes"
            fixed = [f"batch {first.batch}"]
        else:
            what, fixed = f"{n} shapes of its input {self.over!r}", [f"batch {first.batch}"]
        return " · ".join([f"{self.name or '(unnamed network)'} at {what}", *fixed,
                           f"{first.dtype} ({first.dtype_bytes} bytes/element)"])

    def _grid(self, columns: list[tuple[str, Figure, bool]], numbers: str, markdown: bool) -> str:
        head = [self._value_heading(), *(_label(f, tok) for _, f, tok in columns)]
        body = [[self._value_text(row), *(_shown_number(self.value_of(row, key), f, numbers, tok)
                                          for key, f, tok in columns)] for row in self.rows]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
            out += ["| " + " | ".join(r) + " |" for r in body]
            return "\n".join(out)
        out = ["  ".join(h.rjust(w) for h, w in zip(head, widths)).rstrip()]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
        return "\n".join(out)

    def _value_heading(self) -> str:
        if self.over == "batch":
            return "batch"
        return "tokens" if self.per_token and self.over == "input" else self.over

    def _value_text(self, row: SweepRow) -> str:
        return _value_text(row.value)

    def chart(self, by: str = "flops", width: int = 80) -> str:
        """Terminal bars of one figure at each value (``by``: a figure's key, or ``KEY_per_token``), scaled to the
        largest, with each value's figure and its ratio to the first value's."""
        keys = [key for key, _, _ in self.columns()]
        if by not in keys:
            raise SpecError(f"--by: {shown(by)} is not one of the sweep's figures: {', '.join(keys)}")
        key, figure, per_token = next(c for c in self.columns() if c[0] == by)
        values = [self.value_of(row, key) or 0 for row in self.rows]       # (None only without tokens: not here)
        names = [self._value_text(row) for row in self.rows]
        texts = [_shown_number(v, figure, "human", per_token) for v in values]
        first = values[0]
        ratios = [f"×{_ratio(v, first)}" if first else "" for v in values]
        name_width, text_width, ratio_width = (max(map(len, t)) for t in (names, texts, ratios))
        room = width - name_width - text_width - ratio_width - 6
        bar_width = 60 if width >= UNLIMITED else max(10, min(60, room))
        largest = max(values) or 1
        lines = [wrap(self.header(), width), wrap(f"{_label(figure, per_token)} by {self._value_heading()}, and "
                                                  f"its ratio to the first value's:", width)]
        for name, value, text, ratio in zip(names, values, texts, ratios):
            drawn = bar(float(Fraction(value) / Fraction(largest)), bar_width).ljust(bar_width)
            lines.append(f"{name.rjust(name_width)}  {drawn}  {text.rjust(text_width)}  {ratio.rjust(ratio_width)}"
                         .rstrip())
        return "\n".join(lines)


def _value_text(value: Union[int, list[int]]) -> str:
    return shape_text(value, compact=True) if isinstance(value, list) else exact(value)


def _label(figure: Figure, per_token: bool) -> str:
    return f"{figure.label}/token" if per_token else figure.label


def _json_number(value: Union[int, Fraction, None]) -> Union[int, float, None]:
    return float(value) if isinstance(value, Fraction) else value


def _shown_number(value: Union[int, Fraction, None], figure: Figure, numbers: str, per_token: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, Fraction):         # a per-token figure that does not divide: 4 significant digits
        whole = round(value)
        return (human(whole) if numbers == "human" else f"≈{exact(whole)}") if abs(value) >= 1000 \
            else f"≈{float(value):.4g}"
    if figure.unit == "bytes":
        return human_bytes(value) if numbers == "human" else exact(value)
    return count(value, numbers)


def _rounded_note(result: Sweep) -> str:
    rounded = any(isinstance(result.value_of(row, key), Fraction)
                  for row in result.rows for key, _, tok in result.columns() if tok)
    return " (≈: rounded; the JSON holds the totals and tokens exactly)" if rounded else ""


def _ratio(value: Union[int, Fraction], first: Union[int, Fraction]) -> str:
    ratio = float(Fraction(value) / Fraction(first))
    return f"{ratio:.3g}" if ratio < 1000 else f"{ratio:,.0f}"


# ----------------------------------------------------------------------------------------------------- the sweep

def sweep(network: Network, values: Sequence[Value], over: str = "input",
          figures: tuple[Figure, ...] = FIGURES) -> Sweep:
    """The network's totals at each of ``values`` of ``over``:

    - ``"input"``: the network input — each value its shape without the batch (a list), or, for an input of one
      size (tokens, features), that size (an int);
    - ``"batch"``: the batch size (ints);
    - the name of another input of the network (a layer that is a network input, e.g. a decoder's tokens): its
      shape or, for one size, that size.

    Every other field stays as the network has it. Refused in one line: no values, more than :data:`MAX_VALUES`,
    a value that is not a whole number ≥ 1 (or a shape of them), an unknown axis."""
    if not isinstance(network, Network):
        raise SpecError(f"sweep: got {type(network).__name__} {shown(network)}: expected a Network "
                        f"(layercalc.load(...) makes one)")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise SpecError(f"sweep: values: got {shown(values)}: expected a list of values (e.g. [512, 1024])")
    if not values:
        raise SpecError("sweep: values: got an empty list: give at least one value")
    if len(values) > MAX_VALUES:
        raise SpecError(f"sweep: values: got {len(values):,} values: at most {MAX_VALUES} (each is a whole "
                        f"analysis); sweep fewer")
    change = _changer(network, over)
    rows = []
    for value in values:
        copy, shown_value = change(value)
        try:
            report = copy.analyze()
        except LayerCalcError as exc:           # which value failed, then why
            raise type(exc)(f"sweep over {over} at {_value_text(shown_value)}: {exc}") from None
        rows.append(SweepRow(shown_value, copy.batch, list(copy.input_shape), report.totals.tokens,
                             report.totals, report))
    return Sweep(network.name, over, [row.value for row in rows], rows, figures)


def _changer(network: Network, over: str):
    """The function making the network's copy at one value of ``over``: ``value → (copy, value as shown)``."""
    if over == "batch":
        def at_batch(value):
            batch = _whole(value, "batch")
            return network.replace(batch=batch), batch
        return at_batch
    if over == "input":
        def at_input(value):
            shape = _shape(value, list(network.input), "input")
            return network.replace(input=shape), (shape[0] if len(network.input) == 1 else shape)
        return at_input
    names = network.layer_names()
    inputs = {name: i for i, (name, layer) in enumerate(zip(names, network.layers)) if layer.is_network_input}
    if over not in inputs:
        others = [*AXES, *inputs]
        raise SpecError(f"sweep: over: {shown(over)} is not one of {', '.join(others)} (the network's inputs "
                        f"besides 'input' are the layers that are network inputs)")
    index = inputs[over]
    layer = network.layers[index]

    def at_other_input(value):
        shape = _shape(value, list(layer.shape), over)    # type: ignore[attr-defined]  # is_network_input: has one
        layers = list(network.layers)
        layers[index] = layer.replace(shape=shape)
        return network.replace(layers=layers), (shape[0] if len(shape) == 1 else shape)
    return at_other_input


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"sweep over {what}: got {shown(value)}: every value must be a whole number ≥ 1")
    return value


def _shape(value: Any, current: list[int], what: str) -> list[int]:
    """A value of an input sweep as a shape: an int for an input of one size, else a list like ``current``."""
    if isinstance(value, (list, tuple)):
        shape = [_whole(v, what) for v in value]
        if not shape:
            raise SpecError(f"sweep over {what}: got an empty shape: give its sizes without the batch")
        return shape
    size = _whole(value, what)
    if len(current) != 1:
        raise SpecError(f"sweep over {what}: {size} is one size, but the input has {len(current)} "
                        f"({'x'.join(map(str, current))}): give each value as a whole shape "
                        f"({'x'.join(map(str, current))})")
    return [size]
