"""Layers that merge several inputs: ``add`` and ``mul`` (element-wise, with NumPy/PyTorch broadcasting), ``sub``
and ``div`` (the same for exactly two inputs, first − second and first / second) and ``concat`` (along one dim, by
default the channels).

FLOPs: (inputs − 1)·output elements for add and mul, 1 per output element for sub and div; concat is a copy (0).
The receptive field after a merge is the union of its inputs': the whole input when one input's is (a
squeeze-and-excitation gate), with the jump of the inputs aligned with the output; else the largest per dim, with a
note when the paths differ (see :func:`merge_rf`).
"""


import math
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field

from ..errors import NumericError, layer_label
from ..explain import Explanation, n, prod_text
from ..notes import Routine
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Shape,
    Tensor,
    elementwise_backward,
    fmt_dims,
    fmt_shape,
    normalize_dim,
    numel,
)
from .base import GradFlow, Int, LayerBase, LayerMixin, Saved, _alias, register_layer

__all__ = ['Add', 'Mul', 'Sub', 'Div', 'Concat']


def broadcast_shapes(shapes: list[Shape]) -> Optional[Shape]:
    """NumPy/PyTorch broadcasting; ``None`` when the shapes are incompatible.

    >>> broadcast_shapes([(1, 64, 1, 1), (1, 64, 7, 7)])
    (1, 64, 7, 7)
    >>> broadcast_shapes([(1, 64, 7, 7), (1, 32, 7, 7)]) is None
    True
    """
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(-rank, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def merge_rf(inputs: list[Tensor], output_shape: Optional[Shape] = None, channels_last: bool = False
             ) -> tuple[Optional[ReceptiveField], list[str]]:
    """Receptive field after a merge: the union of its inputs' fields.

    An output position of an element-wise merge (``output_shape`` given) reads one position of each input: the
    same position of an input aligned with the output, and position 0 of an input broadcast along a spatial dim
    (a squeeze-and-excitation gate [N, C, 1, 1]). The merged field is the whole input when one input's is (the
    union contains it), with the jump of the inputs aligned with the output in each dim — a broadcast gate's jump
    says nothing about the output's positions. A broadcast input whose field is not the whole input ends the field
    (the union then differs from position to position). Otherwise, and for concat (no ``output_shape``), the
    largest field in each dim, with a note when the paths do not line up.
    """
    fields = [t.rf for t in inputs if t.rf is not None]
    if len(fields) != len(inputs) or len({len(f.size) for f in fields}) != 1:
        return None, []
    rank = len(fields[0].size)
    aligned = [[True] * rank for _ in inputs]             # per input, per field dim: not broadcast to the output
    if output_shape is not None and len(output_shape) == rank + 2:
        out = _spatial(output_shape, channels_last)
        aligned = [[a == b for a, b in zip(_spatial(t.shape, channels_last), out)] for t in inputs]
    if any(f.whole for f in fields):
        # each dim's jump from an input aligned with the output there (one is: a size the output has), the widest
        jump = tuple(max((f for f, a in zip(fields, aligned) if a[i]), key=lambda f: f.size[i]).jump[i]
                     for i in range(rank))
        return ReceptiveField.whole_input(next(f for f in fields if f.whole).size, jump), []
    broadcast = [t.name or f"input {i + 1}" for i, (t, a) in enumerate(zip(inputs, aligned)) if not all(a)]
    if broadcast:
        return None, [f"receptive field not reported: {', '.join(broadcast)} is broadcast along a spatial dim (size "
                      f"1) and what it sees is not the whole input: each output position sees its own region plus "
                      f"that input's fixed one"]
    if any(not f.aligned_grid for f in fields) and len(set(fields)) != 1:
        # a position's field is the union of its paths' fields; on an uneven or fractional grid their offsets
        # vary from position to position, so neither the largest nor a sum is exact
        return None, []
    if len(set(fields)) == 1:
        return fields[0], []
    # Largest per spatial dim (a wide-but-short field and a tall-but-narrow one give the larger of each), with the
    # jump and centre of the path that field comes from.
    per_dim = [max(fields, key=lambda f: f.size[i]) for i in range(len(fields[0].size))]
    widest = ReceptiveField(tuple(f.size[i] for i, f in enumerate(per_dim)),
                            tuple(f.jump[i] for i, f in enumerate(per_dim)),
                            tuple(f.start2[i] for i, f in enumerate(per_dim)))
    note = Routine("inputs have different receptive fields (" + "; ".join(
        f"{fmt_dims(int(math.ceil(v)) for v in f.size)} jump {fmt_dims(f.jump)}" for f in fields)
        + "): reporting the largest in each dim")   # the documented convention: routine
    return widest, [note]


def _spatial(shape: Shape, channels_last: bool) -> Shape:
    return shape[1:-1] if channels_last else shape[2:]


class _ElementwiseMerge(LayerMixin):
    """Element-wise sum or product of two or more inputs, with broadcasting."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    #: the word for the operation in explanations, and the NumPy ufunc's name
    operation: ClassVar[str] = "sum"
    ufunc: ClassVar[str] = "add"

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "element-wise merge: each input gradient is the output gradient, scaled or summed "
                                    "back over broadcast dims")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        shapes = [t.shape for t in inputs]
        out = broadcast_shapes(shapes)
        if out is None:
            raise ctx.fail(f"cannot {self.type_name} shapes {', '.join(fmt_shape(s) for s in shapes)} "
                           f"(inputs {self.inputs}): sizes must match or be 1 in every dim")
        if any(len(s) != len(out) for s in shapes):
            raise ctx.fail(f"cannot {self.type_name} shapes {', '.join(fmt_shape(s) for s in shapes)}: "
                           f"inputs of different rank")
        rf, notes = merge_rf(inputs, out, ctx.channels_last)
        return Facts(output_shape=out, flops=(len(inputs) - 1) * numel(out), rf=rf, notes=notes)

    def forward(self, step, xs, params, env):
        import numpy as np

        ufunc = getattr(np, self.ufunc)
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        # accumulate into an input that dies here and already has the output's shape, else into a new array
        target = next((i for i, x in enumerate(xs) if env.overwritable[i] and x.shape == shape), None)
        order = list(range(len(xs)))
        if target is not None:
            order.remove(target)
            order.insert(0, target)
        out = ufunc(xs[order[0]], xs[order[1]], out=xs[target] if target is not None else None)
        for i in order[2:]:
            out = ufunc(out, xs[i], out=out if out.shape == shape else None)
        return out

    def saved_for_backward(self, step, grads: GradFlow) -> Optional[list[Saved]]:
        return []                   # a sum's gradient is the output's, to every input: nothing kept (subtract too)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        elements = math.prod(out)
        shapes = ", ".join(str(list(s)) for s in input_shapes)
        c.result("FLOPs", f"element-wise {self.operation} of {shapes} (broadcast) → {out}: (inputs − 1)·elements = "
                 f"{len(input_shapes) - 1}·{n(elements)}", (len(input_shapes) - 1) * elements, facts.flops)


@register_layer
class Add(_ElementwiseMerge, LayerBase):
    """Element-wise sum of two or more inputs, with NumPy/PyTorch broadcasting."""
    type: Literal["add"] = "add"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Add": {}}


@register_layer
class Mul(_ElementwiseMerge, LayerBase):
    """Element-wise product with broadcasting (e.g. a squeeze-and-excitation gate [N, C, 1, 1] × [N, C, H, W])."""
    operation: ClassVar[str] = "product"
    ufunc: ClassVar[str] = "multiply"
    type: Literal["mul"] = "mul"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Multiply": {}}

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # x₀·x₁·…: torch multiplies pairwise, left to right; each multiply keeps one operand for the other's
        # gradient (an operand is kept only when the other needs a gradient: measured)
        saved: list[Saved] = []
        shapes = step.input_shapes
        left_grad, left = grads.inputs[0], Saved("input", "input 0, for input 1's gradient", 0)
        for k in range(1, len(shapes)):
            if grads.inputs[k]:
                saved.append(left)
            if left_grad:
                saved.append(Saved("input", f"input {k}, for the gradient of the product before it", k))
            left_grad = left_grad or grads.inputs[k]
            product = broadcast_shapes(list(shapes[:k + 1]))
            left = Saved("extra", f"the product of inputs 0..{k}, for input {k + 1}'s gradient",
                         numel=numel(product or ()))
        return saved


class _BinaryMerge(_ElementwiseMerge):
    """Element-wise operation of exactly two inputs whose order matters (first − second, first / second), with
    broadcasting: 1 FLOP per output element."""
    max_inputs: ClassVar[Optional[int]] = 2
    #: the operation's sign in explanations
    symbol: ClassVar[str]

    def forward(self, step, xs, params, env):
        import numpy as np

        ufunc = getattr(np, self.ufunc)
        shape = np.broadcast_shapes(xs[0].shape, xs[1].shape)
        # write into an input that dies here and already has the output's shape (either one: a ufunc may write
        # into its own operand), else into a new array; the operands keep their order
        target = next((i for i, x in enumerate(xs) if env.overwritable[i] and x.shape == shape), None)
        return ufunc(xs[0], xs[1], out=xs[target] if target is not None else None)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        elements = math.prod(out)
        first, second = (str(list(s)) for s in input_shapes)
        c.add(f"element-wise {self.operation}: {first} {self.symbol} {second} (broadcast) → {out}")
        c.result("FLOPs", f"1 per output element · {prod_text(out)}", elements, facts.flops)


@register_layer
class Sub(_BinaryMerge, LayerBase):
    """Element-wise difference first − second, with NumPy/PyTorch broadcasting (``torch.sub``, ONNX Sub, Keras'
    Subtract)."""
    operation: ClassVar[str] = "difference"
    ufunc: ClassVar[str] = "subtract"
    symbol: ClassVar[str] = "−"
    type: Literal["sub"] = "sub"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Subtract": {}}


@register_layer
class Div(_BinaryMerge, LayerBase):
    """Element-wise quotient first / second, with NumPy/PyTorch broadcasting (``torch.div``, ONNX Div). A divisor
    holding zeros is an error in ``run``/``verify`` (the quotient would be infinite or NaN)."""
    operation: ClassVar[str] = "quotient"
    ufunc: ClassVar[str] = "divide"
    symbol: ClassVar[str] = "/"
    type: Literal["div"] = "div"

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # d(a/b)/da = 1/b keeps b; d(a/b)/db = −a/b² keeps a and b (measured)
        saved = [Saved("input", "the divisor b, for both gradients", 1)] if any(grads.inputs) else []
        if grads.inputs[1]:
            saved.insert(0, Saved("input", "the dividend a, for the divisor's gradient", 0))
        return saved

    def forward(self, step, xs, params, env):
        import numpy as np

        divisor = xs[1]
        zeros = divisor.size - int(np.count_nonzero(divisor))
        if zeros:
            raise NumericError(f"{layer_label(step.index, step.name, self.type_name)}: division by zero: the divisor "
                               f"(input {step.inputs[1]!r}) holds {zeros:,} zero(s) of its {divisor.size:,} values")
        return super().forward(step, xs, params, env)


@register_layer
class Concat(LayerBase):
    """Concatenation along ``dim`` (default: the channel dim of the network's layout)."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["concat"] = "concat"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Concatenate": {"dim": -1}}     # Keras' axis=-1
    dim: Optional[Int] = Field(None, validation_alias=_alias("dim", "axis"),
                               description="dim to join along (negative counts from the end); default: the channel "
                                           "dim (1 for NCHW, the last for NHWC)")

    keeps_finite = True

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                                   # each input's gradient is a slice of the output's

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "concatenation: the gradient split back")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        shapes = [t.shape for t in inputs]
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ctx.fail(f"cannot concat inputs of different rank: {', '.join(fmt_shape(s) for s in shapes)}")
        default = -1 if ctx.channels_last else 1
        dim = normalize_dim(default if self.dim is None else self.dim, rank, "dim", shapes[0], ctx)
        if dim == 0:
            raise ctx.fail("dim 0 is the batch dim; concatenating along it is not supported")
        for s in shapes[1:]:
            if any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != dim):
                raise ctx.fail(f"cannot concat {', '.join(fmt_shape(s) for s in shapes)} along dim {dim}: "
                               f"every other dim must match")
        out = list(shapes[0])
        out[dim] = sum(s[dim] for s in shapes)
        rf, notes = merge_rf(inputs)
        return Facts(output_shape=tuple(out), rf=rf, notes=notes, geometry={"dim": dim})

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.concatenate(xs, axis=step.facts.geometry["dim"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        dim = facts.geometry["dim"]
        out = list(facts.output_shape)
        sizes = " + ".join(str(s[dim]) for s in input_shapes)
        c.add(f"concat along dim {dim}: {sizes} = {out[dim]} → {out}; no arithmetic (a copy)")
