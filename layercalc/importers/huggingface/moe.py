"""Mixture-of-experts decoders: ``mixtral``, ``qwen2_moe``, ``qwen3_moe`` and ``deepseek_v3`` — …Model,
…ForCausalLM, …ForSequenceClassification, …ForTokenClassification (and …ForQuestionAnswering, but for DeepSeek-V3).

Each decoder layer's feed-forward block is a ``moe`` layer named ``mlp`` (transformers' sparse MoE block: router
``gate``, ``experts``, shared experts) or, where the config keeps a layer dense, the gated MLP ``mlp.gate_proj`` …
``mlp.down_proj``:

- ``mixtral``: every layer sparse: ``num_local_experts`` (``num_experts``) experts of ``intermediate_size``, top
  ``num_experts_per_tok``, the chosen weights always normalized, ``router_jitter_noise`` (training only: the moe
  layer's field, its noise kept for backward); Mistral's attention (no biases).
- ``qwen2_moe``: sparse where ``(i + 1) % decoder_sparse_step == 0`` and i is not in ``mlp_only_layers`` (dense:
  ``intermediate_size``); ``num_experts`` of ``moe_intermediate_size``, ``norm_topk_prob``, a shared expert of
  ``shared_expert_intermediate_size`` scaled by its sigmoid ``shared_expert_gate``; q, k, v biases (``qkv_bias``).
- ``qwen3_moe``: the same layer rule, no shared expert; q/k RMS norms per head (Qwen3's attention);
  ``attention_bias`` on every projection.
- ``deepseek_v3``: the first ``first_k_dense_replace`` layers dense (``intermediate_size``), then sparse:
  ``n_routed_experts`` of ``moe_intermediate_size``, sigmoid scores with group-limited routing (``n_group``,
  ``topk_group``) and the ``e_score_correction_bias`` buffer, ``routed_scaling_factor``, ``norm_topk_prob``, shared
  experts ``n_shared_experts·moe_intermediate_size``; multi-head latent attention (``latent_attention``: q_lora_rank,
  kv_lora_rank, qk_nope_head_dim + qk_rope_head_dim, v_head_dim). The multi-token-prediction layer
  (``num_nextn_predict_layers``) is not part of transformers' model, nor of this one.

Active parameters and the all-experts MACs are the report's (layers/moe.py; docs/conventions.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ...blocks import MAX_LAYERS
from .config import (
    FLOAT32_SOFTMAX,
    LLAMA_RMSNORM,
    Config,
    Family,
    last_token_score,
    linear,
    norm,
    prefixed,
    repeat,
    rope,
)

#: Hugging Face's activation names → the moe layer's ``activation``
_EXPERT_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_python": "gelu",
                       "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                       "relu": "relu"}

_CLASSES = {"mixtral": "Mixtral", "qwen2_moe": "Qwen2Moe", "qwen3_moe": "Qwen3Moe", "deepseek_v3": "DeepseekV3"}

#: the config class defaults of transformers 5 (a key config.json leaves out has its class's value)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mixtral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
                    num_experts_per_tok=2, num_local_experts=8),
    "qwen2_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                      num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=32768,
                      rms_norm_eps=1e-6, num_experts_per_tok=4, num_experts=60, moe_intermediate_size=1408,
                      shared_expert_intermediate_size=5632),
    "qwen3_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                      num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=32768,
                      rms_norm_eps=1e-6, num_experts_per_tok=8, num_experts=128, moe_intermediate_size=768),
    "deepseek_v3": dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432, num_hidden_layers=61,
                        num_attention_heads=128, max_position_embeddings=4096, rms_norm_eps=1e-6,
                        num_experts_per_tok=8, n_routed_experts=256, moe_intermediate_size=2048, n_shared_experts=1,
                        routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64,
                        v_head_dim=128, qk_nope_head_dim=128, n_group=8, topk_group=4, first_k_dense_replace=3),
}

#: the key each family names its routed experts' count by (transformers' attribute_map gives the other spelling)
_EXPERTS_KEY = {"mixtral": ("num_local_experts", "num_experts"), "qwen2_moe": ("num_experts", "num_local_experts"),
                "qwen3_moe": ("num_experts", "num_local_experts"), "deepseek_v3": ("n_routed_experts",
                                                                                   "num_local_experts")}


def _heads(model_type: str) -> dict[str, tuple[str, Optional[str]]]:
    name = _CLASSES[model_type]
    heads = {f"{name}Model": ("", None), f"{name}ForCausalLM": ("model", "lm"),
             f"{name}ForSequenceClassification": ("model", "sequence"),
             f"{name}ForTokenClassification": ("model", "token")}
    if model_type != "deepseek_v3":         # Qwen3-MoE's QA head keeps the old name "transformer"
        heads[f"{name}ForQuestionAnswering"] = ("transformer" if model_type == "qwen3_moe" else "model", "qa")
    return heads


def _expert_activation(c: Config) -> str:
    value = c.text("hidden_act", "silu")
    if value not in _EXPERT_ACTIVATIONS:
        raise c.fail("hidden_act", value, f"an expert activation layercalc does not model; supported: "
                                          f"{', '.join(sorted(_EXPERT_ACTIVATIONS))}")
    return _EXPERT_ACTIVATIONS[value]


def _dense_mlp(c: Config, inner: int, d: int, residual_from: str) -> list[dict[str, Any]]:
    """A dense layer's gated MLP (``mlp.gate_proj``, ``up_proj``, ``down_proj``, no biases) on ``residual_from``'s
    norm, and the residual add."""
    return [linear("mlp.gate_proj", inner, bias=False),
            c.activation("hidden_act", "silu", "mlp.act_fn"),
            linear("mlp.up_proj", inner, bias=False, inputs="post_attention_layernorm"),
            {"name": "mlp.gated", "type": "mul", "inputs": ["mlp.act_fn", "mlp.up_proj"]},
            linear("mlp.down_proj", d, bias=False),
            {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", residual_from]}]


def _sparse_layers(c: Config, count: int) -> list[bool]:
    """Which decoder layers have a sparse MoE block (Qwen2-MoE, Qwen3-MoE): ``i ∉ mlp_only_layers`` and
    ``(i + 1) % decoder_sparse_step == 0``."""
    step = c.integer("decoder_sparse_step", 1)
    dense = c.raw("mlp_only_layers", [])
    if not isinstance(dense, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in dense):
        raise c.fail("mlp_only_layers", dense, "expected a list of layer indices")
    dense_set = set(dense)
    return [i not in dense_set and (i + 1) % step == 0 for i in range(count)]


def _runs(kinds: list[bool]) -> list[tuple[bool, int, int]]:
    """(kind, first index, count) of each run of equal kinds."""
    runs: list[tuple[bool, int, int]] = []
    for i, kind in enumerate(kinds):
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((kind, i, 1))
    return runs


def _build(c: Config, architecture: str) -> dict[str, Any]:
    family = c.model_type
    defaults = _DEFAULTS[family]
    get = lambda key: c.integer(key, defaults[key])                  # noqa: E731
    d, heads, layers = get("hidden_size"), get("num_attention_heads"), get("num_hidden_layers")
    vocab, positions = get("vocab_size"), get("max_position_embeddings")
    eps = c.number("rms_norm_eps", defaults["rms_norm_eps"])
    attention = (_latent_attention(c, d, heads) if family == "deepseek_v3" else
                 _attention(c, family, d, heads, defaults))
    experts_key, _ = _EXPERTS_KEY[family]
    experts, top_k = get(experts_key), get("num_experts_per_tok")
    if top_k > experts:
        raise c.fail("num_experts_per_tok", top_k, f"more than the {experts} experts ({experts_key})")
    moe: dict[str, Any] = {"name": "mlp", "type": "moe", "num_experts": experts, "top_k": top_k,
                           "activation": _expert_activation(c)}
    if family == "mixtral":
        moe.update(intermediate_size=get("intermediate_size"), norm_topk_prob=True)
        if c.raw("router_jitter_noise", 0) != 0:          # training only: the noise is kept for backward
            moe["router_jitter_noise"] = c.number("router_jitter_noise")
    else:
        moe.update(intermediate_size=get("moe_intermediate_size"), norm_topk_prob=c.flag("norm_topk_prob",
                                                                                            family == "deepseek_v3"))
    if family == "qwen2_moe":
        moe.update(shared_intermediate_size=get("shared_expert_intermediate_size"), shared_expert_gate=True)
    if family == "deepseek_v3":
        _refuse_other_routing(c)
        groups = get("n_group")
        moe.update(scoring="sigmoid", n_group=groups, topk_group=get("topk_group"), score_correction_bias=True,
                   routed_scaling_factor=c.number("routed_scaling_factor", defaults["routed_scaling_factor"]),
                   shared_intermediate_size=get("moe_intermediate_size") * c.integer(
                       "n_shared_experts", defaults["n_shared_experts"], minimum=0))
        if experts % groups or experts // groups < 2:
            raise c.fail("n_group", groups, f"must split the {experts} experts into groups of at least 2 (a "
                                            f"group's score is the sum of its two best)")
    head = [norm("rmsnorm", "input_layernorm", eps, **LLAMA_RMSNORM), attention,
            {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
            norm("rmsnorm", "post_attention_layernorm", eps, **LLAMA_RMSNORM)]
    sparse_block = [*head, moe, {"name": "mlp_residual", "type": "add", "inputs": ["mlp", "attn_residual"]}]
    dense_block = [*head, *_dense_mlp(c, get("intermediate_size"), d, "attn_residual")]
    if layers * len(dense_block) > MAX_LAYERS:       # before a list of the layers' kinds is made
        repeat(c, "num_hidden_layers", layers, "", "", dense_block)
    if family == "mixtral":
        kinds = [True] * layers
    elif family == "deepseek_v3":
        first_dense = c.integer("first_k_dense_replace", defaults["first_k_dense_replace"], minimum=0)
        kinds = [i >= first_dense for i in range(layers)]
    else:
        kinds = _sparse_layers(c, layers)
    p, head_kind = _heads(family)[architecture]
    embed = prefixed(p, "embed_tokens")
    stack = []
    for kind, first, count in _runs(kinds):
        entry = repeat(c, "num_hidden_layers", count, prefixed(p, "layers"),
                       "decoder_layer" if kind else "dense_layer", sparse_block if kind else dense_block)
        stack.append({**entry, "start": first} if first else entry)
    layers_: list[dict[str, Any]] = [
        {"name": embed, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d}, *stack,
        norm("rmsnorm", prefixed(p, "norm"), eps, **LLAMA_RMSNORM)]
    if head_kind == "lm":
        tied = c.flag("tie_word_embeddings", False)
        layers_.append(linear("lm_head", vocab, bias=False, **({"tied_to": embed} if tied else {})))
    elif head_kind == "sequence":
        layers_ += last_token_score(c)
    elif head_kind == "token":
        layers_.append(linear("score", c.num_labels(), bias=c.flag("token_classification_bias", True)))
    elif head_kind == "qa":
        layers_.append(linear("qa_outputs", 2))
    blocks = {}
    if any(kinds):
        blocks["decoder_layer"] = {"params": {}, "layers": sparse_block}
    if not all(kinds):
        blocks["dense_layer"] = {"params": {}, "layers": dense_block}
    return {"input": c.tokens(positions), "blocks": blocks, "layers": layers_}


def _attention(c: Config, family: str, d: int, heads: int, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Mistral's (Mixtral), Qwen2's (Qwen2-MoE) or Qwen3's (Qwen3-MoE) grouped-query attention with rotary
    embeddings, as the decoder family builds it."""
    kv = c.integer("num_key_value_heads", defaults["num_key_value_heads"])
    if heads % kv:
        raise c.fail("num_key_value_heads", kv, f"does not divide num_attention_heads {heads}")
    if c.raw("head_dim", None) is not None:
        head_dim = c.integer("head_dim")
    else:
        c.divisible("hidden_size", d, "num_attention_heads", heads)
        head_dim = d // heads
    theta, _ = rope(c, head_dim)
    if family == "mixtral" and not _theta_given(c):
        theta = MIXTRAL_ROPE_THETA
    window = _window(c, family)
    attention: dict[str, Any] = {"name": "self_attn", "type": "multi_head_attention", "num_heads": heads,
                                 "num_kv_heads": kv, "qkv_layout": "separate"}     # q_proj, k_proj, v_proj
    if head_dim * heads != d:
        attention["head_dim"] = head_dim
    if family == "mixtral":          # modeling_mixtral.py: every projection bias=False
        attention["bias"] = False
    elif family == "qwen2_moe":      # modeling_qwen2_moe.py: q, k, v bias=config.qkv_bias, o_proj bias=False
        attention.update(qkv_bias=c.flag("qkv_bias", True), out_bias=False)
    else:                            # modeling_qwen3_moe.py: every projection bias=config.attention_bias; q/k norms
        attention.update(bias=c.flag("attention_bias", False), qk_norm=True,
                         qk_norm_eps=c.number("rms_norm_eps", defaults["rms_norm_eps"]))
    attention.update({"causal": True, "rope": True, "rope_theta": theta, **FLOAT32_SOFTMAX})
    if window is not None:
        attention["sliding_window"] = window
    return attention


