"""Hugging Face ``config.json`` → layercalc spec data, read with the standard library only (no transformers).

The model built is the one ``architectures[0]`` names (the head follows the architecture: ``GPT2LMHeadModel``,
``BertForSequenceClassification``, …); without ``architectures``, the base model of ``model_type``
(``GPT2Model``, ``BertModel``, ``LlamaModel``, ``ViTModel``). Families and what each reads (docs/importers.md,
"Hugging Face"):

- ``gpt2``: GPT2Model, GPT2LMHeadModel (head tied to ``transformer.wte`` unless ``tie_word_embeddings`` is false),
  GPT2ForSequenceClassification, GPT2ForTokenClassification, GPT2ForQuestionAnswering.
- ``bert``: BertModel (pooler included), BertForMaskedLM, BertLMHeadModel, BertForSequenceClassification,
  BertForNextSentencePrediction, BertForTokenClassification, BertForQuestionAnswering.
- ``llama``, ``mistral``, ``qwen2``: …Model, …ForCausalLM, …ForSequenceClassification, …ForTokenClassification,
  …ForQuestionAnswering; grouped-query heads, ``head_dim``, the bias flags of each modeling file (Llama:
  ``attention_bias``, ``mlp_bias``; Mistral: none; Qwen2: q, k, v but not o — hard-coded there), rotary position
  embeddings inside the attention, tied heads.
- ``vit``: ViTModel (pooler included), ViTForImageClassification.

The network's outputs are the model's, in its order: BertModel and ViTModel return ``last_hidden_state`` and then
``pooler_output`` (:data:`_LAST_HIDDEN_STATE`).

Layers are named after the modules of transformers 5 (``transformer.h.0.attn``, ``model.layers.3.self_attn``,
``bert.encoder.layer.0.intermediate.dense``), so each parameter of the model's ``state_dict`` belongs to the layer
whose name is its longest prefix. A transformer block is written once under ``blocks:`` and repeated. The input is
the sequence of token ids, ``min(max_position_embeddings, 2048)`` long by default (:data:`DEFAULT_MAX_TOKENS`;
``--input N`` overrides), or the image ``[num_channels, image_size, image_size]`` for ViT.

Every value is read through :class:`_Config`, whose reads refuse a value of the wrong type in one line naming the
key (a size is a whole number by :func:`~layercalc.errors.whole_number_problem`: never a rounded float).
A config whose value changes the network in a way this importer does not model (cross-attention, relative position
embeddings, an activation or rotary scaling it does not know, …) is a :class:`~layercalc.errors.SpecError` naming the
config key, its value and what is supported: never a network that silently counts something else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ..blocks import MAX_LAYERS
from ..errors import SpecError, safe_text, shown, whole_number_problem

# the spec's own bound on nesting (and on YAML aliases), applied to a config before any of its values is read
from ..spec import _check_depth, from_data

__all__ = ["spec_from_config", "header_notes", "weights_from_state_dict", "ARCHITECTURES", "DEFAULT_MAX_TOKENS"]

#: the default sequence length: the model's context, capped (a 32,768-token Mistral context would make a default
#: summary report 40 GB of attention scores; 2,048 is the zoo's LLM length, and GPT-2's 1,024 and BERT's 512 stay)
DEFAULT_MAX_TOKENS = 2048

#: Hugging Face's activation names (``ACT2FN``) → layercalc activation layers. Those left out compute another
#: function (``quick_gelu`` is x·σ(1.702x), ``gelu_10`` clips, ``mish``, …) and are refused by name.
ACTIVATIONS: dict[str, dict[str, Any]] = {
    "gelu": {"type": "gelu"}, "gelu_python": {"type": "gelu"},
    # the same tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written three ways
    "gelu_new": {"type": "gelu", "approximate": "tanh"}, "gelu_pytorch_tanh": {"type": "gelu", "approximate": "tanh"},
    "gelu_fast": {"type": "gelu", "approximate": "tanh"},
    "relu": {"type": "relu"}, "relu6": {"type": "relu6"}, "silu": {"type": "silu"}, "swish": {"type": "silu"},
    "tanh": {"type": "tanh"}, "sigmoid": {"type": "sigmoid"}, "linear": {"type": "identity"},
}

#: rotary scalings (``rope_scaling`` / ``rope_parameters["rope_type"]``) that change only the rotation angles:
#: parameters and MACs are those of the plain rotation
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")

_MISSING = object()


class _Config:
    """The config mapping with typed reads: each bad value is a SpecError naming the config key."""

    def __init__(self, data: Mapping, origin: str, aliases: Optional[Mapping[str, str]] = None,
                 model_type: str = "") -> None:
        self.data, self.origin, self.model_type = data, origin, model_type
        #: another spelling of a key (transformers' ``attribute_map``: GPT-2's ``hidden_size`` is ``n_embd``)
        self.aliases = dict(aliases or {})

    def fail(self, key: str, value: Any, why: str) -> SpecError:
        return SpecError(f"{self.origin}: config key {key!r}: got {shown(value)}: {why}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        alias = self.aliases.get(key)
        if alias is not None and self.data.get(alias) is not None:
            return self.data[alias]
        if default is _MISSING:
            raise SpecError(f"{self.origin}: config key {key!r} is missing (a {self.model_type} config needs it)")
        return default

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """A size or count: a whole number by the project's one rule (:func:`~layercalc.errors.whole_number_problem`:
        no booleans, strings, fractions, or floats from 2**53 on, which may be the rounding of another number)."""
        value = self.raw(key, default)
        problem = whole_number_problem(value)
        if problem is None and not isinstance(value, (int, float)):       # a list or a mapping
            problem = f"a {'mapping' if isinstance(value, Mapping) else 'list'}"
        if problem is not None:
            raise self.fail(key, value, f"{problem}; expected a whole number ≥ {minimum}")
        if value < minimum:
            raise self.fail(key, value, f"expected a whole number ≥ {minimum}")
        return int(value)

    def number(self, key: str, default: Any = _MISSING) -> float:
        value = self.raw(key, default)
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:                      # an integer beyond any float
            number = math.inf
        if not math.isfinite(number) or number <= 0:
            raise self.fail(key, value, "expected a positive number")
        return number

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "expected true or false")
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.fail(key, value, "expected a string")
        return value

    def refuse_if(self, key: str, allowed: Callable[[Any], bool], why: str) -> None:
        """Refuse a key present with a value the importer does not model (absent or null: the default, fine)."""
        value = self.data.get(key)
        if value is not None and not allowed(value):
            raise self.fail(key, value, why)

    def activation(self, key: str, default: str, name: str) -> dict[str, Any]:
        value = self.text(key, default)
        if value not in ACTIVATIONS:
            raise self.fail(key, value, f"an activation layercalc does not model; supported: "
                                        f"{', '.join(sorted(ACTIVATIONS))}")
        return {"name": name, **ACTIVATIONS[value]}

    def divisible(self, size_key: str, size: int, heads_key: str, heads: int) -> None:
        """``size_key`` splits into ``heads_key`` heads (no ``head_dim``: each head has size/heads features)."""
        if size % heads:
            raise self.fail(size_key, size, f"not divisible by {heads_key} {heads} (each head has "
                                            f"{size_key}/{heads_key} features)")

    def num_labels(self, none_is_identity: bool = False) -> int:
        """transformers' rule: ``num_labels`` when given (an ``id2label`` of another length is replaced, with a
        warning), else the length of ``id2label`` (what saved configs hold: ``{}`` for ``num_labels`` 0), else 2.

        0 labels: ViTForImageClassification's classifier is then nn.Identity (``none_is_identity``); the other heads
        become an nn.Linear with no outputs, a layer layercalc has not (every layer has at least one feature)."""
        if self.data.get("num_labels") is not None:
            key, count = "num_labels", self.integer("num_labels", minimum=0)
        elif self.data.get("id2label") is not None:
            key, labels = "id2label", self.data["id2label"]
            if not isinstance(labels, Mapping):
                raise self.fail(key, labels, "expected a mapping of label index → name")
            count = len(labels)
        else:
            return 2
        if count == 0 and not none_is_identity:
            raise self.fail(key, self.data[key], "0 labels: transformers makes this head an nn.Linear with no "
                                                 "outputs, which layercalc does not model; give num_labels ≥ 1")
        return count

    def tokens(self, positions: int) -> list[int]:
        return [min(positions, DEFAULT_MAX_TOKENS)]


def _norm(kind: str, name: str, eps: float, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "eps": eps, **more}


def _linear(name: str, out: int, bias: bool = True, **more: Any) -> dict[str, Any]:
    layer: dict[str, Any] = {"name": name, "type": "linear", "out_features": out}
    if not bias:
        layer["bias"] = False
    layer.update(more)
    return layer


def _last_token_score(c: _Config) -> list[dict[str, Any]]:
    """A decoder's sequence-classification head (GPT-2's, Llama's, …): the score is computed at every position,
    then the last token's is kept (no pad_token_id: the last one)."""
    return [_linear("score", c.num_labels(), bias=False),
            {"name": "last_token", "type": "select", "dim": 1, "index": -1}]


