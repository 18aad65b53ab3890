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
import re
import reprlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Union

from pydantic import ValidationError

from .blocks import MAX_LAYERS, expand
from .errors import SpecError, layer_label, safe_text, shown, whole_number_problem
from .graph import LAYOUT_ALIASES, Network
from .layers import base as layer_registry
from .layers import field_spellings, layer_union, load_plugins

#: how deeply lists and mappings may nest in a spec. Real specs use under 10 levels (blocks → layers → padding
#: pairs); the limit keeps every recursive walk (block expansion, Pydantic, repr in messages) far from Python's
#: recursion limit, so a pathological file gets one line instead of a RecursionError.
MAX_DEPTH = 100


#: the largest spec text read, from a file or standard input. Real specs are a few kilobytes (ResNet-50 is 48
#: lines); the cap keeps reading (and YAML parsing, ~2 s per MiB) bounded whatever the source (/dev/zero, a pipe).
MAX_SPEC_BYTES = 1024 * 1024

#: the most values (mappings, lists and scalars) a spec may hold with its YAML aliases expanded: a few aliases can
#: stand for billions of values (an "alias bomb"), which every later walk would visit one by one
MAX_SPEC_VALUES = 1_000_000

#: the tags a spec's data may have: YAML's plain data, what JSON has. Sets, ordered maps, pairs, binary and
#: timestamps are refused: their meaning in a layer field would be a guess (a set has no order).
PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")}


class _TooDeep(Exception):
    """Raised by the composer at the first value nested deeper than ``MAX_DEPTH``: where it is (a path of keys
    and indexes) and the layer mapping it is in, if any, as far as it was read."""

    def __init__(self, path: tuple, layer: dict) -> None:
        super().__init__("nested too deeply")
        self.path, self.layer = path, layer


