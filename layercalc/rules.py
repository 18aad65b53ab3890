"""Shape and cost rules: what each layer type does to the shapes that reach it.

One function per layer family, registered by layer class in ``RULES``. Each takes the layer, the tensors reaching
it and a context (where the layer is, the network's layout) and returns ``Facts``: the output shape, learnable
parameters, buffers, MACs, FLOPs, notes, receptive-field state and the resolved geometry (padding actually
applied, …) that the explainer and the executor reuse. Every formula here is written out in docs/conventions.md.

Conventions, in one place:
- shapes include the batch dim; spatial layers find channels at dim 1 (NCHW) or at the last dim (NHWC);
- ``macs``: multiply-accumulates of conv / transposed conv / linear, bias excluded;
- ``flops``: every arithmetic operation: 2 per MAC, + 1 per bias add, + the per-element costs in ``ELEMENTWISE_FLOPS``
  and the pooling / normalization / merge formulas below;
- all counts are exact Python ints.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Optional

from . import layers as L
from .coverage import AXIS_WORDS, tail_start, unread_between_windows
from .errors import ShapeError
from .shapes import (adaptive_window_max, adaptive_window_total, ceil_div, conv_output_length, effective_kernel,
                     pool_output_length, same_padding, transposed_output_length, transposed_same_padding,
                     transposed_valid_extra, uncovered_after)

Shape = tuple[int, ...]


# ----------------------------------------------------------------------------------------------- data structures

@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output position, per spatial dim, in network-input pixels.

    ``size``: how many input pixels one output position sees; ``jump``: the distance in input pixels between
    neighbouring output positions (the effective stride); ``start2``: twice the centre of the first output
    position's field in input coordinates (pixel i spans [i, i+1), so the doubled centre of pixel 0 is 1 — doubling
    keeps the usual half-pixel centres in ints, which are much faster than Fractions).
    Values are ints, or Fractions only past an up-sampling layer.
    ``uneven``: why the output positions are not evenly spaced over the input (empty when they are). The
    field of the layer that made them uneven is still exact (the widest of its windows), but ``rf + (k − 1)·jump``
    no longer holds for the layers after it — an output position's neighbours do not sit one jump apart — so they
    report none.
    """
    size: tuple[int, ...]
    jump: tuple[int | Fraction, ...]
    start2: tuple[int | Fraction, ...]
    uneven: str = ""

    @classmethod
    def of_input(cls, rank: int) -> "ReceptiveField":
        return cls((1,) * rank, (1,) * rank, (1,) * rank)

    @property
    def aligned_grid(self) -> bool:
        """True while output positions sit evenly, a whole number of input pixels apart: the condition for the
        field arithmetic of the next layer to be exact. Past an up-sampling layer or uneven adaptive windows it
        does not hold, and later layers do not report a field."""
        return not self.uneven and all(isinstance(j, int) for j in self.jump)


@dataclass
class Tensor:
    """What flows along an edge of the graph during analysis."""
    shape: Shape
    rf: Optional[ReceptiveField] = None


@dataclass
class Context:
    label: Any                 # str() gives "layers[3] 'conv2' (conv2d)", for error messages
    channels_last: bool        # NHWC-style layout

    def fail(self, message: str) -> ShapeError:
        return ShapeError(f"{self.label}: {message}")


@dataclass
class Facts:
    output_shape: Shape
    params: int = 0
    buffers: int = 0
    macs: int = 0
    flops: int = 0
    rf: Optional[ReceptiveField] = None
    notes: list[str] = field(default_factory=list)
    #: resolved geometry for explain/executor: e.g. ``pads`` ((before, after) per spatial dim), ``crop``,
    #: ``output_padding``, ``count_include_pad``, ``dim``, ``groups_total``
    geometry: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------- helpers

def numel(shape: Shape) -> int:
    return math.prod(shape)


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def exact_ratio(numerator: int, denominator: int) -> int | Fraction:
    """An int when the division is exact, else a Fraction (ints keep the common path fast)."""
    return numerator // denominator if numerator % denominator == 0 else Fraction(numerator, denominator)


def fmt_dims(values) -> str:
    """``(3, 3)`` → ``3×3``."""
    return "×".join(str(v) for v in values)


def split_channels(shape: Shape, channels_last: bool) -> tuple[int, int, Shape]:
    """``[N, C, *spatial]`` (or ``[N, *spatial, C]``) → ``(N, C, spatial)``."""
    if channels_last:
        return shape[0], shape[-1], tuple(shape[1:-1])
    return shape[0], shape[1], tuple(shape[2:])


def join_channels(batch: int, channels: int, spatial: Shape, channels_last: bool) -> Shape:
    return (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)


def layout_name(rank: int, channels_last: bool) -> str:
    spatial = {0: "", 1: "L", 2: "HW", 3: "DHW"}.get(rank, "S" * rank)
    names = ["N", *spatial, "C"] if channels_last else ["N", "C", *spatial]
    return "[" + ", ".join(names) + "]"


