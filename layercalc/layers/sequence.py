"""Sequence-model building blocks: ``embedding`` (token ids → vectors), ``parameter`` (a learnable tensor: a class
token, a position embedding, a layer scale, a relative-position bias table) and ``rotary_embedding`` (RoPE).

- ``embedding``: params V·d (``num_embeddings``·``embedding_dim``; Keras ``input_dim``, ``output_dim``); a lookup,
  so 0 MACs and 0 FLOPs. Its input holds token ids: a run without given input draws ids below V. A model's output
  head may share its weight (``tied_to``: GPT-2), counted once.
- ``parameter``: takes no input; outputs the tensor expanded over the batch (``[N, *shape]``, as PyTorch's
  ``expand``: no copy); params prod(shape). Add, concatenate or multiply it with the merge layers (``add``,
  ``concat``, ``mul``) — ViT's class token and position embedding, ConvNeXt's layer scale. Its weights key is the
  layer's own name (``class_token``, ``encoder.pos_embedding``: how PyTorch saves an ``nn.Parameter`` attribute)
  or ``NAME.weight``; ``stored_shape`` is the shape the framework saves it in when that has leading 1s the
  layer's output does not (torchvision's ViT: ``[1, 197, 768]`` for a ``[197, 768]`` tensor); ``init`` may be a
  number every element starts at (ConvNeXt's layer scale: 1e-6).
- ``rotary_embedding``: no params; rotates pairs of the last dim by position-dependent angles (GPT-NeoX/Llama's
  ``rotate_half`` convention), 3 FLOPs per rotated element (x·cos + rotate_half(x)·sin); the cos/sin tables depend on
  positions only and are computed once per forward pass for every layer, so they are not counted.
- ``extra_input``: a second (third, …) input of a model with several (``from_torch(m, [(1, 3, 224, 224), (1, 10)])``,
  T5's decoder token ids): no input, its shape over the batch, nothing counted; a run feeds it the array given for
  it (``net.run(x=[first, second])``), or draws one as for the first input.
"""


import math
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator

from ..errors import SpecError
from ..explain import Explanation, prod_text
from ..rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    elementwise_backward,
    fmt_shape,
    numel,
)
from .base import (
    MAX_RANK,
    Float,
    GradFlow,
    LayerBase,
    NonNegativeInt,
    ParamSpec,
    PositiveFloat,
    PositiveInt,
    Saved,
    _alias,
    keras_variables,
    register_layer,
)

__all__ = ["Embedding", "PositionEmbedding", "Parameter", "RotaryEmbedding", "rotate", "ROTARY_FLOPS", "ExtraInput"]


