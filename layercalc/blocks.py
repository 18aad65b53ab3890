"""Reusable blocks and ``repeat``: expanded into a flat layer list before the spec is validated.

A spec may define named, parameterized sub-graphs under ``blocks:`` and use them in ``layers:``::

    blocks:
      basic:                                   # a block: params (with defaults), layers, optional output
        params: {planes: ~, stride: 1}         # ~ (null) = required argument; a plain list of names works too
        layers:
          - {name: conv1, type: conv2d, out_channels: $planes, kernel_size: 3, stride: $stride, padding: 1}
          - {name: bn1, type: batchnorm2d}
          - {name: relu1, type: relu}
          - {name: conv2, type: conv2d, out_channels: $planes, kernel_size: 3, padding: 1}
          - {name: bn2, type: batchnorm2d}
          - {name: add, type: add, inputs: [bn2, in]}     # 'in' is the block's input
          - {name: relu2, type: relu}
        # output: relu2                        # default: the last layer
    layers:
      - {block: basic, name: stage1, args: {planes: 64}}   # layers stage1.conv1, stage1.bn1, ...
      - {repeat: 3, name: layer1, block: basic, args: {planes: 64}}   # layer1.0.conv1 … layer1.2.relu2

Rules, all of them:

- **Instances.** ``{block: NAME, name: INSTANCE, args: {...}, inputs: SRC}`` inserts the block's layers, each named
  ``INSTANCE.<layer name>`` (unnamed layers are ``<type>_<k>``, ``k`` counting the block's layers; a number is a fine
  name: ``name: 0``). ``inputs`` (optional, exactly one source) feeds the block; by default the previous layer.
  Elsewhere, ``INSTANCE`` names the block's output: the layer named by the block's ``output``, else its last layer.
- **Inside a block** ``inputs`` name the block's own layers (or nested instances, or ``nested.layer``), or ``in``,
  the block's input. A block has one input and one output; anything else (a skip connection, a concat of branches)
  is wired inside it.
- **Arguments** are plain data. A field value that is exactly the string ``"$arg"`` or ``"${arg}"`` (anywhere in a
  block's layers, including nested ``args``, ``repeat`` counts and ``output``) is replaced by the argument's value;
  nothing is evaluated, and a ``$`` anywhere else in a string is an error. ``params`` maps each argument to its
  default (null: required), or is a list of required names. Blocks may use other blocks, not themselves.
- **Repeat.** ``{repeat: N, ...rest}`` stands for N copies of ``rest`` (a layer or a block instance), chained one
  after the other. With ``name: NAME`` the copies are named ``NAME.0`` … ``NAME.{N-1}`` (torchvision's
  ``layer1.0``; ``start: K`` numbers them from K, for flat numbering like ``features.2`` … ``features.3``) and
  ``NAME`` names the last copy's output (several repeats may share a name: then the latest one's). A name holding
  ``{i}`` is a template instead: copy K is named with ``{i}`` replaced by K
  (``name: "encoder.layers.encoder_layer_{i}"`` names torchvision's ViT blocks ``encoder.layers.encoder_layer_0`` …;
  quote it in YAML, where ``{`` starts a mapping); the copies are then referred to by their own names only.
  ``first: {...}`` is merged into the first copy only (its ``args`` key by key), so the first block of a stage can
  differ: ``first: {block: bottleneck_down, args: {stride: 2}}``. ``inputs`` feeds the first copy only.
- **Forward references** work as elsewhere in a spec: names are resolved after the whole spec is expanded.

Every mistake (unknown block or argument, missing argument, bad ``repeat``, recursion, unknown input inside a
block) is a :class:`~layercalc.errors.SpecError` whose one line names the spec entry and the block instance.
Layers that come out of the expansion are ordinary layers: validation and shape errors name them by their full name
(``layers[37] 'layer2.0.conv2' (conv2d)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .errors import SpecError, did_you_mean
from .names import split_output

BLOCK_INPUT = "in"            # inside a block: the block's input
NETWORK_INPUT = "input"       # at the top level: the network's input (as in layercalc.graph)
MAX_LAYERS = 100_000          # a typo such as `repeat: 1000000` must fail fast, not exhaust memory
#: how deeply block instances may nest (a block using a block using a block …). Real networks use 2–4 levels
#: (model → stage → block); the limit keeps the expansion far from Python's recursion limit.
MAX_BLOCK_NESTING = 32
#: how many values block arguments may copy into the expanded spec in all: an argument used many times, passed
#: on through several levels of blocks, multiplies (the block form of a YAML alias bomb)
MAX_SUBSTITUTED_VALUES = 1_000_000

_REFERENCE = re.compile(r"^\$(?:([A-Za-z_]\w*)|\{([A-Za-z_]\w*)\})$")
_PARAM_NAME = re.compile(r"^[A-Za-z_]\w*$")
_INSTANCE_FIELDS = ("block", "name", "args", "inputs")
_BLOCK_FIELDS = ("params", "layers", "output")
_REPEAT_FIELDS = ("repeat", "start", "first")


# ------------------------------------------------------------------------------------------- block definitions

@dataclass
class Block:
    name: str
    params: dict[str, Any]          # argument → default
    required: set[str]
    layers: list[Any]
    output: Any = None


def _parse_blocks(raw: Any) -> dict[str, Block]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"blocks: expected a mapping of block name → {{params, layers, output}}, "
                        f"got {type(raw).__name__}")
    blocks = {}
    for name, body in raw.items():
        where = f"blocks.{name}"
        if not isinstance(name, str) or not name:
            raise SpecError(f"blocks: block names must be non-empty strings, got {name!r}")
        if not isinstance(body, Mapping):
            raise SpecError(f"{where}: expected a mapping with 'layers' (and optional 'params', 'output'), "
                            f"got {type(body).__name__}")
        for key in body:
            if key not in _BLOCK_FIELDS:
                raise SpecError(f"{where}: unknown field {key!r}"
                                f"{did_you_mean(str(key), _BLOCK_FIELDS) or ' (accepted: params, layers, output)'}")
        layers = body.get("layers")
        if not isinstance(layers, list) or not layers:
            raise SpecError(f"{where}: 'layers' must be a non-empty list of layers, got {layers!r}")
        params, required = _parse_params(body.get("params"), where)
        block = Block(name, params, required, layers, body.get("output"))
        for i, layer in enumerate(block.layers):
            label = _label(f"{where}.layers[{i}]", layer) if isinstance(layer, Mapping) else f"{where}.layers[{i}]"
            _check_references(layer, set(params), label, name)
        _check_references(block.output, set(params), f"{where}.output", name)
        blocks[name] = block
    return blocks


def _parse_params(raw: Any, where: str) -> tuple[dict[str, Any], set[str]]:
    if raw is None:
        return {}, set()
    if isinstance(raw, list):
        raw = {name: None for name in raw}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}.params: expected a mapping of argument → default (null: required) or a list of "
                        f"names, got {raw!r}")
    for name in raw:
        if not isinstance(name, str) or not _PARAM_NAME.match(name):
            raise SpecError(f"{where}.params: argument names must be identifiers (letters, digits, _), got {name!r}")
    return dict(raw), {name for name, default in raw.items() if default is None}


def _check_references(value: Any, params: set[str], where: str, block: Optional[str]) -> None:
    """Every ``$arg`` in a block names one of its params; outside blocks there is nothing to refer to."""
    for text in _strings(value):
        if "$" not in text:
            continue
        match = _REFERENCE.match(text)
        if match is None:
            raise SpecError(f"{where}: {text!r}: a '$' reference must be the whole value ('$arg' or '${{arg}}'); "
                            f"nothing else in a string is substituted")
        arg = match.group(1) or match.group(2)
        if block is None:
            raise SpecError(f"{where}: {text!r} refers to a block argument, but this layer is not inside a block")
        if arg not in params:
            known = ", ".join(sorted(params)) or "none"
            raise SpecError(f"{where}: {text!r}: {arg!r} is not a parameter of block {block!r}"
                            f"{did_you_mean(arg, params) or f' (parameters: {known})'}")


def _strings(value: Any):
    """Every string in ``value``, depth first. Iterative: a pathologically nested value must give an error
    message, not a RecursionError (spec.from_data refuses deep nesting, but ``expand`` may be called directly)."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))


