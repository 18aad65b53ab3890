"""Shape arithmetic along one spatial dimension, as small pure functions.

These are the formulas the whole tool rests on; each one states the convention it follows (PyTorch unless said
otherwise) and carries doctest examples. All arithmetic is on Python ints (floor division, never floats), so the
results are exact for any size.
"""

from __future__ import annotations

import math

from .errors import SpecError


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """The span a dilated kernel covers: ``d·(k − 1) + 1``.

    >>> effective_kernel(3, 2)
    5
    """
    return dilation * (kernel - 1) + 1


def ceil_div(a: int, b: int) -> int:
    """Exact ceiling of a / b for ints (b > 0).

    >>> ceil_div(7, 2), ceil_div(6, 2), ceil_div(-1, 2)
    (4, 3, 0)
    """
    return -(-a // b)


def conv_output_length(length: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int = 0,
                       dilation: int = 1) -> int:
    """Number of window positions: ``floor((L + p_before + p_after − d·(k − 1) − 1) / s) + 1``.

    The result may be < 1; callers turn that into an error.

    >>> conv_output_length(28, 3)                 # 28×28 through a 3×3 conv, no padding
    26
    >>> conv_output_length(224, 7, 2, 3, 3)       # ResNet stem
    112
    >>> conv_output_length(28, 3, 2)              # (28 − 3) / 2 = 12.5 → floored
    13
    """
    return (length + pad_before + pad_after - effective_kernel(kernel, dilation)) // stride + 1


def pool_output_length(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0,
                       dilation: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's pooling output length, ``ceil_mode`` included.

    With ``ceil_mode`` the division is rounded up, but PyTorch drops the last window when it would start in the
    right padding: if ``(out − 1)·s ≥ L + p_before`` then ``out − 1``.

    >>> pool_output_length(5, 2, 2)
    2
    >>> pool_output_length(5, 2, 2, ceil_mode=True)
    3
    >>> pool_output_length(4, 2, 2, 1, 1, ceil_mode=True)   # the 4th window would start in the padding
    3
    """
    span = length + pad_before + pad_after - effective_kernel(kernel, dilation)
    if ceil_mode:
        out = ceil_div(span, stride) + 1
        if (out - 1) * stride >= length + pad_before:
            out -= 1
        return out
    return span // stride + 1


def check_pool_padding(kernel: int, padding: int) -> None:
    """PyTorch's rule for pooling: padding at most half the kernel size, ``padding ≤ kernel // 2``.

    The rule is on the kernel size, not the dilated span: torch checks ``padding ≤ kernel // 2`` and
    ``padding ≤ (d·(kernel − 1) + 1) // 2``, and the first is always the stricter (MaxPool1d/2d/3d, AvgPool,
    floor or ceil mode alike). Raises :class:`~layercalc.errors.SpecError` when it is broken.

    >>> check_pool_padding(3, 1)
    >>> check_pool_padding(3, 2)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    layercalc.errors.SpecError: padding 2 must be at most half the kernel 3, i.e. ≤ 1 (PyTorch's rule for pooling,
    whatever the dilation)
    """
    if padding > kernel // 2:
        raise SpecError(f"padding {padding} must be at most half the kernel {kernel}, i.e. ≤ {kernel // 2} "
                        f"(PyTorch's rule for pooling, whatever the dilation)")


def same_padding(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow/Keras ``padding="same"``: output ``ceil(L / s)``; the odd pixel of padding goes after.

    PyTorch accepts ``"same"`` only for stride 1, where it agrees with this rule.

    >>> same_padding(28, 3)
    (1, 1)
    >>> same_padding(28, 2, 2)        # 2×2 pooling, stride 2: no padding needed
    (0, 0)
    >>> same_padding(224, 7, 2)       # out 112 needs 5 extra pixels: 2 before, 3 after
    (2, 3)
    >>> same_padding(10, 4)           # even kernel: the odd pixel after
    (1, 2)
    """
    out = ceil_div(length, stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - length, 0)
    return total // 2, total - total // 2


def transposed_output_length(length: int, kernel: int, stride: int = 1, crop_before: int = 0, crop_after: int = 0,
                             dilation: int = 1, output_padding: int = 0) -> int:
    """Transposed convolution: ``(L − 1)·s − p_before − p_after + d·(k − 1) + output_padding + 1``.

    PyTorch's ``padding`` p crops p from each side (``p_before = p_after = p``).

    >>> transposed_output_length(7, 3, 2, 1, 1, output_padding=1)   # doubles 7 → 14
    14
    >>> transposed_output_length(16, 2, 2)                           # U-Net up-convolution
    32
    """
    return (length - 1) * stride - crop_before - crop_after + effective_kernel(kernel, dilation) + output_padding


def transposed_valid_extra(kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """Keras ``Conv*DTranspose(padding="valid")`` (no output_padding): output ``L·s + max(span − s, 0)``, i.e.
    PyTorch's padding-0 output plus this many zeros appended (PyTorch's ``output_padding``): ``max(s − span, 0)``.

    >>> transposed_valid_extra(1, 2)        # 7 → 13 in PyTorch, 7·2 = 14 in Keras
    1
    >>> transposed_valid_extra(3, 2)        # span ≥ stride: the two agree
    0
    """
    return max(stride - effective_kernel(kernel, dilation), 0)


def transposed_same_padding(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int, int]:
    """Keras ``Conv*DTranspose(padding="same")``: output ``L·s``.

    Returns ``(crop_before, crop_after, extra_after)``: the full result ``(L − 1)·s + d·(k − 1) + 1`` is cropped,
    the odd pixel after; when the kernel is narrower than the stride, zeros are appended instead.

    >>> transposed_same_padding(7, 3, 2)     # full 15 → crop 0 before, 1 after → 14
    (0, 1, 0)
    >>> transposed_same_padding(7, 1, 2)     # full 13, 1 extra → 14
    (0, 0, 1)
    """
    surplus = effective_kernel(kernel, dilation) - stride
    if surplus >= 0:
        return surplus // 2, surplus - surplus // 2, 0
    return 0, 0, -surplus


def uncovered_after(length: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0,
                    dilation: int = 1) -> int:
    """How many positions at the end of the padded input no window reaches when the output is floored.

    >>> uncovered_after(28, 3, 2)     # windows start at 0, 2, …, 24 and end at 26: position 27 is never read
    1
    >>> uncovered_after(28, 2, 2)
    0
    """
    span = length + pad_before + pad_after - effective_kernel(kernel, dilation)
    return span % stride if span >= 0 else 0


def adaptive_windows(length: int, output: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: ``[floor(i·L/out), ceil((i + 1)·L/out))`` for each output i.

    >>> adaptive_windows(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    """
    return [(i * length // output, ceil_div((i + 1) * length, output)) for i in range(output)]


def adaptive_window_sizes(length: int, output: int):
    """Sizes of the adaptive windows along one dimension (a generator: no list for long outputs).

    >>> list(adaptive_window_sizes(5, 3))
    [2, 3, 2]
    >>> sum(adaptive_window_sizes(7, 7)), max(adaptive_window_sizes(10, 4))
    (7, 3)
    """
    return (ceil_div((i + 1) * length, output) - i * length // output for i in range(output))


def adaptive_window_total(length: int, output: int) -> int:
    """The sum of the adaptive window sizes, in closed form: ``L + out − gcd(L, out)``.

    Σ ceil((i + 1)·L/out) − Σ floor(i·L/out) over i < out: each ceiling exceeds the floor of the same fraction by 1
    except where out divides (i + 1)·L (gcd(L, out) of the i), and the floors telescope to L.

    >>> adaptive_window_total(5, 3), adaptive_window_total(7, 7), adaptive_window_total(10, 4)   # 2+3+2, 7·1, 4·3
    (7, 7, 12)
    """
    return length + output - math.gcd(length, output)


def adaptive_window_max(length: int, output: int) -> int:
    """The largest adaptive window, in closed form: ``ceil((L + out − gcd(L, out)) / out)``.

    Window i has size ``ceil((r + L)/out)`` with ``r = i·L mod out``; r runs over the multiples of gcd(L, out)
    below out, the largest being ``out − gcd``.

    >>> adaptive_window_max(5, 3), adaptive_window_max(10, 4), adaptive_window_max(3, 5)
    (3, 3, 2)
    """
    return ceil_div(length + output - math.gcd(length, output), output)


def adaptive_window_min(length: int, output: int) -> int:
    """The smallest adaptive window, ``ceil(L / out)`` (window 0, where ``i·L mod out = 0``).

    >>> adaptive_window_min(5, 3), adaptive_window_min(3, 5)
    (2, 1)
    """
    return ceil_div(length, output)
