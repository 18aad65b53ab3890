"""GPT-2: GPT2Model, GPT2LMHeadModel (head tied to ``transformer.wte`` unless ``tie_word_embeddings`` is false),
GPT2ForSequenceClassification, GPT2ForTokenClassification, GPT2ForQuestionAnswering.
"""

from __future__ import annotations

from typing import Any

from .config import Config, Family, last_token_score, linear, norm, prefixed, repeat

_GPT2_ALIASES = {"n_embd": "hidden_size", "n_positions": "max_position_embeddings", "n_head": "num_attention_heads",
                 "n_layer": "num_hidden_layers"}
_GPT2_HEADS = {"GPT2Model": "", "GPT2LMHeadModel": "transformer", "GPT2ForSequenceClassification": "transformer",
               "GPT2ForTokenClassification": "transformer", "GPT2ForQuestionAnswering": "transformer"}


def _gpt2(c: Config, architecture: str) -> dict[str, Any]:
    c.refuse_if("add_cross_attention", lambda v: v is False,
                "cross-attention (crossattention, ln_cross_attn) reads an encoder's states: not modeled")
    d, heads, layers = c.integer("n_embd", 768), c.integer("n_head", 12), c.integer("n_layer", 12)
    c.divisible("n_embd", d, "n_head", heads)
    positions, vocab = c.integer("n_positions", 1024), c.integer("vocab_size", 50257)
    inner = c.integer("n_inner", 4 * d)
    eps = c.number("layer_norm_epsilon", 1e-5)
    attention: dict[str, Any] = {"name": "attn", "type": "multi_head_attention", "num_heads": heads, "causal": True,
                                 "qkv_layout": "fused"}                    # c_attn: q, k, v in one Conv1D
    if c.flag("reorder_and_upcast_attn", False):
        # _upcast_and_reordered_attn: baddbmm on q.float(), k.float(), a float32 softmax cast back for A·V
        attention.update(qk_dtype="float32", softmax_dtype="float32")
    block = [norm("layernorm", "ln_1", eps),
             attention,
             {"name": "add_1", "type": "add", "inputs": ["attn", "in"]},
             norm("layernorm", "ln_2", eps),
             linear("mlp.c_fc", inner),
             c.activation("activation_function", "gelu_new", "mlp.act"),
             linear("mlp.c_proj", d),
             {"name": "add_2", "type": "add", "inputs": ["mlp.c_proj", "add_1"]}]
    p = _GPT2_HEADS[architecture]
    wte = prefixed(p, "wte")
    layers_: list[dict[str, Any]] = [
        {"name": wte, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        {"name": prefixed(p, "wpe"), "type": "position_embedding", "num_embeddings": positions, "embedding_dim": d,
         "inputs": "input"},
        {"name": "embed", "type": "add", "inputs": [wte, prefixed(p, "wpe")]},
        repeat(c, "n_layer", layers, prefixed(p, "h"), "block", block),
        norm("layernorm", prefixed(p, "ln_f"), eps)]
    if architecture == "GPT2LMHeadModel":
        tied = c.flag("tie_word_embeddings", True)
        layers_.append(linear("lm_head", vocab, bias=False, **({"tied_to": wte} if tied else {})))
    elif architecture == "GPT2ForSequenceClassification":
        layers_ += last_token_score(c)
    elif architecture == "GPT2ForTokenClassification":
        layers_.append(linear("classifier", c.num_labels()))
    elif architecture == "GPT2ForQuestionAnswering":
        layers_.append(linear("qa_outputs", 2))            # start and end logits, split after the layer
    return {"input": c.tokens(positions), "blocks": {"block": {"params": {}, "layers": block}}, "layers": layers_}


FAMILIES = {"gpt2": Family({a: _gpt2 for a in _GPT2_HEADS}, "GPT2Model", _GPT2_ALIASES, positions_key="n_positions",
                             conv1d_modules=(".c_fc", ".c_proj", ".c_attn"))}