def _window(c: Config, family: str) -> Optional[int]:
    """The sliding window of every layer's attention, as transformers 5 reads the config: Mixtral's
    ``sliding_window`` (None: none); Qwen3-MoE's when ``use_sliding_window`` (default 4,096); Qwen2-MoE's per-layer
    windows (even layers below ``max_window_layers``) are refused rather than counted as full attention."""
    if family == "mixtral":
        return None if c.raw("sliding_window", None) is None else c.integer("sliding_window", minimum=1)
    if not c.flag("use_sliding_window", False):
        return None
    if family == "qwen2_moe":
        raise c.fail("use_sliding_window", True, "Qwen2-MoE's sliding windows apply to its even layers below "
                                                 "max_window_layers, which layercalc does not model for this "
                                                 "family (the KV cache and decode step would count every "
                                                 "position); supported: false")
    return c.integer("sliding_window", 4096, minimum=1)


#: MixtralConfig's default rope_theta (the other families' is rope()'s 10,000)
MIXTRAL_ROPE_THETA = 1e6


def _theta_given(c: Config) -> bool:
    """Whether the config sets rope_theta (top level, or in rope_parameters / rope_scaling)."""
    nested = [c.data.get(key) for key in ("rope_parameters", "rope_scaling")]
    return c.data.get("rope_theta") is not None or any(isinstance(m, Mapping) and m.get("rope_theta") is not None
                                                          for m in nested)