#: a base model with a pooler (BertModel, ViTModel) returns two tensors, ``last_hidden_state`` first and then
#: ``pooler_output``: the network's outputs are the tensors no layer reads, in layer order, so the hidden states
#: pass through this layer (no parameters, no operations) before the pooler reads them
_LAST_HIDDEN_STATE = {"name": "last_hidden_state", "type": "identity"}


def _repeat(c: _Config, key: str, count: int, name: str, block_name: str, block: list) -> dict[str, Any]:
    """The layers entry repeating a transformer block ``count`` times (``key``: the config's number of layers),
    refused before any copy is made when the copies would be more layers than a network may have."""
    if count * len(block) > MAX_LAYERS:
        raise c.fail(key, count, f"{count:,} blocks of {len(block)} layers are more than the {MAX_LAYERS:,} layers a "
                                 f"network may have")
    return {"repeat": count, "name": name, "block": block_name}


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ================================================================================================== GPT-2

_GPT2_ALIASES = {"n_embd": "hidden_size", "n_positions": "max_position_embeddings", "n_head": "num_attention_heads",
                 "n_layer": "num_hidden_layers"}
_GPT2_HEADS = {"GPT2Model": "", "GPT2LMHeadModel": "transformer", "GPT2ForSequenceClassification": "transformer",
               "GPT2ForTokenClassification": "transformer", "GPT2ForQuestionAnswering": "transformer"}


