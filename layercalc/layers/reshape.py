"""Layers that move values without arithmetic: ``flatten``, ``reshape``, ``zero_pad`` and ``pad``.

No parameters, no MACs, no FLOPs. ``flatten`` multiplies dims ``start_dim..end_dim`` into one (in the network's
layout: NHWC flattens channels last, as Keras does); ``reshape`` rearranges each example (``shape`` excludes the
batch, one entry may be -1); ``zero_pad`` adds zeros around the spatial dims, ``pad`` a constant, a reflection, the
edge values or the other side's (``F.pad``'s modes).
"""


import math
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator

from ..explain import Explanation, axis_names, spatial_parts
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
    normalize_dim,
    numel,
    split_channels,
)
from .base import (
    MAX_RANK,
    DataFormat,
    Float,
    GradFlow,
    Int,
    LayerBase,
    NonNegativeInt,
    Saved,
    _alias,
    _explicit_pairs,
    data_format_field,
    register_layer,
)
from .conv import _check_padding_mode

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['Flatten', 'Reshape', 'ZeroPad', 'Pad']


@register_layer
class Flatten(LayerBase):
    type: Literal["flatten"] = "flatten"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Flatten": {}}
    start_dim: Int = 1
    end_dim: Int = -1
    # Keras' Flatten(data_format="channels_first") moves the channels last before flattening (an order this type
    # does not make): only channels_last, the order as it is, is accepted
    data_format: Optional[Literal["channels_last"]] = Field(
        None, description="Keras' data_format: channels_last only (flatten in the tensor's order; Keras' "
                          "channels_first reorders first, not supported)")

    keeps_finite = True

    output_storage: ClassVar[str] = "reshape"             # torch: a view when it can, else a copy

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "a view: the gradient reshaped back")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = len(x.shape)
        start = normalize_dim(self.start_dim, rank, "start_dim", x.shape, ctx)
        end = normalize_dim(self.end_dim, rank, "end_dim", x.shape, ctx)
        if start > end:
            raise ctx.fail(f"start_dim {self.start_dim} comes after end_dim {self.end_dim} for input "
                           f"{fmt_shape(x.shape)}")
        out = (*x.shape[:start], numel(x.shape[start:end + 1]), *x.shape[end + 1:])
        notes = []
        if ctx.channels_last and rank > 2:
            notes.append("flattened in NHWC order (as Keras does); weights are not interchangeable with NCHW order")
        return Facts(output_shape=out, notes=notes)

    def forward(self, step, xs, params, env):
        x = xs[0]
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"flatten: dims {self.start_dim}..{self.end_dim} of {list(input_shapes[0])} multiplied into one → "
              f"{list(facts.output_shape)}; no arithmetic")


@register_layer
class Reshape(LayerBase):
    """Reshape each example; ``shape`` excludes the batch dimension (like Keras), one entry may be -1."""
    type: Literal["reshape"] = "reshape"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Reshape": {}}
    shape: list[Int] = Field(validation_alias=_alias("shape", "target_shape"), min_length=1, max_length=MAX_RANK - 1)

    keeps_finite = True

    output_storage: ClassVar[str] = "reshape"             # torch: a view when it can, else a copy

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "a view: the gradient reshaped back")

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, value: list[int]) -> list[int]:
        if sum(1 for v in value if v == -1) > 1 or any(v == 0 or v < -1 for v in value):
            raise ValueError(f"shape {value} must hold positive sizes and at most one -1")
        return value

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        per_example = numel(x.shape[1:])
        known = numel(v for v in self.shape if v != -1)
        target = list(self.shape)
        if -1 in target:
            if per_example % known:
                raise ctx.fail(f"shape {self.shape} cannot hold the {per_example} values per example of input "
                               f"{fmt_shape(x.shape)} ({per_example} is not divisible by {known})")
            target[target.index(-1)] = per_example // known
        elif known != per_example:
            raise ctx.fail(f"shape {self.shape} holds {known} values per example but input {fmt_shape(x.shape)} has "
                           f"{per_example}")
        return Facts(output_shape=(x.shape[0], *target))

    def forward(self, step, xs, params, env):
        return xs[0].reshape(xs[0].shape[0], *self.shape)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        c.add(f"reshape: {math.prod(x[1:])} values per example rearranged as {self.shape} → "
              f"{list(facts.output_shape)} (-1 resolved from the count); no arithmetic")


ZERO_PAD_FORMS = "a non-negative int, one per spatial dim, or [[before, after], ...] per spatial dim"


