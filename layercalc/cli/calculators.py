"""The per-layer calculators (``layercalc conv2d --input 1x28x28 --out-channels 32 -k 3``), one command per layer
type, generated from the Pydantic models in ``layercalc.layers.LAYER_TYPES``: each builds a one-layer ``Network``
and prints what ``analyze()`` reports; ``--explain`` adds the worked formulas (:mod:`layercalc.explain`).

Importing this module is cheap; the layer models (Pydantic) are imported by :func:`layercalc.cli.build_app` only
when the command line asks for a calculator, the full help or shell completion.
"""

import inspect
import re
from typing import Annotated, Any, Optional

import typer

from ..errors import GraphError, LayerCalcError, SpecError
from ..terminal import UNLIMITED, terminal_width, wrap, wrap_formula, wrap_labelled
from .options import Numbers, _check_choice, _spec_error, parse_float, parse_int, parse_ints, parse_padding, parse_shape

# deferred imports (layers, explain, graph, rules, formatting):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)

#: short flags for the most used fields
SHORT_FLAGS = {"kernel_size": "-k", "stride": "-s", "padding": "-p", "dilation": "-d", "groups": "-g"}
#: command-line option names that every calculator has; a layer field with one of these names would clash
COMMON_OPTIONS = ("input", "batch", "layout", "dtype", "explain", "json", "numbers")


def _leaves(annotation, out: set) -> set:
    """The leaf types of an annotation: int, float, bool, str, 'list', 'literal', 'none'."""
    import types
    from typing import Literal, Union, get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        _leaves(get_args(annotation)[0], out)
    elif origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        for arg in get_args(annotation):
            _leaves(arg, out)
    elif origin is Literal:
        out.add("literal")
    elif origin in (list, tuple) or annotation in (list, tuple):
        out.add("list")
    elif annotation is type(None):
        out.add("none")
    else:
        out.add(annotation)
    return out


def _literal_values(annotation) -> list[str]:
    from typing import Literal, get_args, get_origin

    found = []
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    for arg in get_args(annotation):
        found += _literal_values(arg)
    return found


def field_kind(name: str, annotation) -> str:
    """How a layer field is written on the command line: bool, padding, ints, ints_list, sizes, float, int, str."""
    leaves = _leaves(annotation, set())
    if bool in leaves:
        return "bool"
    if name == "padding":
        return "padding"
    if "list" in leaves:
        if name == "output_size":
            return "sizes"
        if float in leaves and int not in leaves:          # a number or one per dim: upsample's scale_factor
            return "floats"
        return "ints" if int in leaves else "ints_list"
    if float in leaves:
        return "float"
    if int in leaves:
        return "int"
    return "str"


def _convert(kind: str, text: str, option: str):
    if kind == "padding":
        return parse_padding(text, option)
    if kind == "ints":
        return parse_ints(text, option)
    if kind == "ints_list":
        return parse_ints(text, option, always_list=True)
    if kind == "sizes":
        return parse_ints(text, option, allow_none=True)
    if kind == "float":
        return parse_float(text, option)
    if kind == "floats":
        values = [parse_float(part.strip(), option) for part in re.split(r"[x×X,]", text.strip())]
        return values if len(values) > 1 else values[0]
    if kind == "int":
        return parse_int(text, option)
    return text


def _option_help(info, kind: str, annotation) -> str:
    from pydantic_core import PydanticUndefined

    parts = [info.description] if info.description and kind != "padding" else []
    forms = {"ints": "N or NxM (one per spatial dim)", "ints_list": "sizes like 4x-1", "padding":
             "same, valid, N, NxM or [[before, after], ...]", "sizes": "N or NxM; none keeps the input size"}
    if kind == "padding" and not _takes_padding_modes(info):
        parts.append("N, NxM or [[before, after], ...]")              # zero_pad: amounts only, no 'same'/'valid'
    elif kind in forms:
        parts.append(forms[kind])
    choices = _literal_values(annotation) if kind == "str" else []
    if choices:
        parts.append("one of " + ", ".join(choices))
    described = "default" in (info.description or "")       # e.g. "default: the kernel size" says it better
    if info.default not in (PydanticUndefined, None) and kind != "bool" and not described:
        parts.append(f"default {info.default}")         # None: optional, and the description says what then
    return "; ".join(parts)