def _substitute(value: Any, args: Mapping[str, Any], budget: list[int]) -> Any:
    """A copy of ``value`` with every ``"$arg"`` string replaced by ``args[arg]`` (references were checked).

    ``budget[0]`` counts down the values copied (an argument's value counts its own size each time it is used);
    running out is an error, so the expansion's size is bounded whatever the arguments.
    """
    if isinstance(value, str):
        match = _REFERENCE.match(value) if value.startswith("$") else None
        if match:
            value = args[match.group(1) or match.group(2)]
            budget[0] -= _size(value)
            _check_budget(budget)
            return value
        return value
    budget[0] -= 1
    _check_budget(budget)
    if isinstance(value, Mapping):
        return {k: _substitute(v, args, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, args, budget) for v in value]
    return value


def _size(value: Any) -> int:
    """How many values ``value`` holds, counting at most one past :data:`MAX_SUBSTITUTED_VALUES` (iterative)."""
    count, stack = 0, [value]
    while stack and count <= MAX_SUBSTITUTED_VALUES:
        value = stack.pop()
        count += 1
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def _check_budget(budget: list[int]) -> None:
    if budget[0] < 0:
        raise SpecError(f"block arguments copy more than {MAX_SUBSTITUTED_VALUES:,} values into the expanded spec "
                        f"(an argument used many times, passed on through nested blocks, multiplies); a spec never "
                        f"needs that many")