def require_spatial(x: Tensor, rank: int, ctx: Context) -> tuple[int, int, Shape]:
    if len(x.shape) != rank + 2:
        raise ctx.fail(f"needs a {rank + 2}-d input {layout_name(rank, ctx.channels_last)}, "
                       f"got {len(x.shape)}-d {fmt_shape(x.shape)}")
    return split_channels(x.shape, ctx.channels_last)


def check_declared(declared: Optional[int], actual: int, field_name: str, x: Tensor, ctx: Context) -> None:
    """A declared ``in_channels``/``in_features`` must match the input; the message suggests the shape that was
    probably meant when the count sits at the other end of the shape (channels-last order given to an NCHW
    network, or the reverse), or when it is the product of the trailing sizes (``28x28`` for 784 features)."""
    if declared is not None and declared != actual:
        raise ctx.fail(f"{field_name} is {declared} but the input {fmt_shape(x.shape)} has {actual}"
                       + _meant_shape(declared, x.shape, field_name, ctx.channels_last))


def _meant_shape(declared: int, shape: Shape, field_name: str, channels_last: bool) -> str:
    example = shape[1:]
    if field_name == "in_features" and len(example) > 1 and numel(example) == declared:
        return (f": the {'·'.join(str(v) for v in example)} = {declared:,} sizes after the batch are meant as one "
                f"(flatten first, or give the input as {'*'.join(str(v) for v in example)})")
    if field_name == "in_channels" and len(example) > 1:
        if not channels_last and example[-1] == declared:
            meant = (declared, *example[:-1])
            return (f": the input looks channels-last; this network is NCHW (channels first): did you mean "
                    f"{'x'.join(str(v) for v in meant)}?")
        if channels_last and example[0] == declared:
            meant = (*example[1:], declared)
            return (f": the input looks channels-first; this network is NHWC (channels last): did you mean "
                    f"{'x'.join(str(v) for v in meant)}?")
    return ""


def normalize_dim(dim: int, rank: int, field_name: str, shape: Shape, ctx: Context) -> int:
    if not -rank <= dim < rank:
        raise ctx.fail(f"{field_name} {dim} is out of range for the {rank}-d input {fmt_shape(shape)} "
                       f"(allowed {-rank}..{rank - 1})")
    return dim % rank


def resolve_pads(padding, spatial: Shape, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """The (before, after) padding actually applied per spatial dim, 'same' and 'valid' resolved."""
    if padding == "valid":
        return ((0, 0),) * len(spatial)
    if padding == "same":
        return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation))
    return tuple(padding)


def fmt_pads_per_axis(pads) -> str:
    """Padding as (before, after) per named axis: ``H (0, 1), W (0, 1)`` — no ambiguity for asymmetric 'same'."""
    return ", ".join(f"{axis} ({b}, {a})" for axis, (b, a) in zip(axis_names(len(pads)), pads))


def fmt_pads(pads) -> str:
    if all(b == a for b, a in pads):
        return fmt_dims(b for b, _ in pads)
    return "×".join(f"({b},{a})" for b, a in pads)


def window_rf(rf: Optional[ReceptiveField], kernel, stride, dilation, pads) -> Optional[ReceptiveField]:
    """Receptive field after a sliding window (conv or pooling)."""
    if rf is None or not rf.aligned_grid:
        return None
    size, jump, start = [], [], []
    for r, j, st, k, s, d, (pb, _) in zip(rf.size, rf.jump, rf.start2, kernel, stride, dilation, pads):
        k_eff = effective_kernel(k, d)
        size.append(r + (k_eff - 1) * j)
        start.append(st + (k_eff - 1 - 2 * pb) * j)
        jump.append(j * s)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


#: a receptive field or jump past this many input positions is reported for the layer that reaches it, and not
#: carried further: each strided layer multiplies the jump, and a chain of them would make numbers whose every
#: multiplication costs more (and that Python cannot print past 4,300 digits) — bounded by the answer, not the input
MAX_FIELD = 2 ** 63 - 1


def bounded_field(rf: ReceptiveField) -> ReceptiveField:
    """``rf``, marked so that later layers report no field once a size, jump or centre passes :data:`MAX_FIELD`.

    >>> bounded_field(ReceptiveField((3,), (2,), (3,))).uneven
    ''
    >>> bounded_field(ReceptiveField((3,), (2 ** 63,), (3,))).uneven
    'a receptive field or jump beyond 2**63 − 1 input positions'
    """
    values = (*rf.size, *rf.jump, *rf.start2)
    if rf.uneven or all(-MAX_FIELD <= v <= MAX_FIELD for v in values):
        return rf
    return dataclasses.replace(rf, uneven="a receptive field or jump beyond 2**63 − 1 input positions")


def report_jump(rf: Optional[ReceptiveField]) -> Optional[list[int | float]]:
    """The jump as reported: exact ints; a float only when fractional (past an up-sampling layer)."""
    if rf is None:
        return None
    return [int(v) if isinstance(v, int) or v.denominator == 1 else float(v) for v in rf.jump]


def unreported_field_notes(inputs: list[Tensor]) -> list[str]:
    """Why a layer whose inputs had a receptive field reports none (see ``ReceptiveField.aligned_grid``)."""
    reasons = []
    for t in inputs:
        if t.rf is not None and not t.rf.aligned_grid:
            reason = t.rf.uneven or "up-sampling (fractional jump)"
            if reason not in reasons:
                reasons.append(reason)
    return [f"receptive field not reported past {reason}" for reason in reasons]


