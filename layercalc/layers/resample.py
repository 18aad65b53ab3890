"""Resampling: ``upsample`` (alias ``interpolate``; torch.nn.Upsample and F.interpolate) and Keras'
``upsampling1d``/``upsampling2d``/``upsampling3d`` (UpSampling1D/2D/3D: integer factors).

Output size per spatial dim: ``size``, ``floor(L·scale_factor)`` computed in double precision as PyTorch does
(``floor(100·0.29) = 28``), or (``size_from``) the spatial size of a second input, as
``F.interpolate(x, size=other.shape[-2:])`` (torchvision's segmentation heads resize to the image's size).

Source positions follow PyTorch's CPU kernels, including their float32 arithmetic for the nearest modes
(``floorf(i·(1/scale_factor))``), the 2-d nearest kernel's shortcuts (out = in: copy; out = 2·in: index // 2) and
the linear kernels' copy when out = in: the forward step agrees with F.interpolate index for index (one known
exception, in ``_source_indices``). Keras' nearest is a repeat and its bilinear is PyTorch's ``align_corners=False``
with the output size.

No parameters, no MACs. FLOPs: nearest modes 0 (copies); d-linear modes (linear, bilinear, trilinear: d = 1, 2, 3)
``2^d`` multiplies and ``2^d − 1`` adds per output element, the weighted sum of the 2^d neighbouring values (weights
and indices are computed once per output position, shared by every channel, and not counted).

Receptive field, per spatial dim: unchanged where the dim is not resampled (out = in and the map is the identity);
otherwise each output reads 1 input position (nearest) or 2 neighbouring ones (linear, when the dim has ≥ 2), so the
field is ``rf_in`` or ``rf_in + jump_in``, the jump ``jump_in·ratio`` (ratio = input positions per output step:
1/scale_factor, in/out, or (in − 1)/(out − 1) with align_corners), and the grid is uneven: later layers report none.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from ..explain import Explanation, axis_names, prod_text, spatial_parts
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    elementwise_backward,
    fmt_shape,
    join_channels,
    numel,
    require_spatial,
    split_channels,
)
from .base import (
    Bool,
    DataFormat,
    GradFlow,
    LayerBase,
    PositiveFloat,
    PositiveInt,
    Saved,
    _alias,
    _per_dim,
    _whole_number,
    data_format_field,
    register_layer,
)

__all__ = ['Upsample', 'UpSampling1d', 'UpSampling2d', 'UpSampling3d']

Mode = Literal["nearest", "nearest-exact", "linear", "bilinear", "trilinear"]
#: the spatial rank each d-linear mode works on (PyTorch refuses the others)
LINEAR_RANK = {"linear": 1, "bilinear": 2, "trilinear": 3}


def interpolation_flops(mode: str, rank: int) -> int:
    """FLOPs per output element: 0 for nearest; 2^d multiplies + (2^d − 1) adds for a d-linear mode.

    >>> interpolation_flops("bilinear", 2), interpolation_flops("nearest", 2)
    (7, 0)
    """
    return 0 if mode.startswith("nearest") else 2 ** (rank + 1) - 1


def _ratio(length: int, out: int, scale: Optional[float], align_corners: bool) -> Fraction:
    """Input positions per output step, as the kernel uses them (exact value of PyTorch's scale)."""
    if align_corners:
        return Fraction(length - 1, out - 1) if out > 1 else Fraction(0)
    if scale is not None:
        return 1 / Fraction(scale)
    return Fraction(length, out)


def _nearest_shortcuts(nearest_exact: bool, rank: int) -> bool:
    """Whether PyTorch's kernel takes ``nearest_idx``'s shortcuts (out = in: copy; out = 2·in: index // 2)."""
    return not nearest_exact and rank == 2


def _identity(length: int, out: int, scale: Optional[float], mode: str, rank: int) -> bool:
    """The dim is not resampled: PyTorch's linear kernels copy when out == in; the nearest ones compute
    floor(i·ratio) (or floor((i + 0.5)·ratio)), which is i when out == in and the ratio is 1 (no scale_factor, or
    1.0) — with scale_factor 1.05 on 10 positions the output is 10 long but reads 0, 0, 1, …, 8."""
    if out != length:
        return False
    return (mode in LINEAR_RANK or _nearest_shortcuts(mode == "nearest-exact", rank) or scale is None
            or scale == 1.0)


def resample_facts(x: Tensor, ctx: Context, out: tuple[int, ...], scales: tuple[Optional[float], ...], mode: str,
                   align_corners: bool, who: str) -> Facts:
    """Shape, FLOPs and receptive field of a resampling to spatial sizes ``out`` (``scales``: the scale factor the
    kernel uses per dim, or None for in/out)."""
    n_, c, spatial = split_channels(x.shape, ctx.channels_last)
    output_shape = join_channels(n_, c, out, ctx.channels_last)
    flops = numel(output_shape) * interpolation_flops(mode, len(spatial))
    rf = None
    if x.rf is not None and x.rf.aligned_grid and len(x.rf.size) == len(spatial):
        size, jump, start, uneven = [], [], [], []
        for r, j, st, length, o, s, axis in zip(x.rf.size, x.rf.jump, x.rf.start2, spatial, out, scales,
                                               axis_names(len(spatial))):
            if _identity(length, o, s, mode, len(spatial)):
                size.append(r)
                jump.append(j)
                start.append(st)
                continue
            ratio = _ratio(length, o, s, align_corners)
            taps = 2 if not mode.startswith("nearest") and length >= 2 else 1
            if mode == "nearest-exact":
                first = min(math.floor(ratio / 2), length - 1)
            elif mode == "nearest" or align_corners:
                first = 0
            else:
                first = min(max(math.floor(ratio / 2 - Fraction(1, 2)), 0), length - 1)
            size.append(r + (taps - 1) * j)
            step = j * ratio
            jump.append(int(step) if step.denominator == 1 else step)
            start.append(st + (2 * first + taps - 1) * j)
            uneven.append(f"{axis} {length} → {o}")
        reason = (f"resampling by {who} ({', '.join(uneven)}: output positions are not evenly spaced over the "
                  f"input)") if uneven else ""
        rf = ReceptiveField(tuple(size), tuple(jump), tuple(start), reason)
    axes = list(range(1, len(x.shape) - 1)) if ctx.channels_last else list(range(2, len(x.shape)))
    return Facts(output_shape=output_shape, flops=flops, rf=rf,
                 geometry={"axes": axes, "out": out, "scales": scales, "mode": mode, "align_corners": align_corners})


# ------------------------------------------------------------------------------------------ the forward step

def _source_indices(np: Any, length: int, out: int, scale: Optional[float], nearest_exact: bool,
                    rank: int, dtype: Any) -> Any:
    """PyTorch's nearest / nearest-exact source index of every output position, as ATen's
    ``nearest_neighbor_compute_source_index`` (``floor(i·ratio)``) and its exact variant (``floor((i + 0.5)·ratio)``),
    in the input's precision (float32 for float32 inputs: 100 → 99 reads input 49 at output 49, and input 50 in
    float64), the position then rounded to float32 (``floorf``). Measured against PyTorch 2.13 on every size pair
    up to 59 → 119: identical, except float32 nearest-exact at 10 pairs where (i + 0.5)·in/out is a whole number
    that float32 rounds just below (2 → 41 at output 20: PyTorch reads input 1, this reads input 0).
    Only the 2-d ``nearest`` kernel (``nearest_idx``) copies when out = in and halves the index when out = 2·in,
    whatever the scale_factor; the 1-d and 3-d kernels compute the formula (measured with PyTorch 2.13: scale_factor
    1.05 on 10 positions gives 10 outputs, reading 0, 1, 2, … in 2-d but 0, 0, 1, … in 1-d)."""
    if _nearest_shortcuts(nearest_exact, rank):
        if out == length:
            return np.arange(out)
        if out == 2 * length:
            return np.arange(out) >> 1
    real_type = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    ratio = (real_type(1.0 / scale) if scale is not None and scale > 0
             else real_type(length) / real_type(out))
    real = np.arange(out, dtype=real_type)
    if nearest_exact:
        real += real_type(0.5)
    real *= ratio
    if real_type is np.float64:
        real = real.astype(np.float32)          # floorf: the double position is rounded to float first
    return np.minimum(np.floor(real).astype(np.int64), length - 1)


def _linear_weights(np: Any, length: int, out: int, scale: Optional[float], align_corners: bool, dtype: Any):
    """PyTorch's (index0, index1, lambda0, lambda1) per output position (``compute_source_index_and_lambda``)."""
    dt = np.dtype(dtype).type
    if align_corners:
        ratio = dt(length - 1) / dt(out - 1) if out > 1 else dt(0)
        real = ratio * np.arange(out, dtype=dtype)
    else:
        ratio = dt(1.0 / scale) if scale is not None and scale > 0 else dt(length) / dt(out)
        real = ratio * (np.arange(out, dtype=dtype) + dt(0.5)) - dt(0.5)
        real = np.maximum(real, dt(0))
    index0 = np.minimum(np.floor(real.astype(np.float32)).astype(np.int64), length - 1)
    lambda1 = np.clip(real - index0.astype(dtype), dt(0), dt(1)).astype(dtype)
    index1 = index0 + (index0 < length - 1)
    return index0, index1, (dt(1) - lambda1).astype(dtype), lambda1


def resample(x: Any, axes: list[int], out: tuple[int, ...], scales: tuple[Optional[float], ...], mode: str,
             align_corners: bool) -> Any:
    """Resample ``x`` along ``axes`` to sizes ``out``, one dim at a time (the d-linear weights are separable)."""
    import numpy as np

    for axis, o, s in zip(axes, out, scales):
        length = x.shape[axis]
        if _identity(length, o, s, mode, len(axes)):
            continue                                        # PyTorch copies, or reads index i for output i
        if mode.startswith("nearest"):
            x = np.take(x, _source_indices(np, length, o, s, mode == "nearest-exact", len(axes), x.dtype), axis=axis)
            continue
        i0, i1, w0, w1 = _linear_weights(np, length, o, s, align_corners, x.dtype)
        shape = [1] * x.ndim
        shape[axis] = o
        y = np.take(x, i0, axis=axis)
        y *= w0.reshape(shape)
        upper = np.take(x, i1, axis=axis)
        upper *= w1.reshape(shape)
        y += upper
        del upper
        x = y
    return x


def resample_scratch(in_shape: tuple[int, ...], out_shape: tuple[int, ...], itemsize: int, linear: bool) -> int:
    """An upper bound of the temporaries of :func:`resample`: the intermediate results (each at most the input
    with every resampled dim at max(in, out)), two gathers of that size for linear modes, and index arrays."""
    widest = numel(max(a, b) for a, b in zip(in_shape, out_shape))
    return (4 if linear else 2) * widest * itemsize + 4 * 8 * sum(out_shape)


# ------------------------------------------------------------------------------------------- PyTorch's upsample

@register_layer
class Upsample(LayerBase):
    """Resizes the spatial dims like torch.nn.Upsample / F.interpolate: give ``size`` or ``scale_factor``."""
    type: Literal["upsample", "interpolate"] = "upsample"
    size: Optional[Union[PositiveInt, list[PositiveInt]]] = Field(
        None, description="output spatial size, one per spatial dim or one for all (give size or scale_factor)")
    scale_factor: Optional[Union[PositiveFloat, list[PositiveFloat]]] = Field(
        None, description="multiplier of each spatial size: output floor(size·scale_factor), one per spatial dim or "
                          "one for all (give size or scale_factor)")
    mode: Mode = Field("nearest", validation_alias=_alias("mode", "interpolation"),
                       description="nearest, nearest-exact, linear (3-d input), bilinear (4-d), trilinear (5-d)")
    align_corners: Optional[Bool] = Field(
        None, description="linear modes only: corner pixels' centres line up (true) or pixel areas do (false, the "
                          "default)")
    recompute_scale_factor: Optional[Bool] = Field(
        None, description="with scale_factor: sample with the ratio input/output size instead of 1/scale_factor")
    size_from: Optional[Annotated[int, Field(ge=0, le=1), BeforeValidator(_whole_number)]] = Field(
        None, description="instead of size or scale_factor: the output takes the spatial size of one of two inputs, "
                          "by position in inputs (1: the second; the other input is resized), as "
                          "F.interpolate(x, size=other.shape[-2:])")

    #: one input, or two with size_from (checked in infer: the count depends on the field)
    max_inputs: ClassVar[Optional[int]] = 2

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                   # the backward kernel needs the sizes only (measured)

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "resampling: the gradient summed back to the source positions")

    @model_validator(mode="after")
    def _check(self):
        given = [name for name in ("size", "scale_factor", "size_from") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of size, scale_factor and size_from" + (
                f" (got {' and '.join(f'{name} {getattr(self, name)}' for name in given)})" if given else ""))
        for name in ("size", "scale_factor"):
            value = getattr(self, name)
            if isinstance(value, list) and not 1 <= len(value) <= 3:
                raise ValueError(f"{name} needs 1 to 3 values (one per spatial dim), got {value}")
        if self.align_corners is not None and self.mode not in LINEAR_RANK:
            raise ValueError(f"align_corners can only be set with the linear modes (linear, bilinear, trilinear), "
                             f"not mode {self.mode!r}")
        if self.recompute_scale_factor is not None and self.scale_factor is None:
            raise ValueError(f"recompute_scale_factor is only meaningful with scale_factor, not with "
                             f"{'size' if self.size is not None else 'size_from'}")
        return self

    def _resized_input(self) -> int:
        """Which input is resized: the only one, or (size_from) the one that does not give the size."""
        return 0 if self.size_from is None else 1 - self.size_from

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        want = 1 if self.size_from is None else 2
        if len(inputs) != want:
            raise ctx.fail(f"size_from {self.size_from} needs two inputs (inputs: [x, reference] with size_from 1), "
                           f"got {len(inputs)}" if want == 2 else
                           f"takes one input, got {len(inputs)} (two only with size_from: the input whose size the "
                           f"output takes)")
        x = inputs[self._resized_input()]
        rank = len(x.shape) - 2
        layout = "[N, L, C]" if ctx.channels_last else "[N, C, L]"
        if self.mode in LINEAR_RANK and rank != LINEAR_RANK[self.mode]:
            want = LINEAR_RANK[self.mode] + 2
            raise ctx.fail(f"mode {self.mode!r} needs a {want}-d input, got {len(x.shape)}-d {fmt_shape(x.shape)}"
                           f" (linear: 3-d, bilinear: 4-d, trilinear: 5-d)")
        if not 1 <= rank <= 3:
            raise ctx.fail(f"upsample needs a 3-d, 4-d or 5-d input (e.g. {layout}), got {fmt_shape(x.shape)}")
        _, _, spatial = split_channels(x.shape, ctx.channels_last)
        try:
            if self.size_from is not None:
                reference = inputs[self.size_from]
                if len(reference.shape) != len(x.shape):
                    raise ValueError(f"size_from {self.size_from}: input {fmt_shape(reference.shape)} has "
                                     f"{len(reference.shape) - 2} spatial dims, the resized one {rank}")
                out = split_channels(reference.shape, ctx.channels_last)[2]
                scales: tuple[Optional[float], ...] = (None,) * rank
            elif self.size is not None:
                out = _per_dim(self.size, rank, "size")
                scales = (None,) * rank
            else:
                factors = self._factors(rank)
                out = tuple(int(math.floor(float(length) * f)) for length, f in zip(spatial, factors))
                scales = (None,) * rank if self.recompute_scale_factor else factors
        except ValueError as e:
            raise ctx.fail(f"{e} (input {fmt_shape(x.shape)})") from None
        if min(out) < 1:
            raise ctx.fail(f"output size {list(out)} has a size < 1: floor(input·scale_factor) with spatial sizes "
                           f"{list(spatial)} and scale_factor {self.scale_factor}")
        return resample_facts(x, ctx, tuple(out), scales, self.mode, bool(self.align_corners), "upsample")

    def _factors(self, rank: int) -> tuple[float, ...]:
        value = self.scale_factor
        assert value is not None
        values = list(value) if isinstance(value, list) else [value]
        if len(values) == 1:
            values = values * rank
        if len(values) != rank:
            raise ValueError(f"scale_factor needs 1 or {rank} values (one per spatial dimension), got {value}")
        return tuple(float(v) for v in values)

    def forward(self, step, xs, params, env):
        g = step.facts.geometry
        return resample(xs[self._resized_input()], g["axes"], g["out"], g["scales"], g["mode"],
                        g["align_corners"])

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return resample_scratch(step.input_shapes[self._resized_input()],
                                step.facts.output_shape, itemsize, self.mode in LINEAR_RANK), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        _explain_resample(c, self, input_shapes[self._resized_input()], facts, channels_last)


