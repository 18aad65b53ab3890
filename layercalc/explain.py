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
from typing import Optional, Sequence

from .coverage import (AXIS_WORDS, COVERAGE_LIMIT, Unread, WindowCover, positions_phrase,  # noqa: F401
                       read_marks, tail_start, unread_between_windows, unread_runs,  # (re-exported)
                       window_count)
from .shapes import (ceil_div, conv_output_length, effective_kernel, pool_output_length, same_padding,
                     transposed_output_length)


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
            from .shapes import transposed_same_padding
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

class _Check:
    """Collects substituted formulas and compares each result with the calculator's figure."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        self.lines.append(text)

    def zero(self, label: str, why: str, reported: Optional[int] = None) -> None:
        self.lines.append(f"{label} = 0 ({why})")
        if reported:
            self.lines.append(f"  ⚠ the calculator reports {n(reported)} for {label}: please report this bug")

    def result(self, label: str, formula: str, value: int, reported: Optional[int] = None) -> None:
        self.lines.append(f"{label} = {formula} = {n(value)}")
        if reported is not None and reported != value:
            self.lines.append(f"  ⚠ the calculator reports {n(reported)} for {label}: please report this bug")


def explain_layer(layer, input_shapes: list[tuple[int, ...]], facts, channels_last: bool = False,
                  itemsize: int = 4, input_rf: Optional[tuple[list, list]] = None) -> list[str]:
    """Lines explaining one layer: shapes, params, MACs, FLOPs, memory (and receptive field for windows).

    ``input_rf``: (receptive field, jump) per spatial dim of the tensor reaching the layer, when known.
    """
    from . import layers as L

    c = _Check()
    if isinstance(layer, L._ConvBase):
        if layer.transposed:
            _conv_transpose(c, layer, input_shapes[0], facts, channels_last)
        else:
            _conv(c, layer, input_shapes[0], facts, channels_last)
    elif isinstance(layer, L._PoolBase):
        _pool(c, layer, input_shapes[0], facts, channels_last)
    elif isinstance(layer, L._AdaptivePoolBase):
        _adaptive(c, layer, input_shapes[0], facts, channels_last)
    elif isinstance(layer, L.Linear):
        _linear(c, layer, input_shapes[0], facts)
    elif isinstance(layer, L._BatchNormBase):
        _batchnorm(c, layer, input_shapes[0], facts, channels_last)
    elif isinstance(layer, (L.LayerNorm, L.GroupNorm)):
        _norm(c, layer, input_shapes[0], facts, channels_last)
    else:
        _other(c, layer, input_shapes, facts, channels_last)
    _memory(c, facts, itemsize)
    if input_rf is not None and isinstance(layer, (L._ConvBase, L._PoolBase)) and not getattr(layer, "transposed",
                                                                                               False):
        _receptive_field(c, layer, facts, input_rf)
    return c.lines


def _spatial(shape, channels_last: bool):
    if channels_last:
        return shape[0], shape[-1], list(shape[1:-1])
    return shape[0], shape[1], list(shape[2:])


def _conv(c: _Check, layer, x, facts, channels_last: bool) -> None:
    batch, cin, spatial = _spatial(x, channels_last)
    _, cout, out = _spatial(facts.output_shape, channels_last)
    axes = axis_names(len(spatial))
    k, s, d = layer.kernel_size, layer.stride, layer.dilation
    pads = facts.geometry["pads"]
    c.add("per axis: out = floor((in + pad_before + pad_after − dilation·(kernel − 1) − 1) / stride) + 1")
    for axis, length, kk, ss, dd, (pb, pa) in zip(axes, spatial, k, s, d, pads):
        c.lines += explain_length(length, kk, ss, pb, pa, dd, axis=axis, same=layer.padding == "same")
    groups = layer.groups
    per_out = cin // groups
    kernel_text = prod_text(k)
    if groups > 1:
        c.add(f"groups = {groups}: each output channel sees C_in/groups = {cin}/{groups} = {per_out} input channels")
    bias = cout if layer.bias else 0
    weights = math.prod(k) * per_out * cout
    c.result("params", f"({kernel_text}·{per_out})·{cout}" + (f" + {cout}" if layer.bias else "")
             + ("" if layer.bias else "  (no bias)"), weights + bias, facts.params)
    positions = batch * math.prod(out)
    macs = positions * cout * math.prod(k) * per_out
    c.result("MACs", f"N·{'·'.join(a + '_out' for a in axes)}·C_out·({'·'.join('k' + a for a in axes)}·C_in/groups) "
             f"= {prod_text([batch, *out, cout])}·({kernel_text}·{per_out})", macs, facts.macs)
    bias_adds = positions * cout if layer.bias else 0
    c.result("FLOPs", f"2·MACs + bias adds (N·{'·'.join(a + '_out' for a in axes)}·C_out) = 2·{n(macs)} + "
             f"{n(bias_adds)}", 2 * macs + bias_adds, facts.flops)


def _conv_transpose(c: _Check, layer, x, facts, channels_last: bool) -> None:
    batch, cin, spatial = _spatial(x, channels_last)
    _, cout, out = _spatial(facts.output_shape, channels_last)
    axes = axis_names(len(spatial))
    k, s, d = layer.kernel_size, layer.stride, layer.dilation
    crop, op = facts.geometry["crop"], facts.geometry["output_padding"]
    c.add("per axis: out = (in − 1)·stride − crop_before − crop_after + dilation·(kernel − 1) + output_padding + 1 "
          "(PyTorch's padding p crops p from each side)")
    if layer.padding == "same":
        c.add(f"'same' (Keras): out = in·stride; cropped (before, after) per axis "
              f"{', '.join(f'{a}: ({b}, {e})' for a, (b, e) in zip(axes, crop))}"
              + (f"; zeros appended {', '.join(f'{a}: {o}' for a, o in zip(axes, op))}" if any(op) else ""))
    for axis, length, kk, ss, dd, (cb, ca), oo in zip(axes, spatial, k, s, d, crop, op):
        c.lines += explain_transposed_length(length, kk, ss, cb, ca, dd, oo, axis)
    per_in = cout // layer.groups
    kernel_text = prod_text(k)
    bias = cout if layer.bias else 0
    weights = cin * per_in * math.prod(k)
    c.result("params", f"C_in·(C_out/groups)·{'·'.join('k' + a for a in axes)}" + (" + C_out" if layer.bias else "")
             + f" = {cin}·{per_in}·{kernel_text}" + (f" + {cout}" if layer.bias else ""), weights + bias, facts.params)
    macs = batch * math.prod(spatial) * cin * per_in * math.prod(k)
    c.result("MACs", f"N·{'·'.join(a + '_in' for a in axes)}·C_in·(C_out/groups)·{'·'.join('k' + a for a in axes)} "
             f"(counted on input positions: each input value meets each weight once) = "
             f"{prod_text([batch, *spatial, cin, per_in])}·{kernel_text}", macs, facts.macs)
    bias_adds = batch * math.prod(out) * cout if layer.bias else 0
    c.result("FLOPs", f"2·MACs + bias adds (N·{'·'.join(a + '_out' for a in axes)}·C_out) = 2·{n(macs)} + "
             f"{n(bias_adds)}", 2 * macs + bias_adds, facts.flops)


def _pool(c: _Check, layer, x, facts, channels_last: bool) -> None:
    from . import layers as L

    batch, channels, spatial = _spatial(x, channels_last)
    _, _, out = _spatial(facts.output_shape, channels_last)
    axes = axis_names(len(spatial))
    k, s, d = layer.kernel_size, layer.stride, layer.dilations
    pads = facts.geometry["pads"]
    rounding = "ceil" if layer.ceil_mode else "floor"
    c.add(f"per axis: out = {rounding}((in + pad_before + pad_after − dilation·(kernel − 1) − 1) / stride) + 1 "
          f"(stride defaults to the kernel size)")
    for axis, length, kk, ss, dd, (pb, pa) in zip(axes, spatial, k, s, d, pads):
        c.lines += explain_length(length, kk, ss, pb, pa, dd, layer.ceil_mode, axis, same=layer.padding == "same")
    if isinstance(layer, L._AvgPoolBase):
        include = facts.geometry.get("count_include_pad")
        if any(b or a for b, a in pads):
            c.add("divisor: " + ("the full window, padded zeros included (count_include_pad)" if include
                                 else "only the real input values in each window (padding excluded)")
                  + (f"; overridden to {layer.divisor_override}" if layer.divisor_override else ""))
    c.add("params = 0, MACs = 0 (no weights)")
    flops = batch * channels * math.prod(out) * math.prod(k)
    op = "compare" if isinstance(layer, L._MaxPoolBase) else "add (the divide replaces the first add)"
    c.result("FLOPs", f"N·C·{'·'.join(a + '_out' for a in axes)}·{'·'.join('k' + a for a in axes)} (one {op} per "
             f"window element) = {prod_text([batch, channels, *out, *k])}", flops, facts.flops)


def _adaptive(c: _Check, layer, x, facts, channels_last: bool) -> None:
    from .shapes import (adaptive_window_max, adaptive_window_min, adaptive_window_sizes, adaptive_window_total,
                         adaptive_windows)

    batch, channels, spatial = _spatial(x, channels_last)
    _, _, out = _spatial(facts.output_shape, channels_last)
    axes = axis_names(len(spatial))
    c.add("window i spans [floor(i·in/out), ceil((i + 1)·in/out)) along each axis (PyTorch's rule); windows may "
          "overlap and differ in size when out does not divide in")
    sums = []
    for axis, length, o in zip(axes, spatial, out):
        total = adaptive_window_total(length, o)           # closed forms: no loop over the outputs
        sums.append(total)
        if length % o == 0:
            detail = f"{length} / {o} = {length // o}: equal windows, like a pool with kernel = stride = {length // o}"
        elif o <= 8:
            detail = ("windows " + " ".join(f"[{a},{b})" for a, b in adaptive_windows(length, o))
                      + f", sizes {', '.join(map(str, adaptive_window_sizes(length, o)))}")
        else:
            detail = (f"window sizes between {adaptive_window_min(length, o)} and {adaptive_window_max(length, o)}, "
                      f"{total} elements in all")
        c.add(f"{axis}: {length} → {o}: {detail}")
    c.add("params = 0, MACs = 0 (no weights)")
    c.result("FLOPs", f"N·C·(window elements along each axis multiplied) = {prod_text([batch, channels, *sums])}",
             batch * channels * math.prod(sums), facts.flops)


def _linear(c: _Check, layer, x, facts) -> None:
    fin, fout = x[-1], layer.out_features
    rows = math.prod(x[:-1])
    bias = fout if layer.bias else 0
    c.add(f"applies to the last dim: [{', '.join(map(str, x))}] → [{', '.join(map(str, facts.output_shape))}]")
    c.result("params", "in·out" + (" + out" if layer.bias else "") + f" = {fin}·{fout}"
             + (f" + {fout}" if layer.bias else ""), fin * fout + bias, facts.params)
    rows_text = "N" if len(x) == 2 else "·".join(["N", *(f"d{i}" for i in range(1, len(x) - 1))])
    c.result("MACs", f"rows·in·out with rows = {rows_text} = {rows}: {rows}·{fin}·{fout}", rows * fin * fout,
             facts.macs)
    adds = rows * fout if layer.bias else 0
    c.result("FLOPs", f"2·MACs + bias adds (rows·out) = 2·{n(rows * fin * fout)} + {n(adds)}",
             2 * rows * fin * fout + adds, facts.flops)


def _batchnorm(c: _Check, layer, x, facts, channels_last: bool) -> None:
    from .rules import NORMALIZE_FLOPS

    _, channels, _ = _spatial(x, channels_last)
    if layer.affine:
        c.result("params", f"2·C (γ and β) = 2·{channels}", 2 * channels, facts.params)
    else:
        c.zero("params", "affine=False: no γ, β", facts.params)
    c.add("buffers = " + (f"2·C (running mean and variance) = 2·{channels} = {2 * channels}"
                           if layer.track_running_stats else "0 (track_running_stats=False)"))
    elements = math.prod(x)
    c.result("FLOPs", f"{NORMALIZE_FLOPS} per element (at inference the statistics fold into one multiply and one "
             f"add) · {prod_text(x)}", NORMALIZE_FLOPS * elements, facts.flops)


def _norm(c: _Check, layer, x, facts, channels_last: bool) -> None:
    from . import layers as L
    from .rules import NORMALIZE_FLOPS, PER_GROUP_FLOPS, STATISTICS_FLOPS

    elements = math.prod(x)
    if isinstance(layer, L.LayerNorm):
        shape = list(facts.geometry["normalized_shape"])
        size = math.prod(shape)
        groups = elements // size
        per = (2 if layer.bias else 1) if layer.elementwise_affine else 0
        c.add(f"normalizes over the trailing dims {shape}: {groups} group(s) of {size} values")
        if per:
            c.result("params", f"{per}·{prod_text(shape)} (" + ("γ and β" if per == 2 else "γ") + ")", per * size,
                     facts.params)
        else:
            c.zero("params", "elementwise_affine=False: no γ, β", facts.params)
        affine_ops = per
    else:
        batch, channels, _ = _spatial(x, channels_last)
        groups = batch * layer.num_groups
        c.add(f"statistics over {layer.num_groups} groups of {channels // layer.num_groups} channels, per example: "
              f"N·G = {batch}·{layer.num_groups} = {groups} groups")
        if layer.affine:
            c.result("params", f"2·C (γ and β) = 2·{channels}", 2 * channels, facts.params)
        else:
            c.zero("params", "affine=False: no γ, β", facts.params)
        affine_ops = 2 if layer.affine else 0
    per_element = STATISTICS_FLOPS + NORMALIZE_FLOPS + affine_ops
    c.result("FLOPs", f"elements·({STATISTICS_FLOPS} statistics + {NORMALIZE_FLOPS} normalize + {affine_ops} affine) + "
             f"groups·{PER_GROUP_FLOPS} = {n(elements)}·{per_element} + {groups}·{PER_GROUP_FLOPS}",
             elements * per_element + groups * PER_GROUP_FLOPS, facts.flops)


def _other(c: _Check, layer, input_shapes, facts, channels_last: bool) -> None:
    """One line describing the rule of the remaining types, with the numbers."""
    from . import layers as L
    from .rules import ELEMENTWISE_FLOPS

    x = input_shapes[0]
    out = list(facts.output_shape)
    elements = math.prod(out)
    if isinstance(layer, (L.Dropout, L.Identity)):
        c.add(f"{layer.type}: identity at inference, shape unchanged {list(x)}; params 0, FLOPs 0")
    elif isinstance(layer, (L._Activation,)):
        key = "gelu_tanh" if layer.type == "gelu" and layer.approximate == "tanh" else layer.type
        per = ELEMENTWISE_FLOPS[key]
        extra = f" along dim {facts.geometry['dim']}" if "dim" in facts.geometry else ""
        c.result("FLOPs", f"{layer.type}{extra}: shape unchanged, {per} per element · {prod_text(out)}",
                 per * elements, facts.flops)
    elif isinstance(layer, L.Flatten):
        c.add(f"flatten: dims {layer.start_dim}..{layer.end_dim} of {list(x)} multiplied into one → {out}; "
              f"no arithmetic")
    elif isinstance(layer, L.Reshape):
        c.add(f"reshape: {math.prod(x[1:])} values per example rearranged as {layer.shape} → {out} "
              f"(-1 resolved from the count); no arithmetic")
    elif isinstance(layer, L.ZeroPad):
        _, _, spatial = _spatial(x, channels_last)
        _, _, after = _spatial(out, channels_last)
        pads = facts.geometry["pads"]
        parts = [f"{a}: {length} + {b} + {e} = {o}" for a, length, (b, e), o in
                 zip(axis_names(len(spatial)), spatial, pads, after)]
        c.add("zero padding: " + "; ".join(parts) + "; no arithmetic")
    elif isinstance(layer, (L.GlobalAvgPool, L.GlobalMaxPool)):
        what = "mean" if isinstance(layer, L.GlobalAvgPool) else "maximum"
        c.result("FLOPs", f"{what} over every spatial position: {list(x)} → {out}; one op per input element = "
                 f"{prod_text(x)}", math.prod(x), facts.flops)
    elif isinstance(layer, (L.Add, L.Mul)):
        op = "sum" if isinstance(layer, L.Add) else "product"
        shapes = ", ".join(str(list(s)) for s in input_shapes)
        c.result("FLOPs", f"element-wise {op} of {shapes} (broadcast) → {out}: (inputs − 1)·elements = "
                 f"{len(input_shapes) - 1}·{n(elements)}", (len(input_shapes) - 1) * elements, facts.flops)
    elif isinstance(layer, L.Concat):
        dim = facts.geometry["dim"]
        sizes = " + ".join(str(s[dim]) for s in input_shapes)
        c.add(f"concat along dim {dim}: {sizes} = {out[dim]} → {out}; no arithmetic (a copy)")
    else:
        c.add(f"{layer.type}: output {out}")
    if facts.params:
        c.add(f"params = {n(facts.params)}")


def _memory(c: _Check, facts, itemsize: int) -> None:
    out = list(facts.output_shape)
    c.result("output bytes", f"{prod_text(out)} elements × {itemsize} bytes", math.prod(out) * itemsize)
    if facts.params:
        c.result("param bytes", f"{n(facts.params)} × {itemsize} bytes", facts.params * itemsize)


def _receptive_field(c: _Check, layer, facts, input_rf) -> None:
    rf_in, jump_in = input_rf
    if rf_in is None or jump_in is None or facts.rf is None:
        return
    k, s = layer.kernel_size, layer.stride
    d = layer.dilation if hasattr(layer, "dilation") else (1,) * len(k)
    axes = axis_names(len(k))
    for axis, r, j, kk, ss, dd, r_out in zip(axes, rf_in, jump_in, k, s, d, facts.rf.size):
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
