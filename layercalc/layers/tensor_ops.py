"""Tensor operations that rearrange, cut or reduce a tensor: ``permute``, ``transpose``, ``slice``, ``select``,
``roll``, ``pixel_shuffle``, ``pixel_unshuffle``, ``channel_shuffle``, ``mean`` and ``sum`` (PyTorch semantics), and
``opaque``: an operation layercalc does not model, kept only by an importer's explicit opt-in.
Resampling (``upsample``, Keras' ``upsampling1d/2d/3d``) lives in :mod:`layercalc.layers.resample`.

Dims are indexed in the shape as layercalc shows it (batch at 0, the network's layout), negative dims counting from
the end as in PyTorch; no operation may move, cut or reduce the batch dim. No parameters and no MACs. FLOPs: 0 for
the data movements; ``sum`` counts its adds (``numel(in) − numel(out)``), ``mean`` its adds and one divide per
output (``numel(in)``), as ``global_avgpool`` does (docs/conventions.md, "Tensor operations").

Receptive fields are carried on only where they stay exact: the output's channel dim must be the input's channel
dim and its spatial dims input spatial dims (a permutation of them is fine: the field is permuted with them);
a slice is a 1-wide window with stride ``step``; ``pixel_unshuffle`` is an r×r window with stride r;
``pixel_shuffle`` is an up-sampling (each output position sees one input position; later layers report none).
Otherwise the field ends (null) with a note saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from ..explain import Explanation, n, prod_text
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    elementwise_backward,
    exact_ratio,
    fmt_shape,
    global_field,
    normalize_dim,
    numel,
    window_rf,
)
from .base import MAX_RANK, Bool, GradFlow, Int, LayerBase, LayerMixin, PositiveInt, Saved, _alias, register_layer

__all__ = ['Permute', 'Transpose', 'Slice', 'Split', 'Chunk', 'Select', 'Roll', 'PixelShuffle', 'PixelUnshuffle',
           'ChannelShuffle', 'Mean', 'Sum', 'Opaque']

DimList = Union[Int, list[Int]]


# ------------------------------------------------------------------------------------------------------ helpers

def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dims(values: list[int], x: Tensor, field: str, ctx: Context, what: str) -> list[int]:
    """Normalize dims against the input's rank; refuse the batch dim and repeats."""
    rank = len(x.shape)
    dims = [normalize_dim(d, rank, field, x.shape, ctx) for d in values]
    if 0 in dims:
        raise ctx.fail(f"{field} {values if len(values) > 1 else values[0]} includes the batch dim 0 of input "
                       f"{fmt_shape(x.shape)}: {what} works on each example, never across the batch")
    repeated = sorted({d for d in dims if dims.count(d) > 1})
    if repeated:
        raise ctx.fail(f"{field} {values} names dim {repeated[0]} more than once (input {fmt_shape(x.shape)})")
    return dims


def _channel_dim(rank: int, channels_last: bool) -> int:
    return rank - 1 if channels_last else 1


def _spatial_dims(rank: int, channels_last: bool) -> list[int]:
    return list(range(1, rank - 1)) if channels_last else list(range(2, rank))


def _has_field(x: Tensor, channels_last: bool) -> bool:
    """The tensor carries a receptive field that describes its spatial dims one for one."""
    rank = len(x.shape)
    return x.rf is not None and rank >= 3 and len(x.rf.size) == len(_spatial_dims(rank, channels_last))


def _mapped_field(x: Tensor, sources: Sequence[Optional[int]], ctx: Context, what: str
                  ) -> tuple[Optional[ReceptiveField], list[str]]:
    """The receptive field after an operation whose output dim k holds input dim ``sources[k]``.

    Exact when the output's channel dim holds the input's channel dim and every output spatial dim an input spatial
    dim: then each output spatial dim keeps its input dim's field. Otherwise no field, with a note (unless the input
    had none: then there is nothing to lose)."""
    if not _has_field(x, ctx.channels_last):
        return None, []
    assert x.rf is not None
    rank_in, rank_out = len(x.shape), len(sources)
    spatial_in = _spatial_dims(rank_in, ctx.channels_last)
    lost = (f"receptive field not reported past this {what}: the output's channel and spatial dims are no longer "
            f"the input's ({'NHWC' if ctx.channels_last else 'NCHW'} layout)")
    if rank_out < 3 or sources[_channel_dim(rank_out, ctx.channels_last)] != _channel_dim(rank_in, ctx.channels_last):
        return None, [lost]
    picked = []
    for k in _spatial_dims(rank_out, ctx.channels_last):
        if sources[k] not in spatial_in:
            return None, [lost]
        picked.append(spatial_in.index(sources[k]))    # type: ignore[arg-type]
    rf = x.rf
    field = ReceptiveField(tuple(rf.size[i] for i in picked), tuple(rf.jump[i] for i in picked),
                           tuple(rf.start2[i] for i in picked), rf.uneven)
    notes = []
    gone = [d for d in spatial_in if d not in sources]
    if gone:
        notes.append(f"spatial dim{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))} of the input "
                     f"{'are' if len(gone) > 1 else 'is'} gone: the receptive field is reported for the remaining "
                     f"spatial dims only")
    return field, notes