def _latent_attention(c: Config, d: int, heads: int) -> dict[str, Any]:
    """DeepSeek-V3's multi-head latent attention (layers/mla.py)."""
    defaults = _DEFAULTS["deepseek_v3"]
    kv = c.integer("num_key_value_heads", heads)
    if kv != heads:
        raise c.fail("num_key_value_heads", kv, f"DeepSeek-V3's attention makes a key and a value for each of the "
                                                f"{heads} heads (kv_b_proj); transformers' forward fails with fewer; "
                                                f"supported: num_attention_heads")
    theta, _ = rope(c)
    q_rank = c.raw("q_lora_rank", None) if "q_lora_rank" in c.data else defaults["q_lora_rank"]
    return {"name": "self_attn", "type": "latent_attention", "num_heads": heads,
            "q_lora_rank": None if q_rank is None else c.integer("q_lora_rank"),
            "kv_lora_rank": c.integer("kv_lora_rank", defaults["kv_lora_rank"]),
            "qk_nope_head_dim": c.integer("qk_nope_head_dim", defaults["qk_nope_head_dim"]),
            "qk_rope_head_dim": c.integer("qk_rope_head_dim", defaults["qk_rope_head_dim"]),
            "v_head_dim": c.integer("v_head_dim", defaults["v_head_dim"]),
            "bias": c.flag("attention_bias", False), "rope_theta": theta,
            "rope_interleave": c.flag("rope_interleave", True), "causal": True}


