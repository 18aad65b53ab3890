"""The dense layer: ``linear`` (Keras: ``dense``), applied to the last dimension like ``torch.nn.Linear``.

Everything about it is here: the description, the shape/cost rule, its parameters, the forward step and the worked
explanation. Formulas (docs/conventions.md): params = in·out + out; MACs = rows·in·out where rows is every dim but
the last; FLOPs = 2·MACs + rows·out bias adds.
"""


import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field

from ..explain import Explanation, n
from ..rules import Backward, Context, Facts, Gradients, Tensor, check_declared, fmt_shape, numel, product_backward
from .activation import ActivationName, activation_field
from .base import (
    Bool,
    GradFlow,
    LayerBase,
    LayerMixin,
    ParamSpec,
    PositiveInt,
    Saved,
    _alias,
    keras_variables,
    register_layer,
)
from .fused import FusedActivation

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['Linear']


class _Dense(LayerMixin):
    """The dense layer's own rule, forward step and explanation; :class:`Linear` adds its fused activation
    (:class:`~layercalc.layers.fused.FusedActivation` composes the two)."""
    if TYPE_CHECKING:
        # fields of Linear, declared there (in the order of the schema and the calculator)
        in_features: Optional[int]
        out_features: int
        bias: bool

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input of at least 2 dims [N, ..., features], got {fmt_shape(x.shape)}")
        fin = x.shape[-1]
        check_declared(self.in_features, fin, "in_features", x, ctx)
        rows = numel(x.shape[:-1])
        fout = self.out_features
        macs = rows * fin * fout
        notes = []
        if len(x.shape) > 2 and x.name == "input":
            # A dense layer straight on a multi-dimensional input ([N, 28, 28]) is a classic misreading: people often
            # mean one layer over all 784 inputs. (Inside a network, per-position layers — a transformer's — are
            # the intent, and say nothing.)
            features = numel(x.shape[1:])
            notes.append(f"applied to the last dim only, like torch.nn.Linear and Keras Dense: {fin} input features "
                         f"at each of {rows // x.shape[0]:,} positions of {fmt_shape(x.shape)}, not "
                         f"{'·'.join(str(v) for v in x.shape[1:])} = {features:,} features; for one dense layer "
                         f"over all {features:,}, flatten first (on the command line: --input "
                         f"{'*'.join(str(v) for v in x.shape[1:])})")
        rf = None
        if x.rf is not None:
            # over the channels (the last dim of an NHWC tensor, or of [N, C] past a global pool) the layer acts
            # at each position on its own: field and jump unchanged; over a spatial dim it mixes the positions
            if len(x.shape) == 2 or (ctx.channels_last and len(x.shape) == len(x.rf.size) + 2):
                rf = x.rf
            else:
                notes.append("receptive field not reported past this layer: it mixes every position of the last "
                             "dim, a spatial dim in this layout")
        return Facts(output_shape=(*x.shape[:-1], fout),
                     params=fin * fout + (fout if self.bias else 0),
                     macs=macs, flops=2 * macs + (rows * fout if self.bias else 0), rf=rf, notes=notes)

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        fin, fout = step.input_shapes[0][-1], self.out_features
        specs = {"weight": ParamSpec((fout, fin), "[out_features, in_features]", "uniform", fin)}
        if self.bias:
            specs["bias"] = ParamSpec((fout,), "[out_features]", "uniform", fin)
        return specs

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # the weight's gradient is gradᵀ·x: x is kept when the weight is trained (a frozen linear keeps only its
        # weight, which is a parameter: measured, torch 2.13's addmm/mm save mat1 only for mat2's gradient)
        return [Saved("input", "its input x, for the weight's gradient gradᵀ·x")] if grads.params else []

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        # Keras' kernel is [in, out]: x·kernel; PyTorch's weight [out, in]: x·weightᵀ
        v = keras_variables(step, class_name, variables, {"": ["kernel", "bias"][:1 + self.bias]})
        return {"weight": v["kernel"].T, **({"bias": v["bias"]} if self.bias else {})}

    def forward(self, step, xs, params, env):
        from ..kernels import linear
        return linear(xs[0], params["weight"], params.get("bias"), env.counter)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        # the 2-D view's product before the reshape, and the weights made for the run (unless passed in)
        return 2 * numel(step.input_shapes[0]) * itemsize + (0 if weights_given else step.facts.params * itemsize), 0

    def backward(self, step, grads: Gradients) -> Backward:
        x = step.input_shapes[0]
        fin, fout, rows = x[-1], self.out_features, numel(x[:-1])
        return product_backward(rows * fin * fout, grads, f"dX = dY·W: rows·out·in = {rows}·{fout}·{fin}",
                                f"dW = dYᵀ·X: out·rows·in = {fout}·{rows}·{fin}",
                                rows * fout if self.bias else 0, f"db = Σ_rows dY: rows·out = {rows}·{fout}")

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        fin, fout = x[-1], self.out_features
        rows = math.prod(x[:-1])
        bias = fout if self.bias else 0
        c.add(f"applies to the last dim: [{', '.join(map(str, x))}] → [{', '.join(map(str, facts.output_shape))}]")
        c.result("params", "in·out" + (" + out" if self.bias else "") + f" = {fin}·{fout}"
                 + (f" + {fout}" if self.bias else ""), fin * fout + bias, facts.params)
        rows_text = "N" if len(x) == 2 else "·".join(["N", *(f"d{i}" for i in range(1, len(x) - 1))])
        c.result("MACs", f"rows·in·out with rows = {rows_text} = {rows}: {rows}·{fin}·{fout}", rows * fin * fout,
                 facts.macs)
        adds = rows * fout if self.bias else 0
        c.result("FLOPs", f"2·MACs + bias adds (rows·out) = 2·{n(rows * fin * fout)} + {n(adds)}",
                 2 * rows * fin * fout + adds, facts.flops)


@register_layer
class Linear(FusedActivation, _Dense, LayerBase):
    """Applies to the last dimension, like ``torch.nn.Linear`` (works on [N, L, F] too)."""
    type: Literal["linear", "dense"] = "linear"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Dense": {}}
    in_features: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    out_features: PositiveInt = Field(validation_alias=_alias("out_features", "units"))
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))
    activation: ActivationName = activation_field()
