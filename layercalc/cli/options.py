"""Reading option values as typed: shapes (``1x28x28``, ``28*28``), whole numbers, sizes, paddings, choices.

Every refusal is a ``SpecError`` naming the option (``--input: 'x' is not a shape: …``), printed as one line by
the error handling in :mod:`layercalc.cli`. Imports nothing heavy.
"""

import re
from typing import Annotated, Optional

import typer

from ..errors import SpecError, did_you_mean, shown, whole_number_problem
from ..sizing import TooManyDigits, digits_to_int  # noqa: F401  (re-exported: the CLI's whole numbers as typed)

# deferred imports (terminal):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)

# What separates the sizes of a shape: ``1x28x28``, ``1×28×28``, ``1,28,28`` (split_sizes; a comma may also group a
# number's thousands). ``*`` is not one of them: it multiplies within one size, as a person writes a dense layer's
# inputs (``28*28`` = 784, ``7*7*512`` = 25,088).
#: a whole number written with thousands separators: 1 to 3 digits, then groups of exactly 3 (``25,088``)
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+")


def _shown(value) -> str:
    return shown(value)


def split_sizes(raw: str, option: str) -> list[str]:
    """The sizes of a shape or size list as typed, read with thousands separators in mind: ``1x28x28`` and
    ``1,28,28`` are three sizes, but ``25,088`` is one number (``088`` is no size anyone writes; ``1,000`` would
    hold a 0) and ``1x25,088`` two. A text that reads both ways (``3,224,224``: a shape, or three million) is
    refused with the two ways to write it — never guessed.

    >>> split_sizes("1,28,28", "--input"), split_sizes("25,088", "--input"), split_sizes("7x2,048", "--input")
    (['1', '28', '28'], ['25088'], ['7', '2048'])
    >>> split_sizes("3,224,224", "--input")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    layercalc.errors.SpecError: --input: '3,224,224' is either the shape 3×224×224 or the number 3,224,224: ...
    """
    if "," in raw and not re.search(r"[x×X]", raw):
        parts = [p.strip() for p in raw.split(",")]
        if not _GROUPED.fullmatch(raw.replace(" ", "")):
            return parts                                   # 1,28,28 · 7,7,512: a shape
        number = "".join(parts)
        if any(p.startswith("0") for p in parts[1:]):      # 25,088 · 1,000: a size never starts with 0
            return [number]
        raise _spec_error(f"{option}: {_shown(raw)} is either the shape {'×'.join(parts)} or the number {raw}: "
                          f"write {'x'.join(parts)} for a shape or {number} for a number")
    parts = [p.strip() for p in re.split(r"[x×X]", raw)]
    out = []
    for part in parts:
        if "," in part:                                    # 7x2,048: a separator inside one size
            if not _GROUPED.fullmatch(part):
                raise _spec_error(f"{option}: {_shown(raw)}: {_shown(part)} mixes ',' with 'x': separate sizes "
                                  f"with one of them (1x28x28 or 1,28,28); a comma inside a size groups its "
                                  f"thousands (2,048)")
            part = part.replace(",", "")
        out.append(part)
    return out


def grouped_int(text: str) -> str:
    """An integer option's text with its thousands separators removed when it is written that way (``1,024`` →
    ``1024``): one number is the only reading an integer option has. Any other text is returned as it is.

    >>> grouped_int("1,024"), grouped_int("12"), grouped_int("1,02")
    ('1024', '12', '1,02')
    """
    stripped = text.strip()
    return stripped.replace(",", "") if _GROUPED.fullmatch(stripped) else text


def _size_product(part: str) -> int:
    """One size as typed: digits, or a product of them (``28*28`` → 784).

    >>> _size_product('28*28'), _size_product('7*7*512'), _size_product('3')
    (784, 25088, 3)
    """
    factors = part.split("*")
    if len(factors) == 1:
        return digits_to_int(part)
    values = []
    for factor in factors:
        factor = factor.strip()
        if not factor:
            raise ValueError(f"{_shown(part)}: a factor is missing around '*'")
        value = digits_to_int(factor)
        if value < 1:
            raise ValueError(f"{_shown(part)}: every factor must be ≥ 1, got {value}")
        values.append(value)
    product = 1
    for value in values:
        product *= value
    return product


def _spec_error(message: str):
    return SpecError(message)