# ---------------------------------------------------------------------------------------------- name scopes

@dataclass
class _Ref:
    """A name as written in one scope; resolved to a flat layer name once the whole spec is expanded."""
    scope: _Scope
    name: str
    where: str


@dataclass
class _Scope:
    """The names visible at one level: the top-level layer list, or the inside of one block instance."""
    prefix: str                                   # "" at the top level, "layer1.0." inside that instance
    block: Optional[str] = None                   # None at the top level
    input: Union[_Ref, str, None] = None          # what 'in' means (block scopes)
    names: dict[str, Union[str, _Ref]] = field(default_factory=dict)   # local name → flat name or alias
    children: dict[str, _Scope] = field(default_factory=dict)       # local instance name → its scope
    repeat_names: set[str] = field(default_factory=set)               # names of repeats (may be reused)
    last: Optional[str] = None                    # local name of the latest entry (for default chaining)
    count: int = 0                                # entries so far (for default names of unnamed layers)

    @property
    def input_name(self) -> str:
        return NETWORK_INPUT if self.block is None else BLOCK_INPUT

    def declare(self, local: str, target: Union[str, _Ref], where: str) -> None:
        if local == self.input_name:
            raise SpecError(f"{where}: the name {local!r} is reserved for the "
                            f"{'network' if self.block is None else 'block'}'s input")
        if local in self.names:
            raise SpecError(f"{where}: duplicate name {local!r}"
                            + (f" in block {self.block!r}" if self.block else ""))
        self.names[local] = target


def _resolve(ref: _Ref) -> str:
    """The flat layer name (or 'input') a reference stands for, following aliases (instance and repeat names);
    ``NAME:i`` (output ``i`` of a layer with several) resolves ``NAME`` and keeps the index."""
    base, index = split_output(ref.name) if isinstance(ref.name, str) else (ref.name, None)
    if index is not None:
        return f"{_resolve(_Ref(ref.scope, base, ref.where))}:{index}"
    seen = set()
    target: Union[str, _Ref] = ref
    while isinstance(target, _Ref):
        key = (id(target.scope), target.name)
        if key in seen:
            raise SpecError(f"{ref.where}: the input {ref.name!r} leads back to itself (a block instance fed by its "
                            f"own output?)")
        seen.add(key)
        scope, name = target.scope, target.name
        if name == scope.input_name:
            # the top level's 'input' is the network's; a block scope's is what feeds its instance (always set)
            target = NETWORK_INPUT if scope.block is None or scope.input is None else scope.input
        elif name in scope.names:
            target = scope.names[name]
        else:
            target = _resolve_nested(target)
    return target


