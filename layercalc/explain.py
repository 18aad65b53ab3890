"""Worked explanations: every formula with the user's numbers substituted, step by step.

The explanation is built from the layer (its fields) and the ``Facts`` the rule computed (output shape, counts and
the resolved geometry: padding actually applied, transposed-conv crop, …). Each substituted formula is evaluated
here with the shared 1-D functions of :mod:`layercalc.shapes`; when a figure computed for the explanation ever
disagreed with the calculator's, a warning line says so (a bug to report) instead of silently showing two numbers.

The 1-D part (:func:`explain_length`) imports nothing heavy: ``layercalc size --explain`` stays fast.

Symbols: ``·`` multiply, ``−`` minus; sizes per axis ``H``, ``W`` (``L`` for 1-D, ``D, H, W`` for 3-D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

from .coverage import (  # noqa: F401  (re-exported)
    AXIS_WORDS,
    COVERAGE_LIMIT,
    Unread,
    WindowCover,
    positions_phrase,
    read_marks,
    tail_start,
    unread_between_windows,
    unread_runs,
    window_count,
)
from .shapes import (
    ceil_div,
    conv_output_length,
    effective_kernel,
    pool_output_length,
    same_padding,
    transposed_output_length,
    transposed_same_padding,
)


def n(value: int) -> str:
    """Thousands separators for results (operands stay plain so the formula reads as arithmetic)."""
    return f"{value:,}"


def prod_text(values: Sequence) -> str:
    return "·".join(str(v) for v in values)


def axis_names(rank: int) -> list[str]:
    return {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(rank, [f"S{i}" for i in range(rank)])


def _pad_text(before: int, after: int) -> str:
    return f"2·{before}" if before == after else f"({before} + {after})"


# --------------------------------------------------------------------------------------------- one dimension

def explain_length(length: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int = 0,
                   dilation: int = 1, ceil_mode: bool = False, axis: str = "L", same: bool = False) -> list[str]:
    """Worked output length of a sliding window (conv or pooling) along one axis, border coverage included.

    >>> explain_length(28, 3, axis="H")[0]
    'H_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 26'
    """
    lines = []
    if same:
        lines += explain_same_padding(length, kernel, stride, dilation, axis)
    rounding = "ceil" if ceil_mode else "floor"
    span = length + pad_before + pad_after - effective_kernel(kernel, dilation)
    raw = ceil_div(span, stride) + 1 if ceil_mode else span // stride + 1
    out = (pool_output_length(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode) if ceil_mode
           else conv_output_length(length, kernel, stride, pad_before, pad_after, dilation))
    lines.append(f"{axis}_out = {rounding}(({length} + {_pad_text(pad_before, pad_after)} − {dilation}·({kernel} − 1)"
                 f" − 1) / {stride}) + 1 = {raw}")
    if ceil_mode and out != raw:
        lines.append(f"  the last window would start at ({raw} − 1)·{stride} = {(raw - 1) * stride} ≥ {axis}_in + "
                     f"padding_before = {length + pad_before}, i.e. inside the right padding: PyTorch drops it → "
                     f"{axis}_out = {out}")
    elif ceil_mode and span % stride:
        lines.append(f"  ceil mode: the last window hangs over the end of the input and is kept (floor would give "
                     f"{span // stride + 1})")
    if out >= 1:
        lines += coverage_lines(length, kernel, stride, pad_before, pad_after, dilation, axis, ceil_mode)
    return lines


def explain_same_padding(length: int, kernel: int, stride: int, dilation: int, axis: str) -> list[str]:
    """TensorFlow/Keras SAME: the total padding and how it is split (the odd pixel after)."""
    before, after = same_padding(length, kernel, stride, dilation)
    out = ceil_div(length, stride)
    total = (out - 1) * stride + effective_kernel(kernel, dilation) - length
    return [f"'same' padding ({axis}): {axis}_out = ceil({length} / {stride}) = {out}; total padding = "
            f"max(({out} − 1)·{stride} + {dilation}·({kernel} − 1) + 1 − {length}, 0) = {max(total, 0)} → "
            f"{before} before, {after} after" + (" (the odd pixel goes after, as in TensorFlow)"
                                                 if before != after else "")]


def _phrase(text: str, single: bool, length: int, axis: str, verb: str) -> str:
    """``input row 27 (of 0..27) is never covered …`` / ``input rows 2, 5 (of 0..9) are never …``."""
    return positions_phrase(text, single, length, axis, verb)


def coverage_note(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0,
                  dilation: int = 1, ceil_mode: bool = False, axis: str = "L") -> str:
    """One short clause for ``layercalc size``: which input positions no window reads ('' when all are read).

    >>> coverage_note(28, 3, 2)
    'input position 27 (of 0..27) is never covered by any window'
    >>> coverage_note(100_000_000, 3, 2)     # closed form: any length
    'input position 99999999 (of 0..99999999) is never covered by any window'
    >>> coverage_note(10**6, 2, 3)     # stride 3 > kernel 2: 2, 5, …; the last window reads 999996..999997
    'input positions 2, 5, 8, 11, …, 999998..999999 (333334 in all) (of 0..999999) are never covered by any window'
    """
    cover = WindowCover(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if cover.windows < 1:
        return ""
    unread = Unread.of(cover, 0, length)
    return _phrase(unread.text(), unread.single, length, axis, "covered by any window") if unread else ""


def coverage_lines(length: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int,
                   axis: str, ceil_mode: bool = False) -> list[str]:
    """Which input rows/columns no window reads: the border left over when the stride does not divide evenly, and
    the gaps between windows when the stride is wider than the kernel span (or dilation holes the stride never
    fills)."""
    k_eff = effective_kernel(kernel, dilation)
    padded = length + pad_before + pad_after
    out = window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if out < 1:
        return []
    last_start = (out - 1) * stride
    last_end = last_start + k_eff - 1                    # padded coordinates
    border = max(0, min(length, tail_start(length, kernel, stride, pad_before, dilation, out)))
    lines = []
    if padded - 1 > last_end:                            # the stride leaves a border after the last window
        starts = (", ".join(str(i * stride) for i in range(out)) if out <= 4
                  else f"0, {stride}, …, {last_start}")
        if border < length:
            text = str(border) if border == length - 1 else f"{border}..{length - 1}"
            lost = _phrase(text, border == length - 1, length, axis, "covered by any window")
        else:
            lost = "only padding is skipped, no input value is lost"
        lines.append(f"  {axis}: ({length} + {pad_before + pad_after} − {k_eff}) = {padded - k_eff} is not a "
                     f"multiple of stride {stride}: windows start at {starts} (padded coordinates) and the last "
                     f"ends at {last_end}; {lost}")
    gaps = unread_between_windows(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if gaps:
        if out == 1:
            why = f"a single window with dilation {dilation} reads one position in {dilation}"
        elif stride > k_eff:
            skipped = stride - k_eff
            why = (f"stride {stride} > kernel span {k_eff}: {skipped} position{'s' if skipped > 1 else ''} between "
                   f"neighbouring windows {'are' if skipped > 1 else 'is'} skipped")
        else:
            why = f"dilation {dilation} leaves holes inside each window that stride {stride} never fills"
        lines.append(f"  {axis}: {why}; {_phrase(gaps.text(), gaps.single, length, axis, 'read')}")
    return lines


def explain_transposed_length(length: int, kernel: int, stride: int = 1, crop_before: int = 0, crop_after: int = 0,
                              dilation: int = 1, output_padding: int = 0, axis: str = "L") -> list[str]:
    """Worked output length of a transposed convolution along one axis.

    >>> explain_transposed_length(7, 3, 2, 1, 1, output_padding=1, axis="H")[0]
    'H_out = (7 − 1)·2 − 2·1 + 1·(3 − 1) + 1 + 1 = 14'
    """
    out = transposed_output_length(length, kernel, stride, crop_before, crop_after, dilation, output_padding)
    return [f"{axis}_out = ({length} − 1)·{stride} − {_pad_text(crop_before, crop_after)} + {dilation}·({kernel} − 1) "
            f"+ {output_padding} + 1 = {out}"]


def explain_size(length: int, kernel: int, stride: int = 1, padding="0", dilation: int = 1,
                 transposed: bool = False, output_padding: int = 0, ceil_mode: bool = False) -> list[str]:
    """``layercalc size --explain``: the general formula, then the worked one. ``padding`` is an int or same/valid."""
    if transposed:
        same = padding == "same"
        if same:
            cb, ca, extra = transposed_same_padding(length, kernel, stride, dilation)
            head = [f"'same' (Keras) transposed: output = input·stride = {length * stride}; crop {cb} before, {ca} "
                    f"after" + (f", {extra} zero(s) appended" if extra else "")]
            output_padding = extra
        else:
            cb = ca = 0 if padding == "valid" else int(padding)
            head = []
        return (["L_out = (L_in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1"] + head
                + explain_transposed_length(length, kernel, stride, cb, ca, dilation, output_padding))
    if padding == "same":
        before, after = same_padding(length, kernel, stride, dilation)
    elif padding == "valid":
        before = after = 0
    else:
        before = after = int(padding)
    general = ("L_out = {}((L_in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1"
               .format("ceil" if ceil_mode else "floor"))
    lines = [general] + explain_length(length, kernel, stride, before, after, dilation, ceil_mode, "L",
                                       same=padding == "same")
    out = (pool_output_length(length, kernel, stride, before, after, dilation, ceil_mode) if ceil_mode
           else conv_output_length(length, kernel, stride, before, after, dilation))
    if out >= 1:
        k_eff = effective_kernel(kernel, dilation)
        lines.append(f"each output position sees {k_eff} input position(s) (kernel span {dilation}·({kernel} − 1) + 1 "
                     f"= {k_eff}); neighbouring outputs are {stride} apart")
    return lines


# --------------------------------------------------------------------------------------------- whole layers

class Explanation:
    """The lines of one layer's explanation: each substituted formula, and its result compared with the
    calculator's figure. Layer types add their lines in their ``explain`` method (:mod:`layercalc.layers`)."""

    def __init__(self, tied_to: Optional[str] = None) -> None:
        self.lines: list[str] = []
        #: the layer whose parameters this one uses (``tied_to``): its params are counted there, not here
        self.tied_to = tied_to

    def add(self, text: str) -> None:
        self.lines.append(text)

    def zero(self, label: str, why: str, reported: Optional[int] = None) -> None:
        self.lines.append(f"{label} = 0 ({why})")
        if reported:
            self.lines.append(f"  ⚠ the calculator reports {n(reported)} for {label}: please report this bug")

    def result(self, label: str, formula: str, value: int, reported: Optional[int] = None) -> None:
        self.lines.append(f"{label} = {formula} = {n(value)}")
        if label == "params" and self.tied_to is not None and value:
            self.lines.append(f"  tied to {self.tied_to!r}: these {n(value)} are counted there, so params = 0 here")
            value = 0
        if reported is not None and reported != value:
            self.lines.append(f"  ⚠ the calculator reports {n(reported)} for {label}: please report this bug")


