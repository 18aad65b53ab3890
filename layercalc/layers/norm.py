"""Normalization layers: ``batchnorm1d/2d/3d`` (inference: running statistics), ``batchnorm`` (Keras'
BatchNormalization: one axis of any input, γ and β chosen by ``scale`` and ``center``), ``layernorm``, ``groupnorm``,
``rmsnorm`` and ``normalization`` (Keras' preprocessing Normalization: given or adapted mean and variance).

Params: BatchNorm and GroupNorm 2·C (γ, β) when affine; LayerNorm 2·prod(normalized_shape) (γ only without bias).
BatchNorm's running mean and variance are buffers (2·C; Keras' non-trainable params). FLOPs per element:
:data:`NORMALIZE_FLOPS` (BatchNorm at inference folds into one multiply and one add); LayerNorm and GroupNorm also
compute statistics (:data:`STATISTICS_FLOPS` per element, :data:`PER_GROUP_FLOPS` per group) and apply the affine.
"""


import math
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from ..explain import Explanation, n, prod_text, spatial_parts
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    Tensor,
    check_declared,
    elementwise_backward,
    fmt_shape,
    normalize_dim,
    numel,
    split_channels,
)
from .base import (
    Bool,
    Float,
    GradFlow,
    Int,
    LayerBase,
    ParamSpec,
    PositiveFloat,
    PositiveInt,
    Saved,
    _alias,
    keras_variables,
    register_layer,
)

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['BatchNorm1d', 'BatchNorm2d', 'BatchNorm3d', 'BatchNorm', 'LayerNorm', 'GroupNorm', 'RMSNorm',
           'Normalization', 'rms_norm_saved']

#: FLOPs of normalizing with given statistics, per element: subtract the mean, multiply by 1/std
NORMALIZE_FLOPS = 2
#: FLOPs of computing mean and variance over a group, per element: 1 add (mean), subtract + square + add (variance)
STATISTICS_FLOPS = 4
#: per group: divide for the mean, divide for the variance, add eps, reciprocal square root
PER_GROUP_FLOPS = 4


def norm_flops(elements: int, groups: int, affine_ops: int) -> int:
    """FLOPs of a normalization that computes its statistics (LayerNorm, GroupNorm)."""
    return elements * (STATISTICS_FLOPS + NORMALIZE_FLOPS + affine_ops) + groups * PER_GROUP_FLOPS


def _explain_norm_flops(c: Explanation, elements: int, groups: int, affine_ops: int, reported: int) -> None:
    per_element = STATISTICS_FLOPS + NORMALIZE_FLOPS + affine_ops
    c.result("FLOPs", f"elements·({STATISTICS_FLOPS} statistics + {NORMALIZE_FLOPS} normalize + {affine_ops} affine) + "
             f"groups·{PER_GROUP_FLOPS} = {n(elements)}·{per_element} + {groups}·{PER_GROUP_FLOPS}",
             elements * per_element + groups * PER_GROUP_FLOPS, reported)


def normalized_dims(given: Optional[Union[int, list[int]]], x: Tensor, ctx: Context) -> tuple[int, ...]:
    """The trailing dims a LayerNorm or RMSNorm normalizes over (default: the last), checked against the input."""
    ns = (x.shape[-1],) if given is None else (given,) if isinstance(given, int) else tuple(given)
    if len(ns) >= len(x.shape) or tuple(x.shape[-len(ns):]) != ns:
        raise ctx.fail(f"normalized_shape {list(ns)} must equal the trailing dims of the input {fmt_shape(x.shape)} "
                       f"(batch excluded)")
    return ns


def statistics_saved(grads: GradFlow, groups: int, over: str) -> list[Saved]:
    """What torch's batch, layer and group norms keep in training (measured, CPU): the input and, per group of
    values normalized together, the mean and 1/√(var + eps), in the input's dtype — whenever any gradient is
    needed (a frozen norm after a trained layer keeps them as well)."""
    if not grads.any:
        return []
    return [Saved("input", "its input x, to normalize again in backward"),
            Saved("extra", f"the mean and 1/√(var + eps) per {over} (2·{groups:,})", numel=2 * groups)]


