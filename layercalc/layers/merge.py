"""Layers that merge several inputs: ``add`` and ``mul`` (element-wise, with NumPy/PyTorch broadcasting) and
``concat`` (along one dim, by default the channels).

FLOPs: (inputs − 1)·output elements for add and mul; concat is a copy (0). The receptive field after a merge is the
largest of its inputs' per dim, with a note when the paths differ.
"""


import math
from typing import ClassVar, Literal, Optional

from pydantic import Field

from ..explain import Explanation, n
from ..rules import Context, Facts, ReceptiveField, Shape, Tensor, fmt_dims, fmt_shape, normalize_dim, numel
from .base import Int, LayerBase, _alias, register_layer

__all__ = ['Add', 'Mul', 'Concat']


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


def merge_rf(inputs: list[Tensor]) -> tuple[Optional[ReceptiveField], list[str]]:
    """Receptive field after a merge: the largest one, with a note when the paths do not line up."""
    fields = [t.rf for t in inputs if t.rf is not None]
    if len(fields) != len(inputs) or len({len(f.size) for f in fields}) != 1:
        return None, []
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
    note = ("inputs have different receptive fields (" + "; ".join(
        f"{fmt_dims(int(math.ceil(v)) for v in f.size)} jump {fmt_dims(f.jump)}" for f in fields)
        + "): reporting the largest in each dim")
    return widest, [note]


class _ElementwiseMerge(LayerBase):
    """Element-wise sum or product of two or more inputs, with broadcasting."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    #: the word for the operation in explanations, and the NumPy ufunc's name
    operation: ClassVar[str] = "sum"
    ufunc: ClassVar[str] = "add"

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        shapes = [t.shape for t in inputs]
        out = broadcast_shapes(shapes)
        if out is None:
            raise ctx.fail(f"cannot {self.type_name} shapes {', '.join(fmt_shape(s) for s in shapes)} "
                           f"(inputs {self.inputs}): sizes must match or be 1 in every dim")
        if any(len(s) != len(out) for s in shapes):
            raise ctx.fail(f"cannot {self.type_name} shapes {', '.join(fmt_shape(s) for s in shapes)}: "
                           f"inputs of different rank")
        rf, notes = merge_rf(inputs)
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

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        out = list(facts.output_shape)
        elements = math.prod(out)
        shapes = ", ".join(str(list(s)) for s in input_shapes)
        c.result("FLOPs", f"element-wise {self.operation} of {shapes} (broadcast) → {out}: (inputs − 1)·elements = "
                 f"{len(input_shapes) - 1}·{n(elements)}", (len(input_shapes) - 1) * elements, facts.flops)


@register_layer
class Add(_ElementwiseMerge):
    """Element-wise sum of two or more inputs, with NumPy/PyTorch broadcasting."""
    type: Literal["add"] = "add"


@register_layer
class Mul(_ElementwiseMerge):
    """Element-wise product with broadcasting (e.g. a squeeze-and-excitation gate [N, C, 1, 1] × [N, C, H, W])."""
    operation: ClassVar[str] = "product"
    ufunc: ClassVar[str] = "multiply"
    type: Literal["mul"] = "mul"


@register_layer
class Concat(LayerBase):
    """Concatenation along ``dim`` (default: the channel dim of the network's layout)."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["concat"] = "concat"
    dim: Optional[Int] = Field(None, validation_alias=_alias("dim", "axis"),
                               description="dim to join along (negative counts from the end); default: the channel "
                                           "dim (1 for NCHW, the last for NHWC)")

    keeps_finite = True

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
