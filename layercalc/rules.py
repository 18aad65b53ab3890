"""What the shape and cost rules share: the facts a rule returns, the tensors it sees, and small helpers.

Each layer type's rule is its ``infer`` method, in its family module (:mod:`layercalc.layers`). It takes the tensors
reaching the layer and a context (where the layer is, the network's layout) and returns :class:`Facts`: the output
shape, learnable parameters, buffers, MACs, FLOPs, notes, receptive-field state and the resolved geometry (padding
actually applied, …) that the layer's forward step and explanation reuse. Every formula is written out in
docs/conventions.md. The helpers here (channels and layouts, padding, sliding-window receptive fields, the notes
about input positions no window reads) serve several families.

Conventions, in one place:
- shapes include the batch dim; spatial layers find channels at dim 1 (NCHW) or at the last dim (NHWC);
- ``macs``: multiply-accumulates of conv / transposed conv / linear, bias excluded;
- ``flops``: every arithmetic operation: 2 per MAC, + 1 per bias add, + each family's per-element costs
  (activations, pooling, normalization, merges);
- all counts are exact Python ints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Optional

from .coverage import AXIS_WORDS, tail_start, unread_between_windows
from .errors import ShapeError, shown
from .notes import Routine
from .shapes import effective_kernel, pool_output_length, same_padding, uncovered_after

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
    ``whole``: every output position sees the whole network input, in every spatial dim (past a global pool or
    attention whose span covers the input, or a merge with such a path: a squeeze-and-excitation gate). ``size``
    is then the input's size per dim and ``start2`` its doubled centre; ``jump`` is still the distance between
    neighbouring output positions. Every later layer that reads the tensor sees the whole input too.
    """
    size: tuple[int, ...]
    jump: tuple[int | Fraction, ...]
    start2: tuple[int | Fraction, ...]
    uneven: str = ""
    whole: bool = False

    @classmethod
    def of_input(cls, rank: int) -> ReceptiveField:
        return cls((1,) * rank, (1,) * rank, (1,) * rank)

    @classmethod
    def whole_input(cls, extent: tuple[int, ...], jump: tuple[int | Fraction, ...]) -> ReceptiveField:
        """The field of positions that see the whole input of ``extent`` pixels per dim, ``jump`` apart."""
        return cls(extent, jump, extent, "", True)

    @property
    def aligned_grid(self) -> bool:
        """True while output positions sit evenly, a whole number of input pixels apart: the condition for the
        field arithmetic of the next layer to be exact. Past an up-sampling layer or uneven adaptive windows it
        does not hold, and later layers do not report a field."""
        return not self.uneven and all(isinstance(j, int) for j in self.jump)


# Tensor, Context and Facts are made for every layer of every analysis: slots make them smaller and faster to build.
@dataclass(slots=True)
class Tensor:
    """What flows along an edge of the graph during analysis."""
    shape: Shape
    rf: Optional[ReceptiveField] = None
    #: the tensor's name in the network: "input" for the network's input, else its producer's (NAME, NAME:i)
    name: str = ""
    #: a serving phase's tensor that does not depend on the decoded input (an encoder's output): made at the prefill
    #: and the same in every decode step (:mod:`layercalc.serving`); False outside a serving phase
    fixed: bool = False


@dataclass(slots=True)
class Context:
    label: Any                 # str() gives "layers[3] 'conv2' (conv2d)", for error messages
    channels_last: bool        # NHWC-style layout
    batch: int = 1             # the network's batch: what a layer without inputs (a learnable tensor) expands to
    #: the network input's spatial sizes (in the layout's order), for a layer that decides whether a field covers
    #: the whole input (:func:`global_field`); empty when unknown (then it is not decided)
    extent: tuple[int, ...] = ()
    #: a decode step (layercalc.serving): positions already processed and kept in the KV cache before the tokens
    #: this analysis runs on. Layers that read other positions than their own read it: causal self-attention attends
    #: to past + new keys, a position table is read at rows past..past+L−1. 0: an ordinary forward pass (prefill)
    past: int = 0
    #: a serving phase (layercalc.serving): per input, whether it is fixed (made at the prefill, not by the decoded
    #: input: an encoder's output). An attention whose keys and values are fixed projects them at the prefill and
    #: reads them from the cache in a decode step (past > 0). Empty outside a serving phase
    fixed: tuple[bool, ...] = ()

    def fail(self, message: str) -> ShapeError:
        return ShapeError(f"{self.label}: {message}")


@dataclass(slots=True)
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
    #: the shapes of a layer with several outputs (``split``), which later layers name ``NAME:0``, ``NAME:1``, …;
    #: ``output_shape`` is then the first of them. None for the usual one output.
    outputs: Optional[list[Shape]] = None

    @property
    def output_shapes(self) -> list[Shape]:
        """Every output's shape (one for most layers)."""
        return list(self.outputs) if self.outputs is not None else [self.output_shape]