def write_output(text: str, output: Optional[str]) -> None:
    """A command's text to standard output, or to the file ``--output`` names (an unwritable path: one line)."""
    import sys
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise _spec_error(f"--output {output}: cannot write: {exc.strerror or exc}") from None


def _json_list(text: str, option: str):
    import json
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _spec_error(f"{option}: {text!r} is not a valid list ({exc.msg})") from None
    except ValueError:            # an integer past Python's int_max_str_digits (4,300 digits)
        raise _spec_error(f"{option}: {text!r:.40} is not a valid list (a number in it has too many digits)") from None
    except RecursionError:
        raise _spec_error(f"{option}: {text!r:.40} is not a valid list (nested too deeply)") from None


def _whole(part) -> int:
    """One entry of a shape or size list: digits as typed, or a JSON number that is exactly a whole number.

    Raises ``ValueError`` saying why not (the callers add the option and the text received).
    """
    if isinstance(part, str):
        return digits_to_int(part)
    if isinstance(part, bool):                          # named as typed (JSON): true, not True
        raise ValueError(f"{str(part).lower()} is a boolean, not a whole number")
    if part is None:
        raise ValueError("null is not a whole number")
    problem = whole_number_problem(part)
    if problem is not None:
        raise ValueError(problem)
    if not isinstance(part, (int, float)):
        raise ValueError(f"{part!r} is not a whole number")
    return int(part)


def parse_shape(text: str, option: str = "--input") -> list[int]:
    """``1x28x28``, ``1,28,28``, ``[1, 28, 28]`` → ``[1, 28, 28]`` (one example, batch excluded); ``*`` multiplies
    within one size: ``28*28`` → ``[784]``, ``1x28*28`` → ``[1, 784]``.

    >>> parse_shape('1x28x28'), parse_shape('28*28'), parse_shape('7*7*512')
    ([1, 28, 28], [784], [25088])
    """
    raw = text.strip()
    parts = _json_list(raw, option) if raw.startswith("[") else split_sizes(raw, option)
    example = "e.g. 1x28x28 or 1,28,28 for one example (the batch is --batch); 28*28 is one size of 784"
    if not raw or not isinstance(parts, list) or not parts or any(p == "" for p in parts):
        raise _spec_error(f"{option}: {_shown(text)} is not a shape: {example}")
    sizes = []
    for p in parts:
        try:
            size = _size_product(p) if isinstance(p, str) else _whole(p)
        except ValueError as exc:
            raise _spec_error(f"{option}: {_shown(text)} is not a shape: {exc}; {example}") from None
        if size < 1:
            raise _spec_error(f"{option}: {text!r}: every size must be ≥ 1, got {size}")
        sizes.append(size)
    return sizes


# ------------------------------------------------------------------------------------------------------- sweeps
# A sweep (layercalc.sweep: the totals at several values) is asked for in three ways, read by these rules — never a
# guess: a text with two readings is refused with the way to write each (docs/conventions.md, "Sweeps").
# - ``--sweep [AXIS=]V1,V2,…`` (AXIS: input, the default; batch; or another input's name): a comma always
#   separates values there — a value is a number or a shape written with x (``3x224x224``), never 25,088;
# - ``--input V1,V2,…`` for a network whose input has one size (tokens, features), and ``--batch V1,V2,…``: a
#   comma list that cannot be one number with thousands separators (``512,1024``, ``1,8,32``); ``25,088`` and
#   ``1,000`` stay one number (a group starting with 0 is no size); ``128,256`` reads both ways and is refused;
# - ``--input 3x224x224,3x320x320``: shapes written with x separated by commas (any input).

#: a value in a sweep list: a whole number ≥ 1 written without separators or a leading 0
_SWEEP_DIGITS = re.compile(r"[1-9]\d*")


def _sweep_number(part: str, raw: str, option: str) -> int:
    if not _SWEEP_DIGITS.fullmatch(part):
        why = ("starts with 0: a comma in a sweep separates values (write 25088, not 25,088)" if part[:1] == "0"
               and part.isdigit() and len(part) > 1 else "is not a whole number ≥ 1")
        raise _spec_error(f"{option}: {_shown(raw)}: {_shown(part)} {why}")
    return digits_to_int(part)


