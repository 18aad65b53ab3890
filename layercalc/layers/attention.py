"""Attention: ``multi_head_attention`` (PyTorch's ``nn.MultiheadAttention``, Keras' ``MultiHeadAttention`` and
``GroupQueryAttention``, Llama's grouped-query q/k/v/o projections), ``scaled_dot_product_attention`` (PyTorch's
functional ``F.scaled_dot_product_attention``), ``matmul`` (``torch.matmul`` of two tensors) and
``shifted_window_attention`` (Swin Transformer's windowed attention with relative position bias; its counts are
written in the class) and ``relative_position_bias`` (T5's bucketed bias added to the scores: a lookup, no
arithmetic counted).

Counts (docs/conventions.md, "Attention"), with N the batch, H query heads, kv key/value heads, d_k and d_v the
head sizes, L_q query and L_k key positions:

- params: four projections, each ``in·out`` + ``out`` with bias: q ``E → H·d_k``, k ``kdim → kv·d_k``,
  v ``vdim → kv·d_v``, out ``H·d_v → E_out``; PyTorch's default (kv = H, H·d_k = E, kdim = vdim = E_out = E) is
  ``4·E² + 4·E``. ``add_bias_kv`` adds ``kv·d_k + kv·d_v``. ``qkv_bias`` and ``out_bias`` switch the biases of
  the q/k/v and the output projections apart (Qwen2: q/k/v only).
- MACs: the projections (``rows·in·out`` each) + QKᵀ ``N·H·L_q·L_k·d_k`` + A·V ``N·H·L_q·L_k·d_v``.
- FLOPs: 2·MACs + bias adds + one scaling multiply per score + softmax, 5 per score (as the ``softmax`` layer
  counts it) + with ``rope``, 3 per rotated q/k element (as ``rotary_embedding`` counts it). A causal mask is
  counted in full, as the published formulas (Kaplan, Megatron, PaLM) and PyTorch's ``FlopCounterMode`` count it;
  the layer's notes give the figure for the unmasked scores only.

The receptive field ends (null): every output position depends on every key position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from ..errors import SpecError, layer_label
from ..explain import Explanation, n, prod_text
from ..rules import (
    NO_INPUT_GRADIENT,
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    fmt_shape,
    global_field,
    numel,
)
from .activation import SOFTCAP_FLOPS, Softmax, softcap
from .base import (
    Bool,
    Float,
    GradFlow,
    LayerBase,
    NonNegativePerDim,
    ParamSpec,
    PerDim,
    PositiveFloat,
    PositiveInt,
    Probability,
    Saved,
    _alias,
    _per_dim,
    keras_variables,
    per_dim_default,
    register_layer,
)
from .merge import broadcast_shapes
from .norm import RMS_ELEMENT_FLOPS, RMS_GROUP_FLOPS, rms_norm_saved
from .sequence import ROTARY_FLOPS, rotate

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ["MultiHeadAttention", "ScaledDotProductAttention", "MatMul", "ShiftedWindowAttention",
           "RelativePositionBias", "relative_position_buckets", "causal_pairs",
           "torch_state_dict"]

#: FLOPs per attention score besides the two products: one multiply by the scale, and the softmax
SCALE_FLOPS = 1
SOFTMAX_FLOPS = Softmax.flops_per_element


def causal_pairs(lq: int, lk: int) -> int:
    """The (query, key) pairs a causal mask leaves, aligned top-left as PyTorch's ``is_causal``: query i sees keys
    0..i (``torch.ones(L_q, L_k).tril()``), so ``L·(L + 1)/2`` for ``L_q = L_k = L``.

    >>> causal_pairs(4, 4), causal_pairs(2, 5), causal_pairs(5, 2)
    (10, 3, 9)
    """
    if lq <= lk:
        return lq * (lq + 1) // 2
    return lk * (lk + 1) // 2 + (lq - lk) * lk


def _causal_pairs_text(lq: int, lk: int) -> str:
    """The worked count of :func:`causal_pairs`.

    >>> _causal_pairs_text(10, 10), _causal_pairs_text(7, 5)
    ('L·(L + 1)/2 = 10·11/2 = 55', 'L_k·(L_k + 1)/2 + (L_q − L_k)·L_k = 5·6/2 + 2·5 = 25')
    """
    if lq == lk:
        return f"L·(L + 1)/2 = {lq}·{lq + 1}/2 = {causal_pairs(lq, lk):,}"
    if lq < lk:
        return f"L_q·(L_q + 1)/2 = {lq}·{lq + 1}/2 = {causal_pairs(lq, lk):,}"
    return f"L_k·(L_k + 1)/2 + (L_q − L_k)·L_k = {lk}·{lk + 1}/2 + {lq - lk}·{lk} = {causal_pairs(lq, lk):,}"


def decode_pairs(lq: int, past: int) -> int:
    """The (query, key) pairs a causal mask leaves in a decode step: new query i sits at position past + i and sees
    keys 0..past + i (the cached ones and the new ones up to itself: the mask aligned bottom-right, as Hugging
    Face's cache does), so ``L_q·past + L_q·(L_q + 1)/2``.

    >>> decode_pairs(1, 127), decode_pairs(3, 5)
    (128, 21)
    """
    return lq * past + lq * (lq + 1) // 2


def _causal_note(lq: int, lk: int, groups: int, dk: int, dv: int, macs: int, past: int = 0) -> str:
    """The layer's note on a causal mask: counted in full, and what only the unmasked scores would cost."""
    if past:
        if lq == 1:
            return (f"decode step: the new token attends to the {past:,} cached positions and itself "
                    f"({past + 1:,} keys); no score is masked")
        full, kept = groups * lq * (past + lq), groups * decode_pairs(lq, past)
        return (f"decode step: {lq} new positions attend to {past:,} cached + {lq} new keys; causal mask counted in "
                f"full ({groups:,}·{lq}·{past + lq:,} = {full:,} scores), {kept:,} unmasked (new position i sees "
                f"keys 0..{past:,} + i): QKᵀ + A·V on those alone would be {kept * (dk + dv):,} MACs instead of "
                f"{full * (dk + dv):,}")
    full, kept = groups * lq * lk, groups * causal_pairs(lq, lk)
    skipped = (full - kept) * (dk + dv)
    total = f" ({macs - skipped:,} in all instead of {macs:,})" if macs != full * (dk + dv) else ""
    return (f"causal mask: counted in full ({groups:,}·{lq}·{lk} = {full:,} scores), as the published formulas "
            f"(Kaplan, Megatron, PaLM) and torch's FlopCounterMode count it; only {kept:,} are unmasked (query i "
            f"sees keys 0..i, PyTorch's top-left alignment): QKᵀ + A·V on those alone would be {kept * (dk + dv):,} "
            f"MACs instead of {full * (dk + dv):,}{total}, what a kernel that skips masked blocks (FlashAttention) "
            f"does")


def _explain_causal(c: Explanation, groups: int, groups_text: str, lq: int, lk: int, dk: int, dv: int) -> None:
    kept = groups * causal_pairs(lq, lk)
    c.add(f"causal: counted in full above; unmasked (query, key) pairs per head {_causal_pairs_text(lq, lk)}; "
          f"QKᵀ + A·V on those alone = {groups_text}·pairs·(d_k + d_v) = {groups}·{causal_pairs(lq, lk)}·({dk} + "
          f"{dv}) = {n(kept * (dk + dv))} MACs")


# -------------------------------------------------------------------------------------- NumPy forward helpers

def attention_field(query: Tensor, keys: list[Tensor], causal: bool, ctx: Context) -> Optional[ReceptiveField]:
    """The receptive field past attention over sequences ``[N, L, E]`` of an NHWC network (the sequence is its
    spatial dim): without a causal mask every output position reads every key and value position, so it sees the
    whole input when their fields cover it (:func:`global_field`), at the query's positions (its jump). Otherwise
    none: what one position sees is not reported past attention."""
    if causal or query.rf is None or len(query.shape) != 3 or len(query.rf.size) != 1 or not ctx.channels_last:
        return None
    for key in keys:
        seen = global_field(key.rf, key.shape[1:2], ctx) if len(key.shape) == 3 else None
        if seen is not None and seen.whole:
            return ReceptiveField.whole_input(seen.size, query.rf.jump)
    return None


def attend(q: Any, k: Any, v: Any, scale: float, causal: bool, counter: Any, cap: Optional[float] = None,
           window: int = 0, bias: Any = None) -> Any:
    """``softmax(scale·q·kᵀ (+ bias) (+ causal mask))·v`` over the last two dims, leading dims broadcast (a k/v head
    of size 1 serves a group of query heads without a copy); counts the two products' multiply-adds. ``cap``: the
    scores become cap·tanh(scores/cap) before the mask (Gemma 2); ``window`` (0: none): a sliding window, query i
    sees keys i − window + 1..i only (key j is kept when j > i − window, as transformers' mask); ``bias``: added to
    the scores (T5's relative position bias), broadcast to them."""
    import numpy as np

    from ..kernels import softmax

    scores = np.matmul(q, np.swapaxes(k, -1, -2))
    counter.add(scores.size * q.shape[-1])
    scores *= scale
    if cap is not None:
        softcap(scores, cap, out=scores)
    if bias is not None:
        scores += bias
    if causal:
        lq, lk = scores.shape[-2:]
        hidden = np.triu(np.ones((lq, lk), dtype=bool), 1)
        if window:
            hidden |= np.tril(np.ones((lq, lk), dtype=bool), -window)
        np.copyto(scores, -np.inf, where=hidden)
    softmax(scores, -1, out=scores)                  # in place: the scores are the largest array of the layer
    out = np.matmul(scores, v)
    counter.add(scores.size * v.shape[-1])
    return out


def _heads(x: Any, kv_heads: int, group: int) -> Any:
    """``[N, L, kv·group·d]`` → ``[N, kv, group, L, d]`` (contiguous, for the batched products)."""
    import numpy as np

    n_, length, features = x.shape
    d = features // (kv_heads * group)
    return np.ascontiguousarray(x.reshape(n_, length, kv_heads, group, d).transpose(0, 2, 3, 1, 4))


def attention_core_backward(scores: int, dk: int, dv: int, q: bool, k: bool, v: bool) -> Backward:
    """The backward of the two score matmuls S = Q·Kᵀ (scores·d_k MACs) and O = P·V (scores·d_v): every operand
    is an activation, so these are input (activation) gradients only, each made when its operand needs one —
    dP = dO·Vᵀ (scores·d_v) for dQ or dK, dV = Pᵀ·dO (scores·d_v), dQ = dS·K (scores·d_k), dK = dSᵀ·Q
    (scores·d_k). With all three needed: twice the forward's score MACs."""
    parts = [("dP = dO·Vᵀ", scores * dv, q or k), ("dV = Pᵀ·dO", scores * dv, v),
             ("dQ = dS·K", scores * dk, q), ("dK = dSᵀ·Q", scores * dk, k)]
    made = [(name, macs) for name, macs, needed in parts if needed]
    total = sum(macs for _, macs in made)
    text = " + ".join(f"{name} {macs:,}" for name, macs in made) or "none needed"
    return Backward(input_macs=total, lines=[f"backward through the scores ({scores:,} scores, d_k {dk}, d_v {dv}): "
                                             f"{text} = {total:,} MACs"])


# ------------------------------------------------------------------------------------------ multi-head attention

#: how each projection's weight shape is made (PyTorch's [out, in]), for messages
_WEIGHT_LAYOUTS = {"q": "[num_heads·head_dim, embed_dim]", "k": "[num_kv_heads·head_dim, kdim]",
                   "v": "[num_kv_heads·value_dim, vdim]", "out": "[output_dim, num_heads·value_dim]"}


@dataclass(frozen=True)
class AttentionDims:
    """The resolved sizes of one multi-head attention layer (``facts.geometry["attention"]``)."""
    batch: int             # N
    lq: int                # query positions
    lk: int                # key (= value) positions of the inputs
    extra: int             # keys appended after the projections: bias_k (add_bias_kv), a zero key (add_zero_attn)
    embed: int             # E: query features
    kdim: int
    vdim: int
    heads: int             # H: query heads
    kv_heads: int
    dk: int                # query/key head size
    dv: int                # value head size
    out: int               # output features
    torch_layout: bool     # shapes nn.MultiheadAttention holds (kv = H, H·d_k = E, d_v = d_k, output E)
    packed: bool           # and kdim = vdim = E: its in_proj_weight [3E, E] (how the layer stores them: qkv_layout)
    rotary: int = 0        # features of each q and k head rotated by RoPE (0: no rope)
    past: int = 0          # a decode step's cached positions the queries read beyond lk (Context.past, at most
    #                        window − 1 with a sliding window)
    caches: bool = False   # keeps a KV cache for generation: causal self-attention, or fixed_kv (kv_cache_elements)
    window: int = 0        # sliding window (0: none): the cache keeps the last window − 1 positions
    qk_norm: bool = False  # an RMSNorm over each q and k head (weights [d_k] each)
    fixed_kv: bool = False  # an attention whose keys and values come from a fixed tensor (an encoder's output:
    #                         cross-attention) in a pass that marks them (a serving phase, or the ordinary pass of a
    #                         network with fixed inputs: Network.resolve), projected once at the prefill and cached
    kv_cached: bool = False  # a decode step of such an attention: keys and values read from the cache, the k and
    #                          v projections (their norms, rotation) not run

    @property
    def projected(self) -> int:
        """Key positions the k and v projections run on in this pass: L_k, none when they are read from a cache."""
        return 0 if self.kv_cached else self.lk

    @property
    def normed_heads(self) -> int:
        """Head vectors the q/k norms normalize: every q head at L_q positions and every k head projected."""
        return self.batch * (self.heads * self.lq + self.kv_heads * self.projected) if self.qk_norm else 0

    @property
    def rotated_elements(self) -> int:
        """Elements RoPE rotates: every q head at L_q positions and every k head projected."""
        return self.batch * (self.heads * self.lq + self.kv_heads * self.projected) * self.rotary

    @property
    def keys(self) -> int:
        """Key positions the queries attend to: a decode step's cached ones, the inputs' and the appended ones."""
        return self.past + self.lk + self.extra

    @property
    def cache_elements(self) -> int:
        """Keys and values kept for generation: N·(past + L_k)·kv_heads·(d_k + d_v); 0 when the layer keeps none."""
        if not self.caches:
            return 0
        positions = min(self.past + self.lk, self.window - 1) if self.window else self.past + self.lk
        return self.batch * positions * self.kv_heads * (self.dk + self.dv)

    @property
    def scores(self) -> int:
        return self.batch * self.heads * self.lq * self.keys

    def projections(self) -> list[tuple[str, int, int, int]]:
        """(name, rows, in, out) of the four projections, in PyTorch's order."""
        return [("q", self.batch * self.lq, self.embed, self.heads * self.dk),
                ("k", self.batch * self.projected, self.kdim, self.kv_heads * self.dk),
                ("v", self.batch * self.projected, self.vdim, self.kv_heads * self.dv),
                ("out", self.batch * self.lq, self.heads * self.dv, self.out)]


@register_layer
class MultiHeadAttention(LayerBase):
    """Multi-head attention with its four projections (``torch.nn.MultiheadAttention``, Keras ``MultiHeadAttention``
    and ``GroupQueryAttention``); grouped-query and multi-query attention with ``num_kv_heads``.

    One input: self-attention (query = key = value); two: query, then key = value; three: query, key, value
    (PyTorch's order; Keras calls ``mha(query, value, key)``). Inputs ``[N, L, E]`` (``batch_first``, the default
    here) or ``[L, N, E]``.

    Parameters, in PyTorch's names and layouts (``[out, in]`` weights): with nn.MultiheadAttention's shapes
    (kv = H, H·d_k = E, d_v = d_k, output E) exactly its ``state_dict`` — ``in_proj_weight`` ``[3E, E]`` (or
    ``q_proj_weight``, ``k_proj_weight`` ``[E, kdim]``, ``v_proj_weight`` ``[E, vdim]`` when kdim or vdim differ
    from E), ``in_proj_bias`` ``[3E]``, ``bias_k``, ``bias_v`` ``[1, 1, E]``, ``out_proj_weight``, ``out_proj_bias``
    — except that ``out_proj.weight`` and ``out_proj.bias`` are spelled with ``_`` (weights are keyed
    ``layer.param``, split at the last dot): :func:`torch_state_dict` renames them. Otherwise (grouped-query heads,
    Keras' key_dim·heads ≠ E, value_dim, output_shape) each projection has its own weight and bias:
    ``q_proj_weight`` ``[H·d_k, E]``, ``q_proj_bias``, ``k_proj_…`` ``[kv·d_k, kdim]``, ``v_proj_…``
    ``[kv·d_v, vdim]``, ``out_proj_…`` ``[E_out, H·d_v]`` — Llama's ``q_proj.weight`` … (``o_proj`` → ``out_proj``).
    Keras stores a projection's kernel as ``[in, heads, head_dim]``: ``kernel.reshape(in, -1).T`` is ours.

    ``qkv_layout`` says how the model stores the q, k and v projections, as its parameter tensors (Adam keeps a
    ``step`` per tensor, so the optimizer state depends on it): ``torch`` (the default) as above; ``separate`` a
    weight and a bias per projection whatever the shapes (Hugging Face's q_proj, k_proj, v_proj; Keras'
    query_dense, …); ``fused`` one ``qkv_proj_weight`` ``[H·d_k + kv·d_k + kv·d_v, E]`` and ``qkv_proj_bias``, rows q
    then k then v (GPT-2's c_attn, Phi-3's qkv_proj, GPT-NeoX's query_key_value).
    """
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[Optional[int]] = 4          # query, key, value and, with score_bias, the bias
    type: Literal["multi_head_attention", "multihead_attention"] = "multi_head_attention"
    # Keras' query_dense, key_dense, value_dense: a kernel and a bias each
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"MultiHeadAttention": {"qkv_layout": "separate"}}
    embed_dim: Optional[PositiveInt] = Field(None, description="query features E: inferred from the query's last "
                                                               "dim; an error if different")
    num_heads: PositiveInt = Field(validation_alias=_alias("num_heads", "num_query_heads"),
                                   description="query heads H")
    num_kv_heads: Optional[PositiveInt] = Field(
        None, validation_alias=_alias("num_kv_heads", "num_key_value_heads"),
        description="key/value heads (grouped-query attention; 1: multi-query), dividing num_heads; default "
                    "num_heads")
    head_dim: Optional[PositiveInt] = Field(None, validation_alias=_alias("head_dim", "key_dim"),
                                            description="size of each query/key head; default embed_dim / num_heads")
    value_dim: Optional[PositiveInt] = Field(None, description="size of each value head; default head_dim")
    kdim: Optional[PositiveInt] = Field(None, description="key features: inferred from the key input; an error if "
                                                          "different")
    vdim: Optional[PositiveInt] = Field(None, description="value features: inferred from the value input; an error "
                                                          "if different")
    output_dim: Optional[PositiveInt] = Field(None, validation_alias=_alias("output_dim", "output_shape"),
                                              description="features of the output projection; default embed_dim")
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))
    add_bias_kv: Bool = Field(False, description="append a learned key and value (bias_k, bias_v)")
    add_zero_attn: Bool = Field(False, description="append a zero key and value")
    dropout: Probability = Field(0.0, description="attention dropout: the identity at inference")
    batch_first: Bool = Field(True, description="inputs and output [N, L, E]; off: [L, N, E] as PyTorch's default")
    qkv_bias: Optional[Bool] = Field(None, description="biases of the q, k and v projections (Qwen2: on while "
                                                       "out_bias is off; timm's ViT qkv_bias); default: bias")
    out_bias: Optional[Bool] = Field(None, description="bias of the output projection; default: bias")
    rope: Bool = Field(False, validation_alias=_alias("rope", "rotary"),
                       description="rotary position embedding on q and k after their projections (Llama, Mistral, "
                                   "Qwen2, GPT-NeoX), positions 0..L−1; no params, 3 FLOPs per rotated element")
    rotary_dim: Optional[PositiveInt] = Field(None, description="features of each q/k head rotated (even; "
                                                                "partial rotary); default: head_dim")
    rope_theta: PositiveFloat = Field(10000.0, validation_alias=_alias("rope_theta", "rope_base"),
                                      description="θ: the angle of pair i is position·θ^(−2i/rotary_dim)")
    causal: Bool = Field(False, validation_alias=_alias("causal", "is_causal", "use_causal_mask"),
                         description="causal mask (query i sees keys 0..i); counted in full, the notes give the "
                                     "unmasked figure")
    sliding_window: Optional[PositiveInt] = Field(
        None, description="with causal: query i sees keys i − sliding_window + 1..i only (Mistral, Gemma 2's local "
                          "layers); the mask is counted in full as the causal one; the KV cache keeps the last "
                          "sliding_window − 1 positions (Hugging Face's sliding-window cache), which a decode step "
                          "reads")
    scale: Optional[PositiveFloat] = Field(None, description="multiplies q·kᵀ; default 1/√head_dim (Gemma 2: "
                                                             "query_pre_attn_scalar^−½; T5: 1, its q projection's "
                                                             "initialization holds the scaling)")
    logit_softcap: Optional[PositiveFloat] = Field(
        None, description="scores become cap·tanh(scores/cap) before the mask (Gemma 2's attn_logit_softcapping); "
                          "3 FLOPs per score")
    qk_norm: Bool = Field(False, description="an RMSNorm over each q and k head after the projections, before the "
                                             "rotation (Qwen3, Gemma 3): weights q_norm_weight, k_norm_weight "
                                             "[head_dim]")
    qk_norm_eps: PositiveFloat = Field(1e-6, description="the q/k norms' eps")
    qk_norm_offset: Float = Field(0.0, description="the q/k norms scale by offset + γ (Gemma 3: 1)")
    score_bias: Bool = Field(False, description="the last input is added to the scores before the softmax: "
                                                "[N or 1, H or 1, L_q, L_k] (T5's relative position bias); 1 FLOP "
                                                "per score")
    softmax_dtype: Optional[Literal["float32"]] = Field(
        None, description="the dtype the softmax computes in: float32 for Hugging Face's eager attention of Llama, "
                          "Mistral, Qwen2/3, Gemma, Phi-3, GPT-NeoX, OPT, ViT and the MoE decoders "
                          "(softmax(…, dtype=float32).to(q.dtype)): a 16-bit model keeps the float32 probabilities "
                          "for the softmax's gradient beside their 16-bit copy; default: the activations' dtype "
                          "(GPT-2, BERT, T5, nn.MultiheadAttention). Changes the training figure of 16-bit dtypes "
                          "only")
    qk_dtype: Optional[Literal["float32"]] = Field(
        None, description="the dtype q and k are cast to for the scores: float32 for GPT-2's reorder_and_upcast_attn "
                          "(baddbmm on q.float(), k.float()): a 16-bit model keeps q and k in float32 for the "
                          "product's gradient instead of in its own dtype; its scores, so its softmax, are float32 "
                          "(needs softmax_dtype: float32); default: the activations' dtype. Changes the training "
                          "figure of 16-bit dtypes only")
    fused_sdpa: Bool = Field(
        False, description="the scores, softmax and A·V run as torch's fused F.scaled_dot_product_attention "
                           "(nn.MultiheadAttention called with need_weights=False, as torchvision's ViT and "
                           "nn.TransformerEncoderLayer do): on CPU its kernel keeps a float32 log-sum-exp per query "
                           "row [N, H, L_q] instead of the probabilities [N, H, L_q, L_k], and its output is the heads "
                           "merged; with dropout or grouped-query heads (its math path) not modeled; default: "
                           "explicit matmuls (need_weights=True, eager Hugging Face models). Changes the training "
                           "figure only")
    qkv_layout: Literal["torch", "separate", "fused"] = Field(
        "torch", description="how the model stores the q, k, v projections (its parameter tensors: Adam's step per "
                             "tensor; the weights' names): torch: nn.MultiheadAttention's in_proj_weight, "
                             "in_proj_bias where its shapes allow (else as separate); separate: q/k/v_proj_weight "
                             "and _bias each (Hugging Face's Llama, BERT, T5, …; Keras); fused: one qkv_proj_weight "
                             "and qkv_proj_bias, rows q, k, v (GPT-2's c_attn, Phi-3's qkv_proj, GPT-NeoX)")

    @model_validator(mode="after")
    def _heads_and_mask(self):
        if self.sliding_window is not None and not self.causal:
            raise ValueError(f"sliding_window {self.sliding_window} needs causal: true (the window ends at the query)")
        if (self.qk_norm_eps != 1e-6 or self.qk_norm_offset) and not self.qk_norm:
            raise ValueError("qk_norm_eps and qk_norm_offset are given but qk_norm is off: set qk_norm: true")
        kv = self.num_kv_heads
        if kv is not None and self.num_heads % kv:
            raise ValueError(f"num_kv_heads {kv} must divide num_heads {self.num_heads} (each key/value head "
                             f"serves the same number of query heads)")
        if self.causal and (self.add_bias_kv or self.add_zero_attn):
            raise ValueError("causal with add_bias_kv or add_zero_attn is not supported (where the appended keys "
                             "sit in a causal mask is not defined)")
        if self.rope and (self.add_bias_kv or self.add_zero_attn):
            raise ValueError("rope with add_bias_kv or add_zero_attn is not supported (the appended keys have no "
                             "position to rotate by)")
        if self.sliding_window is not None and not self.causal:
            raise ValueError(f"sliding_window {self.sliding_window} needs causal: true (a window over the earlier "
                             f"positions)")
        if self.rotary_dim is not None and not self.rope:
            raise ValueError(f"rotary_dim {self.rotary_dim} is given but rope is off: set rope: true")
        if self.qk_dtype == "float32" and self.softmax_dtype != "float32":
            raise ValueError("qk_dtype float32 makes float32 scores, whose softmax computes in float32: set "
                             "softmax_dtype: float32 too")
        eager_only = [name for name, on in (("rope", self.rope), ("qk_norm", self.qk_norm),
                                            ("logit_softcap", self.logit_softcap is not None),
                                            ("score_bias", self.score_bias), ("softmax_dtype", self.softmax_dtype),
                                            ("qk_dtype", self.qk_dtype)) if on]
        if self.fused_sdpa and eager_only:
            raise ValueError(f"fused_sdpa (nn.MultiheadAttention's need_weights=False path) with "
                             f"{', '.join(eager_only)} is not modeled: those are Hugging Face's eager attention's")
        if self.score_bias and (self.add_bias_kv or self.add_zero_attn):
            raise ValueError("score_bias with add_bias_kv or add_zero_attn is not supported (the bias input has no "
                             "scores for the appended keys)")
        return self

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def has_out_bias(self) -> bool:
        return self.bias if self.out_bias is None else self.out_bias

    def _biased(self, name: str) -> bool:
        """Whether projection ``name`` (q, k, v or out) has a bias."""
        return self.has_out_bias if name == "out" else self.has_qkv_bias

    def _qk_norm_flops(self, d: AttentionDims) -> int:
        """The q/k RMSNorms as the ``rmsnorm`` layer counts them: (3 + 1 affine) per element, 3 per head vector, and
        the offset + γ adds (d_k per norm) when there is an offset."""
        if not d.qk_norm:
            return 0
        return (d.normed_heads * (d.dk * (RMS_ELEMENT_FLOPS + 1) + RMS_GROUP_FLOPS)
                + (2 * d.dk if self.qk_norm_offset else 0))

    def _extra_flops(self, d: AttentionDims) -> int:
        """FLOPs beyond the projections, scores, softmax and rotation: the q/k norms and the scores' soft-capping."""
        return self._qk_norm_flops(d) + (SOFTCAP_FLOPS * d.scores if self.logit_softcap is not None else 0)

    def score_scale(self, d: AttentionDims) -> float:
        return 1.0 / math.sqrt(d.dk) if self.scale is None else self.scale

    # ------------------------------------------------------------------------------------------------ the rule

    def flop_counter_text(self, macs_text: str) -> str:
        return (f"torch.utils.flop_counter counts 2·MACs = {macs_text} where attention runs as explicit matmuls "
                f"(nn.MultiheadAttention with gradients and need_weights, eager Hugging Face models), 0 for its eval "
                f"fast path and for F.scaled_dot_product_attention on CPU")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        bias_shape: Optional[tuple[int, ...]] = None
        if self.score_bias:
            if len(inputs) < 2:
                raise ctx.fail("score_bias: the last input is the bias added to the scores, so it needs at least "
                               "2 inputs (query, …, bias)")
            bias_shape, inputs = inputs[-1].shape, inputs[:-1]
        elif len(inputs) > 3:
            raise ctx.fail(f"takes 1 to 3 inputs (query, key, value), got {len(inputs)}; a 4th is the score bias "
                           f"with score_bias: true")
        shapes = [t.shape for t in inputs]
        layout = "[N, L, E]" if self.batch_first else "[L, N, E] (batch_first=false)"
        roles = ("query", "key", "value")
        for role, s in zip(roles, shapes):
            if len(s) != 3:
                raise ctx.fail(f"needs 3-d inputs {layout}; the {role} is {len(s)}-d {fmt_shape(s)} (reshape "
                               f"it to one sequence of feature vectors per example first)")
        q_shape = shapes[0]
        k_shape = shapes[1] if len(shapes) > 1 else q_shape
        v_shape = shapes[2] if len(shapes) > 2 else k_shape
        split = (lambda s: (s[0], s[1], s[2])) if self.batch_first else (lambda s: (s[1], s[0], s[2]))
        (n_, lq, e), (nk, lk, kdim), (nv, lv, vdim) = split(q_shape), split(k_shape), split(v_shape)
        if not n_ == nk == nv:
            raise ctx.fail(f"the inputs' batch sizes differ: query {fmt_shape(q_shape)}, key {fmt_shape(k_shape)}, "
                           f"value {fmt_shape(v_shape)} (layout {layout})")
        if lk != lv:
            raise ctx.fail(f"the key {fmt_shape(k_shape)} has {lk} positions and the value {fmt_shape(v_shape)} "
                           f"{lv}: one value per key (layout {layout})")
        own = " (one input: self-attention, so the key and value are the query)" if len(shapes) == 1 else ""
        for field, declared, actual, role, s in (("embed_dim", self.embed_dim, e, "query", q_shape),
                                                  ("kdim", self.kdim, kdim, "key", k_shape),
                                                  ("vdim", self.vdim, vdim, "value", v_shape)):
            if declared is not None and declared != actual:
                raise ctx.fail(f"{field} is {declared} but the {role} {fmt_shape(s)} has {actual} features"
                               + ("" if role == "query" else own))
        heads = self.num_heads
        kv = self.num_kv_heads or heads
        if self.head_dim is None and e % heads:
            raise ctx.fail(f"embed_dim {e} is not divisible by num_heads {heads} (nn.MultiheadAttention requires "
                           f"it); give head_dim (Keras: key_dim) for heads of another size")
        dk = self.head_dim or e // heads
        dv = self.value_dim or dk
        rotary = (self.rotary_dim or dk) if self.rope else 0
        if rotary > dk or rotary % 2:
            raise ctx.fail(f"rotary_dim {rotary} must be even and at most head_dim {dk} (the features of each "
                           f"q/k head rotate in pairs)")
        out = self.output_dim or e
        # causal self-attention keeps its keys and values for generation; an encoder's bidirectional attention keeps
        # none; a cross-attention keeps the keys and values of a fixed sequence (an encoder's output: the ordinary
        # pass, which is the prefill, marks it fixed as a serving phase does), projected at the prefill, read from
        # the cache by a decode step (docs/conventions.md, "Serving")
        fixed = ctx.fixed[:len(inputs)]
        fixed_kv = len(inputs) > 1 and bool(fixed) and all(fixed[1:]) and not fixed[0] and self.batch_first
        caches = (self.causal and len({t.name for t in inputs}) == 1 and self.batch_first) or fixed_kv
        if ctx.past and not caches:
            raise ctx.fail(self._no_decode_reason(inputs))
        past = 0 if fixed_kv else min(ctx.past, self.sliding_window - 1) if self.sliding_window else ctx.past
        if bias_shape is not None:
            scores_shape = (n_, heads, lq, past + lk)
            if (len(bias_shape) != 4 or bias_shape[2:] != scores_shape[2:]
                    or any(b not in (1, s) for b, s in zip(bias_shape[:2], scores_shape[:2]))):
                raise ctx.fail(f"score_bias: the bias {fmt_shape(bias_shape)} must be [N or 1, H or 1, L_q, L_k] = "
                               f"{fmt_shape(scores_shape)} (N, H, L_q, L_k of the scores)")
        torch_layout = kv == heads and heads * dk == e and dv == dk and out == e
        if self.qkv_layout == "fused" and not kdim == vdim == e:
            raise ctx.fail(f"qkv_layout fused: one qkv_proj_weight reads inputs of one width, but the query has "
                           f"{e} features, the key {kdim}, the value {vdim}; use qkv_layout separate")
        dims = AttentionDims(batch=n_, lq=lq, lk=lk, extra=int(self.add_bias_kv) + int(self.add_zero_attn),
                             embed=e, kdim=kdim, vdim=vdim, heads=heads, kv_heads=kv, dk=dk, dv=dv, out=out,
                             torch_layout=torch_layout, packed=torch_layout and kdim == vdim == e, rotary=rotary,
                             past=past, caches=caches, window=self.sliding_window or 0, qk_norm=self.qk_norm,
                             fixed_kv=fixed_kv, kv_cached=fixed_kv and ctx.past > 0)
        projections = dims.projections()
        params = sum(fin * fout + (fout if self._biased(name) else 0) for name, _, fin, fout in projections)
        if self.add_bias_kv:
            params += kv * (dk + dv)
        params += 2 * dk if self.qk_norm else 0
        macs = sum(rows * fin * fout for _, rows, fin, fout in projections) + dims.scores * (dk + dv)
        bias_adds = sum(rows * fout for name, rows, _, fout in projections if self._biased(name))
        flops = (2 * macs + bias_adds + (SCALE_FLOPS + SOFTMAX_FLOPS + self.score_bias) * dims.scores
                 + ROTARY_FLOPS * dims.rotated_elements + self._extra_flops(dims))
        notes = []
        if self.scale is not None:
            notes.append(f"scores scaled by {self.scale:g} (not 1/√head_dim)")
        if not self.batch_first:
            notes.append(f"batch_first=false: reads {fmt_shape(q_shape)} as [L, N, E]: {lq:,} position(s) of "
                         f"{n_:,} sequence(s); a network's own input is [batch, ...]: its batch dim is the "
                         f"sequence dim here")
        if self.causal:
            notes.append(_causal_note(lq, dims.keys, n_ * heads, dk, dv, macs, dims.past))
        if dims.window and (dims.past + lk >= dims.window or ctx.past > dims.past):     # (else it changes nothing)
            notes.append(self._window_note(dims, ctx.past))
        if fixed_kv:
            source = inputs[1].name
            notes.append(f"decode step: the keys and values of the {lk:,} positions of {source!r} (fixed: made at the "
                         f"prefill) are read from the cache; no k, v projections" if dims.kv_cached else
                         f"KV cache: the keys and values of the {lk:,} positions of {source!r}, a fixed sequence "
                         f"(no decoded input makes it: an encoder's output), projected once and read from the cache "
                         f"by every generated token")
        output = (n_, lq, out) if self.batch_first else (lq, n_, out)
        rf = attention_field(inputs[0], inputs[1:] or inputs, self.causal, ctx) if self.batch_first else None
        return Facts(output_shape=output, params=params, macs=macs, flops=flops, notes=notes, rf=rf,
                     geometry={"attention": dims})

    def saved_for_backward(self, step: Any, grads: GradFlow) -> Optional[list[Saved]]:
        """As Hugging Face's eager attention computes it (measured, torch 2.13, batch ≥ 2): each projection keeps
        its input; the two products keep q, kᵀ (key heads repeated to the H query heads: repeat_kv copies them, but
        from one key head (MQA) at batch 1 its expand is a view), the softmax's output and v, each a tensor of its
        own; the output projection keeps the heads merged back (a copy); with RoPE, the cos and sin tables (made once
        per forward, shared by every layer); with dropout, its mask and the dropped probabilities; with q/k norms
        (Qwen3, Gemma 3), what each of the two RMSNorms keeps (:meth:`_qk_norm_saved`); with a logit soft-cap
        (Gemma 2), tanh's output; with ``qk_dtype`` float32 (GPT-2's reorder_and_upcast_attn) q and kᵀ in float32.
        With ``fused_sdpa`` (nn.MultiheadAttention, need_weights=False) the fused CPU kernel's tensors instead of the
        softmax's: q, k, v, its output (the heads merged) and the log-sum-exp, as scaled_dot_product_attention keeps
        them. A score bias (T5) is added to the scores: the add keeps nothing. Exceptions
        (docs/conventions.md): at batch 1, GPT-2's fused c_attn leaves q a view of the whole [N, L, 3E] projection;
        nn.MultiheadAttention keeps its fused projection whole beside a scaled copy of q. Not modeled (None): q/k
        norms on q, k, v stored as one tensor (nn.MultiheadAttention's in_proj, qkv_layout fused: the norms would
        read slices of one projection: not measured)."""
        d: AttentionDims = step.facts.geometry["attention"]
        if d.qk_norm and self._qkv_stored(d)[0] is not None:      # q, k, v stored as one tensor (qkv_layout)
            return None
        if self.fused_sdpa and not fused_cpu_kernel_runs(bool(self.dropout), d.kv_heads != d.heads):
            return None
        if not grads.any:
            return []
        n, h, keys = d.batch, d.heads, d.keys
        saved: list[Saved] = []
        projected = len(step.inputs) - int(self.score_bias)          # the score bias (last input) is not projected
        if grads.params:
            sources = sorted({0, min(1, projected - 1), projected - 1})
            saved += [Saved("input", f"input {k}, for the {'q/k/v' if len(sources) == 1 else 'projections'}' "
                                     f"weight gradients", k) for k in sources]
            if (self.qkv_layout == "torch" and d.torch_layout and not d.packed and self.batch_first and n > 1
                    and projected == 2):
                # nn.MultiheadAttention, batch_first, one tensor as key and value, projected by its own k and v
                # weights (kdim or vdim ≠ E): the transposed [L, N, kdim] view reaches the projections' matmul, which
                # keeps a contiguous copy of it (measured; not with separate key and value tensors, nor at N = 1)
                saved.append(Saved("extra", f"the key/value input transposed to [{d.lk}, {n}, {d.kdim}] and made "
                                            f"contiguous, for the k and v weight gradients", numel=n * d.lk * d.kdim))
        if d.qk_norm:
            saved += self._qk_norm_saved(d, grads)
        # repeat_kv copies a group's key/value heads to the H query heads — except one head (MQA) of one sequence:
        # expand and reshape are then a view of it, whose storage (one head's) is what is kept (measured)
        kept = 1 if d.kv_heads == 1 and n == 1 else h
        how = ("" if d.kv_heads == h else f" (the {d.kv_heads} key heads repeated to {h}: a copy)" if kept == h
               else f" (one key head seen as {h}: a view, one head's storage kept)")
        # GPT-2's reorder_and_upcast_attn: q.float() and k.float() are what the product keeps (in a 16-bit model
        # copies in float32; in float32 the same tensors)
        wide = 4 if self.qk_dtype == "float32" and grads.itemsize < 4 else None
        upcast = " in float32" if wide else ""
        saved += [Saved("extra", f"q [{n}, {h}, {d.lq}, {d.dk}]" + (" after RoPE" if d.rotary else "")
                        + f"{upcast}, for k's gradient", numel=n * h * d.lq * d.dk, itemsize=wide),
                  Saved("extra", f"kᵀ [{n}, {h}, {d.dk}, {keys}]{how}{upcast}, for q's gradient",
                        numel=n * kept * keys * d.dk, itemsize=wide)]
        if self.fused_sdpa:
            # F.scaled_dot_product_attention's CPU kernel keeps q, k (above), v, its output and the log-sum-exp; its
            # output, permuted to [N, L, H·d_v], is the output projection's input without a copy (measured)
            return saved + [Saved("extra", f"v [{n}, {h}, {keys}, {d.dv}], for the fused kernel's backward",
                                  numel=n * h * keys * d.dv),
                            Saved("extra", f"the fused kernel's output, the heads merged [{n}, {d.lq}, {h * d.dv}], "
                                           f"for its backward and the output projection's weight gradient",
                                  numel=n * d.lq * h * d.dv),
                            fused_cpu_kernel_lse(n * h * d.lq)] + self._fused_projection_kept(step, d)
        if self.logit_softcap is not None:
            # cap·tanh(scores/cap): the divide and multiply by a number keep nothing, tanh its output
            saved.append(Saved("extra", f"the soft-cap's tanh(scores/{self.logit_softcap:g}) [{n}, {h}, {d.lq}, "
                                        f"{keys}], for its own gradient", numel=d.scores))
        saved += [Saved("extra", f"the softmax's output [{n}, {h}, {d.lq}, {keys}], for its own gradient and v's",
                        numel=d.scores),
                  Saved("extra", f"v [{n}, {h}, {keys}, {d.dv}]{how}, for the probabilities' gradient",
                        numel=n * kept * keys * d.dv)]
        if self.dropout:
            saved.append(Saved("extra", f"the dropout mask and the dropped probabilities (2·{d.scores:,})",
                               numel=2 * d.scores))
        if self.softmax_dtype == "float32" and grads.itemsize < 4:
            # softmax(…, dtype=float32) keeps its float32 output; .to(q.dtype) makes the 16-bit copy counted above
            saved.append(Saved("extra", f"the softmax's float32 output [{n}, {h}, {d.lq}, {keys}] (the probabilities "
                                        f"are cast to the 16-bit dtype after it), for its own gradient",
                               numel=d.scores, itemsize=4))
        if grads.params:
            saved.append(Saved("extra", f"the heads merged [{n}, {d.lq}, {h * d.dv}], for the output projection's "
                                        f"weight gradient", numel=n * d.lq * h * d.dv))
        if d.rotary:
            saved.append(Saved("extra", f"RoPE's cos and sin tables [1, {d.lq}, {d.rotary}] (made once, shared by "
                                        f"every layer)", numel=2 * d.lq * d.rotary,
                               shared=f"rotary tables {d.lq}×{d.rotary} base {self.rope_theta:g}"))
        return saved

    def _fused_projection_kept(self, step: Any, d: AttentionDims) -> list[Saved]:
        """nn.MultiheadAttention's self-attention projects q, k, v as one tensor [3, L, N, E] and q stays a view of
        it; with appended keys (add_bias_kv, add_zero_attn) the kernel's k and v are the concatenations, so the
        projection's k and v parts are kept only as q's base: 2·N·L·E more (measured, need_weights=False)."""
        if not (d.extra and d.packed and len(set(step.inputs)) == 1):
            return []
        return [Saved("extra", f"the k and v parts of the fused projection [2, {d.lk}, {d.batch}, {d.embed}] (kept "
                               f"whole with q, a view of it; the kernel reads k and v with the appended keys)",
                      numel=2 * d.lk * d.batch * d.embed)]

    def _qk_norm_saved(self, d: AttentionDims, grads: GradFlow) -> list[Saved]:
        """What the q and k RMSNorms keep, as Hugging Face's Qwen3RMSNorm and Gemma3RMSNorm compute them (measured):
        each norm's input (the projection's output seen per head), 1/rms per head vector, and, for γ's gradient,
        the normalized heads; with an offset (Gemma), offset + γ too (a tensor of d_k made by the add). Computed in
        float32: in a 16-bit dtype the input is upcast and its float32 copy kept, with 1/rms; the normalized heads
        are kept in float32 with an offset (Gemma multiplies by (1 + γ) in float32) and in the 16-bit dtype without
        (Qwen3 casts back before γ)."""
        saved: list[Saved] = []
        for role, heads, length in (("q", d.heads, d.lq), ("k", d.kv_heads, d.lk)):
            # the projection's output always needs a gradient here (the attention is trained, or its input is);
            # Hugging Face's flavours: Qwen3 casts back before γ, Gemma 3 multiplies by 1 + γ in float32
            saved += rms_norm_saved(d.batch * length * heads * d.dk, d.dk, grads.itemsize, x_needs_grad=True,
                                    trained=grads.params, offset=self.qk_norm_offset,
                                    cast_before_scale=not self.qk_norm_offset, x_is_input=False,
                                    label=f"the {role} norm's ", row="head vector")
        return saved

    def _no_decode_reason(self, inputs: list[Tensor]) -> str:
        """Why this attention has no decode step (a network run with ``past``)."""
        if not self.batch_first:
            return "a decode step needs batch_first attention ([N, L, E])"
        if len({t.name for t in inputs}) > 1:
            return (f"a decode step is counted for causal self-attention, and for cross-attention to a fixed sequence "
                    f"(not made by the decoded input: an encoder's output, made at the prefill; Network.serving "
                    f"decides which); this layer attends from {inputs[0].name!r} to {inputs[1].name!r}, which is "
                    f"not fixed")
        return ("a decode step (past positions) needs causal self-attention; this attention is bidirectional "
                "(causal: false, an encoder's): every position reads later ones, so no token is generated from a "
                "cache")

    def kv_cache_elements(self, facts: Facts) -> int:
        return facts.geometry["attention"].cache_elements

    @staticmethod
    def _window_note(d: AttentionDims, past: int) -> str:
        w = d.window
        kept = (f"the KV cache keeps the last {w - 1:,} positions (window − 1, Hugging Face's sliding-window cache)"
                if d.past + d.lk >= w else
                f"the KV cache keeps all {d.past + d.lk:,} positions (fewer than the window)")
        if past > d.past:
            return (f"sliding window {w:,}: of the {past:,} past positions the last {d.past:,} are cached and read; "
                    f"{kept}")
        lq = d.lq
        pairs = (lq * (lq + 1) // 2 if lq <= w else w * (w + 1) // 2 + (lq - w) * w) * d.batch * d.heads
        unmasked = f" ({pairs:,} unmasked scores with the window)" if d.past == 0 and lq == d.lk else ""
        return (f"sliding window {w:,}: query i sees keys i − {w - 1:,}..i, a mask counted in full{unmasked}; "
                f"{kept}")

    def _qkv_stored(self, d: AttentionDims) -> tuple[Optional[str], Optional[str]]:
        """The prefix of the one tensor holding the q, k and v weights (``in_proj`` or ``qkv_proj``; None: one
        tensor each), and of the one holding their biases (qkv_layout; nn.MultiheadAttention with kdim or vdim ≠ E
        has separate weights beside one in_proj_bias)."""
        if self.qkv_layout == "fused":
            return "qkv_proj", "qkv_proj"
        if self.qkv_layout == "torch" and d.torch_layout:
            return ("in_proj" if d.packed else None), "in_proj"
        return None, None

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        d: AttentionDims = step.facts.geometry["attention"]
        specs: dict[str, ParamSpec] = {}
        weight, bias = self._qkv_stored(d)
        rows = d.heads * d.dk + d.kv_heads * (d.dk + d.dv)           # q, k and v stacked (3E with torch's shapes)
        layout = ("[3·embed_dim" if weight == "in_proj"
                  else "[(num_heads + num_kv_heads)·head_dim + num_kv_heads·value_dim")
        # nn.MultiheadAttention initializes its weights with Xavier's uniform and its biases with zeros; here the
        # weights are U(±1/√in) as for every other layer
        if weight is not None:
            specs[f"{weight}_weight"] = ParamSpec((rows, d.embed), f"{layout}, embed_dim]", "uniform", d.embed)
        for name, _, fin, fout in d.projections()[:3]:
            if weight is None:
                specs[f"{name}_proj_weight"] = ParamSpec((fout, fin), _WEIGHT_LAYOUTS[name], "uniform", fin)
            if self.has_qkv_bias and bias is None:
                specs[f"{name}_proj_bias"] = ParamSpec((fout,), _WEIGHT_LAYOUTS[name].split(",")[0] + "]")
        if self.has_qkv_bias and bias is not None:
            specs[f"{bias}_bias"] = ParamSpec((rows,), f"{layout}]")
        if self.add_bias_kv:
            specs["bias_k"] = ParamSpec((1, 1, d.kv_heads * d.dk), "[1, 1, num_kv_heads·head_dim]", "uniform",
                                        d.kv_heads * d.dk)
            specs["bias_v"] = ParamSpec((1, 1, d.kv_heads * d.dv), "[1, 1, num_kv_heads·value_dim]", "uniform",
                                        d.kv_heads * d.dv)
        specs["out_proj_weight"] = ParamSpec((d.out, d.heads * d.dv), _WEIGHT_LAYOUTS["out"], "uniform", d.heads * d.dv)
        if self.has_out_bias:
            specs["out_proj_bias"] = ParamSpec((d.out,), "[output_dim]")
        if self.qk_norm:
            for role in "qk":                    # γ of zeros scales by 1 with an offset of 1 (Gemma 3)
                specs[f"{role}_norm_weight"] = ParamSpec((d.dk,), "[head_dim]",
                                                         "zeros" if self.qk_norm_offset else "ones")
        return specs

    def keras_weights(self, step: Any, class_name: str, variables: dict) -> dict:
        """Keras' projections are sub-layers: query_dense, key_dense, value_dense with kernel [in, heads, head_dim]
        and bias [heads, head_dim], output_dense with kernel [heads, value_dim, out] and bias [out]. Flattening the
        heads gives [in, H·d] (heads outer, as this layer splits them): its transpose is the PyTorch weight."""
        import numpy as np

        d: AttentionDims = step.facts.geometry["attention"]
        if d.kv_heads != d.heads or self.add_bias_kv:
            raise SpecError(f"weights for {layer_label(step.index, step.name, self.type_name)}: Keras' {class_name} "
                            f"has as many key/value heads as query heads and no bias_k/bias_v; this layer has "
                            f"num_kv_heads {d.kv_heads}, add_bias_kv {str(self.add_bias_kv).lower()}")
        qkv = ["kernel", "bias"][:1 + self.has_qkv_bias]
        v = keras_variables(step, class_name, variables, {"query_dense": qkv, "key_dense": qkv, "value_dense": qkv,
                                                          "output_dense": ["kernel", "bias"][:1 + self.has_out_bias]})
        weights = [v[f"{part}_dense/kernel"].reshape(v[f"{part}_dense/kernel"].shape[0], -1).T
                   for part in ("query", "key", "value")]
        params = {}
        weight, bias = self._qkv_stored(d)
        if weight is not None:
            params[f"{weight}_weight"] = np.concatenate(weights)
        else:
            params.update({f"{name}_proj_weight": w for name, w in zip("qkv", weights)})
        if self.has_qkv_bias:
            biases = [v[f"{part}_dense/bias"].reshape(-1) for part in ("query", "key", "value")]
            if bias is not None:
                params[f"{bias}_bias"] = np.concatenate(biases)
            else:
                params.update({f"{name}_proj_bias": b for name, b in zip("qkv", biases)})
        out_kernel = v["output_dense/kernel"]
        params["out_proj_weight"] = out_kernel.reshape(-1, out_kernel.shape[-1]).T
        if self.has_out_bias:
            params["out_proj_bias"] = v["output_dense/bias"]
        return params

    # ----------------------------------------------------------------------------------------------- forward

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        from ..kernels import linear

        d: AttentionDims = step.facts.geometry["attention"]
        bias = None
        if self.score_bias:                                           # [N|1, H|1, L_q, L_k] → [N|1, kv|1, g|1, …]
            bias, xs = xs[-1], xs[:-1]
            heads = bias.shape[1]
            bias = bias.reshape(bias.shape[0], *((d.kv_heads, d.heads // d.kv_heads) if heads > 1 else (1, 1)),
                                *bias.shape[2:])
        query, key, value = xs[0], xs[min(1, len(xs) - 1)], xs[-1]
        if not self.batch_first:                                      # [L, N, E] → [N, L, E] (views)
            query, key, value = (a.transpose(1, 0, 2) for a in (query, key, value))
        stored_weight, stored_bias = self._qkv_stored(d)
        q_end, k_end = d.heads * d.dk, (d.heads + d.kv_heads) * d.dk           # rows of q, then k, then v
        if stored_weight is not None:
            w = params[f"{stored_weight}_weight"]
            weights = [w[:q_end], w[q_end:k_end], w[k_end:]]
        else:
            weights = [params[f"{name}_proj_weight"] for name in "qkv"]
        if not self.has_qkv_bias:
            biases: list[Any] = [None] * 3
        elif stored_bias is not None:
            b = params[f"{stored_bias}_bias"]
            biases = [b[:q_end], b[q_end:k_end], b[k_end:]]
        else:
            biases = [params[f"{name}_proj_bias"] for name in "qkv"]
        q, k, v = (linear(x, w, b, env.counter) for x, w, b in zip((query, key, value), weights, biases))
        if self.add_bias_kv:
            k = np.concatenate([k, np.broadcast_to(params["bias_k"], (d.batch, 1, k.shape[-1]))], axis=1)
            v = np.concatenate([v, np.broadcast_to(params["bias_v"], (d.batch, 1, v.shape[-1]))], axis=1)
        if self.add_zero_attn:
            k = np.concatenate([k, np.zeros((d.batch, 1, k.shape[-1]), k.dtype)], axis=1)
            v = np.concatenate([v, np.zeros((d.batch, 1, v.shape[-1]), v.dtype)], axis=1)
        group = d.heads // d.kv_heads                                 # query heads per key/value head
        q_heads, k_heads = _heads(q, d.kv_heads, group), _heads(k, d.kv_heads, 1)
        if self.qk_norm:                                              # over each head's d_k features
            q_heads, k_heads = (self._head_norm(x, params[f"{role}_norm_weight"])
                                for x, role in ((q_heads, "q"), (k_heads, "k")))
        if d.rotary:                                                  # positions along dim −2 of [N, kv, g, L, d]
            q_heads, k_heads = (rotate(x, d.rotary, self.rope_theta) for x in (q_heads, k_heads))
        o = attend(q_heads, k_heads, _heads(v, d.kv_heads, 1), self.score_scale(d), self.causal, env.counter,
                   cap=self.logit_softcap, window=d.window, bias=bias)   # [N, kv, group, L_q, d_v]
        o = o.transpose(0, 3, 1, 2, 4).reshape(d.batch, d.lq, d.heads * d.dv)
        y = linear(o, params["out_proj_weight"], params.get("out_proj_bias"), env.counter)
        return y if self.batch_first else y.transpose(1, 0, 2)

    def _head_norm(self, x: Any, weight: Any) -> Any:
        """RMSNorm over the last dim (one head's features) with the q/k norm's eps and offset."""
        import numpy as np

        y = x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + x.dtype.type(self.qk_norm_eps))
        return y * (weight + weight.dtype.type(self.qk_norm_offset) if self.qk_norm_offset else weight)

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        d: AttentionDims = step.facts.geometry["attention"]
        q = d.batch * d.lq * d.heads * d.dk
        kv = d.batch * d.keys * d.kv_heads * (d.dk + d.dv)
        copies = 0 if self.batch_first else sum(numel(s) for s in step.input_shapes)   # rows of transposed inputs
        appended = d.batch * d.lk * d.kv_heads * (d.dk + d.dv) if d.extra else 0       # k, v before the concat
        scores = d.scores + 2 * d.batch * d.heads * d.lq                               # and their max and sum
        heads_out = 2 * d.batch * d.heads * d.lq * d.dv                                # A·V and its transpose
        elements = copies + 2 * (q + kv) + appended + scores + heads_out               # projections, head copies
        elements += 3 * (q + d.batch * d.keys * d.kv_heads * d.dk) if d.rotary else 0   # rotate_half, 2 products
        elements += 2 * (q + d.batch * d.keys * d.kv_heads * d.dk) if d.qk_norm else 0  # squares, normalized heads
        elements += d.scores if self.logit_softcap is not None else 0                   # the capped scores
        mask = d.lq * d.keys * (2 if self.sliding_window is not None else 1) if self.causal else 0
        return elements * itemsize + mask + (0 if weights_given else step.facts.params * itemsize), 0

    # ------------------------------------------------------------------------------------------------ explain

    def backward(self, step, grads: Gradients) -> Backward:
        """Weight gradients of the four projections (their forward MACs); activation gradients: the output
        projection's input, the score matmuls (:func:`attention_core_backward`), and each projection's input when
        that input requires a gradient (one input: the query is the key and the value, three products)."""
        d: AttentionDims = step.facts.geometry["attention"]
        ins = grads.inputs[:-1] if self.score_bias else grads.inputs      # the score bias is the last input
        bias_in = self.score_bias and grads.inputs[-1]
        q_in = ins[0]
        k_in = ins[1] if len(ins) > 1 else q_in
        v_in = ins[2] if len(ins) > 2 else k_in
        paths = [grads.weights or q_in, grads.weights or k_in, grads.weights or v_in]
        projections = {name: rows * fin * fout for name, rows, fin, fout in d.projections()}
        result = Backward()
        result.input_macs = projections["out"]
        result.lines.append(f"backward output projection dO = dY·W_out: {projections['out']:,} MACs")
        core = attention_core_backward(d.scores, d.dk, d.dv, *paths)
        result.input_macs += core.input_macs
        result.lines += core.lines
        if bias_in:                    # the scores' gradient dS is the bias's (summed over what it broadcast over)
            if paths[0] or paths[1]:
                result.lines.append("backward score bias gradient: dS, made for dQ and dK above, 0 MACs")
            else:
                result.input_macs += d.scores * d.dv
                result.lines.append(f"backward score bias gradient: dS needs dP = dO·Vᵀ: {d.scores * d.dv:,} MACs")
        for name, needed in zip("qkv", (q_in, k_in, v_in)):
            if needed:
                result.input_macs += projections[name]
                result.lines.append(f"backward {name} projection input gradient dX = d{name.upper()}·W_{name}: "
                                    f"{projections[name]:,} MACs")
        if not any((q_in, k_in, v_in, bias_in)):
            result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
        bias_adds = sum(rows * fout for name, rows, _, fout in d.projections() if self._biased(name))
        if grads.weights:
            result.weight_macs = sum(projections.values())
            result.lines.append(f"backward weight gradients dW = dYᵀ·X of the q, k, v, out projections: "
                                f"{' + '.join(f'{v:,}' for v in projections.values())} = {result.weight_macs:,} MACs"
                                + (f"; bias gradients {bias_adds:,} adds" if bias_adds else ""))
        else:
            result.lines.append("backward: no weight gradient (frozen: trainable false)")
        work = step.facts.flops - 2 * step.facts.macs - (0 if grads.weights else bias_adds)
        result.element_flops = work
        result.lines.append(f"backward element FLOPs (softmax, scaling, rotation, bias gradients: the forward's "
                            f"element work) = {work:,}")
        return result

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        d: AttentionDims = facts.geometry["attention"]
        shapes = [list(s) for s in input_shapes]
        layout = "[N, L, E]" if self.batch_first else "[L, N, E]"
        if self.score_bias:
            c.add(f"score bias {shapes.pop()} (the last input): added to the scores before the softmax, 1 FLOP per "
                  f"score")
        if len(shapes) == 1:
            c.add(f"self-attention: query = key = value {shapes[0]} {layout} → {list(facts.output_shape)}")
        else:
            names = ("query", "key = value") if len(shapes) == 2 else ("query", "key", "value")
            c.add("cross-attention: " + ", ".join(f"{r} {s}" for r, s in zip(names, shapes))
                  + f" {layout} → {list(facts.output_shape)}")
        group = d.heads // d.kv_heads
        head_text = (f"head_dim = embed_dim / num_heads = {d.embed} / {d.heads} = {d.dk}" if self.head_dim is None
                     else f"head_dim {d.dk}")
        c.add(f"{d.heads} query heads, {head_text}" + (f", value heads of {d.dv}" if d.dv != d.dk else "")
              + ("" if group == 1 else f"; {d.kv_heads} key/value head{'s' if d.kv_heads > 1 else ''} "
                 f"({'multi-query' if d.kv_heads == 1 else 'grouped-query'}: each serves {group} query heads)"))
        self._explain_params(c, d, facts.params)
        projections = d.projections()
        parts = []
        for name, rows, fin, fout in projections:
            positions = ("L_q", d.lq) if name in ("q", "out") else ("L_k", d.lk)
            if name in ("k", "v") and d.kv_cached:
                c.add(f"  {name} projection: read from the cache (made at the prefill from the fixed keys) = 0")
            else:
                c.add(f"  {name} projection: N·{positions[0]}·in·out = {d.batch}·{positions[1]}·{fin}·{fout} = "
                      f"{n(rows * fin * fout)}")
            parts.append(rows * fin * fout)
        keys = (f"({d.past} + {d.lk})" if d.past else f"({d.lk} + {d.extra})" if d.extra else f"{d.lk}")
        if d.past:
            c.add(f"  decode step: {d.lq} new position{'s' if d.lq > 1 else ''} (projected"
                  f"{', rotated' if d.rotary else ''}) attend{'' if d.lq > 1 else 's'} to "
                  f"past {d.past} cached + {d.lk} new = {d.keys} keys")
        scores = f"{d.batch}·{d.heads}·{d.lq}·{keys}"
        key_term = "(past + L_k)" if d.past else "L_k"
        c.add(f"  QKᵀ: N·H·L_q·{key_term}·d_k = {scores}·{d.dk} = {n(d.scores * d.dk)}")
        c.add(f"  A·V: N·H·L_q·{key_term}·d_v = {scores}·{d.dv} = {n(d.scores * d.dv)}")
        parts += [d.scores * d.dk, d.scores * d.dv]
        c.result("MACs", "q + k + v + out projections + QKᵀ + A·V = " + " + ".join(n(p) for p in parts), sum(parts),
                 facts.macs)
        adds = sum(rows * fout for name, rows, _, fout in projections if self._biased(name))
        if d.rotary:
            c.add(f"  RoPE on q and k: {ROTARY_FLOPS} FLOPs per rotated element (x·cos + rotate_half(x)·sin), "
                  f"N·(H·L_q + kv·L_k)·rotary_dim = {d.batch}·({d.heads}·{d.lq} + {d.kv_heads}·{d.lk})·{d.rotary} "
                  f"= {n(d.rotated_elements)} elements; the cos/sin tables depend on positions only (not counted)")
        rope_text = f" + RoPE {ROTARY_FLOPS}·{n(d.rotated_elements)}" if d.rotary else ""
        if d.qk_norm:
            offset = self.qk_norm_offset
            c.add(f"  q/k norms (RMSNorm over each head, eps {self.qk_norm_eps:g}"
                  + (f", scale {offset:g} + γ" if offset else "")
                  + f"): params 2·head_dim = 2·{d.dk}; FLOPs (({RMS_ELEMENT_FLOPS} + 1 affine)·d_k + "
                  f"{RMS_GROUP_FLOPS})·N·(H·L_q + kv·L_k){' + 2·d_k (the adds to γ)' if offset else ''} = "
                  f"({RMS_ELEMENT_FLOPS + 1}·{d.dk} + {RMS_GROUP_FLOPS})·{n(d.normed_heads)}"
                  f"{f' + 2·{d.dk}' if offset else ''} = {n(self._qk_norm_flops(d))}")
        if self.logit_softcap is not None:
            c.add(f"  soft-capping: scores → {self.logit_softcap:g}·tanh(scores/{self.logit_softcap:g}), "
                  f"{SOFTCAP_FLOPS} FLOPs per score (divide, tanh, multiply) = {SOFTCAP_FLOPS}·{n(d.scores)}")
        if self.scale is not None:
            c.add(f"  scores scaled by {self.scale:.6g} (not 1/√d_k): the same 1 FLOP per score")
        extra = self._extra_flops(d)
        extra_text = ((" + q/k norms" if d.qk_norm else "") + (" + soft-capping" if self.logit_softcap else ""))
        bias_text = (" + score bias (1 per score)", f" + {n(d.scores)}") if self.score_bias else ("", "")
        c.result("FLOPs", f"2·MACs + bias adds + scaling (1 per score){bias_text[0]} + softmax ({SOFTMAX_FLOPS} per "
                 f"score){' + RoPE' if d.rotary else ''}{extra_text} = 2·{n(sum(parts))} + {n(adds)} + "
                 f"{n(d.scores)}{bias_text[1]} + {SOFTMAX_FLOPS}·{n(d.scores)}{rope_text}"
                 f"{f' + {n(extra)}' if extra else ''}",
                 2 * sum(parts) + adds + (SCALE_FLOPS + SOFTMAX_FLOPS + self.score_bias) * d.scores
                 + ROTARY_FLOPS * d.rotated_elements + extra, facts.flops)
        c.add(f"torch.utils.flop_counter counts 2·MACs = {n(2 * facts.macs)} where attention runs as explicit "
              f"matmuls (nn.MultiheadAttention with gradients and need_weights, eager Hugging Face models); on CPU "
              f"it counts F.scaled_dot_product_attention and MultiheadAttention's eval fast path as 0")
        if self.causal and not d.past:
            _explain_causal(c, d.batch * d.heads, "N·H", d.lq, d.keys, d.dk, d.dv)
        if self.sliding_window is not None:
            c.add(f"sliding window {self.sliding_window}: query i sees keys i − {self.sliding_window - 1}..i; a mask, "
                  f"counted in full above as the causal mask is")
        if d.caches:
            kept = f"({d.past} + {d.lk})" if d.past else f"{d.lk}"
            if d.window:
                kept, key_term = f"min({kept}, {d.window} − 1)", f"min({key_term}, window − 1)"
            c.result("KV cache elements", f"keys and values kept for generation, N·{key_term}·kv_heads·(d_k + d_v) = "
                     f"{d.batch}·{kept}·{d.kv_heads}·({d.dk} + {d.dv})", d.cache_elements,
                     self.kv_cache_elements(facts))
            if d.kv_heads != d.heads:
                c.add(f"  {d.kv_heads} key/value heads, not the {d.heads} query heads: counting H would overstate "
                      f"the cache {d.heads // d.kv_heads}×")
            if d.fixed_kv:
                c.add("  the keys and values of a fixed sequence (not made by the decoded input: an encoder's "
                      "output): projected once, read from the cache by every generated token")
            elif not d.past:
                per_pair = d.batch * d.heads * (d.dk + d.dv)
                c.add(f"  a decode step (summary --past P --new-tokens k): QKᵀ + A·V = N·H·k·(P + k)·(d_k + d_v) "
                      f"= {d.batch}·{d.heads}·({d.dk} + {d.dv})·k·(P + k) = {n(per_pair)}·k·(P + k) MACs; the "
                      f"projections on the k new positions only; cache N·(P + k)·kv_heads·(d_k + d_v)")
        else:
            c.add("KV cache: none (" + ("bidirectional attention, an encoder's: not a cache of generation"
                                         if not self.causal else "cross-attention: its keys are another sequence's")
                  + ")")

    def _explain_params(self, c: Explanation, d: AttentionDims, reported: int) -> None:
        if d.packed and self.has_qkv_bias == self.has_out_bias and not d.qk_norm:
            # nn.MultiheadAttention(d, h): in_proj 3·d² (+ 3·d), out_proj d² (+ d), bias_k and bias_v d each
            terms = ["4·d²"] + (["4·d"] if self.has_qkv_bias else []) + (["2·d"] if self.add_bias_kv else [])
            e = d.embed
            values = [f"4·{e}²"] + ([f"4·{e}"] if self.has_qkv_bias else []) + ([f"2·{e}"] if self.add_bias_kv else [])
            total = 4 * e * e + (4 * e if self.has_qkv_bias else 0) + (2 * e if self.add_bias_kv else 0)
            c.result("params", " + ".join(terms) + " = " + " + ".join(values), total, reported)
            stored = {"in_proj": "in_proj (q, k, v)", "qkv_proj": "qkv_proj (q, k, v)"}.get(
                self._qkv_stored(d)[0] or "", "q, k, v projections")
            c.add(f"  d = embed_dim = {e}: {stored} 3·d²" + (" + 3·d" if self.has_qkv_bias else "")
                  + ", out_proj d²" + (" + d" if self.has_qkv_bias else "") + (", bias_k and bias_v d each"
                                                                       if self.add_bias_kv else ""))
            return
        terms, values, total = [], [], 0
        for name, _, fin, fout in d.projections():
            biased = self._biased(name)
            terms.append(f"{name} (in·out{' + out' if biased else ''})")
            values.append(f"{fin}·{fout}" + (f" + {fout}" if biased else ""))
            total += fin * fout + (fout if biased else 0)
        if self.add_bias_kv:
            terms.append("bias_k, bias_v (kv·d_k + kv·d_v)")
            values.append(f"{d.kv_heads}·{d.dk} + {d.kv_heads}·{d.dv}")
            total += d.kv_heads * (d.dk + d.dv)
        if d.qk_norm:
            terms.append("q/k norms (2·d_k)")
            values.append(f"2·{d.dk}")
            total += 2 * d.dk
        c.result("params", " + ".join(terms) + " = " + " + ".join(values), total, reported)


def torch_state_dict(state_dict: Any) -> dict[str, Any]:
    """A PyTorch ``nn.MultiheadAttention`` (or Llama attention) ``state_dict`` → this layer's parameters:
    ``out_proj.weight`` → ``out_proj_weight`` (and ``o_proj.`` → ``out_proj_``, ``q_proj.weight`` →
    ``q_proj_weight`` …), values as NumPy arrays; every other key is PyTorch's own.

    >>> sorted(torch_state_dict({"in_proj_weight": [[1.0]], "out_proj.weight": [[2.0]], "o_proj.bias": [3.0]}))
    ['in_proj_weight', 'out_proj_bias', 'out_proj_weight']
    """
    import numpy as np

    from ..kernels import as_numpy  # deferred, as every layer module's NumPy work
    renamed = {}
    for key, value in state_dict.items():
        name = str(key)
        if name.startswith("o_proj."):                       # Llama's output projection
            name = "out_proj." + name[len("o_proj."):]
        array = np.asarray(as_numpy(value))
        renamed[name.replace(".", "_")] = array
    return renamed


# ------------------------------------------------------------------------------------ scaled dot-product attention

@dataclass(frozen=True)
class SdpaDims:
    """The resolved sizes of one scaled dot-product attention (``facts.geometry["sdpa"]``)."""
    groups: int            # the product of the query's leading dims: batch · heads (· …)
    lq: int
    lk: int
    e: int                 # query/key features
    ev: int                # value features
    kv_heads: int          # key/value heads on dim −3 (enable_gqa), else the query's
    group: int             # query heads per key/value head (1 without grouping)
    scale: float
    past: int = 0          # a decode step's cached positions (Context.past), read beyond the lk given
    cache: int = 0         # elements of the keys and values kept for generation (is_causal), at past + lk

    @property
    def keys(self) -> int:
        return self.past + self.lk

    @property
    def scores(self) -> int:
        return self.groups * self.lq * self.keys


def fused_cpu_kernel_runs(dropout: bool, grouped: bool) -> bool:
    """Whether F.scaled_dot_product_attention on CPU (4-d q, k, v) runs its fused kernel
    (``_scaled_dot_product_flash_attention_for_cpu``), whose saved tensors are modeled: not with dropout in training
    nor with fewer key/value heads than query heads, where it falls back to its math path (not modeled)."""
    return not dropout and not grouped


def fused_cpu_kernel_lse(rows: int) -> Saved:
    """What torch's fused CPU attention kernel keeps beside q, k, v and its output, instead of the probabilities
    [rows, L_k]: the float32 log-sum-exp of each query row, in any dtype (measured). One place for
    scaled_dot_product_attention and multi_head_attention's fused_sdpa."""
    return Saved("extra", "the log-sum-exp of each query row (float32), for the fused kernel's backward",
                 numel=rows, itemsize=4)


@register_layer
class ScaledDotProductAttention(LayerBase):
    """``F.scaled_dot_product_attention(q, k, v)``: three inputs q ``[N, ..., L_q, E]``, k ``[N, ..., L_k, E]``,
    v ``[N, ..., L_k, E_v]`` → ``[N, ..., L_q, E_v]``; no parameters. ``enable_gqa``: the key/value heads (dim −3)
    may be fewer than the query's, each serving a group of query heads."""
    min_inputs: ClassVar[int] = 3
    max_inputs: ClassVar[Optional[int]] = 3
    type: Literal["scaled_dot_product_attention"] = "scaled_dot_product_attention"
    is_causal: Bool = Field(False, validation_alias=_alias("is_causal", "causal"),
                            description="causal mask (query i sees keys 0..i); counted in full, the notes give the "
                                        "unmasked figure")
    scale: Optional[Float] = Field(None, description="multiplies q·kᵀ; default 1/√E")
    enable_gqa: Bool = Field(False, description="grouped-query attention: fewer key/value heads (dim −3) than query "
                                                "heads")
    dropout_p: Probability = Field(0.0, validation_alias=_alias("dropout_p", "dropout"),
                                   description="attention dropout: the identity at inference")

    def flop_counter_text(self, macs_text: str) -> str:
        return (f"torch.utils.flop_counter counts 0 for F.scaled_dot_product_attention on CPU; 2·MACs = {macs_text} "
                f"where it runs as explicit matmuls")

    def saved_for_backward(self, step: Any, grads: GradFlow) -> Optional[list[Saved]]:
        """PyTorch's fused CPU kernel (``_scaled_dot_product_flash_attention_for_cpu``: 4-d inputs, no dropout, the
        same key and query heads) keeps q, k, v, its output and the float32 log-sum-exp of each query row
        (measured). Its other paths (3-d inputs, dropout, grouped-query heads: the math path) are not modeled."""
        q = step.input_shapes[0]
        if len(q) != 4 or not fused_cpu_kernel_runs(bool(self.dropout_p), self.enable_gqa):
            return None
        if not grads.any:
            return []
        return [Saved("input", "q, for the fused kernel's backward", 0),
                Saved("input", "k, for the fused kernel's backward", 1),
                Saved("input", "v, for the fused kernel's backward", 2),
                Saved("output", "its output, for the fused kernel's backward"),
                fused_cpu_kernel_lse(numel(q[:-1]))]

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        q, k, v = (t.shape for t in inputs)
        for role, s in (("query", q), ("key", k), ("value", v)):
            if len(s) < 3:
                raise ctx.fail(f"needs inputs [N, ..., L, E] of at least 3 dims; the {role} is {fmt_shape(s)}")
        if not len(q) == len(k) == len(v):
            raise ctx.fail(f"query {fmt_shape(q)}, key {fmt_shape(k)} and value {fmt_shape(v)} must have the same "
                           f"number of dims")
        if k[-1] != q[-1]:
            raise ctx.fail(f"the key {fmt_shape(k)} has {k[-1]} features and the query {fmt_shape(q)} {q[-1]}: "
                           f"q·kᵀ needs the same")
        if v[-2] != k[-2]:
            raise ctx.fail(f"the value {fmt_shape(v)} has {v[-2]} positions and the key {fmt_shape(k)} {k[-2]}: "
                           f"one value per key")
        group = 1
        if k[:-2] != q[:-2] or v[:-2] != k[:-2]:
            heads, kv = q[-3], k[-3]
            same_rest = q[:-3] == k[:-3] == v[:-3] and v[-3] == kv
            if not (self.enable_gqa and len(q) >= 4 and same_rest and heads % kv == 0):
                why = (" (with enable_gqa the key/value heads on dim −3 must divide the query's, every other "
                       "leading dim equal)" if self.enable_gqa else
                       "; fewer key/value heads than query heads (dim −3) need enable_gqa")
                raise ctx.fail(f"the leading dims of query {fmt_shape(q)}, key {fmt_shape(k)} and value "
                               f"{fmt_shape(v)} must match{why}")
            group = heads // kv
        if ctx.past and not self.is_causal:
            raise ctx.fail("a decode step (past positions) needs causal attention; this one is bidirectional "
                           "(is_causal: false): every position reads later ones")
        # with is_causal the keys and values are a decoder's, kept for generation at every position seen
        cache = (numel(k[:-2]) * k[-1] + numel(v[:-2]) * v[-1]) * (ctx.past + k[-2]) if self.is_causal else 0
        dims = SdpaDims(groups=numel(q[:-2]), lq=q[-2], lk=k[-2], e=q[-1], ev=v[-1],
                        kv_heads=k[-3] if len(k) >= 4 else 1, group=group,
                        scale=1.0 / math.sqrt(q[-1]) if self.scale is None else self.scale, past=ctx.past,
                        cache=cache)
        macs = dims.scores * (dims.e + dims.ev)
        notes = ([_causal_note(dims.lq, dims.keys, dims.groups, dims.e, dims.ev, macs, dims.past)]
                 if self.is_causal else [])
        return Facts(output_shape=(*q[:-1], dims.ev), macs=macs,
                     flops=2 * macs + (SCALE_FLOPS + SOFTMAX_FLOPS) * dims.scores, notes=notes,
                     rf=attention_field(inputs[0], inputs[1:], self.is_causal, ctx), geometry={"sdpa": dims})

    def kv_cache_elements(self, facts: Facts) -> int:
        return facts.geometry["sdpa"].cache

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        d: SdpaDims = step.facts.geometry["sdpa"]
        q, k, v = xs
        if d.group > 1:                        # [..., kv·group, L, E] → [..., kv, group, L, E]; k, v [..., kv, 1, L, E]
            q = q.reshape(*q.shape[:-3], d.kv_heads, d.group, *q.shape[-2:])
            k, v = (a.reshape(*a.shape[:-3], d.kv_heads, 1, *a.shape[-2:]) for a in (k, v))
        out = attend(q, k, v, d.scale, self.is_causal, env.counter)
        return out.reshape(step.facts.output_shape)

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        d: SdpaDims = step.facts.geometry["sdpa"]
        # the scores with their max and sum, and copies of inputs that are not contiguous (reshaped or multiplied)
        elements = d.scores + 2 * d.groups * d.lq + sum(numel(s) for s in step.input_shapes)
        return elements * itemsize + (d.lq * d.lk if self.is_causal else 0), 0

    def backward(self, step, grads: Gradients) -> Backward:
        """No parameters: the score matmuls' activation gradients for the inputs that need one."""
        d: SdpaDims = step.facts.geometry["sdpa"]
        result = attention_core_backward(d.scores, d.e, d.ev, *grads.inputs)
        result.element_flops = step.facts.flops - 2 * step.facts.macs
        result.lines.append(f"backward element FLOPs (softmax, scaling: the forward's) = {result.element_flops:,}")
        return result

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        d: SdpaDims = facts.geometry["sdpa"]
        q, k, v = (list(s) for s in input_shapes)
        c.add(f"query {q}, key {k}, value {v} → {list(facts.output_shape)}; params 0")
        lead = prod_text(q[:-2])
        c.add(f"B = query's leading dims {lead} = {d.groups} (batch · heads)"
              + (f"; {d.kv_heads} key/value heads, each serving {d.group} query heads (enable_gqa)"
                 if d.group > 1 else "")
              + f"; scale {'1/√E = 1/√' + str(d.e) if self.scale is None else self.scale} = {d.scale:.6g}")
        keys, key_term = (f"({d.past} + {d.lk})", "(past + L_k)") if d.past else (f"{d.lk}", "L_k")
        c.result("MACs", f"QKᵀ + A·V = B·L_q·{key_term}·E + B·L_q·{key_term}·E_v = {d.groups}·{d.lq}·{keys}·{d.e} "
                 f"+ {d.groups}·{d.lq}·{keys}·{d.ev}", d.scores * (d.e + d.ev), facts.macs)
        macs = d.scores * (d.e + d.ev)
        c.result("FLOPs", f"2·MACs + scaling (1 per score) + softmax ({SOFTMAX_FLOPS} per score) = 2·{n(macs)} + "
                 f"{n(d.scores)} + {SOFTMAX_FLOPS}·{n(d.scores)}",
                 2 * macs + (SCALE_FLOPS + SOFTMAX_FLOPS) * d.scores, facts.flops)
        c.add(f"torch.utils.flop_counter's SDPA formula: 2·b·h·s_q·s_k·(d + d_v) = 2·MACs = {n(2 * macs)} (on CPU "
              f"it counts F.scaled_dot_product_attention as 0)")
        if self.is_causal and not d.past:
            _explain_causal(c, d.groups, "B", d.lq, d.lk, d.e, d.ev)
        if d.cache:
            c.result("KV cache elements", f"the key and value inputs at every position kept for generation, "
                     f"(elements of k and v per position)·{key_term} = {n(d.cache // (d.past + d.lk))}·{keys}",
                     d.cache,
                     self.kv_cache_elements(facts))


# ------------------------------------------------------------------------------------------------------- matmul

@register_layer
class MatMul(LayerBase):
    """``torch.matmul(a, b)`` of two inputs ``[N, ..., n, k]`` @ ``[N, ..., k, m]`` → ``[N, ..., n, m]``, the
    leading (batch) dims broadcast. Both inputs have the same rank, at least 3 (the batch first)."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = 2
    type: Literal["matmul"] = "matmul"

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # d(a·b)/da = grad·bᵀ keeps b, d(a·b)/db = aᵀ·grad keeps a: each only when the other needs a gradient
        saved = [Saved("input", "a, for b's gradient aᵀ·grad", 0)] if grads.inputs[1] else []
        return saved + ([Saved("input", "b, for a's gradient grad·bᵀ", 1)] if grads.inputs[0] else [])

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        a, b = (t.shape for t in inputs)
        if len(a) < 3 or len(b) < 3:
            raise ctx.fail(f"needs inputs of at least 3 dims [N, ..., rows, cols], got {fmt_shape(a)} @ "
                           f"{fmt_shape(b)}: as a 1-d or 2-d operand of torch.matmul, the batch dim would be a "
                           f"row, column or contracted dim of the product; reshape to [N, ..., rows, cols] first")
        if len(a) != len(b):
            raise ctx.fail(f"cannot matmul inputs of different rank, {fmt_shape(a)} @ {fmt_shape(b)}: torch.matmul "
                           f"would line up the batch dim of one with another dim of the other; give both the same "
                           f"rank (a dim of size 1 broadcasts)")
        if a[-1] != b[-2]:
            raise ctx.fail(f"cannot matmul {fmt_shape(a)} @ {fmt_shape(b)}: the first's columns ({a[-1]}) must equal "
                           f"the second's rows ({b[-2]})")
        batch = broadcast_shapes([a[:-2], b[:-2]])
        if batch is None:
            raise ctx.fail(f"cannot matmul {fmt_shape(a)} @ {fmt_shape(b)}: the leading dims {fmt_shape(a[:-2])} and "
                           f"{fmt_shape(b[:-2])} must match or be 1")
        macs = numel(batch) * a[-2] * a[-1] * b[-1]
        return Facts(output_shape=(*batch, a[-2], b[-1]), macs=macs, flops=2 * macs)

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        out = np.matmul(xs[0], xs[1])
        env.counter.add(numel(out.shape) * xs[0].shape[-1])
        return out

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        return sum(numel(s) for s in step.input_shapes) * itemsize, 0     # copies of strided inputs, at most

    def backward(self, step, grads: Gradients) -> Backward:
        """C = A·B: dA = dC·Bᵀ and dB = Aᵀ·dC, the forward's MACs each, for each operand that needs one."""
        macs = step.facts.macs
        made = [name for name, needed in zip(("dA = dC·Bᵀ", "dB = Aᵀ·dC"), grads.inputs) if needed]
        return Backward(input_macs=macs * len(made),
                        lines=[f"backward {name}: forward MACs = {macs:,}" for name in made])

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        a, b = (list(s) for s in input_shapes)
        out = list(facts.output_shape)
        batch = out[:-2]
        c.add(f"{a} @ {b} → {out}: leading dims {a[:-2]} and {b[:-2]} broadcast to {batch}; params 0")
        macs = math.prod(batch) * a[-2] * a[-1] * b[-1]
        c.result("MACs", f"prod(batch)·n·k·m = {prod_text(batch)}·{a[-2]}·{a[-1]}·{b[-1]}", macs, facts.macs)
        c.result("FLOPs", f"2·MACs = 2·{n(macs)}", 2 * macs, facts.flops)


# ------------------------------------------------------------------------------------- shifted-window attention

@dataclass(frozen=True)
class WindowDims:
    """The resolved sizes of one shifted-window attention layer (``facts.geometry["windows"]``)."""
    batch: int
    height: int
    width: int
    channels: int          # C
    pad_bottom: int        # zeros added below and right so that windows tile the map
    pad_right: int
    window: tuple[int, int]
    shift: tuple[int, int]  # as applied: 0 along a dim whose window covers the whole (padded) map
    heads: int

    @property
    def tokens(self) -> int:
        """Positions in one window (T = wh·ww)."""
        return self.window[0] * self.window[1]

    @property
    def windows(self) -> int:
        """Windows per example: (padded H / wh)·(padded W / ww)."""
        return (self.height + self.pad_bottom) // self.window[0] * ((self.width + self.pad_right) // self.window[1])

    @property
    def rows(self) -> int:
        """Token rows the projections run on: every padded position of every example."""
        return self.batch * self.windows * self.tokens

    @property
    def scores(self) -> int:
        return self.batch * self.windows * self.heads * self.tokens * self.tokens

    @property
    def table_rows(self) -> int:
        """Relative offsets within a window: (2·wh − 1)·(2·ww − 1)."""
        return (2 * self.window[0] - 1) * (2 * self.window[1] - 1)


def relative_position_index(window: tuple[int, int]) -> Any:
    """``[T, T]`` indices into the ``(2·wh − 1)·(2·ww − 1)`` rows of the bias table for every (query, key) pair of a
    window (Swin's ``relative_position_index``; torchvision keeps it as a buffer, here it is derived when needed).

    >>> relative_position_index((2, 2)).tolist()
    [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    """
    import numpy as np

    wh, ww = window
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)   # [2, T]
    relative = coords[:, :, None] - coords[:, None, :]                                          # [2, T, T]
    return (relative[0] + wh - 1) * (2 * ww - 1) + relative[1] + ww - 1


def shift_mask_regions(padded: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> Any:
    """``[H, W]`` region labels of a cyclically shifted map: positions of different labels that share a window came
    from different parts of the image and must not attend to each other (torchvision's ``attn_mask``)."""
    import numpy as np

    labels = np.zeros(padded, dtype=np.int64)
    count = 0
    for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            labels[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    return labels


@register_layer
class ShiftedWindowAttention(LayerBase):
    """Swin Transformer's window attention (torchvision's ``ShiftedWindowAttention``): multi-head self-attention
    within non-overlapping windows of an ``[N, H, W, C]`` map, cyclically shifted by ``shift_size`` on alternate
    blocks, with a learned relative position bias added to the scores.

    The map is padded with zeros below and right to a multiple of the window (and cropped back after); a shift along
    a dim whose window covers the whole padded map is dropped (torchvision's rule). Parameters in torchvision's
    names: ``qkv_weight`` ``[3C, C]``, ``qkv_bias``, ``proj_weight`` ``[C, C]``, ``proj_bias``,
    ``relative_position_bias_table`` ``[(2·wh − 1)·(2·ww − 1), heads]`` (torchvision's ``qkv.weight`` …, split at
    the last dot). Its ``relative_position_index`` buffer is derived from the window size, not counted: a weights
    file may hold it (a torchvision ``state_dict`` does), and it must equal the index of this window size.
    """
    type: Literal["shifted_window_attention", "window_attention"] = "shifted_window_attention"
    num_heads: PositiveInt = Field(description="heads; C must be divisible by them")
    window_size: PerDim = Field(description="window height and width (Swin-T: 7)")
    shift_size: NonNegativePerDim = Field(per_dim_default(0),
                                          description="cyclic shift before the windows (Swin: 0 and window/2 on "
                                                      "alternate blocks)")
    embed_dim: Optional[PositiveInt] = Field(None, description="C: inferred from the input's last dim; an error if "
                                                               "different")
    qkv_bias: Bool = True
    proj_bias: Bool = True
    attention_dropout: Probability = Field(0.0, description="the identity at inference")
    dropout: Probability = Field(0.0, description="the identity at inference")

    @model_validator(mode="after")
    def _per_dim_fields(self):
        object.__setattr__(self, "window_size", _per_dim(self.window_size, 2, "window_size"))
        object.__setattr__(self, "shift_size", _per_dim(self.shift_size, 2, "shift_size"))
        for w, s in zip(self.window_size, self.shift_size):
            if s >= w:
                raise ValueError(f"shift_size {list(self.shift_size)} must be smaller than window_size "
                                 f"{list(self.window_size)} in every dim (Swin shifts by half a window)")
        return self

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ctx.fail(f"needs a 4-d input [N, H, W, C] (channels last, as torchvision's Swin permutes to), got "
                           f"{fmt_shape(shape)}")
        n_, h, w, c = shape
        if self.embed_dim is not None and self.embed_dim != c:
            raise ctx.fail(f"embed_dim is {self.embed_dim} but the input {fmt_shape(shape)} has {c} channels (last "
                           f"dim)")
        if c % self.num_heads:
            raise ctx.fail(f"the {c} channels are not divisible by num_heads {self.num_heads}")
        wh, ww = self.window_size
        pad_b, pad_r = -h % wh, -w % ww
        shift = tuple(0 if win >= size else s for win, size, s in
                      zip(self.window_size, (h + pad_b, w + pad_r), self.shift_size))
        d = WindowDims(n_, h, w, c, pad_b, pad_r, (wh, ww), (shift[0], shift[1]), self.num_heads)
        head = c // self.num_heads
        params = (3 * c * c + (3 * c if self.qkv_bias else 0) + c * c + (c if self.proj_bias else 0)
                  + d.table_rows * self.num_heads)
        macs = d.rows * c * 3 * c + 2 * d.scores * head + d.rows * c * c
        bias_adds = d.rows * ((3 * c if self.qkv_bias else 0) + (c if self.proj_bias else 0))
        masked = any(shift)
        # q scaled (one multiply per q element, as torchvision scales q), the relative position bias added to every
        # score, the shift mask added where shifted, softmax
        flops = (2 * macs + bias_adds + d.rows * c + d.scores * (1 + int(masked) + SOFTMAX_FLOPS))
        notes = [f"{d.windows} window{'s' if d.windows > 1 else ''} of {wh}×{ww} per example, {self.num_heads} "
                 f"heads of {head}"]
        if pad_b or pad_r:
            notes.append(f"padded with zeros to {h + pad_b}×{w + pad_r} (bottom {pad_b}, right {pad_r}) so the "
                         f"windows tile the map; the padding is computed on and cropped after")
        if tuple(self.shift_size) != shift:
            notes.append(f"shift_size {list(self.shift_size)} applied as {list(shift)}: the window covers the whole "
                         f"map along a dim, so no shift there (torchvision's rule)")
        return Facts(output_shape=shape, params=params, macs=macs, flops=flops, notes=notes,
                     geometry={"windows": d})

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        d: WindowDims = step.facts.geometry["windows"]
        c = d.channels
        specs = {"qkv_weight": ParamSpec((3 * c, c), "[3C, C]", "uniform", c)}
        if self.qkv_bias:
            specs["qkv_bias"] = ParamSpec((3 * c,), "[3C]")
        specs["proj_weight"] = ParamSpec((c, c), "[C, C]", "uniform", c)
        if self.proj_bias:
            specs["proj_bias"] = ParamSpec((c,), "[C]")
        specs["relative_position_bias_table"] = ParamSpec((d.table_rows, d.heads), "[(2·wh − 1)·(2·ww − 1), heads]",
                                                          "normal")
        return specs

    def derived_buffers(self, step: Any) -> dict[str, Any]:
        # torchvision's state_dict holds the index (flattened, [T·T]) as a buffer; it follows from the window size
        d: WindowDims = step.facts.geometry["windows"]
        return {"relative_position_index": relative_position_index(d.window).reshape(-1)}

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        from ..kernels import linear, softmax

        d: WindowDims = step.facts.geometry["windows"]
        (wh, ww), (sh, sw), c, heads = d.window, d.shift, d.channels, d.heads
        x = xs[0]
        if d.pad_bottom or d.pad_right:
            x = np.pad(x, ((0, 0), (0, d.pad_bottom), (0, d.pad_right), (0, 0)))
        ph, pw = x.shape[1:3]
        if sh or sw:
            x = np.roll(x, (-sh, -sw), axis=(1, 2))
        windows = (x.reshape(d.batch, ph // wh, wh, pw // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
                   .reshape(-1, d.tokens, c))                                          # [N·nW, T, C]
        qkv = linear(windows, params["qkv_weight"], params.get("qkv_bias"), env.counter)
        qkv = qkv.reshape(len(windows), d.tokens, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]                      # [N·nW, heads, T, d]
        scores = np.matmul(q, np.swapaxes(k, -1, -2))
        env.counter.add(scores.size * q.shape[-1])
        table = params["relative_position_bias_table"]
        scores += table[relative_position_index(d.window)].transpose(2, 0, 1)          # [heads, T, T]
        if sh or sw:
            labels = shift_mask_regions((ph, pw), d.window, (sh, sw))
            labels = labels.reshape(ph // wh, wh, pw // ww, ww).transpose(0, 2, 1, 3).reshape(-1, d.tokens)
            mask = np.where(labels[:, None, :] != labels[:, :, None], -100.0, 0.0).astype(scores.dtype)
            scores = scores.reshape(d.batch, d.windows, heads, d.tokens, d.tokens)
            scores += mask[None, :, None]
            scores = scores.reshape(-1, heads, d.tokens, d.tokens)
        softmax(scores, -1, out=scores)
        out = np.matmul(scores, v)
        env.counter.add(scores.size * v.shape[-1])
        out = out.transpose(0, 2, 1, 3).reshape(len(windows), d.tokens, c)
        out = linear(out, params["proj_weight"], params.get("proj_bias"), env.counter)
        out = out.reshape(d.batch, ph // wh, pw // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(d.batch, ph,
                                                                                                        pw, c)
        if sh or sw:
            out = np.roll(out, (sh, sw), axis=(1, 2))
        return np.ascontiguousarray(out[:, :d.height, :d.width])

    def saved_for_backward(self, step: Any, grads: GradFlow) -> list[Saved]:
        """As torchvision's ``shifted_window_attention`` computes it (measured, torch 2.13), with B' = N·windows
        windows of T tokens: the qkv projection keeps its input, the windows [B', T, C] (a tensor of its own: the
        pad copies the map even when it adds nothing, and the partition's reshape copies the permuted one); the two
        products keep the scaled q, kᵀ, the softmax's output and v, each a copy of its own [B', heads, T, d] (the
        batched matmul's reshape copies the strided heads) — except with one window in all (B' = 1) or one head,
        where the reshape merges a dim of size 1: k and v are then views of the qkv projection, whose whole
        [B', T, 3C] storage is kept; the output projection keeps the heads merged [B', T, C] (a copy). The
        relative position bias (the table indexed by a buffer), the shift mask (no gradient), the roll and the crop
        keep nothing; dropout keeps its mask (and, on the probabilities, the dropped probabilities)."""
        if not grads.any:
            return []
        d: WindowDims = step.facts.geometry["windows"]
        windows, c, heads, t = d.batch * d.windows, d.channels, d.heads, d.tokens
        head = c // heads
        elements = windows * t * c                     # one [B', T, C] map: the windows, q, k, v, the merged heads
        heads_text = f"[{windows}, {heads}, {t}, {head}]"
        saved: list[Saved] = []
        if grads.params:
            saved.append(Saved("extra", f"the windows [{windows}, {t}, {c}] (a copy), for qkv's weight gradient",
                               numel=elements))
        saved.append(Saved("extra", f"q·{head}^−½ {heads_text}, for k's gradient", numel=elements))
        views = windows == 1 or heads == 1            # k and v reshaped without a copy: qkv's storage is kept
        if views:
            saved.append(Saved("extra", f"the qkv projection [{windows}, {t}, {3 * c}] whole (k and v are views of "
                                        f"it with one {'window' if windows == 1 else 'head'}), for q's and the "
                                        f"probabilities' gradients", numel=3 * elements))
        else:
            saved.append(Saved("extra", f"kᵀ {heads_text} (a copy), for q's gradient", numel=elements))
        saved.append(Saved("extra", f"the softmax's output [{windows}, {heads}, {t}, {t}], for its own gradient and "
                                    f"v's", numel=d.scores))
        if not views:
            saved.append(Saved("extra", f"v {heads_text} (a copy), for the probabilities' gradient", numel=elements))
        if self.attention_dropout:
            saved.append(Saved("extra", f"the attention dropout's mask and the dropped probabilities "
                                        f"(2·{d.scores:,})", numel=2 * d.scores))
        if grads.params:
            saved.append(Saved("extra", f"the heads merged [{windows}, {t}, {c}] (a copy), for proj's weight "
                                        f"gradient", numel=elements))
        if self.dropout:
            saved.append(Saved("extra", f"the output dropout's mask [{windows}, {t}, {c}]", numel=elements))
        return saved

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        d: WindowDims = step.facts.geometry["windows"]
        # padded/rolled copies and windows (3 maps), qkv and its transpose (6), scaled q (1), scores (+ the mask
        # broadcast), attention output, its transpose, projection, the window reversal and the roll back (5)
        elements = d.rows * d.channels * 15 + 2 * d.scores + d.windows * d.tokens * d.tokens
        return elements * itemsize + (0 if weights_given else step.facts.params * itemsize), 0

    def backward(self, step, grads: Gradients) -> Backward:
        """As multi-head attention with one input: weight gradients of the qkv and output projections; activation
        gradients of the output projection's input and the scores in every window, and of the input through the
        qkv projection when it requires one. The relative position bias table's gradient is a scatter-add of the
        score gradients (element FLOPs)."""
        d: WindowDims = step.facts.geometry["windows"]
        c, head = d.channels, d.channels // self.num_heads
        qkv, proj = d.rows * c * 3 * c, d.rows * c * c
        result = Backward(input_macs=proj, lines=[f"backward output projection dO = dY·W_proj: {proj:,} MACs"])
        core = attention_core_backward(d.scores, head, head, True, True, True)
        result.input_macs += core.input_macs
        result.lines += core.lines
        if grads.inputs[0]:
            result.input_macs += qkv
            result.lines.append(f"backward qkv projection input gradient dX = dQKV·W_qkv: {qkv:,} MACs")
        else:
            result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
        bias_adds = d.rows * ((3 * c if self.qkv_bias else 0) + (c if self.proj_bias else 0))
        if grads.weights:
            result.weight_macs = qkv + proj
            result.lines.append(f"backward weight gradients of qkv and proj: {qkv:,} + {proj:,} MACs; the bias "
                                f"table's: a scatter-add of {d.scores:,} score gradients")
        work = step.facts.flops - 2 * step.facts.macs - (0 if grads.weights else bias_adds)
        result.element_flops = work + (d.scores if grads.weights else 0)
        result.lines.append(f"backward element FLOPs (the forward's element work, + the table's scatter-add) = "
                            f"{result.element_flops:,}")
        return result

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        d: WindowDims = facts.geometry["windows"]
        ch, heads, t = d.channels, d.heads, d.tokens
        head = ch // heads
        ph, pw = d.height + d.pad_bottom, d.width + d.pad_right
        c.add(f"windows: ({ph}/{d.window[0]})·({pw}/{d.window[1]}) = {d.windows} per example of T = "
              f"{d.window[0]}·{d.window[1]} = {t} positions; {heads} heads of C/heads = {ch}/{heads} = {head}"
              + (f"; shifted by {list(d.shift)} (masked where regions meet)" if any(d.shift) else ""))
        qkv_b, proj_b = (3 * ch if self.qkv_bias else 0), (ch if self.proj_bias else 0)
        c.result("params", f"qkv 3·C² + 3·C + proj C² + C + bias table (2·wh − 1)·(2·ww − 1)·heads = 3·{ch}² + "
                 f"{qkv_b} + {ch}² + {proj_b} + {d.table_rows}·{heads}",
                 3 * ch * ch + qkv_b + ch * ch + proj_b + d.table_rows * heads, facts.params)
        rows = f"N·windows·T = {d.batch}·{d.windows}·{t} = {n(d.rows)}"
        c.add(f"  qkv: rows·C·3C, rows = {rows}: {n(d.rows * ch * 3 * ch)}")
        c.add(f"  QKᵀ and A·V: 2·N·windows·heads·T²·d = 2·{d.batch}·{d.windows}·{heads}·{t}²·{head} = "
              f"{n(2 * d.scores * head)}")
        c.add(f"  proj: rows·C·C = {n(d.rows * ch * ch)}")
        c.result("MACs", "qkv + QKᵀ + A·V + proj", d.rows * ch * 3 * ch + 2 * d.scores * head + d.rows * ch * ch,
                 facts.macs)
        extra = 1 + int(any(d.shift))
        c.result("FLOPs", f"2·MACs + bias adds {n(d.rows * (qkv_b + proj_b))} + q scaling {n(d.rows * ch)} + per "
                 f"score ({'bias, mask' if extra == 2 else 'bias'}, softmax {SOFTMAX_FLOPS}) "
                 f"{extra + SOFTMAX_FLOPS}·{n(d.scores)}",
                 2 * facts.macs + d.rows * (qkv_b + proj_b) + d.rows * ch + (extra + SOFTMAX_FLOPS) * d.scores,
                 facts.flops)


# --------------------------------------------------------------------------------- T5's relative position bias

def relative_position_buckets(lq: int, lk: int, bidirectional: bool, num_buckets: int, max_distance: int) -> Any:
    """``[L_q, L_k]`` bucket of each (query i, key j) pair by the distance j − i (T5's
    ``_relative_position_bucket``, Mesh TensorFlow's): bidirectional, half the buckets for keys after the query;
    of each half, the first half exact distances, the rest logarithmically wider up to ``max_distance`` (farther
    ones share the last bucket); unidirectional (a decoder), keys after the query share bucket 0. Computed in
    float32 as transformers does, so that a distance on a bucket's edge falls where it falls there.

    >>> relative_position_buckets(1, 6, True, 8, 16).tolist(), relative_position_buckets(4, 1, False, 8, 16).tolist()
    ([[0, 5, 6, 6, 6, 6]], [[0], [1], [2], [3]])
    """
    import numpy as np

    relative = np.arange(lk, dtype=np.int64)[None, :] - np.arange(lq, dtype=np.int64)[:, None]
    buckets = np.zeros(relative.shape, dtype=np.int64)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0) * num_buckets
        relative = np.abs(relative)
    else:
        relative = -np.minimum(relative, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):                 # log(0) for the exact ones, replaced below
        large = max_exact + (np.log(relative.astype(np.float32) / np.float32(max_exact))
                             / np.float32(math.log(max_distance / max_exact))
                             * np.float32(num_buckets - max_exact))
    large = np.minimum(np.where(relative < max_exact, 0, large).astype(np.int64), num_buckets - 1)
    return buckets + np.where(relative < max_exact, relative, large)


@register_layer
class RelativePositionBias(LayerBase):
    """T5's relative position bias (``relative_attention_bias``, an ``nn.Embedding(num_buckets, num_heads)``): for
    every (query, key) pair, the row of its distance's bucket (:func:`relative_position_buckets`), one value per
    head → ``[N, H, L_q, L_k]``, the same for every example (expanded over the batch without a copy), added to the
    scores of a ``multi_head_attention`` with ``score_bias``. Inputs: one sequence ``[N, L, …]`` (self-attention:
    L_q = L_k = L) or two (queries, keys); only their lengths (dim 1) are read.

    T5 holds the table in the first layer of each stack and passes the bias it made to the others: one layer of
    this type per stack, read by every attention of the stack, counts its params once. params
    ``num_buckets·num_heads``; MACs 0, FLOPs 0: a lookup (the buckets — a log per pair — depend on the lengths
    only, made once per forward pass, not counted, as RoPE's cos/sin tables are not)."""
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[Optional[int]] = 2
    type: Literal["relative_position_bias"] = "relative_position_bias"
    num_heads: PositiveInt = Field(description="heads H: one bias per head")
    num_buckets: PositiveInt = Field(32, description="rows of the table (T5: relative_attention_num_buckets)")
    max_distance: PositiveInt = Field(128, description="distances from here on share the last bucket (T5: "
                                                       "relative_attention_max_distance)")
    bidirectional: Bool = Field(True, description="keys after the query get buckets of their own (an encoder); "
                                                  "false: a decoder's, they share bucket 0")

    keeps_finite = True
    reads_input_values = False               # the inputs give the lengths only

    @model_validator(mode="after")
    def _enough_buckets(self):
        exact = self.num_buckets // (2 if self.bidirectional else 1) // 2
        if exact < 1:
            raise ValueError(f"num_buckets {self.num_buckets} leaves no exact bucket (at least "
                             f"{4 if self.bidirectional else 2} {'bidirectional' if self.bidirectional else ''})")
        if self.max_distance <= exact:
            raise ValueError(f"max_distance {self.max_distance} must exceed the {exact} exact distances "
                             f"(num_buckets {self.num_buckets}): the logarithmic buckets span exact..max_distance")
        return self

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        for t in inputs:
            if len(t.shape) < 2:
                raise ctx.fail(f"needs inputs [N, L, …] (the sequence along dim 1), got {fmt_shape(t.shape)}")
        lq, lk = inputs[0].shape[1], inputs[-1].shape[1]
        # a decode step: the queries sit after the past positions and the keys are the cached ones and the new ones
        # (transformers' compute_bias with past_seen_tokens), unless the keys are a fixed sequence's (not cached by
        # this pass: an encoder's)
        past = 0 if ctx.fixed and ctx.fixed[-1] else ctx.past
        notes = [f"a {self.num_buckets} × {self.num_heads} table read at the bucket of each of the {lq:,}·"
                 f"{past + lk:,} (query, key) distances: no arithmetic counted; the same for every example "
                 f"(expanded, no copy)"]
        if past:
            notes.append(f"decode step: queries at positions {past:,}..{past + lq - 1:,}, keys at 0..{past + lk - 1:,}")
        return Facts(output_shape=(ctx.batch, self.num_heads, lq, past + lk),
                     params=self.num_buckets * self.num_heads, notes=notes, geometry={"past": past})

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        return {"weight": ParamSpec((self.num_buckets, self.num_heads), "[num_buckets, num_heads]", "normal")}

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        _, heads, lq, lk = step.facts.output_shape
        buckets = relative_position_buckets(lq + step.facts.geometry.get("past", 0), lk, self.bidirectional,
                                            self.num_buckets, self.max_distance)[-lq:]    # (a decode step's rows)
        bias = params["weight"][buckets].transpose(2, 0, 1)                  # [H, L_q, L_k]
        return np.broadcast_to(bias, step.facts.output_shape)

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        _, heads, lq, lk = step.facts.output_shape
        return lq * lk * (8 * 4 + heads * itemsize), 0     # distances, buckets, the float32 logs; the bias itself

    def saved_for_backward(self, step: Any, grads: GradFlow) -> list[Saved]:
        """The table's lookup (an embedding) keeps its int64 bucket ids [L_q, L_k] for the weight's gradient, once
        for the batch; nothing when the table is frozen (its inputs give lengths only: no input gradient). The
        attentions that add the bias keep nothing for it (measured: T5)."""
        if not grads.params:
            return []
        _, _, lq, lk = step.facts.output_shape
        return [Saved("extra", f"the bucket of each (query, key) pair [{lq}, {lk}], int64, for the table's "
                               f"gradient", numel=lq * lk, itemsize=8)]

    def backward(self, step: Any, grads: Gradients) -> Backward:
        adds = numel(step.facts.output_shape)
        return Backward(element_flops=adds, lines=[
            "backward: no input gradient: the inputs give the lengths only",
            f"backward weight gradient: the output gradient summed over the batch and into the bucket rows (a "
            f"scatter-add): 0 MACs, N·H·L_q·L_k = {adds:,} adds"])

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        _, heads, lq, lk = facts.output_shape
        c.add(f"each (query, key) pair of {lq}·{lk} reads the row of its distance's bucket "
              f"({'bidirectional' if self.bidirectional else 'unidirectional'}, {self.num_buckets} buckets, "
              f"max_distance {self.max_distance}) → {list(facts.output_shape)}, the same for every example")
        c.result("params", f"num_buckets·num_heads = {self.num_buckets}·{heads}", self.num_buckets * heads,
                 facts.params)
        c.add("MACs = 0, FLOPs = 0 (a lookup; the buckets depend on the lengths only)")