# (a value, never changed once made; not a frozen dataclass, which is made 4–5× slower: one per layer per analysis)
@dataclass(slots=True)
class Gradients:
    """Which gradients the backward pass needs from one layer — a property of the graph, not of the layer
    (:func:`layercalc.graph.gradient_flow` decides it): ``inputs[i]`` whether the tensor feeding input ``i``
    requires a gradient (the network input does not, nor anything computed from it by layers without trainable
    parameters), ``weights`` whether the layer's parameters get one (it has some, its own or tied, and is not
    frozen)."""
    inputs: tuple[bool, ...]
    weights: bool

    @property
    def any_input(self) -> bool:
        return any(self.inputs)

    @property
    def flows(self) -> bool:
        """Some gradient passes through the layer: it has a backward at all."""
        return self.weights or any(self.inputs)


@dataclass(slots=True)
class Backward:
    """The backward pass of one layer, given the :class:`Gradients` it must make.

    ``input_macs``: multiply-accumulates of the gradients with respect to activations — the layer's inputs and the
    tensors inside it (attention's queries, keys and values, a recurrent layer's hidden states), counted like the
    forward ``macs`` (matmul-like products only); ``weight_macs``: of the gradients with respect to its parameters;
    ``element_flops``: the rest of the backward's arithmetic (bias-gradient sums, derivatives of element-wise work,
    an embedding's scatter-add), by the conventions of docs/conventions.md. FLOPs = 2·MACs + element FLOPs.
    ``lines``: the worked formulas, for ``--explain``."""
    input_macs: int = 0
    weight_macs: int = 0
    element_flops: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.input_macs + self.weight_macs

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.element_flops


def elementwise_backward(facts: Facts, grads: Gradients, what: str = "element-wise") -> Backward:
    """The backward of a layer with no matmul-like work (activations, norms, pooling, merges, reshapes): no MACs;
    its element-wise work is counted once more, at the forward's cost (the convention of docs/conventions.md),
    whenever a gradient passes through it."""
    work = facts.flops - 2 * facts.macs
    return Backward(element_flops=work, lines=[
        f"backward: {what}: 0 MACs; element FLOPs = the forward's element work = {work:,}"])


#: the explanation's line for an input gradient the graph does not need
NO_INPUT_GRADIENT = ("no input gradient: the input requires none (the network input, token ids, or a tensor made "
                     "without trainable parameters)")


def product_backward(macs: int, grads: Gradients, input_formula: str, weight_formula: str,
                     bias_adds: int = 0, bias_formula: str = "") -> Backward:
    """The backward of a product of the input with the layer's weight (linear, conv, transposed conv): each forward
    multiply x·w is met once by the input gradient (dy·w) and once by the weight gradient (dy·x), so each costs the
    forward MACs; the bias gradient sums the output gradient (one add per output element: the forward's bias adds).
    The formulas are the explanation's, with the user's numbers."""
    result = Backward()
    if grads.inputs and grads.inputs[0]:
        result.input_macs = macs
        result.lines.append(f"backward input gradient ({input_formula}) = forward MACs = {macs:,} MACs")
    else:
        result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
    if grads.weights:
        result.weight_macs = macs
        result.lines.append(f"backward weight gradient ({weight_formula}) = forward MACs = {macs:,} MACs")
        if bias_adds:
            result.element_flops = bias_adds
            result.lines.append(f"backward bias gradient ({bias_formula}) = {bias_adds:,} adds")
    else:
        result.lines.append("backward: no weight gradient (frozen: trainable false)")
    return result


# ------------------------------------------------------------------------------------------------------- helpers

def produced(name: str, facts: Facts) -> list[tuple[str, tuple[int, ...]]]:
    """The tensors a layer makes, by name: ``name`` for one output, ``name:0``, ``name:1``, … for several."""
    if facts.outputs is None:
        return [(name, facts.output_shape)]
    return [(f"{name}:{i}", shape) for i, shape in enumerate(facts.outputs)]


def numel(shape: Iterable[int]) -> int:
    return math.prod(shape)