def _affine_specs(channels: int) -> dict[str, ParamSpec]:
    return {"weight": ParamSpec((channels,), "[channels]", "ones"), "bias": ParamSpec((channels,), "[channels]")}


# ---------------------------------------------------------------------------------------------- batch norm

#: what a normalization's backward is (no matmul: its input and scale/shift gradients are element-wise sums and
#: products over the statistics' groups)
_NORM_BACKWARD = "normalization: input and scale/shift gradients are element-wise sums and products"


class _BatchNormBase(LayerBase):
    #: input ranks accepted (batch included), as PyTorch's BatchNorm1d/2d/3d check them
    ranks: ClassVar[tuple[int, ...]] = (2, 3)

    num_features: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    eps: PositiveFloat = 1e-5
    momentum: Optional[Float] = 0.1
    affine: Bool = True
    track_running_stats: Bool = True

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, _NORM_BACKWARD)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) not in self.ranks:
            want = " or ".join(f"{r}-d" for r in self.ranks)
            raise ctx.fail(f"needs a {want} input, got {len(x.shape)}-d {fmt_shape(x.shape)}")
        _, c, _ = split_channels(x.shape, ctx.channels_last)
        check_declared(self.num_features, c, "num_features", x, ctx)
        # Inference with running statistics folds into one multiply and one add per element.
        return Facts(output_shape=x.shape, params=2 * c if self.affine else 0,
                     buffers=2 * c if self.track_running_stats else 0,
                     flops=NORMALIZE_FLOPS * numel(x.shape), rf=x.rf)

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        _, c, _ = split_channels(step.input_shapes[0], channels_last)
        specs = _affine_specs(c) if self.affine else {}
        if self.track_running_stats:
            specs["running_mean"] = ParamSpec((c,), "[channels]", buffer=True)
            specs["running_var"] = ParamSpec((c,), "[channels]", "ones", buffer=True)
        return specs

    def forward(self, step, xs, params, env):
        from ..kernels import batch_norm
        return batch_norm(xs[0], channel_axis=env.channel_axis, mean=params.get("running_mean"),
                          var=params.get("running_var"), weight=params.get("weight"), bias=params.get("bias"),
                          eps=self.eps, out=env.out_for(xs[0]))

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        _, c, _ = split_channels(step.input_shapes[0], grads.channels_last)
        return statistics_saved(grads, c, "channel (the batch's statistics, training mode)")

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        # without running statistics the batch's mean and variance are computed in float64
        stats = 0 if self.track_running_stats else 2 * numel(step.input_shapes[0]) * 8
        return stats + 4 * step.facts.params * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        _, channels, _ = spatial_parts(x, channels_last)
        if self.affine:
            c.result("params", f"2·C (γ and β) = 2·{channels}", 2 * channels, facts.params)
        else:
            c.zero("params", "affine=False: no γ, β", facts.params)
        c.add("buffers = " + (f"2·C (running mean and variance) = 2·{channels} = {2 * channels}"
                               if self.track_running_stats else "0 (track_running_stats=False)"))
        c.result("FLOPs", f"{NORMALIZE_FLOPS} per element (at inference the statistics fold into one multiply and "
                 f"one add) · {prod_text(x)}", NORMALIZE_FLOPS * math.prod(x), facts.flops)


@register_layer
class BatchNorm1d(_BatchNormBase):
    type: Literal["batchnorm1d"] = "batchnorm1d"


@register_layer
class BatchNorm2d(_BatchNormBase):
    spatial_dims: ClassVar[int] = 2
    ranks: ClassVar[tuple[int, ...]] = (4,)
    type: Literal["batchnorm2d"] = "batchnorm2d"