@register_layer
class Embedding(LayerBase):
    """Token ids [N, ...] → vectors [N, ..., embedding_dim] (``torch.nn.Embedding``, Keras ``Embedding``)."""
    type: Literal["embedding"] = "embedding"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"Embedding": {}}
    num_embeddings: PositiveInt = Field(validation_alias=_alias("num_embeddings", "input_dim"),
                                        description="vocabulary size V: token ids are 0..V−1")
    embedding_dim: PositiveInt = Field(validation_alias=_alias("embedding_dim", "output_dim"))
    padding_idx: Optional[int] = Field(None, description="the id whose vector is zero (still counted as parameters, "
                                                         "as PyTorch does)")

    keeps_finite = True

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # the weight's gradient scatters each output row into the row of its id: the ids are kept, as int64
        return [Saved("input", "its token ids (int64), to scatter the gradient into the table's rows", itemsize=8)] \
            if grads.params else []

    @model_validator(mode="after")
    def _padding_in_range(self):
        if self.padding_idx is not None and not -self.num_embeddings <= self.padding_idx < self.num_embeddings:
            raise ValueError(f"padding_idx {self.padding_idx} must be within the {self.num_embeddings} ids "
                             f"(−{self.num_embeddings}..{self.num_embeddings - 1})")
        return self

    def index_count(self) -> Optional[int]:
        return self.num_embeddings

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) + 1 > MAX_RANK:
            raise ctx.fail(f"the output of {len(x.shape) + 1} dims would exceed {MAX_RANK}")
        return Facts(output_shape=(*x.shape, self.embedding_dim), params=self.num_embeddings * self.embedding_dim,
                     notes=[f"a lookup of {numel(x.shape):,} token ids in a {self.num_embeddings:,} × "
                            f"{self.embedding_dim} table: no arithmetic"])

    def weight_elements_read(self, facts: Facts) -> int:
        # the rows looked up, at most the whole table (a row read twice is counted once: at most N·L distinct ids)
        looked_up = numel(facts.output_shape) // self.embedding_dim
        return min(looked_up, self.num_embeddings) * self.embedding_dim + facts.buffers

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        return {"weight": ParamSpec((self.num_embeddings, self.embedding_dim), "[num_embeddings, embedding_dim]",
                                    "normal")}

    def keras_weights(self, step, class_name: str, variables: dict) -> dict:
        return {"weight": keras_variables(step, class_name, variables, {"": ["embeddings"]})["embeddings"]}

    def forward(self, step, xs, params, env):
        import numpy as np

        x = xs[0]
        ids = x.astype(np.int64)
        if x.size and (not np.array_equal(ids, x) or ids.min() < 0 or ids.max() >= self.num_embeddings):
            bad = x[(ids != x) | (ids < 0) | (ids >= self.num_embeddings)].flat[0]
            raise SpecError(f"{step.name}: the input holds {bad!r}, not a token id 0..{self.num_embeddings - 1}")
        return params["weight"][ids]

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        # the ids as int64 and their comparison masks, and the table made for the run (unless passed in)
        return numel(step.input_shapes[0]) * 16 + (0 if weights_given else step.facts.params * itemsize), 0

    def backward(self, step, grads: Gradients) -> Backward:
        rows = numel(step.facts.output_shape)
        return Backward(element_flops=rows, lines=[
            "backward: no input gradient: token ids are integers",
            f"backward weight gradient: a scatter-add of the {numel(step.input_shapes[0]):,} output-gradient rows "
            f"into the table's rows: 0 MACs, tokens·embedding_dim = {rows:,} adds (FlopCounterMode counts none)"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = list(input_shapes[0])
        c.add(f"each of the {prod_text(x)} token ids picks one row of the table: {x} → {list(facts.output_shape)}")
        c.result("params", f"num_embeddings·embedding_dim = {self.num_embeddings}·{self.embedding_dim}",
                 self.num_embeddings * self.embedding_dim, facts.params)
        c.add("MACs = 0, FLOPs = 0 (a lookup)")


@register_layer
class PositionEmbedding(LayerBase):
    """Learned absolute positions (GPT-2's ``wpe``, BERT's ``position_embeddings``): rows 0..L−1 of a table, for a
    sequence of length L along dim 1 of the input (token ids [N, L] or vectors [N, L, …]); ``[N, L, embedding_dim]``.
    The same as ``nn.Embedding`` read at ``arange(L)``: params ``num_embeddings·embedding_dim``, no arithmetic.
    With ``row``, every position reads that one row (BERT's token types, whose ids default to 0)."""
    type: Literal["position_embedding"] = "position_embedding"
    num_embeddings: PositiveInt = Field(validation_alias=_alias("num_embeddings", "max_position_embeddings"),
                                        description="positions in the table (the longest sequence)")
    embedding_dim: PositiveInt = Field(validation_alias=_alias("embedding_dim", "output_dim"))
    offset: NonNegativeInt = Field(0, description="the row of position 0 (OPT's learned positions: 2, its table "
                                                  "having max_position_embeddings + 2 rows; RoBERTa: padding_idx "
                                                  "+ 1 = 2, so its 514-row table holds 512 positions)")
    row: Optional[NonNegativeInt] = Field(
        None, description="every position reads this one row instead of its own (BERT's and RoBERTa's token-type "
                          "embeddings: token_type_ids default to 0); the table may be shorter than the sequence")
    ids: Literal["shared", "buffer", "per_sequence"] = Field(
        "shared", description="how the int64 ids the table is read at are made, which sets the training figure "
                              "(what autograd keeps for the table's gradient): shared: [1, L] made for the batch "
                              "(GPT-2's arange; BERT's token types), L·8 bytes; buffer: a slice of a registered "
                              "buffer (BERT's and DistilBERT's position_ids), not an activation: 0; per_sequence: "
                              "[N, L] made per sequence (OPT's cumsum of the attention mask; RoBERTa's positions "
                              "and token types), N·L·8 bytes")

    keeps_finite = True
    reads_input_values = False               # the input gives the sequence length only

    @model_validator(mode="after")
    def _row_in_table(self):
        if self.row is not None and (self.offset or self.row >= self.num_embeddings):
            raise ValueError(f"row {self.row} must be a row of the {self.num_embeddings}-row table, without an "
                             f"offset (offset {self.offset})")
        return self

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # nn.Embedding keeps the ids it is read at (int64) for the table's gradient; a buffer's slice is no activation
        if not grads.params or self.ids == "buffer":
            return []
        batch, length = step.input_shapes[0][:2]
        shape, count, made = ((f"[{batch}, {length}]", batch * length, "made per sequence")
                              if self.ids == "per_sequence" else (f"[1, {length}]", length, "made for the batch"))
        return [Saved("extra", f"the ids {shape} (int64, {made}) it was read at, for the table's gradient",
                      numel=count, itemsize=8)]

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input [N, L, ...] (the sequence along dim 1), got {fmt_shape(x.shape)}")
        length, first = x.shape[1], ctx.past          # a decode step reads the rows after the cached positions
        if self.row is not None:
            return Facts(output_shape=(x.shape[0], length, self.embedding_dim),
                         params=self.num_embeddings * self.embedding_dim,
                         notes=[f"row {self.row} of a {self.num_embeddings:,} × {self.embedding_dim} table for every "
                                f"position: no arithmetic"], geometry={"first": first})
        row = self.offset + first                      # RoBERTa's position 0 is row padding_idx + 1
        if row + length > self.num_embeddings:
            seen = f"{first:,} past + {length:,} new positions" if first else f"the sequence of {length} positions"
            rows = f" after the offset {self.offset}" if self.offset else ""
            raise ctx.fail(f"{seen} (input {fmt_shape(x.shape)}) {'are' if first else 'is'} longer than the "
                           f"{self.num_embeddings - self.offset} positions of the table{rows}")
        return Facts(output_shape=(x.shape[0], length, self.embedding_dim),
                     params=self.num_embeddings * self.embedding_dim,
                     notes=[f"rows {row}..{row + length - 1} of a {self.num_embeddings:,} × {self.embedding_dim} "
                            f"table: no arithmetic"], geometry={"first": first})

    def weight_elements_read(self, facts: Facts) -> int:
        # the rows looked up, once for every example (one row when every position reads the same)
        return (1 if self.row is not None else facts.output_shape[1]) * self.embedding_dim

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        return {"weight": ParamSpec((self.num_embeddings, self.embedding_dim), "[num_embeddings, embedding_dim]",
                                    "normal")}

    def forward(self, step, xs, params, env):
        import numpy as np
        if self.row is not None:
            return np.broadcast_to(params["weight"][self.row], step.facts.output_shape)
        row = self.offset + step.facts.geometry["first"]
        return np.broadcast_to(params["weight"][row:row + xs[0].shape[1]], step.facts.output_shape)

    def backward(self, step, grads: Gradients) -> Backward:
        rows = numel(step.facts.output_shape)
        into = f"row {self.row}" if self.row is not None else "rows 0..L−1"
        return Backward(element_flops=rows, lines=[
            "backward: no input gradient: the input gives the sequence length only",
            f"backward weight gradient: the output gradient summed into {into} (a scatter-add over the "
            f"batch): 0 MACs, N·L·embedding_dim = {rows:,} adds"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        length, first = input_shapes[0][1], facts.geometry["first"]
        if self.row is not None:
            c.add(f"every position of dim 1 of {list(input_shapes[0])} reads row {self.row} of the table → "
                  f"{list(facts.output_shape)}")
        else:
            rows = (f", rows {self.offset + first}..{self.offset + first + length - 1}: offset {self.offset}"
                    if self.offset else "")
            c.add(f"positions {first}..{first + length - 1} (dim 1 of {list(input_shapes[0])}"
                  + (f", after {first} cached positions" if first else "") + f"{rows}) pick rows of the table → "
                  f"{list(facts.output_shape)}, the same for every example")
        c.result("params", f"num_embeddings·embedding_dim = {self.num_embeddings}·{self.embedding_dim}",
                 self.num_embeddings * self.embedding_dim, facts.params)
        c.add("MACs = 0, FLOPs = 0 (a lookup)")


@register_layer
class Parameter(LayerBase):
    """A learnable tensor with no input, expanded over the batch: ViT's class token ``[1, 768]`` and position
    embedding ``[197, 768]``, ConvNeXt's layer scale ``[C, 1, 1]``; merge it with ``add``, ``concat`` or ``mul``."""
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[Optional[int]] = 0
    type: Literal["parameter"] = "parameter"
    shape: list[PositiveInt] = Field(min_length=1, max_length=MAX_RANK - 1,
                                     description="the tensor's shape, without the batch dim")
    stored_shape: Optional[list[PositiveInt]] = Field(
        None, max_length=MAX_RANK,
        description="the shape its weights are saved in, when the framework keeps leading 1s the layer's output "
                    "does not (torchvision's ViT saves the [197, 768] position embedding as [1, 197, 768]): shape "
                    "with leading 1s; default: shape")
    init: Union[Literal["zeros", "ones", "normal"], Float] = Field(
        "zeros", description="initial values in a run without weights: zeros, ones, normal (N(0, 1)), or a number "
                             "every element starts at (ConvNeXt's layer scale: 1e-6)")

    keeps_finite = True

    output_storage: ClassVar[str] = "parameter"           # the parameter itself (expanded: a view)

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []                                         # a leaf: nothing to compute backward through

    @model_validator(mode="after")
    def _stored_shape_is_shape_with_leading_ones(self):
        stored = self.stored_shape
        if stored is not None:
            lead = len(stored) - len(self.shape)
            if lead < 0 or stored[lead:] != self.shape or any(size != 1 for size in stored[:lead]):
                raise ValueError(f"stored_shape {stored} must be shape {self.shape} with leading 1s (e.g. "
                                 f"{[1, *self.shape]}): the same values, saved with extra dims of size 1")
        return self

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        return Facts(output_shape=(ctx.batch, *self.shape), params=numel(self.shape),
                     notes=[f"a learnable {fmt_shape(self.shape)} tensor, expanded over the batch (no copy)"])

    def param_specs(self, step, channels_last: bool) -> dict[str, ParamSpec]:
        if self.stored_shape is not None:          # kept as saved; forward drops the leading 1s
            return {"weight": ParamSpec(tuple(self.stored_shape), "stored_shape", self.init)}
        return {"weight": ParamSpec(tuple(self.shape), "shape", self.init)}

    def forward(self, step, xs, params, env):
        import numpy as np
        return np.broadcast_to(params["weight"].reshape(self.shape), step.facts.output_shape)

    def backward(self, step, grads: Gradients) -> Backward:
        rows = numel(step.facts.output_shape)
        return Backward(element_flops=rows, lines=[
            f"backward weight gradient: the output gradient summed over the batch: 0 MACs, {rows:,} adds"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.result("params", f"prod(shape) = {prod_text(self.shape)}", numel(self.shape), facts.params)
        c.add(f"output {list(facts.output_shape)}: the tensor repeated over the batch without a copy; MACs = 0, "
              f"FLOPs = 0")


#: FLOPs per rotated element of rotary position embedding: x·cos + rotate_half(x)·sin
ROTARY_FLOPS = 3


def rotate(x, rotary_dim: int, base: float):
    """RoPE on ``x`` [..., L, D] (NumPy), positions 0..L−1 along dim −2: the first ``rotary_dim`` features, pairs
    (i, i + rotary_dim/2), rotated by position·base^(−2i/rotary_dim) (``rotate_half``: GPT-NeoX, Llama); the rest
    unchanged. Used by ``rotary_embedding`` and by ``multi_head_attention`` with ``rope``."""
    import numpy as np

    d = rotary_dim
    positions = np.arange(x.shape[-2], dtype=np.float64)
    inv_freq = 1.0 / (base ** (np.arange(0, d, 2, dtype=np.float64) / d))
    angles = np.outer(positions, inv_freq)                          # [L, d/2]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1).astype(x.dtype)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1).astype(x.dtype)
    part, rest = x[..., :d], x[..., d:]
    half = d // 2
    rotated = np.concatenate([-part[..., half:], part[..., :half]], axis=-1)
    out = part * cos + rotated * sin
    return np.concatenate([out, rest], axis=-1) if rest.shape[-1] else out


@register_layer
class RotaryEmbedding(LayerBase):
    """Rotary position embedding (RoPE) on [N, ..., L, D]: pairs (i, i + d/2) of the first ``rotary_dim`` features
    rotated by angle position·base^(−2i/d), positions along dim −2 (GPT-NeoX/Llama's ``rotate_half`` form)."""
    type: Literal["rotary_embedding", "rope"] = "rotary_embedding"
    rotary_dim: Optional[PositiveInt] = Field(None, description="features rotated (even); default: the whole last "
                                                                "dim (the head dim)")
    base: PositiveFloat = Field(10000.0, description="θ: the angle of pair i is position·θ^(−2i/rotary_dim)")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        if not grads.inputs[0]:
            return []
        # x·cos + rotate_half(x)·sin keeps cos and sin ([1, L, rotary_dim] each, the activations' dtype), which
        # Hugging Face computes once per forward pass and hands to every layer: one pair for the whole network
        length, d = step.input_shapes[0][-2], step.facts.geometry["rotary_dim"]
        return [Saved("extra", f"the cos and sin tables [1, {length}, {d}] (made once, shared by every layer)",
                      numel=2 * length * d, shared=f"rotary tables {length}×{d} base {self.base:g}")]

    def backward(self, step, grads: Gradients) -> Backward:
        return elementwise_backward(step.facts, grads,
                                    "rotation: the gradient rotated back")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"needs an input [N, ..., L, D] (positions along dim −2), got {fmt_shape(x.shape)}")
        d = x.shape[-1] if self.rotary_dim is None else self.rotary_dim
        if d > x.shape[-1] or d % 2:
            raise ctx.fail(f"rotary_dim {d} must be even and at most the last dim {x.shape[-1]} of "
                           f"{fmt_shape(x.shape)}")
        rotated = numel(x.shape) // x.shape[-1] * d
        return Facts(output_shape=x.shape, flops=ROTARY_FLOPS * rotated, geometry={"rotary_dim": d})

    def forward(self, step, xs, params, env):
        return rotate(xs[0], step.facts.geometry["rotary_dim"], self.base)

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        # the rotated half and the two products (each input-sized), and the cos/sin tables
        x = step.input_shapes[0]
        return 3 * numel(x) * itemsize + 4 * x[-2] * step.facts.geometry["rotary_dim"] * 8, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = list(input_shapes[0])
        d = facts.geometry["rotary_dim"]
        c.add(f"positions along dim −2 ({x[-2]}); {d // 2} pairs of features rotated per position, angle "
              f"position·{self.base:g}^(−2i/{d}); params 0")
        c.result("FLOPs", f"3 per rotated element (x·cos + rotate_half(x)·sin) · {prod_text([*x[:-1], d])}",
                 ROTARY_FLOPS * math.prod([*x[:-1], d]), facts.flops)



@register_layer
class ExtraInput(LayerBase):
    """Another input of a model with several (the network's ``input`` is the first): its shape without the batch
    dim; no parameters, MACs or FLOPs. A run feeds it the array given for it (``net.run(x=[first, second])``) or
    draws one (token ids when an embedding reads it), as it does for the first input."""
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[Optional[int]] = 0
    is_network_input: ClassVar[bool] = True
    type: Literal["extra_input"] = "extra_input"
    shape: list[PositiveInt] = Field(min_length=1, max_length=MAX_RANK - 1,
                                     description="the input's shape, without the batch dim")

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        return []

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        rank = len(self.shape) - 1
        return Facts(output_shape=(ctx.batch, *self.shape), rf=ReceptiveField.of_input(rank) if rank >= 1 else None,
                     notes=["another input of the network"])

    def input_shape(self) -> Optional[list[int]]:
        return list(self.shape)

    def with_input_shape(self, shape: list[int]) -> "ExtraInput":
        return self.replace(shape=list(shape))

    def forward(self, step, xs, params, env):
        import numpy as np
        # the executor feeds every network input (given or drawn); zeros only for a layer run on its own
        return env.feed if env.feed is not None else np.zeros(step.facts.output_shape)

    def backward(self, step, grads: Gradients) -> Backward:
        return Backward(lines=["backward: none: a network input requires no gradient"])

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        c.add(f"another network input {list(facts.output_shape)}: params 0, MACs 0, FLOPs 0")
