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

What a file may cost is bounded before it is read (docs/importers.md, "Hostile files"): archive members by
:func:`read_member`, a model's layers counted and its nesting checked before any is read, weights by the network's
parameters before any array is read.

Weights (:func:`weights_from_keras`, and ``--weights`` given a ``.keras`` or ``.weights.h5`` file): Keras 3 saves
them in HDF5 (``model.weights.h5`` inside a ``.keras`` zip, or ``model.save_weights``), read with ``h5py`` (the
``keras`` extra). Each layer's group, ``layers/<class>[_n]``, holds its variables as ``vars/0``, ``vars/1`` … in
the order of ``layer.weights``, its sub-objects' under their own groups (``cell/vars``, ``query_dense/vars``), and
the layer's name as the ``name`` attribute of ``vars``. Which array is which, and how it becomes the PyTorch layout
the executor reads, is said by each layer type (:meth:`~layercalc.layers.base.LayerBase.keras_weights`).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from ..blocks import MAX_LAYERS
from ..errors import LayerCalcError, ResourceError, SpecError, did_you_mean, layer_label, safe_text, shown

# the spec's JSON reader (duplicate keys, NaN and nesting refused) and its bound on nesting, for Keras' JSON too
from ..spec import _check_depth, parse_text
from . import load_network

__all__ = ["spec_from_json", "spec_from_archive", "MAX_CONFIG_BYTES", "weights_from_keras", "keras_weights_kind",
           "read_keras_weights", "read_member"]

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

#: Keras keys whose None is not the default but a value of its own, in the layer type's form: Normalization's
#: ``axis: None`` is one mean and variance for the whole input (its default is -1)
_NONE_VALUES: dict[tuple[str, str], Any] = {("Normalization", "axis"): []}

#: Keras' model classes read here (a Functional model is saved as "Functional", by Keras 2 also as "Model")
_SEQUENTIAL = {"Sequential"}
_FUNCTIONAL = {"Functional", "Model"}


# ---------------------------------------------------------------------------------------------------- entry points