@register_layer
class BatchNorm3d(_BatchNormBase):
    spatial_dims: ClassVar[int] = 3
    ranks: ClassVar[tuple[int, ...]] = (5,)
    type: Literal["batchnorm3d"] = "batchnorm3d"


@register_layer
class BatchNorm(LayerBase):
    """Batch normalization over one axis of an input of any rank, as Keras' BatchNormalization: γ (``scale``) and
    β (``center``) learned, the moving mean and variance buffers (Keras' non-trainable weights)."""
    type: Literal["batchnorm"] = "batchnorm"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {
        "BatchNormalization": {"axis": -1, "eps": 1e-3, "momentum": 0.99}}      # Keras' defaults
    num_features: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    axis: Optional[Int] = Field(None, description="the feature axis normalized per value (Keras' axis); default: the "
                                                  "layout's channel dim (1 for NCHW, the last for NHWC)")
    eps: PositiveFloat = Field(1e-5, validation_alias=_alias("eps", "epsilon"))
    momentum: Optional[Float] = Field(0.1, description="training only: no effect on any figure")
    center: Bool = Field(True, description="a learned shift β per feature")
    scale: Bool = Field(True, description="a learned scale γ per feature")

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, _NORM_BACKWARD)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input of at least 2 dims [N, ..., features], got {fmt_shape(x.shape)}")
        default = len(x.shape) - 1 if ctx.channels_last else 1
        axis = normalize_dim(default if self.axis is None else self.axis, len(x.shape), "axis", x.shape, ctx)
        if axis == 0:
            raise ctx.fail("axis 0 is the batch dim; normalizing per batch position is not supported")
        c = x.shape[axis]
        check_declared(self.num_features, c, "num_features", x, ctx)
        return Facts(output_shape=x.shape, params=(self.center + self.scale) * c, buffers=2 * c,
                     flops=NORMALIZE_FLOPS * numel(x.shape), rf=x.rf, geometry={"axis": axis})

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        c = step.input_shapes[0][step.facts.geometry["axis"]]
        return statistics_saved(grads, c, "feature (the batch's statistics, training mode)")

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        c = step.input_shapes[0][step.facts.geometry["axis"]]
        specs = {}
        if self.scale:
            specs["weight"] = ParamSpec((c,), "[features]", "ones")
        if self.center:
            specs["bias"] = ParamSpec((c,), "[features]")
        specs["running_mean"] = ParamSpec((c,), "[features]", buffer=True)
        specs["running_var"] = ParamSpec((c,), "[features]", "ones", buffer=True)
        return specs

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        # Keras' order: γ (scale) and β (center) when present, then the moving mean and variance
        names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
        kept = [name for name, on in (("gamma", self.scale), ("beta", self.center)) if on]
        v = keras_variables(step, class_name, variables, {"": [*kept, "moving_mean", "moving_variance"]})
        return {names[name]: array for name, array in v.items()}

    def forward(self, step, xs, params, env):
        from ..kernels import batch_norm
        return batch_norm(xs[0], channel_axis=step.facts.geometry["axis"], mean=params["running_mean"],
                          var=params["running_var"], weight=params.get("weight"), bias=params.get("bias"),
                          eps=self.eps, out=env.out_for(xs[0]))

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return 4 * (step.facts.params + step.facts.buffers) * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        axis = facts.geometry["axis"]
        features = x[axis]
        learned = [name for name, on in (("γ", self.scale), ("β", self.center)) if on]
        c.add(f"normalizes each of the {features} features of axis {axis} of {list(x)}")
        if learned:
            c.result("params", f"{len(learned)}·C ({' and '.join(learned)}) = {len(learned)}·{features}",
                     len(learned) * features, facts.params)
        else:
            c.zero("params", "center and scale off: no γ, β", facts.params)
        c.add(f"buffers = 2·C (moving mean and variance; Keras' non-trainable weights) = 2·{features} = "
              f"{2 * features}")
        c.result("FLOPs", f"{NORMALIZE_FLOPS} per element (at inference the statistics fold into one multiply and "
                 f"one add) · {prod_text(x)}", NORMALIZE_FLOPS * math.prod(x), facts.flops)