def explain_layer(layer, input_shapes: list[tuple[int, ...]], facts, channels_last: bool = False,
                  itemsize: int = 4, input_rf: Optional[tuple[list, list]] = None) -> list[str]:
    """Lines explaining one layer: its own (shapes, params, MACs, FLOPs), memory, and its receptive field.

    ``input_rf``: (receptive field, jump) per spatial dim of the tensor reaching the layer, when known.
    """
    c = Explanation(layer.tied_to)
    layer.explain(c, input_shapes, facts, channels_last)
    if not layer.trainable and facts.params:
        c.add(f"trainable: false (frozen): Keras counts these {n(facts.params)} parameters as non-trainable")
    _memory(c, facts, itemsize)
    cache = layer.kv_cache_elements(facts)
    if cache:
        c.result("KV cache bytes", f"{n(cache)} elements × {itemsize} bytes", cache * itemsize)
    if facts.rf is not None and facts.rf.whole:
        c.add(f"receptive field = whole input ({fmt_whole(facts.rf.size)}): every output position sees every input "
              f"position (through a global pool, attention or a gate made by one, here or before)")
    elif input_rf is not None:
        layer.explain_field(c, facts, input_rf)
    return c.lines


def fmt_whole(size) -> str:
    return "×".join(str(int(v)) for v in size)


