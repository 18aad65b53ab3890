"""The inverse shape question: which kernel / stride / padding / dilation turn an input length into a wanted output?

``solve(224, 112, kernel=7)`` lists every combination of the free parameters, within sensible bounds, for which
the forward formula of :mod:`layercalc.shapes` gives exactly the wanted output. The search is a plain enumeration
of small integers checked with the very same forward functions the calculator uses, so every answer is correct by
construction (nothing is derived by algebra that could drift from the forward rule).

Bounds ("sensible" = what real networks use; widen them with the ``max_*`` arguments):

- kernel 1..11, dilation 1..4, stride 1..8;
- padding 0..(dilation·(kernel − 1)): more padding than the kernel span only adds windows that see nothing but
  zeros; with ``ceil_mode`` (pooling) PyTorch's own limit applies, padding ≤ kernel // 2;
- transposed: output_padding 0..max(stride, dilation) − 1 (PyTorch's rule).

When the wanted output is 1 and the stride is free, every stride from some value on gives 1 (a single window);
only that smallest stride is listed for each kernel / padding / dilation (``Solutions.note`` says so), even when
it exceeds ``max_stride``, instead of repeating each answer for every larger stride.

Answers are sorted with dilation 1 first (the usual case), then by kernel, stride, padding, output_padding.

This module imports nothing heavy (no Pydantic): the command line uses it on its fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from .errors import SpecError
from .shapes import conv_output_length, effective_kernel, pool_output_length, transposed_output_length

MAX_KERNEL = 11
MAX_STRIDE = 8
MAX_DILATION = 4


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
    if transposed:
        return transposed_output_length(length, s.kernel, s.stride, s.padding, s.padding, s.dilation,
                                        s.output_padding)
    if ceil_mode:
        return pool_output_length(length, s.kernel, s.stride, s.padding, s.padding, s.dilation, ceil_mode=True)
    return conv_output_length(length, s.kernel, s.stride, s.padding, s.padding, s.dilation)


def _check_fixed(name: str, value: Optional[int], minimum: int) -> None:
    if value is not None and value < minimum:
        raise SpecError(f"{name} must be ≥ {minimum}, got {value}")


def solve(input_length: int, output_length: int, kernel: Optional[int] = None, stride: Optional[int] = None,
          padding: Optional[int] = None, dilation: Optional[int] = None, output_padding: Optional[int] = None,
          transposed: bool = False, ceil_mode: bool = False, max_kernel: int = MAX_KERNEL,
          max_stride: int = MAX_STRIDE, max_dilation: int = MAX_DILATION,
          max_padding: Optional[int] = None) -> Solutions:
    """Every combination of the free parameters (those left ``None``) giving exactly ``output_length``.

    >>> [tuple(s) for s in solve(224, 112, kernel=7, dilation=1).answers]
    [(7, 2, 3, 1, 0)]
    >>> [tuple(s)[:3] for s in solve(28, 26, stride=1, dilation=1).answers]
    [(3, 1, 0), (5, 1, 1), (7, 1, 2), (9, 1, 3), (11, 1, 4)]
    >>> solve(7, 14, kernel=3, stride=2, dilation=1, transposed=True).answers
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

    single_window = output_length == 1 and stride is None and not transposed
    kernels = [kernel] if kernel is not None else range(1, max_kernel + 1)
    strides = [stride] if stride is not None else range(1, max_stride + 1)
    dilations = [dilation] if dilation is not None else range(1, max_dilation + 1)

    answers, near = [], []
    for d in dilations:
        for k in kernels:
            for pad in _paddings(k, d, padding, ceil_mode, max_padding):
                candidates = list(strides)
                if single_window:    # one window: any stride above the slack fits; keep the smallest only
                    slack = input_length + 2 * pad - effective_kernel(k, d)
                    candidates.append(max(slack + 1, 1))
                found_here = []
                for s in candidates:
                    for op in _output_paddings(s, d, output_padding, transposed):
                        combo = Solution(k, s, pad, d, op)
                        out = forward(input_length, combo, transposed, ceil_mode)
                        if out == output_length:
                            found_here.append(combo)
                        elif out >= 1:
                            near.append((abs(out - output_length), out, combo))
                if single_window and found_here:
                    found_here = [min(found_here, key=lambda c: c.stride)]
                answers += found_here
    answers.sort(key=lambda c: (c.dilation, c.kernel, c.stride, c.padding, c.output_padding))
    searched = _searched(kernel, stride, padding, dilation, output_padding, transposed, ceil_mode,
                         max_kernel, max_stride, max_dilation, max_padding)
    note = ("a single window: every stride at least the one listed gives output 1; only the smallest is shown"
            if single_window and answers else "")
    nearest = [] if answers else _nearest(near)
    return Solutions(answers, searched, note, nearest)


def _paddings(k: int, d: int, fixed: Optional[int], ceil_mode: bool, max_padding: Optional[int]):
    if fixed is not None:
        return [fixed]
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


def _nearest(near: list[tuple[int, int, Solution]], count: int = 3) -> list[tuple[int, Solution]]:
    """The closest outputs that are reachable, one (simplest) combination each."""
    best: dict[int, tuple[int, Solution]] = {}
    for distance, out, combo in sorted(near, key=lambda t: (t[0], t[2].dilation, t[2].kernel, t[2].stride,
                                                           t[2].padding, t[2].output_padding)):
        best.setdefault(out, (distance, combo))
    ranked = sorted(best.items(), key=lambda item: (item[1][0], item[0]))
    return [(out, combo) for out, (_, combo) in ranked[:count]]


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
