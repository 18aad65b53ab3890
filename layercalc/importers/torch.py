"""PyTorch modules as layercalc networks: :func:`from_torch` (``layercalc.from_torch``), where torch is installed.

The module is traced with ``torch.fx`` (standard ``torch.nn`` modules stay whole: one layer each) and its shapes are
propagated on fake tensors — no memory for activations, no forward pass on real data. Each graph node becomes one
layer of plain spec data:

- a module call is a layer named by the module's qualified name (``layer1.0.conv1``), so the module's
  ``state_dict`` keys are ``<layer>.<param>`` and its weights load into ``verify``/``run``; a module called twice is
  two layers, the second ``tied_to`` the first where it has parameters (shared weights, counted once);
- a function or method call (``torch.flatten``, ``x + y``, ``x.view(...)``, ``F.relu``) is a layer named by its
  graph node;
- sizes read from tensors (``x.size(0)``, ``x.shape``) are plain numbers, not layers; a reshape's target shape is
  the one torch computed.

Anything without a mapping — a module class, a function, a tensor constant, a scalar operand — is a
:class:`~layercalc.errors.SpecError` naming the node and what it calls, never a layer counted as zero. Once
built, every layer's output shape is checked against the shape torch propagated: a disagreement is refused, not
reported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import numbers
from collections.abc import Callable
from functools import cache
from typing import Any, Optional

from ..errors import SpecError, shown
from ..spec import from_data

__all__ = ["from_torch", "spec_from_torch"]


class _Unsupported(Exception):
    """A node with no mapping (turned into a SpecError naming the node)."""


def from_torch(module: Any, input_size: Any, *, input_dtype: Any = None, name: Optional[str] = None,
               unknown: str = "refuse") -> Any:
    """A :class:`~layercalc.Network` of a ``torch.nn.Module``: ``input_size`` is the whole input shape, batch
    first, as torchinfo's (``(1, 3, 224, 224)``); ``input_dtype`` defaults to ``torch.long`` when the input feeds
    an ``nn.Embedding``, else ``torch.float32``. An operation without a layer type is refused; with
    ``unknown="count-zero"`` it is kept as an ``opaque`` layer of the shape torch traced, counted as zero, and
    every such operation is listed in a warning.

    >>> import torch
    >>> net = from_torch(torch.nn.Sequential(torch.nn.Linear(784, 500)), (1, 784))
    >>> net.analyze().totals.params
    392500
    """
    return from_data(spec_from_torch(module, input_size, input_dtype=input_dtype, name=name, unknown=unknown),
                     f"from_torch({type(module).__name__})")


def spec_from_torch(module: Any, input_size: Any, *, input_dtype: Any = None, name: Optional[str] = None,
                    unknown: str = "refuse") -> dict:
    """The plain spec data :func:`from_torch` validates (what ``layercalc.spec.to_yaml`` writes out)."""
    if unknown not in ("refuse", "count-zero"):
        raise SpecError(f"from_torch: unknown={shown(unknown)}: 'refuse' (the default: an operation without a layer "
                        f"type is an error) or 'count-zero' (kept with its traced shape, counted as zero, listed in a "
                        f"warning)")
    try:
        import torch
        import torch.fx
    except ImportError:
        raise SpecError("from_torch needs PyTorch: pip install torch") from None
    if not isinstance(module, torch.nn.Module):
        raise SpecError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    shapes = _input_shapes(input_size)
    shape = shapes[0]
    rules = _module_rules(torch)

    class Tracer(torch.fx.Tracer):
        """The modules with a rule here stay whole (one call); torch.nn's others too, and are refused by name.
        Every other module — a user's own, even one named ``Linear``, or a subclass that overrides ``forward`` —
        is traced into."""
        def is_leaf_module(self, m: Any, qualified_name: str) -> bool:
            return _rule_for(m, rules) is not None or super().is_leaf_module(m, qualified_name)

    root = module
    if _rule_for(module, rules) is not None:          # a bare nn.Linear …: traced as the one call of a wrapper
        if len(shapes) > 1:
            raise SpecError(f"from_torch: a bare {type(module).__name__} with {len(shapes)} inputs: wrap it in a "
                            f"module whose forward takes them")
        root = _whole_module(module, torch)
    try:
        graph = Tracer().trace(root)
        graph_module = torch.fx.GraphModule(root, graph, type(module).__name__)
    except Exception as exc:         # fx raises TraceError, TypeError, NotImplementedError … on dynamic control flow
        raise SpecError(f"from_torch: torch.fx cannot trace {type(module).__name__}: {_first_line(exc)} (control "
                        f"flow that depends on tensor values cannot be traced)") from None
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(shapes):
        raise SpecError(f"from_torch: the module's forward takes {len(placeholders)} tensor"
                        f"{'s' if len(placeholders) > 1 else ''} ({', '.join(n.name for n in placeholders)}) but "
                        f"input_size gives {len(shapes)}: give one size per input, e.g. "
                        f"[(1, 3, 224, 224), (1, 10)]")
    dtypes = [input_dtype if input_dtype is not None else _default_dtype(graph_module, node, torch)
              for node in placeholders]
    _propagate_shapes(graph_module, shapes, dtypes, torch)
    converter = _Converter(graph_module, shape, torch, rules, unknown)
    layers = converter.convert()
    _warn_unused(module, converter.used)
    if converter.opaque:
        import warnings
        warnings.warn(f"from_torch: {len(converter.opaque)} operation{'s' if len(converter.opaque) > 1 else ''} of "
                      f"{type(module).__name__} without a layercalc layer type, kept with the shape torch traced and "
                      f"counted as ZERO params, MACs and FLOPs (unknown='count-zero'): "
                      f"{'; '.join(converter.opaque)}", stacklevel=3)
    spec = {"name": name or type(module).__name__, "input": list(shape[1:]), "batch": shape[0], "layers": layers}
    _check_against_torch(spec, converter.expected, converter.expected_params)
    return spec


def _whole_module(module: Any, torch: Any) -> Any:
    """A module with a rule given as the root (``from_torch(nn.Linear(8, 4), (1, 8))``): fx would trace into its
    forward (``F.linear`` on its parameters), so it is held by a wrapper whose forward calls it — one layer, named
    by its class (``Linear``: ``net.run(weights={"Linear": module.state_dict()})``)."""
    attribute = type(module).__name__

    class Whole(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return getattr(self, attribute)(x)

    wrapper = Whole()
    wrapper.add_module(attribute, module)
    return wrapper


def _warn_unused(module: Any, used: set[int]) -> None:
    """Parameters the traced forward never reads (GoogLeNet's auxiliary heads in eval mode) are not in the network:
    say so, with their modules, since ``sum(p.numel() for p in module.parameters())`` counts them."""
    unused = [(name, p) for name, p in module.named_parameters() if id(p) not in used]
    if unused:
        import warnings
        owners = sorted({name.rsplit(".", 1)[0] for name, _ in unused})
        shown = ", ".join(owners[:5]) + (f" and {len(owners) - 5} more" if len(owners) > 5 else "")
        warnings.warn(f"from_torch: {sum(p.numel() for _, p in unused):,} parameters of {type(module).__name__} "
                      f"are not used by its forward pass ({'training' if module.training else 'eval'} mode) and "
                      f"are not counted: {shown}", stacklevel=3)


def _input_shapes(input_size: Any) -> list[tuple[int, ...]]:
    """``input_size`` as whole sizes, batch first: a tuple, list or ``torch.Size`` of ints, or a list of them for a
    model with several inputs (``[(1, 3, 224, 224), (1, 10)]``, one batch size). Nothing is converted (``int(3.7)``
    is 3, ``int(True)`` 1, and a string is a sequence of digits): anything else is refused."""
    several = isinstance(input_size, (tuple, list)) and bool(input_size) and all(
        isinstance(item, (tuple, list)) or hasattr(item, "shape") for item in input_size)
    shapes = [_input_shape(item) for item in input_size] if several else [_input_shape(input_size)]
    batches = {shape[0] for shape in shapes}
    if len(batches) > 1:
        raise SpecError(f"from_torch: input_size {[list(shape) for shape in shapes]}: the inputs have batch sizes "
                        f"{sorted(batches)}; a network has one batch size, first in every input's size")
    return shapes


def _input_shape(input_size: Any) -> tuple[int, ...]:
    example = "e.g. (1, 3, 224, 224), or (1, 1024) for token ids"
    if hasattr(input_size, "shape") and not isinstance(input_size, (tuple, list)):
        raise SpecError(f"from_torch: input_size is a {type(input_size).__name__} of shape "
                        f"{list(input_size.shape)}, not a size: pass the tensor's .shape")
    if not isinstance(input_size, (tuple, list)):
        raise SpecError(f"from_torch: input_size {shown(input_size)} ({type(input_size).__name__}) must be a "
                        f"sequence of sizes, batch first, {example}")
    for size in input_size:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise SpecError(f"from_torch: input_size {shown(input_size)}: {shown(size)} "
                            f"({type(size).__name__}) is not a whole number; sizes are ints, batch first, {example}")
    shape = tuple(int(s) for s in input_size)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise SpecError(f"from_torch: input_size {list(shape)} must hold the batch size and at least one more "
                        f"size, each ≥ 1, {example}")
    return shape


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _default_dtype(graph_module: Any, placeholder: Any, torch: Any) -> Any:
    """``torch.long`` when the input goes straight into an embedding (token ids), else ``torch.float32``."""
    for user in placeholder.users:
        if user.op == "call_module" and isinstance(graph_module.get_submodule(user.target), torch.nn.Embedding):
            return torch.long
    return torch.float32


def _propagate_shapes(graph_module: Any, shapes: list[tuple[int, ...]], dtypes: list[Any], torch: Any) -> None:
    """``node.meta["tensor_meta"]`` for every tensor node, on fake tensors (no data, no real forward pass)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.shape_prop import ShapeProp

    class ScalarProp(ShapeProp):
        """ShapeProp that also keeps the plain numbers nodes compute from sizes (``x.size(-1) ** -0.5``): known
        once the input size is, they are constants to the layers that use them."""
        def run_node(self, n: Any) -> Any:
            result = super().run_node(n)
            if isinstance(result, (int, float)) and not isinstance(result, bool):
                n.meta["scalar"] = result
            return result

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        examples = [torch.zeros(shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)]
    # for an op that fails on the given shapes, torch's fake-tensor dispatcher logs a whole traceback and ShapeProp
    # prints one (traceback.print_exc) before raising: the one-line SpecError below says it all, so both are
    # silenced while shapes propagate
    log = logging.getLogger("torch._subclasses.fake_tensor")
    was_disabled, log.disabled = log.disabled, True
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ScalarProp(graph_module, fake_mode=mode).propagate(*examples)
    except Exception as exc:         # ShapeProp says which node failed, and why in the exception it wraps
        sizes = " and ".join(str(list(shape)) for shape in shapes)
        kinds = ", ".join(dict.fromkeys(str(dtype) for dtype in dtypes))
        hint = (f" (if {list(shapes[0])} is one example without its batch size, pass {(1, *shapes[0])})"
                if len(shapes) == 1 else "")
        raise SpecError(f"from_torch: the module does not run on an input of {sizes} "
                        f"({kinds}): {_first_line(exc.__cause__ or exc)}{hint}") from None
    finally:
        log.disabled = was_disabled


def _meta_shape(node: Any) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta")
    return tuple(int(s) for s in meta.shape) if meta is not None and hasattr(meta, "shape") else None


# ------------------------------------------------------------------------------------------ the node converter

class _Converter:
    """Walks the traced graph in order, producing one spec layer per tensor-producing node."""

    def __init__(self, graph_module: Any, shape: tuple[int, ...], torch: Any, rules: dict,
                 unknown: str = "refuse") -> None:
        self.gm, self.torch, self.batch, self.rules, self.unknown = graph_module, torch, shape[0], rules, unknown
        self.held: list[int] = []                 # the parameter ids in the order they were held (undo a node)
        self.opaque: list[str] = []               # what unknown="count-zero" counted as zero, for the warning
        self.class_name = ""                       # the torch class whose rule is running (a subclass's base)
        self.sources: dict[Any, str] = {}          # node → the layer (or 'input', or 'NAME:i') holding its tensor
        self.layers: list[dict] = []
        self.names: set[str] = {"input"}
        self.expected: dict[str, tuple[int, ...]] = {}   # layer → torch's output shape (checked after analysis)
        self.parameter_owners: dict[frozenset, str] = {}   # the ids of a layer's parameters → the layer
        self.used: set[int] = set()                # ids of the parameters some layer holds
        self.attributes: dict[Any, Any] = {}       # get_attr node → its tensor, until a layer uses it
        # (layers, the module's parameter count, its label): the layers written for one module hold exactly the
        # module's parameters (checked after analysis)
        self.expected_params: list[tuple[list[str], int, str]] = []

    def convert(self) -> list[dict]:
        self.order = {node: i for i, node in enumerate(self.gm.graph.nodes)}
        for index, node in enumerate(self.gm.graph.nodes):
            if node.op in ("placeholder", "output"):
                if node.op == "placeholder":
                    if index == 0:                    # (placeholders come first, in the forward's order)
                        self.sources[node] = "input"
                    else:                             # a second input: a layer of its own, named as the argument
                        self._emit(node, {"type": "extra_input", "shape": list(_meta_shape(node) or ())[1:]}, [],
                                   name=node.name)
                continue
            mark = (len(self.layers), len(self.expected_params), len(self.held))
            try:
                self._node(node)
            except _Unsupported as exc:
                if self.unknown != "count-zero" or not self._count_zero(node, mark, str(exc)):
                    raise SpecError(f"from_torch: node {index} '{node.name}' ({_describe(node)}): {exc}") from None
        return self.layers

    def hold(self, ids: Any) -> None:
        """Mark parameters as held by a layer (counted there, never again)."""
        new = [i for i in ids if i not in self.used]
        self.used.update(new)
        self.held.extend(new)

    def _undo(self, mark: tuple[int, int, int]) -> None:
        """Forget what a node that failed half-way wrote (layers, expectations, held parameters)."""
        layers, expected_params, held = mark
        removed = {entry["name"] for entry in self.layers[layers:]}
        del self.layers[layers:], self.expected_params[expected_params:]
        self.names -= removed
        for name in removed:
            self.expected.pop(name, None)
        self.sources = {n: s for n, s in self.sources.items() if s.rpartition(":")[0] not in removed and
                        s not in removed}
        self.parameter_owners = {ids: s for ids, s in self.parameter_owners.items() if s not in removed}
        self.used.difference_update(self.held[held:])
        del self.held[held:]

    def _count_zero(self, node: Any, mark: tuple[int, int, int], reason: str) -> bool:
        """unknown="count-zero": the node as an ``opaque`` layer of the shape torch traced, counting zero, its
        parameters held (so not counted anywhere else) and listed; False where no such layer can stand for it (no
        single tensor out, or one without the batch first)."""
        shape = _meta_shape(node)
        if shape is None or shape[:1] != (self.batch,):
            return False
        self._undo(mark)
        operands: list[Any] = []
        _collect_nodes((node.args, node.kwargs), operands)
        inputs = [a for a in dict.fromkeys(operands) if a in self.sources]
        parameters = {id(v): v for a in operands if isinstance(v := self.attributes.get(a), self.torch.nn.Parameter)}
        if node.op == "call_module":
            parameters.update({id(p): p for p in self.gm.get_submodule(node.target).parameters()})
        parameters = {i: p for i, p in parameters.items() if i not in self.used}
        self.hold(parameters)
        name = self._emit(node, {"type": "opaque", "shape": list(shape[1:]), "op": _describe(node)}, inputs,
                          name=node.target if node.op == "call_module" else None)
        count = sum(p.numel() for p in parameters.values())
        uncounted = f", {count:,} parameter{'s' if count > 1 else ''} not counted" if count else ""
        self.opaque.append(f"{name} ({_describe(node)}{uncounted}: {reason})")
        return True

    # -- helpers

    def _unique(self, wanted: str) -> str:
        name, k = wanted, 1
        while name in self.names:
            k += 1
            name = f"{wanted}_{k}"
        self.names.add(name)
        return name

    def _source(self, arg: Any) -> str:
        if arg not in self.sources and arg in self.attributes:
            return self._parameter_layer(arg)
        if arg not in self.sources:
            raise _Unsupported(f"its operand '{getattr(arg, 'name', arg)}' is not a tensor layercalc follows "
                               f"(a constant or a size computed from shapes)")
        return self.sources[arg]

    def _emit(self, node: Any, fields: dict, inputs: list[Any], name: Optional[str] = None) -> str:
        layer_name = self._unique(name or _scoped_name(node))
        layer = {"name": layer_name, **fields}
        layer["inputs"] = [self._source(a) for a in inputs]
        self.layers.append(layer)
        self.sources[node] = layer_name
        shape = _meta_shape(node)
        if shape is not None:
            self.expected[layer_name] = shape
        return layer_name

    def add_layer(self, name: str, fields: dict, inputs: list[str]) -> str:
        """Append one layer reading the named tensors (for a module written as several layers); its name made
        unique."""
        name = self._unique(name)
        self.layers.append({"name": name, **fields, "inputs": inputs})
        return name

    def finish(self, node: Any, last: str) -> dict:
        """The node's tensor is layer ``last`` (checked against torch's shape): what a multi-layer rule returns."""
        self.sources[node] = last
        shape = _meta_shape(node)
        if shape is not None:
            self.expected[last] = shape
        return {"_done": True}

    def _alias(self, node: Any, arg: Any) -> None:
        """A node that passes its input on unchanged (``contiguous``, a no-op ``expand`` of a parameter)."""
        self.sources[node] = self._source(arg)

    def _in_place(self, node: Any) -> None:
        """An in-place operation (``x.add_(1)``, ``F.relu(x, inplace=True)``, ``nn.ReLU(inplace=True)``) changes
        its input: a later use of that input reads the new values, which the graph does not show (it names the
        old node). Followed only where nothing reads the input after it."""
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        if not ((target.endswith("_") and not target.endswith("__")) or target in _AUGMENTED or
                node.kwargs.get("inplace") or getattr(module, "inplace", False)):
            return
        source = node.args[0] if node.args else None
        later = [user for user in getattr(source, "users", ()) if user is not node and
                 self.order.get(user, -1) > self.order[node]]
        if later:
            raise _Unsupported(f"changes '{getattr(source, 'name', source)}' in place, which '{later[0].name}' "
                               f"reads afterwards (it would see the changed values); use the operation's result "
                               f"instead")

    def _node(self, node: Any) -> None:
        self._in_place(node)
        if node.op == "get_attr":
            self._attribute(node)
        elif node.op == "call_module":
            self._module(node)
        elif _meta_shape(node) is None and not _is_tuple_of_tensors(node):
            pass                                     # a size, a shape tuple, an int, torch._assert: not a layer
        elif node.op in ("call_function", "call_method"):
            self._function(node, node.target)
        else:
            raise _Unsupported(f"graph operation {node.op!r} has no mapping")

    def _attribute(self, node: Any) -> None:
        """A tensor attribute is read lazily: a layer that holds it as its own weights takes it
        (:meth:`take_parameter`: ``F.layer_norm(x, s, self.weight, self.bias)``); one used as a tensor becomes a
        ``parameter`` layer when first used (:meth:`_source`)."""
        self.attributes[node] = _fetch_attr(self.gm, node.target)

    def _parameter_layer(self, node: Any) -> str:
        value = self.attributes[node]
        if not isinstance(value, self.torch.nn.Parameter):
            raise _Unsupported(f"reads the tensor attribute '{node.target}', which is not a learnable parameter (a "
                               f"constant or buffer used in arithmetic has no layer type)")
        if id(value) in self.used:
            raise _Unsupported(f"reads '{node.target}', a parameter another layer holds, as a tensor")
        self.hold({id(value)})
        shape = list(value.shape)
        if len(shape) > 1 and shape[0] == 1:      # (1, 1, 768): the batch dim of a class token or position table
            shape = shape[1:]
        name = self._emit(node, {"type": "parameter", "shape": shape}, [], name=node.target)
        self.expected.pop(name)                   # [N, *shape] here, torch's own tensor has no batch dim
        return name

    def take_parameter(self, arg: Any, what: str) -> Any:
        """The learnable parameter a function call takes as its layer's own weights (``weight`` of
        ``F.layer_norm``): marked as held, so nothing else counts it."""
        value = self.attributes.get(arg) if hasattr(arg, "op") else None
        if not isinstance(value, self.torch.nn.Parameter):
            raise _Unsupported(f"its {what} is not a parameter of the module read directly (a computed tensor or a "
                               f"buffer as weights has no layer type)")
        if id(value) in self.used:
            raise _Unsupported(f"its {what} '{arg.target}' is a parameter another layer holds (shared weights are "
                               f"modelled for whole modules only)")
        self.hold({id(value)})
        return value

    # -- modules

    def _module(self, node: Any) -> None:
        module = self.gm.get_submodule(node.target)
        match = _rule_for(module, self.rules)
        if match is None:
            raise _Unsupported(f"module class {_class_label(type(module), self.torch)} has no layercalc layer type")
        rule, self.class_name = match
        _check_batched(module, node, self.class_name)
        ids = frozenset(id(p) for p in module.parameters(recurse=True))
        first = len(self.layers)
        fields = rule(module, node, self)
        if fields is None:                             # the identity at inference (Dropout, Identity)
            fields = {"type": "identity"}
        count = sum(p.numel() for p in module.parameters(recurse=True))
        label = f"module {node.target} ({_class_label(type(module), self.torch)})"
        if fields.get("_done"):                       # a rule that wrote several layers itself (add_layer)
            if ids & self.used:
                raise _Unsupported("a module written as several layers is called again (or shares parameters): "
                                   "its weights would be counted twice")
            self.hold(ids)
            self.expected_params.append(([entry["name"] for entry in self.layers[first:]], count, label))
            return
        tensors = fields.pop("_tensors", None) or [a for a in node.args if hasattr(a, "op")][:1]
        owner = self.parameter_owners.get(ids) if ids else None
        if ids and owner is None and ids & self.used:
            raise _Unsupported("shares some, not all, of its parameters with another layer (layercalc ties whole "
                               "layers: tied_to)")
        name = self._emit(node, fields, tensors, name=node.target)
        if owner is not None:            # the module called again, or another module on the same tensors (a tied
            self.layers[-1]["tied_to"] = owner        # output head): its weights, counted once
        else:
            self.expected_params.append(([name], count, label))
            if ids:
                self.parameter_owners[ids] = name
                self.hold(ids)

    def _function(self, node: Any, target: Any) -> None:
        key = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        rule = _FUNCTION_RULES.get(key)
        if rule is not None and not isinstance(target, str) and not _library_function(target):
            # a function of the user's own that fx keeps whole (torch.fx.wrap) is not torch's of the same name
            raise _Unsupported(f"{getattr(target, '__module__', None)}.{key} is not torch's {key}: it has no "
                               f"layercalc layer type")
        if rule is None:
            raise _Unsupported(f"{key} has no layercalc layer type")
        rule(node, self)


#: ``x += y`` and its kin: in place on a tensor (the name ``x`` is bound to the result, an alias of the old ``x``
#: is not)
_AUGMENTED = ("iadd", "isub", "imul", "itruediv")

#: where the functions the rules stand for are defined: torch's, Python's operators, torchvision's (stochastic
#: depth, Swin's patch merging)
_LIBRARY_MODULES = ("torch", "_operator", "operator", "builtins", "torchvision")


def _library_function(target: Any) -> bool:
    module = getattr(target, "__module__", None) or ""
    return module.split(".")[0] in _LIBRARY_MODULES


def _scoped_name(node: Any) -> str:
    """A function node's layer name: inside a submodule's forward, ``<module>.<op>`` (``layer1.0.add``), so the
    layers of one block share its prefix (and ``convert`` can fold repeated blocks); at the top, fx's node name."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return node.name
    path = str(list(stack)[-1]).split("@")[0]
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", node.name)
    return f"{path}.{target}" if path else node.name


def _describe(node: Any) -> str:
    if node.op == "call_module":
        return f"module {node.target}"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{node.op} {target}"


def _fetch_attr(graph_module: Any, target: str) -> Any:
    value = graph_module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _collect_nodes(value: Any, found: list[Any]) -> None:
    """The graph nodes among a call's arguments (nested in lists, tuples and dicts), in order."""
    if hasattr(value, "op"):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_nodes(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_nodes(item, found)


def _is_tuple_of_tensors(node: Any) -> bool:
    meta = node.meta.get("tensor_meta")      # (TensorMetadata is itself a NamedTuple: told apart by .shape)
    return isinstance(meta, (tuple, list)) and not hasattr(meta, "shape") and bool(meta)


def _arg(node: Any, index: int, keyword: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(keyword, default)


def _pair(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


# ------------------------------------------------------------------------------------------------ module rules

def _conv(module: Any, node: Any, conv: _Converter) -> dict:
    rank = len(module.kernel_size)
    transposed = conv.class_name.startswith("ConvTranspose")
    fields = {"type": f"conv_transpose{rank}d" if transposed else f"conv{rank}d",
              "in_channels": module.in_channels, "out_channels": module.out_channels,
              "kernel_size": _pair(module.kernel_size), "stride": _pair(module.stride),
              "padding": module.padding if isinstance(module.padding, str) else _pair(module.padding),
              "dilation": _pair(module.dilation), "groups": module.groups, "bias": module.bias is not None}
    if transposed:
        fields["output_padding"] = _pair(module.output_padding)
    elif module.padding_mode != "zeros":
        fields["padding_mode"] = module.padding_mode
    return fields


def _linear(module: Any, node: Any, conv: _Converter) -> dict:
    return {"type": "linear", "in_features": module.in_features, "out_features": module.out_features,
            "bias": module.bias is not None}


def _batchnorm(module: Any, node: Any, conv: _Converter) -> dict:
    rank = {"BatchNorm1d": 1, "BatchNorm2d": 2, "BatchNorm3d": 3}[conv.class_name]
    return {"type": f"batchnorm{rank}d", "num_features": module.num_features, "eps": module.eps,
            "affine": module.affine, "track_running_stats": module.track_running_stats}


def _layernorm(module: Any, node: Any, conv: _Converter) -> dict:
    return {"type": "layernorm", "normalized_shape": list(module.normalized_shape), "eps": module.eps,
            "elementwise_affine": module.elementwise_affine, "bias": module.bias is not None}


def _groupnorm(module: Any, node: Any, conv: _Converter) -> dict:
    return {"type": "groupnorm", "num_groups": module.num_groups, "num_channels": module.num_channels,
            "eps": module.eps, "affine": module.affine}


def _rmsnorm(module: Any, node: Any, conv: _Converter) -> dict:
    fields: dict[str, Any] = {"type": "rmsnorm", "normalized_shape": list(module.normalized_shape),
                              "elementwise_affine": module.elementwise_affine}
    if module.eps is not None:
        fields["eps"] = module.eps
    else:
        raise _Unsupported("RMSNorm with eps=None uses torch.finfo(dtype).eps; give eps explicitly")
    return fields


def _pool(module: Any, node: Any, conv: _Converter) -> dict:
    name = conv.class_name                                           # MaxPool2d, AvgPool1d …
    kind, rank = ("maxpool" if name.startswith("Max") else "avgpool"), name[-2]
    fields = {"type": f"{kind}{rank}d", "kernel_size": _pair(module.kernel_size),
              "stride": _pair(module.stride), "padding": _pair(module.padding), "ceil_mode": module.ceil_mode}
    if kind == "maxpool":
        if getattr(module, "return_indices", False):
            raise _Unsupported("return_indices=True returns a second tensor layercalc does not model")
        fields["dilation"] = _pair(module.dilation)
    else:
        fields["count_include_pad"] = module.count_include_pad
        if module.divisor_override is not None:
            fields["divisor_override"] = module.divisor_override
    return fields


def _adaptive_pool(module: Any, node: Any, conv: _Converter) -> dict:
    name = conv.class_name                                           # AdaptiveAvgPool2d …
    kind, rank = ("adaptive_maxpool" if "Max" in name else "adaptive_avgpool"), name[-2]
    size = module.output_size
    if isinstance(size, (tuple, list)) and any(s is None for s in size):
        shape = _meta_shape(node)
        assert shape is not None
        size = list(shape[2:])                                       # None keeps the input's size: torch's result
    return {"type": f"{kind}{rank}d", "output_size": _pair(size)}


def _flatten(module: Any, node: Any, conv: _Converter) -> dict:
    return {"type": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}


def _simple(type_name: str, **attributes: str) -> Callable[[Any, Any, _Converter], dict]:
    """A module whose fields are some of its attributes (``negative_slope`` …) under layercalc's names."""
    def rule(module: Any, node: Any, conv: _Converter) -> dict:
        return {"type": type_name, **{field: getattr(module, attr) for field, attr in attributes.items()}}
    return rule


def _identity(module: Any, node: Any, conv: _Converter) -> None:
    return None


def _dropout(module: Any, node: Any, conv: _Converter) -> dict:
    """nn.Dropout, AlphaDropout (and Dropout1d/2d/3d, FeatureAlphaDropout, which act on whole channels): the
    identity at inference, kept as a ``dropout`` layer for what training keeps — the mask, which the alpha forms
    keep as dropout does (x·mask + b: the add keeps nothing; measured)."""
    fields = {"type": "dropout", "p": module.p, "inplace": module.inplace}
    per_channel = type(module).__name__ in ("Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout")
    return {**fields, "per_channel": True} if per_channel else fields


def _softmax(module: Any, node: Any, conv: _Converter) -> dict:
    if module.dim is None:
        raise _Unsupported("Softmax(dim=None) picks a dim by the input's rank (deprecated); give dim")
    return {"type": "softmax", "dim": module.dim}


def _embedding(module: Any, node: Any, conv: _Converter) -> dict:
    fields = {"type": "embedding", "num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim}
    if module.padding_idx is not None:
        fields["padding_idx"] = module.padding_idx
    if module.max_norm is not None:
        raise _Unsupported("max_norm renormalizes looked-up rows (extra arithmetic layercalc does not count)")
    return fields


def _mha(module: Any, node: Any, conv: _Converter) -> dict:
    if _arg(node, 3, "key_padding_mask") is not None or _arg(node, 5, "attn_mask") is not None:
        raise _Unsupported("attention with key_padding_mask or attn_mask: the mask's values are data, not shape; "
                           "only is_causal is modelled")
    query, key, value = (_arg(node, i, k) for i, k in ((0, "query"), (1, "key"), (2, "value")))
    inputs = [query] if key is query and value is query else ([query, key] if value is key else
                                                              [query, key, value])
    fields: dict[str, Any] = {"type": "multi_head_attention", "embed_dim": module.embed_dim,
                              "num_heads": module.num_heads, "bias": module.in_proj_bias is not None,
                              "add_bias_kv": module.bias_k is not None, "add_zero_attn": module.add_zero_attn,
                              "batch_first": module.batch_first, "_tensors": inputs}
    if module.kdim != module.embed_dim or module.vdim != module.embed_dim:
        fields.update(kdim=module.kdim, vdim=module.vdim)
    if _arg(node, 7, "is_causal", False):
        fields["causal"] = True
    if module.dropout:                                # on the attention weights, in training only
        fields["dropout"] = module.dropout
    if not _arg(node, 4, "need_weights", True):          # F.scaled_dot_product_attention's path (torchvision's ViT)
        fields["fused_sdpa"] = True
    return fields


def _recurrent(module: Any, node: Any, conv: _Converter) -> dict:
    kind = conv.class_name.lower()                   # lstm, gru, rnn
    if len([a for a in node.args if hasattr(a, "op")]) > 1 or node.kwargs:
        raise _Unsupported("an initial hidden state is given: only the zero initial state is modelled")
    fields: dict[str, Any] = {"type": kind, "input_size": module.input_size, "hidden_size": module.hidden_size,
                              "num_layers": module.num_layers, "bias": module.bias,
                              "batch_first": module.batch_first, "bidirectional": module.bidirectional}
    if kind == "lstm" and module.proj_size:
        fields["proj_size"] = module.proj_size
    if kind == "rnn":
        fields["nonlinearity"] = module.nonlinearity
    return fields


def _upsample(module: Any, node: Any, conv: _Converter) -> dict:
    fields: dict[str, Any] = {"type": "upsample", "mode": module.mode}
    if module.size is not None:
        fields["size"] = _pair(module.size)
    else:
        fields["scale_factor"] = _pair(module.scale_factor)
    if module.align_corners is not None:
        fields["align_corners"] = module.align_corners
    return fields


def _zero_pad(module: Any, node: Any, conv: _Converter) -> dict:
    # torch's padding is (left, right, top, bottom …): last dim first; layercalc's [[before, after], …] in dim order
    pads = list(module.padding)
    pairs = [[pads[i], pads[i + 1]] for i in range(0, len(pads), 2)][::-1]
    return {"type": "zero_pad", "padding": pairs}


def _shifted_window_attention(module: Any, node: Any, conv: _Converter) -> dict:
    """torchvision's ``ShiftedWindowAttention`` (Swin V1; V2's cosine attention and bias MLP are another layer)."""
    if hasattr(module, "logit_scale"):
        raise _Unsupported(f"{type(module).__name__} (Swin V2's cosine attention) has no layer type")
    return {"type": "shifted_window_attention", "num_heads": module.num_heads,
            "window_size": list(module.window_size), "shift_size": list(module.shift_size),
            "qkv_bias": module.qkv.bias is not None, "proj_bias": module.proj.bias is not None}


def _layernorm_2d(module: Any, node: Any, conv: _Converter) -> dict:
    """ConvNeXt's ``LayerNorm2d`` (torchvision): LayerNorm over the channels of NCHW, written as permute →
    layernorm → permute; the layernorm keeps the module's name (its weights)."""
    nhwc = conv.add_layer(f"{node.target}_to_nhwc", {"type": "permute", "dims": [0, 2, 3, 1]},
                          [conv._source(node.args[0])])
    norm = conv.add_layer(node.target, _layernorm(module, node, conv), [nhwc])
    return conv.finish(node, conv.add_layer(f"{node.target}_to_nchw", {"type": "permute", "dims": [0, 3, 1, 2]},
                                            [norm]))


def _encoder_layer_into(conv: _Converter, module: Any, prefix: str, source: str, causal: bool) -> str:
    """``nn.TransformerEncoderLayer`` as its layers (named as its submodules: ``self_attn``, ``linear1``, …):
    post-norm ``norm1(x + sa(x))``, ``norm2(x + ff(x))``, or pre-norm ``x + sa(norm1(x))``, ``x + ff(norm2(x))``;
    dropout is the identity at inference. Returns the layer holding the output."""
    nn, functional = conv.torch.nn, conv.torch.nn.functional
    if type(module).forward is not nn.TransformerEncoderLayer.forward:
        raise _Unsupported(f"{prefix} is a {_qualified(type(module))} with its own forward, not torch's "
                           f"TransformerEncoderLayer")
    for part, cls in (("self_attn", nn.MultiheadAttention), ("linear1", nn.Linear), ("linear2", nn.Linear),
                      ("norm1", nn.LayerNorm), ("norm2", nn.LayerNorm)):
        if type(getattr(module, part)) is not cls:
            raise _Unsupported(f"{prefix}.{part} is a {_qualified(type(getattr(module, part)))}, not torch's "
                               f"{cls.__name__}: the layer's rule would not describe it")
    activation = module.activation
    act: dict[str, Any]
    if activation is functional.relu or type(activation) is nn.ReLU:
        act = {"type": "relu"}
    elif activation is functional.gelu:
        act = {"type": "gelu"}
    elif type(activation) is nn.GELU:
        act = {"type": "gelu", "approximate": activation.approximate}
    else:
        raise _Unsupported(f"TransformerEncoderLayer activation {activation!r}: relu and gelu are modelled")
    attention = module.self_attn
    mha = {"type": "multi_head_attention", "embed_dim": attention.embed_dim, "num_heads": attention.num_heads,
           "bias": attention.in_proj_bias is not None, "batch_first": attention.batch_first,
           "fused_sdpa": True}                 # its _sa_block calls self_attn with need_weights=False
    if causal:
        mha["causal"] = True
    norm = lambda n: {"type": "layernorm", "normalized_shape": list(n.normalized_shape), "eps": n.eps,  # noqa: E731
                      "elementwise_affine": n.elementwise_affine, "bias": n.bias is not None}
    linear = lambda m: {"type": "linear", "in_features": m.in_features,  # noqa: E731
                        "out_features": m.out_features, "bias": m.bias is not None}
    add = conv.add_layer
    if module.norm_first:
        n1 = add(f"{prefix}.norm1", norm(module.norm1), [source])
        sa = add(f"{prefix}.self_attn", mha, [n1])
        x = add(f"{prefix}.add_1", {"type": "add"}, [source, sa])
        n2 = add(f"{prefix}.norm2", norm(module.norm2), [x])
        h = add(f"{prefix}.linear1", linear(module.linear1), [n2])
        h = add(f"{prefix}.activation", act, [h])
        ff = add(f"{prefix}.linear2", linear(module.linear2), [h])
        return add(f"{prefix}.add_2", {"type": "add"}, [x, ff])
    sa = add(f"{prefix}.self_attn", mha, [source])
    x = add(f"{prefix}.norm1", norm(module.norm1), [add(f"{prefix}.add_1", {"type": "add"}, [source, sa])])
    h = add(f"{prefix}.linear1", linear(module.linear1), [x])
    h = add(f"{prefix}.activation", act, [h])
    ff = add(f"{prefix}.linear2", linear(module.linear2), [h])
    return add(f"{prefix}.norm2", norm(module.norm2), [add(f"{prefix}.add_2", {"type": "add"}, [x, ff])])


def _causal_only(node: Any, mask_keys: tuple[str, ...], position: int) -> bool:
    """``is_causal`` of a transformer call; a mask tensor (its values are data) is refused."""
    if any(node.kwargs.get(k) is not None for k in mask_keys) or len(node.args) > position:
        raise _Unsupported("a mask tensor is given: its values are data; only is_causal is modelled")
    return bool(node.kwargs.get("is_causal", False))


def _transformer_encoder_layer(module: Any, node: Any, conv: _Converter) -> dict:
    causal = _causal_only(node, ("src_mask", "mask", "src_key_padding_mask"), 1)
    return conv.finish(node, _encoder_layer_into(conv, module, node.target, conv._source(node.args[0]), causal))


def _transformer_encoder(module: Any, node: Any, conv: _Converter) -> dict:
    """``nn.TransformerEncoder``: its ``layers.i`` one after the other, then its optional ``norm``."""
    causal = _causal_only(node, ("mask", "src_key_padding_mask"), 1)
    x = conv._source(node.args[0])
    for i, layer in enumerate(module.layers):
        x = _encoder_layer_into(conv, layer, f"{node.target}.layers.{i}", x, causal)
    if module.norm is not None:
        if type(module.norm) is not conv.torch.nn.LayerNorm:
            raise _Unsupported(f"TransformerEncoder norm {type(module.norm).__name__}: LayerNorm is modelled")
        x = conv.add_layer(f"{node.target}.norm", _layernorm(module.norm, node, conv), [x])
    return conv.finish(node, x)


_ModuleRule = Callable[[Any, Any, _Converter], Optional[dict]]

#: classes of other libraries, by module-qualified name (not imported to be looked up: torchvision is optional)
_LIBRARY_RULES: dict[str, _ModuleRule] = {
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _shifted_window_attention,
    "torchvision.models.convnext.LayerNorm2d": _layernorm_2d,
}

#: torch.nn's classes, by their name in ``torch.nn`` (the class objects themselves are looked up when from_torch
#: runs: :func:`_module_rules`)
_NN_RULES: dict[str, _ModuleRule] = {
    "TransformerEncoderLayer": _transformer_encoder_layer, "TransformerEncoder": _transformer_encoder,
    **{f"Conv{r}d": _conv for r in (1, 2, 3)}, **{f"ConvTranspose{r}d": _conv for r in (1, 2, 3)},
    "Linear": _linear, "LayerNorm": _layernorm, "GroupNorm": _groupnorm, "RMSNorm": _rmsnorm,
    **{f"BatchNorm{r}d": _batchnorm for r in (1, 2, 3)},
    **{f"{k}Pool{r}d": _pool for k in ("Max", "Avg") for r in (1, 2, 3)},
    **{f"Adaptive{k}Pool{r}d": _adaptive_pool for k in ("Max", "Avg") for r in (1, 2, 3)},
    "Flatten": _flatten, "Identity": _identity, "Dropout": _dropout, "Dropout1d": _dropout,
    "Dropout2d": _dropout, "Dropout3d": _dropout, "AlphaDropout": _dropout, "FeatureAlphaDropout": _dropout,
    "ReLU": _simple("relu"), "ReLU6": _simple("relu6"), "Sigmoid": _simple("sigmoid"), "Tanh": _simple("tanh"),
    "SiLU": _simple("silu"), "Hardswish": _simple("hardswish"), "Hardsigmoid": _simple("hardsigmoid"),
    "GELU": _simple("gelu", approximate="approximate"), "LeakyReLU": _simple("leaky_relu",
                                                                             negative_slope="negative_slope"),
    "PReLU": _simple("prelu", num_parameters="num_parameters", init="init"),
    "Softmax": _softmax, "Embedding": _embedding, "MultiheadAttention": _mha,
    "LSTM": _recurrent, "GRU": _recurrent, "RNN": _recurrent, "Upsample": _upsample,
    "ZeroPad1d": _zero_pad, "ZeroPad2d": _zero_pad, "ZeroPad3d": _zero_pad,
    "PixelShuffle": _simple("pixel_shuffle", upscale_factor="upscale_factor"),
    "PixelUnshuffle": _simple("pixel_unshuffle", downscale_factor="downscale_factor"),
    "ChannelShuffle": _simple("channel_shuffle", groups="groups"),
}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _class_label(cls: type, torch: Any) -> str:
    """``torch.nn.PReLU`` for torch.nn's own classes, the module-qualified name of any other."""
    return f"torch.nn.{cls.__name__}" if getattr(torch.nn, cls.__name__, None) is cls else _qualified(cls)


@cache
def _module_rules(torch: Any) -> dict[str, tuple[_ModuleRule, str]]:
    """Module-qualified class name (``torch.nn.modules.linear.Linear``) → (rule, the class's name): a class is
    known by what it is, never by its bare name (a user's own ``Linear`` is not torch's)."""
    table = {_qualified(getattr(torch.nn, name)): (rule, name) for name, rule in _NN_RULES.items()
             if hasattr(torch.nn, name)}
    table.update({path: (rule, path.rsplit(".", 1)[1]) for path, rule in _LIBRARY_RULES.items()})
    return table


def _rule_for(module: Any, rules: dict[str, tuple[_ModuleRule, str]]) -> Optional[tuple[_ModuleRule, str]]:
    """The rule of the module's class, or of the nearest base class with one when the subclass computes what the
    base computes (it does not override ``forward``); None otherwise (a subclass with its own forward is traced
    into, its extra parameters caught by the parameter check)."""
    cls = type(module)
    for base in cls.__mro__:
        match = rules.get(_qualified(base))
        if match is not None:
            return match if getattr(cls, "forward", None) is getattr(base, "forward", None) else None
    return None


#: torch.nn classes that also run on an input without its batch dim, and the rank they take with it
_BATCHED_RANKS: dict[str, int] = {
    **{f"{kind}{r}d": r + 2 for r in (1, 2, 3) for kind in (
        "Conv", "ConvTranspose", "MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "ZeroPad")},
    "LSTM": 3, "GRU": 3, "RNN": 3, "MultiheadAttention": 3, "PixelShuffle": 4, "PixelUnshuffle": 4,
}


def _check_batched(module: Any, node: Any, class_name: str) -> None:
    """torch runs a conv on [C, H, W] as one example; layercalc keeps the batch first: a tensor one dim short
    of the batched rank here is an input_size without its batch size (refused with the fix, not mis-read)."""
    rank = _BATCHED_RANKS.get(class_name)
    tensors = [a for a in node.args if hasattr(a, "op")]
    shape = _meta_shape(tensors[0]) if rank and tensors else None
    if rank and shape is not None and len(shape) == rank - 1:
        raise _Unsupported(f"{class_name} receives {list(shape)}, one example without a batch dim (torch runs it "
                           f"unbatched; layercalc keeps the batch first): if that is the input, give input_size "
                           f"with the batch size first, e.g. {tuple([1, *shape])}")


# ---------------------------------------------------------------------------------------------- function rules

def _scalar(arg: Any) -> Optional[float]:
    """A plain number operand: a constant in the code (``x * 0.5``) or one computed from sizes (``d ** -0.5``,
    known once the input size is); None for a tensor."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return arg
    value = arg.meta.get("scalar") if hasattr(arg, "meta") else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sizes(value: Any) -> list[int]:
    """A size or sizes given to a function, some read from shapes (``(x.shape[-1],)``): whole numbers."""
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    numbers = [_scalar(item) for item in items]
    if any(not isinstance(n, int) for n in numbers):
        raise _Unsupported(f"sizes {value!r}: whole numbers (or sizes read from shapes) are modelled")
    return numbers                                   # type: ignore[return-value]


#: ``tensor OP number`` and ``number OP tensor`` as ``x·scale + offset`` (rescaling); None where no rescaling is
#: it (``2 / x``)
_RESCALINGS: dict[str, tuple[Callable[[float], Optional[tuple[float, float]]],
                             Callable[[float], Optional[tuple[float, float]]]]] = {
    "add": (lambda c: (1.0, c), lambda c: (1.0, c)),
    "sub": (lambda c: (1.0, -c), lambda c: (-1.0, c)),
    "mul": (lambda c: (c, 0.0), lambda c: (c, 0.0)),
    "div": (lambda c: (1.0 / c, 0.0) if c else None, lambda c: None),
}


def _elementwise(type_name: str) -> Callable[[Any, _Converter], None]:
    """``x + y``, ``torch.mul(x, y)`` …: two tensors layercalc follows (a merge layer), or a tensor and a number
    (``x * 0.5``, ``1 - x``: rescaling)."""
    def rule(node: Any, conv: _Converter) -> None:
        operands = node.args[:2]
        if len(operands) != 2 or any(k not in ("alpha", "rounding_mode") for k in node.kwargs):
            raise _Unsupported(f"{type_name} with arguments {list(node.kwargs)}: two operands are modelled")
        if node.kwargs.get("alpha", 1) != 1 or node.kwargs.get("rounding_mode") is not None:
            raise _Unsupported(f"{type_name} with alpha or rounding_mode has no layer type")
        numbers = [_scalar(a) for a in operands]
        if numbers[0] is None and numbers[1] is None:
            if not all(a in conv.sources or a in conv.attributes for a in operands):
                shown = ", ".join(getattr(a, "name", repr(a)) for a in operands)
                raise _Unsupported(f"{type_name} of ({shown}): an operand is neither a tensor layercalc follows nor "
                                   f"a number")
            conv._emit(node, {"type": type_name}, list(operands))
            return
        if numbers[0] is not None and numbers[1] is not None:
            raise _Unsupported(f"{type_name} of two numbers is not a tensor")
        tensor_first = numbers[1] is not None
        constant = float(numbers[1] if tensor_first else numbers[0])      # type: ignore[arg-type]
        affine = _RESCALINGS[type_name][0 if tensor_first else 1](constant)
        if affine is None:
            raise _Unsupported(f"{constant:g} {'/' if type_name == 'div' else type_name} a tensor (a reciprocal) "
                               f"has no layer type")
        scale, offset = affine
        conv._emit(node, {"type": "rescaling", "scale": scale, "offset": offset},
                   [operands[0] if tensor_first else operands[1]])
    return rule


def _neg(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "rescaling", "scale": -1.0}, [node.args[0]])


def _pow(node: Any, conv: _Converter) -> None:
    """``x ** 2``, ``torch.pow(x, 0.5)``, ``x.pow(3)``: a constant exponent (a tensor one, or ``2 ** x``, has no
    layer type)."""
    base, exponent = node.args[0], _arg(node, 1, "exponent")
    if _scalar(base) is not None or _scalar(exponent) is None:
        raise _Unsupported("a power with a tensor exponent has no layer type; x ** constant is modelled")
    conv._emit(node, {"type": "pow", "exponent": float(_scalar(exponent))}, [base])  # type: ignore[arg-type]


def _constant_power(exponent: float) -> Callable[[Any, _Converter], None]:
    """``torch.sqrt``, ``torch.rsqrt``, ``torch.square``: pow with the function's exponent."""
    def rule(node: Any, conv: _Converter) -> None:
        conv._emit(node, {"type": "pow", "exponent": exponent}, [node.args[0]])
    return rule


def _clamp(node: Any, conv: _Converter) -> None:
    """``torch.clamp``/``clip``, ``x.clamp(min=0)``, ``F.hardtanh`` (bounds −1, 1 by default): constant bounds."""
    hardtanh = node.target in ("hardtanh",) or getattr(node.target, "__name__", "") in ("hardtanh", "hardtanh_")
    defaults = (-1.0, 1.0) if hardtanh else (None, None)
    low = _arg(node, 1, "min_val" if hardtanh else "min", defaults[0])
    high = _arg(node, 2, "max_val" if hardtanh else "max", defaults[1])
    bounds = {}
    for field, value in (("min", low), ("max", high)):
        if value is None:
            continue
        number = _scalar(value)
        if number is None:
            raise _Unsupported(f"a clamp with a tensor {field} has no layer type; constant bounds are modelled")
        bounds[field] = float(number)
    if not bounds:
        conv._alias(node, node.args[0])              # torch refuses this; a clamp without bounds is the identity
        return
    conv._emit(node, {"type": "clamp", **bounds}, [node.args[0]])


def _weights_layer(node: Any, conv: _Converter, fields: dict, weights: dict[str, Any], source: Any) -> None:
    """A function call whose weights are the module's parameters read directly (``F.layer_norm(x, s, self.weight,
    self.bias)``): one layer holding them, named by the module that owns them (``norm`` for ``norm.weight``), so
    the state_dict's keys load; its parameter count is checked against theirs."""
    held = {role: conv.take_parameter(arg, role) for role, arg in weights.items() if arg is not None}
    targets = [weights[role].target for role in held]
    owners = {target.rpartition(".")[0] for target in targets}
    name = owners.pop() if len(owners) == 1 and "" not in owners else None
    if name is not None and any(t.rpartition(".")[2] != role for t, role in zip(targets, held)):
        name = None                                  # self.gamma, self.beta: no state_dict key would load anyway
    layer = conv._emit(node, fields, [source], name=name)
    conv.expected_params.append(([layer], sum(p.numel() for p in held.values()), f"{_describe(node)} of "
                                                                                    f"{', '.join(targets)}"))


def _layer_norm_function(node: Any, conv: _Converter) -> None:
    weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    if weight is None and bias is not None:
        raise _Unsupported("layer_norm with a bias and no weight has no layer type")
    fields = {"type": "layernorm", "normalized_shape": _sizes(_arg(node, 1, "normalized_shape")),
              "eps": _arg(node, 4, "eps", 1e-5), "elementwise_affine": weight is not None, "bias": bias is not None}
    _weights_layer(node, conv, fields, {"weight": weight, "bias": bias}, node.args[0])


def _rms_norm_function(node: Any, conv: _Converter) -> None:
    eps = _arg(node, 3, "eps")
    if eps is None:
        raise _Unsupported("rms_norm with eps=None uses torch.finfo(dtype).eps; give eps explicitly")
    weight = _arg(node, 2, "weight")
    fields = {"type": "rmsnorm", "normalized_shape": _sizes(_arg(node, 1, "normalized_shape")), "eps": eps,
              "elementwise_affine": weight is not None}
    _weights_layer(node, conv, fields, {"weight": weight}, node.args[0])


def _group_norm_function(node: Any, conv: _Converter) -> None:
    weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    if (weight is None) != (bias is None):
        raise _Unsupported("group_norm with only one of weight and bias has no layer type")
    fields = {"type": "groupnorm", "num_groups": _sizes([_arg(node, 1, "num_groups")])[0],
              "eps": _arg(node, 4, "eps", 1e-5),
              "affine": weight is not None}
    _weights_layer(node, conv, fields, {"weight": weight, "bias": bias}, node.args[0])


def _linear_function(node: Any, conv: _Converter) -> None:
    """``F.linear(x, self.weight, self.bias)`` with the module's own parameters: a linear layer."""
    weight, bias = _arg(node, 1, "weight"), _arg(node, 2, "bias")
    shape = _meta_shape(weight) if hasattr(weight, "op") else None
    if shape is None or len(shape) != 2:
        raise _Unsupported("F.linear's weight must be a 2-d parameter of the module")
    fields = {"type": "linear", "in_features": shape[1], "out_features": shape[0], "bias": bias is not None}
    _weights_layer(node, conv, fields, {"weight": weight, "bias": bias}, node.args[0])


def _prelu_function(node: Any, conv: _Converter) -> None:
    """``F.prelu(x, self.weight)`` with the module's own slopes (1, or one per channel: dim 1)."""
    weight = _arg(node, 1, "weight")
    shape = _meta_shape(weight) if hasattr(weight, "op") else None
    if shape is None or len(shape) != 1:
        raise _Unsupported("F.prelu's weight must be a 1-d parameter of the module (1 or one slope per channel)")
    _weights_layer(node, conv, {"type": "prelu", "num_parameters": shape[0]}, {"weight": weight}, node.args[0])


def _pad(node: Any, conv: _Converter) -> None:
    """``F.pad(x, (left, right, top, bottom, …), mode, value)``: zero_pad with zeros, pad otherwise (torch's pairs
    run from the last dim back; layercalc's are in dim order, over every spatial dim)."""
    pads, mode, value = _arg(node, 1, "pad"), _arg(node, 2, "mode", "constant"), _arg(node, 3, "value", None)
    number = 0.0 if value is None else _scalar(value)
    if number is None:
        raise _Unsupported(f"F.pad with value {value!r}: a constant number is modelled")
    numbers = [_scalar(p) for p in pads]
    if any(not isinstance(p, int) for p in numbers) or len(numbers) % 2:
        raise _Unsupported(f"F.pad sizes {pads!r}: whole numbers in pairs are modelled")
    if any(p < 0 for p in numbers):                   # type: ignore[operator]
        raise _Unsupported("F.pad with a negative size crops: no layer type")
    pairs = [[int(numbers[i]), int(numbers[i + 1])] for i in range(0, len(numbers), 2)][::-1]  # type: ignore[arg-type]
    shape = _meta_shape(node.args[0])
    assert shape is not None
    if len(pairs) > len(shape) - 1:
        raise _Unsupported("F.pad of the batch dim changes the batch; layercalc keeps it")
    if len(pairs) > len(shape) - 2:
        raise _Unsupported("F.pad of the channel dim (dim 1) has no layer type (pad and zero_pad pad spatial dims)")
    pairs = [[0, 0]] * (len(shape) - 2 - len(pairs)) + pairs      # the spatial dims F.pad leaves as they are
    if mode == "constant" and number == 0:
        conv._emit(node, {"type": "zero_pad", "padding": pairs}, [node.args[0]])
    elif mode in ("constant", "reflect", "replicate", "circular"):
        fields = {"type": "pad", "padding": pairs, "mode": mode}
        if mode == "constant":
            fields["value"] = float(number)
        conv._emit(node, fields, [node.args[0]])
    else:
        raise _Unsupported(f"F.pad mode {mode!r} has no layer type")


def _activation(type_name: str, **keywords: tuple[int, str, Any]) -> Callable[[Any, _Converter], None]:
    """``F.relu(x)``, ``x.sigmoid()``, ``F.leaky_relu(x, 0.2)``: keywords map a field to (position, kwarg, default)."""
    def rule(node: Any, conv: _Converter) -> None:
        fields = {"type": type_name}
        for field, (position, keyword, default) in keywords.items():
            value = _arg(node, position, keyword, default)
            if value is not None:
                fields[field] = value
        conv._emit(node, fields, [node.args[0]])
    return rule


def _softmax_function(node: Any, conv: _Converter) -> None:
    """``F.softmax(x, dim)``, ``x.softmax(-1)``: without dim, torch picks one by the input's rank (dim 0 for 3-d:
    the batch) — refused, as nn.Softmax(dim=None) is."""
    dim = _arg(node, 1, "dim")
    if dim is None:
        raise _Unsupported("softmax without dim picks a dim by the input's rank (deprecated); give dim")
    conv._emit(node, {"type": "softmax", "dim": dim}, [node.args[0]])


def _identity_function(node: Any, conv: _Converter) -> None:
    conv._alias(node, node.args[0])


def _dropout_function(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "dropout", "p": _arg(node, 1, "p", 0.5)}, [node.args[0]])


def _cat(node: Any, conv: _Converter) -> None:
    tensors = list(_arg(node, 0, "tensors"))
    if len(tensors) == 1:                            # torch.cat([x]) is x (DenseNet's first dense layer)
        conv._alias(node, tensors[0])
        return
    conv._emit(node, {"type": "concat", "dim": _arg(node, 1, "dim", 0)}, tensors)


def _flatten_function(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "flatten", "start_dim": _arg(node, 1, "start_dim", 0),
                      "end_dim": _arg(node, 2, "end_dim", -1)}, [node.args[0]])


def _reshape(node: Any, conv: _Converter) -> None:
    """``view``/``reshape`` (and ``flatten`` of a dims that torch resolved): the shape torch computed."""
    shape = _meta_shape(node)
    assert shape is not None
    if shape[:1] != (conv.batch,):
        raise _Unsupported(f"reshapes to {list(shape)}, moving the batch dim ({conv.batch}); layercalc keeps the "
                           f"batch dim first")
    conv._emit(node, {"type": "reshape", "shape": list(shape[1:])}, [node.args[0]])


def _permute(node: Any, conv: _Converter) -> None:
    dims = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "dims"),)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    conv._emit(node, {"type": "permute", "dims": list(dims)}, [node.args[0]])


def _transpose(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "transpose", "dim0": _arg(node, 1, "dim0"), "dim1": _arg(node, 2, "dim1")},
               [node.args[0]])


def _reduce(type_name: str) -> Callable[[Any, _Converter], None]:
    def rule(node: Any, conv: _Converter) -> None:
        dim = _arg(node, 1, "dim")
        if dim is None:
            raise _Unsupported(f"{type_name} over every dim (the batch included) has no layer type; give dim")
        conv._emit(node, {"type": type_name, "dim": list(dim) if isinstance(dim, (tuple, list)) else dim,
                          "keepdim": bool(_arg(node, 2, "keepdim", False))}, [node.args[0]])
    return rule


def _matmul(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "matmul"}, list(node.args[:2]))


def _sdpa(node: Any, conv: _Converter) -> None:
    if _arg(node, 3, "attn_mask") is not None:
        raise _Unsupported("attn_mask: an explicit mask's values are data; only is_causal is modelled")
    fields: dict[str, Any] = {"type": "scaled_dot_product_attention",
                              "is_causal": bool(_arg(node, 5, "is_causal", False))}
    if _arg(node, 6, "scale") is not None:
        fields["scale"] = _arg(node, 6, "scale")
    if node.kwargs.get("enable_gqa"):
        fields["enable_gqa"] = True
    conv._emit(node, fields, list(node.args[:3]))


def _getitem(node: Any, conv: _Converter) -> None:
    source, index = node.args
    if not node.users:                               # `out, _ = lstm(x)`: the unused item is no tensor to follow
        return
    if _is_tuple_of_tensors(source):
        # (output, attention weights) of nn.MultiheadAttention, (output, (h, c)) of nn.LSTM, chunk/split pieces
        if source.op == "call_module" and index == 0:
            conv._alias(node, source)
            return
        if source in conv.sources and source.op != "call_module":
            conv.sources[node] = f"{conv.sources[source]}:{index}"
            return
        raise _Unsupported(f"item {index} of {source.name}'s outputs (attention weights, recurrent states) is not "
                           f"modelled; only the main output")
    _index(node, conv, source, index)


def _index(node: Any, conv: _Converter, source: Any, index: Any) -> None:
    """``x[:, 0]``, ``x[..., ::2]``: slices (one layer over every sliced dim) then an integer (select)."""
    items = list(index) if isinstance(index, tuple) else [index]
    shape = _meta_shape(source)
    assert shape is not None
    if any(i is Ellipsis for i in items):
        at = items.index(Ellipsis)
        items = items[:at] + [slice(None)] * (len(shape) - len(items) + 1) + items[at + 1:]
    if not all(isinstance(i, (int, slice)) for i in items) or len(items) > len(shape):
        raise _Unsupported(f"indexing with {index!r}: only integers and slices are modelled")
    if items and items[0] != slice(None):
        raise _Unsupported("indexing the batch dim (dim 0) changes the batch; layercalc keeps it")
    sliced = [(d, i) for d, i in enumerate(items) if isinstance(i, slice) and i != slice(None)]
    selected = [(d, i) for d, i in enumerate(items) if isinstance(i, int)]
    if len(selected) > 1 or (sliced and selected):
        raise _Unsupported(f"indexing with {index!r}: one integer, or slices only, per indexing")
    if sliced:
        conv._emit(node, {"type": "slice", "dim": [d for d, _ in sliced], "start": [s.start for _, s in sliced],
                          "stop": [s.stop for _, s in sliced], "step": [s.step or 1 for _, s in sliced]}, [source])
    elif selected:
        conv._emit(node, {"type": "select", "dim": selected[0][0], "index": selected[0][1]}, [source])
    else:
        conv._alias(node, source)


def _chunk(node: Any, conv: _Converter) -> None:
    conv._emit(node, {"type": "chunk", "chunks": _arg(node, 1, "chunks"), "dim": _arg(node, 2, "dim", 0)},
               [node.args[0]])


def _split(node: Any, conv: _Converter) -> None:
    meta = node.meta["tensor_meta"]
    dim = _arg(node, 2, "dim", 0)
    sizes = [int(m.shape[dim]) for m in meta]
    conv._emit(node, {"type": "split", "sizes": sizes, "dim": dim}, [node.args[0]])


def _expand(node: Any, conv: _Converter) -> None:
    """``class_token.expand(n, -1, -1)``: a ``parameter`` layer is already expanded over the batch."""
    source = node.args[0]
    if source in conv.attributes:
        conv._source(source)                         # the parameter layer, made on its first use
    layer = next((entry for entry in conv.layers if entry["name"] == conv.sources.get(source)), None)
    shape = _meta_shape(node)
    if layer is None or layer["type"] != "parameter" or shape is None or shape[1:] != tuple(layer["shape"]):
        raise _Unsupported("expand of a tensor other than a learnable parameter over the batch has no layer type")
    conv._alias(node, source)


def _interpolate(node: Any, conv: _Converter) -> None:
    fields: dict[str, Any] = {"type": "upsample", "mode": _arg(node, 3, "mode", "nearest")}
    size, scale = _arg(node, 1, "size"), _arg(node, 2, "scale_factor")
    if size is not None:
        if not isinstance(size, (int, tuple, list)) or any(not isinstance(s, int) for s in
                                                           (size if isinstance(size, (tuple, list)) else [size])):
            shape = _meta_shape(node)
            assert shape is not None
            size = list(shape[2:])                  # computed from another tensor's shape: torch's result
        fields["size"] = _pair(size)
    else:
        fields["scale_factor"] = _pair(scale)
    if _arg(node, 4, "align_corners") is not None:
        fields["align_corners"] = _arg(node, 4, "align_corners")
    conv._emit(node, fields, [node.args[0]])


def _functional_pool(kind: str) -> Callable[[Any, _Converter], None]:
    def rule(node: Any, conv: _Converter) -> None:
        shape = _meta_shape(node.args[0])
        assert shape is not None
        rank = len(shape) - 2
        if kind.startswith("adaptive"):
            fields = {"type": f"{kind}{rank}d", "output_size": _pair(_arg(node, 1, "output_size"))}
        else:
            kernel = _arg(node, 1, "kernel_size")
            stride = _arg(node, 2, "stride") or kernel
            fields = {"type": f"{kind}{rank}d", "kernel_size": _pair(kernel), "stride": _pair(stride),
                      "padding": _pair(_arg(node, 3, "padding", 0))}
            if kind == "maxpool":
                fields.update(dilation=_pair(_arg(node, 4, "dilation", 1)),
                              ceil_mode=bool(_arg(node, 5, "ceil_mode", False)))
            else:
                fields.update(ceil_mode=bool(_arg(node, 4, "ceil_mode", False)),
                              count_include_pad=bool(_arg(node, 5, "count_include_pad", True)))
        conv._emit(node, fields, [node.args[0]])
    return rule


def _stochastic_depth(node: Any, conv: _Converter) -> None:
    """torchvision's ``stochastic_depth(x, p, mode, training)``: the identity at inference."""
    if _arg(node, 3, "training", True):
        raise _Unsupported("stochastic depth in training mode drops rows at random; call module.eval() first")
    conv._alias(node, node.args[0])


def _patch_merging_pad(node: Any, conv: _Converter) -> None:
    """torchvision's Swin ``_patch_merging_pad``: [N, H, W, C] → the four 2×2 neighbours concatenated [N, H/2, W/2,
    4C], written as four strided slices and a concat (even H and W: odd ones are padded first, not modelled)."""
    source = node.args[0]
    shape = _meta_shape(source)
    assert shape is not None
    if shape[-3] % 2 or shape[-2] % 2:
        raise _Unsupported(f"patch merging of an odd-sized map {list(shape)} pads it first (not modelled)")
    parts = []
    for k, (h, w) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        part = conv._unique(f"{node.name}_x{k}")
        conv.layers.append({"name": part, "type": "slice", "dim": [len(shape) - 3, len(shape) - 2],
                            "start": [h, w], "step": 2, "inputs": [conv._source(source)]})
        parts.append(part)
    name = conv._unique(node.name)
    conv.layers.append({"name": name, "type": "concat", "dim": len(shape) - 1, "inputs": parts})
    conv.sources[node] = name
    conv.expected[name] = _meta_shape(node) or ()


_FUNCTION_RULES: dict[str, Callable[[Any, _Converter], None]] = {
    "add": _elementwise("add"), "iadd": _elementwise("add"), "radd": _elementwise("add"),
    "mul": _elementwise("mul"), "imul": _elementwise("mul"), "multiply": _elementwise("mul"),
    "sub": _elementwise("sub"), "isub": _elementwise("sub"), "subtract": _elementwise("sub"),
    "truediv": _elementwise("div"), "itruediv": _elementwise("div"), "div": _elementwise("div"),
    "divide": _elementwise("div"), "true_divide": _elementwise("div"),
    "add_": _elementwise("add"), "mul_": _elementwise("mul"), "sub_": _elementwise("sub"),
    "div_": _elementwise("div"), "neg_": _neg, "pow_": _pow, "sqrt_": _constant_power(0.5),
    "neg": _neg, "negative": _neg, "pow": _pow, "sqrt": _constant_power(0.5), "rsqrt": _constant_power(-0.5),
    "square": _constant_power(2.0), "clamp": _clamp, "clip": _clamp, "clamp_": _clamp, "hardtanh": _clamp,
    "hardtanh_": _clamp, "pad": _pad, "layer_norm": _layer_norm_function, "rms_norm": _rms_norm_function,
    "group_norm": _group_norm_function, "linear": _linear_function,
    "cat": _cat, "concat": _cat, "flatten": _flatten_function, "view": _reshape, "reshape": _reshape,
    "permute": _permute, "transpose": _transpose, "contiguous": _identity_function,
    "mean": _reduce("mean"), "sum": _reduce("sum"), "matmul": _matmul, "bmm": _matmul,
    "scaled_dot_product_attention": _sdpa, "getitem": _getitem, "chunk": _chunk, "split": _split,
    "expand": _expand, "interpolate": _interpolate,
    "relu": _activation("relu"), "relu_": _activation("relu"), "relu6": _activation("relu6"),
    "sigmoid": _activation("sigmoid"), "tanh": _activation("tanh"), "silu": _activation("silu"),
    "hardswish": _activation("hardswish"), "hardsigmoid": _activation("hardsigmoid"),
    "gelu": _activation("gelu", approximate=(1, "approximate", None)),
    "leaky_relu": _activation("leaky_relu", negative_slope=(1, "negative_slope", 0.01)),
    "prelu": _prelu_function,
    "softmax": _softmax_function, "dropout": _dropout_function,
    "adaptive_avg_pool1d": _functional_pool("adaptive_avgpool"),
    "adaptive_avg_pool2d": _functional_pool("adaptive_avgpool"),
    "adaptive_avg_pool3d": _functional_pool("adaptive_avgpool"),
    "adaptive_max_pool2d": _functional_pool("adaptive_maxpool"),
    "max_pool1d": _functional_pool("maxpool"), "max_pool2d": _functional_pool("maxpool"),
    "max_pool3d": _functional_pool("maxpool"),
    "avg_pool1d": _functional_pool("avgpool"), "avg_pool2d": _functional_pool("avgpool"),
    "avg_pool3d": _functional_pool("avgpool"),
    "stochastic_depth": _stochastic_depth, "_patch_merging_pad": _patch_merging_pad,
}


# ------------------------------------------------------------------------------------------- the shape check

def _check_against_torch(spec: dict, expected: dict[str, tuple[int, ...]],
                         expected_params: list[tuple[list[str], int, str]]) -> None:
    """Every layer's output shape by layercalc's rules equals what torch propagated, and the layers written for a
    module hold as many parameters as the module has, or the import is refused."""
    report = from_data(spec, "from_torch").analyze()
    for layer in report.layers:
        want = expected.get(layer.name)
        if want is not None and tuple(layer.output_shape) != want and tuple(layer.output_shapes[0]
                                                                            if layer.output_shapes else ()) != want:
            raise SpecError(f"from_torch: layer '{layer.name}' ({layer.type}): layercalc's rule gives "
                            f"{layer.output_shape} but torch computes {list(want)}; refusing to report figures for "
                            f"a network that does not match the module")
    params = {layer.name: layer.params for layer in report.layers}
    for names, count, label in expected_params:
        counted = sum(params.get(name, 0) for name in names)
        if counted != count:
            layers = f"layer{'s' if len(names) > 1 else ''} {', '.join(names)}"
            raise SpecError(f"from_torch: {label} has {count:,} parameters but its layer type counts {counted:,} "
                            f"({layers}); refusing to report figures for a module it does not describe")
