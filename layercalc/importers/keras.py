"""Keras models as layercalc spec data: ``model.to_json()`` (Keras 3 and Keras 2 style) and ``.keras`` archives.

Read with the standard library only (json, zipfile): no Keras or TensorFlow needed. The result is the mapping a
hand-written spec holds, written in Keras' own terms — layer types are Keras class names (``Conv2D``,
``MaxPooling2D``), fields Keras' argument names, layer names Keras' (so weights exported by Keras map onto the
layers) — and the network's layout is Keras' ``channels_last`` (NHWC) unless every layer says ``channels_first``.

Which layercalc type implements which Keras class is said by each layer family (``keras_classes`` of the types in
:mod:`layercalc.layers`); this module holds only the Keras plumbing:

- the model's structure: Sequential and Functional (``inbound_nodes`` wiring, layers with several inputs such as
  Add and Concatenate, tensors ``NAME:i`` of layers with several outputs), the input shape from the InputLayer;
- which configuration keys say nothing about shapes or counts (names, dtype policies, initializers, regularizers,
  constraints, seeds, training-only switches): dropped. Keys with no effect at one value only (``renorm: false``,
  ``go_backwards: false``, ``return_state: false``) are dropped at that value and refused at any other;
- every other key is passed to the layer type, which refuses what it does not read. A key no layercalc type reads,
  or a Keras class no type implements, is an error naming the layer, the key (or class) and the value — never
  skipped or counted as zero.

``trainable: false`` is kept as the layer's ``trainable`` field (its weights count as Keras' non-trainable params).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

from ..errors import SpecError, safe_text, shown

__all__ = ["spec_from_json", "spec_from_archive", "MAX_CONFIG_BYTES"]

#: the largest config.json read from a .keras archive (its declared size is checked before reading); a model's
#: configuration is text describing its layers, far below this even for hundreds of layers
MAX_CONFIG_BYTES = 16 * 2**20

#: configuration keys that never change a shape or a count
_DROPPED = {"name", "dtype", "seed", "autocast", "build_config", "compile_config", "batch_input_shape",
            "batch_shape", "input_shape", "recurrent_dropout", "unroll", "stateful",
            "use_cudnn", "unit_forget_bias", "implementation", "synchronized", "renorm_momentum", "mask_zero",
            "input_length", "lora_alpha", "zero_output_for_mask"}
_DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")

#: keys with no effect on shapes, counts or the forward step at the values accepted here (Keras' defaults)
_NEUTRAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "renorm": (lambda v: v is False, "false (batch renormalization is not supported)"),
    "renorm_clipping": (lambda v: v is None, "null"),
    "go_backwards": (lambda v: v is False, "false (a reversed sequence is not supported)"),
    "return_state": (lambda v: v is False, "false (the final states as extra outputs are not supported)"),
    "time_major": (lambda v: v is False, "false"),
    "sparse": (lambda v: v is False, "false"),
    "ragged": (lambda v: v is False, "false"),
    "lora_rank": (lambda v: v is None, "null (LoRA weights are not supported)"),
    "quantization_config": (lambda v: v is None, "null (quantized layers are not supported)"),
    "use_gate": (lambda v: v is False, "false (gated attention is not supported)"),
    "sliding_window": (lambda v: v is None, "null"),
    "flash_attention": (lambda v: v in (None, False, True), "null, true or false"),
    # the one attention axis of a [N, L, E] input (MultiHeadAttention's only form here)
    "attention_axes": (lambda v: v in (None, [1], (1,), 1), "null or [1] (attention over the sequence axis)"),
}

#: the call arguments of layers whose inputs are not simply listed: Keras' order → layercalc's. MultiHeadAttention
#: is called (query, value, key); layercalc takes [query], [query, key = value] or [query, key, value].
_CALL_ROLES = {"MultiHeadAttention": ("query", "value", "key")}

#: Keras values written in another form than the layer type's field takes: MultiHeadAttention's output_shape is
#: saved as a one-element list, the type's output_dim is the int
_VALUE_FORMS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("MultiHeadAttention", "output_shape"): lambda v: v[0] if isinstance(v, list) and len(v) == 1 else v,
}

#: Keras' model classes read here (a Functional model is saved as "Functional", by Keras 2 also as "Model")
_SEQUENTIAL = {"Sequential"}
_FUNCTIONAL = {"Functional", "Model"}


# ---------------------------------------------------------------------------------------------------- entry points

def spec_from_archive(path: Path, origin: str) -> dict:
    """Spec data of a ``.keras`` file: the zip's config.json, read after checking its declared size."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                names = archive.namelist()
                listed = ", ".join(safe_text(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
                raise SpecError(f"{origin}: a zip archive without config.json ({listed or 'empty'}): not a Keras "
                                f".keras file") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise SpecError(f"{origin}: config.json declares {info.file_size:,} bytes uncompressed, more than "
                                f"the {MAX_CONFIG_BYTES // 2**20} MiB a model configuration may have: refused "
                                f"unread")
            with archive.open(info) as stream:
                # zipfile stops at the declared size (and checks the CRC), so this reads at most the cap
                raw = stream.read(MAX_CONFIG_BYTES + 1)
    except zipfile.BadZipFile as exc:
        raise SpecError(f"{origin}: not a readable zip archive (a .keras file is one): {exc}") from None
    except OSError as exc:
        raise SpecError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SpecError(f"{origin}: config.json is larger than {MAX_CONFIG_BYTES // 2**20} MiB: refused")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"{origin}: config.json is not JSON: {exc}") from None
    if not isinstance(data, Mapping) or "class_name" not in data or "config" not in data:
        raise SpecError(f"{origin}: config.json holds no Keras model (expected 'class_name' and 'config')")
    return spec_from_json(data, f"{origin}: config.json")


def spec_from_json(data: Mapping, origin: str) -> dict:
    """Spec data of a Keras model's JSON (``model.to_json()``, or a .keras file's config.json)."""
    class_name = data.get("class_name")
    config = data.get("config")
    if not isinstance(config, Mapping):
        raise SpecError(f"{origin}: Keras model {shown(class_name)}: 'config' is not a mapping")
    if class_name in _SEQUENTIAL:
        layers, input_shape = _Model(origin).sequential(config)
    elif class_name in _FUNCTIONAL:
        layers, input_shape = _Model(origin).functional(config)
    else:
        raise SpecError(f"{origin}: class {shown(class_name)} is not a Keras model this importer reads "
                        f"(Sequential, Functional)")
    formats = {layer.get("data_format") for layer in layers} - {None}
    spec: dict[str, Any] = {}
    if isinstance(config.get("name"), str):
        spec["name"] = config["name"]
    spec["input"] = input_shape
    spec["layout"] = "channels_first" if formats == {"channels_first"} else "channels_last"
    spec["layers"] = layers
    return spec


# ------------------------------------------------------------------------------------------------------- models

class _Model:
    """One model being read: its origin (for messages) and the names of its input layers."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.inputs: set[str] = set()

    def fail(self, index: Optional[int], name: Any, class_name: Any, message: str) -> SpecError:
        where = f"layer {index} " if index is not None else "layer "
        return SpecError(f"{self.origin}: {where}{shown(name)} (Keras {safe_text(str(class_name))}): {message}")

    # -------------------------------------------------------------------------------------------- sequential

    def sequential(self, config: Mapping) -> tuple[list[dict], list[int]]:
        raw_layers = config.get("layers")
        if not isinstance(raw_layers, list) or not raw_layers:
            raise SpecError(f"{self.origin}: Sequential model without layers")
        input_shape = _batch_shape(config.get("build_input_shape"))
        layers = []
        for index, raw in enumerate(raw_layers):
            class_name, layer_config = _class_and_config(raw)
            if class_name == "InputLayer":
                input_shape = self.input_shape(index, layer_config, class_name)
                continue
            if input_shape is None and isinstance(layer_config, Mapping):   # Keras 2: on the first layer
                input_shape = _batch_shape(layer_config.get("batch_input_shape") or layer_config.get("batch_shape"))
            layers.append(self.layer(index, raw, class_name, layer_config))
        if input_shape is None:
            raise SpecError(f"{self.origin}: the Sequential model has no input shape (no InputLayer, no "
                            f"batch_input_shape, no build_input_shape): build it with keras.Input(...) first")
        if not layers:
            raise SpecError(f"{self.origin}: the Sequential model has no layers besides its input")
        return layers, input_shape

    # -------------------------------------------------------------------------------------------- functional

    def functional(self, config: Mapping) -> tuple[list[dict], list[int]]:
        raw_layers = config.get("layers")
        if not isinstance(raw_layers, list) or not raw_layers:
            raise SpecError(f"{self.origin}: Functional model without layers")
        input_shape = None
        layers = []
        for index, raw in enumerate(raw_layers):
            class_name, layer_config = _class_and_config(raw)
            name = raw.get("name") if isinstance(raw, Mapping) and raw.get("name") else (
                layer_config.get("name") if isinstance(layer_config, Mapping) else None)
            if class_name == "InputLayer":
                if self.inputs:
                    raise self.fail(index, name, class_name,
                                    f"a second input (after {', '.join(sorted(self.inputs))}): layercalc networks "
                                    f"have one input")
                input_shape = self.input_shape(index, layer_config, class_name)
                self.inputs.add(str(name))
                continue
            layer = self.layer(index, raw, class_name, layer_config)
            nodes = raw.get("inbound_nodes") if isinstance(raw, Mapping) else None
            if not isinstance(nodes, list) or not nodes:
                raise self.fail(index, name, class_name, "no inbound_nodes: the layer is not called in the model")
            if len(nodes) > 1:
                raise self.fail(index, name, class_name,
                                f"called {len(nodes)} times (a shared layer): not supported, each call would need "
                                f"its own layer")
            inputs, call_fields = self.node_inputs(index, name, class_name, nodes[0])
            layer["inputs"] = inputs
            layer.update(call_fields)
            layers.append(layer)
        if input_shape is None:
            raise SpecError(f"{self.origin}: the Functional model has no InputLayer")
        return layers, input_shape

    def node_inputs(self, index: int, name: Any, class_name: str, node: Any) -> tuple[list[str], dict]:
        """The tensors one call reads (layercalc input names, in layercalc's order) and the call's arguments that
        are layer fields (MultiHeadAttention's use_causal_mask)."""
        if isinstance(node, Mapping):                           # Keras 3: {"args": [...], "kwargs": {...}}
            args, kwargs = node.get("args", []), node.get("kwargs", {}) or {}
            positional = [self.tensor_name(index, name, class_name, t) for t in _tensors(args)]
            named = {}
            fields = {}
            for key, value in kwargs.items():
                tensors = _tensors(value)
                if tensors:
                    if len(tensors) != 1:
                        raise self.fail(index, name, class_name, f"call argument {key!r}: several tensors")
                    named[key] = self.tensor_name(index, name, class_name, tensors[0])
                elif value is None or value is False or key == "training":
                    continue
                else:
                    fields[key] = value
        elif isinstance(node, list):                            # Keras 2: [[layer, node, tensor, kwargs], ...]
            positional, named, fields = [], {}, {}
            for entry in node:
                if not isinstance(entry, list) or len(entry) < 3:
                    raise self.fail(index, name, class_name, f"inbound node {shown(entry)} is not understood")
                positional.append(self.history_name(index, name, class_name, entry[:3]))
                extra = entry[3] if len(entry) > 3 and isinstance(entry[3], Mapping) else {}
                for key, value in extra.items():
                    if not (value is None or value is False or key == "training"):
                        fields[key] = value
        else:
            raise self.fail(index, name, class_name, f"inbound node {shown(node)} is not understood")
        roles = _CALL_ROLES.get(class_name)
        if roles is None:
            if named:
                raise self.fail(index, name, class_name, f"tensor call argument(s) {', '.join(sorted(named))} "
                                                         f"are not supported")
            return positional, fields
        given = dict(zip(roles, positional))
        for key, tensor in named.items():
            if key not in roles:
                raise self.fail(index, name, class_name, f"call argument {key!r} (a tensor) is not supported "
                                                         f"(masks change which values are read)")
            given[key] = tensor
        query, value, key_ = given.get("query"), given.get("value"), given.get("key")
        if query is None or value is None:
            raise self.fail(index, name, class_name, "needs a query and a value")
        inputs = [query, value] if key_ is None or key_ == value else [query, key_, value]
        return inputs, fields

    def tensor_name(self, index: int, name: Any, class_name: str, tensor: Mapping) -> str:
        history = tensor.get("config", {}).get("keras_history")
        if not isinstance(history, list) or len(history) < 3:
            raise self.fail(index, name, class_name, f"input tensor without keras_history: {shown(tensor)}")
        return self.history_name(index, name, class_name, history)

    def history_name(self, index: int, name: Any, class_name: str, history: list) -> str:
        source, node_index, tensor_index = history[:3]
        if node_index != 0:
            raise self.fail(index, name, class_name, f"reads call {node_index} of layer {shown(source)} (a shared "
                                                     f"layer): not supported")
        if source in self.inputs:
            return "input"
        return str(source) if tensor_index == 0 else f"{source}:{tensor_index}"

    # ----------------------------------------------------------------------------------------------- layers

    def input_shape(self, index: int, config: Any, class_name: str) -> list[int]:
        shape = None
        if isinstance(config, Mapping):
            shape = _batch_shape(config.get("batch_shape") or config.get("batch_input_shape"))
        if shape is None:
            name = config.get("name") if isinstance(config, Mapping) else None
            raise self.fail(index, name, class_name,
                            f"batch_shape {shown(config.get('batch_shape') if isinstance(config, Mapping) else None)}"
                            f": every size after the batch must be known (give keras.Input a full shape)")
        return shape

    def layer(self, index: int, raw: Any, class_name: Any, config: Any) -> dict:
        """One layer as spec data: its Keras class as the type, its name, and the keys that bear on the figures."""
        from ..layers import KERAS_CLASSES, accepted_fields, load_plugins

        name = config.get("name") if isinstance(config, Mapping) else None
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            name = raw["name"]
        if not isinstance(class_name, str) or not isinstance(config, Mapping):
            raise self.fail(index, name, class_name, f"not a Keras layer description: {shown(raw)}")
        if class_name in _SEQUENTIAL | _FUNCTIONAL:
            raise self.fail(index, name, class_name, "a model nested as a layer: not supported (flatten it into "
                                                     "one model)")
        cls = KERAS_CLASSES.get(class_name)
        if cls is None:
            load_plugins()
            cls = KERAS_CLASSES.get(class_name)
        if cls is None:
            raise self.fail(index, name, class_name, f"Keras layer class {class_name!r} has no layercalc type (the "
                                                     f"Keras classes read: {', '.join(sorted(KERAS_CLASSES))})")
        accepted = set(accepted_fields(cls))
        layer: dict[str, Any] = {"name": name, "type": class_name} if name is not None else {"type": class_name}
        for key, value in config.items():
            if key in _DROPPED or key.endswith(_DROPPED_SUFFIXES):
                continue
            if key == "trainable":
                if value is False:
                    layer["trainable"] = False
                continue
            if key in _NEUTRAL:
                check, allowed = _NEUTRAL[key]
                if not _safe_check(check, value):
                    raise self.fail(index, name, class_name, f"config {key!r} is {shown(value)}; supported: {allowed}")
                continue
            if value is None:               # Keras' None: its default, which the layer type's default is
                continue
            if key not in accepted and not _read_by(cls, class_name, key, value):
                raise self.fail(index, name, class_name,
                                f"config {key!r} = {shown(value)} is not understood by layercalc's "
                                f"{cls.model_fields['type'].default} type; it may change the figures, so it is "
                                f"refused rather than ignored")
            form = _VALUE_FORMS.get((class_name, key))
            layer[key] = form(value) if form is not None else value
        return layer


# ------------------------------------------------------------------------------------------------------ helpers

def _safe_check(check: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(check(value))
    except TypeError:                              # an unhashable or odd value: not the accepted one
        return False


def _read_by(cls: Any, class_name: str, key: str, value: Any) -> bool:
    """Whether the type reads a Keras key through its ``from_keras`` (LayerNormalization's center and scale)."""
    try:
        return key not in cls.from_keras(class_name, {key: value})
    except ValueError:
        return True                                # read, and refused with its own message when parsed


def _class_and_config(raw: Any) -> tuple[Any, Any]:
    if not isinstance(raw, Mapping):
        return None, None
    return raw.get("class_name"), raw.get("config")


def _batch_shape(value: Any) -> Optional[list[int]]:
    """[None, 28, 28, 1] → [28, 28, 1]; None when absent or when a size after the batch is unknown."""
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        return None
    sizes = list(value[1:])
    if any(not isinstance(s, int) or isinstance(s, bool) for s in sizes):
        return None
    return sizes


def _tensors(value: Any) -> list[Mapping]:
    """The Keras tensors in a call argument (a tensor, or lists of them), in order."""
    if isinstance(value, Mapping):
        return [value] if value.get("class_name") == "__keras_tensor__" else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []
