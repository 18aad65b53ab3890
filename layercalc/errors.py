"""The exceptions layercalc raises for user mistakes.

Every message is one line that names where the problem is (the layer's index, name and type, or the spec
field), the values received and why they fail. The CLI prints it and exits with status 2; anything else that
escapes is a bug in layercalc.
"""

from __future__ import annotations

import decimal
import difflib
import math
import numbers
from collections.abc import Iterable

#: the largest integral float that is certainly the whole number its author wrote: from 2**53 on a float cannot hold
#: every integer (``1e30`` is 1000000000000000019884624838656; ``9007199254740993.0`` reads as 2**53), so such a
#: "whole number" would be a guess
MAX_EXACT_FLOAT = 2 ** 53 - 1


#: the largest whole number a spec or an option may hold: PyTorch, NumPy and ONNX store sizes as int64, so a
#: larger size describes no network; the bound also keeps every figure printable (Python refuses to print
#: integers of more than 4,300 digits) and every product of sizes cheap to compute
MAX_WHOLE = 2 ** 63 - 1


class LayerCalcError(ValueError):
    """Base class of every error caused by the user's input (spec, layer fields, shapes, options, files).

    A ``ValueError``, so code that already catches bad values catches these; its message is the one line the CLI
    prints (without the ``layercalc: error:`` prefix).
    """


class SpecError(LayerCalcError):
    """The spec itself is malformed: unreadable file, bad YAML/JSON, unknown type or field, bad value."""