def _refuse_other_routing(c: Config) -> None:
    """Keys of DeepSeek's own modeling code that transformers' model does not read: a value other than the one it
    implements describes another model."""
    c.refuse_if("scoring_func", lambda v: v == "sigmoid", "transformers' DeepSeek-V3 router scores with sigmoid; "
                                                          "supported: sigmoid")
    c.refuse_if("topk_method", lambda v: v == "noaux_tc", "transformers' DeepSeek-V3 router is noaux_tc (group-"
                                                          "limited, with e_score_correction_bias); supported: "
                                                          "noaux_tc")
    c.refuse_if("moe_layer_freq", lambda v: v == 1, "transformers' DeepSeek-V3 makes every layer from "
                                                    "first_k_dense_replace on sparse; supported: 1")


def _notes(c: Config) -> list[str]:
    notes = []
    _, rope_type = rope(c)
    if rope_type != "default":
        notes.append(f"rope_type {rope_type}: the angles (and DeepSeek's softmax scale) change, not the counts; the "
                     f"executor uses the plain angles of rope_theta")
    if c.model_type == "mixtral" and c.data.get("router_jitter_noise"):
        notes.append(f"router_jitter_noise {c.number('router_jitter_noise')}: training only (the input times "
                     f"uniform noise before routing): no FLOPs, as dropout; its noise [T, d] kept for backward")
    if c.model_type == "deepseek_v3" and c.data.get("num_nextn_predict_layers"):
        notes.append(f"num_nextn_predict_layers {c.data['num_nextn_predict_layers']}: the multi-token-prediction "
                     f"layers are not part of transformers' model (nor counted here)")
    return notes


