"""Multi-head latent attention: ``latent_attention`` (alias ``mla``) — DeepSeek-V2/V3's attention, whose queries and
keys/values pass through low-rank latent projections, with rotary position embedding on a few decoupled dims.

As transformers 5's ``DeepseekV3Attention`` computes it, on ``x`` ``[N, L, d]`` with H heads:

- query: ``q_b_proj(rmsnorm(q_a_proj(x)))`` (``q_lora_rank`` r_q; without it one ``q_proj`` d → H·(n + r)), split
  per head into n = ``qk_nope_head_dim`` features without position and r = ``qk_rope_head_dim`` rotated ones;
- key/value: ``kv_a_proj_with_mqa(x)`` d → r_kv + r (``kv_lora_rank`` r_kv): the latent r_kv, normalized
  (``kv_a_layernorm``) then ``kv_b_proj`` r_kv → H·(n + v) (each head's key part and its ``v_head_dim`` value), and
  r features rotated once and shared by every head (one key head, broadcast);
- attention of the keys ``[k_nope, k_rope]`` (n + r features) by the queries ``[q_nope, q_rope]``, scaled by
  ``softmax_scale`` (default 1/√(n + r)), then ``o_proj`` H·v → d.

Counts (docs/conventions.md, "Multi-head latent attention"), T = N·L:

- params: ``d·r_q (+ r_q bias) + r_q (norm) + r_q·H·(n + r)`` (or ``d·H·(n + r)``) + ``d·(r_kv + r) (+ bias) +
  r_kv (norm) + r_kv·H·(n + v)`` + ``H·v·d (+ d bias)``;
- MACs: every projection ``T·in·out`` + QKᵀ ``N·H·L·L·(n + r)`` + A·V ``N·H·L·L·v`` (causal: counted in full, as
  FlopCounterMode counts eager attention);
- FLOPs: 2·MACs + bias adds + the two RMS norms (as ``rmsnorm`` counts them) + scaling and softmax (1 + 5 per
  score) + RoPE 3 per rotated element (``T·(H + 1)·r``: every query head, the one shared key).

KV cache and decode step (``causal``; docs/conventions.md, "Serving"): transformers 5 caches the latent — the
normalized ``r_kv`` and the rotated ``r`` of each position, ``N·(P + L)·(r_kv + r)`` elements, shared by the heads —
and at every step runs ``kv_b_proj`` again on every cached and new position (``N·(P + L)·r_kv·H·(n + v)`` MACs) to
make the heads' keys and values; the other projections, the norms and RoPE run on the L new positions only. With
``absorb`` a decode step is counted as MLA servers run it (DeepSeek-V3's inference code, vLLM, SGLang): kv_b_proj's
key half is absorbed into the query and its value half into the output (``T·r_kv·H·(n + v)`` MACs, on the new
tokens), and the heads attend over the latent itself: QKᵀ ``N·H·L·(P + L)·(r_kv + r)``, A·V ``N·H·L·(P + L)·r_kv``.

The receptive field ends (null), as for every attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import Field

from ..explain import Explanation, n
from ..rules import NO_INPUT_GRADIENT, Backward, Context, Facts, Gradients, Tensor, check_declared, fmt_shape
from .attention import SCALE_FLOPS, SOFTMAX_FLOPS, _causal_note, attend, attention_core_backward
from .base import Bool, GradFlow, LayerBase, ParamSpec, PositiveFloat, PositiveInt, Saved, _alias, register_layer
from .norm import RMS_ELEMENT_FLOPS, RMS_GROUP_FLOPS
from .sequence import ROTARY_FLOPS, rotate

#: bytes of a float32 element: Hugging Face's latent norms and softmax compute in float32 whatever the dtype
FLOAT32_BYTES = 4

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ["LatentAttention"]


@dataclass(frozen=True)
class LatentDims:
    """The resolved sizes of one latent attention layer (``facts.geometry["mla"]``)."""
    batch: int
    length: int
    hidden: int           # d
    heads: int            # H
    q_rank: int           # r_q (0: one q_proj)
    kv_rank: int          # r_kv
    nope: int             # n
    rope: int             # r
    value: int            # v
    past: int = 0         # a decode step's cached positions (Context.past): the keys are past + length
    caches: bool = False  # keeps a generation cache (causal): the latent and the rotated key of every position
    absorbed: bool = False  # a decode step with kv_b_proj absorbed (``absorb``): attention over the latent

    @property
    def tokens(self) -> int:
        return self.batch * self.length

    @property
    def keys(self) -> int:
        """Key positions each query attends to: the cached ones and the new ones."""
        return self.past + self.length

    @property
    def scores(self) -> int:
        return self.batch * self.heads * self.length * self.keys

    @property
    def cache_elements(self) -> int:
        """What transformers 5 caches: per position the normalized latent (r_kv) and the rotated key (r), one for
        all heads: N·(past + L)·(r_kv + r); 0 without a causal mask (no generation)."""
        return self.batch * self.keys * (self.kv_rank + self.rope) if self.caches else 0

    def rows(self, name: str) -> int:
        """Rows projection ``name`` runs on: the new tokens, but kv_b_proj decompresses the whole cache again at
        every step (transformers 5 caches the latent), N·(past + L) rows — absorbed, its two halves multiply the
        new tokens' queries and outputs instead (per head n·r_kv and r_kv·v: the same MACs as a row of it)."""
        return self.batch * self.keys if name == "kv_b_proj" and not self.absorbed else self.tokens

    def projection_macs(self) -> int:
        return sum(self.rows(name) * fin * fout for name, fin, fout in self.projections())

    @property
    def score_dims(self) -> tuple[int, int]:
        """(features per score of QKᵀ, of A·V): the heads' (n + r, v), or absorbed the latent's (r_kv + r, r_kv)."""
        return ((self.kv_rank + self.rope, self.kv_rank) if self.absorbed
                else (self.nope + self.rope, self.value))

    def core_macs(self) -> int:
        """QKᵀ + A·V."""
        return self.scores * sum(self.score_dims)

    def projections(self) -> list[tuple[str, int, int]]:
        """(module, in, out) of each projection, in transformers' order."""
        qk = self.heads * (self.nope + self.rope)
        query = ([("q_a_proj", self.hidden, self.q_rank), ("q_b_proj", self.q_rank, qk)] if self.q_rank
                 else [("q_proj", self.hidden, qk)])
        return [*query, ("kv_a_proj_with_mqa", self.hidden, self.kv_rank + self.rope),
                ("kv_b_proj", self.kv_rank, self.heads * (self.nope + self.value)),
                ("o_proj", self.heads * self.value, self.hidden)]