@lru_cache(maxsize=2)
def _spec_loader(with_libyaml: bool = True):
    """The YAML loader class for specs: PyYAML's safe constructors on libyaml's parser events (the C parser when
    available), with layercalc's own composer and stricter constructors. Built on first use (yaml is imported
    lazily).

    - The composer refuses nesting deeper than :data:`MAX_DEPTH` as it reads, naming where. libyaml has a limit of
      its own (1,000 levels from PyYAML 6.0.4), which its scanner can reach before the composer sees level 100
      (it reads ahead): :func:`parse_text` reads a document that libyaml refuses again with the pure-Python
      parser, so what is said about a spec does not depend on the installed PyYAML.
    - Duplicate keys, YAML 1.1 numbers that YAML 1.2/JSON read differently, YAML 1.1 booleans (``yes``, ``off``)
      and every tag beyond plain data are refused (see the module docstring).
    """
    # deferred: PyYAML (~10 ms), loaded when YAML is first parsed (a JSON spec and `layercalc size` never need it)
    from yaml.composer import Composer
    from yaml.constructor import ConstructorError, SafeConstructor
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode
    from yaml.resolver import Resolver

    try:
        if not with_libyaml:
            raise ImportError("the pure-Python parser was asked for")
        from yaml._yaml import CParser as Parser  # libyaml: ~6× faster on a zoo file
    except ImportError:                                   # PyYAML without libyaml
        from yaml.parser import Parser as EventParser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class Parser(Reader, Scanner, EventParser):  # type: ignore[no-redef]
            def __init__(self, stream):
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                EventParser.__init__(self)

    class SpecLoader(Composer, Parser, SafeConstructor, Resolver):
        # Only the safe constructors (SafeConstructor): no python/* tags, plain data only.

        def __init__(self, stream):
            Parser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._open: list[tuple] = []                  # (parent node, index or key node) of each open value

        def compose_node(self, parent, index):
            self._open.append((parent, index))
            if len(self._open) > MAX_DEPTH:
                raise _TooDeep(*self._where_open())
            try:
                return super().compose_node(parent, index)
            finally:
                self._open.pop()

        def _where_open(self) -> tuple[tuple, dict]:
            """The path to the value being composed, and the scalar fields of the layer mapping it is in."""
            path: list = []
            layer: dict = {}
            for parent, index in self._open[1:]:
                if isinstance(parent, SequenceNode):
                    path.append(len(parent.value))
                elif isinstance(parent, MappingNode):
                    key = index.value if isinstance(index, ScalarNode) else "?"
                    path.append(key)
                    if len(path) == 3 and path[0] == "layers":    # the layer mapping: its name and type so far
                        layer = {k.value: v.value for k, v in parent.value
                                 if isinstance(k, ScalarNode) and isinstance(v, ScalarNode)}
            return tuple(path), layer

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
            digits = text.lstrip("+-")
            if ":" in digits:
                raise ConstructorError(None, None, f"{text} is a base-60 number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_int(node)}) but text in YAML 1.2; write the "
                                       f"number itself, or quote it", node.start_mark)
            if "_" in digits or digits[:2] in ("0b", "0B"):
                raise ConstructorError(None, None, f"{text} is a number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_int(node)}) but text in YAML 1.2 and JSON; write "
                                       f"the number in plain digits, or quote it", node.start_mark)
            if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xX":
                raise ConstructorError(None, None, f"{text} has a leading zero: octal in YAML 1.1 (PyYAML reads "
                                       f"{super().construct_yaml_int(node)}), decimal in YAML 1.2; write it "
                                       f"without the leading zero", node.start_mark)
            if len(digits) > _MAX_DIGITS:                 # int() itself refuses 4,300 digits with a ValueError
                raise ConstructorError(None, None, f"an integer of {len(digits):,} digits is larger than any size "
                                       f"a framework can hold (int64: 19 digits)", node.start_mark)
            return super().construct_yaml_int(node)

        def construct_yaml_float(self, node):
            text = self.construct_scalar(node)
            if ":" in text:
                raise ConstructorError(None, None, f"{text} is a base-60 number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_float(node)}) but text in YAML 1.2; write the "
                                       f"number itself, or quote it", node.start_mark)
            if "_" in text:
                raise ConstructorError(None, None, f"{text} is a number in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_float(node)}) but text in YAML 1.2 and JSON; "
                                       f"write it without underscores, or quote it", node.start_mark)
            return super().construct_yaml_float(node)

        def construct_yaml_bool(self, node):
            text = self.construct_scalar(node)
            if text.lower() not in ("true", "false"):
                raise ConstructorError(None, None, f"{text} is a boolean in YAML 1.1 (PyYAML reads it as "
                                       f"{super().construct_yaml_bool(node)}) but text in YAML 1.2 and JSON; write "
                                       f"true or false, or quote it", node.start_mark)
            return super().construct_yaml_bool(node)

        def construct_not_plain_data(self, node):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConstructorError(None, None, f"the tag {tag} is not plain data: a spec holds only "
                                   f"mappings, lists, strings, numbers, booleans and null"
                                   + (" (quote a date to use it as text)" if tag == "!!timestamp" else ""),
                                   node.start_mark)

    constructors = {"tag:yaml.org,2002:int": SpecLoader.construct_yaml_int,
                    "tag:yaml.org,2002:float": SpecLoader.construct_yaml_float,
                    "tag:yaml.org,2002:bool": SpecLoader.construct_yaml_bool}
    for tag in list(SafeConstructor.yaml_constructors):
        if tag is not None and tag not in PLAIN_TAGS and tag != "tag:yaml.org,2002:merge":
            constructors[tag] = SpecLoader.construct_not_plain_data
    for tag, constructor in constructors.items():
        # types-PyYAML types add_constructor for its own loader classes only (a TypeVar bound to them), not for a
        # loader made of the parts, as PyYAML's own loaders are
        SpecLoader.add_constructor(tag, constructor)  # type: ignore[type-var]
    # `1e-5` and `2E3` are floats in JSON and YAML 1.2; YAML 1.1 wants a dot and a signed exponent (`1.0e-5`).
    SpecLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))
    return SpecLoader


#: the most digits of an integer literal: int64 has 19, and a longer literal is refused before it is converted
_MAX_DIGITS = 30


def _at(node) -> str:
    return f"{node.start_mark.line + 1} column {node.start_mark.column + 1}"


def _node_text(node) -> str:
    """How a duplicate key's value is shown: the scalar as written, or what kind of collection it is."""
    from yaml.nodes import MappingNode, ScalarNode  # deferred: PyYAML (~10 ms), only once YAML is parsed

    if isinstance(node, ScalarNode):
        return shown(node.value) if node.style in ("'", '"') else shown(node.value).strip("'")
    return "a mapping" if isinstance(node, MappingNode) else "a list"


