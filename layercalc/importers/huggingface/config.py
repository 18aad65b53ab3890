"""What every Hugging Face family's builder shares: :class:`Config` (typed reads of ``config.json`` whose every
bad value is a one-line SpecError naming the key), :class:`Family` (one ``model_type``: its architectures and
builders), the activation and rotary tables, and the small layer-entry helpers (``norm``, ``linear``, ``repeat``, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ...blocks import MAX_LAYERS
from ...errors import SpecError, shown, whole_number_problem

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


class Config:
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


def norm(kind: str, name: str, eps: float, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "eps": eps, **more}


#: how transformers' eager attention computes the softmax in most families (Llama, Mistral, Qwen2/3, Gemma, Phi-3,
#: GPT-NeoX, OPT, ViT, the MoE decoders: ``softmax(…, dtype=torch.float32).to(query.dtype)``), which sets what a
#: 16-bit model keeps for backward; GPT-2's, BERT's, DistilBERT's and T5's softmax runs in the activations' dtype
FLOAT32_SOFTMAX: dict[str, Any] = {"softmax_dtype": "float32"}

#: LlamaRMSNorm and its copies (Mistral, Qwen2, Qwen3, Phi-3, Mixtral, Qwen2-MoE, Qwen3-MoE): float32, cast back to
#: the input's dtype before γ (``weight * x.to(input_dtype)``); Gemma's RMSNorm multiplies by 1 + γ in float32
LLAMA_RMSNORM: dict[str, Any] = {"cast_before_scale": True}


def linear(name: str, out: int, bias: bool = True, **more: Any) -> dict[str, Any]:
    layer: dict[str, Any] = {"name": name, "type": "linear", "out_features": out}
    if not bias:
        layer["bias"] = False
    layer.update(more)
    return layer


def last_token_score(c: Config) -> list[dict[str, Any]]:
    """A decoder's sequence-classification head (GPT-2's, Llama's, …): the score is computed at every position,
    then the last token's is kept (no pad_token_id: the last one)."""
    return [linear("score", c.num_labels(), bias=False),
            {"name": "last_token", "type": "select", "dim": 1, "index": -1}]


#: a base model with a pooler (BertModel, ViTModel) returns two tensors, ``last_hidden_state`` first and then
#: ``pooler_output``: the network's outputs are the tensors no layer reads, in layer order, so the hidden states
#: pass through this layer (no parameters, no operations) before the pooler reads them
LAST_HIDDEN_STATE = {"name": "last_hidden_state", "type": "identity"}


def repeat(c: Config, key: str, count: int, name: str, block_name: str, block: list) -> dict[str, Any]:
    """The layers entry repeating a transformer block ``count`` times (``key``: the config's number of layers),
    refused before any copy is made when the copies would be more layers than a network may have."""
    if count * len(block) > MAX_LAYERS:
        raise c.fail(key, count, f"{count:,} blocks of {len(block)} layers are more than the {MAX_LAYERS:,} layers a "
                                 f"network may have")
    return {"repeat": count, "name": name, "block": block_name}


