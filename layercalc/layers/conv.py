"""Convolutions: ``conv1d/2d/3d`` and the transposed ``conv_transpose1d/2d/3d``, with PyTorch's arguments and
Keras' names (``filters``, ``strides``, ``dilation_rate``, ``use_bias``).

Output length per axis: floor((L + pad_before + pad_after − dilation·(k − 1) − 1) / stride) + 1; transposed:
(L − 1)·stride − crop_before − crop_after + dilation·(k − 1) + output_padding + 1. Params: k·(C_in/groups)·C_out
(+ C_out bias). MACs: output positions · C_out · k·(C_in/groups); a transposed conv's MACs are counted on *input*
positions (each input value meets each weight once). FLOPs = 2·MACs + one add per output for the bias.
``padding: same`` with stride > 1 and the Keras 'valid' rule for transposed convs follow TensorFlow/Keras, and the
notes say so (docs/conventions.md).
"""


import math
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..explain import (
    Explanation,
    axis_names,
    explain_length,
    explain_transposed_length,
    explain_window_field,
    n,
    prod_text,
    spatial_parts,
)
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Shape,
    Tensor,
    border_notes,
    check_declared,
    exact_ratio,
    fmt_dims,
    fmt_pads,
    fmt_pads_per_axis,
    fmt_shape,
    join_channels,
    numel,
    product_backward,
    require_spatial,
    resolve_pads,
    window_rf,
)
from ..rules import axis_names as axis_letters
from ..shapes import (
    ceil_div,
    conv_output_length,
    effective_kernel,
    transposed_output_length,
    transposed_same_padding,
    transposed_valid_extra,
)
from .activation import ActivationName, activation_field
from .base import (
    Bool,
    DataFormat,
    GradFlow,
    LayerBase,
    NonNegativePerDim,
    PaddingField,
    ParamSpec,
    PerDim,
    PositiveInt,
    Saved,
    _alias,
    _lower_string,
    _padding_pairs,
    _per_dim,
    data_format_field,
    keras_variables,
    per_dim_default,
    register_layer,
)
from .fused import FusedActivation

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['Conv1d', 'Conv2d', 'Conv3d', 'ConvTranspose1d', 'ConvTranspose2d', 'ConvTranspose3d',
           'transposed_input_span']


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


def store_window_fields(layer: Any) -> None:
    """A conv's window fields as it stores them once validated: kernel_size, stride and dilation one int per spatial
    dim, padding one (before, after) pair per dim (or 'same' / 'valid'). For the model validators of the convs here
    and of the depthwise and separable convs."""
    rank = layer.spatial_dims
    for field in ("kernel_size", "stride", "dilation"):
        object.__setattr__(layer, field, _per_dim(getattr(layer, field), rank, field))
    object.__setattr__(layer, "padding", _padding_pairs(layer.padding, rank))


