"""Llama, Mistral, Qwen2: …Model, …ForCausalLM, …ForSequenceClassification, …ForTokenClassification,
…ForQuestionAnswering; grouped-query heads, ``head_dim``, the bias flags of each modeling file (Llama:
``attention_bias``, ``mlp_bias``; Mistral: none; Qwen2: q, k, v but not o — hard-coded there), rotary position
embeddings inside the attention, tied heads; Mistral's ``sliding_window`` on every layer, Qwen2's on the layers
from ``max_window_layers`` on (``use_sliding_window``, ``layer_types``).
"""

from __future__ import annotations

from typing import Any, Optional

from .config import (
    FLOAT32_SOFTMAX,
    FULL,
    LLAMA_RMSNORM,
    SLIDING,
    Config,
    Family,
    block_specs,
    last_token_score,
    linear,
    norm,
    prefixed,
    qwen_layer_types,
    repeat,
    rope,
    stacked,
)

_DECODER_CLASSES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
#: each family's base-model attribute in its heads (transformers' base_model_prefix; the QA heads of Llama and
#: Qwen2 keep the old name "transformer")
_QA_PREFIX = {"llama": "transformer", "mistral": "model", "qwen2": "transformer"}


#: each family's config class defaults (a key a config.json leaves out has its class's value):
#: hidden, heads, kv heads (None: heads), layers, intermediate, vocabulary, positions, rms_norm_eps
_DECODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=None, num_hidden_layers=32,
                  intermediate_size=11008, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6),
    "mistral": dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, num_hidden_layers=32,
                    intermediate_size=14336, vocab_size=32000, max_position_embeddings=4096 * 32, rms_norm_eps=1e-6),
    "qwen2": dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=32,
                  intermediate_size=22016, vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6),
}


#: MistralConfig's sliding_window when a config does not set the key (null: no window)
MISTRAL_WINDOW = 4096


def _mistral_window(c: Config) -> Optional[int]:
    """Mistral's window as MistralConfig reads it: the key's value, null none, absent 4,096."""
    if "sliding_window" not in c.data:
        return MISTRAL_WINDOW
    return None if c.data["sliding_window"] is None else c.integer("sliding_window")

def _decoder_heads(model_type: str) -> dict[str, tuple[str, Optional[str]]]:
    name = _DECODER_CLASSES[model_type]
    return {f"{name}Model": ("", None), f"{name}ForCausalLM": ("model", "lm"),
            f"{name}ForSequenceClassification": ("model", "sequence"),
            f"{name}ForTokenClassification": ("model", "token"),
            f"{name}ForQuestionAnswering": (_QA_PREFIX[model_type], "qa")}


