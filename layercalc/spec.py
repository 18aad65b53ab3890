"""Reading network specs: YAML or JSON files (same schema), or mappings built in Python.

YAML is read with PyYAML's safe loader (:class:`SpecLoader`): plain data only, nothing in a spec is ever executed.
Block definitions and ``repeat`` are expanded into a flat layer list by :mod:`layercalc.blocks` before validation.

Where PyYAML would silently pick one reading of an ambiguous document, the spec is refused instead:

- a key given twice in one mapping (``{repeat: 2, repeat: 3}``; PyYAML keeps the last), in YAML and in JSON;
- integers that YAML 1.1 and YAML 1.2/JSON read differently: a leading zero (``010``: 8 or 10?) and base 60
  (``1:30``: 90 or a string?).

Exponent floats without a dot (``1e-5``) are floats, as in JSON and YAML 1.2 (PyYAML's YAML 1.1 rules make them
strings, which the layer fields would then refuse). Top-level ``input`` and ``batch`` take whole numbers only, by
the same rule as the layer fields (:func:`layercalc.errors.whole_number_problem`); data nested deeper than
:data:`MAX_DEPTH` levels is refused before anything walks it.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from pydantic import ValidationError

from .errors import SpecError, describe_validation_error, layer_label, whole_number_problem
from .graph import Network

Source = Union[str, os.PathLike, Mapping, Network]

#: how deeply lists and mappings may nest in a spec. Real specs use under 10 levels (blocks → layers → padding
#: pairs); the limit keeps every recursive walk (block expansion, Pydantic, repr in messages) far from Python's
#: recursion limit, so a pathological file gets one line instead of a RecursionError.
MAX_DEPTH = 100


@lru_cache(maxsize=1)
def _spec_loader():
    """The YAML loader class for specs: PyYAML's safe loader (the C one when available, 8× faster on a zoo file),
    stricter about duplicate keys and ambiguous integers. Built on first use: yaml is imported lazily."""
    import re

    import yaml
    from yaml.constructor import ConstructorError
    from yaml.nodes import ScalarNode

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class SpecLoader(base):  # type: ignore[misc, valid-type]
        # Only the safe constructors (SafeConstructor): no python/* tags, plain data only.

        def flatten_mapping(self, node):
            # Called once per mapping before its keys are read (and again, as a no-op, when it is merged with
            # `<<`); on that first call the node still holds exactly the keys the document wrote.
            checked = self.__dict__.setdefault("_checked_mappings", set())
            if id(node) not in checked:
                checked.add(id(node))
                self._refuse_duplicate_keys(node)
            super().flatten_mapping(node)

        def _refuse_duplicate_keys(self, node):
            seen: dict = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                    continue                              # merges may override; complex keys are refused later
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, value_node)
                except TypeError:
                    continue
                if first is not value_node:
                    raise ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r}: given {_node_text(first)} (line {_at(first)}) and "
                        f"{_node_text(value_node)} (line {_at(value_node)}); a key may appear only once in a "
                        f"mapping", key_node.start_mark)

        def construct_yaml_int(self, node):
            text = self.construct_scalar(node)
            digits = text.replace("_", "").lstrip("+-")
            if ":" in digits:
                raise ConstructorError(None, None, f"{text} is a base-60 number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_int(node)}) but text in YAML 1.2; write the "
                                       f"number itself, or quote it", node.start_mark)
            if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xb":
                raise ConstructorError(None, None, f"{text} has a leading zero: octal in YAML 1.1 (PyYAML reads "
                                       f"{super().construct_yaml_int(node)}), decimal in YAML 1.2; write it "
                                       f"without the leading zero", node.start_mark)
            return super().construct_yaml_int(node)

        def construct_yaml_float(self, node):
            text = self.construct_scalar(node)
            if ":" in text:
                raise ConstructorError(None, None, f"{text} is a base-60 number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_float(node)}) but text in YAML 1.2; write the "
                                       f"number itself, or quote it", node.start_mark)
            return super().construct_yaml_float(node)

    SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)
    SpecLoader.add_constructor("tag:yaml.org,2002:float", SpecLoader.construct_yaml_float)
    # `1e-5` and `2E3` are floats in JSON and YAML 1.2; YAML 1.1 wants a dot and a signed exponent (`1.0e-5`).
    SpecLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))
    return SpecLoader


def _at(node) -> str:
    return f"{node.start_mark.line + 1} column {node.start_mark.column + 1}"


def _node_text(node) -> str:
    """How a duplicate key's value is shown: the scalar as written, or what kind of collection it is."""
    from yaml.nodes import MappingNode, ScalarNode

    if isinstance(node, ScalarNode):
        return repr(node.value) if node.style in ("'", '"') else node.value
    return "a mapping" if isinstance(node, MappingNode) else "a list"


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` refusing a key given twice (``json`` keeps the last, silently)."""
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise SpecError(f"duplicate key {key!r} in one object (values {result[key]!r} and {value!r}); a key may "
                            f"appear only once")
        result[key] = value
    return result


def parse_text(text: str, origin: str = "<spec>", fmt: str | None = None) -> Any:
    """Parse YAML or JSON text (JSON is YAML, but JSON's own parser gives better messages for .json files)."""
    try:
        # Text that is not valid Unicode (stdin decoded with surrogateescape) would make the C parser raise
        # UnicodeEncodeError: say what a binary file gets.
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SpecError(f"{origin}: cannot read: not UTF-8 text ({e.reason} at position {e.start})") from None
    if fmt == "json" or (fmt is None and origin.endswith(".json")):
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as e:
            raise SpecError(f"{origin}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except SpecError as e:
            raise SpecError(f"{origin}: invalid JSON: {e}") from None
        except RecursionError:
            raise SpecError(f"{origin}: invalid JSON: nested too deeply (a spec never needs more than "
                            f"{MAX_DEPTH} levels)") from None
    import yaml
    try:
        return yaml.load(text, Loader=_spec_loader())  # noqa: S506 - a safe loader, never yaml.Loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{origin}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{origin}: invalid YAML: nested too deeply (a spec never needs more than "
                        f"{MAX_DEPTH} levels)") from None


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
    _check_depth(data, origin)
    _check_whole_numbers(data, origin)
    from .blocks import expand
    data = expand(dict(data))
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        known = list(Network.model_fields)
        helps = {"input": "a list of positive sizes, one example without the batch dim, e.g. [1, 28, 28]",
                 "layers": "a list of layer mappings"}
        raise SpecError(f"{origin}: {describe_validation_error(exc, data, known, helps)}") from None


def _check_depth(data: Mapping, origin: str) -> None:
    """Refuse lists/mappings nested deeper than ``MAX_DEPTH`` levels, naming where.

    Iterative, so no RecursionError here. YAML anchors can share one list many times (``&a [*a, *a]`` even
    contains itself): a container already explored from at least as deep is not explored again, which keeps the
    walk linear in the number of distinct containers (a self-containing one just runs past the limit).
    """
    explored: dict[int, int] = {}                      # id(container) → deepest level it was explored from
    stack: list[tuple[Any, int, tuple]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if not isinstance(value, (Mapping, list, tuple)):
            continue
        if depth > MAX_DEPTH:
            where = path[:3] if path[:1] in (("layers",), ("blocks",)) else path[:1]
            short = reprlib.Repr()                    # keyword arguments only from Python 3.12
            short.maxlevel, short.maxlist, short.maxdict, short.maxstring = 3, 2, 2, 20
            raise SpecError(f"{origin}: {_where(data, where)}: got {short.repr(_top(data, where))}: lists and "
                            f"mappings nested more than {MAX_DEPTH} levels deep (or containing themselves); a spec "
                            f"never needs that many")
        if explored.get(id(value), 0) >= depth:
            continue
        explored[id(value)] = depth
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        stack.extend((v, depth + 1, (*path, k)) for k, v in items)


def _top(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def _where(data: Mapping, path: tuple) -> str:
    """``layers[0] 'conv' (conv2d): field 'inputs'`` for a path into the spec (the first levels of it)."""
    if len(path) >= 3 and path[0] == "layers" and isinstance(path[1], int) and isinstance(data["layers"][path[1]],
                                                                                         Mapping):
        layer = data["layers"][path[1]]
        name, type_ = layer.get("name"), layer.get("type")
        label = layer_label(path[1], name if isinstance(name, str) else None, type_ if isinstance(type_, str) else None)
        return f"{label}: field {path[2]!r}"
    return "field " + repr(".".join(str(p) for p in path[:3]))


def _check_whole_numbers(data: Mapping, origin: str) -> None:
    """``input`` and ``batch`` by the layer fields' rule. graph.Network applies the same rule; this check comes
    first for specs because its message shows the whole input list and the expected form, not ``input.1``."""
    shape = data.get("input")
    if isinstance(shape, (list, tuple)):
        for size in shape:
            problem = whole_number_problem(size)
            if problem is not None:
                raise SpecError(f"{origin}: field 'input': got {list(shape)!r}: {problem}; expected a list of "
                                f"positive sizes, one example without the batch dim, e.g. [1, 28, 28]")
    if "batch" in data:
        problem = whole_number_problem(data["batch"])
        if problem is not None:
            raise SpecError(f"{origin}: field 'batch': got {data['batch']!r}: {problem}; expected a positive integer")


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