# ------------------------------------------------------------------------------------- Keras' Normalization

#: Keras' backend.epsilon(): the floor of the standard deviation Keras' Normalization divides by
KERAS_EPSILON = 1e-7
#: per statistic (mean and variance pair): Keras takes sqrt(variance) and its maximum with epsilon at every call
PER_STATISTIC_FLOPS = 2


@register_layer
class Normalization(LayerBase):
    """Keras' Normalization (a preprocessing layer): ``(x − mean) / max(√variance, 1e-7)`` per position of the kept
    ``axis`` (``invert``: ``mean + x·max(√variance, 1e-7)``), with statistics learned by ``adapt()`` — then Keras'
    non-trainable weights mean, variance (one per kept position) and count (one integer), counted as buffers as
    Keras' ``count_params()`` counts them — or given as constants (``mean``, ``variance``: no weights)."""

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # x − mean keeps nothing; the divide by the constant √variance keeps only that buffer (not an activation)
        return []

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, "element-wise with constant statistics")
    type: Literal["normalization"] = "normalization"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Normalization": {}}
    axis: Union[Int, list[Int]] = Field(
        -1, description="the axis (or axes) with their own statistics, batch included in the numbering (Keras'); "
                        "[]: one mean and variance for every element (Keras' axis=None)")
    mean: Optional[Union[Float, list[Float]]] = Field(
        None, description="constant mean (one number, or one per kept position); null: adapted, a weight")
    variance: Optional[Union[Float, list[Float]]] = Field(
        None, description="constant variance, as mean (give both or neither)")
    invert: Bool = Field(False, description="undo the normalization: mean + x·std")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = len(x.shape)
        given = [self.axis] if isinstance(self.axis, int) else list(self.axis)
        keep = sorted({normalize_dim(a, rank, "axis", x.shape, ctx) for a in given})
        if 0 in keep:
            raise ctx.fail("axis 0 is the batch dim: statistics per batch position are not supported")
        if (self.mean is None) != (self.variance is None):
            raise ctx.fail("give both mean and variance (constants) or neither (adapted weights)")
        stats = tuple(x.shape[d] for d in keep)
        count = numel(stats)
        for name in ("mean", "variance"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) not in (1, count):
                raise ctx.fail(f"{name} has {len(value)} values; axis {given} keeps {count} positions "
                               f"{list(stats)} of the input {fmt_shape(x.shape)}: give 1 or {count}")
        adapted = self.mean is None
        notes = [] if not adapted else [
            f"mean and variance ({count:,} each) and adapt()'s count (1) are Keras' non-trainable weights: buffers"]
        return Facts(output_shape=x.shape, buffers=2 * count + 1 if adapted else 0,
                     flops=NORMALIZE_FLOPS * numel(x.shape) + PER_STATISTIC_FLOPS * count, rf=x.rf, notes=notes,
                     geometry={"keep": keep, "stats": stats})

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        if self.mean is not None:
            return {}
        stats = step.facts.geometry["stats"] or (1,)      # axis []: one value (Keras' scalar)
        where = f"[{', '.join(f'dim {d}' for d in step.facts.geometry['keep']) or '1'}]"
        return {"mean": ParamSpec(stats, where, buffer=True), "variance": ParamSpec(stats, where, "ones", buffer=True),
                "count": ParamSpec((1,), "[1] (adapt()'s sample count, not used at inference)", buffer=True)}

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        v = keras_variables(step, class_name, variables, {"": ["mean", "variance", "count"]})
        stats = step.facts.geometry["stats"] or (1,)
        # Keras' scalars (count; mean and variance with axis None) held as one value: arrays here have a dim
        return {"mean": v["mean"].reshape(stats), "variance": v["variance"].reshape(stats),
                "count": v["count"].reshape(1)}

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        keep = step.facts.geometry["keep"]
        broadcast = [size if d in keep else 1 for d, size in enumerate(x.shape)]

        def statistic(name: str):
            value = params[name] if self.mean is None else np.asarray(getattr(self, name), dtype=np.float64)
            value = np.asarray(value, dtype=x.dtype)
            return value.reshape(broadcast) if value.size > 1 else value.reshape(())
        std = np.maximum(np.sqrt(statistic("variance")), x.dtype.type(KERAS_EPSILON))
        if self.invert:
            return statistic("mean") + x * std
        return (x - statistic("mean")) / std

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        stats = facts.geometry["stats"]
        count = math.prod(stats)
        c.add(f"{'mean + x·std' if self.invert else '(x − mean) / std'}, std = max(√variance, 1e-7), one mean and "
              f"variance per position of {list(stats) or 'the whole input'}")
        c.zero("params", "statistics are not trained by gradient", facts.params)
        if self.mean is None:
            c.result("buffers", f"mean + variance + count (Keras' non-trainable weights) = 2·{count} + 1",
                     2 * count + 1, facts.buffers)
        else:
            c.add("buffers = 0 (mean and variance are constants of the config, not weights)")
        c.result("FLOPs", f"{NORMALIZE_FLOPS} per element · {prod_text(x)} + {PER_STATISTIC_FLOPS} per statistic "
                 f"(√ and max) · {count}", NORMALIZE_FLOPS * math.prod(x) + PER_STATISTIC_FLOPS * count, facts.flops)