#: the projections that have a bias when ``bias`` (transformers' ``attention_bias``): q_b_proj and kv_b_proj never
_BIASED = ("q_a_proj", "kv_a_proj_with_mqa", "o_proj")


@register_layer
class LatentAttention(LayerBase):
    """Multi-head latent attention (DeepSeek-V2/V3) on ``[N, L, d]`` → ``[N, L, d]``: low-rank query and key/value
    projections with RMS norms on their latents, rotary position embedding on ``qk_rope_head_dim`` decoupled
    features (one rotated key head shared by all heads).

    Parameters in transformers' module names (``.`` → ``_``): ``q_a_proj_weight`` ``[r_q, d]`` (``_bias``),
    ``q_a_layernorm_weight`` ``[r_q]``, ``q_b_proj_weight`` ``[H·(n + r), r_q]`` (or ``q_proj_weight``
    ``[H·(n + r), d]``), ``kv_a_proj_with_mqa_weight`` ``[r_kv + r, d]`` (``_bias``), ``kv_a_layernorm_weight``
    ``[r_kv]``, ``kv_b_proj_weight`` ``[H·(n + v), r_kv]``, ``o_proj_weight`` ``[d, H·v]`` (``_bias``)."""
    type: Literal["latent_attention", "mla"] = "latent_attention"
    num_heads: PositiveInt = Field(validation_alias=_alias("num_heads", "num_attention_heads"), description="heads H")
    q_lora_rank: Optional[PositiveInt] = Field(None, description="the query's latent rank r_q; null: one q_proj "
                                                                 "(DeepSeek-V2-Lite)")
    kv_lora_rank: PositiveInt = Field(description="the keys' and values' latent rank r_kv")
    qk_nope_head_dim: PositiveInt = Field(description="n: each head's query/key features without position")
    qk_rope_head_dim: PositiveInt = Field(description="r: each head's rotated query/key features (even)")
    v_head_dim: PositiveInt = Field(description="v: each head's value features")
    hidden_size: Optional[PositiveInt] = Field(None, description="d: inferred from the input's last dim; an error "
                                                                 "if different")
    bias: Bool = Field(False, validation_alias=_alias("bias", "attention_bias"),
                       description="biases of q_a_proj (or q_proj: never), kv_a_proj_with_mqa and o_proj")
    eps: PositiveFloat = Field(1e-6, description="the latent norms' epsilon (transformers: 1e-6, whatever "
                                                 "rms_norm_eps)")
    rope_theta: PositiveFloat = Field(10000.0, description="θ: the angle of pair i is position·θ^(−2i/r)")
    rope_interleave: Bool = Field(True, description="the rotated features pair as (0, 1), (2, 3), … (DeepSeek's "
                                                    "layout); off: (i, i + r/2), Llama's rotate_half")
    softmax_scale: Optional[PositiveFloat] = Field(None, description="multiplies q·kᵀ; default 1/√(n + r) (YaRN "
                                                                     "scaling changes it: give it then)")
    causal: Bool = Field(False, validation_alias=_alias("causal", "is_causal"),
                         description="causal mask (query i sees keys 0..i); counted in full")
    absorb: Bool = Field(False, description="count a decode step (past > 0) as MLA servers run it: kv_b_proj "
                                            "absorbed into the query and output, attention over the latent cache; "
                                            "default: as transformers runs it, the cache decompressed by kv_b_proj "
                                            "at every step")

    def flop_counter_text(self, macs_text: str) -> str:
        return (f"torch.utils.flop_counter counts 2·MACs = {macs_text} with eager attention "
                f"(attn_implementation='eager'); 0 for F.scaled_dot_product_attention on CPU")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) != 3:
            raise ctx.fail(f"needs a 3-d input [N, L, hidden], got {fmt_shape(x.shape)}")
        check_declared(self.hidden_size, x.shape[-1], "hidden_size", x, ctx)
        if self.qk_rope_head_dim % 2:
            raise ctx.fail(f"qk_rope_head_dim {self.qk_rope_head_dim} must be even (features rotate in pairs)")
        if ctx.past and not self.causal:
            raise ctx.fail("a decode step (past positions) needs causal attention; this one is bidirectional "
                           "(causal: false): every position reads later ones, so no token is generated from a cache")
        d = LatentDims(batch=x.shape[0], length=x.shape[1], hidden=x.shape[2], heads=self.num_heads,
                       q_rank=self.q_lora_rank or 0, kv_rank=self.kv_lora_rank, nope=self.qk_nope_head_dim,
                       rope=self.qk_rope_head_dim, value=self.v_head_dim, past=ctx.past, caches=self.causal,
                       absorbed=self.absorb and ctx.past > 0)
        projections = d.projections()
        bias = sum(out for name, _, out in projections if self.bias and name in _BIASED)
        params = sum(fin * fout for _, fin, fout in projections) + bias + d.q_rank + d.kv_rank
        macs = d.projection_macs() + d.core_macs()
        norms = d.tokens * ((d.q_rank + d.kv_rank) * (RMS_ELEMENT_FLOPS + 1)
                            + ((1 if d.q_rank else 0) + 1) * RMS_GROUP_FLOPS)
        flops = (2 * macs + d.tokens * bias + norms + (SCALE_FLOPS + SOFTMAX_FLOPS) * d.scores
                 + ROTARY_FLOPS * d.tokens * (d.heads + 1) * d.rope)
        notes = [f"latent ranks: q {d.q_rank or 'none'}, kv {d.kv_rank}; keys of {d.nope} + {d.rope} rotated "
                 f"features (the rotated part one head shared by all {d.heads}), values of {d.value}"]
        if self.causal:
            notes.append(_causal_note(d.length, d.keys, d.batch * d.heads, *d.score_dims, macs, d.past))
            notes.append(self._cache_note(d))
        return Facts(output_shape=x.shape, params=params, macs=macs, flops=flops, notes=notes,
                     geometry={"mla": d})

    def kv_cache_elements(self, facts: Facts) -> int:
        return facts.geometry["mla"].cache_elements

    @staticmethod
    def _cache_note(d: LatentDims) -> str:
        """The cache as transformers 5 keeps it, and what the other layouts would keep (docs/conventions.md)."""
        per_head = d.heads * (d.nope + d.rope + d.value)
        step = ("; this decode step attends over the latent, kv_b_proj absorbed (absorb)" if d.absorbed else
                f"; this decode step runs kv_b_proj on all {d.keys:,} positions again" if d.past else
                "; a decode step runs kv_b_proj on every cached position again")
        return (f"KV cache: the latent and the rotated key, r_kv + r = {d.kv_rank + d.rope} elements per position "
                f"for all {d.heads} heads (transformers 5 and MLA servers), not the {per_head:,} of decompressed "
                f"per-head keys and values{step}")

    def backward(self, step: Any, grads: Gradients) -> Backward:
        """As multi_head_attention's: the weight gradients of every projection (their forward MACs); activation
        gradients through the output projection, the scores (q, k and v all need one) and every projection whose
        input is inside the layer (q_b_proj, kv_b_proj); the projections reading x give dX only when the input
        requires a gradient. Element FLOPs: the forward's."""
        d: LatentDims = step.facts.geometry["mla"]
        macs = {name: d.tokens * fin * fout for name, fin, fout in d.projections()}
        reading_x = sum(v for name, v in macs.items() if name in ("q_a_proj", "q_proj", "kv_a_proj_with_mqa"))
        inner = sum(macs.values()) - reading_x                                   # q_b, kv_b, o
        core = attention_core_backward(d.scores, d.nope + d.rope, d.value, True, True, True)
        result = Backward(input_macs=inner + core.input_macs,
                          lines=[f"backward through o_proj, kv_b_proj{', q_b_proj' if d.q_rank else ''}: "
                                 f"{inner:,} MACs", *core.lines])
        if grads.inputs and grads.inputs[0]:
            result.input_macs += reading_x
            result.lines.append(f"backward input gradient through the projections reading x: {reading_x:,} MACs")
        else:
            result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
        if grads.weights:
            result.weight_macs = sum(macs.values())
            result.lines.append(f"backward weight gradients dW = dYᵀ·X of every projection: {result.weight_macs:,} "
                                f"MACs")
        else:
            result.lines.append("backward: no weight gradient (frozen: trainable false)")
        result.element_flops = step.facts.flops - 2 * step.facts.macs
        result.lines.append(f"backward element FLOPs (norms, softmax, scaling, rotation: the forward's element work) "
                            f"= {result.element_flops:,}")
        return result

    def saved_for_backward(self, step: Any, grads: GradFlow) -> Optional[list[Saved]]:
        """As transformers' ``DeepseekV3Attention`` with eager attention keeps them (measured with saved_tensors_hooks,
        torch 2.13; docs/conventions.md "Training memory"): the projections reading x keep x; each latent RMS norm
        its input, 1/rms per token and, for its weight's gradient, the normalized latent; q_b_proj and kv_b_proj
        their inputs (the norms' outputs); RoPE only the cos and sin tables (shared by every layer); the attention
        q (concatenated), k (its own tensor: the rotated key copied to every head), the softmax's output and v, a
        copy [N·H, L, v] of its slice of kv_b_proj's output — at batch 1 that reshape is a view, and the whole
        kv_b_proj output [1, L, H·(n + v)] is kept; o_proj the heads merged back (a copy). The norms and the
        softmax compute in float32: in a 16-bit model the norms keep a float32 copy of their input (in float32 the
        key/value norm's input is a slice of kv_a_proj_with_mqa's output, kept whole) and the float32 softmax
        output is kept beside the probabilities cast back."""
        if not grads.any:
            return []
        d: LatentDims = step.facts.geometry["mla"]
        t, h, qk = d.tokens, d.heads, d.nope + d.rope
        trained = grads.params
        narrow = grads.itemsize < FLOAT32_BYTES            # a 16-bit model: the float32 upcasts are new tensors
        wide = FLOAT32_BYTES if narrow else None
        saved: list[Saved] = []
        if trained:
            saved.append(Saved("input", "x, for the weight gradients of the projections reading it"))

        def norm(role: str, rank: int, made: str, width: int) -> list[Saved]:
            """What one latent RMS norm (Hugging Face's, in float32) keeps; ``made``: the projection whose output
            [T, width] its input is (a slice of it when width > rank)."""
            if narrow:
                kept = [Saved("extra", f"the {role} latent upcast to float32 [{t}, {rank}], the norm's input",
                              numel=t * rank, itemsize=FLOAT32_BYTES)]
            else:
                whole = (f", kept whole: its first {rank} features are the norm's input" if width > rank
                         else ", the norm's input")
                kept = [Saved("extra", f"{made}'s output [{t}, {width}]{whole}", numel=t * width)]
            kept.append(Saved("extra", f"the {role} norm's 1/rms per token ({t:,}, float32)", numel=t,
                              itemsize=wide))
            if trained:
                kept += [Saved("extra", f"the normalized {role} latent [{t}, {rank}], for the norm weight's "
                                        f"gradient", numel=t * rank),
                         Saved("extra", f"the {role} norm's output [{t}, {rank}], the next projection's input, for "
                                        f"its weight gradient", numel=t * rank)]
            return kept

        if d.q_rank:
            saved += norm("query", d.q_rank, "q_a_proj", d.q_rank)
        saved += norm("key/value", d.kv_rank, "kv_a_proj_with_mqa", d.kv_rank + d.rope)
        saved.append(Saved("extra", f"RoPE's cos and sin tables [1, {d.length}, {d.rope}] (made once, shared by every "
                                    f"layer)", numel=2 * d.length * d.rope,
                           shared=f"rotary tables {d.length}×{d.rope} base {self.rope_theta:g}"))
        if d.batch == 1:
            value = Saved("extra", f"kv_b_proj's whole output [1, {d.length}, {h * (d.nope + d.value)}]: at batch 1 "
                                   f"v [{h}, {d.length}, {d.value}] is a view of it, which the product keeps",
                          numel=t * h * (d.nope + d.value))
        else:
            value = Saved("extra", f"v [{d.batch}·{h}, {d.length}, {d.value}] (a copy of its slice of kv_b_proj's "
                                   f"output), for the probabilities' gradient", numel=t * h * d.value)
        saved += [Saved("extra", f"q [{d.batch}, {h}, {d.length}, {qk}] (q_nope and the rotated q concatenated), for "
                                 f"k's gradient", numel=t * h * qk),
                  Saved("extra", f"k [{d.batch}, {h}, {d.length}, {qk}] (k_nope and the rotated key copied to every "
                                 f"head), for q's gradient", numel=t * h * qk),
                  Saved("extra", f"the softmax's output [{d.batch}, {h}, {d.length}, {d.length}], for its own "
                                 f"gradient and v's", numel=d.scores, itemsize=wide)]
        if narrow:
            saved.append(Saved("extra", "the probabilities cast back to the model's dtype, for v's gradient",
                               numel=d.scores))
        saved.append(value)
        if trained:
            saved.append(Saved("extra", f"the heads merged [{d.batch}, {d.length}, {h * d.value}], for o_proj's "
                                        f"weight gradient", numel=t * h * d.value))
        return saved

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        d: LatentDims = step.facts.geometry["mla"]
        specs: dict[str, ParamSpec] = {}
        for name, fin, fout in d.projections():
            specs[f"{name}_weight"] = ParamSpec((fout, fin), "[out, in]", "uniform", fin)
            if self.bias and name in _BIASED:
                specs[f"{name}_bias"] = ParamSpec((fout,), "[out]", "uniform", fin)
            if name == "q_a_proj":
                specs["q_a_layernorm_weight"] = ParamSpec((d.q_rank,), "[q_lora_rank]", "ones")
            if name == "kv_a_proj_with_mqa":
                specs["kv_a_layernorm_weight"] = ParamSpec((d.kv_rank,), "[kv_lora_rank]", "ones")
        return specs

    # ----------------------------------------------------------------------------------------------- forward

    def _rms(self, x: Any, weight: Any) -> Any:
        import numpy as np
        return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + self.eps) * weight

    def _rotate(self, x: Any) -> Any:
        """RoPE on ``x`` ``[..., L, r]`` (positions along dim −2)."""
        import numpy as np

        if not self.rope_interleave:
            return rotate(x, x.shape[-1], self.rope_theta)
        r = x.shape[-1]
        angles = np.outer(np.arange(x.shape[-2], dtype=np.float64),
                          1.0 / (self.rope_theta ** (np.arange(0, r, 2, dtype=np.float64) / r)))
        cos, sin = np.cos(angles).astype(x.dtype), np.sin(angles).astype(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        return np.concatenate([even * cos - odd * sin, odd * cos + even * sin], axis=-1)

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        from ..kernels import linear

        d: LatentDims = step.facts.geometry["mla"]
        x = xs[0]
        p = params

        def project(name: str, value: Any) -> Any:
            return linear(value, p[f"{name}_weight"], p.get(f"{name}_bias"), env.counter)

        if d.q_rank:
            q = project("q_b_proj", self._rms(project("q_a_proj", x), p["q_a_layernorm_weight"]))
        else:
            q = project("q_proj", x)
        q = q.reshape(d.batch, d.length, d.heads, d.nope + d.rope).transpose(0, 2, 1, 3)      # [N, H, L, n + r]
        compressed = project("kv_a_proj_with_mqa", x)
        latent = self._rms(compressed[..., :d.kv_rank], p["kv_a_layernorm_weight"])
        k_rope = self._rotate(compressed[..., d.kv_rank:])[:, None]                          # [N, 1, L, r]
        kv = project("kv_b_proj", latent).reshape(d.batch, d.length, d.heads, d.nope + d.value).transpose(0, 2, 1, 3)
        key = np.concatenate([kv[..., :d.nope], np.broadcast_to(k_rope, (*kv.shape[:3], d.rope))], axis=-1)
        query = np.concatenate([q[..., :d.nope], self._rotate(q[..., d.nope:])], axis=-1)
        scale = self.softmax_scale if self.softmax_scale is not None else 1 / math.sqrt(d.nope + d.rope)
        out = attend(np.ascontiguousarray(query), np.ascontiguousarray(key), np.ascontiguousarray(kv[..., d.nope:]),
                     scale, self.causal, env.counter)                                        # [N, H, L, v]
        out = out.transpose(0, 2, 1, 3).reshape(d.batch, d.length, d.heads * d.value)
        return project("o_proj", out)

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        d: LatentDims = step.facts.geometry["mla"]
        heads = d.tokens * d.heads
        # the latents and their norms, q (and its transpose, rotated copy, the query), kv (and key, value copies),
        # the scores with their max and sum, the heads' output and its transpose
        elements = (2 * d.tokens * (d.q_rank + d.kv_rank + d.rope) + 4 * heads * (d.nope + d.rope)
                    + 4 * heads * (d.nope + d.value) + d.scores + 2 * heads + 2 * heads * d.value)
        mask = d.length * d.length if self.causal else 0
        return elements * itemsize + mask + (0 if weights_given else step.facts.params * itemsize), 0

    # ------------------------------------------------------------------------------------------------ explain

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        d: LatentDims = facts.geometry["mla"]
        c.add(f"[{d.batch}, {d.length}, {d.hidden}]: H = {d.heads} heads; latent ranks r_q = {d.q_rank or 'none'}, "
              f"r_kv = {d.kv_rank}; per head n = {d.nope}, r = {d.rope} rotated, v = {d.value}")
        parts = [f"{name} {fin}·{fout}" for name, fin, fout in d.projections()]
        c.add("  projections (in·out): " + ", ".join(parts))
        weights = sum(fin * fout for _, fin, fout in d.projections())
        biases = sum(out for name, _, out in d.projections() if self.bias and name in _BIASED)
        c.result("params", f"projections {n(weights)} + biases {n(biases)} + latent norms r_q + r_kv "
                 f"{d.q_rank} + {d.kv_rank}", weights + biases + d.q_rank + d.kv_rank, facts.params)
        proj = d.projection_macs()
        if d.absorbed:
            c.add(f"  decode step ({d.length} new after {d.past} cached), kv_b_proj absorbed (absorb): its key half "
                  f"turns each query head's n features into r_kv, its value half each head's latent output into v: "
                  f"T·H·r_kv·(n + v) = {d.tokens}·{d.heads}·{d.kv_rank}·{d.nope + d.value} MACs (in the "
                  f"projections); the heads attend over the latent cache")
            c.result("MACs", f"projections {n(proj)} + N·H·L·(P + L)·((r_kv + r) + r_kv) = {d.batch}·{d.heads}·"
                     f"{d.length}·{d.keys}·{2 * d.kv_rank + d.rope}", proj + d.core_macs(), facts.macs)
        elif d.past:
            kv_b = d.batch * d.keys * d.kv_rank * d.heads * (d.nope + d.value)
            c.add(f"  decode step: {d.length} new position{'s' if d.length > 1 else ''} after {d.past} cached; "
                  f"kv_b_proj decompresses all N·(P + L) = {d.batch}·({d.past} + {d.length}) latents again: "
                  f"{n(kv_b)} MACs; the other projections on the T = {d.tokens} new rows")
            c.result("MACs", f"projections {n(proj)} + N·H·L·(P + L)·(n + r + v) = {d.batch}·{d.heads}·{d.length}·"
                     f"{d.keys}·{d.nope + d.rope + d.value}", proj + d.core_macs(), facts.macs)
        else:
            c.result("MACs", f"T·Σ in·out + N·H·L²·(n + r + v) = {n(proj)} + {d.batch}·{d.heads}·{d.length}²·"
                     f"{d.nope + d.rope + d.value}", proj + d.scores * (d.nope + d.rope + d.value), facts.macs)
        c.add(f"RoPE: {ROTARY_FLOPS} FLOPs per rotated element, T·(H + 1)·r = {d.tokens}·{d.heads + 1}·{d.rope} "
              f"(the new positions: the cache holds the rotated key)")
        if d.caches:
            c.result("KV cache elements", f"the normalized latent and the rotated key of every position, one for "
                     f"all heads (transformers 5's cache, and MLA servers'), N·(P + L)·(r_kv + r) = {d.batch}·"
                     f"{d.keys}·({d.kv_rank} + {d.rope})", d.cache_elements, self.kv_cache_elements(facts))
            c.add(f"  decompressed per-head keys and values would be N·(P + L)·H·(n + r + v) = "
                  f"{n(d.batch * d.keys * d.heads * (d.nope + d.rope + d.value))} "
                  f"({d.heads * (d.nope + d.rope + d.value) / (d.kv_rank + d.rope):.1f}× more); transformers "
                  f"decompresses the latent with kv_b_proj at every step instead (N·(P + L)·r_kv·H·(n + v) MACs); "
                  f"servers that absorb kv_b_proj into the query and output projections do not (absorb: true)")
