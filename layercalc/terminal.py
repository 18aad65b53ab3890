"""The terminal a person reads the answer on: its width, and prose wrapped to fit it.

One place decides how wide the default output may be, so every command (summary, the calculators, ``--explain``,
``size``, ``solve``, ``verify``, ``run``, ``zoo``, error lines) fits the same terminal:

- an explicit width (``--width N``; ``--wide`` is "no limit") wins;
- else ``COLUMNS`` when it holds a positive integer (the shell's own setting, honoured as Python's
  ``shutil.get_terminal_size`` honours it);
- else the size of the terminal standard output is attached to;
- else (a pipe, a file, CI) 80 columns — what Keras' ``model.summary()`` (79) and most terminals assume.

Machine formats (JSON, CSV, markdown) are never cut to a width: programs read them.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Optional

DEFAULT_WIDTH = 80
# "no limit" (``--wide``): wide enough for any table or line, small enough to stay an ordinary int
UNLIMITED = 1 << 30
# narrower than this, nothing useful fits: an explicit width or COLUMNS below it is raised to it
MIN_WIDTH = 40


def terminal_width(explicit: Optional[int] = None) -> int:
    """The number of columns default output may use.

    >>> terminal_width(100)
    100
    >>> terminal_width(10)  # too narrow to show anything: raised to the minimum
    40
    """
    if explicit is None:
        explicit = _override                # the command line's --width N / --wide (set_width_override)
    if explicit is not None:
        return max(MIN_WIDTH, explicit)
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return max(MIN_WIDTH, int(columns))
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)
    except (OSError, ValueError):  # a closed or unusual stdout: fall back to the default
        pass
    return DEFAULT_WIDTH


def wrap(text: str, width: int, indent: str = "", hanging: str = "    ") -> str:
    """One paragraph wrapped at word boundaries: the first line starts with ``indent``, the rest with
    ``indent + hanging``. A word longer than the width (a path, a shape) stays whole on its own line rather than
    being cut in the middle.

    >>> print(wrap("maxpool2d_5: H: the output is floored to 5 and input row 10 is never read", 40, "  "))
      maxpool2d_5: H: the output is floored
          to 5 and input row 10 is never
          read
    >>> wrap("short", 80)
    'short'
    """
    if width >= UNLIMITED:
        return indent + text
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + hanging,
                         break_long_words=False, break_on_hyphens=False)


def wrap_lines(text: str, width: int, hanging: str = "    ") -> str:
    """Every line of ``text`` wrapped to ``width``, each keeping its own leading spaces as its indent.

    >>> print(wrap_lines("a:\\n  one two three four five six seven eight nine ten eleven twelve thirteen", 40))
    a:
      one two three four five six seven
          eight nine ten eleven twelve
          thirteen
    """
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        body = line.lstrip(" ")
        out.append(wrap(body, width, line[: len(line) - len(body)], hanging))
    return "\n".join(out)


def wrap_formula(line: str, width: int, indent: str) -> str:
    """One worked formula (an ``--explain`` line) fitted to ``width``: each ``;`` clause on its own line (the later
    ones indented), broken before its ``=`` steps where they fit that way, else at word boundaries, with a hanging
    indent.

    >>> print(wrap_formula("receptive field H = 1 + (1·(3 − 1))·1 = 3; jump = jump_in·stride = 1·1 = 1", 44, "  "))
      receptive field H = 1 + (1·(3 − 1))·1 = 3;
          jump = jump_in·stride = 1·1 = 1
    >>> print(wrap_formula("FLOPs = 2·MACs + bias adds (N·H_out·W_out·C_out) = 2·194,688 + 21,632 = 411,008", 60, ""))
    FLOPs = 2·MACs + bias adds (N·H_out·W_out·C_out)
        = 2·194,688 + 21,632 = 411,008
    """
    if width >= UNLIMITED or len(indent) + len(line) <= width:
        return indent + line
    hanging = indent + "    "
    clauses = line.split("; ")
    out: list[str] = []
    for i, clause in enumerate(clauses):
        clause += ";" if i < len(clauses) - 1 else ""
        first = indent if i == 0 else hanging
        steps = clause.split(" = ")
        lines = [first + steps[0]]
        for step in steps[1:]:
            joined = f"{lines[-1]} = {step}"
            lines[-1:] = [joined] if len(joined) <= width else [lines[-1], f"{hanging}= {step}"]
        if any(len(text) > width for text in lines):        # a step alone too long: plain word wrapping
            lines = [wrap(clause, width, first, hanging[len(first):] or "    ")]
        out += lines
    return "\n".join(out)


def widest_line(text: str) -> int:
    """The width of the widest line of ``text`` (what a fit-the-terminal check measures).

    >>> widest_line("ab\\nabcd\\n")
    4
    """
    return max((len(line) for line in text.split("\n")), default=0)


# the width the command line asked for (``--width N``, ``--wide``); None: detect it (COLUMNS, the terminal, 80)
_override: Optional[int] = None


def set_width_override(width: Optional[int]) -> None:
    """Make :func:`terminal_width` answer ``width`` (``--width N``; ``--wide`` passes :data:`UNLIMITED`) until
    reset with None. The command line sets it once per run, before any command renders, so the calculators,
    ``summary`` and the error lines all read the same width.

    >>> set_width_override(100); terminal_width()
    100
    >>> set_width_override(None)
    """
    global _override
    _override = width


def width_override() -> Optional[int]:
    """The width set by :func:`set_width_override` (None when the width is detected)."""
    return _override


def wrap_labelled(label: str, text: str, width: int) -> str:
    """``text`` after ``label`` on the first line, its continuation lines starting under the text (a key–value
    row whose value is too long).

    >>> print(wrap_labelled("  FLOPs  ", "411,008 (2 per MAC + bias adds + element ops)", 36))
      FLOPs  411,008 (2 per MAC + bias
             adds + element ops)
    """
    if width >= UNLIMITED or len(label) + len(text) <= width:
        return label + text
    return textwrap.fill(text, width=width, initial_indent=label, subsequent_indent=" " * len(label),
                         break_long_words=False, break_on_hyphens=False)
