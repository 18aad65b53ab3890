"""BERT and RoBERTa, one encoder (:func:`bert_encoder`) with two embeddings' position rules and their heads.

- ``bert``: BertModel (pooler included), BertForMaskedLM, BertLMHeadModel, BertForSequenceClassification,
  BertForNextSentencePrediction, BertForTokenClassification, BertForQuestionAnswering.
- ``roberta``: RobertaModel (pooler included), RobertaForMaskedLM, RobertaForCausalLM (``lm_head``: dense, gelu,
  layer_norm, the decoder tied to the word embeddings and the vocabulary bias ``lm_head.bias``),
  RobertaForSequenceClassification (``classifier``: dense + tanh + out_proj on the first token),
  RobertaForTokenClassification, RobertaForQuestionAnswering. RoBERTa numbers positions from ``pad_token_id + 1``
  (fairseq's rule: the 514 rows of roberta-base hold 512 positions), so its default input is
  ``max_position_embeddings − pad_token_id − 1`` tokens; a padding token would take position ``pad_token_id``
  (transformers derives positions from the ids), which the network does not model: its positions are those of a
  sequence without padding.
"""

from __future__ import annotations

from typing import Any, Optional

from .config import DEFAULT_MAX_TOKENS, LAST_HIDDEN_STATE, Config, Family, linear, norm, prefixed, repeat

_BERT_HEADS = {  # architecture: (prefix of the BertModel, pooler?, head)
    "BertModel": ("", True, None), "BertForMaskedLM": ("bert", False, "mlm"), "BertLMHeadModel": ("bert", False, "mlm"),
    "BertForSequenceClassification": ("bert", True, "classifier"),
    "BertForNextSentencePrediction": ("bert", True, "nsp"),
    "BertForTokenClassification": ("bert", False, "classifier"), "BertForQuestionAnswering": ("bert", False, "qa"),
}

_ROBERTA_HEADS = {  # architecture: (prefix of the RobertaModel, pooler?, head); the heads' models have no pooler
    "RobertaModel": ("", True, None), "RobertaForMaskedLM": ("roberta", False, "mlm"),
    "RobertaForCausalLM": ("roberta", False, "mlm"),
    "RobertaForSequenceClassification": ("roberta", False, "classification_head"),
    "RobertaForTokenClassification": ("roberta", False, "classifier"),
    "RobertaForQuestionAnswering": ("roberta", False, "qa"),
}

#: the decoder (causal) architectures: ``is_decoder`` defaults to true for them
_DECODERS = ("BertLMHeadModel", "RobertaForCausalLM")