def prefixed(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


#: transformers' layer types (``config.layer_types``): a decoder layer attends within a sliding window or to every
#: earlier position; the block each is written as (one place for every family with per-layer windows)
SLIDING, FULL = "sliding_attention", "full_attention"
BLOCK_NAMES = {FULL: "decoder_layer", SLIDING: "sliding_decoder_layer"}
#: Qwen2Config's and Qwen3Config's defaults of sliding_window and max_window_layers
QWEN_DEFAULT_WINDOW, QWEN_DEFAULT_MAX_WINDOW_LAYERS = 4096, 28


def layer_types(c: Config, layers: int, default: list[str]) -> list[str]:
    """``layer_types`` (a list of "sliding_attention" / "full_attention", one per layer), else ``default``."""
    value = c.data.get("layer_types")
    if value is None:
        return default
    if (not isinstance(value, list) or len(value) != layers
            or not all(isinstance(t, str) and t in (SLIDING, FULL) for t in value)):
        raise c.fail("layer_types", value, f"expected a list of {layers} (num_hidden_layers) values, each "
                                           f"'{SLIDING}' or '{FULL}'")
    return list(value)


def stacked(c: Config, prefix: str, types: list[str], blocks: Mapping[str, list]) -> list[dict[str, Any]]:
    """The layers entries of a stack whose layers differ by type (``blocks[type]``): one ``repeat`` per run of
    equal types, numbered on (``start``), all named ``{prefix}.{i}``."""
    entries, start = [], 0
    while start < len(types):
        end = start
        while end < len(types) and types[end] == types[start]:
            end += 1
        kind = types[start]
        entry = repeat(c, "num_hidden_layers", end - start, prefixed(prefix, "layers"), BLOCK_NAMES[kind],
                        blocks[kind])
        if start:
            entry["start"] = start
        entries.append(entry)
        start = end
    return entries


def qwen_layer_types(c: Config, layers: int) -> tuple[Optional[int], list[str]]:
    """Qwen2's and Qwen3's sliding window and layer types, as their config classes (transformers 5.23) make them:
    the window only with ``use_sliding_window`` (``sliding_window``, default 4096 when the key is absent, none when
    it is null), on the layers from ``max_window_layers`` (default 28) on; an explicit ``layer_types`` wins."""
    window = None
    if c.flag("use_sliding_window", False):
        value = c.data.get("sliding_window", QWEN_DEFAULT_WINDOW)
        window = None if value is None else c.integer("sliding_window", QWEN_DEFAULT_WINDOW)
    first = c.integer("max_window_layers", QWEN_DEFAULT_MAX_WINDOW_LAYERS, minimum=0)
    if layers > MAX_LAYERS:                 # before a list of that many types is made
        raise c.fail("num_hidden_layers", layers, f"more than the {MAX_LAYERS:,} layers a network may have")
    return window, layer_types(c, layers, [SLIDING if window is not None and i >= first else FULL
                                           for i in range(layers)])


def block_specs(blocks: Mapping[str, list]) -> dict[str, Any]:
    return {BLOCK_NAMES[kind]: {"params": {}, "layers": layers} for kind, layers in blocks.items()}


def rope_mapping(c: Config) -> tuple[str, Mapping, Config]:
    """The rotary settings' mapping as transformers reads it — ``rope_scaling`` (older configs) when set, else
    ``rope_parameters`` (transformers 5), else none — as (its key, the mapping, a Config reading it); either key
    holding something other than a mapping is refused."""
    for key in ("rope_parameters", "rope_scaling"):
        value = c.data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise c.fail(key, value, "expected a mapping (rope_type, rope_theta, factor, …)")
    key = "rope_scaling" if c.data.get("rope_scaling") else "rope_parameters"
    parameters = c.data.get(key) or {}
    return key, parameters, Config(parameters, f"{c.origin}: config key {key!r}")


def rope(c: Config, head_dim: Optional[int] = None) -> tuple[float, str]:
    """(rope_theta, rope_type) by transformers' precedence: ``rope_scaling`` (older configs), ``rope_parameters``
    (transformers 5), then the top-level ``rope_theta`` (10000) — a key inside the mapping wins over the top-level
    one, as transformers' ``setdefault`` makes it.

    ``partial_rotary_factor`` (top level or inside the mapping): transformers 5's Llama, Mistral and Qwen2 rotate
    the whole head with the default rope_type, whatever the factor (their ``compute_default_rope_parameters`` reads
    only head_dim); the scaled types (``linear``, ``yarn``, …) make ``int(head_dim · factor)`` rotary features,
    which the attention's ``q·cos`` cannot apply unless that is the whole head — such a model fails in its forward
    pass, so it is refused (checked when ``head_dim`` is given)."""
    key, parameters, inner = rope_mapping(c)
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




#: a builder: (the config, the architecture built) → spec data ``{"input", "blocks", "layers"}``
Builder = Callable[["Config", str], dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """One ``model_type``: what each of its architectures is built by, and what the rest of the importer needs to
    know about it. A family module (``gpt2.py``, ``bert.py``, …) declares ``FAMILIES = {model_type: Family(...)}``;
    ``__init__`` gathers them into :data:`~layercalc.importers.huggingface.ARCHITECTURES`."""
    #: architecture (``architectures[0]``) → its builder
    builders: Mapping[str, Builder]
    #: the class built when the config names no architecture (the base model: ``GPT2Model``, …)
    base: str
    #: transformers' ``attribute_map``: another spelling of a key (GPT-2's ``hidden_size`` is ``n_embd``)
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: the config key whose value bounds the default sequence length (None: the input is not a sequence — ViT)
    positions_key: Optional[str] = "max_position_embeddings"
    #: what the summary header should add about this family's config (masks counted in full, rotary scaling, …)
    notes: Optional[Callable[[Config], list[str]]] = None
    #: the header's line on the default input, from the config and the spec built (None: the default length's rule
    #: by ``positions_key``): RoBERTa's positions after pad_token_id, T5's two inputs
    input_note: Optional[Callable[[Config, Mapping], Optional[str]]] = None
    #: the family's linear weights are stored [in, out] (transformers' Conv1D: GPT-2's c_attn, c_proj, c_fc)
    conv1d_modules: tuple[str, ...] = ()
    #: (the config, one ``state_dict`` entry: key, array) → the entries the network's layers take, before each is
    #: given to the layer whose name is its longest prefix: a fused tensor split (``qkv_proj`` → q, k, v: its sizes
    #: are the config's), a key renamed, or ``[]`` for a buffer that is no parameter. None: every entry as it is
    state_dict_entries: Optional[Callable[[Config, str, Any], list[tuple[str, Any]]]] = None