def _layer_fields(cls) -> list[tuple[str, Any]]:
    # wiring fields (and Keras' trainable, which only splits a network's totals) mean nothing for one layer alone
    return [(name, info) for name, info in cls.model_fields.items()
            if name not in ("type", "name", "inputs", "tied_to", "trainable")]


def make_calculator(type_name: str, cls):
    """The command function for one layer type, its options generated from the model's fields."""
    from pydantic import AliasChoices

    params = []
    kinds: dict[str, tuple[str, str]] = {}          # field → (kind, option label)
    merge = cls.max_inputs is None or cls.max_inputs > 1
    if cls.max_inputs != 0:                        # a layer without inputs (a learnable tensor) has no --input
        params.append(inspect.Parameter(
            "cli_input", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[list[str], typer.Option(
                "--input", "-i", metavar="SHAPE",
                help="shape of one example without the batch, e.g. 1x28x28 or 1,28,28"
                     + ("; repeat --input for each input of the merge" if merge else ""))]))
    required, optional = [], []
    for name, info in _layer_fields(cls):
        if name in COMMON_OPTIONS:                 # never expected; fail loudly at build time, not at use
            raise RuntimeError(f"layer field {name!r} of {type_name} clashes with a common option")
        kind = field_kind(name, info.annotation)
        option = "--" + name.replace("_", "-")
        decls = [option]
        if kind == "bool":
            decls = [f"{option}/--no-{name.replace('_', '-')}"]
        else:
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                decls += ["--" + a.replace("_", "-") for a in alias.choices if isinstance(a, str) and a != name]
            if name in SHORT_FLAGS:
                decls.append(SHORT_FLAGS[name])
        kinds[name] = (kind, option)
        help_text = _option_help(info, kind, info.annotation)
        annotation: Any                               # a typing form, read by typer at run time
        if kind == "bool":
            annotation = Annotated[Optional[bool], typer.Option(*decls, help="; ".join(
                filter(None, [help_text, bool_default_text(info)])))]
        else:
            metavar = "N[xM]" if kind == "padding" and not _takes_padding_modes(info) else _metavar(kind)
            annotation = Annotated[Optional[str], typer.Option(*decls, help=help_text, metavar=metavar)]
        if info.is_required():
            required.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
        else:
            optional.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                              default=None))
    common = [
        ("cli_batch", Annotated[int, typer.Option("--batch", "-b", min=1, metavar="N", help="batch size")], 1),
        ("cli_layout", Annotated[str, typer.Option("--layout", metavar="NCHW|NHWC",
                                                   help="NCHW (channels first) or NHWC (channels last)")], "NCHW"),
        ("cli_dtype", Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, float64, float16, "
                                                  "bfloat16, int32, int8, uint8 (bytes per element)")], "float32"),
        ("cli_explain", Annotated[bool, typer.Option("--explain", "-e", help="show the worked formulas")], False),
        ("cli_json", Annotated[bool, typer.Option("--json", help="print the layer's report as JSON")], False),
        ("cli_numbers", Numbers, "exact"),
    ]
    params += required + optional + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
                                     for n, a, d in common]

    def command(**values):
        values.setdefault("cli_input", [])
        run_calculator(type_name, cls, kinds, values)

    # typer reads the parameters from the signature; a function object does not declare the attribute
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{type_name}_command"
    builtin = cls.__module__ == "layercalc.layers" or cls.__module__.startswith("layercalc.layers.")  # a family module
    doc = (cls.__doc__ or "").strip().split("\n\n")[0] if cls.__doc__ and builtin \
        and cls.__doc__ != cls.__mro__[1].__doc__ else ""
    command.__doc__ = (f"{type_name} layer: output shape, params, MACs, FLOPs, memory, receptive field."
                       + (f"\n\n{' '.join(doc.split())}" if doc else ""))
    return command


def bool_default_text(info) -> str:
    """What a bool option's help says of its default: the field's own default (``default on`` / ``default off``);
    for a field whose default is None (decided by another field: ``qkv_bias`` follows ``bias``) nothing when its
    description says what happens, else ``default: unset``. Never "off" for a default that is not False."""
    if info.default is True:
        return "default on"
    if info.default is False:
        return "default off"
    return "" if "default" in (info.description or "") else "default: unset"