class InvalidDescription(SpecError):
    """A layer or network description that failed validation: ``label: detail``. The detail is kept apart so
    that a spec can restate it under the layer's index (``layers[3] 'conv2' (conv2d): …``)."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.label, self.detail = label, detail


class ShapeError(LayerCalcError):
    """The spec is well formed, but a layer cannot be applied to the shape that reaches it."""


class GraphError(LayerCalcError):
    """The wiring is wrong: unknown input names, duplicate names, cycles, wrong number of inputs."""


#: how many characters of one value a message shows; a 10 MB name must not make a 10 MB error line
SHOWN_CHARS = 80


def shown(value) -> str:
    r"""``repr(value)`` for a message: control characters escaped (see :func:`safe_text`), cut to about
    :data:`SHOWN_CHARS` characters with the full length said.

    >>> print(shown('conv1'))
    'conv1'
    >>> print(shown('\x1b[2J'))
    '\x1b[2J'
    >>> print(shown('x' * 200))
    'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… (202 characters)
    """
    if isinstance(value, str) and len(value) > 4 * SHOWN_CHARS:
        text, full = safe_text(repr(value[:SHOWN_CHARS])), len(value) + 2   # a huge string's repr is never built
    else:
        try:
            text = safe_text(repr(value))
        except ValueError:                                   # an int past Python's 4,300-digit str() limit
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
        full = len(text)
    if len(text) <= SHOWN_CHARS:
        return text
    return text[:SHOWN_CHARS - 13] + f"… ({full:,} characters)"


def safe_text(text: str) -> str:
    r"""``text`` with every control character (terminal escapes, newlines, NUL, bidi overrides) written as its
    ``\xNN``/``\uNNNN`` escape, so a name from a spec cannot rewrite the terminal or split one line in two.

    >>> print(safe_text('a\x1b[31mb'))
    a\x1b[31mb
    >>> print(safe_text('conv1 ✓ µ'))
    conv1 ✓ µ
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def layer_label(index: int | None, name: str | None, type_: str | None) -> str:
    """How every message refers to a layer: ``layers[3] 'conv2' (conv2d)``.

    >>> layer_label(3, 'conv2', 'conv2d')
    "layers[3] 'conv2' (conv2d)"
    """
    parts = [f"layers[{index}]" if index is not None else "layer"]
    if name:
        parts.append(shown(name))
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
    if len(str(word)) > SHOWN_CHARS:                     # no name is that long; difflib would be quadratic in it
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def whole_number_problem(value) -> str | None:
    """Why ``value`` cannot stand for a whole number in a spec or an option, or ``None`` if it can.

    Integers are whole numbers, and so is an integral float small enough to be exact (``3.0`` is 3: the value is
    the same, nothing is guessed). Everything that Python or Pydantic would *coerce* to an int is refused, because
    the number it becomes is a guess: booleans (``true`` is not 1 kernel), strings (``"3"``: a quoted number is
    usually a typo or a template that was not filled in), fractions (2.9 is not 2), NaN, infinities, and floats
    too large to be exact.

    >>> whole_number_problem(3), whole_number_problem(3.0)
    (None, None)
    >>> whole_number_problem(True)
    'True is a boolean, not a whole number'
    >>> whole_number_problem(2.9)
    '2.9 is not a whole number'
    """
    if isinstance(value, bool):
        return f"{shown(value)} is a boolean, not a whole number"
    if isinstance(value, numbers.Integral):      # int, and NumPy's integers from Python callers
        if abs(int(value)) > MAX_WHOLE:
            return (f"{shown(value)} is larger than any size a framework can hold (int64: at most "
                    f"{MAX_WHOLE:,})")
        return None
    if isinstance(value, (str, bytes)):
        return f"{shown(value)} is a string, not a whole number (write the number without quotes)"
    if value is None:
        return "null is not a whole number"
    if isinstance(value, numbers.Real):          # float, NumPy's floats, Fraction
        number = float(value)
        if not math.isfinite(number) or not number.is_integer() or number != value:
            return f"{shown(value)} is not a whole number"
        if abs(number) > MAX_EXACT_FLOAT:
            return (f"{shown(value)} is a float too large to be an exact whole number (floats are exact only "
                    f"below 2**53); write the integer with all its digits")
        return None
    if isinstance(value, (list, tuple, dict, set)):
        return None                              # the validator says "a valid integer" / tries the list form
    return f"{shown(value)} is a {type(value).__name__}, not a whole number"


def real_number_problem(value) -> str | None:
    """Why ``value`` cannot stand for a real-valued field (eps, momentum, negative_slope, p), or ``None``.

    Ints and finite floats are numbers; booleans and strings are refused like for whole numbers, and so are NaN
    and the infinities: no layer has a meaningful infinite eps or NaN slope, and every figure computed from one
    would be meaningless.

    >>> real_number_problem(1), real_number_problem(0.5)
    (None, None)
    >>> real_number_problem(float('nan'))
    'nan is not a finite number'
    """
    if isinstance(value, bool):
        return f"{shown(value)} is a boolean, not a number"
    if isinstance(value, (str, bytes)):
        return f"{shown(value)} is a string, not a number (write the number without quotes)"
    if isinstance(value, (numbers.Real, decimal.Decimal)):          # Decimal is a Number but not a Real
        return None if math.isfinite(value) else f"{shown(value)} is not a finite number"
    if value is None or isinstance(value, (list, tuple, dict, set)):
        return None                              # optional fields take None; the validator names the rest
    return f"{shown(value)} is a {type(value).__name__}, not a number"


def boolean_problem(value) -> str | None:
    """Why ``value`` cannot stand for an on/off field (bias, affine, ceil_mode, …), or ``None``.

    Only ``true`` and ``false``: a 0/1 or a ``"yes"`` string is refused rather than read as a guess.

    >>> boolean_problem(False), boolean_problem(1)
    (None, '1 is not a boolean (true or false)')
    """
    if isinstance(value, bool) or _is_numpy_bool(value):
        return None
    return f"{shown(value)} is not a boolean (true or false)"


def _is_numpy_bool(value) -> bool:
    """NumPy's boolean scalar (``np.True_``), which Python callers pass for on/off fields; NumPy is not imported."""
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "kind", None) == "b" and getattr(value, "ndim", None) == 0


#: the pydantic error types the three checks above raise (see layercalc.layers), and the constraint errors whose
#: reason is worth restating when a union's alternatives are collapsed into one line
_OWN_ERRORS = ("whole_number", "real_number", "boolean")
_BOUNDS = {"greater_than_equal": ("ge", "≥"), "greater_than": ("gt", ">"), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "≤")}


