"""Hugging Face dense decoders: ``qwen3``, ``gemma``, ``gemma2``, ``gemma3_text``, ``phi3``, ``gpt_neox``, ``opt``
(docs/importers.md, "Hugging Face"), read from ``config.json`` without transformers.

Each builder mirrors its transformers 5 modeling file: the module names (so that a ``state_dict`` entry belongs to
the layer whose name is its longest prefix), the order of the operations, the biases, the config class's defaults.
What a builder cannot count exactly is refused in one line naming the config key and its value.

- ``qwen3``: Llama's decoder with an RMSNorm over each q and k head (``qk_norm``), ``head_dim`` (default 128),
  ``attention_bias`` on q, k, v and o; ``layer_types`` / ``use_sliding_window`` + ``max_window_layers``.
- ``gemma``: the embedding scaled by √hidden_size, RMSNorms scaling by 1 + γ, a GeGLU MLP (``hidden_act``, whose
  legacy "gelu" transformers reads as the tanh form), the head tied to the embedding.
- ``gemma2``: gemma's, plus a norm after the attention and around the MLP, attention scores scaled by
  ``query_pre_attn_scalar``^−½ and soft-capped (``attn_logit_softcapping``), the logits soft-capped
  (``final_logit_softcapping``), sliding-window and global layers (``layer_types``).
- ``gemma3_text``: gemma2's without the scores' soft-capping (transformers 5 does not apply it), with q/k norms and
  local layers rotating by ``rope_local_base_freq``.
- ``phi3``: Llama's with the q, k, v projections fused (``qkv_proj``) and the gate and up projections fused
  (``gate_up_proj``, cut in two by a ``chunk`` layer), ``partial_rotary_factor``, ``longrope`` (angles only).
- ``gpt_neox``: LayerNorms, parallel residual (``use_parallel_residual``), partial rotary (``rotary_pct``), the
  fused ``query_key_value`` whose rows hold [q, k, v] per head.
- ``opt``: learned positions read at offset 2, pre- or post-norm (``do_layer_norm_before``), a ReLU MLP,
  ``word_embed_proj_dim`` with ``project_in``/``project_out`` (OPT-350m), ``enable_bias``.

Masks (causal, sliding window) are counted in full, as eager attention computes and FlopCounterMode counts them;
the executor applies the sliding window (``multi_head_attention``'s ``sliding_window``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

from ...errors import shown
from .config import (
    FLOAT32_SOFTMAX,
    FULL,
    LLAMA_RMSNORM,
    SLIDING,
    Builder,
    Config,
    Family,
    block_specs,
    last_token_score,
    layer_types,
    linear,
    norm,
    prefixed,
    qwen_layer_types,
    repeat,
    rope,
    rope_mapping,
    stacked,
)

__all__ = ["FAMILIES"]

# ============================================================================================ shared pieces

#: the config classes' defaults (configuration_*.py of transformers 5.23) for the keys a config.json may leave out
_DEFAULTS: dict[str, dict[str, Any]] = {
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=None, head_dim=128, max_position_embeddings=32768,
                  rms_norm_eps=1e-6, tie_word_embeddings=False),
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, max_position_embeddings=8192,
                  rms_norm_eps=1e-6, tie_word_embeddings=True),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
                   rms_norm_eps=1e-6, tie_word_embeddings=True),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131072,
                        rms_norm_eps=1e-6, tie_word_embeddings=True),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, head_dim=None, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, tie_word_embeddings=False),
}

def _sizes(c: Config) -> dict[str, Any]:
    """Width, heads, key/value heads (dividing the heads), head size, layers, MLP width, vocabulary and positions of
    a Llama-like config, each from the config or its class's default."""
    d = _DEFAULTS[c.model_type]
    hidden, heads = c.integer("hidden_size", d["hidden_size"]), c.integer("num_attention_heads",
                                                                          d["num_attention_heads"])
    kv = c.integer("num_key_value_heads", d["num_key_value_heads"] or heads)
    if heads % kv:
        raise c.fail("num_key_value_heads", kv, f"does not divide num_attention_heads {heads}")
    if c.raw("head_dim", d["head_dim"]) is not None:
        head_dim = c.integer("head_dim", d["head_dim"])
    else:
        c.divisible("hidden_size", hidden, "num_attention_heads", heads)
        head_dim = hidden // heads
    return dict(hidden=hidden, heads=heads, kv=kv, head_dim=head_dim,
                layers=c.integer("num_hidden_layers", d["num_hidden_layers"]),
                inner=c.integer("intermediate_size", d["intermediate_size"]),
                vocab=c.integer("vocab_size", d["vocab_size"]),
                positions=c.integer("max_position_embeddings", d["max_position_embeddings"]),
                eps=c.number("rms_norm_eps", d["rms_norm_eps"]))


