"""Mixture of experts: ``moe`` — a router choosing ``top_k`` of ``num_experts`` feed-forward experts for each token,
with optional shared experts every token goes through (Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V3, as Hugging Face's
sparse MoE blocks compute them).

Counts (docs/conventions.md, "Mixture of experts"), with d the hidden size, E experts of F features each, k chosen
per token, m the matrices of one expert (3 gated: gate, up, down; 2 plain: up, down), F_s the shared experts'
features (one MLP of that size, as transformers builds DeepSeek's ``n_shared_experts``), T the tokens (every dim of
the input but the last):

- params (memory: every expert): router ``d·E`` (+ ``E`` bias) + experts ``E·m·d·F`` + shared ``m·d·F_s`` + shared
  gate ``d`` (Qwen2-MoE's sigmoid ``shared_expert_gate``); buffers: DeepSeek-V3's ``e_score_correction_bias`` ``E``.
- active params (what one token uses): the same with ``k`` experts instead of ``E``.
- MACs (what a forward computes, each token through its k experts only — as transformers' eager experts and
  FlopCounterMode count it): ``T·(d·E + k·m·d·F + m·d·F_s + d·[gate])``. ``all_experts_macs`` adds the
  ``T·(E − k)·m·d·F`` the unchosen experts would cost (counting every expert: MaxText's early error).
- FLOPs: 2·MACs + router bias adds + scoring (softmax 5, sigmoid 3 per expert score; the correction bias 1) + the
  chosen weights' normalization (k − 1 adds, k divides) and scaling (k multiplies) + per chosen expert the
  activation (and the gate·up product) on F features + the weighting and sum of the k outputs (k·d multiplies,
  (k − 1)·d adds) + the shared expert's activation, its gate (sigmoid 3, d multiplies) and its add (d). Top-k
  selection (comparisons, sorting) is not counted.
- Mixtral's router jitter (``router_jitter_noise``) multiplies the input by uniform noise in training only: like
  dropout, no FLOPs (its T·d multiplies forward and backward are not counted, as dropout's are not) and nothing at
  inference; in training its noise ``[T, d]`` is kept for the backward pass.

The receptive field passes through (per-position, like a dense layer over the channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from ..explain import Explanation, n
from ..rules import NO_INPUT_GRADIENT, Backward, Context, Facts, Gradients, Tensor, check_declared, fmt_shape, numel
from .activation import Sigmoid, Softmax
from .base import (
    Bool,
    Float,
    GradFlow,
    LayerBase,
    NonNegativeInt,
    ParamSpec,
    PositiveFloat,
    PositiveInt,
    Saved,
    _alias,
    register_layer,
)

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ["MixtureOfExperts"]

#: FLOPs per element of each expert activation (as the activation layers count them: silu x·σ(x) 4, erf GELU 5,
#: tanh GELU 9, relu 1)
ACTIVATION_FLOPS = {"silu": 4, "gelu": 5, "gelu_tanh": 9, "relu": 1}
SCORE_FLOPS = {"softmax": Softmax.flops_per_element, "sigmoid": Sigmoid.flops_per_element}
#: DeepSeek-V3 ranks a group of experts by the sum of its two best scores
GROUP_SCORE_TOP = 2
#: bytes of an int64 index, a float32 score and a bool mask element: the router's tensors of a fixed dtype
INDEX_BYTES, FLOAT32_BYTES, BOOL_BYTES = 8, 4, 1


@dataclass(frozen=True)
class MoeDims:
    """The resolved sizes of one mixture-of-experts layer (``facts.geometry["moe"]``)."""
    tokens: int            # T: every position of every example
    hidden: int            # d
    experts: int           # E
    top_k: int             # k
    inner: int             # F, one expert's features
    matrices: int          # m: 3 gated (gate, up, down), 2 plain (up, down)
    shared: int            # F_s (0: no shared expert)
    shared_gate: bool

    @property
    def expert_params(self) -> int:
        return self.matrices * self.hidden * self.inner

    @property
    def idle_params(self) -> int:
        return (self.experts - self.top_k) * self.expert_params


@register_layer
class MixtureOfExperts(LayerBase):
    """A sparse mixture-of-experts feed-forward block over the last dim ``[N, ..., d] → [N, ..., d]``.

    Routing (transformers' routers): the router's logits ``x·Wᵀ`` become scores (``softmax``: Mixtral, Qwen;
    ``sigmoid``: DeepSeek-V3); with ``n_group`` > 1 only experts in the ``topk_group`` groups of highest score (a
    group's score: the sum of its two best) may be chosen; the ``top_k`` highest scores (plus the
    ``e_score_correction_bias`` buffer when ``score_correction_bias``: it changes the choice, not the weights) choose
    the experts; their scores, divided by their sum when ``norm_topk_prob`` (Mixtral always) and multiplied by
    ``routed_scaling_factor``, weight the experts' outputs. Experts: ``gated`` ``down(act(gate(x))·up(x))`` or
    ``mlp`` ``down(act(up(x)))``, no biases. Shared experts (one MLP of ``shared_intermediate_size`` features) run on
    every token and are added, times ``sigmoid(shared_expert_gate(x))`` when ``shared_expert_gate`` (Qwen2-MoE).

    Parameters, named after transformers 5's modules (weights keyed ``layer.param``): ``router_weight`` ``[E, d]``
    (``gate.weight``), ``router_bias`` ``[E]``, ``e_score_correction_bias`` ``[E]`` (a buffer:
    ``gate.e_score_correction_bias``), ``experts_gate_up_proj`` ``[E, 2F, d]`` (gate rows first) or
    ``experts_up_proj`` ``[E, F, d]``, ``experts_down_proj`` ``[E, d, F]``; ``shared_gate_proj_weight``
    ``[F_s, d]`` (gated), ``shared_up_proj_weight`` ``[F_s, d]``, ``shared_down_proj_weight`` ``[d, F_s]``,
    ``shared_expert_gate_weight`` ``[1, d]``.
    """
    type: Literal["moe", "mixture_of_experts"] = "moe"
    num_experts: PositiveInt = Field(validation_alias=_alias("num_experts", "num_local_experts", "n_routed_experts"),
                                     description="routed experts E")
    top_k: PositiveInt = Field(validation_alias=_alias("top_k", "num_experts_per_tok"),
                               description="experts each token goes through, k ≤ num_experts")
    intermediate_size: PositiveInt = Field(validation_alias=_alias("intermediate_size", "moe_intermediate_size"),
                                           description="features F of each expert")
    hidden_size: Optional[PositiveInt] = Field(None, description="d: inferred from the input's last dim; an error if "
                                                                 "different")
    experts: Literal["gated", "mlp"] = Field("gated", description="gated: down(act(gate(x))·up(x)) (SwiGLU with silu, "
                                                                  "GeGLU with gelu); mlp: down(act(up(x)))")
    activation: Literal["silu", "gelu", "gelu_tanh", "relu"] = Field("silu", description="the experts' activation")
    router_bias: Bool = Field(False, description="the router's linear layer has a bias")
    scoring: Literal["softmax", "sigmoid"] = Field("softmax", description="router logits → scores: softmax over the "
                                                                           "experts (Mixtral, Qwen) or sigmoid each "
                                                                           "(DeepSeek-V3)")
    norm_topk_prob: Bool = Field(False, description="divide the k chosen scores by their sum (Mixtral: always)")
    routed_scaling_factor: PositiveFloat = Field(1.0, description="multiplies the chosen experts' weights "
                                                                  "(DeepSeek-V3: 2.5)")
    n_group: PositiveInt = Field(1, description="expert groups for group-limited routing (DeepSeek-V3: 8); 1: none")
    topk_group: Optional[PositiveInt] = Field(None, description="groups a token may choose experts from (DeepSeek-V3: "
                                                                "4); default n_group")
    score_correction_bias: Bool = Field(False, description="DeepSeek-V3's e_score_correction_bias buffer [E], added "
                                                           "to the scores to choose the experts (not to weight them)")
    shared_intermediate_size: NonNegativeInt = Field(0, description="features of the shared experts every token goes "
                                                                    "through (DeepSeek: moe_intermediate_size·"
                                                                    "n_shared_experts); 0: none")
    shared_expert_gate: Bool = Field(False, description="Qwen2-MoE: the shared expert's output times "
                                                        "sigmoid(x·w), w [1, d]")
    router_jitter_noise: Float = Field(0.0, ge=0, description="Mixtral's router_jitter_noise j: in training only, "
                                                              "the input is multiplied by noise uniform in "
                                                              "[1 − j, 1 + j] before routing (the identity at "
                                                              "inference); 0: none")

    @model_validator(mode="after")
    def _routing(self):
        e, k = self.num_experts, self.top_k
        if k > e:
            raise ValueError(f"top_k {k} is more than num_experts {e}")
        if e % self.n_group:
            raise ValueError(f"n_group {self.n_group} does not divide num_experts {e} (groups of equal size)")
        groups = self.topk_group if self.topk_group is not None else self.n_group
        if groups > self.n_group:
            raise ValueError(f"topk_group {groups} is more than n_group {self.n_group}")
        if self.n_group > 1 and e // self.n_group < GROUP_SCORE_TOP:
            raise ValueError(f"groups of {e // self.n_group} expert: a group's score is the sum of its "
                             f"{GROUP_SCORE_TOP} best (DeepSeek-V3), so each group needs at least {GROUP_SCORE_TOP}")
        if k > groups * (e // self.n_group):
            raise ValueError(f"top_k {k} is more than the {groups}·{e // self.n_group} experts of the topk_group "
                             f"{groups} groups a token may choose from")
        if self.shared_expert_gate and not self.shared_intermediate_size:
            raise ValueError("shared_expert_gate needs a shared expert: give shared_intermediate_size")
        return self

    @property
    def groups_chosen(self) -> int:
        return self.topk_group if self.topk_group is not None else self.n_group

    # ------------------------------------------------------------------------------------------------ the rule

    def flop_counter_text(self, macs_text: str) -> str:
        return (f"torch.utils.flop_counter counts 2·MACs = {macs_text} with transformers' eager experts "
                f"(experts_implementation='eager'); 0 for the experts' default grouped_mm path")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input of at least 2 dims [N, ..., hidden], got {fmt_shape(x.shape)}")
        d = x.shape[-1]
        check_declared(self.hidden_size, d, "hidden_size", x, ctx)
        t = numel(x.shape[:-1])
        e, k, f, fs = self.num_experts, self.top_k, self.intermediate_size, self.shared_intermediate_size
        m = 3 if self.experts == "gated" else 2
        dims = MoeDims(tokens=t, hidden=d, experts=e, top_k=k, inner=f, matrices=m, shared=fs,
                       shared_gate=self.shared_expert_gate)
        gate = d if self.shared_expert_gate else 0
        params = d * e + (e if self.router_bias else 0) + e * dims.expert_params + m * d * fs + gate
        per_token_macs = d * e + k * dims.expert_params + m * d * fs + gate
        return Facts(output_shape=x.shape, params=params, buffers=e if self.score_correction_bias else 0,
                     macs=t * per_token_macs, flops=t * self._token_flops(dims), rf=x.rf,
                     notes=[self._note(dims)], geometry={"moe": dims})

    def _token_flops(self, d: MoeDims) -> int:
        """FLOPs of one token (module docstring)."""
        act = ACTIVATION_FLOPS[self.activation]
        e, k = d.experts, d.top_k
        flops = 2 * (d.hidden * e + k * d.expert_params + d.matrices * d.hidden * d.shared)
        flops += e if self.router_bias else 0
        flops += SCORE_FLOPS[self.scoring] * e + (e if self.score_correction_bias else 0)
        flops += (2 * k - 1 if self.norm_topk_prob else 0) + (k if self.routed_scaling_factor != 1 else 0)
        per_expert = d.inner * (act + 1 if d.matrices == 3 else act)
        flops += k * per_expert + k * d.hidden + (k - 1) * d.hidden
        if d.shared:
            flops += d.shared * (act + 1 if d.matrices == 3 else act) + d.hidden          # its activation, its add
            if d.shared_gate:
                flops += 2 * d.hidden + Sigmoid.flops_per_element + d.hidden            # x·w, sigmoid, scaling
        return flops

    def _note(self, d: MoeDims) -> str:
        every = d.tokens * (self._all(d) - (d.experts if self.router_bias else 0))       # each weight one MAC
        return (f"{d.top_k} of {d.experts} experts per token: active params {self._active(d):,}; MACs count the "
                f"chosen experts (every expert on every token: {every:,})")

    def _all(self, d: MoeDims) -> int:
        gate = d.hidden if d.shared_gate else 0
        return (d.hidden * d.experts + (d.experts if self.router_bias else 0) + d.experts * d.expert_params
                + d.matrices * d.hidden * d.shared + gate)

    def _active(self, d: MoeDims) -> int:
        return self._all(d) - d.idle_params

    def idle_params(self, facts: Facts) -> int:
        return facts.geometry["moe"].idle_params

    def idle_macs(self, facts: Facts) -> int:
        d: MoeDims = facts.geometry["moe"]
        return d.tokens * d.idle_params

    def weight_elements_read(self, facts: Facts) -> int:
        """A pass reads the router, the shared experts and only the experts its tokens choose: at most
        ``min(E, T·k)`` of them (exactly k for one token: the top-k are distinct), as an embedding reads at most the
        rows of its ids (a decode step of one token reads 8 of DeepSeek-V3's 256 experts per layer)."""
        d: MoeDims = facts.geometry["moe"]
        unread = d.experts - min(d.experts, d.tokens * d.top_k)
        return facts.params + facts.buffers - unread * d.expert_params

    def backward(self, step: Any, grads: Gradients) -> Backward:
        """As for every product with a weight: each forward MAC is met once by the weight gradient (dW = dYᵀ·X, the
        chosen experts' only) and once by an activation gradient. The down projections' dH = dY·W_down are made
        whenever a gradient flows (the gate/up weights need them); the products reading the input (router,
        gate/up, shared gate) give dX only when the input requires a gradient. Element FLOPs: the forward's."""
        d: MoeDims = step.facts.geometry["moe"]
        m, t, k = d.matrices, d.tokens, d.top_k
        second = t * (k * d.hidden * d.inner + d.hidden * d.shared)             # the down projections
        first = step.facts.macs - second                                         # the products reading x
        result = Backward(input_macs=second, lines=[f"backward down projections dH = dY·W_down: T·(k·d·F + d·F_s) "
                                                    f"= {second:,} MACs"])
        if grads.inputs and grads.inputs[0]:
            result.input_macs += first
            shared = " and shared" if d.shared else ""
            result.lines.append(f"backward input gradient through the router, gate/up{shared} projections (m − 1 = "
                                f"{m - 1} of each expert's matrices): {first:,} MACs")
        else:
            result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
        if grads.weights:
            result.weight_macs = step.facts.macs
            result.lines.append(f"backward weight gradients dW = dYᵀ·X of the router and the chosen experts (each "
                                f"token's k only): forward MACs = {step.facts.macs:,}")
        else:
            result.lines.append("backward: no weight gradient (frozen: trainable false)")
        result.element_flops = step.facts.flops - 2 * step.facts.macs
        result.lines.append(f"backward element FLOPs (routing, activations, weighting: the forward's element work) "
                            f"= {result.element_flops:,}")
        return result

    def saved_for_backward(self, step: Any, grads: GradFlow) -> Optional[list[Saved]]:
        """As transformers' routers and eager experts (``experts_implementation="eager"``) keep them, measured with
        saved_tensors_hooks on Mixtral, Qwen2-MoE, Qwen3-MoE and DeepSeek-V3 blocks (torch 2.13, docs/conventions.md
        "Training memory"). Every expert-side tensor is one row per routed (token, expert) pair, so the total is
        T·k rows whichever experts the router picks: an expert that gets no token keeps nothing, and nothing is
        kept per expert (its weight ``gate_up_proj[e]`` is a view of the parameter). The router computes its
        scores in float32 whatever the dtype (softmax ``dtype=float``, DeepSeek's ``.type(float32)``); indices
        are int64. Plain ``mlp`` experts (no gate) are in none of these models: not measured, not modeled. The
        activation matters only in the shared expert (relu keeps its output, not the gate); transformers'
        composite GELUs (gelu_new, gelu_fast, gelu_python) keep more, a documented exception. With
        ``router_jitter_noise`` (Mixtral, training only) the in-place multiply by the noise keeps the noise ``[T, d]``
        when the input needs a gradient."""
        if self.experts != "gated":
            return None
        if not grads.any:
            return []
        d: MoeDims = step.facts.geometry["moe"]
        t, h, e, k, f = d.tokens, d.hidden, d.experts, d.top_k, d.inner
        rows = t * k
        wide = grads.itemsize < FLOAT32_BYTES          # a 16-bit model: the router's float32 copies are new tensors
        deepseek = self.scoring == "sigmoid"           # DeepSeek-V3's router (the one with sigmoid scores)
        saved: list[Saved] = []
        if self.router_jitter_noise and grads.inputs[0]:
            # Mixtral in training: hidden_states *= noise, in place, before the router; the multiply keeps the noise
            # for the input's gradient (the router then keeps the jittered input, the same storage as the input)
            saved.append(Saved("extra", f"the router jitter noise [{t}, {h}] (router_jitter_noise "
                                        f"{self.router_jitter_noise:g}), for the input's gradient", numel=t * h))
        # ---- the router
        if grads.params:
            if deepseek and wide:
                saved.append(Saved("extra", f"the input upcast to float32 [{t}, {h}] (DeepSeek's router runs in "
                                            f"float32), for the router weight's gradient", numel=t * h,
                                   itemsize=FLOAT32_BYTES))
            else:
                shared = " and the shared expert's" if d.shared else ""
                saved.append(Saved("input", f"the input, for the router's{shared} weight gradients"))
        if deepseek and wide and grads.inputs[0]:
            saved.append(Saved("extra", f"the router weight upcast to float32 [{e}, {h}], for the input's gradient",
                               numel=e * h, itemsize=FLOAT32_BYTES))
        kind = "sigmoid" if deepseek else "softmax"
        saved.append(Saved("extra", f"the router's {kind} scores [{t}, {e}] (float32), for their gradient",
                           numel=t * e, itemsize=FLOAT32_BYTES))
        if deepseek:
            saved += [Saved("extra", f"the int64 indices of each group's {GROUP_SCORE_TOP} best scores "
                                     f"[{t}, {self.n_group}, {GROUP_SCORE_TOP}] (group-limited routing; this "
                                     f"and the next two are freed when the router returns, counted as "
                                     f"saved_tensors_hooks sees them)",
                            numel=t * self.n_group * GROUP_SCORE_TOP, itemsize=INDEX_BYTES),
                      Saved("extra", f"the int64 indices of the {self.groups_chosen} chosen groups "
                                     f"[{t}, {self.groups_chosen}]", numel=t * self.groups_chosen,
                            itemsize=INDEX_BYTES),
                      Saved("extra", f"the bool mask of the experts outside the chosen groups [{t}, {e}]",
                            numel=t * e, itemsize=BOOL_BYTES)]
            # (these three are freed when the router returns — only the chosen experts' indices are used after it —
            # but saved_tensors_hooks sees them saved, and so they are counted: docs/conventions.md)
        saved.append(Saved("extra", f"the int64 indices of the {k} chosen experts [{t}, {k}]", numel=t * k,
                           itemsize=INDEX_BYTES))
        if self.norm_topk_prob:
            saved += [Saved("extra", f"the chosen scores before normalizing [{t}, {k}] (float32; a copy: they are "
                                     f"divided in place)", numel=t * k, itemsize=FLOAT32_BYTES),
                      Saved("extra", f"their sum [{t}, 1] (float32), the divisor", numel=t, itemsize=FLOAT32_BYTES)]
        # ---- the routed experts: one row per (token, chosen expert), T·k rows however they are spread
        saved.append(Saved("extra", f"the routed rows' token and slot indices (int64, torch.where: 2 per row); "
                                    f"T·k = {rows:,} rows however the router spreads them over the experts, "
                                    f"nothing kept per expert", numel=2 * rows, itemsize=INDEX_BYTES))
        if grads.params:
            saved.append(Saved("extra", f"the routed rows' gathered input [{rows}, {h}], for the gate|up weight "
                                        f"gradients", numel=rows * h))
        saved += [Saved("extra", f"the routed rows' gate|up projection [{rows}, {2 * f}] (the activation keeps "
                                 f"gate, the product up: one tensor)", numel=rows * 2 * f),
                  Saved("extra", f"the routed rows' activation [{rows}, {f}], for the product's gradient",
                        numel=rows * f)]
        if grads.params:
            saved.append(Saved("extra", f"the routed rows' act·up [{rows}, {f}], for the down weight gradients",
                               numel=rows * f))
        # DeepSeek's weights are float32; Qwen's are cast back to the model's dtype (counted so); Mixtral's stay
        # float32 too, but its layer cannot be told from Qwen's: 2·T·k bytes more in a 16-bit Mixtral (documented)
        weight_size = FLOAT32_BYTES if deepseek else None
        saved += [Saved("extra", f"the routed rows' down projection [{rows}, {h}], for the routing weights' "
                                 f"gradient", numel=rows * h),
                  Saved("extra", f"the routed rows' routing weights [{rows}, 1]{' (float32)' if deepseek else ''}",
                        numel=rows, itemsize=weight_size),
                  Saved("extra", f"the routed rows' weighted output [{rows}, {h}], kept by index_add_",
                        numel=rows * h)]
        # ---- the shared expert (one gated MLP on every token) and Qwen2-MoE's sigmoid gate
        fs = d.shared
        if fs:
            if self.activation != "relu":        # relu keeps its output (the activation, below), not its input
                saved.append(Saved("extra", f"the shared expert's gate projection [{t}, {fs}], for the activation's "
                                            f"gradient", numel=t * fs))
            saved += [Saved("extra", f"the shared expert's up projection [{t}, {fs}], for the product's gradient",
                            numel=t * fs),
                      Saved("extra", f"the shared expert's activation [{t}, {fs}], for the product's gradient",
                            numel=t * fs)]
            if grads.params and deepseek and wide:           # (else listed with the router's)
                saved.append(Saved("input", "the input, for the shared expert's gate/up weight gradients"))
            if grads.params:
                saved.append(Saved("extra", f"the shared expert's act·up [{t}, {fs}], for its down weight gradient",
                                   numel=t * fs))
            if d.shared_gate:
                saved += [Saved("extra", f"the shared expert gate's sigmoid [{t}, 1]", numel=t),
                          Saved("extra", f"the shared expert's output [{t}, {h}], for the gate's gradient",
                                numel=t * h)]
        return saved

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        d: MoeDims = step.facts.geometry["moe"]
        h, e, f, fs = d.hidden, d.experts, d.inner, d.shared
        specs = {"router_weight": ParamSpec((e, h), "[num_experts, hidden]", "uniform", h)}
        if self.router_bias:
            specs["router_bias"] = ParamSpec((e,), "[num_experts]", "uniform", h)
        if self.score_correction_bias:
            specs["e_score_correction_bias"] = ParamSpec((e,), "[num_experts]", "zeros", buffer=True)
        if d.matrices == 3:
            specs["experts_gate_up_proj"] = ParamSpec((e, 2 * f, h), "[num_experts, 2·intermediate, hidden]",
                                                      "uniform", h)
        else:
            specs["experts_up_proj"] = ParamSpec((e, f, h), "[num_experts, intermediate, hidden]", "uniform", h)
        specs["experts_down_proj"] = ParamSpec((e, h, f), "[num_experts, hidden, intermediate]", "uniform", f)
        if fs:
            if d.matrices == 3:
                specs["shared_gate_proj_weight"] = ParamSpec((fs, h), "[shared_intermediate, hidden]", "uniform", h)
            specs["shared_up_proj_weight"] = ParamSpec((fs, h), "[shared_intermediate, hidden]", "uniform", h)
            specs["shared_down_proj_weight"] = ParamSpec((h, fs), "[hidden, shared_intermediate]", "uniform", fs)
        if self.shared_expert_gate:
            specs["shared_expert_gate_weight"] = ParamSpec((1, h), "[1, hidden]", "uniform", h)
        return specs

    # ----------------------------------------------------------------------------------------------- forward

    def route(self, x: Any, params: dict, counter: Any) -> tuple[Any, Any]:
        """The chosen experts ``[T, k]`` and their weights ``[T, k]`` for tokens ``x`` ``[T, d]``, as transformers'
        routers choose them (ties: the lower expert index first)."""
        import numpy as np

        from ..kernels import linear, sigmoid, softmax

        logits = linear(x, params["router_weight"], params.get("router_bias"), counter)
        scores = softmax(logits, -1) if self.scoring == "softmax" else sigmoid(logits)
        choice = scores + params["e_score_correction_bias"] if self.score_correction_bias else scores.copy()
        e, k = self.num_experts, self.top_k
        if self.n_group > 1:
            grouped = choice.reshape(len(x), self.n_group, e // self.n_group)
            best_two = -np.sort(-grouped, axis=-1)[..., :GROUP_SCORE_TOP].sum(-1)       # [T, n_group]
            kept = np.argsort(-best_two, axis=-1, kind="stable")[:, :self.groups_chosen]
            allowed = np.zeros(best_two.shape, dtype=bool)
            np.put_along_axis(allowed, kept, True, axis=-1)
            choice = np.where(np.repeat(allowed, e // self.n_group, axis=-1), choice, -np.inf)
        chosen = np.argsort(-choice, axis=-1, kind="stable")[:, :k]
        weights = np.take_along_axis(scores, chosen, axis=-1)
        if self.norm_topk_prob:
            # DeepSeek-V3 adds 1e-20 to the sum of its sigmoid scores (a sum of softmax scores is never 0)
            weights = weights / (weights.sum(-1, keepdims=True) + (1e-20 if self.scoring == "sigmoid" else 0))
        if self.routed_scaling_factor != 1:
            weights = weights * weights.dtype.type(self.routed_scaling_factor)
        return chosen, weights.astype(x.dtype, copy=False)

    def _expert(self, x: Any, first: Any, down: Any, counter: Any) -> Any:
        """One expert (or the shared one) on rows ``x``: ``first`` is ``[2F, d]`` (gate rows, then up) or ``[F, d]``."""
        from ..kernels import gelu, linear, sigmoid

        h = linear(x, first, None, counter)
        if self.experts == "gated":
            half = first.shape[0] // 2
            gate, up = h[:, :half], h[:, half:]
        else:
            gate, up = h, None
        if self.activation == "silu":
            act = gate * sigmoid(gate)
        elif self.activation == "relu":
            act = gate.clip(min=0)
        else:
            act = gelu(gate, "tanh" if self.activation == "gelu_tanh" else "none")
        return linear(act * up if up is not None else act, down, None, counter)

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        d: MoeDims = step.facts.geometry["moe"]
        x = xs[0].reshape(d.tokens, d.hidden)
        chosen, weights = self.route(x, params, env.counter)
        out = np.zeros_like(x)
        first = params["experts_gate_up_proj" if d.matrices == 3 else "experts_up_proj"]
        for expert in np.unique(chosen):
            rows, slot = np.nonzero(chosen == expert)
            y = self._expert(x[rows], first[expert], params["experts_down_proj"][expert], env.counter)
            np.add.at(out, rows, y * weights[rows, slot][:, None])
        if d.shared:
            first_shared = (np.concatenate([params["shared_gate_proj_weight"], params["shared_up_proj_weight"]])
                            if d.matrices == 3 else params["shared_up_proj_weight"])
            shared = self._expert(x, first_shared, params["shared_down_proj_weight"], env.counter)
            if d.shared_gate:
                from ..kernels import linear, sigmoid
                shared *= sigmoid(linear(x, params["shared_expert_gate_weight"], None, env.counter))
            out += shared
        return out.reshape(xs[0].shape)

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        d: MoeDims = step.facts.geometry["moe"]
        # router logits, scores and the choice (3·T·E), the output; per expert at most T rows of input, gate|up,
        # activation, product and down projection; the shared expert's on every token
        inner = max(d.inner, d.shared)
        elements = 3 * d.tokens * d.experts + d.tokens * d.hidden * 3 + d.tokens * (4 * inner + d.hidden)
        elements += 2 * d.top_k * d.tokens * 2                                          # chosen, weights (int64)
        if d.shared and d.matrices == 3:
            elements += 2 * d.shared * d.hidden                                          # the packed gate|up
        return elements * itemsize + (0 if weights_given else (step.facts.params + step.facts.buffers) * itemsize), 0

    # ------------------------------------------------------------------------------------------------ explain

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        d: MoeDims = facts.geometry["moe"]
        h, e, k, f, m, fs = d.hidden, d.experts, d.top_k, d.inner, d.matrices, d.shared
        kind = "gate, up, down" if m == 3 else "up, down"
        c.add(f"[{', '.join(map(str, input_shapes[0]))}]: T = {d.tokens:,} tokens of d = {h}; {e} experts of "
              f"F = {f} ({kind}: m = {m} matrices), {k} per token" + (f"; shared experts F_s = {fs}" if fs else ""))
        router_b = f" + {e}" if self.router_bias else ""
        shared = f" + m·d·F_s {m}·{h}·{fs}" if fs else ""
        gate = f" + d {h}" if d.shared_gate else ""
        c.result("params", f"router d·E {h}·{e}{router_b} + experts E·m·d·F {e}·{m}·{h}·{f}{shared}{gate}",
                 self._all(d), facts.params)
        c.result("active params", f"params − (E − k)·m·d·F = {n(self._all(d))} − {e - k}·{m}·{h}·{f}",
                 self._active(d), self._all(d) - d.idle_params)
        if self.score_correction_bias:
            c.add(f"buffers: e_score_correction_bias E = {e}")
        macs = d.tokens * (h * e + k * d.expert_params + m * h * fs + (h if d.shared_gate else 0))
        c.result("MACs", f"T·(d·E + k·m·d·F{' + m·d·F_s' if fs else ''}{' + d' if d.shared_gate else ''}) = "
                 f"{d.tokens}·({h}·{e} + {k}·{m}·{h}·{f}{f' + {m}·{h}·{fs}' if fs else ''}"
                 f"{f' + {h}' if d.shared_gate else ''})", macs, facts.macs)
        c.add(f"every expert on every token would be T·(E − k)·m·d·F = {n(d.tokens * d.idle_params)} MACs more: "
              f"{n(facts.macs + d.tokens * d.idle_params)} (counting all experts, MaxText's early error)")
        c.result("FLOPs", f"2·MACs + routing, activations, weighting (docs/conventions.md) = "
                 f"T·{n(self._token_flops(d))}", d.tokens * self._token_flops(d), facts.flops)
