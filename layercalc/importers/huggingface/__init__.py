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
- ``mixtral``, ``qwen2_moe``, ``qwen3_moe``, ``deepseek_v3`` (:mod:`.moe`): mixture-of-experts decoders, their
  sparse blocks as ``moe`` layers; DeepSeek-V3's multi-head latent attention as a ``latent_attention`` layer.

The network's outputs are the model's, in its order: BertModel and ViTModel return ``last_hidden_state`` and then
``pooler_output`` (:data:`LAST_HIDDEN_STATE`).

Layers are named after the modules of transformers 5 (``transformer.h.0.attn``, ``model.layers.3.self_attn``,
``bert.encoder.layer.0.intermediate.dense``), so each parameter of the model's ``state_dict`` belongs to the layer
whose name is its longest prefix. A transformer block is written once under ``blocks:`` and repeated. The input is
the sequence of token ids, ``min(max_position_embeddings, 2048)`` long by default (:data:`DEFAULT_MAX_TOKENS`;
``--input N`` overrides), or the image ``[num_channels, image_size, image_size]`` for ViT.

Every value is read through :class:`Config`, whose reads refuse a value of the wrong type in one line naming the
key (a size is a whole number by :func:`~layercalc.errors.whole_number_problem`: never a rounded float).
A config whose value changes the network in a way this importer does not model (cross-attention, relative position
embeddings, an activation or rotary scaling it does not know, …) is a :class:`~layercalc.errors.SpecError` naming the
config key, its value and what is supported: never a network that silently counts something else.
"""


from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

from ...errors import SpecError, safe_text, shown

# the spec's own bound on nesting (and on YAML aliases), applied to a config before any of its values is read
from ...spec import _check_depth, from_data
from . import bert, decoder, dense, distilbert, gpt2, moe, t5, vit
from .config import ACTIVATIONS, DEFAULT_MAX_TOKENS, ROPE_TYPES, Config, Family

__all__ = ["spec_from_config", "header_notes", "weights_from_state_dict", "ARCHITECTURES", "DEFAULT_MAX_TOKENS",
           "ACTIVATIONS", "ROPE_TYPES", "Family"]

#: model_type → its :class:`~.config.Family` (architectures → builder, the base model built without
#: ``architectures``, config aliases, …): every family module's ``FAMILIES``, in this order
ARCHITECTURES: dict[str, Family] = {**gpt2.FAMILIES, **bert.FAMILIES, **decoder.FAMILIES, **vit.FAMILIES,
                                    **dense.FAMILIES, **moe.FAMILIES, **distilbert.FAMILIES, **t5.FAMILIES}


def _model_type(data: Mapping, origin: str) -> str:
    model_type = data.get("model_type")
    if model_type is None:                 # an old config without model_type: the family from the architecture
        for family, spec_family in ARCHITECTURES.items():
            if _first_architecture(data, origin) in spec_family.builders:
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


#: the dtypes a config's ``dtype``/``torch_dtype`` may name that a network counts in (torch's names)
CONFIG_DTYPES = ("float32", "float16", "bfloat16", "float64")


def config_dtype(data: Mapping) -> Optional[tuple[str, str]]:
    """(key, value) of the dtype a config declares for its weights: transformers 5's ``dtype``, else the older
    ``torch_dtype`` (transformers 5 reads them in that order); None when it names none (or not as a string: a
    composite model's per-part mapping).

    >>> config_dtype({"torch_dtype": "bfloat16"}), config_dtype({"dtype": "float16", "torch_dtype": "float32"})
    (('torch_dtype', 'bfloat16'), ('dtype', 'float16'))
    """
    for key in ("dtype", "torch_dtype"):
        value = data.get(key)
        if isinstance(value, str):
            return key, value.removeprefix("torch.")
    return None


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
    family = ARCHITECTURES[model_type]
    architecture = _first_architecture(data, origin) or family.base
    if architecture not in family.builders:
        raise SpecError(f"{origin}: config key 'architectures': got {shown(architecture)}: not an architecture "
                        f"layercalc imports for model_type {model_type!r}; supported: {', '.join(family.builders)}")
    config = Config(data, origin, family.aliases, model_type)
    spec = family.builders[architecture](config, architecture)
    name = data.get("_name_or_path")
    declared = config_dtype(data)               # the weights' dtype: the default the network is counted in
    dtype = {"dtype": declared[1]} if declared is not None and declared[1] in CONFIG_DTYPES else {}
    return {"name": name if isinstance(name, str) and name else model_type, **dtype, **spec}


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
    family = ARCHITECTURES[model_type]
    architecture = _first_architecture(data, origin)
    notes = [architecture or f"{family.base} (no architectures in the config: the base model)"]
    if spec is None:                        # (layercalc.convert passes the spec it has already made)
        spec = spec_from_config(data, origin)
    config = Config(data, origin, family.aliases, model_type)
    key = family.positions_key
    if family.input_note is not None:
        line = family.input_note(config, spec)
        if line:
            notes.append(line)
    elif key is None:
        notes.append(f"input: the image {spec['input']} (num_channels, image_size)")
    else:
        positions = config.integer(key) if config.raw(key, None) is not None else None
        source = (f"min({key} {positions}, {DEFAULT_MAX_TOKENS})" if positions is not None
                  else f"the {model_type} default {key}, at most {DEFAULT_MAX_TOKENS}")
        notes.append(f"input: {spec['input'][0]} tokens ({source}); --input N for N tokens")
    if family.notes is not None:
        notes += family.notes(config)
    return notes


# ============================================================================================ the weights

#: state_dict entries that are no parameters of the model: buffers older checkpoints saved (GPT-2's causal mask
#: ``attn.bias`` and ``attn.masked_bias``, BERT's ``position_ids``, the rotary ``inv_freq``) and BERT's
#: ``cls.predictions.decoder.bias``, the same tensor as ``cls.predictions.bias``
_NOT_PARAMETERS = (".attn.bias", ".attn.masked_bias", "embeddings.position_ids", "embeddings.token_type_ids",
                   "rotary_emb.inv_freq", "cls.predictions.decoder.bias")

#: the projections of an attention layer in each family's modules: q, k, v, output (GPT-2: c_attn holds q, k, v)
_PROJECTIONS = {"q": ("q_proj", "self.query"), "k": ("k_proj", "self.key"), "v": ("v_proj", "self.value"),
                "out": ("o_proj", "output.dense", "c_proj")}


def weights_from_state_dict(config: Mapping, state_dict: Mapping, origin: str = "state_dict") -> dict[str, Any]:
    """A transformers model's ``state_dict`` (tensors or arrays) as the executor's weights for the network
    :func:`spec_from_config` builds from the same config: ``{layer name: {parameter: array}}``, for
    ``net.run(weights=...)`` and ``verify``.

    Each entry belongs to the layer whose name is its longest prefix. Attention layers take q, k, v and the
    output projection in PyTorch's layout (stacked as one ``qkv_proj_weight`` where the model fuses them: GPT-2,
    Phi-3, GPT-NeoX);
    GPT-2's Conv1D weights (``[in, out]``: c_attn, c_proj, c_fc) are transposed; parameters stored with extra
    leading 1s (ViT's ``cls_token`` ``[1, 1, d]``) are reshaped. Tied layers use their owner's arrays. An entry
    that belongs to no layer, a missing one or a shape that differs is a SpecError naming the entry.
    """
    import numpy as np

    origin = safe_text(origin)
    net = from_data(spec_from_config(config, origin), origin)
    steps = net.resolve()
    by_name = {step.name: step for step in steps}
    # transformers' Conv1D modules (GPT-2's c_attn, c_proj, c_fc) hold weight [in, out]; its heads are nn.Linear
    conv1d_modules = ARCHITECTURES[_model_type(config, origin)].conv1d_modules
    conv1d = bool(conv1d_modules)
    owned: dict[str, dict[str, Any]] = {}
    unexpected = []
    model_type = _model_type(config, origin)
    family = ARCHITECTURES[model_type]
    split = family.state_dict_entries
    entries = ((str(key), value) for key, value in state_dict.items())
    if split is not None:
        reader = Config(config, origin, family.aliases, model_type)
        entries = (entry for key, value in entries for entry in split(reader, key, value))
    for key, value in entries:
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
    copies: list[tuple[str, str, dict[str, Any]]] = []       # (tied layer, its owner, the state_dict's copies)
    for step in steps:
        local = owned.pop(step.name, {})
        specs = step.layer.param_specs(step, net.channels_last)
        if step.layer.tied_to is not None or not specs:
            if local and step.layer.tied_to is None:
                raise SpecError(f"{origin}: {', '.join(f'{step.name}.{k}' for k in local)}: the layer "
                                f"{step.name!r} ({step.layer.type_name}) has no parameters")
            if local and step.layer.tied_to is not None:
                copies.append((step.name, step.layer.tied_to, local))
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
                if conv1d and step.name.endswith(conv1d_modules) and param == "weight":
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
    for name, owner, local in copies:        # a tied layer's copy must be its owner's tensor, not one of its own
        for param, value in local.items():
            theirs = weights.get(owner, {}).get(param)
            if theirs is not None and (value.shape != theirs.shape or not np.array_equal(value, theirs)):
                raise SpecError(f"{origin}: {name}.{param} differs from {owner}.{param}, to which the layer is tied "
                                f"(as transformers builds this config): weights of a model with its own {name} "
                                f"(T5 v1.1, Flan-T5 checkpoints) are not this network's")
    return weights


def _array(value: Any, np: Any) -> Any:
    from ...kernels import as_numpy  # deferred: NumPy is loaded only when weights are read
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
        if param.startswith(("in_proj_", "qkv_proj_")):         # q, k, v in one tensor, rows q then k then v
            kind = param.rpartition("_")[2]
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