def _resolve_nested(ref: _Ref) -> Union[str, _Ref]:
    """``stage.conv1`` names layer ``conv1`` inside instance ``stage``; unknown names are left to the graph at the
    top level (which lists the known names) and are errors inside a block."""
    scope, name = ref.scope, ref.name
    if not isinstance(name, str):
        return name                               # reported by the layer parser
    cut = name.rfind(".")
    while cut > 0:                                # the longest instance name that prefixes `name`
        if name[:cut] in scope.children:
            return _Ref(scope.children[name[:cut]], name[cut + 1:], ref.where)
        cut = name.rfind(".", 0, cut)
    if scope.block is None:
        return name
    hint = did_you_mean(name, [BLOCK_INPUT, *scope.names])
    if not hint:
        hint = f" (known: {', '.join([BLOCK_INPUT, *scope.names])})"
    extra = f"; inside a block the block's input is {BLOCK_INPUT!r}" if name == NETWORK_INPUT else ""
    raise SpecError(f"{ref.where}: unknown input {name!r} in block {scope.block!r}{hint}{extra}")


# ------------------------------------------------------------------------------------------------- expansion

@dataclass
class _Emitted:
    layer: dict[str, Any]
    inputs: list[_Ref]
    explicit: bool                                # the spec wrote `inputs` (else: chained to the previous entry)


