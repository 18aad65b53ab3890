"""DistilBERT: DistilBertModel, DistilBertForMaskedLM (``vocab_transform``, the activation, ``vocab_layer_norm``,
``vocab_projector`` tied to the word embeddings, with a bias of its own), DistilBertForSequenceClassification
(``pre_classifier`` + ReLU + ``classifier`` on the first token), DistilBertForTokenClassification,
DistilBertForQuestionAnswering.

BERT's encoder without token types or pooler, post-norm blocks named ``attention`` (``q_lin``, ``k_lin``,
``v_lin``, ``out_lin``), ``sa_layer_norm``, ``ffn.lin1``/``ffn.lin2``, ``output_layer_norm``; every LayerNorm's
eps is 1e-12 (fixed in modeling_distilbert.py). ``sinusoidal_pos_embds``: the position table holds fixed
sinusoids, still an ``nn.Parameter`` (``requires_grad`` off) that transformers counts, as layercalc does.
"""

from __future__ import annotations

from typing import Any

from .config import Config, Family, linear, norm, prefixed, repeat

_HEADS = {  # architecture: (prefix of the DistilBertModel, head)
    "DistilBertModel": ("", None), "DistilBertForMaskedLM": ("distilbert", "mlm"),
    "DistilBertForSequenceClassification": ("distilbert", "sequence"),
    "DistilBertForTokenClassification": ("distilbert", "token"),
    "DistilBertForQuestionAnswering": ("distilbert", "qa"),
}

_ALIASES = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}

#: modeling_distilbert.py's LayerNorms: eps=1e-12, not read from the config
_EPS = 1e-12


def _distilbert(c: Config, architecture: str) -> dict[str, Any]:
    d, heads, layers = c.integer("dim", 768), c.integer("n_heads", 12), c.integer("n_layers", 6)
    c.divisible("dim", d, "n_heads", heads)
    inner, vocab = c.integer("hidden_dim", 4 * 768), c.integer("vocab_size", 30522)
    positions = c.integer("max_position_embeddings", 512)
    c.flag("sinusoidal_pos_embds", False)                # the values only: the table is a parameter either way
    block = [{"name": "attention", "type": "multi_head_attention", "num_heads": heads},
             {"name": "sa_add", "type": "add", "inputs": ["attention", "in"]},
             norm("layernorm", "sa_layer_norm", _EPS),
             linear("ffn.lin1", inner),
             c.activation("activation", "gelu", "ffn.activation"),
             linear("ffn.lin2", d),
             {"name": "output_add", "type": "add", "inputs": ["ffn.lin2", "sa_layer_norm"]},
             norm("layernorm", "output_layer_norm", _EPS)]
    p, head = _HEADS[architecture]
    e = prefixed(p, "embeddings")
    words = f"{e}.word_embeddings"
    layers_: list[dict[str, Any]] = [
        {"name": words, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        {"name": f"{e}.position_embeddings", "type": "position_embedding", "num_embeddings": positions,
         "embedding_dim": d, "inputs": "input", "ids": "buffer"},          # a slice of the position_ids buffer
        {"name": f"{e}.sum", "type": "add", "inputs": [words, f"{e}.position_embeddings"]},
        norm("layernorm", f"{e}.LayerNorm", _EPS),
        repeat(c, "n_layers", layers, prefixed(p, "transformer.layer"), "layer", block)]
    if head == "mlm":
        # vocab_projector: the word embeddings' weight (tied) and a bias of its own, a layer of its own here
        if not c.flag("tie_word_embeddings", True):
            layers_ += [linear("vocab_transform", d), c.activation("activation", "gelu", "activation"),
                        norm("layernorm", "vocab_layer_norm", _EPS), linear("vocab_projector", vocab)]
        else:
            layers_ += [linear("vocab_transform", d), c.activation("activation", "gelu", "activation"),
                        norm("layernorm", "vocab_layer_norm", _EPS),
                        linear("vocab_projector", vocab, bias=False, tied_to=words),
                        {"name": "vocab_projector.bias", "type": "parameter", "shape": [1, vocab]},   # HF: [vocab]
                        {"name": "vocab_projector.add_bias", "type": "add",
                         "inputs": ["vocab_projector", "vocab_projector.bias"]}]
    elif head == "sequence":
        layers_ += [{"name": "first_token", "type": "select", "dim": 1, "index": 0},
                    linear("pre_classifier", d), {"name": "pre_classifier.relu", "type": "relu"},
                    linear("classifier", c.num_labels())]
    elif head == "token":
        layers_.append(linear("classifier", c.num_labels()))
    elif head == "qa":
        labels = c.num_labels()
        if labels != 2:                                 # DistilBertForQuestionAnswering raises ValueError
            raise c.fail("num_labels", labels, "DistilBertForQuestionAnswering needs 2 (start and end logits)")
        layers_.append(linear("qa_outputs", labels))
    return {"input": c.tokens(positions), "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_}


#: the attention's projections under the names the importer's attention loader reads (q_proj, …, o_proj)
_PROJECTIONS = {"q_lin": "q_proj", "k_lin": "k_proj", "v_lin": "v_proj", "out_lin": "o_proj"}


def _entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    head, _, rest = key.rpartition(".attention.")
    if head and "." in rest:
        module, _, param = rest.partition(".")
        if module in _PROJECTIONS:
            return [(f"{head}.attention.{_PROJECTIONS[module]}.{param}", value)]
    return [(key, value)]


FAMILIES = {"distilbert": Family({a: _distilbert for a in _HEADS}, "DistilBertModel", _ALIASES,
                                 state_dict_entries=_entries)}