def _explain_resample(c: Explanation, layer: Any, x: tuple[int, ...], facts: Facts, channels_last: bool) -> None:
    _, _, spatial = spatial_parts(x, channels_last)
    g = facts.geometry
    factors = layer._factors(len(spatial)) if getattr(layer, "scale_factor", None) is not None else None
    for axis, length, o, k in zip(axis_names(len(spatial)), spatial, g["out"], range(len(spatial))):
        if factors is not None:
            c.add(f"{axis}_out = floor({axis}·scale_factor) = floor({length}·{factors[k]:g}) = {o}")
        elif type(layer) is Upsample and layer.size_from is not None:
            c.add(f"{axis}_out = {axis} of input {layer.size_from} (size_from) = {o}")
        elif getattr(layer, "size", None) is not None and type(layer) is Upsample:
            c.add(f"{axis}_out = size = {o}")
        else:
            c.add(f"{axis}_out = {axis}·size = {length}·{o // length} = {o}")
    c.zero("params", "no weights", facts.params)
    c.zero("MACs", "interpolation weights are not learned parameters", facts.macs)
    mode = g["mode"]
    per = interpolation_flops(mode, len(spatial))
    out = list(facts.output_shape)
    if per:
        d = len(spatial)
        c.result("FLOPs", f"{mode}: per output element 2^{d} multiplies + (2^{d} − 1) adds = {per}; "
                 f"{per}·{prod_text(out)}", per * math.prod(out), facts.flops)
    else:
        c.zero("FLOPs", f"{mode}: each output copies one input value", facts.flops)
    if facts.rf is not None and facts.rf.uneven:
        c.add(f"receptive field: {facts.rf.uneven}; later layers report none")