def _zero(c: Explanation, what: str, facts: Facts) -> None:
    c.zero("params", "no weights", facts.params)
    c.zero("MACs", "no multiply-accumulate", facts.macs)
    c.zero("FLOPs", what, facts.flops)


class _Movement(LayerMixin):
    """Moves values without arithmetic: no params, MACs or FLOPs; the output is finite when the input is."""
    keeps_finite = True

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                   # the gradient is moved back the same way: nothing kept

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "a data movement: the gradient moved back")


# ------------------------------------------------------------------------------------------ permute, transpose

@register_layer
class Permute(_Movement, LayerBase):
    """Reorders the dims like torch.permute: ``dims`` lists every dim (batch included, and it stays at 0)."""
    type: Literal["permute"] = "permute"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Permute": {}}
    dims: list[Int] = Field(min_length=1, max_length=MAX_RANK, description=(
        "a permutation of all dims, batch 0 first (torch.permute); negative dims count from the end"))

    output_storage: ClassVar[str] = "strided"             # a view in another order

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Keras' Permute counts dims from 1, batch excluded: ``dims: [2, 1]`` is ``[0, 2, 1]`` here."""
        dims = fields.get("dims")
        if isinstance(dims, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            if sorted(dims) != list(range(1, len(dims) + 1)):
                raise ValueError(f"field 'dims': Keras' Permute takes a permutation of 1..{len(dims)} (batch "
                                 f"excluded), got {list(dims)}")
            fields = {**fields, "dims": [0, *dims]}
        return super().from_keras(class_name, fields)

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = len(x.shape)
        if len(self.dims) != rank:
            hint = ""
            if len(self.dims) == rank - 1 and sorted(self.dims) == list(range(1, rank)):
                hint = (f"; Keras' Permute dims {self.dims} (1-based, batch excluded) are dims "
                        f"{[0, *self.dims]} here")
            raise ctx.fail(f"dims {self.dims} must list all {rank} dims of input {fmt_shape(x.shape)} "
                           f"(batch included){hint}")
        dims = [normalize_dim(d, rank, "dims", x.shape, ctx) for d in self.dims]
        if sorted(dims) != list(range(rank)):
            raise ctx.fail(f"dims {self.dims} is not a permutation of the dims 0..{rank - 1} of input "
                           f"{fmt_shape(x.shape)} (each dim exactly once)")
        if dims[0] != 0:
            raise ctx.fail(f"dims {self.dims} moves the batch dim: dim 0 must stay first (the batch of "
                           f"{fmt_shape(x.shape)}); permute the other dims only")
        rf, notes = _mapped_field(x, list(dims), ctx, "permute")
        return Facts(output_shape=tuple(x.shape[d] for d in dims), rf=rf, notes=notes, geometry={"dims": dims})

    def forward(self, step, xs, params, env):
        return xs[0].transpose(step.facts.geometry["dims"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        dims = facts.geometry["dims"]
        c.add(f"permute: output dim k is input dim dims[k] = {dims}: {list(input_shapes[0])} → "
              f"{list(facts.output_shape)}")
        _zero(c, "values are moved, not computed", facts)


@register_layer
class Transpose(_Movement, LayerBase):
    """Swaps two dims like torch.transpose (neither may be the batch dim)."""
    type: Literal["transpose"] = "transpose"
    dim0: Int = Field(description="first dim to swap (not the batch dim 0); negative counts from the end")
    dim1: Int = Field(description="second dim to swap (not the batch dim 0); negative counts from the end")

    output_storage: ClassVar[str] = "strided"             # a view in another order

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        rank = len(x.shape)
        a = normalize_dim(self.dim0, rank, "dim0", x.shape, ctx)
        b = normalize_dim(self.dim1, rank, "dim1", x.shape, ctx)
        if 0 in (a, b) and a != b:
            raise ctx.fail(f"transpose of dims {self.dim0} and {self.dim1} moves the batch dim 0 of input "
                           f"{fmt_shape(x.shape)}: swap two other dims")
        dims = list(range(rank))
        dims[a], dims[b] = dims[b], dims[a]
        rf, notes = _mapped_field(x, dims, ctx, "transpose")
        return Facts(output_shape=tuple(x.shape[d] for d in dims), rf=rf, notes=notes, geometry={"dims": dims})

    def forward(self, step, xs, params, env):
        return xs[0].transpose(step.facts.geometry["dims"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"transpose: dims {self.dim0} and {self.dim1} swapped: {list(input_shapes[0])} → "
              f"{list(facts.output_shape)}")
        _zero(c, "values are moved, not computed", facts)


# ----------------------------------------------------------------------------------------------- slice, select

def _check_lengths(dim: Any, **others: Any) -> None:
    count = len(_as_list(dim))
    for name, value in others.items():
        if isinstance(value, list) and len(value) != count:
            raise ValueError(f"{name} has {len(value)} values but dim names {count} dim{'s' if count > 1 else ''} "
                             f"{dim}: give one {name} per dim, or a single value for all")


@register_layer
class Slice(_Movement, LayerBase):
    """``x[..., start:stop:step]`` on one or more non-batch dims (Python slice rules, negative indices allowed)."""
    type: Literal["slice"] = "slice"
    dim: DimList = Field(validation_alias=_alias("dim", "axis"),
                         description="the dim to slice (not the batch dim 0), or a list of dims")
    start: Union[Optional[Int], list[Optional[Int]]] = Field(
        None, description="first index (Python slice rules: negative counts from the end; null: the beginning); "
                          "one per dim, or one for all")
    stop: Union[Optional[Int], list[Optional[Int]]] = Field(
        None, validation_alias=_alias("stop", "end"),
        description="index after the last (excluded; negative counts from the end; null: the end); one per dim, or "
                    "one for all")
    step: Union[PositiveInt, list[PositiveInt]] = Field(
        1, description="take every step-th index (> 0, as PyTorch); one per dim, or one for all")

    output_storage: ClassVar[str] = "view"                # a view of the input

    @model_validator(mode="after")
    def _same_lengths(self):
        _check_lengths(self.dim, start=self.start, stop=self.stop, step=self.step)
        return self

    def _per_dim(self, value: Any, count: int) -> list:
        return list(value) if isinstance(value, list) else [value] * count

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        wanted = _as_list(self.dim)
        dims = _dims(wanted, x, "dim", ctx, "slice")
        starts, stops = self._per_dim(self.start, len(dims)), self._per_dim(self.stop, len(dims))
        steps = self._per_dim(self.step, len(dims))
        out = list(x.shape)
        resolved = {}
        for d, start, stop, step in zip(dims, starts, stops, steps):
            first, end, _ = slice(start, stop, step).indices(x.shape[d])
            length = len(range(first, end, step))
            if length < 1:
                raise ctx.fail(f"slice {_slice_text(start, stop, step)} of dim {d} (size {x.shape[d]}) of input "
                               f"{fmt_shape(x.shape)} selects nothing")
            out[d] = length
            resolved[d] = (first, step, length)
        rf: Optional[ReceptiveField] = None
        notes: list[str] = []
        if _has_field(x, ctx.channels_last):
            assert x.rf is not None
            spatial = _spatial_dims(len(x.shape), ctx.channels_last)
            cut = {spatial.index(d): v for d, v in resolved.items() if d in spatial}
            if cut and not x.rf.aligned_grid:
                rf = None                     # the graph says why (the input's grid is uneven)
            elif cut:
                # a slice is a 1-wide window with stride `step` starting at `first`: field unchanged, jump · step
                kernel = (1,) * len(spatial)
                stride = tuple(cut[i][1] if i in cut else 1 for i in range(len(spatial)))
                moved = window_rf(x.rf, kernel, stride, kernel, [(-cut[i][0] if i in cut else 0, 0)
                                                                 for i in range(len(spatial))])
                rf = moved
            else:
                rf = x.rf
        geometry = {"slices": {d: (first, first + (length - 1) * step + 1, step)
                               for d, (first, step, length) in resolved.items()}}
        return Facts(output_shape=tuple(out), rf=rf, notes=notes, geometry=geometry)

    def forward(self, step, xs, params, env):
        x = xs[0]
        index = [slice(None)] * x.ndim
        for d, (first, end, stride) in step.facts.geometry["slices"].items():
            index[d] = slice(first, end, stride)
        return x[tuple(index)]

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        for d, (first, end, stride) in facts.geometry["slices"].items():
            count = facts.output_shape[d]
            c.add(f"dim {d}: indices {first}, {first + stride}, … < {end} of 0..{x[d] - 1}: "
                  f"ceil(({end} − {first}) / {stride}) = {count} kept")
        c.add(f"{list(x)} → {list(facts.output_shape)}")
        _zero(c, "values are copied (a view), not computed", facts)


def _slice_text(start: Optional[int], stop: Optional[int], step: int) -> str:
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return f"[{text}:{step}]" if step != 1 else f"[{text}]"


# ------------------------------------------------------------------------------------- split and chunk

class _Split(_Movement, LayerBase):
    """Cuts one dim into consecutive pieces: several outputs, which later layers name ``NAME:0``, ``NAME:1``, …"""
    dim: Int = Field(validation_alias=_alias("dim", "axis"), description="the dim to cut (not the batch dim 0)")

    output_storage: ClassVar[str] = "view"                # a view of the input

    def piece_sizes(self, length: int, ctx: Context, x: Tensor) -> list[int]:
        raise NotImplementedError

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        d = _dims([self.dim], x, "dim", ctx, self.type_name)[0]
        sizes = self.piece_sizes(x.shape[d], ctx, x)
        outputs = [tuple(size if k == d else v for k, v in enumerate(x.shape)) for size in sizes]
        # cutting the channels leaves each position's field; cutting a spatial dim shifts it piece by piece
        channel = len(x.shape) - 1 if ctx.channels_last else 1
        rf = x.rf if d == channel or not _has_field(x, ctx.channels_last) else None
        notes = [] if rf is not None or x.rf is None else [
            f"receptive field not reported past a cut of spatial dim {d} (each piece sees a different region)"]
        return Facts(output_shape=outputs[0], outputs=outputs, rf=rf, notes=notes,
                     geometry={"dim": d, "sizes": sizes})

    def forward(self, step, xs, params, env):
        import numpy as np
        sizes = step.facts.geometry["sizes"]
        return np.split(xs[0], np.cumsum(sizes)[:-1], axis=step.facts.geometry["dim"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        d, sizes = facts.geometry["dim"], facts.geometry["sizes"]
        c.add(f"dim {d} of {list(input_shapes[0])}: {input_shapes[0][d]} = {' + '.join(map(str, sizes))} → "
              + ", ".join(str(list(shape)) for shape in (facts.outputs or [])))
        _zero(c, "the pieces are views of the input, not computed", facts)


@register_layer
class Split(_Split):
    """``torch.split(x, split_size_or_sections, dim)``: pieces of one size (the last may be smaller) or of the
    sizes listed (which must add up to the dim)."""
    type: Literal["split"] = "split"
    sizes: Union[PositiveInt, list[PositiveInt]] = Field(
        validation_alias=_alias("sizes", "split_size_or_sections"),
        description="the size of every piece (the last may be smaller), or a list of sizes adding up to the dim")

    def piece_sizes(self, length: int, ctx: Context, x: Tensor) -> list[int]:
        if isinstance(self.sizes, list):
            if sum(self.sizes) != length:
                raise ctx.fail(f"sizes {self.sizes} add up to {sum(self.sizes)}, not to the {length} of dim "
                               f"{self.dim} of input {fmt_shape(x.shape)}")
            return list(self.sizes)
        return [min(self.sizes, length - start) for start in range(0, length, self.sizes)]


@register_layer
class Chunk(_Split):
    """``torch.chunk(x, chunks, dim)``: pieces of ceil(size/chunks) (the last may be smaller; as PyTorch, fewer
    than ``chunks`` pieces when the size does not allow that many)."""
    type: Literal["chunk"] = "chunk"
    chunks: PositiveInt = Field(description="how many pieces to cut into (PyTorch may return fewer)")

    def piece_sizes(self, length: int, ctx: Context, x: Tensor) -> list[int]:
        size = -(-length // self.chunks)
        return [min(size, length - start) for start in range(0, length, size)]


@register_layer
class Select(_Movement, LayerBase):
    """``x[:, index]`` on dim ``dim``: one index kept and the dim removed (torch.select; ViT's class token)."""
    type: Literal["select"] = "select"
    dim: Int = Field(validation_alias=_alias("dim", "axis"),
                     description="the dim to pick from and remove (not the batch dim 0)")
    index: Int = Field(description="the index kept; negative counts from the end")

    output_storage: ClassVar[str] = "view"                # a view of the input

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        d = _dims([self.dim], x, "dim", ctx, "select")[0]
        size = x.shape[d]
        if not -size <= self.index < size:
            raise ctx.fail(f"index {self.index} is out of range for dim {d} of size {size} of input "
                           f"{fmt_shape(x.shape)} (allowed {-size}..{size - 1})")
        sources: list[Optional[int]] = [k for k in range(len(x.shape)) if k != d]
        rf, notes = _mapped_field(x, sources, ctx, "select")
        return Facts(output_shape=tuple(x.shape[k] for k in range(len(x.shape)) if k != d), rf=rf, notes=notes,
                     geometry={"dim": d, "index": self.index % size})

    def forward(self, step, xs, params, env):
        x = xs[0]
        index: list[Any] = [slice(None)] * x.ndim
        index[step.facts.geometry["dim"]] = step.facts.geometry["index"]
        return x[tuple(index)]

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        g = facts.geometry
        c.add(f"select index {g['index']} of dim {g['dim']} (size {input_shapes[0][g['dim']]}), which is removed: "
              f"{list(input_shapes[0])} → {list(facts.output_shape)}")
        _zero(c, "values are copied (a view), not computed", facts)


# ------------------------------------------------------------------------------------------------------- roll

@register_layer
class Roll(_Movement, LayerBase):
    """Circular shift like torch.roll: each ``shifts[i]`` along ``dims[i]`` (Swin's shifted windows)."""
    type: Literal["roll"] = "roll"
    shifts: DimList = Field(description="shift per dim (positive: towards higher indices), one per dim in dims")
    dims: DimList = Field(description="the dims to roll (not the batch dim 0); torch.roll without dims would mix "
                                      "the batch and is not accepted")

    @model_validator(mode="after")
    def _aligned(self):
        if len(_as_list(self.shifts)) != len(_as_list(self.dims)):
            raise ValueError(f"shifts {self.shifts} and dims {self.dims} must have the same length (torch.roll: "
                             f"shifts and dimensions must align)")
        return self

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        dims = [normalize_dim(d, len(x.shape), "dims", x.shape, ctx) for d in _as_list(self.dims)]
        if 0 in dims:
            raise ctx.fail(f"dims {self.dims} includes the batch dim 0 of input {fmt_shape(x.shape)}: roll works "
                           f"on each example, never across the batch")
        shifts = [int(s) % x.shape[d] for s, d in zip(_as_list(self.shifts), dims)]
        total: dict[int, int] = {}
        for d, s in zip(dims, shifts):                   # torch.roll adds the shifts of a dim named twice
            total[d] = (total.get(d, 0) + s) % x.shape[d]
        rf, notes = None, []
        if _has_field(x, ctx.channels_last):
            spatial = _spatial_dims(len(x.shape), ctx.channels_last)
            moved = [d for d, s in total.items() if s and d in spatial]
            if moved:
                notes.append(f"receptive field not reported past this roll: a circular shift of spatial dim"
                             f"{'s' if len(moved) > 1 else ''} {', '.join(map(str, moved))} puts the input's two "
                             f"ends side by side, so neighbouring outputs are not neighbouring inputs there")
            else:
                rf = x.rf
        return Facts(output_shape=x.shape, rf=rf, notes=notes,
                     geometry={"shifts": list(total.values()), "dims": list(total)})

    def forward(self, step, xs, params, env):
        import numpy as np
        g = step.facts.geometry
        return np.roll(xs[0], g["shifts"], g["dims"]) if g["dims"] else xs[0]

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return numel(step.input_shapes[0]) * itemsize, 0        # np.roll rolls one axis at a time

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        g = facts.geometry
        for d, s in zip(g["dims"], g["shifts"]):
            c.add(f"dim {d}: output index i holds input index (i − {s}) mod {input_shapes[0][d]}")
        c.add(f"shape unchanged {list(facts.output_shape)}")
        _zero(c, "values are moved, not computed", facts)


# -------------------------------------------------------------------------------------- pixel and channel shuffle

def _require_nchw(x: Tensor, ctx: Context, name: str, factor: str) -> None:
    if ctx.channels_last:
        raise ctx.fail(f"{name} is PyTorch's operation on [N, C, H, W]; this network is NHWC, where TensorFlow's "
                       f"{'depth_to_space' if name == 'pixel_shuffle' else 'space_to_depth'} orders the channels "
                       f"differently: not supported (permute to NCHW first)")
    if len(x.shape) < 4:
        raise ctx.fail(f"{name} works on the last three dims [C, H, W] and needs at least a 4-d input "
                       f"[N, C, H, W], got {fmt_shape(x.shape)}")


@register_layer
class PixelShuffle(_Movement, LayerBase):
    """[N, C·r², H, W] → [N, C, H·r, W·r] like torch.nn.PixelShuffle (NCHW only)."""
    type: Literal["pixel_shuffle"] = "pixel_shuffle"
    upscale_factor: PositiveInt = Field(description="r: channels C·r² become C, each spatial size times r")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        _require_nchw(x, ctx, "pixel_shuffle", "upscale_factor")
        r = self.upscale_factor
        *lead, c, h, w = x.shape
        if c % (r * r):
            raise ctx.fail(f"channels {c} (dim {len(x.shape) - 3} of input {fmt_shape(x.shape)}) are not divisible "
                           f"by upscale_factor² = {r}² = {r * r}")
        rf, notes = None, []
        if len(x.shape) == 4 and _has_field(x, False):
            assert x.rf is not None
            if x.rf.aligned_grid:
                # output (y, x) copies input position (y // r, x // r): its field is that position's; r neighbouring
                # outputs share it, so the grid is uneven for later layers (as after nearest up-sampling)
                rf = ReceptiveField(x.rf.size, tuple(exact_ratio(j, r) if isinstance(j, int) else j / r
                                                     for j in x.rf.jump), x.rf.start2,
                                    f"pixel_shuffle with upscale_factor {r} (r neighbouring outputs come from one "
                                    f"input position)" if r > 1 else "")
        elif len(x.shape) > 4 and x.rf is not None:
            notes.append("receptive field not reported: on a 5-d or larger input pixel_shuffle treats dim −3 as "
                         "channels, which is a spatial dim here")
        return Facts(output_shape=(*lead, c // (r * r), h * r, w * r), rf=rf, notes=notes)

    def forward(self, step, xs, params, env):
        x = xs[0]
        r = self.upscale_factor
        *lead, c, h, w = x.shape
        y = x.reshape(*lead, c // (r * r), r, r, h, w)
        k = len(lead)
        y = y.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)
        return y.reshape(*lead, c // (r * r), h * r, w * r)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return 0, 0                                              # the reshape's copy is the output

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        *_, ch, h, w = input_shapes[0]
        r = self.upscale_factor
        c.add(f"[C·r², H, W] → [C, H·r, W·r] with r = {r}: C = {ch}/{r}² = {ch // (r * r)}, H = {h}·{r} = {h * r}, "
              f"W = {w}·{r} = {w * r}; output (c, y, x) = input (c·r² + (y mod r)·r + x mod r, y div r, x div r)")
        _zero(c, "values are moved, not computed", facts)


@register_layer
class PixelUnshuffle(_Movement, LayerBase):
    """[N, C, H·r, W·r] → [N, C·r², H, W] like torch.nn.PixelUnshuffle (NCHW only)."""
    type: Literal["pixel_unshuffle"] = "pixel_unshuffle"
    downscale_factor: PositiveInt = Field(description="r: each spatial size divided by r, channels times r²")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        _require_nchw(x, ctx, "pixel_unshuffle", "downscale_factor")
        r = self.downscale_factor
        *lead, c, h, w = x.shape
        if h % r or w % r:
            raise ctx.fail(f"spatial sizes {h}×{w} of input {fmt_shape(x.shape)} are not divisible by "
                           f"downscale_factor {r}")
        rf, notes = None, []
        if len(x.shape) == 4 and _has_field(x, False):
            # output position (y, x) gathers the r×r block at (y·r, x·r) into its channels: an r×r window, stride r
            rf = window_rf(x.rf, (r, r), (r, r), (1, 1), ((0, 0), (0, 0)))
        elif len(x.shape) > 4 and x.rf is not None:
            notes.append("receptive field not reported: on a 5-d or larger input pixel_unshuffle treats dim −3 as "
                         "channels, which is a spatial dim here")
        return Facts(output_shape=(*lead, c * r * r, h // r, w // r), rf=rf, notes=notes)

    def forward(self, step, xs, params, env):
        x = xs[0]
        r = self.downscale_factor
        *lead, c, h, w = x.shape
        k = len(lead)
        y = x.reshape(*lead, c, h // r, r, w // r, r)
        y = y.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)
        return y.reshape(*lead, c * r * r, h // r, w // r)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        *_, ch, h, w = input_shapes[0]
        r = self.downscale_factor
        c.add(f"[C, H·r, W·r] → [C·r², H, W] with r = {r}: C = {ch}·{r}² = {ch * r * r}, H = {h}/{r} = {h // r}, "
              f"W = {w}/{r} = {w // r}")
        _zero(c, "values are moved, not computed", facts)


@register_layer
class ChannelShuffle(_Movement, LayerBase):
    """Interleaves channel groups like torch.nn.ChannelShuffle (ShuffleNet): [g, C/g] → [C/g, g]."""
    type: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PositiveInt = Field(description="g: the channels split into g groups, then interleaved")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"channel_shuffle needs an input with channels and at least one more dim "
                           f"(torch: more than 2 dims), got {fmt_shape(x.shape)}")
        c = x.shape[_channel_dim(len(x.shape), ctx.channels_last)]
        if c % self.groups:
            raise ctx.fail(f"channels {c} of input {fmt_shape(x.shape)} are not divisible by groups {self.groups}")
        return Facts(output_shape=x.shape, rf=x.rf)

    def forward(self, step, xs, params, env):
        x = xs[0]
        g = self.groups
        axis = env.channel_axis % x.ndim
        c = x.shape[axis]
        y = x.reshape(*x.shape[:axis], g, c // g, *x.shape[axis + 1:])
        return y.swapaxes(axis, axis + 1).reshape(x.shape)

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        ch = input_shapes[0][-1 if channels_last else 1]
        g = self.groups
        c.add(f"channels {ch} as [g, C/g] = [{g}, {ch // g}], transposed to [{ch // g}, {g}] and flattened: output "
              f"channel j·{g} + i = input channel i·{ch // g} + j; shape unchanged {list(facts.output_shape)}")
        _zero(c, "values are moved, not computed", facts)


# ------------------------------------------------------------------------------------------------- reductions

class _Reduction(LayerBase):
    #: "sum" or "mean"
    reduction: ClassVar[str] = "sum"

    dim: DimList = Field(validation_alias=_alias("dim", "axis"),
                         description="the dim or dims to reduce (not the batch dim 0); negative counts from the end")
    keepdim: Bool = Field(False, validation_alias=_alias("keepdim", "keepdims"),
                          description="keep each reduced dim with size 1")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                   # a sum's or mean's gradient is spread evenly

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "a reduction: the gradient broadcast back")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        dims = _dims(_as_list(self.dim), x, "dim", ctx, self.reduction)
        if not dims:
            raise ctx.fail("dim names no dim to reduce")
        if self.keepdim:
            out = tuple(1 if k in dims else s for k, s in enumerate(x.shape))
        else:
            out = tuple(s for k, s in enumerate(x.shape) if k not in dims)
        size_in, size_out = numel(x.shape), numel(out)
        flops = size_in if self.reduction == "mean" else size_in - size_out
        rf, notes = self._field(x, dims, ctx)
        return Facts(output_shape=out, flops=flops, rf=rf, notes=notes, geometry={"dims": sorted(dims)})

    def _field(self, x: Tensor, dims: list[int], ctx: Context) -> tuple[Optional[ReceptiveField], list[str]]:
        if not _has_field(x, ctx.channels_last):
            return None, []
        assert x.rf is not None
        rank = len(x.shape)
        spatial = _spatial_dims(rank, ctx.channels_last)
        reduced = [spatial.index(d) for d in dims if d in spatial]
        rf: Optional[ReceptiveField] = x.rf
        if len(reduced) == len(spatial):             # every spatial dim: global pooling (the whole input, if covered)
            rf = global_field(x.rf, tuple(x.shape[d] for d in spatial), ctx)
        elif reduced:
            rf = x.rf
            if not rf.aligned_grid:
                return None, []                       # the graph says why
            # a reduced spatial dim is one window over the whole dim, as global pooling: rf + (L − 1)·jump
            size: list[int] = list(rf.size)
            jump: list[int | Fraction] = list(rf.jump)
            start: list[int | Fraction] = list(rf.start2)
            for i in reduced:
                length = x.shape[spatial[i]]
                size[i] = rf.size[i] + (length - 1) * int(rf.jump[i])      # aligned: whole jumps
                start[i] = rf.start2[i] + (length - 1) * rf.jump[i]
                jump[i] = rf.jump[i] * length
            rf = ReceptiveField(tuple(size), tuple(jump), tuple(start))
        if self.keepdim:
            return rf, []
        if all(d in dims for d in spatial):
            return rf, []              # no spatial dim left: the field of global pooling ([N, C]), or of everything
        sources: list[Optional[int]] = [k for k in range(rank) if k not in dims]
        return _mapped_field(Tensor(x.shape, rf), sources, ctx, self.reduction)

    def forward(self, step, xs, params, env):
        import numpy as np
        reduce = np.mean if self.reduction == "mean" else np.sum
        return reduce(xs[0], axis=tuple(step.facts.geometry["dims"]), keepdims=self.keepdim)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        # NumPy reduces several axes through a temporary of at most the input's size
        return numel(step.input_shapes[0]) * max(itemsize, 8), 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = input_shapes[0]
        dims = facts.geometry["dims"]
        r = math.prod(x[d] for d in dims)
        out = math.prod(facts.output_shape)
        c.add(f"{self.reduction} over dim{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims))}: "
              f"{list(x)} → {list(facts.output_shape)}, {r} value{'s' if r > 1 else ''} per output")
        c.zero("params", "no weights", facts.params)
        c.zero("MACs", "no multiply-accumulate", facts.macs)
        if self.reduction == "mean":
            c.result("FLOPs", f"outputs·((R − 1) adds + 1 divide) = numel(input) = {prod_text(x)}", out * r,
                     facts.flops)
        else:
            c.result("FLOPs", f"outputs·(R − 1) adds = {n(out)}·({r} − 1)", out * (r - 1), facts.flops)


@register_layer
class Mean(_Reduction):
    """Mean over dims like torch.mean(x, dim, keepdim) (Keras: ops.mean(x, axis, keepdims))."""
    type: Literal["mean"] = "mean"
    reduction: ClassVar[str] = "mean"


@register_layer
class Sum(_Reduction):
    """Sum over dims like torch.sum(x, dim, keepdim)."""
    type: Literal["sum"] = "sum"
    reduction: ClassVar[str] = "sum"


# ------------------------------------------------------------------------------------- an operation not modelled

@register_layer
class Opaque(LayerBase):
    """An operation layercalc has no type for, kept by an explicit opt-in (``from_torch(..., unknown="count-zero")``):
    the output shape its framework computed, counted as zero — no parameters, MACs or FLOPs, whatever it really
    costs — and said so in a note. Any number of inputs; analysis only (no forward step); the receptive field
    ends."""
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["opaque"] = "opaque"
    shape: list[PositiveInt] = Field(min_length=1, max_length=MAX_RANK - 1,
                                     description="the output's shape as its framework computed it, without the "
                                                 "batch dim")
    op: str = Field("", max_length=200, description="what the operation was (torch.det, a module's class), shown in "
                                                    "the note")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        what = f" ({self.op})" if self.op else ""
        return Facts(output_shape=(ctx.batch, *self.shape),
                     notes=[f"an operation layercalc does not model{what}: its shape as traced, counted as zero"])

    def backward(self, step, grads: Gradients) -> Backward:
        return Backward(lines=["backward: counted as zero, like the forward (an operation not modelled)"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"opaque{f' {self.op}' if self.op else ''}: output {list(facts.output_shape)} as traced; params, MACs "
              f"and FLOPs counted as 0 (not modelled)")