def _reason(err: dict, whole_value) -> str | None:
    """The reason one alternative of a union failed, if it says more than "not this form"."""
    kind = err.get("type")
    value = err.get("input")
    prefix = "" if value is whole_value or value == whole_value and type(value) is type(whole_value) \
        else f"{shown(value)} "
    if kind in _OWN_ERRORS:
        return err.get("msg")
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        bound = (err.get("ctx") or {}).get(key)
        return f"{prefix}must be {sign} {bound}" if bound is not None else None
    if kind == "finite_number":
        return f"{prefix}must be a finite number".strip()
    return None


def own_error(exc) -> LayerCalcError | None:
    """The ``LayerCalcError`` that a validator raised inside a pydantic ``ValidationError``, if any.

    A ``LayerCalcError`` is a ``ValueError``, so pydantic wraps one raised by a nested validator (a layer parsed
    inside ``Network``); it already names its layer and field, and is passed on unchanged.
    """
    for err in exc.errors(include_url=False):
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, LayerCalcError):
            return error
    return None


def describe_validation_error(exc, raw: dict | None = None, known_fields: Iterable[str] = (),
                              field_help: dict[str, str] | None = None) -> str:
    """One line from a pydantic ``ValidationError``: each failing field, the value received and why.

    Unknown fields get a suggestion drawn from ``known_fields``; a value that matches none of a field's accepted
    forms (a union) is reported once, with ``field_help[field]`` describing the forms.
    """
    known = list(known_fields)
    field_help = field_help or {}
    parts: dict[str, str] = {}
    errors = exc.errors(include_url=False)
    # One error per alternative of a union: the field is reported once, with what it accepts and, when one of
    # the alternatives says why the value is wrong (a boolean, a string, a bound), that reason.
    unions: dict[str, list[dict]] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if len(loc) > 1 and not loc[1].isdigit() and loc[0] not in ("", None):
            unions.setdefault(loc[0], []).append(err)
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        value = err.get("input")
        field = loc[0] if loc else ""
        kind = err.get("type")
        if kind == "extra_forbidden":
            name = loc[-1]
            hint = did_you_mean(name, known) or (f" (accepted: {', '.join(sorted(known))})" if known else "")
            parts[f"extra:{name}"] = f"unknown field {shown(name)}{hint}"
        elif kind == "missing":
            parts[f"missing:{'.'.join(loc)}"] = f"missing required field {shown('.'.join(loc))}"
        elif field in unions:
            if f"union:{field}" in parts:
                continue
            whole = (raw or {}).get(field, value) if isinstance(raw, dict) else value
            branch_errors = unions[field]
            literal = any(e.get("type") == "literal_error" for e in branch_errors)
            # The alternative that got deepest into the value (the [[before, after]] form for [[true, 1]]) says best
            # why it fails; a string offered to a field that also takes words ('same'): "not a number" misleads.
            reasons = [r for e in sorted(branch_errors, key=lambda e: -len(e.get("loc", ())))
                       if not (literal and isinstance(e.get("input"), str) and e.get("type") == "whole_number")
                       for r in [_reason(e, whole)] if r]
            accepted = field_help.get(field, "one of the forms `layercalc schema` lists")
            parts[f"union:{field}"] = (f"field {shown(field)}: got {shown(whole)}: "
                                       + (f"{reasons[0]}; " if reasons else "") + f"expected {accepted}")
        else:
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            where = f"field {shown('.'.join(loc))}: " if loc else ""
            got = "" if isinstance(value, dict) else f"got {shown(value)}: "
            parts.setdefault(f"value:{'.'.join(loc)}:{msg}", f"{where}{got}{safe_text(msg)}")
    return "; ".join(parts.values())



class NumericError(LayerCalcError):
    """A run produced infinities or NaN (a float overflow): its numbers would be meaningless, so none are given."""


class ResourceError(LayerCalcError):
    """A run would need more memory (or other resources) than allowed; refused before starting."""