# ------------------------------------------------------------------------------------------- Keras' UpSampling

class _KerasUpSampling(LayerBase):
    """Keras' UpSampling1D/2D/3D: every spatial size times an integer factor."""
    size: Union[PositiveInt, list[PositiveInt]] = Field(
        2, description="integer factor per spatial dim (Keras' size: factors, not an output size)")
    data_format: DataFormat = data_format_field()

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                   # the backward kernel needs the sizes only (measured)

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "resampling: the gradient summed back to the source positions")

    @property
    def rank(self) -> int:
        assert self.spatial_dims is not None
        return self.spatial_dims

    @model_validator(mode="after")
    def _normalize(self):
        object.__setattr__(self, "size", _per_dim(self.size, self.rank, "size"))
        return self

    @property
    def interpolation_mode(self) -> str:
        return "nearest"

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        _, _, spatial = require_spatial(x, self.rank, ctx)
        out = tuple(length * f for length, f in zip(spatial, self.size))  # type: ignore[arg-type]
        mode = "bilinear" if self.interpolation_mode == "bilinear" else "nearest"
        return resample_facts(x, ctx, out, (None,) * self.rank, mode, False, self.type_name)

    def forward(self, step, xs, params, env):
        import numpy as np
        g = step.facts.geometry
        if g["mode"] != "nearest":
            return resample(xs[0], g["axes"], g["out"], g["scales"], g["mode"], False)
        x = xs[0]
        for axis, f in zip(g["axes"], self.size):       # type: ignore[arg-type]
            if f > 1:
                x = np.repeat(x, f, axis=axis)              # Keras: ops.repeat
        return x

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return resample_scratch(step.input_shapes[0], step.facts.output_shape, itemsize,
                                self.interpolation_mode != "nearest"), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        _explain_resample(c, self, input_shapes[0], facts, channels_last)


