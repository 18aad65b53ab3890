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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import SpecError, safe_text

__all__ = ["KINDS", "kind_of_data", "spec_data", "read", "weights_reader"]

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
        from . import keras
        return keras.spec_from_json(data, origin)
    if kind == "huggingface":
        from . import huggingface
        return huggingface.spec_from_config(data, origin)
    return data


def sniff(path: Union[str, os.PathLike]) -> str:
    """The kind of the file at ``path`` from its first bytes: ``keras_archive``, ``onnx`` or ``text`` (a spec, a
    Keras JSON or a config.json, told apart once parsed)."""
    origin = safe_text(os.fspath(path))
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
    except FileNotFoundError:
        raise SpecError(f"{origin}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{origin}: is a directory, expected a spec file or a model file (.keras, .onnx, Keras "
                        f"JSON, Hugging Face config.json)") from None
    except OSError as e:
        raise SpecError(f"{origin}: cannot read: {e.strerror or e}") from None
    if head.startswith(ZIP_MAGIC):
        return "keras_archive"
    if head[:1] == bytes([ONNX_FIRST_BYTE]) or os.fspath(path).lower().endswith(".onnx"):
        return "onnx"
    return "text"


def weights_reader(path: Union[str, os.PathLike]) -> Optional[Callable[..., dict]]:
    """The reader of a framework's weights file at ``path``, told by content — a Keras ``.keras`` / ``.weights.h5``
    (``keras.read_keras_weights``) or an ONNX file (``onnx.read_onnx_weights``), each called as
    ``reader(path, steps, channels_last, max_bytes)`` — or None for anything else (an ``.npz``, which the executor
    reads itself)."""
    from .keras import keras_weights_kind, read_keras_weights
    if keras_weights_kind(path) is not None:
        return read_keras_weights
    from .onnx import is_onnx_file, read_onnx_weights
    if is_onnx_file(path):
        return read_onnx_weights
    return None


def read(path: Union[str, os.PathLike]) -> tuple[str, Any]:
    """``(kind, spec data)`` of a file: any kind of :data:`KINDS`, decided by content."""
    from ..spec import read_text_file

    kind = sniff(path)
    origin = safe_text(os.fspath(path))
    if kind == "keras_archive":
        from . import keras
        return kind, keras.spec_from_archive(Path(path), origin)
    if kind == "onnx":
        from . import onnx
        return kind, onnx.spec_from_file(Path(path), origin)
    data = read_text_file(path)
    return kind_of_data(data), spec_data(data, origin)