@register_layer
class ZeroPad(LayerBase):
    """Zero padding of the spatial dims: int, one int per spatial dim, or [[before, after], ...] in dim order."""
    type: Literal["zero_pad"] = "zero_pad"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"ZeroPadding1D": {}, "ZeroPadding2D": {},
                                                          "ZeroPadding3D": {}}
    padding: Union[NonNegativeInt, list[NonNegativeInt],
                   list[Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]]] = Field(
        description=ZERO_PAD_FORMS)
    data_format: DataFormat = data_format_field()

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                   # the gradient is the output's, cropped

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "padding: the gradient cropped back")

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' ZeroPadding1D takes one (left, right) pair as two ints: ``[1, 2]`` is ``[[1, 2]]`` here."""
        padding = fields.get("padding")
        if class_name == "ZeroPadding1D" and isinstance(padding, (list, tuple)) and len(padding) == 2 and all(
                isinstance(p, int) for p in padding):
            fields = {**fields, "padding": [list(padding)]}
        return super().from_keras(class_name, fields)

    keeps_finite = True

    @field_validator("padding", mode="before")
    @classmethod
    def _no_padding_mode(cls, value: Any) -> Any:
        # 'same'/'valid' describe a conv's or pool's padding; a zero_pad layer is only ever told the amounts.
        if isinstance(value, str):
            raise ValueError(f"zero_pad takes explicit amounts, not a mode like {value!r} ('same' and 'valid' are "
                             f"for conv and pooling layers): expected {ZERO_PAD_FORMS}")
        return value

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"needs an input with spatial dims, got {fmt_shape(x.shape)}")
        n, c, spatial = split_channels(x.shape, ctx.channels_last)
        try:
            pads = _explicit_pairs(self.padding, len(spatial))     # (never a string: refused above)
        except ValueError as e:
            raise ctx.fail(f"{e} (input {fmt_shape(x.shape)})") from None
        out = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
        rf = None
        if x.rf is not None and x.rf.aligned_grid:
            rf = ReceptiveField(x.rf.size, x.rf.jump, tuple(st - 2 * pb * j for st, j, (pb, _) in
                                                             zip(x.rf.start2, x.rf.jump, pads)))
        return Facts(output_shape=join_channels(n, c, out, ctx.channels_last), rf=rf, geometry={"pads": pads})

    def forward(self, step, xs, params, env):
        from ..kernels import pad_spatial
        x = env.to_channels_last(xs[0])
        return env.from_channels_last(pad_spatial(x, step.facts.geometry["pads"]))

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        _, _, spatial = spatial_parts(input_shapes[0], channels_last)
        _, _, after = spatial_parts(list(facts.output_shape), channels_last)
        pads = facts.geometry["pads"]
        parts = [f"{a}: {length} + {b} + {e} = {o}" for a, length, (b, e), o in
                 zip(axis_names(len(spatial)), spatial, pads, after)]
        c.add("zero padding: " + "; ".join(parts) + "; no arithmetic")


@register_layer
class Pad(ZeroPad):
    """``F.pad`` of the spatial dims: ``mode`` constant (``value``, 0 by default), reflect, replicate or circular,
    with PyTorch's limits (reflect: padding smaller than the size; circular: at most the size). Data movement: no
    parameters, MACs or FLOPs."""
    type: Literal["pad"] = "pad"                                     # type: ignore[assignment]
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {}          # Keras' ZeroPadding is zero_pad's
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: Float = Field(0.0, description="the constant of mode constant")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # reflection_pad and replication_pad keep their input (measured); constant and circular (slices and a
        # concatenation) keep nothing
        if self.mode in ("reflect", "replicate") and grads.inputs[0]:
            return [Saved("input", f"its input x, for the {self.mode} pad's backward")]
        return []

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        facts = super().infer(inputs, ctx)
        if self.mode != "constant":
            if self.value != 0:
                raise ctx.fail(f"value {self.value:g} is for mode 'constant', not {self.mode!r}")
            _check_padding_mode(self.mode, split_channels(inputs[0].shape, ctx.channels_last)[2],
                                facts.geometry["pads"], inputs[0], ctx)
        return facts

    def forward(self, step, xs, params, env):
        from ..kernels import pad_spatial
        x = env.to_channels_last(xs[0])
        mode = "zeros" if self.mode == "constant" else self.mode
        return env.from_channels_last(pad_spatial(x, step.facts.geometry["pads"], mode, self.value))

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        _, _, spatial = spatial_parts(input_shapes[0], channels_last)
        _, _, after = spatial_parts(list(facts.output_shape), channels_last)
        parts = [f"{a}: {length} + {b} + {e} = {o}" for a, length, (b, e), o in
                 zip(axis_names(len(spatial)), spatial, facts.geometry["pads"], after)]
        what = f"constant {self.value:g}" if self.mode == "constant" else self.mode
        c.add(f"padding ({what}): " + "; ".join(parts) + "; no arithmetic")