def spatial_parts(shape, channels_last: bool):
    """``(N, C, [spatial sizes])`` of a shape in either layout."""
    if channels_last:
        return shape[0], shape[-1], list(shape[1:-1])
    return shape[0], shape[1], list(shape[2:])


def _memory(c: Explanation, facts, itemsize: int) -> None:
    out = list(facts.output_shape)
    c.result("output bytes", f"{prod_text(out)} elements × {itemsize} bytes", math.prod(out) * itemsize)
    if facts.params:
        c.result("param bytes", f"{n(facts.params)} × {itemsize} bytes", facts.params * itemsize)


def explain_window_field(c: Explanation, kernel, stride, dilation, facts, input_rf) -> None:
    """The receptive field after a sliding window (conv, pooling), per axis: rf_in + (d·(k − 1))·jump_in."""
    rf_in, jump_in = input_rf
    if rf_in is None or jump_in is None or facts.rf is None:
        return
    axes = axis_names(len(kernel))
    for axis, r, j, kk, ss, dd, r_out in zip(axes, rf_in, jump_in, kernel, stride, dilation, facts.rf.size):
        j_text = _num(j)
        value = r + (effective_kernel(kk, dd) - 1) * j
        c.add(f"receptive field {axis} = rf_in + (dilation·(kernel − 1))·jump_in = {_num(r)} + ({dd}·({kk} − 1))·"
              f"{j_text} = {_num(value)}; jump = jump_in·stride = {j_text}·{ss} = {_num(j * ss)}")
        if value != r_out:
            c.add(f"  ⚠ the calculator reports {_num(r_out)}: please report this bug")


def _num(value) -> str:
    """Exact for whole numbers of any size (ints, whole Fractions); ``0.5``-style for fractional ones."""
    if getattr(value, "denominator", None) == 1:
        return str(int(value))
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"