def _keras_affine(fields: dict[str, Any], what: str) -> tuple[Any, Any]:
    """Keras' (center, scale) of a normalization, popped from ``fields``."""
    center, scale = fields.pop("center", True), fields.pop("scale", True)
    if center is True and scale is False:
        raise ValueError(f"center true with scale false (β without γ) is not supported by {what}")
    return center, scale


def _keras_axis_last(fields: dict[str, Any]) -> None:
    axis = fields.pop("axis", -1)
    if axis not in (-1, [-1], (-1,)):
        raise ValueError(f"field 'axis': only the last axis (-1) is supported, got {axis!r}")


def _keras_epsilon(fields: dict[str, Any]) -> None:
    fields["eps"] = fields.pop("epsilon", fields.get("eps", 1e-3))          # Keras' default epsilon is 1e-3


def _keras_affine_weights(step, class_name: str, variables: dict, scale: bool, center: bool) -> dict:
    """Keras' γ (gamma, saved first) → weight and β (beta) → bias: LayerNormalization, GroupNormalization."""
    v = keras_variables(step, class_name, variables, {"": ["gamma"][:scale] + ["beta"][:center]})
    return {"weight" if name == "gamma" else "bias": array for name, array in v.items()}


# ---------------------------------------------------------------------------------------------- layer norm

