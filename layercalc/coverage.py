"""Which input positions the windows of a conv or pooling layer never read — the border a non-dividing stride
leaves, and the gaps between windows when the stride is wider than the kernel span (or dilation leaves holes).

Used by the analysis notes (:mod:`layercalc.rules`) and by ``--explain`` (:mod:`layercalc.explain`), so both say
the same thing. Pure functions of one dimension, like :mod:`layercalc.shapes`.
"""

from __future__ import annotations

from typing import Optional

from .shapes import ceil_div, conv_output_length, effective_kernel, pool_output_length

#: above this length the unread positions are not marked one by one (the marks take one byte per position)
COVERAGE_LIMIT = 10_000_000
_ZEROS = None


def _unread_pattern():
    global _ZEROS
    if _ZEROS is None:
        import re
        _ZEROS = re.compile(b"\x00+")
    return _ZEROS


def window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode) -> int:
    return (pool_output_length(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode) if ceil_mode
            else conv_output_length(length, kernel, stride, pad_before, pad_after, dilation))


def read_marks(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0, dilation: int = 1,
               ceil_mode: bool = False) -> Optional[bytearray]:
    """One byte per input position: 1 if some window reads it. None above ``COVERAGE_LIMIT`` or with no window.

    A window reads taps ``start + j·dilation`` (j < kernel); tap j of every window forms one arithmetic
    progression (step = stride), so each tap is marked with one slice assignment (C speed, no Python loop over
    positions).
    """
    out = window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if length > COVERAGE_LIMIT or out < 1:
        return None
    read = bytearray(length)
    for tap in range(kernel):
        first = tap * dilation - pad_before              # input position of this tap in window 0
        low = 0 if first >= 0 else ceil_div(-first, stride)
        high = min(out - 1, (length - 1 - first) // stride)
        if low <= high:
            read[first + low * stride:first + high * stride + 1:stride] = b"\x01" * (high - low + 1)
    return read


def unread_runs(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0, dilation: int = 1,
                ceil_mode: bool = False) -> Optional[list[tuple[int, int]]]:
    """The input positions no window reads, as inclusive runs ``(first, last)``; None above ``COVERAGE_LIMIT``.

    >>> unread_runs(28, 3, 2)                 # windows 0..24 step 2 end at 26: position 27 is never read
    [(27, 27)]
    >>> unread_runs(10, 2, 3)                 # stride 3 > kernel 2: one position skipped between windows, and the tail
    [(2, 2), (5, 5), (8, 9)]
    >>> unread_runs(9, 3, 2, dilation=2)      # taps 0, 2, 4 of windows at 0 and 2: odd positions are never read
    [(1, 1), (3, 3), (5, 5), (7, 7)]
    """
    read = read_marks(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if read is None:
        return None
    return [(m.start(), m.end() - 1) for m in _unread_pattern().finditer(read)]


class Unread:
    """The unread positions in ``[start, end)``: the first few runs, the last run and the count (all found at C
    speed, so a 10-million-position input costs milliseconds)."""

    def __init__(self, read: bytearray, start: int, end: int, shown: int = 5) -> None:
        self.count = read.count(0, start, end) if end > start else 0
        self.first: list[tuple[int, int]] = []
        self.last: Optional[tuple[int, int]] = None
        if not self.count:
            return
        for match in _unread_pattern().finditer(read, start, end):
            self.first.append((match.start(), match.end() - 1))
            if len(self.first) == shown:
                break
        stop = read.rfind(0, start, end)
        self.last = (max(start, read.rfind(1, start, stop) + 1), stop)

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def single(self) -> bool:
        return self.count == 1

    def text(self, shown: int = 5) -> str:
        listed = sum(b - a + 1 for a, b in self.first)
        if listed == self.count:
            return runs_text(self.first, shown)
        return (", ".join(_run_text(r) for r in self.first[:shown - 1])
                + f", …, {_run_text(self.last)} ({self.count} in all)")


def _run_text(run: tuple[int, int]) -> str:
    return str(run[0]) if run[0] == run[1] else f"{run[0]}..{run[1]}"


def runs_text(runs: list[tuple[int, int]], shown: int = 5) -> str:
    """``2, 5, 8..9``; long lists shortened to the first runs, ``…``, the last run and the count.

    >>> runs_text([(2, 2), (5, 5), (8, 9)])
    '2, 5, 8..9'
    >>> runs_text([(i, i) for i in range(1, 20, 2)])
    '1, 3, 5, 7, …, 19 (10 in all)'
    """
    if len(runs) <= shown:
        return ", ".join(_run_text(r) for r in runs)
    total = sum(b - a + 1 for a, b in runs)
    return ", ".join(_run_text(r) for r in runs[:shown - 1]) + f", …, {_run_text(runs[-1])} ({total} in all)"


def tail_start(length: int, kernel: int, stride: int, pad_before: int, dilation: int, out: int) -> int:
    """The first input position after the end of the last of ``out`` windows (≥ ``length``: no border left).

    >>> tail_start(28, 3, 2, 0, 1, 13)         # the last window starts at 24 and reads 24..26
    27
    """
    return (out - 1) * stride + effective_kernel(kernel, dilation) - pad_before


def unread_between_windows(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0,
                           dilation: int = 1, ceil_mode: bool = False) -> Optional[Unread]:
    """The input positions no window reads *before* the end of the last window: the gaps a stride wider than the
    kernel span leaves, or dilation holes that no window fills (the border after the last window is separate).
    None above ``COVERAGE_LIMIT`` or with no window.

    >>> unread_between_windows(10, 2, 3).text()          # windows read 0..1, 3..4, 6..7; 8..9 is the border
    '2, 5'
    >>> unread_between_windows(5, 3, 1, dilation=2).text()    # one window, taps 0, 2, 4
    '1, 3'
    >>> unread_between_windows(28, 3, 2).count           # dilation 1, stride ≤ kernel: windows touch, nothing marked
    0
    """
    out = window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if out < 1:
        return None
    if dilation == 1 and stride <= kernel:
        return Unread(bytearray(), 0, 0)
    if length > COVERAGE_LIMIT:
        return None
    read = read_marks(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    end = max(0, min(length, tail_start(length, kernel, stride, pad_before, dilation, out)))
    return Unread(read, 0, end)