def fmt_shape(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def exact_ratio(numerator: int | Fraction, denominator: int) -> int | Fraction:
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
    if rf is not None and rf.whole:
        return dataclasses.replace(rf, jump=tuple(j * s for j, s in zip(rf.jump, stride)))
    if rf is None or not rf.aligned_grid:
        return None
    size, jump, start = [], [], []
    for r, j, st, k, s, d, (pb, _) in zip(rf.size, rf.jump, rf.start2, kernel, stride, dilation, pads):
        k_eff = effective_kernel(k, d)
        size.append(r + (k_eff - 1) * j)
        start.append(st + (k_eff - 1 - 2 * pb) * j)
        jump.append(j * s)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def global_field(rf: Optional[ReceptiveField], spatial: Shape, ctx: Context) -> Optional[ReceptiveField]:
    """The field of an output that reads every position of a map of ``spatial`` positions per dim (a global pool, a
    mean over every spatial dim, attention): one window over each whole dim, ``rf + (n − 1)·jump``, with jump
    ``jump·n`` — and the whole input (:meth:`ReceptiveField.whole_input`) when that span covers the network input
    in every dim (it may not: a strided window can leave the input's last rows unread).

    >>> global_field(ReceptiveField((3,), (2,), (1,)), (16,), Context("", False, extent=(32,)))   # conv k3 s2 p1
    ReceptiveField(size=(32,), jump=(32,), start2=(32,), uneven='', whole=True)
    >>> global_field(ReceptiveField((3,), (2,), (3,)), (15,), Context("", False, extent=(32,))).size  # no padding
    (31,)
    """
    if rf is None or len(rf.size) != len(spatial):
        return None
    jump = tuple(j * n for j, n in zip(rf.jump, spatial))
    if rf.whole:
        return ReceptiveField.whole_input(rf.size, jump)
    if not rf.aligned_grid:
        return None
    # in doubled coordinates the first position's field spans [start2 − size, start2 + size) and the last one's
    # lies (n − 1)·jump further on: together they cover the input when they reach from 0 to its end
    if len(ctx.extent) == len(spatial) and all(
            st - r <= 0 and st + 2 * (n - 1) * j + r >= 2 * length
            for r, j, st, n, length in zip(rf.size, rf.jump, rf.start2, spatial, ctx.extent)):
        return ReceptiveField.whole_input(ctx.extent, jump)
    return ReceptiveField(tuple(r + (n - 1) * int(j) for r, j, n in zip(rf.size, rf.jump, spatial)), jump,
                          tuple(st + (n - 1) * j for st, j, n in zip(rf.start2, rf.jump, spatial)))


def whole_from_inputs(inputs: list[Tensor], rf: Optional[ReceptiveField], reads_values: bool
                      ) -> Optional[ReceptiveField]:
    """``rf``, or the whole input when every tensor reaching the layer already sees it (each output position reads
    at least one input position, so it sees the whole input too) — whatever the layer's own rule made of the field
    (a flatten ends it, an up-sampling makes it uneven). ``reads_values``: the layer's output depends on its inputs'
    values (:attr:`LayerBase.reads_input_values`), not only on their shapes."""
    if rf is not None and rf.whole or not inputs or not reads_values:
        return rf
    fields = [t.rf for t in inputs]
    if not all(f is not None and f.whole for f in fields):
        return rf
    first = fields[0]
    assert first is not None
    if rf is None or len(rf.size) != len(first.size):
        return ReceptiveField.whole_input(first.size, first.jump)
    # the layer's own grid (its jump: the spacing of its output positions); its sizes where it only reordered the
    # dims (a transpose), else the input's
    return ReceptiveField.whole_input(rf.size if sorted(rf.size) == sorted(first.size) else first.size, rf.jump)


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
    if rf.uneven or (max(values) <= MAX_FIELD and min(values) >= -MAX_FIELD):
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
        note = (f"{axis}: (input {n} + padding {pb + pa} − kernel span {effective_kernel(k, d)}) = {span} is not a "
                f"multiple of stride {s}: the output is floored to {span // s + 1} and "
                f"{_tail_text(axis, n, pa, left_over)}")
        notes.append(Routine(note) if left_over <= pa else note)     # only padding unread: nothing lost
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


@lru_cache(maxsize=4096)
def _gaps_between_windows(n: int, k: int, s: int, d: int, pb: int, pa: int, ceil_mode: bool = False) -> str:
    """The real input positions before the end of the last window that no window reads ('' when none).

    Cached: a pure function of one axis' geometry, and the costliest part of resolving a CNN when windows leave
    gaps (a 1×1 stride-2 shortcut: a closed-form search per run); the H and W axes of a square map, the repeated
    blocks of a network and every later analysis of it (a sweep, serving's prefill and decode) ask again."""
    unread = unread_between_windows(n, k, s, pb, pa, d, ceil_mode)      # closed form, any length
    if not unread:
        return ""
    text = unread.text()
    return text if "in all" in text or unread.single else f"{text} ({unread.count} in all)"


def axis_names(rank: int) -> str:
    return {1: "L", 2: "HW", 3: "DHW"}.get(rank, "".join(f"{i}" for i in range(rank)))


# ------------------------------------------------------------------------------------------------------ engine

def infer(layer, inputs: list[Tensor], ctx: Context) -> Facts:
    """The layer's facts for these inputs: each layer type's own rule (:meth:`LayerBase.infer`), with what every
    type shares: Keras' ``data_format`` checked against the network's layout, a field that is the whole input
    carried on (:func:`whole_from_inputs`), and a frozen layer's note."""
    problem = layer.layout_problem(ctx.channels_last)
    if problem is not None:
        raise ctx.fail(problem)
    facts = layer.infer(inputs, ctx)
    if not isinstance(facts, Facts):        # a plugin's bug (graph.resolve names the plugin)
        raise TypeError(f"infer() returned {shown(facts)}, not Facts")
    facts.rf = whole_from_inputs(inputs, facts.rf, layer.reads_input_values)
    if not layer.trainable and facts.params:
        # Keras' frozen layer: still parameters (PyTorch's requires_grad=False), non-trainable in Keras' totals
        facts.notes.append(f"trainable: false (frozen): its {facts.params:,} parameters are non-trainable (Keras' "
                           f"totals count them there)")
    return facts