def _sweep_value(part: str, raw: str, option: str):
    """One value of a sweep list: a number, or a shape written with x (``3x224x224``) as a list."""
    if re.search(r"[x×X]", part):
        return [_sweep_number(p.strip(), raw, option) for p in re.split(r"[x×X]", part)]
    return _sweep_number(part, raw, option)


def parse_sweep(text: str, option: str = "--sweep") -> tuple[str, list]:
    """``[AXIS=]V1,V2,…`` → ``(axis, values)``: AXIS ``input`` (default), ``batch`` or another input's name;
    each value a number or a shape written with x. A comma always separates values here.

    >>> parse_sweep("128,256"), parse_sweep("batch=1,8,32"), parse_sweep("3x224x224,3x320x320")
    (('input', [128, 256]), ('batch', [1, 8, 32]), ('input', [[3, 224, 224], [3, 320, 320]]))
    """
    axis, sep, listed = text.strip().rpartition("=")
    axis = axis.strip() if sep else "input"
    if sep and not axis:
        raise _spec_error(f"{option}: {_shown(text)}: name the axis before '=' (input, batch or an input's name), "
                          f"or leave out the '='")
    parts = [p.strip() for p in listed.split(",")]
    if not listed.strip() or any(not p for p in parts):
        raise _spec_error(f"{option}: {_shown(text)}: expected values separated by commas, e.g. --sweep 512,1024 "
                          f"or --sweep batch=1,8,32")
    return axis, [_sweep_value(p, text, option) for p in parts]


def read_input(text: str, rank: int, option: str = "--input") -> tuple[str, list]:
    """``--input`` read for a network whose input has ``rank`` sizes: ``("shape", sizes)`` or ``("sweep",
    values)`` by the rules above.

    >>> read_input("1,28,28", 3), read_input("512,1024,2048", 1), read_input("25,088", 1)
    (('shape', [1, 28, 28]), ('sweep', [512, 1024, 2048]), ('shape', [25088]))
    >>> read_input("3x224x224,3x320x320", 3)
    ('sweep', [[3, 224, 224], [3, 320, 320]])
    """
    raw = text.strip()
    if "," in raw and not raw.startswith("["):
        if re.search(r"[x×X]", raw):
            try:
                values = [_sweep_value(p.strip(), raw, option) for p in raw.split(",")]
            except SpecError:
                values = []
            if values and all(isinstance(v, list) for v in values):
                try:
                    parse_shape(raw, option)
                except SpecError:
                    return "sweep", values
                parts = raw.split(",")
                raise _spec_error(f"{option}: {_shown(raw)} is either one shape with thousands separators or a "
                                  f"sweep of {len(parts)} shapes: write {raw.replace(',', '')} for the shape or "
                                  f"--sweep {raw} for the sweep")
        elif rank == 1:
            parts = [p.strip() for p in raw.split(",")]
            if _GROUPED.fullmatch(raw.replace(" ", "")):
                number = "".join(parts)
                if any(p.startswith("0") for p in parts[1:]):      # 25,088: one number
                    return "shape", [digits_to_int(number)]
                raise _spec_error(f"{option}: {_shown(raw)} is either the number {raw} or a sweep of "
                                  f"{', '.join(parts)} (the network's input has one size): write {number} for the "
                                  f"number or --sweep {raw} for the sweep")
            return "sweep", [_sweep_number(p, raw, option) for p in parts]
    return "shape", parse_shape(text, option)


def read_batch(text: str, option: str = "--batch"):
    """``--batch`` as typed: one number (``8``, ``1,024``) or a sweep (``1,8,32``) by the rules above.

    >>> read_batch("8"), read_batch("1,024"), read_batch("1,8,32")
    (8, 1024, [1, 8, 32])
    """
    raw = text.strip()
    if "," in raw:
        parts = [p.strip() for p in raw.split(",")]
        if not _GROUPED.fullmatch(raw.replace(" ", "")):
            return [_sweep_number(p, raw, option) for p in parts]
        if not any(p.startswith("0") for p in parts[1:]):
            number = "".join(parts)
            raise _spec_error(f"{option}: {_shown(raw)} is either the batch {raw} or a sweep of {', '.join(parts)}: "
                              f"write {number} for the number or --sweep batch={raw} for the sweep")
    value = parse_int(raw, option)
    if value < 1:
        raise _spec_error(f"{option}: {value} must be ≥ 1")
    return value