#: a transformers 5 state_dict key's tail → the moe (or latent attention) layer's parameter name
_RENAMES = (("mlp.gate.weight", "mlp.router_weight"), ("mlp.gate.e_score_correction_bias",
                                                       "mlp.e_score_correction_bias"),
            ("mlp.experts.gate_up_proj", "mlp.experts_gate_up_proj"), ("mlp.experts.down_proj",
                                                                       "mlp.experts_down_proj"),
            ("mlp.shared_expert_gate.weight", "mlp.shared_expert_gate_weight"))
_SHARED = (".mlp.shared_expert.", ".mlp.shared_experts.")


def _entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """A state_dict entry under the moe layer's names: ``…mlp.gate.weight`` → ``…mlp.router_weight``,
    ``…mlp.shared_expert(s).up_proj.weight`` → ``…mlp.shared_up_proj_weight``, …; DeepSeek's attention modules
    ``…self_attn.q_a_proj.weight`` → ``…self_attn.q_a_proj_weight`` (one latent_attention layer)."""
    for tail, renamed in _RENAMES:
        if key.endswith("." + tail):
            return [(key[: -len(tail)] + renamed, value)]
    for shared in _SHARED:
        at = key.find(shared)
        if at >= 0:
            return [(key[:at] + ".mlp.shared_" + key[at + len(shared):].replace(".", "_"), value)]
    return [(key, value)]


def _deepseek_entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    at = key.find(".self_attn.")
    if at >= 0:
        start = at + len(".self_attn.")
        return [(key[:start] + key[start:].replace(".", "_"), value)]
    return _entries(c, key, value)


FAMILIES = {t: Family({a: _build for a in _heads(t)}, f"{_CLASSES[t]}Model",
                      aliases=dict([_EXPERTS_KEY[t]]), notes=_notes,
                      state_dict_entries=_deepseek_entries if t == "deepseek_v3" else _entries)
            for t in _CLASSES}