def short_help(type_name: str, cls) -> str:
    return f"{cls.__name__} layer calculator"


def _takes_padding_modes(info) -> bool:
    """Does a padding field accept 'same'/'valid' (conv, pooling) or only amounts (zero_pad)? Its description
    lists the forms it accepts."""
    return "'same'" in (info.description or "")


def _metavar(kind: str) -> str:
    return {"ints": "N[xM]", "ints_list": "AxB", "padding": "same|valid|N[xM]", "sizes": "N[xM]",
            "float": "X", "floats": "X[xY]", "int": "N"}.get(kind, "TEXT")


def _cli_message(message: str, type_name: str, kinds: dict) -> str:
    """Library messages name the spec (``layers[0] 'x' (conv2d): field 'kernel_size'``); say it in CLI terms."""
    message = re.sub(r"^(spec: )?layers\[0\]( '[^']*')? \([\w]+\): ", f"{type_name}: ", message)

    def option(match):
        field = match.group(1)
        return kinds[field][1] if field in kinds else match.group(0)
    return re.sub(r"field '(\w+)'", option, message)


def run_calculator(type_name: str, cls, kinds: dict, values: dict) -> None:
    from ..layers import parse_layer

    raw: dict[str, Any] = {"type": type_name}
    # several inputs: messages then name them in the user's order (one input is the one-layer network's own)
    if (cls.max_inputs is None or cls.max_inputs > 1) and len(values["cli_input"]) > 1:
        raw["inputs"] = [f"input{i + 1}" for i in range(len(values["cli_input"]))]
    for name, (kind, option) in kinds.items():
        value = values.get(name)
        if value is not None:
            raw[name] = value if kind == "bool" else _convert(kind, value, option)
    shapes = [parse_shape(text) for text in values["cli_input"]]
    n_min, n_max = cls.min_inputs, cls.max_inputs
    if len(shapes) < n_min or (n_max is not None and len(shapes) > n_max):
        want = f"exactly {n_min}" if n_min == n_max else f"at least {n_min}"
        raise GraphError(f"{type_name}: takes {want} --input shape{'s' if n_min > 1 else ''}, got {len(shapes)}")
    numbers = _check_choice(values["cli_numbers"], ("exact", "human"), "--numbers")
    if values["cli_json"] and values["cli_explain"]:       # the JSON must stay parseable: no text after it
        raise _spec_error("--explain cannot be combined with --json (the JSON is the layer's report only)")
    try:
        layer = parse_layer(raw, 0)
        # a layer without inputs still belongs to a network with some input (its batch, dtype and layout)
        net = _one_layer_network(type_name, layer, shapes or [[1]], values)
        if len(shapes) <= 1:
            step = net.resolve()[0]
            report = net.analyze()
            entry, facts, itemsize = report.layers[0], step.facts, report.dtype_bytes
        else:
            entry, facts, itemsize = _merge_entry(type_name, layer, shapes, net)
    except LayerCalcError as exc:
        raise type(exc)(_cli_message(str(exc), type_name, kinds)) from None
    if values["cli_json"]:
        import json
        print(json.dumps(entry.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    width = terminal_width()
    print(render_calculator(layer, entry, net, numbers, width))
    if values["cli_explain"]:
        from ..explain import explain_layer
        rank = len(shapes[0]) - 1 if shapes else 0
        input_rf = ([1] * rank, [1] * rank) if rank >= 1 else None
        print("\nhow:")
        for line in explain_layer(layer, [tuple(s) for s in entry.input_shapes], facts, net.channels_last,
                                  itemsize, input_rf):
            print(wrap_formula(line, width, "  "))


def _one_layer_network(type_name: str, layer, shapes: list[list[int]], values: dict):
    from pydantic import ValidationError

    from ..graph import Network

    data = {"name": type_name, "input": shapes[0], "batch": values["cli_batch"], "layout": values["cli_layout"],
            "dtype": values["cli_dtype"], "layers": [layer if len(shapes) == 1 else {"type": "identity"}]}
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        detail = Network.describe_error(exc, data)
        raise SpecError(re.sub(r"field '(\w+)'", r"--\1", detail)) from None


def _merge_entry(type_name: str, layer, shapes: list[list[int]], net):
    """A merge layer (add / mul / concat) on several inputs: a ``Network`` has one input, so the layer's rule is
    applied to the given tensors directly, and its facts reported the way ``Network.analyze`` reports them."""
    from ..graph import DTYPE_BYTES, Step, backward_of, gradient_flow, layer_report
    from ..rules import Context, ReceptiveField, Tensor, infer

    itemsize = DTYPE_BYTES[net.dtype]
    tensors = []
    for shape in shapes:
        full = (net.batch, *shape)
        tensors.append(Tensor(full, ReceptiveField.of_input(len(shape) - 1) if len(shape) >= 2 else None))
    facts = infer(layer, tensors, Context(type_name, net.channels_last, net.batch))
    names = [f"input{i + 1}" for i in range(len(shapes))]
    step = Step(0, type_name, layer, names, [t.shape for t in tensors], facts)
    # its inputs are the network's (they require no gradient), as in a one-layer network
    return layer_report(step, itemsize, backward_of(step, gradient_flow([step])[0])), facts, itemsize


def _field_text(value) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        if all(b == a for b, a in value):
            return "×".join(str(b) for b, _ in value)
        return "×".join(f"({b},{a})" for b, a in value)
    if isinstance(value, (tuple, list)):
        return "×".join("none" if v is None else str(v) for v in value)
    return str(value)


def render_calculator(layer, entry, net, numbers: str, width: int = UNLIMITED) -> str:
    """The calculator's answer: the layer's settings, then shapes, counts, memory, receptive field, notes; each
    line fitted to ``width`` columns (a value wrapped at word boundaries, its continuation under the value)."""
    from ..formatting import count, dims_text, human_bytes, nbytes, shape_text
    from ..graph import DTYPE_BYTES

    settings = " ".join(f"{name}={_field_text(getattr(layer, name))}" for name, _ in _layer_fields(type(layer))
                        if getattr(layer, name) is not None)
    b = (lambda v: human_bytes(v)) if numbers == "human" else (lambda v: f"{nbytes(v)} B")
    memory = f"output {b(entry.activation_bytes)}"
    if entry.params:
        memory += f" · params {b(entry.param_bytes)}"
    # the element size is the dtype's, not output bytes ÷ the first output's elements (a chunk has several outputs)
    memory += f" ({net.dtype}, {DTYPE_BYTES[net.dtype]} bytes/element)"
    rows = [("input shape", ("  ".join(shape_text(s) for s in entry.input_shapes) or "none (the layer takes no input)")
             + f"  ({net.layout}, batch {net.batch})"),
            ("output shape" if not entry.output_shapes else "output shapes",
             "  ".join(shape_text(o) for o in entry.output_shapes or [entry.output_shape])),
            ("params", count(entry.params, numbers))]
    if entry.buffers:
        rows.append(("buffers", count(entry.buffers, numbers) + " (running mean and variance)"))
    # say which convention each count follows, and what torch's flop counter (2·MACs) would print instead
    flops = f"{count(entry.flops, numbers)} (2 per MAC + bias adds + element ops"
    if entry.flops != 2 * entry.macs:
        flops += "; " + layer.flop_counter_text(count(2 * entry.macs, numbers))
    flops += ")"
    rows += [("MACs", f"{count(entry.macs, numbers)} (multiply-accumulates, bias excluded)"), ("FLOPs", flops),
             ("memory", memory)]
    if entry.receptive_field is not None:
        field = "whole input" if entry.whole_input else dims_text(entry.receptive_field)
        rows.append(("receptive field", f"{field} (jump {dims_text(entry.jump)})"))
    rows += [("notes" if i == 0 else "", note) for i, note in enumerate(entry.notes)]
    key_width = max(len(k) for k, _ in rows)
    head = f"{layer.type_name}" + (f": {settings}" if settings else "")
    lines = [wrap(head, width)]
    for key, value in rows:
        label = f"  {key.ljust(key_width)}  "
        lines.append(wrap_labelled(label, value, width))
    return "\n".join(lines)


def _numel(shape) -> int:
    total = 1
    for s in shape:
        total *= s
    return total