def spec_from_archive(path: Path, origin: str) -> dict:
    """Spec data of a ``.keras`` file: the zip's config.json, read after checking its declared size."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                listed = ", ".join(safe_text(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
                raise SpecError(f"{origin}: a zip archive without config.json ({listed or 'empty'}): not a Keras "
                                f".keras file")
            raw = read_member(archive, "config.json", origin, MAX_CONFIG_BYTES,
                              f"the {MAX_CONFIG_BYTES // 2**20} MiB a model configuration may have")
    except zipfile.BadZipFile as exc:
        raise SpecError(f"{origin}: not a readable zip archive (a .keras file is one): "
                        f"{safe_text(str(exc))}") from None
    except OSError as exc:
        raise SpecError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{origin}: config.json is not JSON: {exc}") from None
    data = parse_text(text, f"{origin}: config.json", fmt="json")
    if not isinstance(data, Mapping) or "class_name" not in data or "config" not in data:
        raise SpecError(f"{origin}: config.json holds no Keras model (expected 'class_name' and 'config')")
    return spec_from_json(data, f"{origin}: config.json")


#: the compression methods Python's zipfile reads (stored, deflate, bzip2, LZMA); Keras writes the first two
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "LZMA"}
#: what a damaged member raises while it is decompressed (a bad CRC, a truncated or corrupt stream)
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)


def read_member(archive: zipfile.ZipFile, name: str, origin: str, cap: int, cap_text: str,
                over_cap: type[LayerCalcError] = SpecError) -> bytes:
    """The bytes of one member of a zip archive, at most ``cap`` of them (``cap_text`` says what the cap is): an
    encrypted member or one compressed by a method zipfile cannot read is refused by name, a declared size above the
    cap is refused unread (``over_cap``: ResourceError when the cap is the memory limit), and no more than the cap is
    decompressed whatever the header declares."""
    info = archive.getinfo(name)
    where = f"{origin}: {safe_text(name)}"
    if info.flag_bits & 0x1:
        raise SpecError(f"{where} is encrypted: refused (Keras writes archives without a password)")
    if info.compress_type not in _ZIP_METHODS:
        known = {93: " (zstd)", 95: " (xz)", 98: " (PPMd)", 9: " (deflate64)"}.get(info.compress_type, "")
        raise SpecError(f"{where} is compressed with zip method {info.compress_type}{known}, which layercalc cannot "
                        f"read; supported: {', '.join(_ZIP_METHODS.values())} (Keras writes stored or deflate)")
    if info.file_size > cap:
        raise over_cap(f"{where} declares {info.file_size:,} bytes uncompressed, more than {cap_text}: refused "
                       f"unread")
    try:
        with archive.open(info) as stream:
            # zipfile stops at the declared size (and checks the CRC); the cap holds even if it did not
            raw = stream.read(cap + 1)
    except _MEMBER_ERRORS as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{where}: cannot be decompressed ({safe_text(text[:120])}): a damaged archive") from None
    if len(raw) > cap:
        raise over_cap(f"{where} inflates to more than {cap_text}: refused")
    return raw


def spec_from_json(data: Mapping, origin: str) -> dict:
    """Spec data of a Keras model's JSON (``model.to_json()``, or a .keras file's config.json)."""
    class_name = data.get("class_name")
    config = data.get("config")
    # layers counted before any is read (a spec's cap), then every value's nesting bounded (as a spec's is) before
    # the walks below recurse into call arguments or a message shows a value
    raw_layers = config.get("layers") if isinstance(config, Mapping) else None
    if isinstance(raw_layers, list) and len(raw_layers) > MAX_LAYERS:
        raise SpecError(f"{origin}: the model has {len(raw_layers):,} layers; a network may have at most "
                        f"{MAX_LAYERS:,}")
    _check_depth(data, origin)
    if not isinstance(config, Mapping):
        raise SpecError(f"{origin}: Keras model {shown(class_name)}: 'config' is not a mapping")
    if not isinstance(class_name, str):
        raise SpecError(f"{origin}: 'class_name' is {shown(class_name)}: expected the model's class (Sequential, "
                        f"Functional)")
    if class_name in _SEQUENTIAL:
        layers, input_shape = _Model(origin).sequential(config)
    elif class_name in _FUNCTIONAL:
        layers, input_shape = _Model(origin).functional(config)
    else:
        raise SpecError(f"{origin}: class {shown(class_name)} is not a Keras model this importer reads "
                        f"(Sequential, Functional)")
    formats = {layer.get("data_format") for layer in layers if isinstance(layer.get("data_format"), str)}
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
        self.aliases: dict[str, str] = {}          # a nested Sequential's name → its last layer's

    def fail(self, index: Optional[int], name: Any, class_name: Any, message: str) -> SpecError:
        where = f"layer {index} " if index is not None else "layer "
        return SpecError(f"{self.origin}: {where}{shown(name)} (Keras {safe_text(str(class_name))[:80]}): {message}")

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
            if isinstance(class_name, str) and class_name in _SEQUENTIAL and isinstance(layer_config, Mapping):
                inner, inner_shape = self.nested(index, raw, class_name, layer_config)
                input_shape = input_shape or inner_shape
                layers += inner
                continue
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
                                    f"a second input (after {', '.join(map(shown, sorted(self.inputs)))}): "
                                    f"layercalc networks have one input")
                input_shape = self.input_shape(index, layer_config, class_name)
                self.inputs.add(str(name))
                continue
            nested = isinstance(class_name, str) and class_name in _SEQUENTIAL and isinstance(layer_config, Mapping)
            inner = self.nested(index, raw, class_name, layer_config)[0] if nested else []
            layer = inner[0] if nested else self.layer(index, raw, class_name, layer_config)
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
            if nested:                        # its layers in a row (each reads the one before); read by its name
                layers += inner
                self.aliases[str(name)] = str(inner[-1].get("name"))
            else:
                layers.append(layer)
        if input_shape is None:
            raise SpecError(f"{self.origin}: the Functional model has no InputLayer")
        return layers, input_shape

    def node_inputs(self, index: int, name: Any, class_name: str, node: Any) -> tuple[list[str], dict]:
        """The tensors one call reads (layercalc input names, in layercalc's order) and the call's arguments that
        are layer fields (MultiHeadAttention's use_causal_mask)."""
        if isinstance(node, Mapping):                           # Keras 3: {"args": [...], "kwargs": {...}}
            args, kwargs = node.get("args", []), node.get("kwargs", {}) or {}
            if not isinstance(kwargs, Mapping):
                raise self.fail(index, name, class_name, f"inbound node kwargs {shown(kwargs)} are not a mapping")
            positional = [self.tensor_name(index, name, class_name, t) for t in _tensors(args)]
            named = {}
            fields = {}
            for key, value in kwargs.items():
                tensors = _tensors(value)
                if tensors:
                    if len(tensors) != 1:
                        raise self.fail(index, name, class_name, f"call argument {shown(key)}: several tensors")
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
                raise self.fail(index, name, class_name, f"tensor call argument(s) "
                                                         f"{', '.join(shown(key) for key in sorted(named))} "
                                                         f"are not supported")
            return positional, fields
        given = dict(zip(roles, positional))
        for key, tensor in named.items():
            if key not in roles:
                raise self.fail(index, name, class_name, f"call argument {shown(key)} (a tensor) is not supported "
                                                         f"(masks change which values are read)")
            given[key] = tensor
        query, value, key_ = given.get("query"), given.get("value"), given.get("key")
        if query is None or value is None:
            raise self.fail(index, name, class_name, "needs a query and a value")
        inputs = [query, value] if key_ is None or key_ == value else [query, key_, value]
        return inputs, fields

    def tensor_name(self, index: int, name: Any, class_name: str, tensor: Mapping) -> str:
        config = tensor.get("config")
        history = config.get("keras_history") if isinstance(config, Mapping) else None
        if not isinstance(history, list) or len(history) < 3:
            raise self.fail(index, name, class_name, f"input tensor without keras_history: {shown(tensor)}")
        return self.history_name(index, name, class_name, history)

    def history_name(self, index: int, name: Any, class_name: str, history: list) -> str:
        source, node_index, tensor_index = history[:3]
        if not isinstance(source, str) or not all(type(i) is int and i >= 0 for i in (node_index, tensor_index)):
            raise self.fail(index, name, class_name, f"keras_history {shown(history)} is not [layer name, call "
                                                     f"index, tensor index]")
        if node_index != 0:
            raise self.fail(index, name, class_name, f"reads call {node_index} of layer {shown(source)} (a shared "
                                                     f"layer): not supported")
        if source in self.inputs:
            return "input"
        source = self.aliases.get(source, source)
        return source if tensor_index == 0 else f"{source}:{tensor_index}"

    def nested(self, index: int, raw: Any, class_name: str, config: Mapping) -> tuple[list[dict], list[int]]:
        """A Sequential model used as a layer (keras.io's ``data_augmentation = keras.Sequential([...])`` called
        on the input): its layers, spliced in where it is called, and its input shape."""
        name = config.get("name")
        layers, input_shape = _Model(self.origin).sequential(config)
        if any(not isinstance(layer.get("name"), str) for layer in layers):
            raise self.fail(index, name, class_name, "a nested Sequential's layers need names")
        return layers, input_shape

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
        # deferred: the complete registry (every family's models, ~0.1 s) only when a Keras layer is read, not
        # when sources.weights_reader asks this module whether a weights file is Keras'
        from ..layers import KERAS_CLASSES, accepted_fields, load_plugins

        name = config.get("name") if isinstance(config, Mapping) else None
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            name = raw["name"]
        if not isinstance(class_name, str) or not isinstance(config, Mapping):
            raise self.fail(index, name, class_name, f"not a Keras layer description: {shown(raw)}")
        if class_name in _FUNCTIONAL:
            raise self.fail(index, name, class_name, "a Functional model nested as a layer: not supported (flatten "
                                                     "it into one model; a nested Sequential is read)")
        cls = KERAS_CLASSES.get(class_name)
        if cls is None:
            load_plugins()
            cls = KERAS_CLASSES.get(class_name)
        if cls is None:
            raise self.fail(index, name, class_name, f"Keras layer class {shown(class_name)} has no layercalc type "
                                                     f"(the Keras classes read: {', '.join(sorted(KERAS_CLASSES))})")
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
            if value is None and (class_name, key) in _NONE_VALUES:
                value = _NONE_VALUES[class_name, key]
            elif value is None:             # Keras' None: its default, which the layer type's default is
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


# ------------------------------------------------------------------------------------------------------ weights

#: the .keras archive's member holding the weights, and the first bytes of every HDF5 file (Keras writes no user
#: block before them)
WEIGHTS_MEMBER = "model.weights.h5"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: what reading a damaged or foreign file raises (h5py: OSError, KeyError, ValueError, TypeError), turned into one line
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError, zipfile.BadZipFile, zlib.error)


def keras_weights_kind(path: Union[str, os.PathLike]) -> Optional[str]:
    """``"archive"`` for a zip holding model.weights.h5 (a ``.keras`` file), ``"h5"`` for an HDF5 file
    (``model.save_weights``' ``.weights.h5``), None for anything else (an ``.npz``, a missing file): by content."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(HDF5_MAGIC))
        if head == HDF5_MAGIC:
            return "h5"
        if head.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(path) as archive:
                return "archive" if WEIGHTS_MEMBER in archive.namelist() else None
    except (OSError, zipfile.BadZipFile, ValueError):
        pass
    return None


def weights_from_keras(source: Any, network: Any = None,
                       max_bytes: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """A Keras model's weights as ``{layer_name: {param: array}}`` in layercalc's (PyTorch's) layouts, ready for
    ``net.run(x, weights=...)`` and ``verify``.

    ``source``: a live ``keras.Model``, or the path of a ``.keras`` file or a ``.weights.h5`` file (needs ``h5py``:
    ``pip install 'layercalc[keras]'``). ``network``: the network the weights are for (a ``Network``, or anything
    :func:`layercalc.load` reads); default the model's own, from the ``.keras`` file's or the model's configuration
    — a ``.weights.h5`` file holds none, so it needs one. Weights of a layer the network does not have, or of
    another shape, are a SpecError naming the layer; ``max_bytes`` caps the arrays read.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        kind = keras_weights_kind(path)
        if kind is None:
            what = "no such file" if not os.path.exists(path) else (
                "not a Keras weights file (a .keras zip holding model.weights.h5, or a .weights.h5 HDF5 file)")
            raise SpecError(f"{safe_text(str(path))}: {what}")
        if network is None and kind == "h5":
            raise SpecError(f"{safe_text(str(path))}: a .weights.h5 file holds no model configuration: pass the "
                            f"network it belongs to (network=: its .keras file, model JSON or spec)")
        net = load_network(path if network is None else network)
        return read_keras_weights(path, net.resolve(), net.channels_last, max_bytes)
    if callable(getattr(source, "save_weights", None)) and callable(getattr(source, "to_json", None)):
        import tempfile

        net = load_network(network if network is not None
                           else spec_from_json(json.loads(source.to_json()), "keras.Model"))
        with tempfile.TemporaryDirectory() as folder:        # Keras' own writer: the same file a .keras holds
            path = os.path.join(folder, "model.weights.h5")
            source.save_weights(path)
            return read_keras_weights(path, net.resolve(), net.channels_last, max_bytes, origin="keras.Model")
    raise SpecError(f"weights_from_keras: got {type(source).__name__}: expected a keras.Model or the path of a "
                    f".keras or .weights.h5 file")


def read_keras_weights(path: Union[str, os.PathLike], steps: Optional[list] = None, channels_last: bool = True,
                       max_bytes: Optional[int] = None, origin: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """The weights of a ``.keras`` or ``.weights.h5`` file for a network's resolved ``steps`` (default: the
    ``.keras`` file's own network), converted by each layer's type and checked against its parameters."""
    origin = origin or safe_text(os.fspath(path))
    kind = keras_weights_kind(path)
    if steps is None:
        if kind != "archive":
            raise SpecError(f"{origin}: Keras weights without a model configuration: give the network they are for")
        net = load_network(path)
        steps, channels_last = net.resolve(), net.channels_last
    h5py = _h5py()
    by_name = {step.name: step for step in steps}
    room = {step.name: _room(step, channels_last) for step in steps}
    try:
        if kind == "archive":
            with zipfile.ZipFile(path) as archive:
                # the HDF5 file holds each layer's arrays and a few KiB of groups and headers per layer
                cap = sum(room.values()) * _MAX_ITEMSIZE + 2**20 + 2**16 * len(steps)
                cap_text = f"the {cap:,} bytes this network's weights may take"
                over_cap: type[LayerCalcError] = SpecError
                if max_bytes is not None and max_bytes < cap:
                    cap, cap_text, over_cap = max_bytes, f"the memory limit of {max_bytes:,} bytes", ResourceError
                stream: Any = io.BytesIO(read_member(archive, WEIGHTS_MEMBER, origin, cap, cap_text, over_cap))
        else:
            stream = os.fspath(path)
        with h5py.File(stream, "r") as store:
            variables = _saved_variables(h5py, store, origin, max_bytes, by_name, room)
    except LayerCalcError:
        raise
    except MemoryError:
        raise ResourceError(f"{origin}: not enough memory to read the weights") from None
    except _READ_ERRORS as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{origin}: cannot read Keras weights ({safe_text(text[:120])})") from None
    return _converted(variables, steps, channels_last, origin)


#: the widest number a weights dataset may hold (float64, int64): bounds a layer's bytes from its element count
_MAX_ITEMSIZE = 8
#: elements any layer's saved variables may hold beyond twice its parameters: a file that differs a little from the
#: network (another use_bias, a few more filters) is read, so that its message names the parameter that differs
_SLACK = 1024


def _room(step: Any, channels_last: bool) -> int:
    """How many values a layer's saved variables may hold: Keras saves no more than the parameters (and buffers)
    they become — an LSTM's one bias becomes PyTorch's two — so twice that, and a little, is never a real file's."""
    specs = step.layer.param_specs(step, channels_last)
    return 2 * sum(math.prod(spec.shape) for spec in specs.values()) + _SLACK


def _h5py() -> Any:
    try:
        h5py = importlib.import_module("h5py")          # (untyped: imported by name)
    except ImportError:
        raise SpecError("reading Keras weights (HDF5: model.weights.h5, .weights.h5) needs h5py: pip install "
                        "'layercalc[keras]'") from None
    return h5py


#: how deep a layer's sub-objects nest (an RNN's cell: 1); deeper is not a Keras file (HDF5 allows cycles)
_MAX_NESTING = 8


def _saved_variables(h5py: Any, store: Any, origin: str, max_bytes: Optional[int], by_name: Mapping[str, Any],
                     room: Mapping[str, int]) -> dict[str, dict[str, list]]:
    """``{layer name: {object: [arrays in Keras' order]}}`` (object ``""``: the layer itself); every dataset's
    dtype and declared size checked before any is read: each layer is one of the network's (``by_name``) and its
    variables hold no more values than its ``room``; all of them fit in ``max_bytes``."""
    layers = _member(h5py, store, "layers", origin)
    if not isinstance(layers, h5py.Group):
        raise SpecError(f"{origin}: no 'layers' group: not weights written by Keras 3 (model.save, "
                        f"model.save_weights)")
    found: dict[str, dict[str, list]] = {}
    total = 0
    groups = [(layers, key) for key in layers]
    level = groups
    for _ in range(_MAX_NESTING + 1):
        inner = []
        for parent, key in level:
            group = _member(h5py, parent, key, origin)
            nested = _member(h5py, group, "layers", origin) if isinstance(group, h5py.Group) else None
            if isinstance(nested, h5py.Group):        # a nested Sequential: its layers under its own layers/
                inner += [(nested, child) for child in nested]
        if not inner:
            break
        groups, level = groups + inner, inner
    else:
        raise SpecError(f"{origin}: models nested deeper than {_MAX_NESTING}: not a Keras weights file")
    for parent, key in groups:
        group = _member(h5py, parent, key, origin)
        if not isinstance(group, h5py.Group):
            raise SpecError(f"{origin}: layers/{safe_text(key)} is not a group: not weights written by Keras 3")
        if isinstance(_member(h5py, group, "layers", origin), h5py.Group):
            continue                                  # a nested model: its layers are read on their own
        holders: list[tuple[str, Any]] = []           # (object, its vars group): "" the layer's own, "cell", …
        _find_vars(h5py, group, "", holders, origin)
        objects: dict[str, list] = {}
        for owner, holder in holders:
            datasets = []
            for index in range(len(holder)):
                dataset = _member(h5py, holder, str(index), origin)
                if not isinstance(dataset, h5py.Dataset):
                    listed = safe_text(", ".join(sorted(holder))[:200])
                    raise SpecError(f"{origin}: {safe_text(holder.name)}: expected variables 0..{len(holder) - 1}, "
                                    f"found {listed}")
                if dataset.dtype.kind not in "fiu" or dataset.dtype.fields is not None:
                    raise SpecError(f"{origin}: {safe_text(dataset.name)} holds {dataset.dtype} values, expected "
                                    f"numbers")
                if dataset.dtype.itemsize > _MAX_ITEMSIZE:
                    raise SpecError(f"{origin}: {safe_text(dataset.name)} holds {dataset.dtype} values, wider than "
                                    f"Keras saves (at most {_MAX_ITEMSIZE} bytes a number)")
                datasets.append(dataset)
            if datasets:
                objects[owner] = datasets
        if not objects:                                  # a layer without weights (Flatten, the input)
            continue
        own = dict(holders).get("")
        name = own.attrs.get("name") if own is not None else None
        name = name.decode(errors="replace") if isinstance(name, bytes) else name
        if not isinstance(name, str):
            raise SpecError(f"{origin}: layers/{safe_text(key)} has no layer name (the 'name' attribute Keras 3 "
                            f"writes on its vars group): re-save the model with a current Keras 3")
        if name not in by_name:
            hint = did_you_mean(name, by_name) or " (weights of another model?)"
            raise SpecError(f"{origin}: holds the weights of a Keras layer {shown(name)}; the network has no layer of "
                            f"that name{hint}")
        declared = sum(dataset.size for datasets in objects.values() for dataset in datasets)
        if declared > room[name]:
            step = by_name[name]
            shapes = "; ".join(", ".join(str(list(d.shape)) for d in datasets) for datasets in objects.values())
            raise SpecError(f"{origin}: weights for {layer_label(step.index, step.name, step.layer.type_name)}: the "
                            f"file declares {declared:,} values ({safe_text(shapes)[:200]}), far more than the "
                            f"layer's parameters hold: not this network's weights, refused unread")
        total += sum(dataset.size * dataset.dtype.itemsize for datasets in objects.values() for dataset in datasets)
        found[name] = objects
    if max_bytes is not None and total > max_bytes:
        raise ResourceError(f"{origin}: the weights' arrays hold {total:,} bytes, above the memory limit of "
                            f"{max_bytes:,}")
    return {name: {owner: [dataset[()] for dataset in datasets] for owner, datasets in objects.items()}
            for name, objects in found.items()}


def _find_vars(h5py: Any, group: Any, prefix: str, holders: list, origin: str, depth: int = 0) -> None:
    """Every ``vars`` group under ``group``, with the path of the object holding it (``""``, ``cell``)."""
    if depth > _MAX_NESTING:
        raise SpecError(f"{origin}: {safe_text(group.name)}: groups nested deeper than {_MAX_NESTING}: not a Keras "
                        f"weights file")
    for key in group:
        member = _member(h5py, group, key, origin)
        if not isinstance(member, h5py.Group):
            continue
        if key == "vars":
            holders.append((prefix.rstrip("/"), member))
        else:
            _find_vars(h5py, member, f"{prefix}{key}/", holders, origin, depth + 1)


def _member(h5py: Any, group: Any, key: str, origin: str) -> Any:
    """``group[key]`` when it is stored in this file (None if absent). A soft or external link, an external or
    virtual dataset would read elsewhere — another file on this machine — and is refused: Keras writes none."""
    link = group.get(key, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise SpecError(f"{origin}: {safe_text(group.name.rstrip('/'))}/{safe_text(key)} is a link "
                        f"({type(link).__name__}): refused (Keras writes every variable into the file itself)")
    member = group[key]
    if isinstance(member, h5py.Dataset) and (member.external or member.is_virtual):
        raise SpecError(f"{origin}: {safe_text(member.name)} keeps its data outside the file: refused (Keras writes "
                        f"every variable into the file itself)")
    return member


def _converted(variables: dict[str, dict[str, list]], steps: list, channels_last: bool,
               origin: str) -> dict[str, dict[str, Any]]:
    """Each layer's saved variables as its parameters, by its type's ``keras_weights``; checked as ``--weights``
    arrays are (a layer of that name, each parameter's shape)."""
    import numpy as np

    from ..weights import check_weights  # deferred: NumPy (~60 ms), only when weights are read

    by_name = {step.name: step for step in steps}
    weights: dict[str, dict[str, Any]] = {}
    for name, held in variables.items():
        if not any(len(arrays) for arrays in held.values()):
            continue
        step = by_name[name]                          # (_saved_variables read only the network's layers)
        layer = step.layer
        class_name = next(iter(type(layer).keras_classes), "layer")      # (messages: "Keras layer saved …")
        try:
            params = layer.keras_weights(step, class_name, held)
        except LayerCalcError as exc:
            raise SpecError(f"{origin}: {exc}") from None
        except (ValueError, IndexError) as exc:            # arrays of other ranks than the class saves
            shapes = "; ".join(f"{owner or name}: " + ", ".join(str(list(a.shape)) for a in arrays)
                               for owner, arrays in held.items() if arrays)
            raise SpecError(f"{origin}: weights for {layer_label(step.index, step.name, layer.type_name)}: the saved "
                            f"variables ({shapes}) are not those of a Keras {class_name} ({exc})") from None
        weights[name] = {param: np.ascontiguousarray(array) for param, array in params.items()}
    # in the network's order (the file's is alphabetical by class): the first layer that differs is reported
    weights = {step.name: weights[step.name] for step in steps if step.name in weights}
    try:
        check_weights(steps, weights, channels_last)
    except SpecError as exc:
        raise SpecError(f"{origin}: {exc}") from None
    return weights
