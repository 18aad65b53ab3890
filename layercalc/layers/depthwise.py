"""Depthwise and separable convolutions, Keras' ``DepthwiseConv1D/2D`` and ``SeparableConv1D/2D``:
``depthwise_conv1d/2d`` and ``separable_conv1d/2d``, with Keras' arguments (``depth_multiplier``, ``strides``,
``dilation_rate``, ``use_bias``, ``activation``).

A depthwise conv is the grouped conv with groups = C_in and C_out = C_in·depth_multiplier (m), and is computed as
that conv of :mod:`~layercalc.layers.conv`: params k·C_in·m (+ C_in·m), MACs N·prod(out)·C_in·m·k. A separable conv
is that depthwise conv without bias followed by a 1×1 conv to ``out_channels`` (Keras: filters) with the bias:
params k·C_in·m + C_in·m·C_out (+ C_out), MACs both convs' (docs/conventions.md).

A family of its own, imported on the first of its types a spec names: a network without them does not pay for
defining their models at start-up.
"""

import math
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..explain import Explanation, axis_names, explain_length, explain_window_field, n, prod_text, spatial_parts
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    Tensor,
    check_declared,
    fmt_dims,
    numel,
    product_backward,
    require_spatial,
)
from .activation import ActivationName, activation_field
from .base import (
    Bool,
    DataFormat,
    GradFlow,
    LayerBase,
    PaddingField,
    ParamSpec,
    PerDim,
    PositiveInt,
    Saved,
    _alias,
    _as_lists,
    _lower_string,
    data_format_field,
    keras_variables,
    per_dim_default,
    register_layer,
)
from .conv import Conv1d, Conv2d, Conv3d, _ConvBase, _keras_kernel, conv_saved, store_window_fields
from .fused import FusedActivation

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['DepthwiseConv1d', 'DepthwiseConv2d', 'SeparableConv1d', 'SeparableConv2d']

_CONVS: dict[int, type[_ConvBase]] = {1: Conv1d, 2: Conv2d, 3: Conv3d}


def _keras_depthwise_kernel(kernel: Any) -> Any:
    """Keras' depthwise kernel [*kernel_size, in, depth_multiplier] → the grouped conv's weight [in·depth_multiplier,
    1, *kernel_size]: output channel c·depth_multiplier + j reads input channel c, in both."""
    rank = kernel.ndim - 2
    return kernel.reshape(*kernel.shape[:rank], -1).transpose(rank, *range(rank))[:, None]



