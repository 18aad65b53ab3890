"""Element-wise layers: activations (``relu``, ``relu6``, ``leaky_relu``, ``prelu`` (learned slopes), ``sigmoid``,
``tanh``, ``gelu``, ``silu``/``swish``, ``hardswish``, ``hardsigmoid``, ``softmax``, and ``activation`` naming one
of them as Keras' Activation layer does), the layers that are the identity at inference (``dropout``, ``identity``,
``augmentation``: Keras' random augmentation layers), and arithmetic with constants (``rescaling``: x·scale +
offset, ``pow``: x to a constant power, ``clamp``/``clip``).

The shape is unchanged; there are no MACs, and no parameters except ``prelu``'s slopes. FLOPs = a fixed count per
element (each class's ``flops_per_element``, written out in docs/conventions.md), transcendental functions (exp,
tanh, erf) counting 1.

Fused activations: Keras' ``activation`` argument of Dense, Conv*, DepthwiseConv*, SeparableConv* and Conv*Transpose
(:func:`activation_field`) applies one of these after the layer's own step. :data:`KERAS_ACTIVATIONS` maps Keras'
activation names to these types; :class:`layercalc.layers.fused.FusedActivation` composes it with the layer, for
every layer type that has the field.
"""


import math
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..explain import Explanation, prod_text
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    Tensor,
    elementwise_backward,
    normalize_dim,
    numel,
)
from .base import (
    Bool,
    DataFormat,
    Float,
    GradFlow,
    Int,
    LayerBase,
    LayerMixin,
    ParamSpec,
    PositiveInt,
    Probability,
    Saved,
    _alias,
    data_format_field,
    keras_variables,
    parse_layer,
    register_layer,
    shown,
)

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['Dropout', 'ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'Sigmoid', 'Tanh', 'GELU', 'SiLU', 'Hardswish',
           'Hardsigmoid', 'Softmax', 'Identity', 'Augmentation', 'Rescaling', 'Activation', 'KERAS_ACTIVATIONS',
           'activation_field', 'activation_layer', 'Pow', 'Clamp', 'Softcap', 'SOFTCAP_FLOPS', 'softcap']


class _Elementwise(LayerMixin):
    """Shape unchanged, ``flops_per_element`` FLOPs per element, receptive field passed on."""
    flops_per_element: ClassVar[int] = 0

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "element-wise: the derivative applied to the output gradient")

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
    output_storage: ClassVar[str] = "view"

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []

    def forward(self, step, xs, params, env):
        return xs[0]

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"{self.type_name}: identity at inference, shape unchanged {list(input_shapes[0])}; params 0, FLOPs 0")


@register_layer
class Dropout(_Passthrough, LayerBase):
    """Identity at inference; counted as zero FLOPs."""
    type: Literal["dropout"] = "dropout"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {
        "Dropout": {}, "SpatialDropout1D": {}, "SpatialDropout2D": {}, "SpatialDropout3D": {}}
    p: Probability = Field(0.5, validation_alias=_alias("p", "rate"))
    inplace: Bool = Field(False, description="PyTorch's inplace: the input is multiplied by the mask in place (its "
                                             "storage is the output's: what training keeps)")

    @property
    def output_storage(self) -> str:                              # type: ignore[override]
        # p = 0: torch returns the input itself; inplace: x.mul_(mask) writes into the input's storage (measured)
        return "view" if self.p == 0 or self.inplace else "new"

    per_channel: Bool = Field(False, description="zeroes whole channels (PyTorch's Dropout1d/2d/3d): its mask has "
                                                 "one element per example and channel; what training keeps")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        if self.p == 0 or not grads.inputs[0]:
            return []
        # CPU: input · (bernoulli mask / (1 − p)), the mask in the input's dtype, kept by the multiply (measured);
        # CUDA's fused native_dropout keeps a bool mask instead (1 byte per element). Per channel (feature_dropout):
        # the mask is [N, C, 1, …], broadcast over the positions (measured)
        shape = step.facts.output_shape
        if self.per_channel:
            channels = shape[-1] if grads.channels_last else shape[1]
            return [Saved("extra", f"the per-channel dropout mask [{shape[0]}, {channels}] (scaled by "
                                   f"1/(1 − {self.p:g})), in the activations' dtype", numel=shape[0] * channels)]
        return [Saved("extra", f"the dropout mask (scaled by 1/(1 − {self.p:g})), in the activations' dtype as "
                               f"PyTorch's CPU dropout keeps it", numel=numel(shape))]