def bert_encoder(c: Config, architecture: str, p: str, position_offset: int = 0) -> dict[str, Any]:
    """The embeddings and the encoder of BERT's modules (BertModel, RobertaModel) under prefix ``p``: the spec data
    ``{"blocks", "layers"}`` and what the heads need (``words``, ``d``, ``vocab``, ``eps``, ``positions``).
    ``position_offset``: the table row of position 0 (RoBERTa: pad_token_id + 1).

    The ids the position and token-type tables are read at (what training keeps for their gradients) differ: BERT
    reads positions at a slice of its ``position_ids`` buffer and token types at a [1, L] gather from its
    ``token_type_ids`` buffer; RoBERTa (``position_offset``) makes [N, L] positions from the input ids and gathers
    [N, L] token types at them."""
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
    if positions <= position_offset:
        raise c.fail("max_position_embeddings", positions, f"no position left after the first {position_offset} "
                                                           f"rows (positions start at pad_token_id + 1)")
    eps = c.number("layer_norm_eps", 1e-12)
    causal = c.flag("is_decoder", architecture in _DECODERS)
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
    e = prefixed(p, "embeddings")
    words = f"{e}.word_embeddings"
    position: dict[str, Any] = {"name": f"{e}.position_embeddings", "type": "position_embedding",
                                "num_embeddings": positions, "embedding_dim": d, "inputs": "input",
                                "ids": "per_sequence" if position_offset else "buffer"}
    if position_offset:
        position["offset"] = position_offset
    layers_: list[dict[str, Any]] = [
        {"name": words, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        position,
        # token_type_ids are all 0 unless given (transformers' default): row 0 of the table is added everywhere
        {"name": f"{e}.token_type_embeddings", "type": "position_embedding", "num_embeddings": types,
         "embedding_dim": d, "row": 0, "inputs": "input", "ids": "per_sequence" if position_offset else "shared"},
        {"name": f"{e}.sum", "type": "add",
         "inputs": [words, f"{e}.position_embeddings", f"{e}.token_type_embeddings"]},
        norm("layernorm", f"{e}.LayerNorm", eps),
        repeat(c, "num_hidden_layers", layers, prefixed(p, "encoder.layer"), "layer", block)]
    return {"blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_, "words": words, "d": d,
            "vocab": vocab, "eps": eps, "positions": positions - position_offset}


def _pooler(p: str, d: int) -> list[dict[str, Any]]:
    """BertPooler / RobertaPooler: dense + tanh on the first token of the encoder's states."""
    pool = prefixed(p, "pooler")
    return [{"name": f"{pool}.first_token", "type": "select", "dim": 1, "index": 0,
             "inputs": prefixed(p, "encoder.layer")},
            linear(f"{pool}.dense", d), {"name": f"{pool}.activation", "type": "tanh"}]


def _untied_refused(c: Config, architecture: str, bias: str) -> None:
    if not c.flag("tie_word_embeddings", True):
        raise c.fail("tie_word_embeddings", False, f"{architecture} untied keeps {bias} as a parameter its forward "
                                                  f"never uses (the decoder gets a bias of its own): not modeled; "
                                                  f"supported: true")


def _vocabulary_bias(decoder: str, bias: str, vocab: int) -> list[dict[str, Any]]:
    """The vocabulary bias of a tied decoder: a parameter of its own in transformers (the decoder's bias is tied to
    it), added after the product."""
    return [{"name": bias, "type": "parameter", "shape": [1, vocab]},                          # HF: [vocab]
            {"name": f"{bias.rpartition('.')[0]}.add_bias", "type": "add", "inputs": [decoder, bias]}]


def _spec(c: Config, encoder: dict[str, Any], layers_: list[dict[str, Any]]) -> dict[str, Any]:
    return {"input": c.tokens(encoder["positions"]), "blocks": encoder["blocks"], "layers": layers_}


def _bert(c: Config, architecture: str) -> dict[str, Any]:
    p, pooler, head = _BERT_HEADS[architecture]
    encoder = bert_encoder(c, architecture, p)
    words, d, vocab, eps = encoder["words"], encoder["d"], encoder["vocab"], encoder["eps"]
    layers_ = encoder["layers"]
    if head is None:                                    # BertModel returns the encoder's states, then the pooler's
        layers_.append(LAST_HIDDEN_STATE)
    if pooler:
        layers_ += _pooler(p, d)
    if head == "mlm":
        _untied_refused(c, architecture, "cls.predictions.bias")
        layers_ += [linear("cls.predictions.transform.dense", d),
                    c.activation("hidden_act", "gelu", "cls.predictions.transform.transform_act_fn"),
                    norm("layernorm", "cls.predictions.transform.LayerNorm", eps),
                    linear("cls.predictions.decoder", vocab, bias=False, tied_to=words),
                    *_vocabulary_bias("cls.predictions.decoder", "cls.predictions.bias", vocab)]
    elif head == "classifier":
        layers_.append(linear("classifier", c.num_labels()))
    elif head == "nsp":
        layers_.append(linear("cls.seq_relationship", 2))
    elif head == "qa":
        layers_.append(linear("qa_outputs", c.num_labels()))
    return _spec(c, encoder, layers_)


def _roberta_offset(c: Config) -> int:
    """The row of position 0: ``pad_token_id + 1`` (create_position_ids_from_input_ids)."""
    return c.integer("pad_token_id", 1, minimum=0) + 1


def _roberta(c: Config, architecture: str) -> dict[str, Any]:
    p, pooler, head = _ROBERTA_HEADS[architecture]
    encoder = bert_encoder(c, architecture, p, _roberta_offset(c))
    words, d, vocab, eps = encoder["words"], encoder["d"], encoder["vocab"], encoder["eps"]
    layers_ = encoder["layers"]
    if head is None:
        layers_.append(LAST_HIDDEN_STATE)
    if pooler:
        layers_ += _pooler(p, d)
    if head == "mlm":                                   # RobertaLMHead: dense, gelu (always), layer_norm, decoder
        _untied_refused(c, architecture, "lm_head.bias")
        layers_ += [linear("lm_head.dense", d), {"name": "lm_head.gelu", "type": "gelu"},
                    norm("layernorm", "lm_head.layer_norm", eps),
                    linear("lm_head.decoder", vocab, bias=False, tied_to=words),
                    *_vocabulary_bias("lm_head.decoder", "lm_head.bias", vocab)]
    elif head == "classification_head":                 # RobertaClassificationHead on the <s> token
        layers_ += [{"name": "classifier.first_token", "type": "select", "dim": 1, "index": 0},
                    linear("classifier.dense", d), {"name": "classifier.tanh", "type": "tanh"},
                    linear("classifier.out_proj", c.num_labels())]
    elif head == "classifier":
        layers_.append(linear("classifier", c.num_labels()))
    elif head == "qa":
        layers_.append(linear("qa_outputs", c.num_labels()))
    return _spec(c, encoder, layers_)


def _roberta_input_note(c: Config, spec: Any) -> Optional[str]:
    positions = c.integer("max_position_embeddings", 512)
    pad = _roberta_offset(c) - 1
    usable = positions - pad - 1
    source = (f"max_position_embeddings {positions} − pad_token_id {pad} − 1: positions start at pad_token_id + 1"
              + (f", at most {DEFAULT_MAX_TOKENS}" if usable > DEFAULT_MAX_TOKENS else ""))
    return f"input: {spec['input'][0]} tokens ({source}); --input N for N tokens"


def _roberta_notes(c: Config) -> list[str]:
    return [f"positions from pad_token_id + 1 = {_roberta_offset(c)}, as for a sequence without padding (a "
            f"padding token's position, pad_token_id, is not modeled)"]


def _roberta_entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """``lm_head.decoder.bias`` is ``lm_head.bias`` (tied): the state_dict lists it under both names."""
    return [] if key == "lm_head.decoder.bias" else [(key, value)]


FAMILIES = {"bert": Family({a: _bert for a in _BERT_HEADS}, "BertModel"),
            "roberta": Family({a: _roberta for a in _ROBERTA_HEADS}, "RobertaModel", input_note=_roberta_input_note,
                              notes=_roberta_notes, state_dict_entries=_roberta_entries)}