def _json_int(text: str) -> int:
    """JSON integers: Python's ``int()`` refuses 4,300 digits with a bare ValueError; refuse sooner, clearly."""
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise SpecError(f"an integer of {len(text.lstrip('-')):,} digits is larger than any size a framework can "
                        f"hold (int64: 19 digits)")
    return int(text)


def _json_constant(text: str) -> float:
    """``NaN``, ``Infinity``: Python's json reads them, JSON itself has no such numbers."""
    raise SpecError(f"{text} is not a JSON number")


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
            return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int,
                              parse_constant=_json_constant)
        except json.JSONDecodeError as e:
            raise SpecError(f"{origin}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except SpecError as e:
            raise SpecError(f"{origin}: invalid JSON: {e}") from None
        except RecursionError:
            raise SpecError(f"{origin}: invalid JSON: nested too deeply (a spec never needs more than "
                            f"{MAX_DEPTH} levels)") from None
    import yaml  # deferred: PyYAML (~10 ms), not loaded for JSON
    try:
        try:
            return yaml.load(text, Loader=_spec_loader())  # noqa: S506 - a safe loader, never yaml.Loader
        except yaml.YAMLError:
            # libyaml's message (and whether it refuses at all) depends on its version; PyYAML's own parser says
            # the same about real syntax errors, and lets the composer find a too-deep value where it is.
            return yaml.load(text, Loader=_spec_loader(with_libyaml=False))  # noqa: S506 - safe, as above
    except _TooDeep as e:
        raise SpecError(_too_deep_message(origin, e.path, e.layer)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{origin}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{origin}: invalid YAML: nested too deeply (a spec never needs more than "
                        f"{MAX_DEPTH} levels)") from None


def read_text_file(path: Union[str, os.PathLike]) -> Any:
    """A YAML or JSON file, parsed (at most :data:`MAX_SPEC_BYTES`)."""
    origin = safe_text(str(path))
    with file_errors(origin, "a YAML or JSON spec file"):
        with open(path, "rb") as stream:
            text = read_capped(stream, origin)
    return parse_text(text, origin)


@contextmanager
def file_errors(origin: str, expected: str) -> Iterator[None]:
    """A file that cannot be opened or read as one line naming it (``expected``: what a directory is not)."""
    try:
        yield
    except FileNotFoundError:
        raise SpecError(f"{origin}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{origin}: is a directory, expected {expected}") from None
    except OSError as e:
        raise SpecError(f"{origin}: cannot read: {e.strerror or e}") from None


def read_capped(stream, origin: str, head: bytes = b"") -> str:
    """At most :data:`MAX_SPEC_BYTES` of a binary stream (after the bytes ``head`` already read from it), decoded
    as UTF-8; more is refused, not read."""
    data = head + stream.read(MAX_SPEC_BYTES + 1 - len(head))
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{origin}: larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB; a spec is at most that (use "
                        f"blocks and repeat for long networks)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{origin}: cannot read: {e}") from None


def from_data(data: Any, origin: str = "spec") -> Network:
    """Validate parsed spec data (a mapping) into a ``Network``. (A Keras model JSON or a Hugging Face config is
    converted to spec data first, by :func:`layercalc.sources.from_parsed`.)"""
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin}: a spec must be a mapping with 'input' and 'layers', got {type(data).__name__}")
    key = next((k for k in data if not isinstance(k, str)), None)
    if key is not None:                   # Pydantic would fail with a TypeError ("keywords must be strings")
        raise SpecError(f"{origin}: the key {shown(key)} ({type(key).__name__}) is not a field name: a spec's keys "
                        f"are text (input, layers, …)")
    _check_depth(data, origin)
    _check_whole_numbers(data, origin)
    layers = data.get("layers")
    if isinstance(layers, (list, tuple)) and len(layers) > MAX_LAYERS:
        raise SpecError(f"{origin}: field 'layers': {len(layers):,} entries; a spec may have at most "
                        f"{MAX_LAYERS:,} layers (use blocks and repeat for long networks)")
    data = expand(dict(data))
    if data.get("layers") is not layers:
        _check_depth(data, origin)        # block arguments nest values into layers: check what they made
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{origin}: {Network.describe_error(exc, data)}") from None


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
            raise SpecError(f"{origin}: {_where(data, where)}: got {short.repr(_top(data, where))}: "
                            f"{_TOO_DEEP}")
        if explored.get(id(value), 0) >= depth:
            continue
        explored[id(value)] = depth
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        stack.extend((v, depth + 1, (*path, k)) for k, v in items)
    count = _expanded_size(data, explored)
    if count > MAX_SPEC_VALUES:
        raise SpecError(f"{origin}: with its YAML aliases expanded the spec holds more than {MAX_SPEC_VALUES:,} "
                        f"values (an alias used inside another alias multiplies); a spec never needs that many")


_TOO_DEEP = (f"lists and mappings nested more than {MAX_DEPTH} levels deep (or containing themselves); a spec never "
             f"needs that many")


def _too_deep_message(origin: str, path: tuple, layer: dict) -> str:
    """The message of a value nested too deeply, found while the YAML was read (no data to show yet)."""
    if len(path) >= 3 and path[0] == "layers" and isinstance(path[1], int):
        name, type_ = layer.get("name"), layer.get("type")
        where = f"{layer_label(path[1], name if isinstance(name, str) else None, type_)}: field {shown(path[2])}"
    else:
        where = "field " + shown(".".join(str(p) for p in path[:3]))
    return f"{origin}: {where}: {_TOO_DEEP}"


def _expanded_size(data: Any, containers: dict[int, int]) -> int:
    """How many values ``data`` holds when every shared list or mapping (a YAML alias) is counted each time it
    is used: what a walk over the data visits. Memoized per container, so linear in the distinct containers
    (``containers``, from the depth check, already holds each of them once)."""
    sizes: dict[int, int] = {}
    # Deepest containers first: each one's size is known once its children's are. Depth-first post-order,
    # iterative (nesting is bounded by MAX_DEPTH, but no recursion is needed).
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, children_done = stack.pop()
        if id(value) in sizes:
            continue
        children = list(value.values()) if isinstance(value, Mapping) else list(value)
        nested = [c for c in children if isinstance(c, (Mapping, list, tuple))]
        if not children_done:
            stack.append((value, True))
            stack.extend((c, False) for c in nested if id(c) not in sizes)
            continue
        total = 1 + (len(children) - len(nested)) + sum(sizes.get(id(c), 0) for c in nested)
        sizes[id(value)] = min(total, MAX_SPEC_VALUES + 1)       # capped: the sums stay small numbers
    return sizes[id(data)]


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


#: the order of a spec's top-level keys in written specs (the order people write them in)
_TOP_KEYS = ("name", "input", "batch", "layout", "dtype", "blocks", "layers")


def to_yaml(data: Mapping, header: str = "") -> str:
    """Spec data as YAML in the zoo's style: top-level keys in block style, one layer per line (flow style), blocks
    with their layer lists the same way; ``header`` becomes ``#`` comment lines.

    >>> print(to_yaml({"input": [784], "layers": [{"type": "linear", "out_features": 10}]}, "an MLP"), end="")
    # an MLP
    input: [784]
    layers:
      - {type: linear, out_features: 10}
    """
    import yaml  # deferred: PyYAML (~10 ms), only when a spec is written

    def flow(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=2**31, allow_unicode=True)
        return text.removesuffix("\n...\n").strip()

    def layer_lines(layers: Any, indent: str) -> list[str]:
        return [f"{indent}- {flow(layer)}" for layer in layers]

    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    keys = [k for k in _TOP_KEYS if k in data] + [k for k in data if k not in _TOP_KEYS]
    for key in keys:
        value = data[key]
        if key == "layers" and isinstance(value, list):
            lines += ["layers:"] + layer_lines(value, "  ")
        elif key == "blocks" and isinstance(value, Mapping):
            lines.append("blocks:")
            for name, block in value.items():
                lines.append(f"  {flow(name)}:")
                for part, content in block.items():
                    if part == "layers" and isinstance(content, list):
                        lines += ["    layers:"] + layer_lines(content, "      ")
                    else:
                        lines.append(f"    {flow(part)}: {flow(content)}")
        else:
            lines.append(f"{flow(key)}: {flow(value)}")
    return "\n".join(lines) + "\n"


def schema() -> dict[str, Any]:
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
                       "name": {"type": "string",
                                "description": "copies are named NAME.K (K from `start`), or, when NAME holds {i}, "
                                               "NAME with {i} replaced by K (a template: encoder_layer_{i})"},
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
    from pydantic import TypeAdapter  # deferred: pydantic.type_adapter, which only the schema needs (start-up)

    load_plugins()
    layer = TypeAdapter(layer_union()).json_schema()
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
    defs = result["$defs"]
    for cls in layer_registry.LAYER_CLASSES:
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