# --------------------------------------------------------------------------------------------- activations

class _Activation(_Elementwise, LayerBase):
    inplace: Bool = Field(False, description="accepted for PyTorch familiarity; no effect on any figure")
    #: what its backward reads (measured with saved_tensors_hooks, torch 2.13): ``"input"`` (GELU, SiLU, the
    #: clamps: the derivative is a function of x) or ``"output"`` (ReLU, sigmoid, tanh, softmax: of y)
    keeps_for_backward: ClassVar[str] = "input"

    def saved_for_backward(self, step, grads: GradFlow) -> Optional[list[Saved]]:
        if not grads.inputs[0]:
            return []
        kind = self.keeps_for_backward
        return [Saved("input" if kind == "input" else "output",
                      f"its {kind}: {self.type_name}'s derivative is computed from {'x' if kind == 'input' else 'y'}")]

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
    """max(x, 0); with Keras' arguments, min(max(x, 0), max_value) and negative_slope·x below 0."""
    type: Literal["relu"] = "relu"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"ReLU": {}}
    max_value: Optional[Float] = Field(None, ge=0, description="Keras: clip the output at this value (6: relu6)")
    negative_slope: Float = Field(0.0, ge=0, description="Keras: slope below 0 (a leaky relu)")
    threshold: Float = Field(0.0, description="Keras' threshold: only 0 is supported")
    keeps_finite = True

    @field_validator("threshold")
    @classmethod
    def _zero_threshold(cls, value: float) -> float:
        if value != 0:
            raise ValueError(f"threshold {value}: only 0 is supported (Keras' default)")
        return value

    @property
    def keeps_for_backward(self) -> str:                          # type: ignore[override]
        # max(x, 0) keeps y (threshold_backward on the result); with a clip or a slope torch runs hardtanh or
        # leaky_relu, which keep x
        return "output" if self.max_value is None and self.negative_slope == 0 else "input"

    def element_flops(self) -> int:
        # max(x, 0) 1; the clip at max_value 1; negative_slope·x for x < 0: the multiply 1
        return 1 + (self.max_value is not None) + (self.negative_slope != 0)

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        if self.negative_slope:
            y = np.where(x >= 0, x, x * x.dtype.type(self.negative_slope))
        else:
            y = np.maximum(x, 0, out=env.out_for(x))
        if self.max_value is not None:
            np.minimum(y, y.dtype.type(self.max_value), out=y)
        return y


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
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"LeakyReLU": {"negative_slope": 0.3}}   # Keras' default
    negative_slope: Float = Field(0.01, validation_alias=_alias("negative_slope", "alpha"))
    flops_per_element: ClassVar[int] = 2             # compare, multiply

    def forward(self, step, xs, params, env):
        from ..kernels import leaky_relu
        return leaky_relu(xs[0], self.negative_slope, out=env.out_for(xs[0]))


