"""The inverse shape question: which kernel / stride / padding / dilation turn an input length into a wanted output?

``search(224, 112, kernel=7)`` lists every combination of the free parameters, within sensible bounds, for which
the forward formula of :mod:`layercalc.shapes` gives exactly the wanted output. The search is a plain enumeration
of small integers checked with the very same forward functions the calculator uses, so every answer is correct by
construction (nothing is derived by algebra that could drift from the forward rule; the one stride computed by
algebra, the smallest giving a single window, is only a candidate, checked like the others).

Bounds ("sensible" = what real networks use; widen them with the ``max_*`` arguments):

- kernel 1..11, dilation 1..4, stride 1..8;
- padding 0..(dilation·(kernel − 1)): more padding than the kernel span only adds windows that see nothing but
  zeros; with ``ceil_mode`` (pooling) PyTorch's own limit applies, padding ≤ kernel // 2 (a fixed padding above
  it is refused when the kernel is fixed too, and skips the kernels too small for it otherwise);
- transposed: output_padding 0..max(stride, dilation) − 1 (PyTorch's rule).

When the wanted output is 1 and the stride is free, every stride from some value on gives 1 (a single window);
only that smallest stride is listed for each kernel / padding / dilation (``Solutions.note`` says so), even when
it exceeds ``max_stride``, instead of repeating each answer for every larger stride.

Before searching, the number of combinations to check is computed exactly (:func:`search_space_size`); above
``SEARCH_LIMIT`` the search is refused (a ``SpecError`` naming the ``--max-*`` bounds to lower) instead of
running for minutes.

Answers are sorted with dilation 1 first (the usual case), then by kernel, stride, padding, output_padding.

:func:`solve` is ``layercalc solve`` as a library call (``layercalc.solve(...)``): the search, each answer with
the forward formula that checks it, and the very lines the command prints (a :class:`SolveResult`, a frozen
dataclass). Mistakes raise ``SpecError`` with the command's line. :func:`search` is the bare search.

This module imports nothing heavy (no Pydantic): the command line uses it on its fast path; tabulate, which lays
out the table of answers, is imported only when there are answers to lay out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from .errors import SpecError
from .shapes import (
    check_pool_padding,
    conv_output_length,
    effective_kernel,
    pool_output_length,
    transposed_output_length,
)

MAX_KERNEL = 11
MAX_STRIDE = 8
MAX_DILATION = 4

# Largest number of combinations solve() checks (search_space_size): enough for real up-sampling questions (FCN-32s,
# 7 → 224 transposed with kernels up to 64 and strides up to 32, is 1.1 million), small enough that an accepted
# search ends within a few seconds. Measured at 400,000 on the 2-core reference machine (Python 3.11, best of 3):
# the slowest kind, output 1 with a fixed padding and one stride, 0.9 to 1.2 s; a plain convolution, pooling or
# transposed search 0.3 to 0.6 s — so 1.5 million is about 1 to 4.5 s. The defaults need at most ~25,000.
SEARCH_LIMIT = 1_500_000


class Solution(NamedTuple):
    kernel: int
    stride: int
    padding: int
    dilation: int
    output_padding: int = 0


@dataclass
class Solutions:
    """The answers plus what the search covered (for the message when there are none)."""
    answers: list[Solution]
    searched: dict[str, tuple[int, int]]          # free parameter → (low, high) bounds searched
    note: str = ""
    nearest: list[tuple[int, Solution]] = field(default_factory=list)   # (output, combination) closest misses


def forward(length: int, s: Solution, transposed: bool = False, ceil_mode: bool = False) -> int:
    """The output length for one combination (the same functions the calculator uses)."""
    return _length_function(transposed, ceil_mode)(length, *s)


def _length_function(transposed: bool, ceil_mode: bool):
    """``f(length, kernel, stride, padding, dilation, output_padding)`` for the mode: the search calls it with
    plain ints (no Solution built for each of up to ``SEARCH_LIMIT`` misses)."""
    if transposed:
        return lambda n, k, s, p, d, op: transposed_output_length(n, k, s, p, p, d, op)
    if ceil_mode:
        return lambda n, k, s, p, d, op: pool_output_length(n, k, s, p, p, d, ceil_mode=True)
    return lambda n, k, s, p, d, op: conv_output_length(n, k, s, p, p, d)


def _check_fixed(name: str, value: Optional[int], minimum: int) -> None:
    if value is not None and value < minimum:
        raise SpecError(f"{name} must be ≥ {minimum}, got {value}")


def search(input_length: int, output_length: int, kernel: Optional[int] = None, stride: Optional[int] = None,
          padding: Optional[int] = None, dilation: Optional[int] = None, output_padding: Optional[int] = None,
          transposed: bool = False, ceil_mode: bool = False, max_kernel: int = MAX_KERNEL,
          max_stride: int = MAX_STRIDE, max_dilation: int = MAX_DILATION,
          max_padding: Optional[int] = None) -> Solutions:
    """Every combination of the free parameters (those left ``None``) giving exactly ``output_length``.

    >>> [tuple(s) for s in search(224, 112, kernel=7, dilation=1).answers]
    [(7, 2, 3, 1, 0)]
    >>> [tuple(s)[:3] for s in search(28, 26, stride=1, dilation=1).answers]
    [(3, 1, 0), (5, 1, 1), (7, 1, 2), (9, 1, 3), (11, 1, 4)]
    >>> search(7, 14, kernel=3, stride=2, dilation=1, transposed=True).answers
    [Solution(kernel=3, stride=2, padding=1, dilation=1, output_padding=1)]
    """
    _check_fixed("input", input_length, 1)
    _check_fixed("output", output_length, 1)
    for name, value in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        _check_fixed(name, value, 1)
    _check_fixed("padding", padding, 0)
    _check_fixed("output_padding", output_padding, 0)
    if output_padding and not transposed:
        raise SpecError("output_padding only applies to a transposed convolution (add --transposed)")
    if transposed and ceil_mode:
        raise SpecError("ceil mode applies to pooling, not to a transposed convolution")
    for name, value in (("max_kernel", max_kernel), ("max_stride", max_stride), ("max_dilation", max_dilation)):
        _check_fixed(name, value, 1)
    _check_fixed("max_padding", max_padding, 0)
    if ceil_mode and padding is not None:
        _check_pool_padding(padding, kernel, max_kernel)

    single_window = output_length == 1 and stride is None and not transposed
    size = search_space_size(kernel, stride, padding, dilation, output_padding, transposed, ceil_mode, max_kernel,
                             max_stride, max_dilation, max_padding, single_window)
    if size > SEARCH_LIMIT:
        raise SpecError(_too_large(size, kernel, stride, padding, dilation, output_padding, transposed, ceil_mode,
                                   max_kernel, max_stride, max_dilation, max_padding))
    kernels = [kernel] if kernel is not None else range(1, max_kernel + 1)
    strides = [stride] if stride is not None else range(1, max_stride + 1)
    dilations = [dilation] if dilation is not None else range(1, max_dilation + 1)

    length_of = _length_function(transposed, ceil_mode)
    answers = []
    near: dict[int, Solution] = {}   # reachable output → simplest combination giving it (for the "nearest" hint)
    for d in dilations:
        for k in kernels:
            for pad in _paddings(k, d, padding, ceil_mode, max_padding):
                candidates = list(strides)
                if single_window:    # one window: every stride from some value on fits; keep the smallest only
                    candidates.append(single_window_stride(input_length, k, pad, d, ceil_mode))
                found_here = []
                for s in candidates:
                    for op in _output_paddings(s, d, output_padding, transposed):
                        out = length_of(input_length, k, s, pad, d, op)
                        if out == output_length:
                            found_here.append(Solution(k, s, pad, d, op))
                        elif out >= 1 and (out not in near or _simpler((d, k, s, pad, op), near[out])):
                            near[out] = Solution(k, s, pad, d, op)
                if single_window and found_here:
                    found_here = [min(found_here, key=lambda c: c.stride)]
                answers += found_here
    answers.sort(key=lambda c: (c.dilation, c.kernel, c.stride, c.padding, c.output_padding))
    searched = _searched(kernel, stride, padding, dilation, output_padding, transposed, ceil_mode,
                         max_kernel, max_stride, max_dilation, max_padding)
    note = ("a single window: every stride at least the one listed gives output 1; only the smallest is shown"
            if single_window and answers else "")
    nearest = [] if answers else _nearest(near, output_length)
    return Solutions(answers, searched, note, nearest)


def single_window_stride(length: int, kernel: int, padding: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """The smallest stride giving output 1 (one window), with the same padding on both sides.

    The caller checks the answer with the forward formula; this only says which stride to try. The set of
    strides giving 1 is "every stride from this one on" in both modes (the tests check it against torch), so the
    smallest is all there is to list. With ``span = L + 2p − d·(k − 1) − 1``:

    - floor (conv): ``span // s + 1 = 1`` needs ``0 ≤ span < s``: stride ``span + 1`` (no stride at all when
      span < 0: the kernel does not fit; 1 is returned and fails the check);
    - ceil (pooling): ``ceil(span / s) + 1``, minus 1 when the last window starts at or after ``L + p`` (PyTorch
      drops it). For span ≤ 0 that is 1 as soon as ``s > −span``. For span > 0 ``ceil(span / s) ≥ 1``, so the
      output is 1 only when the 2nd window is dropped, i.e. ``s ≥ span`` and ``s ≥ L + p``: a stride beyond the
      input, larger than the floor mode's ``span + 1``.

    >>> single_window_stride(7, 3, 0)                    # (7 − 3) // s + 1 = 1 needs s ≥ 5
    5
    >>> single_window_stride(100, 3, 0, ceil_mode=True)  # ceil(97/s) + 1 = 2 for s ≥ 97; dropped when s ≥ 100
    100
    >>> single_window_stride(4, 5, 0, ceil_mode=True)    # span −1: ceil(−1/s) + 1 = 1 for s ≥ 2 (torch agrees)
    2
    """
    span = length + 2 * padding - effective_kernel(kernel, dilation)
    if not ceil_mode:
        return max(span + 1, 1)
    if span <= 0:
        return 1 - span
    return max(span, length + padding)


def search_space_size(kernel: Optional[int] = None, stride: Optional[int] = None, padding: Optional[int] = None,
                      dilation: Optional[int] = None, output_padding: Optional[int] = None, transposed: bool = False,
                      ceil_mode: bool = False, max_kernel: int = MAX_KERNEL, max_stride: int = MAX_STRIDE,
                      max_dilation: int = MAX_DILATION, max_padding: Optional[int] = None,
                      single_window: bool = False) -> int:
    """How many combinations :func:`search` would check, exactly, in constant time (no loop over the bounds).

    Σ over dilations d of paddings(d) × strides(d), where paddings(d) = Σ over kernels of the paddings searched
    (at most linear in d: ``d·(k − 1) + 1`` for a convolution) and strides(d) = Σ over strides of the
    output_paddings tried (``max(s, d)`` when transposed, piecewise in d), plus the one extra stride per kernel /
    padding / dilation of a single-window search. Summed with power sums of d; the tests compare it with a count
    of the loops themselves.

    >>> search_space_size()                       # Σ_d Σ_k (d·(k − 1) + 1) · 8 = Σ_d (55·d + 11) · 8
    4752
    >>> search_space_size(kernel=3, stride=2, dilation=1, ceil_mode=True)   # paddings 0..1
    2
    """
    k_lo, k_hi = (kernel, kernel) if kernel is not None else (1, max_kernel)
    s_lo, s_hi = (stride, stride) if stride is not None else (1, max_stride)
    d_lo, d_hi = (dilation, dilation) if dilation is not None else (1, max_dilation)
    strides = s_hi - s_lo + 1
    paddings = _paddings_per_dilation(k_lo, k_hi, padding, ceil_mode, max_padding)
    total_twice = 0
    for low, high, strides_twice in _strides_per_dilation(s_lo, s_hi, output_padding, transposed,
                                                          strides + single_window):
        total_twice += _poly_sum(_poly_mul(paddings, strides_twice), max(low, d_lo), min(high, d_hi))
    return total_twice // 2


def _paddings_per_dilation(k_lo: int, k_hi: int, fixed: Optional[int], ceil_mode: bool,
                           max_padding: Optional[int]) -> tuple[int, int]:
    """(a0, a1): the paddings searched over all kernels k_lo..k_hi are a0 + a1·d (mirrors :func:`_paddings`)."""
    kernels = k_hi - k_lo + 1
    if fixed is not None:            # pooling: only the kernels with k // 2 ≥ fixed, i.e. k ≥ 2·fixed
        return (max(0, k_hi - max(k_lo, 2 * fixed) + 1) if ceil_mode else kernels), 0
    if ceil_mode:                    # Σ_k (min(k // 2, max_padding) + 1)
        return kernels + _half_sum(k_hi, max_padding) - _half_sum(k_lo - 1, max_padding), 0
    if max_padding is not None:
        return kernels * (max_padding + 1), 0
    return kernels, _poly_sum((-1, 1), k_lo, k_hi)          # Σ_k (d·(k − 1) + 1)


def _half_sum(n: int, cap: Optional[int]) -> int:
    """Σ_{k=1}^{n} min(k // 2, cap): the pairs 1+0, 2+1, … give floor(n/2)·ceil(n/2) until k // 2 reaches cap.

    >>> _half_sum(5, None), _half_sum(5, 1)       # 0+1+1+2+2, 0+1+1+1+1
    (6, 4)
    """
    if cap is None or n <= 2 * cap + 1:
        return (n // 2) * ((n + 1) // 2)
    return cap * (cap + 1) + (n - 2 * cap - 1) * cap


def _strides_per_dilation(s_lo: int, s_hi: int, fixed_op: Optional[int], transposed: bool, per_padding: int):
    """Pieces (d_low, d_high, coefficients of 2·B(d)): B(d) = the strides × output_paddings tried for dilation d
    (mirrors :func:`_output_paddings`; doubled so that the quadratic piece has whole coefficients)."""
    endless = 1 << 62
    if not transposed:
        return [(1, endless, (2 * per_padding,))]
    strides = s_hi - s_lo + 1
    if fixed_op is not None:         # output_padding < max(s, d): every stride once d > op, else only s > op
        return [(1, fixed_op, (2 * max(0, s_hi - max(s_lo, fixed_op + 1) + 1),)),
                (fixed_op + 1, endless, (2 * strides,))]
    # Σ_s max(s, d): Σ s while d ≤ s_lo; |S|·d once d ≥ s_hi; in between (d − s_lo + 1)·d + Σ_{s > d} s
    return [(1, s_lo, (s_hi * (s_hi + 1) - s_lo * (s_lo - 1),)),
            (s_lo + 1, s_hi, (s_hi * (s_hi + 1), 1 - 2 * s_lo, 1)),
            (s_hi + 1, endless, (0, 2 * strides))]


def _poly_mul(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Coefficients (constant first) of the product of two polynomials."""
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return tuple(out)


def _poly_sum(coefficients: tuple[int, ...], low: int, high: int) -> int:
    """Σ_{x=low}^{high} of the polynomial (0 when low > high), by power sums (degree ≤ 3, low ≥ 1).

    >>> _poly_sum((1, 0, 0, 1), 2, 4)             # (1 + 8) + (1 + 27) + (1 + 64)
    102
    """
    if low > high:
        return 0
    return sum(c * (_power_sum(high, e) - _power_sum(low - 1, e)) for e, c in enumerate(coefficients))


def _power_sum(n: int, e: int) -> int:
    """Σ_{x=1}^{n} x^e for e = 0..3 (Faulhaber)."""
    return (n, n * (n + 1) // 2, n * (n + 1) * (2 * n + 1) // 6, (n * (n + 1) // 2) ** 2)[e]


def _too_large(size: int, kernel, stride, padding, dilation, output_padding, transposed, ceil_mode, max_kernel,
               max_stride, max_dilation, max_padding) -> str:
    """The refusal: the size, the limit and the widened --max-* bounds that make the search this large."""
    bounds = [(f"--max-kernel {max_kernel}", kernel is None, max_kernel > MAX_KERNEL),
              (f"--max-stride {max_stride}", stride is None, max_stride > MAX_STRIDE),
              (f"--max-dilation {max_dilation}", dilation is None, max_dilation > MAX_DILATION),
              (f"--max-padding {max_padding}", padding is None and max_padding is not None, True)]
    free = [name for name, is_free, _ in bounds if is_free]
    widened = [name for name, is_free, wide in bounds if is_free and wide] or free
    return (f"the search would check {size:,} combinations, more than the limit of {SEARCH_LIMIT:,} (a few "
            f"seconds of work): lower {' or '.join(widened)}, or fix more of kernel, stride, padding, dilation")


def _check_pool_padding(padding: int, kernel: Optional[int], max_kernel: int) -> None:
    """A fixed padding in ceil mode (pooling) must obey PyTorch's padding ≤ kernel // 2."""
    if kernel is not None:
        check_pool_padding(kernel, padding)
    elif 2 * padding > max_kernel:     # k // 2 ≥ p ⇔ k ≥ 2p: no kernel searched allows it
        raise SpecError(f"padding {padding} needs a kernel of at least {2 * padding} for pooling (PyTorch's rule: "
                        f"padding at most half the kernel), but the search stops at --max-kernel {max_kernel}")


def _paddings(k: int, d: int, fixed: Optional[int], ceil_mode: bool, max_padding: Optional[int]):
    if fixed is not None:    # pooling: a kernel too small for the fixed padding is no answer (PyTorch refuses it)
        return [fixed] if not ceil_mode or fixed <= k // 2 else []
    if ceil_mode:            # pooling: PyTorch refuses padding above half the kernel
        top = k // 2 if max_padding is None else min(k // 2, max_padding)
    else:                    # conv: by default no padding wider than the kernel span (windows of zeros only)
        top = effective_kernel(k, d) - 1 if max_padding is None else max_padding
    return range(0, top + 1)


def _output_paddings(s: int, d: int, fixed: Optional[int], transposed: bool):
    if not transposed:
        return [0]
    if fixed is not None:
        return [fixed] if fixed < max(s, d) else []     # PyTorch: smaller than stride or dilation
    return range(0, max(s, d))


def _searched(kernel, stride, padding, dilation, output_padding, transposed, ceil_mode, max_kernel, max_stride,
              max_dilation, max_padding) -> dict[str, tuple[int, int]]:
    searched: dict[str, tuple[int, int]] = {}
    if kernel is None:
        searched["kernel"] = (1, max_kernel)
    if stride is None:
        searched["stride"] = (1, max_stride)
    if dilation is None:
        searched["dilation"] = (1, max_dilation)
    if padding is None:
        searched["padding"] = (0, max_padding if max_padding is not None else -1)   # -1: "up to the kernel span"
    if transposed and output_padding is None:
        searched["output_padding"] = (0, -1)                                         # -1: "below stride/dilation"
    return searched


def _simpler(key: tuple[int, ...], combo: Solution) -> bool:
    """Is (dilation, kernel, stride, padding, output_padding) ``key`` before ``combo`` in the answers' order?"""
    return key < (combo.dilation, combo.kernel, combo.stride, combo.padding, combo.output_padding)


def _nearest(near: dict[int, Solution], wanted: int, count: int = 3) -> list[tuple[int, Solution]]:
    """The closest reachable outputs (nearest first, the smaller on a tie), one (simplest) combination each."""
    ranked = sorted(near, key=lambda out: (abs(out - wanted), out))
    return [(out, near[out]) for out in ranked[:count]]


def describe_bounds(searched: dict[str, tuple[int, int]], ceil_mode: bool = False) -> str:
    """``kernel 1..11, stride 1..8, padding 0..span−1`` for the message when nothing fits."""
    parts = []
    for name, (low, high) in searched.items():
        if high == -1:
            high_text = {"padding": "kernel//2" if ceil_mode else "dilation·(kernel−1)",
                         "output_padding": "max(stride, dilation)−1"}[name]
            parts.append(f"{name} {low}..{high_text}")
        else:
            parts.append(f"{name} {low}..{high}")
    return ", ".join(parts) if parts else "nothing free (every parameter was given)"


# ================================================================================================ as the CLI answers it

@dataclass(frozen=True)
class SolveAnswer:
    """One combination giving the wanted output, with the forward formula that checks it."""
    kernel: int
    stride: int
    padding: int
    dilation: int
    output_padding: int
    check: str           #: ``L_out = floor((224 + 2·3 − 1·(7 − 1) − 1) / 2) + 1 = 112``


@dataclass(frozen=True)
class SolveResult:
    """What ``layercalc solve`` answers, as data; ``str(result)`` is the text the command prints."""
    input_length: int
    output_length: int
    transposed: bool
    ceil_mode: bool
    question: str                          #: ``224 → 112 with kernel 7`` (``transposed conv …``, ``pooling …``)
    count: int                             #: how many combinations give the output (all of them, not only shown)
    answers: tuple[SolveAnswer, ...]       #: the first ``limit`` of them (all when limit is 0), smallest first
    limit: int
    note: str                              #: e.g. output 1: only the smallest stride is listed; '' otherwise
    searched: tuple[tuple[str, int, int], ...]   #: (free parameter, low, high); high −1: the rule-given bound
    nearest: tuple[tuple[int, Solution], ...]    #: when nothing fits: (reachable output, simplest combination)
    lines: tuple[str, ...]                 #: the lines the command prints
    text: str                              #: the same, joined by newlines

    def __str__(self) -> str:
        return self.text

    def render(self, width: Optional[int] = None) -> str:
        """The answer laid out to fit ``width`` columns (None: no limit, :attr:`text`): the table as is when it
        fits, else each check written without spaces (``floor((28+2·0−1·(1−1)−1)/2)+1 = 14``), else without the
        check column (a line says so); prose wrapped at word boundaries. The numbers are the same in every form.

        >>> print(solve(224, 112, kernel=7, dilation=1).render(75))
        224 → 112 with kernel 7, dilation 1: 1 combination
        kernel  stride  padding  dilation  check
        7       2       3        1         floor((224+2·3−1·(7−1)−1)/2)+1 = 112
        """
        from .terminal import widest_line, wrap

        if width is None or widest_line(self.text) <= width:
            return self.text
        head = [wrap(line, width) for line in self.lines[:len(self.lines) - self._table_lines]]
        if not self.answers:
            return "\n".join(head)
        for compact, with_check in ((True, True), (True, False)):
            table = _table(self.answers, self.transposed, compact, with_check)
            if widest_line("\n".join(table)) <= width or not with_check:
                break
        if not with_check:
            table.append(wrap("(each answer checked by the forward formula: --wide shows it, or "
                              "layercalc size N -k K -s S -p P -d D)", width))
        return "\n".join(head + table)

    @property
    def _table_lines(self) -> int:
        return len(self.answers) + 1 if self.answers else 0


def solve(input_length: int, output_length: int, kernel: Optional[int] = None, stride: Optional[int] = None,
           padding: Optional[int] = None, dilation: Optional[int] = None, transposed: bool = False, *,
           output_padding: Optional[int] = None, ceil_mode: bool = False, max_kernel: int = MAX_KERNEL,
           max_stride: int = MAX_STRIDE, max_dilation: int = MAX_DILATION, max_padding: Optional[int] = None,
           limit: int = 20) -> SolveResult:
    """``layercalc solve`` as a library call (``layercalc.solve(...)``): :func:`search`'s answers, each
    with its check line, and the lines the command prints (a header with the count, the note, a table).

    >>> result = solve(224, 112, kernel=7, dilation=1)
    >>> result.count, [(a.kernel, a.stride, a.padding) for a in result.answers]
    (1, [(7, 2, 3)])
    >>> print(result)
    224 → 112 with kernel 7, dilation 1: 1 combination
    kernel  stride  padding  dilation  check
    7       2       3        1         L_out = floor((224 + 2·3 − 1·(7 − 1) − 1) / 2) + 1 = 112
    """
    from .sizing import whole

    input_length, output_length = whole(input_length, "input", 1), whole(output_length, "output", 1)
    kernel, stride, dilation = (None if v is None else whole(v, name, 1)
                                for name, v in (("kernel", kernel), ("stride", stride), ("dilation", dilation)))
    padding, output_padding = (None if v is None else whole(v, name, 0)
                               for name, v in (("padding", padding), ("output_padding", output_padding)))
    max_kernel, max_stride, max_dilation = (whole(v, name, 1) for name, v in (
        ("max_kernel", max_kernel), ("max_stride", max_stride), ("max_dilation", max_dilation)))
    max_padding = None if max_padding is None else whole(max_padding, "max_padding", 0)
    limit = whole(limit, "limit", 0)
    for name, flag in (("transposed", transposed), ("ceil_mode", ceil_mode)):
        if not isinstance(flag, bool):
            from .errors import shown
            raise SpecError(f"{name}: {shown(flag)} is not true or false")

    found = search(input_length, output_length, kernel, stride, padding, dilation, output_padding, transposed,
                  ceil_mode, max_kernel, max_stride, max_dilation, max_padding)
    fixed = ", ".join(f"{name} {value}" for name, value in (("kernel", kernel), ("stride", stride),
                      ("padding", padding), ("dilation", dilation), ("output_padding", output_padding))
                      if value is not None)
    question = ("transposed conv " if transposed else "pooling (ceil mode) " if ceil_mode else "") + \
        f"{input_length} → {output_length}" + (f" with {fixed}" if fixed else "")
    searched = tuple((name, low, high) for name, (low, high) in found.searched.items())
    count = len(found.answers)
    if not found.answers:
        nearest = "; ".join(f"{out} with kernel {c.kernel}, stride {c.stride}, padding {c.padding}, dilation "
                            f"{c.dilation}" + (f", output_padding {c.output_padding}" if transposed else "")
                            for out, c in found.nearest)
        lines = [f"no combination gives {question} (searched {describe_bounds(found.searched, ceil_mode)})"
                 + (f"; nearest reachable: {nearest}" if nearest else "")]
        return SolveResult(input_length, output_length, transposed, ceil_mode, question, 0, (), limit, found.note,
                           searched, tuple(found.nearest), tuple(lines), lines[0])

    from .explain import explain_length, explain_transposed_length

    def check(s: Solution) -> str:
        if transposed:
            return explain_transposed_length(input_length, s.kernel, s.stride, s.padding, s.padding, s.dilation,
                                             s.output_padding)[0]
        line = explain_length(input_length, s.kernel, s.stride, s.padding, s.padding, s.dilation, ceil_mode)[0]
        return line if line.endswith(f"= {output_length}") else f"{line} → {output_length} (last window dropped)"

    shown_answers = tuple(SolveAnswer(*s, check=check(s)) for s in (found.answers[:limit] if limit else found.answers))
    lines = [f"{question}: {count} combination{'s' if count != 1 else ''}"
             + (f" (showing {limit}; --limit 0 for all)" if limit and count > limit else "")]
    if found.note:
        lines.append(f"({found.note})")
    lines += _table(shown_answers, transposed)
    return SolveResult(input_length, output_length, transposed, ceil_mode, question, count, shown_answers, limit,
                       found.note, searched, tuple(found.nearest), tuple(lines), "\n".join(lines))


def _table(answers: tuple[SolveAnswer, ...], transposed: bool, compact: bool = False,
           with_check: bool = True) -> list[str]:
    """The answers as a plain table: columns left-aligned, two spaces apart, no rule under the header. ``compact``:
    each check without ``L_out =`` and the spaces inside its formula (to fit a narrow terminal).

    The header goes in as the first row: tabulate widens header columns by its ``MIN_PADDING`` (2), which would
    put four spaces after ``kernel`` instead of two; as a row it is laid out like the values.
    """
    from tabulate import tabulate

    headers = ["kernel", "stride", "padding", "dilation"] + (["output_padding"] if transposed else []) \
        + (["check"] if with_check else [])
    rows = [[str(a.kernel), str(a.stride), str(a.padding), str(a.dilation)]
            + ([str(a.output_padding)] if transposed else [])
            + ([_compact_check(a.check) if compact else a.check] if with_check else []) for a in answers]
    table = tabulate([headers, *rows], tablefmt="plain", disable_numparse=True)
    return [line.rstrip() for line in table.split("\n")]


def _compact_check(check: str) -> str:
    """``L_out = floor((28 + 2·0 − 1·(1 − 1) − 1) / 2) + 1 = 14`` → ``floor((28+2·0−1·(1−1)−1)/2)+1 = 14``: the same
    formula and result, without the name and the spaces around its operators (the ``=`` and ``→`` of the result
    keep theirs).

    >>> _compact_check("L_out = ceil((7 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 4 → 3 (last window dropped)")
    'ceil((7+2·0−1·(2−1)−1)/2)+1 = 4 → 3 (last window dropped)'
    """
    body = check.split(" = ", 1)[1] if check.startswith("L_out = ") else check
    formula, sep, result = body.partition(" = ")
    return formula.replace(" ", "") + sep + result