def _attention(name: str, s: Mapping[str, Any], theta: float, bias: bool = False, layout: str = "separate",
               **more: Any) -> dict[str, Any]:
    """A causal rotary attention of a Llama-like config (``_sizes``), grouped-query heads and ``head_dim``; q, k, v
    stored as ``layout`` says (q_proj, k_proj, v_proj: separate; Phi-3's qkv_proj: fused)."""
    layer: dict[str, Any] = {"name": name, "type": "multi_head_attention", "num_heads": s["heads"],
                             "num_kv_heads": s["kv"], "qkv_layout": layout}
    if s["head_dim"] * s["heads"] != s["hidden"]:
        layer["head_dim"] = s["head_dim"]
    layer.update({"bias": bias, "causal": True, "rope": True, "rope_theta": theta, **FLOAT32_SOFTMAX})
    layer.update({k: v for k, v in more.items() if v is not None})
    return layer


def _gated_mlp(c: Config, inner: int, hidden: int, source: str, act_key: str, act_default: str,
               legacy_gelu: bool = False) -> list[dict[str, Any]]:
    """Llama's MLP: down(act(gate(x))·up(x)), no biases (``mlp.gate_proj``, ``mlp.up_proj``, ``mlp.down_proj``).
    ``legacy_gelu``: Gemma's config class reads ``hidden_act`` "gelu" as "gelu_pytorch_tanh" (with a warning)."""
    activation = c.activation(act_key, act_default, "mlp.act_fn")
    if legacy_gelu and c.raw(act_key, act_default) == "gelu":
        activation["approximate"] = "tanh"
    return [linear("mlp.gate_proj", inner, bias=False),
            activation,
            linear("mlp.up_proj", inner, bias=False, inputs=source),
            {"name": "mlp.gated", "type": "mul", "inputs": ["mlp.act_fn", "mlp.up_proj"]},
            linear("mlp.down_proj", hidden, bias=False)]


def _heads(prefix_qa: Optional[str] = "transformer", token: bool = True, qa: bool = True,
           sequence_name: str = "ForSequenceClassification") -> Callable[[str], dict[str, tuple[str, Optional[str]]]]:
    """architecture → (prefix of the base model, head) for a family named ``name`` (…Model, …ForCausalLM, …)."""
    def heads(name: str) -> dict[str, tuple[str, Optional[str]]]:
        table: dict[str, tuple[str, Optional[str]]] = {
            f"{name}Model": ("", None), f"{name}ForCausalLM": ("model", "lm"),
            f"{name}{sequence_name}": ("model", "sequence")}
        if token:
            table[f"{name}ForTokenClassification"] = ("model", "token")
        if qa and prefix_qa is not None:
            table[f"{name}ForQuestionAnswering"] = (prefix_qa, "qa")
        return table
    return heads


def _head_layers(c: Config, head: Optional[str], vocab: int, embed: str, tied_default: bool,
                 softcap: Optional[float] = None) -> list[dict[str, Any]]:
    """The head of a Llama-like model: the LM head (tied unless ``tie_word_embeddings`` is false), the last token's
    score, a token classifier (``score``, its bias ``token_classification_bias``), or the QA outputs."""
    if head == "lm":
        tied = c.flag("tie_word_embeddings", tied_default)
        layers = [linear("lm_head", vocab, bias=False, **({"tied_to": embed} if tied else {}))]
        if softcap is not None:
            layers.append({"name": "final_logit_softcapping", "type": "softcap", "cap": softcap})
        return layers
    if head == "sequence":
        return last_token_score(c)
    if head == "token":
        return [linear("score", c.num_labels(), bias=c.flag("token_classification_bias", True))]
    if head == "qa":
        return [linear("qa_outputs", 2)]
    return []


def _bidirectional(c: Config) -> None:
    c.refuse_if("use_bidirectional_attention", lambda v: v is False,
                "bidirectional attention (an encoder's mask) is not modeled; supported: false")