@register_layer
class UpSampling1d(_KerasUpSampling):
    """Keras' UpSampling1D: repeats each step ``size`` times."""
    spatial_dims: ClassVar[int] = 1
    type: Literal["upsampling1d"] = "upsampling1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"UpSampling1D": {}}
    keeps_finite = True


@register_layer
class UpSampling2d(_KerasUpSampling):
    """Keras' UpSampling2D: each spatial size times ``size``, nearest (repeat) or bilinear."""
    spatial_dims: ClassVar[int] = 2
    type: Literal["upsampling2d"] = "upsampling2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"UpSampling2D": {}}
    size: Union[PositiveInt, list[PositiveInt]] = Field(
        2, description="integer factor per spatial dim (Keras' size: factors, not an output size)")
    interpolation: Literal["nearest", "bilinear"] = Field(
        "nearest", description="nearest (repeat) or bilinear (half-pixel centres, as align_corners=False)")

    @property
    def interpolation_mode(self) -> str:
        return self.interpolation


@register_layer
class UpSampling3d(_KerasUpSampling):
    """Keras' UpSampling3D: repeats along each spatial dim."""
    spatial_dims: ClassVar[int] = 3
    type: Literal["upsampling3d"] = "upsampling3d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"UpSampling3D": {}}
    keeps_finite = True