@register_layer
class PReLU(_Activation):
    """``max(0, x) + a·min(0, x)`` with learned slopes ``a`` (``torch.nn.PReLU``, ``F.prelu``, Keras' PReLU).

    PyTorch's form: ``num_parameters`` slopes, 1 (shared) or one per channel on the layout's channel axis (dim 1
    channels first, the last dim channels last), parameter ``weight`` ``[num_parameters]``. Keras' form
    (``shared_axes`` given, Keras' numbering: 1 is the first dim after the batch): one slope per element of the
    input without the batch, shared along ``shared_axes`` — ``weight`` of that shape with 1 on the shared dims."""
    type: Literal["prelu"] = "prelu"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"PReLU": {"shared_axes": [], "init": 0.0}}
    num_parameters: PositiveInt = Field(1, description="PyTorch's: 1 (one slope) or the channel count")
    init: Float = Field(0.25, description="the slopes' initial value (PyTorch's 0.25; Keras' zeros)")
    shared_axes: Optional[list[PositiveInt]] = Field(
        None, description="Keras' form: the dims (1 = the first after the batch) sharing one slope; [] = a slope per "
                          "element; null: PyTorch's num_parameters form")
    flops_per_element: ClassVar[int] = 2             # compare, multiply (as leaky_relu)

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' shared_axes may be one int (``shared_axes=1``); the alpha's initializer, regularizer and
        constraint are dropped like every layer's."""
        axes = fields.get("shared_axes")
        if isinstance(axes, int) and not isinstance(axes, bool):
            fields = {**fields, "shared_axes": [axes]}
        return super().from_keras(class_name, fields)

    def slope_shape(self, shape: tuple[int, ...], ctx: Context) -> tuple[int, ...]:
        if self.shared_axes is not None:
            if self.num_parameters != 1:
                raise ctx.fail("give num_parameters (PyTorch's form) or shared_axes (Keras'), not both")
            rank = len(shape) - 1
            bad = [a for a in self.shared_axes if a > rank]
            if bad:
                raise ctx.fail(f"shared_axes {self.shared_axes}: the input {list(shape)} has dims 1…{rank} after "
                               f"the batch")
            return tuple(1 if d in self.shared_axes else size for d, size in enumerate(shape) if d)
        if self.num_parameters == 1:
            return (1,)
        if len(shape) < 2:
            raise ctx.fail(f"num_parameters {self.num_parameters}: the input {list(shape)} has no channel dim")
        channels = shape[-1] if ctx.channels_last else shape[1]
        if self.num_parameters != channels:
            raise ctx.fail(f"num_parameters {self.num_parameters} must be 1 or the input's {channels} channels")
        return (channels,)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        facts = super().infer(inputs, ctx)
        slopes = self.slope_shape(inputs[0].shape, ctx)
        facts.params = numel(slopes)
        facts.geometry["slopes"] = slopes
        return facts

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        slopes = step.facts.geometry["slopes"]
        return {"weight": ParamSpec(slopes, "[num_parameters]" if self.shared_axes is None else "[input dims, 1 where "
                                    "shared]", init=self.init)}

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        return {"weight": keras_variables(step, class_name, variables, {"": ["alpha"]})["alpha"]}

    def forward(self, step, xs, params, env):
        import numpy as np
        x, slope = xs[0], params["weight"]
        if self.shared_axes is not None:
            slope = slope.reshape((1, *slope.shape))       # over the input without the batch
        elif slope.size > 1:                                # one slope per channel, on the layout's channel axis
            shape = [1] * x.ndim
            shape[env.channel_axis] = slope.size
            slope = slope.reshape(shape)
        return np.where(x >= 0, x, x * slope.astype(x.dtype, copy=False))

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        slopes = facts.geometry["slopes"]
        how = ("Keras' shared_axes: one per element, shared on dims "
               f"{self.shared_axes}" if self.shared_axes is not None else
               "one per channel" if self.num_parameters > 1 else "one shared by all channels")
        c.result("params", f"slopes {list(slopes)} ({how})", math.prod(slopes), facts.params)
        c.result("FLOPs", f"{self.flops_per_element} per element (compare, multiply) · {prod_text(input_shapes[0])}",
                 self.flops_per_element * math.prod(input_shapes[0]), facts.flops)