def _decoder(c: Config, architecture: str) -> dict[str, Any]:
    family = c.model_type
    defaults = _DECODER_DEFAULTS[family]
    d, heads = c.integer("hidden_size", defaults["hidden_size"]), c.integer("num_attention_heads",
                                                                           defaults["num_attention_heads"])
    layers = c.integer("num_hidden_layers", defaults["num_hidden_layers"])
    kv = c.integer("num_key_value_heads", defaults["num_key_value_heads"] or heads)
    if heads % kv:
        raise c.fail("num_key_value_heads", kv, f"does not divide num_attention_heads {heads}")
    if "head_dim" in c.data and c.data["head_dim"] is not None:
        head_dim = c.integer("head_dim")
    else:
        c.divisible("hidden_size", d, "num_attention_heads", heads)
        head_dim = d // heads
    inner, vocab = c.integer("intermediate_size", defaults["intermediate_size"]), c.integer("vocab_size",
                                                                                          defaults["vocab_size"])
    positions = c.integer("max_position_embeddings", defaults["max_position_embeddings"])
    eps = c.number("rms_norm_eps", defaults["rms_norm_eps"])
    theta, _ = rope(c, head_dim)
    if family == "llama":
        attention_bias, mlp_bias = c.flag("attention_bias", False), c.flag("mlp_bias", False)
        qkv_bias, out_bias = attention_bias, attention_bias
    elif family == "qwen2":      # modeling_qwen2.py: q_proj, k_proj, v_proj with bias=True, o_proj bias=False
        qkv_bias, out_bias, mlp_bias = True, False, False
    else:                        # modeling_mistral.py: every projection bias=False
        qkv_bias, out_bias, mlp_bias = False, False, False
    attention: dict[str, Any] = {"name": "self_attn", "type": "multi_head_attention", "num_heads": heads,
                                 "num_kv_heads": kv, "qkv_layout": "separate"}     # q_proj, k_proj, v_proj
    if head_dim * heads != d:
        attention["head_dim"] = head_dim
    attention.update({"bias": qkv_bias} if qkv_bias == out_bias else {"qkv_bias": qkv_bias, "out_bias": out_bias})
    attention.update({"causal": True, "rope": True, "rope_theta": theta, **FLOAT32_SOFTMAX})
    # the cap on the layers before a list of the layers' types is made
    repeat(c, "num_hidden_layers", layers, "", "", _block(c, eps, inner, d, mlp_bias, attention))
    # a window is a mask, counted in full; a sliding layer's cache keeps the last sliding_window − 1 positions.
    # Mistral: every layer slides (one block); Qwen2: the layers from max_window_layers on (configuration_qwen2.py)
    window, types = None, [FULL] * layers
    if family == "mistral":
        window = _mistral_window(c)
        if window is not None:
            attention["sliding_window"] = window
    elif family == "qwen2":
        window, types = qwen_layer_types(c, layers)
    blocks = {kind: _block(c, eps, inner, d, mlp_bias, {**attention, **({"sliding_window": window}
                                                                          if kind == SLIDING else {})})
              for kind in sorted(set(types))}
    p, head = _decoder_heads(family)[architecture]
    embed = prefixed(p, "embed_tokens")
    layers_: list[dict[str, Any]] = [
        {"name": embed, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        *stacked(c, p, types, blocks),
        norm("rmsnorm", prefixed(p, "norm"), eps, **LLAMA_RMSNORM)]
    if head == "lm":
        tied = c.flag("tie_word_embeddings", False)
        layers_.append(linear("lm_head", vocab, bias=False, **({"tied_to": embed} if tied else {})))
    elif head == "sequence":
        layers_ += last_token_score(c)
    elif head == "token":
        layers_.append(linear("score", c.num_labels(), bias=c.flag("token_classification_bias", True)))
    elif head == "qa":
        layers_.append(linear("qa_outputs", 2))
    return {"input": c.tokens(positions), "blocks": block_specs(blocks), "layers": layers_}


def _block(c: Config, eps: float, inner: int, d: int, mlp_bias: bool, attention: dict[str, Any]) -> list[dict]:
    """One decoder layer: attention and a gated MLP, each after an RMSNorm and around a residual add."""
    return [norm("rmsnorm", "input_layernorm", eps, **LLAMA_RMSNORM),
            attention,
            {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
            norm("rmsnorm", "post_attention_layernorm", eps, **LLAMA_RMSNORM),
            linear("mlp.gate_proj", inner, bias=mlp_bias),
            c.activation("hidden_act", "silu", "mlp.act_fn"),
            linear("mlp.up_proj", inner, bias=mlp_bias, inputs="post_attention_layernorm"),
            {"name": "mlp.gated", "type": "mul", "inputs": ["mlp.act_fn", "mlp.up_proj"]},
            linear("mlp.down_proj", d, bias=mlp_bias),
            {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", "attn_residual"]}]


def _notes(c: Config) -> list[str]:
    notes = []
    window = _mistral_window(c) if c.model_type == "mistral" else None
    if window is not None:
        given = "" if "sliding_window" in c.data else " (MistralConfig's default: the config does not set it)"
        notes.append(f"sliding_window {window}{given}: a mask, counted in full "
                     f"as causal masks are; the KV cache keeps the last sliding_window − 1 positions")
    if c.model_type == "qwen2":
        layers = c.integer("num_hidden_layers", _DECODER_DEFAULTS["qwen2"]["num_hidden_layers"])
        window, types = qwen_layer_types(c, layers)
        sliding = [i for i, kind in enumerate(types) if kind == SLIDING]
        if window is not None and sliding:
            notes.append(f"sliding_window {window} on {len(sliding)} of {layers} layers (from {sliding[0]}): a "
                         f"mask, counted in full as causal masks are; their KV cache keeps the last "
                         f"sliding_window − 1 positions")
    _, rope_type = rope(c)
    if rope_type != "default":
        notes.append(f"rope_type {rope_type}: the angles change, not the counts; the executor rotates by the plain "
                     f"angles of rope_theta")
    return notes


FAMILIES = {t: Family({a: _decoder for a in _decoder_heads(t)}, f"{_DECODER_CLASSES[t]}Model", notes=_notes)
            for t in _DECODER_CLASSES}
