"""Pooling layers: ``maxpool1d/2d/3d`` and ``avgpool1d/2d/3d`` (sliding windows), ``adaptive_avgpool`` and
``adaptive_maxpool`` (PyTorch's window rule), ``global_avgpool`` and ``global_maxpool``.

No parameters, no MACs. FLOPs: one compare (max) or add (avg; the divide replaces the first add) per window
element, the full window counted. Output length per axis: floor((L + pad − dilation·(k − 1) − 1) / stride) + 1,
``ceil_mode`` rounding up but dropping a last window that would start in the right padding (PyTorch); padding at
most half the kernel (PyTorch's rule), or 'same' (TensorFlow/Keras). Adaptive window i spans
[floor(i·L/out), ceil((i + 1)·L/out)).
"""


import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Union, cast

from pydantic import Field, field_validator, model_validator

from ..explain import Explanation, axis_names, explain_length, explain_window_field, prod_text, spatial_parts
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    border_notes,
    elementwise_backward,
    exact_ratio,
    fmt_dims,
    fmt_pads,
    fmt_pads_per_axis,
    fmt_shape,
    global_field,
    join_channels,
    layout_name,
    numel,
    require_spatial,
    resolve_pads,
    split_channels,
    window_rf,
)
from ..rules import axis_names as axis_letters
from ..shapes import (
    adaptive_window_max,
    adaptive_window_min,
    adaptive_window_sizes,
    adaptive_window_total,
    adaptive_windows,
    ceil_div,
    effective_kernel,
    pool_output_length,
)
from .base import (
    Bool,
    DataFormat,
    GradFlow,
    LayerBase,
    LayerMixin,
    OptionalPerDim,
    PaddingField,
    PerDim,
    PositiveInt,
    Saved,
    _alias,
    _lower_string,
    _padding_pairs,
    _per_dim,
    data_format_field,
    per_dim_default,
    register_layer,
    shown,
)

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['MaxPool1d', 'MaxPool2d', 'MaxPool3d', 'AvgPool1d', 'AvgPool2d', 'AvgPool3d', 'AdaptiveAvgPool1d',
           'AdaptiveAvgPool2d', 'AdaptiveAvgPool3d', 'AdaptiveMaxPool1d', 'AdaptiveMaxPool2d', 'AdaptiveMaxPool3d',
           'GlobalAvgPool', 'GlobalMaxPool']


# ---------------------------------------------------------------------------------------------- max and avg