@register_layer
class Sigmoid(_Activation):
    type: Literal["sigmoid"] = "sigmoid"
    keeps_for_backward: ClassVar[str] = "output"
    flops_per_element: ClassVar[int] = 3             # 1 / (1 + exp(−x)): exp, add, divide
    keeps_finite = True

    def forward(self, step, xs, params, env):
        from ..kernels import sigmoid
        return sigmoid(xs[0], out=env.out_for(xs[0]))


@register_layer
class Tanh(_Activation):
    type: Literal["tanh"] = "tanh"
    keeps_for_backward: ClassVar[str] = "output"
    flops_per_element: ClassVar[int] = 1
    keeps_finite = True

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.tanh(xs[0], out=env.out_for(xs[0]))


#: FLOPs of soft-capping per element: divide by the cap, tanh, multiply by the cap
SOFTCAP_FLOPS = 3


def softcap(x, cap: float, out=None):
    """``cap·tanh(x/cap)`` (NumPy): Gemma 2's soft-capping of attention scores and of the final logits."""
    import numpy as np
    y = np.divide(x, x.dtype.type(cap), out=out)
    np.tanh(y, out=y)
    return np.multiply(y, y.dtype.type(cap), out=y)


@register_layer
class Softcap(_Activation):
    """``cap·tanh(x/cap)``: Gemma 2's soft-capping of the final logits (``final_logit_softcapping``): smooth, bounded
    to (−cap, cap), close to x for |x| ≪ cap. FLOPs 3 per element (divide, tanh, multiply)."""
    type: Literal["softcap"] = "softcap"
    cap: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(description="the bound (Gemma 2: 30.0)")
    flops_per_element: ClassVar[int] = SOFTCAP_FLOPS
    keeps_finite = True

    def forward(self, step, xs, params, env):
        return softcap(xs[0], self.cap, out=env.out_for(xs[0]))

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        c.result("FLOPs", f"cap·tanh(x/cap), cap {self.cap:g}: divide, tanh, multiply = {SOFTCAP_FLOPS} per element "
                 f"· {prod_text(out)}", SOFTCAP_FLOPS * math.prod(out), facts.flops)


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
    keeps_for_backward: ClassVar[str] = "output"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Softmax": {}}
    dim: Int = Field(-1, validation_alias=_alias("dim", "axis"))
    flops_per_element: ClassVar[int] = 5             # max-subtract (compare, subtract), exp, sum (add), divide
    keeps_finite = True

    def geometry(self, x: Tensor, ctx: Context) -> dict:
        return {"dim": normalize_dim(self.dim, len(x.shape), "dim", x.shape, ctx)}

    def forward(self, step, xs, params, env):
        from ..kernels import softmax
        return softmax(xs[0], step.facts.geometry["dim"])


@register_layer
class Identity(_Passthrough, LayerBase):
    type: Literal["identity"] = "identity"


#: Keras' random augmentation layers: the identity at inference (``model(x, training=False)``, ``predict``); their
#: settings (factors, fill modes, seeds, value ranges) act in training only
KERAS_AUGMENTATIONS = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                       "RandomBrightness")