def transposed_input_span(kernel: int, stride: int, dilation: int = 1) -> int:
    """The most input positions, first to last, that one output of a transposed conv depends on.

    Output ``o`` gets input ``i`` through tap ``t`` when ``i·stride + t·dilation = o + crop``: the taps that
    reach one output are those with ``t·dilation`` in the same residue class mod ``stride``, and two such taps
    ``t1 < t2`` reach inputs ``(t2 − t1)·dilation / stride`` apart. Without dilation this is ``ceil(k / s)``;
    with dilation it can be less (taps land in different residue classes).

    In closed form, with ``g = gcd(d, s)``: ``t·d ≡ t'·d (mod s)`` exactly when ``t ≡ t' (mod s/g)``, so the
    widest class is that of tap 0, holding ``ceil(k / (s/g))`` taps spaced ``(s/g)·d / s = d/g`` inputs apart:
    ``(ceil(k·g / s) − 1)·d/g + 1``.

    >>> transposed_input_span(3, 2)            # taps 0, 2 share a class: inputs i and i − 1
    2
    >>> transposed_input_span(2, 2, 3)         # taps at 0 and 3: classes 0 and 1, one input each
    1
    >>> transposed_input_span(4, 2, 3)         # taps at 0, 3, 6, 9: 0 and 6 share class 0 → 6/2 + 1 = 4
    4
    """
    g = math.gcd(dilation, stride)
    return (ceil_div(kernel, stride // g) - 1) * (dilation // g) + 1


def border_notes(spatial: Shape, kernel, stride, dilation, pads, axis_names: str, ceil_mode: bool = False
                 ) -> list[str]:
    """Say which input rows/columns no window reads: between the windows' taps, and at the end when the stride
    does not divide evenly (floor mode) or when ceil mode drops a window that would start in the right padding."""
    notes = []
    for axis, n, k, s, d, (pb, pa) in zip(axis_names, spatial, kernel, stride, dilation, pads):
        gaps = _gaps_between_windows(n, k, s, d, pb, pa, ceil_mode)
        if gaps:
            one = gaps.isdigit()
            notes.append(f"{axis}: input position{'' if one else 's'} {gaps} {'falls' if one else 'fall'} between "
                         f"the windows' taps (kernel {k}, stride {s}, dilation {d}) and {'is' if one else 'are'} "
                         f"never read")
        if ceil_mode:
            out = pool_output_length(n, k, s, pb, pa, d, ceil_mode=True)
            tail = range(max(0, tail_start(n, k, s, pb, d, out)), n)
            if tail:
                where = f"{tail[0]}..{tail[-1]}" if len(tail) > 1 else f"{tail[0]}"
                notes.append(f"{axis}: input position{'s' if len(tail) > 1 else ''} {where} after the last window "
                             f"{'are' if len(tail) > 1 else 'is'} never read (ceil_mode drops a window that would "
                             f"start in the right padding)")
            continue
        left_over = uncovered_after(n, k, s, pb, pa, d)
        if not left_over:
            continue
        span = n + pb + pa - effective_kernel(k, d)
        notes.append(
            f"{axis}: (input {n} + padding {pb + pa} − kernel span {effective_kernel(k, d)}) = {span} is not a "
            f"multiple of stride {s}: the output is floored to {span // s + 1} and "
            f"{_tail_text(axis, n, pa, left_over)}")
    return notes


def _tail_text(axis: str, n: int, pad_after: int, left_over: int) -> str:
    """What the last ``left_over`` positions of the padded input, which no window reaches, are: input positions
    (named as rows/columns, with their range) and how many of them are padding (named only when some are).

    >>> _tail_text("H", 28, 0, 1)
    'input row 27 (of 0..27) is never read'
    >>> _tail_text("W", 11, 1, 3)
    'input columns 9..10 (of 0..10) and 1 padded position are never read'
    >>> _tail_text("L", 224, 3, 1)
    'the last 1 padded position is never read (only padding: no input value is lost)'
    """
    real = min(n, max(0, left_over - pad_after))            # the tail is [n + pad_after − left_over, n + pad_after)
    padding = left_over - real
    if not real:
        return (f"the last {padding} padded position{'s are' if padding > 1 else ' is'} never read (only padding: no "
                f"input value is lost)")
    one, many = AXIS_WORDS.get(axis, ("position", "positions"))
    first = n - real
    where = (f"input {one} {first}" if real == 1 else f"input {many} {first}..{n - 1}") + f" (of 0..{n - 1})"
    if padding:
        return f"{where} and {padding} padded position{'s' if padding > 1 else ''} are never read"
    return f"{where} {'is' if real == 1 else 'are'} never read"


def _gaps_between_windows(n: int, k: int, s: int, d: int, pb: int, pa: int, ceil_mode: bool = False) -> str:
    """The real input positions before the end of the last window that no window reads ('' when none)."""
    unread = unread_between_windows(n, k, s, pb, pa, d, ceil_mode)      # closed form, any length
    if not unread:
        return ""
    text = unread.text()
    return text if "in all" in text or unread.single else f"{text} ({unread.count} in all)"


def axis_names(rank: int) -> str:
    return {1: "L", 2: "HW", 3: "DHW"}.get(rank, "".join(f"{i}" for i in range(rank)))


# ---------------------------------------------------------------------------------------------- convolutions

def conv_rule(layer: L._ConvBase, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    rank = layer.spatial_dims
    n, cin, spatial = require_spatial(x, rank, ctx)
    check_declared(layer.in_channels, cin, "in_channels", x, ctx)
    if cin % layer.groups:
        raise ctx.fail(f"in_channels {cin} (input {fmt_shape(x.shape)}) is not divisible by groups {layer.groups}")
    if layer.transposed:
        return _conv_transpose(layer, x, n, cin, spatial, ctx)

    k, s, d = layer.kernel_size, layer.stride, layer.dilation
    pads = resolve_pads(layer.padding, spatial, k, s, d)
    if layer.padding_mode != "zeros":
        _check_padding_mode(layer.padding_mode, spatial, pads, x, ctx)
    out = tuple(conv_output_length(nn, kk, ss, pb, pa, dd) for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
    if min(out) < 1:
        span = tuple(effective_kernel(kk, dd) for kk, dd in zip(k, d))
        padded = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
        raise ctx.fail(f"kernel {fmt_dims(k)} (dilation {fmt_dims(d)}) needs at least {fmt_dims(span)} input after "
                       f"padding, got {fmt_dims(padded)} (input {fmt_shape(x.shape)}, padding {fmt_pads(pads)})")
    cout = layer.out_channels
    weights_per_output = (cin // layer.groups) * math.prod(k)
    positions = n * numel(out)
    macs = positions * cout * weights_per_output
    bias_adds = positions * cout if layer.bias else 0
    notes = border_notes(spatial, k, s, d, pads, axis_names(rank))
    if layer.padding == "same":
        notes.insert(0, f"'same' padding applied (before, after): {fmt_pads_per_axis(pads)}")
        if any(ss > 1 for ss in s):
            notes.insert(1, "'same' with stride > 1 follows TensorFlow/Keras; PyTorch refuses it")
    return Facts(
        output_shape=join_channels(n, cout, out, ctx.channels_last),
        params=cout * weights_per_output + (cout if layer.bias else 0),
        macs=macs, flops=2 * macs + bias_adds,
        rf=window_rf(x.rf, k, s, d, pads), notes=notes, geometry={"pads": pads})


def _check_padding_mode(mode: str, spatial: Shape, pads, x: Tensor, ctx: Context) -> None:
    """PyTorch's limits: reflect needs padding < size; circular needs padding ≤ size."""
    for n, (pb, pa) in zip(spatial, pads):
        too_big = max(pb, pa) >= n if mode == "reflect" else max(pb, pa) > n if mode == "circular" else False
        if too_big:
            need = "smaller than" if mode == "reflect" else "at most"
            raise ctx.fail(f"padding_mode '{mode}' needs padding {need} the input size, got padding {fmt_pads(pads)} "
                           f"for input {fmt_shape(x.shape)}")


def _conv_transpose(layer: L._ConvTransposeBase, x: Tensor, n: int, cin: int, spatial: Shape, ctx: Context) -> Facts:
    k, s, d, op = layer.kernel_size, layer.stride, layer.dilation, layer.output_padding
    notes = []
    if layer.padding == "same":
        if any(op):
            raise ctx.fail(f"output_padding {fmt_dims(op)} cannot be combined with padding 'same' "
                           f"(the output is input·stride by definition)")
        resolved = [transposed_same_padding(nn, kk, ss, dd) for nn, kk, ss, dd in zip(spatial, k, s, d)]
        crop = tuple((b, a) for b, a, _ in resolved)
        op = tuple(extra for _, _, extra in resolved)
        notes.append(f"'same' (Keras): output = input·stride; cropped (before, after) {fmt_pads(crop)}"
                     + (f", zeros appended {fmt_dims(op)}" if any(op) else ""))
    else:
        crop = resolve_pads(layer.padding, spatial, k, s, d)       # 'valid' → no crop
        if layer.padding == "valid" and "output_padding" not in layer.model_fields_set:
            # 'valid' is Keras' word (PyTorch's transposed convs have no string padding), so Keras' length:
            # L·s + max(span − s, 0). It equals PyTorch's (L − 1)·s + span unless the kernel span is narrower than
            # the stride; then Keras appends s − span zero (bias-only) positions, i.e. output_padding in torch terms.
            # An output_padding the spec states (even 0) is used as given, as Keras does when it is not None.
            op = tuple(transposed_valid_extra(kk, ss, dd) for kk, ss, dd in zip(k, s, d))
            if any(op):
                notes.append(f"'valid' (Keras): output = input·stride + max(kernel span − stride, 0); "
                             f"zeros appended {fmt_dims(op)} (PyTorch: output_padding {fmt_dims(op)})")
    out = tuple(transposed_output_length(nn, kk, ss, cb, ca, dd, oo)
                for nn, kk, ss, (cb, ca), dd, oo in zip(spatial, k, s, crop, d, op))
    if min(out) < 1:
        raise ctx.fail(f"output size {fmt_dims(out)} < 1: (input − 1)·stride − padding + dilation·(kernel − 1) + "
                       f"output_padding + 1 with input {fmt_shape(x.shape)}, kernel {fmt_dims(k)}, stride "
                       f"{fmt_dims(s)}, padding {fmt_pads(crop)}, dilation {fmt_dims(d)}, output_padding {fmt_dims(op)}")
    cout = layer.out_channels
    weights_per_input = (cout // layer.groups) * math.prod(k)
    # Every input position is multiplied by every weight it touches: counted on input positions, cropped or not.
    macs = n * numel(spatial) * cin * weights_per_input
    bias_adds = n * numel(out) * cout if layer.bias else 0
    rf = None
    if x.rf is not None and x.rf.aligned_grid:
        size, jump, start = [], [], []
        for r, j, st, kk, ss, dd, (cb, _) in zip(x.rf.size, x.rf.jump, x.rf.start2, k, s, d, crop):
            k_eff = effective_kernel(kk, dd)
            size.append(r + (transposed_input_span(kk, ss, dd) - 1) * j)
            jump.append(exact_ratio(j, ss))
            start.append(st + exact_ratio((2 * cb - (k_eff - 1)) * j, ss))
        uneven = ("up-sampling by a transposed conv with stride > 1 (its outputs see unevenly spaced inputs)"
                  if any(ss > 1 for ss in s) else "")
        rf = ReceptiveField(tuple(size), tuple(jump), tuple(start), uneven)
    return Facts(
        output_shape=join_channels(n, cout, out, ctx.channels_last),
        params=cin * weights_per_input + (cout if layer.bias else 0),
        macs=macs, flops=2 * macs + bias_adds, rf=rf, notes=notes,
        geometry={"crop": crop, "output_padding": op})


# ---------------------------------------------------------------------------------------------------- pooling

def pool_rule(layer: L._PoolBase, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    rank = layer.spatial_dims
    n, c, spatial = require_spatial(x, rank, ctx)
    k, s, d = layer.kernel_size, layer.stride, layer.dilations
    pads = resolve_pads(layer.padding, spatial, k, s, d)
    if layer.padding != "same":
        for kk, (pb, pa) in zip(k, pads):
            if max(pb, pa) > kk // 2:
                raise ctx.fail(f"padding {fmt_pads(pads)} must be at most half the kernel {fmt_dims(k)} "
                               f"(PyTorch's rule)")
        if isinstance(layer, L.AvgPool3d) and any(nn < kk for nn, kk in zip(spatial, k)):
            # torch's avg_pool3d (unlike 1d/2d) checks the unpadded input against the kernel
            raise ctx.fail(f"input {fmt_shape(x.shape)} is smaller than the kernel {fmt_dims(k)} in some dim; "
                           f"PyTorch's AvgPool3d refuses that even with padding")
    out = tuple(pool_output_length(nn, kk, ss, pb, pa, dd, layer.ceil_mode)
                for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
    if min(out) < 1:
        span = tuple(effective_kernel(kk, dd) for kk, dd in zip(k, d))
        padded = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
        raise ctx.fail(f"window {fmt_dims(k)} (dilation {fmt_dims(d)}) needs at least {fmt_dims(span)} input after "
                       f"padding, got {fmt_dims(padded)} (input {fmt_shape(x.shape)}, padding {fmt_pads(pads)})")
    notes = []
    if layer.padding == "same":
        notes.append(f"'same' padding applied (before, after): {fmt_pads_per_axis(pads)}; padded positions are ignored")
        notes.append("'same' pooling follows TensorFlow/Keras; PyTorch's pooling layers have no 'same' padding")
    if layer.ceil_mode:
        floored = tuple(pool_output_length(nn, kk, ss, pb, pa, dd)
                        for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
        extra = [f"{a}: +{o - f}" for a, o, f in zip(axis_names(rank), out, floored) if o != f]
        if extra:
            notes.append("ceil_mode adds a last window that hangs over the end of the input (" + ", ".join(extra) + ")")
    notes += border_notes(spatial, k, s, d, pads, axis_names(rank), layer.ceil_mode)
    geometry: dict[str, Any] = {"pads": pads}
    if isinstance(layer, L._AvgPoolBase):
        include = layer.count_include_pad if layer.count_include_pad is not None else layer.padding != "same"
        geometry["count_include_pad"] = include
    # One compare (max) or add (avg; the divide replaces the first add) per window element, full window counted.
    return Facts(output_shape=join_channels(n, c, out, ctx.channels_last),
                 flops=n * c * numel(out) * math.prod(k),
                 rf=window_rf(x.rf, k, s, d, pads), notes=notes, geometry=geometry)


def adaptive_pool_rule(layer: L._AdaptivePoolBase, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    n, c, spatial = require_spatial(x, layer.spatial_dims, ctx)
    out = tuple(nn if o is None else o for nn, o in zip(spatial, layer.output_size))
    window_elements = math.prod(adaptive_window_total(nn, o) for nn, o in zip(spatial, out))
    rf = None
    if x.rf is not None and x.rf.aligned_grid:
        size, jump, start = [], [], []
        for r, j, st, nn, o in zip(x.rf.size, x.rf.jump, x.rf.start2, spatial, out):
            first_window = ceil_div(nn, o)          # window 0 spans [0, ceil(n/o))
            size.append(r + (adaptive_window_max(nn, o) - 1) * j)
            jump.append(exact_ratio(j * nn, o))
            start.append(st + (first_window - 1) * j)
        # windows [floor(i·n/o), ceil((i+1)·n/o)) start evenly only when o divides n (then it is a plain pooling)
        uneven_dims = [f"{nn} → {o}" for nn, o in zip(spatial, out) if nn % o]
        uneven = (f"adaptive pooling with uneven windows ({', '.join(uneven_dims)}: the output size does not "
                  f"divide the input size)") if uneven_dims else ""
        rf = ReceptiveField(tuple(size), tuple(jump), tuple(start), uneven)
    return Facts(output_shape=join_channels(n, c, out, ctx.channels_last),
                 flops=n * c * window_elements, rf=rf)


def global_pool_rule(layer, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    if len(x.shape) < 3:
        raise ctx.fail(f"needs an input with spatial dims {layout_name(2, ctx.channels_last)}, got {fmt_shape(x.shape)}")
    n, c, spatial = split_channels(x.shape, ctx.channels_last)
    out = join_channels(n, c, (1,) * len(spatial), ctx.channels_last) if layer.keepdims else (n, c)
    rf = None
    if x.rf is not None and x.rf.aligned_grid:
        rf = ReceptiveField(tuple(r + (nn - 1) * j for r, j, nn in zip(x.rf.size, x.rf.jump, spatial)),
                            tuple(j * nn for j, nn in zip(x.rf.jump, spatial)),
                            tuple(st + (nn - 1) * j for st, j, nn in zip(x.rf.start2, x.rf.jump, spatial)))
    return Facts(output_shape=out, flops=numel(x.shape), rf=rf)


# ------------------------------------------------------------------------------------------- dense, reshaping

def linear_rule(layer: L.Linear, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    if len(x.shape) < 2:
        raise ctx.fail(f"needs an input of at least 2 dims [N, ..., features], got {fmt_shape(x.shape)}")
    fin = x.shape[-1]
    check_declared(layer.in_features, fin, "in_features", x, ctx)
    rows = numel(x.shape[:-1])
    fout = layer.out_features
    macs = rows * fin * fout
    notes = []
    if len(x.shape) > 2:
        # A dense layer on [N, 28, 28] is a classic misreading: people often mean one layer over all 784 inputs.
        features = numel(x.shape[1:])
        notes.append(f"applied to the last dim only, like torch.nn.Linear and Keras Dense: {fin} input features at "
                     f"each of {rows // x.shape[0]:,} positions of {fmt_shape(x.shape)}, not "
                     f"{'·'.join(str(v) for v in x.shape[1:])} = {features:,} features; for one dense layer over "
                     f"all {features:,}, flatten first (on the command line: --input "
                     f"{'*'.join(str(v) for v in x.shape[1:])})")
    return Facts(output_shape=(*x.shape[:-1], fout),
                 params=fin * fout + (fout if layer.bias else 0),
                 macs=macs, flops=2 * macs + (rows * fout if layer.bias else 0), notes=notes)


def flatten_rule(layer: L.Flatten, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    rank = len(x.shape)
    start = normalize_dim(layer.start_dim, rank, "start_dim", x.shape, ctx)
    end = normalize_dim(layer.end_dim, rank, "end_dim", x.shape, ctx)
    if start > end:
        raise ctx.fail(f"start_dim {layer.start_dim} comes after end_dim {layer.end_dim} for input {fmt_shape(x.shape)}")
    out = (*x.shape[:start], numel(x.shape[start:end + 1]), *x.shape[end + 1:])
    notes = []
    if ctx.channels_last and rank > 2:
        notes.append("flattened in NHWC order (as Keras does); weights are not interchangeable with NCHW order")
    return Facts(output_shape=out, notes=notes)


def reshape_rule(layer: L.Reshape, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    per_example = numel(x.shape[1:])
    known = numel(v for v in layer.shape if v != -1)
    target = list(layer.shape)
    if -1 in target:
        if per_example % known:
            raise ctx.fail(f"shape {layer.shape} cannot hold the {per_example} values per example of input "
                           f"{fmt_shape(x.shape)} ({per_example} is not divisible by {known})")
        target[target.index(-1)] = per_example // known
    elif known != per_example:
        raise ctx.fail(f"shape {layer.shape} holds {known} values per example but input {fmt_shape(x.shape)} has "
                       f"{per_example}")
    return Facts(output_shape=(x.shape[0], *target))


def zero_pad_rule(layer: L.ZeroPad, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    if len(x.shape) < 3:
        raise ctx.fail(f"needs an input with spatial dims, got {fmt_shape(x.shape)}")
    n, c, spatial = split_channels(x.shape, ctx.channels_last)
    try:
        pads = L._padding_pairs(layer.padding, len(spatial))
    except ValueError as e:
        raise ctx.fail(f"{e} (input {fmt_shape(x.shape)})") from None
    out = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
    rf = None
    if x.rf is not None and x.rf.aligned_grid:
        rf = ReceptiveField(x.rf.size, x.rf.jump, tuple(st - 2 * pb * j for st, j, (pb, _) in
                                                         zip(x.rf.start2, x.rf.jump, pads)))
    return Facts(output_shape=join_channels(n, c, out, ctx.channels_last), rf=rf, geometry={"pads": pads})


# ---------------------------------------------------------------------------------------------- normalization

#: FLOPs of normalizing with given statistics, per element: subtract the mean, multiply by 1/std
NORMALIZE_FLOPS = 2
#: FLOPs of computing mean and variance over a group, per element: 1 add (mean), subtract + square + add (variance)
STATISTICS_FLOPS = 4
#: per group: divide for the mean, divide for the variance, add eps, reciprocal square root
PER_GROUP_FLOPS = 4


def batchnorm_rule(layer: L._BatchNormBase, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    allowed = {L.BatchNorm1d: (2, 3), L.BatchNorm2d: (4,), L.BatchNorm3d: (5,)}[type(layer)]
    if len(x.shape) not in allowed:
        want = " or ".join(f"{r}-d" for r in allowed)
        raise ctx.fail(f"needs a {want} input, got {len(x.shape)}-d {fmt_shape(x.shape)}")
    _, c, _ = split_channels(x.shape, ctx.channels_last)
    check_declared(layer.num_features, c, "num_features", x, ctx)
    # Inference with running statistics folds into one multiply and one add per element.
    return Facts(output_shape=x.shape, params=2 * c if layer.affine else 0,
                 buffers=2 * c if layer.track_running_stats else 0,
                 flops=NORMALIZE_FLOPS * numel(x.shape), rf=x.rf)


def _norm_flops(elements: int, groups: int, affine_ops: int) -> int:
    return elements * (STATISTICS_FLOPS + NORMALIZE_FLOPS + affine_ops) + groups * PER_GROUP_FLOPS


def layernorm_rule(layer: L.LayerNorm, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    ns = layer.normalized_shape
    ns = (x.shape[-1],) if ns is None else (ns,) if isinstance(ns, int) else tuple(ns)
    if len(ns) >= len(x.shape) or tuple(x.shape[-len(ns):]) != ns:
        raise ctx.fail(f"normalized_shape {list(ns)} must equal the trailing dims of the input {fmt_shape(x.shape)} "
                       f"(batch excluded)")
    size = numel(ns)
    affine_params = (2 if layer.bias else 1) * size if layer.elementwise_affine else 0
    affine_ops = (2 if layer.bias else 1) if layer.elementwise_affine else 0
    return Facts(output_shape=x.shape, params=affine_params,
                 flops=_norm_flops(numel(x.shape), numel(x.shape) // size, affine_ops), rf=x.rf,
                 geometry={"normalized_shape": ns})


def groupnorm_rule(layer: L.GroupNorm, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    if len(x.shape) < 2:
        raise ctx.fail(f"needs an input [N, C, ...], got {fmt_shape(x.shape)}")
    n, c, _ = split_channels(x.shape, ctx.channels_last)
    check_declared(layer.num_channels, c, "num_channels", x, ctx)
    if c % layer.num_groups:
        raise ctx.fail(f"channels {c} (input {fmt_shape(x.shape)}) are not divisible by num_groups {layer.num_groups}")
    return Facts(output_shape=x.shape, params=2 * c if layer.affine else 0,
                 flops=_norm_flops(numel(x.shape), n * layer.num_groups, 2 if layer.affine else 0), rf=x.rf)


# ----------------------------------------------------------------------------------------- element-wise layers

#: FLOPs per element; transcendental functions (exp, tanh, erf) count as 1
ELEMENTWISE_FLOPS: dict[str, int] = {
    "identity": 0, "dropout": 0,
    "relu": 1,             # max(x, 0)
    "relu6": 2,            # min(max(x, 0), 6)
    "leaky_relu": 2,       # compare, multiply
    "sigmoid": 3,          # 1 / (1 + exp(−x)): exp, add, divide
    "tanh": 1,
    "gelu": 5,             # 0.5·x·(1 + erf(x/√2)): divide, erf, add, 2 multiplies
    "gelu_tanh": 9,        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): x³ and ·0.044715 (3), add, mul, tanh,
                           # add, 2 multiplies
    "silu": 4,             # x·sigmoid(x)
    "swish": 4,
    "hardswish": 5,        # x·min(max(x + 3, 0), 6)/6: add, 2 compares, multiply, divide
    "hardsigmoid": 4,      # min(max(x + 3, 0), 6)/6: add, 2 compares, divide
    "softmax": 5,          # max-subtract (compare, subtract), exp, sum (add), divide
}


def elementwise_rule(layer, inputs: list[Tensor], ctx: Context) -> Facts:
    x = inputs[0]
    key = layer.type
    if key == "gelu" and layer.approximate == "tanh":
        key = "gelu_tanh"
    geometry = {}
    if key == "softmax":
        geometry["dim"] = normalize_dim(layer.dim, len(x.shape), "dim", x.shape, ctx)
    return Facts(output_shape=x.shape, flops=ELEMENTWISE_FLOPS[key] * numel(x.shape), rf=x.rf, geometry=geometry)


# ---------------------------------------------------------------------------------------------------- merges

def broadcast_shapes(shapes: list[Shape]) -> Optional[Shape]:
    """NumPy/PyTorch broadcasting; ``None`` when the shapes are incompatible.

    >>> broadcast_shapes([(1, 64, 1, 1), (1, 64, 7, 7)])
    (1, 64, 7, 7)
    >>> broadcast_shapes([(1, 64, 7, 7), (1, 32, 7, 7)]) is None
    True
    """
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(-rank, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def merge_rf(inputs: list[Tensor]) -> tuple[Optional[ReceptiveField], list[str]]:
    """Receptive field after a merge: the largest one, with a note when the paths do not line up."""
    fields = [t.rf for t in inputs]
    if any(f is None for f in fields) or len({len(f.size) for f in fields}) != 1:
        return None, []
    if any(not f.aligned_grid for f in fields) and len(set(fields)) != 1:
        # a position's field is the union of its paths' fields; on an uneven or fractional grid their offsets
        # vary from position to position, so neither the largest nor a sum is exact
        return None, []
    if len(set(fields)) == 1:
        return fields[0], []
    # Largest per spatial dim (a wide-but-short field and a tall-but-narrow one give the larger of each), with the
    # jump and centre of the path that field comes from.
    per_dim = [max(fields, key=lambda f, i=i: f.size[i]) for i in range(len(fields[0].size))]
    widest = ReceptiveField(tuple(f.size[i] for i, f in enumerate(per_dim)),
                            tuple(f.jump[i] for i, f in enumerate(per_dim)),
                            tuple(f.start2[i] for i, f in enumerate(per_dim)))
    note = ("inputs have different receptive fields (" + "; ".join(
        f"{fmt_dims(int(math.ceil(v)) for v in f.size)} jump {fmt_dims(f.jump)}" for f in fields)
        + "): reporting the largest in each dim")
    return widest, [note]


def elementwise_merge_rule(layer, inputs: list[Tensor], ctx: Context) -> Facts:
    shapes = [t.shape for t in inputs]
    out = broadcast_shapes(shapes)
    if out is None:
        raise ctx.fail(f"cannot {layer.type} shapes {', '.join(fmt_shape(s) for s in shapes)} "
                       f"(inputs {layer.inputs}): sizes must match or be 1 in every dim")
    if any(len(s) != len(out) for s in shapes):
        raise ctx.fail(f"cannot {layer.type} shapes {', '.join(fmt_shape(s) for s in shapes)}: "
                       f"inputs of different rank")
    rf, notes = merge_rf(inputs)
    return Facts(output_shape=out, flops=(len(inputs) - 1) * numel(out), rf=rf, notes=notes)


def concat_rule(layer: L.Concat, inputs: list[Tensor], ctx: Context) -> Facts:
    shapes = [t.shape for t in inputs]
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ctx.fail(f"cannot concat inputs of different rank: {', '.join(fmt_shape(s) for s in shapes)}")
    default = -1 if ctx.channels_last else 1
    dim = normalize_dim(default if layer.dim is None else layer.dim, rank, "dim", shapes[0], ctx)
    if dim == 0:
        raise ctx.fail("dim 0 is the batch dim; concatenating along it is not supported")
    for s in shapes[1:]:
        if any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != dim):
            raise ctx.fail(f"cannot concat {', '.join(fmt_shape(s) for s in shapes)} along dim {dim}: "
                           f"every other dim must match")
    out = list(shapes[0])
    out[dim] = sum(s[dim] for s in shapes)
    rf, notes = merge_rf(inputs)
    return Facts(output_shape=tuple(out), rf=rf, notes=notes, geometry={"dim": dim})


# ---------------------------------------------------------------------------------------------------- registry

RULES: dict[type, Callable[[Any, list[Tensor], Context], Facts]] = {}
for _cls in L.LAYER_CLASSES:
    if issubclass(_cls, L._ConvBase):
        RULES[_cls] = conv_rule
    elif issubclass(_cls, L._PoolBase):
        RULES[_cls] = pool_rule
    elif issubclass(_cls, L._AdaptivePoolBase):
        RULES[_cls] = adaptive_pool_rule
    elif issubclass(_cls, L._BatchNormBase):
        RULES[_cls] = batchnorm_rule
    elif issubclass(_cls, (L._Activation, L.Identity, L.Dropout)):
        RULES[_cls] = elementwise_rule
RULES.update({
    L.GlobalAvgPool: global_pool_rule, L.GlobalMaxPool: global_pool_rule,
    L.Linear: linear_rule, L.Flatten: flatten_rule, L.Reshape: reshape_rule, L.ZeroPad: zero_pad_rule,
    L.LayerNorm: layernorm_rule, L.GroupNorm: groupnorm_rule,
    L.Add: elementwise_merge_rule, L.Mul: elementwise_merge_rule, L.Concat: concat_rule,
})
assert set(RULES) == set(L.LAYER_CLASSES), "every layer type needs a rule"


def infer(layer, inputs: list[Tensor], ctx: Context) -> Facts:
    return RULES[type(layer)](layer, inputs, ctx)
