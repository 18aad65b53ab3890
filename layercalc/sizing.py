"""The one-dimensional size question as a library call: ``layercalc.size(28, 3, stride=2)``.

:func:`size` answers what ``layercalc size`` prints — the output length, the padding actually applied on each
side, the worked formula, the notes (input positions no window reads, Keras' 'valid' rule for transposed
convolutions, a window dropped by ceil mode) — and carries the very lines the command prints (``text`` without
``--explain``, ``lines`` with it). The command line only parses its options, calls this and prints.

Every mistake raises :class:`~layercalc.errors.LayerCalcError` (``SpecError`` for an invalid value,
``ShapeError`` when no window fits), in the library's terms: parameters by their names here (``padding: must be ≥
0, got -1``; ``output_padding only applies with transposed=True``). The command line translates those names into
its option names where it prints them (``--padding``, ``--output-padding``, ``--transposed``, ``--ceil``).

It imports nothing heavy (no Pydantic, NumPy or YAML): ``layercalc size`` stays
fast, so the result is a frozen dataclass rather than a Pydantic model.

>>> result = size(28, 3, stride=2)
>>> result.output, result.pad_before, result.pad_after
(13, 0, 0)
>>> print(result.text)
L_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 13; input position 27 (of 0..27) is never covered by any window
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Optional, Union

from . import explain as ex
from .errors import ShapeError, SpecError, shown, whole_number_problem
from .shapes import (
    check_pool_padding,
    conv_output_length,
    effective_kernel,
    pool_output_length,
    same_padding,
    transposed_output_length,
    transposed_same_padding,
    transposed_valid_extra,
)

__all__ = ["SizeResult", "size", "digits_to_int", "TooManyDigits"]


# ================================================================================================ typed numbers

#: a whole number as typed: ASCII digits, an optional sign. int() alone would also take '1_0' (10), ' ٣' (3)...
_DIGITS = re.compile(r"[-+]?[0-9]+")
#: the most digits a typed whole number may have: int64 has 19 (and int() refuses 4,300 with a bare ValueError)
_MAX_DIGITS = 30


class TooManyDigits(ValueError):
    """A typed whole number longer than any size (and than Python's int() accepts)."""


def digits_to_int(text: str) -> int:
    """A whole number typed as digits; raises ``ValueError`` saying why not.

    >>> digits_to_int('784'), digits_to_int('-2')
    (784, -2)
    >>> digits_to_int('9' * 40)
    Traceback (most recent call last):
    ...
    layercalc.sizing.TooManyDigits: a whole number of 40 digits is larger than any size (int64: 19 digits)
    """
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{shown(text)} is not a whole number (digits only)")
    if len(text.lstrip("+-")) > _MAX_DIGITS:
        raise TooManyDigits(f"a whole number of {len(text.lstrip('+-')):,} digits is larger than any size (int64: 19 "
                            f"digits)")
    return int(text)


def whole(value, name: str, minimum: int) -> int:
    """``value`` as an int for a library argument, refused (SpecError naming ``name``) unless it is a whole number
    (an int, or an integral float such as ``3.0``) of at least ``minimum``. Any size is taken: the arithmetic is
    exact on Python ints, as on the command line.

    >>> whole(3.0, "kernel", 1)
    3
    >>> whole(True, "kernel", 1)
    Traceback (most recent call last):
    ...
    layercalc.errors.SpecError: kernel: True is a boolean, not a whole number
    """
    number = _as_int(value)
    if number is None:
        raise SpecError(f"{name}: {whole_number_problem(value) or f'{shown(value)} is not a whole number'}")
    if number < minimum:
        raise SpecError(f"{name} must be ≥ {minimum}, got {number}")
    return number


def _as_int(value) -> Optional[int]:
    """An int, or an integral float exact as a float (``3.0``), as an int; anything else (booleans, strings,
    2.9, NaN) → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return int(float(value)) if whole_number_problem(value) is None else None
    return None


# ================================================================================================ the result

@dataclass(frozen=True)
class SizeResult:
    """What ``layercalc size`` answers, as data; ``str(result)`` is the line the command prints."""

    length: int                  #: input length
    kernel: int
    stride: int
    padding: Union[int, str]     #: as asked: an amount on each side, 'same' or 'valid'
    dilation: int
    transposed: bool
    ceil_mode: bool
    output_padding: int          #: transposed: zeros appended after (stated, Keras' 'valid' extra, or 'same''s); else 0
    output: int                  #: the output length
    pad_before: int              #: padding applied before the input (transposed: cropped from the start)
    pad_after: int               #: padding applied after the input (transposed: cropped from the end)
    formula: str                 #: the worked formula (``L_out = floor((28 + 2·0 − …) / 2) + 1 = 13``)
    notes: tuple[str, ...]       #: the clauses after it: uncovered positions, Keras' 'valid' extra
    text: str                    #: the line ``layercalc size`` prints: the formula and the notes joined by '; '
    lines: tuple[str, ...]       #: the lines ``layercalc size --explain`` prints: general formula, worked, remarks

    def __str__(self) -> str:
        return self.text


# ================================================================================================ the question

def _padding(padding) -> Union[int, str]:
    """``padding`` as given (an int, ``same``, ``valid``, or digits typed as text) → an int ≥ 0 or the word."""
    if isinstance(padding, str):
        pad = padding.strip().lower()
        if pad in ("same", "valid"):
            return pad
        try:
            value = digits_to_int(pad)
        except ValueError:
            value = None
    else:
        value = _as_int(padding)
    if value is None:
        raise SpecError(f"padding: {shown(padding)} is not a whole number, same or valid (size works along one "
                        f"dimension: the same padding on each side)")
    if value < 0:
        raise SpecError(f"padding: must be ≥ 0, got {value}")
    return value


def size(length: int, kernel: int, stride: int = 1, padding: Union[int, str] = 0, dilation: int = 1, *,
         transposed: bool = False, ceil_mode: bool = False, output_padding: Optional[int] = None) -> SizeResult:
    """The output length along one dimension of a convolution or pooling window (or of a transposed convolution).

    ``padding`` is the amount on each side, ``'same'`` (TensorFlow/Keras: output ``ceil(length / stride)``, the odd
    pixel after) or ``'valid'`` (none; for a transposed convolution Keras' rule, ``length·stride + max(span −
    stride, 0)``, unless an ``output_padding`` is given). ``ceil_mode`` is PyTorch's pooling rule.
    ``output_padding`` applies to a transposed convolution only.

    >>> size(224, 7, 2, 3).output
    112
    >>> r = size(7, 3, 2, 'same', transposed=True)
    >>> r.output, r.pad_before, r.pad_after, r.output_padding
    (14, 0, 1, 0)
    >>> size(5, 2, 2, ceil_mode=True).text
    'L_out = ceil((5 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 3'
    >>> size(28, 3, padding=-1)
    Traceback (most recent call last):
    ...
    layercalc.errors.SpecError: padding: must be ≥ 0, got -1
    """

    length = whole(length, "length", 1)
    kernel = whole(kernel, "kernel", 1)
    stride = whole(stride, "stride", 1)
    dilation = whole(dilation, "dilation", 1)
    transposed, ceil_mode = _flag(transposed, "transposed"), _flag(ceil_mode, "ceil_mode")
    pad = _padding(padding)
    amount = pad if isinstance(pad, int) else 0            # the amount on each side ('valid': none)
    stated_output_padding = output_padding is not None
    output_padding = whole(output_padding, "output_padding", 0) if stated_output_padding else 0
    if output_padding and not transposed:
        raise SpecError("output_padding only applies with transposed=True")
    if transposed and ceil_mode:
        raise SpecError("ceil_mode=True applies to pooling, not with transposed=True")
    if ceil_mode and isinstance(pad, int):   # PyTorch's pooling rule; 'same' is Keras' padding, which has no such rule
        check_pool_padding(kernel, pad)
    k_eff = effective_kernel(kernel, dilation)
    notes: list[str] = []
    if transposed:
        if output_padding >= stride and output_padding >= dilation:
            raise SpecError(f"output_padding {output_padding} must be smaller than the stride {stride} or the "
                            f"dilation {dilation} (PyTorch's rule)")
        if pad == "same":
            if output_padding:
                raise SpecError("output_padding cannot be combined with padding 'same' (output = N·stride)")
            before, after, applied = transposed_same_padding(length, kernel, stride, dilation)
        else:
            before = after = amount
            applied = output_padding
            # 'valid' is Keras' word: Keras' length L·s + max(span − s, 0) unless an output_padding is stated
            keras_extra = (transposed_valid_extra(kernel, stride, dilation)
                           if pad == "valid" and not stated_output_padding else 0)
            if keras_extra:
                output_padding = applied = keras_extra
                notes.append(f"'valid' (Keras): output = input·stride + max(kernel span − stride, 0), i.e. "
                             f"output_padding {applied} zeros appended")
        out = transposed_output_length(length, kernel, stride, before, after, dilation, applied)
        formula = ex.explain_transposed_length(length, kernel, stride, before, after, dilation, applied)[0]
        if out < 1:
            raise ShapeError(f"output length {out} < 1: the padding crops more than the transposed convolution "
                             f"produces (({length} − 1)·{stride} − {before} − {after} + {dilation}·({kernel} − 1) + "
                             f"{applied} + 1 = {out})")
    else:
        applied = 0
        before, after = same_padding(length, kernel, stride, dilation) if pad == "same" else (amount, amount)
        out = (pool_output_length(length, kernel, stride, before, after, dilation, True) if ceil_mode
               else conv_output_length(length, kernel, stride, before, after, dilation))
        # ceil mode (PyTorch) keeps one window even when the kernel hangs past the padded input (5 over 4 → 1)
        if (out < 1) if ceil_mode else (length + before + after < k_eff):
            raise ShapeError(f"kernel span {k_eff} (dilation {dilation}·(kernel {kernel} − 1) + 1) is larger than "
                             f"the padded input {length + before + after} ({length} + {before} + {after}): no window "
                             f"fits")
        formula = ex.explain_length(length, kernel, stride, before, after, dilation, ceil_mode, "L")[0]
        windows = -(-(length + before + after - k_eff) // stride) + 1      # ceil mode's count, before the drop
        if ceil_mode and out != windows:                                # a window dropped: it started in the padding
            formula = f"{formula} → {out} (last window dropped: it would start in the padding)"
        # a stride that does not divide evenly is not simply rounded: say what happens to the border
        note = ex.coverage_note(length, kernel, stride, before, after, dilation, ceil_mode)
        if note:
            notes.append(note)
    lines = ex.explain_size(length, kernel, stride, pad if isinstance(pad, str) else str(pad), dilation, transposed,
                            output_padding, ceil_mode)
    return SizeResult(length=length, kernel=kernel, stride=stride, padding=pad, dilation=dilation,
                      transposed=transposed, ceil_mode=ceil_mode, output_padding=applied, output=out,
                      pad_before=before, pad_after=after, formula=formula, notes=tuple(notes),
                      text="; ".join([formula, *notes]), lines=tuple(lines))


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{name}: {shown(value)} is not true or false")
    return value
