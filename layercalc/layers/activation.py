"""Element-wise layers: activations (``relu``, ``relu6``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``gelu``,
``silu``/``swish``, ``hardswish``, ``hardsigmoid``, ``softmax``) and the layers that are the identity at inference
(``dropout``, ``identity``).

The shape is unchanged; there are no parameters and no MACs. FLOPs = a fixed count per element (each class's
``flops_per_element``, written out in docs/conventions.md), transcendental functions (exp, tanh, erf) counting 1.
"""


import math
from typing import ClassVar, Literal

from pydantic import Field

from ..explain import Explanation, prod_text
from ..rules import Context, Facts, Tensor, normalize_dim, numel
from .base import Bool, Float, Int, LayerBase, Probability, _alias, register_layer

__all__ = ['Dropout', 'ReLU', 'ReLU6', 'LeakyReLU', 'Sigmoid', 'Tanh', 'GELU', 'SiLU', 'Hardswish', 'Hardsigmoid',
           'Softmax', 'Identity']


class _Elementwise(LayerBase):
    """Shape unchanged, ``flops_per_element`` FLOPs per element, receptive field passed on."""
    flops_per_element: ClassVar[int] = 0

    def element_flops(self) -> int:
        return self.flops_per_element

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        return Facts(output_shape=x.shape, flops=self.element_flops() * numel(x.shape), rf=x.rf,
                     geometry=self.geometry(x, ctx))

    def geometry(self, x: Tensor, ctx: Context) -> dict:
        return {}


# ------------------------------------------------------------------------------------ identity at inference

class _Passthrough(_Elementwise):
    keeps_finite = True

    def forward(self, step, xs, params, env):
        return xs[0]

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"{self.type_name}: identity at inference, shape unchanged {list(input_shapes[0])}; params 0, FLOPs 0")


@register_layer
class Dropout(_Passthrough):
    """Identity at inference; counted as zero FLOPs."""
    type: Literal["dropout"] = "dropout"
    p: Probability = Field(0.5, validation_alias=_alias("p", "rate"))
    inplace: Bool = False


# --------------------------------------------------------------------------------------------- activations

class _Activation(_Elementwise):
    inplace: Bool = Field(False, description="accepted for PyTorch familiarity; no effect on any figure")

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize, 0        # one input-sized temporary at most

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        per = self.element_flops()
        extra = f" along dim {facts.geometry['dim']}" if "dim" in facts.geometry else ""
        c.result("FLOPs", f"{self.type_name}{extra}: shape unchanged, {per} per element · {prod_text(out)}",
                 per * math.prod(out), facts.flops)


@register_layer
class ReLU(_Activation):
    type: Literal["relu"] = "relu"
    flops_per_element: ClassVar[int] = 1             # max(x, 0)
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.maximum(xs[0], 0, out=env.out_for(xs[0]))


@register_layer
class ReLU6(_Activation):
    type: Literal["relu6"] = "relu6"
    flops_per_element: ClassVar[int] = 2             # min(max(x, 0), 6)
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.clip(xs[0], 0, 6, out=env.out_for(xs[0]))


@register_layer
class LeakyReLU(_Activation):
    type: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: Float = Field(0.01, validation_alias=_alias("negative_slope", "alpha"))
    flops_per_element: ClassVar[int] = 2             # compare, multiply

    def forward(self, step, xs, params, env):
        from ..kernels import leaky_relu
        return leaky_relu(xs[0], self.negative_slope, out=env.out_for(xs[0]))


@register_layer
class Sigmoid(_Activation):
    type: Literal["sigmoid"] = "sigmoid"
    flops_per_element: ClassVar[int] = 3             # 1 / (1 + exp(−x)): exp, add, divide
    keeps_finite = True

    def forward(self, step, xs, params, env):
        from ..kernels import sigmoid
        return sigmoid(xs[0], out=env.out_for(xs[0]))


@register_layer
class Tanh(_Activation):
    type: Literal["tanh"] = "tanh"
    flops_per_element: ClassVar[int] = 1
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.tanh(xs[0], out=env.out_for(xs[0]))


@register_layer
class GELU(_Activation):
    type: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"

    def element_flops(self) -> int:
        # 0.5·x·(1 + erf(x/√2)): divide, erf, add, 2 multiplies; the tanh form
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): x³ and ·0.044715 (3), add, mul, tanh, add, 2 multiplies
        return 9 if self.approximate == "tanh" else 5

    def forward(self, step, xs, params, env):
        from ..kernels import gelu
        return gelu(xs[0], self.approximate, out=env.out_for(xs[0]))

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        from ..kernels import GELU_BLOCK_BYTES_PER_ELEMENT, elementwise_scratch  # computed in blocks (erf: float64)
        return elementwise_scratch(numel(step.input_shapes[0]), GELU_BLOCK_BYTES_PER_ELEMENT), 0


@register_layer
class SiLU(_Activation):
    type: Literal["silu", "swish"] = "silu"
    flops_per_element: ClassVar[int] = 4             # x·sigmoid(x)
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np

        from ..kernels import sigmoid
        return np.multiply(xs[0], sigmoid(xs[0]), out=env.out_for(xs[0]))


@register_layer
class Hardswish(_Activation):
    type: Literal["hardswish"] = "hardswish"
    flops_per_element: ClassVar[int] = 5             # x·min(max(x + 3, 0), 6)/6: add, 2 compares, multiply, divide
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np

        from ..kernels import hardsigmoid
        return np.multiply(xs[0], hardsigmoid(xs[0]), out=env.out_for(xs[0]))


@register_layer
class Hardsigmoid(_Activation):
    type: Literal["hardsigmoid"] = "hardsigmoid"
    flops_per_element: ClassVar[int] = 4             # min(max(x + 3, 0), 6)/6: add, 2 compares, divide
    keeps_finite = True

    def forward(self, step, xs, params, env):
        from ..kernels import hardsigmoid
        return hardsigmoid(xs[0], out=env.out_for(xs[0]))


@register_layer
class Softmax(_Activation):
    type: Literal["softmax"] = "softmax"
    dim: Int = Field(-1, validation_alias=_alias("dim", "axis"))
    flops_per_element: ClassVar[int] = 5             # max-subtract (compare, subtract), exp, sum (add), divide
    keeps_finite = True

    def geometry(self, x: Tensor, ctx: Context) -> dict:
        return {"dim": normalize_dim(self.dim, len(x.shape), "dim", x.shape, ctx)}

    def forward(self, step, xs, params, env):
        from ..kernels import softmax
        return softmax(xs[0], step.facts.geometry["dim"])


@register_layer
class Identity(_Passthrough):
    type: Literal["identity"] = "identity"