@register_layer
class LayerNorm(LayerBase):
    type: Literal["layernorm"] = "layernorm"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"LayerNormalization": {}}
    normalized_shape: Optional[Union[PositiveInt, list[PositiveInt]]] = Field(
        None, description="trailing dims to normalize over; default: the last dim")
    eps: PositiveFloat = 1e-5
    elementwise_affine: Bool = True
    bias: Bool = True

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, _NORM_BACKWARD)

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' LayerNormalization: axis -1, epsilon (default 1e-3), center (β) and scale (γ)."""
        fields = dict(fields)
        _keras_axis_last(fields)
        if fields.pop("rms_scaling", False) is not False:
            raise ValueError("field 'rms_scaling': true is not supported (use type rmsnorm)")
        center, scale = _keras_affine(fields, "layernorm")
        _keras_epsilon(fields)
        return {**fields, "elementwise_affine": scale, "bias": center}

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        ns = normalized_dims(self.normalized_shape, x, ctx)
        size = numel(ns)
        affine_params = (2 if self.bias else 1) * size if self.elementwise_affine else 0
        affine_ops = (2 if self.bias else 1) if self.elementwise_affine else 0
        return Facts(output_shape=x.shape, params=affine_params,
                     flops=norm_flops(numel(x.shape), numel(x.shape) // size, affine_ops), rf=x.rf,
                     geometry={"normalized_shape": ns})

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        rows = numel(step.input_shapes[0]) // numel(step.facts.geometry["normalized_shape"])
        return statistics_saved(grads, rows, "row normalized")

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        normalized = tuple(step.facts.geometry["normalized_shape"])
        if not self.elementwise_affine:
            return {}
        specs = {"weight": ParamSpec(normalized, "normalized_shape", "ones")}
        if self.bias:
            specs["bias"] = ParamSpec(normalized, "normalized_shape")
        return specs

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        return _keras_affine_weights(step, class_name, variables, self.elementwise_affine,
                                     self.elementwise_affine and self.bias)

    def forward(self, step, xs, params, env):
        from ..kernels import layer_norm
        return layer_norm(xs[0], normalized_dims=len(step.facts.geometry["normalized_shape"]),
                          weight=params.get("weight"), bias=params.get("bias"), eps=self.eps)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return 2 * numel(step.input_shapes[0]) * itemsize + (0 if weights_given else step.facts.params * itemsize), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        elements = math.prod(input_shapes[0])
        shape = list(facts.geometry["normalized_shape"])
        size = math.prod(shape)
        groups = elements // size
        per = (2 if self.bias else 1) if self.elementwise_affine else 0
        c.add(f"normalizes over the trailing dims {shape}: {groups} group(s) of {size} values")
        if per:
            c.result("params", f"{per}·{prod_text(shape)} (" + ("γ and β" if per == 2 else "γ") + ")", per * size,
                     facts.params)
        else:
            c.zero("params", "elementwise_affine=False: no γ, β", facts.params)
        _explain_norm_flops(c, elements, groups, per, facts.flops)


# ---------------------------------------------------------------------------------------------- group norm

@register_layer
class GroupNorm(LayerBase):
    type: Literal["groupnorm"] = "groupnorm"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"GroupNormalization": {}}
    num_groups: PositiveInt
    num_channels: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    eps: PositiveFloat = 1e-5
    affine: Bool = True

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, _NORM_BACKWARD)

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' GroupNormalization: groups (default 32), axis -1 (the channels, channels last), epsilon (default
        1e-3), center and scale (both or neither)."""
        fields = dict(fields)
        _keras_axis_last(fields)
        center, scale = _keras_affine(fields, "groupnorm")
        if center is not scale:
            raise ValueError(f"center {center!r} with scale {scale!r} is not supported (groupnorm has both γ and "
                             f"β or neither)")
        _keras_epsilon(fields)
        groups = fields.pop("groups", 32)
        return {**fields, "num_groups": groups, "affine": scale}

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input [N, C, ...], got {fmt_shape(x.shape)}")
        n_, c, _ = split_channels(x.shape, ctx.channels_last)
        check_declared(self.num_channels, c, "num_channels", x, ctx)
        if c % self.num_groups:
            raise ctx.fail(f"channels {c} (input {fmt_shape(x.shape)}) are not divisible by num_groups "
                           f"{self.num_groups}")
        return Facts(output_shape=x.shape, params=2 * c if self.affine else 0,
                     flops=norm_flops(numel(x.shape), n_ * self.num_groups, 2 if self.affine else 0), rf=x.rf)

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return statistics_saved(grads, step.input_shapes[0][0] * self.num_groups, "example and group")

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        _, c, _ = split_channels(step.input_shapes[0], channels_last)
        return _affine_specs(c) if self.affine else {}

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        return _keras_affine_weights(step, class_name, variables, self.affine, self.affine)

    def forward(self, step, xs, params, env):
        from ..kernels import group_norm
        return group_norm(xs[0], channel_axis=env.channel_axis, groups=self.num_groups,
                          weight=params.get("weight"), bias=params.get("bias"), eps=self.eps)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return 2 * numel(step.input_shapes[0]) * itemsize + (0 if weights_given else step.facts.params * itemsize), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        batch, channels, _ = spatial_parts(x, channels_last)
        groups = batch * self.num_groups
        c.add(f"statistics over {self.num_groups} groups of {channels // self.num_groups} channels, per example: "
              f"N·G = {batch}·{self.num_groups} = {groups} groups")
        if self.affine:
            c.result("params", f"2·C (γ and β) = 2·{channels}", 2 * channels, facts.params)
        else:
            c.zero("params", "affine=False: no γ, β", facts.params)
        _explain_norm_flops(c, math.prod(x), groups, 2 if self.affine else 0, facts.flops)


# ------------------------------------------------------------------------------------------------ RMS norm

def rms_norm_saved(elements: int, size: int, itemsize: int, *, x_needs_grad: bool, trained: bool,
                   offset: float = 0.0, cast_before_scale: bool = False, x_is_input: bool = True,
                   label: str = "its ", row: str = "row") -> list[Saved]:
    """What an RMSNorm over ``elements`` values in rows of ``size`` keeps for backward, at ``itemsize`` bytes per
    activation (measured, torch 2.13; the one rule of ``rmsnorm`` and of the attention's q/k norms). Every flavour
    computes in float32: x² and x·rstd keep x (a 16-bit x is upcast: its float32 copy is what is kept), rsqrt keeps
    1/rms per row (float32); γ·(x·rstd) keeps the normalized x for γ's gradient — in float32 when γ multiplies in
    float32 (torch.nn.RMSNorm, Gemma), in the input's dtype with ``cast_before_scale`` (Hugging Face's
    LlamaRMSNorm: ``weight * x.to(input_dtype)``). With an ``offset`` (Gemma: ``x * (1.0 + weight.float())``) the
    scale offset + γ is a float32 tensor of ``size`` made by the add, kept for x's gradient. ``x_is_input``: x is
    the layer's input 0 (else a tensor of the layer's own, ``extra``); ``label`` starts each description (``the q
    norm's ``), ``row`` names what one 1/rms is for."""
    wide = None if itemsize >= 4 else 4
    rows = elements // size
    saved = []
    if x_needs_grad:
        saved.append(Saved("input", f"{label}input x, for x's gradient") if wide is None and x_is_input else
                     Saved("extra", f"{label}input x" + (" upcast to float32" if wide else "")
                           + ", for x's gradient", numel=elements, itemsize=wide))
        saved.append(Saved("extra", f"{label}1/√(mean(x²) + eps) per {row} ({rows:,}, float32)", numel=rows,
                           itemsize=wide))
    if trained:
        cast = ", cast back to the 16-bit dtype" if cast_before_scale and wide else ""
        saved.append(Saved("extra", f"{label}normalized x·rstd{cast}, for γ's gradient", numel=elements,
                           itemsize=None if cast_before_scale else wide))
    if offset and x_needs_grad:
        saved.append(Saved("extra", f"{label}scale {offset:g} + γ ({size:,}, float32, made by the add), for x's "
                                    f"gradient", numel=size, itemsize=4))
    return saved


#: FLOPs of RMSNorm per element: square and add (the mean of squares), multiply by 1/rms; per group: divide for the
#: mean, add eps, reciprocal square root
RMS_ELEMENT_FLOPS = 3
RMS_GROUP_FLOPS = 3


@register_layer
class RMSNorm(LayerBase):
    """x / √(mean(x²) + eps) · γ over the trailing ``normalized_shape`` (``torch.nn.RMSNorm``, Llama's norm)."""
    type: Literal["rmsnorm"] = "rmsnorm"
    normalized_shape: Optional[Union[PositiveInt, list[PositiveInt]]] = Field(
        None, description="trailing dims to normalize over; default: the last dim")
    eps: Optional[PositiveFloat] = Field(None, description="default: the dtype's machine epsilon (PyTorch)")
    elementwise_affine: Bool = True
    offset: Float = Field(0.0, description="the scale is offset + γ (Gemma's RMSNorm: 1, its γ starting at 0); "
                                           "1 FLOP per γ element for the add")
    cast_before_scale: Bool = Field(
        False, description="Hugging Face's LlamaRMSNorm (and its copies: Mistral, Qwen2, Qwen3, Phi-3, Mixtral, "
                           "Qwen2-MoE, …): normalize in float32, cast back to the input's dtype, then multiply by "
                           "γ, so that a 16-bit model keeps the normalized x in its own dtype; false: γ multiplies "
                           "in float32 (torch.nn.RMSNorm; Gemma's (1 + γ)). Changes the training figure of 16-bit "
                           "dtypes only")

    @model_validator(mode="after")
    def _offset_needs_scale(self):
        if self.offset and not self.elementwise_affine:
            raise ValueError(f"offset {self.offset} is added to γ: it needs elementwise_affine")
        return self

    def _offset_flops(self, size: int) -> int:
        """offset + γ: one add per element of γ (once per call: it does not depend on the input)."""
        return size if self.offset else 0

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads, _NORM_BACKWARD)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        ns = normalized_dims(self.normalized_shape, x, ctx)
        size, elements = numel(ns), numel(x.shape)
        affine = 1 if self.elementwise_affine else 0
        return Facts(output_shape=x.shape, params=size if self.elementwise_affine else 0,
                     flops=elements * (RMS_ELEMENT_FLOPS + affine) + elements // size * RMS_GROUP_FLOPS
                     + self._offset_flops(size), rf=x.rf, geometry={"normalized_shape": ns})

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        elements = numel(step.input_shapes[0])
        size = numel(step.facts.geometry["normalized_shape"])
        return rms_norm_saved(elements, size, grads.itemsize, x_needs_grad=grads.inputs[0],
                              trained=grads.params and self.elementwise_affine, offset=self.offset,
                              cast_before_scale=self.cast_before_scale)

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        if not self.elementwise_affine:
            return {}
        layout = "normalized_shape" + (f" (the scale is {self.offset:g} + γ)" if self.offset else "")
        return {"weight": ParamSpec(tuple(step.facts.geometry["normalized_shape"]), layout,
                                    "zeros" if self.offset else "ones")}

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        axes = tuple(range(-len(step.facts.geometry["normalized_shape"]), 0))
        eps = self.eps if self.eps is not None else float(np.finfo(x.dtype).eps)
        y = x / np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True) + eps)
        if "weight" in params:
            y *= params["weight"] + params["weight"].dtype.type(self.offset) if self.offset else params["weight"]
        return y

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize + (0 if weights_given else step.facts.params * itemsize), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        elements = math.prod(input_shapes[0])
        shape = list(facts.geometry["normalized_shape"])
        size = math.prod(shape)
        groups = elements // size
        c.add(f"root mean square over the trailing dims {shape}: {groups} group(s) of {size} values; no mean is "
              f"subtracted and there is no β")
        if self.elementwise_affine:
            c.result("params", f"prod(normalized_shape) (γ) = {prod_text(shape)}", size, facts.params)
        else:
            c.zero("params", "elementwise_affine=False: no γ", facts.params)
        affine = 1 if self.elementwise_affine else 0
        offset = self._offset_flops(size)
        c.result("FLOPs", f"elements·({RMS_ELEMENT_FLOPS} + {affine} affine) + groups·{RMS_GROUP_FLOPS}"
                 + (f" + {self.offset:g} + γ ({size})" if offset else "")
                 + f" = {n(elements)}·{RMS_ELEMENT_FLOPS + affine} + {groups}·{RMS_GROUP_FLOPS}"
                 + (f" + {size}" if offset else ""),
                 elements * (RMS_ELEMENT_FLOPS + affine) + groups * RMS_GROUP_FLOPS + offset, facts.flops)
        if self.offset:
            c.add(f"the scale is {self.offset:g} + γ (Gemma's RMSNorm stores γ − {self.offset:g}: an untrained γ of "
                  f"zeros scales by {self.offset:g})")