def _gpt2(c: _Config, architecture: str) -> dict[str, Any]:
    c.refuse_if("add_cross_attention", lambda v: v is False,
                "cross-attention (crossattention, ln_cross_attn) reads an encoder's states: not modeled")
    d, heads, layers = c.integer("n_embd", 768), c.integer("n_head", 12), c.integer("n_layer", 12)
    c.divisible("n_embd", d, "n_head", heads)
    positions, vocab = c.integer("n_positions", 1024), c.integer("vocab_size", 50257)
    inner = c.integer("n_inner", 4 * d)
    eps = c.number("layer_norm_epsilon", 1e-5)
    block = [_norm("layernorm", "ln_1", eps),
             {"name": "attn", "type": "multi_head_attention", "num_heads": heads, "causal": True},
             {"name": "add_1", "type": "add", "inputs": ["attn", "in"]},
             _norm("layernorm", "ln_2", eps),
             _linear("mlp.c_fc", inner),
             c.activation("activation_function", "gelu_new", "mlp.act"),
             _linear("mlp.c_proj", d),
             {"name": "add_2", "type": "add", "inputs": ["mlp.c_proj", "add_1"]}]
    p = _GPT2_HEADS[architecture]
    wte = _prefixed(p, "wte")
    layers_: list[dict[str, Any]] = [
        {"name": wte, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        {"name": _prefixed(p, "wpe"), "type": "position_embedding", "num_embeddings": positions, "embedding_dim": d,
         "inputs": "input"},
        {"name": "embed", "type": "add", "inputs": [wte, _prefixed(p, "wpe")]},
        _repeat(c, "n_layer", layers, _prefixed(p, "h"), "block", block),
        _norm("layernorm", _prefixed(p, "ln_f"), eps)]
    if architecture == "GPT2LMHeadModel":
        tied = c.flag("tie_word_embeddings", True)
        layers_.append(_linear("lm_head", vocab, bias=False, **({"tied_to": wte} if tied else {})))
    elif architecture == "GPT2ForSequenceClassification":
        layers_ += _last_token_score(c)
    elif architecture == "GPT2ForTokenClassification":
        layers_.append(_linear("classifier", c.num_labels()))
    elif architecture == "GPT2ForQuestionAnswering":
        layers_.append(_linear("qa_outputs", 2))            # start and end logits, split after the layer
    return {"input": c.tokens(positions), "blocks": {"block": {"params": {}, "layers": block}}, "layers": layers_}


# =================================================================================================== BERT

_BERT_HEADS = {  # architecture: (prefix of the BertModel, pooler?, head)
    "BertModel": ("", True, None), "BertForMaskedLM": ("bert", False, "mlm"), "BertLMHeadModel": ("bert", False, "mlm"),
    "BertForSequenceClassification": ("bert", True, "classifier"),
    "BertForNextSentencePrediction": ("bert", True, "nsp"),
    "BertForTokenClassification": ("bert", False, "classifier"), "BertForQuestionAnswering": ("bert", False, "qa"),
}


def _bert(c: _Config, architecture: str) -> dict[str, Any]:
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
             _norm("layernorm", "attention.output.LayerNorm", eps),
             _linear("intermediate.dense", inner),
             c.activation("hidden_act", "gelu", "intermediate.intermediate_act_fn"),
             _linear("output.dense", d),
             {"name": "output.add", "type": "add", "inputs": ["output.dense", "attention.output.LayerNorm"]},
             _norm("layernorm", "output.LayerNorm", eps)]
    p, pooler, head = _BERT_HEADS[architecture]
    e = _prefixed(p, "embeddings")
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
        _norm("layernorm", f"{e}.LayerNorm", eps),
        _repeat(c, "num_hidden_layers", layers, _prefixed(p, "encoder.layer"), "layer", block)]
    if head is None:                                    # BertModel returns the encoder's states, then the pooler's
        layers_.append(_LAST_HIDDEN_STATE)
    if pooler:
        pool = _prefixed(p, "pooler")
        layers_ += [{"name": f"{pool}.first_token", "type": "select", "dim": 1, "index": 0,
                     "inputs": _prefixed(p, "encoder.layer")},
                    _linear(f"{pool}.dense", d), {"name": f"{pool}.activation", "type": "tanh"}]
    if head == "mlm":
        # decoder: the word embeddings' weight (tied) and the vocabulary bias cls.predictions.bias, a parameter of
        # its own in transformers (decoder.bias is tied to it), added after the product
        if not c.flag("tie_word_embeddings", True):
            raise c.fail("tie_word_embeddings", False, f"{architecture} untied keeps cls.predictions.bias as a "
                                                      f"parameter its forward never uses (the decoder gets a bias of "
                                                      f"its own): not modeled; supported: true")
        layers_ += [_linear("cls.predictions.transform.dense", d),
                    c.activation("hidden_act", "gelu", "cls.predictions.transform.transform_act_fn"),
                    _norm("layernorm", "cls.predictions.transform.LayerNorm", eps),
                    _linear("cls.predictions.decoder", vocab, bias=False, tied_to=words),
                    {"name": "cls.predictions.bias", "type": "parameter", "shape": [1, vocab]},   # HF: [vocab]
                    {"name": "cls.predictions.add_bias", "type": "add",
                     "inputs": ["cls.predictions.decoder", "cls.predictions.bias"]}]
    elif head == "classifier":
        layers_.append(_linear("classifier", c.num_labels()))
    elif head == "nsp":
        layers_.append(_linear("cls.seq_relationship", 2))
    elif head == "qa":
        layers_.append(_linear("qa_outputs", c.num_labels()))
    return {"input": c.tokens(positions), "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_}


# ====================================================================================== Llama, Mistral, Qwen2

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


def _decoder_heads(model_type: str) -> dict[str, tuple[str, Optional[str]]]:
    name = _DECODER_CLASSES[model_type]
    return {f"{name}Model": ("", None), f"{name}ForCausalLM": ("model", "lm"),
            f"{name}ForSequenceClassification": ("model", "sequence"),
            f"{name}ForTokenClassification": ("model", "token"),
            f"{name}ForQuestionAnswering": (_QA_PREFIX[model_type], "qa")}


def _rope(c: _Config, head_dim: Optional[int] = None) -> tuple[float, str]:
    """(rope_theta, rope_type) by transformers' precedence: ``rope_scaling`` (older configs), ``rope_parameters``
    (transformers 5), then the top-level ``rope_theta`` (10000) — a key inside the mapping wins over the top-level
    one, as transformers' ``setdefault`` makes it.

    ``partial_rotary_factor`` (top level or inside the mapping): transformers 5's Llama, Mistral and Qwen2 rotate
    the whole head with the default rope_type, whatever the factor (their ``compute_default_rope_parameters`` reads
    only head_dim); the scaled types (``linear``, ``yarn``, …) make ``int(head_dim · factor)`` rotary features,
    which the attention's ``q·cos`` cannot apply unless that is the whole head — such a model fails in its forward
    pass, so it is refused (checked when ``head_dim`` is given)."""
    for key in ("rope_parameters", "rope_scaling"):
        value = c.data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise c.fail(key, value, "expected a mapping (rope_type, rope_theta, factor, …)")
    parameters = c.data.get("rope_scaling") or c.data.get("rope_parameters") or {}
    key = "rope_scaling" if c.data.get("rope_scaling") else "rope_parameters"
    inner = _Config(parameters, f"{c.origin}: config key {key!r}")
    theta = (inner if parameters.get("rope_theta") is not None else c).number("rope_theta", 10000.0)
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if not isinstance(rope_type, str) or rope_type not in ROPE_TYPES:
        raise c.fail(key, dict(parameters), f"rope_type {shown(rope_type)} is not one layercalc knows; supported: "
                                            f"{', '.join(ROPE_TYPES)} (they change only the rotation angles)")
    scope = inner if parameters.get("partial_rotary_factor") is not None else c
    if head_dim is not None and scope.raw("partial_rotary_factor", None) is not None:
        factor = scope.number("partial_rotary_factor")
        if factor > 1:
            raise scope.fail("partial_rotary_factor", factor, "expected a fraction of the head in (0, 1]")
        rotated = int(head_dim * factor)
        if rope_type != "default" and rotated != head_dim:
            raise scope.fail("partial_rotary_factor", factor,
                             f"with rope_type {rope_type!r}, transformers' {c.model_type} makes int(head_dim "
                             f"{head_dim} × {factor}) = {rotated} rotary features while its attention rotates every "
                             f"feature of a head: its forward pass fails, there is no model to count; supported: 1, "
                             f"or any factor with rope_type 'default' (the whole head is rotated)")
    return theta, rope_type


def _decoder(c: _Config, architecture: str) -> dict[str, Any]:
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
    theta, _ = _rope(c, head_dim)
    if family != "llama" and c.raw("sliding_window", None) is not None:   # a mask, counted in full: read only to
        c.integer("sliding_window")                                         # be a whole number in the header notes
    if family == "qwen2":
        c.flag("use_sliding_window", False)
    if family == "llama":
        attention_bias, mlp_bias = c.flag("attention_bias", False), c.flag("mlp_bias", False)
        qkv_bias, out_bias = attention_bias, attention_bias
    elif family == "qwen2":      # modeling_qwen2.py: q_proj, k_proj, v_proj with bias=True, o_proj bias=False
        qkv_bias, out_bias, mlp_bias = True, False, False
    else:                        # modeling_mistral.py: every projection bias=False
        qkv_bias, out_bias, mlp_bias = False, False, False
    attention: dict[str, Any] = {"name": "self_attn", "type": "multi_head_attention", "num_heads": heads,
                                 "num_kv_heads": kv}
    if head_dim * heads != d:
        attention["head_dim"] = head_dim
    attention.update({"bias": qkv_bias} if qkv_bias == out_bias else {"qkv_bias": qkv_bias, "out_bias": out_bias})
    attention.update({"causal": True, "rope": True, "rope_theta": theta})
    block = [_norm("rmsnorm", "input_layernorm", eps),
             attention,
             {"name": "attn_residual", "type": "add", "inputs": ["self_attn", "in"]},
             _norm("rmsnorm", "post_attention_layernorm", eps),
             _linear("mlp.gate_proj", inner, bias=mlp_bias),
             c.activation("hidden_act", "silu", "mlp.act_fn"),
             _linear("mlp.up_proj", inner, bias=mlp_bias, inputs="post_attention_layernorm"),
             {"name": "mlp.gated", "type": "mul", "inputs": ["mlp.act_fn", "mlp.up_proj"]},
             _linear("mlp.down_proj", d, bias=mlp_bias),
             {"name": "mlp_residual", "type": "add", "inputs": ["mlp.down_proj", "attn_residual"]}]
    p, head = _decoder_heads(family)[architecture]
    embed = _prefixed(p, "embed_tokens")
    layers_: list[dict[str, Any]] = [
        {"name": embed, "type": "embedding", "num_embeddings": vocab, "embedding_dim": d},
        _repeat(c, "num_hidden_layers", layers, _prefixed(p, "layers"), "decoder_layer", block),
        _norm("rmsnorm", _prefixed(p, "norm"), eps)]
    if head == "lm":
        tied = c.flag("tie_word_embeddings", False)
        layers_.append(_linear("lm_head", vocab, bias=False, **({"tied_to": embed} if tied else {})))
    elif head == "sequence":
        layers_ += _last_token_score(c)
    elif head == "token":
        layers_.append(_linear("score", c.num_labels(), bias=c.flag("token_classification_bias", True)))
    elif head == "qa":
        layers_.append(_linear("qa_outputs", 2))
    return {"input": c.tokens(positions), "blocks": {"decoder_layer": {"params": {}, "layers": block}},
            "layers": layers_}


# ==================================================================================================== ViT

_VIT_HEADS = {"ViTModel": ("", True, False), "ViTForImageClassification": ("vit", False, True)}


def _pair(c: _Config, key: str, default: int) -> tuple[int, int]:
    value = c.raw(key, default)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise c.fail(key, value, "expected one size or [height, width]")
        height, width = (_Config({key: size}, c.origin).integer(key) for size in value)   # (messages: the key)
        return height, width
    return (c.integer(key, default),) * 2


def _vit(c: _Config, architecture: str) -> dict[str, Any]:
    d, heads = c.integer("hidden_size", 768), c.integer("num_attention_heads", 12)
    layers = c.integer("num_hidden_layers", 12)
    c.divisible("hidden_size", d, "num_attention_heads", heads)
    inner, eps = c.integer("intermediate_size", 3072), c.number("layer_norm_eps", 1e-12)
    (h, w), (ph, pw) = _pair(c, "image_size", 224), _pair(c, "patch_size", 16)
    channels = c.integer("num_channels", 3)
    if h < ph or w < pw:
        raise c.fail("image_size", c.raw("image_size"), f"smaller than the patch {ph}×{pw}")
    tokens = (h // ph) * (w // pw) + 1                 # the patches and the class token
    qkv_bias = c.flag("qkv_bias", True)
    # modeling_vit.py: q_proj, k_proj, v_proj with bias=qkv_bias, o_proj always with a bias
    attention: dict[str, Any] = {"name": "attention", "type": "multi_head_attention", "num_heads": heads}
    if not qkv_bias:
        attention.update({"qkv_bias": False, "out_bias": True})
    block = [_norm("layernorm", "layernorm_before", eps),
             attention,
             {"name": "attention_residual", "type": "add", "inputs": ["attention", "in"]},
             _norm("layernorm", "layernorm_after", eps),
             _linear("mlp.fc1", inner),
             c.activation("hidden_act", "gelu", "mlp.activation_fn"),
             _linear("mlp.fc2", d),
             {"name": "mlp_residual", "type": "add", "inputs": ["mlp.fc2", "attention_residual"]}]
    p, pooler, classifier = _VIT_HEADS[architecture]
    e = _prefixed(p, "embeddings")
    kernel = ph if ph == pw else [ph, pw]
    layers_: list[dict[str, Any]] = [
        {"name": f"{e}.patch_embeddings.projection", "type": "conv2d", "in_channels": channels, "out_channels": d,
         "kernel_size": kernel, "stride": kernel},
        {"name": f"{e}.patch_embeddings.flatten", "type": "flatten", "start_dim": 2},           # [N, d, patches]
        {"name": f"{e}.patch_embeddings.transpose", "type": "transpose", "dim0": 1, "dim1": 2},  # [N, patches, d]
        {"name": f"{e}.cls_token", "type": "parameter", "shape": [1, d]},                       # HF: [1, 1, d]
        {"name": f"{e}.concat", "type": "concat", "dim": 1,
         "inputs": [f"{e}.cls_token", f"{e}.patch_embeddings.transpose"]},
        {"name": f"{e}.position_embeddings", "type": "parameter", "shape": [tokens, d]},        # HF: [1, L, d]
        {"name": f"{e}.add_position", "type": "add", "inputs": [f"{e}.concat", f"{e}.position_embeddings"]},
        _repeat(c, "num_hidden_layers", layers, _prefixed(p, "layers"), "layer", block),
        _norm("layernorm", _prefixed(p, "layernorm"), eps)]
    if pooler:                                          # ViTModel returns the final norm's states, then the pooler's
        layers_ += [_LAST_HIDDEN_STATE,
                    {"name": "pooler.first_token", "type": "select", "dim": 1, "index": 0, "inputs": "layernorm"},
                    _linear("pooler.dense", c.integer("pooler_output_size", d)),
                    c.activation("pooler_act", "tanh", "pooler.activation")]
    if classifier:
        layers_.append({"name": "first_token", "type": "select", "dim": 1, "index": 0})
        labels = c.num_labels(none_is_identity=True)
        if labels:                                     # 0 labels (num_labels 0, id2label {}): nn.Identity
            layers_.append(_linear("classifier", labels))
    return {"input": [channels, h, w], "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_}


# ============================================================================================== dispatch

#: model_type → (architectures → builder, the base model built without ``architectures``, config aliases)
ARCHITECTURES: dict[str, tuple[dict[str, Callable[[_Config, str], dict[str, Any]]], str, dict[str, str]]] = {
    "gpt2": ({a: _gpt2 for a in _GPT2_HEADS}, "GPT2Model", _GPT2_ALIASES),
    "bert": ({a: _bert for a in _BERT_HEADS}, "BertModel", {}),
    **{t: ({a: _decoder for a in _decoder_heads(t)}, f"{_DECODER_CLASSES[t]}Model", {}) for t in _DECODER_CLASSES},
    "vit": ({a: _vit for a in _VIT_HEADS}, "ViTModel", {}),
}


def _model_type(data: Mapping, origin: str) -> str:
    model_type = data.get("model_type")
    if model_type is None:                 # an old config without model_type: the family from the architecture
        for family, (builders, _, _) in ARCHITECTURES.items():
            if _first_architecture(data, origin) in builders:
                return family
        raise SpecError(f"{origin}: config key 'model_type' is missing and architectures "
                        f"{shown(data.get('architectures'))} names no supported model; supported model types: "
                        f"{', '.join(ARCHITECTURES)}")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        what = "" if isinstance(model_type, str) else f"expected a string (a {type(model_type).__name__}): "
        raise SpecError(f"{origin}: config key 'model_type': got {shown(model_type)}: {what}not a model type "
                        f"layercalc imports; supported: {', '.join(ARCHITECTURES)} (or write the network as a spec)")
    return model_type


def _first_architecture(data: Mapping, origin: str) -> Optional[str]:
    architectures = data.get("architectures")
    if architectures is None:
        return None
    if (not isinstance(architectures, list) or not architectures
            or not all(isinstance(name, str) for name in architectures)):
        raise SpecError(f"{origin}: config key 'architectures': got {shown(architectures)}: expected a list of "
                        f"class names, e.g. [\"LlamaForCausalLM\"]")
    return architectures[0]


def spec_from_config(data: Mapping, origin: str) -> dict[str, Any]:
    """The layercalc spec data of the model a Hugging Face ``config.json`` (parsed) describes.

    >>> spec = spec_from_config({"model_type": "gpt2", "n_layer": 2, "architectures": ["GPT2LMHeadModel"]}, "c")
    >>> spec["name"], spec["input"], spec["layers"][3], spec["layers"][-1]["tied_to"]
    ('gpt2', [1024], {'repeat': 2, 'name': 'transformer.h', 'block': 'block'}, 'transformer.wte')
    """
    origin = safe_text(origin)
    # every value below may be shown in a message: bounded first (a value nested thousands deep would make repr
    # recurse past Python's limit, a YAML alias bomb would make it expand billions of values)
    _check_depth(data, origin)
    model_type = _model_type(data, origin)
    builders, base, aliases = ARCHITECTURES[model_type]
    architecture = _first_architecture(data, origin) or base
    if architecture not in builders:
        raise SpecError(f"{origin}: config key 'architectures': got {shown(architecture)}: not an architecture "
                        f"layercalc imports for model_type {model_type!r}; supported: {', '.join(builders)}")
    config = _Config(data, origin, aliases, model_type)
    spec = builders[architecture](config, architecture)
    name = data.get("_name_or_path")
    return {"name": name if isinstance(name, str) and name else model_type, **spec}


def header_notes(data: Mapping, origin: str = "config.json", spec: Optional[Mapping] = None) -> list[str]:
    """What a converted spec's header comment should say about the choices made for this config: the class built,
    the default input, and the config keys counted by a convention (masks counted in full, rotary scaling).

    >>> for line in header_notes({"model_type": "mistral", "max_position_embeddings": 32768})[:2]:
    ...     print(line)
    MistralModel (no architectures in the config: the base model)
    input: 2048 tokens (min(max_position_embeddings 32768, 2048)); --input N for N tokens
    """
    origin = safe_text(origin)
    model_type = _model_type(data, origin)
    builders, base, aliases = ARCHITECTURES[model_type]
    architecture = _first_architecture(data, origin)
    notes = [architecture or f"{base} (no architectures in the config: the base model)"]
    if spec is None:                        # (layercalc.convert passes the spec it has already made)
        spec = spec_from_config(data, origin)
    if model_type == "vit":
        notes.append(f"input: the image {spec['input']} (num_channels, image_size)")
    else:
        key = "n_positions" if model_type == "gpt2" else "max_position_embeddings"
        config = _Config(data, origin, aliases, model_type)
        positions = config.integer(key) if config.raw(key, None) is not None else None
        source = (f"min({key} {positions}, {DEFAULT_MAX_TOKENS})" if positions is not None
                  else f"the {model_type} default {key}, at most {DEFAULT_MAX_TOKENS}")
        notes.append(f"input: {spec['input'][0]} tokens ({source}); --input N for N tokens")
    if model_type in DENSE_ARCHITECTURES:
        notes += dense_header_notes(_Config(data, origin, aliases, model_type), spec)
    if model_type in _DECODER_CLASSES:
        config = _Config(data, origin, aliases, model_type)
        if data.get("sliding_window") is not None and (model_type == "mistral" or data.get("use_sliding_window")):
            notes.append(f"sliding_window {config.integer('sliding_window')}: a mask, counted in full as causal "
                         f"masks are; the executor attends to every earlier position")
        _, rope_type = _rope(config)
        if rope_type != "default":
            notes.append(f"rope_type {rope_type}: the angles change, not the counts; the executor rotates by the plain "
                         f"angles of rope_theta")
    return notes


# ============================================================================================ the weights

#: state_dict entries that are no parameters of the model: buffers older checkpoints saved (GPT-2's causal mask
#: ``attn.bias`` and ``attn.masked_bias``, BERT's ``position_ids``, the rotary ``inv_freq``) and BERT's
#: ``cls.predictions.decoder.bias``, the same tensor as ``cls.predictions.bias``
_NOT_PARAMETERS = (".attn.bias", ".attn.masked_bias", "embeddings.position_ids", "embeddings.token_type_ids",
                   "rotary_emb.inv_freq", "cls.predictions.decoder.bias")

#: GPT-2's modules that are transformers' Conv1D (weight [in, out]); its heads are nn.Linear
_CONV1D = (".c_fc", ".c_proj", ".c_attn")

#: the projections of an attention layer in each family's modules: q, k, v, output (GPT-2: c_attn holds q, k, v)
_PROJECTIONS = {"q": ("q_proj", "self.query"), "k": ("k_proj", "self.key"), "v": ("v_proj", "self.value"),
                "out": ("o_proj", "output.dense", "c_proj")}


def weights_from_state_dict(config: Mapping, state_dict: Mapping, origin: str = "state_dict") -> dict[str, Any]:
    """A transformers model's ``state_dict`` (tensors or arrays) as the executor's weights for the network
    :func:`spec_from_config` builds from the same config: ``{layer name: {parameter: array}}``, for
    ``net.run(weights=...)`` and ``verify``.

    Each entry belongs to the layer whose name is its longest prefix. Attention layers take q, k, v and the
    output projection in PyTorch's layout (packed as ``in_proj_weight`` where nn.MultiheadAttention would);
    GPT-2's Conv1D weights (``[in, out]``: c_attn, c_proj, c_fc) are transposed; parameters stored with extra
    leading 1s (ViT's ``cls_token`` ``[1, 1, d]``) are reshaped. Tied layers use their owner's arrays. An entry
    that belongs to no layer, a missing one or a shape that differs is a SpecError naming the entry.
    """
    import numpy as np

    origin = safe_text(origin)
    net = from_data(spec_from_config(config, origin), origin)
    steps = net.resolve()
    by_name = {step.name: step for step in steps}
    model_type = _model_type(config, origin)
    conv1d = model_type == "gpt2"                         # GPT-2's Conv1D: weight [in, out]
    if model_type in DENSE_STATE_DICT_MAPS:               # fused projections split, names as q/k/v/o_proj
        state_dict = DENSE_STATE_DICT_MAPS[model_type](config, state_dict, np)
    owned: dict[str, dict[str, Any]] = {}
    unexpected = []
    for key, value in state_dict.items():
        key = str(key)
        if key.endswith(_NOT_PARAMETERS):
            continue
        layer, rest = key, ""
        while layer and layer not in by_name:
            layer, _, tail = layer.rpartition(".")
            rest = f"{tail}.{rest}" if rest else tail
        if not layer:
            unexpected.append(key)
            continue
        owned.setdefault(layer, {})[rest] = _array(value, np)
    if unexpected:
        raise SpecError(f"{origin}: {len(unexpected)} entr{'y' if len(unexpected) == 1 else 'ies'} belong to no "
                        f"layer of the network: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
    weights: dict[str, Any] = {}
    for step in steps:
        local = owned.pop(step.name, {})
        specs = step.layer.param_specs(step, net.channels_last)
        if step.layer.tied_to is not None or not specs:
            if local and step.layer.tied_to is None:
                raise SpecError(f"{origin}: {', '.join(f'{step.name}.{k}' for k in local)}: the layer "
                                f"{step.name!r} ({step.layer.type_name}) has no parameters")
            continue
        if step.layer.type_name == "multi_head_attention":
            arrays = _attention_arrays(step.name, local, specs, conv1d, origin, np)
        else:
            arrays = {}
            for param in specs:
                value = local.pop(param, None)
                if value is None and param == "weight" and "" in local:     # a bare nn.Parameter (ViT's cls_token)
                    value = local.pop("")
                if value is None:
                    raise SpecError(f"{origin}: {step.name}.{param} is missing (the layer {step.name!r} "
                                    f"({step.layer.type_name}) needs it)")
                if conv1d and step.name.endswith(_CONV1D) and param == "weight":
                    value = value.T
                arrays[param] = value
            if local:
                raise SpecError(f"{origin}: {', '.join(f'{step.name}.{k}' for k in local)}: not a parameter of "
                                f"the layer {step.name!r} ({step.layer.type_name}): it has {', '.join(specs)}")
        for param, value in arrays.items():
            shape = tuple(specs[param].shape)
            if value.shape != shape:
                if value.size != math.prod(shape) or value.squeeze().shape != tuple(s for s in shape if s != 1):
                    raise SpecError(f"{origin}: {step.name}.{param}: got shape {list(value.shape)}, the layer "
                                    f"{step.name!r} ({step.layer.type_name}) has {list(shape)}")
                value = value.reshape(shape)
            arrays[param] = np.ascontiguousarray(value)
        weights[step.name] = arrays
    return weights


def _array(value: Any, np: Any) -> Any:
    from ..kernels import as_numpy  # deferred: NumPy is loaded only when weights are read
    return np.asarray(as_numpy(value))


def _attention_arrays(name: str, local: dict[str, Any], specs: Mapping, conv1d: bool, origin: str,
                      np: Any) -> dict[str, Any]:
    """q, k, v and output projections of one attention layer (HF's module names) as the layer's parameters."""
    found: dict[tuple[str, str], Any] = {}
    for kind in ("weight", "bias"):
        packed = local.pop(f"c_attn.{kind}", None)
        if packed is not None:                        # GPT-2: [in, 3·d] (weight) or [3·d] (bias), q|k|v
            parts = np.split(packed.T if kind == "weight" else packed, 3, axis=0)
            found.update({(role, kind): part for role, part in zip("qkv", parts)})
        for role, modules in _PROJECTIONS.items():
            for module in modules:
                value = local.pop(f"{module}.{kind}", None)
                if value is not None:
                    found[role, kind] = value.T if conv1d and kind == "weight" else value
    norms = {f"{role}_norm_weight": local.pop(f"{role}_norm.weight") for role in "qk" if f"{role}_norm.weight" in local}
    if local:
        raise SpecError(f"{origin}: {', '.join(f'{name}.{k}' for k in local)}: not a projection of the attention "
                        f"layer {name!r} (q, k, v and output projections: {', '.join(sum(_PROJECTIONS.values(), ()))})")
    arrays = {}
    for param in specs:
        if param.endswith("_norm_weight"):                # Qwen3's and Gemma 3's q_norm, k_norm
            if param not in norms:
                raise SpecError(f"{origin}: {name}: {param.replace('_norm_weight', '_norm.weight')} is missing (the "
                                f"layer has {param})")
            arrays[param] = norms.pop(param)
            continue
        if param.startswith("in_proj_"):
            kind = param.removeprefix("in_proj_")
            parts = [found.pop((role, kind), None) for role in "qkv"]
            if any(part is None for part in parts):
                raise SpecError(f"{origin}: {name}: the q, k and v projections' {kind}s are not all in the state_dict")
            arrays[param] = np.concatenate(parts, axis=0)
            continue
        role, _, kind = param.partition("_proj_")
        value = found.pop((role, kind), None)
        if value is None:
            raise SpecError(f"{origin}: {name}: the {role} projection's {kind} is missing (the layer has {param})")
        arrays[param] = value
    if norms:
        raise SpecError(f"{origin}: {name}: the state_dict has {', '.join(norms)}, which the layer does not have")
    if found:
        extra = ", ".join(f"{role} {kind}" for (role, kind) in found)
        raise SpecError(f"{origin}: {name}: the state_dict has the {extra}, which the layer does not have (bias "
                        f"flags of the config?)")
    return arrays


# the dense decoder families (qwen3, gemma, gemma2, gemma3_text, phi3, gpt_neox, opt) of their own module, which
# reads this module's helpers: imported once they are defined
from .hf_dense import DENSE_ARCHITECTURES, DENSE_STATE_DICT_MAPS, dense_header_notes  # noqa: E402  (a pair)

ARCHITECTURES.update(DENSE_ARCHITECTURES)
