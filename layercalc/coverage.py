"""Which input positions the windows of a conv or pooling layer never read — the border a non-dividing stride
leaves, and the gaps between windows when the stride is wider than the kernel span (or dilation leaves holes).

Used by the analysis notes (:mod:`layercalc.rules`) and by ``--explain`` (:mod:`layercalc.explain`), so both say
the same thing. Pure functions of one dimension, like :mod:`layercalc.shapes`.

Everything the tool reports is computed in closed form by :class:`WindowCover` (a count of lattice points under
a line, i.e. a floor sum): the cost depends on how much is reported (a few runs, a count), never on the length,
kernel, stride or dilation. :func:`read_marks` (one byte per position) remains as a reference for small inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from math import gcd
from typing import Optional

from .shapes import ceil_div, conv_output_length, effective_kernel, pool_output_length

#: above this length :func:`read_marks` does not mark the positions one by one (one byte per position)
COVERAGE_LIMIT = 10_000_000

#: how one position along each axis is called in the notes (``input row 27``)
AXIS_WORDS = {"H": ("row", "rows"), "W": ("column", "columns"), "D": ("slice", "slices"),
              "L": ("position", "positions")}


def positions_phrase(text: str, single: bool, length: int, axis: str, verb: str) -> str:
    """``input row 27 (of 0..27) is never read`` / ``input rows 2, 5 (of 0..9) are never read``.

    >>> positions_phrase("27", True, 28, "H", "read")
    'input row 27 (of 0..27) is never read'
    """
    one, many = AXIS_WORDS.get(axis, ("position", "positions"))
    return (f"input {one if single else many} {text} (of 0..{length - 1}) {'is' if single else 'are'} never "
            f"{verb}")
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

    A reference for small inputs (the tool itself uses :class:`WindowCover`). Window o reads taps
    ``o·stride + j·dilation − pad_before`` (j < kernel): tap j of every window forms one arithmetic progression
    (step = stride), and so do the taps of one window (step = dilation); each is marked with one slice assignment,
    per tap or per window, whichever are fewer, counting only those that reach the input.
    """
    out = window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if length > COVERAGE_LIMIT or out < 1:
        return None
    read = bytearray(length)
    taps = range(max(0, ceil_div(pad_before - (out - 1) * stride, dilation)),
                 min(kernel, (pad_before + length - 1) // dilation + 1))
    windows = range(max(0, ceil_div(pad_before - (kernel - 1) * dilation, stride)),
                    min(out, (pad_before + length - 1) // stride + 1))
    # one progression per tap (over the windows) or per window (over the taps)
    lines, step, count, other_step = ((taps, dilation, out, stride) if len(taps) <= len(windows)
                                      else (windows, stride, kernel, dilation))
    for i in lines:
        first = i * step - pad_before                    # position of this tap in window 0 / of window i's tap 0
        low = 0 if first >= 0 else ceil_div(-first, other_step)
        high = min(count - 1, (length - 1 - first) // other_step)
        if low <= high:
            read[first + low * other_step:first + high * other_step + 1:other_step] = b"\x01" * (high - low + 1)
    return read


def unread_runs(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0, dilation: int = 1,
                ceil_mode: bool = False) -> Optional[list[tuple[int, int]]]:
    """The input positions no window reads, as inclusive runs ``(first, last)``; None with no window. Computed in
    closed form (:class:`WindowCover`): the cost grows with the number of runs, not with the length.

    >>> unread_runs(28, 3, 2)                 # windows 0..24 step 2 end at 26: position 27 is never read
    [(27, 27)]
    >>> unread_runs(10, 2, 3)                 # stride 3 > kernel 2: one position skipped between windows, and the tail
    [(2, 2), (5, 5), (8, 9)]
    >>> unread_runs(9, 3, 2, dilation=2)      # taps 0, 2, 4 of windows at 0 and 2: odd positions are never read
    [(1, 1), (3, 3), (5, 5), (7, 7)]
    """
    cover = WindowCover(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    if cover.windows < 1:
        return None
    return list(cover.runs(0, length))


def floor_sum(count: int, m: int, a: int, b: int) -> int:
    """``Σ floor((a·i + b) / m)`` over ``0 ≤ i < count`` (count ≥ 0, m ≥ 1, a ≥ 0, b ≥ 0) in O(log m) steps: the
    Euclid-like reduction (the terms past ``a ≥ m`` or ``b ≥ m`` are summed directly, then the roles of a and m
    swap, as when counting lattice points under a line).

    >>> floor_sum(4, 3, 2, 1), sum((2 * i + 1) // 3 for i in range(4))
    (4, 4)
    """
    total = 0
    while True:
        if a >= m:
            total += count * (count - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += count * (b // m)
            b %= m
        top = a * count + b
        if top < m:
            return total
        count, b, m, a = top // m, top % m, a, m


def _pairs_below(limit: int, a: int, b: int, j_start: int, j_stop: int, width: int) -> int:
    """How many (j, w) with ``j_start ≤ j < j_stop``, ``0 ≤ w < width`` have ``a·j + b·w < limit`` (a, b ≥ 1).

    For each j, ``clamp(ceil((limit − a·j) / b), 0, width)`` values of w: all of them for j up to one bound, none
    past another, and a floor sum in between.
    """
    if j_stop <= j_start or width <= 0:
        return 0
    full_stop = min(j_stop, max(j_start, (limit - b * (width - 1) - 1) // a + 1))    # every w fits
    some_stop = min(j_stop, max(full_stop, (limit - 1) // a + 1))                    # at least w = 0 fits
    total = (full_stop - j_start) * width
    if some_stop > full_stop:            # j = some_stop − 1 − i: ceil((limit − a·j) / b), increasing in i
        total += floor_sum(some_stop - full_stop, b, a, limit + b - 1 - a * (some_stop - 1))
    return total


def _first_in(lo: int, hi: int, count: Callable[[int, int], int]) -> Optional[int]:
    """The first p in [lo, hi) that ``count`` counts (``count(a, b)``: how many in [a, b)), or None: galloping,
    then bisection — O(log of the distance) calls."""
    if hi <= lo or not count(lo, hi):
        return None
    step = 1
    while not count(lo, min(hi, lo + step)):
        step *= 2
    a, b = lo + step // 2, min(hi, lo + step)              # none in [lo, a), some in [a, b)
    while b - a > 1:
        mid = (a + b) // 2
        if count(a, mid):
            b = mid
        else:
            a = mid
    return a


def _last_in(lo: int, hi: int, count: Callable[[int, int], int]) -> Optional[int]:
    """The last p in [lo, hi) that ``count`` counts, or None (as :func:`_first_in`, from the end)."""
    if hi <= lo or not count(lo, hi):
        return None
    step = 1
    while not count(max(lo, hi - step), hi):
        step *= 2
    a, b = max(lo, hi - step), hi - step // 2              # some in [a, b), none in [b, hi)
    while b - a > 1:
        mid = (a + b) // 2
        if count(mid, b):
            a = mid
        else:
            b = mid
    return a


class WindowCover:
    """Which input positions of one dimension the windows of a conv or pooling layer read, in closed form.

    Window o (o < out) reads the padded positions ``o·s + t·d`` (tap t < k). With ``g = gcd(s, d)`` each of them
    is ``g·(t·d' + o·s')``, with ``d' = d/g`` and ``s' = s/g`` coprime, so two (tap, window) pairs give the same
    position exactly when they differ by a multiple of ``(s', −d')``. Each position read therefore has exactly one
    pair with ``t < s'`` or ``o ≥ out − d'`` (the first of its chain inside the k × out rectangle), and counting
    the positions below x is counting those pairs under the line ``t·d' + o·s' < x/g``: floor sums, O(log) steps.
    Every query costs a bounded number of them, whatever the length, kernel, stride or dilation.

    >>> cover = WindowCover(10, 2, 3)                     # windows read 0..1, 3..4, 6..7
    >>> cover.unread(0, 10), list(cover.runs(0, 10)), cover.last_run(0, 8)
    (4, [(2, 2), (5, 5), (8, 9)], (5, 5))
    """

    def __init__(self, length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0,
                 dilation: int = 1, ceil_mode: bool = False) -> None:
        self.length, self.pad_before = length, pad_before
        self.windows = window_count(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
        self.g = gcd(stride, dilation)
        self.kernel, self.stride, self.dilation = kernel, stride // self.g, dilation // self.g

    def _read_below(self, x: int) -> int:
        """How many padded positions below x some window reads."""
        if self.windows < 1 or x <= 0:
            return 0
        limit = ceil_div(x, self.g)                          # g·q < x ⇔ q < ceil(x / g)
        k, out, d, s = self.kernel, self.windows, self.dilation, self.stride
        total = _pairs_below(limit, d, s, 0, min(k, s), out)  # taps t < s': every window's pair is the first
        if k > s:                                            # taps t ≥ s': only windows o ≥ out − d'
            low = max(0, out - d)
            total += _pairs_below(limit - low * s, d, s, s, k, out - low)
        return total

    def read(self, lo: int, hi: int) -> int:
        """How many input positions in [lo, hi) some window reads."""
        if hi <= lo:
            return 0
        return self._read_below(hi + self.pad_before) - self._read_below(lo + self.pad_before)

    def unread(self, lo: int, hi: int) -> int:
        """How many input positions in [lo, hi) no window reads."""
        return max(0, hi - lo) - self.read(lo, hi)

    def runs(self, lo: int, hi: int, limit: Optional[int] = None) -> Iterator[tuple[int, int]]:
        """The unread runs ``(first, last)`` in [lo, hi), in order; at most ``limit`` of them."""
        found = 0
        while limit is None or found < limit:
            first = _first_in(lo, hi, self.unread)
            if first is None:
                return
            after = _first_in(first, hi, self.read)
            lo = hi if after is None else after
            yield first, lo - 1
            found += 1

    def last_run(self, lo: int, hi: int) -> Optional[tuple[int, int]]:
        """The last unread run in [lo, hi), or None."""
        last = _last_in(lo, hi, self.unread)
        if last is None:
            return None
        read = _last_in(lo, last, self.read)
        return (lo if read is None else read + 1), last


class Unread:
    """The unread positions in ``[start, end)``: the first few runs, the last run and the count.

    :meth:`of` finds them in closed form (any length); the constructor reads them from :func:`read_marks`."""

    @classmethod
    def of(cls, cover: WindowCover, start: int, end: int, shown: int = 5) -> Unread:
        self = cls.__new__(cls)
        self.count = cover.unread(start, end)
        self.first = list(cover.runs(start, end, shown)) if self.count else []
        self.last = cover.last_run(start, end) if self.count else None
        return self

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
        if listed == self.count or self.last is None:        # (no last run: nothing unread, nothing listed)
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
    None with no window. Closed form (:class:`WindowCover`): any length.

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
    end = max(0, min(length, tail_start(length, kernel, stride, pad_before, dilation, out)))
    return Unread.of(WindowCover(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode), 0, end)