class _ConvBase(LayerBase):
    transposed: ClassVar[bool] = False
    spatial_dims: ClassVar[int]                  # each registered conv sets its rank


    in_channels: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    out_channels: PositiveInt = Field(validation_alias=_alias("out_channels", "filters"))
    kernel_size: PerDim
    stride: PerDim = Field(per_dim_default(1), validation_alias=_alias("stride", "strides"))
    padding: PaddingField = Field(
        per_dim_default(0),
        description="int, one int per spatial dim, 'same', 'valid', or [[before, after], ...] per spatial dim")
    dilation: PerDim = Field(per_dim_default(1), validation_alias=_alias("dilation", "dilation_rate"))
    groups: PositiveInt = 1
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"
    data_format: DataFormat = data_format_field()
    activation: ActivationName = activation_field()

    _lower_padding = field_validator("padding", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    @model_validator(mode="after")
    def _normalize(self):
        store_window_fields(self)
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels {self.out_channels} is not divisible by groups {self.groups}")
        return self

    # ------------------------------------------------------------------------------------------------- rule

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = self.spatial_dims
        n_, cin, spatial = require_spatial(x, rank, ctx)
        check_declared(self.in_channels, cin, "in_channels", x, ctx)
        if cin % self.groups:
            raise ctx.fail(f"in_channels {cin} (input {fmt_shape(x.shape)}) is not divisible by groups {self.groups}")
        return self._infer(x, n_, cin, spatial, ctx)

    def _infer(self, x: Tensor, n_: int, cin: int, spatial: Shape, ctx: Context) -> Facts:
        k, s, d = self.kernel_size, self.stride, self.dilation
        pads = resolve_pads(self.padding, spatial, k, s, d)
        if self.padding_mode != "zeros":
            _check_padding_mode(self.padding_mode, spatial, pads, x, ctx)
        out = tuple(conv_output_length(nn, kk, ss, pb, pa, dd)
                    for nn, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d))
        if min(out) < 1:
            span = tuple(effective_kernel(kk, dd) for kk, dd in zip(k, d))
            padded = tuple(nn + pb + pa for nn, (pb, pa) in zip(spatial, pads))
            raise ctx.fail(f"kernel {fmt_dims(k)} (dilation {fmt_dims(d)}) needs at least {fmt_dims(span)} input "
                           f"after padding, got {fmt_dims(padded)} (input {fmt_shape(x.shape)}, padding "
                           f"{fmt_pads(pads)})")
        cout = self.out_channels
        weights_per_output = (cin // self.groups) * math.prod(k)
        positions = n_ * numel(out)
        macs = positions * cout * weights_per_output
        bias_adds = positions * cout if self.bias else 0
        notes = border_notes(spatial, k, s, d, pads, axis_letters(self.spatial_dims))
        if self.padding == "same":
            notes.insert(0, f"'same' padding applied (before, after): {fmt_pads_per_axis(pads)}")
            if any(ss > 1 for ss in s):
                notes.insert(1, "'same' with stride > 1 follows TensorFlow/Keras; PyTorch refuses it")
        return Facts(
            output_shape=join_channels(n_, cout, out, ctx.channels_last),
            params=cout * weights_per_output + (cout if self.bias else 0),
            macs=macs, flops=2 * macs + bias_adds,
            rf=window_rf(x.rf, k, s, d, pads), notes=notes, geometry={"pads": pads})

    # ------------------------------------------------------------------------------------------- execution

    def weight_shape(self, cin: int) -> tuple[tuple[int, ...], str]:
        return ((self.out_channels, cin // self.groups, *self.kernel_size),
                "[out_channels, in_channels/groups, *kernel_size]")

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        shape = step.input_shapes[0]
        cin = shape[-1] if channels_last else shape[1]
        weight, layout = self.weight_shape(cin)
        fan_in = math.prod(weight[1:])              # PyTorch: tensor dim 1 × kernel (out/groups for transposed)
        specs = {"weight": ParamSpec(weight, layout, "uniform", fan_in)}
        if self.bias:
            specs["bias"] = ParamSpec((self.out_channels,), "[out_channels]", "uniform", fan_in)
        return specs

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        v = keras_variables(step, class_name, variables, {"": ["kernel", "bias"][:1 + self.bias]})
        return {"weight": _keras_kernel(v["kernel"]), **({"bias": v["bias"]} if self.bias else {})}

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return conv_saved(step, grads, self.padding_mode)

    def forward(self, step, xs, params, env):
        from ..kernels import conv
        x = env.to_channels_last(xs[0])
        y = conv(x, params["weight"], params.get("bias"), stride=self.stride, dilation=self.dilation,
                 pads=step.facts.geometry["pads"], groups=self.groups, padding_mode=self.padding_mode,
                 workspace=env.workspace, counter=env.counter)
        return env.from_channels_last(y)

    def _weight_copies(self, step, itemsize: int, channels_last: bool, weights_given: bool, copied: bool) -> int:
        """The weights made for this layer (unless passed in) and their reordered copy."""
        in_shape = step.input_shapes[0]
        cin = in_shape[-1] if channels_last else in_shape[1]
        weight_bytes = self.out_channels * (cin // self.groups) * numel(self.kernel_size) * itemsize
        return ((0 if weights_given else 1) + (1 if copied else 0)) * weight_bytes

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        from ..kernels import chunk_bytes, reorders_weight

        in_shape, out_shape = step.input_shapes[0], step.facts.output_shape
        batch, cin = in_shape[0], in_shape[-1] if channels_last else in_shape[1]
        spatial = in_shape[1:-1] if channels_last else in_shape[2:]
        cout, kernel = self.out_channels, self.kernel_size
        out_spatial = out_shape[1:-1] if channels_last else out_shape[2:]
        if self.groups > 1 and self.groups != cin:
            copied = True                                 # the weight as a batched matrix
        else:
            copied = self.groups == 1 and reorders_weight(numel(kernel), batch * numel(out_spatial), cout)
        weight_copies = self._weight_copies(step, itemsize, channels_last, weights_given, copied)
        pads = step.facts.geometry["pads"]
        padded = batch * cin * numel(n + b + a for n, (b, a) in zip(spatial, pads)) if any(
            b or a for b, a in pads) else 0
        depth = numel(kernel) * (cin // self.groups)
        if self.groups == 1:     # (a 1×1 stride-1 conv needs no im2col, unless its input is a strided view)
            chunk, temp = chunk_bytes(batch, out_spatial, depth * itemsize), 0
        elif self.groups == cin:
            chunk, temp = 0, numel(out_shape)
        else:
            chunk, temp = chunk_bytes(batch, out_spatial, (self.groups * depth + cout) * itemsize), 0
        return (padded + temp) * itemsize + weight_copies, chunk

    # ------------------------------------------------------------------------------------------- backward

    def backward(self, step, grads: Gradients) -> Backward:
        """dX is the transposed conv of dY with the weight, dW the conv of X with dY: each meets every forward
        multiply once (per group: a grouped conv's weight gradient has its forward MACs too — FlopCounterMode
        counts it as if ungrouped, see docs/conventions.md)."""
        facts = step.facts
        outputs = numel(facts.output_shape)              # N·positions·C_out: one bias-gradient add each
        # the forward's products: per output (conv) or per input value (transposed), as its MACs are counted
        values = numel(step.input_shapes[0]) if self.transposed else outputs
        each = f"{values:,} {'input values' if self.transposed else 'outputs'} × {facts.macs // values:,} weights"
        return product_backward(
            facts.macs, grads, f"dX = {'conv' if self.transposed else 'conv_transpose'}(dY, W): {each}",
            f"dW = conv(X, dY) per group: {each}", outputs if self.bias else 0,
            f"db = Σ dY over N and positions: N·positions·C_out = {outputs:,}")

    # ----------------------------------------------------------------------------------------- explanation

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        batch, cin, spatial = spatial_parts(input_shapes[0], channels_last)
        _, cout, out = spatial_parts(facts.output_shape, channels_last)
        axes = axis_names(len(spatial))
        k, s, d = self.kernel_size, self.stride, self.dilation
        pads = facts.geometry["pads"]
        c.add("per axis: out = floor((in + pad_before + pad_after − dilation·(kernel − 1) − 1) / stride) + 1")
        for axis, length, kk, ss, dd, (pb, pa) in zip(axes, spatial, k, s, d, pads):
            c.lines += explain_length(length, kk, ss, pb, pa, dd, axis=axis, same=self.padding == "same")
        groups = self.groups
        per_out = cin // groups
        kernel_text = prod_text(k)
        if groups > 1:
            c.add(f"groups = {groups}: each output channel sees C_in/groups = {cin}/{groups} = {per_out} input "
                  f"channels")
        bias = cout if self.bias else 0
        weights = math.prod(k) * per_out * cout
        c.result("params", f"({kernel_text}·{per_out})·{cout}" + (f" + {cout}" if self.bias else "")
                 + ("" if self.bias else "  (no bias)"), weights + bias, facts.params)
        positions = batch * math.prod(out)
        macs = positions * cout * math.prod(k) * per_out
        c.result("MACs", f"N·{'·'.join(a + '_out' for a in axes)}·C_out·({'·'.join('k' + a for a in axes)}·"
                 f"C_in/groups) = {prod_text([batch, *out, cout])}·({kernel_text}·{per_out})", macs, facts.macs)
        bias_adds = positions * cout if self.bias else 0
        c.result("FLOPs", f"2·MACs + bias adds (N·{'·'.join(a + '_out' for a in axes)}·C_out) = 2·{n(macs)} + "
                 f"{n(bias_adds)}", 2 * macs + bias_adds, facts.flops)

    def explain_field(self, c: Explanation, facts: Facts, input_rf) -> None:
        explain_window_field(c, self.kernel_size, self.stride, self.dilation, facts, input_rf)


def _keras_kernel(kernel: Any) -> Any:
    """Keras' conv kernel [*kernel_size, in/groups, out] → PyTorch's weight [out, in/groups, *kernel_size]; the same
    axes move for a transposed conv (Keras [*kernel_size, out/groups, in] → PyTorch [in, out/groups, *kernel_size])."""
    rank = kernel.ndim - 2
    return kernel.transpose(rank + 1, rank, *range(rank))


def conv_saved(step, grads: GradFlow, padding_mode: str) -> list[Saved]:
    """What torch's convolution keeps: its input (for the weight's gradient) and its weight, whichever gradient is
    needed (measured: a frozen conv after a trained layer still keeps its input). A padding torch cannot do inside
    the convolution — reflect/replicate/circular, or unequal before/after (Keras' "same" with an even kernel or a
    stride) — is an F.pad first, and the padded copy is what the convolution keeps."""
    if not grads.any:
        return []
    pads = step.facts.geometry.get("pads", ())
    if padding_mode == "zeros" and all(before == after for before, after in pads):
        return [Saved("input", "its input x, for the weight's gradient (the weight itself, for x's)")]
    x = step.input_shapes[0]
    spatial = x[1:-1] if grads.channels_last else x[2:]
    padded = numel(x) // numel(spatial) * numel(s + b + a for s, (b, a) in zip(spatial, pads))
    why = f"{padding_mode} padding" if padding_mode != "zeros" else "unequal padding before and after"
    saved = [Saved("extra", f"its input padded by F.pad ({why}), for the weight's gradient", numel=padded)]
    if padding_mode in ("reflect", "replicate") and grads.inputs[0]:
        saved.insert(0, Saved("input", f"its input x, kept by the {padding_mode} pad for x's gradient"))
    return saved


def _check_padding_mode(mode: str, spatial: Shape, pads, x: Tensor, ctx: Context) -> None:
    """PyTorch's limits: reflect needs padding < size; circular needs padding ≤ size."""
    for n_, (pb, pa) in zip(spatial, pads):
        too_big = max(pb, pa) >= n_ if mode == "reflect" else max(pb, pa) > n_ if mode == "circular" else False
        if too_big:
            need = "smaller than" if mode == "reflect" else "at most"
            raise ctx.fail(f"padding_mode '{mode}' needs padding {need} the input size, got padding {fmt_pads(pads)} "
                           f"for input {fmt_shape(x.shape)}")


@register_layer
class Conv1d(FusedActivation, _ConvBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["conv1d"] = "conv1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv1D": {}}


@register_layer
class Conv2d(FusedActivation, _ConvBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["conv2d"] = "conv2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv2D": {}}


@register_layer
class Conv3d(FusedActivation, _ConvBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["conv3d"] = "conv3d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv3D": {}}


# ----------------------------------------------------------------------------------------------- transposed

class _ConvTransposeBase(_ConvBase):
    transposed: ClassVar[bool] = True

    output_padding: NonNegativePerDim = Field(
        per_dim_default(0), description="extra size added to one side of the output; smaller than stride or dilation")
    padding_mode: Literal["zeros"] = "zeros"

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # a padding crops the output (never pads the input): the input itself is kept
        return [Saved("input", "its input x, for the weight's gradient (the weight itself, for x's)")] if grads.any \
            else []

    @model_validator(mode="after")
    def _normalize_output_padding(self):
        object.__setattr__(self, "output_padding", _per_dim(self.output_padding, self.spatial_dims, "output_padding"))
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(f"output_padding {list(self.output_padding)} must be smaller than either stride "
                                 f"{list(self.stride)} or dilation {list(self.dilation)} (PyTorch's rule)")
        return self

    def _infer(self, x: Tensor, n_: int, cin: int, spatial: Shape, ctx: Context) -> Facts:
        k, s, d, op = self.kernel_size, self.stride, self.dilation, self.output_padding
        notes = []
        if self.padding == "same":
            if any(op):
                raise ctx.fail(f"output_padding {fmt_dims(op)} cannot be combined with padding 'same' "
                               f"(the output is input·stride by definition)")
            resolved = [transposed_same_padding(nn, kk, ss, dd) for nn, kk, ss, dd in zip(spatial, k, s, d)]
            crop = tuple((b, a) for b, a, _ in resolved)
            op = tuple(extra for _, _, extra in resolved)
            notes.append(f"'same' (Keras): output = input·stride; cropped (before, after) {fmt_pads(crop)}"
                         + (f", zeros appended {fmt_dims(op)}" if any(op) else ""))
        else:
            crop = resolve_pads(self.padding, spatial, k, s, d)       # 'valid' → no crop
            if self.padding == "valid" and "output_padding" not in self.model_fields_set:
                # 'valid' is Keras' word (PyTorch's transposed convs have no string padding), so Keras' length:
                # L·s + max(span − s, 0). It equals PyTorch's (L − 1)·s + span unless the kernel span is narrower
                # than the stride; then Keras appends s − span zero (bias-only) positions, i.e. output_padding in
                # torch terms. An output_padding the spec states (even 0) is used as given, as Keras does when it is
                # not None.
                op = tuple(transposed_valid_extra(kk, ss, dd) for kk, ss, dd in zip(k, s, d))
                if any(op):
                    notes.append(f"'valid' (Keras): output = input·stride + max(kernel span − stride, 0); "
                                 f"zeros appended {fmt_dims(op)} (PyTorch: output_padding {fmt_dims(op)})")
        out = tuple(transposed_output_length(nn, kk, ss, cb, ca, dd, oo)
                    for nn, kk, ss, (cb, ca), dd, oo in zip(spatial, k, s, crop, d, op))
        if min(out) < 1:
            raise ctx.fail(f"output size {fmt_dims(out)} < 1: (input − 1)·stride − padding + dilation·(kernel − 1) + "
                           f"output_padding + 1 with input {fmt_shape(x.shape)}, kernel {fmt_dims(k)}, stride "
                           f"{fmt_dims(s)}, padding {fmt_pads(crop)}, dilation {fmt_dims(d)}, output_padding "
                           f"{fmt_dims(op)}")
        cout = self.out_channels
        weights_per_input = (cout // self.groups) * math.prod(k)
        # Every input position is multiplied by every weight it touches: counted on input positions, cropped or not.
        macs = n_ * numel(spatial) * cin * weights_per_input
        bias_adds = n_ * numel(out) * cout if self.bias else 0
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
            output_shape=join_channels(n_, cout, out, ctx.channels_last),
            params=cin * weights_per_input + (cout if self.bias else 0),
            macs=macs, flops=2 * macs + bias_adds, rf=rf, notes=notes,
            geometry={"crop": crop, "output_padding": op})

    def weight_shape(self, cin: int) -> tuple[tuple[int, ...], str]:
        return ((cin, self.out_channels // self.groups, *self.kernel_size),
                "[in_channels, out_channels/groups, *kernel_size]")

    def forward(self, step, xs, params, env):
        from ..kernels import conv_transpose
        geometry = step.facts.geometry
        x = env.to_channels_last(xs[0])
        y = conv_transpose(x, params["weight"], params.get("bias"), stride=self.stride, dilation=self.dilation,
                           crop=geometry["crop"], output_padding=geometry["output_padding"], groups=self.groups,
                           workspace=env.workspace, counter=env.counter)
        return env.from_channels_last(y)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        from ..kernels import chunk_bytes

        in_shape = step.input_shapes[0]
        batch, cin = in_shape[0], in_shape[-1] if channels_last else in_shape[1]
        spatial = in_shape[1:-1] if channels_last else in_shape[2:]
        cout, kernel = self.out_channels, self.kernel_size
        weight_copies = self._weight_copies(step, itemsize, channels_last, weights_given, copied=True)
        full = [(n_ - 1) * s + d * (k - 1) + 1 + op for n_, k, s, d, op in
                zip(spatial, kernel, self.stride, self.dilation, step.facts.geometry["output_padding"])]
        width = numel(kernel) * (cout // self.groups)
        chunk = chunk_bytes(batch, spatial, (self.groups * width + cin) * itemsize)
        return batch * numel(full) * cout * itemsize + weight_copies, chunk

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        batch, cin, spatial = spatial_parts(input_shapes[0], channels_last)
        _, cout, out = spatial_parts(facts.output_shape, channels_last)
        axes = axis_names(len(spatial))
        k, s, d = self.kernel_size, self.stride, self.dilation
        crop, op = facts.geometry["crop"], facts.geometry["output_padding"]
        c.add("per axis: out = (in − 1)·stride − crop_before − crop_after + dilation·(kernel − 1) + output_padding "
              "+ 1 (PyTorch's padding p crops p from each side)")
        if self.padding == "same":
            c.add(f"'same' (Keras): out = in·stride; cropped (before, after) per axis "
                  f"{', '.join(f'{a}: ({b}, {e})' for a, (b, e) in zip(axes, crop))}"
                  + (f"; zeros appended {', '.join(f'{a}: {o}' for a, o in zip(axes, op))}" if any(op) else ""))
        for axis, length, kk, ss, dd, (cb, ca), oo in zip(axes, spatial, k, s, d, crop, op):
            c.lines += explain_transposed_length(length, kk, ss, cb, ca, dd, oo, axis)
        per_in = cout // self.groups
        kernel_text = prod_text(k)
        bias = cout if self.bias else 0
        weights = cin * per_in * math.prod(k)
        c.result("params", f"C_in·(C_out/groups)·{'·'.join('k' + a for a in axes)}"
                 + (" + C_out" if self.bias else "") + f" = {cin}·{per_in}·{kernel_text}"
                 + (f" + {cout}" if self.bias else ""), weights + bias, facts.params)
        macs = batch * math.prod(spatial) * cin * per_in * math.prod(k)
        c.result("MACs", f"N·{'·'.join(a + '_in' for a in axes)}·C_in·(C_out/groups)·"
                 f"{'·'.join('k' + a for a in axes)} (counted on input positions: each input value meets each weight "
                 f"once) = {prod_text([batch, *spatial, cin, per_in])}·{kernel_text}", macs, facts.macs)
        bias_adds = batch * math.prod(out) * cout if self.bias else 0
        c.result("FLOPs", f"2·MACs + bias adds (N·{'·'.join(a + '_out' for a in axes)}·C_out) = 2·{n(macs)} + "
                 f"{n(bias_adds)}", 2 * macs + bias_adds, facts.flops)

    def explain_field(self, c: Explanation, facts: Facts, input_rf) -> None:
        """No worked receptive-field lines: the transposed field is not the window formula (see the rule)."""


@register_layer
class ConvTranspose1d(FusedActivation, _ConvTransposeBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["conv_transpose1d"] = "conv_transpose1d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv1DTranspose": {"padding": "valid"}}


@register_layer
class ConvTranspose2d(FusedActivation, _ConvTransposeBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["conv_transpose2d"] = "conv_transpose2d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv2DTranspose": {"padding": "valid"}}


@register_layer
class ConvTranspose3d(FusedActivation, _ConvTransposeBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["conv_transpose3d"] = "conv_transpose3d"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Conv3DTranspose": {"padding": "valid"}}
