"""Reading network specs: YAML or JSON files (same schema), or mappings built in Python.

YAML is read with ``yaml.safe_load``: plain data only, nothing in a spec is ever executed. Block definitions and
``repeat`` are expanded into a flat layer list by :mod:`layercalc.blocks` before validation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from pydantic import ValidationError

from .errors import SpecError, describe_validation_error
from .graph import Network

Source = Union[str, os.PathLike, Mapping, Network]


def parse_text(text: str, origin: str = "<spec>", fmt: str | None = None) -> Any:
    """Parse YAML or JSON text (JSON is YAML, but JSON's own parser gives better messages for .json files)."""
    if fmt == "json" or (fmt is None and origin.endswith(".json")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{origin}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    import yaml
    # The C loader when PyYAML has it (8× faster on a zoo file); both are the safe loaders: plain data only.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, never yaml.Loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{origin}: invalid YAML{where}: {problem}") from None


def read_spec_file(path: Union[str, os.PathLike]) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML or JSON spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    return parse_text(text, str(path))


def from_data(data: Any, origin: str = "spec") -> Network:
    """Validate parsed spec data (a mapping) into a ``Network``."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin}: a spec must be a mapping with 'input' and 'layers', got {type(data).__name__}")
    from .blocks import expand
    data = expand(dict(data))
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        known = list(Network.model_fields)
        helps = {"input": "a list of positive sizes, one example without the batch dim, e.g. [1, 28, 28]",
                 "layers": "a list of layer mappings"}
        raise SpecError(f"{origin}: {describe_validation_error(exc, data, known, helps)}") from None


def load(source: Source) -> Network:
    """A ``Network`` from a spec file path (YAML or JSON), a mapping, or a ``Network`` (returned as is).

    ``zoo:NAME`` loads a network from the bundled model zoo.
    """
    if isinstance(source, Network):
        return source
    if isinstance(source, Mapping):
        return from_data(source)
    text = os.fspath(source)
    if text.startswith("zoo:"):
        from . import zoo
        return zoo.load(text[4:])
    return from_data(read_spec_file(text), text)


def schema() -> dict:
    """JSON Schema of the spec format (what design tools validate against).

    The layer models give the schema of a plain layer. A ``layers`` entry may also be a block instance or a
    ``repeat`` (see :mod:`layercalc.blocks`), and ``blocks`` defines reusable sub-graphs. Inside a block, any field
    may hold a ``"$arg"`` reference, so block layers are only required to be mappings with a ``type``, ``block`` or
    ``repeat`` key; they are checked field by field once the block is expanded.
    """
    result = Network.model_json_schema()
    defs = result.setdefault("$defs", {})
    name = {"anyOf": [{"type": "string"}, {"type": "integer"}],
            "description": "instance name: its layers are named NAME.<layer name>"}
    inputs = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 1}],
              "description": "the one source that feeds the block (default: the previous layer)"}
    defs["BlockInstance"] = {
        "type": "object", "title": "BlockInstance", "required": ["block"], "additionalProperties": False,
        "description": "an instance of a block defined under `blocks`",
        "properties": {"block": {"type": "string", "description": "the block's name under `blocks`"},
                       "name": name, "inputs": inputs,
                       "args": {"type": "object", "description": "argument values (plain data)"}}}
    defs["Repeat"] = {
        "type": "object", "title": "Repeat", "required": ["repeat"], "additionalProperties": True,
        "description": "N chained copies of the rest of the entry (a layer or a block instance), named NAME.K",
        "properties": {"repeat": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\$"}]},
                       "start": {"type": "integer", "minimum": 0, "default": 0,
                                 "description": "number of the first copy"},
                       "first": {"type": "object", "description": "fields merged into the first copy only"}}}
    defs["BlockLayer"] = {
        "type": "object", "title": "BlockLayer",
        "description": "a layer, block instance or repeat inside a block; fields may be \"$arg\" references",
        "anyOf": [{"required": ["type"]}, {"required": ["block"]}, {"required": ["repeat"]}]}
    defs["Block"] = {
        "type": "object", "title": "Block", "required": ["layers"], "additionalProperties": False,
        "properties": {
            "params": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "string"}}],
                       "description": "argument -> default (null: required), or a list of required names"},
            "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/BlockLayer"}},
            "output": {"anyOf": [{"type": "string"}, {"type": "integer"}],
                       "description": "the layer whose output is the block's output (default: the last)"}}}
    # Network.layers is validated layer by layer (see graph.Network), so its generated schema names only the base
    # model; the union of every layer model, discriminated by `type`, is what a spec holds.
    from pydantic import TypeAdapter

    from .layers import Layer
    layer = TypeAdapter(Layer).json_schema()
    defs.update(layer.pop("$defs", {}))
    defs.pop("LayerBase", None)
    defs["Layer"] = layer
    result["properties"]["layers"]["items"] = {"anyOf": [{"$ref": "#/$defs/Layer"}, {"$ref": "#/$defs/BlockInstance"},
                                                         {"$ref": "#/$defs/Repeat"}]}
    _add_accepted_spellings(result)
    result["properties"]["blocks"] = {"type": "object", "description": "reusable, parameterized sub-graphs",
                                      "additionalProperties": {"$ref": "#/$defs/Block"}}
    return result


def _add_accepted_spellings(result: dict) -> None:
    """Make the generated schema accept what the loader accepts.

    Pydantic writes only the first name of each field; the loader also takes the Keras aliases (``filters``,
    ``units``, ...), a single string for ``inputs``, and ``channels_first``/``channels_last`` for the layout.
    """
    from .graph import LAYOUT_ALIASES
    from .layers import LAYER_CLASSES, field_spellings

    defs = result["$defs"]
    for cls in LAYER_CLASSES:
        definition = defs.get(cls.__name__, {})
        properties = definition.get("properties")
        if properties is None:
            continue
        for name, spellings in field_spellings(cls).items():
            if len(spellings) > 1 and name in properties:
                for alias in spellings[1:]:
                    properties[alias] = {**properties[name], "description": f"Keras name of {name!r}"}
                if name in definition.get("required", []):       # required: under one of its names
                    definition["required"].remove(name)
                    definition.setdefault("allOf", []).append({"anyOf": [{"required": [n]} for n in spellings]})
        if "inputs" in properties:
            properties["inputs"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                              {"type": "null"}],
                                    "description": properties["inputs"].get("description", "")}
    layout = result["properties"]["layout"]
    layout["enum"] = ["NCHW", "NHWC", "nchw", "nhwc", *LAYOUT_ALIASES]
