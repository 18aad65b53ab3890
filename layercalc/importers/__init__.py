"""Models made by other tools, read as layercalc spec data: Keras (``.keras`` files and ``model.to_json()``),
Hugging Face ``config.json`` and ONNX files.

Every importer returns plain spec data — the mapping a hand-written YAML spec parses to, with ``blocks`` where the
source repeats — so every command reads an imported model exactly as it reads a spec, and ``layercalc convert``
writes the same data out as a spec file people can edit and re-run. PyTorch modules are imported by
:func:`layercalc.from_torch` (module ``importers.torch``), which needs torch installed.

A file's kind is decided by its content; the extension only names what was expected in messages:

====================================================  ===========================================================
content                                               read by
====================================================  ===========================================================
a zip archive (``PK\\x03\\x04``) holding config.json     ``importers.keras.spec_from_archive`` (a ``.keras`` file)
JSON with ``class_name`` and ``config``               ``importers.keras.spec_from_json`` (``model.to_json()``)
JSON with ``model_type`` or ``architectures``         ``importers.huggingface.spec_from_config``
protobuf beginning as an ONNX ModelProto (``\\x08``)   ``importers.onnx.spec_from_file`` (the ``onnx`` extra)
anything else                                         a layercalc YAML/JSON spec
====================================================  ===========================================================

Importer modules are imported only when a file of their kind arrives, so a plain spec never pays for them.
Reading the file and telling its kind is :mod:`layercalc.sources`' job (above the importers); each importer reads
its own kind (a model → spec data) and its weights (``read_keras_weights``, ``read_onnx_weights``), checked with
:mod:`layercalc.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KINDS", "kind_of_data", "spec_data", "load_network"]

#: what each kind is called in messages and in ``layercalc convert``'s header
KINDS = {"layercalc": "layercalc spec", "keras": "Keras model JSON", "keras_archive": "Keras .keras file",
         "huggingface": "Hugging Face config.json", "onnx": "ONNX model"}

ZIP_MAGIC = b"PK\x03\x04"
#: an ONNX ModelProto's first field is ir_version (field 1, varint): the tag byte 0x08; no YAML or JSON text starts
#: with that control character
ONNX_FIRST_BYTE = 0x08


def kind_of_data(data: Any) -> str:
    """The kind of parsed JSON/YAML data: ``layercalc``, ``keras`` or ``huggingface``.

    >>> kind_of_data({"input": [784], "layers": []}), kind_of_data({"class_name": "Sequential", "config": {}})
    ('layercalc', 'keras')
    >>> kind_of_data({"model_type": "gpt2", "n_embd": 768})
    'huggingface'
    """
    if not isinstance(data, Mapping) or "layers" in data or "input" in data:
        return "layercalc"
    if "class_name" in data and "config" in data:
        return "keras"
    if "model_type" in data or "architectures" in data:
        return "huggingface"
    return "layercalc"


def spec_data(data: Any, origin: str) -> Any:
    """Parsed data as spec data: a Keras model JSON or a Hugging Face config converted, a spec returned as is."""
    kind = kind_of_data(data)
    if kind == "keras":
        # deferred: an importer is loaded only when its kind of model arrives. A pair with importers.keras, which
        # takes this package's load_network: the package dispatches to its importers, they share its helpers
        from . import keras
        return keras.spec_from_json(data, origin)
    if kind == "huggingface":
        from . import huggingface  # deferred: an importer is loaded only when its kind of model arrives
        return huggingface.spec_from_config(data, origin)
    return data


def load_network(source: Any) -> Any:
    """The network of ``source``, anything :func:`layercalc.load` reads: what ``weights_from_keras`` and
    ``weights_from_onnx`` take as the network their weights are for."""
    # upward, deferred: these public helpers take any source (a path, zoo:NAME, a spec), which only the sources
    # layer above the importers reads; the importers' one import back up
    from ..sources import load
    return load(source)