def parse_ints(text: str, option: str, allow_none: bool = False, always_list: bool = False):
    """``3`` → 3, ``3x5`` / ``3,5`` → [3, 5]; ``none`` entries → None when allowed (adaptive output_size)."""
    raw = text.strip()
    parts = _json_list(raw, option) if raw.startswith("[") else split_sizes(raw, option)
    if not isinstance(parts, list):
        raise _spec_error(f"{option}: {text!r} is not a whole number or a list of them")
    values: list[Optional[int]] = []
    for p in parts:
        if allow_none and (p is None or str(p).lower() in ("none", "null", "_")):
            values.append(None)
            continue
        try:
            values.append(_whole(p))
        except ValueError as exc:
            form = "3, 3x5" + (" or 3xnone (none keeps the input size)" if allow_none else " or [3, 5]")
            raise _spec_error(f"{option}: {text!r} is not a whole number or a list of them: {exc} ({form})") from None
    if not values:
        raise _spec_error(f"{option}: no value given")
    return values if (len(values) > 1 or always_list) else values[0]


def parse_padding(text: str, option: str = "--padding"):
    """``same``, ``valid``, ``1``, ``1x2``, or ``[[1, 2], [0, 1]]`` ((before, after) per spatial dim)."""
    raw = text.strip()
    if raw.lower() in ("same", "valid"):
        return raw.lower()
    if raw.startswith("["):
        return _json_list(raw, option)
    try:
        return parse_ints(raw, option)
    except Exception:
        raise _spec_error(f"{option}: {text!r} is not a padding: expected same, valid, N, NxM or "
                          f"[[before, after], ...]") from None


def parse_float(text: str, option: str) -> float:
    """A number as typed (``0.1``, ``1e-5``, ``-2``). ``nan`` and ``inf`` are passed on as floats, and the layer
    field refuses them with its own message; ``1_0.5`` (float() reads 10.5) is refused here."""
    try:
        if "_" in text:
            raise ValueError
        return float(text)
    except ValueError:
        raise _spec_error(f"{option}: {text!r} is not a number") from None


def parse_int(text: str, option: str) -> int:
    try:
        return digits_to_int(grouped_int(text).strip())
    except ValueError as exc:
        raise _spec_error(f"{option}: {exc}") from None


def _option_int(value) -> int:
    """An int option as typed: digits only (``int()`` would read '1_0' as 10)."""
    if isinstance(value, int) and not isinstance(value, bool):       # a default, not typed text
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    return digits_to_int(grouped_int(value).strip())


Numbers = Annotated[str, typer.Option("--numbers", help="exact (1,234,567) or human (1.23 M); CSV/JSON always exact",
                                      metavar="exact|human")]


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    low = value.lower()
    if low not in choices:
        raise _spec_error(f"{option}: {value!r} is not one of {', '.join(choices)}{did_you_mean(low, choices)}")
    return low


__all__ = ["TooManyDigits", "digits_to_int", "parse_shape", "parse_sweep", "read_input", "read_batch",
           "parse_ints", "parse_padding", "parse_float", "parse_int",
           "Numbers", "take_width_options"]


def take_width_options(args: list[str]) -> tuple[list[str], Optional[int]]:
    """``args`` without its ``--wide`` / ``--width N`` / ``--width=N`` options (accepted anywhere, like --debug),
    and the width they ask for: ``terminal.UNLIMITED`` for ``--wide``, None when neither is given.

    >>> take_width_options(["solve", "--width", "100", "-i", "28"])
    (['solve', '-i', '28'], 100)
    >>> take_width_options(["--wide", "verify", "x.yaml"])[1] > 10 ** 6
    True
    """
    from ..terminal import UNLIMITED

    rest: list[str] = []
    width: Optional[int] = None
    words = iter(args)
    for word in words:
        if word == "--":                            # what follows is arguments, not options
            rest += [word, *words]
            break
        if word == "--wide":
            width = UNLIMITED
        elif word == "--width" or word.startswith("--width="):
            text = next(words, "") if word == "--width" else word[len("--width="):]
            try:
                width = digits_to_int(text.strip())
            except ValueError:
                raise _spec_error(f"--width: {_shown(text)} is not a whole number of columns (e.g. --width 100; "
                                  f"--wide for no limit)") from None
            if width < 1:
                raise _spec_error(f"--width: {width} must be ≥ 1 (e.g. --width 100; --wide for no limit)")
        else:
            rest.append(word)
    return rest, width
