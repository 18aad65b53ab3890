"""BERT: BertModel (pooler included), BertForMaskedLM, BertLMHeadModel, BertForSequenceClassification,
BertForNextSentencePrediction, BertForTokenClassification, BertForQuestionAnswering.
"""

from __future__ import annotations

from typing import Any

from .config import LAST_HIDDEN_STATE, Config, Family, linear, norm, prefixed, repeat

_BERT_HEADS = {  # architecture: (prefix of the BertModel, pooler?, head)
    "BertModel": ("", True, None), "BertForMaskedLM": ("bert", False, "mlm"), "BertLMHeadModel": ("bert", False, "mlm"),
    "BertForSequenceClassification": ("bert", True, "classifier"),
    "BertForNextSentencePrediction": ("bert", True, "nsp"),
    "BertForTokenClassification": ("bert", False, "classifier"), "BertForQuestionAnswering": ("bert", False, "qa"),
}


def _bert(c: Config, architecture: str) -> dict[str, Any]:
    c.refuse_if("position_embedding_type", lambda v: v == "absolute",
                "relative position embeddings (relative_key, relative_key_query) add a distance_embedding table and "
                "per-score products that layercalc does not model; supported: absolute")
    c.refuse_if("add_cross_attention", lambda v: v is False,
                "cross-attention (crossattention) reads an encoder's states: not modeled")
    d, heads = c.integer("hidden_size", 768), c.integer("num_attention_heads", 12)
    layers = c.integer("num_hidden_layers", 12)
    c.divisible("hidden_size", d, "num_attention_heads", heads)
    inner, vocab = c.integer("intermediate_size", 3072), c.integer("vocab_size", 30522)
    positions, types = c.integer("max_position_embeddings", 512), c.integer("type_vocab_size", 2)
    eps = c.number("layer_norm_eps", 1e-12)
    causal = c.flag("is_decoder", architecture == "BertLMHeadModel")
    attention: dict[str, Any] = {"name": "attention", "type": "multi_head_attention", "num_heads": heads}
    if causal:
        attention["causal"] = True
    block = [attention,
             {"name": "attention.output.add", "type": "add", "inputs": ["attention", "in"]},
             norm("layernorm", "attention.output.LayerNorm", eps),
             linear("intermediate.dense", inner),
             c.activation("hidden_act", "gelu", "intermediate.intermediate_act_fn"),
             linear("output.dense", d),
             {"name": "output.add", "type": "add", "inputs": ["output.dense", "attention.output.LayerNorm"]},
             norm("layernorm", "output.LayerNorm", eps)]
    p, pooler, head = _BERT_HEADS[architecture]
    e = prefixed(p, "embeddings")
    words = f"{e}.word_embeddings"
    layers_: list[dict[str, Any]] = [
        {"name": words, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        {"name": f"{e}.position_embeddings", "type": "position_embedding", "num_embeddings": positions,
         "embedding_dim": d, "inputs": "input"},
        # token_type_ids are all 0 unless given (transformers' default): row 0 of the table is added everywhere
        {"name": f"{e}.token_type_embeddings", "type": "parameter", "shape": [types, d]},
        {"name": f"{e}.token_type_0", "type": "slice", "dim": 1, "start": 0, "stop": 1},
        {"name": f"{e}.sum", "type": "add",
         "inputs": [words, f"{e}.position_embeddings", f"{e}.token_type_0"]},
        norm("layernorm", f"{e}.LayerNorm", eps),
        repeat(c, "num_hidden_layers", layers, prefixed(p, "encoder.layer"), "layer", block)]
    if head is None:                                    # BertModel returns the encoder's states, then the pooler's
        layers_.append(LAST_HIDDEN_STATE)
    if pooler:
        pool = prefixed(p, "pooler")
        layers_ += [{"name": f"{pool}.first_token", "type": "select", "dim": 1, "index": 0,
                     "inputs": prefixed(p, "encoder.layer")},
                    linear(f"{pool}.dense", d), {"name": f"{pool}.activation", "type": "tanh"}]
    if head == "mlm":
        # decoder: the word embeddings' weight (tied) and the vocabulary bias cls.predictions.bias, a parameter of
        # its own in transformers (decoder.bias is tied to it), added after the product
        if not c.flag("tie_word_embeddings", True):
            raise c.fail("tie_word_embeddings", False, f"{architecture} untied keeps cls.predictions.bias as a "
                                                      f"parameter its forward never uses (the decoder gets a bias of "
                                                      f"its own): not modeled; supported: true")
        layers_ += [linear("cls.predictions.transform.dense", d),
                    c.activation("hidden_act", "gelu", "cls.predictions.transform.transform_act_fn"),
                    norm("layernorm", "cls.predictions.transform.LayerNorm", eps),
                    linear("cls.predictions.decoder", vocab, bias=False, tied_to=words),
                    {"name": "cls.predictions.bias", "type": "parameter", "shape": [1, vocab]},   # HF: [vocab]
                    {"name": "cls.predictions.add_bias", "type": "add",
                     "inputs": ["cls.predictions.decoder", "cls.predictions.bias"]}]
    elif head == "classifier":
        layers_.append(linear("classifier", c.num_labels()))
    elif head == "nsp":
        layers_.append(linear("cls.seq_relationship", 2))
    elif head == "qa":
        layers_.append(linear("qa_outputs", c.num_labels()))
    return {"input": c.tokens(positions), "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_}


FAMILIES = {"bert": Family({a: _bert for a in _BERT_HEADS}, "BertModel")}