def _window(c: Config) -> Optional[int]:
    return c.integer("sliding_window") if c.raw("sliding_window", None) is not None else None


# ================================================================================================ Qwen3

def _qwen3(c: Config, architecture: str) -> dict[str, Any]:
    s = _sizes(c)
    theta, _ = rope(c, s["head_dim"])
    bias = c.flag("attention_bias", False)
    window, types = qwen_layer_types(c, s["layers"])        # configuration_qwen3.py's rule (Qwen2's too)
    blocks = {}
    for kind in sorted(set(types)):
        sliding = window if kind == SLIDING else None
        blocks[kind] = [norm("rmsnorm", "input_layernorm", s["eps"], **LLAMA_RMSNORM),
                        _attention("self_attn", s, theta, bias, qk_norm=True, qk_norm_eps=s["eps"],
                                   sliding_window=sliding),
                        {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
                        norm("rmsnorm", "post_attention_layernorm", s["eps"], **LLAMA_RMSNORM),
                        *_gated_mlp(c, s["inner"], s["hidden"], "post_attention_layernorm", "hidden_act", "silu"),
                        {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", "attn_residual"]}]
    p, head = _heads()("Qwen3")[architecture]
    embed = prefixed(p, "embed_tokens")
    layers = [{"name": embed, "type": "embedding", "num_embeddings": s["vocab"], "embedding_dim": s["hidden"]},
              *stacked(c, p, types, blocks),
              norm("rmsnorm", prefixed(p, "norm"), s["eps"], **LLAMA_RMSNORM),
              *_head_layers(c, head, s["vocab"], embed, False)]
    return {"input": c.tokens(s["positions"]), "blocks": block_specs(blocks), "layers": layers}


# ================================================================================================ Gemma

def _gemma_embedding(p: str, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Gemma's embedding: the table's rows times √hidden_size (a float32 constant, as transformers' buffer)."""
    embed = prefixed(p, "embed_tokens")
    return [{"name": embed, "type": "embedding", "num_embeddings": s["vocab"], "embedding_dim": s["hidden"]},
            {"name": f"{embed}.embed_scale", "type": "rescaling", "scale": float(s["hidden"]) ** 0.5}]


def _gemma(c: Config, architecture: str) -> dict[str, Any]:
    _bidirectional(c)
    s = _sizes(c)
    theta, _ = rope(c, s["head_dim"])
    gemma_norm = dict(offset=1.0)
    block = [norm("rmsnorm", "input_layernorm", s["eps"], **gemma_norm),
             _attention("self_attn", s, theta, c.flag("attention_bias", False)),
             {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
             norm("rmsnorm", "post_attention_layernorm", s["eps"], **gemma_norm),
             *_gated_mlp(c, s["inner"], s["hidden"], "post_attention_layernorm", "hidden_act", "gelu_pytorch_tanh",
                         legacy_gelu=True),
             {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", "attn_residual"]}]
    p, head = _heads(qa=False)("Gemma")[architecture]
    layers = [*_gemma_embedding(p, s),
              repeat(c, "num_hidden_layers", s["layers"], prefixed(p, "layers"), "decoder_layer", block),
              norm("rmsnorm", prefixed(p, "norm"), s["eps"], **gemma_norm),
              *_head_layers(c, head, s["vocab"], prefixed(p, "embed_tokens"), True)]
    return {"input": c.tokens(s["positions"]), "blocks": {"decoder_layer": {"params": {}, "layers": block}},
            "layers": layers}


def _softcap(c: Config, key: str, default: Optional[float]) -> Optional[float]:
    """A soft-cap: the config's number, ``default`` when the key is absent, and none when the key is null (as
    transformers reads ``null``: no capping; Config.raw takes a null for an absent key, which gave the default)."""
    if key in c.data and c.data[key] is None:
        return None
    return c.number(key, default) if c.raw(key, default) is not None else None


def _gemma2_block(c: Config, s: Mapping[str, Any], attention: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemma 2's and 3's decoder layer: norms before and after the attention and the MLP, both inside the residual."""
    eps, gemma_norm = s["eps"], dict(offset=1.0)
    return [norm("rmsnorm", "input_layernorm", eps, **gemma_norm),
            attention,
            norm("rmsnorm", "post_attention_layernorm", eps, **gemma_norm),
            {"name": "attn_residual", "type": "add", "inputs": ["post_attention_layernorm", "in"]},
            norm("rmsnorm", "pre_feedforward_layernorm", eps, **gemma_norm),
            *_gated_mlp(c, s["inner"], s["hidden"], "pre_feedforward_layernorm", "hidden_activation",
                        "gelu_pytorch_tanh"),
            norm("rmsnorm", "post_feedforward_layernorm", eps, **gemma_norm),
            {"name": "mlp_residual", "type": "add", "inputs": ["post_feedforward_layernorm", "attn_residual"]}]


def _gemma_stack(c: Config, architecture: str, family: str, s: Mapping[str, Any], types: list[str],
                 blocks: Mapping[str, list], final_softcap: Optional[float]) -> dict[str, Any]:
    heads = (_heads(qa=False)("Gemma2") if family == "Gemma2"
             else {"Gemma3TextModel": ("", None), "Gemma3ForCausalLM": ("model", "lm"),
                   "Gemma3TextForSequenceClassification": ("model", "sequence")})
    p, head = heads[architecture]
    layers = [*_gemma_embedding(p, s),
              *stacked(c, p, types, blocks),
              norm("rmsnorm", prefixed(p, "norm"), s["eps"], offset=1.0),
              *_head_layers(c, head, s["vocab"], prefixed(p, "embed_tokens"), True, final_softcap)]
    return {"input": c.tokens(s["positions"]), "blocks": block_specs(blocks), "layers": layers}


def _gemma2(c: Config, architecture: str) -> dict[str, Any]:
    _bidirectional(c)
    s = _sizes(c)
    c.divisible("hidden_size", s["hidden"], "num_attention_heads", s["heads"])   # Gemma2Config's own check
    theta, _ = rope(c, s["head_dim"])
    scale = c.number("query_pre_attn_scalar", 256) ** -0.5
    attn_cap = _softcap(c, "attn_logit_softcapping", 50.0)
    final_cap = _softcap(c, "final_logit_softcapping", 30.0)
    window = c.integer("sliding_window", 4096)
    types = layer_types(c, s["layers"], [SLIDING if (i + 1) % 2 else FULL for i in range(s["layers"])])
    bias = c.flag("attention_bias", False)
    blocks = {kind: _gemma2_block(c, s, _attention("self_attn", s, theta, bias, scale=scale, logit_softcap=attn_cap,
                                                   sliding_window=window if kind == SLIDING else None))
              for kind in sorted(set(types))}
    return _gemma_stack(c, architecture, "Gemma2", s, types, blocks, final_cap)


def _gemma3rope(c: Config, head_dim: int) -> dict[str, float]:
    """rope_theta of the global and local layers: ``rope_parameters`` per layer type (transformers 5), else
    ``rope_theta`` (1,000,000) and ``rope_local_base_freq`` (10,000); ``rope_scaling`` scales the global layers'
    angles only (not the counts)."""
    parameters = c.data.get("rope_parameters")
    if isinstance(parameters, Mapping) and (FULL in parameters or SLIDING in parameters):
        thetas = {}
        for kind, default in ((FULL, c.raw("rope_theta", 1_000_000.0)),
                              (SLIDING, c.raw("rope_local_base_freq", 10_000.0))):
            inner = parameters.get(kind) or {}
            if not isinstance(inner, Mapping):
                raise c.fail("rope_parameters", dict(parameters), f"{kind!r}: expected a mapping (rope_type, "
                                                                  f"rope_theta, …)")
            # the layer type's own mapping, read as rope() reads rope_parameters (rope_type checked, its
            # rope_theta winning over the top-level default of the type)
            scoped = Config({"rope_theta": default, "rope_parameters": dict(inner)}, c.origin,
                            model_type=c.model_type)
            scoped_theta, _ = rope(scoped, head_dim)
            thetas[kind] = scoped_theta
        return thetas
    global_theta, _ = rope(Config({**c.data, "rope_theta": c.raw("rope_theta", 1_000_000.0)}, c.origin,
                                    model_type=c.model_type), head_dim)
    return {FULL: global_theta, SLIDING: c.number("rope_local_base_freq", 10_000.0)}


def _gemma3(c: Config, architecture: str) -> dict[str, Any]:
    _bidirectional(c)
    s = _sizes(c)
    c.divisible("hidden_size", s["hidden"], "num_attention_heads", s["heads"])   # Gemma3TextConfig's own check
    thetas = _gemma3rope(c, s["head_dim"])
    scale = c.number("query_pre_attn_scalar", 256) ** -0.5
    _softcap(c, "attn_logit_softcapping", None)          # read (a number or null), not applied: as transformers 5
    final_cap = _softcap(c, "final_logit_softcapping", None)
    window = c.integer("sliding_window", 4096)
    pattern = c.integer("sliding_window_pattern", 6)
    types = layer_types(c, s["layers"], [SLIDING if (i + 1) % pattern else FULL for i in range(s["layers"])])
    bias = c.flag("attention_bias", False)
    blocks = {kind: _gemma2_block(c, s, _attention("self_attn", s, thetas[kind], bias, scale=scale, qk_norm=True,
                                                   qk_norm_eps=s["eps"], qk_norm_offset=1.0,
                                                   sliding_window=window if kind == SLIDING else None))
              for kind in sorted(set(types))}
    return _gemma_stack(c, architecture, "Gemma3", s, types, blocks, final_cap)


# ================================================================================================= Phi-3

#: Phi-3's rotary types: transformers 5 reads "su" and "yarn" as "longrope" (configuration_phi3.py)
_PHI3_ROPE_TYPES = ("default", "longrope", "su", "yarn")


def _phi3_rotary(c: Config, head_dim: int) -> tuple[float, int]:
    """(rope_theta, rotated features per head): ``int(head_dim · partial_rotary_factor)`` (Phi3Attention), the
    factor inside ``rope_scaling``/``rope_parameters`` winning over the top-level one."""
    key, parameters, inner = rope_mapping(c)
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if rope_type not in _PHI3_ROPE_TYPES:
        raise c.fail(key, dict(parameters), f"rope_type {shown(rope_type)}: Phi-3 supports "
                                            f"{', '.join(_PHI3_ROPE_TYPES)} (they change only the rotation angles)")
    theta = (inner if parameters.get("rope_theta") is not None else c).number("rope_theta", 10000.0)
    scope = inner if parameters.get("partial_rotary_factor") is not None else c
    return theta, _rotated_features(scope, "partial_rotary_factor", 1.0, head_dim)


def _rotated_features(scope: Config, key: str, default: float, head_dim: int) -> int:
    """``int(head_dim · factor)``, the rotary features per head of a partial rotation, ``factor`` read at ``key``:
    a fraction of the head in (0, 1] that leaves an even number ≥ 2 (pairs rotate)."""
    factor = scope.number(key, default)
    if factor > 1:
        raise scope.fail(key, factor, "expected a fraction of the head in (0, 1]")
    rotated = int(head_dim * factor)
    if rotated < 2 or rotated % 2:
        raise scope.fail(key, factor, f"int(head_dim {head_dim} × {factor}) = {rotated} rotary features: expected "
                                      f"an even number ≥ 2 (pairs rotate)")
    return rotated


def _phi3(c: Config, architecture: str) -> dict[str, Any]:
    s = _sizes(c)
    theta, rotated = _phi3_rotary(c, s["head_dim"])
    window = _window(c)
    attention = _attention("self_attn", s, theta, False, "fused", sliding_window=window,
                           rotary_dim=rotated if rotated != s["head_dim"] else None)
    act = c.activation("hidden_act", "silu", "mlp.activation_fn")
    block = [norm("rmsnorm", "input_layernorm", s["eps"], **LLAMA_RMSNORM),
             attention,
             {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
             norm("rmsnorm", "post_attention_layernorm", s["eps"], **LLAMA_RMSNORM),
             linear("mlp.gate_up_proj", 2 * s["inner"], bias=False),
             {"name": "mlp.chunk", "type": "chunk", "chunks": 2, "dim": -1},    # gate, up = up_states.chunk(2, -1)
             {**act, "inputs": "mlp.chunk:0"},
             {"name": "mlp.gated", "type": "mul", "inputs": ["mlp.chunk:1", "mlp.activation_fn"]},
             linear("mlp.down_proj", s["hidden"], bias=False),
             {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", "attn_residual"]}]
    p, head = _heads(qa=False)("Phi3")[architecture]
    embed = prefixed(p, "embed_tokens")
    layers = [{"name": embed, "type": "embedding", "num_embeddings": s["vocab"], "embedding_dim": s["hidden"]},
              repeat(c, "num_hidden_layers", s["layers"], prefixed(p, "layers"), "decoder_layer", block),
              norm("rmsnorm", prefixed(p, "norm"), s["eps"], **LLAMA_RMSNORM),
              *_head_layers(c, head, s["vocab"], embed, False)]
    return {"input": c.tokens(s["positions"]), "blocks": {"decoder_layer": {"params": {}, "layers": block}},
            "layers": layers}


# ============================================================================================== GPT-NeoX

_NEOX_HEADS = {"GPTNeoXModel": ("", None), "GPTNeoXForCausalLM": ("gpt_neox", "lm"),
               "GPTNeoXForSequenceClassification": ("gpt_neox", "sequence"),
               "GPTNeoXForTokenClassification": ("gpt_neox", "token"),
               "GPTNeoXForQuestionAnswering": ("gpt_neox", "qa")}


def _neox_rotary(c: Config, head_dim: int) -> tuple[float, int]:
    """(rope_theta, rotated features per head): ``rotary_emb_base`` and ``rotary_pct`` (0.25), or their
    transformers 5 spellings inside ``rope_parameters``/``rope_scaling`` (which win)."""
    key, parameters, inner = rope_mapping(c)
    rope(Config({key: parameters}, c.origin, model_type=c.model_type))      # a rope_type layercalc knows
    theta = (inner.number("rope_theta") if parameters.get("rope_theta") is not None
             else c.number("rotary_emb_base", 10000.0))
    if parameters.get("partial_rotary_factor") is not None:
        return theta, _rotated_features(inner, "partial_rotary_factor", 0.25, head_dim)
    return theta, _rotated_features(c, "rotary_pct", 0.25, head_dim)


def _gpt_neox(c: Config, architecture: str) -> dict[str, Any]:
    hidden, heads = c.integer("hidden_size", 6144), c.integer("num_attention_heads", 64)
    c.divisible("hidden_size", hidden, "num_attention_heads", heads)
    layers_count, inner = c.integer("num_hidden_layers", 44), c.integer("intermediate_size", 24576)
    vocab, positions = c.integer("vocab_size", 50432), c.integer("max_position_embeddings", 2048)
    eps = c.number("layer_norm_eps", 1e-5)
    theta, rotated = _neox_rotary(c, hidden // heads)
    bias = c.flag("attention_bias", True)
    attention: dict[str, Any] = {"name": "attention", "type": "multi_head_attention", "num_heads": heads,
                                 "bias": bias, "causal": True, "rope": True, "rope_theta": theta,
                                 **FLOAT32_SOFTMAX, "qkv_layout": "fused"}        # query_key_value
    if rotated != hidden // heads:
        attention["rotary_dim"] = rotated
    mlp = [linear("mlp.dense_h_to_4h", inner), c.activation("hidden_act", "gelu", "mlp.act"),
           linear("mlp.dense_4h_to_h", hidden)]
    block: list[dict[str, Any]] = [norm("layernorm", "input_layernorm", eps), attention]
    if c.flag("use_parallel_residual", True):          # x + attn(ln1(x)) + mlp(ln2(x))
        block += [{**norm("layernorm", "post_attention_layernorm", eps), "inputs": "in"}, *mlp,
                  {"name": "residual", "type": "add", "inputs": ["mlp.dense_4h_to_h", "attention", "in"]}]
    else:                                              # h = x + attn(ln1(x)); h + mlp(ln2(h))
        block += [{"name": "attn_residual", "type": "add", "inputs": ["attention", "in"]},
                  norm("layernorm", "post_attention_layernorm", eps), *mlp,
                  {"name": "residual", "type": "add", "inputs": ["mlp.dense_4h_to_h", "attn_residual"]}]
    p, head = _NEOX_HEADS[architecture]
    embed = prefixed(p, "embed_in")
    layers: list[dict[str, Any]] = [
        {"name": embed, "type": "embedding", "num_embeddings": vocab, "embedding_dim": hidden},
        repeat(c, "num_hidden_layers", layers_count, prefixed(p, "layers"), "layer", block),
        norm("layernorm", prefixed(p, "final_layer_norm"), eps)]
    if head == "token":                                 # GPTNeoXForTokenClassification: classifier, with a bias
        layers.append(linear("classifier", c.num_labels()))
    else:
        layers += _head_layers(c, head, vocab, embed, False)
    return {"input": c.tokens(positions), "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers}


# =================================================================================================== OPT

_OPT_HEADS = {"OPTModel": ("decoder", None), "OPTForCausalLM": ("model.decoder", "lm"),
              "OPTForSequenceClassification": ("model.decoder", "sequence"),
              "OPTForQuestionAnswering": ("model.decoder", "qa")}

#: OPTLearnedPositionalEmbedding: position i reads row i + 2 of a table of max_position_embeddings + 2 rows
OPT_POSITION_OFFSET = 2


def _opt(c: Config, architecture: str) -> dict[str, Any]:
    hidden, heads = c.integer("hidden_size", 768), c.integer("num_attention_heads", 12)
    c.divisible("hidden_size", hidden, "num_attention_heads", heads)
    layers_count, ffn = c.integer("num_hidden_layers", 12), c.integer("ffn_dim", 3072)
    vocab, positions = c.integer("vocab_size", 50272), c.integer("max_position_embeddings", 2048)
    project = c.integer("word_embed_proj_dim", hidden)
    pre_norm, bias = c.flag("do_layer_norm_before", True), c.flag("enable_bias", True)
    affine = c.flag("layer_norm_elementwise_affine", True)
    final_norm = pre_norm and not c.flag("_remove_final_layer_norm", False)
    ln = {} if affine else {"elementwise_affine": False}
    eps = 1e-5                                          # nn.LayerNorm's default: OPT passes no eps
    attention = {"name": "self_attn", "type": "multi_head_attention", "num_heads": heads, "bias": bias,
                 "causal": True, **FLOAT32_SOFTMAX, "qkv_layout": "separate"}
    mlp = [linear("fc1", ffn, bias=bias), c.activation("activation_function", "relu", "activation_fn"),
           linear("fc2", hidden, bias=bias)]
    if pre_norm:
        block = [norm("layernorm", "self_attn_layer_norm", eps, **ln), attention,
                 {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
                 norm("layernorm", "final_layer_norm", eps, **ln), *mlp,
                 {"name": "mlp_residual", "type": "add", "inputs": ["fc2", "attn_residual"]}]
    else:                                               # OPT-350m: the norms after each residual
        block = [{**attention, "inputs": "in"},
                 {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
                 norm("layernorm", "self_attn_layer_norm", eps, **ln), *mlp,
                 {"name": "mlp_residual", "type": "add", "inputs": ["fc2", "self_attn_layer_norm"]},
                 norm("layernorm", "final_layer_norm", eps, **ln)]
    p, head = _OPT_HEADS[architecture]
    embed = f"{p}.embed_tokens"
    layers: list[dict[str, Any]] = [
        {"name": embed, "type": "embedding", "num_embeddings": vocab, "embedding_dim": project}]
    if project != hidden:
        layers.append(linear(f"{p}.project_in", hidden, bias=False))
    tokens = layers[-1]["name"]
    layers += [{"name": f"{p}.embed_positions", "type": "position_embedding",
                "num_embeddings": positions + OPT_POSITION_OFFSET, "embedding_dim": hidden,
                "offset": OPT_POSITION_OFFSET, "inputs": "input",
                "ids": "per_sequence"},                  # cumsum of the attention mask, per sequence
               {"name": f"{p}.embed", "type": "add", "inputs": [tokens, f"{p}.embed_positions"]},
               repeat(c, "num_hidden_layers", layers_count, f"{p}.layers", "decoder_layer", block)]
    if final_norm:
        layers.append(norm("layernorm", f"{p}.final_layer_norm", eps, **ln))
    if project != hidden:
        layers.append(linear(f"{p}.project_out", project, bias=False))
    if head == "lm":
        tied = c.flag("tie_word_embeddings", True)
        layers.append(linear("lm_head", vocab, bias=False, **({"tied_to": embed} if tied else {})))
    elif head == "sequence":
        layers += last_token_score(c)
    elif head == "qa":
        layers.append(linear("qa_outputs", 2))
    # OPT counts positions from 0 to max_position_embeddings − 1 (the table has 2 more rows)
    return {"input": c.tokens(positions), "blocks": {"decoder_layer": {"params": {}, "layers": block}},
            "layers": layers}


# ============================================================================================ the weights

def _as_array(value: Any) -> Any:
    import numpy as np

    from ...kernels import as_numpy  # deferred: NumPy is loaded only when weights are read
    return np.asarray(as_numpy(value))


def _phi3_entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """Phi-3's fused ``qkv_proj`` rows: q (heads·head_dim), then k and v (kv_heads·head_dim each)."""
    if not key.endswith(".self_attn.qkv_proj.weight"):
        return [(key, value)]
    s = _sizes(c)
    q_rows, kv_rows = s["heads"] * s["head_dim"], s["kv"] * s["head_dim"]
    base, array = key[:-len("qkv_proj.weight")], _as_array(value)
    return [(f"{base}q_proj.weight", array[:q_rows]), (f"{base}k_proj.weight", array[q_rows:q_rows + kv_rows]),
            (f"{base}v_proj.weight", array[q_rows + kv_rows:])]


def _neox_entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """GPT-NeoX's fused ``query_key_value``: its rows are, per head, [q, k, v] of head_dim each
    (``view(..., heads, 3·head_dim)`` then ``chunk(3)``); ``dense`` is the output projection; older checkpoints'
    causal-mask buffers (``attention.bias``, ``attention.masked_bias``) are no parameters."""
    if key.endswith((".attention.bias", ".attention.masked_bias")):
        return []
    base, _, tail = key.rpartition(".attention.")
    module, _, kind = tail.partition(".")
    if not base or kind not in ("weight", "bias") or module not in ("query_key_value", "dense"):
        return [(key, value)]
    if module == "dense":
        return [(f"{base}.attention.o_proj.{kind}", value)]
    heads, array = c.integer("num_attention_heads", 64), _as_array(value)
    parts = array.reshape(heads, 3, -1, *array.shape[1:])                  # [heads, (q, k, v), head_dim, …]
    return [(f"{base}.attention.{role}_proj.{kind}", parts[:, index].reshape(-1, *array.shape[1:]))
            for index, role in enumerate("qkv")]


def _opt_entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """OPT's output projection is ``out_proj``."""
    return [(key.replace(".self_attn.out_proj.", ".self_attn.o_proj."), value)]


# ================================================================================================ dispatch

_BUILDERS: dict[str, tuple[dict[str, Builder], str]] = {
    "qwen3": ({a: _qwen3 for a in _heads()("Qwen3")}, "Qwen3Model"),
    "gemma": ({a: _gemma for a in _heads(qa=False)("Gemma")}, "GemmaModel"),
    "gemma2": ({a: _gemma2 for a in _heads(qa=False)("Gemma2")}, "Gemma2Model"),
    "gemma3_text": ({a: _gemma3 for a in ("Gemma3TextModel", "Gemma3ForCausalLM",
                                          "Gemma3TextForSequenceClassification")}, "Gemma3TextModel"),
    "phi3": ({a: _phi3 for a in _heads(qa=False)("Phi3")}, "Phi3Model"),
    "gpt_neox": ({a: _gpt_neox for a in _NEOX_HEADS}, "GPTNeoXModel"),
    "opt": ({a: _opt for a in _OPT_HEADS}, "OPTModel"),
}


def _notes(c: Config) -> list[str]:
    """What the header says about the conventions these families are counted by: windows counted in full (and
    applied by the executor), a soft-capping transformers does not apply, scaled rotary angles."""
    builders, base = _BUILDERS[c.model_type]
    spec = builders[base](c, base)
    notes = []
    windows = sorted({layer["sliding_window"] for block in spec["blocks"].values() for layer in block["layers"]
                      if layer.get("sliding_window")})
    if windows:
        notes.append(f"sliding_window {', '.join(map(str, windows))}: a mask, counted in full as causal masks are; "
                     f"the executor applies it")
    if c.model_type == "gemma3_text" and c.raw("attn_logit_softcapping", None) is not None:
        notes.append("attn_logit_softcapping: not applied, as transformers 5's Gemma 3 attention does not apply it")
    parameters = c.data.get("rope_scaling") or c.data.get("rope_parameters")
    if isinstance(parameters, Mapping):
        kinds = [parameters] + [v for v in parameters.values() if isinstance(v, Mapping)]
        scaled = sorted({str(k.get("rope_type", k.get("type"))) for k in kinds
                         if k.get("rope_type", k.get("type")) not in (None, "default")})
        if scaled:
            notes.append(f"rope_type {', '.join(scaled)}: the angles change, not the counts; the executor rotates "
                         f"by the plain angles of rope_theta")
    return notes


_ENTRIES = {"phi3": _phi3_entries, "gpt_neox": _neox_entries, "opt": _opt_entries}

FAMILIES = {t: Family(builders, base, notes=_notes, state_dict_entries=_ENTRIES.get(t))
            for t, (builders, base) in _BUILDERS.items()}