class _PoolBase(LayerBase):
    #: the operation per window element, for explanations
    operation: ClassVar[str] = "compare"
    spatial_dims: ClassVar[int]                  # each registered pooling sets its rank

    kernel_size: PerDim = Field(validation_alias=_alias("kernel_size", "pool_size"))
    stride: OptionalPerDim = Field(per_dim_default(None), validation_alias=_alias("stride", "strides"),
                                   description="a positive int or one per spatial dim; default: the kernel size")
    padding: PaddingField = Field(per_dim_default(0),
                                  description="int (at most half the kernel), per-dim list, 'same' or 'valid'")
    ceil_mode: Bool = False
    data_format: DataFormat = data_format_field()

    _lower_padding = field_validator("padding", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "pooling: the output gradient routed back to its windows")

    @model_validator(mode="after")
    def _normalize(self):
        rank = self.spatial_dims
        object.__setattr__(self, "kernel_size", _per_dim(self.kernel_size, rank, "kernel_size"))
        stride = self.kernel_size if self.stride is None else _per_dim(self.stride, rank, "stride")
        object.__setattr__(self, "stride", stride)
        if hasattr(self, "dilation"):
            object.__setattr__(self, "dilation", _per_dim(self.dilation, rank, "dilation"))
        object.__setattr__(self, "padding", _padding_pairs(self.padding, rank))
        return self

    @property
    def dilations(self) -> tuple[int, ...]:
        return getattr(self, "dilation", (1,) * self.spatial_dims)

    def check_input(self, x: Tensor, spatial: tuple[int, ...], ctx: Context) -> None:
        """A family member's own limits on the input (AvgPool3d's)."""

    def pool_geometry(self) -> dict[str, Any]:
        """Resolved settings the forward step and the explanation share, beyond the padding."""
        return {}

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = self.spatial_dims
        n, c, spatial = require_spatial(x, rank, ctx)
        k, s, d = self.kernel_size, self.stride, self.dilations
        pads = resolve_pads(self.padding, spatial, k, s, d)
        if self.padding != "same":
            for kk, (pb, pa) in zip(k, pads):
                if max(pb, pa) > kk // 2:
                    raise ctx.fail(f"padding {fmt_pads(pads)} must be at most half the kernel {fmt_dims(k)} "
                                   f"(PyTorch's rule)")
            self.check_input(x, spatial, ctx)
        out = tuple(pool_output_length(nn, kk, ss, pb, pa, dd, self.ceil_mode)
                    for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
        if min(out) < 1:
            span = tuple(effective_kernel(kk, dd) for kk, dd in zip(k, d))
            padded = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
            raise ctx.fail(f"window {fmt_dims(k)} (dilation {fmt_dims(d)}) needs at least {fmt_dims(span)} input "
                           f"after padding, got {fmt_dims(padded)} (input {fmt_shape(x.shape)}, padding "
                           f"{fmt_pads(pads)})")
        notes = []
        if self.padding == "same":
            notes.append(f"'same' padding applied (before, after): {fmt_pads_per_axis(pads)}; padded positions are "
                         f"ignored")
            notes.append("'same' pooling follows TensorFlow/Keras; PyTorch's pooling layers have no 'same' padding")
        if self.ceil_mode:
            floored = tuple(pool_output_length(nn, kk, ss, pb, pa, dd)
                            for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
            extra = [f"{a}: +{o - f}" for a, o, f in zip(axis_letters(rank), out, floored) if o != f]
            if extra:
                notes.append("ceil_mode adds a last window that hangs over the end of the input ("
                             + ", ".join(extra) + ")")
        notes += border_notes(spatial, k, s, d, pads, axis_letters(rank), self.ceil_mode)
        # One compare (max) or add (avg; the divide replaces the first add) per window element, full window counted.
        return Facts(output_shape=join_channels(n, c, out, ctx.channels_last),
                     flops=n * c * numel(out) * math.prod(k),
                     rf=window_rf(x.rf, k, s, d, pads), notes=notes, geometry={"pads": pads, **self.pool_geometry()})

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return 2 * numel(step.input_shapes[0]) * itemsize, 0   # the padded copy (ceil_mode overhang included)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        batch, channels, spatial = spatial_parts(input_shapes[0], channels_last)
        _, _, out = spatial_parts(facts.output_shape, channels_last)
        axes = axis_names(len(spatial))
        k, s, d = self.kernel_size, self.stride, self.dilations
        pads = facts.geometry["pads"]
        rounding = "ceil" if self.ceil_mode else "floor"
        c.add(f"per axis: out = {rounding}((in + pad_before + pad_after − dilation·(kernel − 1) − 1) / stride) + 1 "
              f"(stride defaults to the kernel size)")
        for axis, length, kk, ss, dd, (pb, pa) in zip(axes, spatial, k, s, d, pads):
            c.lines += explain_length(length, kk, ss, pb, pa, dd, self.ceil_mode, axis, same=self.padding == "same")
        self.explain_divisor(c, facts)
        c.add("params = 0, MACs = 0 (no weights)")
        flops = batch * channels * math.prod(out) * math.prod(k)
        c.result("FLOPs", f"N·C·{'·'.join(a + '_out' for a in axes)}·{'·'.join('k' + a for a in axes)} (one "
                 f"{self.operation} per window element) = {prod_text([batch, channels, *out, *k])}", flops,
                 facts.flops)

    def explain_divisor(self, c: Explanation, facts: Facts) -> None:
        """The average's divisor (average pooling only)."""

    def explain_field(self, c: Explanation, facts: Facts, input_rf) -> None:
        explain_window_field(c, self.kernel_size, self.stride, self.dilations, facts, input_rf)


def pool_saved(step, grads: GradFlow, indices: bool) -> list[Saved]:
    """What torch's pooling keeps when its input needs a gradient (measured): the input, and for a max the int64
    index of each output's maximum (max_pool*_with_indices, adaptive_max_pool*: 8 bytes per output element)."""
    if not grads.inputs[0]:
        return []
    saved = [Saved("input", "its input x (its shape and values, for the backward kernel)")]
    if indices:
        saved.append(Saved("extra", "the int64 index of each output's maximum", numel=numel(step.facts.output_shape),
                           itemsize=8))
    return saved


class _MaxPoolBase(_PoolBase):
    dilation: PerDim = Field(per_dim_default(1), validation_alias=_alias("dilation", "dilation_rate"))

    keeps_finite = True

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return pool_saved(step, grads, indices=True)

    def forward(self, step, xs, params, env):
        from ..kernels import max_pool
        x = env.to_channels_last(xs[0])
        return env.from_channels_last(max_pool(x, kernel=self.kernel_size, stride=self.stride, dilation=self.dilation,
                                               pads=step.facts.geometry["pads"], ceil_mode=self.ceil_mode))


@register_layer
class MaxPool1d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["maxpool1d"] = "maxpool1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"MaxPooling1D": {}}


@register_layer
class MaxPool2d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["maxpool2d"] = "maxpool2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"MaxPooling2D": {}}


@register_layer
class MaxPool3d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["maxpool3d"] = "maxpool3d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"MaxPooling3D": {}}


class _AvgPoolBase(_PoolBase):
    operation: ClassVar[str] = "add (the divide replaces the first add)"

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return pool_saved(step, grads, indices=False)

    count_include_pad: Optional[Bool] = Field(
        None, description="count padded zeros in the divisor; default True for numeric padding (PyTorch), "
                          "False for 'same' (Keras)")
    divisor_override: Optional[PositiveInt] = None

    def pool_geometry(self) -> dict[str, Any]:
        include = self.count_include_pad if self.count_include_pad is not None else self.padding != "same"
        return {"count_include_pad": include}

    def forward(self, step, xs, params, env):
        from ..kernels import avg_pool
        geometry = step.facts.geometry
        x = env.to_channels_last(xs[0])
        return env.from_channels_last(avg_pool(x, kernel=self.kernel_size, stride=self.stride, pads=geometry["pads"],
                                               ceil_mode=self.ceil_mode,
                                               count_include_pad=geometry["count_include_pad"],
                                               divisor_override=self.divisor_override))

    def explain_divisor(self, c: Explanation, facts: Facts) -> None:
        include = facts.geometry.get("count_include_pad")
        if any(b or a for b, a in facts.geometry["pads"]):
            c.add("divisor: " + ("the full window, padded zeros included (count_include_pad)" if include
                                 else "only the real input values in each window (padding excluded)")
                  + (f"; overridden to {self.divisor_override}" if self.divisor_override else ""))


@register_layer
class AvgPool1d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["avgpool1d"] = "avgpool1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"AveragePooling1D": {}}


@register_layer
class AvgPool2d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["avgpool2d"] = "avgpool2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"AveragePooling2D": {}}


@register_layer
class AvgPool3d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["avgpool3d"] = "avgpool3d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"AveragePooling3D": {}}

    def check_input(self, x: Tensor, spatial: tuple[int, ...], ctx: Context) -> None:
        if any(nn < kk for nn, kk in zip(spatial, self.kernel_size)):
            # torch's avg_pool3d (unlike 1d/2d) checks the unpadded input against the kernel
            raise ctx.fail(f"input {fmt_shape(x.shape)} is smaller than the kernel {fmt_dims(self.kernel_size)} in "
                           f"some dim; PyTorch's AvgPool3d refuses that even with padding")


# ---------------------------------------------------------------------------------------------------- adaptive

OutputSize = Union[PositiveInt, list[Optional[PositiveInt]]]
if TYPE_CHECKING:                  # stored: one size per spatial dim, None keeping the input's (see base.PerDim)
    OutputSizeField = tuple[Optional[int], ...]
else:
    OutputSizeField = OutputSize


class _AdaptivePoolBase(LayerBase):
    #: "max" or "avg": the reduction over each window
    reduction: ClassVar[str] = "avg"
    spatial_dims: ClassVar[int]                  # each registered adaptive pooling sets its rank

    output_size: OutputSizeField = Field(description="int, or one size per spatial dim (null keeps the input size)")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        x, out = step.input_shapes[0], step.facts.output_shape
        spatial = out[1:-1] if grads.channels_last else out[2:]
        if self.reduction == "avg" and all(size == 1 for size in spatial) and len(x) == len(out):
            return []          # torch computes an average to 1×1 as x.mean(spatial dims): a mean keeps nothing
        return pool_saved(step, grads, indices=self.reduction == "max")

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "pooling: the output gradient routed back to its windows")

    @model_validator(mode="after")
    def _normalize(self):
        value: Any = self.output_size                     # as written: an int or a list
        sizes = (value,) * self.spatial_dims if isinstance(value, int) else tuple(value)
        if len(sizes) == 1:
            sizes = sizes * self.spatial_dims
        if len(sizes) != self.spatial_dims:
            raise ValueError(f"output_size needs 1 or {self.spatial_dims} values, got {shown(list(sizes))}")
        object.__setattr__(self, "output_size", sizes)
        return self

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        n, c, spatial = require_spatial(x, self.spatial_dims, ctx)
        out = tuple(nn if o is None else o for nn, o in zip(spatial, self.output_size))
        window_elements = math.prod(adaptive_window_total(nn, o) for nn, o in zip(spatial, out))
        rf = None
        if x.rf is not None and x.rf.aligned_grid:
            size, jump, start = [], [], []
            jumps = cast("tuple[int, ...]", x.rf.jump)   # ints on an aligned grid
            for r, j, st, nn, o in zip(x.rf.size, jumps, x.rf.start2, spatial, out):
                first_window = ceil_div(nn, o)          # window 0 spans [0, ceil(n/o))
                size.append(r + (adaptive_window_max(nn, o) - 1) * j)
                jump.append(exact_ratio(j * nn, o))
                start.append(st + (first_window - 1) * j)
            # windows [floor(i·n/o), ceil((i+1)·n/o)) start evenly only when o divides n (then it is a plain pooling)
            uneven_dims = [f"{nn} → {o}" for nn, o in zip(spatial, out) if nn % o]
            uneven = (f"adaptive pooling with uneven windows ({', '.join(uneven_dims)}: the output size does not "
                      f"divide the input size)") if uneven_dims else ""
            rf = ReceptiveField(tuple(size), tuple(jump), tuple(start), uneven)
        if all(o == 1 for o in out):                # one window over the whole map: a global pool
            rf = global_field(x.rf, spatial, ctx)
        return Facts(output_shape=join_channels(n, c, out, ctx.channels_last),
                     flops=n * c * window_elements, rf=rf)

    def forward(self, step, xs, params, env):
        from .. import kernels
        pool = kernels.adaptive_max_pool if self.reduction == "max" else kernels.adaptive_avg_pool
        return env.from_channels_last(pool(env.to_channels_last(xs[0]), self.output_size))

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        from ..kernels import adaptive_pool_scratch
        shape = step.input_shapes[0]
        last = list(shape) if channels_last else [shape[0], *shape[2:], shape[1]]   # as the kernel sees it
        return adaptive_pool_scratch(last, list(self.output_size), itemsize, self.reduction), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        batch, channels, spatial = spatial_parts(input_shapes[0], channels_last)
        _, _, out = spatial_parts(facts.output_shape, channels_last)
        axes = axis_names(len(spatial))
        c.add("window i spans [floor(i·in/out), ceil((i + 1)·in/out)) along each axis (PyTorch's rule); windows may "
              "overlap and differ in size when out does not divide in")
        sums = []
        for axis, length, o in zip(axes, spatial, out):
            total = adaptive_window_total(length, o)           # closed forms: no loop over the outputs
            sums.append(total)
            if length % o == 0:
                detail = (f"{length} / {o} = {length // o}: equal windows, like a pool with kernel = stride = "
                          f"{length // o}")
            elif o <= 8:
                detail = ("windows " + " ".join(f"[{a},{b})" for a, b in adaptive_windows(length, o))
                          + f", sizes {', '.join(map(str, adaptive_window_sizes(length, o)))}")
            else:
                detail = (f"window sizes between {adaptive_window_min(length, o)} and "
                          f"{adaptive_window_max(length, o)}, {total} elements in all")
            c.add(f"{axis}: {length} → {o}: {detail}")
        c.add("params = 0, MACs = 0 (no weights)")
        c.result("FLOPs", f"N·C·(window elements along each axis multiplied) = "
                 f"{prod_text([batch, channels, *sums])}", batch * channels * math.prod(sums), facts.flops)


class _AdaptiveMaxPoolBase(LayerMixin):
    reduction: ClassVar[str] = "max"
    keeps_finite = True


@register_layer
class AdaptiveAvgPool1d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["adaptive_avgpool1d"] = "adaptive_avgpool1d"


@register_layer
class AdaptiveAvgPool2d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"


@register_layer
class AdaptiveAvgPool3d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["adaptive_avgpool3d"] = "adaptive_avgpool3d"


@register_layer
class AdaptiveMaxPool1d(_AdaptiveMaxPoolBase, _AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["adaptive_maxpool1d"] = "adaptive_maxpool1d"


@register_layer
class AdaptiveMaxPool2d(_AdaptiveMaxPoolBase, _AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["adaptive_maxpool2d"] = "adaptive_maxpool2d"


@register_layer
class AdaptiveMaxPool3d(_AdaptiveMaxPoolBase, _AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["adaptive_maxpool3d"] = "adaptive_maxpool3d"


# ------------------------------------------------------------------------------------------------------ global

class _GlobalPoolBase(LayerMixin):
    #: "mean" or "maximum", for explanations; the NumPy reduction's name
    what: ClassVar[str] = "mean"
    reduce: ClassVar[str] = "mean"
    if TYPE_CHECKING:
        # a field of each subclass, declared there (after `type`: the order of the schema and the calculator)
        keepdims: bool

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "pooling: the output gradient spread back over the positions")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"needs an input with spatial dims {layout_name(2, ctx.channels_last)}, got "
                           f"{fmt_shape(x.shape)}")
        n, c, spatial = split_channels(x.shape, ctx.channels_last)
        out = join_channels(n, c, (1,) * len(spatial), ctx.channels_last) if self.keepdims else (n, c)
        # one window over every position: the whole input when the positions' fields cover it
        return Facts(output_shape=out, flops=numel(x.shape), rf=global_field(x.rf, spatial, ctx))

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        axes = tuple(range(1, x.ndim - 1)) if env.channels_last else tuple(range(2, x.ndim))
        return getattr(np, self.reduce)(x, axis=axes, keepdims=self.keepdims)

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        if not grads.inputs[0] or self.reduce == "mean":
            return []                                     # x.mean(dims) keeps nothing
        # x.amax(dims): its backward spreads the gradient over the elements equal to the maximum: x and the result
        return [Saved("input", "its input x, to find the maxima again"),
                Saved("output", "its result, the maxima")]

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        c.result("FLOPs", f"{self.what} over every spatial position: {list(x)} → {list(facts.output_shape)}; one op "
                 f"per input element = {prod_text(x)}", math.prod(x), facts.flops)


@register_layer
class GlobalAvgPool(_GlobalPoolBase, LayerBase):
    """Average over every spatial dimension (Keras ``GlobalAveragePooling*D``)."""
    type: Literal["global_avgpool"] = "global_avgpool"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {
        "GlobalAveragePooling1D": {}, "GlobalAveragePooling2D": {}, "GlobalAveragePooling3D": {}}
    keepdims: Bool = Field(False, description="keep the spatial dims as size 1 (like AdaptiveAvgPool(1))")
    data_format: DataFormat = data_format_field()


@register_layer
class GlobalMaxPool(_GlobalPoolBase, LayerBase):
    """Maximum over every spatial dimension (Keras ``GlobalMaxPooling*D``)."""
    what: ClassVar[str] = "maximum"
    reduce: ClassVar[str] = "max"
    keeps_finite = True
    type: Literal["global_maxpool"] = "global_maxpool"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {
        "GlobalMaxPooling1D": {}, "GlobalMaxPooling2D": {}, "GlobalMaxPooling3D": {}}
    keepdims: Bool = False
    data_format: DataFormat = data_format_field()
