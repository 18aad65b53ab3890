"""Notes that say something a reader must know, and notes that only confirm a convention (routine).

A layer's notes are plain strings in the report (``LayerReport.notes``). The code that writes a note knows whether
it is routine — a floored stride that skips only padding (no input value lost), the names of a split's outputs, the
largest of unaligned receptive fields reported at a merge — and marks it by writing it as a :class:`Routine`, a
``str`` that stays a plain string everywhere (JSON, CSV, comparisons). The summary's default view counts routine
notes instead of printing them (``--notes all`` prints every note). A report read back from JSON has plain strings
only: every note is then shown.
"""

from __future__ import annotations


class Routine(str):
    """A note that confirms a convention and loses no information (see the module docstring).

    >>> note = Routine("the last 1 padded position is never read")
    >>> note == "the last 1 padded position is never read", is_routine(note), is_routine(str(note))
    (True, True, False)
    """

    __slots__ = ()


def is_routine(note: str) -> bool:
    return isinstance(note, Routine)