@register_layer
class Augmentation(_Passthrough, LayerBase):
    """A random data augmentation (Keras' RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast,
    RandomBrightness): the identity at inference, which is what layercalc counts — params 0, FLOPs 0, the shape
    unchanged, and a note saying so. Its training-time settings are not read."""
    type: Literal["augmentation"] = "augmentation"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {name: {} for name in KERAS_AUGMENTATIONS}
    kind: Optional[str] = Field(None, description="which augmentation (Keras' class name, e.g. RandomFlip): only "
                                                  "said in the note")
    data_format: DataFormat = data_format_field()

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' config keys (mode, factor, fill_mode, interpolation, value_range, seed, …) act in training only:
        the layer at inference is the identity whatever they say."""
        kept: dict[str, Any] = {key: fields[key] for key in ("name", "inputs", "trainable", "data_format")
                                if key in fields}
        return {**kept, "kind": class_name}

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        facts = super().infer(inputs, ctx)
        facts.notes.append(f"{self.kind or 'augmentation'}: the identity at inference (Keras' training=False); its "
                           f"random transform applies in training only")
        return facts


@register_layer
class Rescaling(_Elementwise, LayerBase):
    """``x·scale + offset`` with constant numbers (Keras' Rescaling; an ONNX Mul, Div, Add or Sub by a constant,
    such as attention's 1/√d): no parameters; FLOPs 1 per element for the multiply unless scale is 1, 1 for the add
    unless offset is 0."""
    type: Literal["rescaling"] = "rescaling"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Rescaling": {}}    # Keras' config: scale, offset
    scale: Float = Field(1.0, description="the constant factor (one number: Keras' per-channel lists are not "
                                          "supported)")
    offset: Float = Field(0.0, description="the constant added after the multiply (one number)")

    def element_flops(self) -> int:
        return int(self.scale != 1) + int(self.offset != 0)

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                        # a multiply by a number: the gradient is the number, nothing kept

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        y = np.multiply(x, x.dtype.type(self.scale), out=env.out_for(x)) if self.scale != 1 else x
        return np.add(y, y.dtype.type(self.offset), out=env.out_for(x) if y is x else y) if self.offset else y

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        per = self.element_flops()
        sign = "−" if self.offset < 0 else "+"
        c.result("FLOPs", f"x·{self.scale:g} {sign} {abs(self.offset):g}: {per} per element (a multiply unless scale "
                 f"is 1, an add unless offset is 0) · {prod_text(out)}", per * math.prod(out), facts.flops)


# ------------------------------------------------------------------------------- Keras' names of activations

#: Keras' activation names (the ``activation`` argument, the Activation layer) → the activation layer's fields;
#: None for "linear" (no activation). Keras' leaky_relu activation has slope 0.2 (its LeakyReLU layer: 0.3).
KERAS_ACTIVATIONS: dict[str, Optional[dict[str, Any]]] = {
    "linear": None, "relu": {"type": "relu"}, "relu6": {"type": "relu6"}, "sigmoid": {"type": "sigmoid"},
    "tanh": {"type": "tanh"}, "softmax": {"type": "softmax"}, "gelu": {"type": "gelu"}, "silu": {"type": "silu"},
    "swish": {"type": "silu"}, "hard_sigmoid": {"type": "hardsigmoid"}, "hardsigmoid": {"type": "hardsigmoid"},
    "hard_silu": {"type": "hardswish"}, "hard_swish": {"type": "hardswish"}, "hardswish": {"type": "hardswish"},
    "leaky_relu": {"type": "leaky_relu", "negative_slope": 0.2},
}


def _activation_name(value: Any) -> Any:
    """Before-validator of the ``activation`` field: a known name, lower-cased; "linear" → None."""
    if value is None:
        return None
    name = value.lower() if isinstance(value, str) else None
    if name not in KERAS_ACTIVATIONS:
        known = ", ".join(sorted(KERAS_ACTIVATIONS))
        raise PydanticCustomError("activation", "unknown or unsupported activation {value} (supported: {known})",
                                  {"value": shown(value), "known": known})
    return None if KERAS_ACTIVATIONS[name] is None else name


#: the ``activation`` field's type: a name of :data:`KERAS_ACTIVATIONS`, stored lower-case (None: no activation)
ActivationName = Annotated[Optional[str], BeforeValidator(_activation_name)]


def activation_field() -> Any:
    """The ``activation`` field of a layer with a fused activation (Keras' argument of Dense, Conv*, …)."""
    return Field(None, description="Keras' activation applied to the output (relu, sigmoid, softmax, gelu, …): no "
                                   "parameters, its FLOPs counted; linear or null: none")


@cache
def activation_layer(name: Optional[str]) -> Optional[LayerBase]:
    """The activation layer a Keras activation name stands for (None for none)."""
    fields = KERAS_ACTIVATIONS.get(name.lower()) if name is not None else None
    return None if fields is None else parse_layer(dict(fields), 0)


@register_layer
class Activation(_Activation):
    """Keras' Activation layer: the activation named by ``activation`` (relu, sigmoid, softmax, …; linear: none)."""
    type: Literal["activation"] = "activation"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Activation": {}}
    activation: ActivationName = Field(description="the activation's Keras name (relu, sigmoid, tanh, softmax, gelu, "
                                                   "silu/swish, hard_sigmoid, hard_silu, relu6, leaky_relu, linear)")

    @property
    def applied(self) -> Optional[LayerBase]:
        return activation_layer(self.activation)

    def element_flops(self) -> int:
        applied = self.applied
        return 0 if applied is None else applied.element_flops()  # type: ignore[attr-defined]

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        applied = self.applied
        if applied is None:
            return Facts(output_shape=inputs[0].shape, rf=inputs[0].rf)
        return applied.infer(inputs, ctx)

    def forward(self, step, xs, params, env):
        applied = self.applied
        return xs[0] if applied is None else applied.forward(step, xs, params, env)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        applied = self.applied
        return (0, 0) if applied is None else applied.scratch_bytes(step, itemsize, channels_last, weights_given)

    @property
    def output_storage(self) -> str:                              # type: ignore[override]
        return "view" if self.applied is None else "new"

    def saved_for_backward(self, step, grads: GradFlow) -> Optional[list[Saved]]:
        applied = self.applied
        return [] if applied is None else applied.saved_for_backward(step, grads)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        applied = self.applied
        if applied is None:
            c.add("activation linear: the identity; params 0, FLOPs 0")
        else:
            applied.explain(c, input_shapes, facts, channels_last)


# ------------------------------------------------------------------------------------ arithmetic with constants

@register_layer
class Pow(_Activation):
    """``x ** exponent`` with a constant exponent (``x ** 2``, ``torch.sqrt`` is 0.5, ``torch.rsqrt`` −0.5): no
    parameters; 1 FLOP per element (a multiply for the square, a power or square root otherwise, counted as one as
    every transcendental function is)."""
    type: Literal["pow"] = "pow"
    exponent: Float = Field(description="the constant power (2: the square, 0.5: the square root)")
    flops_per_element: ClassVar[int] = 1

    @property
    def keeps_for_backward(self) -> str:                          # type: ignore[override]
        return "output" if self.exponent in (0.5, -0.5) else "input"   # torch.sqrt, rsqrt: their result

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        if self.exponent == 2:
            return np.square(x, out=env.out_for(x))
        if self.exponent == 0.5:
            return np.sqrt(x, out=env.out_for(x))
        return np.power(x, x.dtype.type(self.exponent), out=env.out_for(x))


@register_layer
class Clamp(_Activation):
    """``min(max(x, min), max)`` with constant bounds, either one optional (``torch.clamp``, ``clip``,
    ``F.hardtanh``): no parameters; 1 FLOP per element for each bound given (relu is clamp(min=0), relu6
    clamp(0, 6))."""
    type: Literal["clamp", "clip"] = "clamp"
    min: Optional[Float] = Field(None, description="the lower bound (none: no lower bound)")
    max: Optional[Float] = Field(None, description="the upper bound (none: no upper bound)")
    keeps_finite = True

    @model_validator(mode="after")
    def _a_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (a clamp without bounds is the identity)")
        return self

    def element_flops(self) -> int:
        return int(self.min is not None) + int(self.max is not None)

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        low = None if self.min is None else x.dtype.type(self.min)
        high = None if self.max is None else x.dtype.type(self.max)
        if low is not None and high is not None and low > high:
            return np.full_like(x, high)             # torch: every element is max when min > max
        return np.clip(x, low, high, out=env.out_for(x))