class _Expander:
    def __init__(self, blocks: dict[str, Block]):
        self.blocks = blocks
        self.out: list[_Emitted] = []
        self.budget = [MAX_SUBSTITUTED_VALUES]       # values block arguments may still copy (see _substitute)

    def entries(self, entries: list[Any], scope: _Scope, where: str, stack: tuple[str, ...]) -> None:
        for i, entry in enumerate(entries):
            self.entry(entry, scope, f"{where}[{i}]", stack)

    def entry(self, entry: Any, scope: _Scope, where: str, stack: tuple[str, ...]) -> None:
        if not isinstance(entry, Mapping):
            if scope.block is not None:
                raise SpecError(f"{where}: expected a mapping (a layer, a block instance or a repeat), got {entry!r}")
            self.emit_raw(entry, scope)           # left for the layer parser, which says what is wrong
            return
        if "repeat" in entry:
            self.repeat(entry, scope, where, stack)
            return
        where = _label(where, entry)
        if "block" in entry:
            self.instance(entry, scope, where, stack)
        else:
            self.layer(entry, scope, where)

    # -- plain layers

    def layer(self, entry: Mapping, scope: _Scope, where: str) -> None:
        layer = dict(entry)
        name = layer.get("name")
        bad_name = isinstance(name, bool) or not isinstance(name, (str, int))
        if scope.block is not None and name is not None and bad_name:
            # Checked here, not left to the layer parser: the block's output is resolved (by name) before any layer
            # is parsed, and would otherwise be reported instead, as "output None is not one of its layers".
            type_ = layer.get("type")
            raise SpecError(f"{where}{f' ({type_})' if isinstance(type_, str) else ''}: a layer's 'name' must be a "
                            f"string (or, inside a block, a whole number such as 0), got {name!r} in block "
                            f"{scope.block!r}")
        local = self.local_name(layer.get("name"), layer.get("type"), scope)
        if scope.block is not None or "name" in layer:
            layer["name"] = scope.prefix + local if isinstance(local, str) else local
        explicit = layer.get("inputs") is not None
        inputs = self.input_refs(layer.pop("inputs", None), scope, where)
        if isinstance(local, str) and (scope.block is not None or "name" in layer):
            scope.declare(local, scope.prefix + local, where)   # unnamed top-level layers: the graph's default
        self.push(_Emitted(layer, inputs, explicit), where)
        scope.last = local if isinstance(local, str) else None  # a bad name is reported by the layer parser
        scope.count += 1

    def local_name(self, name: Any, type_: Any, scope: _Scope) -> Any:
        if name is None:
            index = scope.count if scope.block is not None else len(self.out)
            return f"{str(type_).lower()}_{index}"
        if isinstance(name, int) and not isinstance(name, bool) and scope.block is not None:
            return str(name)                      # `name: 0` inside a block, torchvision-style
        return name                               # anything else odd is reported by the layer parser

    def emit_raw(self, entry: Any, scope: _Scope) -> None:
        self.push(_Emitted(entry, [], True), "layers")
        scope.last, scope.count = None, scope.count + 1

    def push(self, emitted: _Emitted, where: str) -> None:
        if len(self.out) >= MAX_LAYERS:
            raise SpecError(f"{where}: the spec expands to more than {MAX_LAYERS:,} layers (check the repeat counts)")
        self.out.append(emitted)

    def input_refs(self, raw: Any, scope: _Scope, where: str) -> list[_Ref]:
        if raw is None:
            return [_Ref(scope, scope.last if scope.last is not None else scope.input_name, where)]
        sources = [raw] if isinstance(raw, str) else raw
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise SpecError(f"{where}: 'inputs' must be a layer name or a list of layer names, got {raw!r}")
        return [_Ref(scope, s, where) for s in sources]

    # -- block instances

    def instance(self, entry: Mapping, scope: _Scope, where: str, stack: tuple[str, ...]) -> None:
        for key in entry:
            if key not in _INSTANCE_FIELDS:
                hint = did_you_mean(str(key), _INSTANCE_FIELDS) or " (accepted: block, name, args, inputs)"
                raise SpecError(f"{where}: unknown field {key!r} in a block instance{hint}")
        block = self.lookup(entry["block"], where)
        if block.name in stack:
            raise SpecError(f"{where}: block {block.name!r} uses itself: {' → '.join([*stack, block.name])}")
        if len(stack) >= MAX_BLOCK_NESTING:
            raise SpecError(f"{where}: blocks nested more than {MAX_BLOCK_NESTING} levels deep "
                            f"({' → '.join([*stack[:3], '…', *stack[-2:], block.name])}); a network never needs that "
                            f"many")
        name = self.local_name(entry.get("name"), None, scope) if entry.get("name") is not None else None
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}: a block instance needs a 'name' (its layers are named NAME.<layer>), "
                            f"got {entry.get('name')!r}")
        args = self.arguments(block, entry.get("args"), where)
        feeds = self.input_refs(entry.get("inputs"), scope, where)
        if len(feeds) != 1:
            raise SpecError(f"{where}: a block takes exactly one input, got {len(feeds)}: {entry.get('inputs')!r}")
        inner = _Scope(prefix=scope.prefix + name + ".", block=block.name, input=feeds[0])
        inner_where = f"{where} (block {block.name!r})"
        self.entries(_substitute(block.layers, args, self.budget), inner, f"{inner_where} layers",
                     (*stack, block.name))
        output = _substitute(block.output, args, self.budget)
        if output is None:
            output = inner.last
        if not isinstance(output, str) or (output not in inner.names and output != BLOCK_INPUT):
            raise SpecError(f"{where}: block {block.name!r} output {output!r} is not one of its layers"
                            f"{did_you_mean(str(output), inner.names) or ' (layers: ' + ', '.join(inner.names) + ')'}")
        scope.declare(name, _Ref(inner, output, inner_where), where)
        scope.children[name] = inner
        scope.last, scope.count = name, scope.count + 1

    def lookup(self, name: Any, where: str) -> Block:
        if not isinstance(name, str) or name not in self.blocks:
            known = ", ".join(sorted(self.blocks)) or "none defined under 'blocks:'"
            raise SpecError(f"{where}: unknown block {name!r}"
                            f"{did_you_mean(str(name), self.blocks) or f' (blocks: {known})'}")
        return self.blocks[name]

    @staticmethod
    def arguments(block: Block, raw: Any, where: str) -> dict[str, Any]:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise SpecError(f"{where}: 'args' must be a mapping of argument → value, got {raw!r}")
        for name in raw:
            if name not in block.params:
                known = ", ".join(block.params) or "none"
                raise SpecError(f"{where}: unknown argument {name!r} for block {block.name!r}"
                                f"{did_you_mean(str(name), block.params) or f' (parameters: {known})'}")
        args = {**block.params, **raw}
        missing = [name for name in block.params if args[name] is None]
        if missing:
            plural = len(missing) > 1
            raise SpecError(f"{where}: block {block.name!r} needs argument{'s' if plural else ''} "
                            f"{', '.join(repr(m) for m in missing)} (set {'them' if plural else 'it'} in 'args')")
        return args

    # -- repeat

    def repeat(self, entry: Mapping, scope: _Scope, index_where: str, stack: tuple[str, ...]) -> None:
        where = _label(index_where, entry)
        count, start, first = entry["repeat"], entry.get("start", 0), entry.get("first")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SpecError(f"{where}: 'repeat' must be a positive integer, got {count!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise SpecError(f"{where}: 'start' (first index of a repeat) must be an integer ≥ 0, got {start!r}")
        if first is not None and not isinstance(first, Mapping):
            raise SpecError(f"{where}: 'first' must be a mapping of fields that override the first repetition, "
                            f"got {first!r}")
        if first is not None and any(key in first for key in _REPEAT_FIELDS):
            raise SpecError(f"{where}: 'first' cannot hold repeat, start or first")
        template = {k: v for k, v in entry.items() if k not in _REPEAT_FIELDS}
        name = template.get("name")
        if name is not None and not isinstance(name, str):
            raise SpecError(f"{where}: a repeat's 'name' must be a string, got {name!r}")
        if name is None and "block" in template:
            raise SpecError(f"{where}: a repeated block needs a 'name' (copies are named NAME.0, NAME.1, …)")
        pattern = _copy_names(name, where) if name is not None else None
        for i in range(count):
            copy = _merge_first(template, first, where) if i == 0 and first else dict(template)
            if i > 0:
                copy.pop("inputs", None)          # later copies chain from the previous one
            if pattern is not None:
                copy["name"] = pattern.format(start + i)
            self.entry(copy, scope, index_where if name is not None else f"{index_where} repetition {i}", stack)
        if name is not None and pattern == f"{name}.{{}}":
            # Repeats may share a name to continue a numbering (`start`); NAME is then the latest one's output.
            if name in scope.repeat_names:
                del scope.names[name]
            scope.declare(name, _Ref(scope, f"{name}.{start + count - 1}", where), where)
            scope.repeat_names.add(name)


#: the placeholder of a repeat's name template: the copy's number
COPY_NUMBER = "{i}"


def _copy_names(name: str, where: str) -> str:
    """A ``str.format`` pattern of the copies' names: ``NAME.{}``, or the template with ``{i}`` as ``{}`` (any
    other brace is refused: a typo such as ``{1}`` or ``{j}`` would otherwise name every copy alike)."""
    if COPY_NUMBER not in name:
        if "{" in name or "}" in name:
            raise SpecError(f"{where}: the repeat's name {name!r} holds a brace but no {COPY_NUMBER} (the copy's "
                            f"number in a name template, as in 'encoder_layer_{COPY_NUMBER}')")
        return name + ".{}"
    parts = name.split(COPY_NUMBER)
    if len(parts) != 2 or any("{" in part or "}" in part for part in parts):
        raise SpecError(f"{where}: the repeat's name template {name!r} must hold {COPY_NUMBER} exactly once and no "
                        f"other brace")
    return parts[0] + "{}" + parts[1]


def _merge_first(template: dict, first: Mapping, where: str) -> dict:
    merged = {**template, **first}
    if "args" in first and isinstance(template.get("args"), Mapping):
        if not isinstance(first["args"], Mapping):
            raise SpecError(f"{where}: 'first.args' must be a mapping, got {first['args']!r}")
        merged["args"] = {**template["args"], **first["args"]}
    return merged


def _label(where: str, entry: Mapping) -> str:
    name = entry.get("name")
    return f"{where} {name!r}" if isinstance(name, str) else where


# --------------------------------------------------------------------------------------------------- entry point

def needs_expansion(data: Mapping[str, Any]) -> bool:
    layers = data.get("layers")
    return "blocks" in data or (isinstance(layers, list) and any(
        isinstance(e, Mapping) and ("block" in e or "repeat" in e) for e in layers))


def expand(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``blocks:`` removed and every block instance and ``repeat`` replaced by plain layers.

    A spec without blocks or repeats is returned as is (after checking it uses no ``$arg``).
    """
    layers = data.get("layers")
    if not isinstance(layers, list):
        return data
    if not needs_expansion(data):
        for i, entry in enumerate(layers):
            if isinstance(entry, Mapping):
                _check_references(entry, set(), _label(f"layers[{i}]", entry), None)
        return data
    blocks = _parse_blocks(data.get("blocks"))
    for i, entry in enumerate(layers):
        if isinstance(entry, Mapping):
            _check_references(entry, set(), _label(f"layers[{i}]", entry), None)
    expander = _Expander(blocks)
    expander.entries(layers, _Scope(prefix=""), "layers", ())
    result = {k: v for k, v in data.items() if k != "blocks"}
    result["layers"] = _wire(expander.out)
    return result


def _wire(emitted: list[_Emitted]) -> list[Any]:
    """Resolve every reference to a flat name; keep ``inputs`` only where chaining to the previous layer is wrong."""
    flat = []
    previous = NETWORK_INPUT
    for index, item in enumerate(emitted):
        layer = item.layer
        if isinstance(layer, dict):
            sources = [_resolve(ref) for ref in item.inputs]
            if item.explicit or sources != [previous]:
                layer["inputs"] = sources
            name = layer.get("name")
            previous = name if isinstance(name, str) else f"{str(layer.get('type')).lower()}_{index}"
        flat.append(layer)
    return flat


# ------------------------------------------------------------------------------------------------------ folding

def fold(data: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`expand` for a flat spec: runs of layers named ``P.k.<rest>``, ``P.(k+1).<rest>``, …
    with the same layers and wiring, each fed by the one before, become a block and one ``repeat`` (what
    ``layercalc convert`` writes for an imported model: torchvision's ``layer1.0`` … ``layer1.1``, Hugging Face's
    ``model.layers.0`` …; ``P.head_K`` components, torchvision ViT's ``encoder_layer_0`` …, as a ``{i}`` template).
    Only a fold that expands back to exactly the same layers is kept; anything else stays flat. A spec that already
    has blocks is returned as is.

    >>> flat = {"input": [4], "layers": [{"name": f"h.{k}.fc", "type": "linear", "out_features": 4}
    ...                                   for k in range(3)]}
    >>> folded = fold(flat)
    >>> folded["layers"], folded["blocks"]["h"]["layers"]
    ([{'repeat': 3, 'name': 'h', 'block': 'h'}], [{'name': 'fc', 'type': 'linear', 'out_features': 4}])
    """
    layers = data.get("layers")
    if "blocks" in data or not isinstance(layers, list) or not all(
            isinstance(layer, Mapping) and isinstance(layer.get("name"), str) for layer in layers):
        return dict(data)
    layers = _implicit(layers)
    blocks: dict[str, Any] = {}
    out: list[Any] = []
    i = 0
    while i < len(layers):
        found = _fold_at(layers, i, blocks)
        if found is None:
            out.append(layers[i])
            i += 1
        else:
            entry, consumed = found
            out.append(entry)
            i += consumed
    if not blocks:
        return {**data, "layers": layers}
    folded = {**{k: v for k, v in data.items() if k != "layers"}, "blocks": blocks, "layers": out}
    if _explicit(expand(folded)["layers"]) != _explicit(layers):       # a fold must change nothing
        return {**data, "layers": layers}
    return folded


def _names(inputs: Any) -> list:
    """A layer's ``inputs`` as a list (a spec may give one source as a plain string)."""
    return [inputs] if isinstance(inputs, str) else list(inputs)


def _implicit(layers: list) -> list:
    """Layers without ``inputs`` where they only name the previous layer (the default), as people write specs."""
    result, previous = [], NETWORK_INPUT
    for layer in layers:
        inputs = layer.get("inputs")
        if inputs == previous or inputs == [previous]:
            layer = {k: v for k, v in layer.items() if k != "inputs"}
        result.append(layer)
        previous = layer["name"]
    return result


def _explicit(layers: list) -> list:
    """Layers with their implicit input (the previous layer) written out, for comparing wiring."""
    result, previous = [], NETWORK_INPUT
    for layer in layers:
        inputs = layer.get("inputs", [previous])
        result.append({**layer, "inputs": _names(inputs)})
        previous = layer["name"]
    return result


def _instance(layers: list, start: int, prefix: str) -> int:
    """How many consecutive layers from ``start`` are named ``prefix.<rest>``."""
    end = start
    while end < len(layers) and layers[end]["name"].startswith(prefix + ".") and len(layers[end]["name"]) > \
            len(prefix) + 1:
        end += 1
    return end - start


def _signature(layers: list, start: int, count: int, prefix: str, feed: str) -> Optional[list]:
    """The instance's layers as a block's (names without ``prefix.``, the feed as ``in``), or None when a layer
    reads a tensor from outside the instance other than its feed."""
    inside = {layer["name"] for layer in layers[start:start + count]}
    block, previous = [], feed
    for layer in layers[start:start + count]:
        entry = {**layer, "name": layer["name"][len(prefix) + 1:]}
        if "inputs" in layer:
            names = _names(layer["inputs"])
            local = []
            for name in names:
                if name in inside:
                    local.append(name[len(prefix) + 1:])
                elif name == feed:
                    local.append(BLOCK_INPUT)
                else:
                    return None
            entry["inputs"] = local
        elif previous not in inside and previous != feed:
            return None
        block.append(entry)
        previous = layer["name"]
    return block


#: a name component numbered after an underscore: torchvision ViT's ``encoder_layer_0`` (folded to a ``{i}`` template)
_UNDERSCORE_NUMBERED = re.compile(r"^(.*_)(\d+)$")


def _numbered_components(parts: list[str]):
    """For each numbered component of a dotted name, outermost first, (first number, copy K's instance name, the
    repeat's name, the block's name): ``P.K`` (a ``NAME.K`` repeat) or ``P.head_K`` (a ``{i}`` template)."""
    for j in range(len(parts) - 1):
        match = None if parts[j].isdigit() else _UNDERSCORE_NUMBERED.match(parts[j])
        if match is None and not parts[j].isdigit():
            continue
        head, digits = match.groups() if match else ("", parts[j])
        if len(digits) > 1 and digits[0] == "0":
            continue
        if head:
            stem = ".".join([*parts[:j], head])
            yield int(digits), (lambda k, stem=stem: f"{stem}{k}"), f"{stem}{COPY_NUMBER}", stem.rstrip("_")
        elif j:
            base = ".".join(parts[:j])
            yield int(digits), (lambda k, base=base: f"{base}.{k}"), base, base


def _fold_at(layers: list, i: int, blocks: dict[str, Any]) -> Optional[tuple[dict, int]]:
    """A ``repeat`` of identical instances starting at layer ``i`` (at least two), or None."""
    parts = layers[i]["name"].split(".")
    previous = layers[i - 1]["name"] if i else NETWORK_INPUT
    feed = previous
    if "inputs" in layers[i]:
        names = _names(layers[i]["inputs"])
        if len(names) == 1:
            feed = names[0]
    for k0, instance, repeat_name, block_name in _numbered_components(parts):
        count = _instance(layers, i, instance(k0))
        first = _signature(layers, i, count, instance(k0), feed) if count else None
        if first is None:
            continue
        copies, at, k = 1, i + count, k0 + 1
        while at < len(layers):
            size = _instance(layers, at, instance(k))
            if size != count or _signature(layers, at, size, instance(k), layers[at - 1]["name"]) != first:
                break
            copies, at, k = copies + 1, at + size, k + 1
        if copies < 2:
            continue
        name, suffix = block_name.replace(".", "_"), k0
        while name in blocks and blocks[name]["layers"] != first:     # another stage of the same name
            name, suffix = f"{block_name.replace('.', '_')}_{suffix}", suffix + 1
        blocks[name] = {"params": {}, "layers": first}
        entry: dict[str, Any] = {"repeat": copies, "name": repeat_name, "block": name}
        if k0:
            entry["start"] = k0
        if feed != previous:
            entry["inputs"] = feed
        return entry, at - i
    return None