class _DepthwiseBase(LayerBase):
    """Keras' DepthwiseConv: one ``kernel_size`` filter per input channel and ``depth_multiplier`` outputs each,
    i.e. the grouped conv with groups = C_in and C_out = C_in·depth_multiplier (which it is computed as)."""
    spatial_dims: ClassVar[int]

    in_channels: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    kernel_size: PerDim
    depth_multiplier: PositiveInt = Field(1, description="outputs per input channel")
    stride: PerDim = Field(per_dim_default(1), validation_alias=_alias("stride", "strides"))
    padding: PaddingField = Field(
        per_dim_default(0),
        description="int, one int per spatial dim, 'same', 'valid', or [[before, after], ...] per spatial dim")
    dilation: PerDim = Field(per_dim_default(1), validation_alias=_alias("dilation", "dilation_rate"))
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))
    data_format: DataFormat = data_format_field()
    activation: ActivationName = activation_field()

    _lower_padding = field_validator("padding", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return conv_saved(step, grads, "zeros")                  # torch's grouped conv, groups = C_in

    @model_validator(mode="after")
    def _normalize(self):
        store_window_fields(self)
        return self

    def depthwise(self, cin: int, bias: bool) -> _ConvBase:
        """The grouped conv the depthwise step is (groups = C_in)."""
        return _CONVS[self.spatial_dims](
            out_channels=cin * self.depth_multiplier, kernel_size=list(self.kernel_size), stride=list(self.stride),
            padding=_as_lists(self.padding), dilation=list(self.dilation), groups=cin, bias=bias)

    @staticmethod
    def channels(shape: tuple[int, ...], channels_last: bool) -> int:
        return shape[-1] if channels_last else shape[1]

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        n_, cin, spatial = require_spatial(x, self.spatial_dims, ctx)
        check_declared(self.in_channels, cin, "in_channels", x, ctx)
        return self.depthwise(cin, self.bias)._infer(x, n_, cin, spatial, ctx)

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        cin = self.channels(step.input_shapes[0], channels_last)
        return self.depthwise(cin, self.bias).param_specs(step, channels_last)

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        v = keras_variables(step, class_name, variables, {"": ["kernel", "bias"][:1 + self.bias]})
        return {"weight": _keras_depthwise_kernel(v["kernel"]), **({"bias": v["bias"]} if self.bias else {})}

    def forward(self, step, xs, params, env):
        return self.depthwise(self.channels(xs[0].shape, env.channels_last), self.bias).forward(step, xs, params, env)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        cin = self.channels(step.input_shapes[0], channels_last)
        return self.depthwise(cin, self.bias).scratch_bytes(step, itemsize, channels_last, weights_given)

    def backward(self, step, grads: Gradients) -> Backward:
        """The grouped conv's (groups = C_in): dX and dW each meet every forward multiply once — forward MACs each
        (FlopCounterMode counts the weight gradient as if ungrouped: C_in times too many; docs/conventions.md)."""
        outputs = numel(step.facts.output_shape)
        return product_backward(step.facts.macs, grads, "dX = conv_transpose(dY, W), per channel",
                                "dW = conv(X, dY), per channel", outputs if self.bias else 0,
                                f"db = Σ dY over N and positions: {outputs:,}")

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        cin = self.channels(input_shapes[0], channels_last)
        c.add(f"depthwise: one {fmt_dims(self.kernel_size)} filter per input channel, depth_multiplier "
              f"{self.depth_multiplier}: a conv with groups = C_in = {cin} and C_out = C_in·depth_multiplier = "
              f"{cin}·{self.depth_multiplier} = {cin * self.depth_multiplier}")
        self.depthwise(cin, self.bias).explain(c, input_shapes, facts, channels_last)

    def explain_field(self, c: Explanation, facts: Facts, input_rf) -> None:
        explain_window_field(c, self.kernel_size, self.stride, self.dilation, facts, input_rf)


@register_layer
class DepthwiseConv1d(FusedActivation, _DepthwiseBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["depthwise_conv1d"] = "depthwise_conv1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"DepthwiseConv1D": {}}


@register_layer
class DepthwiseConv2d(FusedActivation, _DepthwiseBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["depthwise_conv2d"] = "depthwise_conv2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"DepthwiseConv2D": {}}


class _SeparableBase(_DepthwiseBase):
    """Keras' SeparableConv: the depthwise conv (no bias) followed by a 1×1 pointwise conv to ``out_channels``
    (Keras: filters) with the bias. Params: k·C_in·m + C_in·m·C_out (+ C_out); MACs: both convs'."""

    out_channels: PositiveInt = Field(validation_alias=_alias("out_channels", "filters"),
                                      description="output channels of the pointwise conv")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        if not grads.any:
            return []
        # two convolutions: the depthwise keeps the input, the pointwise the depthwise result
        return conv_saved(step, grads, "zeros") + [
            Saved("extra", "the depthwise result, the pointwise conv's input",
                  numel=numel(step.facts.geometry["mid_shape"]))]

    def pointwise(self) -> _ConvBase:
        return _CONVS[self.spatial_dims](out_channels=self.out_channels, kernel_size=1, bias=self.bias)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        n_, cin, spatial = require_spatial(x, self.spatial_dims, ctx)
        check_declared(self.in_channels, cin, "in_channels", x, ctx)
        depth = self.depthwise(cin, False)._infer(x, n_, cin, spatial, ctx)
        mid = Tensor(depth.output_shape, depth.rf)
        _, mid_channels, mid_spatial = require_spatial(mid, self.spatial_dims, ctx)
        point = self.pointwise()._infer(mid, n_, mid_channels, mid_spatial, ctx)
        return Facts(output_shape=point.output_shape, params=depth.params + point.params,
                     macs=depth.macs + point.macs, flops=depth.flops + point.flops, rf=point.rf,
                     notes=depth.notes, geometry={**depth.geometry, "depthwise_macs": depth.macs,
                                                  "mid_shape": depth.output_shape})

    def backward(self, step, grads: Gradients) -> Backward:
        """The pointwise conv's backward, then the depthwise conv's: the pointwise input (the depthwise output)
        needs its gradient whenever the depthwise weights do or the layer's input does."""
        depth_macs = step.facts.geometry["depthwise_macs"]
        point_macs = step.facts.macs - depth_macs
        outputs = numel(step.facts.output_shape)
        point = product_backward(point_macs, Gradients((True,), grads.weights),
                                 "pointwise dMid = dY·W_pointwise", "pointwise dW = dYᵀ·Mid",
                                 outputs if self.bias else 0, f"db = Σ dY: {outputs:,}")
        depth = product_backward(depth_macs, grads, "depthwise dX = conv_transpose(dMid, W), per channel",
                                 "depthwise dW = conv(X, dMid), per channel")
        return Backward(point.input_macs + depth.input_macs, point.weight_macs + depth.weight_macs,
                        point.element_flops, point.lines + depth.lines)

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        cin = self.channels(step.input_shapes[0], channels_last)
        mid = cin * self.depth_multiplier
        rank = self.spatial_dims
        specs = {"depthwise_weight": ParamSpec((mid, 1, *self.kernel_size), "[in_channels·depth_multiplier, 1, "
                                               "*kernel_size]", "uniform", numel(self.kernel_size)),
                 "pointwise_weight": ParamSpec((self.out_channels, mid, *(1,) * rank),
                                               "[out_channels, in_channels·depth_multiplier, 1, …]", "uniform", mid)}
        if self.bias:
            specs["bias"] = ParamSpec((self.out_channels,), "[out_channels]", "uniform", mid)
        return specs

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        names = ["depthwise_kernel", "pointwise_kernel", "bias"][:2 + self.bias]
        v = keras_variables(step, class_name, variables, {"": names})
        return {"depthwise_weight": _keras_depthwise_kernel(v["depthwise_kernel"]),
                "pointwise_weight": _keras_kernel(v["pointwise_kernel"]), **({"bias": v["bias"]} if self.bias else {})}

    def forward(self, step, xs, params, env):
        from ..kernels import conv
        rank = self.spatial_dims
        x = env.to_channels_last(xs[0])
        cin = x.shape[-1]
        y = conv(x, params["depthwise_weight"], None, stride=self.stride, dilation=self.dilation,
                 pads=step.facts.geometry["pads"], groups=cin, padding_mode="zeros", workspace=env.workspace,
                 counter=env.counter)
        y = conv(y, params["pointwise_weight"], params.get("bias"), stride=(1,) * rank, dilation=(1,) * rank,
                 pads=((0, 0),) * rank, groups=1, padding_mode="zeros", workspace=env.workspace, counter=env.counter)
        return env.from_channels_last(y)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        from ..kernels import chunk_bytes
        in_shape = step.input_shapes[0]
        batch = in_shape[0]
        cin = self.channels(in_shape, channels_last)
        spatial = in_shape[1:-1] if channels_last else in_shape[2:]
        mid_shape = step.facts.geometry["mid_shape"]
        mid_spatial = mid_shape[1:-1] if channels_last else mid_shape[2:]
        pads = step.facts.geometry["pads"]
        padded = batch * cin * numel(n_ + b + a for n_, (b, a) in zip(spatial, pads))
        weights = 2 * step.facts.params                     # made (unless given) and reordered
        # the intermediate tensor, twice (the depthwise step's temporary, as a grouped conv's), the padded input
        temporary = (2 * numel(mid_shape) + padded + weights + numel(in_shape)) * itemsize
        return temporary, chunk_bytes(batch, mid_spatial, numel(mid_shape[1:]) * itemsize)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        cin = self.channels(input_shapes[0], channels_last)
        mid = cin * self.depth_multiplier
        k = math.prod(self.kernel_size)
        mid_shape = facts.geometry["mid_shape"]
        _, _, out = spatial_parts(facts.output_shape, channels_last)
        batch = input_shapes[0][0]
        c.add(f"separable: depthwise {fmt_dims(self.kernel_size)} conv (groups = C_in = {cin}, C_out = C_in·"
              f"depth_multiplier = {mid}, no bias) → {list(mid_shape)}, then a 1×1 conv to {self.out_channels} "
              f"channels" + (" with the bias" if self.bias else ""))
        pads = facts.geometry["pads"]
        _, _, spatial = spatial_parts(input_shapes[0], channels_last)
        for axis, length, kk, ss, dd, (pb, pa) in zip(axis_names(len(spatial)), spatial, self.kernel_size,
                                                      self.stride, self.dilation, pads):
            c.lines += explain_length(length, kk, ss, pb, pa, dd, axis=axis, same=self.padding == "same")
        bias = self.out_channels if self.bias else 0
        c.result("params", f"depthwise {prod_text(self.kernel_size)}·{mid} + pointwise {mid}·{self.out_channels}"
                 + (f" + bias {bias}" if bias else ""), k * mid + mid * self.out_channels + bias, facts.params)
        positions = batch * math.prod(out)
        depth_macs, point_macs = positions * mid * k, positions * mid * self.out_channels
        c.result("MACs", f"depthwise N·{'·'.join(a + '_out' for a in axis_names(len(out)))}·C_mid·k + pointwise "
                 f"N·…·C_mid·C_out = {n(positions)}·{mid}·{k} + {n(positions)}·{mid}·{self.out_channels}",
                 depth_macs + point_macs, facts.macs)
        adds = positions * self.out_channels if self.bias else 0
        c.result("FLOPs", f"2·MACs + bias adds = 2·{n(depth_macs + point_macs)} + {n(adds)}",
                 2 * (depth_macs + point_macs) + adds, facts.flops)


@register_layer
class SeparableConv1d(FusedActivation, _SeparableBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["separable_conv1d"] = "separable_conv1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"SeparableConv1D": {}}


@register_layer
class SeparableConv2d(FusedActivation, _SeparableBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["separable_conv2d"] = "separable_conv2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"SeparableConv2D": {}}
