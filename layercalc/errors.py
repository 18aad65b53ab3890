"""The exceptions layercalc raises for user mistakes.

Every message is one line that names where the problem is (the layer's index, name and type, or the spec
field), the values received and why they fail. The CLI prints it and exits with status 2; anything else that
escapes is a bug in layercalc.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LayerCalcError(Exception):
    """Base class of every error caused by the user's input (spec, layer fields, shapes)."""


class SpecError(LayerCalcError):
    """The spec itself is malformed: unreadable file, bad YAML/JSON, unknown type or field, bad value."""


class ShapeError(LayerCalcError):
    """The spec is well formed, but a layer cannot be applied to the shape that reaches it."""


class GraphError(LayerCalcError):
    """The wiring is wrong: unknown input names, duplicate names, cycles, wrong number of inputs."""


def layer_label(index: int | None, name: str | None, type_: str | None) -> str:
    """How every message refers to a layer: ``layers[3] 'conv2' (conv2d)``.

    >>> layer_label(3, 'conv2', 'conv2d')
    "layers[3] 'conv2' (conv2d)"
    """
    parts = [f"layers[{index}]" if index is not None else "layer"]
    if name:
        parts.append(repr(name))
    if type_:
        parts.append(f"({type_})")
    return " ".join(parts)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``; did you mean 'x'?`` suffix for a misspelled name, or an empty string.

    >>> did_you_mean('out_channel', ['out_channels', 'in_channels'])
    "; did you mean 'out_channels'?"
    >>> did_you_mean('zzz', ['relu'])
    ''
    """
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe_validation_error(exc, raw: dict | None = None, known_fields: Iterable[str] = (),
                              field_help: dict[str, str] | None = None) -> str:
    """One line from a pydantic ``ValidationError``: each failing field, the value received and why.

    Unknown fields get a suggestion drawn from ``known_fields``; a value that matches none of a field's accepted
    forms (a union) is reported once, with ``field_help[field]`` describing the forms.
    """
    known = list(known_fields)
    field_help = field_help or {}
    parts: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        value = err.get("input")
        field = loc[0] if loc else ""
        kind = err.get("type")
        if kind == "extra_forbidden":
            name = loc[-1]
            hint = did_you_mean(name, known) or (f" (accepted: {', '.join(sorted(known))})" if known else "")
            parts[f"extra:{name}"] = f"unknown field {name!r}{hint}"
        elif kind == "missing":
            parts[f"missing:{'.'.join(loc)}"] = f"missing required field {'.'.join(loc)!r}"
        elif len(loc) > 1 and not loc[1].isdigit() and field in field_help:
            # one error per alternative of a union: say once what the field accepts
            parts[f"union:{field}"] = f"field {field!r}: got {(raw or {}).get(field, err.get('input'))!r}: expected {field_help[field]}"
        else:
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            where = f"field {'.'.join(loc)!r}: " if loc else ""
            shown = "" if isinstance(value, dict) else f"got {value!r}: "
            parts.setdefault(f"value:{'.'.join(loc)}:{msg}", f"{where}{shown}{msg}")
    return "; ".join(parts.values())



class ResourceError(LayerCalcError):
    """A run would need more memory (or other resources) than allowed; refused before starting."""
